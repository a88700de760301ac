//! `gpunet bench state`: argument handling, progress and printing around
//! `gpunet_bench::state`, which does the measuring.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use gpunet_bench::figures::{build_kind, default_out, write as write_figures};
use gpunet_bench::state::{
    SizeFigures, StateOptions, at, commit_growth_10k_to_1m, measure_size, probe_in_child,
};
use serde_json::json;

use crate::progress::Progress;

/// `gpunet bench state`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where to write the figures. Default: ~/.gpunet/bench/state.json, wherever it runs.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// State sizes (entities), comma-separated, smallest first.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub sizes: Vec<u64>,
    /// Entities each measured block changes (two per transfer).
    #[arg(long, default_value_t = 1000)]
    pub changed: u64,
    /// Measured blocks per size.
    #[arg(long, default_value_t = 50)]
    pub blocks: usize,
    /// Where to build the stores (they need about 1 GB at a million entities). Default: a
    /// scratch directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Transfers for the end-to-end run (0: skip it).
    #[arg(long, default_value_t = 200_000)]
    pub e2e_transfers: usize,
    /// Most transactions per block in the end-to-end run (500 ms blocks).
    #[arg(long, default_value_t = 20_000)]
    pub e2e_block_txs: usize,
}

pub async fn run(args: Args) -> Result<()> {
    let Args {
        json: json_out,
        out,
        mut sizes,
        changed,
        blocks,
        dir,
        e2e_transfers,
        e2e_block_txs,
    } = args;
    ensure!(
        !sizes.is_empty(),
        "--sizes names no size; e.g. --sizes 10000,100000"
    );
    ensure!(blocks > 0, "--blocks must be at least 1");
    ensure!(
        changed >= 2,
        "--changed must be at least 2 (one transfer changes two accounts)"
    );
    sizes.sort_unstable();
    sizes.dedup();
    if cfg!(debug_assertions) && !json_out {
        eprintln!(
            "note: this is a debug build; use `cargo run --release -- bench state` for real figures"
        );
    }
    let scratch = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gpunet-bench-state-{}", std::process::id()))
    });
    let opts = StateOptions {
        sizes: sizes.clone(),
        changed_per_block: changed,
        blocks,
        work_dir: scratch.clone(),
    };
    let progress = std::sync::Arc::new(Progress::new(json_out));
    let p = std::sync::Arc::clone(&progress);
    // Blocking work (redb, the ledger) off the async runtime.
    let measured = tokio::task::spawn_blocking(move || -> Result<Vec<SizeFigures>> {
        let mut all = Vec::new();
        for &n in &opts.sizes {
            let f = measure_size(&opts, n, &|line| p.status(&line), &probe_in_child)?;
            p.stage(&format!(
                "{n} entities: commit p50 {:.1} ms (apply {:.1}, root+write {:.1}), restart {} ms",
                f.commit_ms_p50,
                f.apply_ms_p50,
                f.root_and_write_ms_p50,
                f.restart.map_or(0, |r| r.restart_ms)
            ));
            all.push(f);
        }
        Ok(all)
    })
    .await
    .context("the benchmark task failed")?;
    let figures = match measured {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
    };
    let e2e = if e2e_transfers > 0 {
        let p = std::sync::Arc::clone(&progress);
        let r = gpunet_bench::e2e::run(
            &gpunet_bench::e2e::E2eOptions {
                transfers: e2e_transfers,
                accounts: 2_000,
                senders: 4,
                block_ms: 500,
                max_txs_per_block: e2e_block_txs,
                work_dir: scratch.clone(),
            },
            &move |line| p.status(&line),
        )
        .await;
        let _ = std::fs::remove_dir_all(&scratch);
        let r = r?;
        progress.stage(&format!(
            "end to end: {:.0} transfers/s ({} transfers in {:.1} s, {} blocks)",
            r.transfers_per_sec, r.transfers, r.seconds, r.blocks
        ));
        Some(r)
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
        None
    };
    progress.finish();

    let one_m = at(&figures, 1_000_000);
    let growth = commit_growth_10k_to_1m(&figures);
    let summary = json!({
        "commit_ms_p50_at_1m": one_m.map(|f| f.commit_ms_p50),
        "commit_growth_10k_to_1m": growth,
        "bytes_per_block_at_1m": one_m.and_then(|f| f.bytes_per_block),
        "rss_mb_at_1m": one_m.and_then(|f| f.restart).map(|r| r.rss_mb),
        "restart_ms_at_1m": one_m.and_then(|f| f.restart).map(|r| r.restart_ms),
        "state_sync_ms_at_1m": one_m.map(|f| f.sync.total_ms),
        "e2e_transfers_per_sec": e2e.as_ref().map(|e| e.transfers_per_sec.round() as u64),
        "e2e": e2e,
        "changed_per_block": changed,
        "blocks": blocks,
        "sizes": figures,
        "build": build_kind(),
    });
    let out = out.unwrap_or_else(|| default_out("state"));
    write_figures(&out, &summary)?;
    if json_out {
        println!("{summary}");
        return Ok(());
    }
    println!(
        "state commit, blocks changing {changed} entities, {blocks} blocks per size ({} build):",
        build_kind()
    );
    println!(
        "  {:>10}  {:>9}  {:>9}  {:>11}  {:>9}  {:>11}  {:>10}  {:>7}  {:>10}",
        "entities",
        "apply",
        "root+wr",
        "commit p50",
        "p95",
        "bytes/blk",
        "restart",
        "rss",
        "state sync"
    );
    for f in &figures {
        let r = f.restart;
        println!(
            "  {:>10}  {:>6.1} ms  {:>6.1} ms  {:>8.1} ms  {:>6.1} ms  {:>11}  {:>7} ms  {:>4} MB  {:>7.0} ms",
            f.entities,
            f.apply_ms_p50,
            f.root_and_write_ms_p50,
            f.commit_ms_p50,
            f.commit_ms_p95,
            f.bytes_per_block.map_or("?".to_owned(), |b| b.to_string()),
            r.map_or(0, |r| r.restart_ms),
            r.map_or(0, |r| r.rss_mb),
            f.sync.total_ms,
        );
    }
    if let Some(g) = growth {
        println!("  commit p50 growth from 10k to 1M entities: {g:.2}x");
    }
    if let Some(e) = &e2e {
        let share = |s: f64| 100.0 * s / e.seconds;
        println!(
            "end to end, solo node over HTTP: {:.0} transfers/s ({} in {:.1} s, {} blocks)",
            e.transfers_per_sec, e.transfers, e.seconds, e.blocks
        );
        println!(
            "  node busy time: admission {:.1} s ({:.0}%), apply {:.1} s ({:.0}%), commit {:.1} s ({:.0}%) of the wall time",
            e.stages.admission_s,
            share(e.stages.admission_s),
            e.stages.apply_s,
            share(e.stages.apply_s),
            e.stages.commit_s,
            share(e.stages.commit_s)
        );
    }
    println!("figures written to {}", out.display());
    Ok(())
}
