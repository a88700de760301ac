//! Freivalds' check of a claimed product `C = A·B` in O(n²), exact, modulo the prime p = 2⁶¹ − 1.
//!
//! For a random vector `r` the verifier compares `A·(B·r)` with `C·r`, both mod p. If `C` is
//! right they are equal. If it is wrong, `D = C − A·B` has a row `d ≠ 0` — and since every entry
//! of `C` and of `A·B` lies in the `i32` range, every entry of `D` is below 2³² < p in
//! magnitude, so `d` is not zero mod p either — and `d·r ≡ 0 (mod p)` holds for at most one
//! value of `r_j` out of p for any j with `d_j ≠ 0`, the other entries fixed: a wrong product
//! passes a round with probability at most 1/p ≈ 2⁻⁶¹. With `r` drawn afresh for each of
//! [`ROUNDS`] rounds the bound is p⁻² < 2⁻¹²², well under the 2⁻⁶⁴ the design asks for.
//!
//! `r` comes from the verifier's seed (BLAKE3 in extendable-output mode, rejection-sampled to
//! be uniform mod p), which must be unknown to the prover until it has committed to `C`.

use crate::matrix::{MAX_N, Matrices};

/// The field's modulus: the Mersenne prime 2⁶¹ − 1.
pub const P: u64 = (1 << 61) - 1;

/// Rounds per check: the false-accept bound is p^-ROUNDS < 2^-122.
pub const ROUNDS: usize = 2;

const TAG_R: &str = "gpunet/verify/v1 freivalds r";

/// Why a claimed product is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreivaldsError {
    #[error("the product has {got} entries; an {n} × {n} product has {}", n * n)]
    WrongSize { n: usize, got: usize },
    #[error("the product is wrong: row {row} fails Freivalds' check (round {round})")]
    Mismatch { round: usize, row: usize },
}

/// `x` reduced mod p, for `x < 2¹²²`.
fn reduce(x: u128) -> u64 {
    // 2⁶¹ ≡ 1 (mod p): fold the high bits onto the low ones, twice.
    let folded = (x & u128::from(P)) + (x >> 61);
    let folded = (folded & u128::from(P)) + (folded >> 61);
    let r = folded as u64;
    if r >= P { r - P } else { r }
}

fn mul(a: u64, b: u64) -> u64 {
    reduce(u128::from(a) * u128::from(b))
}

/// An integer (any `i64`) as an element of the field.
fn field(x: i64) -> u64 {
    x.rem_euclid(P as i64) as u64
}

/// The round's random vector: `n` elements uniform mod p.
fn random_vector(verifier_seed: &[u8; 32], round: usize, n: usize) -> Vec<u64> {
    let key = blake3::derive_key(TAG_R, verifier_seed);
    let mut hasher = blake3::Hasher::new_keyed(&key);
    hasher.update(&(round as u64).to_le_bytes());
    let mut reader = hasher.finalize_xof();
    let mut out = Vec::with_capacity(n);
    let mut word = [0u8; 8];
    while out.len() < n {
        reader.fill(&mut word);
        // 61 uniform bits; 2⁶¹ − 1 itself (≡ 0) is rejected so the rest is uniform mod p.
        let x = u64::from_le_bytes(word) >> 3;
        if x < P {
            out.push(x);
        }
    }
    out
}

/// `M·r` mod p for the `n × n` matrix whose rows `row(i, buf)` writes, as `i64`s.
fn times_vector<T: Copy + Into<i64>>(
    n: usize,
    r: &[u64],
    mut row: impl FnMut(usize, &mut [T]),
    buf: &mut [T],
) -> Vec<u64> {
    (0..n)
        .map(|i| {
            row(i, buf);
            // Each product is reduced below 2⁶¹; 64 of them sum below 2⁶⁷, so reducing the sum
            // every 64 terms keeps it far below 2¹²², the most `reduce` takes.
            let mut acc: u128 = 0;
            for (k, (&m, &rk)) in buf.iter().zip(r).enumerate() {
                acc += u128::from(mul(field(m.into()), rk));
                if k % 64 == 63 {
                    acc = u128::from(reduce(acc));
                }
            }
            reduce(acc)
        })
        .collect()
}

/// `B·r` mod p for the challenge's `B`, read column by column (how it is defined):
/// `Σ_j B^j · r_j`, each row's sum reduced every 64 columns.
fn b_times_vector(m: &Matrices, r: &[u64]) -> Vec<u64> {
    let n = m.n;
    let mut acc = vec![0u128; n];
    let mut col = vec![0i8; n];
    for (j, &rj) in r.iter().enumerate() {
        m.b_col(j, &mut col);
        for (a, &x) in acc.iter_mut().zip(&col) {
            *a += u128::from(mul(field(x.into()), rj));
        }
        if j % 64 == 63 {
            for a in &mut acc {
                *a = u128::from(reduce(*a));
            }
        }
    }
    acc.into_iter().map(reduce).collect()
}

/// Checks that `c` (`n²` entries, row-major) is `A·B` for the challenge `m`, with randomness
/// from `verifier_seed`. `Ok` means right except with probability below 2⁻¹²² over the seed.
pub fn check_product(
    m: &Matrices,
    c: &[i32],
    verifier_seed: &[u8; 32],
) -> Result<(), FreivaldsError> {
    let n = m.n;
    debug_assert!(n <= MAX_N);
    if c.len() != n * n {
        return Err(FreivaldsError::WrongSize { n, got: c.len() });
    }
    let mut bytes = vec![0i8; n];
    for round in 0..ROUNDS {
        let r = random_vector(verifier_seed, round, n);
        let br = b_times_vector(m, &r);
        let abr = times_vector(n, &br, |i, out| m.a_row(i, out), &mut bytes);
        let mut c_row = vec![0i32; n];
        let cr = times_vector(
            n,
            &r,
            |i, out: &mut [i32]| out.copy_from_slice(&c[i * n..(i + 1) * n]),
            &mut c_row,
        );
        if let Some(row) = (0..n).find(|&i| abr[i] != cr[i]) {
            return Err(FreivaldsError::Mismatch { round, row });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_arithmetic_is_exact_at_its_edges() {
        assert_eq!(reduce(u128::from(P)), 0);
        assert_eq!(reduce(u128::from(P) + 5), 5);
        let big = u128::from(P - 1) * u128::from(P - 1);
        assert_eq!(u128::from(reduce(big)), big % u128::from(P));
        assert_eq!(mul(P - 1, P - 1), 1, "(−1)² = 1");
        assert_eq!(field(-1), P - 1);
        assert_eq!(field(i64::from(i32::MIN)), P - (1 << 31));
        // A lazy sum of 64 maximal terms stays exact.
        let sum: u128 = (0..64).map(|_| u128::from(P - 1)).sum();
        assert_eq!(u128::from(reduce(sum)), sum % u128::from(P));
    }

    #[test]
    fn the_random_vector_is_the_seeds_and_in_the_field() {
        let a = random_vector(&[1; 32], 0, 1000);
        assert_eq!(a, random_vector(&[1; 32], 0, 1000));
        assert_ne!(
            a,
            random_vector(&[1; 32], 1, 1000),
            "each round draws afresh"
        );
        assert_ne!(a, random_vector(&[2; 32], 0, 1000));
        assert!(a.iter().all(|&x| x < P));
        // 61 random bits: the high half of the field is hit about half the time.
        let high = a.iter().filter(|&&x| x >= 1 << 60).count();
        assert!((400..600).contains(&high), "{high}");
    }
}
