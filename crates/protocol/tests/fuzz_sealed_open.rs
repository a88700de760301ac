//! Fuzzes opening sealed bytes (`gpunet_protocol::sealed::open`), the first thing a provider
//! does with a manifest from the network and a tenant with an output file, with arbitrary bytes
//! and mutations of the seeds in `fuzz/corpus/sealed/`.
//!
//! Only the public `open` is called, with a fixed key, so these tests hold whatever
//! construction is behind it. Properties: nothing panics, nothing forged opens, and every
//! refusal says what was wrong. `GPUNET_FUZZ_CASES` sets the cases (see `gpunet_testkit::fuzz`).

use gpunet_protocol::sealed::open;
use gpunet_protocol::{EncryptionSecret, LeaseId, Purpose, SealContext};
use gpunet_testkit::fuzz;
use proptest::prelude::*;

fn check(purpose: Purpose, lease: u64, bytes: &[u8]) {
    let secret = EncryptionSecret::from_bytes([7; 32]);
    let ctx = SealContext {
        purpose,
        lease: LeaseId(lease),
    };
    match open(&secret, ctx, bytes) {
        Ok(plain) => panic!(
            "{} forged bytes opened to {} bytes of plaintext",
            bytes.len(),
            plain.len()
        ),
        Err(e) => assert!(e.to_string().len() >= 10, "says too little: {e:?}"),
    }
}

#[test]
fn arbitrary_and_mutated_sealed_bytes_never_open_or_panic() {
    let seeds: Vec<Vec<u8>> = fuzz::corpus("sealed").into_iter().map(|(_, b)| b).collect();
    let purpose = prop_oneof![Just(Purpose::Manifest), Just(Purpose::Output)];
    let strategy = (purpose, any::<u64>(), fuzz::bytes_or_mutated(seeds, 200));
    let mut runner = fuzz::runner(fuzz::cases(2_000));
    if let Err(e) = runner.run(&strategy, |(purpose, lease, bytes)| {
        check(purpose, lease, &bytes);
        Ok(())
    }) {
        panic!("{e}\nadd the minimal input above to fuzz/corpus/sealed/ so every run tries it");
    }
}

#[test]
fn every_sealed_seed_is_refused_with_a_reason() {
    for (name, bytes) in fuzz::corpus("sealed") {
        let secret = EncryptionSecret::from_bytes([7; 32]);
        let ctx = SealContext {
            purpose: Purpose::Manifest,
            lease: LeaseId(1),
        };
        let err = open(&secret, ctx, &bytes).expect_err(&name);
        assert!(!err.to_string().is_empty(), "{name}");
    }
}
