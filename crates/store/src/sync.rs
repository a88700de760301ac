//! State sync at the store: serving a state in chunks with range proofs, and restoring one.
//!
//! **Serving.** [`Store::snapshot`] pins the head in a redb read transaction: however many
//! blocks commit meanwhile, and whatever they prune, the snapshot reads the entities and the
//! tree of that one height. [`Snapshot::chunk`] reads entities in leaf-key order after a cursor
//! (the [`STATE`] table is keyed by leaf key, so a chunk is one range read) and proves them with
//! `jmt`'s range proof at the snapshot's height.
//!
//! **Restoring.** [`Store::begin_restore`] starts a fresh store at a height, block hash and root
//! the caller has already checked against a decided block (the store cannot tell a true root
//! from a false one). Each [`Restore::add_chunk`] checks the chunk against that root with
//! `jmt`'s `JellyfishMerkleRestore` (the entities so far are the tree's leftmost leaves under
//! it) before writing anything, then writes the chunk's entity rows and the tree nodes it
//! completed in one transaction. [`Restore::finish`] takes the last chunk's word that nothing
//! follows, builds the rest of the tree, checks that its root is the root asked for, and only
//! then records the head. A store interrupted before that is marked and refused on open.
//!
//! A restored store has no blocks, receipts or history below its base height; it commits the
//! next height on top as any store does.
//!
//! [`STATE`]: crate::schema::STATE

use std::ops::Bound::{Excluded, Unbounded};
use std::sync::{Arc, Mutex, PoisonError};

use gpunet_protocol::merkle::{Blake3Hasher, MAX_CHUNK_ENTITIES, RangeProof, StateChunk, leaf_key};
use jmt::restore::{JellyfishMerkleRestore, StateSnapshotReceiver};
use jmt::storage::{Node, NodeBatch, NodeKey, TreeWriter};
use jmt::{JellyfishMerkleTree, KeyHash, RootHash};
use redb::{ReadTransaction, ReadableDatabase};

use crate::schema::{
    self, BLOCK_HASHES, JMT_NODES, META, STATE, STATE_ROOTS, height_key, meta_key,
};
use crate::tree::TreeTables;
use crate::{Head, Store, StoreError, read_head};

fn restore_error(why: impl std::fmt::Display) -> StoreError {
    StoreError::Restore(why.to_string())
}

/// The state at one height, pinned for as long as this lives (see the module doc). Holding it
/// keeps the file from reusing the pages it reads, so a server bounds how many it keeps and for
/// how long.
pub struct Snapshot {
    txn: ReadTransaction,
    head: Head,
}

impl Store {
    /// The state at the head, pinned for chunked reads.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read()?;
        let head = read_head(&txn.open_table(META)?)?.ok_or(StoreError::NotInitialised)?;
        Ok(Snapshot { txn, head })
    }
}

impl Snapshot {
    /// The height, block hash and state root the snapshot is of.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Up to `limit` entities (at most [`MAX_CHUNK_ENTITIES`]) after leaf key `after` (from the
    /// first if `None`), in leaf-key order, with their range proof. `None` once nothing follows
    /// `after`.
    pub fn chunk(
        &self,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Option<StateChunk>, StoreError> {
        let limit = limit.clamp(1, MAX_CHUNK_ENTITIES);
        let state = self.txn.open_table(STATE)?;
        let nodes = self.txn.open_table(JMT_NODES)?;
        let from = after.map_or(Unbounded, Excluded);
        let mut rows = state.range::<[u8; 32]>((from, Unbounded))?;
        let mut entities = Vec::with_capacity(limit.min(1024));
        let mut last_leaf = None;
        for entry in rows.by_ref().take(limit) {
            let (leaf, row) = entry?;
            let row = row.value();
            let (key, value) = schema::entity_row(row)?;
            entities.push((key.to_vec(), value.to_vec()));
            last_leaf = Some(leaf.value());
        }
        let Some(last_leaf) = last_leaf else {
            return Ok(None);
        };
        let last = rows.next().is_none();
        let reader = TreeTables {
            nodes: &nodes,
            state: &state,
        };
        let proof = JellyfishMerkleTree::<_, Blake3Hasher>::new(&reader)
            .get_range_proof(KeyHash(last_leaf), self.head.height)
            .map_err(|e| StoreError::Tree(format!("range proof: {e}")))?;
        let proof = borsh::to_vec(&proof).map_err(|e| StoreError::Tree(e.to_string()))?;
        Ok(Some(StateChunk {
            entities,
            proof,
            last,
        }))
    }
}

/// Where `jmt`'s restore hands the tree nodes it completes: kept until the chunk's transaction
/// writes them.
#[derive(Default)]
struct Collected(Mutex<Vec<(NodeKey, Node)>>);

impl Collected {
    fn take(&self) -> Vec<(NodeKey, Node)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl TreeWriter for Collected {
    fn write_node_batch(&self, batch: &NodeBatch) -> anyhow::Result<()> {
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        out.extend(batch.nodes().iter().map(|(k, n)| (k.clone(), n.clone())));
        Ok(())
    }
}

/// A state being restored into a fresh store; see the module doc.
pub struct Restore<'s> {
    store: &'s Store,
    head: Head,
    tree: JellyfishMerkleRestore<Blake3Hasher>,
    collected: Arc<Collected>,
    last_leaf: Option<[u8; 32]>,
    /// The last chunk has come.
    complete: bool,
    /// A chunk was refused: the restore cannot go on (start again on a fresh store).
    failed: bool,
    entities: u64,
}

impl Store {
    /// Starts restoring the state of chain `chain_id` (with `genesis`, as the node encodes it)
    /// at `head` into this store, which must be empty. `head`'s root must come from a decided
    /// block the caller checked. The store is marked as restoring until [`Restore::finish`].
    pub fn begin_restore(
        &self,
        chain_id: &str,
        genesis: &[u8],
        head: Head,
    ) -> Result<Restore<'_>, StoreError> {
        if self.genesis()?.is_some() {
            return Err(restore_error(format!(
                "{} already holds a chain; a state is restored only into a new store",
                self.path.display()
            )));
        }
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(meta_key::RESTORING, &head.height.to_be_bytes()[..])?;
            meta.insert(meta_key::CHAIN_ID, chain_id.as_bytes())?;
            meta.insert(meta_key::GENESIS, genesis)?;
        }
        txn.commit()?;
        let collected = Arc::new(Collected::default());
        let tree = JellyfishMerkleRestore::new_overwrite(
            Arc::clone(&collected),
            head.height,
            RootHash(head.state_root),
        )
        .map_err(restore_error)?;
        Ok(Restore {
            store: self,
            head,
            tree,
            collected,
            last_leaf: None,
            complete: false,
            failed: false,
            entities: 0,
        })
    }
}

impl Restore<'_> {
    /// Entities restored so far.
    pub fn entities(&self) -> u64 {
        self.entities
    }

    /// The leaf key of the last entity restored: the cursor to ask the next chunk after.
    pub fn cursor(&self) -> Option<[u8; 32]> {
        self.last_leaf
    }

    /// Checks `chunk` against the root and writes it; see the module doc. A refused chunk
    /// writes nothing and ends the restore: every later call is refused too.
    pub fn add_chunk(&mut self, chunk: &StateChunk) -> Result<(), StoreError> {
        if self.failed {
            return Err(restore_error(
                "an earlier chunk was refused; restore again into a new store",
            ));
        }
        if self.complete {
            return Err(restore_error("a chunk came after the one marked last"));
        }
        let result = self.check_and_write(chunk);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn check_and_write(&mut self, chunk: &StateChunk) -> Result<(), StoreError> {
        if chunk.entities.is_empty() || chunk.entities.len() > MAX_CHUNK_ENTITIES {
            return Err(restore_error(format!(
                "a chunk holds {} entities; 1 to {MAX_CHUNK_ENTITIES} are allowed",
                chunk.entities.len()
            )));
        }
        let mut leaves = Vec::with_capacity(chunk.entities.len());
        let mut previous = self.last_leaf;
        for (key, value) in &chunk.entities {
            let leaf = leaf_key(key).0;
            if previous.is_some_and(|p| leaf <= p) {
                return Err(restore_error(
                    "the chunk's entities are not in increasing leaf-key order after the last one",
                ));
            }
            let row = schema::encode_entity_row(key, value).ok_or_else(|| {
                restore_error(format!(
                    "an entity key of {} bytes (at most 255)",
                    key.len()
                ))
            })?;
            leaves.push((leaf, row));
            previous = Some(leaf);
        }
        let proof: RangeProof = borsh::from_slice(&chunk.proof)
            .map_err(|e| restore_error(format!("the chunk's proof does not decode: {e}")))?;
        let items = chunk
            .entities
            .iter()
            .zip(&leaves)
            .map(|((_, value), (leaf, _))| (KeyHash(*leaf), value.clone()))
            .collect();
        // Checks the entities so far, with the proof's right siblings, against the root.
        self.tree
            .add_chunk(items, proof)
            .map_err(|e| restore_error(format!("the chunk does not prove out: {e}")))?;

        let txn = self.store.db.begin_write()?;
        {
            let mut state = txn.open_table(STATE)?;
            for (leaf, row) in &leaves {
                state.insert(leaf, row.as_slice())?;
            }
            write_nodes(&txn, self.collected.take())?;
        }
        txn.commit()?;
        self.last_leaf = previous;
        self.entities += leaves.len() as u64;
        self.complete = chunk.last;
        Ok(())
    }

    /// Builds the rest of the tree, checks its root and records the head; returns the root.
    pub fn finish(self) -> Result<[u8; 32], StoreError> {
        if self.failed {
            return Err(restore_error(
                "an earlier chunk was refused; restore again into a new store",
            ));
        }
        if !self.complete {
            return Err(restore_error(format!(
                "the last chunk has not come ({} entities restored)",
                self.entities
            )));
        }
        let Restore {
            store,
            head,
            tree,
            collected,
            ..
        } = self;
        tree.finish().map_err(restore_error)?;
        let txn = store.db.begin_write()?;
        {
            write_nodes(&txn, collected.take())?;
            let nodes = txn.open_table(JMT_NODES)?;
            let state = txn.open_table(STATE)?;
            let reader = TreeTables {
                nodes: &nodes,
                state: &state,
            };
            let root = JellyfishMerkleTree::<_, Blake3Hasher>::new(&reader)
                .get_root_hash(head.height)
                .map_err(|e| restore_error(format!("the restored tree has no root: {e}")))?
                .0;
            if root != head.state_root {
                return Err(restore_error(format!(
                    "the restored tree's root {} is not the root {} asked for",
                    hex(&root),
                    hex(&head.state_root)
                )));
            }
            let key = height_key(head.height);
            txn.open_table(STATE_ROOTS)?.insert(key, root)?;
            txn.open_table(BLOCK_HASHES)?.insert(key, head.block_hash)?;
            let mut meta = txn.open_table(META)?;
            meta.insert(
                meta_key::HEAD,
                &schema::encode_head(head.height, &head.block_hash, &root)[..],
            )?;
            meta.insert(meta_key::TREE_KEPT_FROM, &head.height.to_be_bytes()[..])?;
            meta.insert(meta_key::BASE_HEIGHT, &head.height.to_be_bytes()[..])?;
            meta.remove(meta_key::RESTORING)?;
        }
        txn.commit()?;
        Ok(head.state_root)
    }
}

fn write_nodes(
    txn: &redb::WriteTransaction,
    nodes: Vec<(NodeKey, Node)>,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(JMT_NODES)?;
    for (key, node) in nodes {
        let key = borsh::to_vec(&key).map_err(|e| StoreError::Tree(e.to_string()))?;
        let node = borsh::to_vec(&node).map_err(|e| StoreError::Tree(e.to_string()))?;
        table.insert(key.as_slice(), node.as_slice())?;
    }
    Ok(())
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
