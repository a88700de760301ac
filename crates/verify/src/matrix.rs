//! The challenge's matrices, derived from a seed, and the reference product.
//!
//! Entries are uniform `i8`s from BLAKE3 in extendable-output mode, keyed by the seed with a
//! domain tag per matrix, so the prover and every verifier derive the same matrices and no one
//! can choose them. Row `i` of `A` and column `j` of `B` are the output streams from byte
//! offsets `i · n` and `j · n`, so a verifier regenerates any entry of the product,
//! `C[i][j] = A_i · B^j`, from `2n` bytes of its own (see [`Matrices::entry`]).

/// The largest `n` whose products cannot overflow `i32`: each of the `n` terms of an entry is at
/// most 128 · 128 = 2¹⁴ in magnitude, and `n · 2¹⁴ < 2³¹` for `n ≤ 131,071`.
pub const MAX_N: usize = 131_071;

const TAG_A: &str = "gpunet/verify/v1 matrix A";
const TAG_B: &str = "gpunet/verify/v1 matrix B";

/// The two matrices of one challenge: `n × n`, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matrices {
    pub seed: [u8; 32],
    pub n: usize,
}

/// Why a challenge's dimensions are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a challenge is n × n with n from 1 to {MAX_N}; {0} is not")]
pub struct BadSize(pub usize);

impl Matrices {
    pub fn new(seed: [u8; 32], n: usize) -> Result<Matrices, BadSize> {
        if n == 0 || n > MAX_N {
            return Err(BadSize(n));
        }
        Ok(Matrices { seed, n })
    }

    fn stream(&self, tag: &str, row: usize) -> blake3::OutputReader {
        let key = blake3::derive_key(tag, &self.seed);
        let mut reader = blake3::Hasher::new_keyed(&key).finalize_xof();
        // n ≤ MAX_N, so i · n fits a u64 with room to spare.
        reader.set_position((row as u64) * (self.n as u64));
        reader
    }

    fn row_of(&self, tag: &str, row: usize, out: &mut [i8]) {
        let mut bytes = vec![0u8; out.len()];
        self.stream(tag, row).fill(&mut bytes);
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = i8::from_ne_bytes([b]);
        }
    }

    /// Row `i` of `A` (`0 ≤ i < n`) into `out` (`n` long).
    pub fn a_row(&self, i: usize, out: &mut [i8]) {
        self.row_of(TAG_A, i, out);
    }

    /// Column `j` of `B` into `out` (`n` long): `B` is defined column by column.
    pub fn b_col(&self, j: usize, out: &mut [i8]) {
        self.row_of(TAG_B, j, out);
    }

    /// Entry `(i, j)` of the product `C = A·B`, exact: what a verifier checks an opened entry
    /// against, from row `i` of `A` and column `j` of `B` alone (O(n)). `i, j < n`.
    pub fn entry(&self, i: usize, j: usize) -> i32 {
        let (mut a, mut b) = (vec![0i8; self.n], vec![0i8; self.n]);
        self.a_row(i, &mut a);
        self.b_col(j, &mut b);
        // n ≤ MAX_N terms of magnitude ≤ 2¹⁴: the sum fits (see MAX_N).
        a.iter()
            .zip(&b)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum()
    }

    /// All of `A`, row-major.
    pub fn a(&self) -> Vec<i8> {
        let mut m = vec![0i8; self.n * self.n];
        for (i, row) in m.chunks_mut(self.n).enumerate() {
            self.a_row(i, row);
        }
        m
    }

    /// All of `B`, row-major (transposed from its columns).
    pub fn b(&self) -> Vec<i8> {
        let n = self.n;
        let mut m = vec![0i8; n * n];
        let mut col = vec![0i8; n];
        for j in 0..n {
            self.b_col(j, &mut col);
            for (i, &x) in col.iter().enumerate() {
                m[i * n + j] = x;
            }
        }
        m
    }
}

/// `C = A·B` for `n × n` row-major `i8` matrices, accumulated exactly in `i32`: the reference a
/// CPU computes (and the answer a GPU must match). `n` must be at most [`MAX_N`] and the slices
/// `n²` long; anything else is a caller's bug (panics).
pub fn multiply(a: &[i8], b: &[i8], n: usize) -> Vec<i32> {
    assert!(n <= MAX_N && a.len() == n * n && b.len() == n * n);
    let mut c = vec![0i32; n * n];
    multiply_rows(a, b, &mut c, n, &|| true);
    c
}

/// A band of rows of the product: `c_rows = a_rows · B` (`a_rows` and `c_rows` hold the same
/// whole rows, `b` is all of `B` row-major), exact `i32` accumulation, in i-k-j order so the
/// inner loop runs over contiguous rows of `B` and `C` (the compiler vectorises it). Asks
/// `keep_going` before each row and stops when it says no, leaving the rest untouched: a
/// prover's threads each take a band, and stop at a deadline.
pub fn multiply_rows(
    a_rows: &[i8],
    b: &[i8],
    c_rows: &mut [i32],
    n: usize,
    keep_going: &dyn Fn() -> bool,
) {
    for (a_row, c_row) in a_rows.chunks(n).zip(c_rows.chunks_mut(n)) {
        if !keep_going() {
            return;
        }
        for (&aik, b_row) in a_row.iter().zip(b.chunks(n)) {
            let aik = i32::from(aik);
            for (cij, &bkj) in c_row.iter_mut().zip(b_row) {
                *cij += aik * i32::from(bkj);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_are_the_seeds_and_rows_regenerate_alone() {
        let m = Matrices::new([7; 32], 9).expect("size");
        assert_eq!(m.a(), m.a(), "deterministic");
        assert_ne!(m.a(), m.b(), "A and B differ");
        assert_ne!(
            m.a(),
            Matrices::new([8; 32], 9).expect("size").a(),
            "another seed, other matrices"
        );
        let whole_a = m.a();
        let mut row = vec![0i8; 9];
        m.a_row(5, &mut row);
        assert_eq!(row, whole_a[45..54]);
        // B is defined by columns: column 4 is every ninth entry from the fifth.
        let whole_b = m.b();
        m.b_col(4, &mut row);
        let col: Vec<i8> = (0..9).map(|i| whole_b[i * 9 + 4]).collect();
        assert_eq!(row, col);
        // Any entry of the product from one row and one column.
        let c = multiply(&whole_a, &whole_b, 9);
        for (i, j) in [(0, 0), (3, 7), (8, 8)] {
            assert_eq!(m.entry(i, j), c[i * 9 + j]);
        }
        // Entries cover the whole i8 range over a larger matrix.
        let big = Matrices::new([1; 32], 200).expect("size").a();
        assert!(big.contains(&i8::MIN) && big.contains(&i8::MAX));
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        assert_eq!(Matrices::new([0; 32], 0), Err(BadSize(0)));
        assert_eq!(Matrices::new([0; 32], MAX_N + 1), Err(BadSize(MAX_N + 1)));
        assert!(Matrices::new([0; 32], MAX_N).is_ok());
    }

    #[test]
    fn the_reference_product_is_the_textbook_one_at_the_extremes() {
        // All −128: every entry is n · 2¹⁴, the largest magnitude there is.
        let n = 3;
        let a = vec![i8::MIN; n * n];
        let c = multiply(&a, &a, n);
        assert!(c.iter().all(|&x| x == 3 * 16_384));
        let a = [1i8, 2, 3, 4];
        let b = [5i8, 6, 7, 8];
        assert_eq!(multiply(&a, &b, 2), vec![19, 22, 43, 50]);
        // The bound behind MAX_N holds with no room to spare.
        assert!((MAX_N as i64) * 16_384 <= i64::from(i32::MAX));
        assert!(((MAX_N + 1) as i64) * 16_384 > i64::from(i32::MAX));
    }
}
