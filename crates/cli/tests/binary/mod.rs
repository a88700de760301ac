//! The built `gpunet` binary run as a user runs it, for the CLI's end-to-end tests: a clean
//! environment (no `GPUNET_*` from the machine running the tests, its own `HOME` and
//! `XDG_RUNTIME_DIR`, so neither a developer's dev network nor another test's is found), the
//! exit code, stdout and stderr.
// Each test file uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A user's world: a home directory and a runtime directory of its own.
pub struct User {
    pub home: PathBuf,
    pub runtime_dir: PathBuf,
}

impl User {
    pub fn new(base: &Path) -> User {
        let home = base.join("user-home");
        let runtime_dir = base.join("runtime");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&runtime_dir).expect("runtime dir");
        User { home, runtime_dir }
    }

    /// `gpunet ARGS` as this user, in `cwd`.
    pub fn gpunet(&self, args: &[&str], cwd: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpunet"));
        cmd.args(args)
            .current_dir(cwd)
            .env_remove("GPUNET_API")
            .env_remove("GPUNET_HOME")
            .env_remove("GPUNET_KEY")
            .env("GPUNET_LOG", "warn")
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// What a finished command did.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end, at most `patience`.
pub async fn run(mut cmd: Command, patience: Duration) -> Ran {
    let out = tokio::time::timeout(patience, cmd.output())
        .await
        .expect("the command finishes in time")
        .expect("the command runs");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Waits for a spawned `child` (stdout and stderr piped) to end, at most `patience`.
pub async fn run_child(child: Child, patience: Duration) -> Ran {
    let out = tokio::time::timeout(patience, child.wait_with_output())
        .await
        .expect("the command finishes in time")
        .expect("the command runs");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends `signal` (`-INT`, `-TERM`) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the child still runs");
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A one-validator network written by `gpunet node init` under `<base>/net` and started with
/// `gpunet node start`, with `providers` provider keys and genesis `params` (`NAME=VALUE`).
pub struct Network {
    pub dir: PathBuf,
    pub api: String,
    node: Option<Child>,
}

impl Network {
    /// [`Network::init`], then [`Network::start_node`], then waits (at most 60 s) until the
    /// node answers, so what starts next finds it up.
    pub async fn start(
        user: &User,
        base: &Path,
        providers: usize,
        block_ms: u64,
        params: &[&str],
    ) -> Network {
        let mut network = Network::init(user, base, providers, block_ms, params).await;
        network.start_node(user, base);
        network.until_up().await;
        network
    }

    /// Writes the network with `gpunet node init`; its node is not started yet.
    pub async fn init(
        user: &User,
        base: &Path,
        providers: usize,
        block_ms: u64,
        params: &[&str],
    ) -> Network {
        let dir = base.join("net");
        let (api_port, p2p_port) = (free_port(), free_port());
        let (providers, block_ms) = (providers.to_string(), block_ms.to_string());
        let (api_port_s, p2p_port_s) = (api_port.to_string(), p2p_port.to_string());
        let mut args = vec![
            "node",
            "init",
            "--validators",
            "1",
            "--providers",
            &providers,
            "--block-ms",
            &block_ms,
            "--api-port",
            &api_port_s,
            "--p2p-port",
            &p2p_port_s,
            "--out",
            dir.to_str().expect("utf-8"),
        ];
        for p in params {
            args.extend(["--param", p]);
        }
        let init = run(user.gpunet(&args, base), Duration::from_secs(60)).await;
        assert_eq!(init.code, Some(0), "node init: {init:?}");
        Network {
            dir,
            api: format!("http://127.0.0.1:{api_port}"),
            node: None,
        }
    }

    /// `gpunet node start` of the network's one validator.
    pub fn start_node(&mut self, user: &User, base: &Path) {
        assert!(self.node.is_none(), "the node is already started");
        let home = self.dir.join("node-0");
        let node = user
            .gpunet(
                &["node", "start", "--home", home.to_str().expect("utf-8")],
                base,
            )
            .spawn()
            .expect("node starts");
        self.node = Some(node);
    }

    /// Waits (at most 60 s) until the node answers its status.
    pub async fn until_up(&mut self) {
        let client = gpunet_client::NodeClient::new(&self.api);
        let start = std::time::Instant::now();
        while client.status().await.is_err() {
            if let Some(node) = self.node.as_mut()
                && let Ok(Some(status)) = node.try_wait()
            {
                panic!("the node exited ({status}) before it answered");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the node at {} never answered",
                self.api
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.json"))
    }

    /// `gpunet provider start` with key `provider-<i>`, data under `<base>/provider-<i>`, the
    /// process runtime only, the tenant trusted, and `cpu_hour` usd per core-hour.
    pub fn provider(&self, user: &User, base: &Path, i: usize, cpu_hour: &str) -> Child {
        self.provider_with(user, base, i, cpu_hour, &[])
    }

    /// [`Network::provider`] with `extra` arguments, e.g. `--blob-store DIR`.
    pub fn provider_with(
        &self,
        user: &User,
        base: &Path,
        i: usize,
        cpu_hour: &str,
        extra: &[&str],
    ) -> Child {
        let extra: Vec<&str> = ["--no-docker"].iter().chain(extra).copied().collect();
        self.provider_offering(user, base, i, cpu_hour, &extra)
    }

    /// [`Network::provider_with`] that also runs container jobs when this machine's Docker
    /// Engine answers (the agent's own detection decides).
    pub fn provider_with_docker(
        &self,
        user: &User,
        base: &Path,
        i: usize,
        cpu_hour: &str,
        extra: &[&str],
    ) -> Child {
        self.provider_offering(user, base, i, cpu_hour, extra)
    }

    fn provider_offering(
        &self,
        user: &User,
        base: &Path,
        i: usize,
        cpu_hour: &str,
        extra: &[&str],
    ) -> Child {
        let key = self.key(&format!("provider-{i}"));
        let tenant = self.key("tenant");
        let data = base.join(format!("provider-{i}"));
        let args = [
            "provider",
            "start",
            "--api",
            &self.api,
            "--key",
            key.to_str().expect("utf-8"),
            "--data",
            data.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--cpu-hour",
            cpu_hour,
            "--trust-tenant",
            tenant.to_str().expect("utf-8"),
        ];
        let args: Vec<&str> = args.iter().chain(extra).copied().collect();
        // What the agent says goes to a file that `until_providers` shows when it fails.
        let log = std::fs::File::create(base.join(format!("provider-{i}.log")))
            .expect("the agent's log file");
        user.gpunet(&args, base)
            .stderr(log)
            .spawn()
            .expect("provider starts")
    }

    /// Waits (at most 90 s) until `n` providers are registered; otherwise fails showing what
    /// each agent started by [`Network::provider`] and its kin said (`<base>/provider-<i>.log`).
    pub async fn until_providers(&self, n: usize) {
        let client = gpunet_client::NodeClient::new(&self.api);
        let start = std::time::Instant::now();
        while client.providers().await.map_or(0, |p| p.providers.len()) < n {
            if start.elapsed() > Duration::from_secs(90) {
                let base = self.dir.parent().expect("the network's base");
                let mut said = String::new();
                for i in 0..8 {
                    let log = base.join(format!("provider-{i}.log"));
                    if let Ok(text) = std::fs::read_to_string(&log) {
                        said.push_str(&format!("\n--- {}:\n{text}", log.display()));
                    }
                }
                panic!("{n} provider(s) never registered; the agents said:{said}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `gpunet ARGS --api <this network> --key <its tenant>` as `user`, in `cwd`.
    pub fn tenant(&self, user: &User, args: &[&str], cwd: &Path) -> Command {
        let key = self.key("tenant");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--api", &self.api, "--key", key.to_str().expect("utf-8")]);
        user.gpunet(&all, cwd)
    }
}

/// Polls order `id` until `check` holds of it, at most `patience`; returns it.
pub async fn until_order(
    client: &gpunet_client::NodeClient,
    id: gpunet_protocol::OrderId,
    patience: Duration,
    what: &str,
    check: impl Fn(&gpunet_api::node::OrderView) -> bool,
) -> gpunet_api::node::OrderView {
    let start = std::time::Instant::now();
    loop {
        if let Ok(o) = client.order(id).await
            && check(&o)
        {
            return o;
        }
        assert!(
            start.elapsed() < patience,
            "{what}: not within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The processes carrying `marker` that run in a lease of the provider whose data directory is
/// `dir`: sandboxed, their root is a mount of `<dir>/leases/<id>/sandbox` (their mount table
/// says so); unsandboxed, their working directory is below `dir`.
pub fn workloads_under(marker: &str, dir: &Path) -> Vec<u32> {
    let dir_text = dir.to_string_lossy().into_owned();
    gpunet_testkit::procs::processes_with_arg(marker)
        .into_iter()
        .filter(|pid| {
            let mounted_from_dir = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                .is_ok_and(|m| {
                    m.lines()
                        .any(|l| l.contains(&format!("{dir_text}/leases/")))
                });
            let cwd_in_dir =
                std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|p| p.starts_with(dir));
            mounted_from_dir || cwd_in_dir
        })
        .collect()
}

/// A process job named `name` that counts `ticks` ticks of `tick` seconds (`"0.5"`), printing
/// `resumed at N` as it starts and `tick N` as it goes, and keeping its count in
/// `$GPUNET_CHECKPOINTS` (restored into the next attempt); `marker`, an argument of its
/// process, finds it on the host.
pub fn checkpointing_job(name: &str, ticks: u32, tick: &str, marker: &str) -> String {
    format!(
        r#"version: 1
name: {name}
run:
  command: ["sh", "-c", "d=\"$GPUNET_CHECKPOINTS\"; i=$(cat \"$d/tick\" 2>/dev/null || echo 0); echo \"resumed at $i\"; while [ $i -lt {ticks} ]; do i=$((i+1)); echo tick $i; echo $i > \"$d/tick.new\"; mv \"$d/tick.new\" \"$d/tick\"; sleep {tick}; done", "{marker}"]
resources: {{ cpu: 0.5, memory: 64Mi, disk: 64Mi }}
pricing: {{ max_per_hour: "1.00", deposit: "1.00" }}
limits: {{ max_duration: 10m }}
recovery: {{ max_attempts: 3, backoff: 1s }}
"#
    )
}

/// Where a [`checkpointing_job`]'s latest attempt resumed, from its log: the agent says it
/// restored a checkpoint, then the job says `resumed at N`. Panics, showing the log, otherwise.
pub fn resumed_at(log: &str) -> u32 {
    assert!(log.contains("restored checkpoint"), "{log}");
    log.lines()
        .find_map(|l| l.strip_prefix("resumed at "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the job does not say where it resumed: {log}"))
}

/// Job `id`'s log (its latest attempt's) as `gpunet job logs ID --json` returns it.
pub async fn job_log(network: &Network, user: &User, id: u64, cwd: &Path) -> String {
    let id = id.to_string();
    let ran = run(
        network.tenant(user, &["job", "logs", &id, "--json"], cwd),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(ran.code, Some(0), "job logs: {ran:?}");
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).expect("job logs --json");
    v["log"].as_str().expect("the log").to_owned()
}

/// The workload id (and so the container name) the agent of `provider` gives `lease`.
pub fn workload_id(lease: u64, provider: &gpunet_protocol::Address) -> String {
    let hex: String = provider.0[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("lease-{lease}-{hex}")
}

/// Submits the spec in `base/<spec>` as the network's tenant (the first job on the network) and
/// waits until its lease runs; returns the lease id.
pub async fn running_job(network: &Network, user: &User, base: &Path, spec: &str) -> u64 {
    let client = gpunet_client::NodeClient::new(&network.api);
    let submitted = run(
        network.tenant(user, &["job", "submit", spec], base),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");
    let running = until_order(
        &client,
        gpunet_protocol::OrderId(1),
        Duration::from_secs(120),
        "the job runs",
        |o| {
            o.lease
                .as_ref()
                .is_some_and(|l| l.state == gpunet_api::node::LeaseState::Running)
        },
    )
    .await;
    running.lease.expect("leased").id.0
}

/// A web front end (the job's own run, `gpunet bench upstream --backend api:9000` on 8080) and
/// an api of two replicas (`bench upstream` on 9000, exposed, and on 9091, not), as one job in
/// `image` (which holds `/bin/gpunet` and a shell).
pub fn two_services(image: &str) -> String {
    format!(
        r#"version: 1
name: web
kind: service
run:
  image: {image}
  network: egress
  command: [/bin/gpunet, bench, upstream, --listen, "0.0.0.0:8080", --backend, "api:9000"]
expose: [{{ port: 8080 }}]
services:
  - name: api
    count: 2
    run:
      image: {image}
      network: egress
      command: [/bin/sh, -c, "/bin/gpunet bench upstream --listen 0.0.0.0:9091 & exec /bin/gpunet bench upstream --listen 0.0.0.0:9000"]
    expose: [{{ port: 9000 }}]
    resources: {{ cpu: 0.25, memory: 128Mi, disk: 32Mi }}
resources: {{ cpu: 0.25, memory: 128Mi, disk: 32Mi }}
pricing: {{ max_per_hour: "1.00", deposit: "1.00" }}
limits: {{ max_duration: 10m }}
"#
    )
}
