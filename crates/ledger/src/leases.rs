//! Leases: created by the auction, started by the provider, billed every block from escrow at
//! the lease price for the block's duration, and ended — by completion, cancellation, escrow
//! running out, the max duration, or a provider that never started — with the unused escrow
//! returned to the tenant.
//!
//! Billing is cumulative, not incremental: after every block a running lease has been paid
//! exactly `floor(price × billed_ms ÷ 3 600 000)` and the fee is exactly
//! `floor(paid × fee_bps ÷ 10 000)`, so rounding never drifts however many blocks pass.

use gpunet_protocol::{
    Address, Amount, Denom, Event, LeaseEndReason, LeaseId, LeaseResult, OrderId, Rejection,
    WorkloadOutcome,
};

use crate::State;
use crate::accounts::credit;
use crate::state::{Lease, LeaseStatus, OrderStatus};

const MS_PER_HOUR: u64 = 3_600_000;
const BPS: u64 = 10_000;
/// Longest failure detail a provider may attach, in bytes.
const MAX_DETAIL_BYTES: usize = gpunet_protocol::tx::MAX_RESULT_DETAIL_BYTES;

pub(crate) fn create_lease(
    state: &mut State,
    order_id: OrderId,
    provider: Address,
    price: Amount,
    gpu_slots: Vec<u32>,
    events: &mut Vec<Event>,
) {
    let Some(order) = state.orders.get_mut(&order_id) else {
        return;
    };
    let id = LeaseId(state.next_lease_id);
    state.next_lease_id += 1;
    order.status = OrderStatus::Leased { lease: id };
    order.bids.clear();
    let tenant = order.tenant;
    let lease = Lease {
        id,
        order: order_id,
        tenant,
        provider,
        price_per_hour: price,
        resources: order.terms.resources.clone(),
        gpu_slots,
        created_height: state.height,
        created_ms: state.time_ms,
        started_ms: None,
        ended_ms: None,
        status: LeaseStatus::Pending,
        billed_ms: 0,
        paid: Amount::ZERO,
        fee: Amount::ZERO,
        refund: Amount::ZERO,
        result: None,
    };
    state.open_orders.remove(&order_id);
    state.leases.insert(id, lease);
    state.live_leases.insert(id);
    if let Some(p) = state.providers.get_mut(&provider) {
        p.live_leases.insert(id);
    }
    events.push(Event::LeaseCreated {
        lease: id,
        order: order_id,
        tenant,
        provider,
        price_per_hour: price,
    });
}

fn live_lease_of<'a>(
    state: &'a State,
    signer: &Address,
    id: LeaseId,
) -> Result<&'a Lease, Rejection> {
    let lease = state.leases.get(&id).ok_or(Rejection::LeaseNotFound)?;
    if lease.provider != *signer {
        return Err(Rejection::NotLeaseProvider);
    }
    if !lease.is_live() {
        return Err(Rejection::LeaseNotLive);
    }
    Ok(lease)
}

pub(crate) fn check_start(state: &State, signer: &Address, id: LeaseId) -> Result<(), Rejection> {
    let lease = live_lease_of(state, signer, id)?;
    if lease.status != LeaseStatus::Pending {
        return Err(Rejection::LeaseNotPending);
    }
    Ok(())
}

pub(crate) fn start(state: &mut State, id: LeaseId, events: &mut Vec<Event>) {
    let now = state.time_ms;
    if let Some(l) = state.leases.get_mut(&id) {
        l.status = LeaseStatus::Running;
        l.started_ms = Some(now);
        events.push(Event::LeaseStarted {
            lease: id,
            order: l.order,
        });
    }
}

pub(crate) fn check_complete(
    state: &State,
    signer: &Address,
    id: LeaseId,
    result: &LeaseResult,
) -> Result<(), Rejection> {
    let lease = live_lease_of(state, signer, id)?;
    if result.detail.len() > MAX_DETAIL_BYTES {
        return Err(Rejection::ResultInvalid);
    }
    let never_ran = matches!(
        result.outcome,
        WorkloadOutcome::ManifestRejected
            | WorkloadOutcome::ImageUnavailable
            | WorkloadOutcome::StartFailed
    );
    // A provider cannot claim a run (and a track record) for a lease it never started.
    if lease.status == LeaseStatus::Pending && !never_ran {
        return Err(Rejection::LeaseNotStarted);
    }
    Ok(())
}

pub(crate) fn complete(
    state: &mut State,
    id: LeaseId,
    result: LeaseResult,
    events: &mut Vec<Event>,
) {
    let reason = LeaseEndReason::from_outcome(result.outcome);
    let succeeded = result.outcome == WorkloadOutcome::Succeeded;
    if let Some(l) = state.leases.get_mut(&id) {
        l.result = Some(result);
        let provider = l.provider;
        if let Some(p) = state.providers.get_mut(&provider) {
            if succeeded {
                p.leases_completed = p.leases_completed.saturating_add(1);
            } else {
                p.leases_failed = p.leases_failed.saturating_add(1);
            }
        }
    }
    settle_and_end(state, id, reason, events);
}

/// Pays a running lease up to the current block time (capped by its max duration and its
/// escrow). Returns whether the escrow ran out and whether the max duration was reached.
fn settle(state: &mut State, id: LeaseId) -> (bool, bool) {
    let now = state.time_ms;
    let fee_bps = u64::from(state.params.protocol_fee_bps);
    let Some(lease) = state.leases.get(&id) else {
        return (false, false);
    };
    let (Some(started), LeaseStatus::Running) = (lease.started_ms, lease.status) else {
        return (false, false);
    };
    let Some(order) = state.orders.get(&lease.order) else {
        return (false, false);
    };
    let max_ms = order.terms.max_duration_secs.saturating_mul(1_000);
    let billed_ms = now.saturating_sub(started).min(max_ms);
    let owed = lease
        .price_per_hour
        .mul_div_floor(billed_ms, MS_PER_HOUR)
        .unwrap_or(Amount::MAX);
    let due = owed.saturating_sub(lease.paid);
    let exhausted = (due >= order.escrow && !due.is_zero()) || order.escrow.is_zero();
    let pay = due.min(order.escrow);
    let paid = lease
        .paid
        .checked_add(pay)
        .expect("paid never exceeds the deposit, which fits in u64");
    let fee_total = paid
        .mul_div_floor(fee_bps, BPS)
        .expect("fee is a fraction of paid, so it fits");
    let fee = fee_total.saturating_sub(lease.fee);
    let to_provider = pay
        .checked_sub(fee)
        .expect("cumulative fee rounding down keeps each block's fee within its payment");
    let provider = lease.provider;
    let order_id = lease.order;
    let price = lease.price_per_hour;

    if let Some(o) = state.orders.get_mut(&order_id) {
        o.escrow = o.escrow.saturating_sub(pay);
    }
    // When escrow caps the payment, report only the time the payment covers (rounded down),
    // not the wall time the lease ran past its money.
    let billed_ms = if pay < due {
        let covered =
            u128::from(paid.micros()) * u128::from(MS_PER_HOUR) / u128::from(price.micros().max(1));
        u64::try_from(covered).unwrap_or(billed_ms).min(billed_ms)
    } else {
        billed_ms
    };
    if let Some(l) = state.leases.get_mut(&id) {
        l.billed_ms = billed_ms;
        l.paid = paid;
        l.fee = fee_total;
    }
    credit(state, provider, Denom::Usd, to_provider);
    let t = state.treasury.get_mut(Denom::Usd);
    *t = t
        .checked_add(fee)
        .expect("the treasury never exceeds the minted supply");
    (exhausted, billed_ms >= max_ms)
}

/// Settles a live lease up to now, ends it with `reason`, and returns the unused escrow.
pub(crate) fn settle_and_end(
    state: &mut State,
    id: LeaseId,
    reason: LeaseEndReason,
    events: &mut Vec<Event>,
) {
    settle(state, id);
    let now = state.time_ms;
    let Some(lease) = state.leases.get_mut(&id) else {
        return;
    };
    if !lease.is_live() {
        return;
    }
    lease.status = LeaseStatus::Ended { reason };
    lease.ended_ms = Some(now);
    let (order_id, provider, tenant) = (lease.order, lease.provider, lease.tenant);
    let (billed_ms, paid, fee) = (lease.billed_ms, lease.paid, lease.fee);
    let refund = match state.orders.get_mut(&order_id) {
        Some(o) => {
            let r = o.escrow;
            o.escrow = Amount::ZERO;
            o.status = OrderStatus::Closed { lease: id };
            r
        }
        None => Amount::ZERO,
    };
    if let Some(l) = state.leases.get_mut(&id) {
        l.refund = refund;
    }
    state.live_leases.remove(&id);
    if let Some(p) = state.providers.get_mut(&provider) {
        p.live_leases.remove(&id);
    }
    credit(state, tenant, Denom::Usd, refund);
    events.push(Event::LeaseEnded {
        lease: id,
        order: order_id,
        reason,
        billed_ms,
        paid,
        fee,
        refund,
    });
}

/// End of block: bill every running lease, end those whose escrow or duration ran out, and end
/// pending leases whose provider did not start them in time.
pub(crate) fn settle_all(state: &mut State, events: &mut Vec<Event>) {
    let height = state.height;
    let timeout = state.params.start_timeout_blocks;
    let live: Vec<LeaseId> = state.live_leases.iter().copied().collect();
    for id in live {
        let Some(lease) = state.leases.get(&id) else {
            continue;
        };
        match lease.status {
            LeaseStatus::Running => {
                let (exhausted, max_reached) = settle(state, id);
                if exhausted {
                    settle_and_end(state, id, LeaseEndReason::EscrowExhausted, events);
                } else if max_reached {
                    settle_and_end(state, id, LeaseEndReason::MaxDurationReached, events);
                }
            }
            LeaseStatus::Pending if height >= lease.created_height.saturating_add(timeout) => {
                let provider = lease.provider;
                if let Some(p) = state.providers.get_mut(&provider) {
                    p.leases_failed = p.leases_failed.saturating_add(1);
                }
                settle_and_end(state, id, LeaseEndReason::StartTimeout, events);
            }
            _ => {}
        }
    }
}
