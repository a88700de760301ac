//! Checkpoints for container jobs, end to end with the real Docker Engine: a job in a
//! container writes its progress under `$GPUNET_CHECKPOINTS` (the agent mounts the lease's
//! checkpoint directory at `/checkpoints`), its provider's agent is killed (SIGKILL) mid-job,
//! the chain ends the lease `provider_lost`, and the other provider — sharing a blob store —
//! restores the last checkpoint into its own mount, so the job resumes where it was instead
//! of from the start. The killed agent, restarted on its data, stops its orphaned container.
//!
//! Without a reachable engine the test prints "skipped: …" and passes — unless
//! `GPUNET_REQUIRE_DOCKER=1` (set by `.ci/run`, so CI always runs it), when it fails.

mod binary;

use std::time::{Duration, Instant};

use binary::User;
use gpunet_api::node::LeaseState;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{LeaseEndReason, OrderId};
use gpunet_runtime::testimage::ContainerCleanup;

/// The test image, or `None` when the engine is unreachable and skipping is allowed.
async fn engine(test: &str) -> Option<String> {
    gpunet_runtime::testimage::test_image_or_skip(test).await
}

/// Whether the container of `workload` is running, as `docker ps` sees it.
fn container_running(workload: &str) -> bool {
    let name = gpunet_runtime::container_name(workload);
    let out = std::process::Command::new("docker")
        .args(["ps", "--quiet", "--filter"])
        .arg(format!("name=^{name}$"))
        .output()
        .expect("docker ps runs");
    assert!(out.status.success(), "docker ps: {out:?}");
    !out.stdout.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_providers_container_job_resumes_on_the_other_from_its_checkpoint() {
    let Some(image) =
        engine("a_killed_providers_container_job_resumes_on_the_other_from_its_checkpoint").await
    else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let network = binary::Network::start(&user, base, 2, 200, &[]).await;
    let client = NodeClient::new(&network.api);
    let blobs = base.join("blobs");
    let store = ["--blob-store", blobs.to_str().expect("utf-8")];
    // Provider 0 is the cheaper, so it wins the first attempt.
    let mut cheap = network.provider_with_docker(&user, base, 0, "0.10", &store);
    let _dear = network.provider_with_docker(&user, base, 1, "0.20", &store);
    network.until_providers(2).await;
    let address = |name: &str| {
        KeyFile::load(&network.key(name))
            .expect("provider key")
            .address()
    };
    let (cheap_addr, dear_addr) = (address("provider-0"), address("provider-1"));

    // The checkpointing job of the process tests, in a container of the test image: 50 ticks
    // of 0.5 s, its count kept under $GPUNET_CHECKPOINTS.
    let spec = binary::checkpointing_job("boxed-survivor", 50, "0.5", "container").replace(
        "run:\n  command: [\"sh\",",
        &format!("run:\n  image: {image}\n  command: [\"/bin/sh\","),
    );
    assert!(spec.contains("image:"), "{spec}");
    std::fs::write(base.join("boxed.yaml"), spec).expect("spec written");
    let submit = network
        .tenant(&user, &["job", "submit", "boxed.yaml", "--wait"], base)
        .spawn()
        .expect("submit starts");

    let job = OrderId(1);
    let running = binary::until_order(
        &client,
        job,
        Duration::from_secs(120),
        "the job runs",
        |o| {
            o.lease
                .as_ref()
                .is_some_and(|l| l.state == LeaseState::Running)
        },
    )
    .await;
    let first = running.lease.expect("leased");
    assert_eq!(first.provider, cheap_addr, "the cheaper provider won");
    let orphan = binary::workload_id(first.id.0, &cheap_addr);
    let _cleanup = ContainerCleanup::new(orphan.clone());
    // Long enough for the agent to upload a checkpoint (every 10 s).
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert!(container_running(&orphan), "the job runs in a container");
    // The provider's machine "dies": its agent is killed outright (the engine, and so the
    // container, lives on: the orphan).
    cheap.start_kill().expect("SIGKILL the agent");
    let _ = cheap.wait().await;

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
    assert_eq!(
        reopened.attempts[0].end_reason,
        Some(LeaseEndReason::ProviderLost)
    );

    // The killed agent comes back on its data: the orphaned container is stopped.
    let _revived = network.provider_with_docker(&user, base, 0, "0.10", &store);
    let start = Instant::now();
    while container_running(&orphan) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the orphaned container {orphan} still runs"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let ran = binary::run_child(submit, Duration::from_secs(180)).await;
    assert_eq!(ran.code, Some(0), "the job completed: {ran:?}");
    let done = client.order(job).await.expect("the order is readable");
    assert_eq!(done.attempts.len(), 2, "{done:?}");
    let second = &done.attempts[1];
    let _cleanup_second = ContainerCleanup::new(binary::workload_id(second.id.0, &dear_addr));
    assert_eq!(second.provider, dear_addr);
    assert_eq!(second.end_reason, Some(LeaseEndReason::Completed));
    // The second container started from the first one's checkpoint, not from tick 0.
    let log = binary::job_log(&network, &user, 1, base).await;
    let resumed_at = binary::resumed_at(&log);
    assert!(
        resumed_at >= 10,
        "resumed at tick {resumed_at}, not near the start: {log}"
    );
    assert!(log.contains("tick 50"), "{log}");
}
