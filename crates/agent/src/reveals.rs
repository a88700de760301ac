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
        let records = leases.records();
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

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_api::node::{OrderState, RunView, VerificationView};
    use gpunet_protocol::{Address, Hash, OrderId, Resources, Verification, VerificationMode};

    fn record(id: u64, verified: bool, phase: Phase, outcome: WorkloadOutcome) -> LeaseRecord {
        let mut r = LeaseRecord::new(
            LeaseId(id),
            OrderId(id),
            Address([1; 32]),
            Resources::default(),
            vec![],
            phase,
        );
        let mut terms = crate::bidding::tests::terms();
        if verified {
            terms.verification = Verification {
                mode: VerificationMode::SpotCheck,
                ..Verification::NONE
            };
        }
        r.terms = Some(terms);
        r.outcome = Some(outcome);
        r
    }

    #[test]
    fn only_ended_successful_verified_runs_not_yet_settled_may_owe_a_reveal() {
        let mut settled = record(5, true, Phase::Ended, WorkloadOutcome::Succeeded);
        settled.reveal_settled = true;
        let records = vec![
            record(4, true, Phase::Ended, WorkloadOutcome::Succeeded),
            record(1, false, Phase::Ended, WorkloadOutcome::Succeeded),
            record(2, true, Phase::Ended, WorkloadOutcome::Failed),
            record(3, true, Phase::Running, WorkloadOutcome::Succeeded),
            settled,
        ];
        assert_eq!(awaiting(&records), vec![LeaseId(4)]);
    }

    #[test]
    fn a_run_reveals_only_when_its_order_asks_it_to() {
        let run = |lease: u64, reveal_due: bool, revealed: bool| RunView {
            lease: LeaseId(lease),
            provider: Address([1; 32]),
            tag: Hash([7; 32]),
            reveal_due,
            revealed,
            wrong: false,
        };
        let mut order = crate::bidding::tests::order(crate::bidding::tests::terms());
        order.state = OrderState::Verifying;
        order.verification = Some(VerificationView {
            stage: "revealing".to_owned(),
            needed: 2,
            until_height: Some(40),
            verifier: None,
            runs: vec![run(1, false, false), run(2, true, false)],
            outcome: None,
        });
        assert_eq!(ask(&order, LeaseId(2)), Ask::Reveal);
        // The first run of its tag owes nothing, but the order is not done with it.
        assert_eq!(ask(&order, LeaseId(1)), Ask::Wait);
        assert_eq!(ask(&order, LeaseId(9)), Ask::Settled);
        if let Some(v) = order.verification.as_mut() {
            v.runs[1].revealed = true;
        }
        assert_eq!(ask(&order, LeaseId(2)), Ask::Settled);
        order.state = OrderState::Closed;
        if let Some(v) = order.verification.as_mut() {
            v.stage = "running".to_owned();
        }
        assert_eq!(ask(&order, LeaseId(1)), Ask::Settled);
        order.verification = None;
        assert_eq!(ask(&order, LeaseId(1)), Ask::Settled);
    }
}
