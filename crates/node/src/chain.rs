//! The node's view of the chain and the one path every decided block takes to become committed:
//! check it extends the tip, apply it with the ledger, write it to the store in one durable
//! transaction, and only then publish it — the new state to readers, the pruned mempool, and
//! the block's events to subscribers.
//!
//! Whatever orderer decided the block (solo now, BFT later), [`Committer::commit`] is the same.
//! Readers never wait on block production: they clone an `Arc` of the published [`Tip`] and
//! read from it while the committer works on its own copy. The copies share structure (the
//! ledger's tables are persistent maps), so publishing a tip costs O(1), not a state copy; the
//! store writes only the entities the block changed and folds them into the Merkle root.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Instant;

use gpunet_api::node::EventEnvelope;
use gpunet_ledger::State;
use gpunet_protocol::{Address, Block, BlockOutcome, Hash, SignedTx};
use gpunet_store::{BlockRecord, Store, StoreError};
use tokio::sync::broadcast;

use crate::mempool::{Mempool, MempoolLimits, Origin};
use crate::metrics::NodeMetrics;

/// Blocks of events kept for subscribers that fall behind; one more and they lag.
pub(crate) const EVENT_CHANNEL_BLOCKS: usize = 256;
/// Transactions remembered as verified outside the mempool ([`VerifiedTxs`]): a few blocks at
/// the default block limit.
const VERIFIED_TXS_REMEMBERED: usize = 20_000;

/// Hashes of transactions whose signatures this node verified outside its mempool (in a
/// proposal it checked), so that committing the block does not verify them again. A hash names
/// the exact bytes, signature included. The oldest are forgotten first.
#[derive(Debug, Default)]
pub(crate) struct VerifiedTxs {
    hashes: HashSet<Hash>,
    order: VecDeque<Hash>,
}

impl VerifiedTxs {
    pub(crate) fn contains(&self, hash: &Hash) -> bool {
        self.hashes.contains(hash)
    }

    pub(crate) fn remember(&mut self, hashes: impl IntoIterator<Item = Hash>) {
        for h in hashes {
            if self.hashes.insert(h) {
                self.order.push_back(h);
            }
        }
        while self.order.len() > VERIFIED_TXS_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.hashes.remove(&old);
            }
        }
    }
}

/// The committed chain as readers see it: the state after the last committed block.
#[derive(Debug)]
pub(crate) struct Tip {
    pub state: State,
    /// Hash of the last committed block; the store's genesis block hash at height 0.
    pub block_hash: Hash,
    pub state_root: Hash,
}

/// The events of one committed block, in order: each transaction's, then end-of-block ones.
#[derive(Debug, Clone)]
pub(crate) struct BlockEvents {
    pub height: u64,
    pub events: Vec<EventEnvelope>,
}

impl BlockEvents {
    pub(crate) fn from_outcome(height: u64, time_ms: u64, outcome: BlockOutcome) -> BlockEvents {
        let mut events = Vec::new();
        for r in outcome.receipts {
            let tx_hash = r.tx_hash;
            events.extend(r.events.into_iter().map(|event| EventEnvelope {
                height,
                time_ms,
                tx_hash: Some(tx_hash),
                event,
            }));
        }
        events.extend(
            outcome
                .end_block_events
                .into_iter()
                .map(|event| EventEnvelope {
                    height,
                    time_ms,
                    tx_hash: None,
                    event,
                }),
        );
        BlockEvents { height, events }
    }
}

/// Everything the node's tasks share.
pub(crate) struct Shared {
    pub chain_id: String,
    pub block_ms: u64,
    pub orderer: &'static str,
    pub store: Arc<Store>,
    tip: RwLock<Arc<Tip>>,
    /// Lock order: `mempool` before `tip` (admission reads the tip under the mempool lock, the
    /// committer swaps the tip under it), so no admitted transaction is checked against a state
    /// older than the one its pruning used.
    mempool: Mutex<Mempool>,
    /// Never locked together with `mempool`.
    verified: Mutex<VerifiedTxs>,
    pub events: broadcast::Sender<Arc<BlockEvents>>,
    pub metrics: NodeMetrics,
    /// Who may send batches marked as forwarded (the other validators' consensus keys); set
    /// once by a validator at start, empty on a solo node.
    forwarders: OnceLock<BTreeSet<Address>>,
    /// The network's validators with their voting power, shown on `/v1/status` and the
    /// dashboard; set once by a validator at start, unset on a solo node.
    validators: OnceLock<Vec<gpunet_api::node::ValidatorView>>,
    /// Where the commit certificates of decided heights are kept: set once by a BFT orderer
    /// when it starts; none on a solo node.
    certificates: OnceLock<Arc<dyn CertificateSource>>,
    /// State snapshots being served to syncing nodes.
    pub snapshots: Mutex<crate::statesync::Snapshots>,
}

/// Why a commit certificate cannot be had.
#[derive(Debug)]
pub(crate) enum CertificateError {
    /// This node decides blocks alone and keeps no certificates.
    NotKept,
    Unreadable(String),
}

/// Commit certificates by height, as the consensus engine keeps them (encoded).
pub(crate) trait CertificateSource: Send + Sync {
    fn certificate(&self, height: u64) -> Result<Option<Vec<u8>>, String>;
}

impl Shared {
    pub(crate) fn new(
        store: Arc<Store>,
        tip: Tip,
        block_ms: u64,
        orderer: &'static str,
        limits: MempoolLimits,
        metrics: NodeMetrics,
    ) -> Shared {
        let (events, _) = broadcast::channel(EVENT_CHANNEL_BLOCKS);
        metrics.set_height(tip.state.height);
        Shared {
            chain_id: tip.state.chain_id.clone(),
            block_ms,
            orderer,
            store,
            tip: RwLock::new(Arc::new(tip)),
            mempool: Mutex::new(Mempool::new(limits)),
            verified: Mutex::new(VerifiedTxs::default()),
            events,
            metrics,
            forwarders: OnceLock::new(),
            validators: OnceLock::new(),
            certificates: OnceLock::new(),
            snapshots: Mutex::new(crate::statesync::Snapshots::default()),
        }
    }

    /// Names where commit certificates are kept; only the first call counts.
    pub(crate) fn set_certificates(&self, source: Arc<dyn CertificateSource>) {
        let _ = self.certificates.set(source);
    }

    /// The commit certificate of `height`: `Ok(None)` if there is none, `Err` on a solo node.
    pub(crate) fn certificate(&self, height: u64) -> Result<Option<Vec<u8>>, CertificateError> {
        let source = self.certificates.get().ok_or(CertificateError::NotKept)?;
        source
            .certificate(height)
            .map_err(CertificateError::Unreadable)
    }

    /// Names the validators whose signed batches count as forwarded; only the first call counts.
    pub(crate) fn set_forwarders(&self, forwarders: BTreeSet<Address>) {
        let _ = self.forwarders.set(forwarders);
    }

    /// Names the network's validators; only the first call counts.
    pub(crate) fn set_validators(&self, validators: Vec<gpunet_api::node::ValidatorView>) {
        let _ = self.validators.set(validators);
    }

    /// The network's validators with their voting power; empty on a solo node.
    pub(crate) fn validators(&self) -> &[gpunet_api::node::ValidatorView] {
        self.validators.get().map_or(&[], Vec::as_slice)
    }

    /// Whether `signer` may forward transactions to this node.
    pub(crate) fn is_forwarder(&self, signer: &Address) -> bool {
        self.forwarders.get().is_some_and(|f| f.contains(signer))
    }

    /// The last committed state. Cheap: an `Arc` clone under a read lock held for no longer.
    pub(crate) fn tip(&self) -> Arc<Tip> {
        // A poisoned lock means a writer panicked mid-swap; the swap is a single assignment, so
        // the value inside is still a whole tip.
        Arc::clone(&self.tip.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Transactions verified outside the mempool; never lock it while holding the mempool.
    pub(crate) fn verified_txs(&self) -> MutexGuard<'_, VerifiedTxs> {
        // Each change is whole before the lock is released.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// For each hash, whether this node has verified that transaction's signature: its mempool
    /// admitted it, or it was in a proposal this node checked.
    pub(crate) fn signatures_verified(&self, hashes: &[Hash]) -> Vec<bool> {
        let mut known: Vec<bool> = {
            let mempool = self.mempool();
            hashes.iter().map(|h| mempool.contains(h)).collect()
        };
        let verified = self.verified_txs();
        for (k, h) in known.iter_mut().zip(hashes) {
            *k = *k || verified.contains(h);
        }
        known
    }

    /// Admits a transaction whose signature was verified, against the current tip.
    pub(crate) fn admit(
        &self,
        tx: SignedTx,
        origin: Origin,
    ) -> Result<Hash, gpunet_protocol::Rejection> {
        let mut mempool = self.mempool();
        let tip = self.tip();
        let result = mempool.admit_verified_from(tx, &tip.state, origin);
        self.metrics.set_mempool_size(mempool.len());
        result
    }
}

/// Why a decided block could not be committed. Each stops block production: the node must
/// never run ahead of what the store holds.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The block does not extend the committed tip (wrong chain, height, parent, state root,
    /// time or transactions hash).
    #[error("decided block at height {height} does not extend the tip: {why}")]
    NotExtendingTip { height: u64, why: String },
    /// A transaction the mempool never verified carries a bad signature.
    #[error("decided block at height {height} holds transaction {tx_hash} with a bad signature")]
    BadSignature { height: u64, tx_hash: Hash },
    /// The durable write failed; the block is not committed.
    #[error("cannot write block {height} to the store")]
    Store {
        height: u64,
        #[source]
        source: StoreError,
    },
}

/// Owns the working copy of the state and turns decided blocks into committed ones.
pub(crate) struct Committer {
    shared: Arc<Shared>,
    /// Equal to the published tip's state between commits.
    state: State,
    block_hash: Hash,
    state_root: Hash,
}

impl Committer {
    pub(crate) fn new(shared: Arc<Shared>) -> Committer {
        let tip = shared.tip();
        Committer {
            state: tip.state.clone(),
            block_hash: tip.block_hash,
            state_root: tip.state_root,
            shared,
        }
    }

    fn check_extends_tip(&self, block: &Block) -> Result<(), CommitError> {
        let h = &block.header;
        let fail = |why: String| {
            Err(CommitError::NotExtendingTip {
                height: h.height,
                why,
            })
        };
        if h.chain_id != self.state.chain_id {
            return fail(format!("chain id {:?}", h.chain_id));
        }
        if Some(h.height) != self.state.height.checked_add(1) {
            return fail(format!("the tip is at height {}", self.state.height));
        }
        if h.prev_hash != self.block_hash {
            return fail(format!(
                "parent {} is not the tip {}",
                h.prev_hash, self.block_hash
            ));
        }
        if h.prev_state_root != self.state_root {
            return fail(format!(
                "prev_state_root {} is not the tip's {}",
                h.prev_state_root, self.state_root
            ));
        }
        if h.time_ms < self.state.time_ms {
            return fail(format!(
                "time {} is before the tip's {}",
                h.time_ms, self.state.time_ms
            ));
        }
        if h.txs_hash != Block::txs_hash(&block.txs) {
            return fail("txs_hash does not match the transactions".to_owned());
        }
        Ok(())
    }

    /// Commits a decided block: apply, write, publish. On error nothing was published and the
    /// caller must stop producing blocks (the working state may be ahead of the store).
    pub(crate) fn commit(&mut self, block: Block) -> Result<(), CommitError> {
        self.check_extends_tip(&block)?;
        let height = block.header.height;
        let tx_hashes: Vec<Hash> = block.txs.iter().map(SignedTx::hash).collect();
        // Transactions this node admitted or checked in the proposal were verified then;
        // verify the rest.
        let verified = self.shared.signatures_verified(&tx_hashes);
        for ((tx, hash), verified) in block.txs.iter().zip(&tx_hashes).zip(verified) {
            if !verified && tx.verify_signature().is_err() {
                return Err(CommitError::BadSignature {
                    height,
                    tx_hash: *hash,
                });
            }
        }

        let started = Instant::now();
        let first_new_order = self.state.next_order_id;
        let outcome = gpunet_ledger::apply_block(&mut self.state, &block.ctx(), &block.txs);
        let changes = self.state.take_changes();
        let history = changes.history();
        let mut lookups: Vec<gpunet_store::LookupEntry> =
            crate::history::block_lookups(first_new_order, &self.state, &changes)
                .into_iter()
                .map(|key| (key, Vec::new()))
                .collect();
        lookups.extend(crate::account_txs::block_entries(
            height,
            block.header.time_ms,
            &block.txs,
            &tx_hashes,
            &outcome.receipts,
        ));
        lookups.extend(crate::challenge_history::block_entries(
            height,
            block.header.time_ms,
            &outcome,
        ));
        self.shared.metrics.observe_apply(started.elapsed());

        let block_hash = block.header.hash();
        let block_bytes = borsh::to_vec(&block).expect("borsh encoding into a Vec cannot fail");
        let receipt_bytes = borsh::to_vec(&outcome).expect("borsh encoding into a Vec cannot fail");
        let raw_hashes: Vec<[u8; 32]> = tx_hashes.iter().map(|h| h.0).collect();
        let writing = Instant::now();
        let state_root = self
            .shared
            .store
            .commit_block(&BlockRecord {
                height,
                block_hash: block_hash.0,
                block: &block_bytes,
                receipts: &receipt_bytes,
                changes: &changes.state,
                tx_hashes: &raw_hashes,
                history: &history,
                lookups: &lookups,
            })
            .map(Hash)
            .map_err(|source| CommitError::Store { height, source })?;
        self.shared.metrics.observe_commit(writing.elapsed());
        self.block_hash = block_hash;
        self.state_root = state_root;

        // Durable: now readers, the mempool and subscribers may see it. The clone shares the
        // state's tables (persistent maps): O(1), whatever the state's size.
        let tip = Arc::new(Tip {
            state: self.state.clone(),
            block_hash,
            state_root,
        });
        {
            let mut mempool = self.shared.mempool();
            *self.shared.tip.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&tip);
            mempool.on_commit(&block.txs, &tip.state);
            self.shared.metrics.set_mempool_size(mempool.len());
        }
        self.shared.metrics.record_block(height, &outcome);
        let events = BlockEvents::from_outcome(height, block.header.time_ms, outcome);
        // No subscribers is not an error.
        let _ = self.shared.events.send(Arc::new(events));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_transactions_are_remembered_up_to_the_bound_oldest_forgotten_first() {
        let h = |i: usize| Hash::of(&i.to_le_bytes());
        let mut v = VerifiedTxs::default();
        v.remember((0..VERIFIED_TXS_REMEMBERED + 10).map(h));
        assert!(!v.contains(&h(9)));
        assert!(v.contains(&h(10)));
        assert!(v.contains(&h(VERIFIED_TXS_REMEMBERED + 9)));
        // Remembered again: one entry still.
        v.remember([h(10)]);
        assert_eq!(v.order.len(), VERIFIED_TXS_REMEMBERED);
        assert_eq!(v.hashes.len(), VERIFIED_TXS_REMEMBERED);
    }
}
