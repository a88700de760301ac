//! The state's Jellyfish Merkle tree on redb tables: `jmt`'s [`TreeReader`] over the tables, the
//! write of one version's update batch, pruning of what fell out of the retention window, and
//! proofs.
//!
//! One tree version per height. The tree's nodes are versioned (as `jmt` builds them) and kept
//! for [`crate::StoreOptions::keep_versions`] heights; its values are not: the [`STATE`] table
//! holds each entity once, under its leaf key, with its state key beside it, and serves both as
//! the entity store and as the tree's values. So a changed entity costs one row written in place,
//! not a new row per version and a deletion later. A proof at an older kept height is therefore
//! only given for an entity that has not changed since ([`prove`] checks it).
//!
//! A version's rows are written in the same redb write transaction as its block, so the tree and
//! the head never disagree after a crash.
//!
//! [`STATE`]: crate::schema::STATE

use borsh::BorshDeserialize;
use gpunet_protocol::merkle::{Blake3Hasher, SparseProof, StateWrite, leaf_key};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};
use redb::{ReadableTable, Table};

use crate::StoreError;
use crate::schema::{self, HeightKey, height_key};

type Tree<'a, R> = JellyfishMerkleTree<'a, R, Blake3Hasher>;

/// `jmt`'s view of the tree tables, in a read or a write transaction.
pub(crate) struct TreeTables<'a, N, V> {
    pub nodes: &'a N,
    /// The entity table: leaf key → state key and value.
    pub state: &'a V,
}

impl<N, V> TreeReader for TreeTables<'_, N, V>
where
    N: ReadableTable<&'static [u8], &'static [u8]>,
    V: ReadableTable<[u8; 32], &'static [u8]>,
{
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let key = borsh::to_vec(node_key)?;
        match self.nodes.get(key.as_slice())? {
            Some(bytes) => Ok(Some(Node::try_from_slice(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// The entity's value now, whatever `max_version`: values are not versioned. [`prove`] checks
    /// a proof at an older height against that height's root before handing it out.
    fn get_value_option(
        &self,
        _max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        match self.state.get(key_hash.0)? {
            Some(row) => {
                let (_, value) = schema::decode_entity_row(row.value())
                    .ok_or_else(|| anyhow::anyhow!("a malformed entity row"))?;
                Ok(Some(value.to_vec()))
            }
            None => Ok(None),
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only `jmt`'s resumable restore asks for it; a state restore here (`sync`) always
        // starts afresh (`new_overwrite`), and an interrupted one is refused on open.
        anyhow::bail!("a state restore is not resumed; it starts again in a new store")
    }
}

fn tree_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Tree(format!("{what}: {e}"))
}

/// Folds `changes` into the tree as version `version`: writes the entity rows, the new nodes
/// and the version's stale-node row; returns the new root.
pub(crate) fn put_version(
    nodes: &mut Table<'_, &'static [u8], &'static [u8]>,
    state: &mut Table<'_, [u8; 32], &'static [u8]>,
    stale_nodes: &mut Table<'_, HeightKey, &'static [u8]>,
    version: Version,
    changes: &[StateWrite],
    key_by_key: bool,
) -> Result<[u8; 32], StoreError> {
    let value_set: Vec<(KeyHash, Option<OwnedValue>)> = changes
        .iter()
        .map(|w| (leaf_key(&w.key), w.value.clone()))
        .collect();
    let (root, batch) = {
        let reader = TreeTables {
            nodes: &*nodes,
            state: &*state,
        };
        fold(&reader, value_set, version, key_by_key)?
    };
    for w in changes {
        let kh = leaf_key(&w.key).0;
        match &w.value {
            Some(v) => {
                let row = schema::encode_entity_row(&w.key, v).ok_or_else(|| {
                    tree_error(
                        "an entity key",
                        format!("{} bytes, at most 255", w.key.len()),
                    )
                })?;
                state.insert(kh, row.as_slice())?;
            }
            None => {
                state.remove(kh)?;
            }
        }
    }
    for (node_key, node) in batch.node_batch.nodes() {
        let key = borsh::to_vec(node_key).map_err(|e| tree_error("node key", e))?;
        let bytes = borsh::to_vec(node).map_err(|e| tree_error("node", e))?;
        nodes.insert(key.as_slice(), bytes.as_slice())?;
    }
    // Every node this version replaced is stale since this version.
    let stale: Vec<&NodeKey> = batch
        .stale_node_index_batch
        .iter()
        .map(|s| &s.node_key)
        .collect();
    if !stale.is_empty() {
        let row = borsh::to_vec(&stale).map_err(|e| tree_error("stale nodes", e))?;
        stale_nodes.insert(height_key(version), row.as_slice())?;
    }
    Ok(root.0)
}

/// Folds one version's writes into the tree. Without removals, `jmt`'s batch insertion (each
/// touched node read and hashed once for the whole set); with removals, its key-by-key path,
/// which supports them. Both build the same tree (a test holds them to it).
fn fold<R: TreeReader>(
    reader: &R,
    value_set: Vec<(KeyHash, Option<OwnedValue>)>,
    version: Version,
    key_by_key: bool,
) -> Result<(jmt::RootHash, TreeUpdateBatch), StoreError> {
    let tree = Tree::new(reader);
    let result = if value_set.iter().all(|(_, v)| v.is_some()) && !key_by_key {
        let kvs = value_set
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        tree.batch_put_value_sets(vec![kvs], None, version)
            .map(|(roots, batch)| (roots[0], batch))
    } else {
        tree.put_value_set(value_set, version)
    };
    result.map_err(|e| tree_error("cannot fold the block's changes into the state tree", e))
}

/// Deletes the nodes that no version at or above `keep_from` reaches; returns how many went.
pub(crate) fn prune_below(
    nodes: &mut Table<'_, &'static [u8], &'static [u8]>,
    stale_nodes: &mut Table<'_, HeightKey, &'static [u8]>,
    keep_from: Version,
) -> Result<u64, StoreError> {
    let mut pruned = 0u64;
    // What became stale at version s is read by roots below s only: prune every s ≤ keep_from.
    let end = height_key(keep_from.saturating_add(1));
    let rows: Vec<(HeightKey, Vec<u8>)> = stale_nodes
        .range(..end)?
        .map(|e| e.map(|(k, v)| (k.value(), v.value().to_vec())))
        .collect::<Result<_, _>>()?;
    for (since, row) in rows {
        let keys: Vec<NodeKey> =
            borsh::from_slice(&row).map_err(|e| tree_error("a stale-node row", e))?;
        for key in keys {
            let key = borsh::to_vec(&key).map_err(|e| tree_error("node key", e))?;
            nodes.remove(key.as_slice())?;
            pruned += 1;
        }
        stale_nodes.remove(since)?;
    }
    Ok(pruned)
}

/// The root of version `version`, if its root node is still kept.
pub(crate) fn root_at<N, V>(
    tables: &TreeTables<'_, N, V>,
    version: Version,
) -> Result<Option<[u8; 32]>, StoreError>
where
    N: ReadableTable<&'static [u8], &'static [u8]>,
    V: ReadableTable<[u8; 32], &'static [u8]>,
{
    Tree::new(tables)
        .get_root_hash_option(version)
        .map(|r| r.map(|r| r.0))
        .map_err(|e| tree_error("cannot read the state tree's root", e))
}

/// Why an entity cannot be proven at a kept height.
pub(crate) enum ProveError {
    /// The entity changed after that height; only its value now is kept.
    ChangedSince,
    Store(StoreError),
}

/// The value of `state_key` at `version` (whose root is `root`) and the proof of it (or of its
/// absence). At an older version the proof is checked against `root` here: an entity that has
/// changed since (or gone: its leaf then names a row that is no longer there) has no proof to
/// give.
pub(crate) fn prove<N, V>(
    tables: &TreeTables<'_, N, V>,
    state_key: &[u8],
    version: Version,
    root: [u8; 32],
    head: Version,
) -> Result<(Option<Vec<u8>>, SparseProof), ProveError>
where
    N: ReadableTable<&'static [u8], &'static [u8]>,
    V: ReadableTable<[u8; 32], &'static [u8]>,
{
    let kh = leaf_key(state_key);
    let (value, proof) = match Tree::new(tables).get_with_proof(kh, version) {
        Ok(found) => found,
        Err(e) => {
            let row_gone = version < head
                && tables
                    .state
                    .get(kh.0)
                    .map_err(|e| ProveError::Store(e.into()))?
                    .is_none();
            return Err(if row_gone {
                ProveError::ChangedSince
            } else {
                ProveError::Store(tree_error("cannot prove the value", e))
            });
        }
    };
    if proof
        .verify(jmt::RootHash(root), kh, value.as_deref())
        .is_err()
    {
        return Err(ProveError::ChangedSince);
    }
    Ok((value, proof))
}
