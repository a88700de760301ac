//! `gpunet bench ledger`: ledger apply and mempool admission throughput, in this process. Signed
//! transfers applied by the ledger alone, and the same blocks applied and committed to a real
//! store (write set, Merkle root, durable write); order → bid → lease → start → complete cycles;
//! signed transactions admitted as a node's mempool admits a batch.

use std::time::Instant;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use gpunet_ledger::{State, apply_block};
use gpunet_protocol::{
    Amount, BlockCtx, Capacity, Denom, Event, GpuRequirement, Hash, LeaseId, LeaseResult, Msg,
    OrderTerms, ProviderProfile, Resources, Runtime, SignedTx, UsageReport, WorkloadOutcome,
};

use crate::accounts::{addr, genesis, key, sign, units};

/// How much of each to run.
#[derive(Debug, Clone, Copy)]
pub struct LedgerOptions {
    /// Transfers to apply.
    pub transfers: usize,
    /// Order cycles to run.
    pub cycles: usize,
    /// Signed transactions to admit.
    pub admissions: usize,
}

/// What it measured, per second of the work itself.
#[derive(Debug, Clone, Copy)]
pub struct LedgerFigures {
    /// Transfers applied by the ledger alone.
    pub transfers_per_sec: f64,
    /// The same blocks applied and committed (write set, root, durable write).
    pub transfers_committed_per_sec: f64,
    pub order_cycles_per_sec: f64,
    pub signed_admissions_per_sec: f64,
}

/// Runs the three measurements one after another (blocking: call it off an async runtime),
/// saying each as it starts through `progress`.
pub fn run(opts: &LedgerOptions, progress: &dyn Fn(String)) -> Result<LedgerFigures> {
    progress(format!("applying {} transfers…", opts.transfers));
    let (transfers_per_sec, transfers_committed_per_sec) = transfers(opts.transfers)?;
    progress(format!(
        "running {} order → bid → lease → settle cycles…",
        opts.cycles
    ));
    let order_cycles_per_sec = order_cycles(opts.cycles)?;
    progress(format!(
        "admitting {} signed transactions…",
        opts.admissions
    ));
    let signed_admissions_per_sec = admissions(opts.admissions)?;
    Ok(LedgerFigures {
        transfers_per_sec,
        transfers_committed_per_sec,
        order_cycles_per_sec,
        signed_admissions_per_sec,
    })
}

fn ctx(state: &State) -> BlockCtx {
    BlockCtx {
        height: state.height + 1,
        time_ms: state.time_ms + 500,
        seed: Hash::default(),
    }
}

/// Applies `blocks` and returns the seconds spent inside `apply_block`, checking nothing was
/// rejected (a benchmark of rejections would measure the wrong thing).
fn apply_all(state: &mut State, blocks: &[Vec<SignedTx>]) -> Result<f64> {
    let mut secs = 0.0;
    for txs in blocks {
        let c = ctx(state);
        let t = Instant::now();
        let out = apply_block(state, &c, txs);
        secs += t.elapsed().as_secs_f64();
        if let Some(r) = out.receipts.iter().find_map(|r| r.rejection) {
            anyhow::bail!("benchmark transaction rejected: {r}");
        }
    }
    Ok(secs)
}

/// Applies `blocks` and commits each to a real store in a scratch directory as the node does
/// (write set, Merkle root, durable write); returns the seconds spent in all of it.
fn apply_and_commit_all(state: &mut State, blocks: &[Vec<SignedTx>]) -> Result<f64> {
    let dir = tempfile::tempdir().context("a scratch directory for the store")?;
    let store = gpunet_store::Store::open(&dir.path().join("chain.redb"))?;
    store.init_genesis(&state.chain_id, b"bench", &state.entities())?;
    let mut secs = 0.0;
    for txs in blocks {
        let c = ctx(state);
        let t = Instant::now();
        let out = apply_block(state, &c, txs);
        let changes = state.take_changes();
        let receipts = borsh::to_vec(&out)?;
        crate::state::commit(&store, state, txs, &receipts, &changes)?;
        secs += t.elapsed().as_secs_f64();
        if let Some(r) = out.receipts.iter().find_map(|r| r.rejection) {
            anyhow::bail!("benchmark transaction rejected: {r}");
        }
    }
    Ok(secs)
}

/// Transfers per second applied by the ledger alone, and applied and committed (write set,
/// root, durable write) — the same blocks on the same starting state.
fn transfers(n: usize) -> Result<(f64, f64)> {
    const SENDERS: u64 = 1_000;
    let keys: Vec<SigningKey> = (0..SENDERS).map(key).collect();
    let mut state = genesis(&keys);
    let mut blocks = Vec::new();
    let per_block = 10_000usize;
    let mut made = 0usize;
    let mut nonce = 0u64;
    while made < n {
        let mut txs = Vec::with_capacity(per_block);
        for i in 0..per_block.min(n - made) as u64 {
            let s = &keys[(i % SENDERS) as usize];
            let to = addr(&keys[((i + 1) % SENDERS) as usize]);
            txs.push(sign(
                s,
                nonce + i / SENDERS,
                Msg::Transfer {
                    to,
                    denom: Denom::Usd,
                    amount: Amount::from_micros(1),
                },
            ));
        }
        nonce += (per_block as u64).div_ceil(SENDERS);
        made += txs.len();
        blocks.push(txs);
    }
    let start = state.clone();
    let secs = apply_all(&mut state, &blocks)?;
    let mut state = start;
    let committed_secs = apply_and_commit_all(&mut state, &blocks)?;
    Ok((made as f64 / secs, made as f64 / committed_secs))
}

fn order_cycles(n: usize) -> Result<f64> {
    // Tenants 0..T, providers T..T+P; each provider serves a bounded number of orders so
    // feasibility checks stay per-provider small, as on a real network.
    const TENANTS: u64 = 1_000;
    const PROVIDERS: u64 = 1_000;
    let keys: Vec<SigningKey> = (0..TENANTS + PROVIDERS).map(key).collect();
    let mut state = genesis(&keys);
    let mut nonces = vec![0u64; keys.len()];
    let mut next = |i: usize| {
        let n = nonces[i];
        nonces[i] += 1;
        n
    };
    let profile = ProviderProfile {
        capabilities: Default::default(),
        endpoint: "http://127.0.0.1:1".into(),
        region: "bench".into(),
        capacity: Capacity {
            cpu_millis: 1_000_000,
            memory_mib: 1 << 30,
            disk_mib: 1 << 30,
            gpus: vec![],
        },
        runtimes: vec![Runtime::Process],
        // The bench never delivers manifests; any nonzero key registers.
        encryption_key: gpunet_protocol::EncryptionKey([1; 32]),
        // 10.00 per core-hour: the bench's orders (0.1 core) come to exactly the 1.00 it bids.
        rates: gpunet_protocol::Rates {
            per_cpu_core_hour: units(10),
            per_memory_gib_hour: Amount::ZERO,
            per_gpu_hour: Default::default(),
            default_per_gpu_hour: Amount::ZERO,
        },
    };
    let register: Vec<SignedTx> = (TENANTS..TENANTS + PROVIDERS)
        .map(|p| {
            sign(
                &keys[p as usize],
                next(p as usize),
                Msg::RegisterProvider {
                    stake: units(100),
                    profile: profile.clone(),
                },
            )
        })
        .collect();
    apply_all(&mut state, &[register])?;

    let terms = OrderTerms {
        capabilities: Default::default(),
        name: "bench".into(),
        manifest_hash: Hash::of(b"bench"),
        resources: Resources {
            cpu_millis: 100,
            memory_mib: 64,
            disk_mib: 64,
            gpu: GpuRequirement::default(),
        },
        regions: vec![],
        runtime: Runtime::Process,
        max_price_per_hour: units(2),
        deposit: units(1),
        max_duration_secs: 3_600,
        recovery: gpunet_protocol::RecoveryPolicy::none(),
        verification: Default::default(),
    };
    let window = state.params.bid_window_blocks;
    let mut total = 0.0;
    let batch = 5_000usize;
    let mut done = 0usize;
    while done < n {
        let m = batch.min(n - done);
        let first_order = state.next_order_id;
        let creates: Vec<SignedTx> = (0..m)
            .map(|i| {
                let t = i % TENANTS as usize;
                sign(
                    &keys[t],
                    next(t),
                    Msg::CreateOrder {
                        terms: terms.clone(),
                    },
                )
            })
            .collect();
        total += apply_all(&mut state, &[creates])?;
        let bids: Vec<SignedTx> = (0..m)
            .map(|i| {
                let p = TENANTS as usize + i % PROVIDERS as usize;
                let order = gpunet_protocol::OrderId(first_order + i as u64);
                sign(
                    &keys[p],
                    next(p),
                    Msg::PlaceBid {
                        order,
                        price_per_hour: units(1),
                    },
                )
            })
            .collect();
        total += apply_all(&mut state, &[bids])?;
        let mut leases: Vec<(LeaseId, usize)> = Vec::new();
        for _ in 1..window.max(1) {
            let c = ctx(&state);
            let t = Instant::now();
            let out = apply_block(&mut state, &c, &[]);
            total += t.elapsed().as_secs_f64();
            collect_leases(&out.end_block_events, &keys, TENANTS, &mut leases);
        }
        let starts: Vec<SignedTx> = leases
            .iter()
            .map(|(l, p)| sign(&keys[*p], next(*p), Msg::StartLease { lease: *l }))
            .collect();
        total += apply_all(&mut state, &[starts])?;
        let result = LeaseResult {
            outcome: WorkloadOutcome::Succeeded,
            exit_code: Some(0),
            output_digest: None,
            usage: UsageReport::default(),
            detail: String::new(),
        };
        let completes: Vec<SignedTx> = leases
            .iter()
            .map(|(l, p)| {
                sign(
                    &keys[*p],
                    next(*p),
                    Msg::CompleteLease {
                        lease: *l,
                        result: result.clone(),
                    },
                )
            })
            .collect();
        anyhow::ensure!(
            completes.len() == m,
            "only {} of {m} orders were leased",
            completes.len()
        );
        total += apply_all(&mut state, &[completes])?;
        done += m;
    }
    Ok(n as f64 / total)
}

fn collect_leases(
    events: &[Event],
    keys: &[SigningKey],
    tenants: u64,
    out: &mut Vec<(LeaseId, usize)>,
) {
    for e in events {
        if let Event::LeaseCreated {
            lease, provider, ..
        } = e
        {
            let idx = keys[tenants as usize..]
                .iter()
                .position(|k| addr(k) == *provider)
                .map(|i| i + tenants as usize);
            if let Some(i) = idx {
                out.push((*lease, i));
            }
        }
    }
}

fn admissions(n: usize) -> Result<f64> {
    const SENDERS: u64 = 1_000;
    let keys: Vec<SigningKey> = (0..SENDERS).map(key).collect();
    let state = genesis(&keys);
    let per_sender = (n as u64).div_ceil(SENDERS);
    let txs: Vec<Vec<u8>> = (0..per_sender)
        .flat_map(|nonce| {
            keys.iter().map(move |k| {
                sign(
                    k,
                    nonce,
                    Msg::Transfer {
                        to: addr(k),
                        denom: Denom::Usd,
                        amount: Amount::from_micros(1),
                    },
                )
                .encode()
            })
        })
        .take(n)
        .collect();
    let limits = gpunet_node::MempoolLimits {
        max_txs: n + 1,
        max_pending_per_signer: per_sender as usize + 1,
        ..Default::default()
    };
    let t = Instant::now();
    let admitted = gpunet_node::admit_batch(&limits, &state, &txs)?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        admitted == n,
        "only {admitted} of {n} transactions were admitted"
    );
    Ok(n as f64 / secs)
}
