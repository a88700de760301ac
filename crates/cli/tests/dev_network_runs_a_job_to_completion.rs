//! End to end, in one process, as `gpunet demo` does it: a solo validator with its redb store, a
//! provider agent running workloads as real processes, and a funded tenant. A job goes through
//! the whole market and the bill is exact to the micro-unit.

mod common;

use std::time::Duration;

use gpunet::jobs;
use gpunet::progress::Progress;
use gpunet_api::node::LeaseState;
use gpunet_client::NodeClient;
use gpunet_protocol::jobspec::JobSpec;
use gpunet_protocol::{Amount, Denom, LeaseEndReason};

const HELLO: &str = include_str!("../../../examples/jobs/hello.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_job_runs_to_completion_and_the_bill_is_exact() {
    let home = tempfile::tempdir().expect("tempdir");
    let net = common::ready_dev_net(home.path().to_path_buf()).await;
    let reader = NodeClient::new(&net.api);

    let tenant = net.tenant.address();
    let before = reader.account(&tenant).await.expect("account");
    let params = reader.params().await.expect("params");

    let spec = JobSpec::parse_yaml(HELLO).expect("example parses");
    let client = NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let followed = tokio::time::timeout(
        Duration::from_secs(60),
        jobs::submit_and_follow(&client, &net.tenant, &spec, true, &Progress::new(true)),
    )
    .await
    .expect("the job finishes within a minute")
    .expect("the job runs");

    let lease = followed.lease.expect("the job got a lease");
    assert_eq!(lease.state, LeaseState::Ended);
    assert_eq!(lease.end_reason, Some(LeaseEndReason::Completed));
    assert!(followed.submit_to_running_ms.is_some());

    // The bill: exactly the lease price for the milliseconds billed, the fee exactly its share.
    let price = lease.price_per_hour;
    assert!(price <= spec.order_terms().max_price_per_hour);
    let expected_paid = price
        .mul_div_floor(lease.billed_ms, 3_600_000)
        .expect("fits");
    assert_eq!(lease.paid, expected_paid, "tenant pays price × time billed");
    let expected_fee = lease
        .paid
        .mul_div_floor(u64::from(params.protocol_fee_bps), 10_000)
        .expect("fits");
    assert_eq!(lease.protocol_fee, expected_fee);
    assert_eq!(
        lease.provider_earned,
        lease
            .paid
            .checked_sub(lease.protocol_fee)
            .expect("fee ≤ paid")
    );
    let deposit = spec.order_terms().deposit;
    assert_eq!(
        lease.refund,
        deposit.checked_sub(lease.paid).expect("paid ≤ deposit")
    );

    // The tenant's usd moved by exactly what it paid; its gpn by exactly two fees (order only:
    // the tenant signed one transaction).
    let after = reader.account(&tenant).await.expect("account");
    assert_eq!(
        before
            .balances
            .get(Denom::Usd)
            .checked_sub(after.balances.get(Denom::Usd)),
        Some(lease.paid)
    );
    assert_eq!(
        before
            .balances
            .get(Denom::Gpn)
            .checked_sub(after.balances.get(Denom::Gpn)),
        Some(params.min_tx_fee)
    );
    let provider = reader
        .account(&lease.provider)
        .await
        .expect("provider account");
    assert_eq!(provider.balances.get(Denom::Usd), lease.provider_earned);
    assert!(lease.paid > Amount::ZERO, "some time was billed");

    // The output arrived, matches its digest, and says what the job wrote.
    let (digest, files) = jobs::fetch_outputs(&net.tenant, &lease, None)
        .await
        .expect("outputs");
    assert_eq!(
        lease.result.as_ref().and_then(|r| r.output_digest),
        Some(digest)
    );
    let greeting = files
        .iter()
        .find(|(p, _)| p == "greeting.txt")
        .expect("greeting.txt was collected");
    assert_eq!(
        String::from_utf8_lossy(&greeting.1).trim(),
        "hello from gpunet"
    );

    // The log comes back sealed to the tenant and opens to what the job printed.
    let mut log = String::new();
    jobs::read_logs(&net.tenant, &lease, false, |text| log.push_str(text))
        .await
        .expect("logs");
    assert!(log.contains("wrote greeting.txt"), "{log}");
    assert!(log.contains("a line on stderr"), "{log}");

    net.stop().await;
}
