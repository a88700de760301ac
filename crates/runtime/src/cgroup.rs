//! Per-lease control groups for the process sandbox: memory, process count and CPU limits that
//! the kernel enforces on the whole lease, whatever it forks.
//!
//! Both cgroup versions are supported, found from `/proc/self/mountinfo` and `/proc/self/cgroup`:
//!
//! - **v1** (a hierarchy per controller, as on hosts whose Docker uses cgroupfs v1): a lease gets
//!   `<agent's cgroup>/gpunet/<workload>` in each of the `memory`, `pids` and `cpu` hierarchies.
//!   Limits: `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes` where swap accounting is
//!   on, so swap is no way around it), `pids.max`, `cpu.cfs_quota_us` over a 100 ms period.
//! - **v2** (one unified tree): the agent needs a delegated cgroup (systemd `Delegate=yes`, or
//!   root). Because a cgroup with processes may not hand controllers to its children, the agent
//!   first moves itself into `<its cgroup>/agent`, enables `memory pids cpu` in its cgroup's
//!   `cgroup.subtree_control`, and makes leases `<its cgroup>/gpunet/<workload>` with
//!   `memory.max`, `memory.swap.max = 0`, `pids.max` and `cpu.max`.
//!
//! Where neither can be written (an unprivileged agent without delegation) [`Cgroups::detect`]
//! says why, and the sandbox falls back to rlimits (`RLIMIT_AS`, `RLIMIT_NPROC`, `RLIMIT_CPU`).
//!
//! The parsers are pure functions over file contents and tested on captured text; the rest
//! writes plain files (a cgroup filesystem is files), so it is tested against a directory that
//! stands in for one as well as for real.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the directory under the agent's cgroup that holds one cgroup per lease.
pub(crate) const LEASES_CGROUP_DIR: &str = "gpunet";
/// CFS period used for CPU quotas, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;
/// How long removing an emptied cgroup is retried (the kernel frees it a moment after the last
/// process exits).
const REMOVE_RETRY: Duration = Duration::from_millis(20);
const REMOVE_ATTEMPTS: u32 = 50;

/// Which cgroup version the lease cgroups use, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cgroups {
    /// One directory per controller: the directory lease cgroups are made in.
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: PathBuf,
    },
    /// The directory lease cgroups are made in.
    V2 { leases: PathBuf },
}

/// The limits one lease's cgroup enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CgroupLimits {
    pub(crate) memory_bytes: u64,
    pub(crate) pids_max: u32,
    pub(crate) cpu_millis: u32,
}

/// One lease's cgroup (a directory per v1 controller, or one v2 directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseCgroup {
    dirs: Vec<PathBuf>,
    /// Where the memory controller's files are (to read the OOM-kill count).
    memory_dir: PathBuf,
    v2: bool,
}

/// A mount of a cgroup filesystem, from one line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// The path inside the cgroup hierarchy that is mounted (usually `/`).
    pub(crate) root: String,
    pub(crate) mount_point: PathBuf,
    /// `None` for cgroup2; the controllers of a v1 hierarchy otherwise.
    pub(crate) controllers: Option<Vec<String>>,
}

/// Cgroup mounts in a `/proc/self/mountinfo` text.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let (Some(root), Some(mount_point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let mut rest = after.split(' ');
        let fstype = rest.next().unwrap_or_default();
        let _source = rest.next();
        let options = rest.next().unwrap_or_default();
        let controllers = match fstype {
            "cgroup2" => None,
            "cgroup" => Some(
                options
                    .split(',')
                    .filter(|o| matches!(*o, "memory" | "pids" | "cpu" | "cpuacct" | "cpuset"))
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => continue,
        };
        mounts.push(CgroupMount {
            root: unescape_mountinfo(root),
            mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
            controllers,
        });
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup path per v1 controller, and its v2 path (`0::`), from
/// `/proc/self/cgroup`.
pub(crate) fn parse_proc_cgroup(text: &str) -> (Vec<(String, String)>, Option<String>) {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_owned());
            continue;
        }
        for controller in controllers.split(',') {
            v1.push((controller.to_owned(), path.to_owned()));
        }
    }
    (v1, v2)
}

/// The directory of cgroup `path` under `mount`, or `None` when the mount does not show it.
fn dir_under(mount: &CgroupMount, path: &str) -> Option<PathBuf> {
    let relative = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str())?
    };
    let relative = relative.trim_start_matches('/');
    Some(if relative.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(relative)
    })
}

impl Cgroups {
    /// Finds where lease cgroups can be made on this machine, or says why they cannot.
    pub(crate) fn detect() -> Result<Cgroups, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let cgroups = Self::locate(&parse_mountinfo(&mountinfo), &own)?;
        cgroups.prepare()?;
        Ok(cgroups)
    }

    /// Where lease cgroups go, from the parsed mounts and this process's cgroup membership.
    /// Prefers v1 controllers where all three are mounted, else the unified v2 tree.
    pub(crate) fn locate(mounts: &[CgroupMount], own: &str) -> Result<Cgroups, String> {
        let (v1_paths, v2_path) = parse_proc_cgroup(own);
        let v1_dir = |controller: &str| -> Option<PathBuf> {
            let mount = mounts.iter().find(|m| {
                m.controllers
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c == controller))
            })?;
            let path = v1_paths
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, p)| p.as_str())?;
            Some(dir_under(mount, path)?.join(LEASES_CGROUP_DIR))
        };
        if let (Some(memory), Some(pids), Some(cpu)) =
            (v1_dir("memory"), v1_dir("pids"), v1_dir("cpu"))
        {
            return Ok(Cgroups::V1 { memory, pids, cpu });
        }
        let unified = mounts.iter().find(|m| m.controllers.is_none());
        match (unified, v2_path) {
            (Some(mount), Some(path)) => {
                let own_dir = dir_under(mount, &path)
                    .ok_or("this process's cgroup is outside the mounted cgroup2 tree")?;
                Ok(Cgroups::V2 {
                    leases: own_dir.join(LEASES_CGROUP_DIR),
                })
            }
            _ => Err(
                "no cgroup v1 memory, pids and cpu hierarchies and no cgroup2 tree are mounted"
                    .into(),
            ),
        }
    }

    /// Makes the directory lease cgroups go in, checking it is writable; for v2 also moves
    /// this process out of the way and delegates the controllers (see the module docs).
    fn prepare(&self) -> Result<(), String> {
        let make = |dir: &Path| {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))
        };
        match self {
            Cgroups::V1 { memory, pids, cpu } => {
                for dir in [memory, pids, cpu] {
                    make(dir)?;
                }
                Ok(())
            }
            Cgroups::V2 { leases } => {
                let own = leases
                    .parent()
                    .ok_or("the cgroup2 lease directory has no parent")?;
                let wanted = ["memory", "pids", "cpu"];
                let available =
                    std::fs::read_to_string(own.join("cgroup.controllers")).map_err(|e| {
                        format!(
                            "cannot read {}: {e}",
                            own.join("cgroup.controllers").display()
                        )
                    })?;
                for controller in wanted {
                    if !available.split_whitespace().any(|c| c == controller) {
                        return Err(format!(
                            "the cgroup2 controller {controller} is not delegated to {} (systemd: Delegate=yes)",
                            own.display()
                        ));
                    }
                }
                let subtree =
                    std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap_or_default();
                if !wanted
                    .iter()
                    .all(|c| subtree.split_whitespace().any(|s| s == *c))
                {
                    // Processes in `own` would forbid delegating: move this process to a leaf.
                    let agent = own.join("agent");
                    make(&agent)?;
                    write(&agent.join("cgroup.procs"), &std::process::id().to_string()).map_err(
                        |e| format!("cannot move the agent into {}: {e}", agent.display()),
                    )?;
                    write(&own.join("cgroup.subtree_control"), "+memory +pids +cpu").map_err(
                        |e| format!("cannot enable controllers in {}: {e}", own.display()),
                    )?;
                }
                make(leases)?;
                write(&leases.join("cgroup.subtree_control"), "+memory +pids +cpu")
                    .map_err(|e| format!("cannot enable controllers in {}: {e}", leases.display()))
            }
        }
    }

    /// Creates the cgroup of `workload_id` with `limits`.
    pub(crate) fn create(
        &self,
        workload_id: &str,
        limits: CgroupLimits,
    ) -> io::Result<LeaseCgroup> {
        let memory = limits.memory_bytes.to_string();
        let quota_us = (u64::from(limits.cpu_millis) * CPU_PERIOD_US / 1000).max(1000);
        let cgroup = match self {
            Cgroups::V1 {
                memory: m,
                pids,
                cpu,
            } => {
                let dirs = vec![
                    m.join(workload_id),
                    pids.join(workload_id),
                    cpu.join(workload_id),
                ];
                for dir in &dirs {
                    make_fresh(dir)?;
                }
                write(&dirs[0].join("memory.limit_in_bytes"), &memory)?;
                let memsw = dirs[0].join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &memory)?;
                }
                write(&dirs[1].join("pids.max"), &limits.pids_max.to_string())?;
                write(
                    &dirs[2].join("cpu.cfs_period_us"),
                    &CPU_PERIOD_US.to_string(),
                )?;
                write(&dirs[2].join("cpu.cfs_quota_us"), &quota_us.to_string())?;
                LeaseCgroup {
                    memory_dir: dirs[0].clone(),
                    dirs,
                    v2: false,
                }
            }
            Cgroups::V2 { leases } => {
                let dir = leases.join(workload_id);
                make_fresh(&dir)?;
                write(&dir.join("memory.max"), &memory)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
                write(&dir.join("pids.max"), &limits.pids_max.to_string())?;
                write(&dir.join("cpu.max"), &format!("{quota_us} {CPU_PERIOD_US}"))?;
                LeaseCgroup {
                    memory_dir: dir.clone(),
                    dirs: vec![dir],
                    v2: true,
                }
            }
        };
        Ok(cgroup)
    }

    /// Whether these are v1 hierarchies (for the fingerprint).
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Cgroups::V1 { .. } => "cgroup v1 memory, pids, cpu",
            Cgroups::V2 { .. } => "cgroup v2 memory, pids, cpu",
        }
    }
}

/// Creates `dir`, first removing an empty leftover of an earlier run of the same workload.
fn make_fresh(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_dir(dir)?;
            std::fs::create_dir(dir)
        }
        other => other,
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl LeaseCgroup {
    /// Moves process `pid` (and so everything it forks later) into this cgroup.
    pub(crate) fn add(&self, pid: u32) -> io::Result<()> {
        for procs in self.procs_files() {
            write(&procs, &pid.to_string())?;
        }
        Ok(())
    }

    /// The `cgroup.procs` file of each of its directories: writing a pid (or "0", the writer)
    /// to each moves that process in.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The directory whose `cgroup.freeze` freezes the lease: a v2 cgroup on a kernel with the
    /// freezer (5.2 and later). `None` for v1, whose lease cgroups have no freezer hierarchy.
    pub(crate) fn freezer_dir(&self) -> Option<PathBuf> {
        let dir = self.dirs.first()?;
        (self.v2 && dir.join("cgroup.freeze").is_file()).then(|| dir.clone())
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(self.memory_dir.join(file))
            .map(|text| parse_oom_kills(&text))
            .unwrap_or(0)
    }

    /// Removes the cgroup once its processes are gone, retrying briefly; logs what it could
    /// not remove (an empty cgroup left behind costs a directory, not a limit).
    pub(crate) fn remove(&self) {
        for dir in &self.dirs {
            let mut attempt = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(error) => {
                        attempt += 1;
                        if attempt >= REMOVE_ATTEMPTS {
                            tracing::warn!(dir = %dir.display(), %error, "could not remove a lease cgroup");
                            break;
                        }
                        std::thread::sleep(REMOVE_RETRY);
                    }
                }
            }
        }
    }
}

/// The `oom_kill` count in a v1 `memory.oom_control` or a v2 `memory.events` text.
pub(crate) fn parse_oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
24 30 0:22 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
25 24 0:23 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
27 24 0:25 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
31 24 0:29 / /sys/fs/cgroup/pids rw,relatime shared:16 - cgroup cgroup rw,pids
33 24 0:31 / /sys/fs/cgroup/unified rw,relatime shared:18 - cgroup2 cgroup2 rw
";
    const CGROUP_V1: &str = "\
8:pids:/
4:memory:/process_api/88aa
1:cpu:/
0::/
";

    #[test]
    fn v1_lease_cgroups_go_under_the_agents_own_cgroup_in_each_hierarchy() {
        let mounts = parse_mountinfo(MOUNTINFO_V1);
        assert_eq!(mounts.len(), 4);
        let cgroups = Cgroups::locate(&mounts, CGROUP_V1).expect("v1 found");
        assert_eq!(
            cgroups,
            Cgroups::V1 {
                memory: PathBuf::from("/sys/fs/cgroup/memory/process_api/88aa/gpunet"),
                pids: PathBuf::from("/sys/fs/cgroup/pids/gpunet"),
                cpu: PathBuf::from("/sys/fs/cgroup/cpu/gpunet"),
            }
        );
    }

    #[test]
    fn v2_is_used_when_only_the_unified_tree_is_mounted() {
        let mounts = parse_mountinfo(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        let cgroups =
            Cgroups::locate(&mounts, "0::/system.slice/gpunet.service\n").expect("v2 found");
        assert_eq!(
            cgroups,
            Cgroups::V2 {
                leases: PathBuf::from("/sys/fs/cgroup/system.slice/gpunet.service/gpunet")
            }
        );
    }

    #[test]
    fn a_mount_of_a_subtree_is_resolved_relative_to_its_root() {
        let mounts =
            parse_mountinfo("30 23 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let cgroups = Cgroups::locate(&mounts, "0::/docker/abc/inner\n").expect("v2 found");
        assert_eq!(
            cgroups,
            Cgroups::V2 {
                leases: PathBuf::from("/sys/fs/cgroup/inner/gpunet")
            }
        );
        assert!(Cgroups::locate(&mounts, "0::/elsewhere\n").is_err());
    }

    #[test]
    fn no_cgroup_filesystem_is_an_error_that_says_so() {
        let error = Cgroups::locate(&[], "0::/\n").expect_err("nothing mounted");
        assert!(error.contains("no cgroup"), "{error}");
    }

    #[test]
    fn oom_kill_counts_are_read_from_both_versions() {
        assert_eq!(
            parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            parse_oom_kills("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"),
            1
        );
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n"), 0);
    }

    #[test]
    fn escaped_mount_points_are_unescaped() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn v1_limits_are_written_to_each_controllers_files() {
        let root = tempfile::tempdir().expect("tempdir");
        let cgroups = Cgroups::V1 {
            memory: root.path().join("memory"),
            pids: root.path().join("pids"),
            cpu: root.path().join("cpu"),
        };
        for dir in ["memory", "pids", "cpu"] {
            std::fs::create_dir(root.path().join(dir)).expect("mkdir");
        }
        let lease = cgroups
            .create(
                "lease-7",
                CgroupLimits {
                    memory_bytes: 64 << 20,
                    pids_max: 32,
                    cpu_millis: 1500,
                },
            )
            .expect("created");
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).expect("written");
        assert_eq!(read("memory/lease-7/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("pids/lease-7/pids.max"), "32");
        assert_eq!(read("cpu/lease-7/cpu.cfs_quota_us"), "150000");
        assert_eq!(read("cpu/lease-7/cpu.cfs_period_us"), "100000");
        lease.add(4242).expect("added");
        assert_eq!(read("pids/lease-7/cgroup.procs"), "4242");
    }

    #[test]
    fn v2_limits_go_into_one_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let leases = root.path().join("gpunet");
        std::fs::create_dir(&leases).expect("mkdir");
        let cgroups = Cgroups::V2 { leases };
        cgroups
            .create(
                "lease-8",
                CgroupLimits {
                    memory_bytes: 1 << 30,
                    pids_max: 100,
                    cpu_millis: 500,
                },
            )
            .expect("created");
        let read = |p: &str| {
            std::fs::read_to_string(root.path().join("gpunet/lease-8").join(p)).expect("written")
        };
        assert_eq!(read("memory.max"), "1073741824");
        assert_eq!(read("pids.max"), "100");
        assert_eq!(read("cpu.max"), "50000 100000");
    }
}
