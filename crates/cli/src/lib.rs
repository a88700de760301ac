//! The `gpunet` command line as a library, so integration tests can drive the same code the
//! binary runs: the dev network (`devnet`), job submission and following (`jobs`), the
//! subcommands (`commands`), benchmarks (`bench`), prices and
//! feasibility before submitting (`quote`) and progress display (`progress`).
//! Thin over the other crates: every rule lives in `ledger`, `node`, `agent` and `runtime`.

pub mod bench;
pub mod commands;
pub mod devnet;
pub mod jobs;
pub mod nodecmd;
pub mod progress;
pub mod providercmd;
pub mod quote;

use std::path::PathBuf;

use clap::Args;

/// Where to reach a node and which key signs.
#[derive(Args, Clone, Debug, Default)]
pub struct Conn {
    /// Node API URL. Default: the running `gpunet dev` (from ~/.gpunet/dev/api.json), else http://127.0.0.1:8645.
    #[arg(long, env = "GPUNET_API", global = true)]
    pub api: Option<String>,
    /// Key file that signs transactions and requests. Default: the dev network's funded tenant key.
    #[arg(long, env = "GPUNET_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}
