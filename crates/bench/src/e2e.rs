//! Durable end-to-end throughput of a solo node: signed transfers submitted over real HTTP in
//! batches (`POST /v1/txs/batch`), admitted (decode, ed25519, nonce, fee), ordered into blocks,
//! applied, committed (entities, Merkle root, fsync) — the whole path a client's transfer takes.
//!
//! The transfers are signed before the clock starts (signing is the client's cost, not the
//! node's). Each sender task owns a share of the accounts and sends their transfers nonce round
//! by nonce round, so a signer's transactions arrive in order; what the node refuses as
//! `mempool_full` is sent again before the next round. The rate is transfers applied (the
//! accounts' nonces, read back) over the time from the first batch sent to the last block that
//! held one. Where the node's time went comes from its own `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ed25519_dalek::SigningKey;
use gpunet_api::node::{SubmitTxBatch, SubmitTxBatchResult};
use gpunet_ledger::{Genesis, GenesisAccount, Params};
use gpunet_protocol::{Address, Amount, Balances, Denom, Msg, SignedTx, TxBody};
use serde::{Deserialize, Serialize};

const CHAIN: &str = "gpunet-bench-e2e";

#[derive(Debug, Clone)]
pub struct E2eOptions {
    /// Transfers to send in all.
    pub transfers: usize,
    /// Accounts sending them (each sends transfers / accounts, in nonce order).
    pub accounts: usize,
    /// Concurrent HTTP senders.
    pub senders: usize,
    pub block_ms: u64,
    /// Most transactions in one block.
    pub max_txs_per_block: usize,
    /// Scratch directory for the node's home.
    pub work_dir: std::path::PathBuf,
}

/// Busy seconds of each stage inside the node, from its metrics. The stages overlap in time
/// (admission runs on both cores while a block commits), so they can sum past the wall time.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Stages {
    /// Decode, signature and checks of every submitted batch.
    pub admission_s: f64,
    /// The ledger applying blocks and collecting their write sets.
    pub apply_s: f64,
    /// Entities, Merkle tree and root, durable write.
    pub commit_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct E2eFigures {
    pub transfers: u64,
    pub seconds: f64,
    pub transfers_per_sec: f64,
    pub blocks: u64,
    pub stages: Stages,
}

fn key(i: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed[8] = 0xe2;
    SigningKey::from_bytes(&seed)
}

fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("bench constants fit")
}

/// The `_sum` of a histogram in Prometheus text, 0 if absent.
fn histogram_sum(metrics: &str, name: &str) -> f64 {
    let prefix = format!("{name}_sum");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

async fn metrics_text(http: &reqwest::Client, base: &str) -> Result<String> {
    Ok(http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// Posts `txs` as one batch until every one is admitted (a `mempool_full` refusal waits a
/// little and sends those again); any other refusal is a benchmark fault.
async fn send_until_admitted(http: &reqwest::Client, url: &str, txs: &[String]) -> Result<()> {
    let mut pending: Vec<String> = txs.to_vec();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        let answer: SubmitTxBatchResult = http
            .post(url)
            .json(&SubmitTxBatch {
                txs_hex: pending.clone(),
                forwarded: false,
            })
            .send()
            .await
            .context("sending a batch")?
            .error_for_status()
            .context("the node refused a batch")?
            .json()
            .await
            .context("the batch answer")?;
        let mut again = Vec::new();
        for (tx, item) in pending.iter().zip(&answer.results) {
            match &item.error {
                None => {}
                Some(e) if e.name == "mempool_full" => again.push(tx.clone()),
                Some(e) => bail!(
                    "a benchmark transfer was refused: {} ({})",
                    e.name,
                    e.message
                ),
            }
        }
        if !again.is_empty() {
            ensure!(
                Instant::now() < deadline,
                "the mempool stayed full for two minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pending = again;
    }
    Ok(())
}

pub async fn run(opts: &E2eOptions, progress: &(dyn Fn(String) + Sync)) -> Result<E2eFigures> {
    ensure!(
        opts.accounts > 0 && opts.senders > 0,
        "accounts and senders must be at least 1"
    );
    let rounds = opts.transfers.div_ceil(opts.accounts);
    let keys: Vec<SigningKey> = (0..opts.accounts).map(key).collect();
    let addrs: Vec<Address> = keys
        .iter()
        .map(|k| Address::from_key(&k.verifying_key()))
        .collect();
    let params = Params::default();
    let genesis = Genesis {
        chain_id: CHAIN.to_owned(),
        genesis_time_ms: 0,
        params: params.clone(),
        accounts: addrs
            .iter()
            .map(|a| GenesisAccount {
                address: *a,
                balances: Balances {
                    usd: units(1_000_000),
                    gpn: units(1_000_000),
                },
            })
            .collect(),
    };
    progress(format!("signing {} transfers", rounds * opts.accounts));
    // Per sender, its batches in round order: hex of each signed transfer.
    let signed: Vec<Vec<Vec<String>>> = {
        let keys = keys.clone();
        let addrs = addrs.clone();
        let senders = opts.senders;
        let accounts = opts.accounts;
        let fee = params.min_tx_fee;
        tokio::task::spawn_blocking(move || {
            (0..senders)
                .map(|s| {
                    (0..rounds)
                        .map(|round| {
                            (s..accounts)
                                .step_by(senders)
                                .map(|i| {
                                    let tx: SignedTx = TxBody {
                                        chain_id: CHAIN.to_owned(),
                                        signer: addrs[i],
                                        nonce: round as u64,
                                        fee,
                                        msg: Msg::Transfer {
                                            to: addrs[(i + 1) % accounts],
                                            denom: Denom::Usd,
                                            amount: Amount::from_micros(1),
                                        },
                                    }
                                    .sign(&keys[i]);
                                    hex::encode(tx.encode())
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect()
        })
        .await?
    };
    let total: usize = signed.iter().flatten().map(Vec::len).sum();

    let home = opts.work_dir.join("e2e-node");
    let _ = std::fs::remove_dir_all(&home);
    let node = gpunet_node::start(gpunet_node::NodeConfig {
        home: home.clone(),
        listen: "127.0.0.1:0".parse().expect("a valid address"),
        block_ms: opts.block_ms,
        genesis,
        mempool: gpunet_node::MempoolLimits {
            max_txs: 4 * opts.max_txs_per_block,
            max_txs_per_block: opts.max_txs_per_block,
            max_pending_per_signer: rounds + 1,
        },
    })
    .await
    .context("starting the benchmark node")?;
    let base = format!("http://{}", node.api_addr());
    let http = reqwest::Client::new();
    let client = gpunet_client::NodeClient::new(&base);
    let before = metrics_text(&http, &base).await?;
    let start_height = client.status().await?.height;

    progress(format!("sending {total} transfers"));
    let started = Instant::now();
    let url = Arc::new(format!("{base}/v1/txs/batch"));
    let tasks: Vec<_> = signed
        .into_iter()
        .map(|batches| {
            let http = http.clone();
            let url = Arc::clone(&url);
            tokio::spawn(async move {
                for batch in batches {
                    for chunk in batch.chunks(gpunet_api::node::MAX_TX_BATCH_TXS) {
                        send_until_admitted(&http, &url, chunk).await?;
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await.context("a sender task failed")??;
    }
    // Until every admitted transfer is in a committed block.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = client.status().await?;
        if s.mempool_size == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{} transfers still waiting after five minutes",
            s.mempool_size
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = metrics_text(&http, &base).await?;
    let end_height = client.status().await?.height;

    progress("reading the accounts back".to_owned());
    let mut applied = 0u64;
    for a in &addrs {
        applied += client.account(a).await?.nonce;
    }
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&home);
    ensure!(
        applied == total as u64,
        "{total} transfers admitted but {applied} applied"
    );
    let stage = |name: &str| histogram_sum(&after, name) - histogram_sum(&before, name);
    Ok(E2eFigures {
        transfers: applied,
        seconds,
        transfers_per_sec: applied as f64 / seconds,
        blocks: counter(&after, "gpunet_blocks_produced_total")
            .saturating_sub(counter(&before, "gpunet_blocks_produced_total"))
            .max(end_height.saturating_sub(start_height)),
        stages: Stages {
            admission_s: stage("gpunet_tx_admission_seconds"),
            apply_s: stage("gpunet_block_apply_seconds"),
            commit_s: stage("gpunet_block_commit_seconds"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_sums_and_counters_are_read_from_prometheus_text() {
        let text = "# HELP x\n\
                    gpunet_block_commit_seconds_bucket{le=\"0.1\"} 3\n\
                    gpunet_block_commit_seconds_sum 0.25\n\
                    gpunet_block_commit_seconds_count 3\n\
                    gpunet_blocks_produced_total 17\n";
        assert_eq!(histogram_sum(text, "gpunet_block_commit_seconds"), 0.25);
        assert_eq!(histogram_sum(text, "gpunet_block_apply_seconds"), 0.0);
        assert_eq!(counter(text, "gpunet_blocks_produced_total"), 17);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_applies_every_transfer_and_reports_where_the_time_went() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = run(
            &E2eOptions {
                transfers: 600,
                accounts: 50,
                senders: 2,
                block_ms: 100,
                max_txs_per_block: 200,
                work_dir: dir.path().to_path_buf(),
            },
            &|_| {},
        )
        .await
        .expect("runs");
        assert_eq!(f.transfers, 600);
        assert!(f.transfers_per_sec > 0.0);
        assert!(
            f.blocks >= 3,
            "200 per block: at least three blocks, got {}",
            f.blocks
        );
        assert!(f.stages.admission_s > 0.0 && f.stages.apply_s > 0.0 && f.stages.commit_s > 0.0);
    }
}
