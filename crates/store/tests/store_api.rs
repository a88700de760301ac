//! The store's public API against a real file: what goes in comes back after a reopen, and what
//! it refuses leaves the file as it was.

use std::path::Path;

use gpunet_protocol::Hash;
use gpunet_protocol::merkle::{ProofError, StateWrite, verify_proof};
use gpunet_store::{
    BlockRecord, GENESIS_BLOCK_HASH, Head, MAX_BLOCKS_PER_RANGE, Store, StoreError, StoreOptions,
};

mod support;
use support::{CHAIN_ID, GENESIS, changes_at, entities, genesis_entities, key, model_at};

/// Everything one synthetic height stores, derived from the height alone.
struct Fixture {
    height: u64,
    block_hash: [u8; 32],
    block: Vec<u8>,
    receipts: Vec<u8>,
    changes: Vec<StateWrite>,
    tx_hashes: Vec<[u8; 32]>,
}

impl Fixture {
    fn at(height: u64) -> Fixture {
        Fixture {
            height,
            block_hash: *blake3::hash(format!("block hash {height}").as_bytes()).as_bytes(),
            block: format!("block {height}").into_bytes(),
            receipts: format!("receipts {height}").into_bytes(),
            changes: changes_at(height),
            // Height h carries h transactions, so block 1 has one and later blocks more.
            tx_hashes: (0..height).map(|i| tx_hash(height, i)).collect(),
        }
    }

    fn record(&self) -> BlockRecord<'_> {
        BlockRecord {
            height: self.height,
            block_hash: self.block_hash,
            block: &self.block,
            receipts: &self.receipts,
            changes: &self.changes,
            tx_hashes: &self.tx_hashes,
            history: &[],
            lookups: &[],
        }
    }
}

fn tx_hash(height: u64, index: u64) -> [u8; 32] {
    *blake3::hash(format!("tx {height} {index}").as_bytes()).as_bytes()
}

fn open_with_genesis(path: &Path) -> Store {
    open_with_genesis_keeping(path, StoreOptions::default())
}

fn open_with_genesis_keeping(path: &Path, options: StoreOptions) -> Store {
    let store = Store::open_with(path, options).expect("open store");
    store
        .init_genesis(CHAIN_ID, GENESIS, &genesis_entities())
        .expect("init genesis");
    store
}

/// Commits the heights and returns the root each commit reported.
fn commit_heights(store: &Store, heights: std::ops::RangeInclusive<u64>) -> Vec<[u8; 32]> {
    heights
        .map(|height| {
            store
                .commit_block(&Fixture::at(height).record())
                .expect("commit block")
        })
        .collect()
}

#[test]
fn blocks_roots_entities_and_tx_index_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let (genesis_root, roots) = {
        let store = open_with_genesis(&path);
        let genesis_root = store.state_root(0).expect("root 0").expect("genesis root");
        (genesis_root, commit_heights(&store, 1..=5))
    };

    let store = Store::open(&path).expect("reopen store");
    let last = Fixture::at(5);
    assert_eq!(
        store.head().expect("head"),
        Some(Head {
            height: 5,
            block_hash: last.block_hash,
            state_root: roots[4],
        })
    );
    assert_eq!(entities(&store), model_at(5));
    assert_eq!(store.tree_root(5).expect("tree root"), Some(roots[4]));
    assert_eq!(
        store.genesis().expect("genesis"),
        Some((CHAIN_ID.to_owned(), GENESIS.to_vec()))
    );
    assert_eq!(
        store.block_hash(0).expect("hash 0"),
        Some(GENESIS_BLOCK_HASH)
    );
    assert_eq!(store.block(0).expect("block 0"), None);
    assert_ne!(
        genesis_root, roots[0],
        "a block that writes changes the root"
    );

    for height in 1..=5 {
        let fixture = Fixture::at(height);
        assert_eq!(store.block(height).expect("block"), Some(fixture.block));
        assert_eq!(
            store.receipts(height).expect("receipts"),
            Some(fixture.receipts)
        );
        let index = usize::try_from(height - 1).expect("small");
        assert_eq!(store.state_root(height).expect("root"), Some(roots[index]));
        assert_eq!(
            store.tree_root(height).expect("tree root"),
            Some(roots[index])
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
fn the_same_writes_give_the_same_roots_and_any_different_write_another_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = open_with_genesis(&dir.path().join("a.redb"));
    let b = open_with_genesis(&dir.path().join("b.redb"));
    assert_eq!(
        a.state_root(0).expect("root"),
        b.state_root(0).expect("root")
    );
    assert_eq!(commit_heights(&a, 1..=20), commit_heights(&b, 1..=20));

    // The order of one block's writes does not matter; their content does.
    let mut reversed = Fixture::at(21);
    reversed.changes.reverse();
    let root_a = a.commit_block(&Fixture::at(21).record()).expect("commit");
    let root_b = b.commit_block(&reversed.record()).expect("commit");
    assert_eq!(root_a, root_b);

    let c = open_with_genesis(&dir.path().join("c.redb"));
    commit_heights(&c, 1..=21);
    let mut changed = Fixture::at(22);
    changed.changes[1].value = Some(b"one byte else".to_vec());
    let removed = {
        let mut f = Fixture::at(22);
        f.changes.push(StateWrite {
            key: key(1, 3),
            value: None,
        });
        f
    };
    let honest = a.commit_block(&Fixture::at(22).record()).expect("commit");
    let other = b.commit_block(&changed.record()).expect("commit");
    let fewer = c.commit_block(&removed.record()).expect("commit");
    assert_ne!(honest, other);
    assert_ne!(honest, fewer);
    assert_ne!(other, fewer);
}

#[test]
fn folding_by_batch_and_key_by_key_build_the_same_tree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let batch = open_with_genesis(&dir.path().join("batch.redb"));
    let keyed = open_with_genesis_keeping(
        &dir.path().join("keyed.redb"),
        StoreOptions {
            key_by_key: true,
            ..StoreOptions::default()
        },
    );
    assert_eq!(
        batch.state_root(0).expect("root"),
        keyed.state_root(0).expect("root")
    );
    // Heights 1 to 40 hold blocks with removals (every fourth) and without.
    assert_eq!(
        commit_heights(&batch, 1..=40),
        commit_heights(&keyed, 1..=40)
    );
    let key = key(1, 40 % 13);
    let (a, b) = (
        batch.prove(&key, None).expect("prove"),
        keyed.prove(&key, None).expect("prove"),
    );
    assert_eq!(a, b);
}

#[test]
fn proofs_show_values_and_absences_against_the_root_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    let roots = commit_heights(&store, 1..=12);
    let head_root = Hash(roots[11]);

    // A value at the head: it verifies, and a changed value, key or root does not.
    let account = key(1, 12);
    let p = store.prove(&account, None).expect("prove");
    assert_eq!((p.height, p.root), (12, roots[11]));
    let value = p.value.clone().expect("account 12 was written at 12");
    assert_eq!(Some(&value), model_at(12).get(&account));
    verify_proof(head_root, &account, Some(&value), &p.proof).expect("the proof holds");
    let mut forged = value.clone();
    forged[0] ^= 1;
    assert!(matches!(
        verify_proof(head_root, &account, Some(&forged), &p.proof),
        Err(ProofError::Mismatch { .. })
    ));
    assert!(verify_proof(head_root, &key(1, 11), Some(&value), &p.proof).is_err());
    assert!(verify_proof(Hash(roots[10]), &account, Some(&value), &p.proof).is_err());
    assert!(
        verify_proof(head_root, &account, None, &p.proof).is_err(),
        "an inclusion proof is no proof of absence"
    );

    // An entity that never existed, and one the chain removed: proofs of absence.
    for absent in [key(1, 999), key(3, 100 + 12 % 5)] {
        let p = store.prove(&absent, None).expect("prove");
        assert_eq!(p.value, None, "{absent:?}");
        verify_proof(head_root, &absent, None, &p.proof).expect("absence holds");
        assert!(verify_proof(head_root, &absent, Some(b"made up"), &p.proof).is_err());
    }

    // At an older kept height, an entity unchanged since proves against that height's root;
    // one that changed (or went) since has no proof to give: only its latest value is kept.
    let unchanged = key(1, 9); // last written at height 9
    let then = store.prove(&unchanged, Some(10)).expect("prove at 10");
    assert_eq!(then.root, roots[9]);
    assert_eq!(then.value.as_ref(), model_at(10).get(&unchanged));
    verify_proof(
        Hash(roots[9]),
        &unchanged,
        then.value.as_deref(),
        &then.proof,
    )
    .expect("the old proof holds against the old root");
    // Account 9 changed at 9 (from its genesis value); order 102 went at 12. (An entity absent
    // then is proven absent then: that proof reads no value.)
    for (changed, at) in [(key(1, 9), 5), (key(3, 102), 11)] {
        let err = store.prove(&changed, Some(at)).expect_err("changed since");
        assert!(
            matches!(err, StoreError::ChangedSince { height, head: 12 } if height == at),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("only its latest value is kept"),
            "{err}"
        );
    }

    let err = store
        .prove(&account, Some(13))
        .expect_err("no height 13 yet");
    assert!(
        matches!(err, StoreError::NoTreeAt { height: 13, .. }),
        "{err}"
    );
}

#[test]
fn old_tree_versions_are_pruned_past_the_window_and_the_kept_ones_still_prove() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis_keeping(
        &dir.path().join("chain.redb"),
        StoreOptions {
            keep_versions: 10,
            ..StoreOptions::default()
        },
    );
    commit_heights(&store, 1..=100);
    let after_100 = store.tree_size().expect("size");
    let roots = commit_heights(&store, 101..=400);
    let after_400 = store.tree_size().expect("size");
    // The same few keys rewritten 300 more times: a pruned tree does not grow with the chain.
    assert!(
        after_400.nodes <= after_100.nodes + 20,
        "tree grew from {after_100:?} to {after_400:?}"
    );
    assert_eq!(after_400.entities, model_at(400).len() as u64);

    // The chain singleton changes every block.
    let account = key(0, 0);
    let err = store.prove(&account, Some(390)).expect_err("pruned");
    assert!(
        matches!(
            err,
            StoreError::NoTreeAt {
                height: 390,
                kept_from: 391,
                head: 400
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("keeps heights 391 to 400"),
        "{err}"
    );
    // Every kept height still has its whole tree: each entity unchanged since proves there,
    // and the one that changes every block only at the head.
    let head_model = model_at(400);
    for height in 391..=400 {
        let root = roots[usize::try_from(height - 101).expect("small")];
        let then = model_at(height);
        let unchanged: Vec<&Vec<u8>> = head_model
            .keys()
            .filter(|k| then.get(*k) == head_model.get(*k))
            .collect();
        assert!(!unchanged.is_empty(), "height {height}");
        for k in unchanged {
            let p = store.prove(k, Some(height)).expect("kept");
            assert_eq!(p.root, root);
            verify_proof(Hash(root), k, p.value.as_deref(), &p.proof)
                .unwrap_or_else(|e| panic!("height {height}: {e}"));
        }
        let changed = store.prove(&account, Some(height));
        assert_eq!(
            changed.is_ok(),
            height == 400,
            "height {height}: {changed:?}"
        );
    }
}

#[test]
fn a_block_that_writes_nothing_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    let mut f = Fixture::at(1);
    f.changes.clear();
    let err = store.commit_block(&f.record()).expect_err("no changes");
    assert!(err.to_string().contains("changes no entity"), "{err}");
    assert_eq!(store.head().expect("head").map(|h| h.height), Some(0));
}

#[test]
fn history_and_lookups_are_kept_with_their_block_and_read_back_in_range() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let tenant = |t: u8, id: u64| {
        let mut k = vec![t; 32];
        k.extend_from_slice(&id.to_be_bytes());
        k
    };
    {
        let store = open_with_genesis(&path);
        let f = Fixture::at(1);
        let archived = [StateWrite {
            key: b"\x03order-7".to_vec(),
            value: Some(b"ended order".to_vec()),
        }];
        // Each with a value naming it, but one with none: a key may be the whole entry.
        let lookups: Vec<(Vec<u8>, Vec<u8>)> = [(1, 3), (1, 9), (2, 4), (1, 12), (0xff, 1)]
            .into_iter()
            .map(|(t, id)| {
                let value = if id == 9 {
                    Vec::new()
                } else {
                    format!("{t}/{id}").into_bytes()
                };
                (tenant(t, id), value)
            })
            .collect();
        store
            .commit_block(&BlockRecord {
                history: &archived,
                lookups: &lookups,
                ..f.record()
            })
            .expect("commit");

        // A history entry without its value is refused whole: no head moves, nothing is kept.
        let g = Fixture::at(2);
        let bad = [StateWrite {
            key: b"\x04lease-1".to_vec(),
            value: None,
        }];
        let err = store
            .commit_block(&BlockRecord {
                history: &bad,
                lookups: &[(tenant(5, 5), Vec::new())],
                ..g.record()
            })
            .expect_err("no value");
        assert!(err.to_string().contains("without its value"), "{err}");
        assert_eq!(store.head().expect("head").map(|h| h.height), Some(1));
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(
        store.history(b"\x03order-7").expect("read"),
        Some(b"ended order".to_vec())
    );
    assert_eq!(store.history(b"\x03order-8").expect("read"), None);
    assert_eq!(store.history(b"\x04lease-1").expect("read"), None);

    let ids = |entries: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<u64> {
        entries
            .iter()
            .map(|(k, _)| u64::from_be_bytes(k[32..].try_into().expect("8 bytes")))
            .collect()
    };
    let prefix = [1u8; 32];
    // Each key comes back with its own value.
    let values: Vec<Vec<u8>> = store
        .lookup_below(&prefix, None, 10)
        .expect("read")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, [b"1/12".to_vec(), Vec::new(), b"1/3".to_vec()]);
    // Highest first, only this prefix, at most `limit`.
    assert_eq!(
        ids(store.lookup_below(&prefix, None, 10).expect("read")),
        [12, 9, 3]
    );
    assert_eq!(
        ids(store.lookup_below(&prefix, None, 2).expect("read")),
        [12, 9]
    );
    // Strictly below the cursor.
    assert_eq!(
        ids(store
            .lookup_below(&prefix, Some(&tenant(1, 9)), 10)
            .expect("read")),
        [3]
    );
    assert!(
        store
            .lookup_below(&prefix, Some(&tenant(1, 3)), 10)
            .expect("read")
            .is_empty()
    );
    // An all-0xff prefix has no end key and still finds its own keys only.
    assert_eq!(
        ids(store.lookup_below(&[0xff; 32], None, 10).expect("read")),
        [1]
    );
    assert!(
        store
            .lookup_below(&[5u8; 32], None, 10)
            .expect("read")
            .is_empty(),
        "the refused block's lookup was not kept"
    );
}

#[test]
fn a_store_of_another_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A file as format 1 left it (the meta table with its version), and one as format 6 did,
    // whose lookup table held keys without values: refused on the version, before any table
    // of another shape is opened.
    for found in [1u32, 6] {
        let path = dir.path().join(format!("chain-{found}.redb"));
        {
            let db = redb::Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            {
                let mut meta = txn
                    .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                    .expect("meta");
                meta.insert("schema_version", &found.to_be_bytes()[..])
                    .expect("insert");
                if found == 6 {
                    let mut lookup = txn
                        .open_table(redb::TableDefinition::<&[u8], ()>::new("lookup"))
                        .expect("lookup");
                    lookup.insert(&b"\x01tenant"[..], ()).expect("insert");
                }
            }
            txn.commit().expect("commit");
        }
        let err = Store::open(&path).expect_err("an older format");
        assert!(
            matches!(
                err,
                StoreError::UnsupportedSchema {
                    found: f,
                    supported: 7,
                    ..
                } if f == found
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("home directory aside"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}

#[test]
fn fresh_store_has_no_head_genesis_or_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("chain.redb")).expect("open store");
    assert_eq!(store.head().expect("head"), None);
    assert_eq!(store.genesis().expect("genesis"), None);
    assert!(entities(&store).is_empty());
    assert_eq!(store.blocks_range(0, 10).expect("range"), vec![]);
}

#[test]
fn genesis_alone_gives_a_head_at_height_zero_with_the_genesis_entities() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    let root = store.state_root(0).expect("root").expect("genesis root");
    assert_eq!(
        store.head().expect("head"),
        Some(Head {
            height: 0,
            block_hash: GENESIS_BLOCK_HASH,
            state_root: root,
        })
    );
    assert_eq!(store.tree_root(0).expect("tree root"), Some(root));
    assert_eq!(entities(&store), model_at(0));
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
    let before = (store.head().expect("head"), entities(&store));

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

    assert_eq!((store.head().expect("head"), entities(&store)), before);
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
    let before = (store.head().expect("head"), entities(&store));

    let root = store
        .init_genesis(CHAIN_ID, GENESIS, &genesis_entities())
        .expect("repeating the same genesis is fine");

    assert_eq!(Some(root), store.state_root(0).expect("root 0"));
    assert_eq!((store.head().expect("head"), entities(&store)), before);
}

#[test]
fn a_different_genesis_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with_genesis(&dir.path().join("chain.redb"));
    commit_heights(&store, 1..=2);
    let before = (store.head().expect("head"), entities(&store));
    let genesis_root = store.state_root(0).expect("root 0");

    let attempts: [(&str, &[u8]); 2] = [("other-chain", GENESIS), (CHAIN_ID, b"other genesis")];
    for (chain_id, genesis) in attempts {
        let err = store
            .init_genesis(chain_id, genesis, &changes_at(7))
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
    assert_eq!(store.state_root(0).expect("root 0"), genesis_root);
    assert_eq!((store.head().expect("head"), entities(&store)), before);
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
                block: &height.to_be_bytes(),
                receipts: &[],
                changes: &changes_at(height),
                tx_hashes: &[],
                history: &[],
                lookups: &[],
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
        .windows(b"order at 20".len())
        .position(|w| w == b"order at 20")
        .expect("entity bytes are stored verbatim");
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
