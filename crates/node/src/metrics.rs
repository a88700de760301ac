//! Prometheus metrics of one node, served at `/metrics`.
//!
//! Each node owns its recorder rather than installing a process-wide one, so that several nodes
//! in one process (tests, `gpunet dev`) keep separate numbers and an embedding binary stays free
//! to install its own global recorder.

use std::sync::Arc;
use std::time::Duration;

use gpunet_protocol::{BlockOutcome, Rejection};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const BLOCKS_PRODUCED: &str = "gpunet_blocks_produced_total";
const HEIGHT: &str = "gpunet_height";
const TXS_APPLIED: &str = "gpunet_txs_applied_total";
const TXS_REJECTED: &str = "gpunet_txs_rejected_total";
const MEMPOOL_SIZE: &str = "gpunet_mempool_size";
const BLOCK_APPLY_SECONDS: &str = "gpunet_block_apply_seconds";
const BLOCK_COMMIT_SECONDS: &str = "gpunet_block_commit_seconds";
const ADMISSION_SECONDS: &str = "gpunet_tx_admission_seconds";
const PROPOSALS_REFUSED: &str = "gpunet_consensus_proposals_refused_total";

/// Bucket bounds of the block apply, block commit and admission time histograms, in seconds.
const APPLY_BUCKETS_SECONDS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Where a rejection happened: at admission or when a block applied.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    Mempool,
    Block,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Mempool => "mempool",
            Stage::Block => "block",
        }
    }
}

#[derive(Clone)]
pub(crate) struct NodeMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl NodeMetrics {
    pub(crate) fn new() -> NodeMetrics {
        let builder = PrometheusBuilder::new();
        // Setting fixed buckets only fails on an empty list.
        let builder = builder
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(BLOCK_APPLY_SECONDS.to_owned()),
                APPLY_BUCKETS_SECONDS,
            )
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(BLOCK_COMMIT_SECONDS.to_owned()),
                APPLY_BUCKETS_SECONDS,
            )
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(ADMISSION_SECONDS.to_owned()),
                APPLY_BUCKETS_SECONDS,
            )
            .expect("the bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let m = NodeMetrics {
            recorder: Arc::new(recorder),
            handle,
        };
        m.with(|| {
            metrics::describe_counter!(BLOCKS_PRODUCED, "Blocks this node committed.");
            metrics::describe_gauge!(HEIGHT, "Height of the last committed block.");
            metrics::describe_counter!(TXS_APPLIED, "Transactions applied in committed blocks.");
            metrics::describe_counter!(
                TXS_REJECTED,
                "Transactions rejected, by stage (mempool, block) and rejection name."
            );
            metrics::describe_gauge!(MEMPOOL_SIZE, "Transactions waiting in the mempool.");
            metrics::describe_counter!(
                PROPOSALS_REFUSED,
                "Blocks proposed by other validators that this node found invalid and voted nil on."
            );
            metrics::describe_histogram!(
                BLOCK_APPLY_SECONDS,
                metrics::Unit::Seconds,
                "Time to apply a block with the ledger and collect the entities it wrote."
            );
            metrics::describe_histogram!(
                BLOCK_COMMIT_SECONDS,
                metrics::Unit::Seconds,
                "Time to write a block, its entities and its Merkle tree version durably and compute its state root."
            );
            metrics::describe_histogram!(
                ADMISSION_SECONDS,
                metrics::Unit::Seconds,
                "Time to admit one submission (a transaction or a batch): decode, signature and checks."
            );
            metrics::counter!(BLOCKS_PRODUCED).absolute(0);
            metrics::counter!(TXS_APPLIED).absolute(0);
            metrics::counter!(PROPOSALS_REFUSED).absolute(0);
            metrics::gauge!(MEMPOOL_SIZE).set(0.0);
        });
        m
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    pub(crate) fn set_height(&self, height: u64) {
        // Heights stay far below 2^53, where f64 stops being exact.
        self.with(|| metrics::gauge!(HEIGHT).set(height as f64));
    }

    pub(crate) fn set_mempool_size(&self, size: usize) {
        self.with(|| metrics::gauge!(MEMPOOL_SIZE).set(size as f64));
    }

    pub(crate) fn observe_apply(&self, took: Duration) {
        self.with(|| metrics::histogram!(BLOCK_APPLY_SECONDS).record(took.as_secs_f64()));
    }

    pub(crate) fn observe_commit(&self, took: Duration) {
        self.with(|| metrics::histogram!(BLOCK_COMMIT_SECONDS).record(took.as_secs_f64()));
    }

    pub(crate) fn observe_admission(&self, took: Duration) {
        self.with(|| metrics::histogram!(ADMISSION_SECONDS).record(took.as_secs_f64()));
    }

    /// A proposal from another validator was invalid; this node voted nil.
    pub(crate) fn proposal_refused(&self) {
        self.with(|| metrics::counter!(PROPOSALS_REFUSED).increment(1));
    }

    pub(crate) fn rejected(&self, stage: Stage, rejection: Rejection) {
        self.with(|| {
            metrics::counter!(TXS_REJECTED, "stage" => stage.as_str(), "rejection" => rejection.name())
                .increment(1)
        });
    }

    pub(crate) fn record_block(&self, height: u64, outcome: &BlockOutcome) {
        let applied = outcome
            .receipts
            .iter()
            .filter(|r| r.rejection.is_none())
            .count() as u64;
        self.with(|| {
            metrics::counter!(BLOCKS_PRODUCED).increment(1);
            metrics::counter!(TXS_APPLIED).increment(applied);
        });
        for r in &outcome.receipts {
            if let Some(rejection) = r.rejection {
                self.rejected(Stage::Block, rejection);
            }
        }
        self.set_height(height);
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }
}
