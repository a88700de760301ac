//! The one home for the store's on-disk layout: table names, key encodings and the fixed-width
//! records kept in them.
//!
//! Every key that a range scan walks is a big-endian byte string, so byte order is numeric order
//! and `blocks_range` can walk heights by walking keys. The tests at the bottom pin that down; a
//! change to any encoding here is a change to the file format and must bump [`SCHEMA_VERSION`].

use redb::TableDefinition;

/// Version of the layout below, written at genesis and checked on every open.
///
/// 1: one snapshot of the whole state, BLAKE3 of its encoding as the root.
/// 2: the state as entities ([`STATE`]) under a Jellyfish Merkle tree ([`JMT_NODES`]).
/// 3: ended orders and leases leave the state for [`HISTORY`]; the [`LOOKUP`] index.
/// 4: the ledger's entities carry trust (ADR 0010): orders their verification and runs,
///    providers their reputation, jail, slashes and verified runs; older entities do not decode.
/// 5: providers carry their hardware challenges (ADR 0009), the params their bands, and
///    accounts their unbonding stake.
/// 6: `compare: tensors` (ADR 0010): orders carry the verifiers asked and the judging stage,
///    providers the orders they judge, the params the verdict window and fee.
/// 7: the account transaction index ([`LOOKUP`] keys tagged `ACCOUNT_TX` by the node, so
///    [`LOOKUP`] rows carry a value) and the challenge history (`PROVIDER_CHALLENGE`);
///    providers' uptime record.
pub const SCHEMA_VERSION: u32 = 7;

/// Singletons: schema version, chain id, genesis bytes, head, the tree's retention mark.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Height key → encoded block, for heights 1 and up (genesis lives in [`META`]).
pub const BLOCKS: TableDefinition<HeightKey, &[u8]> = TableDefinition::new("blocks");
/// Height key → encoded receipts of that block, for heights 1 and up.
pub const RECEIPTS: TableDefinition<HeightKey, &[u8]> = TableDefinition::new("receipts");
/// Height key → state root after that height, from height 0 (genesis) up.
pub const STATE_ROOTS: TableDefinition<HeightKey, [u8; 32]> = TableDefinition::new("state_roots");
/// Height key → block hash, from height 0 (genesis, see `GENESIS_BLOCK_HASH`) up.
pub const BLOCK_HASHES: TableDefinition<HeightKey, [u8; 32]> = TableDefinition::new("block_hashes");
/// Transaction hash → [`TxLocation`] record of where the transaction was included.
pub const TX_INDEX: TableDefinition<[u8; 32], TxLocationRecord> = TableDefinition::new("tx_index");

/// Leaf key (BLAKE3 of the state key: table tag ‖ entity key, see `gpunet_protocol::merkle`) →
/// [`encode_entity_row`] of the state key and the entity's encoding, at the head. Removed
/// entities are removed. It is the entity store and the state tree's values at once.
pub const STATE: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("state");
/// Borsh of a tree `NodeKey` → borsh of the tree node.
pub const JMT_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_nodes");
/// Height key of a version → borsh of the `Vec<NodeKey>` that roots from that version on no
/// longer reach, pruned once the version falls out of the retention window. One row per
/// version, so a block adds one row here, not one per replaced node.
pub const STALE_NODES: TableDefinition<HeightKey, &[u8]> = TableDefinition::new("jmt_stale_nodes");

/// State key (table tag ‖ entity key) → the entity's encoding when it left the state for good
/// (an ended order or lease). Outside the tree: history the node serves, not state it proves.
pub const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
/// Secondary lookup keys the node asks to keep, each with a value the node encoded (empty when
/// the key is the whole entry, as tenant ‖ order id is; a row of the node's account
/// transaction index, address ‖ height ‖ position, carries what a wallet's history shows of
/// the transaction, so a page of it reads no block). Written with the block that makes them
/// true; never removed.
pub const LOOKUP: TableDefinition<&[u8], &[u8]> = TableDefinition::new("lookup");

/// Keys of the [`META`] table.
pub mod meta_key {
    /// Big-endian `u32` [`super::SCHEMA_VERSION`] the file was written with.
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// UTF-8 chain id given at genesis.
    pub const CHAIN_ID: &str = "chain_id";
    /// Genesis bytes as the node encoded them.
    pub const GENESIS: &str = "genesis";
    /// [`super::HeadRecord`] of the latest committed height.
    pub const HEAD: &str = "head";
    /// Big-endian `u64`: the lowest version whose tree is still kept whole.
    pub const TREE_KEPT_FROM: &str = "tree_kept_from";
    /// Big-endian `u64`, only while a state restore is under way: the height being restored. A
    /// store holding it was interrupted and is refused on open.
    pub const RESTORING: &str = "restoring";
    /// Big-endian `u64`, only in a store that began from a restored state: its first height (no
    /// blocks, receipts or history below it).
    pub const BASE_HEIGHT: &str = "base_height";
}

/// A height as a table key: big-endian, so keys sort in height order.
pub type HeightKey = [u8; 8];

/// The key under which `height` is stored.
pub fn height_key(height: u64) -> HeightKey {
    height.to_be_bytes()
}

/// The height a [`HeightKey`] stands for.
pub fn height_from_key(key: HeightKey) -> u64 {
    u64::from_be_bytes(key)
}

/// Width of an encoded head: height (8) ‖ block hash (32) ‖ state root (32).
pub const HEAD_RECORD_LEN: usize = 8 + 32 + 32;

/// An encoded head, as stored under [`meta_key::HEAD`].
pub type HeadRecord = [u8; HEAD_RECORD_LEN];

/// Encodes a head as height (big-endian) ‖ block hash ‖ state root.
pub fn encode_head(height: u64, block_hash: &[u8; 32], state_root: &[u8; 32]) -> HeadRecord {
    let mut out = [0u8; HEAD_RECORD_LEN];
    out[..8].copy_from_slice(&height.to_be_bytes());
    out[8..40].copy_from_slice(block_hash);
    out[40..].copy_from_slice(state_root);
    out
}

/// Decodes [`encode_head`]'s output; `None` if the bytes are not exactly one head long.
pub fn decode_head(bytes: &[u8]) -> Option<(u64, [u8; 32], [u8; 32])> {
    let record: &HeadRecord = bytes.try_into().ok()?;
    let mut height = [0u8; 8];
    let mut block_hash = [0u8; 32];
    let mut state_root = [0u8; 32];
    height.copy_from_slice(&record[..8]);
    block_hash.copy_from_slice(&record[8..40]);
    state_root.copy_from_slice(&record[40..]);
    Some((u64::from_be_bytes(height), block_hash, state_root))
}

/// An entity row: the state key's length (one byte), the state key, the entity's encoding.
/// `None` for a state key longer than 255 bytes (none is: the longest is 33).
pub fn encode_entity_row(state_key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let len = u8::try_from(state_key.len()).ok()?;
    let mut out = Vec::with_capacity(1 + state_key.len() + value.len());
    out.push(len);
    out.extend_from_slice(state_key);
    out.extend_from_slice(value);
    Some(out)
}

/// [`decode_entity_row`], refusing a malformed row as a [`crate::StoreError`].
pub fn entity_row(row: &[u8]) -> Result<(&[u8], &[u8]), crate::StoreError> {
    decode_entity_row(row).ok_or(crate::StoreError::MalformedRecord {
        record: "entity row",
        len: row.len(),
    })
}

/// The state key and the value of an [`encode_entity_row`]; `None` if it is cut short.
pub fn decode_entity_row(row: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = row.split_first()?;
    let len = usize::from(len);
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// An encoded transaction location: height (big-endian `u64`) ‖ index in block (big-endian `u32`).
pub type TxLocationRecord = [u8; 12];

/// Encodes where a transaction was included.
pub fn encode_tx_location(height: u64, index_in_block: u32) -> TxLocationRecord {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&height.to_be_bytes());
    out[8..].copy_from_slice(&index_in_block.to_be_bytes());
    out
}

/// Decodes [`encode_tx_location`]'s output into (height, index in block).
pub fn decode_tx_location(record: TxLocationRecord) -> (u64, u32) {
    let mut height = [0u8; 8];
    let mut index = [0u8; 4];
    height.copy_from_slice(&record[..8]);
    index.copy_from_slice(&record[8..]);
    (u64::from_be_bytes(height), u32::from_be_bytes(index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    /// Heights chosen to straddle every byte boundary, where little-endian order would go wrong.
    const AWKWARD_HEIGHTS: [u64; 10] = [
        0,
        1,
        255,
        256,
        257,
        65_535,
        65_536,
        1 << 32,
        (1 << 56) + 1,
        u64::MAX,
    ];

    #[test]
    fn height_keys_sort_bytewise_in_numeric_order() {
        let keys: Vec<HeightKey> = AWKWARD_HEIGHTS.iter().map(|h| height_key(*h)).collect();
        for pair in keys.windows(2) {
            assert!(
                pair[0] < pair[1],
                "{:?} should sort before {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn height_keys_round_trip() {
        for height in AWKWARD_HEIGHTS {
            assert_eq!(height_from_key(height_key(height)), height);
        }
    }

    #[test]
    fn redb_range_scan_over_height_keys_yields_heights_in_numeric_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::create(dir.path().join("order.redb")).expect("create db");
        let txn = db.begin_write().expect("write txn");
        {
            let mut blocks = txn.open_table(BLOCKS).expect("blocks table");
            // Insert in reverse so that insertion order cannot explain the result.
            for height in AWKWARD_HEIGHTS.iter().rev() {
                blocks
                    .insert(height_key(*height), &height.to_le_bytes()[..])
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");

        let txn = db.begin_read().expect("read txn");
        let blocks = txn.open_table(BLOCKS).expect("blocks table");
        let scanned: Vec<u64> = blocks
            .range(height_key(256)..)
            .expect("range")
            .map(|entry| height_from_key(entry.expect("entry").0.value()))
            .collect();
        let expected: Vec<u64> = AWKWARD_HEIGHTS
            .iter()
            .copied()
            .filter(|h| *h >= 256)
            .collect();
        assert_eq!(scanned, expected);
    }

    #[test]
    fn head_record_round_trips_and_rejects_wrong_lengths() {
        let record = encode_head(u64::MAX - 1, &[7; 32], &[9; 32]);
        assert_eq!(decode_head(&record), Some((u64::MAX - 1, [7; 32], [9; 32])));
        assert_eq!(decode_head(&record[..HEAD_RECORD_LEN - 1]), None);
        assert_eq!(decode_head(&[0; HEAD_RECORD_LEN + 1]), None);
    }

    #[test]
    fn tx_location_record_round_trips() {
        for (height, index) in [(0, 0), (1, u32::MAX), (u64::MAX, 7)] {
            assert_eq!(
                decode_tx_location(encode_tx_location(height, index)),
                (height, index)
            );
        }
    }

    #[test]
    fn entity_rows_round_trip_and_refuse_what_they_cannot_hold() {
        let row = encode_entity_row(b"\x01abc", b"value").expect("short key");
        assert_eq!(
            decode_entity_row(&row),
            Some((&b"\x01abc"[..], &b"value"[..]))
        );
        let empty = encode_entity_row(b"\x00chain", b"").expect("short key");
        assert_eq!(
            decode_entity_row(&empty),
            Some((&b"\x00chain"[..], &b""[..]))
        );
        assert_eq!(encode_entity_row(&[7u8; 256], b"v"), None);
        assert_eq!(decode_entity_row(&[9, 1, 2]), None);
        assert_eq!(decode_entity_row(&[]), None);
    }

    #[test]
    fn table_names_are_distinct() {
        use redb::TableHandle;
        let mut names = vec![
            META.name(),
            BLOCKS.name(),
            RECEIPTS.name(),
            STATE_ROOTS.name(),
            BLOCK_HASHES.name(),
            TX_INDEX.name(),
            STATE.name(),
            JMT_NODES.name(),
            STALE_NODES.name(),
        ];
        let before = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), before);
    }
}
