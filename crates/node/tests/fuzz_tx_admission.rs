//! Fuzzes transaction admission without a running node: `SignedTx::decode`, then the mempool's
//! stateless checks (`Mempool::precheck`) and its checks against a funded ledger state
//! (`Mempool::admit`), with arbitrary bytes and mutations of signed transactions of every kind
//! (built here, plus any file in `fuzz/corpus/signed_tx/`).
//!
//! Properties: nothing panics; what decodes re-encodes to the same bytes (borsh is canonical);
//! a refusal is a rejection with a name and a message; every seed still passes the stateless
//! checks.
//! `GPUNET_FUZZ_CASES` sets the cases (see `gpunet_testkit::fuzz`).

use gpunet_node::{Mempool, MempoolLimits};
use gpunet_protocol::{
    Amount, Denom, LeaseId, LeaseResult, Msg, OrderId, SignedTx, UsageReport, WorkloadOutcome,
};
use gpunet_testkit::{World, fuzz, order_terms, provider_profile, usd};

/// A world with tenants and a provider, and one signed transaction of every kind, each with
/// the next nonce of a distinct signer so all of them are admissible together.
fn world_and_seeds() -> (World, Vec<SignedTx>) {
    let mut w = World::builder()
        .tenants(2)
        .providers(1)
        .strangers(3)
        .build();
    let tenant = w.tenant(0);
    let other = w.tenant(1);
    let provider = w.provider_addr(0);
    let s = [w.stranger(0), w.stranger(1), w.stranger(2)];
    let msgs = [
        (
            tenant,
            Msg::Transfer {
                to: other,
                denom: Denom::Usd,
                amount: usd(1),
            },
        ),
        (
            other,
            Msg::CreateOrder {
                terms: order_terms().build(),
            },
        ),
        (
            s[0],
            Msg::RegisterProvider {
                stake: Amount::from_micros(1),
                profile: provider_profile(1_000, 1_024, Vec::new()),
            },
        ),
        (
            provider,
            Msg::PlaceBid {
                order: OrderId(1),
                price_per_hour: usd(1),
            },
        ),
        (
            s[1],
            Msg::CompleteLease {
                lease: LeaseId(1),
                result: LeaseResult {
                    outcome: WorkloadOutcome::Succeeded,
                    exit_code: Some(0),
                    detail: "done".into(),
                    usage: UsageReport::default(),
                    output_digest: None,
                },
            },
        ),
        (s[2], Msg::CancelOrder { order: OrderId(9) }),
    ];
    let seeds = msgs
        .into_iter()
        .map(|(signer, msg)| w.tx(signer, msg))
        .collect();
    (w, seeds)
}

fn all_seeds() -> (World, Vec<Vec<u8>>) {
    let (w, txs) = world_and_seeds();
    let mut seeds: Vec<Vec<u8>> = txs.iter().map(SignedTx::encode).collect();
    if std::env::var("GPUNET_FUZZ_WRITE_SEEDS").is_ok() {
        for (tx, bytes) in txs.iter().zip(&seeds) {
            let path = fuzz::corpus_dir("signed_tx").join(format!("{}.bin", tx.body.msg.kind()));
            std::fs::write(&path, bytes).expect("the corpus is writable");
        }
    }
    seeds.extend(fuzz::corpus("signed_tx").into_iter().map(|(_, b)| b));
    (w, seeds)
}

fn check(w: &World, bytes: &[u8]) {
    if let Ok(tx) = SignedTx::decode(bytes) {
        assert_eq!(tx.encode(), bytes, "borsh decoding is canonical");
    }
    let mut mempool = Mempool::new(MempoolLimits::default());
    match mempool.admit(bytes, &w.state) {
        Ok(hash) => {
            let tx = SignedTx::decode(bytes).expect("admitted bytes decode");
            assert_eq!(hash, tx.hash());
        }
        Err(r) => {
            assert!(!r.name().is_empty() && r.message().len() >= 10, "{r:?}");
        }
    }
}

#[test]
fn every_seed_transaction_passes_the_stateless_checks_and_a_transfer_is_admitted() {
    let (w, txs) = world_and_seeds();
    for tx in &txs {
        let kind = tx.body.msg.kind();
        Mempool::precheck(&tx.encode(), &w.state.chain_id)
            .unwrap_or_else(|r| panic!("the {kind} seed is refused: {r}"));
    }
    // The state decides the rest (a bid needs an order); a funded tenant's transfer must pass.
    let mut mempool = Mempool::new(MempoolLimits::default());
    mempool
        .admit(&txs[0].encode(), &w.state)
        .unwrap_or_else(|r| panic!("the transfer seed is refused: {r}"));
}

#[test]
fn arbitrary_and_mutated_transactions_never_panic_and_refusals_are_rejections() {
    let (w, seeds) = all_seeds();
    let mut runner = fuzz::runner(fuzz::cases(3_000));
    if let Err(e) = runner.run(&fuzz::bytes_or_mutated(seeds, 512), |bytes| {
        check(&w, &bytes);
        Ok(())
    }) {
        panic!("{e}\nadd the minimal input above to fuzz/corpus/signed_tx/ so every run tries it");
    }
}
