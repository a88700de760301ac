//! The measurements behind `gpunet bench`: each benchmark drives the real crates (ledger,
//! store, node, agent, runtime, the dev network) and returns its figures; the CLI parses
//! arguments, shows progress and prints.
//!
//! In this process: `ledger` (apply, commit and admission throughput), `state` (commit cost as
//! the state grows, a node's restart), `e2e` (a solo node's durable throughput over HTTP),
//! `submit` (submit-to-running latency on a dev network), `runtime` (container start against
//! `docker run`), `ingress` (the agent's ingress proxy beside a direct connection). With `gpunet` processes (the running executable must be `gpunet`, which
//! starts them as `gpunet node start` and `gpunet provider start`): `consensus` (finality and
//! throughput of a network of validators) and `churn` (jobs while providers are killed).
//!
//! Figures are written as JSON (see [`figures::write`]) so that docs/benchmarks.md can quote a
//! run and a later run can be compared with it. Ratios are only meaningful within one run.
//!
//! This crate never depends on the CLI: the dev network comes from `gpunet-devnet`, and the
//! benchmarks that run jobs are handed the CLI's way of submitting and following one
//! ([`SubmitAndFollow`]).

mod accounts;
pub mod churn;
pub mod consensus;
pub mod e2e;
pub mod figures;
pub mod ingress;
pub mod ledger;
pub mod runtime;
pub mod state;
pub mod submit;

use anyhow::Result;
use futures::future::BoxFuture;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::OrderId;
use gpunet_protocol::jobspec::JobSpec;

/// Where the benchmarks that start networks of processes (`consensus`, `churn`) look for free
/// ports on 127.0.0.1.
pub const BENCH_PORTS: std::ops::Range<u16> = 30_000..46_000;

/// A tenant's job submitted and followed to its end as `gpunet job submit --wait` does it. The
/// benchmarks that run jobs (`submit`, `churn`) are handed the CLI's own code for this, so they
/// time the path a user's job takes without this crate depending on the CLI.
pub trait SubmitAndFollow: Send + Sync {
    /// Submits `spec` through `client` signed by `tenant` and follows the job until it ends.
    fn submit_and_follow<'a>(
        &'a self,
        client: &'a NodeClient,
        tenant: &'a KeyFile,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<FollowedJob>>;
}

/// What following a job found, as far as the benchmarks look.
#[derive(Debug, Clone, Copy)]
pub struct FollowedJob {
    pub order: OrderId,
    /// Milliseconds from submitting to the lease running; `None` if it never ran.
    pub submit_to_running_ms: Option<u64>,
}
