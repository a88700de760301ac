//! The state's Jellyfish Merkle tree on redb tables: `jmt`'s [`TreeReader`] over the tables, the
//! write of one version's update batch, pruning of what fell out of the retention window, and
//! proofs.
//!
//! One tree version per height. A version's nodes and values are written in the same redb write
//! transaction as its block, so the tree and the head never disagree after a crash.

use borsh::BorshDeserialize;
use gpunet_protocol::merkle::{Blake3Hasher, SparseProof, StateWrite, leaf_key};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};
use redb::{ReadableTable, Table};

use crate::StoreError;
use crate::schema::{self, ValueKey, height_key, value_key};

type Tree<'a, R> = JellyfishMerkleTree<'a, R, Blake3Hasher>;

/// `jmt`'s view of the tree tables, in a read or a write transaction.
pub(crate) struct TreeTables<'a, N, V> {
    pub nodes: &'a N,
    pub values: &'a V,
}

impl<N, V> TreeReader for TreeTables<'_, N, V>
where
    N: ReadableTable<&'static [u8], &'static [u8]>,
    V: ReadableTable<ValueKey, &'static [u8]>,
{
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let key = borsh::to_vec(node_key)?;
        match self.nodes.get(key.as_slice())? {
            Some(bytes) => Ok(Some(Node::try_from_slice(bytes.value())?)),
            None => Ok(None),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let from = value_key(&key_hash.0, 0);
        let to = value_key(&key_hash.0, max_version);
        match self.values.range(from..=to)?.next_back() {
            Some(entry) => {
                let (_, value) = entry?;
                Ok(schema::decode_tree_value(value.value()))
            }
            None => Ok(None),
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only `jmt`'s restore path asks for it; this store does not restore a tree from chunks.
        anyhow::bail!("this store does not restore trees from chunks")
    }
}

fn tree_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Tree(format!("{what}: {e}"))
}

/// Folds `changes` into the tree as version `version` and writes the new nodes and values, the
/// stale-node index, and the stale-value index; returns the new root.
pub(crate) fn put_version(
    nodes: &mut Table<'_, &'static [u8], &'static [u8]>,
    values: &mut Table<'_, ValueKey, &'static [u8]>,
    stale_nodes: &mut Table<'_, schema::HeightKey, &'static [u8]>,
    stale_values: &mut Table<'_, schema::HeightKey, &'static [u8]>,
    version: Version,
    changes: &[StateWrite],
    key_by_key: bool,
) -> Result<[u8; 32], StoreError> {
    let value_set: Vec<(KeyHash, Option<OwnedValue>)> = changes
        .iter()
        .map(|w| (leaf_key(&w.key), w.value.clone()))
        .collect();
    // The version each changed key held before, which this version makes stale.
    let mut superseded = Vec::with_capacity(value_set.len());
    for (kh, _) in &value_set {
        let from = value_key(&kh.0, 0);
        let to = value_key(&kh.0, version);
        if let Some(entry) = values.range(from..=to)?.next_back() {
            let (key, _) = entry?;
            superseded.push((*kh, schema::version_of_value_key(&key.value())));
        }
    }
    let tj = std::time::Instant::now();
    let (root, batch): (jmt::RootHash, TreeUpdateBatch) = {
        let reader = TreeTables {
            nodes: &*nodes,
            values: &*values,
        };
        fold(&reader, value_set, version, key_by_key)?
    };
    if std::env::var_os("GPUNET_STORE_TIMING").is_some() {
        eprintln!(
            "TIMING jmt-put {:?} nodes {} stale {}",
            tj.elapsed(),
            batch.node_batch.nodes().len(),
            batch.stale_node_index_batch.len()
        );
    }
    for (node_key, node) in batch.node_batch.nodes() {
        let key = borsh::to_vec(node_key).map_err(|e| tree_error("node key", e))?;
        let bytes = borsh::to_vec(node).map_err(|e| tree_error("node", e))?;
        nodes.insert(key.as_slice(), bytes.as_slice())?;
    }
    for ((v, kh), value) in batch.node_batch.values() {
        values.insert(
            value_key(&kh.0, *v),
            schema::encode_tree_value(value.as_deref()).as_slice(),
        )?;
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
    let mut row = Vec::new();
    for (kh, old) in superseded {
        if old < version {
            schema::encode_stale_value(&mut row, &kh.0, old);
        }
    }
    if !row.is_empty() {
        stale_values.insert(height_key(version), row.as_slice())?;
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

/// Deletes the nodes and values that no version at or above `keep_from` needs; returns how many
/// rows went.
pub(crate) fn prune_below(
    nodes: &mut Table<'_, &'static [u8], &'static [u8]>,
    values: &mut Table<'_, ValueKey, &'static [u8]>,
    stale_nodes: &mut Table<'_, schema::HeightKey, &'static [u8]>,
    stale_values: &mut Table<'_, schema::HeightKey, &'static [u8]>,
    keep_from: Version,
) -> Result<u64, StoreError> {
    let mut pruned = 0u64;
    // What became stale at version s is read by roots below s only: prune every s ≤ keep_from.
    let end = height_key(keep_from.saturating_add(1));
    let rows: Vec<(schema::HeightKey, Vec<u8>)> = stale_nodes
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
    let rows: Vec<(schema::HeightKey, Vec<u8>)> = stale_values
        .range(..end)?
        .map(|e| e.map(|(k, v)| (k.value(), v.value().to_vec())))
        .collect::<Result<_, _>>()?;
    for (since, row) in rows {
        let records = schema::decode_stale_values(&row)
            .ok_or_else(|| tree_error("a stale-value row", format!("{} bytes", row.len())))?;
        for (kh, old) in records {
            values.remove(value_key(&kh, old))?;
            pruned += 1;
        }
        stale_values.remove(since)?;
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
    V: ReadableTable<ValueKey, &'static [u8]>,
{
    Tree::new(tables)
        .get_root_hash_option(version)
        .map(|r| r.map(|r| r.0))
        .map_err(|e| tree_error("cannot read the state tree's root", e))
}

/// The value of `state_key` at `version` and the proof of it (or of its absence).
pub(crate) fn prove<N, V>(
    tables: &TreeTables<'_, N, V>,
    state_key: &[u8],
    version: Version,
) -> Result<(Option<Vec<u8>>, SparseProof), StoreError>
where
    N: ReadableTable<&'static [u8], &'static [u8]>,
    V: ReadableTable<ValueKey, &'static [u8]>,
{
    Tree::new(tables)
        .get_with_proof(leaf_key(state_key), version)
        .map_err(|e| tree_error("cannot prove the value", e))
}
