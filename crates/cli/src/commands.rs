//! The subcommands: demo, dev, job, wallet, market.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gpunet_client::{KeyFile, NodeClient, OrderFilter, ProviderClient};
use gpunet_protocol::jobspec::JobSpec;
use gpunet_protocol::{Address, Amount, Denom, Msg, OrderId};
use serde_json::json;

use crate::Conn;
use crate::jobs::{self, Followed};
use crate::outcome::{self, Ending};
use crate::progress::Progress;
use crate::quote;
use crate::running;
use gpunet_devnet::{self as devnet, DevNet, DevOptions};

const TX_TIMEOUT: Duration = Duration::from_secs(30);

/// How `job submit --wait`, `job wait`, `job follow` and `demo` exit; see `outcome`.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 the job completed with exit code 0; 1 gpunet \
itself failed (arguments, spec, network); 2 the job's command exited nonzero; 3 a limit or the \
provider ended it (timed_out, out_of_memory, disk_exceeded, insufficient_funds, \
max_duration_reached, start_failed, image_unavailable, manifest_rejected, start_timeout); 4 it \
was cancelled; 5 it never ran (the order expired); 130 interrupted by Ctrl-C, the order left as \
it is. --json prints end_reason, exit_code and log_tail.";

#[derive(Subcommand)]
pub enum JobCmd {
    /// Submit a job spec (YAML). Waits until a provider runs it; with --wait, until it ends,
    /// printing its log as it comes, then how it ended and the bill.
    ///
    /// Ctrl-C while waiting leaves the order as it is and prints how to re-attach
    /// (`gpunet job wait ID`) or cancel.
    ///
    /// Example: gpunet job submit examples/jobs/hello.yaml --wait
    ///
    /// Before signing, it checks the deposit pays pricing.max_per_hour for the whole
    /// limits.max_duration, and that some provider registered now could run the spec; if none
    /// could, it prints why (and what to change) and submits nothing.
    #[command(after_help = EXIT_CODES_HELP)]
    Submit {
        /// The job spec, a YAML file; examples/jobs/README.md explains each field.
        #[arg(
            value_name = "SPEC.yaml",
            required_unless_present = "from_sdl",
            conflicts_with = "from_sdl"
        )]
        spec: Option<PathBuf>,
        /// Submit an Akash SDL deployment instead, converted as `gpunet sdl convert` does (with
        /// its --max-per-hour, --deposit, --max-duration and --lossy).
        #[arg(long, value_name = "DEPLOY.yaml")]
        from_sdl: Option<PathBuf>,
        #[command(flatten)]
        sdl: SdlArgs,
        /// Follow the job to its end, print its log, how it ended and the bill; exit with the
        /// job's exit code class (below).
        #[arg(long)]
        wait: bool,
        /// Submit even though no provider registered now could run it (one may join later;
        /// the order waits its time-to-live, then the deposit is refunded).
        #[arg(long)]
        submit_anyway: bool,
        /// Submit even though the deposit cannot pay the max price for the whole max duration:
        /// the job is paused when the deposit runs out and ends (insufficient_funds) unless
        /// topped up with `gpunet job top-up`.
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
        /// The job spec to price, a YAML file; nothing is submitted.
        #[arg(value_name = "SPEC.yaml")]
        spec: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Wait for a submitted job to end (re-attach after Ctrl-C), then print how it ended and
    /// the bill; exits like `job submit --wait`.
    ///
    /// Example: gpunet job wait 3 && echo "job 3 succeeded"
    #[command(after_help = EXIT_CODES_HELP)]
    Wait {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Like `job wait`, printing the job's log as it comes.
    ///
    /// Example: gpunet job follow 3
    #[command(after_help = EXIT_CODES_HELP)]
    Follow {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a job's state, lease, provider and bill.
    ///
    /// Example: gpunet job status 3
    Status {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a job's logs from its provider. With --follow, keep printing as the log grows,
    /// and warn (on stderr) when the job's escrow runs low, runs out (the job pauses) or is
    /// topped up. With --json, one object {job, lease, log, finished}; with --json --follow,
    /// one such object per line as the log grows, and {job, lease, notice, detail} for each
    /// escrow warning (notice: escrow_low, lease_paused, lease_resumed).
    ///
    /// Example: gpunet job logs 3 --follow
    Logs {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        /// Keep printing until the job ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a command inside a running job's container, as the job runs (its user, limits and
    /// isolation), and print what it wrote; exits with the command's exit code. Only the job's
    /// tenant may; the command and its output travel sealed, and the provider notes every exec
    /// in the job's log. No shell is implied: give `sh -c '...'` for one. Container jobs only
    /// for now. With --json, one object {job, lease, exit_code, stdout, stderr, truncated,
    /// timed_out}.
    ///
    /// Example: gpunet job exec 3 --service db -- sh -c 'ls -l /data'
    Exec {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        /// Which of the job's `services` to run it in (its first replica); the job's own run
        /// by the job's name, or by leaving this out.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// Seconds to wait for the command (1 to 600); past that, what it wrote so far is
        /// printed and it is left to end with the job.
        #[arg(long, default_value_t = 60)]
        timeout: u32,
        /// The program and its arguments, after `--`.
        #[arg(required = true, last = true)]
        command: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Open an interactive shell (or COMMAND) inside a running container job, as the job runs
    /// (its user, limits and isolation), with a terminal when stdin is one; exits with the
    /// command's exit code. Only the job's tenant may; what is typed and shown travels sealed
    /// under a key fresh for each shell, and the provider notes the shell in the job's log.
    /// With input from a pipe, input is sent as it comes and its end ends the shell's input.
    ///
    /// Example: gpunet job shell 3 --service db
    Shell {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        /// Which of the job's `services` to open it in (its first replica); the job's own run
        /// by the job's name, or by leaving this out.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// The program and its arguments, after `--` (default /bin/sh).
        #[arg(last = true)]
        command: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Download a job's outputs (what it wrote under $GPUNET_OUTPUTS, for a spec with
    /// `outputs: true`), verifying each file's digest. A job whose spec names its own bucket
    /// (`storage:`) has them there, sealed to you: they are read from the bucket with the
    /// credentials of the spec as submitted (kept in your job journal), else from the provider.
    ///
    /// Example: gpunet job output 3 --to out/
    Output {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        /// Directory to write the files into (created if missing), keeping their relative paths.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel a job: an open order is refunded in full; a running one pays for time used.
    ///
    /// Example: gpunet job cancel 3
    Cancel {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Dispute a spot-checked job's unchecked result (its check was not drawn), within the
    /// network's dispute window: the job is rerun on another provider from its escrow and the
    /// results compared, a referee deciding if they disagree. The loser pays: a wrong provider
    /// is slashed, part of it to you; if the provider was right, you have paid for the reruns.
    /// Then waits for the verdict as `job wait` does, handing the rerun the journaled manifest.
    ///
    /// Example: gpunet job dispute 3
    Dispute {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Add usd to a job's escrow, so it keeps running (a paused job resumes). Anyone may top
    /// up any job; `job status` shows how long the escrow lasts.
    ///
    /// Example: gpunet job top-up 3 2.5
    #[command(name = "top-up")]
    TopUp {
        /// The job's id (its order id), as `job submit` and `job list` print it.
        id: OrderId,
        /// Usd to add, e.g. 2.5.
        amount: gpunet_protocol::Amount,
        #[command(flatten)]
        conn: Conn,
    },
    /// List your jobs (the signing key's orders), newest first.
    ///
    /// Example: gpunet job list --json
    List {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum WalletCmd {
    /// Create a new key file.
    ///
    /// Example: gpunet wallet new --out ~/.gpunet/me.json
    New {
        /// Where to write the key file (created 0600; an existing file is not overwritten).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// Print JSON instead of text.
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
    /// With --verify the balance is not taken on the node's word: the node sends a Merkle proof
    /// of the account against the state root of the latest block, and the CLI checks it (and
    /// that the root is the one the block records) before printing anything.
    ///
    /// Example: gpunet wallet balance gpn1… --verify --json
    Balance {
        /// An account address (gpn1…). Default: the signing key's.
        #[arg(value_name = "ADDRESS")]
        address: Option<Address>,
        /// Check the node's Merkle proof of the account before showing it.
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// The transactions of an address (default: the signing key's), newest first, back to
    /// genesis: those it signed, applied or rejected (a rejected one changed nothing; its
    /// RESULT names the rejection), and the transfers that paid it. One page at a time; when
    /// older ones remain, the last line names the `--after CURSOR` that reads on. `--json`
    /// prints the page as the node gives it: the rows (hash, block, position, time, kind,
    /// transfer, state, rejection) and `next`.
    ///
    /// Example: gpunet wallet history
    ///
    /// Example: gpunet wallet history gpn1… --limit 10 --json
    History {
        /// An account address (gpn1…). Default: the signing key's.
        #[arg(value_name = "ADDRESS")]
        address: Option<Address>,
        /// Transactions per page, 1 to 200 (the node's default is 50).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=gpunet_api::node::MAX_ACCOUNT_TXS_LIMIT as i64))]
        limit: Option<u32>,
        /// Start after this cursor: the `next` an earlier page printed (older transactions).
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Send money.
    ///
    /// Example: gpunet wallet transfer gpn1… 12.5 --denom usd
    Transfer {
        /// The receiving address (gpn1…).
        #[arg(value_name = "TO")]
        to: Address,
        /// How much, in whole units with up to 6 decimals, e.g. 12.5.
        amount: Amount,
        /// Which money: usd (pays for jobs) or gpn (fees and provider stake).
        #[arg(long, default_value = "usd", value_name = "usd|gpn")]
        denom: Denom,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum MarketCmd {
    /// Registered providers with their capacity, what is free, and their posted rates (usd per
    /// core-hour, GiB-hour of memory and GPU-hour, by model where they price one apart), and
    /// what the network knows of them: reputation (0–1; 0.5 for a newcomer; matching ranks a
    /// bid at price × (3 − reputation) / 2), verified runs per GPU class and probation, stake
    /// lost to slashes, and a jail in force (ADR 0010); and, on a network that challenges
    /// hardware claims, whether the listing passed its challenges (ADR 0009).
    ///
    /// Example: gpunet market providers --json
    Providers {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        conn: Conn,
    },
    /// What the market has been paying: the price index, per GPU model the median price per
    /// GPU-hour (a lease's price over its GPU count) of the newest 200 leases, and for leases
    /// without GPUs (cpu) per core-hour, with the lowest, the highest and the newest fill. A
    /// median, so one odd fill does not move it. The node computes it from the chain's leases;
    /// nothing on chain decides on it. Use it to set `max_price_per_hour`; `gpunet job quote`
    /// says what the providers now listed would ask for one job.
    ///
    /// Example: gpunet market prices --json
    Prices {
        #[command(flatten)]
        conn: Conn,
    },
    /// Orders on the market (open ones unless --all), newest first.
    ///
    /// Example: gpunet market orders --all --limit 20
    Orders {
        /// Every order, not only open ones.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Which page of a list to show: one page (`--limit`, from `--after`), or every page.
#[derive(Debug, Clone, clap::Args)]
pub struct PageArgs {
    /// Entries per page, 1 to 1000 (the node's default is 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=gpunet_api::node::MAX_PAGE_LIMIT as i64))]
    pub limit: Option<u32>,
    /// Start after this cursor: the `next` an earlier page printed.
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
    /// Read every page, not only one (on a large network, a long list).
    #[arg(long)]
    pub all_pages: bool,
}

impl PageArgs {
    fn limit(&self) -> Option<usize> {
        self.limit.map(|n| n as usize)
    }

    /// The orders `tenant` (all tenants if `None`; only open ones if `open_only`) asks for: one
    /// page from `--after`, or every page with `--all-pages`.
    async fn orders(
        &self,
        client: &NodeClient,
        tenant: Option<Address>,
        open_only: bool,
    ) -> Result<gpunet_api::node::OrderList> {
        let filter = OrderFilter {
            tenant,
            open_only,
            limit: self.limit(),
            after: self.after.clone(),
        };
        Ok(if self.all_pages {
            client.orders_all(&filter).await?
        } else {
            client.orders(&filter).await?
        })
    }
}

/// After a one-page text listing: how to read on, when there is more.
fn print_more(next: Option<&str>) {
    if let Some(next) = next {
        println!("more: pass --after {next} for the next page, or --all-pages for all");
    }
}

/// Where the signing key is: --key, or the running dev network's tenant key.
fn key_path(conn: &Conn) -> Result<PathBuf> {
    match &conn.key {
        Some(p) => Ok(p.clone()),
        None => running::target(conn)?.tenant_key.context(
            "no signing key: pass --key PATH (or set GPUNET_KEY), or start `gpunet dev` for a funded one",
        ),
    }
}

/// `job output`: from the job's own bucket when its spec named one (the journaled spec holds
/// the bucket and the credentials), else — or when the bucket has no listing for the lease —
/// from the provider.
async fn outputs_of(
    client: &NodeClient,
    k: &KeyFile,
    order: &gpunet_api::node::OrderView,
    lease: &gpunet_api::node::LeaseView,
    to: &Path,
    conn: &Conn,
) -> Result<(gpunet_protocol::Hash, Vec<(String, Vec<u8>)>)> {
    let status = client.status().await?;
    let storage = jobs::load_submission(
        &jobs::journal_dir(&key_path(conn)?, &status.chain_id),
        order,
    )
    .and_then(|sub| sub.spec.storage);
    if let Some(storage) = storage {
        match jobs::fetch_outputs_from_store(k, &storage, &status.chain_id, lease, Some(to)).await?
        {
            Some(found) => return Ok(found),
            None => eprintln!(
                "gpunet: job {}'s bucket {} holds no outputs of lease {} (its provider kept them; \
                 the job's log says why); fetching them from the provider",
                order.id, storage.s3.bucket, lease.id
            ),
        }
    }
    jobs::fetch_outputs(k, lease, Some(to)).await
}

/// The job journal of `conn`'s key on the node's chain.
async fn journal(conn: &Conn, client: &NodeClient) -> Result<PathBuf> {
    let status = client.status().await?;
    Ok(jobs::journal_dir(&key_path(conn)?, &status.chain_id))
}

fn key(conn: &Conn) -> Result<KeyFile> {
    let path = key_path(conn)?;
    KeyFile::load(&path).with_context(|| {
        format!(
            "no signing key at {}: pass --key PATH (or set GPUNET_KEY), or start `gpunet dev` for a funded one",
            path.display()
        )
    })
}

fn client(conn: &Conn) -> Result<NodeClient> {
    Ok(NodeClient::new(&running::target(conn)?.api))
}

fn signed_client(conn: &Conn) -> Result<(NodeClient, KeyFile)> {
    let k = key(conn)?;
    Ok((client(conn)?.with_signer(k.clone()), k))
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn demo(
    spec_path: Option<PathBuf>,
    keep_running: bool,
    json_out: bool,
    block_ms: u64,
) -> Result<()> {
    let spec = match &spec_path {
        Some(p) => jobs::read_spec(p)?,
        None => gpunet_protocol::jobspec::JobSpec::parse_yaml(devnet::HELLO_SPEC)
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
    let started = Instant::now();
    let result = async {
        let (id, submitted) =
            jobs::create_order(&client, &net.tenant, &spec, None, &progress).await?;
        outcome::follow_to_end(
            &client,
            &net.tenant,
            id,
            Some(&submitted),
            started,
            &progress,
            false,
        )
        .await
    }
    .await;
    progress.finish();
    let (followed, ending) = match result {
        Ok((Some(f), ending)) => (f, ending),
        Ok((None, ending)) => {
            net.stop().await;
            let _ = std::fs::remove_dir_all(&home);
            if json_out {
                print_json(&ending)?;
            } else {
                ending.print_text(true);
            }
            return ending.exit();
        }
        Err(e) => {
            net.stop().await;
            let _ = std::fs::remove_dir_all(&home);
            return Err(e);
        }
    };
    let report = demo_report(&client, &net.tenant, &followed, &ending, json_out).await;
    if keep_running {
        println!();
        println!("The network keeps running (Ctrl-C to stop).");
        println!("Dashboard: {}", dashboard_url(&net.api));
        println!("From another terminal:");
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
    progress.status("waiting for the provider's registration");
    gpunet_devnet::wait_for_provider(client).await
}

/// The demo's report: outputs (of a job that completed), bill, timing; exits with the job's
/// exit code class.
async fn demo_report(
    client: &NodeClient,
    key: &KeyFile,
    f: &Followed,
    ending: &Ending,
    json_out: bool,
) -> Result<()> {
    let lease = f.lease.as_ref().context("the job ended without a lease")?;
    let status = client.status().await?;
    let job_status = &ending.end_reason;
    let succeeded = ending.outcome == outcome::JobExit::Completed;
    let bill = jobs::bill(&f.order, lease);
    let (digest, files) = if succeeded {
        let (d, files) = jobs::fetch_outputs(key, lease, None).await?;
        (Some(d), files)
    } else {
        (None, Vec::new())
    };
    if json_out {
        let mut v = json!({
            "job_status": job_status,
            "output_digest": digest.map(|d| d.to_hex()),
            "tenant_paid": bill.tenant_paid,
            "provider_earned": bill.provider_earned,
            "protocol_fee": bill.protocol_fee,
            "refund": bill.refund,
            "submit_to_running_ms": f.submit_to_running_ms,
            "state_root": status.state_root.to_hex(),
        });
        if let Some(map) = v.as_object_mut() {
            map.extend(ending_fields(ending));
        }
        print_json(&v)?;
        return ending.exit();
    }
    println!();
    println!("job {} ({}) {}", f.order.id, f.order.terms.name, job_status);
    let Some(digest) = digest else {
        ending.print_text(true);
        jobs::print_bill(&f.order, lease);
        return ending.exit();
    };
    println!("output (digest {}):", digest.to_hex());
    for (path, bytes) in &files {
        println!("  {path} ({} bytes)", bytes.len());
        if bytes.len() <= 4096 && std::str::from_utf8(bytes).is_ok() {
            for line in String::from_utf8_lossy(bytes).lines() {
                println!("    | {line}");
            }
        }
    }
    jobs::print_bill(&f.order, lease);
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
    let net = devnet::MultiDevNet::start(opts).await?;
    let home = absolute(&net.home);
    let _registered = running::Registration::record(&running::Entry {
        pid: std::process::id(),
        home: home.clone(),
        api: net.apis[0].clone(),
        tenant_key: devnet::tenant_key_path(&home),
    })?;
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
    println!("  dashboard      {}", dashboard_url(&net.apis[0]));
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
    print_how_to_reach(&home, &net.apis[0]);
    crate::nodecmd::wait_for_stop().await;
    eprintln!("stopping…");
    net.stop().await;
    Ok(())
}

/// The web dashboard every node serves at the root of its API address.
fn dashboard_url(api: &str) -> String {
    format!("{}/", api.trim_end_matches('/'))
}

/// `home` absolute, so the lines printed for another terminal work from any directory.
fn absolute(home: &Path) -> PathBuf {
    std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf())
}

/// The end of `gpunet dev`'s banner: how another terminal reaches this network.
fn print_how_to_reach(home: &Path, api: &str) {
    let others = running::running()
        .into_iter()
        .filter(|e| e.pid != std::process::id())
        .count();
    println!();
    if others == 0 {
        println!("Submit a job from another terminal (gpunet finds this network by itself):");
    } else {
        println!(
            "{others} other gpunet dev network(s) run as well, so name this one first \
             (GPUNET_HOME below):"
        );
    }
    println!("  gpunet job submit examples/jobs/hello.yaml --wait     # in the gpunet checkout");
    println!("To name this network (scripts, or several dev networks at once):");
    println!("  export GPUNET_HOME={}", home.display());
    println!("or name its API and key directly:");
    println!("  export GPUNET_API={api}");
    println!(
        "  export GPUNET_KEY={}",
        devnet::tenant_key_path(home).display()
    );
    println!("Stop with Ctrl-C; start again with the same --home to carry on.");
}

pub async fn dev(home: PathBuf, listen: SocketAddr, block_ms: u64) -> Result<()> {
    let net = DevNet::start(DevOptions {
        home: home.clone(),
        listen,
        block_ms,
    })
    .await?;
    let home = absolute(&home);
    let _registered = running::Registration::record(&running::Entry {
        pid: std::process::id(),
        home: home.clone(),
        api: net.api.clone(),
        tenant_key: devnet::tenant_key_path(&home),
    })?;
    let status = NodeClient::new(&net.api).status().await?;
    println!(
        "gpunet dev network running (chain {} at height {})",
        status.chain_id, status.height
    );
    println!("  API            {}", net.api);
    println!("  dashboard      {}", dashboard_url(&net.api));
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
    print_how_to_reach(&home, &net.api);
    crate::nodecmd::wait_for_stop().await;
    eprintln!("stopping…");
    net.stop().await;
    Ok(())
}

/// How long the escrow pays the running lease for, or that it is paused.
fn escrow_lasts(order: &gpunet_api::node::OrderView) -> String {
    use gpunet_api::node::LeaseState;
    let Some(l) = &order.lease else {
        return String::new();
    };
    match l.state {
        LeaseState::Paused => format!(
            " (ran out: the job is paused since height {}; `gpunet job top-up {} AMOUNT` resumes it)",
            l.paused_since_height.unwrap_or_default(),
            order.id
        ),
        LeaseState::Running if !l.price_per_hour.is_zero() => {
            let secs =
                u128::from(order.escrow.micros()) * 3_600 / u128::from(l.price_per_hour.micros());
            format!(
                " (pays about {secs} s more at {} usd/hour)",
                l.price_per_hour
            )
        }
        _ => String::new(),
    }
}

/// Every attempt of a job: provider, start, end, end reason and cost, and the total.
fn print_attempts(order: &gpunet_api::node::OrderView) {
    println!(
        "  attempts ({} of at most {}):",
        order.attempts.len(),
        order.terms.recovery.max_attempts
    );
    let mut total = gpunet_protocol::Amount::ZERO;
    for a in &order.attempts {
        let reason = a
            .end_reason
            .map(jobs::end_reason_shown)
            .unwrap_or_else(|| format!("{:?}", a.state).to_lowercase());
        println!(
            "    #{} lease {} on {}: {} s billed, {} usd: {reason}",
            a.attempt,
            a.id,
            a.provider.short(),
            a.billed_ms / 1_000,
            a.paid
        );
        total = total
            .checked_add(a.paid)
            .unwrap_or(gpunet_protocol::Amount::MAX);
    }
    println!("    total paid {total} usd");
}

/// `job submit`: the order, then (with `wait`) the job to its end; Ctrl-C leaves the order
/// and says how to re-attach.
/// Submits `spec`, read from (or converted from) the file at `spec_path`, beside which its
/// inputs are named.
async fn submit(
    spec: JobSpec,
    spec_path: &Path,
    wait: bool,
    submit_anyway: bool,
    allow_short_deposit: bool,
    conn: &Conn,
) -> Result<()> {
    let (client, key) = signed_client(conn)?;
    quote::preflight(
        &client,
        &spec.order_terms(),
        submit_anyway,
        allow_short_deposit,
    )
    .await?;
    let progress = Progress::new(conn.json);
    let started = Instant::now();
    // Inputs are named relative to the spec file.
    let base = spec_path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    let (order_id, spec) = match outcome::or_interrupt(jobs::create_order(
        &client, &key, &spec, base, &progress,
    ))
    .await
    {
        Some(created) => created.inspect_err(|_| progress.finish())?,
        None => return Err(outcome::interrupted(&client, &key, None, conn, &progress).await),
    };
    let run = async {
        // Journaled, so `job wait` and `job follow` can hand a retry its manifest later. Inside
        // the interruptible part: Ctrl-C from here on leaves the order and says so.
        match journal(conn, &client).await {
            Ok(dir) => {
                if let Err(e) = jobs::save_submission(&dir, order_id, &spec) {
                    progress.stage(&format!(
                        "warning: {e:#}; a retry of this job on another provider needs this command running"
                    ));
                }
            }
            Err(e) => progress.stage(&format!("warning: cannot journal the job: {e:#}")),
        }
        if wait {
            outcome::follow_to_end(
                &client,
                &key,
                order_id,
                Some(&spec),
                started,
                &progress,
                !conn.json,
            )
            .await
            .map(|(f, ending)| (f, Some(ending)))
        } else {
            let f = jobs::follow(
                &client,
                &key,
                order_id,
                Some(&spec),
                false,
                started,
                &progress,
            )
            .await?;
            // A job can end before it is seen running (an image that cannot be had).
            let ending = f
                .lease
                .as_ref()
                .filter(|l| l.end_reason.is_some())
                .map(|l| Ending::of_lease(order_id, l, outcome::LogTail::default()));
            Ok((Some(f), ending))
        }
    };
    let (followed, ending) = match outcome::or_interrupt(run).await {
        Some(r) => r.inspect_err(|_| progress.finish())?,
        None => {
            return Err(outcome::interrupted(&client, &key, Some(order_id), conn, &progress).await);
        }
    };
    progress.finish();
    let lease = followed.as_ref().and_then(|f| f.lease.as_ref());
    if conn.json {
        let mut v = json!({
            "job": order_id,
            "state": lease.map(|l| l.state),
            "submit_to_running_ms": followed.as_ref().and_then(|f| f.submit_to_running_ms),
            "bill": followed.as_ref().and_then(|f| Some(jobs::bill(&f.order, f.lease.as_ref()?))),
        });
        if let (Some(e), Some(map)) = (&ending, v.as_object_mut()) {
            map.extend(ending_fields(e));
        }
        print_json(&v)?;
        return ending.map_or(Ok(()), |e| e.exit());
    }
    println!("job {order_id} submitted");
    match (&ending, lease) {
        (Some(e), l) => {
            if let (Some(l), Some(f)) = (l, &followed) {
                jobs::print_bill(&f.order, l);
            }
            // The log was printed as it came; repeat its end only when it was not.
            e.print_text(!wait);
            e.exit()
        }
        (None, Some(l)) => {
            println!(
                "running on {}; follow with `gpunet job follow {order_id}`, or wait for its end \
                 with `gpunet job wait {order_id}`",
                l.provider.short()
            );
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// An ending's fields, for a command's JSON object.
fn ending_fields(e: &Ending) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(e) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// `job wait` and (`stream_log`) `job follow`: re-attach to a submitted job until it ends.
async fn wait_for(id: OrderId, stream_log: bool, conn: &Conn) -> Result<()> {
    let client = client(conn)?;
    let key = key(conn)?;
    let progress = Progress::new(conn.json);
    let run = async {
        // The journaled manifest, so a retry on a new provider can be handed it.
        let submission = match (journal(conn, &client).await, client.order(id).await) {
            (Ok(dir), Ok(order)) => jobs::load_submission(&dir, &order),
            _ => None,
        };
        outcome::follow_to_end(
            &client,
            &key,
            id,
            submission.as_ref(),
            Instant::now(),
            &progress,
            stream_log && !conn.json,
        )
        .await
    };
    let (followed, ending) = match outcome::or_interrupt(run).await {
        Some(r) => r.inspect_err(|_| progress.finish())?,
        None => return Err(outcome::interrupted(&client, &key, Some(id), conn, &progress).await),
    };
    progress.finish();
    let lease = followed.as_ref().and_then(|f| f.lease.as_ref());
    if conn.json {
        let mut v = json!({
            "bill": followed.as_ref().and_then(|f| Some(jobs::bill(&f.order, f.lease.as_ref()?))),
        });
        if let Some(map) = v.as_object_mut() {
            map.extend(ending_fields(&ending));
        }
        print_json(&v)?;
        return ending.exit();
    }
    if let (Some(l), Some(f)) = (lease, &followed) {
        jobs::print_bill(&f.order, l);
    }
    ending.print_text(!stream_log);
    ending.exit()
}

pub async fn job(cmd: JobCmd) -> Result<()> {
    match cmd {
        JobCmd::Submit {
            spec,
            from_sdl,
            sdl,
            wait,
            submit_anyway,
            allow_short_deposit,
            conn,
        } => {
            let (spec, path) = match (spec, from_sdl) {
                (Some(path), None) => {
                    if sdl.is_set() {
                        bail!(
                            "--max-per-hour, --deposit, --max-duration and --lossy go with \
                             --from-sdl; a gpunet spec says its own pricing and limits"
                        );
                    }
                    (jobs::read_spec(&path)?, path)
                }
                (None, Some(path)) => {
                    let converted = sdl.convert(&path)?;
                    for u in &converted.unmapped {
                        eprintln!("gpunet: left out {}: {}", u.path, u.why);
                    }
                    (converted.spec, path)
                }
                _ => bail!("give a job spec or --from-sdl DEPLOY.yaml, not both"),
            };
            submit(spec, &path, wait, submit_anyway, allow_short_deposit, &conn).await
        }
        JobCmd::Quote { spec, conn } => {
            let spec = jobs::read_spec(&spec)?;
            let q = quote::quote(&client(&conn)?, &spec.order_terms()).await?;
            if conn.json {
                return print_json(&q);
            }
            quote::print_quote(&spec.name, &q);
            Ok(())
        }
        JobCmd::Wait { id, conn } => wait_for(id, false, &conn).await,
        JobCmd::Follow { id, conn } => wait_for(id, true, &conn).await,
        JobCmd::Status { id, conn } => {
            let client = client(&conn)?;
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
            println!("  escrow   {} usd{}", order.escrow, escrow_lasts(&order));
            println!("  bids     {}", order.bids.len());
            if let Some(v) = &order.verification {
                println!("  verified {}", verification_line(v));
            }
            if order.attempts.len() > 1
                || order.state == gpunet_api::node::OrderState::Open && !order.attempts.is_empty()
            {
                print_attempts(&order);
            }
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
                    for e in &w.service_endpoints {
                        let who = match e.replica {
                            Some(r) => format!("{}-{r}", e.service),
                            None => e.service.clone(),
                        };
                        println!("  endpoint {} ({who})", e.url);
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
                jobs::print_bill(&order, l);
            }
            Ok(())
        }
        JobCmd::Exec {
            id,
            service,
            timeout,
            command,
            conn,
        } => {
            let client = client(&conn)?;
            let k = key(&conn)?;
            let (lease, provider_key) =
                jobs::running_lease(&client, id, "to run a command in").await?;
            let request = gpunet_api::provider::ExecRequest {
                argv: command,
                timeout_secs: timeout,
                service,
            };
            request
                .validate()
                .map_err(|why| anyhow::anyhow!("cannot run that: {why}"))?;
            let result = ProviderClient::new(&lease.provider_endpoint, k.clone())
                .exec(lease.id, &provider_key, &k.output_secret(), &request)
                .await?;
            let (stdout, stderr) = result
                .streams()
                .context("the provider's agent sent output that is not hex")?;
            if conn.json {
                println!(
                    "{}",
                    json!({
                        "job": id,
                        "lease": lease.id,
                        "exit_code": result.exit_code,
                        "stdout": String::from_utf8_lossy(&stdout),
                        "stderr": String::from_utf8_lossy(&stderr),
                        "truncated": result.truncated,
                        "timed_out": result.timed_out,
                    })
                );
            } else {
                use std::io::Write;
                std::io::stdout().write_all(&stdout)?;
                std::io::stderr().write_all(&stderr)?;
                if result.truncated {
                    eprintln!("gpunet: the output was cut at 1 MiB per stream");
                }
                if result.timed_out {
                    eprintln!(
                        "gpunet: still running after {timeout} s; it was left to end with the job"
                    );
                }
            }
            match result.exit_code {
                Some(0) => Ok(()),
                Some(code) => std::process::exit(i32::try_from(code).unwrap_or(1).clamp(1, 255)),
                None => std::process::exit(124),
            }
        }
        JobCmd::Shell {
            id,
            service,
            command,
            conn,
        } => {
            let client = client(&conn)?;
            let k = key(&conn)?;
            let (lease, provider_key) =
                jobs::running_lease(&client, id, "to open a shell in").await?;
            let argv = if command.is_empty() {
                vec!["/bin/sh".to_owned()]
            } else {
                command
            };
            let provider = ProviderClient::new(&lease.provider_endpoint, k.clone());
            let code = crate::shell::run(&provider, lease.id, &provider_key, argv, service).await?;
            match code {
                Some(0) => Ok(()),
                Some(code) => std::process::exit(i32::try_from(code).unwrap_or(1).clamp(1, 255)),
                None => {
                    eprintln!("gpunet: the provider could not tell the command's exit code");
                    std::process::exit(1)
                }
            }
        }
        JobCmd::Logs { id, follow, conn } => {
            let client = client(&conn)?;
            let k = key(&conn)?;
            let order = client.order(id).await?;
            let lease = order
                .lease
                .or_else(|| order.attempts.last().cloned())
                .context("the job has no lease yet, so no logs; check `gpunet job status`")?;
            let object = |log: &str, finished: bool| json!({"job": id, "lease": lease.id, "log": log, "finished": finished});
            if follow {
                // The escrow's warnings since the lease began come beside the log: on stderr
                // as text; as objects of their own in the JSON stream.
                let escrow = jobs::watch_escrow(
                    &client,
                    id,
                    Some(lease.created_height),
                    |name, notice| {
                        if conn.json {
                            println!(
                                "{}",
                                json!({"job": id, "lease": lease.id, "notice": name, "detail": notice})
                            );
                        } else {
                            eprintln!("gpunet: {name}: {notice}");
                        }
                    },
                );
                // One object per line as the log grows: a stream a script can read line by line.
                let logs = jobs::read_logs(&k, &lease, true, |text| {
                    if !conn.json {
                        print!("{text}");
                    } else if !text.is_empty() {
                        println!("{}", object(text, false));
                    }
                });
                tokio::pin!(escrow, logs);
                loop {
                    tokio::select! {
                        r = &mut logs => { r?; break; }
                        () = &mut escrow => {}
                    }
                }
                if conn.json {
                    println!("{}", object("", true));
                }
                return Ok(());
            }
            if !conn.json {
                return jobs::read_logs(&k, &lease, false, |text| print!("{text}")).await;
            }
            let mut log = String::new();
            jobs::read_logs(&k, &lease, false, |text| log.push_str(text)).await?;
            print_json(&object(&log, lease.end_reason.is_some()))
        }
        JobCmd::Output { id, to, conn } => {
            let client = client(&conn)?;
            let k = key(&conn)?;
            let order = client.order(id).await?;
            let lease = order
                .lease
                .clone()
                .or_else(|| order.attempts.last().cloned())
                .context("the job has no lease yet, so no outputs")?;
            let (digest, files) = outputs_of(&client, &k, &order, &lease, &to, &conn).await?;
            if files.is_empty() {
                // The chain does not say whether the spec asked for outputs (the manifest is
                // private), so say both ways this happens.
                bail!(
                    "job {id} has no outputs, so nothing was written to {}: either its spec did \
                     not ask for them (`outputs: true` collects what the job writes under \
                     $GPUNET_OUTPUTS) or the job wrote nothing there; its log: `gpunet job logs {id}`",
                    to.display()
                );
            }
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
        JobCmd::TopUp { id, amount, conn } => {
            let (client, _) = signed_client(&conn)?;
            let view = client
                .send_and_wait(Msg::TopUpOrder { order: id, amount }, TX_TIMEOUT)
                .await?;
            if conn.json {
                return print_json(&view);
            }
            let resumed = view
                .events
                .iter()
                .any(|e| matches!(e, gpunet_protocol::Event::LeaseResumed { .. }));
            let escrow = view.events.iter().find_map(|e| match e {
                gpunet_protocol::Event::EscrowToppedUp { escrow, .. } => Some(*escrow),
                _ => None,
            });
            println!(
                "job {id}: {amount} usd added; escrow now {} usd{}",
                escrow.map(|e| e.to_string()).unwrap_or_default(),
                if resumed {
                    "; the paused job resumes"
                } else {
                    ""
                }
            );
            Ok(())
        }
        JobCmd::Dispute { id, conn } => {
            let (client, _) = signed_client(&conn)?;
            client
                .send_and_wait(Msg::Dispute { order: id }, TX_TIMEOUT)
                .await?;
            if !conn.json {
                println!("job {id}: disputed; it is rerun on another provider and compared");
            }
            wait_for(id, false, &conn).await
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
        JobCmd::List { page, conn } => {
            let k = key(&conn)?;
            let list = page
                .orders(&client(&conn)?, Some(k.address()), false)
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
            print_more(list.next.as_deref());
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
        WalletCmd::Balance {
            address,
            verify,
            conn,
        } => {
            let addr = match address {
                Some(a) => a,
                None => key(&conn)?.address(),
            };
            if verify {
                let v = client(&conn)?.verified_account(&addr).await?;
                let account = v.account.clone().unwrap_or_default();
                if conn.json {
                    return print_json(&serde_json::json!({
                        "address": addr,
                        "height": v.height,
                        "verified": true,
                        "state_root": v.root,
                        "exists": v.account.is_some(),
                        "balances": account.balances,
                        "nonce": account.nonce,
                        "unbonding": account.unbonding,
                    }));
                }
                println!("{addr} at height {} (verified)", v.height);
                println!("  usd  {}", account.balances.usd);
                println!("  gpn  {}", account.balances.gpn);
                println!("  nonce {}", account.nonce);
                println!(
                    "  proven against state root {} of block {}{}",
                    v.root,
                    v.height,
                    if v.account.is_none() {
                        " (the account does not exist yet)"
                    } else {
                        ""
                    }
                );
                return Ok(());
            }
            let view = client(&conn)?.account(&addr).await?;
            if conn.json {
                return print_json(&view);
            }
            println!("{} at height {}", view.address, view.height);
            println!("  usd  {}", view.balances.usd);
            println!("  gpn  {}", view.balances.gpn);
            for u in &view.unbonding {
                println!(
                    "  gpn  {} unbonding (provider stake), back at height {}",
                    u.amount, u.release_height
                );
            }
            println!("  next nonce {}", view.next_nonce);
            Ok(())
        }
        WalletCmd::History {
            address,
            limit,
            after,
            conn,
        } => {
            let addr = match address {
                Some(a) => a,
                None => key(&conn)?.address(),
            };
            let page = client(&conn)?
                .account_txs(&addr, limit.map(|n| n as usize), after.as_deref())
                .await?;
            if conn.json {
                return print_json(&page);
            }
            print!("{}", history_text(&page));
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

/// `gpunet wallet history`'s text: a line of what it is, a table of the page, and how to read
/// on.
fn history_text(page: &gpunet_api::node::AccountTxList) -> String {
    use gpunet_api::node::TransferDirection;
    use std::fmt::Write as _;

    let mut out = format!(
        "{} at height {}: {} transaction{}, newest first\n",
        page.address,
        page.height,
        page.txs.len(),
        if page.txs.len() == 1 { "" } else { "s" },
    );
    if page.txs.is_empty() {
        out.push_str("  none");
        out.push_str(if page.next.is_none() {
            "\n"
        } else {
            " on this page\n"
        });
    } else {
        let _ = writeln!(
            out,
            "{:>8}  {:<64}  {:<18} {:<24} TRANSFER",
            "BLOCK", "TX", "KIND", "RESULT"
        );
    }
    for t in &page.txs {
        let result = match t.rejection {
            None => "applied".to_owned(),
            Some(r) => format!("rejected: {}", r.name()),
        };
        let transfer = match &t.transfer {
            Some(x) if x.direction == TransferDirection::Sent => {
                format!("sent {} {} to {}", x.amount, x.denom, x.counterparty)
            }
            Some(x) => format!("received {} {} from {}", x.amount, x.denom, x.counterparty),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:>8}  {:<64}  {:<18} {:<24} {transfer}",
            t.block_height, t.tx_hash, t.kind, result
        );
    }
    if let Some(next) = &page.next {
        let _ = writeln!(out, "older: pass --after {next} for the next page");
    } else if page.base_height > 0 {
        let _ = writeln!(
            out,
            "this node holds blocks after height {} only (it began from a state snapshot); \
             ask a node that holds older blocks for older transactions",
            page.base_height
        );
    }
    out
}

/// `gpunet market prices`'s text: what it was made of, then a row per class.
fn prices_text(index: &gpunet_api::node::PriceIndexView) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "price index at height {}, from the newest {} lease(s), usd per unit-hour\n",
        index.height, index.leases_read
    );
    if index.classes.is_empty() {
        out.push_str("  no leases yet: nothing has been paid\n");
        return out;
    }
    let _ = writeln!(
        out,
        "  {:<16} {:<10} {:>12} {:>12} {:>12} {:>6}  LAST",
        "CLASS", "UNIT", "MEDIAN", "LOW", "HIGH", "FILLS"
    );
    // `Amount`'s Display does not pad: widths apply to its text.
    for c in &index.classes {
        let unit = if c.unit == "core_hour" {
            "core-hour"
        } else {
            "GPU-hour"
        };
        let _ = writeln!(
            out,
            "  {:<16} {:<10} {:>12} {:>12} {:>12} {:>6}  {} at height {}",
            c.class,
            unit,
            c.median.to_string(),
            c.low.to_string(),
            c.high.to_string(),
            c.fills,
            c.last,
            c.last_height
        );
    }
    out
}

/// A provider's record as the ledger keeps it: reputation, verified runs by class (with
/// probation), slashes and jail.
fn trust_text(p: &gpunet_api::node::ProviderView, height: u64) -> String {
    let runs: Vec<String> = p
        .verified_runs
        .iter()
        .map(|c| {
            let probation = if c.on_probation { ", probation" } else { "" };
            format!("{} {}{probation}", c.class, c.runs)
        })
        .collect();
    let runs = if runs.is_empty() {
        "none yet (on probation in every class)".to_owned()
    } else {
        runs.join("; ")
    };
    let mut out = format!(
        "reputation {}.{:03}  verified runs: {runs}",
        p.reputation_ppm / 1_000_000,
        (p.reputation_ppm % 1_000_000) / 1_000
    );
    if let Some(ppm) = p.uptime.uptime_ppm {
        out.push_str(&format!(
            "  uptime under lease {}.{:01} % ({} lost)",
            ppm / 10_000,
            ppm % 10_000 / 1_000,
            p.uptime.outages
        ));
    }
    if p.uptime.silent_blocks > 0 {
        out.push_str(&format!(
            "  SILENT for {} blocks with live leases",
            p.uptime.silent_blocks
        ));
    }
    if !p.slashed.is_zero() {
        out.push_str(&format!("  slashed {} gpn", p.slashed));
    }
    if p.jailed_until_height > height {
        out.push_str(&format!("  JAILED until height {}", p.jailed_until_height));
    }
    out
}

/// Where a challenged listing's hardware claim stands; `None` when no band covers it.
fn hardware_text(h: &gpunet_api::node::HardwareView) -> Option<String> {
    if !h.challenged {
        return None;
    }
    let state = match (&h.challenge, h.proven) {
        (Some(c), _) if c.root.is_none() => {
            format!("challenge {} being computed (n = {})", c.id, c.n)
        }
        (Some(c), _) => format!("challenge {} committed, being opened", c.id),
        (None, true) => "proven".to_owned(),
        (None, false) => "unproven (it bids once a challenge passes)".to_owned(),
    };
    Some(format!(
        "hardware: {state} ({} challenge{} passed, {} failed; next from height {})",
        h.passed,
        if h.passed == 1 { "" } else { "s" },
        h.failed,
        h.next_at_height
    ))
}

pub async fn market(cmd: MarketCmd) -> Result<()> {
    match cmd {
        MarketCmd::Providers { page, conn } => {
            let client = client(&conn)?;
            let list = if page.all_pages {
                client.providers().await?
            } else {
                client
                    .providers_page(page.limit(), page.after.as_deref())
                    .await?
            };
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
                let runtimes: Vec<&str> = p.profile.runtimes.iter().map(|r| r.as_str()).collect();
                println!(
                    "      runtimes {}; containers get {} capabilities",
                    runtimes.join(", "),
                    p.profile.capabilities.as_str()
                );
                println!("      {}", trust_text(p, list.height));
                if let Some(line) = hardware_text(&p.hardware) {
                    println!("      {line}");
                }
            }
            print_more(list.next.as_deref());
            Ok(())
        }
        MarketCmd::Prices { conn } => {
            let index = client(&conn)?.market_prices().await?;
            if conn.json {
                return print_json(&index);
            }
            print!("{}", prices_text(&index));
            Ok(())
        }
        MarketCmd::Orders { all, page, conn } => {
            let list = page.orders(&client(&conn)?, None, !all).await?;
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
            print_more(list.next.as_deref());
            Ok(())
        }
    }
}

/// What an Akash SDL cannot say, for `gpunet sdl convert` and `job submit --from-sdl`.
#[derive(Args, Debug, Clone, Default)]
pub struct SdlArgs {
    /// With an SDL: the most you pay per hour, in usd. Required: SDL prices are per block in
    /// uakt, uact or IBC denoms, which have no fixed usd value.
    #[arg(long, value_name = "USD")]
    pub max_per_hour: Option<gpunet_protocol::Amount>,
    /// With an SDL: the deposit, in usd (default: one hour at --max-per-hour).
    #[arg(long, value_name = "USD")]
    pub deposit: Option<gpunet_protocol::Amount>,
    /// With an SDL: the job's max duration, e.g. 12h or 7d (default 1d; Akash leases have
    /// none).
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,
    /// With an SDL: convert even though some constructs do not map; each is still listed.
    #[arg(long)]
    pub lossy: bool,
}

impl SdlArgs {
    fn is_set(&self) -> bool {
        self.max_per_hour.is_some()
            || self.deposit.is_some()
            || self.max_duration.is_some()
            || self.lossy
    }

    /// Reads and converts the SDL at `path`.
    pub fn convert(&self, path: &Path) -> Result<gpunet_protocol::sdl::Converted> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the SDL {}", path.display()))?;
        let max_duration = self
            .max_duration
            .as_deref()
            .map(gpunet_protocol::jobspec::Seconds::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--max-duration: {e}"))?;
        let opts = gpunet_protocol::sdl::SdlOptions {
            max_per_hour: self.max_per_hour,
            deposit: self.deposit,
            max_duration,
            lossy: self.lossy,
        };
        gpunet_protocol::sdl::convert(&text, &opts)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// Akash SDL deployments.
#[derive(Subcommand)]
pub enum SdlCmd {
    /// Print the gpunet job spec an Akash SDL (2.0, 2.1) deployment converts to: its services
    /// (the first with a global port is the job's own run, the others `services` with their
    /// counts), each one's image, command, env and global ports, its compute profile (CPU,
    /// memory, storage — persistent storage it mounts as volumes —, NVIDIA GPU units, models
    /// and memory) and the region. Whatever does
    /// not map is listed on stderr by its path in the SDL, and the conversion is refused unless
    /// --lossy is given. With --json, one object {spec, unmapped: [{path, why}]}.
    ///
    /// Example: gpunet sdl convert deploy.yaml --max-per-hour 2.50 > job.yaml
    Convert {
        /// The SDL file.
        #[arg(value_name = "DEPLOY.yaml")]
        file: PathBuf,
        #[command(flatten)]
        sdl: SdlArgs,
        /// Print one JSON object instead of YAML.
        #[arg(long)]
        json: bool,
    },
}

pub fn sdl(cmd: SdlCmd) -> Result<()> {
    match cmd {
        SdlCmd::Convert { file, sdl, json } => {
            let converted = sdl.convert(&file)?;
            if json {
                let unmapped: Vec<_> = converted
                    .unmapped
                    .iter()
                    .map(|u| json!({"path": u.path, "why": u.why}))
                    .collect();
                println!("{}", json!({"spec": converted.spec, "unmapped": unmapped}));
            } else {
                for u in &converted.unmapped {
                    eprintln!("gpunet: left out {}: {}", u.path, u.why);
                }
                print!("{}", converted.yaml);
            }
            Ok(())
        }
    }
}

/// One line on where a verified job's comparison stands, for `job status`.
fn verification_line(v: &gpunet_api::node::VerificationView) -> String {
    let runs = v.runs.len();
    let wrong = v.runs.iter().filter(|r| r.wrong).count();
    let wrong = if wrong > 0 {
        format!(", {wrong} judged wrong")
    } else {
        String::new()
    };
    if let Some(outcome) = &v.outcome {
        return format!("{outcome} ({runs} run(s){wrong})");
    }
    let until = v
        .until_height
        .map(|h| format!(" until height {h}"))
        .unwrap_or_default();
    match (v.stage.as_str(), v.verifier) {
        ("judging", Some(verifier)) => format!(
            "judging: verifier {} compares the declared tensors of {runs} run(s){until}{wrong}",
            verifier
        ),
        ("disputable", _) => format!(
            "unchecked so far: the spot check was not drawn; `gpunet job dispute` it{until}"
        ),
        ("revealing", _) => format!("revealing: {runs} run(s) in, digests asked{until}{wrong}"),
        ("drawing", _) => format!("drawing whether to check it{until}"),
        _ => format!("{} of {} run(s) in{wrong}", runs, v.needed.max(1)),
    }
}
