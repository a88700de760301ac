//! A provider leaves the network gracefully, mid-job, on a network of real processes — one
//! validator and two `gpunet provider start` sharing a blob store — as a user would: `gpunet
//! provider leave --wait` announces the exit; the leaving agent sends its workload SIGTERM,
//! keeps the job's last checkpoint and releases the lease (`provider_left`, not counted as a
//! failure, paid up to the release); the other provider runs the job to completion from that
//! checkpoint under the same job id; the leaver deregisters and its agent exits 0. The bill is
//! the sum of the two attempts.

mod binary;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use binary::User;
use gpunet_api::node::LeaseState;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{Denom, LeaseEndReason, OrderId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_leaves_mid_job_hands_it_to_another_that_resumes_from_its_last_checkpoint()
{
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let network = binary::Network::start(&user, base, 2, 200, &[]).await;
    let client = NodeClient::new(&network.api);
    // Provider 0 is the cheaper, so it wins the first attempt.
    let blobs = base.join("blobs");
    let blobs = blobs.to_str().expect("utf-8");
    let leaver = network.provider_with(
        &user,
        base,
        0,
        "0.10",
        &["--blob-store", blobs, "--exit-grace", "20s"],
    );
    let _stayer = network.provider_with(&user, base, 1, "0.20", &["--blob-store", blobs]);
    network.until_providers(2).await;
    let leaver_addr = KeyFile::load(&network.key("provider-0"))
        .expect("provider key")
        .address();
    let stayer_addr = KeyFile::load(&network.key("provider-1"))
        .expect("provider key")
        .address();

    // 60 ticks of 0.5 s, keeping its count as a checkpoint (restored into the next attempt).
    let marker = format!("leaving-marker-{}", std::process::id());
    let spec = binary::checkpointing_job("handed-over", 60, "0.5", &marker);
    std::fs::write(base.join("handed-over.yaml"), spec).expect("spec written");
    let submit = network
        .tenant(
            &user,
            &["job", "submit", "handed-over.yaml", "--wait"],
            base,
        )
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
    assert_eq!(first.provider, leaver_addr, "the cheaper provider won");

    // The leaver's failed-lease count, as long as the chain lists it.
    let failed_seen = Arc::new(AtomicU64::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (client, failed_seen, watching) = (
            NodeClient::new(&network.api),
            Arc::clone(&failed_seen),
            Arc::clone(&watching),
        );
        tokio::spawn(async move {
            let mut samples = 0u32;
            while watching.load(Ordering::SeqCst) {
                if let Ok(list) = client.providers().await
                    && let Some(p) = list.providers.iter().find(|p| p.address == leaver_addr)
                {
                    failed_seen.fetch_max(p.leases_failed, Ordering::SeqCst);
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };

    // A few seconds of work (about 8 ticks): less than the periodic checkpoint interval, so
    // only the last checkpoint, kept as the workload stops, can carry the count over.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !binary::workloads_under(&marker, &base.join("provider-0")).is_empty(),
        "the workload runs under provider 0's data"
    );
    let key = network.key("provider-0");
    let left = binary::run(
        user.gpunet(
            &[
                "provider",
                "leave",
                "--api",
                &network.api,
                "--key",
                key.to_str().expect("utf-8"),
                "--wait",
                "--json",
            ],
            base,
        ),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(left.code, Some(0), "provider leave --wait: {left:?}");
    eprintln!("provider leave --wait --json:\n{}", left.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&left.stdout).expect("provider leave --json prints JSON");
    assert_eq!(report["deregistered"], true, "{report}");
    assert_eq!(report["deregistered_by"], "the agent", "{report}");
    let leases = report["leases"].as_array().expect("the leases it held");
    assert_eq!(leases.len(), 1, "{report}");
    assert_eq!(leases[0]["lease"], first.id.0);
    assert_eq!(leases[0]["end_reason"], "provider_left", "{report}");

    // The leaving agent has nothing left and exits 0 by itself, its workload gone.
    let exited = binary::run_child(leaver, Duration::from_secs(30)).await;
    assert_eq!(
        exited.code,
        Some(0),
        "the leaving agent exits 0: {exited:?}"
    );
    assert!(exited.stdout.contains("has left the network"), "{exited:?}");
    assert!(
        binary::workloads_under(&marker, &base.join("provider-0")).is_empty(),
        "nothing of the job runs on the provider that left"
    );
    watching.store(false, Ordering::SeqCst);
    let samples = watcher.await.expect("the watcher ends");
    assert!(samples > 0, "the leaver was seen on chain");
    assert_eq!(
        failed_seen.load(Ordering::SeqCst),
        0,
        "leaving did not count as a failure"
    );
    let providers = client.providers().await.expect("providers");
    assert!(
        providers.providers.iter().all(|p| p.address != leaver_addr),
        "the leaver is deregistered"
    );

    // The job completes on the other provider, from the leaver's last checkpoint.
    let ran = binary::run_child(submit, Duration::from_secs(120)).await;
    assert_eq!(ran.code, Some(0), "the job completed: {ran:?}");
    let log = binary::job_log(&network, &user, 1, base).await;
    let resumed_at = binary::resumed_at(&log);
    eprintln!("the second attempt resumed at tick {resumed_at}");
    assert!(
        resumed_at >= 5,
        "resumed at tick {resumed_at}: the work done before the leave was lost: {log}"
    );
    assert!(log.contains("tick 60"), "{log}");

    let done = client.order(job).await.expect("the order");
    assert_eq!(done.attempts.len(), 2, "{done:?}");
    let released = &done.attempts[0];
    assert_eq!(released.end_reason, Some(LeaseEndReason::ProviderLeft));
    // Paid to its last proof of life (the release), never past it.
    assert_eq!(
        released.billed_ms,
        released.last_proof_ms - released.started_ms.expect("it started")
    );
    let second = &done.attempts[1];
    assert_eq!(second.provider, stayer_addr);
    assert_eq!(second.end_reason, Some(LeaseEndReason::Completed));
    assert_eq!(second.attempt, 2);
    // The leaver earned exactly its attempt's share.
    let earned = client
        .account(&leaver_addr)
        .await
        .expect("account")
        .balances
        .get(Denom::Usd);
    assert_eq!(earned, released.provider_earned);
    // The tenant's bill is the sum of the attempts; the rest of the deposit came back.
    let total = released.paid.checked_add(second.paid).expect("fits");
    let deposit = done.terms.deposit;
    assert_eq!(second.refund, deposit.checked_sub(total).expect("fits"));
}
