//! Test builders for gpunet: a deterministic [`World`] (keys from seeds, a funded genesis,
//! registered providers, nonce-tracking transaction builders and a block driver that checks the
//! ledger's invariants after every block), fixtures for profiles and order terms, and proptest
//! strategies that mix valid and invalid transactions, and [`fuzz`]: byte mutations and the seed
//! corpus under `fuzz/corpus/` for the fuzz tests; [`procs`]: processes as the host sees them;
//! [`moto`]: a real S3-protocol server (moto's) for the tests of S3 stores.
//!
//! Architecture Invariant: this crate is a dev-dependency only. No binary and no library that
//! ships may depend on it; it holds no randomness of its own (proptest brings the seeds) and
//! reads no clock.

pub mod fixtures;
pub mod fuzz;
pub mod moto;
pub mod outcome;
pub mod procs;
pub mod strategy;
pub mod world;

pub use fixtures::{
    TermsBuilder, a100, ceiling_rates, gpu, h100, order_terms, provider_profile, rates, usd,
};
pub use outcome::OutcomeExt;
pub use strategy::{TxPlan, arb_block, arb_blocks, arb_tx};
pub use world::{DEFAULT_STEP_MS, World, WorldBuilder, key};
