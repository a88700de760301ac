//! `gpunet provider start`: run the provider agent on this machine against any node of a
//! network — discover the machine, register (locking stake), bid on orders it can serve, run
//! the workloads and get paid — until Ctrl-C or SIGTERM, or until the provider has left.
//!
//! `gpunet dev` runs an agent inside its own process; this is the same agent on its own, for a
//! machine that joins a network run elsewhere (`gpunet node`, `deploy/cluster/`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gpunet_agent::{AgentConfig, Retention};
use gpunet_client::KeyFile;
use gpunet_protocol::Amount;

#[derive(Subcommand)]
pub enum ProviderCmd {
    /// Run the provider agent until Ctrl-C: register this machine with the network, bid on
    /// orders it can run, run the workloads and report them. The key's account must hold the
    /// stake (gpn) and fees; `gpunet node init --providers N` funds N provider keys at genesis.
    ///
    /// Example: gpunet provider start --api http://127.0.0.1:8650 --key provider.json --data /var/lib/gpunet-provider
    ///
    /// Example: gpunet provider start --api http://validator-0:8650 --key /net/keys/provider-0.json --listen 0.0.0.0:8700 --endpoint http://provider-0:8700
    Start(StartArgs),
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
    /// Stake locked at registration, in gpn.
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
    /// An account whose process jobs may run even where this machine allows no sandbox, e.g.
    /// your own tenant: its address (gpn1…) or its key file; repeat for several. Others'
    /// process jobs always run sandboxed, or not at all.
    #[arg(long = "trust-tenant", value_name = "ADDRESS|KEY_FILE")]
    pub trust_tenants: Vec<String>,
    /// A directory where jobs' checkpoints are kept (a local blob store), shared with the
    /// providers that may run a job's next attempt; without it checkpoints are not kept. (An
    /// `s3://` store is not offered here yet.)
    #[arg(long, value_name = "DIR")]
    pub blob_store: Option<std::path::PathBuf>,
    /// When the provider leaves (its `AnnounceExit` is on chain): how long each workload gets
    /// after SIGTERM to finish and write a last checkpoint before it is killed, e.g. 30s or 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub exit_grace: Duration,
}

/// A duration flag: `90s`, `30m`, `1h30m` (the job spec's durations).
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
        ProviderCmd::Start(a) => start(a).await,
    }
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
    if !a.no_docker {
        // Fingerprinted at start: offered only when the engine answers.
        drivers.push(Arc::new(gpunet_runtime::DockerDriver::new()));
    }
    let agent = gpunet_agent::start(AgentConfig {
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
             is deregistered (stake returned)"
        );
    }
    Ok(())
}
