//! Pausing a process workload in place (for a lease whose escrow ran out): every process of it
//! frozen, its memory and files kept, until it is thawed.
//!
//! Two ways, best first:
//!
//! - **the cgroup v2 freezer**, where the lease has a v2 cgroup: `cgroup.freeze = 1`, then wait
//!   for `cgroup.events` to say `frozen 1`. The cgroup holds the sandbox's init and everything it
//!   forks (not the shim, which only waits), so nothing escapes it, and the workload cannot see
//!   it happen. A frozen process still dies of SIGKILL.
//! - **SIGSTOP / SIGCONT to each process**, found in `/proc`: for a sandboxed workload every
//!   process whose `/proc/<pid>/ns/pid` is the lease's PID namespace (the init included: SIGSTOP
//!   and SIGCONT from an ancestor namespace reach it); unsandboxed, every process of the
//!   workload's process group or session, and the children of those. The scan is repeated until
//!   it finds no process it has not stopped yet, so one forked during a scan is caught by the
//!   next (a stopped process cannot fork). Each process is signalled through a pidfd opened and
//!   then checked to be a member again, so a pid reused meanwhile is never signalled. Unlike the
//!   freezer this is visible to the workload: a parent may see `SIGCHLD` for a stopped or
//!   continued child, and some blocking calls (`epoll_wait`, `sigtimedwait`) return `EINTR`
//!   after a stop and continue.
//!
//! The v1 freezer controller is not used: v1 lease cgroups have no freezer hierarchy, so on v1
//! hosts (and without cgroups) the signals do the work.
//!
//! A SIGTERM sent to a paused workload is held until it is thawed (SIGKILL is not), so the
//! driver thaws after its stop's SIGTERM. The parsers are pure functions tested on captured
//! text; the scans and writes are tested against real processes.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// Longest `pause` waits for every process to be frozen (a process in an uninterruptible
/// system call, a GPU driver's among them, stops only when the call returns).
pub(crate) const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the freezer's state is read while waiting.
const FREEZE_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Most scans of `/proc` one pause or thaw makes. Each scan after the first only finds
/// processes forked before the previous one stopped their parent, bounded by the lease's
/// process limit; reaching this means something keeps escaping, which is reported.
const MAX_SCAN_ROUNDS: u32 = 64;

/// How a workload's processes are frozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Freezer {
    /// The lease's cgroup v2 directory.
    Cgroup(PathBuf),
    /// Every process in the PID namespace whose `ns/pid` link reads like this (`pid:[…]`).
    Namespace(String),
    /// The process group and session led by this pid, and their members' children.
    Group(u32),
}

/// What one process's `/proc/<pid>/stat` says, as far as finding a workload's processes goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) state: char,
    pub(crate) ppid: u32,
    pub(crate) pgrp: u32,
    pub(crate) session: u32,
}

/// Parses a `/proc/<pid>/stat` text; the command name may hold spaces and parentheses, so the
/// fields are read after its last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after_name) = text.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let mut number = || fields.next()?.parse::<u32>().ok();
    Some(Stat {
        state,
        ppid: number()?,
        pgrp: number()?,
        session: number()?,
    })
}

/// Whether a cgroup v2 `cgroup.events` text says the cgroup is frozen.
pub(crate) fn parse_frozen(events: &str) -> bool {
    events.lines().any(|line| line.trim() == "frozen 1")
}

/// The processes of the group and session led by `leader`, and the children of those (a
/// `setsid` child leaves both but keeps its parent), from every process's stat.
pub(crate) fn group_members(processes: &BTreeMap<u32, Stat>, leader: u32) -> BTreeSet<u32> {
    let mut members: BTreeSet<u32> = processes
        .iter()
        .filter(|(_, s)| s.pgrp == leader || s.session == leader)
        .map(|(pid, _)| *pid)
        .collect();
    loop {
        let children: Vec<u32> = processes
            .iter()
            .filter(|(pid, s)| !members.contains(pid) && members.contains(&s.ppid))
            .map(|(pid, _)| *pid)
            .collect();
        if children.is_empty() {
            return members;
        }
        members.extend(children);
    }
}

/// Every pid in `/proc`.
fn all_pids() -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        if let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The `ns/pid` link of `pid` (`pid:[4026532…]`), or `None` when it is gone or unreadable.
fn pid_namespace(pid: u32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// The PID namespace `pid`'s children are born in, when it differs from its own: the lease's
/// namespace, for a sandbox's shim.
pub(crate) fn child_pid_namespace(pid: u32) -> io::Result<Option<String>> {
    let children = std::fs::read_link(format!("/proc/{pid}/ns/pid_for_children"))?;
    let own = std::fs::read_link(format!("/proc/{pid}/ns/pid"))?;
    Ok((children != own).then(|| children.to_string_lossy().into_owned()))
}

impl Freezer {
    /// The processes this freezer signals, now (empty for the cgroup freezer).
    fn members(&self) -> io::Result<BTreeSet<u32>> {
        match self {
            Freezer::Cgroup(_) => Ok(BTreeSet::new()),
            Freezer::Namespace(ns) => Ok(all_pids()?
                .into_iter()
                .filter(|pid| pid_namespace(*pid).as_deref() == Some(ns.as_str()))
                .collect()),
            Freezer::Group(leader) => {
                let stats = all_pids()?
                    .into_iter()
                    .filter_map(|pid| Some((pid, read_stat(pid)?)))
                    .collect();
                Ok(group_members(&stats, *leader))
            }
        }
    }

    /// Whether `pid` is (still) one of this freezer's processes, `members` being the latest
    /// scan's (a child is one by its parent).
    fn is_member(&self, pid: u32, members: &BTreeSet<u32>) -> bool {
        match self {
            Freezer::Cgroup(_) => false,
            Freezer::Namespace(ns) => pid_namespace(pid).as_deref() == Some(ns.as_str()),
            Freezer::Group(leader) => read_stat(pid).is_some_and(|s| {
                s.pgrp == *leader || s.session == *leader || members.contains(&s.ppid)
            }),
        }
    }

    /// Freezes the workload and returns once it is frozen (or has no process left).
    pub(crate) fn freeze(&self) -> io::Result<()> {
        match self {
            Freezer::Cgroup(dir) => {
                match std::fs::write(dir.join("cgroup.freeze"), "1") {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    other => other?,
                }
                wait_until(|| {
                    match std::fs::read_to_string(dir.join("cgroup.events")) {
                        Ok(events) if parse_frozen(&events) => Ok(None),
                        Ok(_) => Ok(Some("the cgroup".to_owned())),
                        // The lease ended and its cgroup went.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                        Err(e) => Err(e),
                    }
                })
            }
            Freezer::Namespace(_) | Freezer::Group(_) => {
                let stopped = self.signal_all(libc::SIGSTOP)?;
                wait_until(|| {
                    let running: Vec<String> = stopped
                        .iter()
                        .filter(|pid| !holds_still(**pid))
                        .map(|pid| {
                            let state = read_stat(*pid).map_or('?', |s| s.state);
                            format!("{pid} ({state})")
                        })
                        .collect();
                    Ok(if running.is_empty() {
                        None
                    } else {
                        Some(running.join(", "))
                    })
                })
            }
        }
    }

    /// Thaws the workload.
    pub(crate) fn thaw(&self) -> io::Result<()> {
        match self {
            Freezer::Cgroup(dir) => match std::fs::write(dir.join("cgroup.freeze"), "0") {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
            Freezer::Namespace(_) | Freezer::Group(_) => self.signal_all(libc::SIGCONT).map(drop),
        }
    }

    /// Sends `signal` to every member, scanning again until a scan finds none not yet
    /// signalled; returns those signalled.
    fn signal_all(&self, signal: libc::c_int) -> io::Result<BTreeSet<u32>> {
        let mut signalled = BTreeSet::new();
        for _ in 0..MAX_SCAN_ROUNDS {
            let members = self.members()?;
            let new: Vec<u32> = members
                .iter()
                .filter(|pid| !signalled.contains(*pid))
                .copied()
                .collect();
            if new.is_empty() {
                return Ok(signalled);
            }
            for pid in new {
                let pidfd = match sys::pidfd_open(pid) {
                    Ok(fd) => fd,
                    // Gone since the scan.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
                    Err(e) => return Err(e),
                };
                // The pidfd pins the process: check it is the member the scan saw, not a
                // newcomer under a reused pid.
                if self.is_member(pid, &members) {
                    sys::pidfd_send_signal(&pidfd, signal)?;
                }
                signalled.insert(pid);
            }
        }
        Err(io::Error::other(format!(
            "processes kept appearing after {MAX_SCAN_ROUNDS} scans"
        )))
    }
}

/// Whether `pid` can run no more of its own code: stopped or ended, or with a SIGSTOP pending
/// (taken before it next returns to user space: a parent waiting in `vfork` for a child that
/// was stopped before its exec stays in the kernel, pending SIGSTOP, until it is continued).
fn holds_still(pid: u32) -> bool {
    match read_stat(pid) {
        None => true,
        Some(s) if matches!(s.state, 'T' | 't' | 'Z' | 'X') => true,
        Some(_) => std::fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|status| parse_stop_pending(&status)),
    }
}

/// Whether a `/proc/<pid>/status` text shows SIGSTOP pending, for the process or a thread.
pub(crate) fn parse_stop_pending(status: &str) -> bool {
    let bit = 1u64 << (libc::SIGSTOP - 1);
    status.lines().any(|line| {
        let Some((name, mask)) = line.split_once(':') else {
            return false;
        };
        matches!(name, "SigPnd" | "ShdPnd")
            && u64::from_str_radix(mask.trim(), 16).is_ok_and(|m| m & bit != 0)
    })
}

/// Polls `left` (what is not frozen yet, if anything) until nothing is, for at most
/// [`FREEZE_TIMEOUT`].
fn wait_until(mut left: impl FnMut() -> io::Result<Option<String>>) -> io::Result<()> {
    let started = Instant::now();
    loop {
        let Some(running) = left()? else {
            return Ok(());
        };
        if started.elapsed() >= FREEZE_TIMEOUT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("not frozen after {} s: {running}", FREEZE_TIMEOUT.as_secs()),
            ));
        }
        std::thread::sleep(FREEZE_POLL_INTERVAL);
    }
}

/// The freezer of a workload adopted after an agent restart, whose main process is `pid`: a
/// sandbox's shim has a PID namespace for its children, whose init may be in one of the lease
/// cgroups under `v2_leases`; anything else is a process group.
pub(crate) fn for_adopted(pid: u32, v2_leases: Option<&Path>) -> Result<Freezer, String> {
    match child_pid_namespace(pid) {
        Ok(None) => Ok(Freezer::Group(pid)),
        Ok(Some(ns)) => {
            let init = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok());
            let cgroup = init
                .zip(v2_leases)
                .and_then(|(init, leases)| lease_cgroup_of(init, leases));
            Ok(cgroup.map_or(Freezer::Namespace(ns), Freezer::Cgroup))
        }
        Err(error) => Err(format!(
            "cannot read the PID namespaces of process {pid}: {error}"
        )),
    }
}

/// The v2 cgroup `pid` is in, if it is a directory under `leases` (the driver's lease
/// cgroups) with a freezer: how a workload adopted after an agent restart is found again.
pub(crate) fn lease_cgroup_of(pid: u32, leases: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let (_, v2) = crate::cgroup::parse_proc_cgroup(&text);
    let name = Path::new(&v2?).file_name()?.to_owned();
    let dir = leases.join(name);
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    let holds = procs.lines().any(|l| l.trim() == pid.to_string());
    (holds && dir.join("cgroup.freeze").is_file()).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(ppid: u32, pgrp: u32, session: u32) -> Stat {
        Stat {
            state: 'S',
            ppid,
            pgrp,
            session,
        }
    }

    #[test]
    fn stat_fields_are_read_after_the_last_parenthesis_of_the_name() {
        let text = "4242 (my (odd) name) T 4200 4100 4000 34816 4242 4194560 101 0 0 0 3 1 0 0 20 0 1 0 987654 2441216 178 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                state: 'T',
                ppid: 4200,
                pgrp: 4100,
                session: 4000
            })
        );
        assert_eq!(parse_stat("12 (sh) S"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_pending_sigstop_is_read_from_the_status_masks() {
        let status = |shd: &str| {
            format!(
                "Name:\tsh\nState:\tD (disk sleep)\nSigPnd:\t0000000000000000\nShdPnd:\t{shd}\nSigBlk:\t0000000000040000\n"
            )
        };
        assert!(parse_stop_pending(&status("0000000000040000")));
        assert!(parse_stop_pending(&status("0000000000050002")));
        // SIGCONT (18) pending, SIGSTOP blocked (it cannot be): not a pending stop.
        assert!(!parse_stop_pending(&status("0000000000020000")));
        assert!(!parse_stop_pending("Name:\tsh\n"));
    }

    #[test]
    fn frozen_is_read_from_cgroup_events() {
        assert!(parse_frozen("populated 1\nfrozen 1\n"));
        assert!(!parse_frozen("populated 1\nfrozen 0\n"));
        assert!(!parse_frozen("populated 0\n"));
    }

    #[test]
    fn group_members_are_the_group_the_session_and_their_children() {
        let processes = BTreeMap::from([
            (1, stat(0, 1, 1)),
            (100, stat(1, 100, 100)),   // the leader
            (101, stat(100, 100, 100)), // its child
            (102, stat(101, 102, 100)), // own group, same session
            (103, stat(102, 103, 103)), // setsid: only its parent ties it
            (104, stat(103, 104, 104)), // and its child
            (200, stat(1, 200, 200)),   // unrelated
        ]);
        assert_eq!(
            group_members(&processes, 100),
            BTreeSet::from([100, 101, 102, 103, 104])
        );
        assert_eq!(group_members(&processes, 999), BTreeSet::new());
    }
}
