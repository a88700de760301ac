//! The process driver: runs a workload as a child process of the agent, inside the kernel
//! sandbox of [`crate::sandbox`] wherever this machine allows one ([`Isolation::Sandboxed`]),
//! and as a plain child process otherwise ([`Isolation::Unsandboxed`], which the agent offers
//! only to its operator's own accounts).
//!
//! Each workload gets a cleared environment, its own session and process group (so stop and
//! the wall-clock limit reach its children), rlimits set between fork and exec, and a pipe that
//! a task pumps into the capped combined log. Sandboxed, the agent's direct child is the
//! sandbox's shim, whose child — PID 1 of the lease's PID namespace — is the workload; the shim
//! reports the workload's status and rusage, and the lease's cgroup says whether the kernel's
//! OOM killer struck. A supervisor task per workload watches for the
//! exit (`waitid` with `WNOWAIT` on a dedicated thread), the wall-clock deadline and stop
//! requests; when the main process has exited it kills what is left of the group, reaps the
//! main process with `wait4` for its rusage, waits briefly for the log to drain, classifies the
//! end and publishes the [`ExitOutcome`].
//!
//! Limits and what they mean:
//! - memory: the lease's cgroup when the sandbox has one (the kernel's OOM killer ends the
//!   workload, reported as `OutOfMemory`); otherwise `RLIMIT_AS = memory_mib`, virtual address
//!   space per process, so a memory hog's allocations fail (runtimes that reserve large address
//!   ranges up front, such as the JVM, Go or CUDA, need a generous limit then).
//! - processes: the cgroup's `pids.max` and `RLIMIT_NPROC` (sandboxed, counted per lease).
//! - `RLIMIT_CPU = ceil(max_duration × cores)` seconds soft, [`CPU_LIMIT_HARD_GRACE_SECS`] more
//!   hard, per process: SIGXCPU first, SIGKILL if ignored.
//! - `RLIMIT_CORE = 0`.
//! - wall clock: the supervisor SIGKILLs the group at `max_duration`.
//! - disk (`disk_mib`, when set): `RLIMIT_FSIZE` caps any one file at the limit, and the disk
//!   watchdog (`crate::disk`) SIGKILLs the group once `work/` and `outputs/` together hold more.
//!   Files written elsewhere are not counted: confining the workload to its own directories is
//!   the sandbox's job.
//!
//! How an end is classified, first match wins: stop requested → `Stopped`; wall-clock kill →
//! `WallClockLimit`; disk watchdog kill → `DiskExceeded`; killed by SIGXCPU, or by SIGKILL
//! after using at least the CPU limit → `CpuTimeLimit`; killed by SIGXFSZ → `DiskExceeded`;
//! exit 0 → `Completed`; nonzero exit or SIGABRT/SIGSEGV/SIGBUS with "File too large" (EFBIG)
//! in the last 16 KiB of output → `DiskExceeded`; nonzero exit or SIGABRT/SIGSEGV/SIGBUS *and* clear
//! evidence of exhausted memory → `OutOfMemory`; anything else → `Failed`. Clear evidence is
//! either the main process's peak resident set reaching [`OOM_RSS_PERCENT`] of `memory_mib`
//! (resident memory is a subset of the address space the limit caps, so it was nearly full), or
//! the last 16 KiB of output containing a well-known allocation-failure message
//! ([`ALLOCATION_FAILURE_MESSAGES`]). The output is the tenant's, so `OutOfMemory` is a helpful
//! label, not proof.
//!
//! Sandboxed, a workload sees `/work` (its cwd and `HOME`), `/outputs` (`GPUNET_OUTPUTS`),
//! `/inputs` and read-only system directories, has no network (a spec asking for egress is
//! refused), and only its own GPUs' device files; `image`, `read_only_rootfs` and `expose` do
//! not apply. Unsandboxed, a workload shares the host's filesystem and network, `GPUNET_OUTPUTS`
//! and `HOME` are host paths, and GPU isolation is only `CUDA_VISIBLE_DEVICES`. The environment
//! the driver sets (`GPUNET_OUTPUTS`, `HOME`, `CUDA_VISIBLE_DEVICES`) overrides the spec's.
//!
//! [`Driver::pause`] freezes the workload where it is (see `crate::freeze`): the lease's cgroup
//! v2 freezer where it has one, else SIGSTOP to every process of its PID namespace (sandboxed)
//! or of its process group and session (unsandboxed); [`Driver::resume`] thaws it. The shim is
//! never stopped, so `wait` still sees the end; `stop` sends its SIGTERM and then thaws, so a
//! paused workload ends within its grace. The wall-clock limit keeps counting while paused.
//!
//! [`Driver::exec`] and [`Driver::shell`] run a command inside a running sandboxed workload: it
//! joins the workload's sandbox (see the `inside` module). Unsandboxed, and for a workload
//! adopted after an agent restart, they fail with [`DriverError::ExecUnsupported`], saying why.
//!
//! After an agent restart ([`Driver::recover`]) a still-running workload is adopted: its pid is
//! checked to be ours (a session leader that started at the recorded time, or, for handles
//! written before start times were recorded, whose initial environment names this workload's
//! outputs dir), it can be stopped, paused, resumed (a paused one is found again as running)
//! and its log read, but its exit status and rusage cannot be had (it is
//! no longer our child), so its end is reported as `Lost` (or `Stopped` if we stopped it), and
//! the wall-clock and disk limits are no longer enforced by the driver. Its output pipe died with the old
//! agent, so its later writes fail (EPIPE/SIGPIPE).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::{oneshot, watch};

use crate::driver::{Driver, DriverInfo, RecoverState, check_driver};
use crate::error::{DriverError, SpecError};
use crate::freeze::Freezer;
use crate::inside::Inside;
use crate::logs::{LogCap, read_chunk};
use crate::sandbox::{Isolation, Sandbox, SandboxedRun};
use crate::sys::{self, ChildLimits};
use crate::workload::{
    ExecOutput, ExitOutcome, ExitReason, LogChunk, NetworkMode, Usage, WorkloadHandle,
    WorkloadSpec, create_workload_dirs, log_path, open_log, outputs_dir, remove_work_dir,
    request_stop, work_dir,
};

/// The name of this driver, as written into handles.
pub const PROCESS_DRIVER_NAME: &str = "process";
/// `PATH` given to workloads whose spec does not set one.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Extra CPU seconds between SIGXCPU (soft limit) and SIGKILL (hard limit).
pub(crate) const CPU_LIMIT_HARD_GRACE_SECS: u64 = 5;
/// How long the log may keep draining after the workload's group is gone (an escaped process
/// still holding the pipe would otherwise hold the outcome back forever).
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Size of one read from a workload's output pipe.
const LOG_READ_BUFFER_BYTES: usize = 64 * 1024;
/// How often an adopted workload (after an agent restart) is checked for being alive.
const ADOPTED_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Messages that show an allocation failed, lowercase: bash/glibc strerror, dash, Python, C++,
/// Rust, Go and Java.
pub(crate) const ALLOCATION_FAILURE_MESSAGES: &[&str] = &[
    "cannot allocate memory",
    "out of memory",
    "out of space",
    "memoryerror",
    "std::bad_alloc",
    "memory allocation of",
    "outofmemoryerror",
];
const MIB_BYTES: u64 = 1024 * 1024;
/// Peak resident set, as a percentage of the memory limit, that counts as memory exhausted.
const OOM_RSS_PERCENT: u64 = 75;

/// Runs workloads as child processes, sandboxed where the machine allows; see the module docs.
#[derive(Debug)]
pub struct ProcessDriver {
    workloads: Mutex<BTreeMap<String, Arc<Entry>>>,
    sandbox: Option<Arc<Sandbox>>,
    isolation: Isolation,
}

impl Default for ProcessDriver {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
struct Entry {
    outcome: watch::Receiver<Option<ExitOutcome>>,
    stop: watch::Sender<Option<Duration>>,
    freeze: Arc<tokio::sync::Mutex<FreezeState>>,
    /// The way in for `exec` and `shell`, or why there is none.
    inside: Result<Arc<Inside>, String>,
}

/// How to pause a workload, and whether it may still be: held while its processes are
/// signalled, and taken by the supervisor before it reaps the workload's main process, so a
/// scan never runs once that pid (and process group id) can be reused.
#[derive(Debug)]
struct FreezeState {
    /// Why it cannot be paused, otherwise how.
    freezer: Result<Freezer, String>,
    ended: bool,
    /// Frozen by `pause` and not thawed since.
    paused: bool,
}

impl FreezeState {
    fn new(freezer: Result<Freezer, String>) -> Arc<tokio::sync::Mutex<FreezeState>> {
        Arc::new(tokio::sync::Mutex::new(FreezeState {
            freezer,
            ended: false,
            paused: false,
        }))
    }
}

/// Freezes (`freeze`) or thaws a workload, unless it has ended.
async fn freeze_or_thaw(
    state: &Arc<tokio::sync::Mutex<FreezeState>>,
    workload_id: &str,
    freeze: bool,
) -> Result<(), DriverError> {
    let mut guard = Arc::clone(state).lock_owned().await;
    if guard.ended {
        return Ok(());
    }
    let freezer = match &guard.freezer {
        Ok(freezer) => freezer.clone(),
        Err(why) if freeze => {
            return Err(DriverError::PauseUnsupported {
                workload_id: workload_id.to_owned(),
                why: why.clone(),
            });
        }
        // Nothing was frozen, so nothing to thaw.
        Err(_) => return Ok(()),
    };
    // The guard goes with the work, so a cancelled caller cannot let the supervisor reap
    // while processes are still being signalled.
    let done = tokio::task::spawn_blocking(move || {
        let result = if freeze {
            freezer.freeze()
        } else {
            freezer.thaw()
        };
        if result.is_ok() {
            guard.paused = freeze;
        }
        drop(guard);
        result
    })
    .await;
    let action = if freeze {
        "pause the workload"
    } else {
        "resume the workload"
    };
    let source = match done {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(source)) => source,
        Err(join) => std::io::Error::other(join.to_string()),
    };
    Err(DriverError::Os {
        workload_id: workload_id.to_owned(),
        action,
        source,
    })
}

/// What made the supervisor end a workload, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Stopped,
    WallClock,
    /// The disk watchdog found the workload over `disk_mib`.
    Disk,
}

impl ProcessDriver {
    /// A driver that sandboxes every workload if this machine allows it (checked now, by
    /// running `true` in a sandbox), and runs them unsandboxed otherwise; [`Self::isolation`]
    /// says which and why.
    pub fn new() -> Self {
        Self::with_protected_paths(Vec::new())
    }

    /// As [`Self::new`], and `protected` (the agent's data directory, its key files) is masked
    /// inside every sandbox even where a system directory shown to workloads contains it.
    pub fn with_protected_paths(protected: Vec<PathBuf>) -> Self {
        match Sandbox::new(protected) {
            Ok(sandbox) => Self {
                workloads: Mutex::default(),
                isolation: Isolation::Sandboxed {
                    detail: sandbox.describe(),
                },
                sandbox: Some(Arc::new(sandbox)),
            },
            Err(reason) => Self::unsandboxed(reason),
        }
    }

    /// A driver that runs workloads as plain child processes, for the operator's own jobs
    /// where no sandbox can be had; `reason` says why.
    pub fn unsandboxed(reason: impl Into<String>) -> Self {
        Self {
            workloads: Mutex::default(),
            sandbox: None,
            isolation: Isolation::Unsandboxed {
                reason: reason.into(),
            },
        }
    }

    /// Whether workloads run sandboxed here, and what that enforces or why not.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Entry>>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is
        // one insert or remove), so a poisoned lock is still safe to use.
        self.workloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The way into `handle`'s running workload for `exec` and `shell`. A process job has one
    /// part: `service` may only name it by its hostname.
    async fn inside(
        &self,
        handle: &WorkloadHandle,
        service: Option<&str>,
    ) -> Result<Arc<Inside>, DriverError> {
        let entry = self.entry_for(handle)?;
        let not_running = || DriverError::NotRunning {
            workload_id: handle.workload_id.clone(),
        };
        if entry.outcome.borrow().is_some() || entry.freeze.lock().await.paused {
            return Err(not_running());
        }
        let inside = entry
            .inside
            .as_ref()
            .map_err(|why| DriverError::ExecUnsupported {
                driver: PROCESS_DRIVER_NAME,
                why: why.clone(),
            })?;
        if let Some(service) = service
            && inside.hostname() != Some(service)
        {
            return Err(DriverError::NoSuchService {
                workload_id: handle.workload_id.clone(),
                service: service.to_owned(),
                known: inside.hostname().map(str::to_owned).into_iter().collect(),
            });
        }
        Ok(Arc::clone(inside))
    }

    /// The entry for `handle`, adopting its process if this driver has not seen it.
    fn entry_for(&self, handle: &WorkloadHandle) -> Result<Arc<Entry>, DriverError> {
        check_driver(PROCESS_DRIVER_NAME, handle)?;
        let mut map = self.lock();
        if let Some(entry) = map.get(&handle.workload_id) {
            return Ok(Arc::clone(entry));
        }
        let v2_leases = self.sandbox.as_deref().and_then(Sandbox::v2_leases);
        let entry = Arc::new(adopt(handle, v2_leases));
        map.insert(handle.workload_id.clone(), Arc::clone(&entry));
        Ok(entry)
    }
}

#[async_trait::async_trait]
impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        PROCESS_DRIVER_NAME
    }

    async fn fingerprint(&self) -> Result<DriverInfo, DriverError> {
        if !cfg!(target_os = "linux") {
            return Err(DriverError::Unavailable {
                driver: PROCESS_DRIVER_NAME,
                reason: "the process driver needs Linux".into(),
            });
        }
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Ok(DriverInfo {
            name: PROCESS_DRIVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            detail: match &self.isolation {
                Isolation::Sandboxed { detail } => format!("linux kernel {kernel}; {detail}"),
                Isolation::Unsandboxed { reason } => format!(
                    "linux kernel {kernel}; no sandbox ({reason}): rlimits and a process group only"
                ),
            },
            isolated: self.isolation.is_sandboxed(),
        })
    }

    async fn start(&self, spec: &WorkloadSpec) -> Result<WorkloadHandle, DriverError> {
        spec.validate()?;
        // Validation lets a spec with an image leave its command to the image; a process has
        // no image to take one from.
        if spec.command.is_empty() {
            return Err(SpecError::EmptyCommand.into());
        }
        if !spec.args.is_empty() {
            return Err(SpecError::ArgsWithoutImageEntrypoint.into());
        }
        if !spec.companions.is_empty() {
            return Err(SpecError::CompanionsUnsupported.into());
        }
        if !spec.volumes.is_empty() || spec.restarts > 0 {
            return Err(SpecError::VolumesUnsupported.into());
        }
        if self.sandbox.is_some() && spec.network == NetworkMode::Egress {
            return Err(SpecError::ProcessEgress.into());
        }
        let id = &spec.workload_id;
        let root = &spec.root_dir;
        create_workload_dirs(root)?;
        let (log_file, existing_log_bytes) = open_log(root)?;
        let os = |action: &'static str| {
            move |source| DriverError::Os {
                workload_id: id.clone(),
                action,
                source,
            }
        };
        let (reader, writer) = std::io::pipe().map_err(os("create output pipe"))?;
        let writer_for_stderr = writer.try_clone().map_err(os("clone output pipe"))?;

        let mut command = build_command(spec, self.sandbox.is_some());
        command
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer_for_stderr);

        // The lock is held across the spawn so two starts of one id cannot both run.
        let mut map = self.lock();
        if map.contains_key(id) {
            return Err(DriverError::AlreadyExists {
                workload_id: id.clone(),
            });
        }
        // Either way the command (which holds the parent's copies of the pipe's write end) is
        // dropped once spawned, so the pipe reaches EOF once the workload's processes are gone.
        let (child, sandboxed) = match &self.sandbox {
            Some(sandbox) => {
                let (child, run) = sandbox.spawn(spec, command)?;
                (child, Some(run))
            }
            None => {
                sys::apply_child_setup(&mut command, child_limits(spec));
                let child = command.spawn().map_err(|source| DriverError::Spawn {
                    workload_id: id.clone(),
                    program: spec.command.first().cloned().unwrap_or_default(),
                    source,
                })?;
                drop(command);
                (child, None)
            }
        };
        let started = Instant::now();
        let pid = child.id();
        let start_ticks = process_start_ticks(pid);
        let freezer = match &sandboxed {
            None => Ok(Freezer::Group(pid)),
            Some(run) => match run.cgroup.as_ref().and_then(|c| c.freezer_dir()) {
                Some(dir) => Ok(Freezer::Cgroup(dir)),
                // The shim has unshared: its children's namespace is the lease's.
                None => match crate::freeze::child_pid_namespace(pid) {
                    Ok(Some(ns)) => Ok(Freezer::Namespace(ns)),
                    Ok(None) => Err("the sandbox's shim has no PID namespace of its own".into()),
                    Err(error) => Err(format!(
                        "cannot read the PID namespace of the sandbox's shim: {error}"
                    )),
                },
            },
        };
        let freeze = FreezeState::new(freezer);
        let inside = match &sandboxed {
            Some(run) => Ok(Arc::new(Inside::new(spec.clone(), Arc::clone(&run.enter)))),
            None => Err(
                "this provider runs process jobs without a sandbox, so a command could not be \
                 held inside the job's isolation and limits"
                    .to_owned(),
            ),
        };
        // Never waited through `child`: the supervisor reaps it with wait4 for the rusage.
        drop(child);

        let (outcome_tx, outcome_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(None);
        map.insert(
            id.clone(),
            Arc::new(Entry {
                outcome: outcome_rx,
                stop: stop_tx,
                freeze: Arc::clone(&freeze),
                inside,
            }),
        );
        drop(map);

        let pump = tokio::spawn(pump_log(
            OwnedFd::from(reader),
            log_file,
            LogCap::new(existing_log_bytes, spec.log_limit_bytes),
        ));
        tokio::spawn(supervise(Supervised {
            workload_id: id.clone(),
            pid,
            started,
            max_duration: spec.max_duration,
            cpu_limit_secs: cpu_limit_secs(spec),
            memory_mib: spec.memory_mib,
            disk_roots: vec![work_dir(root), outputs_dir(root)],
            disk_limit_bytes: spec.disk_limit_bytes(),
            stop: stop_rx,
            pump,
            outcome: outcome_tx,
            sandboxed,
            freeze,
        }));
        tracing::info!(workload_id = %id, pid, sandboxed = self.sandbox.is_some(), "workload started");
        Ok(WorkloadHandle {
            workload_id: id.clone(),
            driver: PROCESS_DRIVER_NAME.into(),
            pid: Some(pid),
            start_ticks,
            root_dir: root.clone(),
        })
    }

    async fn wait(&self, handle: &WorkloadHandle) -> Result<ExitOutcome, DriverError> {
        let entry = self.entry_for(handle)?;
        wait_outcome(&entry, &handle.workload_id).await
    }

    async fn logs(
        &self,
        handle: &WorkloadHandle,
        from_offset: u64,
        max_bytes: usize,
    ) -> Result<LogChunk, DriverError> {
        let entry = self.entry_for(handle)?;
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
        let entry = self.entry_for(handle)?;
        if entry.outcome.borrow().is_some() {
            return Ok(());
        }
        request_stop(&entry.stop, grace);
        wait_outcome(&entry, &handle.workload_id).await.map(|_| ())
    }

    async fn pause(&self, handle: &WorkloadHandle) -> Result<(), DriverError> {
        let entry = self.entry_for(handle)?;
        if entry.outcome.borrow().is_some() {
            return Ok(());
        }
        freeze_or_thaw(&entry.freeze, &handle.workload_id, true).await
    }

    async fn resume(&self, handle: &WorkloadHandle) -> Result<(), DriverError> {
        let entry = self.entry_for(handle)?;
        if entry.outcome.borrow().is_some() {
            return Ok(());
        }
        freeze_or_thaw(&entry.freeze, &handle.workload_id, false).await
    }

    async fn destroy(&self, handle: &WorkloadHandle) -> Result<(), DriverError> {
        let entry = self.entry_for(handle)?;
        if entry.outcome.borrow().is_none() {
            return Err(DriverError::StillRunning {
                workload_id: handle.workload_id.clone(),
            });
        }
        remove_work_dir(&handle.root_dir)?;
        crate::sandbox::remove_skeleton(&handle.root_dir);
        self.lock().remove(&handle.workload_id);
        Ok(())
    }

    /// Runs `argv` inside the workload's sandbox (see the `inside` module); killed at `timeout`.
    async fn exec(
        &self,
        handle: &WorkloadHandle,
        service: Option<&str>,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        let inside = self.inside(handle, service).await?;
        inside.exec(argv, timeout).await
    }

    /// Starts `argv` inside the workload's sandbox with its input attached and, with `tty`, a
    /// pseudo-terminal (see the `inside` module).
    async fn shell(
        &self,
        handle: &WorkloadHandle,
        service: Option<&str>,
        argv: &[String],
        tty: Option<(u16, u16)>,
    ) -> Result<crate::ShellSession, DriverError> {
        let inside = self.inside(handle, service).await?;
        inside.shell(argv, tty)
    }

    async fn recover(&self, handle: &WorkloadHandle) -> Result<RecoverState, DriverError> {
        let entry = self.entry_for(handle)?;
        let outcome = entry.outcome.borrow().clone();
        Ok(match outcome {
            None => RecoverState::Running,
            Some(outcome) if outcome.reason == ExitReason::Lost => RecoverState::Lost,
            Some(outcome) => RecoverState::Exited(outcome),
        })
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

/// The workload's command and environment. Sandboxed, paths are those inside the sandbox and
/// the sandbox itself enters `/work`; unsandboxed, host paths.
fn build_command(spec: &WorkloadSpec, sandboxed: bool) -> Command {
    command_in(spec, sandboxed, &spec.command)
}

/// `argv` (not empty) with the environment of `spec`'s workload.
pub(crate) fn command_in(spec: &WorkloadSpec, sandboxed: bool, argv: &[String]) -> Command {
    let root = &spec.root_dir;
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).env_clear().envs(&spec.env);
    if !spec.env.contains_key("PATH") {
        command.env("PATH", DEFAULT_PATH);
    }
    // Empty when no GPU is assigned, so a job cannot use GPUs it did not rent.
    command.env("CUDA_VISIBLE_DEVICES", spec.gpu_uuids.join(","));
    // Inputs the agent placed for the job, read-only in a sandbox.
    let inputs = crate::workload::inputs_dir(root);
    if inputs.is_dir() {
        if sandboxed {
            command.env("GPUNET_INPUTS", "/inputs");
        } else {
            command.env("GPUNET_INPUTS", &inputs);
        }
    }
    if sandboxed {
        command
            .env("GPUNET_OUTPUTS", "/outputs")
            .env("HOME", "/work");
    } else {
        command
            .env("GPUNET_OUTPUTS", outputs_dir(root))
            .env("HOME", work_dir(root))
            .current_dir(work_dir(root));
    }
    command
}

/// When process `pid` started: field 22 of `/proc/<pid>/stat`, in clock ticks since boot.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    // Fields after the name start at field 3 (state); start time is field 22.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// CPU seconds allowed: `ceil(max_duration × cpu_millis / 1000)`, at least 1.
pub(crate) fn cpu_limit_secs(spec: &WorkloadSpec) -> u64 {
    let cpu_ms = spec
        .max_duration
        .as_millis()
        .saturating_mul(u128::from(spec.cpu_millis));
    let secs = cpu_ms.div_ceil(1_000_000).max(1);
    u64::try_from(secs).unwrap_or(u64::MAX)
}

fn child_limits(spec: &WorkloadSpec) -> ChildLimits {
    let cpu_soft_secs = cpu_limit_secs(spec);
    ChildLimits {
        address_space_bytes: spec.memory_mib.saturating_mul(MIB_BYTES),
        cpu_soft_secs,
        cpu_hard_secs: cpu_soft_secs.saturating_add(CPU_LIMIT_HARD_GRACE_SECS),
        file_size_bytes: spec.disk_limit_bytes(),
    }
}

/// Copies the workload's output into its log under the cap until EOF; returns the cap (for the
/// output's tail).
async fn pump_log(reader: OwnedFd, file: std::fs::File, mut cap: LogCap) -> LogCap {
    let mut reader = match tokio::net::unix::pipe::Receiver::from_owned_fd(reader) {
        Ok(reader) => reader,
        Err(error) => {
            tracing::warn!(%error, "could not watch the workload's output; it is not logged");
            return cap;
        }
    };
    let mut file = tokio::fs::File::from_std(file);
    let mut buffer = vec![0u8; LOG_READ_BUFFER_BYTES];
    let mut write_failed = false;
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::warn!(%error, "reading workload output failed");
                break;
            }
        };
        let admitted = cap.admit(&buffer[..n]);
        if admitted.is_empty() || write_failed {
            continue;
        }
        if let Err(error) = tokio::io::AsyncWriteExt::write_all(&mut file, &admitted).await {
            // Keep draining so the workload never blocks on a full pipe.
            tracing::warn!(%error, "writing workload log failed; dropping further output");
            write_failed = true;
        }
    }
    if let Err(error) = tokio::io::AsyncWriteExt::flush(&mut file).await {
        tracing::warn!(%error, "flushing workload log failed");
    }
    cap
}

struct Supervised {
    workload_id: String,
    pid: u32,
    started: Instant,
    max_duration: Duration,
    cpu_limit_secs: u64,
    memory_mib: u64,
    /// The workload's writable directories, which the disk watchdog measures.
    disk_roots: Vec<PathBuf>,
    disk_limit_bytes: Option<u64>,
    stop: watch::Receiver<Option<Duration>>,
    pump: tokio::task::JoinHandle<LogCap>,
    outcome: watch::Sender<Option<ExitOutcome>>,
    /// The sandbox's report pipe, cgroup and uid slot, when sandboxed.
    sandboxed: Option<SandboxedRun>,
    freeze: Arc<tokio::sync::Mutex<FreezeState>>,
}

async fn supervise(mut s: Supervised) {
    let pid = s.pid;
    let (exit_tx, mut exited) = oneshot::channel();
    // A dedicated thread, not the blocking pool: it blocks for the workload's whole life.
    let spawned = std::thread::Builder::new()
        .name(format!("wait-{}", s.workload_id))
        .spawn(move || {
            // The receiver is gone only if the supervisor was dropped; nothing to tell then.
            let _ = exit_tx.send(sys::wait_exited(pid));
        });
    if let Err(error) = spawned {
        tracing::error!(workload_id = %s.workload_id, %error, "could not start a wait thread; killing the workload");
        kill_group(&s.workload_id, pid, libc::SIGKILL);
    }

    let mut cause = None;
    let exit = tokio::select! {
        result = &mut exited => result,
        () = tokio::time::sleep(s.max_duration) => {
            cause = Some(Cause::WallClock);
            kill_group(&s.workload_id, pid, libc::SIGKILL);
            (&mut exited).await
        }
        usage = crate::disk::exceeded(std::mem::take(&mut s.disk_roots), s.disk_limit_bytes) => {
            cause = Some(Cause::Disk);
            tracing::info!(workload_id = %s.workload_id, allocated_bytes = usage.allocated_bytes, entries = usage.entries, "disk limit passed; killing the workload");
            kill_group(&s.workload_id, pid, libc::SIGKILL);
            (&mut exited).await
        }
        grace = stop_requested(&mut s.stop) => {
            cause = Some(Cause::Stopped);
            kill_group(&s.workload_id, pid, libc::SIGTERM);
            // A paused workload gets its SIGTERM only once thawed.
            if let Err(error) = freeze_or_thaw(&s.freeze, &s.workload_id, false).await {
                tracing::warn!(workload_id = %s.workload_id, %error, "could not thaw the workload to stop it; it is killed after the grace");
            }
            tokio::select! {
                result = &mut exited => result,
                () = tokio::time::sleep(grace) => {
                    kill_group(&s.workload_id, pid, libc::SIGKILL);
                    (&mut exited).await
                }
            }
        }
    };
    // From here the main process's pid may be reaped (and reused): no more pausing.
    s.freeze.lock().await.ended = true;
    let mut reaped = match exit {
        Ok(Ok(())) => {
            // The main process is a zombie, so its pid still names the group: clear out any
            // processes it left behind, then collect it.
            kill_group(&s.workload_id, pid, libc::SIGKILL);
            sys::reap(pid).map_err(|e| e.to_string())
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("wait thread ended without a result".to_owned()),
    };
    // Sandboxed, the reaped process is the shim: the workload's own status and rusage are in
    // its report (absent when the shim itself was killed), and the cgroup knows about OOM kills.
    let mut oom_killed = false;
    if let Some(run) = s.sandboxed.take() {
        let finished = tokio::task::spawn_blocking(move || {
            let report = crate::sandbox::read_report(run.report);
            let oom_kills = run.cgroup.as_ref().map_or(0, |c| c.oom_kills());
            if let Some(cgroup) = &run.cgroup {
                cgroup.remove();
            }
            crate::sandbox::remove_skeleton(&run.root_dir);
            drop(run.slot);
            (report, oom_kills)
        })
        .await;
        if let Ok((report, oom_kills)) = finished {
            oom_killed = oom_kills > 0;
            if let (Ok(reaped), Some(report)) = (&mut reaped, report) {
                *reaped = sys::Reaped {
                    exit_code: report.exit_code,
                    signal: report.signal,
                    cpu_user_ms: report.cpu_user_ms,
                    cpu_system_ms: report.cpu_system_ms,
                    max_rss_kib: report.max_rss_kib,
                };
            }
        }
    }
    let wall_ms = u64::try_from(s.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let tail = match tokio::time::timeout(LOG_DRAIN_TIMEOUT, &mut s.pump).await {
        Ok(Ok(cap)) => cap.tail(),
        Ok(Err(_)) => Vec::new(),
        Err(_) => {
            tracing::warn!(workload_id = %s.workload_id, "output pipe still open after the workload ended; log cut off");
            s.pump.abort();
            Vec::new()
        }
    };
    let outcome = match reaped {
        Ok(reaped) => ExitOutcome {
            exit_code: reaped.exit_code,
            signal: reaped.signal,
            reason: match classify(&reaped, cause, s.cpu_limit_secs, s.memory_mib, &tail) {
                // The kernel's own word: the cgroup's OOM killer ended a process of the lease.
                ExitReason::Failed if oom_killed => ExitReason::OutOfMemory,
                reason => reason,
            },
            usage: Usage {
                wall_ms,
                cpu_user_ms: reaped.cpu_user_ms,
                cpu_system_ms: reaped.cpu_system_ms,
                max_rss_kib: reaped.max_rss_kib,
            },
        },
        Err(error) => {
            tracing::error!(workload_id = %s.workload_id, %error, "could not collect the workload's exit");
            ExitOutcome {
                exit_code: None,
                signal: None,
                reason: ExitReason::Lost,
                usage: Usage {
                    wall_ms,
                    ..Usage::default()
                },
            }
        }
    };
    tracing::info!(workload_id = %s.workload_id, reason = ?outcome.reason, exit_code = ?outcome.exit_code, signal = ?outcome.signal, "workload ended");
    s.outcome.send_replace(Some(outcome));
}

/// Resolves with the grace period once a stop is requested; never, if the driver is gone.
async fn stop_requested(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    let requested = stop
        .wait_for(Option::is_some)
        .await
        .map(|grace| grace.unwrap_or_default());
    match requested {
        Ok(grace) => grace,
        Err(_) => std::future::pending().await,
    }
}

fn kill_group(workload_id: &str, pgid: u32, signal: libc::c_int) {
    if let Err(error) = sys::signal_group(pgid, signal) {
        tracing::warn!(%workload_id, pgid, signal, %error, "could not signal the workload's process group");
    }
}

/// Why the workload ended; the rule is in the module docs.
fn classify(
    reaped: &sys::Reaped,
    cause: Option<Cause>,
    cpu_limit_secs: u64,
    memory_mib: u64,
    tail: &[u8],
) -> ExitReason {
    match cause {
        Some(Cause::Stopped) => return ExitReason::Stopped,
        Some(Cause::WallClock) => return ExitReason::WallClockLimit,
        Some(Cause::Disk) => return ExitReason::DiskExceeded,
        None => {}
    }
    let cpu_ms = reaped.cpu_user_ms.saturating_add(reaped.cpu_system_ms);
    match reaped.signal {
        Some(libc::SIGXCPU) => return ExitReason::CpuTimeLimit,
        Some(libc::SIGKILL) if cpu_ms >= cpu_limit_secs.saturating_mul(1000) => {
            return ExitReason::CpuTimeLimit;
        }
        _ => {}
    }
    if reaped.signal == Some(libc::SIGXFSZ) {
        return ExitReason::DiskExceeded;
    }
    if reaped.exit_code == Some(0) {
        return ExitReason::Completed;
    }
    let abnormal = matches!(reaped.exit_code, Some(code) if code != 0)
        || matches!(
            reaped.signal,
            Some(libc::SIGABRT | libc::SIGSEGV | libc::SIGBUS)
        );
    let rss_near_limit =
        reaped.max_rss_kib.saturating_mul(100) >= memory_mib.saturating_mul(1024 * OOM_RSS_PERCENT);
    if abnormal && mentions_file_too_large(tail) {
        return ExitReason::DiskExceeded;
    }
    if abnormal && (rss_near_limit || mentions_allocation_failure(tail)) {
        return ExitReason::OutOfMemory;
    }
    ExitReason::Failed
}

/// `EFBIG`'s message (glibc's strerror, as shells and most runtimes print it): a write went past
/// `RLIMIT_FSIZE` with SIGXFSZ ignored.
fn mentions_file_too_large(tail: &[u8]) -> bool {
    String::from_utf8_lossy(tail)
        .to_lowercase()
        .contains("file too large")
}

fn mentions_allocation_failure(tail: &[u8]) -> bool {
    let text = String::from_utf8_lossy(tail).to_lowercase();
    ALLOCATION_FAILURE_MESSAGES.iter().any(|m| text.contains(m))
}

/// Takes over a workload this driver did not start (after an agent restart), or records it as
/// lost when its process is gone or is not ours.
/// A paused workload (stopped or frozen) is alive, so it is adopted like any other.
fn adopt(handle: &WorkloadHandle, v2_leases: Option<&Path>) -> Entry {
    let (outcome_tx, outcome_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(None);
    let ours = handle
        .pid
        .filter(|pid| is_our_workload(*pid, handle.start_ticks, &handle.root_dir));
    let freeze = FreezeState::new(match ours {
        Some(pid) => crate::freeze::for_adopted(pid, v2_leases),
        None => Err("the workload's process is gone".into()),
    });
    let entry = Entry {
        outcome: outcome_rx,
        stop: stop_tx,
        freeze: Arc::clone(&freeze),
        inside: Err(
            "the agent has restarted since this workload started, and only the agent that \
             started a process job can enter its sandbox"
                .to_owned(),
        ),
    };
    match ours {
        Some(pid) => {
            tracing::info!(workload_id = %handle.workload_id, pid, "adopted running workload");
            tokio::spawn(watch_adopted(
                handle.workload_id.clone(),
                pid,
                stop_rx,
                outcome_tx,
                freeze,
            ));
        }
        None => {
            outcome_tx.send_replace(Some(lost_outcome(ExitReason::Lost)));
        }
    }
    entry
}

fn lost_outcome(reason: ExitReason) -> ExitOutcome {
    ExitOutcome {
        exit_code: None,
        signal: None,
        reason,
        usage: Usage::default(),
    }
}

/// Polls an adopted workload until it is gone; it is not our child, so no status or rusage.
async fn watch_adopted(
    workload_id: String,
    pid: u32,
    mut stop: watch::Receiver<Option<Duration>>,
    outcome: watch::Sender<Option<ExitOutcome>>,
    freeze: Arc<tokio::sync::Mutex<FreezeState>>,
) {
    let mut reason = ExitReason::Lost;
    let mut kill_at: Option<tokio::time::Instant> = None;
    loop {
        if !is_alive(pid) {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(ADOPTED_POLL_INTERVAL) => {}
            grace = stop_requested(&mut stop), if kill_at.is_none() => {
                reason = ExitReason::Stopped;
                kill_group(&workload_id, pid, libc::SIGTERM);
                if let Err(error) = freeze_or_thaw(&freeze, &workload_id, false).await {
                    tracing::warn!(%workload_id, %error, "could not thaw the workload to stop it; it is killed after the grace");
                }
                kill_at = Some(tokio::time::Instant::now() + grace);
            }
        }
        if kill_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
            kill_group(&workload_id, pid, libc::SIGKILL);
        }
    }
    // Not our child, so its pid may already be reused: no more pausing, and leftovers of the
    // group go with it, as for a workload we started.
    freeze.lock().await.ended = true;
    let _ = sys::signal_group(pid, libc::SIGKILL);
    outcome.send_replace(Some(lost_outcome(reason)));
}

/// Alive and not a zombie.
fn is_alive(pid: u32) -> bool {
    sys::process_exists(pid) && process_state(pid).is_some_and(|state| state != 'Z' && state != 'X')
}

/// The state letter from `/proc/<pid>/stat` (after the parenthesised command name).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.trim_start().chars().next()
}

/// Whether `pid` is a live workload of ours for `root_dir`: a session leader (we setsid every
/// workload) that started at `start_ticks`, or, without a start time, whose initial environment
/// has this workload's `GPUNET_OUTPUTS`.
fn is_our_workload(pid: u32, start_ticks: Option<u64>, root_dir: &Path) -> bool {
    if !is_alive(pid) || sys::session_of(pid) != Some(pid) {
        return false;
    }
    if let Some(expected) = start_ticks {
        return process_start_ticks(pid) == Some(expected);
    }
    let expected = {
        let mut v = b"GPUNET_OUTPUTS=".to_vec();
        v.extend_from_slice(outputs_dir(root_dir).as_os_str().as_encoded_bytes());
        v
    };
    let mut environ = Vec::new();
    let read = std::fs::File::open(PathBuf::from(format!("/proc/{pid}/environ"))).and_then(|f| {
        f.take(crate::workload::MAX_ARGV_ENV_BYTES as u64 * 2)
            .read_to_end(&mut environ)
    });
    read.is_ok()
        && environ
            .split(|b| *b == 0)
            .any(|var| var == expected.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaped(exit_code: Option<i32>, signal: Option<i32>, cpu_ms: u64) -> sys::Reaped {
        sys::Reaped {
            exit_code,
            signal,
            cpu_user_ms: cpu_ms,
            cpu_system_ms: 0,
            max_rss_kib: 0,
        }
    }

    fn check(r: sys::Reaped, cause: Option<Cause>, tail: &str, expected: ExitReason) {
        assert_eq!(
            classify(&r, cause, 10, 100, tail.as_bytes()),
            expected,
            "{r:?} {cause:?} {tail:?}"
        );
    }

    #[test]
    fn crash_with_resident_memory_near_the_limit_is_out_of_memory() {
        let mut r = reaped(None, Some(libc::SIGSEGV), 0);
        r.max_rss_kib = 75 * 1024;
        check(r, None, "", ExitReason::OutOfMemory);
        r.max_rss_kib = 74 * 1024;
        check(r, None, "", ExitReason::Failed);
        let mut ok = reaped(Some(0), None, 0);
        ok.max_rss_kib = 99 * 1024;
        check(ok, None, "", ExitReason::Completed);
    }

    #[test]
    fn endings_are_classified_by_the_documented_rule() {
        check(reaped(Some(0), None, 0), None, "", ExitReason::Completed);
        check(reaped(Some(1), None, 0), None, "boom", ExitReason::Failed);
        check(
            reaped(Some(0), None, 0),
            Some(Cause::Stopped),
            "",
            ExitReason::Stopped,
        );
        check(
            reaped(None, Some(libc::SIGKILL), 0),
            Some(Cause::WallClock),
            "",
            ExitReason::WallClockLimit,
        );
        check(
            reaped(None, Some(libc::SIGXCPU), 10_000),
            None,
            "",
            ExitReason::CpuTimeLimit,
        );
        check(
            reaped(None, Some(libc::SIGKILL), 10_000),
            None,
            "",
            ExitReason::CpuTimeLimit,
        );
        check(
            reaped(None, Some(libc::SIGKILL), 9_999),
            None,
            "",
            ExitReason::Failed,
        );
        check(
            reaped(Some(1), None, 0),
            None,
            "Traceback...\nMemoryError\n",
            ExitReason::OutOfMemory,
        );
        check(
            reaped(None, Some(libc::SIGABRT), 0),
            None,
            "memory allocation of 1073741824 bytes failed\n",
            ExitReason::OutOfMemory,
        );
        check(
            reaped(Some(2), None, 0),
            None,
            "sh: 1: Out of space\n",
            ExitReason::OutOfMemory,
        );
        check(
            reaped(None, Some(libc::SIGKILL), 0),
            Some(Cause::Disk),
            "",
            ExitReason::DiskExceeded,
        );
        check(
            reaped(None, Some(libc::SIGXFSZ), 0),
            None,
            "",
            ExitReason::DiskExceeded,
        );
        check(
            reaped(Some(1), None, 0),
            None,
            "dd: error writing 'big': File too large\n",
            ExitReason::DiskExceeded,
        );
        check(
            reaped(Some(0), None, 0),
            None,
            "File too large",
            ExitReason::Completed,
        );
        // Evidence without a failure is not an OOM.
        check(
            reaped(Some(0), None, 0),
            None,
            "out of memory",
            ExitReason::Completed,
        );
        check(
            reaped(None, Some(libc::SIGSEGV), 0),
            None,
            "",
            ExitReason::Failed,
        );
    }

    #[test]
    fn cpu_limit_is_duration_times_cores_rounded_up() {
        let mut spec = WorkloadSpec {
            cpu_millis: 1500,
            memory_mib: 1,
            max_duration: Duration::from_secs(10),
            log_limit_bytes: 0,
            ..WorkloadSpec::new("w", vec!["true".into()], "/x")
        };
        assert_eq!(cpu_limit_secs(&spec), 15);
        spec.max_duration = Duration::from_millis(1001);
        spec.cpu_millis = 1000;
        assert_eq!(cpu_limit_secs(&spec), 2);
        spec.max_duration = Duration::from_millis(1);
        spec.cpu_millis = 1;
        assert_eq!(cpu_limit_secs(&spec), 1);
    }
}
