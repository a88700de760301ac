//! Who decides the next block.
//!
//! An [`Orderer`] turns the mempool and the committed tip into a *decided* block; it never
//! applies or stores anything. The node hands every decided block to one shared commit path
//! (apply with the ledger, write with the store, publish), so the solo orderer and a BFT engine
//! differ only in how they decide:
//!
//! - [`SoloOrderer`] — one in-process validator: every `block_ms` it proposes from the mempool
//!   and, being the only voter, decides its own proposal at once.
//! - a BFT orderer (Malachite, later) proposes from the mempool when it leads a round, votes on
//!   others' proposals, and returns whichever block the network decided — possibly one holding
//!   transactions this node never saw (the commit path verifies those signatures).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gpunet_protocol::{Block, BlockHeader, Hash, SignedTx};

use crate::chain::Shared;

/// The last committed block, which the next decided block must extend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    pub chain_id: String,
    pub height: u64,
    pub time_ms: u64,
    pub block_hash: Hash,
    pub state_root: Hash,
}

impl ChainTip {
    /// A block extending this tip with `txs` at `time_ms`, clamped so time never goes back.
    pub fn propose(&self, txs: Vec<SignedTx>, time_ms: u64) -> Block {
        Block {
            header: BlockHeader {
                chain_id: self.chain_id.clone(),
                height: self
                    .height
                    .checked_add(1)
                    .expect("a chain of 2^64 blocks is out of reach"),
                time_ms: time_ms.max(self.time_ms),
                prev_hash: self.block_hash,
                txs_hash: Block::txs_hash(&txs),
                prev_state_root: self.state_root,
            },
            txs,
        }
    }
}

/// What an orderer may read from the node while it decides.
#[derive(Clone)]
pub struct OrdererContext {
    shared: Arc<Shared>,
}

impl OrdererContext {
    pub(crate) fn new(shared: Arc<Shared>) -> OrdererContext {
        OrdererContext { shared }
    }

    /// The node's shared state, for orderers inside this crate (state checks, the store).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The last committed block. Between two calls to [`Orderer::next_block`] the node commits
    /// exactly the block the first call returned.
    pub fn tip(&self) -> ChainTip {
        let tip = self.shared.tip();
        ChainTip {
            chain_id: tip.state.chain_id.clone(),
            height: tip.state.height,
            time_ms: tip.state.time_ms,
            block_hash: tip.block_hash,
            state_root: tip.state_root,
        }
    }

    /// Up to `max` pending transactions in the order a block should hold them. They stay in
    /// the mempool until a block holding them is committed.
    pub fn pending_txs(&self, max: usize) -> Vec<SignedTx> {
        self.shared.mempool().select(max)
    }
}

/// Why an orderer could not decide a block.
#[derive(Debug, thiserror::Error)]
pub enum OrdererError {
    /// The orderer cannot go on (lost its peers for good, bad configuration, …).
    #[error("orderer {orderer} stopped: {reason}")]
    Stopped {
        orderer: &'static str,
        reason: String,
    },
}

/// Decides the sequence of blocks.
///
/// The node calls [`Orderer::next_block`] in a loop, committing each returned block before the
/// next call. The future must be cancel-safe: on shutdown the node drops it unfinished.
pub trait Orderer: Send + 'static {
    /// Short name shown by `/v1/status` (`solo`).
    fn name(&self) -> &'static str;

    /// Waits until the next block is decided and returns it. It must extend `ctx.tip()`;
    /// a block that does not stops the node rather than fork it.
    fn next_block(
        &mut self,
        ctx: &OrdererContext,
    ) -> impl Future<Output = Result<Block, OrdererError>> + Send;
}

/// The embedded single-validator orderer: a block every `block_ms`, empty or not, because block
/// time is what drives settlement.
#[derive(Debug)]
pub struct SoloOrderer {
    interval: tokio::time::Interval,
    max_txs_per_block: usize,
}

impl SoloOrderer {
    /// Must be called inside a Tokio runtime (it arms a timer).
    pub fn new(block_ms: u64, max_txs_per_block: usize) -> SoloOrderer {
        let period = Duration::from_millis(block_ms.max(1));
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        // After a slow commit, wait a full period rather than bursting to catch up.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        SoloOrderer {
            interval,
            max_txs_per_block,
        }
    }
}

/// Milliseconds since the Unix epoch by the wall clock; 0 if the clock is before 1970.
pub(crate) fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Orderer for SoloOrderer {
    fn name(&self) -> &'static str {
        "solo"
    }

    async fn next_block(&mut self, ctx: &OrdererContext) -> Result<Block, OrdererError> {
        // `Interval::tick` is cancel-safe; everything after it is synchronous.
        self.interval.tick().await;
        let tip = ctx.tip();
        let txs = ctx.pending_txs(self.max_txs_per_block);
        Ok(tip.propose(txs, wall_clock_ms()))
    }
}
