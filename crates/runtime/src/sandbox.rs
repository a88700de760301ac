//! The process driver's sandbox: the kernel's own isolation around a tenant's process, the way
//! bubblewrap, nsjail and Nomad's `exec` driver build it, because tenant code is hostile to the
//! provider and to other tenants.
//!
//! What a sandboxed workload gets (the child's side is in `sys::sandbox`):
//!
//! - **its own user namespace**, running as uid/gid 1000 inside, which is one unprivileged uid
//!   outside: a fresh uid per lease from [`HOST_ID_BASE`] when the agent runs as root, the
//!   agent's own uid otherwise (then the mount namespace and Landlock keep it from the agent's
//!   files). No capabilities, `no_new_privs`, no supplementary groups;
//! - **its own mount namespace** whose root is a read-only tmpfs with the host's system
//!   directories bound read-only ([`SYSTEM_DIRS`]), `/work` (cwd and `HOME`), `/outputs`
//!   (`GPUNET_OUTPUTS`) and `/inputs` (read-only) from the lease's own directories, a 64 MiB
//!   `/tmp`, a minimal `/dev` (null, zero, full, random, urandom, shm, and the lease's GPUs), and
//!   a `/proc` of its own PID namespace. The agent's data directory and keys are nowhere in it
//!   (and masked where a system directory would contain them);
//! - **its own PID namespace**, whose PID 1 is the workload: when it ends, the kernel kills
//!   every process left in the namespace, so nothing outlives the lease;
//! - **its own network namespace** with only loopback: no route out, and the host's loopback
//!   services (the node API, the agent) are out of reach. Process jobs cannot ask for egress
//!   (the job spec refuses it); they use `run.image` for that;
//! - **a cgroup** (v1 or v2, see [`crate::cgroup`]) limiting memory, process count and CPU; where
//!   cgroups cannot be written, `RLIMIT_AS` and `RLIMIT_NPROC` instead;
//! - **Landlock** (best effort, by the kernel's ABI): read-only everywhere except its own
//!   directories, no signals or abstract sockets beyond its domain;
//! - **seccomp**: the system calls that reach kernel attack surface or escape routes fail with
//!   `EPERM` ([`DENIED_SYSCALLS`], namespace flags to `clone`), and `clone3` with `ENOSYS` so C
//!   libraries fall back to `clone`, whose flags the filter can see.
//!
//! A command run inside a running workload (`exec`, `shell`) joins its sandbox through
//! [`EnterTarget`]: the lease's cgroup, every namespace of its init, its uid, rlimits, Landlock
//! rules and seccomp filter.
//!
//! [`Sandbox::new`] checks all of it once by running `true` in a full sandbox; where that fails
//! (an old kernel, namespaces forbidden), it says why and the driver runs processes without a
//! sandbox, which the agent offers only to the accounts its operator names.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::cgroup::{CgroupLimits, Cgroups, LeaseCgroup};
use crate::docker::TMP_TMPFS_BYTES;
use crate::error::DriverError;
use crate::sys::sandbox::{
    ACK_OK, ChildPlan, Confinement, EnterPlan, INSIDE_ID, MOUNT_OP_CODE_BASE, MSG_BYTES,
    MSG_FAILED_STEP, MSG_SHIM_PID, MSG_WORKLOAD_PID, MountOp, REPORT_BYTES, Step,
};
use crate::workload::{WorkloadSpec, inputs_dir, outputs_dir, work_dir};

/// First host uid (and gid) of the per-lease range used when the agent runs as root; lease
/// slot `n` runs as `HOST_ID_BASE + n` (its uid 1000 inside). Far above the ranges
/// distributions and `subuid` hand out.
pub const HOST_ID_BASE: u32 = 0x7000_0000;
/// How many leases can run sandboxed at once with their own uids.
pub const HOST_ID_SLOTS: u32 = 65_536;
/// Host directories shown read-only inside the sandbox (those that exist; symlinks, as on
/// merged-`/usr` systems, are recreated as symlinks).
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];
/// Device files every sandbox gets.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];
/// NVIDIA control devices bound when the lease has GPUs.
const NVIDIA_CONTROL_DEVICES: &[&str] = &[
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
];
/// Directories (inside paths) a workload, and a command run inside it, may write beneath.
const WRITABLE: &[&str] = &["/work", "/outputs", "/tmp", "/dev/shm"];
/// Size of `/dev/shm`, in bytes.
const SHM_BYTES: u64 = 64 * 1024 * 1024;
/// System calls that fail with `EPERM`: kernel keyrings, BPF, perf, userfaultfd, module and
/// kexec loading, mounting and namespace changes, swap, reboot, tracing other processes and
/// their memory, handles that bypass path checks, io_uring, fanotify, accounting, quotas and
/// the kernel log.
pub const DENIED_SYSCALLS: &[(&str, i64)] = &[
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("setns", libc::SYS_setns),
    ("unshare", libc::SYS_unshare),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("syslog", libc::SYS_syslog),
    ("vhangup", libc::SYS_vhangup),
];
/// `clone` flags that would make new namespaces; `clone` with any of them fails with `EPERM`.
const NAMESPACE_CLONE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// How the process driver isolates workloads here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Every workload runs in the sandbox; `detail` lists what is enforced.
    Sandboxed { detail: String },
    /// The sandbox cannot be set up here, for `reason`: workloads run as plain child processes
    /// of the agent, so only the operator's own accounts may use this driver.
    Unsandboxed { reason: String },
}

impl Isolation {
    pub fn is_sandboxed(&self) -> bool {
        matches!(self, Isolation::Sandboxed { .. })
    }
}

/// The sandbox of one [`crate::ProcessDriver`]: what this machine allows, the prepared seccomp
/// filters and the per-lease uids in use.
#[derive(Debug)]
pub(crate) struct Sandbox {
    cgroups: Option<Cgroups>,
    /// Why there are no cgroups (rlimits stand in).
    cgroup_reason: Option<String>,
    /// Running as root: per-lease uids, and supplementary groups dropped.
    privileged: bool,
    slots: &'static Mutex<BTreeSet<u32>>,
    /// Host paths that must never be visible inside (the agent's data and keys).
    protected: Vec<PathBuf>,
    seccomp: Vec<BpfProgram>,
}

/// What a started sandboxed workload leaves to its supervisor.
#[derive(Debug)]
pub(crate) struct SandboxedRun {
    /// Read end of the shim's report pipe.
    pub(crate) report: OwnedFd,
    pub(crate) cgroup: Option<LeaseCgroup>,
    pub(crate) slot: Option<SlotGuard>,
    /// The lease's directory, whose sandbox skeleton goes once the workload has ended.
    pub(crate) root_dir: PathBuf,
    /// The way in for `exec` and `shell`, while it runs.
    pub(crate) enter: Arc<EnterTarget>,
}

/// What running a command inside a sandboxed workload takes: its init (by pidfd), its cgroup
/// and the limits, rules and filters the workload itself runs under.
#[derive(Debug)]
pub(crate) struct EnterTarget {
    workload_id: String,
    init: OwnedFd,
    cgroup: Option<LeaseCgroup>,
    /// The workload's own.
    confinement: Confinement,
}

impl EnterTarget {
    /// Makes `command` (argv, environment and stdio set) run inside the workload's sandbox, in
    /// `/work`, as the workload's uid, with its limits; with `tty`, its standard input is the
    /// terminal it controls. See `sys::sandbox::apply_enter`.
    pub(crate) fn apply(&self, command: &mut Command, tty: bool) -> Result<(), DriverError> {
        let fail = |reason: String| DriverError::Sandbox {
            workload_id: self.workload_id.clone(),
            step: "enter the workload's sandbox",
            reason,
        };
        let init = self
            .init
            .try_clone()
            .map_err(|e| fail(format!("cannot duplicate the init's pidfd: {e}")))?;
        let cgroup_procs = self
            .cgroup
            .iter()
            .flat_map(LeaseCgroup::procs_files)
            .map(|path| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|e| fail(format!("cannot open {}: {e}", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        crate::sys::sandbox::apply_enter(
            command,
            EnterPlan {
                init,
                cgroup_procs,
                tty,
                workdir: c"/work".to_owned(),
                confinement: self.confinement.clone(),
            },
        );
        Ok(())
    }
}

/// A per-lease uid slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct SlotGuard {
    slot: u32,
    slots: &'static Mutex<BTreeSet<u32>>,
}

impl SlotGuard {
    /// The host id of the lease's uid (and gid) 1000.
    pub(crate) fn host_id(&self) -> u32 {
        HOST_ID_BASE + self.slot
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        lock(self.slots).remove(&self.slot);
    }
}

fn lock(slots: &Mutex<BTreeSet<u32>>) -> std::sync::MutexGuard<'_, BTreeSet<u32>> {
    // Every update is one insert or remove, so a poisoned lock holds a consistent set.
    slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The workload's status and rusage as the shim saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShimReport {
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) cpu_user_ms: u64,
    pub(crate) cpu_system_ms: u64,
    pub(crate) max_rss_kib: u64,
}

/// Decodes the shim's report (see `sys::sandbox::REPORT_BYTES`).
pub(crate) fn parse_report(bytes: &[u8]) -> Option<ShimReport> {
    if bytes.len() != REPORT_BYTES {
        return None;
    }
    let code = i32::from_le_bytes(bytes[1..5].try_into().ok()?);
    let u64_at = |at: usize| bytes[at..at + 8].try_into().ok().map(u64::from_le_bytes);
    let (exit_code, signal) = match bytes[0] {
        1 => (Some(code), None),
        2 => (None, Some(code)),
        _ => return None,
    };
    Some(ShimReport {
        exit_code,
        signal,
        cpu_user_ms: u64_at(5)?,
        cpu_system_ms: u64_at(13)?,
        max_rss_kib: u64_at(21)?,
    })
}

/// Reads the report the shim wrote before it ended (non-blocking: it has ended).
pub(crate) fn read_report(report: OwnedFd) -> Option<ShimReport> {
    let mut file = std::fs::File::from(report);
    let mut bytes = Vec::with_capacity(REPORT_BYTES);
    (&mut file)
        .take(REPORT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    parse_report(&bytes)
}

/// Builds the seccomp filters (see [`DENIED_SYSCALLS`]).
pub(crate) fn seccomp_filters() -> Result<Vec<BpfProgram>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("no seccomp filter for {}: {e}", std::env::consts::ARCH))?;
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = DENIED_SYSCALLS
        .iter()
        .map(|(_, nr)| (*nr, Vec::new()))
        .collect();
    let clone_rules = NAMESPACE_CLONE_FLAGS
        .iter()
        .map(|flag| {
            let flag = *flag as u64;
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .and_then(|condition| SeccompRule::new(vec![condition]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot build the clone rule: {e}"))?;
    denied.insert(libc::SYS_clone, clone_rules);
    let eperm = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| format!("cannot build the seccomp filter: {e}"))?;
    let enosys = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| format!("cannot build the clone3 filter: {e}"))?;
    Ok(vec![eperm, enosys])
}

fn cstring(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))
}

fn inside(base: &Path, path: &str) -> PathBuf {
    base.join(path.trim_start_matches('/'))
}

/// `/dev/nvidia<minor>` of each GPU uuid, from `/proc/driver/nvidia/gpus/*/information`.
fn nvidia_device_minors(uuids: &[String]) -> Option<Vec<u32>> {
    let mut by_uuid = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()?
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(entry.path().join("information")) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim_start_matches(':').trim().to_owned())
        };
        if let (Some(uuid), Some(minor)) = (field("GPU UUID"), field("Device Minor"))
            && let Ok(minor) = minor.parse::<u32>()
        {
            by_uuid.insert(uuid, minor);
        }
    }
    uuids.iter().map(|u| by_uuid.get(u).copied()).collect()
}

impl Sandbox {
    /// Prepares the sandbox and checks it by running `true` in it; `Err` says why it cannot be
    /// used here.
    pub(crate) fn new(protected: Vec<PathBuf>) -> Result<Sandbox, String> {
        if !cfg!(target_os = "linux") {
            return Err("the sandbox needs Linux".into());
        }
        let seccomp = seccomp_filters()?;
        let (euid, _) = crate::sys::effective_ids();
        let (cgroups, cgroup_reason) = match Cgroups::detect().and_then(|c| {
            // Being able to make the parent directory is not enough: make (and drop) one.
            // Unique per driver: drivers made at once in one process (tests) must not race
            // on one probe cgroup, or one of them would lose its cgroups.
            let probe = format!(
                "probe-{}-{}",
                std::process::id(),
                CGROUP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let limits = CgroupLimits {
                memory_bytes: 64 << 20,
                pids_max: 8,
                cpu_millis: 100,
            };
            let made = c
                .create(&probe, limits)
                .map_err(|e| format!("cannot create a lease cgroup: {e}"))?;
            made.remove();
            Ok(c)
        }) {
            Ok(c) => (Some(c), None),
            Err(reason) => (None, Some(reason)),
        };
        let sandbox = Sandbox {
            cgroups,
            cgroup_reason,
            privileged: euid == 0,
            slots: &SLOTS,
            protected,
            seccomp,
        };
        sandbox.probe()?;
        Ok(sandbox)
    }

    /// Where v2 lease cgroups are made, if they are.
    pub(crate) fn v2_leases(&self) -> Option<&Path> {
        match &self.cgroups {
            Some(Cgroups::V2 { leases }) => Some(leases),
            _ => None,
        }
    }

    /// What is enforced, for the driver's fingerprint and the agent's start message.
    pub(crate) fn describe(&self) -> String {
        let ids = if self.privileged {
            "a uid of its own per lease"
        } else {
            "the agent's uid, mapped"
        };
        let limits = match (&self.cgroups, &self.cgroup_reason) {
            (Some(c), _) => c.describe().to_owned(),
            (None, Some(reason)) => format!("rlimits only ({reason})"),
            (None, None) => "rlimits only".to_owned(),
        };
        format!(
            "sandbox: user, mount, PID, network, IPC, UTS and cgroup namespaces; {ids}; {limits}; \
             no capabilities, no_new_privs, seccomp, Landlock where the kernel has it"
        )
    }

    /// Runs `true` in a full sandbox in a scratch directory.
    fn probe(&self) -> Result<(), String> {
        let root = std::env::temp_dir().join(format!(
            "gpunet-sandbox-probe-{}-{}",
            std::process::id(),
            PROBE_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let result = (|| {
            let mut spec = WorkloadSpec::new("sandbox-probe", vec!["true".into()], &root);
            spec.memory_mib = 64;
            spec.max_duration = std::time::Duration::from_secs(10);
            for dir in [work_dir(&root), outputs_dir(&root)] {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let mut command = Command::new("true");
            command
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let (mut child, run) = self.spawn(&spec, command).map_err(|e| e.to_string())?;
            let status = child
                .wait()
                .map_err(|e| format!("cannot wait for the probe: {e}"))?;
            let report = read_report(run.report);
            if let Some(cgroup) = &run.cgroup {
                cgroup.remove();
            }
            match report {
                Some(r) if r.exit_code == Some(0) => Ok(()),
                Some(r) => Err(format!(
                    "`true` in the sandbox ended with exit code {:?}, signal {:?}",
                    r.exit_code, r.signal
                )),
                None => Err(format!(
                    "`true` in the sandbox ended with {status} and no report"
                )),
            }
        })();
        let _ = std::fs::remove_dir_all(&root);
        result
    }

    /// Spawns `command` (argv and environment set; stdio set) in a new sandbox for `spec`.
    /// Returns the shim's `Child` (the agent's direct child) and what its supervisor needs.
    pub(crate) fn spawn(
        &self,
        spec: &WorkloadSpec,
        mut command: Command,
    ) -> Result<(std::process::Child, SandboxedRun), DriverError> {
        let id = &spec.workload_id;
        let setup = |what: &'static str| {
            move |reason: String| DriverError::Sandbox {
                workload_id: id.clone(),
                step: what,
                reason,
            }
        };
        let slot = if self.privileged {
            let mut slots = lock(self.slots);
            let offset = std::process::id() % HOST_ID_SLOTS;
            let free = (0..HOST_ID_SLOTS)
                .map(|n| (n + offset) % HOST_ID_SLOTS)
                .find(|s| !slots.contains(s))
                .ok_or_else(|| "every per-lease uid is in use".to_owned())
                .map_err(setup("allocate a uid"))?;
            slots.insert(free);
            Some(SlotGuard {
                slot: free,
                slots: self.slots,
            })
        } else {
            None
        };
        let root = &spec.root_dir;
        let (work, outputs, inputs) = (work_dir(root), outputs_dir(root), inputs_dir(root));
        if let Some(slot) = &slot {
            let id = slot.host_id();
            for dir in [&work, &outputs] {
                std::os::unix::fs::chown(dir, Some(id), Some(id))
                    .map_err(|e| format!("cannot give {} to uid {id}: {e}", dir.display()))
                    .map_err(setup("prepare the lease's directories"))?;
            }
            if inputs.is_dir() {
                chown_tree(&inputs, id)
                    .map_err(|e| format!("cannot give {} to uid {id}: {e}", inputs.display()))
                    .map_err(setup("prepare the lease's directories"))?;
            }
        }
        let cgroup = match &self.cgroups {
            Some(cgroups) => Some(
                cgroups
                    .create(
                        &format!(
                            "{id}-{}-{}",
                            std::process::id(),
                            CGROUP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        ),
                        CgroupLimits {
                            memory_bytes: spec.memory_mib.saturating_mul(1024 * 1024),
                            pids_max: spec.pids_limit,
                            cpu_millis: spec.cpu_millis,
                        },
                    )
                    .map_err(|e| e.to_string())
                    .map_err(setup("create the lease's cgroup"))?,
            ),
            None => None,
        };

        let pipe = || std::io::pipe().map_err(|e| format!("cannot create a pipe: {e}"));
        let (from_child, to_parent) = pipe().map_err(setup("create pipes"))?;
        let (from_parent, to_child) = pipe().map_err(setup("create pipes"))?;
        let (report_read, report_write) = pipe().map_err(setup("create pipes"))?;
        let (to_parent, from_parent, report_write) = (
            OwnedFd::from(to_parent),
            OwnedFd::from(from_parent),
            OwnedFd::from(report_write),
        );

        let plan = self
            .plan(
                spec,
                (&to_parent, &from_parent, &report_write),
                cgroup.is_some(),
            )
            .map_err(setup("plan the sandbox"))?;
        let op_names: Vec<String> = plan.ops.iter().map(ToString::to_string).collect();
        let confinement = plan.confinement.clone();
        crate::sys::sandbox::apply(&mut command, plan);

        let ids = IdMap {
            privileged: self.privileged,
            host_id: slot.as_ref().map(SlotGuard::host_id),
        };
        let coordinator_cgroup = cgroup.clone();
        let coordinator = std::thread::Builder::new()
            .name(format!("sandbox-{id}"))
            .spawn(move || coordinate(from_child, to_child, ids, coordinator_cgroup))
            .map_err(|e| format!("cannot start a thread: {e}"))
            .map_err(setup("start the sandbox coordinator"))?;
        let spawned = command.spawn();
        // The child has its copies (or has failed); the parent's must go so the coordinator sees
        // the end of the pipe once the child has execed.
        drop((to_parent, from_parent, report_write));
        drop(command);
        let (failed, init) = coordinator
            .join()
            .unwrap_or_else(|_| (Some((0, "the sandbox coordinator panicked".into())), None));
        let spawned = spawned.and_then(|child| match init {
            Some(init) => Ok((child, init)),
            // Every step passed, so the init's pid arrived; a pidfd could not be had for it.
            None => Err(std::io::Error::other(
                "no pidfd for the sandbox's init (Linux 5.3 or later is needed)",
            )),
        });
        match spawned {
            Ok((child, init)) => Ok((
                child,
                SandboxedRun {
                    report: OwnedFd::from(report_read),
                    enter: Arc::new(EnterTarget {
                        workload_id: id.clone(),
                        init,
                        cgroup: cgroup.clone(),
                        confinement,
                    }),
                    cgroup,
                    slot,
                    root_dir: spec.root_dir.clone(),
                },
            )),
            Err(source) => {
                if let Some(c) = &cgroup {
                    c.remove();
                }
                let Some((step, detail)) = failed else {
                    // Every setup step passed: the exec of the program itself failed.
                    return Err(DriverError::Spawn {
                        workload_id: id.clone(),
                        program: spec.command.first().cloned().unwrap_or_default(),
                        source,
                    });
                };
                let detail = match step.checked_sub(MOUNT_OP_CODE_BASE) {
                    Some(index) => op_names.get(index as usize).cloned().unwrap_or_default(),
                    None => detail,
                };
                Err(DriverError::Sandbox {
                    workload_id: id.clone(),
                    step: Step::describe(step),
                    reason: if detail.is_empty() {
                        source.to_string()
                    } else {
                        format!("{detail}: {source}")
                    },
                })
            }
        }
    }

    /// Makes the new root's skeleton under the lease's directory (every mount point, as the
    /// parent: see `sys::sandbox::MountOp`) and describes everything the child does, as data.
    fn plan(
        &self,
        spec: &WorkloadSpec,
        (to_parent, from_parent, report): (&OwnedFd, &OwnedFd, &OwnedFd),
        has_cgroup: bool,
    ) -> Result<ChildPlan, String> {
        let root_dir = &spec.root_dir;
        let base = skeleton_dir(root_dir);
        remove_skeleton(root_dir);
        let io = |what: &str, path: &Path| {
            let shown = path.display().to_string();
            let what = what.to_owned();
            move |e: std::io::Error| format!("cannot {what} {shown}: {e}")
        };
        let dir = |path: &Path| -> Result<(), String> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(io("create", path))
        };
        let file = |path: &Path| -> Result<(), String> {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o644)
                .open(path)
                .map(drop)
                .map_err(io("create", path))
        };
        let link = |target: &Path, path: &Path| -> Result<(), String> {
            std::os::unix::fs::symlink(target, path).map_err(io("link", path))
        };
        dir(&base)?;
        // The skeleton must be traversable by the lease's uid: 0755 whatever the umask.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755))
            .map_err(io("set the mode of", &base))?;

        let mut ops = Vec::new();
        let mut bound = Vec::new();
        for name in SYSTEM_DIRS {
            let host = Path::new(name);
            let Ok(meta) = std::fs::symlink_metadata(host) else {
                continue;
            };
            let target = inside(&base, name);
            if meta.file_type().is_symlink() {
                let points_to = std::fs::read_link(host).map_err(io("read the link", host))?;
                link(&points_to, &target)?;
            } else if meta.is_dir() {
                let flags = crate::sys::locked_mount_flags(host)
                    .map_err(|e| format!("cannot read the mount flags of {name}: {e}"))?;
                dir(&target)?;
                ops.push(MountOp::Bind {
                    source: cstring(host)?,
                    target: cstring(&target)?,
                    read_only_flags: Some(flags | libc::MS_NOSUID | libc::MS_NODEV),
                });
                bound.push(host);
            }
        }
        // The agent's data and keys stay hidden even where a system directory holds them.
        for protected in &self.protected {
            if bound.iter().any(|b| protected.starts_with(b)) {
                ops.push(MountOp::Mask(cstring(&inside(
                    &base,
                    &protected.to_string_lossy(),
                ))?));
            }
        }
        for (name, host, read_only) in [
            ("/work", work_dir(root_dir), false),
            ("/outputs", outputs_dir(root_dir), false),
            ("/inputs", inputs_dir(root_dir), true),
        ] {
            if !host.is_dir() {
                continue;
            }
            let target = inside(&base, name);
            dir(&target)?;
            ops.push(MountOp::Bind {
                source: cstring(&host)?,
                target: cstring(&target)?,
                read_only_flags: read_only.then_some(libc::MS_NOSUID | libc::MS_NODEV),
            });
        }
        let tmpfs =
            |target: PathBuf, flags: libc::c_ulong, data: String| -> Result<MountOp, String> {
                dir(&target)?;
                Ok(MountOp::Tmpfs {
                    target: cstring(&target)?,
                    flags,
                    data: CString::new(data).map_err(|e| e.to_string())?,
                })
            };
        ops.push(tmpfs(
            inside(&base, "/tmp"),
            libc::MS_NOSUID | libc::MS_NODEV,
            format!("mode=1777,size={TMP_TMPFS_BYTES}"),
        )?);
        dir(&inside(&base, "/proc"))?;
        ops.push(MountOp::Proc(cstring(&inside(&base, "/proc"))?));

        dir(&inside(&base, "/dev"))?;
        let mut devices: Vec<String> = DEVICES.iter().map(|d| (*d).to_owned()).collect();
        if !spec.gpu_uuids.is_empty() {
            devices.extend(gpu_devices(&spec.workload_id, &spec.gpu_uuids));
        }
        let mut inside_devices = Vec::new();
        for device in &devices {
            let host = Path::new("/dev").join(device);
            if !host.exists() {
                continue;
            }
            let target = inside(&base, &format!("/dev/{device}"));
            file(&target)?;
            ops.push(MountOp::Bind {
                source: cstring(&host)?,
                target: cstring(&target)?,
                read_only_flags: None,
            });
            inside_devices.push(format!("/dev/{device}"));
        }
        for (name, points_to) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
        ] {
            link(Path::new(points_to), &inside(&base, name))?;
        }
        ops.push(tmpfs(
            inside(&base, "/dev/shm"),
            libc::MS_NOSUID | libc::MS_NODEV,
            format!("mode=1777,size={SHM_BYTES}"),
        )?);
        let put_old = inside(&base, "/.oldroot");
        dir(&put_old)?;
        std::fs::set_permissions(&put_old, std::fs::Permissions::from_mode(0o000))
            .map_err(io("set the mode of", &put_old))?;
        let root_flags = crate::sys::locked_mount_flags(&base)
            .map_err(|e| format!("cannot read the mount flags of {}: {e}", base.display()))?;

        let cpu_soft_secs = crate::process::cpu_limit_secs(spec);
        let mut rlimits = vec![
            (libc::RLIMIT_CORE, 0, 0),
            (
                libc::RLIMIT_CPU,
                cpu_soft_secs,
                cpu_soft_secs.saturating_add(crate::process::CPU_LIMIT_HARD_GRACE_SECS),
            ),
            (
                libc::RLIMIT_NPROC,
                u64::from(spec.pids_limit),
                u64::from(spec.pids_limit),
            ),
        ];
        if !has_cgroup {
            let bytes = spec.memory_mib.saturating_mul(1024 * 1024);
            rlimits.push((libc::RLIMIT_AS, bytes, bytes));
        }
        if let Some(bytes) = spec.disk_limit_bytes() {
            // No one file past the disk limit; the driver's disk watchdog counts the total.
            rlimits.push((libc::RLIMIT_FSIZE, bytes, bytes));
        }
        Ok(ChildPlan {
            to_parent: to_parent.as_raw_fd(),
            from_parent: from_parent.as_raw_fd(),
            report: report.as_raw_fd(),
            base: cstring(&base)?,
            root_flags: root_flags | libc::MS_NOSUID | libc::MS_NODEV,
            ops,
            put_old: cstring(&put_old)?,
            put_old_inside: c"/.oldroot".to_owned(),
            workdir: c"/work".to_owned(),
            hostname: CString::new(spec.workload_id.as_str()).map_err(|e| e.to_string())?,
            confinement: Confinement {
                privileged: self.privileged,
                rlimits,
                writable: WRITABLE.to_vec(),
                devices: inside_devices,
                seccomp: self.seccomp.clone(),
            },
        })
    }
}

/// Where the new root's skeleton of a lease lives.
fn skeleton_dir(root_dir: &Path) -> PathBuf {
    root_dir.join("sandbox")
}

/// Removes a lease's skeleton (empty mount points only: the mounts were in the lease's own
/// mount namespace, gone with it).
pub(crate) fn remove_skeleton(root_dir: &Path) {
    let dir = skeleton_dir(root_dir);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "could not remove a sandbox skeleton")
        }
    }
}

/// Device files of the lease's GPUs: the NVIDIA control devices and `nvidia<N>` of each
/// assigned GPU, or every GPU where uuids cannot be mapped to minors (CUDA_VISIBLE_DEVICES
/// still selects then).
fn gpu_devices(workload_id: &str, uuids: &[String]) -> Vec<String> {
    let mut devices: Vec<String> = NVIDIA_CONTROL_DEVICES
        .iter()
        .filter(|d| Path::new("/dev").join(d).exists())
        .map(|d| (*d).to_owned())
        .collect();
    match nvidia_device_minors(uuids) {
        Some(minors) => devices.extend(minors.iter().map(|m| format!("nvidia{m}"))),
        None => {
            tracing::warn!(%workload_id, "cannot map GPU uuids to /dev/nvidia<N>; binding every NVIDIA GPU device (CUDA_VISIBLE_DEVICES still selects)");
            if let Ok(entries) = std::fs::read_dir("/dev") {
                devices.extend(entries.flatten().filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let digits = name.strip_prefix("nvidia")?;
                    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                        .then_some(name)
                }));
            }
        }
    }
    devices
}

static PROBE_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Per-lease uid slots in use in this process (shared by every driver in it). Slots are
/// searched from an offset derived from the process id, so agents on one machine rarely meet.
static SLOTS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
/// Tells apart the cgroups of workloads with the same id in different drivers or agents.
static CGROUP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn chown_tree(dir: &Path, id: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(id), Some(id))?;
    if std::fs::symlink_metadata(dir)?.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), id)?;
        }
    }
    Ok(())
}

/// How the parent maps the lease's ids.
#[derive(Debug, Clone, Copy)]
struct IdMap {
    privileged: bool,
    /// The host id of inside 1000 (privileged only).
    host_id: Option<u32>,
}

impl IdMap {
    /// Privileged: inside 1000 is an unprivileged host id of the lease's own. Unprivileged: a
    /// writer may map only itself (after denying setgroups): inside 1000 is the agent's uid.
    fn write(self, pid: u32) -> std::io::Result<()> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let (uid_map, gid_map) = match (self.privileged, self.host_id) {
            (true, Some(id)) => {
                let map = format!("{INSIDE_ID} {id} 1\n");
                (map.clone(), map)
            }
            _ => {
                std::fs::write(proc.join("setgroups"), "deny")?;
                let (uid, gid) = crate::sys::effective_ids();
                (
                    format!("{INSIDE_ID} {uid} 1\n"),
                    format!("{INSIDE_ID} {gid} 1\n"),
                )
            }
        };
        std::fs::write(proc.join("uid_map"), uid_map)?;
        std::fs::write(proc.join("gid_map"), gid_map)
    }
}

/// The parent's side of the child's setup: answers the shim's pid with uid/gid maps and the
/// init's pid with its cgroup (and takes a pidfd of it: the init waits for the answer, so
/// the pid still names it), and records a failed step. Runs until the child has execed or
/// died; returns the failed step and the parent's own error text, if any, and the init's
/// pidfd.
fn coordinate(
    from_child: std::io::PipeReader,
    to_child: std::io::PipeWriter,
    ids: IdMap,
    cgroup: Option<LeaseCgroup>,
) -> (Option<(u32, String)>, Option<OwnedFd>) {
    let mut from_child = from_child;
    let mut to_child = to_child;
    let mut failed: Option<(u32, String)> = None;
    let mut init = None;
    loop {
        let mut message = [0u8; MSG_BYTES];
        if from_child.read_exact(&mut message).is_err() {
            return (failed, init);
        }
        let value = u32::from_le_bytes([message[1], message[2], message[3], message[4]]);
        let answer = match message[0] {
            MSG_SHIM_PID => ids
                .write(value)
                .map_err(|e| (Step::IdMaps as u32, e.to_string())),
            MSG_WORKLOAD_PID => crate::sys::pidfd_open(value)
                .map(|fd| init = Some(fd))
                .map_err(|e| (Step::Cgroup as u32, format!("cannot take a pidfd: {e}")))
                .and_then(|()| match &cgroup {
                    Some(cgroup) => cgroup
                        .add(value)
                        .map_err(|e| (Step::Cgroup as u32, e.to_string())),
                    None => Ok(()),
                }),
            MSG_FAILED_STEP => {
                if failed.is_none() {
                    failed = Some((value, String::new()));
                }
                continue;
            }
            _ => continue,
        };
        let byte = match answer {
            Ok(()) => ACK_OK,
            Err(error) => {
                failed = Some(error);
                0
            }
        };
        // A child that died cannot read the answer; its end is seen as EOF above.
        let _ = to_child.write_all(&[byte]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_reports_decode_exits_and_signals() {
        let mut bytes = [0u8; REPORT_BYTES];
        bytes[0] = 1;
        bytes[1..5].copy_from_slice(&3i32.to_le_bytes());
        bytes[5..13].copy_from_slice(&1500u64.to_le_bytes());
        bytes[21..29].copy_from_slice(&2048u64.to_le_bytes());
        let report = parse_report(&bytes).expect("valid");
        assert_eq!(report.exit_code, Some(3));
        assert_eq!(report.signal, None);
        assert_eq!(report.cpu_user_ms, 1500);
        assert_eq!(report.max_rss_kib, 2048);
        bytes[0] = 2;
        bytes[1..5].copy_from_slice(&9i32.to_le_bytes());
        let killed = parse_report(&bytes).expect("valid");
        assert_eq!((killed.exit_code, killed.signal), (None, Some(9)));
        assert_eq!(parse_report(&bytes[..10]), None);
        bytes[0] = 7;
        assert_eq!(parse_report(&bytes), None);
    }

    #[test]
    fn seccomp_filters_build_for_this_architecture() {
        let filters = seccomp_filters().expect("filters");
        assert_eq!(filters.len(), 2);
        assert!(filters.iter().all(|f| !f.is_empty()));
    }
}
