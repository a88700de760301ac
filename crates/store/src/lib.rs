//! Durable chain storage for a gpunet node, on one redb file.
//!
//! The node calls [`Store::commit_block`] once per committed block with the entities the block
//! wrote. The store keeps every block, its receipts, block hash and state root by height, an
//! index from transaction hash to where it was included, the state as one row per entity (only
//! the changed rows are written), and the Jellyfish Merkle tree over those entities whose root is
//! the state root: each block costs O(changes · log state), never a pass over the whole state.
//! Tree versions older than a retention window ([`StoreOptions::keep_versions`]) are pruned;
//! within it, [`Store::prove`] proves any entity's value, or its absence, at any kept height.
//! Beside the chain it keeps, in the same write transaction, what the node asks of it outside
//! the state: ended orders and leases ([`Store::history`]) and secondary lookup entries
//! ([`Store::lookup_below`]: the node's index of orders by tenant and of transactions by
//! account, each a prefix range read newest first).
//!
//! **Architecture Invariant:** the store never decodes what it stores. Blocks, receipts, entities
//! and genesis arrive as bytes the node encoded (borsh); the store knows neither the consensus
//! engine nor the ledger's types, only heights, keys and 32-byte hashes. It hashes the tree as
//! `gpunet_protocol::merkle` says, so that a client checks its proofs with that module alone.
//!
//! **Architecture Invariant:** the block, its entities, its tree version and its root are written
//! in one durable redb write transaction together with the new head, so a crash at any moment
//! leaves the file at some committed head whose entities and tree agree with it.
//!
//! The on-disk layout lives in the private `schema` module; errors in [`StoreError`].

mod error;
mod schema;
mod sync;
mod tree;

use std::fmt;
use std::path::{Path, PathBuf};

use gpunet_protocol::merkle::StateWrite;
use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, StorageError, WriteTransaction,
};

pub use error::StoreError;
use schema::{
    BLOCK_HASHES, BLOCKS, HISTORY, JMT_NODES, LOOKUP, META, RECEIPTS, SCHEMA_VERSION, STALE_NODES,
    STATE, STATE_ROOTS, TX_INDEX, height_from_key, height_key, meta_key,
};
pub use sync::{Restore, Snapshot};
use tree::TreeTables;

/// Most blocks one [`Store::blocks_range`] call returns, whatever limit the caller asks for,
/// so that a catch-up request from a peer cannot make the node load the whole chain.
pub const MAX_BLOCKS_PER_RANGE: usize = 1000;

/// Block hash recorded for height 0: genesis is not a block, so no block hash precedes height 1.
pub const GENESIS_BLOCK_HASH: [u8; 32] = [0; 32];

/// Tree versions kept whole by default: ten minutes of 500 ms blocks.
pub const DEFAULT_KEEP_VERSIONS: u64 = 1200;

/// How a store is kept.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// How many of the latest heights keep their whole state tree (for proofs at those
    /// heights); older tree nodes and values are deleted as they fall out. At least 1.
    pub keep_versions: u64,
    /// Tests only: fold every block into the tree key by key, as blocks with removals are,
    /// instead of by batch (both must give the same tree).
    #[doc(hidden)]
    pub key_by_key: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            keep_versions: DEFAULT_KEEP_VERSIONS,
            key_by_key: false,
        }
    }
}

/// One lookup entry: its key and the value kept under it (empty when the key says it all).
pub type LookupEntry = (Vec<u8>, Vec<u8>);

/// Everything the store keeps for one committed height, borrowed from the node's encodings.
#[derive(Debug, Clone, Copy)]
pub struct BlockRecord<'a> {
    /// Must be the store's head height + 1.
    pub height: u64,
    pub block_hash: [u8; 32],
    /// The encoded block.
    pub block: &'a [u8],
    /// The encoded receipts of the block's transactions.
    pub receipts: &'a [u8],
    /// Every entity the block wrote (its new encoding, or `None` if removed), each key once.
    pub changes: &'a [StateWrite],
    /// Hashes of the block's transactions, in block order; their position is the index recorded.
    pub tx_hashes: &'a [[u8; 32]],
    /// Entities that left the state for good in this block (state key, encoding; a `None`
    /// value is refused), kept as history outside the tree: see [`Store::history`].
    pub history: &'a [StateWrite],
    /// Lookup entries to keep from this block on, each (key, value; empty when the key says
    /// it all), see [`Store::lookup_below`]. A key written again keeps its newest value.
    pub lookups: &'a [LookupEntry],
}

/// An entity's value at a height and the Merkle proof of it against that height's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenValue {
    pub height: u64,
    pub root: [u8; 32],
    /// `None`: the proof shows there is no such entity.
    pub value: Option<Vec<u8>>,
    /// Borsh of a `gpunet_protocol::merkle::SparseProof`.
    pub proof: Vec<u8>,
}

/// Rows the state tree holds: what pruning keeps bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeSize {
    pub nodes: u64,
    pub entities: u64,
}

/// What a state-wide pass over the entities found, for progress and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSize {
    pub entities: u64,
    pub bytes: u64,
}

/// The latest committed height, and what identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub height: u64,
    /// [`GENESIS_BLOCK_HASH`] at height 0.
    pub block_hash: [u8; 32],
    pub state_root: [u8; 32],
}

/// A chain store on one redb file, shared by the node behind an `Arc` (it is `Send + Sync`).
pub struct Store {
    db: Database,
    path: PathBuf,
    options: StoreOptions,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

// The node shares one `Store` across tasks; keep that a compile error to break.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
};

impl Store {
    /// Opens the store at `path`, creating the file if absent.
    ///
    /// Every open verifies the checksums of the whole file, so a damaged file is reported as
    /// [`StoreError::Corrupt`] rather than trusted; after a crash redb repairs the file to its
    /// last durable commit. Fails with [`StoreError::Locked`] if another process has it open.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        // Created owner-only before redb opens it by path (redb would use the umask's mode);
        // redb initialises an empty file as a new database.
        gpunet_files::touch_private(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: DatabaseError::Storage(StorageError::Io(e)),
        })?;
        let db = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|source| open_error(path, source))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            options: StoreOptions {
                keep_versions: options.keep_versions.max(1),
                ..options
            },
        };
        store.prepare_tables()?;
        Ok(store)
    }

    /// Creates any missing table and stamps or checks the schema version, so that readers can
    /// assume every table exists.
    fn prepare_tables(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta
                .get(meta_key::SCHEMA_VERSION)?
                .map(|v| decode_u32(meta_key::SCHEMA_VERSION, v.value()))
                .transpose()?;
            match found {
                Some(found) if found != SCHEMA_VERSION => {
                    return Err(StoreError::UnsupportedSchema {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert(meta_key::SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes()[..])?;
                }
            }
            if let Some(height) = read_u64(&meta, meta_key::RESTORING)? {
                return Err(StoreError::IncompleteRestore {
                    path: self.path.clone(),
                    height,
                });
            }
            txn.open_table(BLOCKS)?;
            txn.open_table(RECEIPTS)?;
            txn.open_table(STATE_ROOTS)?;
            txn.open_table(BLOCK_HASHES)?;
            txn.open_table(TX_INDEX)?;
            txn.open_table(STATE)?;
            txn.open_table(JMT_NODES)?;
            txn.open_table(STALE_NODES)?;
            txn.open_table(HISTORY)?;
            txn.open_table(LOOKUP)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Records genesis as height 0: chain id, genesis bytes, the initial entities and the tree
    /// over them; returns the genesis state root.
    ///
    /// Calling it again with the same chain id and genesis is a no-op that returns the stored
    /// root, so a node may call it on every start; with anything different it fails with
    /// [`StoreError::GenesisMismatch`] and changes nothing.
    pub fn init_genesis(
        &self,
        chain_id: &str,
        genesis: &[u8],
        entities: &[StateWrite],
    ) -> Result<[u8; 32], StoreError> {
        let txn = self.db.begin_write()?;
        let root;
        {
            let mut meta = txn.open_table(META)?;
            let mut roots = txn.open_table(STATE_ROOTS)?;
            let stored_chain_id = meta
                .get(meta_key::CHAIN_ID)?
                .map(|v| decode_chain_id(v.value()))
                .transpose()?;
            if let Some(stored_chain_id) = stored_chain_id {
                let same_genesis = meta
                    .get(meta_key::GENESIS)?
                    .is_some_and(|v| v.value() == genesis);
                let stored_root = roots.get(height_key(0))?.map(|v| v.value());
                if let (true, true, Some(root)) =
                    (stored_chain_id == chain_id, same_genesis, stored_root)
                {
                    return Ok(root);
                }
                return Err(StoreError::GenesisMismatch {
                    stored_chain_id,
                    given_chain_id: chain_id.to_owned(),
                });
            }

            root = write_state(&txn, 0, entities, None, self.options.key_by_key)?;
            let mut hashes = txn.open_table(BLOCK_HASHES)?;
            meta.insert(meta_key::CHAIN_ID, chain_id.as_bytes())?;
            meta.insert(meta_key::GENESIS, genesis)?;
            meta.insert(
                meta_key::HEAD,
                &schema::encode_head(0, &GENESIS_BLOCK_HASH, &root)[..],
            )?;
            meta.insert(meta_key::TREE_KEPT_FROM, &0u64.to_be_bytes()[..])?;
            roots.insert(height_key(0), root)?;
            hashes.insert(height_key(0), GENESIS_BLOCK_HASH)?;
        }
        txn.commit()?;
        Ok(root)
    }

    /// The chain id and genesis bytes, if genesis has been recorded.
    pub fn genesis(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        let Some(chain_id) = meta.get(meta_key::CHAIN_ID)? else {
            return Ok(None);
        };
        let chain_id = decode_chain_id(chain_id.value())?;
        let genesis = meta
            .get(meta_key::GENESIS)?
            .ok_or(StoreError::MalformedRecord {
                record: meta_key::GENESIS,
                len: 0,
            })?
            .value()
            .to_vec();
        Ok(Some((chain_id, genesis)))
    }

    /// The latest committed height, or `None` before genesis.
    pub fn head(&self) -> Result<Option<Head>, StoreError> {
        let txn = self.read()?;
        read_head(&txn.open_table(META)?)
    }

    /// The head, and every entity at it passed to `visit` as (state key, value), in leaf key
    /// order (not table order), read from one consistent snapshot of the file. `visit` may stop
    /// the pass with an error of its own.
    pub fn for_each_entity<E: From<StoreError>>(
        &self,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<Option<(Head, StateSize)>, E> {
        let txn = self.read()?;
        let meta = txn.open_table(META).map_err(StoreError::from)?;
        let Some(head) = read_head(&meta)? else {
            return Ok(None);
        };
        let state = txn.open_table(STATE).map_err(StoreError::from)?;
        let mut size = StateSize {
            entities: 0,
            bytes: 0,
        };
        for entry in state.iter().map_err(StoreError::from)? {
            let (_, row) = entry.map_err(StoreError::from)?;
            let row = row.value();
            let (key, value) = schema::entity_row(row)?;
            size.entities += 1;
            size.bytes += row.len() as u64;
            visit(key, value)?;
        }
        Ok(Some((head, size)))
    }

    /// The entity under `key` (table tag ‖ entity key) at the head.
    pub fn entity(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let state = txn.open_table(STATE)?;
        let Some(row) = state.get(gpunet_protocol::merkle::leaf_key(key).0)? else {
            return Ok(None);
        };
        let row = row.value();
        match schema::decode_entity_row(row) {
            // Another key under the same leaf key would be a BLAKE3 collision.
            Some((stored, value)) if stored == key => Ok(Some(value.to_vec())),
            Some(_) => Ok(None),
            None => Err(StoreError::MalformedRecord {
                record: "entity row",
                len: row.len(),
            }),
        }
    }

    /// The root the state tree holds for `height`, if that version is still kept: at the head it
    /// must equal the head's recorded root.
    pub fn tree_root(&self, height: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let txn = self.read()?;
        let nodes = txn.open_table(JMT_NODES)?;
        let state = txn.open_table(STATE)?;
        tree::root_at(
            &TreeTables {
                nodes: &nodes,
                state: &state,
            },
            height,
        )
    }

    /// How many tree nodes and entities the store holds now.
    pub fn tree_size(&self) -> Result<TreeSize, StoreError> {
        let txn = self.read()?;
        Ok(TreeSize {
            nodes: txn.open_table(JMT_NODES)?.len()?,
            entities: txn.open_table(STATE)?.len()?,
        })
    }

    /// The value of the entity under `key` at `height` (the head if `None`) with a Merkle proof
    /// of it, or of its absence, against that height's state root. Only the latest value of an
    /// entity is kept: at an older kept height an entity that changed since has no proof
    /// ([`StoreError::ChangedSince`]).
    pub fn prove(&self, key: &[u8], height: Option<u64>) -> Result<ProvenValue, StoreError> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        let head = read_head(&meta)?.ok_or(StoreError::NotInitialised)?;
        let kept_from = read_u64(&meta, meta_key::TREE_KEPT_FROM)?.unwrap_or(0);
        let height = height.unwrap_or(head.height);
        if height < kept_from || height > head.height {
            return Err(StoreError::NoTreeAt {
                height,
                kept_from,
                head: head.height,
            });
        }
        let root = txn
            .open_table(STATE_ROOTS)?
            .get(height_key(height))?
            .map(|v| v.value())
            .ok_or(StoreError::NoTreeAt {
                height,
                kept_from,
                head: head.height,
            })?;
        let nodes = txn.open_table(JMT_NODES)?;
        let state = txn.open_table(STATE)?;
        let (value, proof) = tree::prove(
            &TreeTables {
                nodes: &nodes,
                state: &state,
            },
            key,
            height,
            root,
            head.height,
        )
        .map_err(|e| match e {
            tree::ProveError::ChangedSince => StoreError::ChangedSince {
                height,
                head: head.height,
            },
            tree::ProveError::Store(e) => e,
        })?;
        let proof = borsh::to_vec(&proof).map_err(|e| StoreError::Tree(e.to_string()))?;
        Ok(ProvenValue {
            height,
            root,
            value,
            proof,
        })
    }

    /// Appends one height in a single durable write transaction: block, receipts, block hash,
    /// the changed entities, the tree's new version and its root, transaction index and new
    /// head; prunes tree versions that fell out of the retention window. Returns the new state
    /// root.
    ///
    /// Fails with [`StoreError::NonContiguousHeight`] unless `rec.height` is head + 1, and with
    /// [`StoreError::NotInitialised`] before genesis; a failed call changes nothing. A transaction
    /// hash seen before is re-pointed at this block.
    pub fn commit_block(&self, rec: &BlockRecord<'_>) -> Result<[u8; 32], StoreError> {
        let txn = self.db.begin_write()?;
        let root = self.check_and_write_block(&txn, rec)?;
        txn.commit()?;
        Ok(root)
    }

    fn check_and_write_block(
        &self,
        txn: &WriteTransaction,
        rec: &BlockRecord<'_>,
    ) -> Result<[u8; 32], StoreError> {
        let mut meta = txn.open_table(META)?;

        // Check everything first, so that a refused block leaves no trace.
        let head = read_head(&meta)?.ok_or(StoreError::NotInitialised)?;
        let expected = head
            .height
            .checked_add(1)
            .expect("a chain of 2^64 blocks is out of reach");
        if rec.height != expected {
            return Err(StoreError::NonContiguousHeight {
                expected,
                got: rec.height,
            });
        }
        if u32::try_from(rec.tx_hashes.len()).is_err() {
            return Err(StoreError::TooManyTransactions {
                height: rec.height,
                count: rec.tx_hashes.len(),
            });
        }

        if rec.changes.is_empty() {
            return Err(StoreError::Tree(format!(
                "block {} changes no entity; every block changes at least the chain's",
                rec.height
            )));
        }
        if let Some(w) = rec.history.iter().find(|w| w.value.is_none()) {
            return Err(StoreError::Tree(format!(
                "block {} archives entity {:02x?} without its value",
                rec.height, w.key
            )));
        }

        let keep_from = rec
            .height
            .saturating_sub(self.options.keep_versions.saturating_sub(1));
        let root = write_state(
            txn,
            rec.height,
            rec.changes,
            Some(keep_from),
            self.options.key_by_key,
        )?;
        meta.insert(meta_key::TREE_KEPT_FROM, &keep_from.to_be_bytes()[..])?;
        let key = height_key(rec.height);
        txn.open_table(BLOCKS)?.insert(key, rec.block)?;
        txn.open_table(RECEIPTS)?.insert(key, rec.receipts)?;
        txn.open_table(STATE_ROOTS)?.insert(key, root)?;
        txn.open_table(BLOCK_HASHES)?.insert(key, rec.block_hash)?;
        let mut tx_index = txn.open_table(TX_INDEX)?;
        for (index, tx_hash) in (0u32..).zip(rec.tx_hashes) {
            tx_index.insert(tx_hash, schema::encode_tx_location(rec.height, index))?;
        }
        let mut history = txn.open_table(HISTORY)?;
        for w in rec.history {
            if let Some(value) = &w.value {
                history.insert(w.key.as_slice(), value.as_slice())?;
            }
        }
        let mut lookup = txn.open_table(LOOKUP)?;
        for (key, value) in rec.lookups {
            lookup.insert(key.as_slice(), value.as_slice())?;
        }
        meta.insert(
            meta_key::HEAD,
            &schema::encode_head(rec.height, &rec.block_hash, &root)[..],
        )?;
        Ok(root)
    }

    /// The encoded block at `height` (heights 1 and up; genesis is in [`Store::genesis`]).
    pub fn block(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let blocks = txn.open_table(BLOCKS)?;
        Ok(blocks.get(height_key(height))?.map(|v| v.value().to_vec()))
    }

    /// The encoded receipts of the block at `height`.
    pub fn receipts(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let receipts = txn.open_table(RECEIPTS)?;
        Ok(receipts
            .get(height_key(height))?
            .map(|v| v.value().to_vec()))
    }

    /// The state root after `height`; height 0 is the genesis root.
    pub fn state_root(&self, height: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let txn = self.read()?;
        let roots = txn.open_table(STATE_ROOTS)?;
        Ok(roots.get(height_key(height))?.map(|v| v.value()))
    }

    /// The hash of the block at `height`; height 0 gives [`GENESIS_BLOCK_HASH`].
    pub fn block_hash(&self, height: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let txn = self.read()?;
        let hashes = txn.open_table(BLOCK_HASHES)?;
        Ok(hashes.get(height_key(height))?.map(|v| v.value()))
    }

    /// Where a transaction was included: (height, index in that block).
    pub fn tx_location(&self, tx_hash: &[u8; 32]) -> Result<Option<(u64, u32)>, StoreError> {
        let txn = self.read()?;
        let tx_index = txn.open_table(TX_INDEX)?;
        Ok(tx_index
            .get(tx_hash)?
            .map(|v| schema::decode_tx_location(v.value())))
    }

    /// Blocks from height `from` upward, in height order, at most `limit` of them and never more
    /// than [`MAX_BLOCKS_PER_RANGE`]; fewer if the chain ends first.
    pub fn blocks_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let limit = limit.min(MAX_BLOCKS_PER_RANGE);
        let txn = self.read()?;
        let blocks = txn.open_table(BLOCKS)?;
        let mut out = Vec::with_capacity(limit);
        for entry in blocks.range(height_key(from)..)?.take(limit) {
            let (key, block) = entry?;
            out.push((height_from_key(key.value()), block.value().to_vec()));
        }
        Ok(out)
    }

    /// An entity that left the state for good (an ended order or lease), by its state key
    /// (table tag ‖ entity key): its encoding when it left.
    pub fn history(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let history = txn.open_table(HISTORY)?;
        Ok(history.get(key)?.map(|v| v.value().to_vec()))
    }

    /// The height this store's blocks begin after: 0 for a store filled from genesis, the
    /// height of the state it was restored at for one that began from a state snapshot
    /// ([`Store::begin_restore`]): no blocks, receipts, history or lookup entries of that
    /// height or below are in it.
    pub fn base_height(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        Ok(read_u64(&meta, meta_key::BASE_HEIGHT)?.unwrap_or(0))
    }

    /// The lookup entries (key, value) whose keys start with `prefix` and sort below `below`
    /// (all of them if `None`), highest key first, at most `limit`: one range read, whatever
    /// the table holds. The node's tenant index and account transaction index page with it.
    pub fn lookup_below(
        &self,
        prefix: &[u8],
        below: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<LookupEntry>, StoreError> {
        use std::ops::Bound::{self, Excluded, Included, Unbounded};
        let txn = self.read()?;
        let lookup = txn.open_table(LOOKUP)?;
        let start: Bound<&[u8]> = Included(prefix);
        // Keys with the prefix sort below the prefix with every following byte at its highest;
        // `below`, when it has the prefix, cuts there instead.
        let end_key = prefix_end(prefix);
        let end: Bound<&[u8]> = match below {
            Some(b) if b.starts_with(prefix) => Excluded(b),
            Some(b) if b < prefix => return Ok(Vec::new()),
            _ => match &end_key {
                Some(k) => Excluded(k.as_slice()),
                None => Unbounded,
            },
        };
        let mut out = Vec::new();
        for entry in lookup.range::<&[u8]>((start, end))?.rev().take(limit) {
            let (key, value) = entry?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_vec(), value.value().to_vec()));
        }
        Ok(out)
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }
}

/// The least key above every key that starts with `prefix`: `None` if there is none (the prefix
/// is all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Writes one version of the state: its entity rows and its tree version; prunes tree versions
/// below `keep_from` if given. Returns the root.
fn write_state(
    txn: &WriteTransaction,
    version: u64,
    changes: &[StateWrite],
    keep_from: Option<u64>,
    key_by_key: bool,
) -> Result<[u8; 32], StoreError> {
    let mut nodes = txn.open_table(JMT_NODES)?;
    let mut state = txn.open_table(STATE)?;
    let mut stale_nodes = txn.open_table(STALE_NODES)?;
    let root = tree::put_version(
        &mut nodes,
        &mut state,
        &mut stale_nodes,
        version,
        changes,
        key_by_key,
    )?;
    if let Some(keep_from) = keep_from {
        tree::prune_below(&mut nodes, &mut stale_nodes, keep_from)?;
    }
    Ok(root)
}

fn read_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &'static str,
) -> Result<Option<u64>, StoreError> {
    let Some(v) = meta.get(key)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = v
        .value()
        .try_into()
        .map_err(|_| StoreError::MalformedRecord {
            record: key,
            len: v.value().len(),
        })?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

fn open_error(path: &Path, source: DatabaseError) -> StoreError {
    let path = path.to_path_buf();
    match source {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path },
        DatabaseError::Storage(StorageError::Corrupted(_)) => StoreError::Corrupt { path, source },
        // redb reports a file that is not a database at all (bad magic number) as invalid data.
        DatabaseError::Storage(StorageError::Io(ref io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Corrupt { path, source }
        }
        source => StoreError::Open { path, source },
    }
}

fn read_head(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<Head>, StoreError> {
    let Some(record) = meta.get(meta_key::HEAD)? else {
        return Ok(None);
    };
    let record = record.value();
    let (height, block_hash, state_root) =
        schema::decode_head(record).ok_or(StoreError::MalformedRecord {
            record: meta_key::HEAD,
            len: record.len(),
        })?;
    Ok(Some(Head {
        height,
        block_hash,
        state_root,
    }))
}

fn decode_u32(record: &'static str, bytes: &[u8]) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = bytes.try_into().map_err(|_| StoreError::MalformedRecord {
        record,
        len: bytes.len(),
    })?;
    Ok(u32::from_be_bytes(bytes))
}

fn decode_chain_id(bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::MalformedRecord {
        record: meta_key::CHAIN_ID,
        len: bytes.len(),
    })
}
