//! `gpunet bench …`: end-to-end performance figures, printed and written to a JSON file so runs
//! can be compared. Quote ratios from one run only.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use ed25519_dalek::SigningKey;
use gpunet_ledger::{Genesis, GenesisAccount, Params, State, apply_block};
use gpunet_protocol::{
    Address, Amount, Balances, BlockCtx, Capacity, Denom, Event, GpuRequirement, Hash, LeaseId,
    LeaseResult, Msg, OrderTerms, ProviderProfile, Resources, Runtime, SignedTx, TxBody,
    UsageReport, WorkloadOutcome,
};
use serde_json::json;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// What committing a block costs as the state grows: for each size a real store is filled
    /// with that many accounts, then blocks of transfers (each changing --changed entities) are
    /// applied by the ledger and committed (entities, Merkle tree, durable write); then a node is
    /// started on the store in a fresh process and timed until its API answers.
    ///
    /// Then, end to end: a solo node in this process takes --e2e-transfers pre-signed transfers
    /// over HTTP in batches (admission, blocks, apply, commit with fsync) and the applied rate and
    /// the node's busy time per stage are reported.
    ///
    /// Prints {"commit_ms_p50_at_1m", "commit_growth_10k_to_1m", "bytes_per_block_at_1m",
    /// "rss_mb_at_1m", "restart_ms_at_1m", "e2e_transfers_per_sec"} and the figures behind them.
    /// Build with --release: cargo run --release -- bench state
    ///
    /// Example: gpunet bench state --sizes 10000,100000 --blocks 20
    State(crate::statebench::Args),
    /// Not for people: `bench state` runs it in a fresh process to time a node's restart on a
    /// store it built and read the node's memory. Prints {"restart_ms", "rss_mb"}.
    ///
    /// Example: gpunet bench state-probe --home /tmp/gpunet-bench-state-1/state-10000
    #[command(hide = true)]
    StateProbe {
        /// A node home holding a store `bench state` built (its chain id).
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
    },
    /// Ledger apply and mempool admission throughput.
    ///
    /// Prints {"transfers_per_sec", "transfers_committed_per_sec", "order_cycles_per_sec",
    /// "signed_admissions_per_sec"}: transfers applied by the ledger alone, and the same blocks
    /// applied and committed to a real store (write set, Merkle root, durable write).
    /// Build with --release for meaningful figures: cargo run --release -- bench ledger
    ///
    /// Example: gpunet bench ledger --json
    Ledger {
        /// Print the figures as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Where to write the figures. Default: ~/.gpunet/bench/ledger.json, wherever it runs.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Transfers to apply.
        #[arg(long, default_value_t = 200_000)]
        transfers: usize,
        /// Order cycles to run.
        #[arg(long, default_value_t = 20_000)]
        cycles: usize,
        /// Signed transactions to admit.
        #[arg(long, default_value_t = 40_000)]
        admissions: usize,
    },
    /// Submit-to-running latency of the bundled example job on a fresh one-process network
    /// with the default block time: jobs run one after another; prints percentiles.
    ///
    /// Prints {"jobs", "block_ms", "submit_to_running_ms_p50", "submit_to_running_ms_p90", "submit_to_running_ms_max"}.
    ///
    /// Example: gpunet bench submit --jobs 20
    Submit {
        /// Print the figures as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Where to write the figures. Default: ~/.gpunet/bench/submit.json, wherever it runs.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Jobs to run.
        #[arg(long, default_value_t = 10)]
        jobs: usize,
        /// Milliseconds between blocks of the benchmark's network.
        #[arg(long, default_value_t = 500)]
        block_ms: u64,
    },
    /// Container start overhead of the agent against `docker run`, on the local Docker Engine
    /// with the test image (built from host binaries; no registry needed). Each run: (a) parse
    /// a manifest, build the workload spec and `DockerDriver::start` until the container runs,
    /// as the agent does once a manifest checked out; (b) `docker run --rm IMAGE /bin/sh -c :`
    /// (the test image has no `/bin/true`).
    ///
    /// Prints {"runs", "agent_start_ms_p50", "agent_start_ms_p90", "docker_run_ms_p50", "docker_run_ms_p90"}.
    ///
    /// Example: gpunet bench runtime --runs 50
    Runtime {
        /// Print the figures as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Where to write the figures. Default: ~/.gpunet/bench/runtime.json, wherever it runs.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Runs of each.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Consensus on this machine: a network of validators, each a `gpunet node start` process
    /// on Malachite in a scratch directory. Finality: a signed transfer submitted to one node
    /// until that node reports it applied (~200 samples, 8 at a time through every node, no
    /// other load). Throughput: pre-signed transfers from many accounts funded at genesis,
    /// spread over all validators for --seconds, then until every mempool is empty; applied
    /// transfers (the accounts' nonces) over that time. The same throughput against a solo
    /// node in this process, in the same run. Load and validators share this machine's cores.
    ///
    /// Prints {"validators", "finality_ms_p50", "finality_ms_p99", "transfers_per_sec", "solo_transfers_per_sec"}.
    ///
    /// Example: gpunet bench consensus --validators 4 --seconds 30
    Consensus {
        /// Print the figures as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Where to write the figures. Default: ~/.gpunet/bench/consensus.json, wherever it runs.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Validator processes to start.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Seconds of load for each throughput run.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Finality samples.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Accounts submitting during the throughput runs.
        #[arg(long, default_value_t = 200)]
        accounts: usize,
        /// Least milliseconds between blocks (the `gpunet node init` default).
        #[arg(long, default_value_t = 500)]
        block_ms: u64,
    },
    /// Jobs under provider churn: one validator and --providers `gpunet provider start`
    /// processes on this machine sharing a blob store; --jobs checkpointing jobs of
    /// --job-secs each (recovery: --max-attempts) while a random provider is killed (SIGKILL)
    /// every --kill-every seconds and restarted half a period later. The tenant follows each
    /// job as `job submit --wait` does; a retry resumes from the job's last checkpoint.
    ///
    /// Prints {"completion_rate", "detect_ms_p95", "replace_ms_p95", "lost_work_s_mean", "wasted_spend_ratio"}
    /// (with the counts behind them).
    ///
    /// Example: gpunet bench churn --providers 6 --jobs 24 --kill-every 10
    Churn {
        /// Print the figures as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Where to write the figures. Default: ~/.gpunet/bench/churn.json, wherever it runs.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Provider processes.
        #[arg(long, default_value_t = 6)]
        providers: usize,
        /// Jobs, 1 to 1000, one CPU core each. The tenant keeps as many in the market as the
        /// providers' cores less the largest provider's, and submits the next as one ends.
        #[arg(long, default_value_t = 24)]
        jobs: usize,
        /// Seconds each job runs.
        #[arg(long, default_value_t = 30)]
        job_secs: u64,
        /// Seconds between kills.
        #[arg(long = "kill-every", default_value_t = 10)]
        kill_every_secs: u64,
        /// The jobs' recovery.max_attempts.
        #[arg(long, default_value_t = 4)]
        max_attempts: u32,
        /// Least milliseconds between blocks.
        #[arg(long, default_value_t = 500)]
        block_ms: u64,
    },
}

const CHAIN: &str = "bench";

use gpunet_bench::figures::build_kind;

fn key(i: u64) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    seed[8] = 0xbe;
    SigningKey::from_bytes(&seed)
}

fn addr(k: &SigningKey) -> Address {
    Address::from_key(&k.verifying_key())
}

fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("bench constants fit")
}

fn genesis(keys: &[SigningKey]) -> State {
    State::from_genesis(&ledger_genesis(keys)).expect("bench genesis is valid")
}

fn ledger_genesis(keys: &[SigningKey]) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        params: Params::default(),
        accounts: keys
            .iter()
            .map(|k| GenesisAccount {
                address: addr(k),
                balances: Balances {
                    usd: units(1_000_000),
                    gpn: units(1_000_000),
                },
            })
            .collect(),
    }
}

fn sign(k: &SigningKey, nonce: u64, msg: Msg) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        signer: addr(k),
        nonce,
        fee: Params::default().min_tx_fee,
        msg,
    }
    .sign(k)
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
        gpunet_bench::state::commit(&store, state, txs, &receipts, &changes)?;
        secs += t.elapsed().as_secs_f64();
        if let Some(r) = out.receipts.iter().find_map(|r| r.rejection) {
            anyhow::bail!("benchmark transaction rejected: {r}");
        }
    }
    Ok(secs)
}

/// Transfers per second applied by the ledger alone, and applied and committed (write set,
/// root, durable write) — the same blocks on the same starting state.
fn bench_transfers(n: usize) -> Result<(f64, f64)> {
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

fn bench_order_cycles(n: usize) -> Result<f64> {
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

fn bench_admissions(n: usize) -> Result<f64> {
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

pub use gpunet_bench::figures::default_out;
use gpunet_bench::figures::{percentile, write as write_figures};

async fn bench_submit(jobs_n: usize, block_ms: u64) -> Result<Vec<u64>> {
    use crate::devnet::{DevNet, DevOptions};
    let home = std::env::temp_dir().join(format!("gpunet-bench-{}", std::process::id()));
    let net = DevNet::start(DevOptions {
        home: home.clone(),
        listen: "127.0.0.1:0".parse().expect("a literal socket address"),
        block_ms,
    })
    .await?;
    let spec = gpunet_protocol::jobspec::JobSpec::parse_yaml(crate::commands::HELLO_SPEC)
        .map_err(|e| anyhow::anyhow!("bundled example spec: {e}"))?;
    let client = gpunet_client::NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let quiet = crate::progress::Progress::new(true);
    let mut samples = Vec::with_capacity(jobs_n);
    let run = async {
        crate::commands::wait_for_provider(&client, &quiet).await?;
        for i in 0..jobs_n {
            // Jobs run back to back would all be submitted at the same point of the block
            // cycle; spread the submit moments evenly over one block instead.
            let phase_ms = (i as u64 * block_ms) / jobs_n as u64;
            tokio::time::sleep(std::time::Duration::from_millis(phase_ms)).await;
            let f =
                crate::jobs::submit_and_follow(&client, &net.tenant, &spec, true, &quiet).await?;
            let ms = f.submit_to_running_ms.context("the job never ran")?;
            eprintln!("job {}/{jobs_n}: running after {ms} ms", i + 1);
            samples.push(ms);
        }
        anyhow::Ok(())
    }
    .await;
    net.stop().await;
    let _ = std::fs::remove_dir_all(&home);
    run?;
    samples.sort_unstable();
    Ok(samples)
}

/// Milliseconds of each (agent start, `docker run`) pair, `runs` of each, sorted.
async fn bench_runtime(runs: usize) -> Result<(Vec<u64>, Vec<u64>)> {
    use gpunet_runtime::{DockerDriver, Driver, WorkloadSpec};
    let driver = DockerDriver::new();
    driver
        .fingerprint()
        .await
        .context("bench runtime needs a Docker Engine")?;
    let image = gpunet_runtime::testimage::ensure_test_image()
        .await
        .context("building the test image")?;
    let mut spec = gpunet_protocol::jobspec::JobSpec::parse_yaml(crate::commands::HELLO_SPEC)
        .map_err(|e| anyhow::anyhow!("bundled example spec: {e}"))?;
    spec.run.image = Some(image.clone());
    spec.run.command = vec!["/bin/sleep".into(), "30".into()];
    let manifest = spec.manifest_bytes();
    let root = tempfile_dir()?;
    let mut agent_ms = Vec::with_capacity(runs);
    let mut docker_ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let id = format!("bench-{}-{i}", std::process::id());
        let started = Instant::now();
        let parsed = gpunet_protocol::jobspec::JobSpec::from_manifest_bytes(&manifest)
            .map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
        let workload = WorkloadSpec {
            image: parsed.run.image.clone(),
            cpu_millis: parsed.resources().cpu_millis,
            memory_mib: parsed.resources().memory_mib,
            env: parsed.run.env.clone(),
            ..WorkloadSpec::new(id.clone(), parsed.run.command.clone(), root.join(&id))
        };
        let handle = driver.start(&workload).await.context("starting")?;
        agent_ms.push(started.elapsed().as_millis() as u64);
        driver
            .stop(&handle, std::time::Duration::from_millis(100))
            .await
            .context("stopping")?;
        driver.destroy(&handle).await.context("removing")?;

        let started = Instant::now();
        let status = tokio::process::Command::new("docker")
            // The test image has no /bin/true; `sh -c :` is its no-op.
            .args(["run", "--rm", &image, "/bin/sh", "-c", ":"])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .context("running `docker run`")?;
        anyhow::ensure!(status.success(), "`docker run` failed: {status}");
        docker_ms.push(started.elapsed().as_millis() as u64);
        eprintln!(
            "run {}/{runs}: agent start {} ms, docker run {} ms",
            i + 1,
            agent_ms[i],
            docker_ms[i]
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    agent_ms.sort_unstable();
    docker_ms.sort_unstable();
    Ok((agent_ms, docker_ms))
}

/// A fresh, absolute scratch directory under the system temp dir.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("gpunet-bench-runtime-{}", std::process::id()));
    gpunet_files::create_private_dir_all(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Where `gpunet bench consensus` looks for free ports for its validators.
pub(crate) const BENCH_PORTS: std::ops::Range<u16> = 30_000..46_000;

const FINALITY_LANES: u64 = 8;
/// Throughput accounts are keys from here on (finality lanes use keys 0..8).
const LOAD_KEYS_FROM: u64 = 1_000;

/// `samples` finality measurements, `FINALITY_LANES` at a time, lane `l` sending through node
/// `(l + i) % apis.len()`: milliseconds from submit to that node to that node saying applied.
async fn measure_finality(apis: &[String], samples: usize) -> Result<Vec<u64>> {
    let per_lane = samples.div_ceil(FINALITY_LANES as usize);
    let lanes = (0..FINALITY_LANES).map(|lane| {
        let apis = apis.to_vec();
        async move {
            let k = key(lane);
            let to = addr(&key(lane + 100));
            let mut v = Vec::with_capacity(per_lane);
            for i in 0..per_lane {
                let client =
                    gpunet_client::NodeClient::new(&apis[(lane as usize + i) % apis.len()]);
                let tx = sign(
                    &k,
                    i as u64,
                    Msg::Transfer {
                        to,
                        denom: Denom::Usd,
                        amount: Amount::from_micros(1),
                    },
                );
                let started = Instant::now();
                let hash = client.submit(&tx).await.context("submitting a transfer")?;
                loop {
                    let view = client.tx(&hash).await?;
                    match view.state {
                        gpunet_api::node::TxState::Applied => break,
                        gpunet_api::node::TxState::Rejected => {
                            anyhow::bail!("finality transfer rejected: {view:?}")
                        }
                        _ => {}
                    }
                    anyhow::ensure!(
                        started.elapsed() < std::time::Duration::from_secs(60),
                        "a transfer was not applied within a minute"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                v.push(started.elapsed().as_millis() as u64);
            }
            anyhow::Ok(v)
        }
    });
    let mut all = Vec::with_capacity(samples);
    for lane in futures::future::join_all(lanes).await {
        all.extend(lane?);
    }
    all.sort_unstable();
    Ok(all)
}

/// Sends transfers from `k` through `client` one after another, the next nonce once the node
/// admitted the last (a refused one is retried after a pause: the mempool is full), until
/// `stop`. Returns the transfers admitted.
async fn pump(
    client: std::sync::Arc<gpunet_client::NodeClient>,
    k: SigningKey,
    to: Address,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut nonce = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let tx = sign(
            &k,
            nonce,
            Msg::Transfer {
                to,
                denom: Denom::Usd,
                amount: Amount::from_micros(1),
            },
        );
        let admitted = match client.submit(&tx).await {
            Ok(_) => true,
            // Lost answer or refusal: admitted if the node knows it.
            Err(_) => client
                .tx(&tx.hash())
                .await
                .is_ok_and(|v| v.state != gpunet_api::node::TxState::Unknown),
        };
        if admitted {
            nonce += 1;
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    nonce
}

/// Applied transfers per second: `accounts` accounts (funded at genesis, unused so far) send
/// through `apis` round-robin for `seconds`, then until every mempool is empty.
async fn measure_throughput(apis: &[String], accounts: usize, seconds: u64) -> Result<f64> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<std::sync::Arc<gpunet_client::NodeClient>> = apis
        .iter()
        .map(|a| std::sync::Arc::new(gpunet_client::NodeClient::new(a)))
        .collect();
    let started = Instant::now();
    let pumps: Vec<_> = (0..accounts)
        .map(|i| {
            let k = key(LOAD_KEYS_FROM + i as u64);
            let to = addr(&key(LOAD_KEYS_FROM + ((i + 1) % accounts) as u64));
            tokio::spawn(pump(
                std::sync::Arc::clone(&clients[i % clients.len()]),
                k,
                to,
                std::sync::Arc::clone(&stop),
            ))
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut submitted = 0u64;
    for p in pumps {
        submitted += p.await.context("a load task failed")?;
    }
    // Drain: every node's mempool empty.
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let mut waiting = 0;
        for c in &clients {
            waiting += c.status().await?.mempool_size;
        }
        if waiting == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{waiting} transactions still waiting two minutes after the load stopped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    // Read the nonces where every block that held load is committed: a node whose mempool is
    // empty may still be a block behind the others (it never held that block's transactions
    // when its mempool refused them as full).
    let mut last_height = 0;
    for c in &clients {
        last_height = last_height.max(c.status().await?.height);
    }
    while clients[0].status().await?.height < last_height {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} never reached height {last_height}",
            clients[0].base()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut applied = 0u64;
    for i in 0..accounts {
        let a = addr(&key(LOAD_KEYS_FROM + i as u64));
        applied += clients[0].account(&a).await?.next_nonce;
    }
    anyhow::ensure!(
        applied == submitted,
        "{submitted} transfers admitted but {applied} applied"
    );
    Ok(applied as f64 / secs)
}

struct ConsensusFigures {
    finality: Vec<u64>,
    transfers_per_sec: f64,
    solo_transfers_per_sec: f64,
}

async fn bench_consensus(
    validators: usize,
    seconds: u64,
    samples: usize,
    accounts: usize,
    block_ms: u64,
) -> Result<ConsensusFigures> {
    anyhow::ensure!(validators >= 1, "--validators must be at least 1");
    anyhow::ensure!(accounts >= 2, "--accounts must be at least 2");
    let dir = std::env::temp_dir().join(format!("gpunet-bench-consensus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys: Vec<SigningKey> = (0..FINALITY_LANES)
        .chain(LOAD_KEYS_FROM..LOAD_KEYS_FROM + accounts as u64)
        .map(key)
        .collect();
    let mut ledger = ledger_genesis(&keys);
    ledger.genesis_time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let n = u16::try_from(validators).context("too many validators")?;
    let p2p = crate::devnet::free_port_run(BENCH_PORTS, n, &[])?;
    let api = crate::devnet::free_port_run(BENCH_PORTS, n, &(p2p..p2p + n).collect::<Vec<_>>())?;
    let vkeys: Vec<[u8; 32]> = (0..validators)
        .map(|_| gpunet_node::generate_validator_key())
        .collect();
    let net = dir.join("net");
    let genesis = gpunet_node::init_network(&net, ledger.clone(), &vkeys, p2p, api, block_ms)
        .context("writing the network")?;
    let result = async {
        let (mut procs, apis) =
            crate::devnet::spawn_validators(&net, &genesis, std::time::Duration::from_secs(60))
                .await?;
        let run = async {
            eprintln!("{validators} validators up; measuring finality over {samples} transfers…");
            let finality = measure_finality(&apis, samples).await?;
            eprintln!(
                "finality p50 {} ms; {seconds} s of load from {accounts} accounts over {validators} validators…",
                percentile(&finality, 50)
            );
            let tps = measure_throughput(&apis, accounts, seconds).await?;
            anyhow::Ok((finality, tps))
        }
        .await;
        let _ = tokio::task::spawn_blocking(move || procs.stop()).await;
        let (finality, transfers_per_sec) = run?;
        eprintln!("{transfers_per_sec:.0} transfers/s; now a solo node, {seconds} s of load…");
        let solo = gpunet_node::start(gpunet_node::NodeConfig {
            home: dir.join("solo"),
            listen: "127.0.0.1:0".parse().expect("a literal socket address"),
            block_ms,
            genesis: ledger,
            mempool: gpunet_node::MempoolLimits::default(),
        })
        .await
        .context("starting the solo node")?;
        let solo_api = format!("http://{}", solo.api_addr());
        let solo_tps = measure_throughput(&[solo_api], accounts, seconds).await;
        solo.shutdown().await;
        anyhow::Ok(ConsensusFigures {
            finality,
            transfers_per_sec,
            solo_transfers_per_sec: solo_tps?,
        })
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub async fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::State(args) => crate::statebench::run(args).await,
        BenchCmd::StateProbe { home } => {
            let f = gpunet_bench::state::restart_probe(&home).await?;
            println!("{}", serde_json::to_string(&f)?);
            Ok(())
        }
        BenchCmd::Churn {
            json: json_out,
            out,
            providers,
            jobs,
            job_secs,
            kill_every_secs,
            max_attempts,
            block_ms,
        } => {
            let opts = crate::churn::ChurnOpts {
                providers,
                jobs,
                job_secs,
                kill_every_secs: kill_every_secs.max(1),
                max_attempts,
                block_ms,
            };
            let f = crate::churn::run(&opts).await?;
            let figures = json!({
                "completion_rate": f.completion_rate(),
                "detect_ms_p95": percentile(&f.detect_ms, 95),
                "replace_ms_p95": percentile(&f.replace_ms, 95),
                "lost_work_s_mean": f.lost_work_s_mean(),
                "wasted_spend_ratio": f.wasted_spend_ratio(),
                "jobs": f.jobs,
                "completed": f.completed,
                "kills": f.kills,
                "leases_lost": f.detect_ms.len(),
                "attempts": f.attempts,
                "providers": providers,
                "job_secs": job_secs,
                "kill_every_secs": kill_every_secs,
                "max_attempts": max_attempts,
                "block_ms": block_ms,
                "build": build_kind(),
            });
            let out = out.unwrap_or_else(|| default_out("churn"));
            write_figures(&out, &figures)?;
            if json_out {
                println!("{figures}");
            } else {
                println!(
                    "churn, {providers} providers, {jobs} jobs of {job_secs} s, a kill every {kill_every_secs} s ({} build):",
                    build_kind()
                );
                println!(
                    "  completed              {}/{} ({:.1}%)",
                    f.completed,
                    f.jobs,
                    100.0 * f.completion_rate()
                );
                println!(
                    "  death → lease ended    p95 {} ms ({} leases lost in {} kills)",
                    percentile(&f.detect_ms, 95),
                    f.detect_ms.len(),
                    f.kills
                );
                println!(
                    "  death → replacement    p95 {} ms",
                    percentile(&f.replace_ms, 95)
                );
                println!(
                    "  work lost per failure  {:.1} s mean",
                    f.lost_work_s_mean()
                );
                println!(
                    "  spend on lost attempts {:.1}%",
                    100.0 * f.wasted_spend_ratio()
                );
                println!("figures written to {}", out.display());
            }
            Ok(())
        }
        BenchCmd::Consensus {
            json: json_out,
            out,
            validators,
            seconds,
            samples,
            accounts,
            block_ms,
        } => {
            let build = if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            };
            if cfg!(debug_assertions) && !json_out {
                eprintln!(
                    "note: this is a debug build; use `cargo run --release -- bench consensus` for real figures"
                );
            }
            let f =
                bench_consensus(validators, seconds, samples.max(1), accounts, block_ms).await?;
            let figures = json!({
                "validators": validators,
                "finality_ms_p50": percentile(&f.finality, 50),
                "finality_ms_p99": percentile(&f.finality, 99),
                "transfers_per_sec": f.transfers_per_sec.round() as u64,
                "solo_transfers_per_sec": f.solo_transfers_per_sec.round() as u64,
                "finality_samples": f.finality.len(),
                "block_ms": block_ms,
                "seconds": seconds,
                "accounts": accounts,
                "build": build,
            });
            let out = out.unwrap_or_else(|| default_out("consensus"));
            write_figures(&out, &figures)?;
            if json_out {
                println!("{figures}");
            } else {
                println!(
                    "consensus, {validators} validators at {block_ms} ms blocks ({build} build):"
                );
                println!(
                    "  finality      p50 {} ms   p99 {} ms   ({} transfers)",
                    percentile(&f.finality, 50),
                    percentile(&f.finality, 99),
                    f.finality.len()
                );
                println!(
                    "  throughput    {:.0} transfers/s   (solo node: {:.0} /s)",
                    f.transfers_per_sec, f.solo_transfers_per_sec
                );
                println!("figures written to {}", out.display());
            }
            Ok(())
        }
        BenchCmd::Runtime {
            json: json_out,
            out,
            runs,
        } => {
            let (agent, docker) = bench_runtime(runs.max(1)).await?;
            let figures = json!({
                "runs": agent.len(),
                "agent_start_ms_p50": percentile(&agent, 50),
                "agent_start_ms_p90": percentile(&agent, 90),
                "docker_run_ms_p50": percentile(&docker, 50),
                "docker_run_ms_p90": percentile(&docker, 90),
            });
            let out = out.unwrap_or_else(|| default_out("runtime"));
            write_figures(&out, &figures)?;
            if json_out {
                println!("{figures}");
            } else {
                println!("container start over {} runs:", agent.len());
                println!(
                    "  agent start   p50 {} ms   p90 {} ms   (target p50 ≤ 300 ms)",
                    percentile(&agent, 50),
                    percentile(&agent, 90)
                );
                println!(
                    "  docker run    p50 {} ms   p90 {} ms   (a whole no-op run, for comparison)",
                    percentile(&docker, 50),
                    percentile(&docker, 90)
                );
                println!("figures written to {}", out.display());
            }
            Ok(())
        }
        BenchCmd::Submit {
            json: json_out,
            out,
            jobs,
            block_ms,
        } => {
            let v = bench_submit(jobs.max(1), block_ms).await?;
            let figures = json!({
                "jobs": v.len(),
                "block_ms": block_ms,
                "submit_to_running_ms_p50": percentile(&v, 50),
                "submit_to_running_ms_p90": percentile(&v, 90),
                "submit_to_running_ms_max": v.last().copied().unwrap_or(0),
            });
            let out = out.unwrap_or_else(|| default_out("submit"));
            write_figures(&out, &figures)?;
            if json_out {
                println!("{figures}");
            } else {
                println!(
                    "submit to running over {} jobs at {block_ms} ms blocks:",
                    v.len()
                );
                println!(
                    "  p50 {} ms   p90 {} ms   max {} ms   (target p50 ≤ 2000 ms)",
                    percentile(&v, 50),
                    percentile(&v, 90),
                    v.last().copied().unwrap_or(0)
                );
                println!("figures written to {}", out.display());
            }
            Ok(())
        }
        BenchCmd::Ledger {
            json: json_out,
            out,
            transfers,
            cycles,
            admissions,
        } => {
            if cfg!(debug_assertions) && !json_out {
                eprintln!(
                    "note: this is a debug build; use `cargo run --release -- bench ledger` for real figures"
                );
            }
            let ((t, tc), c, a) = tokio::task::spawn_blocking(move || -> Result<_> {
                eprintln!("applying {transfers} transfers…");
                let t = bench_transfers(transfers)?;
                eprintln!("running {cycles} order → bid → lease → settle cycles…");
                let c = bench_order_cycles(cycles)?;
                eprintln!("admitting {admissions} signed transactions…");
                let a = bench_admissions(admissions)?;
                Ok((t, c, a))
            })
            .await??;
            let figures = json!({
                "transfers_per_sec": t.round() as u64,
                "transfers_committed_per_sec": tc.round() as u64,
                "order_cycles_per_sec": c.round() as u64,
                "signed_admissions_per_sec": a.round() as u64,
            });
            let out = out.unwrap_or_else(|| default_out("ledger"));
            write_figures(&out, &figures)?;
            if json_out {
                println!("{figures}");
            } else {
                println!(
                    "transfers applied        {:>12.0} /s   (target ≥ 200,000 on one core)",
                    t
                );
                println!(
                    "  … and committed        {:>12.0} /s   (write set, Merkle root, durable write)",
                    tc
                );
                println!(
                    "order cycles             {:>12.0} /s   (target ≥ 20,000)",
                    c
                );
                println!(
                    "signed admissions        {:>12.0} /s   (target ≥ 20,000 on 2 cores)",
                    a
                );
                println!("figures written to {}", out.display());
            }
            Ok(())
        }
    }
}
