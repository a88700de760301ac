//! `gpunet bench consensus`: a network of validators on this machine, each a `gpunet node
//! start` process on Malachite in a scratch directory (so the running executable must be
//! `gpunet`). Finality: a signed transfer submitted to one node until that node reports it
//! applied. Throughput: pre-signed transfers from many accounts funded at genesis, spread over
//! all validators for a while, then until every mempool is empty; the same against a solo node
//! in this process, in the same run.

use std::time::Instant;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use gpunet_protocol::{Address, Amount, Denom, Msg};

use crate::accounts::{addr, key, ledger_genesis, sign};
use crate::figures::percentile;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct ConsensusOptions {
    /// Validator processes to start.
    pub validators: usize,
    /// Seconds of load for each throughput run.
    pub seconds: u64,
    /// Finality samples.
    pub samples: usize,
    /// Accounts submitting during the throughput runs.
    pub accounts: usize,
    /// Least milliseconds between blocks.
    pub block_ms: u64,
}

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

/// What it measured.
#[derive(Debug, Clone, Default)]
pub struct ConsensusFigures {
    /// Milliseconds from submit to applied, sorted.
    pub finality_ms: Vec<u64>,
    pub transfers_per_sec: f64,
    /// The same load against a solo node in this process.
    pub solo_transfers_per_sec: f64,
}

/// Runs both measurements on a network it writes and starts in a scratch directory.
pub async fn run(opts: &ConsensusOptions) -> Result<ConsensusFigures> {
    let ConsensusOptions {
        validators,
        seconds,
        samples,
        accounts,
        block_ms,
    } = *opts;
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
    let p2p = gpunet_devnet::free_port_run(crate::BENCH_PORTS, n, &[])?;
    let api =
        gpunet_devnet::free_port_run(crate::BENCH_PORTS, n, &(p2p..p2p + n).collect::<Vec<_>>())?;
    let vkeys: Vec<[u8; 32]> = (0..validators)
        .map(|_| gpunet_node::generate_validator_key())
        .collect();
    let net = dir.join("net");
    let genesis = gpunet_node::init_network(&net, ledger.clone(), &vkeys, p2p, api, block_ms)
        .context("writing the network")?;
    let result = async {
        let (mut procs, apis) =
            gpunet_devnet::spawn_validators(&net, &genesis, std::time::Duration::from_secs(60))
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
            finality_ms: finality,
            transfers_per_sec,
            solo_transfers_per_sec: solo_tps?,
        })
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
