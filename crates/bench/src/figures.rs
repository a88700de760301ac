//! Writing and summarising figures.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where a benchmark's figures go unless `--out` says: `~/.gpunet/bench/<name>.json`, one
/// place whatever the current directory (not a `target/` wherever the command happens to run).
pub fn default_out(name: &str) -> PathBuf {
    let base = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    base.join(".gpunet")
        .join("bench")
        .join(format!("{name}.json"))
}

/// Writes `figures` as pretty JSON to `out`, owner-only, creating its directory.
pub fn write(out: &Path, figures: &serde_json::Value) -> Result<()> {
    if let Some(dir) = out.parent() {
        gpunet_files::create_private_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    gpunet_files::write_private(out, &serde_json::to_vec_pretty(figures)?)
        .with_context(|| format!("writing {}", out.display()))
}

/// The value at percentile `p` (0–100) of sorted `v`, nearest rank; 0 for an empty `v`.
pub fn percentile<T: Copy + Default>(v: &[T], p: usize) -> T {
    if v.is_empty() {
        return T::default();
    }
    let rank = (p * v.len()).div_ceil(100).clamp(1, v.len());
    v[rank - 1]
}

/// "debug" or "release": figures from a debug build are not figures.
pub fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), 5);
        assert_eq!(percentile(&v, 90), 9);
        assert_eq!(percentile(&v, 95), 10);
        assert_eq!(percentile(&v, 100), 10);
        assert_eq!(percentile(&v, 0), 1);
        assert_eq!(percentile::<u64>(&[], 50), 0);
    }
}
