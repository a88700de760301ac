//! A job's `recovery.on_exit_codes`, on a network of real processes (one validator, two
//! providers): a workload that exits with a listed code is retried on the other provider; one
//! that exits with another code is not, and `gpunet job wait` reports its failure.

mod binary;

use std::time::Duration;

use binary::{Network, User};
use gpunet_api::node::OrderState;
use gpunet_client::NodeClient;
use gpunet_protocol::{LeaseEndReason, OrderId};

fn spec(name: &str, exit_code: u8) -> String {
    format!(
        r#"version: 1
name: {name}
run:
  command: ["sh", "-c", "echo trying; exit {exit_code}"]
resources: {{ cpu: 0.5, memory: 64Mi, disk: 64Mi }}
pricing: {{ max_per_hour: "1.00", deposit: "1.00" }}
limits: {{ max_duration: 10m }}
recovery: {{ max_attempts: 2, on_exit_codes: [137, 143], backoff: 1s }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_exit_code_is_retried_on_another_provider_and_another_is_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let network = Network::start(&user, base, 2, 200, &[]).await;
    let client = NodeClient::new(&network.api);
    let _p0 = network.provider(&user, base, 0, "0.10");
    let _p1 = network.provider(&user, base, 1, "0.20");
    network.until_providers(2).await;

    for (i, (exit_code, retried)) in [(137u8, true), (3, false)].into_iter().enumerate() {
        let file = format!("exit-{exit_code}.yaml");
        std::fs::write(
            base.join(&file),
            spec(&format!("exit-{exit_code}"), exit_code),
        )
        .expect("spec written");
        let ran = binary::run(
            network.tenant(&user, &["job", "submit", &file, "--wait"], base),
            Duration::from_secs(120),
        )
        .await;
        // Either way the job failed in the end: its command's own failure, exit class 2.
        assert_eq!(ran.code, Some(2), "exit {exit_code}: {ran:?}");
        let order = client
            .order(OrderId(i as u64 + 1))
            .await
            .expect("the order is readable");
        assert_eq!(order.state, OrderState::Closed);
        let attempts: Vec<_> = order
            .attempts
            .iter()
            .map(|a| {
                (
                    a.end_reason,
                    a.result.as_ref().and_then(|r| r.exit_code),
                    a.provider,
                )
            })
            .collect();
        let failed = (
            Some(LeaseEndReason::WorkloadFailed),
            Some(i32::from(exit_code)),
        );
        if retried {
            assert_eq!(
                attempts.len(),
                2,
                "exit {exit_code} is retried: {attempts:?}"
            );
            assert!(
                attempts.iter().all(|a| (a.0, a.1) == failed),
                "{attempts:?}"
            );
            assert_ne!(attempts[0].2, attempts[1].2, "the retry ran elsewhere");
            assert!(
                ran.stderr.contains("attempt 1") || ran.stdout.contains("attempt 1"),
                "the retry was reported: {ran:?}"
            );
        } else {
            assert_eq!(
                attempts.len(),
                1,
                "exit {exit_code} is not retried: {attempts:?}"
            );
            assert_eq!((attempts[0].0, attempts[0].1), failed);
        }
    }
}
