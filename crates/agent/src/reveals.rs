//! Reveals for verified runs (ADR 0010): a run of a verified order reports a result tag, and
//! when the ledger asks (its tag matched an earlier run's), the provider must show the output
//! digest behind it within `reveal_window_blocks`, or the run is judged wrong and the stake
//! slashed.
//!
//! Which runs may owe one is [`awaiting`], a pure function of the records; the loop asks the
//! node about each (the order's verification view) once a heartbeat interval, reveals what is
//! owed, and settles a run once it revealed or the order no longer waits on it.

use std::sync::Arc;
use std::time::Duration;

use gpunet_client::NodeClient;
use gpunet_protocol::{LeaseId, Msg, WorkloadOutcome};

use crate::leases::Leases;
use crate::lifecycle::Phase;
use crate::record::LeaseRecord;

/// The runs that may still owe a reveal: verified, reported as succeeded, ended here, and not
/// settled.
pub fn awaiting(records: &[LeaseRecord]) -> Vec<LeaseId> {
    let mut ids: Vec<LeaseId> = records
        .iter()
        .filter(|r| {
            r.verified()
                && !r.reveal_settled
                && r.phase == Phase::Ended
                && r.outcome == Some(WorkloadOutcome::Succeeded)
        })
        .map(|r| r.lease)
        .collect();
    ids.sort_unstable();
    ids
}

/// What the order's comparison asks of the run of `lease`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Reveal now.
    Reveal,
    /// Not yet: the comparison still gathers runs, draws or waits.
    Wait,
    /// Nothing more: revealed, judged, or the order is done with this run.
    Settled,
}

/// Reads the order's verification view for the run of `lease`.
pub fn ask(order: &gpunet_api::node::OrderView, lease: LeaseId) -> Ask {
    let Some(v) = &order.verification else {
        return Ask::Settled;
    };
    let Some(run) = v.runs.iter().find(|r| r.lease == lease) else {
        // Not recorded as a run (it never reached the comparison).
        return Ask::Settled;
    };
    if run.revealed || run.wrong {
        return Ask::Settled;
    }
    match v.stage.as_str() {
        "revealing" if run.reveal_due => Ask::Reveal,
        "running" | "drawing" | "revealing" => {
            use gpunet_api::node::OrderState;
            if matches!(
                order.state,
                OrderState::Closed | OrderState::Expired | OrderState::Cancelled
            ) {
                Ask::Settled
            } else {
                Ask::Wait
            }
        }
        _ => Ask::Settled,
    }
}

/// Every `every`, reveals what the chain asks of this provider's verified runs. Runs until
/// aborted.
pub async fn run(client: Arc<NodeClient>, leases: Arc<Leases>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let records: Vec<LeaseRecord> = leases
            .ids()
            .into_iter()
            .filter_map(|id| leases.get(id))
            .collect();
        for lease in awaiting(&records) {
            let Some(record) = records.iter().find(|r| r.lease == lease) else {
                continue;
            };
            let order = match client.order(record.order).await {
                Ok(order) => order,
                Err(error) => {
                    tracing::debug!(%lease, %error, "cannot read the order of a verified run; retrying");
                    continue;
                }
            };
            match ask(&order, lease) {
                Ask::Wait => {}
                Ask::Settled => leases.settle_reveal(lease),
                Ask::Reveal => {
                    let msg = Msg::RevealDigest {
                        order: record.order,
                        lease,
                        digest: record.output_digest(),
                    };
                    match client.send(msg).await {
                        Ok(tx) => {
                            tracing::info!(%lease, %tx, "revealed the digest behind the run's tag");
                            leases.settle_reveal(lease);
                        }
                        Err(error) => {
                            tracing::warn!(%lease, %error, "reveal not sent; the next round retries")
                        }
                    }
                }
            }
        }
    }
}
