//! gpunet's networks on one machine, as a library that the CLI (`gpunet dev`, `demo`, `node
//! init`) and the benchmarks (`gpunet-bench`) both use: neither depends on the other for it.
//!
//! [`DevNet`] is the one-process network behind `gpunet dev` and `gpunet demo`: a solo
//! validator with its embedded store, a provider agent on this machine, and a funded tenant
//! key, all under one home directory so a restart carries on where it stopped.
//! [`MultiDevNet`] is `gpunet dev --validators N`: validators as `gpunet node start` processes
//! ([`spawn_validators`]; the current executable must be `gpunet`), the agent in this process.
//! [`network`] writes a network's files as `gpunet node init` does; [`free_port_run`] finds
//! ports for one on this machine.
//!
//! Dev home layout: `genesis.json`, `chain.redb` (the node's store), `keys/tenant.json`,
//! `keys/provider.json`, `agent/` (the agent's data, with `agent/encryption.key`: the X25519
//! secret whose public key the agent registers and tenants seal manifests to), `api.json`
//! (where the running API is, so other `gpunet` commands find it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use gpunet_agent::{AgentConfig, AgentHandle, Retention};
use gpunet_client::KeyFile;
use gpunet_ledger::{Genesis, GenesisAccount, Params};
use gpunet_node::{MempoolLimits, NodeConfig, NodeHandle};
use gpunet_protocol::{Amount, Balances};
use serde::{Deserialize, Serialize};

pub mod network;

/// The bundled example job (`examples/jobs/hello.yaml`): what `gpunet demo` runs unless given a
/// spec, and the job `gpunet bench submit` and `bench runtime` time.
pub const HELLO_SPEC: &str = include_str!("../../../examples/jobs/hello.yaml");

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

/// Writes `<home>/api.json` for this process's dev network serving at `api`.
fn write_api_file(home: &Path, api: String) -> Result<()> {
    let api_file = ApiFile {
        api,
        tenant_key: tenant_key_path(home),
        pid: std::process::id(),
    };
    gpunet_files::write_private(
        &home.join("api.json"),
        &serde_json::to_vec_pretty(&api_file)?,
    )?;
    Ok(())
}

/// The default home: `$GPUNET_HOME`, else `~/.gpunet/dev`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("GPUNET_HOME") {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    base.join(".gpunet").join("dev")
}

/// The funded tenant key under a dev home, or under a network's directory (`gpunet node init
/// --out`): the same place in both.
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
    gpunet_files::write_private(&path, &serde_json::to_vec_pretty(&genesis)?)
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
        gpunet_files::create_private_dir_all(&home.join("keys"))
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
        let agent = gpunet_agent::start(start_agent_config(
            api.clone(),
            provider,
            tenant.address(),
            &home,
        ))
        .await
        .context("starting the provider agent")?;
        write_api_file(&home, api.clone())?;
        Ok(DevNet {
            home,
            node,
            agent,
            tenant,
            api,
        })
    }

    /// The runtimes the provider offers, e.g. `process, docker`, each unsandboxed one marked.
    pub fn runtimes_shown(&self) -> String {
        let unisolated = self.agent.unisolated_runtimes();
        let names: Vec<String> = self
            .agent
            .runtimes()
            .iter()
            .map(|r| {
                if unisolated.contains(r) {
                    format!(
                        "{} (no sandbox on this machine: this network's own tenant only)",
                        r.as_str()
                    )
                } else {
                    r.as_str().to_owned()
                }
            })
            .collect();
        names.join(", ")
    }

    /// Stops the agent, then the node; removes `api.json`.
    pub async fn stop(self) {
        let _ = std::fs::remove_file(self.home.join("api.json"));
        self.agent.shutdown().await;
        self.node.shutdown().await;
    }
}

/// Validator processes (`gpunet node start`) started by `gpunet dev --validators N`; every one
/// still running is killed when this is dropped, so an early return or a panic leaves none
/// behind.
pub struct ValidatorProcesses {
    children: Vec<std::process::Child>,
}

impl ValidatorProcesses {
    /// Asks each validator to stop (SIGTERM on Unix) and waits up to five seconds for it; kills
    /// any that does not.
    pub fn stop(&mut self) {
        #[cfg(unix)]
        for c in &self.children {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for c in &mut self.children {
            while std::time::Instant::now() < deadline {
                if !matches!(c.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        self.kill();
    }

    fn kill(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ValidatorProcesses {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `gpunet node start --home <net>/node-<i>` for each validator of the network under
/// `net` (this same executable), each logging to `node-<i>/node.log`, and waits until every
/// one answers `/v1/status`. Returns the processes and each validator's API URL.
pub async fn spawn_validators(
    net: &Path,
    genesis: &gpunet_node::NetworkGenesis,
    patience: std::time::Duration,
) -> Result<(ValidatorProcesses, Vec<String>)> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut procs = ValidatorProcesses {
        children: Vec::with_capacity(genesis.validators.len()),
    };
    let mut apis = Vec::with_capacity(genesis.validators.len());
    for (i, v) in genesis.validators.iter().enumerate() {
        let home = gpunet_node::validator_home(net, i);
        let log_path = home.join("node.log");
        let log = gpunet_files::open_private_append(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = std::process::Command::new(&exe);
        command
            .args(["node", "start", "--home"])
            .arg(&home)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        #[cfg(target_os = "linux")]
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting validator {i}"))?;
        procs.children.push(child);
        apis.push(format!("http://{}", v.api));
    }
    let deadline = std::time::Instant::now() + patience;
    for (i, api) in apis.iter().enumerate() {
        let client = gpunet_client::NodeClient::new(api);
        while client.status().await.is_err() {
            if let Ok(Some(status)) = procs.children[i].try_wait() {
                anyhow::bail!(
                    "validator {i} exited ({status}); see {}",
                    gpunet_node::validator_home(net, i)
                        .join("node.log")
                        .display()
                );
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "validator {i} did not answer at {api} within {} s; see {}",
                patience.as_secs(),
                gpunet_node::validator_home(net, i)
                    .join("node.log")
                    .display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    Ok((procs, apis))
}

/// Makes the child that `command` spawns get SIGTERM when this process dies, however it dies
/// (SIGKILL included), so no validator outlives `gpunet dev` holding its ports and home.
///
/// Linux sends the parent-death signal when the *thread* that spawned the child exits. The
/// validators are spawned from an async task, so from the thread in the runtime's `block_on` or
/// from a runtime worker, which both live as long as the process; never call this from a
/// `spawn_blocking` thread, which exits when idle.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = libc::pid_t::try_from(std::process::id()).expect("a pid fits in pid_t");
    // SAFETY: the closure runs in the forked child before `exec`, where only async-signal-safe
    // calls are sound: `prctl` and `getppid` are system calls, and both errors are built from an
    // errno without allocating. It captures only a `pid_t`.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died after the fork and before `prctl`; then no signal comes,
            // and the child has been handed to another process. Do not start.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// The dev network's agent: process jobs in the sandbox (the whole home — keys, chain, the
/// agent's data — hidden from them); where this machine allows no sandbox, process jobs of the
/// dev network's own tenant only. Containers may be granted the baseline capabilities.
fn start_agent_config(
    node_api: String,
    provider: KeyFile,
    tenant: gpunet_protocol::Address,
    home: &Path,
) -> AgentConfig {
    let protected = std::path::absolute(home).unwrap_or_else(|_| home.to_path_buf());
    AgentConfig {
        // The dev network's one tenant is its operator: its containers get what `docker run`
        // gives (less NET_RAW), so images that switch users, and converted SDL, run here.
        capabilities: gpunet_protocol::Capabilities::Baseline,
        node_api,
        key: provider,
        data_dir: home.join("agent"),
        listen: "127.0.0.1:0".parse().expect("a literal socket address"),
        public_endpoint: None,
        region: "local".to_owned(),
        rates: gpunet_protocol::Rates::default(),
        stake: units(100),
        // Docker is offered when the engine answers (the agent fingerprints each driver and
        // registers the usable ones); otherwise only processes.
        drivers: vec![
            Arc::new(gpunet_runtime::ProcessDriver::with_protected_paths(vec![
                protected,
            ])),
            Arc::new(gpunet_runtime::DockerDriver::new()),
        ],
        retention: Retention::default(),
        trusted_tenants: std::collections::BTreeSet::from([tenant]),
        // One store under the dev home, so a job's attempts on any dev provider share its
        // checkpoints (and `gpunet provider start --blob-store <home>/blobs` joins them).
        blob_store: match gpunet_blobs::LocalStore::open(&home.join("blobs")) {
            Ok(store) => Some(Arc::new(store) as Arc<dyn gpunet_blobs::BlobStore>),
            Err(error) => {
                tracing::warn!(%error, "no blob store for checkpoints");
                None
            }
        },
        exit_grace: gpunet_agent::DEFAULT_EXIT_GRACE,
        // A dev network is one machine: a job's bucket is typically a test server on it.
        allow_private_blob_endpoints: true,
        // Services stay on this machine's loopback.
        ingress: None,
    }
}

/// A base port with `n` consecutive free ports on 127.0.0.1 after it, all inside `within` and
/// none in `avoid`. The search starts at a place picked by this process's id, so tests running
/// side by side with distinct ranges, or the same range, rarely race for the same ports; it
/// wraps around once before giving up.
pub fn free_port_run(within: std::ops::Range<u16>, n: u16, avoid: &[u16]) -> Result<u16> {
    let span = within.end.saturating_sub(within.start).saturating_sub(n);
    anyhow::ensure!(
        n > 0 && span > 0,
        "no room for {n} ports in {}..{}",
        within.start,
        within.end
    );
    let steps = span / n;
    let first = u16::try_from(std::process::id() % u32::from(steps.max(1))).unwrap_or(0);
    for step in 0..=steps {
        let base = within.start + ((first + step) % steps.max(1)) * n;
        let free = (0..n).all(|i| {
            !avoid.contains(&(base + i))
                && std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()
        });
        if free {
            return Ok(base);
        }
    }
    anyhow::bail!(
        "no run of {n} free ports in {}..{}",
        within.start,
        within.end
    )
}

/// Waits until a provider has registered on the node `client` talks to (the dev network's
/// agent registers as it starts); gives up after 30 s.
pub async fn wait_for_provider(client: &gpunet_client::NodeClient) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        if !client
            .providers_page(Some(1), None)
            .await?
            .providers
            .is_empty()
        {
            return Ok(());
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            anyhow::bail!(
                "the provider agent did not register within 30 s; run with GPUNET_LOG=info to see why"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// How to run `gpunet dev --validators N` (N ≥ 2).
pub struct MultiDevOptions {
    pub home: PathBuf,
    pub validators: usize,
    /// Validator i serves its API on this port + i.
    pub listen: SocketAddr,
    /// Validator i listens for consensus peers on this port + i.
    pub p2p_port: u16,
    pub block_ms: u64,
}

/// A dev network of several validators, each its own `gpunet node start` process under
/// `<home>/node-<i>/`, with the provider agent (in this process) talking to validator 0.
pub struct MultiDevNet {
    pub home: PathBuf,
    pub validators: ValidatorProcesses,
    pub agent: AgentHandle,
    pub tenant: KeyFile,
    /// Every validator's API, in order.
    pub apis: Vec<String>,
}

impl MultiDevNet {
    /// Writes the network (as `gpunet node init` does, also funding the provider) unless
    /// `<home>/node-0` holds one already, then starts it.
    pub async fn start(opts: MultiDevOptions) -> Result<MultiDevNet> {
        let home = opts.home;
        anyhow::ensure!(
            opts.validators >= 2,
            "a multi-validator network needs 2 or more"
        );
        gpunet_files::create_private_dir_all(&home.join("keys"))
            .with_context(|| format!("creating {}", home.display()))?;
        let provider = load_or_create_key(&provider_key_path(&home))?;
        let existing = gpunet_node::validator_home(&home, 0).join(gpunet_node::GENESIS_FILE);
        let genesis: gpunet_node::NetworkGenesis = if existing.exists() {
            let text = std::fs::read_to_string(&existing)
                .with_context(|| format!("reading {}", existing.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a network genesis", existing.display()))?
        } else {
            anyhow::ensure!(
                opts.listen.port() != 0,
                "--listen needs a fixed port with --validators (validator i serves port + i)"
            );
            let args = crate::network::InitArgs {
                validators: opts.validators,
                out: home.clone(),
                chain_id: DEV_CHAIN_ID.to_owned(),
                p2p_port: opts.p2p_port,
                api_port: opts.listen.port(),
                block_ms: opts.block_ms,
                hosts: Vec::new(),
                powers: Vec::new(),
                providers: 0,
                params: Vec::new(),
            };
            let provider_account = GenesisAccount {
                address: provider.address(),
                balances: Balances {
                    usd: Amount::ZERO,
                    gpn: units(1_000),
                },
            };
            crate::network::write_network(&args, vec![provider_account])?.0
        };
        anyhow::ensure!(
            genesis.validators.len() == opts.validators,
            "{} holds a network of {} validators, not {}; pass --validators {} or another --home",
            home.display(),
            genesis.validators.len(),
            opts.validators,
            genesis.validators.len()
        );
        anyhow::ensure!(
            genesis
                .ledger
                .accounts
                .iter()
                .any(|a| a.address == provider.address()),
            "the network under {} does not fund the provider key {}",
            home.display(),
            provider_key_path(&home).display()
        );
        let tenant = KeyFile::load(&tenant_key_path(&home))?;
        let (validators, apis) =
            spawn_validators(&home, &genesis, std::time::Duration::from_secs(60)).await?;
        let agent = gpunet_agent::start(start_agent_config(
            apis[0].clone(),
            provider,
            tenant.address(),
            &home,
        ))
        .await
        .context("starting the provider agent")?;
        write_api_file(&home, apis[0].clone())?;
        Ok(MultiDevNet {
            home,
            validators,
            agent,
            tenant,
            apis,
        })
    }

    /// Stops the agent, then the validators; removes `api.json`.
    pub async fn stop(mut self) {
        let _ = std::fs::remove_file(self.home.join("api.json"));
        self.agent.shutdown().await;
        let mut v = std::mem::replace(
            &mut self.validators,
            ValidatorProcesses {
                children: Vec::new(),
            },
        );
        let _ = tokio::task::spawn_blocking(move || v.stop()).await;
    }
}
