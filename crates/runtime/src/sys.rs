//! The only unsafe code in the crate: thin wrappers over the libc calls the standard library
//! does not offer (setsid and setrlimit in the child, statvfs, waitid, wait4, killpg, getsid,
//! pidfd_open and pidfd_send_signal, and a pseudo-terminal's pair and size).
//! Each wrapper returns `std::io::Result` and keeps its `unsafe` block to one call.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

pub(crate) mod sandbox;

/// Resource limits applied in the child between fork and exec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildLimits {
    pub(crate) address_space_bytes: u64,
    pub(crate) cpu_soft_secs: u64,
    pub(crate) cpu_hard_secs: u64,
    /// `RLIMIT_FSIZE`: largest file the workload may write (SIGXFSZ, then EFBIG, beyond it).
    pub(crate) file_size_bytes: Option<u64>,
}

/// Makes the child a session (and process group) leader and applies `limits` and a zero core
/// size before it execs.
pub(crate) fn apply_child_setup(command: &mut Command, limits: ChildLimits) {
    let hook = move || -> io::Result<()> {
        // SAFETY: setsid takes no arguments and only changes the calling (child) process. The
        // child was just forked, so it is not a process group leader and setsid cannot fail
        // with EPERM; any error is reported through errno.
        if unsafe { libc::setsid() } == -1 {
            return Err(io::Error::last_os_error());
        }
        set_limit(
            libc::RLIMIT_AS,
            limits.address_space_bytes,
            limits.address_space_bytes,
        )?;
        set_limit(libc::RLIMIT_CPU, limits.cpu_soft_secs, limits.cpu_hard_secs)?;
        if let Some(bytes) = limits.file_size_bytes {
            set_limit(libc::RLIMIT_FSIZE, bytes, bytes)?;
        }
        set_limit(libc::RLIMIT_CORE, 0, 0)
    };
    // SAFETY: the hook runs in the forked child before exec. It only calls setsid and setrlimit,
    // which are async-signal-safe system calls; it allocates nothing and takes no locks (the
    // io::Error it may build from errno holds no allocation).
    unsafe {
        command.pre_exec(hook);
    }
}

pub(crate) fn set_limit(
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `limit` is a valid, initialised rlimit that outlives the call; setrlimit only reads it.
    if unsafe { libc::setrlimit(resource, &limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes available to unprivileged users on the filesystem holding `path`.
pub(crate) fn free_bytes(path: &Path) -> io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and `stat` a valid out-pointer, both alive
    // for the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

fn to_pid(pid: u32) -> io::Result<libc::pid_t> {
    libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))
}

/// Blocks until child `pid` has exited, leaving it a zombie (WNOWAIT) so its pid, and with it
/// its process group id, cannot be reused before [`reap`].
pub(crate) fn wait_exited(pid: u32) -> io::Result<()> {
    let pid = to_pid(pid)?;
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer alive for the call; waitid with WNOWAIT only
        // reports on our own child and does not reap it.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// How a reaped child ended, and its rusage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reaped {
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) cpu_user_ms: u64,
    pub(crate) cpu_system_ms: u64,
    pub(crate) max_rss_kib: u64,
}

/// Reaps exited child `pid` with wait4, returning its status and resource usage.
pub(crate) fn reap(pid: u32) -> io::Result<Reaped> {
    let pid = to_pid(pid)?;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `usage` are valid out-pointers alive for the call; wait4 on our
        // own child pid touches no other process's state.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            let ms = |tv: libc::timeval| {
                (tv.tv_sec.max(0) as u64).saturating_mul(1000) + (tv.tv_usec.max(0) as u64) / 1000
            };
            return Ok(Reaped {
                exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
                signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
                cpu_user_ms: ms(usage.ru_utime),
                cpu_system_ms: ms(usage.ru_stime),
                max_rss_kib: usage.ru_maxrss.max(0) as u64,
            });
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Sends `signal` to every process in group `pgid`. `Ok(false)` when the group is empty.
pub(crate) fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<bool> {
    let pgid = to_pid(pgid)?;
    // SAFETY: killpg only sends a signal; pgid is positive, so it never means "every process".
    if unsafe { libc::killpg(pgid, signal) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// Whether a process with this pid exists (possibly owned by another user).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = to_pid(pid) else { return false };
    // SAFETY: signal 0 performs only the existence and permission check; nothing is delivered.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The session id of `pid`, if it exists.
pub(crate) fn session_of(pid: u32) -> Option<u32> {
    let pid = to_pid(pid).ok()?;
    // SAFETY: getsid only reads the session id of a process.
    let sid = unsafe { libc::getsid(pid) };
    u32::try_from(sid).ok()
}

/// The mount flags (`MS_*`) that a read-only remount of a bind of `path`'s filesystem must
/// keep: in a user namespace the kernel refuses to clear the flags the source mount has.
pub(crate) fn locked_mount_flags(path: &Path) -> io::Result<libc::c_ulong> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and `stat` a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let pairs = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(pairs
        .iter()
        .filter(|(st, _)| stat.f_flag & *st != 0)
        .fold(0, |flags, (_, ms)| flags | ms))
}

/// This process's effective uid and gid.
pub(crate) fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail and read nothing.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// A pidfd for `pid`: it keeps naming that process even once the pid is reused.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = to_pid(pid)?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_pidfd_open,
            libc::c_long::from(pid),
            0 as libc::c_long,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` to the process `pidfd` names. `Ok(false)` when it has already exited.
pub(crate) fn pidfd_send_signal(
    pidfd: &std::os::fd::OwnedFd,
    signal: libc::c_int,
) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: a live descriptor, a signal number, no siginfo (NULL: as kill(2) would send) and
    // no flags; only sends a signal.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            libc::c_long::from(pidfd.as_raw_fd()),
            libc::c_long::from(signal),
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_long,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// A new pseudo-terminal: its controlling side, and the terminal a command is given (both
/// close-on-exec; std's stdio setup duplicates the terminal onto the command's 0, 1 and 2).
pub(crate) fn open_pty() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let cvt = |rc: libc::c_int| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    // SAFETY: posix_openpt takes flags and returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    let master = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: grantpt and unlockpt take a live descriptor.
    cvt(unsafe { libc::grantpt(master.as_raw_fd()) })?;
    cvt(unsafe { libc::unlockpt(master.as_raw_fd()) })?;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes at most `name.len()` bytes, NUL included, into the live buffer.
    let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated path; open returns a new
    // descriptor or -1.
    let fd = cvt(unsafe {
        libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: as above.
    let terminal = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    Ok((master, terminal))
}

/// Sets a pseudo-terminal's size (the command sees `SIGWINCH`).
pub(crate) fn set_terminal_size(
    master: &std::os::fd::OwnedFd,
    cols: u16,
    rows: u16,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the live `size` through a live descriptor.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
