//! The one-process network behind `gpunet dev` and `gpunet demo`: a solo validator with its
//! embedded store, a provider agent on this machine, and a funded tenant key, all under one
//! home directory so a restart carries on where it stopped.
//!
//! Home layout: `genesis.json`, `chain.redb` (the node's store), `keys/tenant.json`,
//! `keys/provider.json`, `agent/` (the agent's data, with `agent/encryption.key`: the X25519
//! secret whose public key the agent registers and tenants seal manifests to), `api.json`
//! (where the running API is, so other `gpunet` commands find it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use gpunet_agent::{AgentConfig, AgentHandle, Pricing, Retention};
use gpunet_client::KeyFile;
use gpunet_ledger::{Genesis, GenesisAccount, Params};
use gpunet_node::{MempoolLimits, NodeConfig, NodeHandle};
use gpunet_protocol::{Amount, Balances};
use serde::{Deserialize, Serialize};

/// Chain id of every dev network.
pub const DEV_CHAIN_ID: &str = "gpunet-dev";
/// Where `gpunet dev` listens unless told otherwise.
pub const DEFAULT_DEV_LISTEN: &str = "127.0.0.1:8645";

/// Written to `<home>/api.json` while a dev network runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiFile {
    pub api: String,
    pub tenant_key: PathBuf,
    pub pid: u32,
}

/// The default home: `$GPUNET_HOME`, else `~/.gpunet/dev`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("GPUNET_HOME") {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    base.join(".gpunet").join("dev")
}

pub fn tenant_key_path(home: &Path) -> PathBuf {
    home.join("keys").join("tenant.json")
}

fn provider_key_path(home: &Path) -> PathBuf {
    home.join("keys").join("provider.json")
}

fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("small constants fit")
}

fn load_or_create_key(path: &Path) -> Result<KeyFile> {
    if path.exists() {
        return Ok(KeyFile::load(path)?);
    }
    let k = KeyFile::generate();
    k.save_new(path)?;
    Ok(k)
}

/// Loads `<home>/genesis.json`, or writes a new one funding the tenant and the provider.
fn load_or_create_genesis(home: &Path, tenant: &KeyFile, provider: &KeyFile) -> Result<Genesis> {
    let path = home.join("genesis.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a gpunet genesis", path.display()));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let genesis = Genesis {
        chain_id: DEV_CHAIN_ID.to_owned(),
        genesis_time_ms: now_ms,
        params: Params::default(),
        accounts: vec![
            GenesisAccount {
                address: tenant.address(),
                balances: Balances {
                    usd: units(1_000),
                    gpn: units(100),
                },
            },
            GenesisAccount {
                address: provider.address(),
                balances: Balances {
                    usd: Amount::ZERO,
                    gpn: units(1_000),
                },
            },
        ],
    };
    std::fs::write(&path, serde_json::to_vec_pretty(&genesis)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(genesis)
}

/// A running dev network.
pub struct DevNet {
    pub home: PathBuf,
    pub node: NodeHandle,
    pub agent: AgentHandle,
    pub tenant: KeyFile,
    pub api: String,
}

pub struct DevOptions {
    pub home: PathBuf,
    pub listen: SocketAddr,
    pub block_ms: u64,
}

impl DevNet {
    /// Starts (or resumes) the network under `opts.home`.
    pub async fn start(opts: DevOptions) -> Result<DevNet> {
        let home = opts.home;
        std::fs::create_dir_all(home.join("keys"))
            .with_context(|| format!("creating {}", home.display()))?;
        let tenant = load_or_create_key(&tenant_key_path(&home))?;
        let provider = load_or_create_key(&provider_key_path(&home))?;
        let genesis = load_or_create_genesis(&home, &tenant, &provider)?;
        let node = gpunet_node::start(NodeConfig {
            home: home.clone(),
            listen: opts.listen,
            block_ms: opts.block_ms,
            genesis,
            mempool: MempoolLimits::default(),
        })
        .await
        .context("starting the validator")?;
        let api = format!("http://{}", node.api_addr());
        let agent = gpunet_agent::start(AgentConfig {
            node_api: api.clone(),
            key: provider,
            data_dir: home.join("agent"),
            listen: "127.0.0.1:0".parse().expect("a literal socket address"),
            public_endpoint: None,
            region: "local".to_owned(),
            pricing: Pricing::default(),
            stake: units(100),
            // Docker is offered when the engine answers (the agent fingerprints each driver and
            // registers the usable ones); otherwise only processes.
            drivers: vec![
                Arc::new(gpunet_runtime::ProcessDriver::new()),
                Arc::new(gpunet_runtime::DockerDriver::new()),
            ],
            retention: Retention::default(),
        })
        .await
        .context("starting the provider agent")?;
        let api_file = ApiFile {
            api: api.clone(),
            tenant_key: tenant_key_path(&home),
            pid: std::process::id(),
        };
        std::fs::write(home.join("api.json"), serde_json::to_vec_pretty(&api_file)?)?;
        Ok(DevNet {
            home,
            node,
            agent,
            tenant,
            api,
        })
    }

    /// The runtimes the provider offers, e.g. `process, docker`.
    pub fn runtimes_shown(&self) -> String {
        let names: Vec<&str> = self.agent.runtimes().iter().map(|r| r.as_str()).collect();
        names.join(", ")
    }

    /// Stops the agent, then the node; removes `api.json`.
    pub async fn stop(self) {
        let _ = std::fs::remove_file(self.home.join("api.json"));
        self.agent.shutdown().await;
        self.node.shutdown().await;
    }
}
