//! Freivalds' check against the reference product: every right product passes, every product
//! with a wrong entry (or a wrong row, or the product of another challenge) is refused, and no
//! input makes it panic.

use gpunet_verify::freivalds::FreivaldsError;
use gpunet_verify::{Matrices, check_product, multiply};
use proptest::prelude::*;

fn product(m: &Matrices) -> Vec<i32> {
    multiply(&m.a(), &m.b(), m.n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_right_product_always_passes(
        seed in any::<[u8; 32]>(),
        n in 1usize..=24,
        verifier in any::<[u8; 32]>(),
    ) {
        let m = Matrices::new(seed, n).expect("size");
        prop_assert_eq!(check_product(&m, &product(&m), &verifier), Ok(()));
    }

    /// One wrong entry, by any amount, anywhere: refused for every verifier seed tried. (It
    /// passes only if the round's random entry at its column is 0 in both rounds: 2⁻¹²².)
    #[test]
    fn a_product_with_one_wrong_entry_is_refused(
        seed in any::<[u8; 32]>(),
        n in 1usize..=24,
        at in any::<prop::sample::Index>(),
        delta in any::<i32>().prop_filter("a change", |d| *d != 0),
        verifier in any::<[u8; 32]>(),
    ) {
        let m = Matrices::new(seed, n).expect("size");
        let mut c = product(&m);
        let k = at.index(n * n);
        c[k] = c[k].wrapping_add(delta);
        prop_assume!(c[k] != product(&m)[k]);
        let refused = check_product(&m, &c, &verifier);
        prop_assert!(
            matches!(refused, Err(FreivaldsError::Mismatch { row, .. }) if row == k / n),
            "{:?}", refused
        );
    }

    /// What a device that skipped work might send: a row left zero, or another challenge's
    /// product (a cached answer).
    #[test]
    fn a_skipped_row_or_another_challenges_product_is_refused(
        seed in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        n in 2usize..=16,
        row in any::<prop::sample::Index>(),
        verifier in any::<[u8; 32]>(),
    ) {
        prop_assume!(seed != other);
        let m = Matrices::new(seed, n).expect("size");
        let mut c = product(&m);
        let i = row.index(n);
        let right = c.clone();
        c[i * n..(i + 1) * n].fill(0);
        prop_assume!(c != right);
        prop_assert!(check_product(&m, &c, &verifier).is_err());
        let cached = product(&Matrices::new(other, n).expect("size"));
        prop_assume!(cached != right);
        prop_assert!(check_product(&m, &cached, &verifier).is_err());
    }
}

#[test]
fn a_product_of_the_wrong_size_or_of_extreme_values_is_refused_without_a_panic() {
    let m = Matrices::new([3; 32], 8).expect("size");
    assert_eq!(
        check_product(&m, &[0; 63], &[0; 32]),
        Err(FreivaldsError::WrongSize { n: 8, got: 63 })
    );
    assert!(check_product(&m, &[], &[0; 32]).is_err());
    for v in [i32::MIN, i32::MAX, 0] {
        assert!(matches!(
            check_product(&m, &[v; 64], &[9; 32]),
            Err(FreivaldsError::Mismatch { .. })
        ));
    }
}

#[test]
fn the_largest_entries_a_product_can_hold_are_checked_exactly() {
    // A right product passes; the same with one entry moved by 2³¹ − 1 fails: any difference of
    // two i32 entries is below 2³² in magnitude, so it is never 0 mod p = 2⁶¹ − 1.
    let m = Matrices::new([42; 32], 64).expect("size");
    let c = product(&m);
    assert_eq!(check_product(&m, &c, &[1; 32]), Ok(()));
    let mut off = c.clone();
    off[0] = off[0].wrapping_add(i32::MAX);
    assert!(check_product(&m, &off, &[1; 32]).is_err());
}
