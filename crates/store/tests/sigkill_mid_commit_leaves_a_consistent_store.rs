//! Crash safety with a real `SIGKILL`: a child process commits blocks as fast as it can, the test
//! kills it at three different moments, and after each kill the reopened file must hold a head
//! whose blocks, roots, entities and state tree all agree, and must not have lost a block (or
//! changed a root) the child reported as committed.
//!
//! The child is this very test binary, re-run with `--exact` on [`WRITER_TEST`] and
//! [`WRITER_ENV`] set; without that variable the writer test returns at once.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gpunet_store::{BlockRecord, Head, Store, StoreError};

/// Tells a child run of this binary to act as the writer, and where the store file is.
const WRITER_ENV: &str = "GPUNET_STORE_CRASH_WRITER_PATH";
/// Name of the test that acts as the writer in the child.
const WRITER_TEST: &str = "writer_commits_blocks_until_killed";
/// A writer nobody kills (its parent failed) stops on its own after this long.
const WRITER_MAX_RUN: Duration = Duration::from_secs(120);
/// How long the parent waits for the child's next progress line before giving up.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
const SIGKILL: i32 = 9;
const CHAIN_ID: &str = "gpunet-crash-test";

/// Transactions per block; enough that the index is written alongside every block.
const TXS_PER_BLOCK: u64 = 4;

mod support;
use support::{changes_at, entities, genesis_entities, model_at};

fn block_hash_at(height: u64) -> [u8; 32] {
    *blake3::hash(&block_at(height)).as_bytes()
}

fn block_at(height: u64) -> Vec<u8> {
    format!("block {height}").into_bytes()
}

fn receipts_at(height: u64) -> Vec<u8> {
    format!("receipts {height}").into_bytes()
}

fn tx_hashes_at(height: u64) -> Vec<[u8; 32]> {
    (0..TXS_PER_BLOCK)
        .map(|i| *blake3::hash(format!("tx {height} {i}").as_bytes()).as_bytes())
        .collect()
}

/// Not a real test: the body of the child process. Returns at once in a normal test run.
#[test]
fn writer_commits_blocks_until_killed() {
    let Some(path) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&path)).expect("writer opens store");
    store
        .init_genesis(CHAIN_ID, b"genesis", &genesis_entities())
        .expect("writer records genesis");
    let mut height = store
        .head()
        .expect("head")
        .expect("genesis gives a head")
        .height;
    let started = Instant::now();
    let mut stdout = std::io::stdout().lock();
    while started.elapsed() < WRITER_MAX_RUN {
        height += 1;
        let (block, receipts, changes) =
            (block_at(height), receipts_at(height), changes_at(height));
        let tx_hashes = tx_hashes_at(height);
        let root = store
            .commit_block(&BlockRecord {
                height,
                block_hash: block_hash_at(height),
                block: &block,
                receipts: &receipts,
                changes: &changes,
                tx_hashes: &tx_hashes,
                history: &[],
                lookups: &[],
            })
            .expect("writer commits block");
        // Printed only after the commit returned: every reported height must survive the kill.
        writeln!(stdout, "committed {height} {}", hex(&root)).expect("report progress");
        stdout.flush().expect("flush progress");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Kills the child if the test fails before it does, so no writer outlives a failed run.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already dead after a successful round; nothing to do then.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the writer, waits until it has reported `min_new_commits` commits, lets it run on for
/// `then_wait`, kills it with `SIGKILL` and returns every (height, root) it reported as
/// committed, in order.
fn run_writer_and_kill(
    path: &Path,
    min_new_commits: usize,
    then_wait: Duration,
) -> Vec<(u64, String)> {
    let exe = std::env::current_exe().expect("path of this test binary");
    let mut child = KillOnDrop(
        Command::new(exe)
            .args(["--exact", WRITER_TEST, "--nocapture", "--test-threads=1"])
            .env(WRITER_ENV, path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn writer"),
    );

    let stdout = child.0.stdout.take().expect("piped stdout");
    let (progress_tx, progress_rx) = mpsc::channel::<(u64, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("committed ") {
                let (height, root) = rest.split_once(' ').expect("height and root");
                let height = height.parse().expect("progress line holds a height");
                if progress_tx.send((height, root.to_owned())).is_err() {
                    break;
                }
            }
        }
    });

    let mut reported = Vec::new();
    for _ in 0..min_new_commits {
        reported.push(
            progress_rx
                .recv_timeout(PROGRESS_TIMEOUT)
                .expect("writer keeps reporting commits"),
        );
    }

    // While the writer lives, nobody else may open the file.
    let err = Store::open(path).expect_err("the writer holds the file");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");

    std::thread::sleep(then_wait);
    child.0.kill().expect("send SIGKILL to writer");
    let status = child.0.wait().expect("reap writer");
    assert_eq!(status.signal(), Some(SIGKILL), "writer died of SIGKILL");

    reader.join().expect("reader thread");
    // Lines already in the pipe when the kill landed still count as reported commits.
    reported.extend(progress_rx.try_iter());
    reported
}

/// Checks that every height up to the head is present and agrees with the deterministic chain,
/// that the entities and the tree at the head agree with it, and that nothing exists past it.
fn assert_consistent(store: &Store) -> Head {
    let head = store.head().expect("read head").expect("head exists");
    assert_eq!(head.block_hash, block_hash_at(head.height));
    assert_eq!(
        store.tree_root(head.height).expect("tree root"),
        Some(head.state_root),
        "the tree's root at the head is the head's root"
    );
    assert!(
        entities(store) == model_at(head.height),
        "the entities are those after head {}",
        head.height
    );

    for height in 1..=head.height {
        assert_eq!(store.block(height).expect("block"), Some(block_at(height)));
        assert_eq!(
            store.receipts(height).expect("receipts"),
            Some(receipts_at(height))
        );
        assert!(store.state_root(height).expect("root").is_some());
        assert_eq!(
            store.block_hash(height).expect("hash"),
            Some(block_hash_at(height))
        );
    }
    for (index, tx_hash) in (0u32..).zip(tx_hashes_at(head.height)) {
        assert_eq!(
            store.tx_location(&tx_hash).expect("tx location"),
            Some((head.height, index))
        );
    }

    let past_head = head.height + 1;
    assert_eq!(store.block(past_head).expect("block past head"), None);
    assert_eq!(store.state_root(past_head).expect("root past head"), None);
    for tx_hash in tx_hashes_at(past_head) {
        assert_eq!(store.tx_location(&tx_hash).expect("tx past head"), None);
    }
    head
}

#[test]
fn store_is_consistent_after_sigkill_at_three_different_moments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");

    // (commits to see before killing, extra time to let the writer run on): right after start,
    // mid-run, and a little later with the kill landing at a different point of a commit.
    let moments = [
        (1, Duration::ZERO),
        (25, Duration::from_millis(3)),
        (60, Duration::from_millis(11)),
    ];
    let mut previous_head = 0;
    for (round, (min_new_commits, then_wait)) in moments.into_iter().enumerate() {
        let reported = run_writer_and_kill(&path, min_new_commits, then_wait);
        let last_reported = reported.last().map_or(0, |(h, _)| *h);

        let store = Store::open(&path).expect("reopen after SIGKILL");
        let head = assert_consistent(&store);
        for (height, root) in &reported {
            let stored = store.state_root(*height).expect("root").expect("kept");
            assert_eq!(
                &hex(&stored),
                root,
                "round {round}: root of {height} changed"
            );
        }
        assert!(
            head.height >= last_reported,
            "round {round}: head {} lost height {last_reported}, which the writer reported committed",
            head.height
        );
        assert!(
            head.height > previous_head,
            "round {round}: the writer resumed from the recovered head and made progress"
        );
        previous_head = head.height;
    }
}
