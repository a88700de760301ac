//! `gpunet provider start`: run the provider agent on this machine against any node of a
//! network — discover the machine, register (locking stake), bid on orders it can serve, run
//! the workloads and get paid — until Ctrl-C or SIGTERM, or until the provider has left.
//!
//! `gpunet provider leave`: leave the network gracefully — announce the exit on chain, then
//! (with `--wait`) follow the provider while its agent stops the workloads, releases the leases
//! (each job goes on with another provider) and deregisters, saying what became of each lease.
//!
//! `gpunet dev` runs an agent inside its own process; this is the same agent on its own, for a
//! machine that joins a network run elsewhere (`gpunet node`, `deploy/cluster/`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gpunet_agent::{AgentConfig, Retention};
use gpunet_api::node::{LeaseState, LeaseView, ProviderView};
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{Address, Amount, Capabilities, LeaseEndReason, LeaseId, Msg, Rejection};
use serde_json::json;

use crate::progress::Progress;

// Parsed once per process: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ProviderCmd {
    /// Run the provider agent until Ctrl-C: register this machine with the network, bid on
    /// orders it can run, run the workloads and report them. The key's account must hold the
    /// stake (gpn) and fees; `gpunet node init --providers N` funds N provider keys at genesis.
    ///
    /// Example: gpunet provider start --api http://127.0.0.1:8650 --key provider.json --data /var/lib/gpunet-provider
    ///
    /// Example: gpunet provider start --api http://validator-0:8650 --key /net/keys/provider-0.json --listen 0.0.0.0:8700 --endpoint http://provider-0:8700
    ///
    /// It exits 0 by itself once the provider has left (`gpunet provider leave`).
    Start(Box<StartArgs>),
    /// Leave the network gracefully: announce the exit on chain, so the provider takes no new
    /// leases. Its running agent (`gpunet provider start`) then stops each workload (SIGTERM,
    /// and its --exit-grace to finish and write a last checkpoint), releases each lease — the
    /// job goes on with another provider, from that checkpoint, and the release is not
    /// counted as this provider's failure — deregisters (the stake unbonds: it returns to the
    /// balance after the network's unbonding_blocks, slashable until then) and exits 0.
    ///
    /// Without --wait it returns once the exit is announced; with --wait it follows the
    /// provider until it is deregistered, saying what became of each lease. Run it again with
    /// --wait to follow a leave already under way. If every lease has ended but the agent does
    /// not deregister (it is not running), --wait deregisters the provider itself.
    ///
    /// Example: gpunet provider leave --api http://127.0.0.1:8650 --key provider.json --wait
    Leave(LeaveArgs),
    /// Add gpn to the provider's stake: to list more GPUs (each needs the network's
    /// stake_per_gpu, see `gpunet market providers` and /v1/params), or to bid again after a
    /// slash left the stake below what its GPUs need.
    ///
    /// Example: gpunet provider bond --api http://127.0.0.1:8650 --key provider.json --amount 100
    Bond(BondArgs),
    /// Take gpn out of the provider's stake, keeping what its listing needs (see `gpunet
    /// market providers` and /v1/params): it unbonds for the network's unbonding_blocks —
    /// slashable meanwhile, so a verdict still to come reaches it — and then returns to the
    /// balance by itself. To take all of it, leave the network.
    ///
    /// Example: gpunet provider unbond --api http://127.0.0.1:8650 --key provider.json --amount 50
    Unbond(BondArgs),
}

#[derive(Args)]
pub struct BondArgs {
    /// Node API URL (any validator of the network).
    #[arg(long, env = "GPUNET_API")]
    pub api: String,
    /// The provider's account key: it pays the amount and the fee.
    #[arg(long, env = "GPUNET_KEY")]
    pub key: PathBuf,
    /// Gpn to add to (bond) or take from (unbond) the stake, e.g. 100 or 12.5.
    #[arg(long)]
    pub amount: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LeaveArgs {
    /// Node API URL (any validator of the network).
    #[arg(long, env = "GPUNET_API")]
    pub api: String,
    /// The provider's account key: the one its agent runs with.
    #[arg(long, env = "GPUNET_KEY")]
    pub key: PathBuf,
    /// Follow the provider until every lease has ended and it is deregistered.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up (exit 1) if the provider is still registered after this long,
    /// e.g. 30m or 2h.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct StartArgs {
    /// Node API URL (any validator of the network).
    #[arg(long, env = "GPUNET_API")]
    pub api: String,
    /// The provider's account key (pays the stake and the fees, receives the earnings).
    #[arg(long, env = "GPUNET_KEY")]
    pub key: PathBuf,
    /// Where lease records, logs, outputs and the encryption key live; a restart with the same
    /// directory resumes running workloads.
    #[arg(long, default_value = "gpunet-provider")]
    pub data: PathBuf,
    /// Where the agent serves tenants (manifests, logs, outputs).
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// URL tenants reach the agent at, registered on chain. Default: http://<--listen>; needed
    /// when listening on 0.0.0.0.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Region registered on chain.
    #[arg(long, default_value = "local")]
    pub region: String,
    /// Stake locked at registration, in gpn: at least the network's min_provider_stake and
    /// its stake_per_gpu for each GPU this machine lists (see /v1/params; 100 each by
    /// default), or registration is refused with stake_below_minimum.
    #[arg(long, default_value = "100")]
    pub stake: String,
    /// Price per CPU core-hour, in usd.
    #[arg(long, default_value = "0.10")]
    pub cpu_hour: String,
    /// Price per GiB of memory per hour, in usd.
    #[arg(long, default_value = "0.01")]
    pub gib_hour: String,
    /// Price per GPU-hour, in usd, for GPUs no --gpu-model-hour names.
    #[arg(long, default_value = "2.00")]
    pub gpu_hour: String,
    /// Price per GPU-hour of one GPU model or family, in usd, e.g. `h100=3.50` or
    /// `a100-40gb=1.20`; repeat for several (a model wins over its family). Posted on chain with
    /// the other rates: tenants see them in `gpunet market providers`.
    #[arg(long = "gpu-model-hour", value_name = "MODEL=PRICE")]
    pub gpu_model_hours: Vec<String>,
    /// Do not offer the docker runtime even when a Docker Engine answers.
    #[arg(long)]
    pub no_docker: bool,
    /// The most Linux capabilities a container may be given here: `none` (every one dropped)
    /// or `baseline` (Docker's default set without NET_RAW: CHOWN, SETUID, SETGID and the
    /// like). Images that start as root and switch to their own user (the official nginx and
    /// postgres images, most Akash SDL) need `baseline`; jobs asking for it match only
    /// providers that grant it. Root in such a container can change owners and switch users
    /// inside it; it still cannot mount, load modules, trace or send raw packets (ADR 0013).
    #[arg(long, value_name = "none|baseline", default_value = "none", value_parser = parse_capabilities)]
    pub allow_capabilities: Capabilities,
    /// An account whose process jobs may run even where this machine allows no sandbox, e.g.
    /// your own tenant: its address (gpn1…) or its key file; repeat for several. Others'
    /// process jobs always run sandboxed, or not at all.
    #[arg(long = "trust-tenant", value_name = "ADDRESS|KEY_FILE")]
    pub trust_tenants: Vec<String>,
    /// A directory where jobs' checkpoints are kept (a local blob store), shared with the
    /// providers that may run a job's next attempt; without it checkpoints are not kept, except
    /// for jobs that name their own bucket (the spec's `storage:`), which always go there.
    #[arg(long, value_name = "DIR")]
    pub blob_store: Option<std::path::PathBuf>,
    /// Let jobs name a bucket at an `http://` endpoint or one that resolves to a loopback,
    /// private, link-local or otherwise non-public address. Only for test networks (an S3
    /// server on this machine): without it a tenant cannot point this agent at your own network
    /// or the cloud's metadata service.
    #[arg(long)]
    pub allow_private_blob_endpoints: bool,
    /// When the provider leaves (`gpunet provider leave`): how long each workload gets after
    /// SIGTERM to finish and write a last checkpoint before it is killed, e.g. 30s or 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub exit_grace: Duration,
    /// The host name or address tenants' clients reach this machine at, e.g.
    /// gpu1.example.com. With it, services' exposed ports are published on --ingress-bind in
    /// --ingress-ports and shown as <proto>://HOST:PORT; without it they stay on this
    /// machine's loopback, unreachable from outside.
    #[arg(long, value_name = "HOST")]
    pub public_address: Option<String>,
    /// A domain whose wildcard (*.DOMAIN) points at this machine, e.g. apps.example.com:
    /// services' http ports are then also served by the agent's reverse proxy at
    /// http://<lease>-<port>.DOMAIN. Needs --public-address.
    #[arg(long, value_name = "DOMAIN", requires = "public_address")]
    pub ingress_domain: Option<String>,
    /// Where the reverse proxy for --ingress-domain listens (port 80 needs root or
    /// CAP_NET_BIND_SERVICE); endpoints name its port unless it is 80.
    #[arg(long, value_name = "ADDR", default_value = gpunet_agent::ingress::DEFAULT_HTTP_LISTEN)]
    pub ingress_listen: SocketAddr,
    /// The address services' ports are published on when --public-address is given: all
    /// interfaces by default, or one interface's address.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub ingress_bind: std::net::IpAddr,
    /// The host ports services' exposed ports are published in (open them in your firewall),
    /// FIRST-LAST.
    #[arg(long, value_name = "FIRST-LAST", default_value = "30000-32767")]
    pub ingress_ports: gpunet_runtime::PortRange,
}

/// A duration flag: `90s`, `30m`, `1h30m` (the job spec's durations).
fn parse_capabilities(text: &str) -> std::result::Result<Capabilities, String> {
    match text {
        "none" => Ok(Capabilities::None),
        "baseline" => Ok(Capabilities::Baseline),
        other => Err(format!(
            "{other:?} is not a capability set: give none (every capability dropped) or \
             baseline (Docker's defaults without NET_RAW)"
        )),
    }
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    gpunet_protocol::jobspec::Seconds::parse(text).map(|s| Duration::from_secs(s.0))
}

fn amount(flag: &str, value: &str) -> Result<Amount> {
    Amount::parse_decimal(value)
        .with_context(|| format!("--{flag} {value:?}: write a decimal amount like 0.25"))
}

/// `--gpu-model-hour MODEL=PRICE` flags as the profile's per-model rates.
fn gpu_model_rates(flags: &[String]) -> Result<std::collections::BTreeMap<String, Amount>> {
    let mut rates = std::collections::BTreeMap::new();
    for flag in flags {
        let Some((model, price)) = flag.split_once('=') else {
            bail!("--gpu-model-hour {flag:?}: write MODEL=PRICE, e.g. h100=3.50");
        };
        rates.insert(
            model.trim().to_owned(),
            amount("gpu-model-hour", price.trim())?,
        );
    }
    Ok(rates)
}

pub async fn run(cmd: ProviderCmd) -> Result<()> {
    match cmd {
        ProviderCmd::Start(a) => start(*a).await,
        ProviderCmd::Leave(a) => leave(a).await,
        ProviderCmd::Bond(a) => bond(a).await,
        ProviderCmd::Unbond(a) => unbond(a).await,
    }
}

/// What a stake transaction did: the provider, the transaction, and the stake after it.
struct StakeChange {
    address: gpunet_protocol::Address,
    tx: gpunet_api::node::TxView,
    stake: Amount,
}

/// Sends the stake transaction `msg(amount)` with the provider key of `a`, waits for it, and
/// reads the stake after.
async fn change_stake(
    a: &BondArgs,
    msg: impl FnOnce(Amount) -> Msg,
    what: &'static str,
) -> Result<(Amount, StakeChange)> {
    let amount = amount("amount", &a.amount)?;
    let key = KeyFile::load(&a.key).context("the provider key (the one its agent runs with)")?;
    let address = key.address();
    let client = NodeClient::new(&a.api).with_signer(key);
    let tx = client
        .send_and_wait(msg(amount), LEAVE_TX_TIMEOUT)
        .await
        .context(what)?;
    let stake = provider_view(&client, address)
        .await?
        .map_or(Amount::ZERO, |p| p.stake);
    Ok((amount, StakeChange { address, tx, stake }))
}

async fn unbond(a: BondArgs) -> Result<()> {
    let (amount, done) =
        change_stake(&a, |amount| Msg::UnbondStake { amount }, "unbonding stake").await?;
    let StakeChange { address, stake, .. } = done;
    let release_height = done.tx.events.iter().find_map(|e| match e {
        gpunet_protocol::Event::StakeUnbonding { release_height, .. } => Some(*release_height),
        _ => None,
    });
    if a.json {
        let value = json!({
            "provider": address.to_string(),
            "unbonding": amount.to_string(),
            "release_height": release_height,
            "stake": stake.to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "provider {address}: {amount} gpn unbonding, back in the balance at height {}; stake now {stake} gpn",
            release_height.map_or_else(|| "?".to_owned(), |h| h.to_string())
        );
    }
    Ok(())
}

async fn bond(a: BondArgs) -> Result<()> {
    let (amount, done) =
        change_stake(&a, |amount| Msg::BondStake { amount }, "bonding stake").await?;
    let StakeChange { address, stake, .. } = done;
    if a.json {
        let value = json!({
            "provider": address.to_string(),
            "bonded": amount.to_string(),
            "stake": stake.to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("provider {address}: bonded {amount} gpn, stake now {stake} gpn");
    }
    Ok(())
}

async fn start(a: StartArgs) -> Result<()> {
    if a.endpoint.is_none() && a.listen.ip().is_unspecified() {
        bail!(
            "--listen {} is every interface, so tenants cannot be told where to connect: \
             add --endpoint http://<this machine's name or address>:{}",
            a.listen,
            a.listen.port()
        );
    }
    let key = KeyFile::load(&a.key).context(
        "the provider key (its account pays the stake and fees: fund it with gpn, or use a key \
         from `gpunet node init --providers N`)",
    )?;
    let rates = gpunet_protocol::Rates {
        per_cpu_core_hour: amount("cpu-hour", &a.cpu_hour)?,
        per_memory_gib_hour: amount("gib-hour", &a.gib_hour)?,
        default_per_gpu_hour: amount("gpu-hour", &a.gpu_hour)?,
        per_gpu_hour: gpu_model_rates(&a.gpu_model_hours)?,
    };
    rates
        .validate()
        .map_err(|e| anyhow::anyhow!("--gpu-model-hour: {e}"))?;
    let mut trusted_tenants = std::collections::BTreeSet::new();
    for text in &a.trust_tenants {
        let address = match text.parse::<gpunet_protocol::Address>() {
            Ok(address) => address,
            Err(_) if std::path::Path::new(text).is_file() => {
                KeyFile::load(std::path::Path::new(text))
                    .with_context(|| {
                        format!("--trust-tenant {text}: reading the tenant's key file")
                    })?
                    .address()
            }
            Err(e) => anyhow::bail!(
                "--trust-tenant {text:?} is neither an address ({e}) nor a key file; give a gpn1… address or the path of the tenant's key"
            ),
        };
        trusted_tenants.insert(address);
    }
    // The agent's data and its key stay hidden inside every sandbox.
    let protected = [a.data.clone(), a.key.clone()]
        .into_iter()
        .map(|p| std::path::absolute(&p).unwrap_or(p))
        .collect();
    let process = gpunet_runtime::ProcessDriver::with_protected_paths(protected);
    match process.isolation() {
        gpunet_runtime::Isolation::Sandboxed { detail } => println!("process jobs: {detail}"),
        gpunet_runtime::Isolation::Unsandboxed { reason } => println!(
            "process jobs: no sandbox on this machine ({reason}); they run only for --trust-tenant accounts ({})",
            if trusted_tenants.is_empty() {
                "none given: no one's".to_owned()
            } else {
                a.trust_tenants.join(", ")
            }
        ),
    }
    let mut drivers: Vec<Arc<dyn gpunet_runtime::Driver>> = vec![Arc::new(process)];
    let ingress = a
        .public_address
        .as_ref()
        .map(|host| gpunet_agent::ingress::IngressConfig {
            public_host: host.clone(),
            domain: a.ingress_domain.clone(),
            http_listen: a.ingress_listen,
        });
    if !a.no_docker {
        // Fingerprinted at start: offered only when the engine answers. With a public address,
        // services are published where clients reach them.
        let publish = match ingress {
            Some(_) => gpunet_runtime::Publish {
                host_ip: a.ingress_bind,
                ports: Some(a.ingress_ports),
            },
            None => gpunet_runtime::Publish::default(),
        };
        drivers.push(Arc::new(
            gpunet_runtime::DockerDriver::new().with_publish(publish),
        ));
    }
    let agent = gpunet_agent::start(AgentConfig {
        capabilities: a.allow_capabilities,
        node_api: a.api.clone(),
        key,
        data_dir: a.data.clone(),
        listen: a.listen,
        public_endpoint: a.endpoint.clone(),
        region: a.region.clone(),
        rates,
        stake: amount("stake", &a.stake)?,
        drivers,
        retention: Retention::default(),
        trusted_tenants,
        blob_store: match &a.blob_store {
            Some(dir) => Some(Arc::new(
                gpunet_blobs::LocalStore::open(dir)
                    .with_context(|| format!("opening the blob store {}", dir.display()))?,
            ) as Arc<dyn gpunet_blobs::BlobStore>),
            None => None,
        },
        exit_grace: a.exit_grace,
        allow_private_blob_endpoints: a.allow_private_blob_endpoints,
        ingress,
    })
    .await
    .with_context(|| format!("starting the provider agent against {}", a.api))?;
    let runtimes: Vec<&str> = agent.runtimes().iter().map(|r| r.as_str()).collect();
    println!(
        "provider {} registered: serving tenants at {}, runtimes {}, following {}",
        agent.address(),
        agent.endpoint(),
        runtimes.join(", "),
        a.api
    );
    let departed = agent.departed();
    let left = tokio::select! {
        () = crate::nodecmd::wait_for_stop() => false,
        () = departed => true,
    };
    let address = agent.address();
    agent.shutdown().await;
    if left {
        println!(
            "provider {address} has left the network: its leases ended or were released, and it \
             is deregistered (its stake unbonds, and returns to the balance after the network's \
             unbonding_blocks)"
        );
    }
    Ok(())
}

/// How often `provider leave --wait` reads the chain.
const LEAVE_POLL: Duration = Duration::from_secs(1);
/// How long `provider leave --wait` lets the agent deregister once every lease has ended,
/// before it deregisters the provider itself.
const DEREGISTER_PATIENCE: Duration = Duration::from_secs(20);
/// How long without a lease ending before `provider leave --wait` asks whether the agent runs.
const QUIET_HINT_AFTER: Duration = Duration::from_secs(60);
/// How long a transaction of `provider leave` may take to be included.
const LEAVE_TX_TIMEOUT: Duration = Duration::from_secs(60);

async fn leave(a: LeaveArgs) -> Result<()> {
    let key = KeyFile::load(&a.key).context("the provider key (the one its agent runs with)")?;
    let address = key.address();
    let client = NodeClient::new(&a.api).with_signer(key);
    let progress = Progress::new(a.json);
    let Some(me) = provider_view(&client, address).await? else {
        bail!(
            "{address} is not a registered provider on {}: there is nothing to leave (it may \
             have left already). Check the key with `gpunet market providers --api {}`",
            a.api,
            a.api
        );
    };
    let announced = !me.leaving;
    if announced {
        client
            .send_and_wait(Msg::AnnounceExit, LEAVE_TX_TIMEOUT)
            .await
            .context("announcing the exit on chain")?;
        progress.stage(&format!(
            "exit announced: provider {address} takes no new leases"
        ));
    } else {
        progress.stage(&format!(
            "provider {address} was already leaving; following it"
        ));
    }
    if !a.wait {
        progress.finish();
        if a.json {
            let value = json!({
                "provider": address.to_string(),
                "announced": announced,
                "leaving": true,
                "live_leases": me.live_leases.iter().map(|l| l.0).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            println!(
                "provider {address} is leaving. Its agent (`gpunet provider start`) stops the \
                 workloads of its {} live lease(s), releases them for other providers, \
                 deregisters and exits.\nFollow it with: gpunet provider leave --api {} --key {} --wait",
                me.live_leases.len(),
                a.api,
                a.key.display()
            );
        }
        return Ok(());
    }
    let followed = follow_leave(&client, address, me, &a, &progress).await;
    progress.finish();
    let followed = followed?;
    if a.json {
        let leases: Vec<serde_json::Value> = followed.ended.values().map(lease_json).collect();
        let value = json!({
            "provider": address.to_string(),
            "announced": announced,
            "deregistered": true,
            "deregistered_by": if followed.deregistered_here { "this command" } else { "the agent" },
            "stake_unbonding": followed.stake.to_string(),
            "leases": leases,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for lease in followed.ended.values() {
            println!("{}", lease_line(lease));
        }
        println!(
            "provider {address} has left: {} lease(s) ended, deregistered; its stake of {} gpn unbonds and returns to the balance after the network's unbonding_blocks",
            followed.ended.len(),
            followed.stake
        );
    }
    Ok(())
}

/// This provider as the chain shows it, or `None` if it is not registered.
async fn provider_view(client: &NodeClient, address: Address) -> Result<Option<ProviderView>> {
    client
        .provider(&address)
        .await
        .with_context(|| format!("reading provider {address}"))
}

/// What `provider leave --wait` saw.
struct Followed {
    /// Every lease that was live during the leave, as it ended.
    ended: BTreeMap<LeaseId, LeaseView>,
    /// The stake locked when last seen (returned by the deregistration).
    stake: Amount,
    /// This command deregistered the provider (its agent did not).
    deregistered_here: bool,
}

/// Follows a leaving provider until it is deregistered: each lease's end is shown as it
/// happens; once none is live, the agent gets [`DEREGISTER_PATIENCE`] to deregister before
/// this does it.
async fn follow_leave(
    client: &NodeClient,
    address: Address,
    mut me: ProviderView,
    a: &LeaveArgs,
    progress: &Progress,
) -> Result<Followed> {
    let started = Instant::now();
    let mut live: Vec<LeaseId> = me.live_leases.clone();
    let mut ended: BTreeMap<LeaseId, LeaseView> = BTreeMap::new();
    let mut last_change = Instant::now();
    let mut hinted = false;
    let mut none_live_since: Option<Instant> = None;
    let mut deregistered_here = false;
    loop {
        // Leases that ended since the last look.
        let mut still = Vec::new();
        for id in live {
            match client.lease(id).await {
                Ok(view) if view.state == LeaseState::Ended => {
                    progress.stage(&lease_line(&view));
                    ended.insert(id, view);
                    last_change = Instant::now();
                }
                Ok(_) | Err(_) => still.push(id),
            }
        }
        live = still;
        let Some(now) = provider_view(client, address).await? else {
            return Ok(Followed {
                ended,
                stake: me.stake,
                deregistered_here,
            });
        };
        me = now;
        for id in &me.live_leases {
            if !live.contains(id) && !ended.contains_key(id) {
                live.push(*id);
            }
        }
        if live.is_empty() && me.live_leases.is_empty() {
            let since = *none_live_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= DEREGISTER_PATIENCE {
                progress.stage(
                    "every lease has ended but the agent has not deregistered (is `gpunet provider start` running?): deregistering the provider now",
                );
                match client
                    .send_and_wait(Msg::DeregisterProvider, LEAVE_TX_TIMEOUT)
                    .await
                {
                    Ok(_) => deregistered_here = true,
                    Err(e) if e.rejection() == Some(Rejection::ProviderNotRegistered) => {}
                    // A lease created meanwhile: follow it.
                    Err(e) if e.rejection() == Some(Rejection::ProviderHasLiveLeases) => {
                        none_live_since = None;
                    }
                    Err(e) => return Err(e).context("deregistering the provider"),
                }
                continue;
            }
            progress.status("every lease has ended; waiting for the agent to deregister");
        } else {
            none_live_since = None;
            let ids: Vec<String> = live.iter().map(|l| l.to_string()).collect();
            progress.status(&format!(
                "waiting for the agent to stop and release {} lease(s): {}",
                live.len(),
                ids.join(", ")
            ));
            if !hinted && last_change.elapsed() >= QUIET_HINT_AFTER {
                hinted = true;
                progress.stage(&format!(
                    "no lease has ended for {} s: is `gpunet provider start` running for this \
                     provider? It stops the workloads and releases the leases (without it they \
                     end provider_lost once the chain stops hearing from them)",
                    QUIET_HINT_AFTER.as_secs()
                ));
            }
        }
        if started.elapsed() >= a.timeout {
            let ids: Vec<String> = live.iter().map(|l| l.to_string()).collect();
            bail!(
                "provider {address} is still registered after {} s, with live lease(s) [{}]; \
                 the leave goes on — follow it again with `gpunet provider leave --api {} --key {} --wait`",
                a.timeout.as_secs(),
                ids.join(", "),
                a.api,
                a.key.display()
            );
        }
        tokio::time::sleep(LEAVE_POLL).await;
    }
}

/// One line on how a lease ended during a leave.
fn lease_line(lease: &LeaseView) -> String {
    let what = match lease.end_reason {
        Some(LeaseEndReason::ProviderLeft) => {
            "released: the job goes on with another provider (not counted as a failure)".to_owned()
        }
        Some(LeaseEndReason::Completed) => "completed before the provider left".to_owned(),
        Some(reason) => format!("ended {reason}"),
        None => "ended".to_owned(),
    };
    format!(
        "lease {} (job {}): {what}; {:.1} s billed, {} usd paid",
        lease.id,
        lease.order,
        lease.billed_ms as f64 / 1_000.0,
        lease.paid
    )
}

fn lease_json(lease: &LeaseView) -> serde_json::Value {
    json!({
        "lease": lease.id.0,
        "job": lease.order.0,
        "end_reason": lease.end_reason.map(|r| r.to_string()),
        "billed_ms": lease.billed_ms,
        "paid": lease.paid.to_string(),
        "provider_earned": lease.provider_earned.to_string(),
    })
}
