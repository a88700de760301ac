//! `gpunet node`: create a network of validators on this machine and run one of them.
//!
//! `gpunet node init --validators 4 --out DIR` writes `DIR/node-<i>/` for each validator (the
//! shared genesis, its key, which validator it is), `DIR/keys/tenant.json`, a key funded at
//! genesis, and with `--providers N` funded provider keys `DIR/keys/provider-<i>.json`. `gpunet node start --home DIR/node-<i>` runs that validator on the Malachite BFT
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
    /// Write the homes of a network of validators (on this machine by default: 127.0.0.1,
    /// distinct ports; or on the hosts you name) and keys funded at genesis.
    ///
    /// Example: gpunet node init --validators 4 --out /tmp/gpunet-net
    ///
    /// Example: gpunet node init --validators 4 --hosts validator-0,validator-1,validator-2,validator-3 --providers 2 --out ./net
    Init(InitArgs),
    /// Run one validator (consensus, store, HTTP API) from its home until Ctrl-C.
    ///
    /// Example: gpunet node start --home /tmp/gpunet-net/node-0
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
pub struct InitArgs {
    /// How many validators. Four with equal power tolerate one failure.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Where validator i is reached: one IP address or DNS name per validator, comma-separated
    /// (e.g. container names on a private Docker network). Default: 127.0.0.1 for all.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Voting power of validator i, comma-separated. Default: 1 each. Blocks need the votes of
    /// more than two thirds of the total power; proposers take turns in proportion to power.
    #[arg(long, value_delimiter = ',')]
    pub powers: Vec<u64>,
    /// Also write this many provider keys, keys/provider-<i>.json, funded at genesis with
    /// 1,000 gpn (stake and fees) for `gpunet provider start`.
    #[arg(long, default_value_t = 0)]
    pub providers: usize,
    /// Directory to write `node-<i>/` and `keys/` into; must not hold a network already.
    #[arg(long)]
    pub out: PathBuf,
    /// The network's name, in every transaction it accepts (a transaction signed for another
    /// chain is refused).
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
    /// Set a network parameter at genesis, e.g. `--param liveness_timeout_blocks=60`
    /// (repeatable). The names and defaults are those `GET /v1/params` shows.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
}

/// The default parameters with `settings` (`name=value`) applied, checked together.
pub fn params_with(settings: &[String]) -> Result<Params> {
    let mut value = serde_json::to_value(Params::default())?;
    let map = value
        .as_object_mut()
        .context("parameters serialize as an object")?;
    for setting in settings {
        let (name, raw) = setting.split_once('=').with_context(|| {
            format!("--param {setting:?}: write NAME=VALUE, e.g. liveness_timeout_blocks=60")
        })?;
        let Some(slot) = map.get_mut(name) else {
            let mut names: Vec<&String> = map.keys().collect();
            names.sort();
            anyhow::bail!(
                "--param {name}: no such parameter; the parameters are {}",
                names
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        // Numbers stay numbers; amounts are decimal strings.
        *slot = match (&*slot, raw.parse::<u64>()) {
            (serde_json::Value::Number(_), Ok(n)) => serde_json::Value::from(n),
            (serde_json::Value::Number(_), Err(_)) => {
                anyhow::bail!("--param {name}={raw}: give a whole number")
            }
            _ => serde_json::Value::from(raw),
        };
    }
    let params: Params = serde_json::from_value(value).context("--param: a value does not fit")?;
    params
        .validate()
        .map_err(|why| anyhow::anyhow!("--param: {why}"))?;
    Ok(params)
}

#[derive(Args)]
pub struct StartArgs {
    /// The validator's home, as written by `gpunet node init`.
    #[arg(long)]
    pub home: PathBuf,
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
        NodeCmd::Start(a) => start(&a.home, a.fault).await,
        NodeCmd::Status { conn } => status(&conn).await,
    }
}

fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("small constants fit")
}

/// Path of the funded tenant key under an `init` output directory.
pub fn tenant_key_path(out: &Path) -> PathBuf {
    out.join("keys").join("tenant.json")
}

/// Path of funded provider key `i` under an `init` output directory.
pub fn provider_key_path(out: &Path, i: usize) -> PathBuf {
    out.join("keys").join(format!("provider-{i}.json"))
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

/// What `gpunet node init` writes, with `extra` accounts funded at genesis besides the tenant
/// (`gpunet dev --validators N` funds its provider this way). Returns the genesis and the
/// tenant key, saved to [`tenant_key_path`].
pub fn write_network(
    a: &InitArgs,
    extra: Vec<GenesisAccount>,
) -> Result<(gpunet_node::NetworkGenesis, KeyFile)> {
    anyhow::ensure!(a.validators >= 1, "--validators must be at least 1");
    let layout = layout(a)?;
    let providers: Vec<KeyFile> = (0..a.providers).map(|_| KeyFile::generate()).collect();
    let tenant = KeyFile::generate();
    let tenant_path = tenant_key_path(&a.out);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let ledger = Genesis {
        chain_id: a.chain_id.clone(),
        genesis_time_ms: now_ms,
        params: params_with(&a.params)?,
        accounts: std::iter::once(GenesisAccount {
            address: tenant.address(),
            balances: Balances {
                usd: units(1_000_000),
                gpn: units(1_000_000),
            },
        })
        .chain(providers.iter().map(|p| GenesisAccount {
            address: p.address(),
            balances: Balances {
                usd: Amount::ZERO,
                gpn: units(1_000),
            },
        }))
        .chain(extra)
        .collect(),
    };
    let keys: Vec<[u8; 32]> = (0..a.validators)
        .map(|_| gpunet_node::generate_validator_key())
        .collect();
    let genesis = gpunet_node::init_network_with(
        &a.out, ledger, &keys, &layout, a.p2p_port, a.api_port, a.block_ms,
    )
    .with_context(|| format!("writing the network under {}", a.out.display()))?;
    tenant
        .save_new(&tenant_path)
        .with_context(|| format!("writing {}", tenant_path.display()))?;
    for (i, p) in providers.iter().enumerate() {
        let path = provider_key_path(&a.out, i);
        p.save_new(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((genesis, tenant))
}

/// Each validator's host and power from `--hosts` and `--powers` (defaults: 127.0.0.1, 1).
fn layout(a: &InitArgs) -> Result<Vec<gpunet_node::ValidatorLayout>> {
    let n = a.validators;
    anyhow::ensure!(
        a.hosts.is_empty() || a.hosts.len() == n,
        "--hosts names {} hosts for {n} validators; give one per validator, comma-separated",
        a.hosts.len()
    );
    anyhow::ensure!(
        a.powers.is_empty() || a.powers.len() == n,
        "--powers gives {} powers for {n} validators; give one per validator, comma-separated",
        a.powers.len()
    );
    Ok((0..n)
        .map(|i| gpunet_node::ValidatorLayout {
            host: a
                .hosts
                .get(i)
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            voting_power: a.powers.get(i).copied().unwrap_or(1),
        })
        .collect())
}

async fn start(home: &Path, fault: Option<gpunet_node::Fault>) -> Result<()> {
    let v = gpunet_node::start_validator_with(home, fault)
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

#[cfg(test)]
mod params_tests {
    use super::*;

    #[test]
    fn genesis_params_are_set_by_name_and_checked_together() {
        let p = params_with(&["pause_grace_blocks=25".into(), "min_tx_fee=0.002".into()])
            .expect("valid settings");
        assert_eq!(p.pause_grace_blocks, 25);
        assert_eq!(p.min_tx_fee, Amount::from_micros(2_000));
        let err = |s: &str| params_with(&[s.to_owned()]).expect_err(s).to_string();
        assert!(
            err("no_such=1").contains("no such parameter"),
            "{}",
            err("no_such=1")
        );
        assert!(err("pause_grace_blocks").contains("NAME=VALUE"));
        assert!(err("pause_grace_blocks=soon").contains("whole number"));
        // Each alone is a number; together they break a rule.
        assert!(err("liveness_timeout_blocks=5").contains("liveness_timeout_blocks must exceed"));
    }
}
