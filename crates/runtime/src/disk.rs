//! The disk watchdog: measures what a workload has written to its writable directories and
//! resolves once that passes the spec's `disk_mib`, so the driver can end it as
//! [`crate::ExitReason::DiskExceeded`].
//!
//! What is counted: the space the filesystem really allocated (`st_blocks × 512`), so a sparse
//! file counts the blocks it uses, not its length; each inode once, by `(dev, ino)`, so hard
//! links to one file do not count twice (and cannot hide it); directories' own blocks too.
//! Symlinks are never followed (their own inode is counted), so a link to `/` costs nothing
//! and reveals nothing. Entries that vanish mid-scan are skipped.
//!
//! Work is bounded: a scan visits at most [`MAX_DISK_SCAN_ENTRIES`] entries; a lease holding
//! more counts as over its limit (a lease that makes millions of tiny files is filling the
//! disk's inodes, not its bytes). Scans run on the blocking pool every [`DISK_SCAN_INTERVAL`], every
//! [`DISK_SCAN_NEAR_LIMIT_INTERVAL`] once the total is past [`DISK_NEAR_LIMIT_PERCENT`] of the limit,
//! and never more often than [`DISK_SCAN_PAUSE_PER_SCAN_TIME`] times the last scan's duration,
//! so a huge tree cannot make the watchdog eat a core.
//!
//! A watchdog is a poll: what a workload writes between two scans is not seen until the next,
//! so a fast writer can overshoot the limit by up to one interval's worth of writes. The
//! process driver adds `RLIMIT_FSIZE` (no single file beyond the limit) and the Docker driver
//! a bounded tmpfs; neither closes the gap for many files.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Most directory entries one scan visits.
pub const MAX_DISK_SCAN_ENTRIES: usize = 250_000;
/// Pause between scans while the total is well under the limit.
pub const DISK_SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Pause between scans once the total is near the limit.
pub const DISK_SCAN_NEAR_LIMIT_INTERVAL: Duration = Duration::from_millis(250);
/// Share of the limit, in percent, from which scans come at the faster pace.
pub const DISK_NEAR_LIMIT_PERCENT: u64 = 80;
/// The pause after a scan is at least this many times as long as the scan took.
pub const DISK_SCAN_PAUSE_PER_SCAN_TIME: u32 = 4;
const BLOCK_BYTES: u64 = 512;

/// What one scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskUsage {
    /// Allocated bytes, each inode counted once.
    pub(crate) allocated_bytes: u64,
    /// Entries visited.
    pub(crate) entries: usize,
    /// The scan stopped at `max_entries`; `allocated_bytes` is a lower bound.
    pub(crate) truncated: bool,
}

/// Sums the allocated bytes under `roots` (which are counted too), visiting at most
/// `max_entries` entries, without following symlinks. A missing root counts nothing.
pub(crate) fn allocated_bytes(roots: &[PathBuf], max_entries: usize) -> DiskUsage {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut usage = DiskUsage {
        allocated_bytes: 0,
        entries: 0,
        truncated: false,
    };
    let mut pending: Vec<PathBuf> = Vec::new();
    let mut count = |meta: &std::fs::Metadata, usage: &mut DiskUsage| {
        if seen.insert((meta.dev(), meta.ino())) {
            usage.allocated_bytes = usage
                .allocated_bytes
                .saturating_add(meta.blocks().saturating_mul(BLOCK_BYTES));
        }
    };
    for root in roots {
        // symlink_metadata: a root that is a symlink is not followed either.
        if let Ok(meta) = std::fs::symlink_metadata(root) {
            count(&meta, &mut usage);
            if meta.is_dir() {
                pending.push(root.clone());
            }
        }
    }
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if usage.entries >= max_entries {
                usage.truncated = true;
                return usage;
            }
            usage.entries += 1;
            // DirEntry::metadata does not follow symlinks.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            count(&meta, &mut usage);
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    usage
}

/// Whether `usage` breaks a limit of `limit_bytes`.
fn over_limit(usage: &DiskUsage, limit_bytes: u64) -> bool {
    usage.truncated || usage.allocated_bytes > limit_bytes
}

/// Resolves with the usage found once the allocated bytes under `roots` pass `limit_bytes`
/// (or the tree has more than [`MAX_DISK_SCAN_ENTRIES`] entries). Never resolves without a limit.
pub(crate) async fn exceeded(roots: Vec<PathBuf>, limit_bytes: Option<u64>) -> DiskUsage {
    exceeded_with(roots, limit_bytes, || 0).await
}

/// As [`exceeded`], with `elsewhere()` bytes (measured by someone else, such as a container
/// engine's count of a writable layer) added to each scan's total.
pub(crate) async fn exceeded_with(
    roots: Vec<PathBuf>,
    limit_bytes: Option<u64>,
    elsewhere: impl Fn() -> u64,
) -> DiskUsage {
    let Some(limit_bytes) = limit_bytes else {
        return std::future::pending().await;
    };
    let roots = std::sync::Arc::new(roots);
    loop {
        let started = Instant::now();
        let scan_roots = std::sync::Arc::clone(&roots);
        let scanned = tokio::task::spawn_blocking(move || {
            allocated_bytes(&scan_roots, MAX_DISK_SCAN_ENTRIES)
        })
        .await;
        let scanned = scanned.map(|mut usage| {
            usage.allocated_bytes = usage.allocated_bytes.saturating_add(elsewhere());
            usage
        });
        let pause = match scanned {
            Ok(usage) if over_limit(&usage, limit_bytes) => return usage,
            Ok(usage) => {
                let near = usage.allocated_bytes.saturating_mul(100)
                    >= limit_bytes.saturating_mul(DISK_NEAR_LIMIT_PERCENT);
                if near {
                    DISK_SCAN_NEAR_LIMIT_INTERVAL
                } else {
                    DISK_SCAN_INTERVAL
                }
            }
            // The blocking pool is shutting down (the runtime is ending); keep the pace.
            Err(_) => DISK_SCAN_INTERVAL,
        };
        let floor = started
            .elapsed()
            .saturating_mul(DISK_SCAN_PAUSE_PER_SCAN_TIME);
        tokio::time::sleep(pause.max(floor)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    const MIB: u64 = 1024 * 1024;

    fn write_file(path: &std::path::Path, bytes: u64) {
        let mut f = std::fs::File::create(path).expect("create");
        f.write_all(&vec![7u8; bytes as usize]).expect("write");
        f.sync_all().expect("sync");
    }

    fn scan(root: &std::path::Path) -> DiskUsage {
        allocated_bytes(&[root.to_path_buf()], MAX_DISK_SCAN_ENTRIES)
    }

    #[test]
    fn written_bytes_are_counted_with_the_directories_that_hold_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = scan(dir.path()).allocated_bytes;
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        write_file(&dir.path().join("a/b/one"), 2 * MIB);
        write_file(&dir.path().join("two"), MIB);
        let usage = scan(dir.path());
        assert!(
            usage.allocated_bytes >= empty + 3 * MIB,
            "{usage:?} from {empty}"
        );
        assert!(usage.allocated_bytes < empty + 4 * MIB, "{usage:?}");
        assert_eq!(usage.entries, 4);
        assert!(!usage.truncated);
    }

    #[test]
    fn hard_links_to_one_file_count_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_file(&dir.path().join("data"), 2 * MIB);
        let once = scan(dir.path()).allocated_bytes;
        for i in 0..10 {
            std::fs::hard_link(
                dir.path().join("data"),
                dir.path().join(format!("link-{i}")),
            )
            .expect("link");
        }
        let linked = scan(dir.path());
        // Ten more directory entries may grow the directory's own blocks, never by a file's worth.
        assert!(linked.allocated_bytes < once + MIB, "{linked:?} vs {once}");
        assert_eq!(linked.entries, 11);
    }

    #[test]
    fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        write_file(&outside.path().join("big"), 8 * MIB);
        let root = dir.path().join("lease");
        std::fs::create_dir(&root).expect("mkdir");
        let before = scan(&root).allocated_bytes;
        std::os::unix::fs::symlink(outside.path(), root.join("to-dir")).expect("symlink");
        std::os::unix::fs::symlink(outside.path().join("big"), root.join("to-file"))
            .expect("symlink");
        std::os::unix::fs::symlink("/", root.join("to-root")).expect("symlink");
        let after = scan(&root);
        assert!(after.allocated_bytes < before + MIB, "{after:?}");
        assert_eq!(after.entries, 3);
        // A root given as a symlink is not followed either.
        let as_link = dir.path().join("root-link");
        std::os::unix::fs::symlink(outside.path(), &as_link).expect("symlink");
        assert!(scan(&as_link).allocated_bytes < MIB);
    }

    #[test]
    fn a_sparse_file_counts_what_it_allocates_not_its_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = std::fs::File::create(dir.path().join("sparse")).expect("create");
        f.seek(SeekFrom::Start(1024 * MIB)).expect("seek");
        f.write_all(b"end").expect("write");
        f.sync_all().expect("sync");
        assert_eq!(
            f.metadata().expect("meta").len(),
            1024 * MIB + 3,
            "a 1 GiB long file"
        );
        assert!(scan(dir.path()).allocated_bytes < MIB);
    }

    #[test]
    fn a_scan_stops_at_its_entry_bound_and_that_counts_as_over_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..20 {
            std::fs::write(dir.path().join(format!("f{i}")), b"x").expect("write");
        }
        let usage = allocated_bytes(&[dir.path().to_path_buf()], 10);
        assert!(usage.truncated);
        assert_eq!(usage.entries, 10);
        assert!(over_limit(&usage, u64::MAX));
        let full = allocated_bytes(&[dir.path().to_path_buf()], 20);
        assert!(!full.truncated);
        assert!(!over_limit(&full, u64::MAX));
    }

    #[tokio::test]
    async fn the_watchdog_resolves_once_the_total_passes_the_limit_and_not_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roots = vec![dir.path().join("work"), dir.path().join("outputs")];
        for root in &roots {
            std::fs::create_dir(root).expect("mkdir");
        }
        write_file(&roots[0].join("a"), MIB);
        let mut watch = std::pin::pin!(exceeded(roots.clone(), Some(3 * MIB)));
        let early = tokio::time::timeout(Duration::from_millis(1500), &mut watch).await;
        assert!(early.is_err(), "resolved under the limit: {early:?}");
        // The total over both roots passes the limit, not either alone.
        write_file(&roots[1].join("b"), 2 * MIB + 512 * 1024);
        let usage = tokio::time::timeout(Duration::from_secs(5), &mut watch)
            .await
            .expect("resolves once over the limit");
        assert!(usage.allocated_bytes > 3 * MIB, "{usage:?}");
    }
}
