//! `gpunet node`: create a network of validators on this machine and run one of them.
//!
//! `gpunet node init --validators 4 --out DIR` writes `DIR/node-<i>/` for each validator (the
//! shared genesis, its key, which validator it is), `DIR/keys/tenant.json`, a key funded at
//! genesis, and with `--providers N` funded provider keys `DIR/keys/provider-<i>.json` (written
//! by `gpunet_devnet::network`, which also defines these flags). `gpunet node start --home
//! DIR/node-<i>` runs that validator on the Malachite BFT engine with its HTTP API until Ctrl-C
//! or SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use gpunet_devnet::network::{InitArgs, provider_key_path, tenant_key_path, write_network};

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Write the homes of a network of validators (on this machine by default: 127.0.0.1,
    /// distinct ports; or on the hosts you name) and keys funded at genesis.
    ///
    /// Example: gpunet node init --validators 4 --out /tmp/gpunet-net
    ///
    /// Example: gpunet node init --validators 4 --hosts validator-0,validator-1,validator-2,validator-3 --providers 2 --out ./net
    Init(InitArgs),
    /// Run one validator (consensus, store, HTTP API) from its home until Ctrl-C.
    ///
    /// A validator joining late can start from a peer's recent state (--state-sync) instead of
    /// replaying every block since genesis.
    ///
    /// Example: gpunet node start --home /tmp/gpunet-net/node-0
    ///
    /// Example: gpunet node start --home /tmp/gpunet-net/node-4 --state-sync
    Start(StartArgs),
    /// Show what a node reports: chain, height, state root, orderer, mempool.
    ///
    /// Example: gpunet node status --api http://127.0.0.1:8651 --json
    Status {
        #[command(flatten)]
        conn: crate::Conn,
    },
}

#[derive(Args)]
pub struct StartArgs {
    /// The validator's home, as written by `gpunet node init`.
    #[arg(long)]
    pub home: PathBuf,
    /// If the home holds no chain yet, first fetch a recent state from the other validators
    /// (their APIs, from the genesis file): the state is checked, chunk by chunk, against the
    /// state root of a block the validators signed, then consensus starts at the next height
    /// and catches up from there. The node keeps no blocks from before that height. A home
    /// that holds a chain starts from it as usual.
    #[arg(long)]
    pub state_sync: bool,
    /// Misbehave on purpose, for tests of the network's defences (`invalid-proposals`: every
    /// block this validator proposes carries a forged transfer). Never on a real network.
    #[arg(long, hide = true, value_parser = parse_fault)]
    pub fault: Option<gpunet_node::Fault>,
}

fn parse_fault(s: &str) -> Result<gpunet_node::Fault, String> {
    match s {
        "invalid-proposals" => Ok(gpunet_node::Fault::InvalidProposals),
        other => Err(format!(
            "unknown fault {other:?}; the one fault is invalid-proposals"
        )),
    }
}

pub async fn run(cmd: NodeCmd) -> Result<()> {
    match cmd {
        NodeCmd::Init(a) => init(&a),
        NodeCmd::Start(a) => start(&a).await,
        NodeCmd::Status { conn } => status(&conn).await,
    }
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
    for i in 0..a.providers {
        println!(
            "funded provider key: {}",
            provider_key_path(&a.out, i).display()
        );
    }
    Ok(())
}

async fn start(a: &StartArgs) -> Result<()> {
    let home = &a.home;
    if a.state_sync {
        eprintln!("syncing state from the other validators (see the log for progress)…");
    }
    let v = gpunet_node::start_validator_with(home, a.fault, a.state_sync)
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

async fn status(conn: &crate::Conn) -> Result<()> {
    let api = crate::running::target(conn)?.api;
    let s = gpunet_client::NodeClient::new(&api)
        .status()
        .await
        .with_context(|| format!("asking {api} for its status; is the node running there?"))?;
    if conn.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "{api}: chain {} height {} state root {} ({} orderer, {} txs waiting)",
            s.chain_id, s.height, s.state_root, s.orderer, s.mempool_size
        );
    }
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
