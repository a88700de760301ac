//! The `gpunet` command line as a library, so integration tests can drive the same code the
//! binary runs: job submission and following (`jobs`), the subcommands (`commands`), how a
//! followed job ended (`outcome`), finding the running dev network (`running`), prices and
//! feasibility before submitting (`quote`), the `gpunet bench` commands (`bench`, `statebench`)
//! and progress display (`progress`).
//! Thin over the other crates: every rule lives in `ledger`, `node`, `agent` and `runtime`; the
//! dev network is assembled by `gpunet-devnet`, and benchmarks measure in `gpunet-bench`.

pub mod bench;
pub mod commands;
pub mod jobs;
pub mod nodecmd;
pub mod outcome;
pub mod progress;
pub mod providercmd;
pub mod quote;
pub mod running;
pub mod shell;
pub mod statebench;

use std::path::PathBuf;

use clap::Args;

/// Where to reach a node and which key signs. With none of `--api`, `--home` and their
/// environment variables, the one running `gpunet dev` is used (see `running`).
#[derive(Args, Clone, Debug, Default)]
pub struct Conn {
    /// Node API URL, e.g. http://127.0.0.1:8645. Default: the running `gpunet dev` (the only
    /// one, or the one --home names).
    #[arg(long, env = "GPUNET_API", global = true, value_name = "URL")]
    pub api: Option<String>,
    /// Home of the `gpunet dev` to talk to (what its --home was; it prints this). Needed when
    /// several dev networks run at once.
    #[arg(long, env = "GPUNET_HOME", global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Key file that signs transactions and requests. Default: the dev network's funded
    /// tenant key.
    #[arg(long, env = "GPUNET_KEY", global = true, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}
