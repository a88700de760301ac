//! Proof of life: while this provider runs workloads, one `Heartbeat` transaction every
//! `heartbeat_interval_blocks` lists every lease whose workload runs here. The chain pays a
//! lease only up to its last proof, and ends it `provider_lost` after `liveness_timeout_blocks`
//! without one (ADR 0005), so a provider that stops sending is stopped being paid — and a
//! provider cannot be paid for a workload it does not list.
//!
//! What is listed is decided by [`leases_to_prove`], a pure function of the lease records;
//! the loop around it only reads the clock and sends.

use std::sync::Arc;
use std::time::Duration;

use gpunet_client::NodeClient;
use gpunet_protocol::tx::MAX_HEARTBEAT_LEASES;
use gpunet_protocol::{LeaseId, Msg};

use crate::leases::Leases;
use crate::record::LeaseRecord;

/// Used when the node's parameters cannot be read: a heartbeat every 5 s.
pub const FALLBACK_INTERVAL: Duration = Duration::from_secs(5);
/// Never more often than this, whatever the block time.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Never less often than this.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// The leases a heartbeat proves: the live ones ([`crate::lifecycle::Phase::is_live`]) —
/// whose workload runs (or is paused by the chain, or is being stopped, or has just ended and
/// is being concluded) here, that wait for their manifest or are starting, or that are being
/// released — ascending, at most [`MAX_HEARTBEAT_LEASES`]. (The chain bills only running ones;
/// for the others it shows the provider is still there. A leaving provider's workloads are
/// proven through their exit grace, so none is taken for lost before it is released.) Not a
/// lease the chain has ended, nor one whose result is known: its result, when it lands, is its
/// last proof.
pub fn leases_to_prove(records: &[LeaseRecord]) -> Vec<LeaseId> {
    let mut ids: Vec<LeaseId> = records
        .iter()
        .filter(|r| r.is_live())
        .map(|r| r.lease)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(MAX_HEARTBEAT_LEASES);
    ids
}

/// The time between heartbeats: the chain's `heartbeat_interval_blocks` at its block time,
/// within [`MIN_INTERVAL`, `MAX_INTERVAL`].
pub fn interval(heartbeat_interval_blocks: u64, block_ms: u64) -> Duration {
    let ms = heartbeat_interval_blocks.saturating_mul(block_ms);
    Duration::from_millis(ms).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Reads the interval from the node, or falls back to [`FALLBACK_INTERVAL`].
pub async fn interval_from(client: &NodeClient) -> Duration {
    match (client.params().await, client.status().await) {
        (Ok(params), Ok(status)) => interval(params.heartbeat_interval_blocks, status.block_ms),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, interval = ?FALLBACK_INTERVAL, "cannot read the heartbeat interval; using the fallback");
            FALLBACK_INTERVAL
        }
    }
}

/// Sends a heartbeat every `every` while any lease runs here. Runs until aborted.
pub async fn run(client: Arc<NodeClient>, leases: Arc<Leases>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let records = leases.records();
        let proven = leases_to_prove(&records);
        if proven.is_empty() {
            continue;
        }
        let count = proven.len();
        match client.send(Msg::Heartbeat { leases: proven }).await {
            Ok(tx) => tracing::debug!(leases = count, %tx, "heartbeat sent"),
            Err(error) => {
                tracing::warn!(leases = count, %error, "heartbeat not sent; the next one retries")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Phase, Settle, StopCause};
    use gpunet_protocol::{Address, OrderId, Resources, WorkloadOutcome};

    fn record(id: u64, phase: Phase) -> LeaseRecord {
        let resources = Resources {
            cpu_millis: 1_000,
            memory_mib: 64,
            disk_mib: 64,
            gpu: Default::default(),
        };
        LeaseRecord::new(
            LeaseId(id),
            OrderId(id),
            Address([1; 32]),
            resources,
            vec![],
            phase,
        )
    }

    #[test]
    fn live_leases_the_chain_has_not_ended_are_proven_in_ascending_order() {
        let stopping = |why| Phase::Stopping {
            why,
            supervised: true,
        };
        let records = vec![
            record(7, Phase::Running),
            record(3, Phase::Running),
            record(4, Phase::AwaitingManifest),
            record(9, Phase::Starting),
            record(10, Phase::Started),
            record(11, Phase::Paused { supervised: true }),
            record(12, stopping(StopCause::Leaving)),
            record(13, Phase::Releasing),
            record(
                14,
                Phase::Concluding {
                    then: Settle::Release,
                },
            ),
            record(5, Phase::Ended),
            record(
                15,
                Phase::Reporting {
                    outcome: WorkloadOutcome::Succeeded,
                    detail: None,
                },
            ),
            // The chain ended them: an orphan being stopped and concluded is not proven.
            record(6, stopping(StopCause::LeaseEnded)),
            record(
                16,
                Phase::Concluding {
                    then: Settle::Nothing,
                },
            ),
        ];
        let proven: Vec<u64> = leases_to_prove(&records).iter().map(|l| l.0).collect();
        assert_eq!(proven, vec![3, 4, 7, 9, 10, 11, 12, 13, 14]);
    }

    #[test]
    fn a_heartbeat_never_lists_more_than_the_chain_accepts() {
        let records: Vec<_> = (0..(MAX_HEARTBEAT_LEASES as u64 + 10))
            .map(|i| record(i, Phase::Running))
            .collect();
        assert_eq!(leases_to_prove(&records).len(), MAX_HEARTBEAT_LEASES);
    }

    #[test]
    fn the_interval_follows_the_chain_within_bounds() {
        assert_eq!(interval(10, 500), Duration::from_secs(5));
        assert_eq!(interval(1, 10), MIN_INTERVAL);
        assert_eq!(interval(u64::MAX, u64::MAX), MAX_INTERVAL);
    }
}
