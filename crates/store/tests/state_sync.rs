//! State sync between two real stores: a snapshot served in chunks with range proofs, restored
//! into a fresh store that then goes on committing the chain; and every way a sender could lie
//! (a changed value, a skipped chunk, an early end, a wrong root, a reordered chunk) refused.

mod support;

use std::path::Path;

use gpunet_protocol::Hash;
use gpunet_protocol::merkle::{StateChunk, StateWrite, verify_proof};
use gpunet_store::{BlockRecord, Head, Store, StoreError, StoreOptions};
use support::{CHAIN_ID, GENESIS, changes_at, entities, genesis_entities, key};

/// Genesis with 600 more accounts, so a snapshot takes many chunks.
fn big_genesis() -> Vec<StateWrite> {
    let mut g = genesis_entities();
    g.extend((1_000..1_600).map(|i| StateWrite {
        key: key(1, i),
        value: Some(format!("account {i} {}", "y".repeat((i % 9) as usize * 10)).into_bytes()),
    }));
    g
}

fn commit(store: &Store, height: u64) -> [u8; 32] {
    let changes = changes_at(height);
    store
        .commit_block(&BlockRecord {
            height,
            block_hash: [height as u8; 32],
            block: b"block",
            receipts: b"receipts",
            changes: &changes,
            tx_hashes: &[],
            history: &[],
            lookups: &[],
        })
        .expect("commit")
}

/// A store at height 20 on the big genesis.
fn source(dir: &Path) -> Store {
    source_keeping(dir, StoreOptions::default())
}

fn source_keeping(dir: &Path, options: StoreOptions) -> Store {
    let store = Store::open_with(&dir.join("source.redb"), options).expect("open");
    store
        .init_genesis(CHAIN_ID, GENESIS, &big_genesis())
        .expect("genesis");
    for h in 1..=20 {
        commit(&store, h);
    }
    store
}

/// Every chunk of `snapshot`, `limit` entities at a time.
fn all_chunks(snapshot: &gpunet_store::Snapshot, limit: usize) -> Vec<StateChunk> {
    let mut chunks = Vec::new();
    let mut after = None;
    while let Some(chunk) = snapshot.chunk(after, limit).expect("chunk") {
        let (last_key, _) = chunk.entities.last().expect("a chunk is never empty");
        after = Some(gpunet_protocol::merkle::leaf_key(last_key).0);
        let done = chunk.last;
        chunks.push(chunk);
        if done {
            break;
        }
    }
    chunks
}

/// Restores `chunks` into a new store at `path`; the first error, if any.
fn restore(path: &Path, head: Head, chunks: &[StateChunk]) -> Result<Store, StoreError> {
    let store = Store::open(path).expect("open fresh");
    {
        let mut r = store.begin_restore(CHAIN_ID, GENESIS, head)?;
        for c in chunks {
            r.add_chunk(c)?;
        }
        r.finish()?;
    }
    Ok(store)
}

#[test]
fn a_state_restored_from_chunks_is_the_served_state_and_goes_on_committing_the_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = source(dir.path());
    let snapshot = src.snapshot().expect("snapshot");
    let head = snapshot.head();
    assert_eq!(head.height, 20);

    let chunks = all_chunks(&snapshot, 97);
    assert!(chunks.len() > 5, "{} chunks", chunks.len());
    assert!(chunks.last().expect("chunks").last);
    assert!(chunks[..chunks.len() - 1].iter().all(|c| !c.last));
    // Chunk sizes are capped whatever is asked.
    let one = snapshot
        .chunk(None, usize::MAX)
        .expect("chunk")
        .expect("some");
    assert!(one.entities.len() <= gpunet_protocol::merkle::MAX_CHUNK_ENTITIES);

    let dst = restore(&dir.path().join("restored.redb"), head, &chunks).expect("restored");
    assert_eq!(dst.head().expect("head"), Some(head));
    assert_eq!(entities(&dst), entities(&src));
    assert_eq!(dst.tree_root(20).expect("root"), Some(head.state_root));
    assert_eq!(
        dst.genesis().expect("genesis"),
        Some((CHAIN_ID.to_owned(), GENESIS.to_vec()))
    );
    // Nothing below the base: no blocks, no older trees; the store says where it begins.
    assert_eq!(dst.block(20).expect("read"), None);
    assert_eq!(dst.base_height().expect("read"), 20);
    assert_eq!(src.base_height().expect("read"), 0, "filled from genesis");
    assert!(matches!(
        dst.prove(&key(1, 1_000), Some(19)),
        Err(StoreError::NoTreeAt { .. })
    ));
    // Its proofs check out against the served root.
    let p = dst.prove(&key(1, 1_005), None).expect("proof");
    verify_proof(
        Hash(head.state_root),
        &key(1, 1_005),
        p.value.as_deref(),
        &p.proof,
    )
    .expect("the restored store proves what the source holds");

    // Both go on with the same blocks to the same roots, pruning and all.
    for h in 21..=30 {
        assert_eq!(commit(&dst, h), commit(&src, h), "height {h}");
    }
    assert_eq!(entities(&dst), entities(&src));
    drop(dst);
    let reopened = Store::open(&dir.path().join("restored.redb")).expect("reopen");
    assert_eq!(reopened.head().expect("head").map(|h| h.height), Some(30));
}

#[test]
fn a_snapshot_stays_at_its_height_while_the_chain_moves_on_and_prunes() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Two versions kept: the blocks below prune every tree node of height 20 the snapshot reads.
    let options = StoreOptions {
        keep_versions: 2,
        ..StoreOptions::default()
    };
    let src = source_keeping(dir.path(), options);
    let snapshot = src.snapshot().expect("snapshot");
    let at_20 = entities(&src);
    // Blocks after the snapshot change and remove entities the snapshot still serves.
    for h in 21..=40 {
        commit(&src, h);
    }
    let chunks = all_chunks(&snapshot, 64);
    let dst = restore(&dir.path().join("restored.redb"), snapshot.head(), &chunks)
        .expect("the pinned snapshot restores");
    assert_eq!(entities(&dst), at_20);
    assert_ne!(entities(&src), at_20);
    assert!(
        matches!(
            src.prove(&key(1, 1_000), Some(20)),
            Err(StoreError::NoTreeAt { .. })
        ),
        "height 20 is pruned from the source itself"
    );
}

#[test]
fn a_sender_that_lies_is_caught_and_its_unfinished_store_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = source(dir.path());
    let snapshot = src.snapshot().expect("snapshot");
    let head = snapshot.head();
    let chunks = all_chunks(&snapshot, 50);
    let path = |name: &str| dir.path().join(format!("{name}.redb"));
    let why = |r: Result<Store, StoreError>| match r {
        Ok(_) => panic!("a lie was restored"),
        Err(e) => e.to_string(),
    };

    // A value changed in the middle of a chunk.
    let mut changed = chunks.clone();
    changed[2].entities[7].1 = b"forged balance".to_vec();
    let e = why(restore(&path("changed"), head, &changed));
    assert!(e.contains("does not prove out"), "{e}");

    // A chunk left out.
    let mut skipped = chunks.clone();
    skipped.remove(1);
    let e = why(restore(&path("skipped"), head, &skipped));
    assert!(e.contains("does not prove out"), "{e}");

    // An end claimed early: the entities after it are missing.
    let mut early = chunks[..3].to_vec();
    early[2].last = true;
    let e = why(restore(&path("early"), head, &early));
    assert!(
        e.contains("does not prove out") || e.contains("root"),
        "{e}"
    );

    // Chunks that never say they are the last.
    let mut endless = chunks.clone();
    endless.last_mut().expect("chunks").last = false;
    let e = why(restore(&path("endless"), head, &endless));
    assert!(e.contains("last chunk has not come"), "{e}");

    // A root other than the chunks'.
    let mut wrong = head;
    wrong.state_root[0] ^= 1;
    let e = why(restore(&path("wrong-root"), wrong, &chunks));
    assert!(e.contains("does not prove out"), "{e}");

    // Entities out of order, and a chunk played twice.
    let mut reordered = chunks.clone();
    reordered[1].entities.swap(0, 1);
    let e = why(restore(&path("reordered"), head, &reordered));
    assert!(e.contains("increasing leaf-key order"), "{e}");
    let mut twice = chunks.clone();
    twice.insert(1, chunks[0].clone());
    let e = why(restore(&path("twice"), head, &twice));
    assert!(e.contains("increasing leaf-key order"), "{e}");

    // A store whose restore did not finish is refused on open, saying what to do.
    let err = Store::open(&path("changed")).expect_err("an unfinished restore");
    assert!(
        matches!(err, StoreError::IncompleteRestore { height: 20, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("delete the file and sync again"),
        "{err}"
    );

    // Only a new store takes a restore.
    let e = src
        .begin_restore(CHAIN_ID, GENESIS, head)
        .err()
        .expect("the source holds a chain")
        .to_string();
    assert!(e.contains("only into a new store"), "{e}");
}

#[test]
fn after_a_refused_chunk_nothing_more_is_taken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = source(dir.path());
    let snapshot = src.snapshot().expect("snapshot");
    let chunks = all_chunks(&snapshot, 200);
    let store = Store::open(&dir.path().join("fresh.redb")).expect("open");
    let mut r = store
        .begin_restore(CHAIN_ID, GENESIS, snapshot.head())
        .expect("begin");
    let mut bad = chunks[0].clone();
    bad.proof = vec![1, 2, 3];
    let e = r.add_chunk(&bad).expect_err("a garbled proof").to_string();
    assert!(e.contains("proof does not decode"), "{e}");
    let e = r
        .add_chunk(&chunks[0])
        .expect_err("refused after")
        .to_string();
    assert!(e.contains("earlier chunk was refused"), "{e}");
    assert_eq!(r.entities(), 0);
}
