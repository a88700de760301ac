//! `gpunet`: one binary for the whole network — a dev network on one machine, jobs, wallets,
//! the market, and benchmarks. Thin over the library crates: argument parsing, output and
//! progress live here; every rule lives in `ledger`, `node`, `agent` and `runtime`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gpunet::outcome::{EXIT_ERROR, ExitWith};
use gpunet::{bench, commands, nodecmd, providercmd};
use gpunet_devnet as devnet;

const ABOUT: &str = "gpunet — an open marketplace for GPU compute.

Start here:
  gpunet demo                         run a whole network in one process and one job through it
  gpunet dev                          keep a local network running (node + provider + funded wallet)
  gpunet job submit examples/jobs/hello.yaml --wait
                                      submit a job to it from another terminal";

const AFTER_HELP: &str = "Which network: --api URL (GPUNET_API) names a node; --home DIR \
(GPUNET_HOME) names a running `gpunet dev` by its data directory; with neither, the one \
`gpunet dev` running for this user is used (several are listed, not guessed). --key PATH \
(GPUNET_KEY) picks the signing key; by default the dev network's funded tenant key.

Exit codes of `job submit --wait`, `job wait`, `job follow` and `demo`: 0 the job completed \
with exit code 0; 1 gpunet itself failed (arguments, spec, network); 2 the job's command exited \
nonzero; 3 a limit or the provider ended it (timed_out, out_of_memory, disk_exceeded, \
insufficient_funds, provider_lost once no retry is left, …); 4 cancelled; 5 never ran (the order expired); 130 interrupted by Ctrl-C. \
Every other command: 0 done, 1 failed.";

#[derive(Parser)]
#[command(name = "gpunet", version, about = ABOUT, long_about = None, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a complete one-process network, submit the bundled example job, show its progress,
    /// output and bill, and exit; with the exit code of `job submit --wait`.
    ///
    /// Example: gpunet demo --json
    #[command(after_help = commands::EXIT_CODES_HELP)]
    Demo(DemoArgs),
    /// Start a local network (solo validator, embedded store, provider agent on this machine,
    /// funded tenant key) and keep it running. Restarted with the same --home, it carries on.
    /// With --validators N (N ≥ 2), N validator processes on Malachite instead of the solo one.
    ///
    /// While it runs it is recorded in $XDG_RUNTIME_DIR/gpunet/dev/ (or ~/.gpunet/running/),
    /// so other gpunet commands find it from any directory; it prints the `export` lines that
    /// name it when several run.
    ///
    /// Example: gpunet dev --home /tmp/gpunet --listen 127.0.0.1:8645
    ///
    /// Example: gpunet dev --validators 4 --home /tmp/gpunet-4
    Dev(DevArgs),
    /// Submit jobs and follow them: wait, follow, status, logs, outputs, cancel, list.
    #[command(subcommand)]
    Job(commands::JobCmd),
    /// Keys and money: new, show, balance, history, transfer.
    #[command(subcommand)]
    Wallet(commands::WalletCmd),
    /// What the market holds: providers and orders.
    #[command(subcommand)]
    Market(commands::MarketCmd),
    /// A network of validators on the Malachite BFT engine: init, start.
    #[command(subcommand)]
    Node(nodecmd::NodeCmd),
    /// Offer this machine's capacity to a network (run the provider agent), or leave it.
    #[command(subcommand)]
    Provider(providercmd::ProviderCmd),
    /// Measure performance; figures are printed and written to a file.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Akash SDL deployments: convert one to a gpunet job spec (`job submit --from-sdl` submits
    /// it).
    #[command(subcommand)]
    Sdl(commands::SdlCmd),
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
    #[arg(long, value_name = "SPEC.yaml")]
    spec: Option<PathBuf>,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 500)]
    block_ms: u64,
}

#[derive(Args)]
struct DevArgs {
    /// Data directory (store, keys, provider data). Default: $GPUNET_HOME or ~/.gpunet/dev.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Address for the node API (port 0: any free port, printed at start).
    #[arg(long, default_value = devnet::DEFAULT_DEV_LISTEN, value_name = "IP:PORT")]
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

/// Logs to stderr, filtered by `GPUNET_LOG` (see [`log_filter`]). Colours only on a terminal:
/// `gpunet dev --validators N` sends each validator's stderr to a file.
fn init_tracing() {
    use std::io::IsTerminal as _;

    let spec = std::env::var("GPUNET_LOG").unwrap_or_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::builder().parse_lossy(log_filter(&spec)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The filter for `GPUNET_LOG`'s `spec` (`tracing` directives; `warn` when unset or when it
/// names no bare level). Malachite and libp2p log every vote at info and routine peer churn (a
/// peer restarting, the network stopping) at warn, so they get one level less than that base
/// level; Malachite's network and discovery log each failed dial of a peer that is not up yet
/// as an error (a dozen lines a second while a validator waits for the others), so they get
/// two levels less. `GPUNET_LOG` naming them itself has the last word
/// (`GPUNET_LOG=info,arc_malachitebft=info`).
fn log_filter(spec: &str) -> String {
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    let quieter = |level: LevelFilter| match level.into_level() {
        Some(Level::TRACE) => LevelFilter::DEBUG,
        Some(Level::DEBUG) => LevelFilter::INFO,
        Some(Level::INFO) => LevelFilter::WARN,
        Some(Level::WARN) => LevelFilter::ERROR,
        Some(Level::ERROR) | None => LevelFilter::OFF,
    };
    let base = spec
        .split(',')
        .map(str::trim)
        // `""` would parse as `error`.
        .filter(|d| !d.is_empty())
        .filter_map(|d| d.parse::<LevelFilter>().ok())
        .next_back()
        .unwrap_or(LevelFilter::WARN);
    let one = quieter(base);
    let two = quieter(one);
    // Later directives replace earlier ones for the same target (the more specific target
    // wins over its prefix), so `spec` has the last word.
    format!(
        "{base},arc_malachitebft={one},libp2p={one},arc_malachitebft_network={two},\
         arc_malachitebft_discovery={two},{spec}"
    )
}

/// A closed stdout (`gpunet job list | head -1`) ends gpunet quietly, as it ends `cat`: `print!`
/// panics on EPIPE, and this hook turns that one panic into exit status 141 (128 + SIGPIPE, what
/// a shell reports for a program killed by a broken pipe) without a message.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    // Usage errors exit 1, not clap's 2: 2 means "the job's command failed" (see AFTER_HELP).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
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
            Command::Sdl(c) => commands::sdl(c),
            Command::Wallet(c) => commands::wallet(c).await,
            Command::Market(c) => commands::market(c).await,
            Command::Node(c) => nodecmd::run(c).await,
            Command::Provider(c) => providercmd::run(c).await,
            Command::Bench(c) => bench::run(c).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The command has already said how the job ended.
        Err(e) if e.downcast_ref::<ExitWith>().is_some() => {
            ExitCode::from(e.downcast_ref::<ExitWith>().map_or(EXIT_ERROR, |x| x.0))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument a person can pass says what it is, and every command that does something
    /// shows an example.
    #[test]
    fn every_argument_has_help_and_every_command_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: argument {id} has no help"));
                }
            }
            let leaves = cmd.get_subcommands().filter(|c| c.get_name() != "help");
            let mut any = false;
            for sub in leaves {
                any = true;
                walk(sub, &path, missing);
            }
            let about = cmd
                .get_long_about()
                .or(cmd.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            if !any && !about.contains("Example: gpunet") {
                missing.push(format!("{path}: no example in its help"));
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn a_dial_error_storm_is_hidden_at_the_default_level_and_gpunet_log_can_show_it() {
        let default = log_filter("");
        assert!(
            default.contains("arc_malachitebft_network=off"),
            "{default}"
        );
        assert!(default.starts_with("warn,"), "{default}");
        let asked = log_filter("info,arc_malachitebft_network=debug");
        assert!(
            asked.ends_with("arc_malachitebft_network=debug"),
            "the user's directive comes last: {asked}"
        );
        assert!(asked.contains("arc_malachitebft_network=error,"), "{asked}");
    }
}
