//! The measurements behind `gpunet bench`: each benchmark drives the real crates (ledger,
//! store, node) and returns its figures; the CLI parses arguments, shows progress and prints.
//!
//! Figures are written as JSON (see [`figures::write`]) so that docs/benchmarks.md can quote a
//! run and a later run can be compared with it. Ratios are only meaningful within one run.

pub mod e2e;
pub mod figures;
pub mod state;
