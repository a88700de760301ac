//! A provider's agent killed (SIGKILL) mid-job, on a network of real processes — one validator
//! and two `gpunet provider start` — as a user would run them: the chain notices the silence,
//! ends the lease `provider_lost` paid only up to the last heartbeat, reopens the order, and
//! the other provider runs the job to completion under the same job id, handed the manifest by
//! the still-running `gpunet job submit --wait`, from the job's last checkpoint (the providers
//! share a blob store). The bill is the sum of the two attempts. The killed agent, restarted on
//! its data, stops the orphaned workload at once and is paid nothing more for it.

mod binary;

use std::time::{Duration, Instant};

use binary::User;
use gpunet_api::node::{LeaseState, OrderView};
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{Denom, LeaseEndReason, OrderId};

async fn order(client: &NodeClient, id: OrderId) -> OrderView {
    client.order(id).await.expect("the order is readable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_providers_job_completes_on_the_other_provider_and_bills_both_attempts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let network = binary::Network::start(&user, base, 2, 200, &[]).await;
    let client = NodeClient::new(&network.api);
    // Provider 0 is the cheaper, so it wins the first attempt.
    let blobs = base.join("blobs");
    let store = ["--blob-store", blobs.to_str().expect("utf-8")];
    let mut cheap = network.provider_with(&user, base, 0, "0.10", &store);
    let _dear = network.provider_with(&user, base, 1, "0.20", &store);
    network.until_providers(2).await;
    let cheap_addr = KeyFile::load(&network.key("provider-0"))
        .expect("provider key")
        .address();
    let dear_addr = KeyFile::load(&network.key("provider-1"))
        .expect("provider key")
        .address();

    // 50 ticks of 0.5 s, printing as it goes and keeping its count as a checkpoint (restored
    // into the next attempt); the marker finds its processes on the host.
    let marker = format!("survival-marker-{}", std::process::id());
    let spec = binary::checkpointing_job("survivor", 50, "0.5", &marker);
    std::fs::write(base.join("survivor.yaml"), spec).expect("spec written");
    let submit = network
        .tenant(&user, &["job", "submit", "survivor.yaml", "--wait"], base)
        .spawn()
        .expect("submit starts");

    let job = OrderId(1);
    let running = binary::until_order(&client, job, Duration::from_secs(90), "the job runs", |o| {
        o.lease
            .as_ref()
            .is_some_and(|l| l.state == LeaseState::Running)
    })
    .await;
    let first = running.lease.expect("leased");
    assert_eq!(first.provider, cheap_addr, "the cheaper provider won");
    // Long enough for the agent to upload a checkpoint (every 10 s).
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert!(
        !binary::workloads_under(&marker, &base.join("provider-0")).is_empty(),
        "the workload runs on the host, under provider 0's data"
    );
    // The provider's machine "dies": its agent is killed outright.
    cheap.start_kill().expect("SIGKILL the agent");
    let _ = cheap.wait().await;
    let killed_at = Instant::now();

    let reopened = binary::until_order(
        &client,
        job,
        Duration::from_secs(60),
        "the lease is lost",
        |o| {
            o.attempts
                .first()
                .is_some_and(|a| a.state == LeaseState::Ended)
        },
    )
    .await;
    let detect = killed_at.elapsed();
    let lost = &reopened.attempts[0];
    assert_eq!(lost.end_reason, Some(LeaseEndReason::ProviderLost));
    // Paid only to its last proof of life: the billed time ends at the last heartbeat.
    assert_eq!(
        lost.billed_ms,
        lost.last_proof_ms - lost.started_ms.expect("it started")
    );
    eprintln!("provider death to lease ended: {detect:?}");

    // The killed agent comes back on its data: the orphaned workload is stopped at once.
    let _revived = network.provider(&user, base, 0, "0.10");
    let start = Instant::now();
    loop {
        let orphans = binary::workloads_under(&marker, &base.join("provider-0"));
        if orphans.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the orphaned workload still runs: {orphans:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let ran = binary::run_child(submit, Duration::from_secs(120)).await;
    assert_eq!(ran.code, Some(0), "the job completed: {ran:?}");
    assert!(
        ran.stderr.contains("attempt 1") || ran.stdout.contains("attempt 1"),
        "the lost attempt was reported: {ran:?}"
    );
    // The second attempt started from the checkpoint, not from tick 0.
    let log = binary::job_log(&network, &user, 1, base).await;
    let resumed_at = binary::resumed_at(&log);
    assert!(
        resumed_at >= 10,
        "resumed at tick {resumed_at}, not near the start: {log}"
    );
    assert!(log.contains("tick 50"), "{log}");
    let done = order(&client, job).await;
    assert_eq!(done.attempts.len(), 2, "{done:?}");
    let second = &done.attempts[1];
    assert_eq!(second.provider, dear_addr);
    assert_eq!(second.end_reason, Some(LeaseEndReason::Completed));
    assert_eq!(second.attempt, 2);
    // The dead provider earned exactly what its proven time paid, nothing after.
    let lost = &done.attempts[0];
    let earned = client
        .account(&cheap_addr)
        .await
        .expect("account")
        .balances
        .get(Denom::Usd);
    assert_eq!(earned, lost.provider_earned);
    // The tenant's bill is the sum of the attempts; the rest of the deposit came back.
    let total = lost.paid.checked_add(second.paid).expect("fits");
    let deposit = done.terms.deposit;
    assert_eq!(second.refund, deposit.checked_sub(total).expect("fits"));
}
