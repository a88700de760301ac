//! `gpunet node`: create a network of validators on this machine and run one of them.
//!
//! `gpunet node init --validators 4 --out DIR` writes `DIR/node-<i>/` for each validator (the
//! shared genesis, its key, which validator it is) and `DIR/keys/tenant.json`, a key funded at
//! genesis. `gpunet node start --home DIR/node-<i>` runs that validator on the Malachite BFT
//! engine with its HTTP API until Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use gpunet_client::KeyFile;
use gpunet_ledger::{Genesis, GenesisAccount, Params};
use gpunet_protocol::{Amount, Balances};

/// Chain id of networks made by `gpunet node init` unless told otherwise.
pub const DEFAULT_NETWORK_CHAIN_ID: &str = "gpunet-local";

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Write the homes of a network of validators on this machine (127.0.0.1, distinct ports)
    /// and a tenant key funded at genesis.
    ///
    /// Example: gpunet node init --validators 4 --out /tmp/gpunet-net
    Init(InitArgs),
    /// Run one validator (consensus, store, HTTP API) from its home until Ctrl-C.
    ///
    /// Example: gpunet node start --home /tmp/gpunet-net/node-0
    Start(StartArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// How many validators; each votes with power 1. Four tolerate one failure.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Directory to write `node-<i>/` and `keys/` into; must not hold a network already.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = DEFAULT_NETWORK_CHAIN_ID)]
    pub chain_id: String,
    /// Validator i listens for peers on this port + i.
    #[arg(long, default_value_t = 26_650)]
    pub p2p_port: u16,
    /// Validator i serves its HTTP API on this port + i.
    #[arg(long, default_value_t = 8_650)]
    pub api_port: u16,
    /// Least milliseconds between blocks.
    #[arg(long, default_value_t = 500)]
    pub block_ms: u64,
}

#[derive(Args)]
pub struct StartArgs {
    /// The validator's home, as written by `gpunet node init`.
    #[arg(long)]
    pub home: PathBuf,
}

pub async fn run(cmd: NodeCmd) -> Result<()> {
    match cmd {
        NodeCmd::Init(a) => init(&a),
        NodeCmd::Start(a) => start(&a.home).await,
    }
}

fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("small constants fit")
}

/// Path of the funded tenant key under an `init` output directory.
pub fn tenant_key_path(out: &Path) -> PathBuf {
    out.join("keys").join("tenant.json")
}

fn init(a: &InitArgs) -> Result<()> {
    let (genesis, tenant) = write_network(a, Vec::new())?;
    let tenant_path = tenant_key_path(&a.out);
    println!(
        "network {} with {} validators under {}",
        a.chain_id,
        a.validators,
        a.out.display()
    );
    for (i, v) in genesis.validators.iter().enumerate() {
        println!(
            "  gpunet node start --home {}    # api http://{}  p2p {}",
            gpunet_node::validator_home(&a.out, i).display(),
            v.api,
            v.p2p
        );
    }
    println!(
        "funded tenant key: {} ({})",
        tenant_path.display(),
        tenant.address()
    );
    Ok(())
}

/// What `gpunet node init` writes, with `extra` accounts funded at genesis besides the tenant
/// (`gpunet dev --validators N` funds its provider this way). Returns the genesis and the
/// tenant key, saved to [`tenant_key_path`].
pub fn write_network(
    a: &InitArgs,
    extra: Vec<GenesisAccount>,
) -> Result<(gpunet_node::NetworkGenesis, KeyFile)> {
    anyhow::ensure!(a.validators >= 1, "--validators must be at least 1");
    let tenant = KeyFile::generate();
    let tenant_path = tenant_key_path(&a.out);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let ledger = Genesis {
        chain_id: a.chain_id.clone(),
        genesis_time_ms: now_ms,
        params: Params::default(),
        accounts: std::iter::once(GenesisAccount {
            address: tenant.address(),
            balances: Balances {
                usd: units(1_000_000),
                gpn: units(1_000_000),
            },
        })
        .chain(extra)
        .collect(),
    };
    let keys: Vec<[u8; 32]> = (0..a.validators)
        .map(|_| gpunet_node::generate_validator_key())
        .collect();
    let genesis =
        gpunet_node::init_network(&a.out, ledger, &keys, a.p2p_port, a.api_port, a.block_ms)
            .with_context(|| format!("writing the network under {}", a.out.display()))?;
    tenant
        .save_new(&tenant_path)
        .with_context(|| format!("writing {}", tenant_path.display()))?;
    Ok((genesis, tenant))
}

async fn start(home: &Path) -> Result<()> {
    let v = gpunet_node::start_validator(home)
        .await
        .with_context(|| format!("starting the validator in {}", home.display()))?;
    let me = &v.genesis.validators[v.index];
    println!(
        "validator {} of chain {} running: api http://{}  p2p {}",
        me.name,
        v.genesis.ledger.chain_id,
        v.node.api_addr(),
        me.p2p
    );
    wait_for_stop().await;
    v.shutdown().await;
    Ok(())
}

/// Ctrl-C or, on Unix, SIGTERM (what process supervisors and tests send).
pub async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
