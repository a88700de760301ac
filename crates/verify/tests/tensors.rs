//! Tolerant comparison of two runs' tensor files: files that agree within the tolerance pass and
//! report their largest difference; every other difference is named (the tensor, the flat index,
//! the dtypes, the shapes, the tensor names); malformed files from a provider are unreadable,
//! never a panic; and the verdict does not depend on which file is `a`.
//!
//! `.npy` inputs are written with `npyz`'s writer (or by hand, where a file must be malformed),
//! safetensors inputs with `safetensors::serialize`.

use std::collections::BTreeMap;

use gpunet_verify::tensors::{
    Agreement, Disagreement, NPY_TENSOR, Side, TensorFormat, Tolerance, compare, format_of,
};
use half::{bf16, f16};
use npyz::{DType, Order, WriteOptions, WriterBuilder};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

const NPY: TensorFormat = TensorFormat::Npy;
const ST: TensorFormat = TensorFormat::Safetensors;
const TOL: Tolerance = Tolerance::NUMPY;

// ---------------------------------------------------------------------------------------------
// Building files.

/// A `.npy` file of `descr` (`"<f4"`, `">i8"`, …) and `shape`, `data` in storage order.
fn npy_in<T: npyz::Serialize + Copy>(
    descr: &str,
    shape: &[u64],
    order: Order,
    data: &[T],
) -> Vec<u8> {
    let mut out = Vec::new();
    let dtype = DType::Plain(descr.parse().expect("a valid descr"));
    let mut writer = WriteOptions::new()
        .dtype(dtype)
        .shape(shape)
        .order(order)
        .writer(&mut out)
        .begin_nd()
        .expect("writer");
    writer.extend(data.iter().copied()).expect("write");
    writer.finish().expect("finish");
    out
}

fn npy<T: npyz::Serialize + Copy>(descr: &str, shape: &[u64], data: &[T]) -> Vec<u8> {
    npy_in(descr, shape, Order::C, data)
}

/// A version 1.0 `.npy` file with the header text as given (a newline is added) and `data`.
fn npy_raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut text = header.as_bytes().to_vec();
    text.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(
        &u16::try_from(text.len())
            .expect("short header")
            .to_le_bytes(),
    );
    out.extend_from_slice(&text);
    out.extend_from_slice(data);
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A safetensors file of `(name, dtype, shape, little-endian data)`.
fn st(tensors: &[(&str, Dtype, &[usize], &[u8])]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|&(name, dtype, shape, data)| {
            let view = TensorView::new(dtype, shape.to_vec(), data).expect("consistent view");
            (name.to_owned(), view)
        })
        .collect();
    safetensors::serialize(views, None).expect("serializes")
}

/// A safetensors file with the header JSON as given.
fn st_raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn agreed(elements: u64, max_abs_diff: f64) -> Result<Agreement, Disagreement> {
    Ok(Agreement {
        elements,
        max_abs_diff,
    })
}

fn not_close(tensor: &str, index: u64, a: f64, b: f64) -> Result<Agreement, Disagreement> {
    Err(Disagreement::NotClose {
        tensor: tensor.to_owned(),
        index,
        a,
        b,
    })
}

/// The side named by an `Unreadable`, or a failure naming what came instead.
fn unreadable_side(result: Result<Agreement, Disagreement>) -> Result<Side, String> {
    match result {
        Err(Disagreement::Unreadable { which, .. }) => Ok(which),
        other => Err(format!("expected unreadable, got {other:?}")),
    }
}

/// The side named by an `Unsupported`, and the dtype it quotes.
fn unsupported(result: Result<Agreement, Disagreement>) -> (Side, String) {
    match result {
        Err(Disagreement::Unsupported { which, dtype }) => (which, dtype),
        other => panic!("expected unsupported, got {other:?}"),
    }
}

/// The kind of a verdict, for comparing verdicts with the files swapped.
fn kind(result: &Result<Agreement, Disagreement>) -> &'static str {
    match result {
        Ok(_) => "agree",
        Err(Disagreement::Unreadable { .. }) => "unreadable",
        Err(Disagreement::Unsupported { .. }) => "unsupported",
        Err(Disagreement::TensorsDiffer { .. }) => "tensors differ",
        Err(Disagreement::DtypeDiffers { .. }) => "dtype differs",
        Err(Disagreement::ShapeDiffers { .. }) => "shape differs",
        Err(Disagreement::NotClose { .. }) => "not close",
    }
}

// ---------------------------------------------------------------------------------------------
// Agreement.

#[test]
fn identical_npy_files_agree_exactly() {
    let a = npy("<f4", &[2, 3], &[1.0f32, -2.5, 3.0, 1e-30, 0.0, 7.0]);
    assert_eq!(compare(NPY, &a, &a, TOL), agreed(6, 0.0));
    let ints = npy("<i8", &[3], &[i64::MIN, 0, i64::MAX]);
    assert_eq!(compare(NPY, &ints, &ints, TOL), agreed(3, 0.0));
}

#[test]
fn identical_safetensors_files_agree_exactly_across_every_compared_dtype() {
    let halves: Vec<u8> = [1.5f32, -0.25]
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect();
    let brains: Vec<u8> = [1.5f32, -0.25]
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect();
    let f32s = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let f64s = f64_bytes(&[1.0, 2.0]);
    let i64s: Vec<u8> = [-1i64, 5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let file = st(&[
        ("bools", Dtype::BOOL, &[3], &[1, 0, 1]),
        ("bytes", Dtype::U8, &[2], &[0, 255]),
        ("halves", Dtype::F16, &[2], &halves),
        ("brains", Dtype::BF16, &[2], &brains),
        ("f32s", Dtype::F32, &[2, 2], &f32s),
        ("f64s", Dtype::F64, &[2], &f64s),
        ("i64s", Dtype::I64, &[2], &i64s),
    ]);
    assert_eq!(compare(ST, &file, &file, TOL), agreed(17, 0.0));
}

#[test]
fn noise_within_the_tolerance_agrees_and_reports_the_largest_difference() {
    let a = [1.0f64, 100.0, -3.0, 0.0];
    // Each within atol + rtol·max(|a|, |b|) under numpy's defaults (1e-8 + 1e-5·|x|).
    let b = [1.0 + 5e-6, 100.0 + 5e-4, -3.0 - 1e-5, 5e-9];
    let largest = (b[1] - a[1]).abs();
    let (fa, fb) = (npy("<f8", &[4], &a), npy("<f8", &[4], &b));
    assert_eq!(compare(NPY, &fa, &fb, TOL), agreed(4, largest));
    assert_eq!(compare(NPY, &fb, &fa, TOL), agreed(4, largest));

    let (sa, sb) = (f64_bytes(&a), f64_bytes(&b));
    let (sa, sb) = (
        st(&[("out", Dtype::F64, &[2, 2], &sa)]),
        st(&[("out", Dtype::F64, &[2, 2], &sb)]),
    );
    assert_eq!(compare(ST, &sa, &sb, TOL), agreed(4, largest));
}

#[test]
fn just_outside_the_tolerance_is_not_close_at_the_right_index() {
    let tol = Tolerance {
        rtol: 1e-3,
        atol: 1e-6,
    };
    let a = [1.0f64, 2.0, 3.0, 4.0];
    let mut b = a;
    // 1% beyond what the tolerance allows at 3.0, and again later (the first one is reported).
    b[2] = 3.0 + (1e-6 + 1e-3 * 3.0) * 1.01;
    b[3] = 5.0;
    let (fa, fb) = (npy("<f8", &[4], &a), npy("<f8", &[4], &b));
    assert_eq!(
        compare(NPY, &fa, &fb, tol),
        not_close(NPY_TENSOR, 2, 3.0, b[2])
    );
    assert_eq!(
        compare(NPY, &fb, &fa, tol),
        not_close(NPY_TENSOR, 2, b[2], 3.0)
    );

    // And 1% inside it agrees.
    b[2] = 3.0 + (1e-6 + 1e-3 * 3.0) * 0.99;
    b[3] = 4.0;
    let fb = npy("<f8", &[4], &b);
    assert!(compare(NPY, &fa, &fb, tol).is_ok());
}

#[test]
fn the_tolerance_scales_with_the_larger_magnitude_so_order_does_not_matter() {
    // |a − b| = 1, max(|a|, |b|) = 100, rtol·100 = 1: agrees both ways (numpy's asymmetric
    // isclose would agree one way only, scaling by |b| = 99 when b is the smaller).
    let tol = Tolerance {
        rtol: 0.01,
        atol: 0.0,
    };
    let (a, b) = (npy("<f8", &[1], &[100.0f64]), npy("<f8", &[1], &[99.0f64]));
    assert_eq!(compare(NPY, &a, &b, tol), agreed(1, 1.0));
    assert_eq!(compare(NPY, &b, &a, tol), agreed(1, 1.0));
}

#[test]
fn the_reported_index_is_row_major_in_several_dimensions() {
    let a = npy("<f4", &[2, 3], &[0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let b = npy("<f4", &[2, 3], &[0.0f32, 1.0, 2.0, 30.0, 4.0, 5.0]);
    assert_eq!(
        compare(NPY, &a, &b, TOL),
        not_close(NPY_TENSOR, 3, 3.0, 30.0)
    );
}

#[test]
fn a_fortran_order_file_agrees_with_its_c_order_twin() {
    // The logical array [[0, 1, 2], [3, 4, 5]], stored column by column.
    let c = npy("<f4", &[2, 3], &[0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let f = npy_in(
        "<f4",
        &[2, 3],
        Order::Fortran,
        &[0.0f32, 3.0, 1.0, 4.0, 2.0, 5.0],
    );
    assert_eq!(compare(NPY, &c, &f, TOL), agreed(6, 0.0));
    assert_eq!(compare(NPY, &f, &c, TOL), agreed(6, 0.0));
    assert_eq!(compare(NPY, &f, &f, TOL), agreed(6, 0.0));

    // Logical [1][0] changed (storage position 1 in Fortran order): reported at C index 3.
    let f_wrong = npy_in(
        "<f4",
        &[2, 3],
        Order::Fortran,
        &[0.0f32, 9.0, 1.0, 4.0, 2.0, 5.0],
    );
    assert_eq!(
        compare(NPY, &c, &f_wrong, TOL),
        not_close(NPY_TENSOR, 3, 3.0, 9.0)
    );
    assert_eq!(
        compare(NPY, &f, &f_wrong, TOL),
        not_close(NPY_TENSOR, 3, 3.0, 9.0)
    );
    // Two changes, logical [0][2] (Fortran position 4) and [1][0] (position 1): the first in
    // C order is reported, not the first in storage order.
    let f_two = npy_in(
        "<f4",
        &[2, 3],
        Order::Fortran,
        &[0.0f32, 9.0, 1.0, 4.0, 8.0, 5.0],
    );
    assert_eq!(
        compare(NPY, &f, &f_two, TOL),
        not_close(NPY_TENSOR, 2, 2.0, 8.0)
    );

    // Three dimensions, every element distinct: equal only if the strides are right.
    let shape = [2u64, 3, 4];
    let logical: Vec<f64> = (0..24).map(f64::from).collect();
    let mut fortran = vec![0.0f64; 24];
    for (i, &v) in logical.iter().enumerate() {
        let (x, y, z) = (i / 12, (i / 4) % 3, i % 4);
        fortran[x + 2 * y + 6 * z] = v;
    }
    let c3 = npy("<f8", &shape, &logical);
    let f3 = npy_in("<f8", &shape, Order::Fortran, &fortran);
    assert_eq!(compare(NPY, &c3, &f3, TOL), agreed(24, 0.0));
}

#[test]
fn big_endian_npy_agrees_with_little_endian_npy_of_the_same_values() {
    let values = [1.0f32, -2.5, 3.25e10, f32::MIN_POSITIVE];
    let (le, be) = (npy("<f4", &[4], &values), npy(">f4", &[4], &values));
    assert_ne!(le, be, "the byte orders really differ");
    assert_eq!(compare(NPY, &le, &be, TOL), agreed(4, 0.0));

    let ints = [i64::MIN, -1, 1 << 40];
    assert_eq!(
        compare(NPY, &npy("<i8", &[3], &ints), &npy(">i8", &[3], &ints), TOL),
        agreed(3, 0.0)
    );
    let halves = [f16::from_f32(0.5), f16::from_f32(-65504.0)];
    assert_eq!(
        compare(
            NPY,
            &npy("<f2", &[2], &halves),
            &npy(">f2", &[2], &halves),
            TOL
        ),
        agreed(2, 0.0)
    );

    // A real difference in a big-endian file is decoded, not byte-compared.
    let other = npy(">f4", &[4], &[1.0f32, -2.5, 3.25e10, 2.0]);
    assert_eq!(
        compare(NPY, &le, &other, TOL),
        not_close(NPY_TENSOR, 3, f64::from(f32::MIN_POSITIVE), 2.0)
    );
}

#[test]
fn half_precision_floats_are_compared_with_the_tolerance() {
    // bf16 has 8 bits of mantissa: the next value after 1.0 is 1.0078125.
    let one: Vec<u8> = bf16::from_f32(1.0).to_le_bytes().to_vec();
    let next: Vec<u8> = bf16::from_f32(1.0078125).to_le_bytes().to_vec();
    let (a, b) = (
        st(&[("x", Dtype::BF16, &[1], &one)]),
        st(&[("x", Dtype::BF16, &[1], &next)]),
    );
    let loose = Tolerance {
        rtol: 1e-2,
        atol: 0.0,
    };
    assert_eq!(compare(ST, &a, &b, loose), agreed(1, 0.0078125));
    assert_eq!(compare(ST, &a, &b, TOL), not_close("x", 0, 1.0, 1.0078125));

    let a = npy("<f2", &[1], &[f16::from_f32(1.0)]);
    let b = npy("<f2", &[1], &[f16::from_f32(1.0 + 1.0 / 1024.0)]);
    assert_eq!(compare(NPY, &a, &b, loose), agreed(1, 1.0 / 1024.0));
}

#[test]
fn nan_agrees_only_with_nan_in_the_same_place() {
    let nan = npy("<f8", &[2], &[f64::NAN, 1.0]);
    assert_eq!(compare(NPY, &nan, &nan, TOL), agreed(2, 0.0));
    // A NaN with another payload or sign is still a NaN.
    let other_nan = npy("<f8", &[2], &[-f64::from_bits(0x7ff8_0000_0000_0001), 1.0]);
    assert_eq!(compare(NPY, &nan, &other_nan, TOL), agreed(2, 0.0));

    let number = npy("<f8", &[2], &[1.0f64, 1.0]);
    let generous = Tolerance {
        rtol: 1e300,
        atol: 1e300,
    };
    match compare(NPY, &nan, &number, generous) {
        Err(Disagreement::NotClose {
            index: 0,
            a,
            b: 1.0,
            ..
        }) if a.is_nan() => {}
        other => panic!("NaN against a number: {other:?}"),
    }
    match compare(NPY, &number, &nan, generous) {
        Err(Disagreement::NotClose {
            index: 0,
            a: 1.0,
            b,
            ..
        }) if b.is_nan() => {}
        other => panic!("a number against NaN: {other:?}"),
    }
    let moved = npy("<f8", &[2], &[1.0f64, f64::NAN]);
    assert_eq!(kind(&compare(NPY, &nan, &moved, generous)), "not close");
}

#[test]
fn an_infinity_agrees_only_with_the_same_infinity() {
    let generous = Tolerance {
        rtol: 1e300,
        atol: 1e300,
    };
    let inf = npy("<f4", &[1], &[f32::INFINITY]);
    let neg = npy("<f4", &[1], &[f32::NEG_INFINITY]);
    let max = npy("<f4", &[1], &[f32::MAX]);
    assert_eq!(compare(NPY, &inf, &inf, TOL), agreed(1, 0.0));
    assert_eq!(compare(NPY, &neg, &neg, TOL), agreed(1, 0.0));
    assert_eq!(
        compare(NPY, &inf, &neg, generous),
        not_close(NPY_TENSOR, 0, f64::INFINITY, f64::NEG_INFINITY)
    );
    assert_eq!(
        compare(NPY, &max, &inf, generous),
        not_close(NPY_TENSOR, 0, f64::from(f32::MAX), f64::INFINITY)
    );
}

#[test]
fn integers_and_bools_must_be_exactly_equal_whatever_the_tolerance() {
    let generous = Tolerance {
        rtol: 1.0,
        atol: 1e9,
    };
    let a = npy("<i4", &[2], &[1i32, 2]);
    let b = npy("<i4", &[2], &[1i32, 3]);
    assert_eq!(
        compare(NPY, &a, &b, generous),
        not_close(NPY_TENSOR, 1, 2.0, 3.0)
    );
    assert_eq!(compare(NPY, &a, &a, generous), agreed(2, 0.0));

    // Beyond 2^53, where an f64 could not tell them apart.
    let big = npy("<u8", &[1], &[1u64 << 60]);
    let big_plus_one = npy("<u8", &[1], &[(1u64 << 60) + 1]);
    assert_eq!(
        kind(&compare(NPY, &big, &big_plus_one, generous)),
        "not close"
    );

    let t = npy("|b1", &[2], &[true, false]);
    let u = npy("|b1", &[2], &[true, true]);
    assert_eq!(
        compare(NPY, &t, &u, generous),
        not_close(NPY_TENSOR, 1, 0.0, 1.0)
    );

    let (x, y) = (
        st(&[("mask", Dtype::BOOL, &[2], &[1, 0])]),
        st(&[("mask", Dtype::BOOL, &[2], &[1, 1])]),
    );
    assert_eq!(
        compare(ST, &x, &y, generous),
        not_close("mask", 1, 0.0, 1.0)
    );
    let (x, y) = (
        st(&[("ids", Dtype::I8, &[1], &[0x80])]),
        st(&[("ids", Dtype::I8, &[1], &[0x7f])]),
    );
    assert_eq!(
        compare(ST, &x, &y, generous),
        not_close("ids", 0, -128.0, 127.0)
    );
}

#[test]
fn zero_element_tensors_agree_with_each_other() {
    let empty: [f32; 0] = [];
    let a = npy("<f4", &[0, 3], &empty);
    assert_eq!(compare(NPY, &a, &a, TOL), agreed(0, 0.0));
    // But the shape must still match.
    let b = npy("<f4", &[3, 0], &empty);
    assert_eq!(kind(&compare(NPY, &a, &b, TOL)), "shape differs");

    let s = st(&[
        ("none", Dtype::F32, &[0], &[]),
        ("also", Dtype::I64, &[2, 0], &[]),
    ]);
    assert_eq!(compare(ST, &s, &s, TOL), agreed(0, 0.0));
    let nothing = st(&[]);
    assert_eq!(compare(ST, &nothing, &nothing, TOL), agreed(0, 0.0));
}

#[test]
fn a_zero_dimensional_npy_holds_one_element() {
    let a = npy("<f8", &[], &[2.0f64]);
    let b = npy("<f8", &[], &[3.0f64]);
    assert_eq!(compare(NPY, &a, &a, TOL), agreed(1, 0.0));
    assert_eq!(
        compare(NPY, &a, &b, TOL),
        not_close(NPY_TENSOR, 0, 2.0, 3.0)
    );
}

// ---------------------------------------------------------------------------------------------
// Dtypes, shapes and names that differ.

#[test]
fn a_dtype_difference_is_named_not_promoted() {
    let a = npy("<f4", &[2], &[1.0f32, 2.0]);
    let b = npy("<f8", &[2], &[1.0f64, 2.0]);
    assert_eq!(
        compare(NPY, &a, &b, TOL),
        Err(Disagreement::DtypeDiffers {
            tensor: NPY_TENSOR.to_owned(),
            a: "f32".to_owned(),
            b: "f64".to_owned(),
        })
    );
    let (x, y) = (
        st(&[("w", Dtype::F16, &[1], &[0, 0x3c])]),
        st(&[("w", Dtype::BF16, &[1], &[0x80, 0x3f])]),
    );
    assert_eq!(
        compare(ST, &x, &y, TOL),
        Err(Disagreement::DtypeDiffers {
            tensor: "w".to_owned(),
            a: "f16".to_owned(),
            b: "bf16".to_owned(),
        })
    );
}

#[test]
fn a_shape_difference_is_named_without_broadcasting() {
    let six = [0.0f32; 6];
    let a = npy("<f4", &[2, 3], &six);
    for shape in [&[3u64, 2][..], &[6], &[1, 2, 3]] {
        let b = npy("<f4", shape, &six);
        assert_eq!(
            compare(NPY, &a, &b, TOL),
            Err(Disagreement::ShapeDiffers {
                tensor: NPY_TENSOR.to_owned(),
                a: vec![2, 3],
                b: shape.to_vec(),
            })
        );
    }
    let one = npy("<f4", &[1], &[0.0f32]);
    let scalar = npy("<f4", &[], &[0.0f32]);
    assert_eq!(kind(&compare(NPY, &one, &scalar, TOL)), "shape differs");

    let data = f32_bytes(&[0.0; 6]);
    let (x, y) = (
        st(&[("h", Dtype::F32, &[2, 3], &data)]),
        st(&[("h", Dtype::F32, &[6], &data)]),
    );
    assert_eq!(
        compare(ST, &x, &y, TOL),
        Err(Disagreement::ShapeDiffers {
            tensor: "h".to_owned(),
            a: vec![2, 3],
            b: vec![6],
        })
    );
}

#[test]
fn safetensors_with_different_tensor_names_list_the_differences_sorted() {
    let d = f32_bytes(&[1.0]);
    let a = st(&[
        ("z", Dtype::F32, &[1], &d),
        ("y", Dtype::F32, &[1], &d),
        ("x", Dtype::F32, &[1], &d),
    ]);
    let b = st(&[("y", Dtype::F32, &[1], &d), ("w", Dtype::F32, &[1], &d)]);
    assert_eq!(
        compare(ST, &a, &b, TOL),
        Err(Disagreement::TensorsDiffer {
            only_in_a: vec!["x".to_owned(), "z".to_owned()],
            only_in_b: vec!["w".to_owned()],
        })
    );
    assert_eq!(
        compare(ST, &b, &a, TOL),
        Err(Disagreement::TensorsDiffer {
            only_in_a: vec!["w".to_owned()],
            only_in_b: vec!["x".to_owned(), "z".to_owned()],
        })
    );
}

#[test]
fn safetensors_tensors_are_compared_in_name_order_whatever_the_file_order() {
    let (one, two) = (f32_bytes(&[1.0]), f32_bytes(&[2.0]));
    // "b" comes first in the file (and by offset), but "a" is reported.
    let a = st(&[("b", Dtype::F32, &[1], &one), ("a", Dtype::F32, &[1], &one)]);
    let b = st(&[("b", Dtype::F32, &[1], &two), ("a", Dtype::F32, &[1], &two)]);
    assert_eq!(compare(ST, &a, &b, TOL), not_close("a", 0, 1.0, 2.0));
    // Elements add up over tensors, and the largest difference is the largest of all.
    let c = st(&[
        ("b", Dtype::F32, &[1], &f32_bytes(&[1.0 + 4e-6])),
        ("a", Dtype::F32, &[1], &f32_bytes(&[1.0])),
    ]);
    match compare(ST, &a, &c, TOL) {
        Ok(Agreement {
            elements: 2,
            max_abs_diff,
        }) => assert!(max_abs_diff > 3e-6 && max_abs_diff < 5e-6, "{max_abs_diff}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn safetensors_metadata_is_ignored() {
    let data = f32_bytes(&[1.0, 2.0]);
    let tensor = r#""x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;
    let plain = st_raw(&format!("{{{tensor}}}"), &data);
    let labelled = st_raw(
        &format!(r#"{{"__metadata__":{{"run":"2","host":"gpu-7"}},{tensor}}}"#),
        &data,
    );
    assert_eq!(compare(ST, &plain, &labelled, TOL), agreed(2, 0.0));
    assert_eq!(
        compare(ST, &plain, &st(&[("x", Dtype::F32, &[2], &data)]), TOL),
        agreed(2, 0.0)
    );
}

#[test]
fn dtypes_that_are_not_compared_are_unsupported_even_when_identical() {
    for descr in [
        "<c8", "<c16", "<f16", "|S3", "<U2", "<m8[s]", "<M8[D]", "|V4",
    ] {
        let file = npy_raw(
            &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (0,), }}"),
            &[],
        );
        assert_eq!(
            unsupported(compare(NPY, &file, &file, TOL)),
            (Side::A, descr.to_owned()),
            "{descr}"
        );
        let fine = npy("<f4", &[1], &[0.0f32]);
        assert_eq!(unsupported(compare(NPY, &fine, &file, TOL)).0, Side::B);
    }
    let pickled = npy_raw(
        "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
        &[],
    );
    assert_eq!(unsupported(compare(NPY, &pickled, &pickled, TOL)).1, "|O");
    let structured = npy_raw(
        "{'descr': [('x', '<f4'), ('y', '<i4', (2,))], 'fortran_order': False, 'shape': (1,), }",
        &[0; 12],
    );
    assert_eq!(
        unsupported(compare(NPY, &structured, &structured, TOL)),
        (Side::A, "structured".to_owned())
    );

    let c64 = st(&[("z", Dtype::C64, &[1], &[0; 8])]);
    assert_eq!(
        unsupported(compare(ST, &c64, &c64, TOL)),
        (Side::A, "C64".to_owned())
    );
    let fp8 = st(&[("q", Dtype::F8_E4M3, &[2], &[0; 2])]);
    let f32s = st(&[("q", Dtype::F32, &[2], &f32_bytes(&[0.0, 0.0]))]);
    assert_eq!(unsupported(compare(ST, &f32s, &fp8, TOL)).0, Side::B);
    assert_eq!(unsupported(compare(ST, &fp8, &f32s, TOL)).0, Side::A);
}

// ---------------------------------------------------------------------------------------------
// Malformed files.

#[test]
fn every_truncation_of_a_valid_npy_is_unreadable() {
    let valid = npy("<f8", &[2, 2], &[1.0f64, 2.0, 3.0, 4.0]);
    for len in 0..valid.len() {
        let cut = &valid[..len];
        assert_eq!(
            unreadable_side(compare(NPY, cut, &valid, TOL)),
            Ok(Side::A),
            "{len}"
        );
        assert_eq!(
            unreadable_side(compare(NPY, &valid, cut, TOL)),
            Ok(Side::B),
            "{len}"
        );
    }
    let mut longer = valid.clone();
    longer.push(0);
    assert_eq!(
        unreadable_side(compare(NPY, &longer, &valid, TOL)),
        Ok(Side::A)
    );
}

#[test]
fn malformed_npy_headers_are_unreadable_not_panics_or_huge_allocations() {
    let ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
    let four = [0u8; 4];
    let bad_headers = [
        // A shape with more than 2^64 elements (npyz's own reader panics on this one).
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }",
        // Elements fit in 64 bits, bytes do not.
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }",
        // Many elements claimed, four bytes present.
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [1], }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1), }",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }",
        "{'descr': '<f4', 'shape': (1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1, }",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
        "{'descr': '<q4', 'fortran_order': False, 'shape': (1,), }",
        "{'descr': '<f3', 'fortran_order': False, 'shape': (1,), }",
        "{'descr': '=f4', 'fortran_order': False, 'shape': (1,), }",
        "{'descr': 'é', 'fortran_order': False, 'shape': (1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } trailing",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ",
        "{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }",
        "['descr', '<f4']",
        "",
    ];
    let valid = npy_raw(ok, &four);
    assert_eq!(compare(NPY, &valid, &valid, TOL), agreed(1, 0.0));
    for header in bad_headers {
        let file = npy_raw(header, &four);
        assert_eq!(
            unreadable_side(compare(NPY, &file, &valid, TOL)),
            Ok(Side::A),
            "{header}"
        );
    }

    // Nesting far deeper than any header needs.
    let deep = format!(
        "{{'descr': {}'<f4'{}, 'fortran_order': False, 'shape': (1,), }}",
        "[".repeat(4_000),
        "]".repeat(4_000)
    );
    let deep = npy_raw(&deep, &four);
    assert_eq!(
        unreadable_side(compare(NPY, &deep, &valid, TOL)),
        Ok(Side::A)
    );

    // A header longer than numpy's own limit, whatever follows.
    let long = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }}{}",
        " ".repeat(10_000)
    );
    let long = npy_raw(&long, &four);
    assert_eq!(
        unreadable_side(compare(NPY, &long, &valid, TOL)),
        Ok(Side::A)
    );
    // A version 2 header that claims 4 GiB of text.
    let mut huge = b"\x93NUMPY\x02\x00\xff\xff\xff\xff{".to_vec();
    huge.extend_from_slice(&four);
    assert_eq!(
        unreadable_side(compare(NPY, &huge, &valid, TOL)),
        Ok(Side::A)
    );
    // An unknown version.
    let mut v9 = valid.clone();
    v9[6] = 9;
    assert_eq!(unreadable_side(compare(NPY, &v9, &valid, TOL)), Ok(Side::A));
    // Garbage, and safetensors where npy is expected.
    let garbage = b"definitely not a numpy file".to_vec();
    assert_eq!(
        unreadable_side(compare(NPY, &valid, &garbage, TOL)),
        Ok(Side::B)
    );
    let other_format = st(&[("x", Dtype::F32, &[1], &four)]);
    assert_eq!(
        unreadable_side(compare(NPY, &valid, &other_format, TOL)),
        Ok(Side::B)
    );
}

#[test]
fn npy_headers_numpy_writes_in_other_spellings_are_read() {
    let four = f32_bytes(&[1.0]);
    let spellings = [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1,)}",
        "{'shape':(1,),'fortran_order':False,'descr':'<f4'}",
        "{'descr': '<f4', 'fortran_order': True, 'shape': (1, ), }      ",
    ];
    for header in spellings {
        let file = npy_raw(header, &four);
        assert_eq!(compare(NPY, &file, &file, TOL), agreed(1, 0.0), "{header}");
    }
    // Version 3.0 (UTF-8 header) with the same layout as 2.0.
    let text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n";
    let mut v3 = b"\x93NUMPY\x03\x00".to_vec();
    v3.extend_from_slice(&(text.len() as u32).to_le_bytes());
    v3.extend_from_slice(text);
    v3.extend_from_slice(&four);
    assert_eq!(
        compare(NPY, &v3, &npy("<f4", &[1], &[1.0f32]), TOL),
        agreed(1, 0.0)
    );
}

#[test]
fn every_truncation_of_a_valid_safetensors_file_is_unreadable() {
    let data = f32_bytes(&[1.0, 2.0, 3.0]);
    let valid = st(&[
        ("x", Dtype::F32, &[3], &data),
        ("y", Dtype::U8, &[2], &[7, 8]),
    ]);
    for len in 0..valid.len() {
        let cut = &valid[..len];
        assert_eq!(
            unreadable_side(compare(ST, cut, &valid, TOL)),
            Ok(Side::A),
            "{len}"
        );
        assert_eq!(
            unreadable_side(compare(ST, &valid, cut, TOL)),
            Ok(Side::B),
            "{len}"
        );
    }
    let mut longer = valid.clone();
    longer.push(0);
    assert_eq!(
        unreadable_side(compare(ST, &valid, &longer, TOL)),
        Ok(Side::B)
    );
}

#[test]
fn malformed_safetensors_files_are_unreadable() {
    let valid = st(&[("x", Dtype::F32, &[1], &f32_bytes(&[1.0]))]);
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"garbage!garbage!".to_vec(),
        // A header length of 2^64 − 1.
        [0xff; 16].to_vec(),
        st_raw("not json", &[]),
        st_raw(
            r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}"#,
            &[0; 8],
        ),
        st_raw(
            r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            &[0; 12],
        ),
        st_raw(
            r#"{"x":{"dtype":"NOPE","shape":[1],"data_offsets":[0,4]}}"#,
            &[0; 4],
        ),
        st_raw(
            r#"{"x":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]}}"#,
            &[0; 4],
        ),
        st_raw(
            &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            &[],
        ),
        npy("<f4", &[1], &[1.0f32]),
    ];
    for file in &cases {
        assert_eq!(
            unreadable_side(compare(ST, file, &valid, TOL)),
            Ok(Side::A),
            "{file:?}"
        );
        assert_eq!(
            unreadable_side(compare(ST, &valid, file, TOL)),
            Ok(Side::B),
            "{file:?}"
        );
    }
}

#[test]
fn an_unreadable_file_is_reported_before_an_unsupported_one_whichever_side_it_is() {
    let complex = npy_raw(
        "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
        &[0; 8],
    );
    let broken = b"\x93NUMPY\x01\x00".to_vec();
    assert_eq!(
        unreadable_side(compare(NPY, &complex, &broken, TOL)),
        Ok(Side::B)
    );
    assert_eq!(
        unreadable_side(compare(NPY, &broken, &complex, TOL)),
        Ok(Side::A)
    );
}

// ---------------------------------------------------------------------------------------------
// Tolerance, formats, messages.

#[test]
fn tolerance_validate_refuses_nan_negative_and_infinite() {
    assert_eq!(Tolerance::NUMPY.validate(), Ok(()));
    assert_eq!(
        Tolerance {
            rtol: 0.0,
            atol: 0.0
        }
        .validate(),
        Ok(())
    );
    for bad in [f64::NAN, -1e-9, -0.5, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(
            Tolerance {
                rtol: bad,
                atol: 0.0
            }
            .validate()
            .is_err(),
            "rtol {bad}"
        );
        assert!(
            Tolerance {
                rtol: 0.0,
                atol: bad
            }
            .validate()
            .is_err(),
            "atol {bad}"
        );
    }
}

#[test]
fn an_invalid_tolerance_makes_the_comparison_exact_never_looser() {
    let a = npy("<f8", &[2], &[1.0f64, 2.0]);
    let b = npy("<f8", &[2], &[1.0f64, 2.0 + 1e-12]);
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        for tol in [
            Tolerance {
                rtol: bad,
                atol: 1.0,
            },
            Tolerance {
                rtol: 1.0,
                atol: bad,
            },
        ] {
            assert_eq!(compare(NPY, &a, &a, tol), agreed(2, 0.0), "{tol:?}");
            assert_eq!(kind(&compare(NPY, &a, &b, tol)), "not close", "{tol:?}");
        }
    }
}

#[test]
fn format_of_goes_by_the_case_sensitive_extension() {
    assert_eq!(format_of("out/logits.npy"), Some(TensorFormat::Npy));
    assert_eq!(
        format_of("model.safetensors"),
        Some(TensorFormat::Safetensors)
    );
    assert_eq!(format_of("out/LOGITS.NPY"), None);
    assert_eq!(format_of("weights.npz"), None);
    assert_eq!(format_of("model.safetensors.json"), None);
    assert_eq!(format_of("npy"), None);
}

#[test]
fn messages_name_the_tensor_the_index_and_the_side() {
    let a = st(&[("logits", Dtype::F32, &[3], &f32_bytes(&[1.0, 2.0, 3.0]))]);
    let b = st(&[("logits", Dtype::F32, &[3], &f32_bytes(&[1.0, 2.0, 4.0]))]);
    let message = compare(ST, &a, &b, TOL).expect_err("differs").to_string();
    assert_eq!(
        message,
        r#"tensor "logits" differs at flat index 2: 3 in a, 4 in b"#
    );
    let message = compare(ST, &a, b"junk", TOL).expect_err("junk").to_string();
    assert!(
        message.starts_with("file b is not a readable tensor file: "),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// A valid file of either format, from a few dtypes and shapes.
fn arb_file() -> impl Strategy<Value = (TensorFormat, Vec<u8>)> {
    let npy_file = (0usize..3, prop::collection::vec(-1e3f64..1e3, 0..12)).prop_map(|(d, v)| {
        let shape = [v.len() as u64];
        match d {
            0 => npy("<f8", &shape, &v),
            1 => npy(
                ">f4",
                &shape,
                &v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            ),
            _ => npy(
                "<i2",
                &shape,
                &v.iter().map(|&x| x as i16).collect::<Vec<_>>(),
            ),
        }
    });
    let st_file = prop::collection::vec(-1e3f32..1e3, 0..12).prop_map(|v| {
        let data = f32_bytes(&v);
        st(&[
            ("a", Dtype::F32, &[v.len()], &data),
            ("b", Dtype::U8, &[2], &[1, 2]),
        ])
    });
    prop_oneof![
        npy_file.prop_map(|f| (NPY, f)),
        st_file.prop_map(|f| (ST, f)),
    ]
}

/// Pairs of files of one format that reach every verdict: equal, close, not close, dtype and
/// shape differences, NaNs, infinities, unsupported and unreadable files.
fn arb_pair() -> impl Strategy<Value = (TensorFormat, Vec<u8>, Vec<u8>)> {
    let special = prop_oneof![
        6 => Just(0.0f64),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ];
    let element = (
        -1e3f64..1e3,
        special,
        prop_oneof![Just(0.0f64), Just(1e-7), Just(1e-2)],
    );
    let elements = prop::collection::vec(element, 0..6);
    let variant = 0usize..10;
    let format = prop_oneof![Just(NPY), Just(ST)];
    (format, elements, variant, any::<prop::sample::Index>()).prop_map(
        |(format, elements, variant, cut)| {
            let a: Vec<f64> = elements
                .iter()
                .map(|&(x, s, _)| if s == 0.0 { x } else { s })
                .collect();
            let b: Vec<f64> = elements
                .iter()
                .map(|&(x, s, noise)| if s == 0.0 { x * (1.0 + noise) } else { s })
                .collect();
            let file = |v: &[f64], dtype: usize| -> Vec<u8> {
                let n = v.len() as u64;
                let f32s: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                let ints: Vec<i32> = v.iter().map(|&x| x as i32).collect();
                match (format, dtype) {
                    (TensorFormat::Npy, 0) => npy("<f8", &[n], v),
                    (TensorFormat::Npy, 1) => npy(">f4", &[n], &f32s),
                    (TensorFormat::Npy, 2) => npy("<i4", &[n], &ints),
                    (TensorFormat::Npy, 3) => npy("<f8", &[1, n], v),
                    (TensorFormat::Npy, _) => npy_raw(
                        "{'descr': '<c8', 'fortran_order': False, 'shape': (0,), }",
                        &[],
                    ),
                    (TensorFormat::Safetensors, 0) => {
                        st(&[("t", Dtype::F64, &[v.len()], &f64_bytes(v))])
                    }
                    (TensorFormat::Safetensors, 1) => {
                        st(&[("t", Dtype::F32, &[v.len()], &f32_bytes(&f32s))])
                    }
                    (TensorFormat::Safetensors, 2) => st(&[(
                        "t",
                        Dtype::I32,
                        &[v.len()],
                        &ints
                            .iter()
                            .flat_map(|i| i.to_le_bytes())
                            .collect::<Vec<u8>>(),
                    )]),
                    (TensorFormat::Safetensors, 3) => {
                        st(&[("u", Dtype::F64, &[v.len()], &f64_bytes(v))])
                    }
                    (TensorFormat::Safetensors, _) => st(&[("t", Dtype::C64, &[0], &[])]),
                }
            };
            let (fa, mut fb) = match variant {
                // Same dtype, b noisy.
                0..=4 => (file(&a, variant % 3), file(&b, variant % 3)),
                // Another dtype, shape or name.
                5 => (file(&a, 0), file(&a, 1)),
                6 => (file(&a, 0), file(&a, 3)),
                // Unsupported.
                7 => (file(&a, 4), file(&a, 0)),
                // Unreadable: truncated b.
                8 => {
                    let f = file(&a, 0);
                    let len = cut.index(f.len());
                    (file(&a, 0), f[..len].to_vec())
                }
                // Longer b.
                _ => (file(&a, 0), file(&[a.clone(), vec![1.0]].concat(), 0)),
            };
            if variant == 8 && fb.is_empty() {
                fb.push(0);
            }
            (format, fa, fb)
        },
    )
}

/// The verdict with `a` and `b` swapped, as it must come out when `result` was the verdict.
fn swapped(result: &Result<Agreement, Disagreement>) -> Result<Agreement, Disagreement> {
    let other = |side| match side {
        Side::A => Side::B,
        Side::B => Side::A,
    };
    match result.clone() {
        Ok(agreement) => Ok(agreement),
        Err(d) => Err(match d {
            Disagreement::Unreadable { which, why } => Disagreement::Unreadable {
                which: other(which),
                why,
            },
            Disagreement::Unsupported { which, dtype } => Disagreement::Unsupported {
                which: other(which),
                dtype,
            },
            Disagreement::TensorsDiffer {
                only_in_a,
                only_in_b,
            } => Disagreement::TensorsDiffer {
                only_in_a: only_in_b,
                only_in_b: only_in_a,
            },
            Disagreement::DtypeDiffers { tensor, a, b } => {
                Disagreement::DtypeDiffers { tensor, a: b, b: a }
            }
            Disagreement::ShapeDiffers { tensor, a, b } => {
                Disagreement::ShapeDiffers { tensor, a: b, b: a }
            }
            Disagreement::NotClose {
                tensor,
                index,
                a,
                b,
            } => Disagreement::NotClose {
                tensor,
                index,
                a: b,
                b: a,
            },
        }),
    }
}

/// Equality that treats NaN as equal to NaN (for `NotClose` values).
fn same_verdict(x: &Result<Agreement, Disagreement>, y: &Result<Agreement, Disagreement>) -> bool {
    match (x, y) {
        (
            Err(Disagreement::NotClose {
                tensor: t1,
                index: i1,
                a: a1,
                b: b1,
            }),
            Err(Disagreement::NotClose {
                tensor: t2,
                index: i2,
                a: a2,
                b: b2,
            }),
        ) => {
            let eq = |p: f64, q: f64| p == q || (p.is_nan() && q.is_nan());
            t1 == t2 && i1 == i2 && eq(*a1, *a2) && eq(*b1, *b2)
        }
        _ => x == y,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes at all, as either file of either format: an answer, never a panic.
    #[test]
    fn random_bytes_never_panic(
        junk in prop::collection::vec(any::<u8>(), 0..256),
        (format, valid) in arb_file(),
    ) {
        for other_format in [NPY, ST] {
            let _ = compare(other_format, &junk, &valid, TOL);
            let _ = compare(other_format, &valid, &junk, TOL);
            let _ = compare(other_format, &junk, &junk, TOL);
        }
        prop_assert_eq!(kind(&compare(format, &valid, &valid, TOL)), "agree");
    }

    /// Random bytes after a real `.npy` preamble reach the header parser.
    #[test]
    fn random_npy_headers_never_panic(
        text in prop::collection::vec(any::<u8>(), 0..200),
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        file.extend_from_slice(&(text.len() as u16).to_le_bytes());
        file.extend_from_slice(&text);
        file.extend_from_slice(&tail);
        let _ = compare(NPY, &file, &file, TOL);
    }

    /// A header of numpy's shape with random dtype strings and dimensions.
    #[test]
    fn random_npy_dtypes_and_shapes_never_panic(
        descr in "[<>|=]?[biufcmMSUOVa]?[0-9]{0,3}(\\[[a-z]{1,2}\\])?",
        shape in prop::collection::vec(any::<u64>(), 0..4),
        fortran in any::<bool>(),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let dims: String = shape.iter().map(|d| format!("{d}, ")).collect();
        let order = if fortran { "True" } else { "False" };
        let header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': ({dims}), }}");
        let file = npy_raw(&header, &data);
        let _ = compare(NPY, &file, &file, TOL);
    }

    /// Every strict truncation of a valid file is unreadable, and no flipped byte panics.
    #[test]
    fn truncated_or_flipped_files_never_panic(
        (format, valid) in arb_file(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let truncated = &valid[..cut.index(valid.len())];
        prop_assert_eq!(unreadable_side(compare(format, truncated, &valid, TOL)), Ok(Side::A));
        prop_assert_eq!(unreadable_side(compare(format, &valid, truncated, TOL)), Ok(Side::B));
        let mut flipped = valid.clone();
        let at = flip.index(flipped.len());
        flipped[at] ^= byte | 1;
        let _ = compare(format, &flipped, &valid, TOL);
        let _ = compare(format, &valid, &flipped, TOL);
    }

    /// Swapping the files swaps the sides and values in the verdict and changes nothing else.
    #[test]
    fn compare_is_symmetric((format, a, b) in arb_pair()) {
        let forward = compare(format, &a, &b, TOL);
        let backward = compare(format, &b, &a, TOL);
        prop_assert!(
            same_verdict(&backward, &swapped(&forward)),
            "forward {:?}, backward {:?}", forward, backward
        );
    }
}

/// Guards `arb_pair`: a fixed-seed run must reach every kind of verdict each format can give
/// (`.npy` has no tensor names to differ), each at least ten times in 2,000 pairs, or the
/// symmetry property proves little.
#[test]
fn the_pair_strategy_reaches_every_kind_of_verdict() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = arb_pair();
    let mut seen: BTreeMap<(&'static str, &'static str), u32> = BTreeMap::new();
    for _ in 0..2000 {
        let (format, a, b) = strategy.new_tree(&mut runner).expect("generates").current();
        let name = if format == NPY { "npy" } else { "safetensors" };
        *seen
            .entry((name, kind(&compare(format, &a, &b, TOL))))
            .or_default() += 1;
    }
    let expected = [
        ("npy", "agree"),
        ("npy", "not close"),
        ("npy", "dtype differs"),
        ("npy", "shape differs"),
        ("npy", "unsupported"),
        ("npy", "unreadable"),
        ("safetensors", "agree"),
        ("safetensors", "not close"),
        ("safetensors", "dtype differs"),
        ("safetensors", "shape differs"),
        ("safetensors", "tensors differ"),
        ("safetensors", "unsupported"),
        ("safetensors", "unreadable"),
    ];
    for key in expected {
        assert!(
            seen.get(&key).copied().unwrap_or(0) >= 10,
            "{key:?} reached too rarely: {seen:?}"
        );
    }
}
