//! Tolerant comparison of two runs' tensor outputs: the check a verifier provider makes when it
//! re-runs a job that is not bit-deterministic (GPU inference, reductions in a different order)
//! and must judge whether both runs produced the same numbers.
//!
//! [`compare`] takes the bytes of two files of one [`TensorFormat`] — a numpy `.npy` file
//! (one array, named [`NPY_TENSOR`] in errors) or a HuggingFace `.safetensors` file (named
//! tensors) — and returns an [`Agreement`] or the first [`Disagreement`] it finds.
//!
//! # Semantics
//!
//! - **Symmetric**: the verdict does not depend on which run is `a`. Two floating-point elements
//!   agree iff `|a − b| <= atol + rtol · max(|a|, |b|)`, computed in `f64` (numpy's `isclose` is
//!   asymmetric: it scales `rtol` by `|b|` only). A `NaN` agrees only with a `NaN` at the same
//!   position, an infinity only with the same infinity.
//! - **Floating dtypes** (`f16`, `bf16` — safetensors only, numpy has none — `f32`, `f64`) are
//!   compared with the [`Tolerance`]. **Integer dtypes** (`i8`…`i64`, `u8`…`u64`) and **`bool`**
//!   must be exactly equal, whatever the tolerance; a `bool` is compared as its stored byte.
//!   Anything else (complex, `float128`, fp8 and sub-byte floats, datetimes, strings, objects,
//!   structured arrays) is [`Disagreement::Unsupported`], even when both files are identical.
//! - **Dtype and shape must match exactly**: no broadcasting, no promotion (`f32` against `f64`
//!   is [`Disagreement::DtypeDiffers`]). Byte order is not part of the dtype: a little-endian and
//!   a big-endian `.npy` of the same values agree.
//! - **Index**: [`Disagreement::NotClose`] names the first offending element by its flat index in
//!   row-major (C) order, numpy's `a.flat` (`np.unravel_index(index, shape)` gives the position).
//!   A Fortran-order `.npy` is read through its strides, so Fortran against C order compares the
//!   same logical elements; no transposed copy is made.
//! - **safetensors**: both files must hold the same set of tensor names
//!   ([`Disagreement::TensorsDiffer`] lists the differences); tensors are then compared one by
//!   one in sorted name order, so the reported disagreement is deterministic. The `__metadata__`
//!   map is ignored.
//! - Zero-element tensors agree with each other (same dtype and shape still required).
//! - Checks run in this order, so that swapping `a` and `b` gives the same kind of
//!   disagreement: either file unreadable (`a` first), then for `.npy` either dtype unsupported;
//!   for safetensors the name sets, then tensor by tensor in name order: either dtype
//!   unsupported, dtype, shape, elements.
//!
//! # Untrusted input
//!
//! Both files come from providers. Every malformed file gives [`Disagreement::Unreadable`]: no
//! panic, and no allocation beyond a small multiple of the header's size (a `.npy` header is
//! read up to 10,000 bytes, numpy's own limit) — elements are decoded one at a time straight
//! from the input, never copied out. The `.npy` header is parsed here
//! rather than by `npyz::NpyFile`, because `npyz` panics (integer overflow) on a header whose
//! shape has more than 2⁶⁴ elements; `npyz` still parses the dtype string. Data must be exactly
//! as long as the header's shape and dtype say: trailing bytes are unreadable too.
//!
//! Floats: this module, unlike the rest of the crate, computes in floating point. Its verdicts
//! are made by a verifier provider off chain; the ledger never calls it.

#![allow(clippy::float_arithmetic)]

use std::fmt;

use half::{bf16, f16};
use npyz::{Endianness, TypeChar, TypeStr};
use safetensors::{Dtype, SafeTensors};

/// The name a `.npy` file's single array has in [`Disagreement`]s.
pub const NPY_TENSOR: &str = "array";

/// Longest `.npy` header text read, in bytes: numpy's own `max_header_size` default. A header of
/// numpy's layout with 64 dimensions (numpy's most) takes under 1,500.
const NPY_HEADER_BYTES_MAX: usize = 10_000;

/// Nesting depth of the `.npy` header's Python literal, beyond which it is unreadable (numpy
/// writes depth 2; a structured dtype with nested fields goes a few deeper).
const NPY_HEADER_DEPTH_MAX: usize = 32;

/// Longest excerpt of a file's own dtype spelling quoted back in an error, in bytes.
const DTYPE_QUOTE_BYTES_MAX: usize = 64;

/// numpy-style tolerances; both finite and `>= 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative tolerance, scaled by the larger magnitude of the two elements.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
}

impl Tolerance {
    /// numpy's `isclose`/`allclose` defaults.
    pub const NUMPY: Tolerance = Tolerance {
        rtol: 1e-5,
        atol: 1e-8,
    };

    /// Refuses a tolerance that is NaN, infinite or negative. [`compare`] does not trust its
    /// caller to have called this: it compares exactly (`rtol = atol = 0`) when given a tolerance
    /// this refuses, so a bad tolerance can only make the verdict stricter.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !(self.rtol.is_finite() && self.rtol >= 0.0) {
            return Err("rtol must be finite and at least 0");
        }
        if !(self.atol.is_finite() && self.atol >= 0.0) {
            return Err("atol must be finite and at least 0");
        }
        Ok(())
    }
}

/// A tensor file format [`compare`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorFormat {
    /// numpy's `.npy`: one array, versions 1.0 to 3.0, either byte order, C or Fortran order.
    Npy,
    /// HuggingFace's `.safetensors`: named little-endian tensors in C order.
    Safetensors,
}

/// By file extension: `".npy"` or `".safetensors"` (case-sensitive); `None` otherwise.
pub fn format_of(path: &str) -> Option<TensorFormat> {
    if path.ends_with(".npy") {
        Some(TensorFormat::Npy)
    } else if path.ends_with(".safetensors") {
        Some(TensorFormat::Safetensors)
    } else {
        None
    }
}

/// Two files that agree: how many elements were compared and the largest `|a − b|` seen (0 for
/// exact kinds).
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// Elements compared, over all tensors.
    pub elements: u64,
    /// Largest `|a − b|` over all finite floating-point pairs; 0 when there were none.
    pub max_abs_diff: f64,
}

/// Which of the two files [`compare`] was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first file, `a`.
    A,
    /// The second file, `b`.
    B,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "a",
            Side::B => "b",
        })
    }
}

/// Why two files do not agree. Dtypes are named `bool`, `i8`…`i64`, `u8`…`u64`, `f16`, `bf16`,
/// `f32`, `f64`, except in [`Disagreement::Unsupported`], which quotes the file's own spelling.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Disagreement {
    /// Not a valid file of the format.
    #[error("file {which} is not a readable tensor file: {why}")]
    Unreadable {
        /// The file.
        which: Side,
        /// What is wrong with it.
        why: String,
    },
    /// A dtype this module does not compare (complex, object, strings, ...).
    #[error("file {which} holds dtype {dtype}, which is not compared")]
    Unsupported {
        /// The file.
        which: Side,
        /// The dtype as the file spells it.
        dtype: String,
    },
    /// The safetensors files hold different sets of tensor names (each list sorted).
    #[error("the files hold different tensors: only in a {only_in_a:?}, only in b {only_in_b:?}")]
    TensorsDiffer {
        /// Names only file `a` holds.
        only_in_a: Vec<String>,
        /// Names only file `b` holds.
        only_in_b: Vec<String>,
    },
    /// One tensor has different dtypes.
    #[error("tensor {tensor:?} has dtype {a} in a but {b} in b")]
    DtypeDiffers {
        /// The tensor's name.
        tensor: String,
        /// Its dtype in `a`.
        a: String,
        /// Its dtype in `b`.
        b: String,
    },
    /// One tensor has different shapes.
    #[error("tensor {tensor:?} has shape {a:?} in a but {b:?} in b")]
    ShapeDiffers {
        /// The tensor's name.
        tensor: String,
        /// Its shape in `a`.
        a: Vec<u64>,
        /// Its shape in `b`.
        b: Vec<u64>,
    },
    /// The first pair of elements that is not within the tolerance (or, for integers and `bool`,
    /// not equal). Integers are shown as `f64`, which rounds those beyond 2⁵³.
    #[error("tensor {tensor:?} differs at flat index {index}: {a} in a, {b} in b")]
    NotClose {
        /// The tensor's name.
        tensor: String,
        /// Flat index in row-major (C) order.
        index: u64,
        /// The element in `a`.
        a: f64,
        /// The element in `b`.
        b: f64,
    },
}

/// Compares two files of `format` within `tol`; see the module documentation for the rules.
pub fn compare(
    format: TensorFormat,
    a: &[u8],
    b: &[u8],
    tol: Tolerance,
) -> Result<Agreement, Disagreement> {
    let tol = if tol.validate().is_ok() {
        tol
    } else {
        Tolerance {
            rtol: 0.0,
            atol: 0.0,
        }
    };
    match format {
        TensorFormat::Npy => compare_npy(a, b, tol),
        TensorFormat::Safetensors => compare_safetensors(a, b, tol),
    }
}

// ---------------------------------------------------------------------------------------------
// Element kinds and the comparison both formats share.

/// The dtypes compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    Bf16,
    F32,
    F64,
}

impl Kind {
    fn size_bytes(self) -> usize {
        match self {
            Kind::Bool | Kind::I8 | Kind::U8 => 1,
            Kind::I16 | Kind::U16 | Kind::F16 | Kind::Bf16 => 2,
            Kind::I32 | Kind::U32 | Kind::F32 => 4,
            Kind::I64 | Kind::U64 | Kind::F64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::I8 => "i8",
            Kind::I16 => "i16",
            Kind::I32 => "i32",
            Kind::I64 => "i64",
            Kind::U8 => "u8",
            Kind::U16 => "u16",
            Kind::U32 => "u32",
            Kind::U64 => "u64",
            Kind::F16 => "f16",
            Kind::Bf16 => "bf16",
            Kind::F32 => "f32",
            Kind::F64 => "f64",
        }
    }

    /// Decodes one element from exactly `size_bytes()` bytes.
    fn decode(self, element: &[u8], big_endian: bool) -> Num {
        match self {
            Kind::Bool | Kind::U8 => Num::Int(i128::from(element[0])),
            Kind::I8 => Num::Int(i128::from(i8::from_le_bytes([element[0]]))),
            Kind::I16 => Num::Int(i128::from(i16::from_le_bytes(le(element, big_endian)))),
            Kind::I32 => Num::Int(i128::from(i32::from_le_bytes(le(element, big_endian)))),
            Kind::I64 => Num::Int(i128::from(i64::from_le_bytes(le(element, big_endian)))),
            Kind::U16 => Num::Int(i128::from(u16::from_le_bytes(le(element, big_endian)))),
            Kind::U32 => Num::Int(i128::from(u32::from_le_bytes(le(element, big_endian)))),
            Kind::U64 => Num::Int(i128::from(u64::from_le_bytes(le(element, big_endian)))),
            Kind::F16 => Num::Float(f16::from_le_bytes(le(element, big_endian)).to_f64()),
            Kind::Bf16 => Num::Float(bf16::from_le_bytes(le(element, big_endian)).to_f64()),
            Kind::F32 => Num::Float(f64::from(f32::from_le_bytes(le(element, big_endian)))),
            Kind::F64 => Num::Float(f64::from_le_bytes(le(element, big_endian))),
        }
    }
}

/// The first `N` bytes of `element` in little-endian order.
fn le<const N: usize>(element: &[u8], big_endian: bool) -> [u8; N] {
    let mut bytes = [0; N];
    bytes.copy_from_slice(&element[..N]);
    if big_endian {
        bytes.reverse();
    }
    bytes
}

/// One decoded element: every integer kind (and `bool`) fits an `i128` exactly.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn shown(self) -> f64 {
        match self {
            // Lossy beyond 2^53, as the `NotClose` documentation says.
            Num::Int(v) => v as f64,
            Num::Float(v) => v,
        }
    }
}

/// `Some(|a − b|)` when the two elements agree (0 for exact kinds, NaN pairs and infinities).
fn agree(a: Num, b: Num, tol: Tolerance) -> Option<f64> {
    match (a, b) {
        (Num::Int(a), Num::Int(b)) => (a == b).then_some(0.0),
        (Num::Float(a), Num::Float(b)) => {
            if a.is_nan() || b.is_nan() {
                return (a.is_nan() && b.is_nan()).then_some(0.0);
            }
            if a.is_infinite() || b.is_infinite() {
                return (a == b).then_some(0.0);
            }
            let diff = (a - b).abs();
            (diff <= tol.atol + tol.rtol * a.abs().max(b.abs())).then_some(diff)
        }
        // Both sides always have the same kind; a mixed pair never agrees.
        _ => None,
    }
}

/// One tensor as it lies in its file.
struct Tensor<'a> {
    kind: Kind,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<u64>,
    /// Exactly `elements * kind.size_bytes()` bytes.
    data: &'a [u8],
    elements: usize,
}

/// Elements in `shape`, and their size in bytes, if both fit in `usize`.
fn sizes(shape: &[u64], kind: Kind) -> Option<(usize, usize)> {
    let elements = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d))?;
    let elements = usize::try_from(elements).ok()?;
    Some((elements, elements.checked_mul(kind.size_bytes())?))
}

/// The storage positions of a tensor's elements, visited in row-major (C) order.
struct Positions {
    shape: Vec<u64>,
    strides: Vec<u64>,
    index: Vec<u64>,
    position: u64,
}

impl Positions {
    fn new(shape: &[u64], fortran_order: bool) -> Positions {
        // A stride is a product of some dimensions: it fits, since the element count did and
        // positions are only asked for when there is an element (no dimension is 0).
        let mut strides = vec![1u64; shape.len()];
        if fortran_order {
            for d in 1..shape.len() {
                strides[d] = strides[d - 1].saturating_mul(shape[d - 1]);
            }
        } else {
            for d in (0..shape.len().saturating_sub(1)).rev() {
                strides[d] = strides[d + 1].saturating_mul(shape[d + 1]);
            }
        }
        Positions {
            shape: shape.to_vec(),
            strides,
            index: vec![0; shape.len()],
            position: 0,
        }
    }

    /// The current element's storage position; then moves to the next element in C order.
    fn next_position(&mut self) -> u64 {
        let here = self.position;
        for d in (0..self.shape.len()).rev() {
            self.index[d] += 1;
            self.position += self.strides[d];
            if self.index[d] < self.shape[d] {
                return here;
            }
            self.position -= self.index[d] * self.strides[d];
            self.index[d] = 0;
        }
        here
    }
}

/// Compares one tensor of each file, already known to be readable and of supported kinds.
fn compare_tensor(
    name: &str,
    a: &Tensor<'_>,
    b: &Tensor<'_>,
    tol: Tolerance,
) -> Result<Agreement, Disagreement> {
    if a.kind != b.kind {
        return Err(Disagreement::DtypeDiffers {
            tensor: name.to_owned(),
            a: a.kind.name().to_owned(),
            b: b.kind.name().to_owned(),
        });
    }
    if a.shape != b.shape {
        return Err(Disagreement::ShapeDiffers {
            tensor: name.to_owned(),
            a: a.shape.clone(),
            b: b.shape.clone(),
        });
    }
    let size = a.kind.size_bytes();
    let mut max_abs_diff = 0.0f64;
    let same_layout = a.fortran_order == b.fortran_order;
    let mut positions_a = Positions::new(&a.shape, a.fortran_order);
    let mut positions_b = Positions::new(&b.shape, b.fortran_order);
    for index in 0..a.elements {
        // Both in C order, storage order is the index order; otherwise each side's storage
        // position comes from its own strides.
        let (at_a, at_b) = if same_layout && !a.fortran_order {
            (index, index)
        } else {
            // Positions returned stay below `elements`, which is a `usize`.
            (
                positions_a.next_position() as usize,
                positions_b.next_position() as usize,
            )
        };
        let x = a.kind.decode(&a.data[at_a * size..], a.big_endian);
        let y = b.kind.decode(&b.data[at_b * size..], b.big_endian);
        match agree(x, y, tol) {
            Some(diff) => max_abs_diff = max_abs_diff.max(diff),
            None => {
                return Err(Disagreement::NotClose {
                    tensor: name.to_owned(),
                    index: index as u64,
                    a: x.shown(),
                    b: y.shown(),
                });
            }
        }
    }
    Ok(Agreement {
        elements: a.elements as u64,
        max_abs_diff,
    })
}

/// What is wrong with one file on its own.
enum Problem {
    Unreadable(String),
    Unsupported(String),
}

/// Reports the first problem, unreadable before unsupported and `a` before `b`, so that swapping
/// the files gives the same kind of disagreement.
fn both<T, U>(a: Result<T, Problem>, b: Result<U, Problem>) -> Result<(T, U), Disagreement> {
    let unreadable = |which, why| Disagreement::Unreadable { which, why };
    let unsupported = |which, dtype| Disagreement::Unsupported { which, dtype };
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(Problem::Unreadable(why)), _) => Err(unreadable(Side::A, why)),
        (_, Err(Problem::Unreadable(why))) => Err(unreadable(Side::B, why)),
        (Err(Problem::Unsupported(dtype)), _) => Err(unsupported(Side::A, dtype)),
        (_, Err(Problem::Unsupported(dtype))) => Err(unsupported(Side::B, dtype)),
    }
}

// ---------------------------------------------------------------------------------------------
// .npy

fn compare_npy(a: &[u8], b: &[u8], tol: Tolerance) -> Result<Agreement, Disagreement> {
    let (a, b) = both(read_npy(a), read_npy(b))?;
    compare_tensor(NPY_TENSOR, &a, &b, tol)
}

/// Reads a `.npy` file's header and checks its data length.
fn read_npy(bytes: &[u8]) -> Result<Tensor<'_>, Problem> {
    let unreadable = |why: String| Problem::Unreadable(why);
    let (text, data) = npy_header_text(bytes).map_err(unreadable)?;
    let header = parse_npy_header(text).map_err(unreadable)?;
    let (kind, big_endian) = match header.descr {
        Value::Str(descr) => npy_kind(descr)?,
        _ => return Err(Problem::Unsupported("structured".to_owned())),
    };
    let Some((elements, data_bytes)) = sizes(&header.shape, kind) else {
        return Err(unreadable(format!(
            "shape {:?} of {} is larger than this machine can address",
            header.shape,
            kind.name()
        )));
    };
    if data.len() != data_bytes {
        return Err(unreadable(format!(
            "{} bytes of data, but shape {:?} of {} needs {data_bytes}",
            data.len(),
            header.shape,
            kind.name()
        )));
    }
    Ok(Tensor {
        kind,
        big_endian,
        fortran_order: header.fortran_order,
        shape: header.shape,
        data,
        elements,
    })
}

/// Splits a `.npy` file into its header text and its data.
fn npy_header_text(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let Some(rest) = bytes.strip_prefix(b"\x93NUMPY") else {
        return Err("no .npy magic".to_owned());
    };
    let (length, rest) = match rest {
        [1, 0, l0, l1, rest @ ..] => (usize::from(u16::from_le_bytes([*l0, *l1])), rest),
        [2 | 3, 0, l0, l1, l2, l3, rest @ ..] => {
            let length = u32::from_le_bytes([*l0, *l1, *l2, *l3]);
            (usize::try_from(length).unwrap_or(usize::MAX), rest)
        }
        [major, minor, ..] => return Err(format!("unknown .npy version {major}.{minor}")),
        _ => return Err("truncated in the .npy preamble".to_owned()),
    };
    if length > NPY_HEADER_BYTES_MAX {
        return Err(format!(
            "header of {length} bytes, more than the {NPY_HEADER_BYTES_MAX} read"
        ));
    }
    if length > rest.len() {
        return Err(format!(
            "header of {length} bytes, but only {} bytes follow",
            rest.len()
        ));
    }
    Ok(rest.split_at(length))
}

/// The three keys of a `.npy` header.
struct NpyHeader<'a> {
    descr: Value<'a>,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// Parses a `.npy` header: a Python dict literal with exactly the keys `descr`, `fortran_order`
/// and `shape`, padded with whitespace, as numpy's `read_array_header` accepts.
fn parse_npy_header(text: &[u8]) -> Result<NpyHeader<'_>, String> {
    let mut parser = Literal { text, at: 0 };
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.at != text.len() {
        return Err(format!(
            "header has text after its dict, at byte {}",
            parser.at
        ));
    }
    let Value::Dict(entries) = value else {
        return Err("header is not a dict".to_owned());
    };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    for (key, value) in entries {
        let slot = match key {
            Value::Str(b"descr") => &mut descr,
            Value::Str(b"fortran_order") => &mut fortran_order,
            Value::Str(b"shape") => &mut shape,
            _ => return Err("header has a key other than descr, fortran_order, shape".to_owned()),
        };
        if slot.replace(value).is_some() {
            return Err("header repeats a key".to_owned());
        }
    }
    let (Some(descr), Some(fortran_order), Some(shape)) = (descr, fortran_order, shape) else {
        return Err("header lacks one of descr, fortran_order, shape".to_owned());
    };
    let Value::Bool(fortran_order) = fortran_order else {
        return Err("fortran_order is not a bool".to_owned());
    };
    let Value::Tuple(dimensions) = shape else {
        return Err("shape is not a tuple".to_owned());
    };
    let shape = dimensions
        .into_iter()
        .map(|d| match d {
            Value::Int(Some(d)) => Ok(d),
            Value::Int(None) => Err("shape has a dimension beyond 2^64".to_owned()),
            Value::NegativeInt => Err("shape has a negative dimension".to_owned()),
            _ => Err("shape has a dimension that is not an integer".to_owned()),
        })
        .collect::<Result<Vec<u64>, String>>()?;
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
    })
}

/// The compared kind and byte order of a `.npy` dtype string such as `<f4`.
fn npy_kind(descr: &[u8]) -> Result<(Kind, bool), Problem> {
    let quoted = || {
        let end = descr.len().min(DTYPE_QUOTE_BYTES_MAX);
        String::from_utf8_lossy(&descr[..end]).into_owned()
    };
    let type_str: TypeStr = std::str::from_utf8(descr)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Problem::Unreadable(format!("invalid dtype {:?}", quoted())))?;
    let kind = match (type_str.type_char(), type_str.size_field()) {
        (TypeChar::Bool, 1) => Kind::Bool,
        (TypeChar::Int, 1) => Kind::I8,
        (TypeChar::Int, 2) => Kind::I16,
        (TypeChar::Int, 4) => Kind::I32,
        (TypeChar::Int, 8) => Kind::I64,
        (TypeChar::Uint, 1) => Kind::U8,
        (TypeChar::Uint, 2) => Kind::U16,
        (TypeChar::Uint, 4) => Kind::U32,
        (TypeChar::Uint, 8) => Kind::U64,
        (TypeChar::Float, 2) => Kind::F16,
        (TypeChar::Float, 4) => Kind::F32,
        (TypeChar::Float, 8) => Kind::F64,
        _ => return Err(Problem::Unsupported(quoted())),
    };
    Ok((kind, type_str.endianness() == Endianness::Big))
}

/// A Python literal, as far as `.npy` headers use them.
enum Value<'a> {
    /// A string's raw bytes between the quotes (escapes left as written).
    Str(&'a [u8]),
    /// A non-negative integer; `None` when beyond `u64`.
    Int(Option<u64>),
    NegativeInt,
    Bool(bool),
    None,
    Tuple(Vec<Value<'a>>),
    /// A list, parsed but not kept: only a structured dtype's `descr` is one.
    List,
    Dict(Vec<(Value<'a>, Value<'a>)>),
}

/// A recursive-descent parser for [`Value`]s, bounded in depth by [`NPY_HEADER_DEPTH_MAX`].
struct Literal<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Literal<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.text.get(self.at).copied()
    }

    fn error(&self, what: &str) -> String {
        format!("header: {what} at byte {}", self.at)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, String> {
        if depth > NPY_HEADER_DEPTH_MAX {
            return Err(self.error("nesting too deep"));
        }
        match self.peek() {
            Some(quote @ (b'\'' | b'"')) => self.string(quote),
            Some(b'0'..=b'9') => Ok(Value::Int(self.digits())),
            Some(b'-') => {
                self.at += 1;
                match self.text.get(self.at) {
                    Some(b'0'..=b'9') => {
                        let magnitude = self.digits();
                        Ok(if magnitude == Some(0) {
                            Value::Int(Some(0))
                        } else {
                            Value::NegativeInt
                        })
                    }
                    _ => Err(self.error("expected a digit")),
                }
            }
            Some(b'(') => self.sequence(b')', depth),
            Some(b'[') => self.sequence(b']', depth),
            Some(b'{') => self.dict(depth),
            Some(b'A'..=b'Z' | b'a'..=b'z') => {
                let start = self.at;
                while let Some(b'A'..=b'Z' | b'a'..=b'z') = self.text.get(self.at) {
                    self.at += 1;
                }
                match &self.text[start..self.at] {
                    b"True" => Ok(Value::Bool(true)),
                    b"False" => Ok(Value::Bool(false)),
                    b"None" => Ok(Value::None),
                    _ => Err(self.error("unknown name")),
                }
            }
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn string(&mut self, quote: u8) -> Result<Value<'a>, String> {
        self.at += 1;
        let start = self.at;
        loop {
            match self.text.get(self.at) {
                Some(&c) if c == quote => {
                    let raw = &self.text[start..self.at];
                    self.at += 1;
                    return Ok(Value::Str(raw));
                }
                Some(b'\\') => self.at += 2,
                Some(b'\n') | None => return Err(self.error("unterminated string")),
                Some(_) => self.at += 1,
            }
        }
    }

    /// A run of decimal digits, `None` when its value is beyond `u64`.
    fn digits(&mut self) -> Option<u64> {
        let mut value = Some(0u64);
        while let Some(&c @ b'0'..=b'9') = self.text.get(self.at) {
            value = value
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(u64::from(c - b'0')));
            self.at += 1;
        }
        value
    }

    /// A tuple `( … )` or list `[ … ]`; `(x)` without a comma is just `x`, as in Python.
    fn sequence(&mut self, close: u8, depth: usize) -> Result<Value<'a>, String> {
        self.at += 1;
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            if self.peek() == Some(close) {
                self.at += 1;
                break;
            }
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    comma = true;
                }
                Some(c) if c == close => {}
                _ => return Err(self.error("expected a comma")),
            }
        }
        if close == b']' {
            return Ok(Value::List);
        }
        if items.len() == 1 && !comma {
            return Ok(items.pop().unwrap_or(Value::None));
        }
        Ok(Value::Tuple(items))
    }

    fn dict(&mut self, depth: usize) -> Result<Value<'a>, String> {
        self.at += 1;
        let mut entries = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.at += 1;
                return Ok(Value::Dict(entries));
            }
            let key = self.value(depth + 1)?;
            if self.peek() != Some(b':') {
                return Err(self.error("expected a colon"));
            }
            self.at += 1;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {}
                _ => return Err(self.error("expected a comma")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// .safetensors

fn compare_safetensors(a: &[u8], b: &[u8], tol: Tolerance) -> Result<Agreement, Disagreement> {
    let read =
        |bytes| SafeTensors::deserialize(bytes).map_err(|e| Problem::Unreadable(e.to_string()));
    let (file_a, file_b) = both(read(a), read(b))?;
    let mut names_a = file_a.names();
    let mut names_b = file_b.names();
    names_a.sort_unstable();
    names_b.sort_unstable();

    if names_a != names_b {
        let only = |these: &[&str], those: &[&str]| -> Vec<String> {
            these
                .iter()
                .filter(|n| those.binary_search(n).is_err())
                .map(|n| (*n).to_owned())
                .collect()
        };
        return Err(Disagreement::TensorsDiffer {
            only_in_a: only(&names_a, &names_b),
            only_in_b: only(&names_b, &names_a),
        });
    }
    let mut total = Agreement {
        elements: 0,
        max_abs_diff: 0.0,
    };
    for name in names_a {
        let (a, b) = both(st_tensor(&file_a, name), st_tensor(&file_b, name))?;
        let agreement = compare_tensor(name, &a, &b, tol)?;
        total.elements = total.elements.saturating_add(agreement.elements);
        total.max_abs_diff = total.max_abs_diff.max(agreement.max_abs_diff);
    }
    Ok(total)
}

/// One tensor of a safetensors file, which `SafeTensors::deserialize` has checked: its data is
/// as long as its shape and dtype say.
fn st_tensor<'a>(file: &SafeTensors<'a>, name: &str) -> Result<Tensor<'a>, Problem> {
    let view = file
        .tensor(name)
        .map_err(|e| Problem::Unreadable(e.to_string()))?;
    let kind = match view.dtype() {
        Dtype::BOOL => Kind::Bool,
        Dtype::I8 => Kind::I8,
        Dtype::I16 => Kind::I16,
        Dtype::I32 => Kind::I32,
        Dtype::I64 => Kind::I64,
        Dtype::U8 => Kind::U8,
        Dtype::U16 => Kind::U16,
        Dtype::U32 => Kind::U32,
        Dtype::U64 => Kind::U64,
        Dtype::F16 => Kind::F16,
        Dtype::BF16 => Kind::Bf16,
        Dtype::F32 => Kind::F32,
        Dtype::F64 => Kind::F64,
        other => return Err(Problem::Unsupported(other.to_string())),
    };
    let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
    let data = view.data();
    match sizes(&shape, kind) {
        Some((elements, data_bytes)) if data_bytes == data.len() => Ok(Tensor {
            kind,
            big_endian: false,
            fortran_order: false,
            shape,
            data,
            elements,
        }),
        _ => Err(Problem::Unreadable(format!(
            "tensor {name:?} has {} bytes of data, not what shape {shape:?} of {} needs",
            data.len(),
            kind.name()
        ))),
    }
}
