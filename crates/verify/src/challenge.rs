//! A hardware challenge checked from a commitment and a few opened entries, so that neither
//! the product (4n² bytes) crosses the network nor its check (O(n²) or more) runs in a block.
//!
//! The prover computes `C = A·B` for the challenge's [`Matrices`], builds the
//! [`commit::Tree`] over it and publishes the root before its deadline. Randomness it cannot
//! know then (a later block's seed) picks [`samples`]: `k` entries of `C`, uniform and
//! independent. The prover opens the leaf of each; the verifier checks every opening against
//! the root and each sampled entry against [`Matrices::entry`] — exact, O(n) per sample, so a
//! whole check is O(k·n).
//!
//! **The bound.** The root fixes every entry before the samples are known. If a fraction `f`
//! of the committed entries is wrong — in particular, when a device too slow for the
//! deadline left a fraction of the work undone — each sample hits a wrong entry with
//! probability `f`, independently, and the challenge passes with probability at most
//! `(1 − f)^k` (plus BLAKE3's collision bound for a forged opening). With `k = 64`, a prover
//! that did half the work passes with probability at most 2⁻⁶⁴. A correct product always
//! passes. See `docs/adr/0009-hardware-challenges-with-freivalds.md`.

use crate::commit::{self, Digest, LEAF_ENTRIES, Opening};
use crate::matrix::Matrices;

const TAG_SAMPLES: &str = "gpunet/verify/v1 challenge samples";

/// The entries (row-major indices into `C`) to open: `k` of them, uniform over the `n²`
/// entries, from the `seed` drawn after the commitment and the committed `root` itself.
pub fn samples(seed: &[u8; 32], root: &Digest, n: usize, k: usize) -> Vec<u64> {
    let entries = (n as u64) * (n as u64);
    let key = blake3::derive_key(TAG_SAMPLES, seed);
    let mut hasher = blake3::Hasher::new_keyed(&key);
    hasher.update(root);
    let mut reader = hasher.finalize_xof();
    let mut out = Vec::with_capacity(k);
    let mut word = [0u8; 8];
    // Rejection sampling below the largest multiple of `entries`: exactly uniform.
    let limit = u64::MAX - u64::MAX % entries.max(1);
    while out.len() < k && entries > 0 {
        reader.fill(&mut word);
        let x = u64::from_le_bytes(word);
        if x < limit {
            out.push(x % entries);
        }
    }
    out
}

/// The leaves holding `samples`, each once, in ascending order: what the prover must open.
pub fn leaves_to_open(samples: &[u64]) -> Vec<u64> {
    let mut leaves: Vec<u64> = samples.iter().map(|e| e / LEAF_ENTRIES as u64).collect();
    leaves.sort_unstable();
    leaves.dedup();
    leaves
}

/// Why a challenge's answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("leaf {leaf} holds a sampled entry but was not opened")]
    NotOpened { leaf: u64 },
    #[error("the opening of leaf {leaf} does not match the committed root")]
    BadOpening { leaf: u64 },
    #[error("entry ({row}, {col}) of the product is {got}, not {expected}")]
    WrongEntry {
        row: u64,
        col: u64,
        got: i32,
        expected: i32,
    },
}

/// Checks the `openings` of a challenge against its committed `root`: every sampled entry's
/// leaf is opened, matches the root, and holds the right entry. Openings of leaves nobody
/// asked for are ignored. Never panics, whatever the openings hold.
pub fn check_openings(
    m: &Matrices,
    root: &Digest,
    samples: &[u64],
    openings: &[Opening],
) -> Result<(), ChallengeError> {
    let n = m.n as u64;
    let entries = n * n;
    for &sample in samples {
        let leaf = sample / LEAF_ENTRIES as u64;
        let Some(opening) = openings.iter().find(|o| o.leaf == leaf) else {
            return Err(ChallengeError::NotOpened { leaf });
        };
        if sample >= entries || !commit::verify(root, entries, opening) {
            return Err(ChallengeError::BadOpening { leaf });
        }
        let (row, col) = (sample / n, sample % n);
        let got = opening.entries[(sample % LEAF_ENTRIES as u64) as usize];
        // row, col < n ≤ MAX_N: they fit a usize.
        let expected = m.entry(row as usize, col as usize);
        if got != expected {
            return Err(ChallengeError::WrongEntry {
                row,
                col,
                got,
                expected,
            });
        }
    }
    Ok(())
}

/// The challenge size for a claim: the largest `n` (a multiple of 16, at least 16, at most
/// [`crate::MAX_N`]) whose product, `2n³` operations, takes at most `target_ms` at
/// `ops_per_ms` (the claimed hardware's throughput band), and whose matrices and product
/// (`6n²` bytes) fit in `memory_bytes`.
pub fn size_for(ops_per_ms: u64, target_ms: u64, memory_bytes: u64) -> usize {
    let work = u128::from(ops_per_ms) * u128::from(target_ms);
    let fits = |n: u128| 2 * n * n * n <= work && 6 * n * n <= u128::from(memory_bytes);
    let mut n: u128 = 16;
    while n + 16 <= crate::MAX_N as u128 && fits(n + 16) {
        n += 16;
    }
    n as usize
}

/// The milliseconds a claim has to commit to the product of an `n × n` challenge: the
/// product's `2n³` operations at `ops_per_ms`, stretched by `slack_bps` (10,000 = none), plus
/// `allowance_ms` for building the tree and getting a transaction into a block. Saturates.
pub fn deadline_ms(n: usize, ops_per_ms: u64, slack_bps: u64, allowance_ms: u64) -> u64 {
    let n = n as u128;
    let compute = (2 * n * n * n).div_ceil(u128::from(ops_per_ms.max(1)));
    let stretched = compute * u128::from(slack_bps) / 10_000;
    u64::try_from(stretched)
        .unwrap_or(u64::MAX)
        .saturating_add(allowance_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_the_seeds_and_roots_and_cover_the_product() {
        let a = samples(&[1; 32], &[2; 32], 64, 64);
        assert_eq!(a.len(), 64);
        assert_eq!(a, samples(&[1; 32], &[2; 32], 64, 64));
        assert_ne!(a, samples(&[3; 32], &[2; 32], 64, 64), "another seed");
        assert_ne!(a, samples(&[1; 32], &[4; 32], 64, 64), "another root");
        let many = samples(&[5; 32], &[6; 32], 64, 4096);
        assert!(many.iter().all(|&e| e < 64 * 64));
        // Spread over the whole product: every quarter is hit.
        for q in 0..4 {
            let hits = many.iter().filter(|&&e| e / 1024 == q).count();
            assert!((800..1250).contains(&hits), "quarter {q}: {hits}");
        }
        assert_eq!(leaves_to_open(&[0, 15, 16, 3, 40]), vec![0, 1, 2]);
    }

    #[test]
    fn sizes_follow_the_band_and_the_memory_and_deadlines_the_size() {
        // 1e9 ops/ms for 10 s: 2n³ ≤ 1e13 → n ≤ 17,099; memory plenty.
        let n = size_for(1_000_000_000, 10_000, 80 << 30);
        assert_eq!(n % 16, 0);
        assert!(2 * (n as u128).pow(3) <= 10u128.pow(13));
        assert!(2 * (n as u128 + 16).pow(3) > 10u128.pow(13));
        // Memory caps it: 6n² ≤ 6 MiB → n ≤ 1024.
        assert_eq!(size_for(u64::MAX, u64::MAX, 6 << 20), 1024);
        // Never below 16 nor above MAX_N.
        assert_eq!(size_for(1, 1, 1), 16);
        assert!(size_for(u64::MAX, u64::MAX, u64::MAX) <= crate::MAX_N);
        // The deadline: 2·1024³ ops at 2^21 ops/ms is 1,024 ms; ×1.5 plus 500 ms.
        assert_eq!(deadline_ms(1024, 1 << 21, 15_000, 500), 1536 + 500);
        assert_eq!(deadline_ms(crate::MAX_N, 0, u64::MAX, u64::MAX), u64::MAX);
    }
}
