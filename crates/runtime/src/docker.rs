//! The Docker driver: runs each workload as one container of a local Docker Engine (via
//! `bollard`, API version negotiated with the engine, so 20.10 / API 1.41 and later work).
//!
//! What a container gets ([`container_body`] builds it, a pure function):
//! - name `gpunet-<workload_id>` and labels `gpunet.managed=true`, `gpunet.workload=<id>` (plus
//!   the wall-clock limit and log bookkeeping that [`Driver::recover`] needs);
//! - `nano_cpus` from `cpu_millis`, `memory` = `memory_swap` = `memory_mib` (no swap),
//!   `pids_limit`;
//! - a read-only root filesystem when the spec asks (the default), a 64 MiB tmpfs at `/tmp`
//!   (under a disk limit: a quarter of the limit, at most 64 MiB),
//!   `cap_drop: ALL` then `cap_add` of the spec's `capabilities` (none unless the job asked
//!   for them and the provider grants them; at most [`crate::GRANTABLE_CAPABILITIES`]),
//!   `no-new-privileges`, not privileged;
//! - one host mount, `<root_dir>/outputs` at `/outputs` read-write, `<root_dir>/inputs` at
//!   `/inputs` read-only when that directory exists, and the checkpoint directory
//!   ([`crate::checkpoints_dir`]) at `/checkpoints` read-write when the agent created it (the
//!   job keeps checkpoints; `GPUNET_CHECKPOINTS=/checkpoints`); these, and the volumes, are
//!   open to any uid (outputs, checkpoints and volumes 0777, inputs readable), so an image that
//!   runs as a user of its own can use them — the lease's directory above stays 0700;
//! - network `none` (loopback only) unless the spec asks for egress (then [`LEASE_NETWORK`],
//!   where containers cannot reach one another, with the exposed ports published where the
//!   driver's [`Publish`] says — 127.0.0.1 at engine-chosen ports by default — see
//!   [`Driver::ports`]);
//! - the spec's environment, overridden by `GPUNET_OUTPUTS=/outputs` (and
//!   `GPUNET_CHECKPOINTS`, `GPUNET_INPUTS` with their mounts), `CUDA_VISIBLE_DEVICES`
//!   and `NVIDIA_VISIBLE_DEVICES` (the GPU uuids, or empty / `void` with no GPU, so an image
//!   that asks for all GPUs gets none), and a `nvidia` device request naming exactly the
//!   assigned uuids, so two leases never share a GPU;
//! - the image's working directory and user (write results to `$GPUNET_OUTPUTS`); `argv[0]` of
//!   the command becomes the entrypoint and the rest its arguments, so the image's own
//!   entrypoint never wraps the tenant's command; with no command, the image's own
//!   entrypoint runs, with the spec's `args` in place of its default arguments when given;
//! - the engine's `json-file` log capped at [`engine_log_max_bytes`], one file.
//!
//! Images: one present locally is used; otherwise it is pulled (for at most
//! [`IMAGE_PULL_TIMEOUT`]); if neither works, `start` fails with
//! [`DriverError::ImageUnavailable`].
//!
//! Per workload a log follower copies the container's stdout and stderr (interleaved as the
//! engine recorded them) into `<root_dir>/logs/combined.log` under the crate's log cap, so
//! [`Driver::logs`] reads the same file as for the process driver and the log outlives the
//! container. A supervisor task waits for the exit, enforces `max_duration` (measured from the
//! container's `StartedAt`) by SIGKILL, carries out stop requests (SIGTERM, SIGKILL after the
//! grace), samples usage, lets the log drain, and publishes the [`ExitOutcome`].
//!
//! Disk (`disk_mib`, when set): the container's writable places are the bind-mounted outputs
//! and checkpoint dirs and the `/tmp` tmpfs. The tmpfs is sized at a quarter of the limit (at
//! most 64 MiB); the disk watchdog (`crate::disk`) measures the outputs and checkpoint dirs on
//! the host and SIGKILLs the container once they hold more than the rest. With `read_only_rootfs: false` the container's
//! own writable layer counts too: the engine's `SizeRw` of each such container, measured every
//! [`LAYER_SIZE_INTERVAL`], is added to the watchdog's total (a fast writer overshoots by what
//! it writes in that time).
//!
//! How an end is classified, first match wins: stop requested → `Stopped`; wall-clock kill →
//! `WallClockLimit`; disk watchdog kill → `DiskExceeded`; exit 0 → `Completed`; the engine's `State.OOMKilled` → `OutOfMemory`;
//! anything else → `Failed`. Docker reports death by signal N as exit code 128 + N; such codes
//! are reported as `signal: Some(N)`, like a shell does.
//!
//! Usage: `wall_ms` is `FinishedAt − StartedAt` from the engine. CPU and memory come from a
//! one-shot stats snapshot taken every [`STATS_INTERVAL`] while the container runs (the figures
//! only grow, and an empty snapshot of a just-exited container is ignored); the last one
//! before the exit counts, so up to that interval of CPU time at the end is missed, and a
//! workload shorter than it may report none. `cpu_user_ms`/`cpu_system_ms` are the cgroup's user
//! and kernel time; `max_rss_kib` is the cgroup's peak memory (`max_usage`, cgroup v1; the
//! highest sampled usage on cgroup v2), page cache included, so it is not strictly a resident
//! set. Usage of a workload that ended while no agent watched it is zero except `wall_ms`.
//!
//! Pause: [`Driver::pause`] is `docker pause` (the engine's cgroup freezer), [`Driver::resume`]
//! `docker unpause`. Already paused, not paused, not running (it has just ended: the exit is on
//! its way) and gone (nothing is left to freeze; `wait` reports how it ended) all count as
//! done, so both are idempotent. An engine that cannot freeze (rootless on cgroup v1) gives
//! [`DriverError::PauseUnsupported`]. A stop or kill of a paused container unpauses it after the
//! signal, so the signal is delivered (a frozen process holds even SIGKILL under cgroup v1).
//! A paused container is running to the engine, so a restarted agent re-attaches to it.
//!
//! Companions (a job's `services`, one container per replica): see [`WorkloadSpec::companions`].
//! All containers are created before any starts, on a network of the workload's own
//! ([`group_network_name`], `internal`) under their service names (the main one under
//! `hostname`); those with egress also join [`LEASE_NETWORK`] after creation. The supervisor
//! watches them all: the first to end ends the workload with its outcome (a companion that
//! exits 0 still fails it), the rest get SIGTERM, then SIGKILL after [`GROUP_STOP_GRACE`]; the
//! wall clock, disk watchdog, stop and pause apply to every container and usage is summed. Each
//! container's lines reach the one log prefixed with its name (`api-1 | `); after an agent
//! restart they are followed again from the log's last write, by the engine's timestamps, so
//! a line of that millisecond may show twice.
//!
//! Volumes ([`WorkloadSpec::volumes`], a companion's own): host directories under
//! `<root_dir>/volumes` ([`crate::volume_dir`]) bind-mounted read-write at their paths. Each is
//! watched by the disk watchdog at its size (past it every container is killed and the workload
//! ends `DiskExceeded`, the log naming the volume), and all count within the workload's disk
//! limit with the outputs and checkpoints. `destroy` removes them.
//!
//! Restarts in place ([`WorkloadSpec::restarts`]): a container that exits non-zero, or is
//! killed for memory, while the supervisor has not ended it is started again (`docker start`,
//! the same container: its volumes and configuration), up to that many times for the whole
//! workload; each restart is noted in the log, and its output followed from the moment it
//! started (by the engine's timestamps: the run before shows once). The count done is kept in `<root_dir>/work/restarts-used`, and the wall clock runs
//! from the first start.
//!
//! Agent restarts: a new `DockerDriver` finds a workload's container by label. A running one is
//! re-attached: the log follower re-reads the engine's log and skips what the file already
//! holds (the log's length at start is kept in a label), the wall-clock limit is re-armed from
//! `StartedAt`, and `wait`, `stop` and `logs` work as before. An exited one reports its outcome
//! (the log is caught up first); a missing one is `Lost`. A stop or wall-clock kill is recorded
//! in `<root_dir>/work/ended-by` before the signal is sent, so the reason survives a restart;
//! so is a disk watchdog kill, and the watchdog is re-armed from a label.
//! Dropping a `DockerDriver` aborts its tasks but leaves containers running, as an agent crash
//! would. `start` never runs a workload twice: if its container exists, `AlreadyExists`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as EngineError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, DeviceRequest, HostConfig,
    HostConfigLogConfig, Mount, MountType, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StatsOptions, WaitContainerOptions,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::driver::{Driver, DriverInfo, RecoverState, check_driver};
use crate::error::{DriverError, SpecError};
use crate::logs::{LogCap, read_chunk};
use crate::workload::{
    ExecOutput, ExitOutcome, ExitReason, LOG_TRUNCATED_MARKER, LogChunk, MAIN_VOLUME_OWNER,
    MAX_EXEC_OUTPUT_BYTES, NetworkMode, Publish, PublishedPort, Usage, WorkloadHandle,
    WorkloadSpec, checkpoints_dir, create_workload_dirs, inputs_dir, log_path, logs_dir, open_log,
    outputs_dir, remove_volumes, remove_work_dir, request_stop, volume_dir, work_dir,
};

/// The name of this driver, as written into handles.
pub const DOCKER_DRIVER_NAME: &str = "docker";
/// Label on every container this driver creates.
pub const LABEL_MANAGED: &str = "gpunet.managed";
/// Label holding the workload id of a container.
pub const LABEL_WORKLOAD: &str = "gpunet.workload";
/// Label on a companion container: the service it is a replica of.
pub const LABEL_SERVICE: &str = "gpunet.service";
/// Label on a companion container: which replica it is.
const LABEL_REPLICA: &str = "gpunet.replica";
/// Label on a container with volumes: `name=bytes` for each, `;`-separated.
const LABEL_VOLUMES: &str = "gpunet.volumes";
/// Label on the main container: how many in-place restarts the workload may have.
const LABEL_RESTARTS: &str = "gpunet.restarts";
/// File under `<root_dir>/work` counting the in-place restarts done, so a restarted agent
/// does not grant them again.
const RESTARTS_FILE: &str = "restarts-used";
/// Label on the main container of a workload with companions: its name on their network.
const LABEL_HOSTNAME: &str = "gpunet.hostname";
/// The main container's name among a workload's when it has none of its own (no companions).
const MAIN_MEMBER: &str = "main";
/// How long the rest of a workload's containers have to exit after the first one ended (or,
/// past a stop's own grace, after it), before they are killed.
pub const GROUP_STOP_GRACE: Duration = Duration::from_secs(10);
/// A line of a companion's output longer than this is written in parts.
const MAX_PENDING_LINE_BYTES: usize = 64 * 1024;
/// Label holding `max_duration` in milliseconds, to re-arm the limit after a restart.
const LABEL_MAX_DURATION_MS: &str = "gpunet.max_duration_ms";
/// Label holding the log file's length when the container was created.
const LABEL_LOG_OFFSET_BYTES: &str = "gpunet.log_offset_bytes";
/// Label holding the spec's `log_limit_bytes`.
const LABEL_LOG_LIMIT_BYTES: &str = "gpunet.log_limit_bytes";
/// Label holding the watchdog's limit on the outputs dir, in bytes (absent: no limit).
const LABEL_DISK_LIMIT_BYTES: &str = "gpunet.disk_limit_bytes";
/// The bridge network every container with egress joins. Created by the driver with
/// inter-container traffic off (`com.docker.network.bridge.enable_icc=false`): a workload can
/// reach the internet and be reached at its published ports, but cannot open a connection to
/// another lease's container, exposed port or not (the engine's default bridge allows that).
pub const LEASE_NETWORK: &str = "gpunet-leases";
/// The bridge driver's option that turns inter-container traffic on or off.
const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// The engine's socket unless `DOCKER_HOST` names another `unix://` one.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Where the outputs dir is mounted in the container.
pub const CONTAINER_OUTPUTS_DIR: &str = "/outputs";
/// Where the checkpoint dir (if the job keeps checkpoints) is mounted, read-write.
pub const CONTAINER_CHECKPOINTS_DIR: &str = "/checkpoints";
/// Where the inputs dir (if any) is mounted, read-only.
pub const CONTAINER_INPUTS_DIR: &str = "/inputs";
/// Size of the writable tmpfs at `/tmp`, or less under a disk limit (see [`disk_split`]).
pub const TMP_TMPFS_BYTES: u64 = 64 * 1024 * 1024;
/// Longest an image pull may take before `start` gives up with `ImageUnavailable`.
pub const IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How often running containers' usage is sampled.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How often what a writable root filesystem holds is measured (the engine walks the layer).
const LAYER_SIZE_INTERVAL: Duration = Duration::from_secs(2);
/// Seconds the engine has to answer a request (streams: to start answering).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How long the log may keep draining after the container has exited.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before asking the engine again when waiting for an exit failed.
const WAIT_RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// Bounds on the engine's own copy of a workload's log (see [`engine_log_max_bytes`]).
const ENGINE_LOG_MIN_BYTES: u64 = 16 * 1024 * 1024;
const ENGINE_LOG_MAX_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// File under `<root_dir>/work` recording that we stopped or wall-clock killed the workload.
const ENDED_BY_FILE: &str = "ended-by";
const MIB_BYTES: u64 = 1024 * 1024;

/// Runs workloads as Docker containers; see the module docs.
pub struct DockerDriver {
    socket: PathBuf,
    publish: Publish,
    client: tokio::sync::OnceCell<Docker>,
    /// The id of [`LEASE_NETWORK`], once known to exist with the right options.
    network: tokio::sync::Mutex<Option<String>>,
    workloads: tokio::sync::Mutex<BTreeMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for DockerDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerDriver")
            .field("socket", &self.socket)
            .field("connected", &self.client.initialized())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Entry {
    outcome: watch::Receiver<Option<ExitOutcome>>,
    stop: watch::Sender<Option<Duration>>,
    /// The container had already exited when this driver first saw it (after a restart).
    exited_when_found: bool,
    tasks: Vec<AbortHandle>,
}

/// What made the supervisor end a workload, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Stopped,
    WallClock,
    /// The disk watchdog found the outputs over their share of `disk_mib`.
    Disk,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Stopped => "stopped",
            Cause::WallClock => "wall_clock",
            Cause::Disk => "disk",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "stopped" => Some(Cause::Stopped),
            "wall_clock" => Some(Cause::WallClock),
            "disk" => Some(Cause::Disk),
            _ => None,
        }
    }
}

/// How a disk limit is split in a container: the `/tmp` tmpfs (in memory, out of the host's
/// sight) gets a quarter of it, at most [`TMP_TMPFS_BYTES`]; the watchdog allows the host-side
/// outputs the rest, so the two together stay within the limit.
fn disk_split(disk_limit_bytes: Option<u64>) -> (u64, Option<u64>) {
    match disk_limit_bytes {
        None => (TMP_TMPFS_BYTES, None),
        Some(limit) => {
            let tmp = (limit / 4).clamp(1, TMP_TMPFS_BYTES);
            (tmp, Some(limit.saturating_sub(tmp)))
        }
    }
}

impl Default for DockerDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl DockerDriver {
    /// A driver for the engine at `DOCKER_HOST` (when it is a `unix://` socket) or
    /// [`DEFAULT_DOCKER_SOCKET`]. Connects lazily: nothing fails here; an unreachable engine
    /// shows in [`Driver::fingerprint`] and `start`.
    pub fn new() -> Self {
        let socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DOCKER_SOCKET));
        Self::with_socket(socket)
    }

    /// A driver for the engine listening on this Unix socket.
    pub fn with_socket(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            publish: Publish::default(),
            client: tokio::sync::OnceCell::new(),
            network: tokio::sync::Mutex::new(None),
            workloads: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Publishes services' exposed ports where `publish` says instead of on loopback at any
    /// free port.
    pub fn with_publish(mut self, publish: Publish) -> Self {
        self.publish = publish;
        self
    }

    async fn client(&self) -> Result<&Docker, DriverError> {
        self.client.get_or_try_init(|| connect(&self.socket)).await
    }

    /// The id of [`LEASE_NETWORK`], made with inter-container traffic off the first time. A
    /// network of that name made by someone else with the traffic on is refused, naming the
    /// fix, rather than joined. Containers join it by id: an engine older than API 1.44 lets
    /// two drivers racing on a fresh machine each create one of that name (a name would then
    /// be ambiguous), so every driver picks the same one, the smallest id.
    async fn lease_network(&self, docker: &Docker, id: &str) -> Result<String, DriverError> {
        let mut cached = self.network.lock().await;
        if let Some(network) = cached.as_ref() {
            return Ok(network.clone());
        }
        let mut found = named_lease_networks(docker, id).await?;
        if found.is_empty() {
            match docker.create_network(lease_network_request()).await {
                Ok(_) => {}
                // Another driver created it meanwhile.
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(engine_error(id, "create the lease network")(e)),
            }
            found = named_lease_networks(docker, id).await?;
        }
        let network = found
            .into_iter()
            .filter(|n| n.id.is_some())
            .min_by(|a, b| a.id.cmp(&b.id))
            .ok_or_else(|| DriverError::Unavailable {
                driver: DOCKER_DRIVER_NAME,
                reason: format!(
                    "the engine lists no network {LEASE_NETWORK} right after creating it: \
                     check `docker network ls`"
                ),
            })?;
        let icc = network
            .options
            .as_ref()
            .and_then(|o| o.get(ICC_OPTION))
            .map(String::as_str);
        if icc != Some("false") || network.driver.as_deref() != Some("bridge") {
            return Err(DriverError::Unavailable {
                driver: DOCKER_DRIVER_NAME,
                reason: format!(
                    "the network {LEASE_NETWORK} exists but is not a bridge with \
                     {ICC_OPTION}=false, so leases could reach one another: remove it \
                     (`docker network rm {LEASE_NETWORK}`) and the driver makes it again"
                ),
            });
        }
        let network_id = network.id.unwrap_or_default();
        *cached = Some(network_id.clone());
        Ok(network_id)
    }

    /// Creates the workload's containers (the main one first, then every companion), adding
    /// each to `members` as it is made so the caller can remove them all if one fails.
    async fn create_members(
        &self,
        docker: &Docker,
        spec: &WorkloadSpec,
        log_offset_bytes: u64,
        lease_network: &str,
        group_network: &str,
        members: &mut Vec<Member>,
    ) -> Result<(), CreateError> {
        let id = &spec.workload_id;
        let hostname = spec.hostname.as_deref().unwrap_or(MAIN_MEMBER);
        let mut parts = vec![(
            None,
            spec.main_spec(),
            container_name(id),
            hostname.to_owned(),
        )];
        for companion in &spec.companions {
            let member = companion.member();
            parts.push((
                Some(companion),
                spec.companion_spec(companion),
                companion_container_name(id, &member),
                member,
            ));
        }
        for (companion, part, name, member) in parts {
            let image = part.image.as_deref().unwrap_or_default();
            let attach = if spec.companions.is_empty() {
                match part.network {
                    NetworkMode::Egress => Attach::Lease(lease_network),
                    NetworkMode::None => Attach::Nothing,
                }
            } else {
                Attach::Group {
                    network: group_network,
                    alias: companion.map_or(hostname, |c| c.service.as_str()),
                }
            };
            let owner = if companion.is_some() {
                member.as_str()
            } else {
                MAIN_VOLUME_OWNER
            };
            for volume in &part.volumes {
                let dir = volume_dir(&spec.root_dir, owner, &volume.name);
                gpunet_files::create_private_dir_all(&dir)
                    .and_then(|()| open_to_any_user(&dir, true))
                    .map_err(|source| {
                        CreateError::Driver(DriverError::Io {
                            action: "create",
                            path: dir.clone(),
                            source,
                        })
                    })?;
            }
            let mut body =
                container_body(&part, image, log_offset_bytes, &self.publish, attach, owner);
            let labels = body.labels.get_or_insert_with(HashMap::new);
            if !part.volumes.is_empty() {
                labels.insert(
                    LABEL_VOLUMES.to_owned(),
                    part.volumes
                        .iter()
                        .map(|v| format!("{}={}", v.name, v.size_mib.saturating_mul(MIB_BYTES)))
                        .collect::<Vec<_>>()
                        .join(";"),
                );
            }
            if companion.is_none() && spec.restarts > 0 {
                labels.insert(LABEL_RESTARTS.to_owned(), spec.restarts.to_string());
            }
            match companion {
                Some(c) => {
                    labels.insert(LABEL_SERVICE.to_owned(), c.service.clone());
                    labels.insert(LABEL_REPLICA.to_owned(), c.replica.to_string());
                }
                None if !spec.companions.is_empty() => {
                    labels.insert(LABEL_HOSTNAME.to_owned(), hostname.to_owned());
                }
                None => {}
            }
            let options = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            let created = match docker.create_container(Some(options), body).await {
                Ok(created) => created,
                Err(e) if is_conflict(&e) => return Err(CreateError::Conflict),
                Err(e) => {
                    if is_not_found(&e) {
                        // The lease network may have been removed under us: look again next time.
                        *self.network.lock().await = None;
                    }
                    return Err(CreateError::Driver(engine_error(
                        id,
                        "create the container",
                    )(e)));
                }
            };
            members.push(Member {
                name: member,
                container_id: created.id.clone(),
            });
            if matches!(attach, Attach::Group { .. }) && part.network == NetworkMode::Egress {
                let request = bollard::models::NetworkConnectRequest {
                    container: created.id,
                    endpoint_config: None,
                };
                if let Err(e) = docker.connect_network(lease_network, request).await {
                    if is_not_found(&e) {
                        *self.network.lock().await = None;
                    }
                    return Err(CreateError::Driver(engine_error(
                        id,
                        "join a container to the lease network",
                    )(e)));
                }
            }
        }
        Ok(())
    }

    /// The entry for `handle`, adopting its container if this driver has not seen it.
    async fn entry_for(&self, handle: &WorkloadHandle) -> Result<Arc<Entry>, DriverError> {
        check_driver(DOCKER_DRIVER_NAME, handle)?;
        let mut map = self.workloads.lock().await;
        if let Some(entry) = map.get(&handle.workload_id) {
            return Ok(Arc::clone(entry));
        }
        let docker = self.client().await?;
        let entry = Arc::new(adopt(docker, handle).await?);
        map.insert(handle.workload_id.clone(), Arc::clone(&entry));
        Ok(entry)
    }
}

impl Drop for DockerDriver {
    fn drop(&mut self) {
        // Like an agent crash: our tasks end, the containers run on until recovered.
        for entry in self.workloads.get_mut().values() {
            for task in &entry.tasks {
                task.abort();
            }
        }
    }
}

/// Connects to the engine and negotiates the API version, or says clearly why not.
async fn connect(socket: &Path) -> Result<Docker, DriverError> {
    let unavailable = |reason: String| DriverError::Unavailable {
        driver: DOCKER_DRIVER_NAME,
        reason,
    };
    let shown = socket.display();
    // A plain connect first: its io::Error tells "missing" from "not allowed" from "not
    // listening" more clearly than the HTTP client's does.
    if let Err(error) = tokio::net::UnixStream::connect(socket).await {
        let reason = match error.kind() {
            std::io::ErrorKind::NotFound => format!(
                "docker socket {shown} does not exist: install and start the Docker Engine, or set DOCKER_HOST=unix://<path>"
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "permission denied on docker socket {shown}: run the agent as root or add its user to the `docker` group"
            ),
            std::io::ErrorKind::ConnectionRefused => {
                format!("nothing listens on docker socket {shown}: start the Docker Engine")
            }
            _ => format!("could not connect to docker socket {shown}: {error}"),
        };
        return Err(unavailable(reason));
    }
    let path = socket.to_str().ok_or_else(|| {
        unavailable(format!(
            "docker socket path {shown} is not valid UTF-8, which the client needs"
        ))
    })?;
    let docker =
        Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| unavailable(format!("could not set up a client for {shown}: {e}")))?;
    docker.negotiate_version().await.map_err(|e| {
        unavailable(format!(
            "could not agree on an API version with the engine at {shown}: {e}"
        ))
    })
}

fn engine_error(
    workload_id: &str,
    action: &'static str,
) -> impl FnOnce(EngineError) -> DriverError {
    move |source| DriverError::Engine {
        workload_id: workload_id.to_owned(),
        action,
        source: Box::new(source),
    }
}

fn is_not_found(error: &EngineError) -> bool {
    matches!(
        error,
        EngineError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_conflict(error: &EngineError) -> bool {
    matches!(
        error,
        EngineError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// Whether a pause or unpause found the container already in that state (or not running):
/// 409 Conflict on recent engines, 500 with the reason on older ones (20.10 says "… is not
/// paused").
fn already_so(error: &EngineError) -> bool {
    match error {
        EngineError::DockerResponseServerError {
            status_code: 409, ..
        } => true,
        EngineError::DockerResponseServerError {
            status_code: 500,
            message,
        } => ["is not paused", "is already paused", "is not running"]
            .iter()
            .any(|m| message.contains(m)),
        _ => false,
    }
}

/// Whether the engine refused to pause because it cannot here (not a passing failure): runc
/// without a freezer, as rootless on cgroup v1.
fn cannot_pause_here(error: &EngineError) -> Option<String> {
    match error {
        EngineError::DockerResponseServerError {
            status_code: 500,
            message,
        } => {
            let lower = message.to_lowercase();
            (lower.contains("not supported")
                || lower.contains("rootless")
                || lower.contains("freezer"))
            .then(|| message.clone())
        }
        _ => None,
    }
}

/// The container's name for a workload.
pub fn container_name(workload_id: &str) -> String {
    format!("gpunet-{workload_id}")
}

/// The container name of a workload's companion (`<service>-<replica>`).
pub fn companion_container_name(workload_id: &str, member: &str) -> String {
    format!("gpunet-{workload_id}-{member}")
}

/// The private network of a workload with companions.
pub fn group_network_name(workload_id: &str) -> String {
    format!("gpunet-{workload_id}-net")
}

/// How a container joins networks.
#[derive(Debug, Clone, Copy)]
enum Attach<'a> {
    /// Loopback only.
    Nothing,
    /// [`LEASE_NETWORK`], by its id.
    Lease(&'a str),
    /// The workload's own network, under `alias`; [`LEASE_NETWORK`] is joined after creation
    /// when the container has egress.
    Group { network: &'a str, alias: &'a str },
}

/// One container of a workload as the supervisor sees it.
#[derive(Debug, Clone)]
struct Member {
    /// `main` for the main container, `<service>-<replica>` for a companion: what its log lines
    /// and the notes about it are prefixed with.
    name: String,
    container_id: String,
}

/// The log file the followers of one workload write to, under one cap.
struct LogSink {
    file: tokio::fs::File,
    cap: LogCap,
    failed: bool,
}

type SharedSink = Arc<tokio::sync::Mutex<LogSink>>;

impl LogSink {
    fn shared(file: std::fs::File, cap: LogCap) -> SharedSink {
        Arc::new(tokio::sync::Mutex::new(LogSink {
            file: tokio::fs::File::from_std(file),
            cap,
            failed: false,
        }))
    }

    /// Writes what the cap admits of `bytes`; after a failed write, nothing more.
    async fn write(&mut self, bytes: &[u8], what: &str) {
        let admitted = self.cap.admit(bytes);
        if admitted.is_empty() || self.failed {
            return;
        }
        if let Err(error) = self.file.write_all(&admitted).await {
            tracing::warn!(container = %what, %error, "could not write the workload's log; dropping the rest");
            self.failed = true;
        }
    }
}

/// Splits a container's output into lines, each prefixed with the container's name (`api-0 |
/// `), so the lines of a workload's containers stay apart in one log. A partial line waits
/// for its end (up to [`MAX_PENDING_LINE_BYTES`]).
#[derive(Debug)]
struct Prefixed {
    prefix: Vec<u8>,
    pending: Vec<u8>,
}

impl Prefixed {
    fn new(name: &str) -> Self {
        Prefixed {
            prefix: format!("{name} | ").into_bytes(),
            pending: Vec::new(),
        }
    }

    /// The complete lines of what came so far, prefixed.
    fn lines(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(at) = self.pending[start..].iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&self.prefix);
            out.extend_from_slice(&self.pending[start..=start + at]);
            start += at + 1;
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_PENDING_LINE_BYTES {
            out.extend(self.finish());
        }
        out
    }

    /// What is left of a last line without its end, prefixed and ended.
    fn finish(&mut self) -> Vec<u8> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let mut out = self.prefix.clone();
        out.append(&mut self.pending);
        out.push(b'\n');
        out
    }
}

#[async_trait::async_trait]
impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        DOCKER_DRIVER_NAME
    }

    async fn fingerprint(&self) -> Result<DriverInfo, DriverError> {
        let docker = self.client().await?;
        let version = docker
            .version()
            .await
            .map_err(|e| DriverError::Unavailable {
                driver: DOCKER_DRIVER_NAME,
                reason: format!("the engine did not report its version: {e}"),
            })?;
        let engine_version = version.version.unwrap_or_else(|| "unknown".into());
        let unknown = || "unknown".to_owned();
        Ok(DriverInfo {
            name: DOCKER_DRIVER_NAME.into(),
            version: engine_version.clone(),
            detail: format!(
                "docker engine {engine_version}, api {} (client speaks {}), {}/{}, kernel {}",
                version.api_version.unwrap_or_else(unknown),
                docker.client_version(),
                version.os.unwrap_or_else(unknown),
                version.arch.unwrap_or_else(unknown),
                version.kernel_version.unwrap_or_else(unknown),
            ),
            isolated: true,
        })
    }

    async fn start(&self, spec: &WorkloadSpec) -> Result<WorkloadHandle, DriverError> {
        spec.validate()?;
        let image = spec.image.as_deref().ok_or(SpecError::MissingImage)?;
        let id = &spec.workload_id;
        let root = &spec.root_dir;
        let docker = self.client().await?;
        let already = || DriverError::AlreadyExists {
            workload_id: id.clone(),
        };
        if self.workloads.lock().await.contains_key(id) {
            return Err(already());
        }
        if find_container(docker, id).await?.is_some() {
            return Err(already());
        }
        create_workload_dirs(root)?;
        open_mounts_to_any_user(root)?;
        // A stale record from an earlier run in this root dir must not classify this one.
        let ended_by = work_dir(root).join(ENDED_BY_FILE);
        match std::fs::remove_file(&ended_by) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(DriverError::Io {
                    action: "remove",
                    path: ended_by,
                    source: e,
                });
            }
            _ => {}
        }
        let _ = std::fs::remove_file(work_dir(root).join(RESTARTS_FILE));
        let (log_file, log_offset_bytes) = open_log(root)?;
        ensure_image(docker, id, image).await?;
        for companion in &spec.companions {
            ensure_image(docker, id, &companion.image).await?;
        }
        let egress = spec.network == NetworkMode::Egress
            || spec
                .companions
                .iter()
                .any(|c| c.network == NetworkMode::Egress);
        let lease_network = if egress {
            self.lease_network(docker, id).await?
        } else {
            String::new()
        };
        let group = !spec.companions.is_empty();
        let group_network = if group {
            create_group_network(docker, id).await?
        } else {
            String::new()
        };

        // Every container is created before any starts, and all are removed if one fails,
        // so a workload never runs in part.
        let mut members: Vec<Member> = Vec::new();
        let created = self
            .create_members(
                docker,
                spec,
                log_offset_bytes,
                &lease_network,
                &group_network,
                &mut members,
            )
            .await;
        let started = match created {
            Ok(()) => start_members(docker, id, &members).await,
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            remove_members(docker, &members).await;
            if group {
                remove_group_network(docker, id).await;
            }
            return Err(match e {
                CreateError::Conflict => already(),
                CreateError::Driver(e) => e,
            });
        }
        let main_id = members[0].container_id.clone();
        let inspected = docker
            .inspect_container(&main_id, None)
            .await
            .map_err(engine_error(id, "inspect the started container"))?;
        let started_ms = inspected
            .state
            .as_ref()
            .and_then(|s| s.started_at.as_deref())
            .and_then(parse_rfc3339_ms)
            .unwrap_or_else(now_ms);

        let sink = LogSink::shared(
            log_file,
            LogCap::new(log_offset_bytes, spec.log_limit_bytes),
        );
        let followers = members
            .iter()
            .map(|m| {
                tokio::spawn(follow_log(
                    docker.clone(),
                    m.container_id.clone(),
                    Arc::clone(&sink),
                    0,
                    0,
                    group.then(|| Prefixed::new(&m.name)),
                ))
            })
            .collect();
        let mut volumes: Vec<Watched> = spec
            .volumes
            .iter()
            .map(|v| Watched::new(root, 0, MAIN_VOLUME_OWNER, &v.name, v.size_mib * MIB_BYTES))
            .collect();
        for (i, companion) in spec.companions.iter().enumerate() {
            for v in &companion.volumes {
                volumes.push(Watched::new(
                    root,
                    i + 1,
                    &companion.member(),
                    &v.name,
                    v.size_mib.saturating_mul(MIB_BYTES),
                ));
            }
        }
        let entry = supervise_in_background(Supervised {
            docker: docker.clone(),
            workload_id: id.clone(),
            members,
            root_dir: root.clone(),
            deadline: deadline_after(started_ms, spec.max_duration),
            cause: None,
            disk_limit_bytes: disk_split(spec.disk_limit_bytes()).1,
            volumes,
            restarts_left: spec.restarts,
            followers,
            sink,
            exited_when_found: false,
        });
        self.workloads
            .lock()
            .await
            .insert(id.clone(), Arc::new(entry));
        tracing::info!(workload_id = %id, container = %container_name(id), image, companions = spec.companions.len(), "workload started");
        Ok(WorkloadHandle {
            workload_id: id.clone(),
            driver: DOCKER_DRIVER_NAME.into(),
            pid: None,
            start_ticks: None,
            root_dir: root.clone(),
        })
    }

    async fn wait(&self, handle: &WorkloadHandle) -> Result<ExitOutcome, DriverError> {
        let entry = self.entry_for(handle).await?;
        wait_outcome(&entry, &handle.workload_id).await
    }

    async fn logs(
        &self,
        handle: &WorkloadHandle,
        from_offset: u64,
        max_bytes: usize,
    ) -> Result<LogChunk, DriverError> {
        let entry = self.entry_for(handle).await?;
        // Read the state before the file, so "finished" never covers bytes not yet read.
        let ended = entry.outcome.borrow().is_some();
        let (data, len) = read_chunk(&log_path(&handle.root_dir), from_offset, max_bytes)?;
        let next_offset = from_offset + data.len() as u64;
        Ok(LogChunk {
            data,
            next_offset,
            finished: ended && next_offset >= len,
        })
    }

    async fn stop(&self, handle: &WorkloadHandle, grace: Duration) -> Result<(), DriverError> {
        let entry = self.entry_for(handle).await?;
        if entry.outcome.borrow().is_some() {
            return Ok(());
        }
        request_stop(&entry.stop, grace);
        wait_outcome(&entry, &handle.workload_id).await.map(|_| ())
    }

    async fn pause(&self, handle: &WorkloadHandle) -> Result<(), DriverError> {
        let entry = self.entry_for(handle).await?;
        if entry.outcome.borrow().is_some() {
            return Ok(());
        }
        let docker = self.client().await?;
        for name in all_containers(docker, &handle.workload_id).await? {
            match docker.pause_container(&name).await {
                Ok(()) => {}
                // Already paused, or no longer running; 404: gone. Nothing left to freeze.
                Err(e) if already_so(&e) || is_not_found(&e) => {}
                Err(e) => {
                    return Err(match cannot_pause_here(&e) {
                        Some(why) => DriverError::PauseUnsupported {
                            workload_id: handle.workload_id.clone(),
                            why,
                        },
                        None => engine_error(&handle.workload_id, "pause the container")(e),
                    });
                }
            }
        }
        Ok(())
    }

    async fn resume(&self, handle: &WorkloadHandle) -> Result<(), DriverError> {
        let entry = self.entry_for(handle).await?;
        if entry.outcome.borrow().is_some() {
            return Ok(());
        }
        let docker = self.client().await?;
        for name in all_containers(docker, &handle.workload_id).await? {
            match docker.unpause_container(&name).await {
                Ok(()) => {}
                // Not paused (or not running); 404: gone.
                Err(e) if already_so(&e) || is_not_found(&e) => {}
                Err(e) => {
                    return Err(engine_error(&handle.workload_id, "unpause the container")(
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    async fn destroy(&self, handle: &WorkloadHandle) -> Result<(), DriverError> {
        let entry = self.entry_for(handle).await?;
        if entry.outcome.borrow().is_none() {
            return Err(DriverError::StillRunning {
                workload_id: handle.workload_id.clone(),
            });
        }
        let docker = self.client().await?;
        let id = &handle.workload_id;
        for name in all_containers(docker, id).await? {
            let options = RemoveContainerOptions {
                v: true,
                // A companion the supervisor could not end is ended now: the workload has.
                force: true,
                ..Default::default()
            };
            match docker.remove_container(&name, Some(options)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(engine_error(id, "remove the container")(e)),
            }
        }
        remove_group_network(docker, id).await;
        remove_work_dir(&handle.root_dir)?;
        // A lease's volumes live only as long as it does.
        remove_volumes(&handle.root_dir)?;
        self.workloads.lock().await.remove(&handle.workload_id);
        Ok(())
    }

    async fn recover(&self, handle: &WorkloadHandle) -> Result<RecoverState, DriverError> {
        let entry = self.entry_for(handle).await?;
        let outcome = if entry.exited_when_found {
            Some(wait_outcome(&entry, &handle.workload_id).await?)
        } else {
            entry.outcome.borrow().clone()
        };
        Ok(match outcome {
            None => RecoverState::Running,
            Some(outcome) if outcome.reason == ExitReason::Lost => RecoverState::Lost,
            Some(outcome) => RecoverState::Exited(outcome),
        })
    }

    async fn ports(&self, handle: &WorkloadHandle) -> Result<Vec<PublishedPort>, DriverError> {
        check_driver(DOCKER_DRIVER_NAME, handle)?;
        let id = &handle.workload_id;
        let docker = self.client().await?;
        let mut out = running_ports(docker, id, &container_name(id)).await?;
        for (service, replica, container_id) in find_companions(docker, id).await? {
            out.extend(
                running_ports(docker, id, &container_id)
                    .await?
                    .into_iter()
                    .map(|p| PublishedPort {
                        service: Some(service.clone()),
                        replica,
                        ..p
                    }),
            );
        }
        Ok(out)
    }

    /// `docker exec` with its input attached and, with `tty`, a terminal: as `exec`, the
    /// command runs in the container's namespaces, cgroup, seccomp profile and capability set,
    /// as its user, never privileged.
    async fn shell(
        &self,
        handle: &WorkloadHandle,
        service: Option<&str>,
        argv: &[String],
        tty: Option<(u16, u16)>,
    ) -> Result<crate::ShellSession, DriverError> {
        use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
        check_driver(DOCKER_DRIVER_NAME, handle)?;
        let id = &handle.workload_id;
        let docker = self.client().await?;
        let name = running_target(docker, id, service).await?;
        let mut env = Vec::new();
        if tty.is_some() {
            env.push("TERM=xterm-256color".to_owned());
        }
        let created = docker
            .create_exec(
                &name,
                CreateExecOptions::<String> {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty.is_some()),
                    privileged: Some(false),
                    env: Some(env),
                    cmd: Some(argv.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(engine_error(id, "create an exec"))?;
        let started = docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: tty.is_some(),
                    output_capacity: None,
                }),
            )
            .await
            .map_err(engine_error(id, "start an exec"))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(DriverError::ExecUnsupported {
                driver: DOCKER_DRIVER_NAME,
                why: "the engine started the shell detached".into(),
            });
        };
        let control = DockerShell {
            docker: docker.clone(),
            exec_id: created.id,
        };
        if let Some((cols, rows)) = tty {
            crate::ShellControl::resize(&control, cols, rows).await;
        }
        let output = output
            .take_while(|item| std::future::ready(item.is_ok()))
            .filter_map(|item| std::future::ready(item.ok().map(|o| o.into_bytes().to_vec())))
            .boxed();
        Ok(crate::ShellSession {
            output,
            input,
            control: Box::new(control),
        })
    }

    /// `docker exec` without a TTY or stdin: the command runs in the container's namespaces,
    /// cgroup, seccomp profile and capability set, as its user, never privileged.
    async fn exec(
        &self,
        handle: &WorkloadHandle,
        service: Option<&str>,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
        check_driver(DOCKER_DRIVER_NAME, handle)?;
        let id = &handle.workload_id;
        let docker = self.client().await?;
        let name = running_target(docker, id, service).await?;
        let created = docker
            .create_exec(
                &name,
                CreateExecOptions::<String> {
                    attach_stdin: Some(false),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    privileged: Some(false),
                    cmd: Some(argv.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(engine_error(id, "create an exec"))?;
        let started = docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(engine_error(id, "start an exec"))?;
        let mut out = ExecOutput::default();
        if let StartExecResults::Attached { mut output, .. } = started {
            let read = async {
                while let Some(item) = output.next().await {
                    let (buf, bytes) = match item {
                        Ok(bollard::container::LogOutput::StdOut { message }) => {
                            (&mut out.stdout, message)
                        }
                        Ok(bollard::container::LogOutput::StdErr { message }) => {
                            (&mut out.stderr, message)
                        }
                        Ok(_) => continue,
                        Err(_) => break,
                    };
                    let room = MAX_EXEC_OUTPUT_BYTES.saturating_sub(buf.len());
                    if bytes.len() > room {
                        out.truncated = true;
                    }
                    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            };
            if tokio::time::timeout(timeout, read).await.is_err() {
                out.timed_out = true;
                return Ok(out);
            }
        }
        let inspected = docker
            .inspect_exec(&created.id)
            .await
            .map_err(engine_error(id, "inspect an exec"))?;
        out.exit_code = inspected.exit_code;
        Ok(out)
    }
}

/// A `docker exec` of a shell: resized and read through the engine.
struct DockerShell {
    docker: Docker,
    exec_id: String,
}

#[async_trait::async_trait]
impl crate::ShellControl for DockerShell {
    async fn resize(&self, cols: u16, rows: u16) {
        let size = bollard::query_parameters::ResizeExecOptions {
            h: i32::from(rows),
            w: i32::from(cols),
        };
        if let Err(error) = self.docker.resize_exec(&self.exec_id, size).await {
            tracing::debug!(%error, "could not resize a shell's terminal");
        }
    }

    async fn exit_code(&self) -> Option<i64> {
        let inspected = self.docker.inspect_exec(&self.exec_id).await.ok()?;
        if inspected.running == Some(true) {
            return None;
        }
        inspected.exit_code
    }
}

async fn wait_outcome(entry: &Entry, workload_id: &str) -> Result<ExitOutcome, DriverError> {
    let mut outcome = entry.outcome.clone();
    let gone = || DriverError::SupervisorGone {
        workload_id: workload_id.to_owned(),
    };
    let seen = outcome
        .wait_for(Option::is_some)
        .await
        .map_err(|_| gone())?;
    seen.clone().ok_or_else(gone)
}

/// Every container labelled with this workload, running or not: the main one and its
/// companions.
async fn workload_containers(
    docker: &Docker,
    workload_id: &str,
) -> Result<Vec<bollard::models::ContainerSummary>, DriverError> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_WORKLOAD}={workload_id}"),
        ],
    )]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    docker
        .list_containers(Some(options))
        .await
        .map_err(engine_error(workload_id, "list containers"))
}

/// The id of the workload's main container, running or not: the one that is no service's
/// replica.
async fn find_container(docker: &Docker, workload_id: &str) -> Result<Option<String>, DriverError> {
    Ok(workload_containers(docker, workload_id)
        .await?
        .into_iter()
        .filter(|c| {
            !c.labels
                .as_ref()
                .is_some_and(|l| l.contains_key(LABEL_SERVICE))
        })
        .find_map(|c| c.id))
}

/// The container a command runs in — the main one, or `service`'s — once it is known to be
/// running.
async fn running_target(
    docker: &Docker,
    id: &str,
    service: Option<&str>,
) -> Result<String, DriverError> {
    let name = match service {
        None => container_name(id),
        Some(service) => exec_target(docker, id, service).await?,
    };
    let running = match docker.inspect_container(&name, None).await {
        Ok(c) => c.state.and_then(|s| s.running).unwrap_or(false),
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(engine_error(id, "inspect the container")(e)),
    };
    if !running {
        return Err(DriverError::NotRunning {
            workload_id: id.to_owned(),
        });
    }
    Ok(name)
}

/// The container `exec` runs in for `service`: the first replica of that companion, or the
/// main container when `service` is its hostname.
async fn exec_target(docker: &Docker, id: &str, service: &str) -> Result<String, DriverError> {
    let companions = find_companions(docker, id).await?;
    if let Some((_, _, container_id)) = companions.iter().find(|(s, _, _)| s == service) {
        return Ok(container_id.clone());
    }
    let main = container_name(id);
    let hostname = match docker.inspect_container(&main, None).await {
        Ok(c) => c
            .config
            .and_then(|c| c.labels)
            .and_then(|mut l| l.remove(LABEL_HOSTNAME)),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(engine_error(id, "inspect the container")(e)),
    };
    if hostname.as_deref() == Some(service) {
        return Ok(main);
    }
    let mut known: Vec<String> = hostname.into_iter().collect();
    for (s, _, _) in companions {
        if !known.contains(&s) {
            known.push(s);
        }
    }
    Err(DriverError::NoSuchService {
        workload_id: id.to_owned(),
        service: service.to_owned(),
        known,
    })
}

/// Where a running container's ports are published; none once it has stopped or is gone.
async fn running_ports(
    docker: &Docker,
    id: &str,
    container: &str,
) -> Result<Vec<PublishedPort>, DriverError> {
    let inspected = match docker.inspect_container(container, None).await {
        Ok(inspected) => inspected,
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(engine_error(id, "inspect the container")(e)),
    };
    let running = inspected
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false);
    if !running {
        return Ok(Vec::new());
    }
    let ports = inspected
        .network_settings
        .and_then(|n| n.ports)
        .unwrap_or_default();
    Ok(published_ports(&ports))
}

/// Why creating a workload's containers failed.
enum CreateError {
    /// A container of that name exists: the workload was started already.
    Conflict,
    Driver(DriverError),
}

/// Starts the companions, then the main container (so what it calls is there first).
async fn start_members(docker: &Docker, id: &str, members: &[Member]) -> Result<(), CreateError> {
    for member in members.iter().skip(1).chain(members.first()) {
        docker
            .start_container(&member.container_id, None)
            .await
            .map_err(|e| CreateError::Driver(engine_error(id, "start the container")(e)))?;
    }
    Ok(())
}

/// The main container's name and the ids of the companions: every container of the workload.
async fn all_containers(docker: &Docker, id: &str) -> Result<Vec<String>, DriverError> {
    let companions = find_companions(docker, id).await?;
    Ok(std::iter::once(container_name(id))
        .chain(
            companions
                .into_iter()
                .map(|(_, _, container_id)| container_id),
        )
        .collect())
}

/// Removes containers, running or not, so a workload that failed to start leaves none behind
/// to be mistaken for a run.
async fn remove_members(docker: &Docker, members: &[Member]) {
    for member in members {
        let _ = docker
            .remove_container(
                &member.container_id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}

/// Creates the private network of a workload with companions and returns its name: a bridge
/// marked `internal` (nothing outside it is reachable from it, and it is reachable only from
/// its own containers), where the engine's DNS resolves each container's alias. One left from
/// an attempt that failed to start is reused.
async fn create_group_network(docker: &Docker, id: &str) -> Result<String, DriverError> {
    let name = group_network_name(id);
    let request = bollard::models::NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        internal: Some(true),
        labels: Some(HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_WORKLOAD.to_owned(), id.to_owned()),
        ])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(name),
        Err(e) if is_conflict(&e) => Ok(name),
        Err(e) => Err(engine_error(id, "create the workload's network")(e)),
    }
}

/// Removes a workload's private network; one already gone is fine.
async fn remove_group_network(docker: &Docker, id: &str) {
    match docker.remove_network(&group_network_name(id)).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(error) => {
            tracing::warn!(workload_id = %id, %error, "could not remove the workload's network");
        }
    }
}

/// A workload's companion containers, running or not, by their labels: `(service, replica,
/// container id)`, sorted.
async fn find_companions(
    docker: &Docker,
    workload_id: &str,
) -> Result<Vec<(String, u32, String)>, DriverError> {
    let found = workload_containers(docker, workload_id).await?;
    let mut out: Vec<(String, u32, String)> = found
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels?;
            let service = labels.get(LABEL_SERVICE)?.clone();
            let replica = labels.get(LABEL_REPLICA)?.parse().ok()?;
            Some((service, replica, c.id?))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Uses a local image, else pulls it; `ImageUnavailable` if neither works.
async fn ensure_image(docker: &Docker, workload_id: &str, image: &str) -> Result<(), DriverError> {
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(engine_error(workload_id, "look up the image")(e)),
    }
    tracing::info!(workload_id, image, "image not present locally; pulling it");
    let options = CreateImageOptions {
        from_image: Some(with_default_tag(image)),
        ..Default::default()
    };
    let pull = async {
        let mut progress = docker.create_image(Some(options), None, None);
        while let Some(item) = progress.next().await {
            match item {
                Ok(info) => {
                    if let Some(message) = info.error_detail.and_then(|d| d.message) {
                        return Err(message);
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    };
    let unavailable = |reason: String| DriverError::ImageUnavailable {
        image: image.to_owned(),
        reason,
    };
    match tokio::time::timeout(IMAGE_PULL_TIMEOUT, pull).await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => {
            return Err(unavailable(format!(
                "it is not present locally and pulling it failed: {reason}"
            )));
        }
        Err(_) => {
            return Err(unavailable(format!(
                "it is not present locally and pulling it took longer than {} s",
                IMAGE_PULL_TIMEOUT.as_secs()
            )));
        }
    }
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Err(unavailable(
            "the pull finished but the engine still does not have it".into(),
        )),
        Err(e) => Err(engine_error(workload_id, "look up the pulled image")(e)),
    }
}

/// `name` → `name:latest`; tagged or digested references stay as they are (an untagged pull
/// would fetch every tag).
fn with_default_tag(image: &str) -> String {
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last_segment.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// How large the engine's own `json-file` copy of a log may grow: four times our cap (each line
/// is wrapped in JSON), within [16 MiB, 4 GiB]. It bounds the disk a chatty workload can fill
/// behind our back; rotation only matters for a follower re-attached after a restart.
pub fn engine_log_max_bytes(log_limit_bytes: u64) -> u64 {
    log_limit_bytes
        .saturating_mul(4)
        .clamp(ENGINE_LOG_MIN_BYTES, ENGINE_LOG_MAX_BYTES)
}

/// The networks named exactly [`LEASE_NETWORK`] (the engine's filter matches parts of names).
async fn named_lease_networks(
    docker: &Docker,
    id: &str,
) -> Result<Vec<bollard::models::Network>, DriverError> {
    let options = bollard::query_parameters::ListNetworksOptions {
        filters: Some(HashMap::from([(
            "name".to_owned(),
            vec![LEASE_NETWORK.to_owned()],
        )])),
    };
    Ok(docker
        .list_networks(Some(options))
        .await
        .map_err(engine_error(id, "list the lease networks"))?
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(LEASE_NETWORK))
        .collect())
}

/// What [`DockerDriver::lease_network`] creates.
fn lease_network_request() -> bollard::models::NetworkCreateRequest {
    bollard::models::NetworkCreateRequest {
        name: LEASE_NETWORK.to_owned(),
        driver: Some("bridge".into()),
        options: Some(HashMap::from([(ICC_OPTION.to_owned(), "false".to_owned())])),
        labels: Some(HashMap::from([(
            LABEL_MANAGED.to_owned(),
            "true".to_owned(),
        )])),
        ..Default::default()
    }
}

/// The container the engine should create for `spec`; see the module docs.
fn container_body(
    spec: &WorkloadSpec,
    image: &str,
    log_offset_bytes: u64,
    publish: &Publish,
    attach: Attach<'_>,
    volume_owner: &str,
) -> ContainerCreateBody {
    let root = &spec.root_dir;
    let mut env: BTreeMap<String, String> = spec.env.clone();
    env.insert("GPUNET_OUTPUTS".into(), CONTAINER_OUTPUTS_DIR.into());
    let gpus = spec.gpu_uuids.join(",");
    env.insert("CUDA_VISIBLE_DEVICES".into(), gpus.clone());
    env.insert(
        "NVIDIA_VISIBLE_DEVICES".into(),
        if gpus.is_empty() { "void".into() } else { gpus },
    );

    let mut mounts = vec![Mount {
        target: Some(CONTAINER_OUTPUTS_DIR.into()),
        source: Some(outputs_dir(root).to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(false),
        ..Default::default()
    }];
    let inputs = root.join("inputs");
    if inputs.is_dir() {
        env.insert("GPUNET_INPUTS".into(), CONTAINER_INPUTS_DIR.into());
        mounts.push(Mount {
            target: Some(CONTAINER_INPUTS_DIR.into()),
            source: Some(inputs.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }

    let checkpoints = checkpoints_dir(root);
    if checkpoints.is_dir() {
        env.insert(
            "GPUNET_CHECKPOINTS".into(),
            CONTAINER_CHECKPOINTS_DIR.into(),
        );
        mounts.push(Mount {
            target: Some(CONTAINER_CHECKPOINTS_DIR.into()),
            source: Some(checkpoints.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(false),
            ..Default::default()
        });
    }

    for volume in &spec.volumes {
        mounts.push(Mount {
            target: Some(volume.mount.clone()),
            source: Some(
                volume_dir(root, volume_owner, &volume.name)
                    .to_string_lossy()
                    .into_owned(),
            ),
            typ: Some(MountType::BIND),
            read_only: Some(false),
            ..Default::default()
        });
    }

    let device_requests = (!spec.gpu_uuids.is_empty()).then(|| {
        vec![DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(spec.gpu_uuids.clone()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]
    });

    let port_keys: Vec<String> = spec
        .expose
        .iter()
        .map(|p| format!("{}/{}", p.container_port, p.proto.as_str()))
        .collect();
    let port_bindings = (!port_keys.is_empty()).then(|| {
        port_keys
            .iter()
            .map(|key| {
                let binding = PortBinding {
                    host_ip: Some(publish.host_ip.to_string()),
                    // Empty: the engine picks a free port; a range: one free in it.
                    host_port: Some(publish.ports.map(|r| r.to_string()).unwrap_or_default()),
                };
                (key.clone(), Some(vec![binding]))
            })
            .collect()
    });

    let (tmp_bytes, outputs_limit_bytes) = disk_split(spec.disk_limit_bytes());
    let mut labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKLOAD.to_owned(), spec.workload_id.clone()),
        (
            LABEL_MAX_DURATION_MS.to_owned(),
            spec.max_duration.as_millis().to_string(),
        ),
        (
            LABEL_LOG_OFFSET_BYTES.to_owned(),
            log_offset_bytes.to_string(),
        ),
        (
            LABEL_LOG_LIMIT_BYTES.to_owned(),
            spec.log_limit_bytes.to_string(),
        ),
    ]);
    if let Some(bytes) = outputs_limit_bytes {
        labels.insert(LABEL_DISK_LIMIT_BYTES.to_owned(), bytes.to_string());
    }
    let memory_bytes = i64::try_from(spec.memory_mib.saturating_mul(MIB_BYTES)).unwrap_or(i64::MAX);
    let host_config = HostConfig {
        nano_cpus: Some(i64::from(spec.cpu_millis) * 1_000_000),
        memory: Some(memory_bytes),
        memory_swap: Some(memory_bytes),
        pids_limit: Some(i64::from(spec.pids_limit)),
        readonly_rootfs: Some(spec.read_only_rootfs),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_owned(),
            format!("rw,nosuid,nodev,size={tmp_bytes}"),
        )])),
        // Everything dropped, then what the workload was granted (the agent grants at most
        // `GRANTABLE_CAPABILITIES`, and validation refuses anything else).
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: (!spec.capabilities.is_empty()).then(|| spec.capabilities.clone()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        privileged: Some(false),
        mounts: Some(mounts),
        network_mode: Some(
            match attach {
                Attach::Nothing => "none",
                Attach::Lease(network) => network,
                Attach::Group { network, .. } => network,
            }
            .into(),
        ),
        port_bindings,
        device_requests,
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                (
                    "max-size".to_owned(),
                    engine_log_max_bytes(spec.log_limit_bytes).to_string(),
                ),
                ("max-file".to_owned(), "1".to_owned()),
            ])),
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(image.to_owned()),
        // A command replaces the image's entrypoint and arguments; without one the image's
        // entrypoint runs, with the spec's args or else the image's own.
        entrypoint: (!spec.command.is_empty()).then(|| spec.command[..1].to_vec()),
        cmd: if spec.command.is_empty() {
            (!spec.args.is_empty()).then(|| spec.args.clone())
        } else {
            Some(spec.command[1..].to_vec())
        },
        env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        exposed_ports: (!port_keys.is_empty()).then_some(port_keys),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        networking_config: match attach {
            Attach::Group { network, alias } => Some(bollard::models::NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.to_owned(),
                    bollard::models::EndpointSettings {
                        aliases: Some(vec![alias.to_owned()]),
                        ..Default::default()
                    },
                )])),
            }),
            Attach::Nothing | Attach::Lease(_) => None,
        },
        ..Default::default()
    }
}

/// The engine's port map as the addresses this machine reaches them at (the bound address,
/// loopback for "all addresses"), sorted; bindings it has not filled are left out.
fn published_ports(ports: &HashMap<String, Option<Vec<PortBinding>>>) -> Vec<PublishedPort> {
    let mut out: Vec<PublishedPort> = ports
        .iter()
        .filter_map(|(key, bindings)| {
            let (port, proto) = key.split_once('/')?;
            let container_port: u16 = port.parse().ok()?;
            let proto = match proto {
                "tcp" => crate::workload::PortProto::Tcp,
                "udp" => crate::workload::PortProto::Udp,
                _ => return None,
            };
            let (host_ip, host_port) = bindings.as_ref()?.iter().find_map(|b| {
                let port: u16 = b.host_port.as_deref()?.parse().ok()?;
                let ip: IpAddr = match b.host_ip.as_deref() {
                    None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    Some(text) => text.parse().ok()?,
                };
                Some((ip, port))
            })?;
            let host_ip = match host_ip {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            Some(PublishedPort {
                container_port,
                proto,
                host: SocketAddr::from((host_ip, host_port)),
                service: None,
                replica: 0,
            })
        })
        .collect();
    out.sort_by_key(|p| (p.container_port, p.proto));
    out
}

/// Copies a container's output into the workload's log under its cap, skipping the first
/// `skip_bytes` (already in the file from before a restart) and what the engine logged before
/// `since_ms` (unix milliseconds, by the engine's timestamp of each line; 0: from the start),
/// until the container's output ends. With `prefixed`, each line carries the container's name
/// (a workload of several containers).
async fn follow_log(
    docker: Docker,
    container_id: String,
    sink: SharedSink,
    mut skip_bytes: u64,
    since_ms: i64,
    mut prefixed: Option<Prefixed>,
) {
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        // The engine takes whole seconds; the lines of that second before `since_ms` are
        // dropped here by their timestamps.
        since: i32::try_from(since_ms / 1000).unwrap_or(0),
        timestamps: since_ms > 0,
        tail: "all".into(),
        ..Default::default()
    };
    let mut stream = docker.logs(&container_id, Some(options));
    while let Some(item) = stream.next().await {
        let bytes = match item {
            Ok(output) => output.into_bytes(),
            Err(error) => {
                tracing::warn!(container = %container_id, %error, "log stream broke; the rest of the output is not logged");
                break;
            }
        };
        let bytes = if since_ms > 0 {
            match split_timestamp(&bytes) {
                Some((at_ms, _)) if at_ms < since_ms => continue,
                Some((_, line)) => bytes.slice_ref(line),
                None => bytes,
            }
        } else {
            bytes
        };
        let skip = usize::try_from(skip_bytes)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        skip_bytes -= skip as u64;
        let bytes = &bytes[skip..];
        let text = match prefixed.as_mut() {
            Some(p) => p.lines(bytes),
            None => bytes.to_vec(),
        };
        if !text.is_empty() {
            sink.lock().await.write(&text, &container_id).await;
        }
    }
    let mut sink = sink.lock().await;
    if let Some(rest) = prefixed.as_mut().map(Prefixed::finish) {
        sink.write(&rest, &container_id).await;
    }
    let _ = sink.file.flush().await;
}

struct Supervised {
    docker: Docker,
    workload_id: String,
    /// The main container first, then its companions.
    members: Vec<Member>,
    root_dir: PathBuf,
    deadline: tokio::time::Instant,
    /// Set when a restart finds we had already stopped or killed it.
    cause: Option<Cause>,
    /// The watchdog's limit on the host-side outputs dir (see [`disk_split`]).
    disk_limit_bytes: Option<u64>,
    /// Each volume and the most it may hold.
    volumes: Vec<Watched>,
    /// In-place restarts still allowed.
    restarts_left: u32,
    /// One per member, in the same order.
    followers: Vec<tokio::task::JoinHandle<()>>,
    sink: SharedSink,
    exited_when_found: bool,
}

/// A volume the supervisor watches.
#[derive(Debug, Clone)]
struct Watched {
    /// Index of its container in the members.
    member: usize,
    name: String,
    dir: PathBuf,
    limit_bytes: u64,
}

impl Watched {
    fn new(root: &Path, member: usize, owner: &str, name: &str, limit_bytes: u64) -> Self {
        Watched {
            member,
            name: name.to_owned(),
            dir: volume_dir(root, owner, name),
            limit_bytes,
        }
    }
}

/// Keeps `total` at what the containers with a writable root filesystem have written to it
/// (the engine's `SizeRw`), measured every [`LAYER_SIZE_INTERVAL`]; never resolves (at once
/// pending when `wanted` is false: nothing would read it).
async fn measure_layers(docker: Docker, ids: Vec<String>, total: Arc<AtomicU64>, wanted: bool) {
    if !wanted {
        return std::future::pending().await;
    }
    let options = bollard::query_parameters::InspectContainerOptions { size: true };
    // A read-only root's layer holds only the engine's mount points: measured once, not again.
    let mut writable = ids;
    loop {
        let mut sum = 0u64;
        let mut still = Vec::with_capacity(writable.len());
        for id in writable {
            let Ok(found) = docker.inspect_container(&id, Some(options.clone())).await else {
                still.push(id);
                continue;
            };
            sum = sum.saturating_add(u64::try_from(found.size_rw.unwrap_or(0)).unwrap_or(0));
            let read_only = found
                .host_config
                .and_then(|h| h.readonly_rootfs)
                .unwrap_or(false);
            if !read_only {
                still.push(id);
            }
        }
        writable = still;
        total.store(sum, Ordering::Relaxed);
        if writable.is_empty() {
            return std::future::pending().await;
        }
        tokio::time::sleep(LAYER_SIZE_INTERVAL).await;
    }
}

/// Resolves with the first volume past its size (never, without volumes).
async fn volume_over(volumes: &[Watched]) -> usize {
    if volumes.is_empty() {
        return std::future::pending().await;
    }
    let watches = volumes.iter().map(|v| {
        Box::pin(crate::disk::exceeded(
            vec![v.dir.clone()],
            Some(v.limit_bytes),
        ))
    });
    let (_, index, _) = futures::future::select_all(watches).await;
    index
}

/// The exit code of a container that ended badly (non-zero, or killed for memory); `None` for
/// one that exited 0 or cannot be read.
async fn failed_exit(docker: &Docker, container_id: &str) -> Option<i64> {
    let state = docker
        .inspect_container(container_id, None)
        .await
        .ok()?
        .state?;
    let code = state.exit_code.unwrap_or(0);
    (code != 0 || state.oom_killed == Some(true)).then_some(code)
}

/// Spawns the supervisor and returns the entry that observes it.
fn supervise_in_background(s: Supervised) -> Entry {
    let (outcome_tx, outcome_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut tasks: Vec<AbortHandle> = s.followers.iter().map(|f| f.abort_handle()).collect();
    let exited_when_found = s.exited_when_found;
    let supervisor = tokio::spawn(supervise(s, stop_rx, outcome_tx));
    tasks.push(supervisor.abort_handle());
    Entry {
        outcome: outcome_rx,
        stop: stop_tx,
        exited_when_found,
        tasks,
    }
}

/// Peak and cumulative figures from the latest stats snapshot.
#[derive(Debug, Clone, Copy, Default)]
struct Sampled {
    cpu_user_ms: u64,
    cpu_system_ms: u64,
    peak_memory_bytes: u64,
}

async fn supervise(
    s: Supervised,
    mut stop: watch::Receiver<Option<Duration>>,
    outcome: watch::Sender<Option<ExitOutcome>>,
) {
    let Supervised {
        docker,
        workload_id,
        members,
        root_dir,
        deadline,
        mut cause,
        disk_limit_bytes,
        volumes,
        mut restarts_left,
        mut followers,
        sink,
        ..
    } = s;
    let ids: Vec<String> = members.iter().map(|m| m.container_id.clone()).collect();
    let record = |c: Cause| {
        let path = work_dir(&root_dir).join(ENDED_BY_FILE);
        if let Err(error) = gpunet_files::write_private(&path, c.as_str().as_bytes()) {
            tracing::warn!(%workload_id, %error, "could not record why the workload was ended");
        }
    };

    let mut sampled = vec![Sampled::default(); ids.len()];
    let mut exited = Box::pin(first_exit(&docker, &ids, &workload_id));
    let mut volume_full = std::pin::pin!(volume_over(&volumes));
    let mut sample_tick = tokio::time::interval(STATS_INTERVAL);
    sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut kill_at: Option<tokio::time::Instant> = None;
    // The containers' other writable places: /tmp, a tmpfs bounded by its size, and a
    // writable root, whose layer the engine measures.
    let layers = Arc::new(AtomicU64::new(0));
    let mut layers_measured = std::pin::pin!(measure_layers(
        docker.clone(),
        ids.clone(),
        Arc::clone(&layers),
        disk_limit_bytes.is_some()
    ));
    let mut disk = std::pin::pin!(crate::disk::exceeded_with(
        vec![
            outputs_dir(&root_dir),
            checkpoints_dir(&root_dir),
            root_dir.join("volumes")
        ],
        disk_limit_bytes,
        || layers.load(Ordering::Relaxed)
    ));
    let far_future = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let first = loop {
        tokio::select! {
            // An exit that is already there wins over a stop or deadline arriving with it.
            biased;
            first = &mut exited => {
                if cause.is_none()
                    && restarts_left > 0
                    && let Some(code) = failed_exit(&docker, &ids[first]).await
                {
                    restarts_left -= 1;
                    let used = work_dir(&root_dir).join(RESTARTS_FILE);
                    let done = read_count(&used).saturating_add(1);
                    if let Err(error) = gpunet_files::write_private(&used, done.to_string().as_bytes()) {
                        tracing::warn!(%workload_id, %error, "could not record a restart");
                    }
                    let name = &members[first].name;
                    let line = format!(
                        "[gpunet] {name} exited with code {code}; restarting it in place ({restarts_left} restart(s) left)\n"
                    );
                    // Its output so far is in before the note and the new run's.
                    let old = std::mem::replace(&mut followers[first], tokio::spawn(async {}));
                    let _ = tokio::time::timeout(LOG_DRAIN_TIMEOUT, old).await;
                    sink.lock().await.write(line.as_bytes(), &ids[first]).await;
                    match restart(&docker, &ids[first], &sink, members.len() > 1, name).await {
                        Ok(follower) => {
                            followers[first] = follower;
                            tracing::info!(%workload_id, container = %name, code, restarts_left, "restarted a container in place");
                            exited = Box::pin(first_exit(&docker, &ids, &workload_id));
                            continue;
                        }
                        Err(error) => {
                            tracing::warn!(%workload_id, %error, "could not restart the container; the workload ends");
                        }
                    }
                }
                break first;
            }
            over = &mut volume_full, if cause.is_none() => {
                let v = &volumes[over];
                cause = Some(Cause::Disk);
                record(Cause::Disk);
                let line = format!(
                    "[gpunet] volume {} of {} holds more than its {} MiB; ending the job\n",
                    v.name,
                    members[v.member].name,
                    v.limit_bytes / MIB_BYTES
                );
                sink.lock().await.write(line.as_bytes(), &ids[v.member]).await;
                tracing::info!(%workload_id, volume = %v.name, "a volume passed its size; killing the containers");
                signal_all(&docker, &ids, "SIGKILL", &workload_id).await;
            }
            () = tokio::time::sleep_until(deadline), if cause.is_none() => {
                cause = Some(Cause::WallClock);
                record(Cause::WallClock);
                tracing::info!(%workload_id, "wall-clock limit reached; killing the container");
                signal_all(&docker, &ids, "SIGKILL", &workload_id).await;
            }
            () = &mut layers_measured => {}
            usage = &mut disk, if cause.is_none() => {
                cause = Some(Cause::Disk);
                record(Cause::Disk);
                tracing::info!(%workload_id, allocated_bytes = usage.allocated_bytes, entries = usage.entries, "disk limit passed; killing the container");
                signal_all(&docker, &ids, "SIGKILL", &workload_id).await;
            }
            grace = stop_requested(&mut stop), if cause.is_none() => {
                cause = Some(Cause::Stopped);
                record(Cause::Stopped);
                signal_all(&docker, &ids, "SIGTERM", &workload_id).await;
                kill_at = Some(tokio::time::Instant::now() + grace);
            }
            () = tokio::time::sleep_until(kill_at.unwrap_or(far_future)), if kill_at.is_some() => {
                kill_at = None;
                signal_all(&docker, &ids, "SIGKILL", &workload_id).await;
            }
            _ = sample_tick.tick() => {
                for (id, seen) in ids.iter().zip(sampled.iter_mut()) {
                    if let Some(now) = sample_stats(&docker, id).await {
                        // All three only grow; a stale or partial snapshot must not lower them.
                        *seen = Sampled {
                            cpu_user_ms: seen.cpu_user_ms.max(now.cpu_user_ms),
                            cpu_system_ms: seen.cpu_system_ms.max(now.cpu_system_ms),
                            peak_memory_bytes: seen.peak_memory_bytes.max(now.peak_memory_bytes),
                        };
                    }
                }
            }
        }
    };

    if members.len() > 1 {
        // One container of several ended: the workload has, so the rest are ended too.
        let name = &members[first].name;
        if cause.is_none() {
            let line = format!("[gpunet] {name} ended; stopping the job's other containers\n");
            sink.lock().await.write(line.as_bytes(), &ids[first]).await;
        }
        let grace = kill_at
            .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or(GROUP_STOP_GRACE);
        end_all(&docker, &ids, grace, &workload_id).await;
    }
    for follower in followers {
        let follower_abort = follower.abort_handle();
        if tokio::time::timeout(LOG_DRAIN_TIMEOUT, follower)
            .await
            .is_err()
        {
            tracing::warn!(%workload_id, "the log did not finish draining; its tail may be missing");
            follower_abort.abort();
        }
    }
    let total = sampled.iter().fold(Sampled::default(), |a, b| Sampled {
        cpu_user_ms: a.cpu_user_ms.saturating_add(b.cpu_user_ms),
        cpu_system_ms: a.cpu_system_ms.saturating_add(b.cpu_system_ms),
        peak_memory_bytes: a.peak_memory_bytes.saturating_add(b.peak_memory_bytes),
    });
    let mut ended = match docker.inspect_container(&ids[first], None).await {
        Ok(inspected) => outcome_of(&inspected, cause, total),
        Err(error) => {
            tracing::warn!(%workload_id, %error, "container gone before its exit could be read");
            lost_outcome(cause)
        }
    };
    if first > 0 && ended.reason == ExitReason::Completed {
        // A service is meant to run as long as the job: one that exits, even with status 0,
        // has not completed the job.
        ended.reason = ExitReason::Failed;
    }
    tracing::info!(%workload_id, container = %members[first].name, reason = ?ended.reason, exit_code = ?ended.exit_code, "workload ended");
    outcome.send_replace(Some(ended));
}

/// Lets the image's user, whoever it is, use what is mounted into its containers: `/outputs`
/// and `/checkpoints` (and each volume, as it is made) writable by any uid, `/inputs` readable
/// by any. An image that runs as a user of its own (uid 101 for nginx, 999 for postgres) could
/// not write to directories only the agent's uid may. Nothing else of the host reaches them:
/// the lease's directory above them stays the agent's alone (0700).
fn open_mounts_to_any_user(root: &Path) -> Result<(), DriverError> {
    for (dir, writable) in [
        (outputs_dir(root), true),
        (checkpoints_dir(root), true),
        (inputs_dir(root), false),
    ] {
        if !dir.is_dir() {
            continue;
        }
        open_to_any_user(&dir, writable).map_err(|source| DriverError::Io {
            action: "open to the container's user",
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

/// `dir` writable (0777) by any uid, or readable, with everything beneath it (0755 for
/// directories, 0644 for files). Links are left as they are.
fn open_to_any_user(dir: &Path, writable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if writable {
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            open_to_any_user(&entry.path(), false)?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// Starts an exited container again and follows its new output: what it logged after the last
/// line of its last run.
async fn restart(
    docker: &Docker,
    container_id: &str,
    sink: &SharedSink,
    prefixed: bool,
    name: &str,
) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    // The new run's lines are those after the last run's last line, by the engine's own
    // timestamps (the last run's follower has ended, so every line of it is stamped). Neither
    // the new run's `StartedAt` (recorded once the process runs: a quick first line can be
    // stamped before it) nor the last run's `FinishedAt` (its last line can be stamped after
    // it) draws that line.
    let after = match last_line_ms(docker, container_id).await {
        Some(at) => at.saturating_add(1),
        None => docker
            .inspect_container(container_id, None)
            .await?
            .state
            .and_then(|s| s.finished_at)
            .as_deref()
            .and_then(parse_rfc3339_ms)
            .unwrap_or_else(now_ms),
    };
    docker.start_container(container_id, None).await?;
    Ok(tokio::spawn(follow_log(
        docker.clone(),
        container_id.to_owned(),
        Arc::clone(sink),
        0,
        after,
        prefixed.then(|| Prefixed::new(name)),
    )))
}

/// When the engine stamped the container's last log line (unix ms); `None` without one.
async fn last_line_ms(docker: &Docker, container_id: &str) -> Option<i64> {
    let options = LogsOptions {
        follow: false,
        stdout: true,
        stderr: true,
        timestamps: true,
        tail: "1".into(),
        ..Default::default()
    };
    let mut stream = docker.logs(container_id, Some(options));
    let mut last = None;
    while let Some(Ok(output)) = stream.next().await {
        if let Some((at, _)) = split_timestamp(&output.into_bytes()) {
            last = Some(at);
        }
    }
    last
}

/// A container's volumes as its label lists them (`name=bytes;…`).
fn volumes_of(
    root: &Path,
    member: usize,
    owner: &str,
    labels: &HashMap<String, String>,
) -> Vec<Watched> {
    labels
        .get(LABEL_VOLUMES)
        .map(|list| {
            list.split(';')
                .filter_map(|entry| {
                    let (name, bytes) = entry.split_once('=')?;
                    Some(Watched::new(root, member, owner, name, bytes.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A log line as the engine gives it with `timestamps`: its time (unix ms) and the line after
/// the timestamp and its space; `None` when it starts with no timestamp.
fn split_timestamp(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let space = bytes.iter().take(40).position(|&b| b == b' ')?;
    let at = parse_rfc3339_ms(std::str::from_utf8(&bytes[..space]).ok()?)?;
    Some((at, &bytes[space + 1..]))
}

/// A count kept in a file; 0 when there is none.
fn read_count(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Sends `signal` to every container, thawing paused ones so they get it. Containers that are
/// not running (any more) or gone are fine.
async fn signal_all(docker: &Docker, ids: &[String], signal: &'static str, workload_id: &str) {
    for container_id in ids {
        let options = KillContainerOptions {
            signal: signal.into(),
        };
        match docker.kill_container(container_id, Some(options)).await {
            Ok(()) => {}
            // 409: it is not running (any more); the exit is on its way.
            Err(EngineError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => {}
            Err(error) => {
                tracing::warn!(%workload_id, signal, %error, "could not signal the container");
            }
        }
        // A paused container gets the signal only once thawed.
        match docker.unpause_container(container_id).await {
            Ok(()) => {}
            // Not paused (the usual case) or not running; 404: gone.
            Err(e) if already_so(&e) || is_not_found(&e) => {}
            Err(error) => {
                tracing::warn!(%workload_id, %error, "could not unpause the container to end it");
            }
        }
    }
}

/// Resolves with the index of the first of `ids` to stop running.
async fn first_exit(docker: &Docker, ids: &[String], workload_id: &str) -> usize {
    let waits = ids
        .iter()
        .map(|id| Box::pin(wait_for_exit(docker, id, workload_id)));
    let ((), index, _) = futures::future::select_all(waits).await;
    index
}

/// Ends every container still running: SIGTERM, SIGKILL after `grace`, then waits (at most
/// [`GROUP_STOP_GRACE`] more) for all of them.
async fn end_all(docker: &Docker, ids: &[String], grace: Duration, workload_id: &str) {
    let all_ended =
        || futures::future::join_all(ids.iter().map(|id| wait_for_exit(docker, id, workload_id)));
    signal_all(docker, ids, "SIGTERM", workload_id).await;
    if tokio::time::timeout(grace, all_ended()).await.is_ok() {
        return;
    }
    signal_all(docker, ids, "SIGKILL", workload_id).await;
    if tokio::time::timeout(GROUP_STOP_GRACE, all_ended())
        .await
        .is_err()
    {
        tracing::warn!(%workload_id, "some of the workload's containers did not end after SIGKILL");
    }
}

/// Resolves once the container is not running (or gone).
async fn wait_for_exit(docker: &Docker, container_id: &str, workload_id: &str) {
    loop {
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let answer = docker
            .wait_container(container_id, Some(options))
            .next()
            .await;
        match answer {
            Some(Ok(_) | Err(EngineError::DockerContainerWaitError { .. })) => {}
            Some(Err(e)) if is_not_found(&e) => return,
            other => {
                if let Some(Err(error)) = other {
                    tracing::debug!(%workload_id, %error, "waiting for the container failed; retrying");
                }
                tokio::time::sleep(WAIT_RETRY_INTERVAL).await;
            }
        }
        // Trust the state, not the wait: a wait can end early on a connection hiccup.
        match docker.inspect_container(container_id, None).await {
            Ok(inspected) if !is_running(inspected.state.as_ref()) => return,
            Err(e) if is_not_found(&e) => return,
            _ => {}
        }
    }
}

fn is_running(state: Option<&ContainerState>) -> bool {
    state.is_some_and(|s| s.running.unwrap_or(false) || s.restarting.unwrap_or(false))
}

async fn stop_requested(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(grace) = *stop.borrow_and_update() {
            return grace;
        }
        if stop.changed().await.is_err() {
            // The driver is gone; no stop can come any more.
            std::future::pending::<()>().await;
        }
    }
}

async fn sample_stats(docker: &Docker, container_id: &str) -> Option<Sampled> {
    let options = StatsOptions {
        stream: false,
        one_shot: true,
    };
    let stats = docker
        .stats(container_id, Some(options))
        .next()
        .await?
        .ok()?;
    // A snapshot of a container that has just exited is all zeros, read at the engine's "never".
    stats.read.as_deref().and_then(parse_rfc3339_ms)?;
    let cpu = stats.cpu_stats.and_then(|c| c.cpu_usage);
    let memory = stats.memory_stats;
    let ns_to_ms = |ns: Option<u64>| ns.unwrap_or(0) / 1_000_000;
    Some(Sampled {
        cpu_user_ms: ns_to_ms(cpu.as_ref().and_then(|c| c.usage_in_usermode)),
        cpu_system_ms: ns_to_ms(cpu.as_ref().and_then(|c| c.usage_in_kernelmode)),
        peak_memory_bytes: memory.and_then(|m| m.max_usage.or(m.usage)).unwrap_or(0),
    })
}

fn lost_outcome(cause: Option<Cause>) -> ExitOutcome {
    ExitOutcome {
        exit_code: None,
        signal: None,
        reason: if cause == Some(Cause::Stopped) {
            ExitReason::Stopped
        } else {
            ExitReason::Lost
        },
        usage: Usage::default(),
    }
}

/// The outcome of an exited container; see the module docs for the rule.
fn outcome_of(
    inspected: &ContainerInspectResponse,
    cause: Option<Cause>,
    sampled: Sampled,
) -> ExitOutcome {
    let Some(state) = inspected.state.as_ref() else {
        return lost_outcome(cause);
    };
    let code = state.exit_code;
    let (exit_code, signal) = split_exit_code(code);
    let reason = classify(cause, state.oom_killed.unwrap_or(false), code);
    let started = state.started_at.as_deref().and_then(parse_rfc3339_ms);
    let finished = state.finished_at.as_deref().and_then(parse_rfc3339_ms);
    let wall_ms = match (started, finished) {
        (Some(s), Some(f)) if f >= s => u64::try_from(f - s).unwrap_or(0),
        _ => 0,
    };
    ExitOutcome {
        exit_code,
        signal,
        reason,
        usage: Usage {
            wall_ms,
            cpu_user_ms: sampled.cpu_user_ms,
            cpu_system_ms: sampled.cpu_system_ms,
            max_rss_kib: sampled.peak_memory_bytes / 1024,
        },
    }
}

fn classify(cause: Option<Cause>, oom_killed: bool, exit_code: Option<i64>) -> ExitReason {
    match cause {
        Some(Cause::Stopped) => return ExitReason::Stopped,
        Some(Cause::WallClock) => return ExitReason::WallClockLimit,
        Some(Cause::Disk) => return ExitReason::DiskExceeded,
        None => {}
    }
    if exit_code == Some(0) {
        ExitReason::Completed
    } else if oom_killed {
        ExitReason::OutOfMemory
    } else {
        ExitReason::Failed
    }
}

/// Docker's exit code as (exit code, signal): 128 + N (N a signal number) means killed by N.
fn split_exit_code(code: Option<i64>) -> (Option<i32>, Option<i32>) {
    match code {
        Some(c) if (129..=128 + 64).contains(&c) => (None, i32::try_from(c - 128).ok()),
        Some(c) => (i32::try_from(c).ok(), None),
        None => (None, None),
    }
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The tokio instant at which a container started at `started_ms` (unix) hits `max_duration`.
fn deadline_after(started_ms: i64, max_duration: Duration) -> tokio::time::Instant {
    let elapsed_ms = u64::try_from(now_ms().saturating_sub(started_ms)).unwrap_or(0);
    let remaining = max_duration.saturating_sub(Duration::from_millis(elapsed_ms));
    tokio::time::Instant::now() + remaining
}

/// Unix milliseconds of an RFC 3339 timestamp as the engine writes them
/// (`2024-05-01T12:34:56.123456789Z`, or with a `±hh:mm` offset). `None` for the engine's
/// "never" (`0001-01-01T00:00:00Z`) and anything before 1970 or malformed.
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    let (clock, offset_secs) = if let Some(clock) = rest.strip_suffix('Z') {
        (clock, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (clock, offset) = rest.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':')?;
        let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
        (clock, sign * secs)
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms_parts = hms.splitn(3, ':');
    let hour: i64 = hms_parts.next()?.parse().ok()?;
    let minute: i64 = hms_parts.next()?.parse().ok()?;
    let second: i64 = hms_parts.next()?.parse().ok()?;
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..=60).contains(&second)
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid || year < 1970 {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    (secs >= 0).then_some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Re-attaches to (or reports on) a workload's container after an agent restart.
async fn adopt(docker: &Docker, handle: &WorkloadHandle) -> Result<Entry, DriverError> {
    let id = &handle.workload_id;
    let lost = || {
        let (outcome_tx, outcome_rx) = watch::channel(None);
        let (stop_tx, _) = watch::channel(None);
        outcome_tx.send_replace(Some(lost_outcome(None)));
        Entry {
            outcome: outcome_rx,
            stop: stop_tx,
            exited_when_found: false,
            tasks: Vec::new(),
        }
    };
    let Some(container_id) = find_container(docker, id).await? else {
        tracing::info!(workload_id = %id, "no container found; the workload is lost");
        return Ok(lost());
    };
    let inspected = match docker.inspect_container(&container_id, None).await {
        Ok(inspected) => inspected,
        Err(e) if is_not_found(&e) => return Ok(lost()),
        Err(e) => return Err(engine_error(id, "inspect the container")(e)),
    };
    let state = inspected.state.as_ref();
    let never_started = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(parse_rfc3339_ms)
        .is_none();
    if never_started {
        // Created but never started (the agent died in between): it never ran, and starting
        // it now could run it twice if the agent's record is stale. `destroy` removes it.
        tracing::info!(workload_id = %id, "container was never started; the workload is lost");
        return Ok(lost());
    }
    let labels = inspected
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let label_u64 = |key: &str| labels.get(key).and_then(|v| v.parse::<u64>().ok());
    let max_duration = Duration::from_millis(label_u64(LABEL_MAX_DURATION_MS).unwrap_or(u64::MAX));
    let log_offset_bytes = label_u64(LABEL_LOG_OFFSET_BYTES).unwrap_or(0);
    let log_limit_bytes = label_u64(LABEL_LOG_LIMIT_BYTES).unwrap_or(u64::MAX);
    // A container restarted in place started again later; its wall clock runs from the
    // first start, which its creation just preceded.
    let restarted = read_count(&work_dir(&handle.root_dir).join(RESTARTS_FILE)) > 0;
    let started_ms = restarted
        .then(|| inspected.created.as_deref().and_then(parse_rfc3339_ms))
        .flatten()
        .or_else(|| {
            state
                .and_then(|s| s.started_at.as_deref())
                .and_then(parse_rfc3339_ms)
        })
        .unwrap_or_else(now_ms);

    gpunet_files::create_private_dir_all(&logs_dir(&handle.root_dir)).map_err(|source| {
        DriverError::Io {
            action: "create",
            path: logs_dir(&handle.root_dir),
            source,
        }
    })?;
    let (log_file, log_len) = open_log(&handle.root_dir)?;
    let already_truncated = log_ends_with_marker(&log_path(&handle.root_dir), log_len);
    let companions = find_companions(docker, id).await?;
    let mut members = vec![Member {
        name: labels
            .get(LABEL_HOSTNAME)
            .cloned()
            .unwrap_or_else(|| MAIN_MEMBER.to_owned()),
        container_id,
    }];
    let mut all_running = is_running(state);
    let root = &handle.root_dir;
    let mut volumes = volumes_of(root, 0, MAIN_VOLUME_OWNER, &labels);
    for (service, replica, container_id) in companions {
        let inspected = match docker.inspect_container(&container_id, None).await {
            Ok(inspected) => inspected,
            // Gone: the workload has lost a part, so it has ended; the rest are ended below.
            Err(e) if is_not_found(&e) => {
                all_running = false;
                continue;
            }
            Err(e) => return Err(engine_error(id, "inspect a companion container")(e)),
        };
        all_running &= is_running(inspected.state.as_ref());
        let name = format!("{service}-{replica}");
        let companion_labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
        volumes.extend(volumes_of(root, members.len(), &name, &companion_labels));
        members.push(Member { name, container_id });
    }
    let restarts_used = read_count(&work_dir(root).join(RESTARTS_FILE));
    let restarts_left = labels
        .get(LABEL_RESTARTS)
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0)
        .saturating_sub(restarts_used);
    let sink = LogSink::shared(log_file, LogCap::new(log_len, log_limit_bytes));
    let followers = if already_truncated {
        // Nothing more can be kept, and the marker is written once only.
        members.iter().map(|_| tokio::spawn(async {})).collect()
    } else if members.len() == 1 && restarts_used == 0 {
        vec![tokio::spawn(follow_log(
            docker.clone(),
            members[0].container_id.clone(),
            sink.clone(),
            log_len.saturating_sub(log_offset_bytes),
            0,
            None,
        ))]
    } else {
        // Several containers' lines are interleaved in the file (or a restart's note sits
        // between runs), so bytes cannot say where each one stopped: each is followed again
        // from the log's last write, by the engine's timestamps. A line of that millisecond
        // may show twice, and one the agent had not written when it stopped, logged before
        // that write, is missed.
        let since = std::fs::metadata(log_path(&handle.root_dir))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .unwrap_or(0);
        members
            .iter()
            .map(|m| {
                tokio::spawn(follow_log(
                    docker.clone(),
                    m.container_id.clone(),
                    sink.clone(),
                    0,
                    since,
                    (members.len() > 1).then(|| Prefixed::new(&m.name)),
                ))
            })
            .collect()
    };
    let cause = std::fs::read_to_string(work_dir(&handle.root_dir).join(ENDED_BY_FILE))
        .ok()
        .and_then(|text| Cause::parse(&text));
    tracing::info!(workload_id = %id, running = all_running, containers = members.len(), "re-attached to the workload's containers");
    Ok(supervise_in_background(Supervised {
        docker: docker.clone(),
        workload_id: id.clone(),
        members,
        root_dir: handle.root_dir.clone(),
        deadline: deadline_after(started_ms, max_duration),
        cause,
        disk_limit_bytes: label_u64(LABEL_DISK_LIMIT_BYTES),
        volumes,
        restarts_left,
        followers,
        sink,
        exited_when_found: !all_running,
    }))
}

fn log_ends_with_marker(path: &Path, len: u64) -> bool {
    let marker = LOG_TRUNCATED_MARKER.as_bytes();
    let Some(from) = len.checked_sub(marker.len() as u64) else {
        return false;
    };
    read_chunk(path, from, marker.len()).is_ok_and(|(data, _)| data == marker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{ExposedPort, PortProto};

    /// How the driver attaches a workload without companions.
    fn attach_of(spec: &WorkloadSpec) -> Attach<'static> {
        match spec.network {
            NetworkMode::Egress => Attach::Lease(LEASE_NETWORK),
            NetworkMode::None => Attach::Nothing,
        }
    }

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            cpu_millis: 1500,
            memory_mib: 64,
            image: Some("busybox:1.36".into()),
            ..WorkloadSpec::new(
                "lease-7",
                vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
                "/data/lease-7",
            )
        }
    }

    #[test]
    fn inputs_are_mounted_read_only_and_named_in_the_environment_only_when_there_are_some() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut s = spec();
        s.root_dir = root.path().to_path_buf();
        let env_of = |s: &WorkloadSpec| {
            container_body(
                s,
                "busybox:1.36",
                0,
                &Publish::default(),
                attach_of(s),
                MAIN_VOLUME_OWNER,
            )
            .env
            .unwrap_or_default()
        };
        assert!(!env_of(&s).iter().any(|e| e.starts_with("GPUNET_INPUTS=")));
        std::fs::create_dir(root.path().join("inputs")).expect("mkdir");
        assert!(env_of(&s).contains(&"GPUNET_INPUTS=/inputs".to_owned()));
        let mounts = container_body(
            &s,
            "busybox:1.36",
            0,
            &Publish::default(),
            attach_of(&s),
            MAIN_VOLUME_OWNER,
        )
        .host_config
        .and_then(|h| h.mounts)
        .unwrap_or_default();
        let inputs = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some(CONTAINER_INPUTS_DIR))
            .expect("inputs mounted");
        assert_eq!(inputs.read_only, Some(true));
    }

    #[test]
    fn the_checkpoint_dir_is_mounted_writable_and_named_only_when_the_agent_made_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut s = spec();
        s.root_dir = root.path().to_path_buf();
        // A tenant's own variable does not survive: the driver names the mount itself.
        s.env
            .insert("GPUNET_CHECKPOINTS".into(), "/etc/elsewhere".into());
        let body = |s: &WorkloadSpec| {
            container_body(
                s,
                "busybox:1.36",
                0,
                &Publish::default(),
                attach_of(s),
                MAIN_VOLUME_OWNER,
            )
        };
        let mounted = |s: &WorkloadSpec| {
            body(s)
                .host_config
                .and_then(|h| h.mounts)
                .unwrap_or_default()
                .into_iter()
                .find(|m| m.target.as_deref() == Some(CONTAINER_CHECKPOINTS_DIR))
        };
        assert!(mounted(&s).is_none(), "no checkpoint dir, no mount");

        let dir = checkpoints_dir(root.path());
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mount = mounted(&s).expect("checkpoints mounted");
        assert_eq!(mount.read_only, Some(false));
        assert_eq!(mount.source.as_deref(), Some(dir.to_str().expect("utf-8")));
        let env = body(&s).env.unwrap_or_default();
        assert!(
            env.contains(&"GPUNET_CHECKPOINTS=/checkpoints".to_owned()),
            "{env:?}"
        );
        assert!(!env.iter().any(|e| e.contains("/etc/elsewhere")), "{env:?}");
    }

    #[test]
    fn containers_are_locked_down_and_limited_by_the_spec() {
        let body = container_body(
            &spec(),
            "busybox:1.36",
            12,
            &Publish::default(),
            attach_of(&spec()),
            MAIN_VOLUME_OWNER,
        );
        let host = body.host_config.clone().expect("host config");
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(64 * 1024 * 1024));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.pids_limit, Some(1024));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.device_requests, None);
        assert_eq!(host.port_bindings, None);
        assert!(host.binds.is_none());
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts.len(), 1, "only outputs, as no inputs dir exists");
        assert_eq!(mounts[0].source.as_deref(), Some("/data/lease-7/outputs"));
        assert_eq!(mounts[0].target.as_deref(), Some("/outputs"));
        assert_eq!(mounts[0].read_only, Some(false));
        assert!(host.tmpfs.expect("tmpfs")["/tmp"].contains("size=67108864"));

        assert_eq!(body.entrypoint, Some(vec!["/bin/sh".to_owned()]));
        assert_eq!(body.cmd, Some(vec!["-c".to_owned(), "echo hi".to_owned()]));
        assert_eq!(body.working_dir, None, "the image's working dir is kept");
        assert_eq!(body.user, None, "the image's user is kept");
        let labels = body.labels.expect("labels");
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_WORKLOAD], "lease-7");
        assert_eq!(labels[LABEL_LOG_OFFSET_BYTES], "12");
        let env = body.env.expect("env");
        for expected in [
            "GPUNET_OUTPUTS=/outputs",
            "CUDA_VISIBLE_DEVICES=",
            "NVIDIA_VISIBLE_DEVICES=void",
        ] {
            assert!(env.iter().any(|e| e == expected), "{expected} in {env:?}");
        }
    }

    #[test]
    fn gpus_egress_and_ports_are_passed_through_and_driver_variables_win() {
        let mut s = spec();
        s.gpu_uuids = vec!["GPU-a".into(), "GPU-b".into()];
        s.network = NetworkMode::Egress;
        s.expose = vec![ExposedPort {
            container_port: 8080,
            proto: PortProto::Tcp,
        }];
        s.env.insert("GPUNET_OUTPUTS".into(), "/elsewhere".into());
        s.read_only_rootfs = false;
        let body = container_body(
            &s,
            "busybox:1.36",
            0,
            &Publish::default(),
            attach_of(&s),
            MAIN_VOLUME_OWNER,
        );
        let host = body.host_config.clone().expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some(LEASE_NETWORK));
        assert_eq!(host.readonly_rootfs, Some(false));
        let request = &host.device_requests.expect("device request")[0];
        assert_eq!(request.driver.as_deref(), Some("nvidia"));
        assert_eq!(
            request.device_ids,
            Some(vec!["GPU-a".to_owned(), "GPU-b".to_owned()])
        );
        let bindings = host.port_bindings.expect("port bindings");
        let binding = &bindings["8080/tcp"].as_ref().expect("binding")[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some(""));
        assert_eq!(body.exposed_ports, Some(vec!["8080/tcp".to_owned()]));
        let env = body.env.expect("env");
        assert!(
            env.contains(&"GPUNET_OUTPUTS=/outputs".to_owned()),
            "{env:?}"
        );
        assert!(!env.contains(&"GPUNET_OUTPUTS=/elsewhere".to_owned()));
        assert!(env.contains(&"CUDA_VISIBLE_DEVICES=GPU-a,GPU-b".to_owned()));
        assert!(env.contains(&"NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b".to_owned()));

        // The operator's public binding and port range reach the engine as they are.
        let public = Publish {
            host_ip: "0.0.0.0".parse().expect("address"),
            ports: Some("30000-30099".parse().expect("range")),
        };
        let host = container_body(
            &s,
            "busybox:1.36",
            0,
            &public,
            attach_of(&s),
            MAIN_VOLUME_OWNER,
        )
        .host_config
        .expect("host config");
        let binding = &host.port_bindings.expect("port bindings")["8080/tcp"]
            .clone()
            .expect("binding")[0];
        assert_eq!(binding.host_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(binding.host_port.as_deref(), Some("30000-30099"));
    }

    #[test]
    fn the_lease_network_keeps_containers_from_one_another() {
        let request = lease_network_request();
        assert_eq!(request.name, LEASE_NETWORK);
        assert_eq!(request.driver.as_deref(), Some("bridge"));
        assert_eq!(
            request
                .options
                .expect("options")
                .get(ICC_OPTION)
                .map(String::as_str),
            Some("false")
        );
    }

    #[test]
    fn port_ranges_are_parsed_or_refused_with_the_fix() {
        let range: crate::PortRange = "30000-32767".parse().expect("range");
        assert_eq!((range.first, range.last, range.len()), (30000, 32767, 2768));
        assert_eq!(range.to_string(), "30000-32767");
        let one: crate::PortRange = "8080".parse().expect("one port");
        assert_eq!(one.len(), 1);
        for (bad, why) in [
            ("0-10", "port 0"),
            ("200-100", "lower port first"),
            ("a-b", "not a port"),
            ("70000", "not a port"),
        ] {
            let error = bad.parse::<crate::PortRange>().expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn a_disk_limit_is_split_between_the_tmpfs_and_the_watched_outputs() {
        let mib = 1024 * 1024;
        assert_eq!(disk_split(None), (TMP_TMPFS_BYTES, None));
        assert_eq!(disk_split(Some(16 * mib)), (4 * mib, Some(12 * mib)));
        assert_eq!(
            disk_split(Some(10_240 * mib)),
            (TMP_TMPFS_BYTES, Some(10_240 * mib - TMP_TMPFS_BYTES))
        );
        let mut s = spec();
        s.disk_mib = Some(16);
        let body = container_body(
            &s,
            "img",
            0,
            &Publish::default(),
            attach_of(&s),
            MAIN_VOLUME_OWNER,
        );
        let host = body.host_config.expect("host config");
        assert!(host.tmpfs.expect("tmpfs")["/tmp"].contains("size=4194304"));
        let labels = body.labels.expect("labels");
        assert_eq!(labels[LABEL_DISK_LIMIT_BYTES], (12 * mib).to_string());
        assert_eq!(Cause::parse(Cause::Disk.as_str()), Some(Cause::Disk));
        assert_eq!(
            classify(Some(Cause::Disk), false, Some(137)),
            ExitReason::DiskExceeded
        );
    }

    #[test]
    fn endings_are_classified_by_the_documented_rule() {
        let check = |cause, oom, code, expected| {
            assert_eq!(
                classify(cause, oom, code),
                expected,
                "{cause:?} {oom} {code:?}"
            );
        };
        check(None, false, Some(0), ExitReason::Completed);
        check(None, false, Some(1), ExitReason::Failed);
        check(None, true, Some(137), ExitReason::OutOfMemory);
        check(None, true, Some(0), ExitReason::Completed);
        check(Some(Cause::Stopped), true, Some(137), ExitReason::Stopped);
        check(
            Some(Cause::WallClock),
            false,
            Some(137),
            ExitReason::WallClockLimit,
        );
        check(None, false, None, ExitReason::Failed);
    }

    #[test]
    fn exit_codes_above_128_are_signals() {
        assert_eq!(split_exit_code(Some(0)), (Some(0), None));
        assert_eq!(split_exit_code(Some(2)), (Some(2), None));
        assert_eq!(split_exit_code(Some(128)), (Some(128), None));
        assert_eq!(split_exit_code(Some(137)), (None, Some(9)));
        assert_eq!(split_exit_code(Some(143)), (None, Some(15)));
        assert_eq!(split_exit_code(Some(255)), (Some(255), None));
        assert_eq!(split_exit_code(None), (None, None));
    }

    #[test]
    fn engine_timestamps_parse_to_unix_milliseconds() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T12:34:56.789123456Z"),
            Some(1_714_566_896_789)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T14:34:56.5+02:00"),
            Some(1_714_566_896_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
        assert_eq!(parse_rfc3339_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn untagged_images_are_pulled_as_latest() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("busybox:1.36"), "busybox:1.36");
        assert_eq!(
            with_default_tag("localhost:5000/team/img"),
            "localhost:5000/team/img:latest"
        );
        assert_eq!(with_default_tag("img@sha256:abc"), "img@sha256:abc");
    }

    #[test]
    fn published_ports_are_where_this_machine_reaches_them_sorted_by_port() {
        let binding = |port: &str| {
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(port.into()),
            }])
        };
        let ports = HashMap::from([
            ("9000/udp".to_owned(), binding("40001")),
            ("80/tcp".to_owned(), binding("40000")),
            ("81/tcp".to_owned(), None),
        ]);
        let bound = |ip: &str, port: &str| {
            let ports = HashMap::from([(
                "80/tcp".to_owned(),
                Some(vec![PortBinding {
                    host_ip: Some(ip.into()),
                    host_port: Some(port.into()),
                }]),
            )]);
            published_ports(&ports)[0].host
        };
        // Bound to all addresses: this machine reaches it on loopback.
        for (ip, reached) in [
            ("0.0.0.0", "127.0.0.1:30001"),
            ("::", "[::1]:30001"),
            ("", "127.0.0.1:30001"),
            ("10.1.2.3", "10.1.2.3:30001"),
        ] {
            let reached: SocketAddr = reached.parse().expect("address");
            assert_eq!(bound(ip, "30001"), reached, "bound to {ip:?}");
        }
        let published = published_ports(&ports);
        assert_eq!(
            published,
            vec![
                PublishedPort::new(
                    80,
                    PortProto::Tcp,
                    "127.0.0.1:40000".parse().expect("address")
                ),
                PublishedPort::new(
                    9000,
                    PortProto::Udp,
                    "127.0.0.1:40001".parse().expect("address")
                ),
            ]
        );
    }

    #[test]
    fn engine_timestamps_are_split_off_log_lines() {
        assert_eq!(
            split_timestamp(b"2026-12-07T03:12:17.270873123Z hello world\n"),
            Some((1_796_613_137_270, &b"hello world\n"[..]))
        );
        assert_eq!(split_timestamp(b"hello world\n"), None);
        assert_eq!(split_timestamp(b""), None);
    }

    #[test]
    fn the_engines_log_copy_is_bounded() {
        assert_eq!(engine_log_max_bytes(0), ENGINE_LOG_MIN_BYTES);
        assert_eq!(engine_log_max_bytes(100 * MIB_BYTES), 400 * MIB_BYTES);
        assert_eq!(engine_log_max_bytes(u64::MAX), ENGINE_LOG_MAX_BYTES);
    }
}
