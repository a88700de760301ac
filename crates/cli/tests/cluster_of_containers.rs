//! The network as `deploy/cluster/cluster.sh` runs it: 4 validators, 2 providers and a tenant,
//! each in its own container on a private Docker network, the image built from this build's
//! `gpunet` binary. Each test starts its own cluster (its own compose project and network):
//!
//! - a job runs end to end through the containers, and every validator has the same state root
//!   at every height;
//! - a stopped validator does not stop the others, and catches up to the same roots when it
//!   starts again;
//! - a 2–2 network partition decides nothing on either side and forks nothing; healed, the
//!   network goes on;
//! - a fifth validator, started after a few thousand blocks with an empty home, syncs its state
//!   from the others (checked against a block they signed), keeps no earlier block, and from
//!   then on commits the same roots as they do;
//! - a validator that proposes invalid blocks (the hidden `--fault invalid-proposals` flag) is
//!   refused by the others, and its forged transfer never lands;
//! - a provider's container killed mid-job (`docker kill`), and then one cut off from the
//!   network (`docker network disconnect`): each time the chain ends the lease `provider_lost`,
//!   paid only to its last proof of life, and the job completes on the other provider from its
//!   last checkpoint; the cut-off provider, reconnected, stops its orphaned workload at once and
//!   earns nothing more for it;
//! - a two-service job on provider-0 (container jobs on this machine's engine) is reached from
//!   the tenant's side at the endpoints `job status` prints, by port and by name through the
//!   provider's proxy; what it does not expose is out of reach.
//!
//! The tests take turns (one cluster at a time: they share 2 cores in CI). Without a Docker
//! Engine and docker-compose each test prints "skipped: …" and passes — unless
//! `GPUNET_REQUIRE_DOCKER=1` (set by `.ci/run`), when it fails.

mod binary;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const VALIDATORS: usize = 4;
/// Generous: the machine running tests may be busy compiling.
const PATIENCE: Duration = Duration::from_secs(120);

/// One cluster at a time (each test has its own runtime; this lock works across them).
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args))
}

/// Runs `docker args` and panics with its output if it fails.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether the engine and docker-compose are here; panics instead of skipping when
/// `GPUNET_REQUIRE_DOCKER=1`.
fn docker_available(test: &str) -> bool {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let compose = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
    if engine && compose {
        return true;
    }
    let missing = if engine {
        "neither docker-compose nor the docker compose plugin is installed"
    } else {
        "no Docker Engine answers"
    };
    if std::env::var("GPUNET_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!(
            "{test} needs Docker and docker-compose: {missing}\n\
             (GPUNET_REQUIRE_DOCKER=1 is set, so the container tests may not be skipped)"
        );
    }
    println!("skipped: {test}: {missing}; set GPUNET_REQUIRE_DOCKER=1 to make this fail");
    false
}

/// A cluster started by `deploy/cluster/cluster.sh up`; purged (containers, network, files)
/// when dropped.
struct Cluster {
    project: String,
    /// `GPUNET_CLUSTER_PARAMS` for `cluster.sh up`: network parameters set at genesis.
    params: String,
    /// More environment for `cluster.sh` (`GPUNET_CLUSTER_VALIDATORS`, `GPUNET_CLUSTER_BLOCK_MS`).
    env: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
    extra_networks: Vec<String>,
    extra_containers: Vec<String>,
    http: reqwest::Client,
}

impl Cluster {
    fn up(name: &str) -> Cluster {
        Cluster::up_with(name, "")
    }

    /// A cluster whose chain starts with `params` (`NAME=VALUE ...`, see `cluster.sh`).
    fn up_with(name: &str, params: &str) -> Cluster {
        Cluster::up_with_env(name, params, Vec::new())
    }

    fn up_with_env(name: &str, params: &str, env: Vec<(&'static str, String)>) -> Cluster {
        let project = format!("gpunettest{}{name}", std::process::id());
        let cluster = Cluster {
            project,
            params: params.to_owned(),
            env,
            dir: tempfile::tempdir().expect("tempdir"),
            extra_networks: Vec::new(),
            extra_containers: Vec::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        };
        let out = cluster.script(&["up"]);
        assert!(
            out.status.success(),
            "cluster.sh up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// Runs `deploy/cluster/cluster.sh args` for this cluster.
    fn script(&self, args: &[&str]) -> Output {
        run(&mut self.script_command(args))
    }

    /// The command `deploy/cluster/cluster.sh args` for this cluster, to run or spawn.
    fn script_command(&self, args: &[&str]) -> Command {
        let api_port = free_port();
        let mut cmd = Command::new(repo_root().join("deploy/cluster/cluster.sh"));
        cmd.args(args)
            .env("GPUNET_BIN", env!("CARGO_BIN_EXE_gpunet"))
            .env("GPUNET_IMAGE", "gpunet:test")
            .env("GPUNET_CLUSTER_DIR", self.dir.path())
            .env("GPUNET_CLUSTER_PROJECT", &self.project)
            .env("GPUNET_CLUSTER_API_PORT", api_port.to_string())
            .env("GPUNET_CLUSTER_PARAMS", &self.params)
            .env("GPUNET_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd
    }

    /// The container of a compose service, found by compose's labels (docker-compose v1 and
    /// the compose plugin name containers differently).
    fn container(&self, service: &str) -> String {
        let id = docker_ok(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        assert!(
            !id.is_empty() && !id.contains('\n'),
            "expected one container of {service} in {}, found {id:?}",
            self.project
        );
        id
    }

    fn network(&self) -> String {
        format!("{}_gpunet", self.project)
    }

    /// Validator `i`'s API, at its container's address on whichever network it is on now.
    fn api(&self, i: usize) -> String {
        let ips = docker_ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &self.container(&format!("validator-{i}")),
        ]);
        let ip = ips
            .split_whitespace()
            .next()
            .unwrap_or("0.0.0.0")
            .to_owned();
        format!("http://{ip}:{}", 8650 + i)
    }

    async fn get(&self, i: usize, path: &str) -> Option<Value> {
        self.get_url(&format!("{}{path}", self.api(i))).await
    }

    /// A successful JSON answer from `url`, or `None`.
    async fn get_url(&self, url: &str) -> Option<Value> {
        let r = self.http.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    async fn height(&self, i: usize) -> Option<u64> {
        self.get(i, "/v1/status").await?.get("height")?.as_u64()
    }

    async fn heights(&self, nodes: &[usize]) -> Vec<Option<u64>> {
        let mut hs = Vec::new();
        for &i in nodes {
            hs.push(self.height(i).await);
        }
        hs
    }

    async fn root_at(&self, i: usize, h: u64) -> Option<String> {
        self.root_from(&self.api(i), h).await
    }

    /// The state root at height `h` of the node whose API is `api`.
    async fn root_from(&self, api: &str, h: u64) -> Option<String> {
        Some(
            self.get_url(&format!("{api}/v1/blocks/{h}"))
                .await?
                .get("state_root")?
                .as_str()?
                .to_owned(),
        )
    }

    /// Waits until every node in `nodes` reports at least height `h`.
    async fn wait_all_at_least(&self, nodes: &[usize], h: u64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let hs = self.heights(nodes).await;
            if hs.iter().all(|x| x.is_some_and(|x| x >= h)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "validators {nodes:?} did not all reach height {h} (they are at {hs:?}); logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn max_height(&self, nodes: &[usize]) -> u64 {
        self.heights(nodes)
            .await
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
    }

    /// Every validator in `nodes` has a block at every height from 1 to `up_to`, with the same
    /// state root.
    async fn assert_same_roots(&self, nodes: &[usize], up_to: u64) {
        self.wait_all_at_least(nodes, up_to).await;
        // Their addresses do not change while the roots are read: look them up once.
        let apis: Vec<String> = nodes.iter().map(|&i| self.api(i)).collect();
        for h in 1..=up_to {
            let mut roots = Vec::new();
            for api in &apis {
                roots.push(self.root_from(api, h).await);
            }
            assert!(
                roots.iter().all(Option::is_some) && roots.windows(2).all(|w| w[0] == w[1]),
                "state roots differ or are missing at height {h}: {roots:?}"
            );
        }
    }

    fn logs(&self) -> String {
        let out = self.script(&["logs", "--tail", "40"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A validator's Prometheus counter.
    async fn metric(&self, i: usize, name: &str) -> Option<u64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.api(i)))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &self.extra_containers {
            let _ = docker(&["rm", "-f", c]);
        }
        let out = self.script(&["purge"]);
        if !out.status.success() {
            eprintln!(
                "cluster.sh purge failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for n in &self.extra_networks {
            let _ = docker(&["network", "rm", n]);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_end_to_end_through_four_validators_in_containers() {
    if !docker_available("a_job_runs_end_to_end_through_four_validators_in_containers") {
        return;
    }
    let _turn = ONE_CLUSTER.lock().await;
    let cluster = Cluster::up("job");

    // The tenant container submits through validator-2; the providers follow validators 0
    // and 1; the manifest and the logs travel between containers by name.
    let hello = repo_root().join("examples/jobs/hello.yaml");
    let hello = hello.to_str().expect("a UTF-8 path");
    let out = cluster.script(&["job", hello, "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cluster.sh job failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    let result: Value = serde_json::from_str(&stdout).expect("job submit --json prints JSON");
    assert_eq!(result["state"], "ended", "{result}");
    assert_eq!(result["end_reason"], "completed", "{result}");
    let job = result["job"].as_u64().expect("a job id");
    let lease = cluster
        .get(0, &format!("/v1/leases/{job}"))
        .await
        .expect("validator-0 serves the lease");
    assert_eq!(lease["result"]["outcome"], "succeeded", "{lease}");
    assert!(
        lease["provider_endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("http://provider-")),
        "leased to a provider container: {lease}"
    );
    let paid = lease["provider_earned"].as_str().expect("an amount");
    assert_ne!(paid, "0.00", "the provider was paid: {lease}");

    let logs = cluster.script(&["tenant", "job", "logs", &job.to_string()]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("wrote greeting.txt"),
        "the tenant reads the job's logs from the provider's container: {}",
        String::from_utf8_lossy(&logs.stderr)
    );

    let all: Vec<usize> = (0..VALIDATORS).collect();
    let top = cluster.max_height(&all).await;
    cluster.assert_same_roots(&all, top).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_validator_does_not_stop_the_others_and_catches_up_when_restarted() {
    if !docker_available("a_stopped_validator_does_not_stop_the_others_and_catches_up") {
        return;
    }
    let _turn = ONE_CLUSTER.lock().await;
    let cluster = Cluster::up("stop");
    let all: Vec<usize> = (0..VALIDATORS).collect();
    cluster.wait_all_at_least(&all, 3).await;

    docker_ok(&["stop", "-t", "2", &cluster.container("validator-3")]);
    let stopped_at = cluster.max_height(&[0, 1, 2]).await;
    // Three of four (75% of the power) keep deciding blocks.
    cluster.wait_all_at_least(&[0, 1, 2], stopped_at + 8).await;

    docker_ok(&["start", &cluster.container("validator-3")]);
    let target = cluster.max_height(&[0, 1, 2]).await;
    cluster.wait_all_at_least(&[3], target).await;
    cluster.assert_same_roots(&all, target).await;
}

/// Blocks the network runs before the fifth validator joins.
const BLOCKS_BEFORE_JOINING: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_validator_joins_after_thousands_of_blocks_by_state_sync() {
    if !docker_available("a_fifth_validator_joins_after_thousands_of_blocks_by_state_sync") {
        return;
    }
    let _turn = ONE_CLUSTER.lock().await;
    // Five in the genesis, four running; short blocks, so a few thousand go by in minutes. The
    // fifth has a small voting power, so it is rarely the proposer: a height whose proposer is
    // down waits out a propose timeout, and the fifth is down until it joins.
    let cluster = Cluster::up_with_env(
        "join",
        "",
        vec![
            ("GPUNET_CLUSTER_VALIDATORS", "5".to_owned()),
            ("GPUNET_CLUSTER_BLOCK_MS", "60".to_owned()),
            ("GPUNET_CLUSTER_POWERS", "100,100,100,100,1".to_owned()),
        ],
    );
    let first4: Vec<usize> = (0..VALIDATORS).collect();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let h = cluster.max_height(&first4).await;
        if h >= BLOCKS_BEFORE_JOINING {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the network reached only height {h} in 15 minutes; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let out = cluster.script(&["join"]);
    assert!(
        out.status.success(),
        "cluster.sh join failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = cluster.max_height(&first4).await + 20;
    cluster.wait_all_at_least(&[4], target).await;

    let logs =
        String::from_utf8_lossy(&cluster.script(&["logs", "validator-4"]).stdout).into_owned();
    assert!(
        logs.contains("state restored and checked against the decided root"),
        "validator-4 did not sync its state:\n{logs}"
    );
    // It did not replay: block 1 is not there, and it holds blocks from a height past the
    // thousands the others ran, each with the others' root.
    let fifth = cluster.api(4);
    assert!(
        cluster.root_from(&fifth, 1).await.is_none(),
        "validator-4 serves block 1, so it replayed from genesis"
    );
    let zero = cluster.api(0);
    let mut first_kept = None;
    for h in (BLOCKS_BEFORE_JOINING..=target).rev() {
        match cluster.root_from(&fifth, h).await {
            Some(root) => {
                assert_eq!(
                    Some(root),
                    cluster.root_from(&zero, h).await,
                    "roots differ at height {h}"
                );
                first_kept = Some(h);
            }
            None => break,
        }
    }
    let first_kept = first_kept.expect("validator-4 commits blocks after its synced state");
    assert!(
        first_kept > BLOCKS_BEFORE_JOINING,
        "validator-4 holds blocks from {first_kept} on"
    );
    // And it goes on with the others.
    let now = cluster.max_height(&first4).await;
    cluster.wait_all_at_least(&[0, 1, 2, 3, 4], now + 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_two_partition_decides_nothing_forks_nothing_and_heals() {
    if !docker_available("a_two_two_partition_decides_nothing_forks_nothing_and_heals") {
        return;
    }
    let _turn = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::up("part");
    let all: Vec<usize> = (0..VALIDATORS).collect();
    cluster.wait_all_at_least(&all, 3).await;

    // Validators 2 and 3 leave the cluster's network for one of their own, where they still
    // reach each other by name: {0, 1} | {2, 3}, half the power on each side.
    let side = format!("{}_side", cluster.project);
    docker_ok(&["network", "create", &side]);
    cluster.extra_networks.push(side.clone());
    for i in [2, 3] {
        let c = cluster.container(&format!("validator-{i}"));
        let alias = format!("validator-{i}");
        docker_ok(&["network", "disconnect", &cluster.network(), &c]);
        docker_ok(&["network", "connect", "--alias", &alias, &side, &c]);
    }
    // A block that was being decided when the network split may still finish; after that,
    // neither side has the two thirds a decision needs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cluster.heights(&all).await;
    assert!(
        before.iter().all(Option::is_some),
        "every validator still answers its API: {before:?}"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = cluster.heights(&all).await;
    // A validator may still fetch (sync) a block its own side already decided, but no side
    // may decide a new one.
    let top = |hs: &[Option<u64>]| hs.iter().flatten().copied().max().unwrap_or(0);
    assert_eq!(
        top(&before),
        top(&after),
        "a side with half the power decided a block during the partition: {before:?} then {after:?}"
    );

    // Heal: back on the cluster's network, by the same names.
    for i in [2, 3] {
        let c = cluster.container(&format!("validator-{i}"));
        let alias = format!("validator-{i}");
        docker_ok(&["network", "disconnect", &side, &c]);
        docker_ok(&[
            "network",
            "connect",
            "--alias",
            &alias,
            &cluster.network(),
            &c,
        ]);
    }
    let split_at = top(&after);
    cluster.wait_all_at_least(&all, split_at + 5).await;
    // No fork: one chain, the same roots everywhere, before, across and after the split.
    cluster.assert_same_roots(&all, split_at + 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_proposed_by_a_faulty_validator_are_refused() {
    if !docker_available("blocks_proposed_by_a_faulty_validator_are_refused") {
        return;
    }
    let _turn = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::up("fault");
    let all: Vec<usize> = (0..VALIDATORS).collect();
    cluster.wait_all_at_least(&all, 2).await;
    let tenant_before = tenant_usd(&cluster).await;

    // Validator 3 comes back under the same name with the test-only fault flag: every block it
    // proposes carries a transfer of the richest account's dollars to itself, forged.
    let honest = cluster.container("validator-3");
    docker_ok(&["stop", "-t", "2", &honest]);
    let faulty = format!("{}_faulty-validator-3", cluster.project);
    cluster.extra_containers.push(faulty.clone());
    let net_dir = cluster.dir.path().join("net");
    let mount = format!("{}:/net", net_dir.display());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &faulty,
        "--network",
        &cluster.network(),
        "--network-alias",
        "validator-3",
        "-e",
        "GPUNET_LOG=info",
        "-v",
        &mount,
        "gpunet:test",
        "node",
        "start",
        "--home",
        "/net/node-3",
        "--fault",
        "invalid-proposals",
    ]);

    // With equal power every validator's turn to propose comes once in four heights: 12
    // heights give the faulty one three turns at least.
    let from = cluster.max_height(&[0, 1, 2]).await;
    cluster.wait_all_at_least(&[0, 1, 2], from + 12).await;
    let mut refused = 0;
    for i in 0..3 {
        refused += cluster
            .metric(i, "gpunet_consensus_proposals_refused_total")
            .await
            .expect("the metric is served");
    }
    let faulty_logs = run(Command::new("docker").args(["logs", &faulty]));
    let faulty_logs = String::from_utf8_lossy(&faulty_logs.stderr);
    assert!(
        faulty_logs.contains("FAULT INJECTION: proposing a block with a forged transfer"),
        "the faulty validator proposed forged blocks; its log:\n{faulty_logs}"
    );
    assert!(
        refused > 0,
        "the honest validators refused (voted nil on) the forged blocks"
    );
    assert_eq!(
        tenant_usd(&cluster).await,
        tenant_before,
        "the forged transfer never committed"
    );
    // One chain: the honest validators agree at every height, and the faulty one, which
    // commits what the others decide, holds the same blocks.
    let top = cluster.max_height(&[0, 1, 2]).await;
    cluster.assert_same_roots(&[0, 1, 2], top).await;
    let faulty_ip = docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &faulty,
    ]);
    let faulty_api = format!("http://{faulty_ip}:8653");
    let honest_root = cluster.root_at(0, top).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(root) = cluster.root_from(&faulty_api, top).await {
            assert_eq!(
                Some(root),
                honest_root,
                "the faulty validator's chain is the honest one"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the faulty validator did not reach height {top}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The tenant's dollars, read from validator 0.
async fn tenant_usd(cluster: &Cluster) -> String {
    let address = gpunet_client::KeyFile::load(&cluster.dir.path().join("net/keys/tenant.json"))
        .expect("the tenant key")
        .address();
    let account = cluster
        .get(0, &format!("/v1/accounts/{address}"))
        .await
        .expect("validator-0 serves the account");
    account["balances"]["usd"]
        .as_str()
        .expect("usd balance")
        .to_owned()
}

/// A provider's account address, from its key in the cluster's files.
fn provider_address(cluster: &Cluster, i: usize) -> gpunet_protocol::Address {
    gpunet_client::KeyFile::load(
        &cluster
            .dir
            .path()
            .join(format!("net/keys/provider-{i}.json")),
    )
    .expect("the provider's key")
    .address()
}

/// An account's dollars, read from validator 0.
async fn usd_of(cluster: &Cluster, address: &gpunet_protocol::Address) -> gpunet_protocol::Amount {
    let account = cluster
        .get(0, &format!("/v1/accounts/{address}"))
        .await
        .expect("validator-0 serves the account");
    serde_json::from_value::<gpunet_api::node::AccountView>(account)
        .expect("an account")
        .balances
        .get(gpunet_protocol::Denom::Usd)
}

/// Job `id` as validator 0 sees it.
async fn order_view(cluster: &Cluster, id: u64) -> Option<gpunet_api::node::OrderView> {
    serde_json::from_value(cluster.get(0, &format!("/v1/orders/{id}")).await?).ok()
}

/// Polls job `id` until `done` holds for it, for at most `within`.
async fn until_order(
    cluster: &Cluster,
    id: u64,
    within: Duration,
    what: &str,
    done: impl Fn(&gpunet_api::node::OrderView) -> bool,
) -> gpunet_api::node::OrderView {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        if let Some(order) = order_view(cluster, id).await {
            if done(&order) {
                return order;
            }
            last = Some(order);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; job {id} is {last:#?}\nlogs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The workload processes of a provider's container that carry `marker` in their command line
/// (`docker top` lists the container's processes from the host).
fn workloads_in(cluster: &Cluster, service: &str, marker: &str) -> usize {
    let out = docker(&["top", &cluster.container(service), "-o", "pid,args"]);
    if !out.status.success() {
        // A stopped container has no processes.
        return 0;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(marker) && !l.contains("gpunet "))
        .count()
}

/// Waits until the agent in `service`'s container answers HTTP (any answer: it serves).
async fn agent_serves(cluster: &Cluster, service: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ip = docker_ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &cluster.container(service),
        ]);
        let url = format!("http://{ip}:8700/v1/leases/0/status");
        if !ip.is_empty() && cluster.http.get(&url).send().await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service}'s agent did not serve again; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Submits `spec` as the tenant (in its container, through validator-2) and follows it to the
/// end: the follower hands every new attempt its manifest. Returns the running `cluster.sh job`.
fn submit_and_follow(cluster: &Cluster, name: &str, spec: &str) -> std::process::Child {
    let path = cluster.dir.path().join(name);
    std::fs::write(&path, spec).expect("the spec is written");
    cluster
        .script_command(&["job", path.to_str().expect("a UTF-8 path"), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cluster.sh job starts")
}

/// Waits for the follower to end, at most `within`; its output.
async fn follower_result(child: std::process::Child, within: Duration) -> Output {
    let waited = tokio::time::timeout(
        within,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    match waited {
        Ok(Ok(Ok(out))) => out,
        Ok(Ok(Err(e))) => panic!("the follower could not be waited for: {e}"),
        Ok(Err(e)) => panic!("the waiting task failed: {e}"),
        Err(_) => panic!("the job did not end within {within:?}"),
    }
}

/// Checks a job that lost its first attempt and completed on provider-1: the first attempt
/// ended `provider_lost` and was billed only to its last proof of life; the second resumed from
/// the checkpoint and completed; the bill is the sum of both; and the lost provider earned
/// exactly what its proven time paid (`earned_since` is its dollars gained since the job began).
async fn assert_completed_on_the_other(
    cluster: &Cluster,
    id: u64,
    follower: Output,
    earned_since: gpunet_protocol::Amount,
) {
    use gpunet_protocol::LeaseEndReason;
    let stdout = String::from_utf8_lossy(&follower.stdout);
    assert!(
        follower.status.success(),
        "job {id} did not complete:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&follower.stderr),
        cluster.logs()
    );
    let result: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("job submit --json prints JSON ({e}): {stdout}"));
    assert_eq!(result["end_reason"], "completed", "{result}");

    let done = order_view(cluster, id).await.expect("the job is served");
    assert_eq!(done.attempts.len(), 2, "two attempts: {done:#?}");
    let (lost, second) = (&done.attempts[0], &done.attempts[1]);
    assert_eq!(lost.provider, provider_address(cluster, 0), "{done:#?}");
    assert_eq!(lost.end_reason, Some(LeaseEndReason::ProviderLost));
    assert_eq!(
        lost.billed_ms,
        lost.last_proof_ms - lost.started_ms.expect("it started"),
        "billed only to the last proof of life: {lost:#?}"
    );
    assert_eq!(second.provider, provider_address(cluster, 1));
    assert_eq!(second.end_reason, Some(LeaseEndReason::Completed));
    assert_eq!(second.attempt, 2);
    let total = lost.paid.checked_add(second.paid).expect("fits");
    assert_eq!(
        (
            result["bill"]["attempts"].as_u64(),
            result["bill"]["tenant_paid"].as_str()
        ),
        (Some(2), Some(total.to_string().as_str())),
        "the bill the tenant is shown covers both attempts: {result}"
    );
    assert_eq!(
        second.refund,
        done.terms.deposit.checked_sub(total).expect("fits"),
        "the bill is the sum of the attempts; the rest came back"
    );
    assert_eq!(
        earned_since, lost.provider_earned,
        "the lost provider earned what its proven time paid, nothing after"
    );

    // The second attempt began from the checkpoint, not from tick 0.
    let logs = cluster.script(&["tenant", "job", "logs", &id.to_string(), "--json"]);
    let logs: Value = serde_json::from_slice(&logs.stdout).unwrap_or_else(|e| {
        panic!(
            "job logs --json ({e}): {}",
            String::from_utf8_lossy(&logs.stderr)
        )
    });
    let log = logs["log"].as_str().expect("the log");
    let resumed_at = binary::resumed_at(log);
    assert!(
        resumed_at >= 10,
        "resumed at tick {resumed_at}, not near the start: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_cut_off_providers_job_completes_on_the_other_from_its_checkpoint() {
    if !docker_available("a_killed_or_cut_off_providers_job_completes_on_the_other") {
        return;
    }
    let _turn = ONE_CLUSTER.lock().await;
    // Liveness tightened so the test is short: a heartbeat every 4 blocks, lost after 12.
    let cluster = Cluster::up_with(
        "survive",
        "heartbeat_interval_blocks=4 liveness_timeout_blocks=12",
    );
    let provider0 = provider_address(&cluster, 0);
    let running_on_0 = |o: &gpunet_api::node::OrderView| {
        o.lease.as_ref().is_some_and(|l| {
            l.provider == provider0 && l.state == gpunet_api::node::LeaseState::Running
        })
    };
    let first_ended = |o: &gpunet_api::node::OrderView| {
        o.attempts
            .first()
            .is_some_and(|a| a.state == gpunet_api::node::LeaseState::Ended)
    };

    // 1. provider-0 (the cheaper) runs job 1; its container is killed outright.
    let marker = format!("killed-{}", std::process::id());
    let before = usd_of(&cluster, &provider0).await;
    let follower = submit_and_follow(
        &cluster,
        "killed.yaml",
        &binary::checkpointing_job("survivor", 60, "0.4", &marker),
    );
    until_order(
        &cluster,
        1,
        PATIENCE,
        "job 1 runs on provider-0",
        running_on_0,
    )
    .await;
    // Long enough for a checkpoint to be uploaded (every 10 s).
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(
        workloads_in(&cluster, "provider-0", &marker),
        1,
        "job 1 runs in provider-0's container"
    );
    docker_ok(&["kill", &cluster.container("provider-0")]);
    let lost = until_order(&cluster, 1, PATIENCE, "the killed lease ends", first_ended).await;
    assert_eq!(
        lost.attempts[0].end_reason,
        Some(gpunet_protocol::LeaseEndReason::ProviderLost),
        "{lost:#?}"
    );
    let out = follower_result(follower, Duration::from_secs(240)).await;
    let earned = usd_of(&cluster, &provider0)
        .await
        .checked_sub(before)
        .expect("no loss");
    assert_completed_on_the_other(&cluster, 1, out, earned).await;

    // 2. provider-0 comes back on its data and runs job 2, then is cut off from the network.
    docker_ok(&["start", &cluster.container("provider-0")]);
    // Its agent serves once it is registered again, just before it starts bidding: submitted
    // earlier, job 2 could go to provider-1.
    agent_serves(&cluster, "provider-0").await;
    let marker = format!("cutoff-{}", std::process::id());
    let before = usd_of(&cluster, &provider0).await;
    // 130 ticks of 0.4 s: left alone, the orphan would run on well past the 15 s it is given
    // to stop once the network heals.
    let follower = submit_and_follow(
        &cluster,
        "cutoff.yaml",
        &binary::checkpointing_job("survivor", 130, "0.4", &marker),
    );
    until_order(
        &cluster,
        2,
        PATIENCE,
        "job 2 runs on provider-0",
        running_on_0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(13)).await;
    let provider = cluster.container("provider-0");
    docker_ok(&["network", "disconnect", &cluster.network(), &provider]);
    let lost = until_order(&cluster, 2, PATIENCE, "the cut-off lease ends", first_ended).await;
    assert_eq!(
        lost.attempts[0].end_reason,
        Some(gpunet_protocol::LeaseEndReason::ProviderLost),
        "{lost:#?}"
    );
    assert_eq!(
        workloads_in(&cluster, "provider-0", &marker),
        1,
        "cut off, provider-0 cannot know: its workload still runs"
    );
    docker_ok(&[
        "network",
        "connect",
        "--alias",
        "provider-0",
        &cluster.network(),
        &provider,
    ]);
    let healed = Instant::now();
    while workloads_in(&cluster, "provider-0", &marker) > 0 {
        assert!(
            healed.elapsed() < Duration::from_secs(15),
            "reconnected, provider-0 still runs the orphaned workload; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = follower_result(follower, Duration::from_secs(240)).await;
    let earned = usd_of(&cluster, &provider0)
        .await
        .checked_sub(before)
        .expect("no loss");
    assert_completed_on_the_other(&cluster, 2, out, earned).await;
}

/// `curl ARGS` in a throw-away container on the cluster's network (the tenant's side: not a
/// provider's), from `image`: its output, or `None` when curl failed.
fn curl_in_cluster(cluster: &Cluster, image: &str, args: &[&str]) -> Option<String> {
    let network = cluster.network();
    let mut all = vec![
        "run",
        "--rm",
        "--network",
        &network,
        "--entrypoint",
        "/bin/curl",
        image,
        "-sS",
        "-m",
        "10",
    ];
    all.extend_from_slice(args);
    let out = docker(&all);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Issue 14 in the cluster: provider-0 runs container jobs on this machine's engine. A
/// two-service job (a front end that calls its api by name, the api in two replicas) is
/// reached from a container on the tenant's side of the network at the endpoints `job status`
/// prints: by port at the network's gateway, and by host name through provider-0's proxy, and
/// `gpunet bench ingress` measures the one beside the other from there. The api's port the
/// spec did not expose, and the api itself at its address on the job's own network, are out
/// of reach; after cancel nothing answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_service_job_on_provider_0_is_reached_from_the_tenants_side_by_port_and_by_name() {
    let test =
        "a_two_service_job_on_provider_0_is_reached_from_the_tenants_side_by_port_and_by_name";
    if !docker_available(test) {
        return;
    }
    let _turn = ONE_CLUSTER.lock().await;
    let curl = Path::new("/usr/bin/curl");
    assert!(
        curl.exists(),
        "{test} needs curl on this machine (Debian: apt-get install curl)"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let gpunet = scratch.path().join("gpunet");
    std::fs::copy(env!("CARGO_BIN_EXE_gpunet"), &gpunet).expect("copies the binary");
    let _ = Command::new("strip").arg(&gpunet).status();
    let image =
        gpunet_runtime::testimage::ensure_test_image_with(&[("gpunet", &gpunet), ("curl", curl)])
            .await
            .expect("the job's image builds");

    let first = 46_000 + (std::process::id() % 100) as u16 * 20;
    let cluster = Cluster::up_with_env(
        "svc",
        "",
        vec![(
            "GPUNET_CLUSTER_INGRESS_PORTS",
            format!("{first}-{}", first + 19),
        )],
    );
    let jobs = cluster.dir.path().join("jobs");
    std::fs::write(jobs.join("shop.yaml"), binary::two_services(&image)).expect("spec written");
    let out = cluster.script(&["tenant", "job", "submit", "/jobs/shop.yaml"]);
    assert!(
        out.status.success(),
        "submit: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    let order = until_order(&cluster, 1, PATIENCE, "the job runs", |o| {
        o.lease
            .as_ref()
            .is_some_and(|l| l.state == gpunet_api::node::LeaseState::Running)
    })
    .await;
    let lease = order.lease.expect("leased");
    assert!(
        lease.provider_endpoint.starts_with("http://provider-0:"),
        "only provider-0 runs containers: {lease:?}"
    );
    let workload = binary::workload_id(lease.id.0, &provider_address(&cluster, 0));
    let _cleanup = gpunet_runtime::testimage::ContainerCleanup::new(&workload);

    // The endpoints, as the tenant's CLI prints them.
    let deadline = Instant::now() + PATIENCE;
    let shown: Vec<String> = loop {
        let status = cluster.script(&["tenant", "job", "status", "1"]);
        let found: Vec<String> = String::from_utf8_lossy(&status.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("endpoint "))
            .map(|e| e.trim().to_owned())
            .collect();
        if found.len() >= 5 {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "job status never showed 5 endpoints: {found:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let gateway = docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &cluster.network(),
    ]);
    assert!(
        shown[0].starts_with(&format!("http://{gateway}:")),
        "{shown:?}"
    );
    let front_name = format!("{}-8080.apps.cluster", lease.id);
    let api_name = format!("{}-api-9000.apps.cluster", lease.id);
    assert_eq!(shown[1], format!("http://{front_name}:8080"), "{shown:?}");
    assert_eq!(
        shown[4],
        format!("http://{api_name}:8080 (api)"),
        "{shown:?}"
    );

    // By port: the front asks the api by its name on the job's network.
    let body = curl_in_cluster(
        &cluster,
        &image,
        &[&format!("{}/backend/headers", shown[0])],
    )
    .expect("the front answers by port");
    assert!(body.starts_with("backend 200: "), "{body}");
    assert!(body.contains("host: api:9000"), "{body}");
    // By name, as a wildcard record would send the names to provider-0.
    let provider_ip = docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &cluster.container("provider-0"),
    ]);
    let resolve = |name: &str| format!("{name}:8080:{provider_ip}");
    let body = curl_in_cluster(
        &cluster,
        &image,
        &[
            "--resolve",
            &resolve(&front_name),
            &format!("http://{front_name}:8080/backend/headers"),
        ],
    )
    .expect("the front answers by name");
    assert!(body.contains("host: api:9000"), "{body}");
    let body = curl_in_cluster(
        &cluster,
        &image,
        &[
            "--resolve",
            &resolve(&api_name),
            &format!("http://{api_name}:8080/headers"),
        ],
    )
    .expect("the api answers by name");
    assert!(body.contains(&format!("host: {api_name}")), "{body}");

    // `gpunet bench ingress` against these endpoints from the tenant's side (the front is
    // `gpunet bench upstream`): both ways measured, nothing failed. How fast is for the bench
    // (`cluster.sh bench-ingress`), not for a test.
    let started = Instant::now();
    let out = cluster.script(&[
        "tenant",
        "bench",
        "ingress",
        "--direct",
        &shown[0],
        "--proxied",
        "http://provider-0:8080",
        "--host",
        &front_name,
        "--seconds",
        "1",
        "--connections",
        "4",
        "--json",
        "--out",
        "/out/bench/ingress.json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench ingress: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value =
        serde_json::from_str(stdout.trim()).expect("bench ingress --json prints JSON");
    assert_eq!(figures["errors"], 0, "{figures}");
    assert_eq!(figures["host"], front_name.as_str(), "{figures}");
    for side in ["direct_rps", "proxied_rps"] {
        assert!(
            figures[side].as_f64().is_some_and(|r| r > 0.0),
            "{side}: {figures}"
        );
    }
    let written = cluster.dir.path().join("out/bench/ingress.json");
    let written: Value = serde_json::from_slice(&std::fs::read(&written).expect("figures written"))
        .expect("figures are JSON");
    assert_eq!(written, figures);
    println!(
        "bench ingress from the tenant's side took {:?}: {figures}",
        started.elapsed()
    );

    // The api at its address on the job's own network: neither its exposed nor its unexposed
    // port is reached from outside that network.
    let api_ip = docker_ok(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"gpunet-{workload}-net\").IPAddress}}}}"),
        &format!("gpunet-{workload}-api-0"),
    ]);
    for port in [9000, 9091] {
        assert_eq!(
            curl_in_cluster(&cluster, &image, &[&format!("http://{api_ip}:{port}/")]),
            None,
            "the api's {port} on the job's network is reached from the tenant's side"
        );
    }

    let out = cluster.script(&["tenant", "job", "cancel", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + PATIENCE;
    while curl_in_cluster(&cluster, &image, &[&shown[0]]).is_some() {
        assert!(
            Instant::now() < deadline,
            "the front still answers after cancel"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
