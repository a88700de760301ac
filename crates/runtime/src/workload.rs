//! The data a driver is given and hands back: [`WorkloadSpec`] in, [`WorkloadHandle`] while it
//! runs, [`ExitOutcome`] and [`LogChunk`] out. Also the spec's validation and its named limits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// Default cap on the log bytes kept per workload: 100 MiB.
pub const DEFAULT_LOG_LIMIT_BYTES: u64 = 100 * 1024 * 1024;
/// Written once to the log when output beyond `log_limit_bytes` starts being dropped.
pub const LOG_TRUNCATED_MARKER: &str = "\n[log truncated]\n";
/// Longest workload id, in bytes (a DNS label, so it can also name containers and hosts).
pub const MAX_WORKLOAD_ID_BYTES: usize = 63;
/// Most argv entries a command may have.
pub const MAX_COMMAND_ARGS: usize = 4096;
/// Most environment variables a spec may set.
pub const MAX_ENV_VARS: usize = 1024;
/// Most bytes argv and environment may take together (well under Linux's `ARG_MAX`).
pub const MAX_ARGV_ENV_BYTES: usize = 1024 * 1024;
/// Most GPUs one workload may be assigned.
pub const MAX_GPUS_PER_WORKLOAD: usize = 64;
/// Most ports one workload may expose.
pub const MAX_EXPOSED_PORTS: usize = 16;
/// Longest image reference, in bytes.
pub const MAX_IMAGE_REF_BYTES: usize = 512;
/// Most containers one workload may have, the main one and its companions.
pub const MAX_WORKLOAD_CONTAINERS: usize = 16;
/// Default cap on the processes (threads included) a workload may have at once.
pub const DEFAULT_PIDS_LIMIT: u32 = 1024;
/// The Linux capabilities a container may be given ([`WorkloadSpec::capabilities`]): Docker's
/// default set without `NET_RAW` (no forged packets on a shared network), the Kubernetes Pod
/// Security Standards' *baseline*. Never `SYS_ADMIN`, `NET_ADMIN`, `SYS_PTRACE` or any other
/// that reaches past the container.
pub const GRANTABLE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
/// CPU share [`WorkloadSpec::new`] starts from: one core.
pub const DEFAULT_CPU_MILLIS: u32 = 1000;
/// Memory [`WorkloadSpec::new`] starts from: 1 GiB.
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
/// Wall-clock limit [`WorkloadSpec::new`] starts from: one hour.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(60 * 60);

/// What to run, with which resources and limits. Built by the agent from a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// e.g. `lease-42`; `[a-z0-9-]`, at most [`MAX_WORKLOAD_ID_BYTES`].
    pub workload_id: String,
    /// argv. `argv[0]` is looked up on the workload's `PATH`; in a container it replaces the
    /// image's entrypoint. Empty only with an `image`: the image's own entrypoint runs, with
    /// `args` (or the image's default arguments). The process driver refuses it empty.
    pub command: Vec<String>,
    /// Arguments for the image's own entrypoint, replacing its default ones; only with an
    /// `image` and an empty `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The only environment the workload sees, besides the variables the driver sets.
    pub env: BTreeMap<String, String>,
    /// CPU share in thousandths of a core: 1500 = 1.5 cores.
    pub cpu_millis: u32,
    pub memory_mib: u64,
    /// Wall-clock limit.
    pub max_duration: Duration,
    /// The driver creates `root_dir/work` (cwd), `root_dir/outputs` and
    /// `root_dir/logs/combined.log`.
    pub root_dir: PathBuf,
    /// GPUs assigned to this workload (NVML / `nvidia-smi` uuids).
    pub gpu_uuids: Vec<String>,
    /// Cap on kept log bytes; beyond it output is dropped and [`LOG_TRUNCATED_MARKER`] written once.
    pub log_limit_bytes: u64,
    /// Container image (`name[:tag]` or `name@digest`). Required by the Docker driver; the
    /// process driver ignores it.
    #[serde(default)]
    pub image: Option<String>,
    /// Whether the workload may reach the network. Drivers with network namespaces enforce it;
    /// the process driver cannot (its workloads share the host's network).
    #[serde(default)]
    pub network: NetworkMode,
    /// Mount the image's root filesystem read-only (writable: `/outputs`, the volumes and a
    /// small `/tmp`). Writable, what the container writes there counts within the disk limit.
    /// Ignored by the process driver.
    #[serde(default = "default_read_only_rootfs")]
    pub read_only_rootfs: bool,
    /// Linux capabilities the container keeps, as Docker names them (`CHOWN`, `SETUID`); each
    /// one of [`GRANTABLE_CAPABILITIES`]. Empty (the default): none at all. Ignored by the
    /// process driver, whose workloads never hold any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Ports a service listens on, published where the driver's [`Publish`] says (the
    /// provider's loopback by default) at engine-chosen ports (see [`crate::Driver::ports`]). Needs [`NetworkMode::Egress`]. Ignored by the process
    /// driver, whose workloads listen on the host directly.
    #[serde(default)]
    pub expose: Vec<ExposedPort>,
    /// Most processes (threads included) the workload may have at once. Ignored by the process
    /// driver (`RLIMIT_NPROC` counts per user, not per workload).
    #[serde(default = "default_pids_limit")]
    pub pids_limit: u32,
    /// Most disk the workload may fill in its writable places, in MiB; `None`, as in records
    /// written before the limit existed, is no limit. Enforced by a watchdog (see
    /// `crate::disk`): past it the workload is killed and ends [`ExitReason::DiskExceeded`].
    #[serde(default)]
    pub disk_mib: Option<u64>,
    /// The main container's name on the network it shares with its companions (a job's own
    /// `run` is known by the job's name). Required with companions.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Containers that run beside the main one as parts of this workload (a job's `services`,
    /// a replica each); Docker only. They share a private network with the main container,
    /// reach one another by service name, mount the same outputs, inputs and checkpoints, and
    /// count against the same disk limit and wall clock; the first container to end ends the
    /// workload (see the Docker driver's docs).
    #[serde(default)]
    pub companions: Vec<Companion>,
    /// The main container's persistent volumes: host directories under `root_dir/volumes`
    /// mounted read-write, kept across restarts, each enforced at its size by a watchdog and
    /// counted within `disk_mib`; removed by `destroy`. Docker only.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Times a container that exits non-zero (or is killed for memory) is started again in
    /// place before the workload ends; its volumes stay. Docker only.
    #[serde(default)]
    pub restarts: u32,
}

/// A persistent volume of a container: `name`, where it is mounted, and the most it may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// A DNS label, unique among the container's volumes.
    pub name: String,
    /// An absolute path in the container.
    pub mount: String,
    pub size_mib: u64,
}

/// Where a container's volume lives on the host: `root_dir/volumes/<owner>/<name>`, the owner
/// being `_main` for the main container and `<service>-<replica>` for a companion.
pub fn volume_dir(root_dir: &Path, owner: &str, name: &str) -> PathBuf {
    root_dir.join("volumes").join(owner).join(name)
}

/// The volume owner of the main container (no companion's name has an underscore).
pub const MAIN_VOLUME_OWNER: &str = "_main";

/// A container beside a workload's main one: one replica of a job's service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Companion {
    /// The service's name: the DNS name every container of the workload reaches it by (all
    /// replicas answer to it).
    pub service: String,
    /// Which replica, from 0.
    pub replica: u32,
    pub image: String,
    /// As [`WorkloadSpec::command`]: empty runs the image's entrypoint.
    pub command: Vec<String>,
    /// As [`WorkloadSpec::args`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cpu_millis: u32,
    pub memory_mib: u64,
    pub gpu_uuids: Vec<String>,
    /// Egress besides the private network (and with it, published ports).
    pub network: NetworkMode,
    pub expose: Vec<ExposedPort>,
    /// Its own volumes, as the main container's.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// As [`WorkloadSpec::read_only_rootfs`], for this container.
    #[serde(default = "default_read_only_rootfs")]
    pub read_only_rootfs: bool,
    /// As [`WorkloadSpec::capabilities`], for this container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

impl Companion {
    /// `<service>-<replica>`: the name of this container among the workload's.
    pub fn member(&self) -> String {
        format!("{}-{}", self.service, self.replica)
    }
}

fn default_read_only_rootfs() -> bool {
    true
}

fn default_pids_limit() -> u32 {
    DEFAULT_PIDS_LIMIT
}

/// Whether a workload's container gets a network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Loopback only.
    #[default]
    None,
    /// Outbound connections, and published ports, on a network the driver keeps apart from
    /// other workloads (Docker: [`crate::LEASE_NETWORK`], where containers cannot reach one
    /// another).
    Egress,
}

/// Where a driver publishes services' exposed ports on the host: the operator's choice
/// (`gpunet provider start --ingress-bind`, `--ingress-ports`), the same for every workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// The host address the ports are bound to. Loopback (the default) keeps services on the
    /// provider's machine; `0.0.0.0` or a public interface's address lets others reach them.
    pub host_ip: std::net::IpAddr,
    /// The host ports the engine picks from; `None`: any free port.
    pub ports: Option<PortRange>,
}

impl Default for Publish {
    fn default() -> Self {
        Self {
            host_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            ports: None,
        }
    }
}

/// An inclusive range of host ports, `first-last` (e.g. `30000-32767`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// The range, if `first` is a usable port and not above `last`.
    pub fn new(first: u16, last: u16) -> Result<Self, String> {
        if first == 0 {
            return Err("port 0 cannot be published: start the range at 1 or above".into());
        }
        if first > last {
            return Err(format!(
                "the range {first}-{last} is empty: give the lower port first"
            ));
        }
        Ok(Self { first, last })
    }

    /// How many ports it holds.
    pub fn len(self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(self) -> bool {
        false
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;

    /// `first-last`, or one port.
    fn from_str(text: &str) -> Result<Self, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port: give FIRST-LAST, e.g. 30000-32767"))
        };
        match text.split_once('-') {
            Some((first, last)) => Self::new(port(first)?, port(last)?),
            None => {
                let p = port(text)?;
                Self::new(p, p)
            }
        }
    }
}

/// A transport protocol of an exposed port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortProto {
    #[default]
    Tcp,
    Udp,
}

impl PortProto {
    /// `"tcp"` or `"udp"`, as container engines spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PortProto::Tcp => "tcp",
            PortProto::Udp => "udp",
        }
    }
}

/// A port a service workload listens on inside its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExposedPort {
    pub container_port: u16,
    #[serde(default)]
    pub proto: PortProto,
}

/// Where an [`ExposedPort`] can be reached on the provider machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub proto: PortProto,
    /// Where this machine reaches it: the address the port is bound to (loopback where it is
    /// bound to all addresses) and the host port the engine chose.
    pub host: SocketAddr,
    /// The companion's service whose port it is; `None`: the main container's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Which replica of that service.
    #[serde(default)]
    pub replica: u32,
}

impl PublishedPort {
    /// A port of the main container.
    pub fn new(container_port: u16, proto: PortProto, host: SocketAddr) -> Self {
        PublishedPort {
            container_port,
            proto,
            host,
            service: None,
            replica: 0,
        }
    }
}

/// An interactive command running inside a workload ([`crate::Driver::shell`]): its output as
/// it comes (stdout and stderr together, as a terminal shows them), its input, and a way to
/// resize its terminal and read its exit code once the output has ended.
pub struct ShellSession {
    /// Ends when the command has ended (or the engine closed the stream).
    pub output: futures::stream::BoxStream<'static, Vec<u8>>,
    /// Shut it down to send end-of-file.
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    pub control: Box<dyn ShellControl>,
}

impl std::fmt::Debug for ShellSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellSession").finish_non_exhaustive()
    }
}

/// Control of a [`ShellSession`] beside its streams.
#[async_trait::async_trait]
pub trait ShellControl: Send + Sync {
    /// Sets the command's terminal size (nothing without a terminal).
    async fn resize(&self, cols: u16, rows: u16);
    /// The exit code, once the command has ended; `None` while it runs or if unknown.
    async fn exit_code(&self) -> Option<i64>;
}

/// Most bytes of each of stdout and stderr an exec keeps; the rest is cut (`truncated`).
pub const MAX_EXEC_OUTPUT_BYTES: usize = 1024 * 1024;

/// What a command run inside a running workload ([`crate::Driver::exec`]) gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Its exit code; `None` if it was still running at the timeout.
    pub exit_code: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output past [`MAX_EXEC_OUTPUT_BYTES`] was cut.
    pub truncated: bool,
    /// The timeout passed before it ended: the output is what it wrote until then.
    pub timed_out: bool,
}

impl WorkloadSpec {
    /// A spec with the given identity, command and root dir, and defaults for everything else:
    /// [`DEFAULT_CPU_MILLIS`], [`DEFAULT_MEMORY_MIB`], [`DEFAULT_MAX_DURATION`], no environment,
    /// no GPUs, [`DEFAULT_LOG_LIMIT_BYTES`], no image, no network, a read-only root filesystem,
    /// no exposed ports, [`DEFAULT_PIDS_LIMIT`] and no disk limit. Set fields after, or use it as the base of a
    /// struct update (`..WorkloadSpec::new(..)`).
    pub fn new(
        workload_id: impl Into<String>,
        command: Vec<String>,
        root_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            workload_id: workload_id.into(),
            command,
            args: Vec::new(),
            env: BTreeMap::new(),
            cpu_millis: DEFAULT_CPU_MILLIS,
            memory_mib: DEFAULT_MEMORY_MIB,
            max_duration: DEFAULT_MAX_DURATION,
            root_dir: root_dir.into(),
            gpu_uuids: Vec::new(),
            log_limit_bytes: DEFAULT_LOG_LIMIT_BYTES,
            image: None,
            network: NetworkMode::None,
            read_only_rootfs: true,
            capabilities: Vec::new(),
            expose: Vec::new(),
            pids_limit: DEFAULT_PIDS_LIMIT,
            disk_mib: None,
            hostname: None,
            companions: Vec::new(),
            volumes: Vec::new(),
            restarts: 0,
        }
    }

    /// The spec a companion runs under: this one (its id, root dir, limits, disk and log)
    /// with the companion's image, command, environment, share of CPU, memory and GPUs,
    /// network and ports, and no companions of its own.
    pub fn companion_spec(&self, companion: &Companion) -> WorkloadSpec {
        WorkloadSpec {
            command: companion.command.clone(),
            args: companion.args.clone(),
            env: companion.env.clone(),
            cpu_millis: companion.cpu_millis,
            memory_mib: companion.memory_mib,
            gpu_uuids: companion.gpu_uuids.clone(),
            image: Some(companion.image.clone()),
            network: companion.network,
            expose: companion.expose.clone(),
            hostname: Some(companion.service.clone()),
            companions: Vec::new(),
            volumes: companion.volumes.clone(),
            read_only_rootfs: companion.read_only_rootfs,
            capabilities: companion.capabilities.clone(),
            ..self.main_spec()
        }
    }

    /// This spec without its companions: what the main container runs under.
    pub fn main_spec(&self) -> WorkloadSpec {
        let mut main = self.clone();
        main.companions.clear();
        main
    }

    /// The disk limit in bytes, if there is one.
    pub fn disk_limit_bytes(&self) -> Option<u64> {
        self.disk_mib.map(|mib| mib.saturating_mul(1024 * 1024))
    }

    /// Checks everything a driver relies on; drivers call this before touching anything.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_workload_id(&self.workload_id)?;
        match self.command.first() {
            None if self.image.is_none() => return Err(SpecError::EmptyCommand),
            Some(program) if program.is_empty() => return Err(SpecError::EmptyProgram),
            _ => {}
        }
        if !self.args.is_empty() && (self.image.is_none() || !self.command.is_empty()) {
            return Err(SpecError::ArgsWithoutImageEntrypoint);
        }
        let argv = if self.command.is_empty() {
            &self.args
        } else {
            &self.command
        };
        if argv.len() > MAX_COMMAND_ARGS {
            return Err(SpecError::TooManyArgs {
                count: argv.len(),
                max: MAX_COMMAND_ARGS,
            });
        }
        if let Some(index) = argv.iter().position(|arg| arg.contains('\0')) {
            return Err(SpecError::ArgContainsNul { index });
        }
        if self.env.len() > MAX_ENV_VARS {
            return Err(SpecError::TooManyEnvVars {
                count: self.env.len(),
                max: MAX_ENV_VARS,
            });
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(SpecError::InvalidEnvName { name: name.clone() });
            }
            if value.contains('\0') {
                return Err(SpecError::EnvValueContainsNul { name: name.clone() });
            }
        }
        let bytes: usize = argv.iter().map(|a| a.len() + 1).sum::<usize>()
            + self
                .env
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        if bytes > MAX_ARGV_ENV_BYTES {
            return Err(SpecError::ArgvEnvTooLarge {
                bytes,
                max_bytes: MAX_ARGV_ENV_BYTES,
            });
        }
        if self.cpu_millis == 0 {
            return Err(SpecError::ZeroCpu);
        }
        if self.memory_mib == 0 {
            return Err(SpecError::ZeroMemory);
        }
        if self.max_duration.is_zero() {
            return Err(SpecError::ZeroDuration);
        }
        if !self.root_dir.is_absolute() {
            return Err(SpecError::RootDirNotAbsolute {
                root_dir: self.root_dir.clone(),
            });
        }
        if self.gpu_uuids.len() > MAX_GPUS_PER_WORKLOAD {
            return Err(SpecError::TooManyGpus {
                count: self.gpu_uuids.len(),
                max: MAX_GPUS_PER_WORKLOAD,
            });
        }
        for uuid in &self.gpu_uuids {
            if uuid.is_empty()
                || uuid
                    .chars()
                    .any(|c| c == ',' || c == '\0' || c.is_whitespace())
            {
                return Err(SpecError::InvalidGpuUuid { uuid: uuid.clone() });
            }
        }
        if let Some(image) = &self.image
            && (image.is_empty()
                || image.len() > MAX_IMAGE_REF_BYTES
                || image.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(SpecError::InvalidImage {
                image: image.clone(),
                max_bytes: MAX_IMAGE_REF_BYTES,
            });
        }
        if self.pids_limit == 0 {
            return Err(SpecError::ZeroPidsLimit);
        }
        if let Some(name) = self
            .capabilities
            .iter()
            .find(|c| !GRANTABLE_CAPABILITIES.contains(&c.as_str()))
        {
            return Err(SpecError::CapabilityNotGrantable {
                name: name.clone(),
                grantable: GRANTABLE_CAPABILITIES,
            });
        }
        if self.disk_mib == Some(0) {
            return Err(SpecError::ZeroDisk);
        }
        self.validate_expose()?;
        self.validate_volumes()?;
        self.validate_companions()
    }

    /// Volumes named as DNS labels once each, at absolute paths, with some room.
    fn validate_volumes(&self) -> Result<(), SpecError> {
        for (i, v) in self.volumes.iter().enumerate() {
            let bad = |why: &str| SpecError::InvalidVolume {
                name: v.name.clone(),
                why: why.to_owned(),
            };
            if !is_dns_label(&v.name) || self.volumes[..i].iter().any(|o| o.name == v.name) {
                return Err(bad("its name must be a DNS label, used once"));
            }
            if !v.mount.starts_with('/')
                || v.mount == "/"
                || v.mount.contains(['\0', ':', ','])
                || v.mount.split('/').any(|p| p == "..")
            {
                return Err(bad("its mount must be an absolute path other than /"));
            }
            if v.size_mib == 0 {
                return Err(bad("its size is 0"));
            }
        }
        Ok(())
    }

    /// A hostname for the main container, at most [`MAX_WORKLOAD_CONTAINERS`] containers, each
    /// companion named once and valid as a workload of its own, with an image.
    fn validate_companions(&self) -> Result<(), SpecError> {
        if let Some(name) = &self.hostname
            && !is_dns_label(name)
        {
            return Err(SpecError::InvalidHostname { name: name.clone() });
        }
        if self.companions.is_empty() {
            return Ok(());
        }
        let Some(hostname) = &self.hostname else {
            return Err(SpecError::MissingHostname);
        };
        if self.companions.len() + 1 > MAX_WORKLOAD_CONTAINERS {
            return Err(SpecError::TooManyCompanions {
                count: self.companions.len() + 1,
                max: MAX_WORKLOAD_CONTAINERS,
            });
        }
        for (i, companion) in self.companions.iter().enumerate() {
            let member = companion.member();
            let wrap = |source: SpecError| SpecError::InCompanion {
                member: member.clone(),
                source: Box::new(source),
            };
            if !is_dns_label(&companion.service) {
                return Err(wrap(SpecError::InvalidHostname {
                    name: companion.service.clone(),
                }));
            }
            if &companion.service == hostname
                || self.companions[..i]
                    .iter()
                    .any(|c| c.service == companion.service && c.replica == companion.replica)
            {
                return Err(SpecError::DuplicateCompanion { member });
            }
            if companion.image.is_empty()
                || companion.image.len() > MAX_IMAGE_REF_BYTES
                || companion.image.chars().any(char::is_whitespace)
            {
                return Err(wrap(SpecError::InvalidImage {
                    image: companion.image.clone(),
                    max_bytes: MAX_IMAGE_REF_BYTES,
                }));
            }
            self.companion_spec(companion).validate().map_err(wrap)?;
        }
        Ok(())
    }

    fn validate_expose(&self) -> Result<(), SpecError> {
        if self.expose.len() > MAX_EXPOSED_PORTS {
            return Err(SpecError::TooManyExposedPorts {
                count: self.expose.len(),
                max: MAX_EXPOSED_PORTS,
            });
        }
        if !self.expose.is_empty() && self.network == NetworkMode::None {
            return Err(SpecError::ExposedPortsNeedNetwork);
        }
        for (index, port) in self.expose.iter().enumerate() {
            if port.container_port == 0 {
                return Err(SpecError::ZeroExposedPort);
            }
            if self.expose[..index].contains(port) {
                return Err(SpecError::DuplicateExposedPort {
                    container_port: port.container_port,
                    proto: port.proto.as_str(),
                });
            }
        }
        Ok(())
    }
}

/// 1 to [`MAX_WORKLOAD_ID_BYTES`] of `[a-z0-9-]`, not starting or ending with `-`.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_WORKLOAD_ID_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn validate_workload_id(workload_id: &str) -> Result<(), SpecError> {
    if is_dns_label(workload_id) {
        Ok(())
    } else {
        Err(SpecError::InvalidWorkloadId {
            workload_id: workload_id.to_owned(),
            max_bytes: MAX_WORKLOAD_ID_BYTES,
        })
    }
}

/// Where the directories of a workload live, derived from its `root_dir`.
pub(crate) fn work_dir(root_dir: &Path) -> PathBuf {
    root_dir.join("work")
}

/// Creates a workload's `work/`, `outputs/` and `logs/` (and `root_dir` if missing), each
/// 0700: what a lease writes is its own and the provider's, nobody else's on the machine.
pub(crate) fn create_workload_dirs(root_dir: &Path) -> Result<(), crate::DriverError> {
    for dir in [
        work_dir(root_dir),
        outputs_dir(root_dir),
        logs_dir(root_dir),
    ] {
        gpunet_files::create_private_dir_all(&dir).map_err(|source| crate::DriverError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Opens (creating, 0600) a workload's combined log for appending; returns it and its length.
pub(crate) fn open_log(root_dir: &Path) -> Result<(std::fs::File, u64), crate::DriverError> {
    let log = log_path(root_dir);
    let io = |action: &'static str| {
        let path = log.clone();
        move |source| crate::DriverError::Io {
            action,
            path,
            source,
        }
    };
    let file = gpunet_files::open_private_append(&log).map_err(io("open log"))?;
    let len = file.metadata().map_err(io("stat log"))?.len();
    Ok((file, len))
}

/// Removes a workload's working directory (what `destroy` drops); outputs and logs stay.
pub(crate) fn remove_volumes(root_dir: &Path) -> Result<(), crate::DriverError> {
    let dir = root_dir.join("volumes");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(crate::DriverError::Io {
            action: "remove",
            path: dir,
            source,
        }),
    }
}

pub(crate) fn remove_work_dir(root_dir: &Path) -> Result<(), crate::DriverError> {
    let work = work_dir(root_dir);
    match std::fs::remove_dir_all(&work) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(crate::DriverError::Io {
            action: "remove",
            path: work,
            source,
        }),
    }
}
pub(crate) fn outputs_dir(root_dir: &Path) -> PathBuf {
    root_dir.join("outputs")
}
/// The directory the agent keeps a workload's checkpoints in, when the job keeps any: under
/// `work/`, so a process workload sees it in its own working directory and a container gets it
/// mounted (at [`crate::CONTAINER_CHECKPOINTS_DIR`]) only when the agent created it.
pub fn checkpoints_dir(root_dir: &Path) -> PathBuf {
    work_dir(root_dir).join(CHECKPOINTS_DIR_NAME)
}

/// The checkpoint directory's name under a workload's `work/`.
pub const CHECKPOINTS_DIR_NAME: &str = ".gpunet-checkpoints";

/// Read-only inputs the agent placed for the workload, if any.
pub(crate) fn inputs_dir(root_dir: &Path) -> PathBuf {
    root_dir.join("inputs")
}
pub(crate) fn logs_dir(root_dir: &Path) -> PathBuf {
    root_dir.join("logs")
}
pub(crate) fn log_path(root_dir: &Path) -> PathBuf {
    logs_dir(root_dir).join("combined.log")
}

/// A started workload. Serializable so the agent can persist it and [`crate::Driver::recover`]
/// after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadHandle {
    pub workload_id: String,
    /// Name of the driver that started it (`"process"`, `"fake"`).
    pub driver: String,
    /// Process id of the session leader, where the driver has one.
    pub pid: Option<u32>,
    /// When that process started (field 22 of `/proc/<pid>/stat`, clock ticks since boot), so
    /// a reused pid is never mistaken for the workload after an agent restart.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    pub root_dir: PathBuf,
}

/// How a workload ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitOutcome {
    pub exit_code: Option<i32>,
    /// The signal that killed the main process, if one did.
    pub signal: Option<i32>,
    pub reason: ExitReason,
    pub usage: Usage,
}

/// Why a workload ended, as far as the driver can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// Exited with status 0.
    Completed,
    /// Exited nonzero or was killed by a signal, with no clearer reason.
    Failed,
    /// Failed with clear evidence of an allocation failure (see the process driver's docs).
    OutOfMemory,
    /// Used up its CPU-time limit.
    CpuTimeLimit,
    /// Ran past `max_duration` and was killed.
    WallClockLimit,
    /// Ended after [`crate::Driver::stop`].
    Stopped,
    /// Its end was not observed (e.g. across an agent restart); nothing is known about it.
    Lost,
    /// Filled more disk than `disk_mib` and was killed (or a file hit `RLIMIT_FSIZE`).
    DiskExceeded,
}

/// Resources used, from `wait4`'s rusage. Zero where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub wall_ms: u64,
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    /// Peak resident set of the largest process waited for, in KiB.
    pub max_rss_kib: u64,
}

/// A slice of a workload's combined log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    pub data: Vec<u8>,
    /// Pass this as `from_offset` to read on.
    pub next_offset: u64,
    /// The workload has ended, its output is all written, and this chunk reaches the end.
    pub finished: bool,
}

/// Asks a workload's supervisor to stop it. The first request's grace wins; later ones only wait
/// for the same end.
pub(crate) fn request_stop(
    stop: &tokio::sync::watch::Sender<Option<std::time::Duration>>,
    grace: std::time::Duration,
) {
    stop.send_if_modified(|requested| {
        let first = requested.is_none();
        if first {
            *requested = Some(grace);
        }
        first
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            memory_mib: 256,
            max_duration: Duration::from_secs(10),
            ..WorkloadSpec::new("lease-42", vec!["true".into()], "/tmp/x")
        }
    }

    fn check(edit: impl FnOnce(&mut WorkloadSpec), expected: Result<(), SpecError>) {
        let mut s = spec();
        edit(&mut s);
        assert_eq!(s.validate(), expected);
    }

    #[test]
    fn valid_spec_is_accepted() {
        check(|_| {}, Ok(()));
    }

    #[test]
    fn workload_ids_outside_lowercase_digits_and_dashes_are_refused() {
        for bad in [
            "", "Lease-1", "lease_1", "lease/1", "-lease", "lease-", "lease 1", "é",
        ] {
            let id = bad.to_owned();
            check(
                |s| s.workload_id = id.clone(),
                Err(SpecError::InvalidWorkloadId {
                    workload_id: id.clone(),
                    max_bytes: 63,
                }),
            );
        }
        let long = "a".repeat(64);
        check(
            |s| s.workload_id = long.clone(),
            Err(SpecError::InvalidWorkloadId {
                workload_id: long.clone(),
                max_bytes: 63,
            }),
        );
        check(|s| s.workload_id = "a".repeat(63), Ok(()));
    }

    #[test]
    fn empty_commands_and_bad_fields_are_refused() {
        check(|s| s.command.clear(), Err(SpecError::EmptyCommand));
        check(
            |s| s.command = vec![String::new()],
            Err(SpecError::EmptyProgram),
        );
        check(
            |s| s.command.push("a\0b".into()),
            Err(SpecError::ArgContainsNul { index: 1 }),
        );
        check(
            |s| {
                s.env.insert("A=B".into(), "x".into());
            },
            Err(SpecError::InvalidEnvName { name: "A=B".into() }),
        );
        check(
            |s| {
                s.env.insert("A".into(), "x\0".into());
            },
            Err(SpecError::EnvValueContainsNul { name: "A".into() }),
        );
        check(|s| s.cpu_millis = 0, Err(SpecError::ZeroCpu));
        check(|s| s.memory_mib = 0, Err(SpecError::ZeroMemory));
        check(
            |s| s.max_duration = Duration::ZERO,
            Err(SpecError::ZeroDuration),
        );
        check(
            |s| s.root_dir = PathBuf::from("relative"),
            Err(SpecError::RootDirNotAbsolute {
                root_dir: PathBuf::from("relative"),
            }),
        );
        check(
            |s| s.gpu_uuids = vec!["GPU-a,GPU-b".into()],
            Err(SpecError::InvalidGpuUuid {
                uuid: "GPU-a,GPU-b".into(),
            }),
        );
    }

    #[test]
    fn bad_images_pids_limits_and_exposed_ports_are_refused() {
        let image_error = |image: &str| {
            Err(SpecError::InvalidImage {
                image: image.into(),
                max_bytes: MAX_IMAGE_REF_BYTES,
            })
        };
        check(|s| s.image = Some("busybox:1.36".into()), Ok(()));
        check(|s| s.image = Some(String::new()), image_error(""));
        check(|s| s.image = Some("a b".into()), image_error("a b"));
        let long = "a".repeat(MAX_IMAGE_REF_BYTES + 1);
        check(|s| s.image = Some(long.clone()), image_error(&long));
        check(|s| s.pids_limit = 0, Err(SpecError::ZeroPidsLimit));
        check(|s| s.disk_mib = Some(0), Err(SpecError::ZeroDisk));
        check(|s| s.disk_mib = Some(1), Ok(()));

        let port = |container_port| ExposedPort {
            container_port,
            proto: PortProto::Tcp,
        };
        check(
            |s| s.expose = vec![port(80)],
            Err(SpecError::ExposedPortsNeedNetwork),
        );
        let with_network = |s: &mut WorkloadSpec, ports: Vec<ExposedPort>| {
            s.network = NetworkMode::Egress;
            s.expose = ports;
        };
        check(|s| with_network(s, vec![port(80), port(443)]), Ok(()));
        check(
            |s| with_network(s, vec![port(0)]),
            Err(SpecError::ZeroExposedPort),
        );
        check(
            |s| with_network(s, vec![port(80), port(80)]),
            Err(SpecError::DuplicateExposedPort {
                container_port: 80,
                proto: "tcp",
            }),
        );
        check(
            |s| {
                let udp = ExposedPort {
                    container_port: 80,
                    proto: PortProto::Udp,
                };
                with_network(s, vec![port(80), udp]);
            },
            Ok(()),
        );
        check(
            |s| with_network(s, (1..=17).map(port).collect()),
            Err(SpecError::TooManyExposedPorts { count: 17, max: 16 }),
        );
    }

    #[test]
    fn specs_persisted_before_the_isolation_fields_read_with_their_defaults() {
        let mut json = serde_json::to_value(spec()).expect("serializes");
        let object = json.as_object_mut().expect("a spec is an object");
        for field in [
            "image",
            "network",
            "read_only_rootfs",
            "expose",
            "pids_limit",
            "disk_mib",
        ] {
            object.remove(field);
        }
        let read: WorkloadSpec = serde_json::from_value(json).expect("deserializes");
        assert_eq!(read, spec());
    }

    #[test]
    fn exit_reasons_serialize_in_snake_case() {
        let json = serde_json::to_string(&ExitReason::WallClockLimit).expect("serializes");
        assert_eq!(json, "\"wall_clock_limit\"");
        let json = serde_json::to_string(&ExitReason::OutOfMemory).expect("serializes");
        assert_eq!(json, "\"out_of_memory\"");
        let json = serde_json::to_string(&ExitReason::DiskExceeded).expect("serializes");
        assert_eq!(json, "\"disk_exceeded\"");
    }
}
