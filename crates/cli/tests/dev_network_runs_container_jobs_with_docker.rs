//! End to end with the Docker Engine, in one process as `gpunet dev` runs it: the provider
//! offers `docker` because the engine answers, the bundled hello job runs in a container of the
//! test image (built from host binaries, so its tag is a hash: the spec is built here), and a
//! job whose image does not exist ends `image_unavailable` with the whole deposit refunded.
//!
//! Without a reachable engine each test prints "skipped: …" and passes — unless
//! `GPUNET_REQUIRE_DOCKER=1` (set by `.ci/run`, so CI always runs them), when it fails.

use std::time::{Duration, Instant};

use gpunet::jobs;
use gpunet::progress::Progress;
use gpunet_api::node::LeaseState;
use gpunet_client::NodeClient;
use gpunet_devnet::{DevNet, DevOptions};
use gpunet_protocol::jobspec::JobSpec;
use gpunet_protocol::{Amount, Denom, LeaseEndReason, Runtime};

const HELLO: &str = include_str!("../../../examples/jobs/hello.yaml");

/// The test image, or `None` when the engine is unreachable and skipping is allowed.
async fn engine(test: &str) -> Option<String> {
    gpunet_runtime::testimage::test_image_or_skip(test).await
}

async fn dev_net(home: &std::path::Path) -> DevNet {
    let net = DevNet::start(DevOptions {
        home: home.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        block_ms: 100,
    })
    .await
    .expect("dev network starts");
    assert_eq!(
        net.agent.runtimes(),
        [Runtime::Process, Runtime::Docker],
        "docker is offered when the engine answers"
    );
    let reader = NodeClient::new(&net.api);
    let start = Instant::now();
    while reader
        .providers()
        .await
        .expect("providers")
        .providers
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no provider");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    net
}

fn hello_in(image: &str) -> JobSpec {
    let mut spec = JobSpec::parse_yaml(HELLO).expect("example parses");
    spec.run.image = Some(image.to_owned());
    spec.run.command[0] = "/bin/sh".into();
    spec.validate().expect("still valid");
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_job_runs_in_a_container_to_completion() {
    let Some(image) = engine("hello in a container").await else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let net = dev_net(home.path()).await;
    let spec = hello_in(&image);
    let client = NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let followed = tokio::time::timeout(
        Duration::from_secs(90),
        jobs::submit_and_follow(&client, &net.tenant, &spec, true, &Progress::new(true)),
    )
    .await
    .expect("the job finishes in time")
    .expect("the job runs");
    let lease = followed.lease.expect("a lease");
    assert_eq!(lease.state, LeaseState::Ended);
    assert_eq!(lease.end_reason, Some(LeaseEndReason::Completed));
    let (_, files) = jobs::fetch_outputs(&net.tenant, &lease, None)
        .await
        .expect("outputs");
    let greeting = files
        .iter()
        .find(|(p, _)| p == "greeting.txt")
        .expect("greeting.txt was collected");
    assert_eq!(
        String::from_utf8_lossy(&greeting.1).trim(),
        "hello from gpunet"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_image_does_not_exist_ends_image_unavailable_and_is_refunded_in_full() {
    let Some(_image) = engine("missing image end to end").await else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let net = dev_net(home.path()).await;
    let reader = NodeClient::new(&net.api);
    let tenant = net.tenant.address();
    let before = reader.account(&tenant).await.expect("account");
    let spec = hello_in(&format!("gpunet-test/absent-{}:v1", std::process::id()));
    let client = NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let followed = tokio::time::timeout(
        Duration::from_secs(90),
        jobs::submit_and_follow(&client, &net.tenant, &spec, true, &Progress::new(true)),
    )
    .await
    .expect("the job ends in time")
    .expect("followed to its end");
    let lease = followed.lease.expect("a lease");
    assert_eq!(lease.state, LeaseState::Ended);
    assert_eq!(
        lease.end_reason,
        Some(LeaseEndReason::ImageUnavailable),
        "{:?}",
        lease.result
    );
    assert_eq!(lease.paid, Amount::ZERO);
    assert_eq!(
        lease.refund,
        spec.order_terms().deposit,
        "the whole deposit"
    );
    let after = reader.account(&tenant).await.expect("account");
    assert_eq!(
        after.balances.get(Denom::Usd),
        before.balances.get(Denom::Usd),
        "the tenant's usd is back where it was"
    );
    net.stop().await;
}
