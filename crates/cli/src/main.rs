//! `gpunet`: one binary for the whole network — a dev network on one machine, jobs, wallets,
//! the market, and benchmarks. Thin over the library crates: argument parsing, output and
//! progress live here; every rule lives in `ledger`, `node`, `agent` and `runtime`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gpunet::{bench, commands, devnet, nodecmd, providercmd};

const ABOUT: &str = "gpunet — an open marketplace for GPU compute.

Start here:
  gpunet demo                         run a whole network in one process and one job through it
  gpunet dev                          keep a local network running (node + provider + funded wallet)
  gpunet job submit examples/jobs/hello.yaml --wait
                                      submit a job to it from another terminal";

#[derive(Parser)]
#[command(name = "gpunet", version, about = ABOUT, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a complete one-process network, submit the bundled example job, show its progress,
    /// output and bill, and exit.
    ///
    /// Example: gpunet demo --json
    Demo(DemoArgs),
    /// Start a local network (solo validator, embedded store, provider agent on this machine,
    /// funded tenant key) and keep it running. Restarted with the same --home, it carries on.
    /// With --validators N (N ≥ 2), N validator processes on Malachite instead of the solo one.
    ///
    /// Example: gpunet dev --home /tmp/gpunet --listen 127.0.0.1:8645
    ///
    /// Example: gpunet dev --validators 4 --home /tmp/gpunet-4
    Dev(DevArgs),
    /// Submit jobs and follow them: status, logs, outputs, cancel, list.
    #[command(subcommand)]
    Job(commands::JobCmd),
    /// Keys and money: new, show, balance, transfer.
    #[command(subcommand)]
    Wallet(commands::WalletCmd),
    /// What the market holds: providers and orders.
    #[command(subcommand)]
    Market(commands::MarketCmd),
    /// A network of validators on the Malachite BFT engine: init, start.
    #[command(subcommand)]
    Node(nodecmd::NodeCmd),
    /// Offer this machine's capacity to a network: run the provider agent.
    #[command(subcommand)]
    Provider(providercmd::ProviderCmd),
    /// Measure performance; figures are printed and written to a file.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Args)]
struct DemoArgs {
    /// Leave the network running after the job and print how to submit more.
    #[arg(long)]
    keep_running: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Job spec to run. Default: the bundled examples/jobs/hello.yaml.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 500)]
    block_ms: u64,
}

#[derive(Args)]
struct DevArgs {
    /// Data directory (store, keys, provider data). Default: $GPUNET_HOME or ~/.gpunet/dev.
    #[arg(long)]
    home: Option<PathBuf>,
    /// Address for the node API.
    #[arg(long, default_value = devnet::DEFAULT_DEV_LISTEN)]
    listen: SocketAddr,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 500)]
    block_ms: u64,
    /// Validators to run. 1: one process, solo ordering. N ≥ 2: N `gpunet node start`
    /// processes on Malachite under <home>/node-<i>/, validator i serving its API on the
    /// --listen port + i.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    validators: u16,
    /// With --validators N ≥ 2: validator i listens for consensus peers on this port + i.
    #[arg(long, default_value_t = 26_650)]
    p2p_port: u16,
}

/// Logs to stderr, filtered by `GPUNET_LOG` (`tracing` directives; `warn` when unset or when it
/// names no bare level). Malachite and libp2p log every vote at info and routine peer churn (a
/// peer restarting, the network stopping) at warn, so they get one level less than that base
/// level, unless `GPUNET_LOG` names them itself (`GPUNET_LOG=info,arc_malachitebft=info`).
/// Colours only on a terminal: `gpunet dev --validators N` sends each validator's stderr to a
/// file.
fn init_tracing() {
    use std::io::IsTerminal as _;
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    let spec = std::env::var("GPUNET_LOG").unwrap_or_default();
    let base = spec
        .split(',')
        .map(str::trim)
        // `""` would parse as `error`.
        .filter(|d| !d.is_empty())
        .filter_map(|d| d.parse::<LevelFilter>().ok())
        .next_back()
        .unwrap_or(LevelFilter::WARN);
    let quieter = match base.into_level() {
        Some(Level::TRACE) => LevelFilter::DEBUG,
        Some(Level::DEBUG) => LevelFilter::INFO,
        Some(Level::INFO) => LevelFilter::WARN,
        Some(Level::WARN) => LevelFilter::ERROR,
        Some(Level::ERROR) | None => LevelFilter::OFF,
    };
    // Later directives replace earlier ones for the same target, so `spec` has the last word.
    let filter = tracing_subscriber::EnvFilter::builder().parse_lossy(format!(
        "{base},arc_malachitebft={quieter},libp2p={quieter},{spec}"
    ));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Demo(a) => commands::demo(a.spec, a.keep_running, a.json, a.block_ms).await,
            Command::Dev(a) if a.validators > 1 => {
                commands::dev_validators(devnet::MultiDevOptions {
                    home: a.home.unwrap_or_else(devnet::default_home),
                    validators: usize::from(a.validators),
                    listen: a.listen,
                    p2p_port: a.p2p_port,
                    block_ms: a.block_ms,
                })
                .await
            }
            Command::Dev(a) => {
                commands::dev(
                    a.home.unwrap_or_else(devnet::default_home),
                    a.listen,
                    a.block_ms,
                )
                .await
            }
            Command::Job(c) => commands::job(c).await,
            Command::Wallet(c) => commands::wallet(c).await,
            Command::Market(c) => commands::market(c).await,
            Command::Node(c) => nodecmd::run(c).await,
            Command::Provider(c) => providercmd::run(c).await,
            Command::Bench(c) => bench::run(c).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
