//! Blocks, the context the ledger applies them in, and per-transaction receipts.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{Event, Hash, Rejection, SignedTx};

/// Everything about a block the ledger may depend on besides its transactions. Time and
/// randomness reach the ledger only through here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockCtx {
    pub height: u64,
    /// Block time in milliseconds since the Unix epoch, agreed by consensus; never decreases.
    pub time_ms: u64,
    /// Seed for any deterministic randomness: the previous block's hash.
    pub seed: Hash,
}

/// A block's header; its hash is the block's hash.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BlockHeader {
    pub chain_id: String,
    pub height: u64,
    pub time_ms: u64,
    pub prev_hash: Hash,
    /// BLAKE3 over the concatenated transaction hashes.
    pub txs_hash: Hash,
    /// State root after the previous block (the state this block applies to).
    pub prev_state_root: Hash,
}

/// An ordered list of transactions with its header.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTx>,
}

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        Hash::of(&borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail"))
    }
}

impl Block {
    /// BLAKE3 over the transactions' hashes, in order.
    pub fn txs_hash(txs: &[SignedTx]) -> Hash {
        let mut h = blake3::Hasher::new();
        for tx in txs {
            h.update(&tx.hash().0);
        }
        Hash(*h.finalize().as_bytes())
    }

    /// The context the ledger applies this block in.
    pub fn ctx(&self) -> BlockCtx {
        BlockCtx {
            height: self.header.height,
            time_ms: self.header.time_ms,
            seed: self.header.prev_hash,
        }
    }
}

/// What happened to one transaction of a block.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_hash: Hash,
    /// `None` if applied; the rejection otherwise (and then nothing changed).
    pub rejection: Option<Rejection>,
    pub events: Vec<Event>,
}

/// Everything applying a block produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockOutcome {
    /// One per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// Events from end-of-block rules (matching, settlement, expiry).
    pub end_block_events: Vec<Event>,
}
