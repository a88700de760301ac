//! Hardware challenges on chain (ADR 0009): what crosses the chain when a provider proves the
//! hardware it lists — the throughput bands that size a challenge and set its deadline, and the
//! opened leaves of the commitment to its answer.
//!
//! A challenge is two `n × n` int8 matrices from a seed the ledger draws. The provider commits
//! to their product (`CommitChallenge`: the root of a Merkle tree over it) before a deadline
//! set by the claimed hardware's band, then opens the leaves holding the entries a later
//! block's seed samples (`OpenChallenge`), which the ledger checks exactly
//! (`gpunet_verify::challenge`).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::Hash;

/// Entries of the product in one leaf of the commitment (`gpunet_verify::commit`).
pub const LEAF_ENTRIES: usize = 16;
/// Most leaves one `OpenChallenge` may open, to stay well under the transaction size limit
/// (a leaf is 64 bytes and a path of up to 34 hashes).
pub const MAX_OPENINGS_PER_TX: usize = 10;

/// How fast a unit of a hardware class multiplies int8 matrices: one GPU of a family
/// (`h100`), or one CPU core (`cpu`). A listing's challenge is sized, and its deadline set,
/// from the sum of its units' bands.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ThroughputBand {
    /// A GPU family (`h100`, `a100`, …) or `cpu`.
    pub class: String,
    /// Int8 multiply-add operations (2 per multiply-add) per millisecond one unit sustains.
    pub ops_per_ms: u64,
}

/// One opened leaf of a challenge's commitment: the leaf's index, its 16 entries, and the
/// sibling hashes on its way to the root (`None` where its node was carried up unpaired).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ChallengeOpening {
    pub leaf: u64,
    pub entries: [i32; LEAF_ENTRIES],
    pub path: Vec<Option<Hash>>,
}
