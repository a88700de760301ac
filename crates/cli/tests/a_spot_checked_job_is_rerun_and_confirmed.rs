//! A spot-checked job (`verification: { mode: spot_check }`, ADR 0010) on a network of real
//! processes — one validator and two `gpunet provider start` — as a user runs it. Both providers
//! are new, so on probation: every run is checked. The cheaper runs the job and reports a result
//! tag, not its digest; the ledger draws the check and the other provider reruns the job, handed
//! the manifest by the still-running `gpunet job submit --wait`; the tags match, so the second
//! agent reveals the digest behind its tag when the ledger asks; the ledger confirms the result
//! (`agreed`), closes the order on a run that agreed, and both providers earn a verified run.
//! Past probation, an undrawn check leaves the result disputable, and `gpunet job dispute`
//! has it rerun and compared.

mod binary;

use std::time::Duration;

use binary::User;
use gpunet_api::node::OrderState;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{OrderId, result_tag};

const SPEC: &str = r#"version: 1
name: checked
run:
  command: ["sh", "-c", "echo 42 > \"$GPUNET_OUTPUTS/answer.txt\""]
resources: { cpu: 0.5, memory: 64Mi, disk: 64Mi }
pricing: { max_per_hour: "1.00", deposit: "1.00" }
limits: { max_duration: 10m }
outputs: true
verification: { mode: spot_check }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_checked_job_on_probation_is_rerun_elsewhere_and_confirmed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let network = binary::Network::start(&user, base, 2, 200, &[]).await;
    let client = NodeClient::new(&network.api);
    let _cheap = network.provider(&user, base, 0, "0.10");
    let _dear = network.provider(&user, base, 1, "0.20");
    network.until_providers(2).await;
    let addresses: Vec<_> = (0..2)
        .map(|i| {
            KeyFile::load(&network.key(&format!("provider-{i}")))
                .expect("provider key")
                .address()
        })
        .collect();

    std::fs::write(base.join("checked.yaml"), SPEC).expect("spec written");
    let submitted = binary::run(
        network.tenant(&user, &["job", "submit", "checked.yaml", "--wait"], base),
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");
    let said = format!("{}{}", submitted.stdout, submitted.stderr);
    assert!(
        said.contains("reruns the job on another provider")
            && said.contains("verification: agreed (2 run(s))"),
        "the user is told of the check and its verdict: {said}"
    );

    let order = client.order(OrderId(1)).await.expect("the order");
    assert_eq!(order.state, OrderState::Closed);
    let v = order.verification.as_ref().expect("a verified order");
    assert_eq!(v.outcome.as_deref(), Some("agreed"), "{v:?}");
    assert_eq!(v.runs.len(), 2, "{v:?}");
    // The two runs: one per provider, the same tag, the second revealed the digest behind it.
    let providers: Vec<_> = v.runs.iter().map(|r| r.provider).collect();
    assert!(providers.contains(&addresses[0]) && providers.contains(&addresses[1]));
    assert_eq!(v.runs[0].tag, v.runs[1].tag);
    assert!(!v.runs[0].reveal_due && v.runs[1].reveal_due && v.runs[1].revealed);
    assert!(v.runs.iter().all(|r| !r.wrong));
    // The tag is the output listing's digest, bound to the order: the first lease reported it.
    let first = client.lease(v.runs[0].lease).await.expect("the first run");
    let reported = first
        .result
        .as_ref()
        .and_then(|r| r.output_digest)
        .expect("a tag");
    assert_eq!(reported, v.runs[0].tag);
    let listing =
        gpunet_api::provider::OutputListing::digest_of(&[gpunet_api::provider::OutputFile {
            path: "answer.txt".to_owned(),
            size: 3,
            digest: gpunet_protocol::Hash::of(b"42\n"),
        }]);
    assert_eq!(reported, result_tag(OrderId(1), &listing));
    for a in &addresses {
        let p = client
            .provider(a)
            .await
            .expect("provider")
            .expect("registered");
        assert_eq!(p.verified_runs.len(), 1, "{p:?}");
        assert_eq!(p.verified_runs[0].class, "cpu");
        assert_eq!(p.verified_runs[0].runs, 1);
        assert!(p.reputation_ppm > 500_000, "an agreed run raised it: {p:?}");
        assert!(p.slashed.is_zero());
    }
}

/// Past probation, with checks made rare, the spot check is not drawn: `job submit --wait`
/// ends at `disputable`, naming `gpunet job dispute`. The tenant disputes; the job is rerun on
/// the other provider (the first is excluded), handed the manifest by `job dispute`; the
/// results agree, so the tenant's escrow pays for the rerun, and nobody is slashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchecked_result_disputed_by_its_tenant_is_rerun_and_confirmed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    // No probation, no floor on the draw, and a gpn worth so much that the stake at risk
    // dwarfs any payment: the check is (all but) never drawn.
    let params = [
        "probation_runs=0",
        "spot_check_min_ppm=0",
        "spot_check_record_ppm=0",
        "gpn_reference_price=1000000",
    ];
    let network = binary::Network::start(&user, base, 2, 200, &params).await;
    let client = NodeClient::new(&network.api);
    let _cheap = network.provider(&user, base, 0, "0.10");
    let _dear = network.provider(&user, base, 1, "0.20");
    network.until_providers(2).await;

    std::fs::write(base.join("checked.yaml"), SPEC).expect("spec written");
    let submitted = binary::run(
        network.tenant(&user, &["job", "submit", "checked.yaml", "--wait"], base),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");
    let said = format!("{}{}", submitted.stdout, submitted.stderr);
    assert!(
        said.contains("verification: unchecked") && said.contains("gpunet job dispute 1"),
        "the tenant is told the result was not checked and how to dispute it: {said}"
    );
    let order = client.order(OrderId(1)).await.expect("the order");
    let v = order.verification.as_ref().expect("a verified order");
    assert_eq!(v.stage, "disputable", "{v:?}");
    assert_eq!(v.runs.len(), 1);
    let first = v.runs[0].clone();

    let disputed = binary::run(
        network.tenant(&user, &["job", "dispute", "1"], base),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(disputed.code, Some(0), "{disputed:?}");
    let said = format!("{}{}", disputed.stdout, disputed.stderr);
    assert!(
        said.contains("verification: agreed (2 run(s))"),
        "the rerun confirmed the result: {said}"
    );
    let order = client.order(OrderId(1)).await.expect("the order");
    assert_eq!(order.state, OrderState::Closed);
    let v = order.verification.as_ref().expect("a verified order");
    assert_eq!(v.outcome.as_deref(), Some("agreed"), "{v:?}");
    assert_eq!(v.runs.len(), 2, "{v:?}");
    assert_ne!(v.runs[1].provider, first.provider, "rerun elsewhere");
    assert_eq!(v.runs[0].tag, v.runs[1].tag);
    assert!(v.runs.iter().all(|r| !r.wrong));
    // The tenant paid for both runs, the rerun included; nobody was slashed.
    for run in &v.runs {
        let lease = client.lease(run.lease).await.expect("a run's lease");
        assert!(!lease.paid.is_zero(), "{lease:?}");
        let p = client
            .provider(&run.provider)
            .await
            .expect("provider")
            .expect("registered");
        assert!(p.slashed.is_zero(), "{p:?}");
    }
    // A second dispute is refused: the order has ended, nothing is left to dispute.
    let again = binary::run(
        network.tenant(&user, &["job", "dispute", "1"], base),
        Duration::from_secs(60),
    )
    .await;
    assert_ne!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("order_not_open"), "{again:?}");
}
