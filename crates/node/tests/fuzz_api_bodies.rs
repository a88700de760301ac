//! Fuzzes the node API's request bodies: arbitrary bytes and mutations of the seeds in
//! `fuzz/corpus/api_bodies/` sent to every POST route of a real node over HTTP, and the same
//! bytes decoded as every request type of the API (`SubmitTx`, `SubmitTxBatch`,
//! `ManifestDelivery`).
//!
//! Properties: the node never answers 5xx; every error is the JSON `ErrorBody` with a name and a
//! message; every seed decodes as JSON. `GPUNET_FUZZ_CASES` sets the cases (see
//! `gpunet_testkit::fuzz`).

use std::sync::atomic::{AtomicU32, Ordering};

use gpunet_api::ErrorBody;
use gpunet_api::node::{SubmitTx, SubmitTxBatch};
use gpunet_api::provider::ManifestDelivery;
use gpunet_ledger::{Genesis, Params};
use gpunet_node::{MempoolLimits, NodeConfig};
use gpunet_testkit::fuzz;
use proptest::prelude::*;

const POST_ROUTES: &[&str] = &["/v1/txs", "/v1/txs/batch"];

fn seeds() -> Vec<Vec<u8>> {
    fuzz::corpus("api_bodies")
        .into_iter()
        .map(|(_, b)| b)
        .collect()
}

/// Decoding never panics, and what decodes encodes back to JSON that decodes the same.
fn check_decoding(bytes: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<SubmitTx>(bytes) {
        let again = serde_json::to_vec(&v).expect("encodes");
        assert_eq!(serde_json::from_slice::<SubmitTx>(&again).ok(), Some(v));
    }
    if let Ok(v) = serde_json::from_slice::<SubmitTxBatch>(bytes) {
        let again = serde_json::to_vec(&v).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<SubmitTxBatch>(&again).ok(),
            Some(v)
        );
    }
    if let Ok(v) = serde_json::from_slice::<ManifestDelivery>(bytes) {
        let again = serde_json::to_vec(&v).expect("encodes");
        let back = serde_json::from_slice::<ManifestDelivery>(&again).expect("decodes");
        assert_eq!(back.sealed_hex, v.sealed_hex);
    }
}

#[test]
fn every_seed_body_is_json() {
    for (name, bytes) in fuzz::corpus("api_bodies") {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .unwrap_or_else(|e| panic!("seed {name} is not JSON: {e}"));
    }
}

#[test]
fn arbitrary_and_mutated_bodies_decode_or_fail_without_panicking() {
    let mut runner = fuzz::runner(fuzz::cases(3_000));
    if let Err(e) = runner.run(&fuzz::bytes_or_mutated(seeds(), 256), |bytes| {
        check_decoding(&bytes);
        Ok(())
    }) {
        panic!("{e}\nadd the minimal input above to fuzz/corpus/api_bodies/");
    }
}

#[test]
fn arbitrary_and_mutated_bodies_get_json_errors_never_a_server_error() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let home = tempfile::tempdir().expect("a temporary directory");
    let node = rt
        .block_on(gpunet_node::start(NodeConfig {
            home: home.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("valid address"),
            block_ms: 500,
            genesis: Genesis {
                chain_id: "gpunet-fuzz".into(),
                genesis_time_ms: 1_700_000_000_000,
                params: Params::default(),
                accounts: Vec::new(),
            },
            mempool: MempoolLimits::default(),
        }))
        .expect("node starts");
    let base = format!("http://{}", node.api_addr());
    let http = reqwest::Client::new();
    let content_type = prop_oneof![
        Just(Some("application/json")),
        Just(Some("text/plain")),
        Just(None),
    ];
    let strategy = (
        prop::sample::select(POST_ROUTES),
        content_type,
        fuzz::bytes_or_mutated(seeds(), 256),
    );
    // Each case is an HTTP round trip: fewer of them than of the pure targets.
    let cases = fuzz::cases(1_000);
    let mut runner = fuzz::runner(cases);
    // Counts answers, so the test fails if the requests never reach the node.
    let answered = AtomicU32::new(0);
    let result = runner.run(&strategy, |(route, content_type, body)| {
        rt.block_on(async {
            let mut request = http.post(format!("{base}{route}")).body(body.0.clone());
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            let response = request.send().await.expect("the node answers");
            let status = response.status();
            let bytes = response.bytes().await.expect("a body");
            answered.fetch_add(1, Ordering::Relaxed);
            assert!(
                !status.is_server_error(),
                "{route} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            if !status.is_success() {
                let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!(
                        "{route} answered {status} without an ErrorBody ({e}): {}",
                        String::from_utf8_lossy(&bytes)
                    )
                });
                assert!(!err.name.is_empty() && !err.message.is_empty(), "{err:?}");
            }
        });
        Ok(())
    });
    rt.block_on(node.shutdown());
    if let Err(e) = result {
        panic!("{e}\nadd the minimal input above to fuzz/corpus/api_bodies/");
    }
    assert!(
        answered.load(Ordering::Relaxed) >= cases,
        "too few requests were answered"
    );
}
