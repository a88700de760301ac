//! `compare: tensors` (ADR 0010) on a network of real processes: one validator and three
//! `gpunet provider start`. A replicated job writes a `.npy` whose last element carries noise
//! of a few ulps, so its runs' bytes — and tags — differ while their values agree within the
//! job's `rtol`. Two providers run it; the ledger draws the third as verifier; the still-running
//! `gpunet job submit --wait` fetches each run's outputs (only the tenant can open them) and
//! sends them sealed to the verifier's agent, which checks them against the chain, compares the
//! declared tensors and posts its verdict: `agreed`, the verifier paid its fee.

mod binary;

use std::time::Duration;

use binary::User;
use gpunet_api::node::OrderState;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{Denom, OrderId};

const SPEC: &str = r#"version: 1
name: tensors
run:
  command: ["sh", "-c", "sh \"$GPUNET_INPUTS/make.sh\""]
resources: { cpu: 0.5, memory: 64Mi, disk: 64Mi }
pricing: { max_per_hour: "1.00", deposit: "1.00" }
limits: { max_duration: 10m }
outputs: true
inputs: [make.sh, head.bin]
verification:
  mode: replicas
  replicas: 2
  compare: tensors
  tensors: { outputs: [y.npy], rtol: 1e-3, atol: 0 }
"#;

/// Writes `y.npy` = [1.0, 2.0 + k ulp] with k from the clock (0 to 255): f32 2.0 is
/// `00 00 00 40` little-endian, and k in its lowest byte is at most 6.1e-5 relative, within the
/// spec's `rtol`. Two runs write the same bytes once in 256.
const MAKE: &str = r#"set -e
k=$(( $(date +%N | sed 's/^0*//;s/^$/0/') % 256 ))
cat "$GPUNET_INPUTS/head.bin" > "$GPUNET_OUTPUTS/y.npy"
printf "\\$(printf %03o "$k")\\000\\000\\100" >> "$GPUNET_OUTPUTS/y.npy"
echo "wrote y.npy with noise $k"
"#;

/// The `.npy` header of a little-endian f32 vector of 2 and its first element, 1.0.
fn head() -> Vec<u8> {
    let mut header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }".to_vec();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend(u16::try_from(header.len()).expect("short").to_le_bytes());
    out.extend(header);
    out.extend(1.0f32.to_le_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tensors_job_is_judged_by_a_drawn_verifier_and_agrees() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let network = binary::Network::start(&user, base, 3, 200, &[]).await;
    let client = NodeClient::new(&network.api);
    let _cheap = network.provider(&user, base, 0, "0.10");
    let _middle = network.provider(&user, base, 1, "0.20");
    // Priced above the job's max_per_hour (0.5 core at 2.50 usd/core-hour), so it never runs
    // it: which two providers run a job is a race between their bids (a loaded machine once
    // let this one win), but the verifier is drawn only among those that did not.
    let _verifier = network.provider(&user, base, 2, "2.50");
    network.until_providers(3).await;
    let addresses: Vec<_> = (0..3)
        .map(|i| {
            KeyFile::load(&network.key(&format!("provider-{i}")))
                .expect("provider key")
                .address()
        })
        .collect();
    let usd_before = client
        .account(&addresses[2])
        .await
        .expect("account")
        .balances
        .get(Denom::Usd);

    std::fs::write(base.join("tensors.yaml"), SPEC).expect("spec written");
    std::fs::write(base.join("make.sh"), MAKE).expect("script written");
    std::fs::write(base.join("head.bin"), head()).expect("header written");
    let submitted = binary::run(
        network.tenant(&user, &["job", "submit", "tensors.yaml", "--wait"], base),
        Duration::from_secs(240),
    )
    .await;
    let said = format!("{}{}", submitted.stdout, submitted.stderr);
    assert_eq!(submitted.code, Some(0), "{said}");
    assert!(
        said.contains("sent to verifier") && said.contains("verification: agreed (2 run(s))"),
        "the tenant is told the runs went to a verifier and of its verdict: {said}"
    );

    let status = binary::run(
        network.tenant(&user, &["job", "status", "1"], base),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        status.stdout.contains("verified agreed (2 run(s))"),
        "job status shows the verdict: {status:?}"
    );

    let order = client.order(OrderId(1)).await.expect("the order");
    assert_eq!(order.state, OrderState::Closed);
    let v = order.verification.as_ref().expect("a verified order");
    assert_eq!(v.outcome.as_deref(), Some("agreed"), "{v:?}");
    let runners: Vec<_> = v.runs.iter().map(|r| r.provider).collect();
    assert!(
        runners.contains(&addresses[0]) && runners.contains(&addresses[1]),
        "{v:?}"
    );
    assert!(v.runs.iter().all(|r| !r.wrong), "{v:?}");
    // Different bytes, different tags: nothing to reveal, the verifier alone confirmed them.
    // (Once in 256 the clock gives both runs the same noise: then the second revealed.)
    if v.runs[0].tag == v.runs[1].tag {
        eprintln!("both runs drew the same noise; the second revealed its digest");
        assert!(v.runs[1].revealed, "{v:?}");
    } else {
        assert!(v.runs.iter().all(|r| !r.reveal_due), "{v:?}");
    }
    // The verifier, the one provider that ran nothing, was paid its fee.
    let params = client.params().await.expect("params");
    let usd_after = client
        .account(&addresses[2])
        .await
        .expect("account")
        .balances
        .get(Denom::Usd);
    assert_eq!(
        usd_after,
        usd_before.checked_add(params.verdict_fee).expect("sum"),
        "the verifier earned the verdict fee"
    );
    let verifier = client
        .provider(&addresses[2])
        .await
        .expect("provider")
        .expect("registered");
    assert!(verifier.judging.is_empty(), "{verifier:?}");
    for a in &addresses[..2] {
        let p = client
            .provider(a)
            .await
            .expect("provider")
            .expect("registered");
        assert!(p.slashed.is_zero() && p.reputation_ppm > 500_000, "{p:?}");
    }
}
