//! What the provider machine has: CPU, memory, free disk and GPUs, as the agent will offer them.
//!
//! CPU and memory honour cgroup limits (v2 `cpu.max` / `memory.max`, v1 CFS quota /
//! `memory.limit_in_bytes`) of this process's cgroup and its ancestors, so an agent inside a
//! container offers what the container may use, not what the host has.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gpu::{GpuDevice, GpuSource, discover_gpus};

const MIB_BYTES: u64 = 1024 * 1024;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The machine as discovered by [`discover`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// Usable CPU in thousandths of a core.
    pub cpu_millis: u32,
    pub memory_mib: u64,
    /// Free space for unprivileged users on the filesystem holding `data_dir`.
    pub disk_free_mib: u64,
    pub gpus: Vec<GpuDevice>,
    pub gpu_source: GpuSource,
}

/// Discovers the machine. Blocking (NVML, `nvidia-smi`, `/proc`, `/sys`): call it from
/// `spawn_blocking` in async code. Never fails: what cannot be read is reported as 0 (with a
/// warning in the log), and GPUs that cannot be found are reported as none, with the reason.
pub fn discover(data_dir: &Path) -> MachineInfo {
    let (gpus, gpu_source) = discover_gpus();
    MachineInfo {
        cpu_millis: discover_cpu_millis(),
        memory_mib: discover_memory_mib(),
        disk_free_mib: discover_disk_free_mib(data_dir),
        gpus,
        gpu_source,
    }
}

fn discover_cpu_millis() -> u32 {
    let cores = std::thread::available_parallelism().map_or_else(
        |error| {
            tracing::warn!(%error, "could not read available parallelism");
            0
        },
        |n| u32::try_from(n.get()).unwrap_or(u32::MAX),
    );
    let host_millis = cores.saturating_mul(1000);
    let v2 = cgroup_dirs(CGROUP_ROOT, "")
        .into_iter()
        .filter_map(|dir| read(&dir.join("cpu.max")).and_then(|t| parse_cgroup_v2_cpu_max(&t)));
    let v1 = cgroup_dirs(&format!("{CGROUP_ROOT}/cpu"), "cpu")
        .into_iter()
        .filter_map(|dir| {
            let quota = read(&dir.join("cpu.cfs_quota_us"))?;
            let period = read(&dir.join("cpu.cfs_period_us"))?;
            parse_cgroup_v2_cpu_max(&format!("{} {}", quota.trim(), period.trim()))
        });
    v2.chain(v1).fold(host_millis, u32::min)
}

fn discover_memory_mib() -> u64 {
    let host_bytes = read(Path::new("/proc/meminfo"))
        .and_then(|t| parse_meminfo_total_kib(&t))
        .map_or_else(
            || {
                tracing::warn!("could not read MemTotal from /proc/meminfo");
                0
            },
            |kib| kib.saturating_mul(1024),
        );
    let v2 = cgroup_dirs(CGROUP_ROOT, "").into_iter().filter_map(|dir| {
        read(&dir.join("memory.max")).and_then(|t| parse_cgroup_v2_memory_max(&t))
    });
    let v1 = cgroup_dirs(&format!("{CGROUP_ROOT}/memory"), "memory")
        .into_iter()
        .filter_map(|dir| {
            read(&dir.join("memory.limit_in_bytes")).and_then(|t| parse_cgroup_v2_memory_max(&t))
        });
    v2.chain(v1).fold(host_bytes, u64::min) / MIB_BYTES
}

fn discover_disk_free_mib(data_dir: &Path) -> u64 {
    // The data dir may not exist yet; its nearest existing ancestor is on the same filesystem
    // unless a mount intervenes, which is the best guess available before it is created.
    let Some(existing) = data_dir.ancestors().find(|p| p.exists()) else {
        tracing::warn!(
            ?data_dir,
            "no existing ancestor of the data dir; reporting no free disk"
        );
        return 0;
    };
    match crate::sys::free_bytes(existing) {
        Ok(bytes) => bytes / MIB_BYTES,
        Err(error) => {
            tracing::warn!(?existing, %error, "statvfs failed; reporting no free disk");
            0
        }
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The cgroup directories whose limits apply to this process under `mount`: its own cgroup and
/// every ancestor up to the mount point. `controller` picks the v1 hierarchy line in
/// `/proc/self/cgroup` (`""` for the v2 `0::` line). Directories that do not exist in this mount
/// namespace are skipped, so inside a container this finds the container's own root.
fn cgroup_dirs(mount: &str, controller: &str) -> Vec<PathBuf> {
    let own = read(Path::new("/proc/self/cgroup"))
        .and_then(|t| cgroup_path_for(&t, controller))
        .unwrap_or_default();
    let mount = Path::new(mount);
    let own_dir = mount.join(own.trim_start_matches('/'));
    own_dir
        .ancestors()
        .take_while(|p| p.starts_with(mount))
        .filter(|p| p.is_dir())
        .map(Path::to_path_buf)
        .collect()
}

/// The path of `controller`'s cgroup in `/proc/self/cgroup` text (`""` for cgroup v2).
fn cgroup_path_for(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_owned())
    })
}

/// `MemTotal` from `/proc/meminfo`, in KiB.
pub fn parse_meminfo_total_kib(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A CPU quota in thousandths of a core from cgroup v2 `cpu.max` (`"150000 100000"` → 1500),
/// also used for v1's quota and period. `None` when unlimited (`max`, or a negative v1 quota).
pub fn parse_cgroup_v2_cpu_max(text: &str) -> Option<u32> {
    let mut parts = text.split_whitespace();
    let quota: i64 = parts.next()?.parse().ok()?;
    let period: i64 = parts.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if quota <= 0 || period <= 0 {
        return None;
    }
    let millis = (quota.saturating_mul(1000) / period).max(1);
    Some(u32::try_from(millis).unwrap_or(u32::MAX))
}

/// A memory limit in bytes from cgroup v2 `memory.max` or v1 `memory.limit_in_bytes`; `None` when
/// unlimited (`max`). v1's "unlimited" is a huge number, which the caller's minimum ignores.
pub fn parse_cgroup_v2_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_read_in_kib() {
        let text = "MemTotal:       131891804 kB\nMemFree:         1234 kB\n";
        assert_eq!(parse_meminfo_total_kib(text), Some(131_891_804));
        assert_eq!(parse_meminfo_total_kib("MemFree: 1 kB"), None);
    }

    #[test]
    fn cgroup_cpu_quota_becomes_millicores() {
        assert_eq!(parse_cgroup_v2_cpu_max("150000 100000\n"), Some(1500));
        assert_eq!(parse_cgroup_v2_cpu_max("200000 100000"), Some(2000));
        assert_eq!(parse_cgroup_v2_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cgroup_v2_cpu_max("-1 100000"), None);
        assert_eq!(parse_cgroup_v2_cpu_max("1 100000"), Some(1));
    }

    #[test]
    fn cgroup_memory_limit_is_bytes_or_unlimited() {
        assert_eq!(
            parse_cgroup_v2_memory_max("4294967296\n"),
            Some(4_294_967_296)
        );
        assert_eq!(parse_cgroup_v2_memory_max("max\n"), None);
    }

    #[test]
    fn own_cgroup_path_is_found_for_v1_and_v2() {
        let text = "4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/user.slice/a.scope\n";
        assert_eq!(
            cgroup_path_for(text, "memory").as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(cgroup_path_for(text, "cpu").as_deref(), Some("/x"));
        assert_eq!(
            cgroup_path_for(text, "").as_deref(),
            Some("/user.slice/a.scope")
        );
        assert_eq!(cgroup_path_for(text, "pids"), None);
    }

    #[test]
    fn discover_on_this_machine_finds_cpu_memory_and_disk_but_no_gpu() {
        let dir = tempfile::tempdir().expect("tempdir");
        let info = discover(&dir.path().join("not-yet-created"));
        assert!(info.cpu_millis > 0, "{info:?}");
        assert!(info.memory_mib > 0, "{info:?}");
        assert!(info.disk_free_mib > 0, "{info:?}");
        match &info.gpu_source {
            GpuSource::None { reason } => {
                assert!(info.gpus.is_empty());
                assert!(
                    reason.contains("nvml"),
                    "reason should say what was tried: {reason}"
                );
            }
            GpuSource::Nvml | GpuSource::NvidiaSmi => {
                assert!(!info.gpus.is_empty());
                assert!(
                    info.gpus
                        .iter()
                        .all(|g| !g.uuid.is_empty() && g.memory_mib > 0)
                );
            }
        }
        // Without the NVIDIA driver's control device there can be no GPU, so none may be claimed.
        if !Path::new("/dev/nvidiactl").exists() {
            assert!(
                matches!(info.gpu_source, GpuSource::None { .. }),
                "{info:?}"
            );
        }
    }
}
