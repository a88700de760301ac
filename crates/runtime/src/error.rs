//! Operational errors of the runtime crate: one enum per concern, named fields, lowercase
//! messages, sources kept.

use std::path::PathBuf;

/// Why a [`crate::WorkloadSpec`] was refused before anything was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "workload id {workload_id:?} is invalid: use 1 to {max_bytes} characters from [a-z0-9-], not starting or ending with '-'"
    )]
    InvalidWorkloadId {
        workload_id: String,
        max_bytes: usize,
    },
    #[error(
        "command is empty: give at least the program to run (only a container may run its image's entrypoint)"
    )]
    EmptyCommand,
    #[error("command program (argv[0]) is an empty string")]
    EmptyProgram,
    #[error(
        "args are for a container image's own entrypoint: give them with an image and no command"
    )]
    ArgsWithoutImageEntrypoint,
    #[error("command has {count} arguments, more than the limit of {max}")]
    TooManyArgs { count: usize, max: usize },
    #[error("command argument {index} contains a NUL byte")]
    ArgContainsNul { index: usize },
    #[error("environment has {count} variables, more than the limit of {max}")]
    TooManyEnvVars { count: usize, max: usize },
    #[error(
        "environment variable name {name:?} is invalid: it must be non-empty and contain no '=' or NUL"
    )]
    InvalidEnvName { name: String },
    #[error("environment variable {name:?} has a value containing a NUL byte")]
    EnvValueContainsNul { name: String },
    #[error("command and environment take {bytes} bytes, more than the limit of {max_bytes}")]
    ArgvEnvTooLarge { bytes: usize, max_bytes: usize },
    #[error(
        "capability {name:?} is not one a container may be given; grantable: {}",
        grantable.join(", ")
    )]
    CapabilityNotGrantable {
        name: String,
        grantable: &'static [&'static str],
    },
    #[error("cpu_millis is 0: a workload needs some CPU")]
    ZeroCpu,
    #[error("memory_mib is 0: a workload needs some memory")]
    ZeroMemory,
    #[error("max_duration is 0: a workload needs some time to run")]
    ZeroDuration,
    #[error("root_dir {root_dir:?} is not an absolute path")]
    RootDirNotAbsolute { root_dir: PathBuf },
    #[error("{count} GPUs assigned, more than the limit of {max}")]
    TooManyGpus { count: usize, max: usize },
    #[error(
        "GPU uuid {uuid:?} is invalid: it must be non-empty and contain no ',', whitespace or NUL"
    )]
    InvalidGpuUuid { uuid: String },
    #[error(
        "image {image:?} is invalid: use a non-empty reference of at most {max_bytes} bytes without whitespace"
    )]
    InvalidImage { image: String, max_bytes: usize },
    #[error("this driver runs images: set the spec's image")]
    MissingImage,
    #[error("pids_limit is 0: a workload needs at least one process")]
    ZeroPidsLimit,
    #[error("disk_mib is 0: give a workload some disk, or no limit (None)")]
    ZeroDisk,
    #[error("{count} exposed ports, more than the limit of {max}")]
    TooManyExposedPorts { count: usize, max: usize },
    #[error("exposed port 0 is invalid: give the port the service listens on")]
    ZeroExposedPort,
    #[error("port {container_port}/{proto} is exposed twice")]
    DuplicateExposedPort {
        container_port: u16,
        proto: &'static str,
    },
    #[error(
        "exposed ports need network egress: a container without a network cannot publish ports"
    )]
    ExposedPortsNeedNetwork,
    #[error(
        "a sandboxed process workload has no network: give the job an image (run.image) to use egress"
    )]
    ProcessEgress,
    #[error("companions need a hostname for the main container: the name they reach it by")]
    MissingHostname,
    #[error(
        "name {name:?} is not a DNS label: use 1 to 63 characters from [a-z0-9-], not starting or ending with '-'"
    )]
    InvalidHostname { name: String },
    #[error("{count} containers in one workload, more than the limit of {max}")]
    TooManyCompanions { count: usize, max: usize },
    #[error("companion {member:?} appears twice, or is named like the main container")]
    DuplicateCompanion { member: String },
    #[error("companion {member}: {source}")]
    InCompanion {
        member: String,
        source: Box<SpecError>,
    },
    #[error(
        "this driver runs one process per workload: companions (a job's services) need the Docker driver"
    )]
    CompanionsUnsupported,
    #[error("volume {name:?} is invalid: {why}")]
    InvalidVolume { name: String, why: String },
    #[error(
        "this driver keeps no volumes and restarts nothing in place: volumes and restarts need the Docker driver"
    )]
    VolumesUnsupported,
}

/// Errors from a [`crate::Driver`].
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("invalid workload spec: {source}")]
    InvalidSpec {
        #[from]
        source: SpecError,
    },
    #[error("driver {driver} is not usable here: {reason}")]
    Unavailable {
        driver: &'static str,
        reason: String,
    },
    #[error("handle belongs to driver {found:?}, not {expected:?}")]
    WrongDriver {
        expected: &'static str,
        found: String,
    },
    #[error("workload {workload_id} is already known to this driver")]
    AlreadyExists { workload_id: String },
    #[error("workload {workload_id} is not known to this driver and its process cannot be found")]
    UnknownWorkload { workload_id: String },
    #[error("workload {workload_id} is still running: stop it before destroying it")]
    StillRunning { workload_id: String },
    #[error("could not {action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start {program:?} for workload {workload_id}: {source}")]
    Spawn {
        workload_id: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not set up the sandbox of workload {workload_id}: cannot {step}: {reason}")]
    Sandbox {
        workload_id: String,
        step: &'static str,
        reason: String,
    },
    #[error("could not {action} for workload {workload_id}: {source}")]
    Os {
        workload_id: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the supervisor of workload {workload_id} ended without reporting an outcome")]
    SupervisorGone { workload_id: String },
    /// The workload's image is neither present nor pullable; the tenant's mistake (or the
    /// registry's), not the provider's. See [`DriverError::is_image_unavailable`].
    #[error("image {image:?} is not available: {reason}")]
    ImageUnavailable { image: String, reason: String },
    /// The workload cannot be frozen on this machine (see [`crate::Driver::pause`]); the agent
    /// stops it instead.
    #[error("workload {workload_id} cannot be paused here: {why}")]
    PauseUnsupported { workload_id: String, why: String },
    /// The driver cannot run a command inside its workloads.
    #[error("driver {driver} cannot run a command inside a workload: {why}")]
    ExecUnsupported { driver: &'static str, why: String },
    /// The workload is not running, so nothing can run inside it.
    #[error("workload {workload_id} is not running; exec works only while it runs")]
    NotRunning { workload_id: String },
    /// `exec` named a service the workload does not have.
    #[error(
        "workload {workload_id} has no service {service:?}; {}",
        if .known.is_empty() { "it has none: leave --service out".to_owned() } else { format!("its services are: {}", .known.join(", ")) }
    )]
    NoSuchService {
        workload_id: String,
        service: String,
        known: Vec<String>,
    },
    #[error("the container engine could not {action} for workload {workload_id}: {source}")]
    Engine {
        workload_id: String,
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl DriverError {
    /// Whether `start` failed because the workload's image could not be had, so the agent can
    /// end the lease as `WorkloadOutcome::ImageUnavailable` rather than as a provider fault.
    pub fn is_image_unavailable(&self) -> bool {
        matches!(self, DriverError::ImageUnavailable { .. })
    }
}

/// Why `nvidia-smi` CSV output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuParseError {
    #[error("line {line}: expected {expected} comma-separated fields, found {found}")]
    FieldCount {
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("line {line}: field {field} is empty or not available")]
    MissingField { line: usize, field: &'static str },
    #[error("line {line}: memory.total {value:?} is not a whole number of MiB")]
    BadMemory { line: usize, value: String },
}
