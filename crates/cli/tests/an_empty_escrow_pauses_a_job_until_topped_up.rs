//! A job whose deposit runs out is paused, not killed, on a network of real processes: the
//! chain stops paying, the provider freezes the workload (its log stops growing), `gpunet job
//! top-up` resumes it where it was, and when it runs dry a second time with no top-up it ends
//! `insufficient_funds` after the grace — its logs and outputs still readable, the provider paid
//! exactly the deposit and the top-up.

mod binary;

use std::time::{Duration, Instant};

use binary::{Network, User};
use gpunet_api::node::{LeaseState, OrderView};
use gpunet_client::NodeClient;
use gpunet_protocol::{Amount, LeaseEndReason, OrderId};

fn lease_state(o: &OrderView) -> Option<LeaseState> {
    o.lease.as_ref().map(|l| l.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_out_of_escrow_pauses_resumes_on_top_up_and_ends_after_the_grace() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    // 200 ms blocks: a heartbeat every 2 s, a 5 s grace, a warning 3 s before the end.
    let network = Network::start(
        &user,
        base,
        1,
        200,
        &["pause_grace_blocks=25", "escrow_warning_secs=3"],
    )
    .await;
    let client = NodeClient::new(&network.api);
    let _provider = network.provider(&user, base, 0, "0.10");
    network.until_providers(1).await;
    // 0.5 core and 64 MiB at 0.10 usd per core-hour and 0.01 per GiB-hour: 0.050625 usd an
    // hour, about 14 micro-usd a second, so 50 micro-usd pay for about 3.5 s.
    let spec = r#"version: 1
name: thrifty
run:
  command: ["sh", "-c", "echo kept > \"$GPUNET_OUTPUTS/kept.txt\"; i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo tick $i; sleep 0.1; done"]
resources: { cpu: 0.5, memory: 64Mi, disk: 64Mi }
pricing: { max_per_hour: "1.00", deposit: "0.00005" }
limits: { max_duration: 10m }
outputs: true
"#;
    std::fs::write(base.join("thrifty.yaml"), spec).expect("spec written");
    let submitted = binary::run(
        network.tenant(
            &user,
            &["job", "submit", "thrifty.yaml", "--allow-short-deposit"],
            base,
        ),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(submitted.code, Some(0), "submit: {submitted:?}");
    let job = OrderId(1);

    let paused = binary::until_order(
        &client,
        job,
        Duration::from_secs(60),
        "the job pauses",
        |o| lease_state(o) == Some(LeaseState::Paused),
    )
    .await;
    // A tenant following the log is told about the escrow as it goes (from the lease's start).
    let follower = network
        .tenant(&user, &["job", "logs", "1", "--follow", "--json"], base)
        .spawn()
        .expect("job logs --follow starts");
    let lease = paused.lease.expect("leased");
    assert_eq!(
        lease.paid,
        Amount::from_micros(50),
        "the whole deposit, no more"
    );
    assert_eq!(paused.escrow, Amount::ZERO);
    // The workload is frozen: its log holds still.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = binary::job_log(&network, &user, 1, base).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = binary::job_log(&network, &user, 1, base).await;
    assert!(
        before.contains("tick"),
        "it ran before the pause: {before:?}"
    );
    assert_eq!(before, after, "a paused job's log does not grow");
    let status = binary::run(
        network.tenant(&user, &["job", "status", "1"], base),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        status.stdout.contains("paused") && status.stdout.contains("job top-up 1"),
        "job status says it is paused and how to resume: {status:?}"
    );

    // Topped up: it resumes where it stopped.
    let topped = binary::run(
        network.tenant(&user, &["job", "top-up", "1", "0.00005"], base),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(topped.code, Some(0), "top-up: {topped:?}");
    assert!(topped.stdout.contains("resumes"), "{topped:?}");
    binary::until_order(
        &client,
        job,
        Duration::from_secs(10),
        "the job resumes",
        |o| lease_state(o) == Some(LeaseState::Running),
    )
    .await;
    let start = Instant::now();
    loop {
        let now = binary::job_log(&network, &user, 1, base).await;
        if now.len() > after.len() {
            // Continued, not restarted: the first tick after the pause follows the last before.
            let last_before = after.lines().filter(|l| l.starts_with("tick")).count();
            assert!(
                now.contains(&format!("tick {}", last_before + 1)),
                "it continued from tick {last_before}"
            );
            assert_eq!(now.matches("tick 1\n").count(), 1, "not restarted");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the log never grew again"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Dry again and nobody tops up: it ends after the grace, everything paid, nothing more.
    let ended = binary::until_order(&client, job, Duration::from_secs(60), "the job ends", |o| {
        lease_state(o) == Some(LeaseState::Ended)
    })
    .await;
    let lease = ended.lease.expect("leased");
    assert_eq!(lease.end_reason, Some(LeaseEndReason::InsufficientFunds));
    assert_eq!(lease.paid, Amount::from_micros(100), "deposit and top-up");
    assert_eq!(lease.refund, Amount::ZERO);
    // The log follower saw the log end, and the escrow's story beside it: low, ran out (the
    // job paused), topped up (resumed), and ran out again.
    let followed = binary::run_child(follower, Duration::from_secs(60)).await;
    assert_eq!(followed.code, Some(0), "job logs --follow: {followed:?}");
    let notices: Vec<String> = followed
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["notice"].as_str().map(str::to_owned))
        .collect();
    for (notice, times) in [("escrow_low", 1), ("lease_paused", 2), ("lease_resumed", 1)] {
        assert!(
            notices.iter().filter(|n| *n == notice).count() >= times,
            "{notice} at least {times} time(s) in {notices:?}: {followed:?}"
        );
    }
    assert!(
        followed.stdout.contains("\"finished\":true"),
        "the log stream ends: {followed:?}"
    );
    // Its logs and outputs are kept.
    assert!(
        binary::job_log(&network, &user, 1, base)
            .await
            .contains("tick")
    );
    let out = base.join("out");
    let fetched = binary::run(
        network.tenant(
            &user,
            &["job", "output", "1", "--to", out.to_str().expect("utf-8")],
            base,
        ),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(fetched.code, Some(0), "job output: {fetched:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("kept.txt")).expect("the output was fetched"),
        "kept\n"
    );
}
