//! `gpunet bench state`: what committing a block costs as the state grows.
//!
//! For each state size a real store (redb, durable commits) is filled with that many accounts,
//! then blocks of transfers are applied by the real ledger and committed by the real store: the
//! ledger's write set goes into the entity rows and the Jellyfish Merkle tree in one write
//! transaction, as the node's committer does. Measured per block: apply, root + durable write,
//! their sum, and the bytes the process handed to the kernel for it (`wchar` of
//! `/proc/self/io`). Then a fresh process starts a real node on that home and the time until its
//! API answers, and its resident memory, are read ([`restart_probe`]).
//!
//! Blocks are built without signatures: the ledger trusts the node to have verified them, and
//! verification is measured by the end-to-end benchmark, not here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gpunet_ledger::{Genesis, Params, State, apply_block};
use gpunet_protocol::{
    Account, Address, Amount, Balances, Block, BlockCtx, BlockHeader, Denom, Hash, Msg, SignedTx,
    TxBody,
};
use gpunet_store::{BlockRecord, Store};
use serde::{Deserialize, Serialize};

use crate::figures::percentile;

/// The chain id of every benchmark state; the restart probe starts a node with it.
pub const CHAIN: &str = "gpunet-bench-state";
/// Accounts added per setup block while filling a state.
const FILL_PER_BLOCK: u64 = 100_000;

#[derive(Debug, Clone)]
pub struct StateOptions {
    /// Entity counts to measure at, smallest first.
    pub sizes: Vec<u64>,
    /// Entities each measured block changes (two per transfer).
    pub changed_per_block: u64,
    /// Measured blocks per size.
    pub blocks: usize,
    /// Where the stores are built; each size's home is removed when measured.
    pub work_dir: PathBuf,
}

/// What one state size gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeFigures {
    pub entities: u64,
    pub fill_secs: f64,
    pub blocks: usize,
    /// Entities the measured blocks changed, each.
    pub changed_per_block: u64,
    pub apply_ms_p50: f64,
    pub root_and_write_ms_p50: f64,
    pub commit_ms_p50: f64,
    pub commit_ms_p95: f64,
    /// Median bytes written (block, receipts, entities, tree, redb's own pages) per block.
    pub bytes_per_block: Option<u64>,
    pub store_file_bytes: u64,
    pub restart: Option<RestartFigures>,
    /// State sync of the whole state, in this process (no network): every chunk read from a
    /// snapshot of the store and restored, proof-checked, into a new store.
    pub sync: SyncFigures,
}

/// What a state sync of one size cost ([`sync_state`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SyncFigures {
    pub chunks: u64,
    /// Reading the chunks and their range proofs from the snapshot.
    pub serve_ms: f64,
    /// Checking and writing them, and finishing the tree, in the new store.
    pub restore_ms: f64,
    /// Both, end to end.
    pub total_ms: f64,
}

/// Copies `store`'s state into a new store at `target` the way state sync does (snapshot,
/// chunks of [`MAX_CHUNK_ENTITIES`] with range proofs, checked restore), timing both sides.
pub fn sync_state(store: &Store, target: &Path) -> Result<SyncFigures> {
    use gpunet_protocol::merkle::{MAX_CHUNK_ENTITIES, leaf_key};
    let started = Instant::now();
    let snapshot = store.snapshot()?;
    let fresh = Store::open(target)?;
    let mut restore = fresh.begin_restore(CHAIN, b"bench", snapshot.head())?;
    let (mut serve, mut chunks) = (Duration::ZERO, 0u64);
    let mut after = None;
    loop {
        let t = Instant::now();
        let chunk = snapshot
            .chunk(after, MAX_CHUNK_ENTITIES)?
            .context("the snapshot ended without a last chunk")?;
        serve += t.elapsed();
        chunks += 1;
        after = chunk.entities.last().map(|(k, _)| leaf_key(k).0);
        restore.add_chunk(&chunk)?;
        if chunk.last {
            break;
        }
    }
    let root = restore.finish()?;
    ensure!(
        root == snapshot.head().state_root,
        "the restored root differs"
    );
    let total = started.elapsed();
    Ok(SyncFigures {
        chunks,
        serve_ms: ms(serve),
        restore_ms: ms(total.saturating_sub(serve)),
        total_ms: ms(total),
    })
}

/// What [`restart_probe`] saw.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RestartFigures {
    /// From the start call to the first answer of `GET /v1/status`.
    pub restart_ms: u64,
    /// Resident memory of the node process once serving.
    pub rss_mb: u64,
}

/// The account of benchmark index `i`: a spread of addresses, as real ones are.
fn bench_address(i: u64) -> Address {
    Address(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

/// The genesis every benchmark state starts from (its accounts come in setup blocks).
pub fn bench_genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN.to_owned(),
        genesis_time_ms: 0,
        params: Params::default(),
        accounts: Vec::new(),
    }
}

fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("bench constants fit")
}

/// Bytes this process has handed to `write`-like calls so far, if the kernel says.
fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Resident memory of this process in MiB, if the kernel says.
pub fn rss_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
}

/// A small deterministic generator for picking accounts (benchmark code, not ledger code).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Commits the block at `state`'s height — its header, `txs`, `receipts`, the entities it
/// changed and those it archived — to the store as the node's committer does.
pub fn commit(
    store: &Store,
    state: &State,
    txs: &[SignedTx],
    receipts: &[u8],
    changes: &gpunet_ledger::Changes,
) -> Result<()> {
    let tx_hashes: Vec<[u8; 32]> = txs.iter().map(|t| t.hash().0).collect();
    let header = BlockHeader {
        chain_id: state.chain_id.clone(),
        height: state.height,
        time_ms: state.time_ms,
        prev_hash: Hash::default(),
        txs_hash: Block::txs_hash(txs),
        prev_state_root: Hash::default(),
    };
    // A block's encoding is its header then its transactions, as a tuple of the two encodes.
    let block_bytes = borsh::to_vec(&(&header, txs))?;
    store
        .commit_block(&BlockRecord {
            height: state.height,
            block_hash: header.hash().0,
            block: &block_bytes,
            receipts,
            changes: &changes.state,
            tx_hashes: &tx_hashes,
            history: &changes.history(),
            lookups: &[],
        })
        .with_context(|| format!("committing block {}", state.height))?;
    Ok(())
}

/// Builds a store at `home` holding `entities` accounts (plus the chain's singletons), in setup
/// blocks of [`FILL_PER_BLOCK`]; returns the open store and the state at its head.
fn fill(home: &Path, entities: u64, progress: &dyn Fn(String)) -> Result<(Store, State)> {
    gpunet_files::create_private_dir_all(home)
        .with_context(|| format!("creating {}", home.display()))?;
    let store = Store::open(&home.join(gpunet_node::STORE_FILE))?;
    let genesis = bench_genesis();
    let mut state = State::from_genesis(&genesis).context("bench genesis")?;
    store.init_genesis(
        &state.chain_id,
        &serde_json::to_vec(&genesis)?,
        &state.entities(),
    )?;
    let each = Balances {
        usd: units(1_000_000),
        gpn: units(1_000_000),
    };
    let mut filled = 0;
    while filled < entities {
        let n = FILL_PER_BLOCK.min(entities - filled);
        for i in filled..filled + n {
            state.accounts.insert(
                bench_address(i),
                Account {
                    balances: each,
                    nonce: 0,
                    unbonding: Vec::new(),
                },
            );
        }
        for d in Denom::ALL {
            let added = each
                .get(d)
                .micros()
                .checked_mul(n)
                .map(Amount::from_micros)
                .context("bench supply overflows")?;
            let minted = state.supply.minted.get(d).checked_add(added);
            *state.supply.minted.get_mut(d) = minted.context("bench supply overflows")?;
        }
        state.height += 1;
        state.time_ms += 500;
        let changes = state.take_changes();
        commit(&store, &state, &[], &[], &changes)?;
        filled += n;
        progress(format!("filled {filled}/{entities} accounts"));
    }
    Ok((store, state))
}

/// `count` distinct account indices below `n`.
fn distinct(rng: &mut XorShift, n: u64, count: u64) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while (out.len() as u64) < count {
        let i = rng.next() % n;
        if seen.insert(i) {
            out.push(i);
        }
    }
    out
}

/// Measures one state size. `restart` runs the restart probe on the finished home (in a fresh
/// process, so that the figures are a node's alone) and returns what it saw.
pub fn measure_size(
    opts: &StateOptions,
    entities: u64,
    progress: &dyn Fn(String),
    restart: &dyn Fn(&Path) -> Result<RestartFigures>,
) -> Result<SizeFigures> {
    let transfers = (opts.changed_per_block / 2).max(1);
    ensure!(
        entities >= 2 * transfers,
        "a state of {entities} accounts cannot hold blocks that change {} of them",
        2 * transfers
    );
    let home = opts.work_dir.join(format!("state-{entities}"));
    if home.exists() {
        std::fs::remove_dir_all(&home).with_context(|| format!("clearing {}", home.display()))?;
    }
    let started = Instant::now();
    let (store, mut state) = fill(&home, entities, progress)?;
    let fill_secs = started.elapsed().as_secs_f64();

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ entities);
    let mut nonces = std::collections::BTreeMap::<u64, u64>::new();
    let min_fee = state.params.min_tx_fee;
    let (mut apply_ms, mut write_ms, mut total_ms, mut bytes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for b in 0..opts.blocks {
        let picked = distinct(&mut rng, entities, 2 * transfers);
        let txs: Vec<SignedTx> = picked
            .chunks(2)
            .map(|pair| {
                let nonce = nonces.entry(pair[0]).or_insert(0);
                let tx = SignedTx {
                    body: TxBody {
                        chain_id: CHAIN.to_owned(),
                        signer: bench_address(pair[0]),
                        nonce: *nonce,
                        fee: min_fee,
                        msg: Msg::Transfer {
                            to: bench_address(pair[1]),
                            denom: Denom::Usd,
                            amount: Amount::from_micros(1),
                        },
                    },
                    signature: [0; 64],
                };
                *nonce += 1;
                tx
            })
            .collect();
        let ctx = BlockCtx {
            height: state.height + 1,
            time_ms: state.time_ms + 500,
            seed: Hash::default(),
        };
        let t0 = Instant::now();
        let outcome = apply_block(&mut state, &ctx, &txs);
        let changes = state.take_changes();
        let t1 = Instant::now();
        if let Some(r) = outcome.receipts.iter().find_map(|r| r.rejection) {
            bail!("benchmark transfer rejected: {r}");
        }
        let receipts = borsh::to_vec(&outcome)?;
        let io0 = written_bytes();
        let t2 = Instant::now();
        commit(&store, &state, &txs, &receipts, &changes)?;
        let t3 = Instant::now();
        if let (Some(a), Some(z)) = (io0, written_bytes()) {
            bytes.push(z.saturating_sub(a));
        }
        apply_ms.push(ms(t1 - t0));
        write_ms.push(ms(t3 - t2));
        total_ms.push(ms((t1 - t0) + (t3 - t2)));
        if (b + 1) % 10 == 0 {
            progress(format!("{entities}: {}/{} blocks", b + 1, opts.blocks));
        }
    }
    progress(format!("{entities}: state sync into a new store"));
    let sync = sync_state(&store, &home.join("synced.redb"))?;
    drop(store);
    drop(state);
    let store_file_bytes = std::fs::metadata(home.join(gpunet_node::STORE_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    progress(format!("{entities}: restarting a node on it"));
    let restart = Some(restart(&home)?);
    let _ = std::fs::remove_dir_all(&home);

    for v in [&mut apply_ms, &mut write_ms, &mut total_ms] {
        v.sort_by(f64::total_cmp);
    }
    bytes.sort_unstable();
    Ok(SizeFigures {
        entities,
        fill_secs,
        blocks: opts.blocks,
        changed_per_block: 2 * transfers,
        apply_ms_p50: percentile(&apply_ms, 50),
        root_and_write_ms_p50: percentile(&write_ms, 50),
        commit_ms_p50: percentile(&total_ms, 50),
        commit_ms_p95: percentile(&total_ms, 95),
        bytes_per_block: (!bytes.is_empty()).then(|| percentile(&bytes, 50)),
        store_file_bytes,
        restart,
        sync,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts a node on `home` (a store [`measure_size`] built), waits until its API answers, and
/// returns how long that took and the process's resident memory then. Run it in a process of
/// its own: the memory figure is the whole process's.
pub async fn restart_probe(home: &Path) -> Result<RestartFigures> {
    let started = Instant::now();
    let node = gpunet_node::start(gpunet_node::NodeConfig {
        home: home.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("a valid address"),
        // No block during the probe: the figure is the start alone.
        block_ms: 3_600_000,
        genesis: bench_genesis(),
        mempool: gpunet_node::MempoolLimits::default(),
    })
    .await
    .context("starting a node on the benchmark store")?;
    let client = gpunet_client::NodeClient::new(&format!("http://{}", node.api_addr()));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if client.status().await.is_ok() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the node did not answer within two minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restart_ms = started.elapsed().as_millis() as u64;
    let rss_mb = rss_mb().unwrap_or(0);
    node.shutdown().await;
    Ok(RestartFigures { restart_ms, rss_mb })
}

/// Runs [`restart_probe`] on `home` in a fresh process of the running executable, which must be
/// `gpunet` (as `gpunet bench state-probe --home <home>`, which prints the figures as JSON), so
/// that its memory figure is a node's alone.
pub fn probe_in_child(home: &Path) -> Result<RestartFigures> {
    let exe = std::env::current_exe().context("finding this gpunet binary")?;
    let out = std::process::Command::new(exe)
        .args(["bench", "state-probe", "--home"])
        .arg(home)
        .output()
        .context("starting the restart probe")?;
    ensure!(
        out.status.success(),
        "the restart probe failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim())
        .with_context(|| format!("the restart probe printed {:?}", line.trim()))
}

/// The figures of the size with `entities` entities, if it was measured.
pub fn at(figures: &[SizeFigures], entities: u64) -> Option<&SizeFigures> {
    figures.iter().find(|f| f.entities == entities)
}

/// How many times the commit p50 at a million entities is the one at 10,000, when both sizes
/// were measured.
pub fn commit_growth_10k_to_1m(figures: &[SizeFigures]) -> Option<f64> {
    match (at(figures, 10_000), at(figures, 1_000_000)) {
        (Some(a), Some(b)) if a.commit_ms_p50 > 0.0 => Some(b.commit_ms_p50 / a.commit_ms_p50),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_state_is_measured_with_every_figure_and_the_store_reopens_at_its_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = StateOptions {
            sizes: vec![3_000],
            changed_per_block: 200,
            blocks: 5,
            work_dir: dir.path().to_path_buf(),
        };
        let seen = std::cell::RefCell::new(None);
        let f = measure_size(&opts, 3_000, &|_| {}, &|home| {
            // The probe's stand-in: the store must reopen at the measured head.
            let store = Store::open(&home.join(gpunet_node::STORE_FILE))?;
            let head = store.head()?.context("a head")?;
            *seen.borrow_mut() = Some(head.height);
            Ok(RestartFigures {
                restart_ms: 1,
                rss_mb: 1,
            })
        })
        .expect("measured");
        // One fill block and five measured ones.
        assert_eq!(*seen.borrow(), Some(6));
        assert_eq!(f.blocks, 5);
        assert_eq!(f.changed_per_block, 200);
        assert!(f.commit_ms_p50 > 0.0 && f.commit_ms_p95 >= f.commit_ms_p50);
        assert!(f.store_file_bytes > 0);
        // Linux reports what a process wrote (`/proc/self/io`); this project runs on Linux.
        let b = f.bytes_per_block.expect("bytes written are known on Linux");
        assert!(b > 200 * 32, "{b} bytes for 200 changed accounts");
        assert!(
            !dir.path().join("state-3000").exists(),
            "the home is removed"
        );
    }

    #[test]
    fn a_block_is_encoded_as_the_node_encodes_it() {
        let state = State::from_genesis(&bench_genesis()).expect("genesis");
        let txs = vec![SignedTx {
            body: TxBody {
                chain_id: CHAIN.to_owned(),
                signer: bench_address(1),
                nonce: 0,
                fee: state.params.min_tx_fee,
                msg: Msg::Transfer {
                    to: bench_address(2),
                    denom: Denom::Usd,
                    amount: Amount::from_micros(1),
                },
            },
            signature: [3; 64],
        }];
        let header = BlockHeader {
            chain_id: CHAIN.to_owned(),
            height: 0,
            time_ms: 0,
            prev_hash: Hash::default(),
            txs_hash: Block::txs_hash(&txs),
            prev_state_root: Hash::default(),
        };
        let by_parts = borsh::to_vec(&(&header, &txs[..])).expect("encodes");
        let whole = borsh::to_vec(&Block { header, txs }).expect("encodes");
        assert_eq!(by_parts, whole);
    }

    #[test]
    fn a_state_too_small_for_its_blocks_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = StateOptions {
            sizes: vec![10],
            changed_per_block: 200,
            blocks: 1,
            work_dir: dir.path().to_path_buf(),
        };
        let err =
            measure_size(&opts, 10, &|_| {}, &|_| bail!("not reached")).expect_err("too small");
        assert!(err.to_string().contains("cannot hold blocks"), "{err}");
    }
}
