//! `gpunet-runtime`: what a provider machine has, and how tenants' workloads run on it.
//!
//! The provider agent uses two things from this crate:
//!
//! - [`discover`] reports the machine's CPU, memory, free disk and GPUs ([`MachineInfo`]). GPUs
//!   come from NVML, then `nvidia-smi`, then nothing: a GPU is never invented, and when none is
//!   found [`GpuSource::None`] says why.
//! - The [`Driver`] trait (`fingerprint, start, wait, logs, stop, pause, resume, destroy,
//!   recover`) runs one workload per lease; `pause` freezes a workload in place (no CPU, its
//!   memory and files kept: the cgroup v2 freezer, SIGSTOP to each of its processes, or
//!   `docker pause`) when its lease's escrow runs out, and `resume` continues it. [`ProcessDriver`] runs a child process in a kernel sandbox (user, mount,
//!   PID and network namespaces, a cgroup, seccomp, Landlock: see the `sandbox` module), or
//!   plainly where no sandbox can be had, saying so in [`Isolation`]; [`DockerDriver`] runs a locked-down container of a local Docker Engine;
//!   [`FakeDriver`] pretends, for the agent's unit tests.
//! - With the `test-image` feature, [`testimage`] builds a tiny image from host binaries, for
//!   tests of the Docker driver on machines with no registry.
//!
//! Architecture Invariant: the parsers (`nvidia-smi` CSV, GPU model names, cgroup files) are pure
//! functions; only [`discover`] and the drivers touch the world. All `unsafe` code lives in the
//! private `sys` module.

mod cgroup;
mod disk;
mod docker;
mod driver;
mod error;
mod fake;
mod freeze;
mod gpu;
mod inside;
mod logs;
mod machine;
mod process;
mod sandbox;
mod sys;
#[cfg(any(test, feature = "test-image"))]
pub mod testimage;
mod workload;

pub use disk::{
    DISK_NEAR_LIMIT_PERCENT, DISK_SCAN_INTERVAL, DISK_SCAN_NEAR_LIMIT_INTERVAL,
    DISK_SCAN_PAUSE_PER_SCAN_TIME, MAX_DISK_SCAN_ENTRIES,
};
pub use docker::{
    CONTAINER_CHECKPOINTS_DIR, CONTAINER_INPUTS_DIR, CONTAINER_OUTPUTS_DIR, DEFAULT_DOCKER_SOCKET,
    DOCKER_DRIVER_NAME, DockerDriver, GROUP_STOP_GRACE, IMAGE_PULL_TIMEOUT, LABEL_MANAGED,
    LABEL_SERVICE, LABEL_WORKLOAD, LEASE_NETWORK, STATS_INTERVAL, TMP_TMPFS_BYTES,
    companion_container_name, container_name, engine_log_max_bytes, group_network_name,
};
pub use driver::{Driver, DriverInfo, RecoverState};
pub use error::{DriverError, GpuParseError, SpecError};
pub use fake::{FAKE_DRIVER_NAME, FakeDriver};
pub use gpu::{
    GpuDevice, GpuSample, GpuSampler, GpuSource, GpuUsage, NVIDIA_SMI_QUERY_FIELDS, NormalisedName,
    SmiRow, normalise_gpu_name, parse_cuda_version_banner, parse_nvidia_smi_csv,
};
pub use logs::MAX_LOG_CHUNK_BYTES;
pub use machine::{
    MachineInfo, discover, parse_cgroup_v2_cpu_max, parse_cgroup_v2_memory_max,
    parse_meminfo_total_kib,
};
pub use process::{PROCESS_DRIVER_NAME, ProcessDriver};
pub use sandbox::{DENIED_SYSCALLS, HOST_ID_BASE, HOST_ID_SLOTS, Isolation, SYSTEM_DIRS};
pub use workload::{
    CHECKPOINTS_DIR_NAME, Companion, DEFAULT_CPU_MILLIS, DEFAULT_LOG_LIMIT_BYTES,
    DEFAULT_MAX_DURATION, DEFAULT_MEMORY_MIB, DEFAULT_PIDS_LIMIT, ExecOutput, ExitOutcome,
    ExitReason, ExposedPort, GRANTABLE_CAPABILITIES, LOG_TRUNCATED_MARKER, LogChunk,
    MAIN_VOLUME_OWNER, MAX_ARGV_ENV_BYTES, MAX_COMMAND_ARGS, MAX_ENV_VARS, MAX_EXEC_OUTPUT_BYTES,
    MAX_EXPOSED_PORTS, MAX_GPUS_PER_WORKLOAD, MAX_IMAGE_REF_BYTES, MAX_WORKLOAD_CONTAINERS,
    MAX_WORKLOAD_ID_BYTES, NetworkMode, PortProto, PortRange, Publish, PublishedPort, ShellControl,
    ShellSession, Usage, Volume, WorkloadHandle, WorkloadSpec, checkpoints_dir, volume_dir,
};
