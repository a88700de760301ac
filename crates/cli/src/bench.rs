//! `gpunet bench …`: end-to-end performance figures, printed and written to a JSON file so runs
//! can be compared. Quote ratios from one run only.
//!
//! The subcommands and their output; `gpunet_bench` measures. The benchmarks that run jobs are
//! handed [`QuietTenant`], this CLI's own `job submit --wait` path.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Subcommand;
use futures::future::BoxFuture;
use gpunet_bench::figures::{build_kind, default_out, percentile, write as write_figures};
use gpunet_bench::{FollowedJob, SubmitAndFollow};
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::jobspec::JobSpec;
use serde_json::json;

use crate::progress::Progress;

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
    /// Each size's whole state is also copied into a new store the way state sync does it
    /// (snapshot chunks with range proofs, checked restore), and timed.
    ///
    /// Prints {"commit_ms_p50_at_1m", "commit_growth_10k_to_1m", "bytes_per_block_at_1m",
    /// "rss_mb_at_1m", "restart_ms_at_1m", "state_sync_ms_at_1m", "e2e_transfers_per_sec"} and
    /// the figures behind them.
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
    /// What the agent's ingress reverse proxy adds to an HTTP service, measured beside a direct
    /// connection in one run. By default all on loopback in this process: the service
    /// (answering each request after --service-ms, like a service doing work), the agent's real
    /// proxy with one route to it, and --connections keep-alive clients that name the route
    /// (<lease>-<port>.DOMAIN) in Host, as a wildcard DNS record would send them. With --direct,
    /// --proxied and --host, against a service and a provider's proxy that already run (e.g.
    /// `gpunet bench upstream` as a container job: `deploy/cluster/cluster.sh bench-ingress`).
    /// Throughput phases of --seconds alternate direct, proxied, direct, proxied (the better of
    /// each pair counts); latency is the median of 1000 requests one at a time, each way. With
    /// --service-ms 0 the proxy competes with the clients and the service for this machine's
    /// cores: a lower bound, not the figure for a real service.
    ///
    /// Prints {"direct_rps", "proxied_rps", "added_ms_p50", …}; targets: added_ms_p50 ≤ 1 and
    /// proxied_rps ≥ 90 % of direct_rps.
    ///
    /// Example: gpunet bench ingress --json
    ///
    /// Example: gpunet bench ingress --direct http://172.18.0.1:30000 --proxied http://provider-0:8080 --host 1-8080.apps.cluster
    Ingress {
        /// Print the figures as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Where to write the figures. Default: ~/.gpunet/bench/ingress.json, wherever it runs.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Keep-alive connections sending requests at once in the throughput phases.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds each throughput phase lasts.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Milliseconds the service takes for each answer (a light API call; 0 times raw
        /// forwarding). In this process only: a running service decides its own.
        #[arg(long, default_value_t = 10, conflicts_with = "direct")]
        service_ms: u64,
        /// A running service, e.g. a job's published port (the first endpoint `job status`
        /// prints), instead of one in this process.
        #[arg(long, value_name = "http://HOST:PORT", requires = "proxied")]
        direct: Option<String>,
        /// The proxy in front of that service, e.g. a provider's ingress (`--ingress-listen`).
        #[arg(long, value_name = "http://HOST:PORT", requires = "host")]
        proxied: Option<String>,
        /// The name the proxy routes to the service, sent as Host: <lease>-<port>.DOMAIN (the
        /// name in the endpoint `job status` prints, without its port).
        #[arg(long, value_name = "NAME", requires = "direct")]
        host: Option<String>,
    },
    /// The HTTP service `bench ingress` measures, on its own until stopped (e.g. as a container
    /// job's command, to time a provider's real ingress from outside): GET / answers "ok" after
    /// --service-ms; GET /headers answers the request's headers, one per line; with --backend,
    /// GET /backend/PATH answers what the backend says to GET /PATH (a front end calling
    /// another service of its job by name).
    ///
    /// Example: gpunet bench upstream --listen 0.0.0.0:8080 --backend api:9000
    Upstream {
        /// Where to listen.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// HOST:PORT of a service to relay GET /backend/PATH to.
        #[arg(long, value_name = "HOST:PORT")]
        backend: Option<String>,
        /// Milliseconds the service takes for each answer to GET /.
        #[arg(long, default_value_t = 0)]
        service_ms: u64,
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
    /// A hardware challenge (ADR 0009) answered on this machine's CPU and checked as a chain
    /// checks it: the challenge's two n × n int8 matrices generated and multiplied on every
    /// core, the Merkle commitment built over the product, 64 entries sampled after it and
    /// their openings checked. The product's rate is this CPU's throughput band; the check's
    /// time is what one challenge costs a block.
    ///
    /// Prints {"n", "threads", "ops", "product_ms", "commit_ms", "ops_per_ms", "check_ms",
    /// "openings"}.
    ///
    /// Example: gpunet bench challenge --n 2048 --json
    Challenge {
        /// Print the figures as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Where to write the figures. Default: ~/.gpunet/bench/challenge.json, wherever it
        /// runs.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// The matrices' size, n × n (16 to 131,071; the product is 2n³ operations).
        #[arg(long, default_value_t = 1024)]
        n: usize,
        /// CPU threads to multiply on. Default: every core.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// How fast result verification catches cheaters, and what it costs: the simulator
    /// (`gpunet-sim`) drives the real ledger through thousands of spot-checked jobs per seed,
    /// served by 12 honest providers, 4 that cheat on 10% of their runs and 2 that cheat on
    /// every run, with the network's default parameters (ADR 0010). No network, no processes:
    /// the ledger alone, seeded, so a seed always gives the same figures.
    ///
    /// Prints {"seeds", "caught_within_jobs_p99_cheat10", "caught_within_jobs_p99_cheat100",
    /// "honest_slashed", "check_overhead_ratio"} and the counts behind them: the 99th
    /// percentile over every cheater of the runs it had reported when first slashed (null if
    /// more than 1% got past 500, or 50, uncaught), slashes of honest providers, and the share
    /// of the compute of orders past probation spent on checks and referees.
    ///
    /// Example: gpunet bench verification --seeds 100 --json
    Verification {
        /// Print the figures as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Where to write the figures. Default: ~/.gpunet/bench/verification.json, wherever
        /// it runs.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Seeds to run, each its own chain from genesis.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed; seeds run from it upward.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
    },
}

/// The benchmarks' tenant: submits and follows a job as `gpunet job submit --wait` does,
/// showing no progress.
pub struct QuietTenant;

impl SubmitAndFollow for QuietTenant {
    fn submit_and_follow<'a>(
        &'a self,
        client: &'a NodeClient,
        tenant: &'a KeyFile,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<FollowedJob>> {
        Box::pin(async move {
            let quiet = Progress::new(true);
            let f = crate::jobs::submit_and_follow(client, tenant, spec, true, &quiet).await?;
            Ok(FollowedJob {
                order: f.order.id,
                submit_to_running_ms: f.submit_to_running_ms,
            })
        })
    }
}

pub async fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Verification {
            json: json_out,
            out,
            seeds,
            first_seed,
        } => verification(json_out, out, seeds, first_seed),
        BenchCmd::Challenge {
            json: json_out,
            out,
            n,
            threads,
        } => challenge(json_out, out, n, threads),
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
            let opts = gpunet_bench::churn::ChurnOpts {
                providers,
                jobs,
                job_secs,
                kill_every_secs: kill_every_secs.max(1),
                max_attempts,
                block_ms,
            };
            let f = gpunet_bench::churn::run(&opts, Arc::new(QuietTenant)).await?;
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
            let build = build_kind();
            if cfg!(debug_assertions) && !json_out {
                eprintln!(
                    "note: this is a debug build; use `cargo run --release -- bench consensus` for real figures"
                );
            }
            let f = gpunet_bench::consensus::run(&gpunet_bench::consensus::ConsensusOptions {
                validators,
                seconds,
                samples: samples.max(1),
                accounts,
                block_ms,
            })
            .await?;
            let figures = json!({
                "validators": validators,
                "finality_ms_p50": percentile(&f.finality_ms, 50),
                "finality_ms_p99": percentile(&f.finality_ms, 99),
                "transfers_per_sec": f.transfers_per_sec.round() as u64,
                "solo_transfers_per_sec": f.solo_transfers_per_sec.round() as u64,
                "finality_samples": f.finality_ms.len(),
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
                    percentile(&f.finality_ms, 50),
                    percentile(&f.finality_ms, 99),
                    f.finality_ms.len()
                );
                println!(
                    "  throughput    {:.0} transfers/s   (solo node: {:.0} /s)",
                    f.transfers_per_sec, f.solo_transfers_per_sec
                );
                println!("figures written to {}", out.display());
            }
            Ok(())
        }
        BenchCmd::Ingress {
            json: json_out,
            out,
            connections,
            seconds,
            service_ms,
            direct,
            proxied,
            host,
        } => {
            use gpunet_bench::ingress::{Endpoints, IngressBench, Setup};
            let setup = match (direct, proxied, host) {
                (Some(direct), Some(proxied), Some(host)) => Setup::External(Endpoints {
                    direct,
                    proxied,
                    host,
                }),
                _ => Setup::InProcess { service_ms },
            };
            let progress = Progress::new(json_out);
            progress.status(&format!(
                "timing the ingress proxy: 4 phases of {seconds} s with {connections} connections, and 4000 requests one at a time"
            ));
            let bench = IngressBench {
                connections: connections.max(1),
                phase: std::time::Duration::from_secs(seconds.max(1)),
            };
            let f = gpunet_bench::ingress::run(bench, &setup).await;
            progress.finish();
            let f = f?;
            let mut figures = json!({
                "build": build_kind(),
                "connections": connections,
                "seconds": seconds,
                "direct_rps": f.direct_rps.round(),
                "proxied_rps": f.proxied_rps.round(),
                "proxied_over_direct": (f.throughput_ratio() * 1000.0).round() / 1000.0,
                "direct_ms_p50": f.direct_ms_p50,
                "proxied_ms_p50": f.proxied_ms_p50,
                "added_ms_p50": (f.added_ms_p50() * 1000.0).round() / 1000.0,
                "errors": f.errors,
            });
            // What was measured: the service's delay here, or the endpoints measured.
            let described = match &setup {
                Setup::InProcess { service_ms } => {
                    figures["service_ms"] = json!(service_ms);
                    format!("in this process, service {service_ms} ms per answer")
                }
                Setup::External(at) => {
                    figures["direct"] = json!(at.direct);
                    figures["proxied"] = json!(at.proxied);
                    figures["host"] = json!(at.host);
                    format!("{} with Host {} beside {}", at.proxied, at.host, at.direct)
                }
            };
            let out = out.unwrap_or_else(|| default_out("ingress"));
            write_figures(&out, &figures)?;
            if json_out {
                println!("{figures}");
            } else {
                println!(
                    "ingress proxy ({} build, {described}, {connections} connections):",
                    build_kind()
                );
                println!(
                    "  throughput  direct {:.0}/s   proxied {:.0}/s   = {:.1} % (target ≥ 90 %)",
                    f.direct_rps,
                    f.proxied_rps,
                    f.throughput_ratio() * 100.0
                );
                println!(
                    "  latency p50 direct {:.3} ms   proxied {:.3} ms   added {:.3} ms (target ≤ 1 ms)",
                    f.direct_ms_p50,
                    f.proxied_ms_p50,
                    f.added_ms_p50()
                );
                if f.errors > 0 {
                    println!("  {} requests failed", f.errors);
                }
                println!("figures written to {}", out.display());
            }
            Ok(())
        }
        BenchCmd::Upstream {
            listen,
            service_ms,
            backend,
        } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
            println!("serving on {}", listener.local_addr()?);
            gpunet_bench::ingress::serve_upstream(listener, service_ms, backend).await
        }
        BenchCmd::Runtime {
            json: json_out,
            out,
            runs,
        } => {
            let f = gpunet_bench::runtime::run(runs.max(1)).await?;
            let (agent, docker) = (f.agent_start_ms, f.docker_run_ms);
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
            let v = gpunet_bench::submit::run(jobs.max(1), block_ms, &QuietTenant).await?;
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
            let opts = gpunet_bench::ledger::LedgerOptions {
                transfers,
                cycles,
                admissions,
            };
            let f = tokio::task::spawn_blocking(move || {
                gpunet_bench::ledger::run(&opts, &|line| eprintln!("{line}"))
            })
            .await??;
            let (t, tc, c, a) = (
                f.transfers_per_sec,
                f.transfers_committed_per_sec,
                f.order_cycles_per_sec,
                f.signed_admissions_per_sec,
            );
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

fn challenge(json_out: bool, out: Option<PathBuf>, n: usize, threads: Option<usize>) -> Result<()> {
    use gpunet_verify::challenge::leaves_to_open;
    let m = gpunet_verify::Matrices::new(*b"gpunet bench challenge seed 0001", n)
        .map_err(|e| anyhow::anyhow!("--n {n}: {e}"))?;
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |t| t.get()))
        .max(1);
    let progress = Progress::new(json_out);
    progress.status(&format!(
        "multiplying two {n} × {n} int8 matrices on {threads} thread(s)"
    ));
    let proof = gpunet_agent::challenge::prove_on_cpu(&m, threads);
    progress.finish();
    let root = proof.tree.root();
    let started = std::time::Instant::now();
    let picked = gpunet_verify::samples(b"gpunet bench challenge draw 0001", &root, n, 64);
    let openings: Vec<_> = leaves_to_open(&picked)
        .into_iter()
        .filter_map(|l| proof.tree.open(l))
        .collect();
    let checked = gpunet_verify::check_openings(&m, &root, &picked, &openings);
    let check = started.elapsed();
    checked.map_err(|e| anyhow::anyhow!("the CPU's own product failed the check: {e}"))?;
    let ops = 2 * (n as u128).pow(3);
    let product_ms = proof.product.as_secs_f64() * 1e3;
    let figures = json!({
        "n": n,
        "threads": threads,
        "ops": ops as f64,
        "product_ms": product_ms,
        "commit_ms": proof.commit.as_secs_f64() * 1e3,
        "ops_per_ms": ops as f64 / product_ms.max(1e-3),
        "check_ms": check.as_secs_f64() * 1e3,
        "openings": openings.len(),
        "build": build_kind(),
    });
    let out = out.unwrap_or_else(|| default_out("challenge"));
    write_figures(&out, &figures)?;
    if json_out {
        println!("{figures}");
        return Ok(());
    }
    println!(
        "challenge n = {n} on {threads} CPU thread(s) ({} build):",
        build_kind()
    );
    println!(
        "  product    {product_ms:.0} ms for {:.3e} ops: {:.3e} ops/ms",
        ops as f64,
        ops as f64 / product_ms.max(1e-3)
    );
    println!("  commitment {:.0} ms", proof.commit.as_secs_f64() * 1e3);
    println!(
        "  the chain's check of {} sampled entries ({} leaves opened): {:.2} ms",
        picked.len(),
        openings.len(),
        check.as_secs_f64() * 1e3
    );
    println!("figures written to {}", out.display());
    Ok(())
}

fn verification(json_out: bool, out: Option<PathBuf>, seeds: u64, first_seed: u64) -> Result<()> {
    use gpunet_sim::verification::{Config, SeedReport, run_seed, summarize};
    anyhow::ensure!(seeds > 0, "--seeds must be at least 1");
    let config = Config::default();
    let progress = Progress::new(json_out);
    let started = std::time::Instant::now();
    let mut per_seed: Vec<SeedReport> = Vec::new();
    for seed in first_seed..first_seed.saturating_add(seeds) {
        progress.status(&format!("seed {seed} ({} of {seeds})", per_seed.len() + 1));
        per_seed.push(run_seed(&config, seed));
    }
    progress.finish();
    let r = summarize(&config, &per_seed);
    let figures = json!({
        "seeds": r.seeds,
        "caught_within_jobs_p99_cheat10": r.caught_within_jobs_p99_cheat10,
        "caught_within_jobs_p99_cheat100": r.caught_within_jobs_p99_cheat100,
        "honest_slashed": r.honest_slashed,
        "check_overhead_ratio": r.check_overhead_ratio,
        "check_overhead_ratio_with_probation": r.check_overhead_ratio_with_probation,
        "cheat10_samples": r.cheat10_samples,
        "cheat10_caught_within_500": r.cheat10_caught_within_horizon,
        "cheat100_samples": r.cheat100_samples,
        "cheat100_caught_within_50": r.cheat100_caught_within_horizon,
        "runs": r.runs,
        "undecided_orders": r.undecided_orders,
        "first_seed": first_seed,
        "seconds": started.elapsed().as_secs_f64(),
        "build": build_kind(),
    });
    let out = out.unwrap_or_else(|| default_out("verification"));
    write_figures(&out, &figures)?;
    if json_out {
        println!("{figures}");
        return Ok(());
    }
    let never =
        |v: Option<u64>| v.map_or_else(|| "over the horizon".to_owned(), |n| format!("{n} runs"));
    println!(
        "verification, {} seeds from {first_seed}, {} runs ({} build):",
        r.seeds,
        r.runs,
        build_kind()
    );
    println!(
        "  cheating on 10% of runs   caught within {} (p99; {}/{} within 500)",
        never(r.caught_within_jobs_p99_cheat10),
        r.cheat10_caught_within_horizon,
        r.cheat10_samples
    );
    println!(
        "  cheating on every run     caught within {} (p99; {}/{} within 50)",
        never(r.caught_within_jobs_p99_cheat100),
        r.cheat100_caught_within_horizon,
        r.cheat100_samples
    );
    println!("  honest providers slashed  {}", r.honest_slashed);
    println!(
        "  checking cost             {:.2}% of compute past probation ({:.2}% with probation)",
        100.0 * r.check_overhead_ratio,
        100.0 * r.check_overhead_ratio_with_probation
    );
    println!("figures written to {}", out.display());
    Ok(())
}
