//! The subcommands: demo, dev, job, wallet, market.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use gpunet_client::{KeyFile, NodeClient, OrderFilter, ProviderClient};
use gpunet_protocol::{Address, Amount, Denom, Msg, OrderId};
use serde_json::json;

use crate::Conn;
use crate::devnet::{self, ApiFile, DevNet, DevOptions};
use crate::jobs::{self, Followed};
use crate::progress::Progress;
use crate::quote;

const TX_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum JobCmd {
    /// Submit a job spec (YAML). Waits until a provider runs it; with --wait, until it ends.
    ///
    /// Example: gpunet job submit examples/jobs/hello.yaml --wait
    ///
    /// Before signing, it checks the deposit pays pricing.max_per_hour for the whole
    /// limits.max_duration, and that some provider registered now could run the spec; if none
    /// could, it prints why (and what to change) and submits nothing.
    Submit {
        spec: PathBuf,
        /// Follow the job to its end and print the bill.
        #[arg(long)]
        wait: bool,
        /// Submit even though no provider registered now could run it (one may join later;
        /// the order waits its time-to-live, then the deposit is refunded).
        #[arg(long)]
        submit_anyway: bool,
        /// Submit even though the deposit cannot pay the max price for the whole max duration:
        /// the job is stopped (escrow_exhausted) when the deposit runs out.
        #[arg(long)]
        allow_short_deposit: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// What a job spec would cost now at each provider that can run it (cheapest first), how
    /// long the deposit lasts there, the minimum deposit, and why the others cannot run it.
    ///
    /// Example: gpunet job quote examples/jobs/hello.yaml
    Quote {
        spec: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a job's state, lease, provider and bill. Example: gpunet job status 3
    Status {
        id: OrderId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a job's logs from its provider. Example: gpunet job logs 3 --follow
    Logs {
        id: OrderId,
        /// Keep printing until the job ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Download a job's outputs, verifying each file's digest. Example: gpunet job output 3 --to out/
    Output {
        id: OrderId,
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel a job: an open order is refunded in full; a running one pays for time used.
    ///
    /// Example: gpunet job cancel 3
    Cancel {
        id: OrderId,
        #[command(flatten)]
        conn: Conn,
    },
    /// List your jobs (the signing key's orders), newest first.
    ///
    /// Example: gpunet job list --json
    List {
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum WalletCmd {
    /// Create a new key file. Example: gpunet wallet new --out ~/.gpunet/me.json
    New {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show the address of the signing key.
    ///
    /// Example: gpunet wallet show --key ~/.gpunet/me.json
    Show {
        #[command(flatten)]
        conn: Conn,
    },
    /// Balances and nonce of an address (default: the signing key's).
    ///
    /// Example: gpunet wallet balance gpn1… --json
    Balance {
        address: Option<Address>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Send money. Example: gpunet wallet transfer gpn1… 12.5 --denom usd
    Transfer {
        to: Address,
        amount: Amount,
        #[arg(long, default_value = "usd")]
        denom: Denom,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum MarketCmd {
    /// Registered providers with their capacity, what is free, and their posted rates (usd per
    /// core-hour, GiB-hour of memory and GPU-hour, by model where they price one apart).
    ///
    /// Example: gpunet market providers --json
    Providers {
        #[command(flatten)]
        conn: Conn,
    },
    /// Orders on the market (open ones unless --all).
    ///
    /// Example: gpunet market orders --all
    Orders {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// The running dev network's `api.json`, if there is one.
fn local_dev() -> Option<ApiFile> {
    let text = std::fs::read_to_string(devnet::default_home().join("api.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn api_url(conn: &Conn) -> String {
    conn.api
        .clone()
        .or_else(|| local_dev().map(|f| f.api))
        .unwrap_or_else(|| format!("http://{}", devnet::DEFAULT_DEV_LISTEN))
}

fn key(conn: &Conn) -> Result<KeyFile> {
    let path = conn
        .key
        .clone()
        .or_else(|| local_dev().map(|f| f.tenant_key))
        .unwrap_or_else(|| devnet::tenant_key_path(&devnet::default_home()));
    KeyFile::load(&path).with_context(|| {
        "no signing key: pass --key PATH (or set GPUNET_KEY), or start `gpunet dev` for a funded one"
            .to_string()
    })
}

fn client(conn: &Conn) -> NodeClient {
    NodeClient::new(&api_url(conn))
}

fn signed_client(conn: &Conn) -> Result<(NodeClient, KeyFile)> {
    let k = key(conn)?;
    Ok((client(conn).with_signer(k.clone()), k))
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The bundled example job, so `gpunet demo` works from any directory.
pub const HELLO_SPEC: &str = include_str!("../../../examples/jobs/hello.yaml");

pub async fn demo(
    spec_path: Option<PathBuf>,
    keep_running: bool,
    json_out: bool,
    block_ms: u64,
) -> Result<()> {
    let spec = match &spec_path {
        Some(p) => jobs::read_spec(p)?,
        None => gpunet_protocol::jobspec::JobSpec::parse_yaml(HELLO_SPEC)
            .map_err(|e| anyhow::anyhow!("bundled example spec: {e}"))?,
    };
    let spec_shown = spec_path.map_or_else(
        || "examples/jobs/hello.yaml".to_owned(),
        |p| p.display().to_string(),
    );
    let progress = Progress::new(json_out);
    let home = std::env::temp_dir().join(format!("gpunet-demo-{}", std::process::id()));
    progress.status("starting the network");
    let net = DevNet::start(DevOptions {
        home: home.clone(),
        listen: "127.0.0.1:0".parse().expect("a literal socket address"),
        block_ms,
    })
    .await?;
    progress.stage(&format!(
        "network up: validator at {}, provider {} registered (runtimes: {})",
        net.api,
        net.agent.address().short(),
        net.runtimes_shown()
    ));
    wait_for_provider(&NodeClient::new(&net.api), &progress).await?;
    let client = NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let result = jobs::submit_and_follow(&client, &net.tenant, &spec, true, &progress).await;
    progress.finish();
    let followed = match result {
        Ok(f) => f,
        Err(e) => {
            net.stop().await;
            let _ = std::fs::remove_dir_all(&home);
            return Err(e);
        }
    };
    let report = demo_report(&client, &net.tenant, &followed, json_out).await;
    if keep_running {
        println!();
        println!("The network keeps running (Ctrl-C to stop). From another terminal:");
        println!("  export GPUNET_API={}", net.api);
        println!(
            "  export GPUNET_KEY={}",
            devnet::tenant_key_path(&home).display()
        );
        println!("  gpunet job submit {spec_shown} --wait");
        tokio::signal::ctrl_c().await.ok();
    }
    net.stop().await;
    let _ = std::fs::remove_dir_all(&home);
    report
}

pub async fn wait_for_provider(client: &NodeClient, progress: &Progress) -> Result<()> {
    let start = Instant::now();
    progress.status("waiting for the provider's registration");
    loop {
        if !client.providers().await?.providers.is_empty() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "the provider agent did not register within 30 s; run with GPUNET_LOG=info to see why"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn demo_report(
    client: &NodeClient,
    key: &KeyFile,
    f: &Followed,
    json_out: bool,
) -> Result<()> {
    let lease = f.lease.as_ref().context("the job ended without a lease")?;
    let (digest, files) = jobs::fetch_outputs(key, lease, None).await?;
    let status = client.status().await?;
    let job_status = lease
        .end_reason
        .map(|r| r.as_str().to_owned())
        .unwrap_or_else(|| "running".into());
    if json_out {
        return print_json(&json!({
            "job_status": job_status,
            "output_digest": digest.to_hex(),
            "tenant_paid": lease.paid.to_string(),
            "provider_earned": lease.provider_earned.to_string(),
            "protocol_fee": lease.protocol_fee.to_string(),
            "refund": lease.refund.to_string(),
            "submit_to_running_ms": f.submit_to_running_ms,
            "state_root": status.state_root.to_hex(),
        }));
    }
    println!();
    println!("job {} ({}) {}", f.order.id, f.order.terms.name, job_status);
    println!("output (digest {}):", digest.to_hex());
    for (path, bytes) in &files {
        println!("  {path} ({} bytes)", bytes.len());
        if bytes.len() <= 4096 && std::str::from_utf8(bytes).is_ok() {
            for line in String::from_utf8_lossy(bytes).lines() {
                println!("    | {line}");
            }
        }
    }
    jobs::print_bill(lease);
    if let Some(ms) = f.submit_to_running_ms {
        println!("submit to running: {ms} ms");
    }
    println!(
        "state root at height {}: {}",
        status.height, status.state_root
    );
    Ok(())
}

/// `gpunet dev --validators N` with N ≥ 2: the validators as child processes, the provider
/// agent here. Ctrl-C or SIGTERM stops them all.
pub async fn dev_validators(opts: devnet::MultiDevOptions) -> Result<()> {
    let home = opts.home.clone();
    let net = devnet::MultiDevNet::start(opts).await?;
    let status = NodeClient::new(&net.apis[0]).status().await?;
    println!(
        "gpunet dev network running: {} validators (chain {} at height {})",
        net.apis.len(),
        status.chain_id,
        status.height
    );
    for (i, api) in net.apis.iter().enumerate() {
        println!("  validator {i}    API {api}");
    }
    println!("  data directory {}", home.display());
    println!(
        "  tenant key     {} ({})",
        devnet::tenant_key_path(&home).display(),
        net.tenant.address()
    );
    println!(
        "  provider       {} at {} (via validator 0)",
        net.agent.address(),
        net.agent.endpoint()
    );
    println!();
    println!(
        "Submit a job from another terminal:  gpunet job submit examples/jobs/hello.yaml --wait"
    );
    println!("Stop with Ctrl-C; start again with the same --home to carry on.");
    crate::nodecmd::wait_for_stop().await;
    eprintln!("stopping…");
    net.stop().await;
    Ok(())
}

pub async fn dev(home: PathBuf, listen: SocketAddr, block_ms: u64) -> Result<()> {
    let net = DevNet::start(DevOptions {
        home: home.clone(),
        listen,
        block_ms,
    })
    .await?;
    let status = NodeClient::new(&net.api).status().await?;
    println!(
        "gpunet dev network running (chain {} at height {})",
        status.chain_id, status.height
    );
    println!("  API            {}", net.api);
    println!("  data directory {}", home.display());
    println!(
        "  tenant key     {} ({})",
        devnet::tenant_key_path(&home).display(),
        net.tenant.address()
    );
    println!(
        "  provider       {} at {}",
        net.agent.address(),
        net.agent.endpoint()
    );
    println!(
        "  runtimes       {}{}",
        net.runtimes_shown(),
        if net
            .agent
            .runtimes()
            .contains(&gpunet_protocol::Runtime::Docker)
        {
            ""
        } else {
            " (no Docker Engine answered, so jobs with run.image cannot run here)"
        }
    );
    println!();
    println!(
        "Submit a job from another terminal:  gpunet job submit examples/jobs/hello.yaml --wait"
    );
    println!("Stop with Ctrl-C; start again with the same --home to carry on.");
    tokio::signal::ctrl_c().await.ok();
    eprintln!("stopping…");
    net.stop().await;
    Ok(())
}

pub async fn job(cmd: JobCmd) -> Result<()> {
    match cmd {
        JobCmd::Submit {
            spec,
            wait,
            submit_anyway,
            allow_short_deposit,
            conn,
        } => {
            let spec = jobs::read_spec(&spec)?;
            let (client, key) = signed_client(&conn)?;
            quote::preflight(
                &client,
                &spec.order_terms(),
                submit_anyway,
                allow_short_deposit,
            )
            .await?;
            let progress = Progress::new(conn.json);
            let f = jobs::submit_and_follow(&client, &key, &spec, wait, &progress).await;
            progress.finish();
            let f = f?;
            if conn.json {
                return print_json(&json!({
                    "job": f.order.id,
                    "state": f.lease.as_ref().map(|l| l.state),
                    "end_reason": f.lease.as_ref().and_then(|l| l.end_reason),
                    "submit_to_running_ms": f.submit_to_running_ms,
                    "bill": f.lease.as_ref().map(jobs::bill),
                }));
            }
            println!("job {} submitted", f.order.id);
            if let Some(l) = &f.lease {
                if wait {
                    jobs::print_bill(l);
                } else {
                    println!(
                        "running on {}; follow with `gpunet job logs {} --follow`",
                        l.provider.short(),
                        f.order.id
                    );
                }
            }
            Ok(())
        }
        JobCmd::Quote { spec, conn } => {
            let spec = jobs::read_spec(&spec)?;
            let q = quote::quote(&client(&conn), &spec.order_terms()).await?;
            if conn.json {
                return print_json(&q);
            }
            quote::print_quote(&spec.name, &q);
            Ok(())
        }
        JobCmd::Status { id, conn } => {
            let client = client(&conn);
            let order = client.order(id).await?;
            // An open order: why it has not matched yet, from the providers registered now.
            let explain = match order.state {
                gpunet_api::node::OrderState::Open => client.explain_order(id).await.ok(),
                _ => None,
            };
            let workload = match (&order.lease, key(&conn)) {
                (Some(l), Ok(k)) if k.address() == order.tenant => {
                    ProviderClient::new(&l.provider_endpoint, k)
                        .status(l.id)
                        .await
                        .ok()
                }
                _ => None,
            };
            if conn.json {
                return print_json(
                    &json!({ "order": order, "workload": workload, "explain": explain }),
                );
            }
            println!(
                "job {} ({}): {}",
                order.id,
                order.terms.name,
                format!("{:?}", order.state).to_lowercase()
            );
            println!("  tenant   {}", order.tenant);
            println!("  escrow   {} usd", order.escrow);
            println!("  bids     {}", order.bids.len());
            if let Some(e) = &explain {
                print!("  waiting: {}", e.explanation);
            }
            if let Some(l) = &order.lease {
                println!(
                    "  lease    {} on {} at {} usd/hour: {:?}",
                    l.id, l.provider, l.price_per_hour, l.state
                );
                if let Some(r) = l.end_reason {
                    println!("  ended    {}", jobs::end_reason_shown(r));
                }
                if let Some(w) = &workload {
                    println!(
                        "  workload {:?}{}",
                        w.state,
                        w.exit_code
                            .map(|c| format!(", exit code {c}"))
                            .unwrap_or_default()
                    );
                    if let Some(u) = &w.usage {
                        println!(
                            "  usage    wall {} ms, cpu {} ms, max rss {} MiB",
                            u.wall_ms, u.cpu_ms, u.max_rss_mib
                        );
                        if let (Some(util), Some(mem)) = (u.gpu_util_pct, u.gpu_memory_mib) {
                            println!("  gpu      {util}% mean utilisation, {mem} MiB peak memory");
                        }
                    }
                    for endpoint in &w.endpoints {
                        println!("  endpoint {endpoint}");
                    }
                    if let Some(healthy) = w.healthy {
                        println!(
                            "  health   {}",
                            if healthy { "healthy" } else { "unhealthy" }
                        );
                    }
                    if let Some(d) = &w.detail {
                        println!("  detail   {d}");
                    }
                }
                jobs::print_bill(l);
            }
            Ok(())
        }
        JobCmd::Logs { id, follow, conn } => {
            let client = client(&conn);
            let k = key(&conn)?;
            let order = client.order(id).await?;
            let lease = order
                .lease
                .context("the job has no lease yet, so no logs; check `gpunet job status`")?;
            jobs::read_logs(&k, &lease, follow, |text| print!("{text}")).await
        }
        JobCmd::Output { id, to, conn } => {
            let client = client(&conn);
            let k = key(&conn)?;
            let order = client.order(id).await?;
            let lease = order
                .lease
                .context("the job has no lease yet, so no outputs")?;
            let (digest, files) = jobs::fetch_outputs(&k, &lease, Some(&to)).await?;
            if conn.json {
                let list: Vec<_> = files
                    .iter()
                    .map(|(p, b)| json!({"path": p, "size": b.len()}))
                    .collect();
                return print_json(&json!({"digest": digest, "files": list, "dir": to}));
            }
            for (p, b) in &files {
                println!("{}  {} bytes", Path::new(&to).join(p).display(), b.len());
            }
            println!("{} file(s), listing digest {}", files.len(), digest);
            Ok(())
        }
        JobCmd::Cancel { id, conn } => {
            let (client, _) = signed_client(&conn)?;
            let view = client
                .send_and_wait(Msg::CancelOrder { order: id }, TX_TIMEOUT)
                .await?;
            if conn.json {
                return print_json(&view);
            }
            println!("job {id} cancelled");
            Ok(())
        }
        JobCmd::List { conn } => {
            let k = key(&conn)?;
            let list = client(&conn)
                .orders(&OrderFilter {
                    tenant: Some(k.address()),
                    open_only: false,
                    limit: None,
                })
                .await?;
            if conn.json {
                return print_json(&list);
            }
            println!(
                "{:>6}  {:<20} {:<9} {:<10} {:>12}",
                "JOB", "NAME", "STATE", "LEASE", "PAID (usd)"
            );
            for o in &list.orders {
                let (lease, paid) = match &o.lease {
                    Some(l) => (format!("{:?}", l.state).to_lowercase(), l.paid.to_string()),
                    None => ("-".into(), "-".into()),
                };
                println!(
                    "{:>6}  {:<20} {:<9} {:<10} {:>12}",
                    o.id.0,
                    o.terms.name,
                    format!("{:?}", o.state).to_lowercase(),
                    lease,
                    paid
                );
            }
            Ok(())
        }
    }
}

pub async fn wallet(cmd: WalletCmd) -> Result<()> {
    match cmd {
        WalletCmd::New {
            out,
            json: json_out,
        } => {
            let k = KeyFile::generate();
            k.save_new(&out)?;
            if json_out {
                return print_json(&json!({"address": k.address(), "key_file": out}));
            }
            println!("new key {} written to {}", k.address(), out.display());
            Ok(())
        }
        WalletCmd::Show { conn } => {
            let k = key(&conn)?;
            if conn.json {
                return print_json(&json!({"address": k.address()}));
            }
            println!("{}", k.address());
            Ok(())
        }
        WalletCmd::Balance { address, conn } => {
            let addr = match address {
                Some(a) => a,
                None => key(&conn)?.address(),
            };
            let view = client(&conn).account(&addr).await?;
            if conn.json {
                return print_json(&view);
            }
            println!("{} at height {}", view.address, view.height);
            println!("  usd  {}", view.balances.usd);
            println!("  gpn  {}", view.balances.gpn);
            println!("  next nonce {}", view.next_nonce);
            Ok(())
        }
        WalletCmd::Transfer {
            to,
            amount,
            denom,
            conn,
        } => {
            let (client, _) = signed_client(&conn)?;
            let view = client
                .send_and_wait(Msg::Transfer { to, denom, amount }, TX_TIMEOUT)
                .await?;
            if conn.json {
                return print_json(&view);
            }
            println!(
                "sent {amount} {denom} to {to} (tx {}, block {})",
                view.tx_hash,
                view.block_height.unwrap_or(0)
            );
            Ok(())
        }
    }
}

pub async fn market(cmd: MarketCmd) -> Result<()> {
    match cmd {
        MarketCmd::Providers { conn } => {
            let list = client(&conn).providers().await?;
            if conn.json {
                return print_json(&list);
            }
            println!(
                "{} provider(s) at height {}",
                list.providers.len(),
                list.height
            );
            for p in &list.providers {
                let c = &p.profile.capacity;
                let gpus: Vec<&str> = c.gpus.iter().map(|g| g.model.as_str()).collect();
                println!(
                    "  {}  {}  cpu {}/{} m  mem {}/{} MiB  gpus [{}] ({} free)  stake {} gpn  leases {} live, {} done, {} failed  {}",
                    p.address,
                    p.profile.region,
                    p.free_cpu_millis,
                    c.cpu_millis,
                    p.free_memory_mib,
                    c.memory_mib,
                    gpus.join(","),
                    p.free_gpus,
                    p.stake,
                    p.live_leases.len(),
                    p.leases_completed,
                    p.leases_failed,
                    p.profile.endpoint
                );
                println!("      rates {}", quote::rates_text(&p.profile.rates));
            }
            Ok(())
        }
        MarketCmd::Orders { all, conn } => {
            let list = client(&conn)
                .orders(&OrderFilter {
                    tenant: None,
                    open_only: !all,
                    limit: None,
                })
                .await?;
            if conn.json {
                return print_json(&list);
            }
            println!("{} order(s) at height {}", list.orders.len(), list.height);
            for o in &list.orders {
                println!(
                    "  {:>5}  {:<20} {:<9} max {} usd/h  deposit {}  bids {}  tenant {}",
                    o.id.0,
                    o.terms.name,
                    format!("{:?}", o.state).to_lowercase(),
                    o.terms.max_price_per_hour,
                    o.terms.deposit,
                    o.bids.len(),
                    o.tenant.short()
                );
            }
            Ok(())
        }
    }
}
