//! Pure checks shared by the ledger and the provider agent: the matrix-product challenges that
//! back a provider's hardware claims (`matrix`, `freivalds`, and the commitment with sampled
//! openings a chain checks them by: `commit`, `challenge`).
//!
//! A challenge is two `n × n` matrices of `i8` that anyone derives from a seed (block
//! randomness), whose product `C = A·B` (exact `i32` accumulation, the arithmetic GPUs' int8
//! tensor cores do) only a device with the claimed memory and throughput computes before its
//! deadline. A verifier checks a claimed `C` in O(n²) with Freivalds' algorithm, in exact
//! arithmetic modulo the prime 2⁶¹ − 1: a wrong product passes one round with probability at
//! most 2⁻⁶¹, and [`freivalds::ROUNDS`] rounds bring it under 2⁻¹²². A chain, which cannot
//! receive `C` or spend O(n²) in a block, checks instead a Merkle commitment to `C` and `k`
//! entries sampled after it ([`challenge`]): O(k·n), and a product with a fraction `f` of
//! wrong entries passes with probability at most `(1 − f)^k`. See
//! `docs/adr/0009-hardware-challenges-with-freivalds.md`.
//!
//! `tensors` (feature `tensors`, for the agent) compares two runs' output tensors (`.npy`, `.safetensors`) within a tolerance, for a
//! verifier provider judging a job that is not bit-deterministic; it runs off chain.
//!
//! Architecture Invariant: no I/O, clock, randomness of its own, floats, threads or hash-map
//! iteration — the ledger decides outcomes with these functions, so they must give every
//! validator the same answer. Randomness comes in as seeds. The one exception to "floats" is
//! `tensors`, whose tolerances are floating point; the ledger never calls it.
//!
//! Must never depend on: `ledger`, `store`, `node`, `agent`, `runtime`, any async or I/O crate.

#![forbid(unsafe_code)]
#![deny(clippy::float_arithmetic)]

pub mod challenge;
pub mod commit;
pub mod freivalds;
pub mod matrix;
#[cfg(feature = "tensors")]
pub mod tensors;

pub use challenge::{ChallengeError, check_openings, deadline_ms, samples, size_for};
pub use commit::{Opening, Tree};
pub use freivalds::{FreivaldsError, check_product};
pub use matrix::{MAX_N, Matrices, multiply, multiply_rows};
