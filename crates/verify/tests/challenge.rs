//! The challenge a chain checks: a commitment to the product and entries sampled after it.
//! A right product always passes; a committed product with a wrong entry fails exactly when a
//! sample lands on it; one with half its entries wrong never passes at k = 64 (the bound is
//! 2⁻⁶⁴); openings of another product, or of nothing sensible, are refused without a panic.

use gpunet_verify::challenge::{ChallengeError, leaves_to_open};
use gpunet_verify::commit::{LEAF_ENTRIES, Opening};
use gpunet_verify::{Matrices, Tree, check_openings, multiply, samples};
use proptest::prelude::*;

const K: usize = 64;

fn product(m: &Matrices) -> Vec<i32> {
    multiply(&m.a(), &m.b(), m.n)
}

/// What an honest prover sends for `c`: the root, then the openings the samples ask for.
fn answer(m: &Matrices, c: Vec<i32>, seed: &[u8; 32]) -> ([u8; 32], Vec<u64>, Vec<Opening>) {
    let tree = Tree::build(c);
    let root = tree.root();
    let picked = samples(seed, &root, m.n, K);
    let openings = leaves_to_open(&picked)
        .into_iter()
        .map(|leaf| tree.open(leaf).expect("a leaf of the tree"))
        .collect();
    (root, picked, openings)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_right_product_always_passes(
        seed in any::<[u8; 32]>(),
        n in 1usize..=24,
        draw in any::<[u8; 32]>(),
    ) {
        let m = Matrices::new(seed, n).expect("size");
        let (root, picked, openings) = answer(&m, product(&m), &draw);
        prop_assert_eq!(check_openings(&m, &root, &picked, &openings), Ok(()));
    }

    /// One wrong entry, committed: refused exactly when a sample lands on it, and then with
    /// the entry named.
    #[test]
    fn a_wrong_entry_is_caught_exactly_when_sampled(
        seed in any::<[u8; 32]>(),
        n in 1usize..=12,
        at in any::<prop::sample::Index>(),
        delta in any::<i32>().prop_filter("a change", |d| *d != 0),
        draw in any::<[u8; 32]>(),
    ) {
        let m = Matrices::new(seed, n).expect("size");
        let mut c = product(&m);
        let k = at.index(n * n);
        c[k] = c[k].wrapping_add(delta);
        let (root, picked, openings) = answer(&m, c, &draw);
        let result = check_openings(&m, &root, &picked, &openings);
        if picked.contains(&(k as u64)) {
            let wrong = matches!(
                result,
                Err(ChallengeError::WrongEntry { row, col, .. })
                    if row == (k / n) as u64 && col == (k % n) as u64
            );
            prop_assert!(wrong, "{:?}", result);
        } else {
            prop_assert_eq!(result, Ok(()));
        }
    }

    /// Openings that are not the committed tree's — another challenge's product, a leaf left
    /// out, or arbitrary bytes — are refused, and nothing panics.
    #[test]
    fn openings_that_are_not_the_commitments_are_refused(
        seed in any::<[u8; 32]>(),
        n in 2usize..=12,
        draw in any::<[u8; 32]>(),
        junk in prop::collection::vec(
            (0u64..64, any::<[i32; LEAF_ENTRIES]>(), prop::collection::vec(any::<Option<[u8; 32]>>(), 0..10)),
            0..8,
        ),
    ) {
        let m = Matrices::new(seed, n).expect("size");
        let (root, picked, openings) = answer(&m, product(&m), &draw);
        // Another challenge's right product, opened at the leaves this one asks for.
        let other = Matrices::new([seed[0].wrapping_add(1); 32], n).expect("size");
        let theirs = Tree::build(product(&other));
        let borrowed: Vec<Opening> = leaves_to_open(&picked)
            .into_iter()
            .map(|l| theirs.open(l).expect("a leaf"))
            .collect();
        let refused = check_openings(&m, &root, &picked, &borrowed);
        prop_assert!(matches!(refused, Err(ChallengeError::BadOpening { .. })), "{:?}", refused);
        // A leaf left out.
        let mut fewer = openings.clone();
        fewer.remove(0);
        prop_assert!(check_openings(&m, &root, &picked, &fewer).is_err());
        // Junk.
        let junk: Vec<Opening> = junk
            .into_iter()
            .map(|(leaf, entries, path)| Opening { leaf, entries, path })
            .collect();
        prop_assert!(check_openings(&m, &root, &picked, &junk).is_err());
    }
}

/// A prover that did half the work — every other entry of the product left zero, or made up —
/// never passes at k = 64: each try passes with probability at most 2⁻⁶⁴.
#[test]
fn a_product_half_undone_never_passes() {
    let m = Matrices::new([42; 32], 32).expect("size");
    let right = product(&m);
    for draw in 0u8..=255 {
        let mut c = right.clone();
        for (i, e) in c.iter_mut().enumerate() {
            if (i * 7 + usize::from(draw)) % 2 == 0 {
                *e = e.wrapping_add(1);
            }
        }
        let (root, picked, openings) = answer(&m, c, &[draw; 32]);
        assert!(
            check_openings(&m, &root, &picked, &openings).is_err(),
            "draw {draw} passed half a product"
        );
    }
}
