//! The store's public API against a real file: what goes in comes back after a reopen, and what
//! it refuses leaves the file as it was.

use std::path::Path;

use gpunet_store::{
    BlockRecord, GENESIS_BLOCK_HASH, Head, MAX_BLOCKS_PER_RANGE, Store, StoreError,
};

const CHAIN_ID: &str = "gpunet-test-1";
const GENESIS: &[u8] = b"genesis bytes";
const GENESIS_STATE: &[u8] = b"state at genesis";

/// Everything one synthetic height stores, derived from the height alone.
struct Fixture {
    height: u64,
    block_hash: [u8; 32],
    state_root: [u8; 32],
    block: Vec<u8>,
    receipts: Vec<u8>,
    state: Vec<u8>,
    tx_hashes: Vec<[u8; 32]>,
}

impl Fixture {
    fn at(height: u64) -> Fixture {
        let state = format!("state after {height}").into_bytes();
        Fixture {
            height,
            block_hash: *blake3::hash(format!("block hash {height}").as_bytes()).as_bytes(),
            state_root: *blake3::hash(&state).as_bytes(),
            block: format!("block {height}").into_bytes(),
            receipts: format!("receipts {height}").into_bytes(),
            state,
            // Height h carries h transactions, so block 1 has one and later blocks more.
            tx_hashes: (0..height).map(|i| tx_hash(height, i)).collect(),
        }
    }

    fn record(&self) -> BlockRecord<'_> {
        BlockRecord {
            height: self.height,
            block_hash: self.block_hash,
            state_root: self.state_root,
            block: &self.block,
            receipts: &self.receipts,
            state: &self.state,
            tx_hashes: &self.tx_hashes,
        }
    }

    fn head(&self) -> Head {
        Head {
            height: self.height,
            block_hash: self.block_hash,
            state_root: self.state_root,
        }
    }
}

fn tx_hash(height: u64, index: u64) -> [u8; 32] {
    *blake3::hash(format!("tx {height} {index}").as_bytes()).as_bytes()
}

fn genesis_root() -> [u8; 32] {
    *blake3::hash(GENESIS_STATE).as_bytes()
}

fn open_with_genesis(path: &Path) -> Store {
    let store = Store::open(path).expect("open store");
    store
        .init_genesis(CHAIN_ID, GENESIS, GENESIS_STATE, genesis_root())
        .expect("init genesis");
    store
}

fn commit_heights(store: &Store, heights: std::ops::RangeInclusive<u64>) {
    for height in heights {
        store
            .commit_block(&Fixture::at(height).record())
            .expect("commit block");
    }
}

#[test]
fn blocks_roots_state_and_tx_index_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    {
        let store = open_with_genesis(&path);
        commit_heights(&store, 1..=5);
    }

    let store = Store::open(&path).expect("reopen store");
    let last = Fixture::at(5);
    assert_eq!(store.head().expect("head"), Some(last.head()));
    assert_eq!(
        store.latest_state().expect("latest state"),
        Some((last.head(), last.state.clone()))
    );
    assert_eq!(
        store.genesis().expect("genesis"),
        Some((CHAIN_ID.to_owned(), GENESIS.to_vec()))
    );
    assert_eq!(store.state_root(0).expect("root 0"), Some(genesis_root()));
    assert_eq!(
        store.block_hash(0).expect("hash 0"),
        Some(GENESIS_BLOCK_HASH)
    );
    assert_eq!(store.block(0).expect("block 0"), None);

    for height in 1..=5 {
        let fixture = Fixture::at(height);
        assert_eq!(store.block(height).expect("block"), Some(fixture.block));
        assert_eq!(
            store.receipts(height).expect("receipts"),
            Some(fixture.receipts)
        );
        assert_eq!(
            store.state_root(height).expect("root"),
            Some(fixture.state_root)
        );
        assert_eq!(
            store.block_hash(height).expect("hash"),
            Some(fixture.block_hash)
        );
        for (index, hash) in fixture.tx_hashes.iter().enumerate() {
            let index = u32::try_from(index).expect("small index");
            assert_eq!(
                store.tx_location(hash).expect("tx location"),
                Some((height, index))
            );
        }
    }
    assert_eq!(store.block(6).expect("block 6"), None);
    assert_eq!(store.state_root(6).expect("root 6"), None);
    assert_eq!(store.tx_location(&[0xee; 32]).expect("unknown tx"), None);
}

#[test]
fn fresh_store_has_no_head_genesis_or_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("chain.redb")).expect("open store");
    assert_eq!(store.head().expect("head"), None);
    assert_eq!(store.genesis().expect("genesis"), None);
    assert_eq!(store.latest_state().expect("latest state"), None);
    assert_eq!(store.blocks_range(0, 10).expect("range"), vec![]);
}

#[test]
fn genesis_alone_gives_a_head_at_height_zero_with_the_genesis_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    let head = Head {
        height: 0,
        block_hash: GENESIS_BLOCK_HASH,
        state_root: genesis_root(),
    };
    assert_eq!(
        store.latest_state().expect("latest state"),
        Some((head, GENESIS_STATE.to_vec()))
    );
}

#[test]
fn committing_before_genesis_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("chain.redb")).expect("open store");
    let err = store
        .commit_block(&Fixture::at(1).record())
        .expect_err("no genesis yet");
    assert!(matches!(err, StoreError::NotInitialised), "{err}");
    assert_eq!(store.block(1).expect("block"), None);
}

#[test]
fn non_contiguous_heights_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    commit_heights(&store, 1..=2);
    let before = store.latest_state().expect("latest state");

    for bad in [0, 1, 2, 4, 100] {
        let err = store
            .commit_block(&Fixture::at(bad).record())
            .expect_err("gap or repeat must be refused");
        assert!(
            matches!(err, StoreError::NonContiguousHeight { expected: 3, got } if got == bad),
            "{err:?}"
        );
        assert!(err.to_string().contains("expected height 3"), "{err}");
    }

    assert_eq!(store.latest_state().expect("latest state"), before);
    assert_eq!(store.block(4).expect("block 4"), None);
    assert_eq!(store.state_root(100).expect("root 100"), None);
    // Height 4's transactions were never indexed.
    assert_eq!(store.tx_location(&tx_hash(4, 0)).expect("tx"), None);
    // Height 1's block was not overwritten by the refused repeat.
    assert_eq!(store.block(1).expect("block 1"), Some(Fixture::at(1).block));
}

#[test]
fn same_genesis_twice_is_accepted_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    commit_heights(&store, 1..=3);
    let before = store.latest_state().expect("latest state");

    store
        .init_genesis(CHAIN_ID, GENESIS, GENESIS_STATE, genesis_root())
        .expect("repeating the same genesis is fine");

    assert_eq!(store.latest_state().expect("latest state"), before);
}

#[test]
fn a_different_genesis_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    commit_heights(&store, 1..=2);
    let before = store.latest_state().expect("latest state");

    let other_root = [0x42; 32];
    let attempts: [(&str, &[u8], [u8; 32]); 3] = [
        ("other-chain", GENESIS, genesis_root()),
        (CHAIN_ID, b"other genesis", genesis_root()),
        (CHAIN_ID, GENESIS, other_root),
    ];
    for (chain_id, genesis, root) in attempts {
        let err = store
            .init_genesis(chain_id, genesis, b"other state", root)
            .expect_err("a different genesis must be refused");
        assert!(
            matches!(&err, StoreError::GenesisMismatch { stored_chain_id, given_chain_id }
                if stored_chain_id == CHAIN_ID && given_chain_id == chain_id),
            "{err:?}"
        );
        assert!(err.to_string().contains("different genesis"), "{err}");
    }

    assert_eq!(
        store.genesis().expect("genesis"),
        Some((CHAIN_ID.to_owned(), GENESIS.to_vec()))
    );
    assert_eq!(store.state_root(0).expect("root 0"), Some(genesis_root()));
    assert_eq!(store.latest_state().expect("latest state"), before);
}

#[test]
fn blocks_range_walks_heights_in_order_and_stops_at_the_limit_or_the_head() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    commit_heights(&store, 1..=300);

    let heights = |blocks: Vec<(u64, Vec<u8>)>| -> Vec<u64> {
        blocks.into_iter().map(|(height, _)| height).collect()
    };
    assert_eq!(
        heights(store.blocks_range(255, 3).expect("range")),
        vec![255, 256, 257]
    );
    assert_eq!(
        heights(store.blocks_range(298, 10).expect("range")),
        vec![298, 299, 300]
    );
    assert_eq!(
        heights(store.blocks_range(0, 2).expect("range")),
        vec![1, 2]
    );
    assert_eq!(store.blocks_range(301, 10).expect("range"), vec![]);
    assert_eq!(store.blocks_range(1, 0).expect("range"), vec![]);
    let (height, block) = store
        .blocks_range(7, 1)
        .expect("range")
        .pop()
        .expect("one block");
    assert_eq!((height, block), (7, Fixture::at(7).block));
}

#[test]
fn blocks_range_never_returns_more_than_the_cap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    let over_cap = u64::try_from(MAX_BLOCKS_PER_RANGE).expect("cap fits u64") + 5;
    // One write transaction per block is slow on a real disk; small blocks keep it bearable.
    for height in 1..=over_cap {
        store
            .commit_block(&BlockRecord {
                height,
                block_hash: [1; 32],
                state_root: [2; 32],
                block: &height.to_be_bytes(),
                receipts: &[],
                state: &[],
                tx_hashes: &[],
            })
            .expect("commit block");
    }

    let blocks = store.blocks_range(1, usize::MAX).expect("range");
    assert_eq!(blocks.len(), MAX_BLOCKS_PER_RANGE);
    assert_eq!(blocks.first().map(|(h, _)| *h), Some(1));
    assert_eq!(
        blocks.last().map(|(h, _)| *h),
        Some(u64::try_from(MAX_BLOCKS_PER_RANGE).expect("cap fits u64"))
    );
}

#[test]
fn a_second_open_of_the_same_file_reports_it_is_locked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let _first = Store::open(&path).expect("first open");

    let err = Store::open(&path).expect_err("file is held");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("locked"), "{err}");
}

#[test]
fn a_file_that_is_not_a_store_is_reported_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    std::fs::write(&path, vec![0xab; 64 * 1024]).expect("write garbage");

    let err = Store::open(&path).expect_err("garbage is not a store");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn a_store_with_a_flipped_byte_is_reported_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    {
        let store = open_with_genesis(&path);
        commit_heights(&store, 1..=20);
    }
    let mut bytes = std::fs::read(&path).expect("read store");
    // Damage a data page, well past the header.
    let target = bytes
        .windows(b"state after 20".len())
        .position(|w| w == b"state after 20")
        .expect("state bytes are stored verbatim");
    bytes[target] ^= 0xff;
    std::fs::write(&path, bytes).expect("write damaged store");

    let err = Store::open(&path).expect_err("damage must be detected");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn a_new_store_file_is_readable_by_its_owner_only_and_reopens() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chain.redb");
    let store = Store::open(&path).expect("creates");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(store);
    Store::open(&path).expect("reopens the file it created");
}
