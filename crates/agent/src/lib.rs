//! `gpunet-agent`: the provider daemon. It discovers the machine, registers it as a provider
//! (or updates its profile), bids on open orders it can run, takes each lease's manifest from
//! its tenant over HTTP, runs the workload with a [`Driver`], and reports the start and the
//! result on chain.
//!
//! The shape is a pure core in a thin shell: [`bidding`] decides what to bid (no I/O; the
//! price is what the profile's posted [`Rates`] give, the rule the ledger checks bids by),
//! [`lifecycle`] decides what happens to a lease next (the pure [`lifecycle::step`]: a phase
//! and an input in, the new phase and the effects out), [`machine`] turns discovery into an
//! offer, [`outputs`] keeps results, [`tenant_store`] builds the store a job names (behind the
//! endpoint guard); the shell is [`leases`] (the lifecycle's runner: it feeds
//! inputs and carries effects out), [`server`] (the tenant-facing API), [`heartbeat`] (proof of
//! life for every running lease), [`reveals`] (the digests behind verified runs' tags, when the
//! ledger asks), [`challenge`] (the answers to hardware challenges, computed on the CPU),
//! [`ingress`] (where services are reached from outside, and the reverse proxy that serves
//! them by name) and the reconcile loop. It waits for its node at start (up to
//! [`NODE_PATIENCE`]), and refuses to list GPUs that the network's bands challenge, which it
//! cannot yet prove.
//!
//! A provider leaves with `AnnounceExit` on chain (`gpunet provider leave`): the agent stops
//! bidding, gives each workload SIGTERM and [`AgentConfig::exit_grace`] to end, keeps its last
//! checkpoint, releases each lease (`ReleaseLease`: not a failure; the job is retried on
//! another provider from that checkpoint), deregisters once it holds none, and
//! [`AgentHandle::departed`] completes.
//!
//! Architecture Invariant: the agent never decides money. It offers prices; the ledger checks
//! every bid, start and result again.

pub mod bidding;
pub mod chain;
pub mod challenge;
pub mod checkpoints;
pub mod drivers;
pub mod health;
pub mod heartbeat;
pub mod ingress;
pub mod leases;
pub mod lifecycle;
pub mod machine;
pub mod outputs;
pub mod policy;
mod reconcile;
pub mod record;
pub mod reveals;
pub mod server;
pub mod shell;
pub mod tenant_store;
pub mod verdicts;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gpunet_client::{ClientError, KeyError, KeyFile, NodeClient};
use gpunet_protocol::{
    Address, Amount, Capabilities, Msg, ProviderProfile, Rates, Rejection, Runtime, ShapeError,
};
use gpunet_runtime::{Driver, DriverError};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use bidding::{NoBid, Offer, free_capacity, plan_bid, plan_bid_on_terms};
pub use chain::{Chain, ChainError, NodeChain};
pub use drivers::Drivers;
pub use leases::{DEFAULT_EXIT_GRACE, Leases, LeasesConfig, MANIFEST_TIMEOUT, Retention};
pub use policy::TenantPolicy;

/// How long registering or updating the provider may take to be included.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a starting agent waits for its node to answer at all (a node started beside it
/// may still be opening its store) before it gives up and says which node it could not reach.
pub const NODE_PATIENCE: Duration = Duration::from_secs(120);
/// How often a starting agent asks an unreachable node again.
const NODE_RETRY: Duration = Duration::from_millis(500);
/// How long shutdown waits for the HTTP server to finish its requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The agent's X25519 secret, under its data directory; its public key is registered on chain.
pub const ENCRYPTION_KEY_FILE: &str = "encryption.key";

/// Everything the agent needs to run.
pub struct AgentConfig {
    /// The node's API, e.g. `http://127.0.0.1:8645`.
    pub node_api: String,
    /// The provider's account key.
    pub key: KeyFile,
    /// Where leases, their logs and outputs, blobs and the encryption secret
    /// ([`ENCRYPTION_KEY_FILE`], created on first start) live.
    pub data_dir: PathBuf,
    /// Where the agent's HTTP server listens (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// The endpoint registered on chain; default `http://<bound address>`.
    pub public_endpoint: Option<String>,
    /// Region registered on chain, e.g. `local`.
    pub region: String,
    /// The rates posted in the provider's profile; the agent bids what they give for an order
    /// (and the ledger refuses a bid above that).
    pub rates: Rates,
    /// Stake locked at registration (gpn).
    pub stake: Amount,
    /// The drivers to offer, e.g. process and docker. Each is fingerprinted at start; the
    /// usable ones are registered as the provider's runtimes, the others logged and left out.
    pub drivers: Vec<Arc<dyn Driver>>,
    /// How long ended leases' logs, records and outputs are kept.
    pub retention: Retention,
    /// Accounts whose jobs may run on a driver that cannot isolate them (the process runtime
    /// where no sandbox can be had): the operator's own. Nobody else's job ever does.
    pub trusted_tenants: BTreeSet<Address>,
    /// Where jobs' checkpoints are kept, shared with the providers that may run the next
    /// attempt of a job (`gpunet provider start --blob-store DIR`). `None`: checkpoints are
    /// neither uploaded nor restored.
    pub blob_store: Option<Arc<dyn gpunet_blobs::BlobStore>>,
    /// When this provider leaves, how long each workload gets between SIGTERM and SIGKILL to
    /// finish (and write a last checkpoint): [`DEFAULT_EXIT_GRACE`] by default.
    pub exit_grace: Duration,
    /// Let a job's own store (its spec's `storage:`) be reached over `http://` or at a
    /// private, loopback or link-local address (`--allow-private-blob-endpoints`): for test
    /// networks only. Off, a tenant cannot point the agent at its operator's network.
    pub allow_private_blob_endpoints: bool,
    /// Where services are reached from outside (`--public-address`, `--ingress-domain`; see
    /// [`ingress`]). `None`: on this machine's loopback only. The Docker driver must publish
    /// on an address clients reach (`gpunet_runtime::Publish`): the CLI builds both from the
    /// same flags.
    pub ingress: Option<ingress::IngressConfig>,
    /// The most a container may be granted (`--allow-capabilities`, ADR 0013):
    /// [`Capabilities::None`] unless the operator allows more. Registered in the profile (when
    /// the Docker runtime is offered), so only jobs asking for at most this much match here.
    pub capabilities: Capabilities,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot use the data directory {path:?}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use the encryption key: {source}")]
    EncryptionKey {
        #[source]
        source: KeyError,
    },
    #[error("the {driver} driver cannot run workloads here: {source}")]
    Driver {
        driver: &'static str,
        #[source]
        source: DriverError,
    },
    #[error("the {driver} driver offers no runtime the protocol knows")]
    UnknownRuntime { driver: &'static str },
    #[error("no driver was configured: give at least the process driver")]
    NoDriver,
    #[error("the ingress settings are not usable: {why}")]
    Ingress { why: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the provider profile is not acceptable: {source}")]
    Profile {
        #[source]
        source: ShapeError,
    },
    #[error(transparent)]
    Record(#[from] record::RecordError),
    #[error(
        "this network challenges the hardware of {families} listings (challenge_bands in \
         /v1/params), and this agent answers challenges on the CPU only, which cannot meet a \
         GPU's deadline: each challenge would fail and cost stake. Run GPUs on a network without \
         GPU bands until the GPU prover lands (issue 12)",
        families = families.join(", ")
    )]
    NoGpuProver { families: Vec<String> },
    #[error("cannot {action} with the node at {node}: {source}")]
    Node {
        action: &'static str,
        node: String,
        #[source]
        source: ClientError,
    },
}

/// A running agent.
pub struct AgentHandle {
    endpoint: String,
    address: Address,
    runtimes: Vec<Runtime>,
    unisolated: BTreeSet<Runtime>,
    leases: Arc<Leases>,
    server: JoinHandle<()>,
    server_stop: oneshot::Sender<()>,
    reconciler: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    reveals: JoinHandle<()>,
    verdicts: JoinHandle<()>,
    challenges: JoinHandle<()>,
    /// The ingress proxy, when the ingress has a domain.
    proxy: Option<JoinHandle<()>>,
    departed: watch::Receiver<bool>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("endpoint", &self.endpoint)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl AgentHandle {
    /// The endpoint registered on chain.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The provider's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The runtimes registered on chain: those of the drivers that were usable at start.
    pub fn runtimes(&self) -> &[Runtime] {
        &self.runtimes
    }

    /// The runtimes that cannot isolate workloads here (process without a sandbox): they run
    /// only the trusted tenants' jobs.
    pub fn unisolated_runtimes(&self) -> &BTreeSet<Runtime> {
        &self.unisolated
    }

    /// The leases this agent holds.
    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    /// Completes once this provider has left the network: its `AnnounceExit` was seen on
    /// chain, every lease ended or was released, and it is deregistered (its stake returned).
    /// Pending forever otherwise. Owned, so it can be awaited beside a shutdown signal.
    pub fn departed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut departed = self.departed.clone();
        async move {
            // An error means the reconciler is gone (shutdown): it will never depart then.
            if departed.wait_for(|d| *d).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops bidding and serving, and the background tasks. Running workloads are left
    /// running; a restarted agent recovers them from their records.
    pub async fn shutdown(self) {
        self.heartbeat.abort();
        self.reveals.abort();
        self.verdicts.abort();
        self.challenges.abort();
        self.reconciler.abort();
        if let Some(proxy) = &self.proxy {
            proxy.abort();
        }
        let _ = self.server_stop.send(());
        let mut server = self.server;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        self.leases.abort_all();
        let _ = self.reconciler.await;
    }
}

/// Starts the agent: discovers the machine, registers or updates the provider, resumes
/// persisted leases, serves tenants and starts bidding.
pub async fn start(config: AgentConfig) -> Result<AgentHandle, AgentError> {
    let data_err = |path: &PathBuf| {
        let path = path.clone();
        move |source| AgentError::DataDir { path, source }
    };
    gpunet_files::create_private_dir_all(&config.data_dir).map_err(data_err(&config.data_dir))?;
    let data_dir = std::path::absolute(&config.data_dir).map_err(data_err(&config.data_dir))?;
    let encryption_secret =
        gpunet_client::load_or_create_encryption_secret(&data_dir.join(ENCRYPTION_KEY_FILE))
            .map_err(|source| AgentError::EncryptionKey { source })?;

    let (drivers, unisolated) = usable_drivers(&config.drivers).await?;
    let runtimes = drivers.runtimes();
    // Capabilities are a container's: without the Docker runtime there is nothing to grant.
    let capabilities = if runtimes.contains(&Runtime::Docker) {
        config.capabilities
    } else {
        if !config.capabilities.is_none() {
            tracing::warn!(
                capabilities = config.capabilities.as_str(),
                "capabilities are granted to containers only, and this provider offers no \
                 Docker runtime: it grants none"
            );
        }
        Capabilities::None
    };
    let policy = TenantPolicy {
        unisolated,
        trusted_tenants: config.trusted_tenants.clone(),
    };
    let unisolated = policy.unisolated.clone();
    for runtime in &policy.unisolated {
        let trusted: Vec<String> = policy
            .trusted_tenants
            .iter()
            .map(|a| a.to_string())
            .collect();
        tracing::warn!(
            runtime = runtime.as_str(),
            trusted = ?trusted,
            "this runtime cannot isolate workloads here: it runs jobs only for the trusted tenants (none: no one's)"
        );
    }

    let discover_dir = data_dir.clone();
    let machine_info = tokio::task::spawn_blocking(move || gpunet_runtime::discover(&discover_dir))
        .await
        .map_err(|e| AgentError::DataDir {
            path: data_dir.clone(),
            source: std::io::Error::other(e),
        })?;
    tracing::info!("discovered: {}", machine::describe(&machine_info));
    let inventory = machine::inventory(&machine_info);

    if let Some(ingress) = &config.ingress {
        ingress
            .validate()
            .map_err(|why| AgentError::Ingress { why })?;
    }
    // The ingress proxy's listener, bound before registering so a port in use fails the start.
    let proxy_listener = match config.ingress.as_ref().filter(|i| i.domain.is_some()) {
        Some(ingress) => Some(
            tokio::net::TcpListener::bind(ingress.http_listen)
                .await
                .map_err(|source| AgentError::Bind {
                    addr: ingress.http_listen,
                    source,
                })?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: config.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| AgentError::Bind {
        addr: config.listen,
        source,
    })?;
    let endpoint = config
        .public_endpoint
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let profile = ProviderProfile {
        capabilities,
        endpoint: endpoint.clone(),
        region: config.region.clone(),
        capacity: inventory.capacity.clone(),
        runtimes: runtimes.clone(),
        encryption_key: encryption_secret.public(),
        rates: config.rates.clone(),
    };
    profile
        .validate()
        .map_err(|source| AgentError::Profile { source })?;

    let address = config.key.address();
    let client = Arc::new(NodeClient::new(&config.node_api).with_signer(config.key.clone()));
    let node_err = |action: &'static str| {
        let node = config.node_api.clone();
        move |source| AgentError::Node {
            action,
            node,
            source,
        }
    };
    wait_for_node(&client, NODE_PATIENCE)
        .await
        .map_err(node_err("reach the node"))?;
    let params = client
        .params()
        .await
        .map_err(node_err("read the parameters"))?;
    let families =
        challenge::unprovable_gpu_families(&params.challenge_bands, &profile.capacity.gpus);
    if !families.is_empty() {
        return Err(AgentError::NoGpuProver { families });
    }
    register(&client, &profile, config.stake)
        .await
        .map_err(node_err("register the provider"))?;
    let status = client.status().await.map_err(node_err("read the status"))?;
    let from_height = status.height;
    let checkpoints = match &config.blob_store {
        Some(store) => Some(checkpoints::CheckpointStore {
            store: Arc::clone(store),
            chain_id: status.chain_id.clone(),
        }),
        None => {
            tracing::info!("no blob store configured: jobs' checkpoints are not kept");
            None
        }
    };

    let judge = Arc::new(verdicts::Judge::new(
        Arc::clone(&client),
        address,
        encryption_secret.clone(),
        &data_dir,
    ));
    let leases = Leases::new(
        LeasesConfig {
            provider: address,
            data_dir,
            gpu_uuids: inventory.gpu_uuids.clone(),
            manifest_timeout: MANIFEST_TIMEOUT,
            encryption_secret,
            retention: config.retention,
            policy: policy.clone(),
            checkpoints,
            exit_grace: config.exit_grace,
            chain_id: status.chain_id.clone(),
            allow_private_blob_endpoints: config.allow_private_blob_endpoints,
            ingress: config.ingress.clone(),
            capabilities,
        },
        Arc::new(NodeChain::new(Arc::clone(&client))),
        drivers,
    )?;
    leases.resume().await;
    leases.spawn_sweeper();

    let (server_stop, stopped) = oneshot::channel::<()>();
    let app = server::router_with_judge(Arc::clone(&leases), Arc::clone(&judge));
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the agent's HTTP server failed");
        }
    });
    tracing::info!(%endpoint, provider = %address, "provider agent serving");
    let proxy = match (proxy_listener, config.ingress.as_ref()) {
        (Some(listener), Some(ingress)) => {
            let domain = ingress.domain.clone().unwrap_or_default();
            let app = ingress::router(leases.routes().clone(), &domain)
                .into_make_service_with_connect_info::<SocketAddr>();
            tracing::info!(listen = %ingress.http_listen, %domain, "ingress proxy serving *.{domain}");
            Some(tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, app).await {
                    tracing::error!(%error, "the ingress proxy failed");
                }
            }))
        }
        _ => None,
    };

    let every = heartbeat::interval_from(&client).await;
    tracing::info!(interval = ?every, "sending a heartbeat while workloads run");
    let heartbeat = tokio::spawn(heartbeat::run(
        Arc::clone(&client),
        Arc::clone(&leases),
        every,
    ));
    // Verified runs reveal their digests when asked, checked as often as heartbeats go.
    let reveals = tokio::spawn(reveals::run(
        Arc::clone(&client),
        Arc::clone(&leases),
        every,
    ));

    // Hardware challenges, when a band covers this listing.
    let challenges = tokio::spawn(challenge::run(
        Arc::clone(&client),
        address,
        params.challenge_bands,
        every,
    ));

    // Verdicts on `compare: tensors` orders this provider is drawn to judge.
    let verdicts = tokio::spawn(verdicts::run(judge, every, params.verdict_window_blocks));

    let (departed_tx, departed) = watch::channel(false);
    let reconciler = reconcile::Reconciler {
        client,
        leases: Arc::clone(&leases),
        offer: Offer {
            provider: address,
            profile,
            policy,
        },
        bid_on: BTreeSet::new(),
        orders_after: None,
        departed: departed_tx,
    };
    let reconciler = tokio::spawn(reconciler.run(from_height));

    Ok(AgentHandle {
        endpoint,
        address,
        runtimes,
        unisolated,
        leases,
        server,
        server_stop,
        proxy,
        reconciler,
        heartbeat,
        reveals,
        verdicts,
        challenges,
        departed,
    })
}

/// Fingerprints each driver and keeps the usable ones, with the runtimes of those that do not
/// isolate workloads. A driver that is not usable is logged and left out (its runtime is not
/// offered); if none is usable, the last failure is the error.
async fn usable_drivers(
    configured: &[Arc<dyn Driver>],
) -> Result<(Drivers, BTreeSet<Runtime>), AgentError> {
    let mut drivers = Drivers::new();
    let mut unisolated = BTreeSet::new();
    let mut failure = None;
    for driver in configured {
        let name = driver.name();
        match driver.fingerprint().await {
            Ok(info) => {
                let Some(runtime) = drivers.add(Arc::clone(driver)) else {
                    return Err(AgentError::UnknownRuntime { driver: name });
                };
                if !info.isolated {
                    unisolated.insert(runtime);
                }
                tracing::info!(driver = %info.name, version = %info.version, detail = %info.detail, "driver ready");
            }
            Err(source) => {
                tracing::warn!(driver = name, error = %source, "driver not usable here; its runtime is not offered");
                failure = Some(AgentError::Driver {
                    driver: name,
                    source,
                });
            }
        }
    }
    if drivers.is_empty() {
        return Err(failure.unwrap_or(AgentError::NoDriver));
    }
    tracing::info!(runtimes = ?drivers.runtimes(), "offering runtimes");
    Ok((drivers, unisolated))
}

/// Waits until the node answers its status, asking again every [`NODE_RETRY`] while it cannot
/// be reached at all, for at most `patience`; says once that it is waiting. Any other failure
/// (the URL answers, but not as a node) is returned at once.
async fn wait_for_node(client: &NodeClient, patience: Duration) -> Result<(), ClientError> {
    let start = tokio::time::Instant::now();
    let mut said = false;
    loop {
        match client.status().await {
            Ok(_) => {
                if said {
                    tracing::info!("the node answers");
                }
                return Ok(());
            }
            Err(e @ ClientError::Unreachable { .. }) if start.elapsed() < patience => {
                if !said {
                    tracing::warn!("waiting up to {}s for the node: {e}", patience.as_secs());
                    said = true;
                }
                tokio::time::sleep(NODE_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Registers the provider, or updates its profile if it differs from what is on chain.
async fn register(
    client: &NodeClient,
    profile: &ProviderProfile,
    stake: Amount,
) -> Result<(), ClientError> {
    let Some(address) = client.signer().map(KeyFile::address) else {
        return Ok(());
    };
    match client.provider(&address).await? {
        None => {
            tracing::info!(%address, %stake, "registering as a provider");
            client
                .send_and_wait(
                    Msg::RegisterProvider {
                        stake,
                        profile: profile.clone(),
                    },
                    REGISTRATION_TIMEOUT,
                )
                .await?;
        }
        Some(p) if p.profile != *profile => {
            tracing::info!(%address, "updating the provider profile");
            let sent = client
                .send_and_wait(
                    Msg::UpdateProvider {
                        profile: profile.clone(),
                    },
                    REGISTRATION_TIMEOUT,
                )
                .await;
            match sent {
                // Capacity, region or runtimes changed while leases run: those stay as the
                // leases were matched under until they end, but the endpoint (a restart on a
                // new address) and the rest must move now, or tenants cannot reach this agent.
                Err(e) if e.rejection() == Some(Rejection::ProviderHasLiveLeases) => {
                    tracing::warn!(%address, "capacity, region or runtimes not updated while leases run: {e}");
                    let kept = ProviderProfile {
                        capacity: p.profile.capacity.clone(),
                        region: p.profile.region.clone(),
                        runtimes: p.profile.runtimes.clone(),
                        ..profile.clone()
                    };
                    if kept != p.profile {
                        client
                            .send_and_wait(
                                Msg::UpdateProvider { profile: kept },
                                REGISTRATION_TIMEOUT,
                            )
                            .await?;
                    }
                }
                other => {
                    other?;
                }
            }
        }
        Some(_) => tracing::info!(%address, "already registered with this profile"),
    }
    Ok(())
}
