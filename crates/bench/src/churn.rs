//! `gpunet bench churn`: jobs under provider churn, on a network of real processes — one
//! validator (`gpunet node start`) and several providers (`gpunet provider start`), all the
//! running executable, which must be `gpunet` — with a random provider killed (SIGKILL) every few seconds and restarted a
//! little later on its data, as a crashed and rebooted machine would be. The tenant follows
//! every job to its end as `gpunet job submit --wait` does (handing each retry its manifest),
//! through the [`SubmitAndFollow`] it is handed.
//!
//! The jobs checkpoint: each counts ticks of 0.5 s into `$GPUNET_CHECKPOINTS` and prints
//! `resumed at N` as it starts and `tick N` as it goes; the providers share one blob store, so
//! a retry on another provider resumes from the last checkpoint the agent uploaded (every
//! 10 s).
//!
//! The tenant keeps only as many jobs in the market as the providers could run with one of
//! them down (each job takes a whole core), submitting the next as one ends: the bench
//! measures survival under churn, not orders that expire waiting for capacity that a small
//! network never had.
//!
//! Figures: the share of jobs that completed; provider death → its lease ended on chain and
//! death → the replacement attempt running (p95, ms, as the tenant sees them by polling every
//! 100 ms); the work each failure lost (ticks the lost attempt had counted beyond where the
//! next attempt resumed, read from the attempts' logs on the providers' disks, in seconds);
//! and the share of the tenants' spend that paid for that lost work.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gpunet_api::node::{LeaseState, OrderView};
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{Address, LeaseEndReason, LeaseId, OrderId};
use rand_core::RngCore;
use tokio::process::{Child, Command};

use crate::SubmitAndFollow;

/// Most jobs one churn run takes: each is followed by a task of its own, all at once.
pub const MAX_CHURN_JOBS: usize = 1_000;

/// What the churn run is asked to do.
#[derive(Debug, Clone)]
pub struct ChurnOpts {
    pub providers: usize,
    pub jobs: usize,
    pub job_secs: u64,
    pub kill_every_secs: u64,
    pub max_attempts: u32,
    pub block_ms: u64,
}

/// What it measured.
#[derive(Debug, Clone, Default)]
pub struct ChurnFigures {
    pub jobs: usize,
    pub completed: usize,
    pub kills: usize,
    pub detect_ms: Vec<u64>,
    pub replace_ms: Vec<u64>,
    pub lost_work_ms: Vec<u64>,
    /// What the tenants paid for work that was lost (each lost attempt's pay times the share
    /// of its ticks that the next attempt did not resume from).
    pub paid_lost_micros: u128,
    pub paid_all_micros: u128,
    pub attempts: usize,
}

impl ChurnFigures {
    pub fn completion_rate(&self) -> f64 {
        if self.jobs == 0 {
            return 0.0;
        }
        self.completed as f64 / self.jobs as f64
    }

    pub fn lost_work_s_mean(&self) -> f64 {
        if self.lost_work_ms.is_empty() {
            return 0.0;
        }
        self.lost_work_ms.iter().sum::<u64>() as f64 / self.lost_work_ms.len() as f64 / 1_000.0
    }

    pub fn wasted_spend_ratio(&self) -> f64 {
        if self.paid_all_micros == 0 {
            return 0.0;
        }
        self.paid_lost_micros as f64 / self.paid_all_micros as f64
    }
}

struct Provider {
    index: usize,
    address: Address,
    child: Option<Child>,
}

/// One kill and what followed it.
struct Kill {
    at: Instant,
    /// The leases the provider held then, with their orders.
    leases: Vec<(LeaseId, OrderId)>,
    detected: Vec<Option<u64>>,
    replaced: Vec<Option<u64>>,
}

fn spawn_gpunet(args: &[&str], log: &Path) -> Result<Child> {
    let exe = std::env::current_exe().context("finding this gpunet binary")?;
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(exe)
        .args(args)
        .env("GPUNET_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .context("starting a gpunet process")
}

/// Milliseconds per tick of the churn jobs.
const TICK_MS: u64 = 500;

fn provider_data(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("provider-{index}"))
}

fn start_provider(dir: &Path, api: &str, index: usize) -> Result<Child> {
    let key = gpunet_devnet::network::provider_key_path(dir, index);
    let tenant = gpunet_devnet::network::tenant_key_path(dir);
    let data = provider_data(dir, index);
    let blobs = dir.join("blobs");
    // Distinct prices, so the auction has a clear order.
    let cpu_hour = format!("0.{:02}", 10 + index);
    spawn_gpunet(
        &[
            "provider",
            "start",
            "--api",
            api,
            "--key",
            &key.to_string_lossy(),
            "--data",
            &data.to_string_lossy(),
            "--listen",
            "127.0.0.1:0",
            "--no-docker",
            "--cpu-hour",
            &cpu_hour,
            "--trust-tenant",
            &tenant.to_string_lossy(),
            "--blob-store",
            &blobs.to_string_lossy(),
        ],
        &dir.join(format!("provider-{index}.log")),
    )
}

fn job_spec(i: usize, opts: &ChurnOpts) -> Result<gpunet_protocol::jobspec::JobSpec> {
    let ticks = opts.job_secs * 1_000 / TICK_MS;
    // A whole core each, so a provider on a small machine holds only a few jobs and a kill
    // takes some jobs, not all.
    let cpu = 1;
    let yaml = format!(
        r#"version: 1
name: churn-{i}
run:
  command: ["sh", "-c", "d=\"$GPUNET_CHECKPOINTS\"; i=$(cat \"$d/tick\" 2>/dev/null || echo 0); echo \"resumed at $i\"; while [ $i -lt {ticks} ]; do i=$((i+1)); sleep 0.5; echo tick $i; echo $i > \"$d/tick.new\"; mv \"$d/tick.new\" \"$d/tick\"; done; echo done"]
resources: {{ cpu: {cpu}, memory: 32Mi, disk: 32Mi }}
pricing: {{ max_per_hour: "1.00", deposit: "1.00" }}
limits: {{ max_duration: 1h }}
recovery: {{ max_attempts: {}, backoff: 1s }}
"#,
        opts.max_attempts
    );
    gpunet_protocol::jobspec::JobSpec::parse_yaml(&yaml)
        .map_err(|e| anyhow::anyhow!("the churn job spec: {e}"))
}

/// Runs the churn benchmark in a scratch directory and returns its figures; `tenant` submits
/// and follows each job.
pub async fn run(opts: &ChurnOpts, tenant: Arc<dyn SubmitAndFollow>) -> Result<ChurnFigures> {
    anyhow::ensure!(
        opts.providers >= 2,
        "--providers must be at least 2 (one to kill, one to retry on)"
    );
    anyhow::ensure!(
        (1..=MAX_CHURN_JOBS).contains(&opts.jobs),
        "--jobs must be from 1 to {MAX_CHURN_JOBS} (each job is followed by a task of its own)"
    );
    let dir = std::env::temp_dir().join(format!("gpunet-bench-churn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = run_in(&dir, opts, tenant).await;
    // GPUNET_BENCH_KEEP=1 keeps the processes' logs and data for a look afterwards.
    if std::env::var_os("GPUNET_BENCH_KEEP").is_some() {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(
    dir: &Path,
    opts: &ChurnOpts,
    follower: Arc<dyn SubmitAndFollow>,
) -> Result<ChurnFigures> {
    let ports = gpunet_devnet::free_port_run(crate::BENCH_PORTS, 2, &[])?;
    let (api_port, p2p_port) = (ports, ports + 1);
    let args = gpunet_devnet::network::InitArgs {
        validators: 1,
        hosts: Vec::new(),
        powers: Vec::new(),
        providers: opts.providers,
        out: dir.to_path_buf(),
        chain_id: "churn".to_owned(),
        p2p_port,
        api_port,
        block_ms: opts.block_ms,
        params: Vec::new(),
    };
    let (_, tenant) = gpunet_devnet::network::write_network(&args, Vec::new())?;
    let api = format!("http://127.0.0.1:{api_port}");
    let home: PathBuf = dir.join("node-0");
    let _node = spawn_gpunet(
        &["node", "start", "--home", &home.to_string_lossy()],
        &dir.join("node.log"),
    )?;
    let mut providers = Vec::new();
    for index in 0..opts.providers {
        let address =
            KeyFile::load(&gpunet_devnet::network::provider_key_path(dir, index))?.address();
        providers.push(Provider {
            index,
            address,
            child: Some(start_provider(dir, &api, index)?),
        });
    }
    let watcher = NodeClient::new(&api);
    let up = Instant::now();
    while watcher.providers().await.map_or(0, |p| p.providers.len()) < opts.providers {
        anyhow::ensure!(
            up.elapsed() < Duration::from_secs(120),
            "the providers did not register within 2 minutes; see {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{} providers up; {} jobs of {} s, a busy provider killed every {} s…",
        opts.providers, opts.jobs, opts.job_secs, opts.kill_every_secs
    );

    let slots = job_slots(&watcher.providers().await?.providers);
    eprintln!(
        "at most {slots} jobs in the market at once (the cores of all providers but the largest)"
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(slots));
    let tenant = Arc::new(tenant);
    // One client for every job: it hands out the tenant's nonces in order.
    let submitter = Arc::new(NodeClient::new(&api).with_signer((*tenant).clone()));
    let mut tasks = Vec::new();
    for i in 0..opts.jobs {
        let spec = job_spec(i, opts)?;
        let (client, tenant, slots, follower) = (
            Arc::clone(&submitter),
            Arc::clone(&tenant),
            Arc::clone(&slots),
            Arc::clone(&follower),
        );
        tasks.push(tokio::spawn(async move {
            // Held until the job ends; never closed, so acquiring only waits.
            let _slot = slots.acquire_owned().await;
            follower
                .submit_and_follow(&client, &tenant, &spec)
                .await
                .map(|f| f.order)
        }));
    }

    let mut kills: Vec<Kill> = Vec::new();
    let mut restarts: Vec<(Instant, usize)> = Vec::new();
    let mut next_kill = Instant::now() + Duration::from_secs(opts.kill_every_secs);
    let mut rng = rand_core::OsRng;
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        // A killed machine comes back after half a kill period, on its data.
        for (_, index) in restarts.iter().filter(|(at, _)| *at <= now) {
            providers[*index].child = Some(start_provider(dir, &api, *index)?);
        }
        restarts.retain(|(at, _)| *at > now);
        observe(&watcher, &mut kills).await;
        if now < next_kill {
            continue;
        }
        next_kill = now + Duration::from_secs(opts.kill_every_secs);
        // Any provider that runs, busy or idle, as machines fail.
        let up: Vec<&Provider> = providers.iter().filter(|p| p.child.is_some()).collect();
        if up.is_empty() {
            continue;
        }
        let victim = up[rng.next_u32() as usize % up.len()].index;
        let Ok(record) = watcher.provider(&providers[victim].address).await else {
            continue;
        };
        let held: Vec<LeaseId> = record.map(|v| v.live_leases).unwrap_or_default();
        let mut leases = Vec::new();
        for lease in held {
            if let Ok(view) = watcher.lease(lease).await
                && view.state == LeaseState::Running
            {
                leases.push((lease, view.order));
            }
        }
        if let Some(mut child) = providers[victim].child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        eprintln!(
            "killed provider {victim} holding {} running lease(s)",
            leases.len()
        );
        let n = leases.len();
        kills.push(Kill {
            at: Instant::now(),
            leases,
            detected: vec![None; n],
            replaced: vec![None; n],
        });
        restarts.push((
            now + Duration::from_secs(opts.kill_every_secs.div_ceil(2)),
            victim,
        ));
    }

    let mut figures = ChurnFigures {
        jobs: opts.jobs,
        kills: kills.len(),
        ..ChurnFigures::default()
    };
    for task in tasks {
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("a job did not finish: {e:#}"),
            Err(e) => eprintln!("a job's task failed: {e}"),
        }
    }
    // Every order the tenant placed, page after page; a submission that never reached the
    // chain counts as a job that did not complete.
    let orders: Vec<OrderId> = watcher
        .orders_all(&gpunet_client::OrderFilter {
            tenant: Some(tenant.address()),
            ..Default::default()
        })
        .await?
        .orders
        .iter()
        .map(|o| o.id)
        .collect();
    if orders.len() < opts.jobs {
        eprintln!(
            "{} of {} jobs never reached the chain",
            opts.jobs - orders.len(),
            opts.jobs
        );
    }
    for kill in &kills {
        figures.detect_ms.extend(kill.detected.iter().flatten());
        figures.replace_ms.extend(kill.replaced.iter().flatten());
    }
    for id in orders {
        let order = watcher.order(id).await?;
        let attempts: Vec<String> = order
            .attempts
            .iter()
            .map(|a| {
                let how = a.end_reason.map_or("live".to_owned(), |r| r.to_string());
                format!("#{} {how}", a.attempt)
            })
            .collect();
        eprintln!("job {id}: {}", attempts.join(", "));
        if order
            .lease
            .as_ref()
            .is_some_and(|l| l.end_reason == Some(LeaseEndReason::Completed))
        {
            figures.completed += 1;
        }
        let ticks: Vec<Option<AttemptTicks>> = order
            .attempts
            .iter()
            .map(|a| {
                let index = providers.iter().position(|p| p.address == a.provider)?;
                attempt_ticks(&provider_data(dir, index), a.id)
            })
            .collect();
        for (k, attempt) in order.attempts.iter().enumerate() {
            figures.attempts += 1;
            let paid = u128::from(attempt.paid.micros());
            figures.paid_all_micros += paid;
            if attempt.end_reason == Some(LeaseEndReason::Completed) {
                continue;
            }
            // A failed attempt's work survives as far as the next attempt resumed from it.
            let next = ticks.get(k + 1).copied().flatten();
            match (ticks[k], next) {
                (Some(this), Some(next)) => {
                    let ran = this.last.saturating_sub(this.resumed_at);
                    let lost = this
                        .last
                        .saturating_sub(next.resumed_at.max(this.resumed_at));
                    figures.lost_work_ms.push(lost * TICK_MS);
                    figures.paid_lost_micros += if ran == 0 {
                        paid
                    } else {
                        paid * u128::from(lost.min(ran)) / u128::from(ran)
                    };
                }
                // No next attempt (the job failed for good) or no log to read: all of it.
                (this, _) => {
                    figures.paid_lost_micros += paid;
                    let lost_ms = match (this, attempt.started_ms, attempt.ended_ms) {
                        (Some(this), _, _) => {
                            Some(this.last.saturating_sub(this.resumed_at) * TICK_MS)
                        }
                        (None, Some(started), Some(ended)) => Some(ended.saturating_sub(started)),
                        _ => None,
                    };
                    figures.lost_work_ms.extend(lost_ms);
                }
            }
        }
    }
    figures.detect_ms.sort_unstable();
    figures.replace_ms.sort_unstable();
    for p in &mut providers {
        if let Some(mut c) = p.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
    Ok(figures)
}

/// How many churn jobs (a whole core each) may be in the market at once: the providers'
/// free cores, less the largest provider's, so the retries of a killed provider's jobs find
/// room on the others instead of queueing behind new submissions. At least one.
fn job_slots(providers: &[gpunet_api::node::ProviderView]) -> usize {
    let cores = |p: &gpunet_api::node::ProviderView| (p.free_cpu_millis / 1_000) as usize;
    let all: usize = providers.iter().map(cores).sum();
    let largest = providers.iter().map(cores).max().unwrap_or(0);
    all.saturating_sub(largest).max(1)
}

/// Notes, for each killed lease, when the chain ended it and when its order's next attempt
/// ran.
async fn observe(client: &NodeClient, kills: &mut [Kill]) {
    for kill in kills.iter_mut() {
        for (i, (lease, order)) in kill.leases.iter().enumerate() {
            if kill.detected[i].is_some() && kill.replaced[i].is_some() {
                continue;
            }
            let Ok(view) = client.order(*order).await else {
                continue;
            };
            let elapsed = kill.at.elapsed().as_millis() as u64;
            if kill.detected[i].is_none() && ended(&view, *lease) {
                kill.detected[i] = Some(elapsed);
            }
            if kill.replaced[i].is_none()
                && view
                    .lease
                    .as_ref()
                    .is_some_and(|l| l.id != *lease && l.state == LeaseState::Running)
            {
                kill.replaced[i] = Some(elapsed);
            }
        }
    }
}

fn ended(order: &OrderView, lease: LeaseId) -> bool {
    order
        .attempts
        .iter()
        .any(|a| a.id == lease && a.state == LeaseState::Ended)
}

/// Where an attempt of a churn job began and how far it counted, from its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AttemptTicks {
    resumed_at: u64,
    last: u64,
}

/// Reads the attempt's log on the provider's disk (`None` if it is gone or says nothing).
fn attempt_ticks(provider_data: &Path, lease: LeaseId) -> Option<AttemptTicks> {
    let log = gpunet_agent::record::lease_dir(provider_data, lease).join("logs/combined.log");
    parse_ticks(&std::fs::read_to_string(log).ok()?)
}

fn parse_ticks(log: &str) -> Option<AttemptTicks> {
    let number = |l: &str, prefix: &str| l.strip_prefix(prefix)?.trim().parse::<u64>().ok();
    let resumed_at = log.lines().find_map(|l| number(l, "resumed at "))?;
    let last = log
        .lines()
        .filter_map(|l| number(l, "tick "))
        .max()
        .unwrap_or(resumed_at);
    Some(AttemptTicks { resumed_at, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(free_cpu_millis: u32) -> gpunet_api::node::ProviderView {
        gpunet_api::node::ProviderView {
            address: Address([7; 32]),
            profile: Default::default(),
            stake: gpunet_protocol::Amount::ZERO,
            registered_height: 1,
            live_leases: Vec::new(),
            free_cpu_millis,
            free_memory_mib: 1024,
            free_gpus: 0,
            leases_completed: 0,
            leases_failed: 0,
            last_heartbeat_height: 1,
            leaving: false,
            reputation_ppm: 500_000,
            jailed_until_height: 0,
            slashed: gpunet_protocol::Amount::ZERO,
            verified_runs: Vec::new(),
            hardware: gpunet_api::node::HardwareView {
                challenged: false,
                proven: true,
                passed: 0,
                failed: 0,
                next_at_height: 1,
                challenge: None,
            },
            judging: Vec::new(),
            uptime: Default::default(),
        }
    }

    #[test]
    fn the_market_holds_what_the_providers_can_run_with_the_largest_down() {
        let slots =
            |cpus: &[u32]| job_slots(&cpus.iter().map(|c| provider(*c)).collect::<Vec<_>>());
        assert_eq!(slots(&[2_000; 6]), 10);
        // Part of a core is no room for a whole-core job.
        assert_eq!(slots(&[4_000, 1_500, 2_999]), 3);
        // Never none, or the bench would wait forever.
        assert_eq!(slots(&[2_000]), 1);
        assert_eq!(slots(&[]), 1);
    }

    #[test]
    fn an_attempts_ticks_are_read_from_its_log() {
        let log =
            "gpunet: restored checkpoint abc\nresumed at 20\ntick 21\ntick 22\nnoise\ntick 23\n";
        assert_eq!(
            parse_ticks(log),
            Some(AttemptTicks {
                resumed_at: 20,
                last: 23
            })
        );
        assert_eq!(
            parse_ticks("resumed at 5\n"),
            Some(AttemptTicks {
                resumed_at: 5,
                last: 5
            })
        );
        assert_eq!(parse_ticks("tick 3\n"), None, "no start line: unknown");
    }
}
