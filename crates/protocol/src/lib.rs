//! The gpunet protocol: every type that crosses the chain boundary — ids, addresses, amounts,
//! resources, transactions, blocks, events and rejection codes — with their canonical (borsh)
//! encoding, BLAKE3 hashing and ed25519 signatures, the version-1 job spec, and sealed boxes
//! (HPKE, RFC 9180) for manifests, outputs and logs.
//!
//! Architecture Invariant: this crate does no I/O: no files, no network, no clock, no
//! randomness. Callers hand it bytes and keys.

pub mod address;
pub mod amount;
pub mod block;
pub mod challenge;
pub mod event;
pub mod explain;
pub mod ids;
pub mod inputs;
pub mod jobspec;
pub mod merkle;
pub mod rates;
pub mod rejection;
pub mod resources;
pub mod sdl;
pub mod sealed;
pub mod storage;
pub mod stream;
pub mod tx;
pub mod verification;

pub use address::{Address, AddressError};
pub use amount::{Amount, AmountError, Balances, Denom, MICROS_PER_UNIT};
pub use block::{Block, BlockCtx, BlockHeader, BlockOutcome, Receipt};
pub use challenge::{ChallengeOpening, MAX_OPENINGS_PER_TX, ThroughputBand};
pub use event::{Event, LeaseEndReason, VerificationOutcome};
pub use ids::{Hash, IdError, LeaseId, OrderId};
pub use merkle::{Account, Unbonding};
pub use rates::{Rates, deposit_lasts_secs, min_deposit};
pub use rejection::{Rejection, RejectionInfo};
pub use resources::{
    BASELINE_CAPABILITIES, Capabilities, Capacity, Free, GpuRequirement, GpuSlot, ProviderProfile,
    Resources, Runtime, ShapeError, validate_region,
};
pub use sealed::{EncryptionKey, EncryptionSecret, EphemeralSeed, Purpose, SealContext, SealError};
pub use tx::{
    LeaseResult, MAX_TX_BYTES, Msg, OrderTerms, RecoveryPolicy, SignedTx, TxBody, UsageReport,
    WorkloadOutcome,
};
pub use verification::{
    BundleEntry, Compare, MAX_BUNDLE_OUTPUT_BYTES, RunBundle, TensorsSpec, Tol, Verification,
    VerificationMode, VerificationSpec, result_tag,
};
