//! The part of the process sandbox that runs in the forked child, between fork and exec.
//!
//! Everything here was planned and allocated by the parent ([`ChildPlan`]); the child only
//! makes system calls (and the Landlock and seccomp crates' calls, which open short paths on the
//! stack and make system calls), because the agent is multi-threaded and a forked child may not
//! take locks another thread held.
//!
//! The sequence, with the parent's part in brackets:
//!
//! 1. **shim** (the process the agent forked, its direct child): `setsid`; `unshare` user,
//!    mount, PID, network, IPC and UTS namespaces; send its pid; [the parent writes
//!    `uid_map`/`gid_map`: the lease's uid 1000 inside is one unprivileged uid outside]; fork the
//!    **init**, PID 1 of the new PID namespace; send its pid. Then it closes every descriptor,
//!    ignores termination signals, waits for the init and exits as it did.
//! 2. **init**: dies with the shim (`PR_SET_PDEATHSIG`); [the parent puts it in the lease's
//!    cgroup]; a cgroup namespace; a private mount tree whose new root is a skeleton of mount
//!    points the parent made, bound on itself: read-only system directories, the lease's own
//!    `/work`, `/outputs` and `/inputs`, a small `/tmp`, a minimal `/dev`, a `/proc` of its own;
//!    `pivot_root` into it, the host's root detached, the new root read-only; loopback up in its
//!    empty network namespace; hostname; drop supplementary groups and the capability bounding
//!    set, become uid/gid 1000, clear every capability; rlimits; Landlock (read-only everywhere
//!    but its own directories); seccomp. Everything it set is inherited by what it forks next.
//! 3. **workload**: the init forks it, and std execs the tenant's program in it. The init stays
//!    PID 1: it reaps orphans until the workload ends, reports the workload's status and rusage,
//!    and exits, and the kernel then kills every other process of the namespace — nothing of
//!    the lease outlives it, `setsid` or not. The workload is not PID 1, so the agent's
//!    `killpg(SIGTERM)` reaches it as it would any process.
//!
//! A failing step sends its [`Step`] code to the parent before returning the error, so the
//! agent can say which step failed.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    Scope, path_beneath_rules,
};

/// Message tags on the child-to-parent pipe (each message: tag, then a u32 LE).
pub(crate) const MSG_SHIM_PID: u8 = 1;
pub(crate) const MSG_WORKLOAD_PID: u8 = 2;
pub(crate) const MSG_FAILED_STEP: u8 = 3;
/// Bytes of one child-to-parent message.
pub(crate) const MSG_BYTES: usize = 5;
/// The acknowledgement the parent sends after each of its steps succeeded.
pub(crate) const ACK_OK: u8 = 1;
/// Bytes of the shim's report: tag (1 exited, 2 killed by a signal), code or signal (i32 LE),
/// user and system CPU ms and max RSS KiB (u64 LE each).
pub(crate) const REPORT_BYTES: usize = 29;
/// Failure codes at or above this name a mount operation: `MOUNT_OP_CODE_BASE + index`.
pub(crate) const MOUNT_OP_CODE_BASE: u32 = 1000;
/// The uid and gid the workload runs as inside its user namespace.
pub(crate) const INSIDE_ID: u32 = 1000;

/// The steps of the child's setup, in order; their codes travel to the parent on failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    Setsid = 1,
    Unshare = 2,
    IdMaps = 3,
    Fork = 4,
    Cgroup = 5,
    CgroupNamespace = 6,
    PrivateMounts = 7,
    RootBind = 8,
    PivotRoot = 10,
    DetachOldRoot = 11,
    ReadOnlyRoot = 12,
    Chdir = 13,
    Loopback = 14,
    Hostname = 15,
    Groups = 16,
    Ids = 17,
    Rlimits = 18,
    Landlock = 19,
    Seccomp = 20,
    DeathSignal = 21,
    Capabilities = 22,
    ForkWorkload = 23,
}

impl Step {
    /// What the step does, for the agent's error message.
    pub(crate) fn describe(code: u32) -> &'static str {
        match code {
            1 => "start a session",
            2 => "create user, mount, PID, network, IPC and UTS namespaces",
            3 => "map the lease's uid and gid",
            4 => "fork the init of the PID namespace",
            5 => "join the lease's cgroup",
            6 => "create a cgroup namespace",
            7 => "make the mount tree private",
            8 => "bind the new root on itself",
            9 => "mount the lease's filesystem view",
            10 => "pivot_root into the new root",
            11 => "detach the host's root",
            12 => "make the new root read-only",
            13 => "enter the work directory",
            14 => "bring up loopback",
            15 => "set the hostname",
            16 => "drop supplementary groups",
            17 => "switch to the lease's uid and gid",
            18 => "set rlimits",
            19 => "apply Landlock rules",
            20 => "apply the seccomp filter",
            21 => "set the parent-death signal",
            22 => "drop every capability",
            23 => "fork the workload from the namespace's init",
            code if code >= MOUNT_OP_CODE_BASE => "mount the lease's filesystem view",
            _ => "an unknown step",
        }
    }
}

/// One mount while building the new root (host paths, as seen before `pivot_root`). The
/// parent made every mount point beforehand: a process of a new user namespace whose uid is
/// not yet mapped cannot create files.
#[derive(Debug)]
pub(crate) enum MountOp {
    /// A bind mount; with `read_only_flags`, remounted read-only with those flags (which must
    /// include the source mount's locked flags, or the kernel refuses the remount).
    Bind {
        source: CString,
        target: CString,
        read_only_flags: Option<libc::c_ulong>,
    },
    Tmpfs {
        target: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    Proc(CString),
    /// An empty read-only tmpfs over a host path that must stay hidden (the agent's data);
    /// skipped where the path is missing or cannot be reached anyway.
    Mask(CString),
}

impl std::fmt::Display for MountOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountOp::Bind {
                source,
                target,
                read_only_flags,
            } => write!(
                f,
                "bind {source:?} on {target:?}{}",
                if read_only_flags.is_some() {
                    " read-only"
                } else {
                    ""
                }
            ),
            MountOp::Tmpfs { target, data, .. } => {
                write!(f, "mount a tmpfs ({data:?}) on {target:?}")
            }
            MountOp::Proc(p) => write!(f, "mount proc on {p:?}"),
            MountOp::Mask(p) => write!(f, "mask {p:?}"),
        }
    }
}

/// Everything the child needs, prepared by the parent.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    /// Write end of the child-to-parent message pipe.
    pub(crate) to_parent: RawFd,
    /// Read end of the parent-to-child acknowledgement pipe.
    pub(crate) from_parent: RawFd,
    /// Write end of the shim's report pipe.
    pub(crate) report: RawFd,
    /// The new root: a skeleton of empty directories and files the parent made (mount points
    /// only), bound on itself and pivoted into.
    pub(crate) base: CString,
    /// Flags for the read-only remount of the new root (the locked flags of its filesystem).
    pub(crate) root_flags: libc::c_ulong,
    pub(crate) ops: Vec<MountOp>,
    /// `base/.oldroot`, and `/.oldroot` as seen after the pivot.
    pub(crate) put_old: CString,
    pub(crate) put_old_inside: CString,
    pub(crate) workdir: CString,
    pub(crate) hostname: CString,
    /// What the init drops to before it forks the workload.
    pub(crate) confinement: Confinement,
}

/// What a process of a sandbox drops to before the tenant's code runs in it (the workload's
/// init, and every command run inside the workload later): see [`confine`].
#[derive(Debug, Clone)]
pub(crate) struct Confinement {
    /// Whether the parent is privileged: it left `setgroups` allowed, so supplementary groups
    /// can and must be dropped.
    pub(crate) privileged: bool,
    pub(crate) rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    /// Directories (inside paths) the workload may write beneath; everything else is
    /// read-only under Landlock.
    pub(crate) writable: Vec<&'static str>,
    /// Device files (inside paths) the workload may read and write.
    pub(crate) devices: Vec<String>,
    pub(crate) seccomp: Vec<seccompiler::BpfProgram>,
}

/// Installs the sandbox's setup as `command`'s pre-exec hook.
pub(crate) fn apply(command: &mut Command, plan: ChildPlan) {
    // SAFETY: the hook runs in the forked child before exec. It makes system calls on memory
    // the plan allocated before the fork, and calls the Landlock and seccomp crates, which open
    // short paths through stack buffers and make system calls; it takes no lock another thread
    // of the parent could have held, and touches no Rust-level global state.
    unsafe {
        command.pre_exec(move || run_child(&plan));
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cvt_long(rc: libc::c_long) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes all of `bytes` to `fd`.
fn write_all(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: the pointer and length describe the live remainder of `bytes`.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        done += n as usize;
    }
    Ok(())
}

fn send(fd: RawFd, tag: u8, value: u32) -> io::Result<()> {
    let v = value.to_le_bytes();
    write_all(fd, &[tag, v[0], v[1], v[2], v[3]])
}

/// Waits for the parent's acknowledgement; anything else (EOF, a refusal) is an error.
fn wait_ack(fd: RawFd) -> io::Result<()> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a live local.
        let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 && byte == ACK_OK {
            return Ok(());
        }
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
}

/// Runs `result`'s step; on failure tells the parent which step failed.
fn step<T>(plan: &ChildPlan, step: Step, result: io::Result<T>) -> io::Result<T> {
    if result.is_err() {
        // The error itself still reaches the parent through std's exec-error pipe.
        let _ = send(plan.to_parent, MSG_FAILED_STEP, step as u32);
    }
    result
}

fn run_child(plan: &ChildPlan) -> io::Result<()> {
    // SAFETY: setsid takes no arguments and changes only this (just forked) process.
    step(plan, Step::Setsid, cvt(unsafe { libc::setsid() }))?;
    let namespaces = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: unshare only changes this process's namespaces; a forked child is single-threaded,
    // as CLONE_NEWUSER requires.
    step(
        plan,
        Step::Unshare,
        cvt(unsafe { libc::unshare(namespaces) }),
    )?;
    // SAFETY: getpid cannot fail.
    let own_pid = unsafe { libc::getpid() } as u32;
    step(
        plan,
        Step::IdMaps,
        send(plan.to_parent, MSG_SHIM_PID, own_pid),
    )?;
    step(plan, Step::IdMaps, wait_ack(plan.from_parent))?;
    // SAFETY: fork in a single-threaded child; both sides only make system calls afterwards.
    let init = step(plan, Step::Fork, cvt(unsafe { libc::fork() }))?;
    if init > 0 {
        shim(plan, init)
    }
    workload(plan)
}

/// The shim: tells the parent the init's pid, then waits for the init and ends as it ended;
/// never returns.
fn shim(plan: &ChildPlan, init: libc::pid_t) -> ! {
    let _ = send(plan.to_parent, MSG_WORKLOAD_PID, init as u32);
    // SAFETY: close_range, signal and setrlimit change only this process; the rlimit is a
    // live local.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        ignore_termination_signals();
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    }
    exit_as(init)
}

/// Waits for `child` and ends this process as it ended (a signal as 128 + its number); 127
/// if it cannot be waited for. Never returns.
fn exit_as(child: libc::pid_t) -> ! {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: an out-pointer to a live local; waits only for our own child.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc == child {
            break;
        }
        if rc == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // SAFETY: _exit ends this process without running anything of the parent's.
        unsafe { libc::_exit(127) }
    }
    // SAFETY: as above.
    unsafe {
        if libc::WIFSIGNALED(status) {
            libc::_exit(128 + libc::WTERMSIG(status))
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

/// Termination signals the shim ignores: the agent's `killpg(SIGTERM)` is meant for the
/// workload; only `SIGKILL` ends the shim.
///
/// # Safety
/// Changes signal dispositions of the calling process; call only in the forked child.
unsafe fn ignore_termination_signals() {
    for signal in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPIPE,
    ] {
        // SAFETY: guaranteed by the caller.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}

/// The init, PID 1 of the lease's PID namespace, once the sandbox is built and it has dropped
/// every privilege: reaps whatever is reparented to it until the workload ends, writes the
/// workload's status and rusage to the report pipe and exits, whereupon the kernel kills every
/// other process of the namespace. Signals from outside do not reach it (the kernel protects a
/// namespace's init from signals it has no handler for), so `killpg(SIGTERM)` reaches the
/// workload, and only `SIGKILL` the init. Never returns.
fn init(plan: &ChildPlan, workload: libc::pid_t) -> ! {
    let report = plan.report;
    // SAFETY: close_range changes only this process's descriptors (std's exec-error pipe
    // among them: the parent's spawn returns once the workload has execed).
    unsafe {
        if report > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (report - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (report + 1) as u32, u32::MAX, 0u32);
    }
    let (status, usage) = loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: out-pointers to live locals; waits only for our own children.
        let rc = unsafe { libc::wait4(-1, &mut status, 0, &mut usage) };
        if rc == workload {
            break (status, usage);
        }
        if rc == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // ECHILD: the workload is gone without being seen; report nothing.
            // SAFETY: _exit ends this process without running anything of the parent's.
            unsafe { libc::_exit(127) }
        }
    };
    let ms = |tv: libc::timeval| {
        (tv.tv_sec.max(0) as u64).saturating_mul(1000) + (tv.tv_usec.max(0) as u64) / 1000
    };
    let (tag, code) = if libc::WIFSIGNALED(status) {
        (2u8, libc::WTERMSIG(status))
    } else {
        (1u8, libc::WEXITSTATUS(status))
    };
    let mut record = [0u8; REPORT_BYTES];
    record[0] = tag;
    record[1..5].copy_from_slice(&code.to_le_bytes());
    record[5..13].copy_from_slice(&ms(usage.ru_utime).to_le_bytes());
    record[13..21].copy_from_slice(&ms(usage.ru_stime).to_le_bytes());
    record[21..29].copy_from_slice(&(usage.ru_maxrss.max(0) as u64).to_le_bytes());
    let _ = write_all(report, &record);
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

fn workload(plan: &ChildPlan) -> io::Result<()> {
    step(plan, Step::DeathSignal, die_with_parent())?;
    step(plan, Step::Cgroup, wait_ack(plan.from_parent))?;
    // SAFETY: as for the first unshare; this process is single-threaded.
    step(
        plan,
        Step::CgroupNamespace,
        cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }),
    )?;
    let root = c"/";
    step(
        plan,
        Step::PrivateMounts,
        mount(None, root, None, libc::MS_REC | libc::MS_PRIVATE, None),
    )?;
    // The skeleton the parent made becomes a mount point of its own, for pivot_root.
    step(
        plan,
        Step::RootBind,
        mount(Some(&plan.base), &plan.base, None, libc::MS_BIND, None),
    )?;
    for (index, op) in plan.ops.iter().enumerate() {
        if let Err(error) = mount_op(op) {
            let _ = send(
                plan.to_parent,
                MSG_FAILED_STEP,
                MOUNT_OP_CODE_BASE + index as u32,
            );
            return Err(error);
        }
    }
    // SAFETY: pivot_root takes two valid NUL-terminated paths.
    step(
        plan,
        Step::PivotRoot,
        cvt_long(unsafe {
            libc::syscall(
                libc::SYS_pivot_root,
                plan.base.as_ptr(),
                plan.put_old.as_ptr(),
            )
        }),
    )?;
    // SAFETY: chdir, umount2 and rmdir take valid NUL-terminated paths.
    step(
        plan,
        Step::DetachOldRoot,
        cvt(unsafe { libc::chdir(root.as_ptr()) }),
    )?;
    step(
        plan,
        Step::DetachOldRoot,
        cvt(unsafe { libc::umount2(plan.put_old_inside.as_ptr(), libc::MNT_DETACH) }),
    )?;
    step(
        plan,
        Step::ReadOnlyRoot,
        mount(
            None,
            root,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | plan.root_flags,
            None,
        ),
    )?;
    // SAFETY: a valid NUL-terminated path.
    step(
        plan,
        Step::Chdir,
        cvt(unsafe { libc::chdir(plan.workdir.as_ptr()) }),
    )?;
    step(plan, Step::Loopback, loopback_up())?;
    let name = plan.hostname.as_bytes();
    // SAFETY: the pointer and length describe the live hostname bytes.
    step(
        plan,
        Step::Hostname,
        cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }),
    )?;
    confine(&plan.confinement, &|failed: Step| {
        // The error itself still reaches the parent through std's exec-error pipe.
        let _ = send(plan.to_parent, MSG_FAILED_STEP, failed as u32);
    })?;
    // SAFETY: fork in a single-threaded process; the init side only makes system calls.
    let workload = step(plan, Step::ForkWorkload, cvt(unsafe { libc::fork() }))?;
    if workload > 0 {
        init(plan, workload)
    }
    Ok(())
}

/// Drops to the lease's uid and gid 1000 with no supplementary group and no capability (the
/// bounding set too), dies with its parent, and applies `c`'s rlimits, Landlock rules and
/// seccomp filter: what the workload's init does before it forks the workload, and a command
/// run inside the workload before it execs. `failed` hears which step failed, before the
/// error is returned.
fn confine(c: &Confinement, failed: &dyn Fn(Step)) -> io::Result<()> {
    let at = |step: Step, result: io::Result<()>| {
        if result.is_err() {
            failed(step);
        }
        result
    };
    if c.privileged {
        // SAFETY: an empty group list; no pointer is read.
        at(
            Step::Groups,
            cvt(unsafe { libc::setgroups(0, std::ptr::null()) }).map(|_| ()),
        )?;
    }
    at(Step::Capabilities, drop_bounding_set())?;
    // SAFETY: setresgid/setresuid take plain ids.
    at(
        Step::Ids,
        cvt(unsafe { libc::setresgid(INSIDE_ID, INSIDE_ID, INSIDE_ID) }).map(|_| ()),
    )?;
    at(
        Step::Ids,
        cvt(unsafe { libc::setresuid(INSIDE_ID, INSIDE_ID, INSIDE_ID) }).map(|_| ()),
    )?;
    // A change of uid or gid clears the parent-death signal: set it again.
    at(Step::DeathSignal, die_with_parent())?;
    at(Step::Capabilities, clear_capabilities())?;
    for &(resource, soft, hard) in &c.rlimits {
        at(Step::Rlimits, super::set_limit(resource, soft, hard))?;
    }
    at(Step::Landlock, landlock(&c.writable, &c.devices))?;
    for program in &c.seccomp {
        at(
            Step::Seccomp,
            seccompiler::apply_filter(program).map_err(|_| io::Error::last_os_error()),
        )?;
    }
    Ok(())
}

/// Asks for `SIGKILL` when the parent ends. The kernel clears it when the effective or
/// filesystem uid or gid changes, so it is set again after every such change.
fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and changes only this process.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) }).map(|_| ())
}

/// Drops every capability from the bounding set, so nothing this process execs can regain one.
fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and changes only this process.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } == -1 {
            let error = io::Error::last_os_error();
            // EINVAL: past the kernel's last capability.
            if error.raw_os_error() != Some(libc::EINVAL) {
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Clears the effective, permitted, inheritable and ambient capability sets.
fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer; capset reads the live header and the
    // two data words version 3 needs.
    unsafe {
        cvt(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ))?;
        cvt_long(libc::syscall(libc::SYS_capset, &header, data.as_ptr()))
    }
}

fn mount(
    source: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    let ptr = |s: Option<&std::ffi::CStr>| s.map_or(std::ptr::null(), std::ffi::CStr::as_ptr);
    // SAFETY: every pointer is null or a valid NUL-terminated string alive for the call.
    cvt(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    })
    .map(|_| ())
}

fn mount_op(op: &MountOp) -> io::Result<()> {
    match op {
        MountOp::Bind {
            source,
            target,
            read_only_flags,
        } => {
            mount(Some(source), target, None, libc::MS_BIND, None)?;
            match read_only_flags {
                Some(flags) => mount(
                    None,
                    target,
                    None,
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags,
                    None,
                ),
                None => Ok(()),
            }
        }
        MountOp::Tmpfs {
            target,
            flags,
            data,
        } => mount(Some(c"tmpfs"), target, Some(c"tmpfs"), *flags, Some(data)),
        MountOp::Proc(target) => mount(
            Some(c"proc"),
            target,
            Some(c"proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        ),
        MountOp::Mask(target) => {
            match mount(
                Some(c"tmpfs"),
                target,
                Some(c"tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
                Some(c"size=4k,mode=0000"),
            ) {
                // Missing, or not reachable by the lease's uid: hidden already.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::EACCES | libc::ENOTDIR)
                    ) =>
                {
                    Ok(())
                }
                other => other,
            }
        }
    }
}

/// Brings up `lo` in the workload's new network namespace (it starts down).
fn loopback_up() -> io::Result<()> {
    // SAFETY: socket makes a new descriptor, closed below.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the live `request`.
    let result = unsafe {
        cvt(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request)).and_then(|_| {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            cvt(libc::ioctl(fd, libc::SIOCSIFFLAGS, &request))
        })
    };
    // SAFETY: closes the descriptor made above.
    unsafe { libc::close(fd) };
    result.map(|_| ())
}

/// Landlock: everything readable and executable, only the lease's directories writable, no
/// signals or abstract sockets outside the sandbox. Best effort: a kernel without Landlock (or
/// with an older ABI) enforces what it can; the namespaces and uid are the main wall.
fn landlock(writable: &[&'static str], devices: &[String]) -> io::Result<()> {
    let abi = ABI::V6;
    let fail = |_| io::Error::from_raw_os_error(libc::EPERM);
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .scope(Scope::from_all(abi))
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(fail)?
        .add_rules(path_beneath_rules(writable, AccessFs::from_all(abi)))
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            devices,
            AccessFs::from_read(abi) | AccessFs::WriteFile | AccessFs::IoctlDev,
        ))
        .map_err(fail)?;
    ruleset.restrict_self().map(|_| ()).map_err(fail)
}

/// Every namespace of a sandbox, which a command run inside it joins.
const SANDBOX_NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP;

/// What a command run inside a running sandbox needs (`exec`, `shell`), prepared by the parent.
#[derive(Debug)]
pub(crate) struct EnterPlan {
    /// A pidfd of the sandbox's init, whose namespaces the command joins. While the init lives
    /// it names that process; once it has ended, joining fails with `ESRCH`.
    pub(crate) init: std::os::fd::OwnedFd,
    /// The lease cgroup's `cgroup.procs` files, open for writing (none without cgroups).
    pub(crate) cgroup_procs: Vec<std::os::fd::OwnedFd>,
    /// Standard input is a terminal the command is to control.
    pub(crate) tty: bool,
    pub(crate) workdir: CString,
    /// The workload's own.
    pub(crate) confinement: Confinement,
}

/// Installs, as `command`'s pre-exec hook, the way into a running sandbox: the command joins
/// the lease's cgroup and every namespace of its init, is forked into its PID namespace, and
/// drops to the workload's uid with its limits, Landlock rules and seccomp filter before it
/// execs. The process the parent spawned stays outside, waits for the command and exits as
/// it did; killing it kills the command (`PR_SET_PDEATHSIG`).
///
/// The command gets a Landlock domain of its own, not the workload's: it may write where the
/// workload may, but neither can signal the other nor reach the other's abstract sockets.
pub(crate) fn apply_enter(command: &mut Command, plan: EnterPlan) {
    // SAFETY: as for `apply`: the hook only makes system calls on memory allocated before the
    // fork, and calls the Landlock and seccomp crates.
    unsafe {
        command.pre_exec(move || enter(&plan));
    }
}

fn enter(plan: &EnterPlan) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    for procs in &plan.cgroup_procs {
        // "0" is the writing process.
        write_all(procs.as_raw_fd(), b"0")?;
    }
    // SAFETY: setns takes a live pidfd and namespace flags; a forked child is single-threaded,
    // as joining a user namespace requires.
    cvt(unsafe { libc::setns(plan.init.as_raw_fd(), SANDBOX_NAMESPACES) })?;
    // Joining a PID namespace takes effect for children only.
    // SAFETY: fork in a single-threaded child; both sides only make system calls afterwards.
    let command = cvt(unsafe { libc::fork() })?;
    if command > 0 {
        relay(command)
    }
    die_with_parent()?;
    // SAFETY: setsid takes no arguments; TIOCSCTTY takes descriptor 0 (the terminal std set up)
    // and a plain flag.
    cvt(unsafe { libc::setsid() })?;
    if plan.tty {
        cvt(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) })?;
    }
    // SAFETY: a valid NUL-terminated path.
    cvt(unsafe { libc::chdir(plan.workdir.as_ptr()) })?;
    confine(&plan.confinement, &|_| {})
}

/// The process the agent spawned, outside the sandbox: closes every descriptor (std's
/// exec-error pipe among them, so the parent's spawn returns once the command has execed),
/// waits for the command and ends as it ended. Never returns.
fn relay(command: libc::pid_t) -> ! {
    // SAFETY: close_range changes only this process's descriptors.
    unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
    exit_as(command)
}
