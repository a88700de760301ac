//! Leases: created by the auction, started by the provider, kept alive by its heartbeats,
//! billed every block from escrow at the lease price for the running time its provider has
//! proven, and ended — by completion, cancellation, a lost or leaving provider, the escrow
//! running out past the pause grace, the max duration, or a provider that never started —
//! with the unused escrow returned to the tenant, or kept for the next attempt when the
//! order's recovery policy retries it.
//!
//! Billing is cumulative, not incremental: after every block a lease has been paid exactly
//! `floor(price × billed_ms ÷ 3 600 000)` and the fee is exactly
//! `floor(paid × fee_bps ÷ 10 000)`, so rounding never drifts however many blocks pass.
//! `billed_ms` never exceeds [`Lease::proven_ms`]: no tenant pays for time after the
//! provider's last proof of life (ADR 0005).
//!
//! Settlement visits only the leases in [`State::due_leases`], not every live lease. Because
//! billing stops at the last proof of life, a running lease's bill changes only when that proof
//! or its escrow changes; everything else a visit does happens at a height its rules name
//! ([`rule_due`]). So a lease is marked for the end of the block by each transaction that
//! changes what its next visit would do — [`start`], a [`heartbeat`] listing it, a [`top_up`] of
//! its order (which also resumes a paused one and re-arms `escrow_low`) — at its first deadline
//! when it is created, and after every visit at its next rule height. A visit with nothing due
//! pays nothing and changes nothing, so a superset of the due leases (a restart marks them all)
//! goes exactly the way the full scan went.

use gpunet_protocol::tx::MAX_HEARTBEAT_LEASES;
use gpunet_protocol::{
    Address, Amount, Denom, Event, LeaseEndReason, LeaseId, LeaseResult, OrderId, Rejection,
    WorkloadOutcome,
};

use crate::accounts::{check_can_pay, credit, debit};
use crate::checks::Next;
use crate::state::{Lease, LeaseStatus, OrderStatus};
use crate::{Params, State};

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
    order.attempts.push(id);
    let attempt = u32::try_from(order.attempts.len()).unwrap_or(u32::MAX);
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
        attempt,
        last_proof_ms: state.time_ms,
        last_proof_height: state.height,
        accrued_ms: 0,
        segment_start_ms: state.time_ms,
        warned_low: false,
        billed_ms: 0,
        paid: Amount::ZERO,
        fee: Amount::ZERO,
        refund: Amount::ZERO,
        result: None,
        endpoints: Vec::new(),
    };
    state.open_orders.remove(&order_id);
    state.leases.insert(id, lease);
    state.live_leases.insert(id);
    if let Some(at) = state
        .leases
        .get(&id)
        .and_then(|l| rule_due(&state.params, l))
    {
        state.due_leases.mark(at, id);
    }
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

/// Why a lease the state lacks is refused: it ended (and left for history), or never was.
fn missing_lease(state: &State, id: LeaseId) -> Rejection {
    if state.lease_ended(id) {
        Rejection::LeaseNotLive
    } else {
        Rejection::LeaseNotFound
    }
}

fn live_lease_of<'a>(
    state: &'a State,
    signer: &Address,
    id: LeaseId,
) -> Result<&'a Lease, Rejection> {
    let Some(lease) = state.leases.get(&id) else {
        return Err(missing_lease(state, id));
    };
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

pub(crate) fn check_endpoints(
    state: &State,
    signer: &Address,
    id: LeaseId,
    endpoints: &[String],
) -> Result<(), Rejection> {
    live_lease_of(state, signer, id)?;
    if !gpunet_protocol::tx::endpoints_valid(endpoints) {
        return Err(Rejection::EndpointsInvalid);
    }
    Ok(())
}

pub(crate) fn publish_endpoints(state: &mut State, id: LeaseId, endpoints: Vec<String>) {
    if let Some(l) = state.leases.get_mut(&id) {
        l.endpoints = endpoints;
    }
}

pub(crate) fn start(state: &mut State, id: LeaseId, events: &mut Vec<Event>) {
    let (now, height) = (state.time_ms, state.height);
    // Running from now: billed from this block's end, its liveness clock restarted.
    due_now(state, id);
    if let Some(l) = state.leases.get_mut(&id) {
        l.status = LeaseStatus::Running;
        l.started_ms = Some(now);
        l.segment_start_ms = now;
        l.last_proof_ms = now;
        l.last_proof_height = height;
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
    crate::checks::check_tag(
        state,
        lease,
        result.outcome == WorkloadOutcome::Succeeded,
        result.output_digest,
    )
}

pub(crate) fn complete(
    state: &mut State,
    id: LeaseId,
    result: LeaseResult,
    events: &mut Vec<Event>,
) {
    let reason = LeaseEndReason::from_outcome(result.outcome);
    let succeeded = result.outcome == WorkloadOutcome::Succeeded;
    // It ends here: its pending mark (at the height its last proof names) goes first.
    forget_due(state, id);
    // A provider reporting that it lost the workload proves nothing ran since its last proof.
    if result.outcome != WorkloadOutcome::Lost {
        prove_alive(state, id);
    }
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

/// The provider's transaction about a running lease proves it alive at this block.
fn prove_alive(state: &mut State, id: LeaseId) {
    let (now, height) = (state.time_ms, state.height);
    if let Some(l) = state.leases.get_mut(&id)
        && l.status == LeaseStatus::Running
    {
        l.last_proof_ms = now;
        l.last_proof_height = height;
    }
}

/// The first height at which the end-of-block rules have something to do for `lease` if no
/// transaction touches it before: a running lease's provider counting as silent (billing between
/// proofs changes nothing, see the module doc; `escrow_low` depends on the escrow alone, which
/// only a top-up or this lease's own settlement changes), the end of a pause's grace, a pending
/// lease's provider counting as silent or its start timing out. `None` once it ended.
///
/// A live lease after the end of block `h` always has this above `h`: at this height its visit
/// would have ended it or moved it on.
pub(crate) fn rule_due(params: &Params, lease: &Lease) -> Option<u64> {
    let silent_at = lease
        .last_proof_height
        .saturating_add(params.liveness_timeout_blocks)
        .saturating_add(1);
    match lease.status {
        LeaseStatus::Running => Some(silent_at),
        LeaseStatus::Paused { since_height } => {
            Some(since_height.saturating_add(params.pause_grace_blocks))
        }
        LeaseStatus::Pending => Some(
            silent_at.min(
                lease
                    .created_height
                    .saturating_add(params.start_timeout_blocks),
            ),
        ),
        LeaseStatus::Ended { .. } => None,
    }
}

/// Before a transaction changes what the next visit of live lease `id` would do: marks it for
/// this block's end (whose visit marks its next rule height) and drops its mark at the rule
/// height its fields name now, which the change may make wrong. Call it *before* the change.
fn due_now(state: &mut State, id: LeaseId) {
    if state.leases.get(&id).is_some_and(Lease::is_live) {
        forget_due(state, id);
        state.due_leases.mark(state.height, id);
    }
}

/// Drops the mark of live lease `id` at the rule height its fields name now: for a lease about
/// to end, or (with a mark at this block's end) about to change. Call it *before* the change.
fn forget_due(state: &mut State, id: LeaseId) {
    if let Some(at) = state
        .leases
        .get(&id)
        .and_then(|l| rule_due(&state.params, l))
    {
        state.due_leases.unmark(at, id);
    }
}

/// What one settlement found.
struct Settled {
    /// The escrow could not pay everything due (or is empty).
    exhausted: bool,
    max_reached: bool,
}

/// Pays a running lease for its proven running time (capped by its max duration and its
/// escrow).
fn settle(state: &mut State, id: LeaseId) -> Settled {
    let none = Settled {
        exhausted: false,
        max_reached: false,
    };
    let fee_bps = u64::from(state.params.protocol_fee_bps);
    let Some(lease) = state.leases.get(&id) else {
        return none;
    };
    if lease.status != LeaseStatus::Running {
        return none;
    }
    let Some(order) = state.orders.get(&lease.order) else {
        return none;
    };
    let max_ms = order.terms.max_duration_secs.saturating_mul(1_000);
    let billable_ms = lease.proven_ms().min(max_ms);
    let owed = lease
        .price_per_hour
        .mul_div_floor(billable_ms, MS_PER_HOUR)
        .unwrap_or(Amount::MAX);
    let due = owed.saturating_sub(lease.paid);
    let exhausted = (due >= order.escrow && !due.is_zero()) || order.escrow.is_zero();
    let pay = due.min(order.escrow);
    let paid = lease
        .paid
        .checked_add(pay)
        .expect("paid never exceeds the deposits, which fit in u64");
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
    // When escrow caps the payment, report only the time the payment covers, not the time the
    // lease ran past its money. Rounded up, so the price of the reported time is never below
    // what was paid (and never past the billable time, which cost more than was paid).
    let billed_ms = if pay < due {
        let covered = (u128::from(paid.micros()) * u128::from(MS_PER_HOUR))
            .div_ceil(u128::from(price.micros().max(1)));
        u64::try_from(covered)
            .unwrap_or(billable_ms)
            .min(billable_ms)
    } else {
        billable_ms
    };
    if let Some(l) = state.leases.get_mut(&id) {
        l.billed_ms = l.billed_ms.max(billed_ms);
        l.paid = paid;
        l.fee = fee_total;
    }
    credit(state, provider, Denom::Usd, to_provider);
    let t = state.treasury.get_mut(Denom::Usd);
    *t = t
        .checked_add(fee)
        .expect("the treasury never exceeds the minted supply");
    Settled {
        exhausted,
        max_reached: billed_ms >= max_ms,
    }
}

/// Whether the order's recovery policy retries an attempt that ended with `reason`.
fn retried(state: &State, lease: &Lease, reason: LeaseEndReason) -> bool {
    let Some(order) = state.orders.get(&lease.order) else {
        return false;
    };
    let policy = &order.terms.recovery;
    let exit_code = lease.result.as_ref().and_then(|r| r.exit_code);
    let retryable = match reason {
        LeaseEndReason::ProviderLost
        | LeaseEndReason::ProviderLeft
        | LeaseEndReason::StartTimeout
        | LeaseEndReason::StartFailed => true,
        LeaseEndReason::WorkloadFailed | LeaseEndReason::OutOfMemory => {
            exit_code.is_some_and(|c| policy.on_exit_codes.contains(&c))
        }
        _ => false,
    };
    // The runs of a verified order that succeeded are not failed attempts.
    let failed_attempts = order
        .attempts
        .len()
        .saturating_sub(order.verifying.runs.len());
    let attempts_left = (failed_attempts as u64) < u64::from(policy.max_attempts);
    retryable && attempts_left && !order.escrow.is_zero()
}

/// Settles a live lease up to its last proof of life, ends it with `reason`, and either
/// reopens its order for another attempt (escrow kept) or closes it and returns the unused
/// escrow.
pub(crate) fn settle_and_end(
    state: &mut State,
    id: LeaseId,
    reason: LeaseEndReason,
    events: &mut Vec<Event>,
) {
    settle(state, id);
    let (now, height) = (state.time_ms, state.height);
    let Some(lease) = state.leases.get(&id) else {
        return;
    };
    if !lease.is_live() {
        return;
    }
    let retry = retried(state, lease, reason);
    crate::uptime::record_end(state, id, reason);
    // An ended lease has nothing due: its pending mark would only cost a visit.
    forget_due(state, id);
    // A successful run of a verified order goes on to the comparison (ADR 0010).
    let next = crate::checks::run_ended(state, id, reason);
    let Some(lease) = state.leases.get_mut(&id) else {
        return;
    };
    // Fold the running segment in, so the proven time stays what it was after the end.
    lease.accrued_ms = lease.proven_ms();
    lease.status = LeaseStatus::Ended { reason };
    lease.ended_ms = Some(now);
    let (order_id, provider, tenant) = (lease.order, lease.provider, lease.tenant);
    let (billed_ms, paid, fee) = (lease.billed_ms, lease.paid, lease.fee);
    let mut reopened = None;
    let mut next_run = false;
    let mut abandoned = false;
    let refund = match state.orders.get_mut(&order_id) {
        Some(_) if matches!(next, Next::AnotherRun) => {
            next_run = true;
            Amount::ZERO
        }
        Some(o) if matches!(next, Next::Wait) => {
            o.status = OrderStatus::Verifying;
            Amount::ZERO
        }
        Some(o) if retry => {
            o.status = OrderStatus::Open;
            o.bids.clear();
            o.open_since_height = height;
            let backoff_ms = o.terms.recovery.backoff_secs.saturating_mul(1_000);
            o.not_before_ms = now.saturating_add(backoff_ms);
            if let Err(at) = o.excluded.binary_search(&provider) {
                o.excluded.insert(at, provider);
            }
            let attempt = u32::try_from(o.attempts.len())
                .unwrap_or(u32::MAX)
                .saturating_add(1);
            reopened = Some((attempt, o.not_before_ms));
            Amount::ZERO
        }
        Some(o) => {
            let r = o.escrow;
            o.escrow = Amount::ZERO;
            o.status = OrderStatus::Closed { lease: id };
            abandoned = !o.verifying.runs.is_empty();
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
    if abandoned {
        crate::checks::abandon(state, order_id, events);
    }
    if next_run {
        crate::checks::reopen_for_run(state, order_id);
    }
    if matches!(next, Next::Wait) {
        crate::checks::begin_reveals(state, order_id, events);
    }
    if let Some((attempt, not_before_ms)) = reopened {
        state.open_orders.insert(order_id);
        state.due_orders.mark(state.height, order_id);
        events.push(Event::OrderReopened {
            order: order_id,
            after_lease: id,
            attempt,
            excluded: provider,
            not_before_ms,
        });
    }
}

/// A lease its provider lost or never started: a failure, and evidence against its liveness.
fn count_failure(state: &mut State, provider: Address) {
    if let Some(p) = state.providers.get_mut(&provider) {
        p.leases_failed = p.leases_failed.saturating_add(1);
    }
    crate::trust::record(state, &provider, crate::trust::Evidence::Lost);
}

/// End of block: bill every running lease for its proven time; end those whose provider went
/// silent or whose max duration passed; pause those whose escrow ran out and end those paused
/// past the grace; warn when the escrow runs low; end pending leases their provider did not
/// start in time.
///
/// Only the leases that are due (see [`crate::state::DueLeases`]) are visited, in lease id
/// order, each then marked at its next rule height ([`rule_due`]). A live lease that no
/// transaction touched since its last visit has nothing due before that height, so visiting it
/// would leave it as it is, and the outcome — events and their order, money, statuses — is that
/// of a visit of every live lease:
/// - running: its last visit paid all its proven time owed (an escrow that could not was
///   exhausted, and the lease paused or ended), so it owes nothing until a new proof; the escrow
///   left is not zero (else exhausted); the max duration is measured on the same proven time;
///   `escrow_low` reads only the escrow and `warned_low`, as they were when that visit checked
///   them — it does not depend on block time, so it needs no mark of its own. Only silence
///   comes with height: at `last_proof_height + liveness_timeout_blocks + 1`.
/// - paused: only the end of its grace, at `since_height + pause_grace_blocks`.
/// - pending: its provider's silence or the start timeout, whichever comes first.
///
/// What changes that between visits marks the lease for this block's end: [`start`], a
/// [`heartbeat`] (a proof), a [`top_up`] (the escrow, `warned_low`, a resume). Completion,
/// release and cancellation end the lease on the spot; the params are fixed at genesis; nothing
/// else writes a live lease or its order's escrow. A lease visited with nothing due — a
/// restart's marks, a top-up of a pending lease — is settled for nothing and left as it was.
pub(crate) fn settle_all(state: &mut State, events: &mut Vec<Event>) {
    let height = state.height;
    let timeout = state.params.start_timeout_blocks;
    let liveness = state.params.liveness_timeout_blocks;
    let grace = state.params.pause_grace_blocks;
    let due = state.due_leases.take_due(height);
    for id in due {
        if !state.live_leases.contains(&id) {
            continue;
        }
        // The mark at the rule height the lease's fields name now: taken if due, else dropped
        // here (the visit, should it leave the lease live, marks the height it names then).
        forget_due(state, id);
        let Some(lease) = state.leases.get(&id) else {
            continue;
        };
        let provider = lease.provider;
        match lease.status {
            LeaseStatus::Running => {
                let silent = height > lease.last_proof_height.saturating_add(liveness);
                let settled = settle(state, id);
                if silent {
                    count_failure(state, provider);
                    settle_and_end(state, id, LeaseEndReason::ProviderLost, events);
                } else if settled.max_reached {
                    settle_and_end(state, id, LeaseEndReason::MaxDurationReached, events);
                } else if settled.exhausted {
                    pause(state, id, events);
                } else {
                    warn_if_low(state, id, events);
                }
            }
            LeaseStatus::Paused { since_height }
                if height >= since_height.saturating_add(grace) =>
            {
                settle_and_end(state, id, LeaseEndReason::InsufficientFunds, events);
            }
            // A provider that won the lease and went silent before starting it.
            LeaseStatus::Pending if height > lease.last_proof_height.saturating_add(liveness) => {
                count_failure(state, provider);
                settle_and_end(state, id, LeaseEndReason::ProviderLost, events);
            }
            LeaseStatus::Pending if height >= lease.created_height.saturating_add(timeout) => {
                count_failure(state, provider);
                settle_and_end(state, id, LeaseEndReason::StartTimeout, events);
            }
            _ => {}
        }
        // Still live: its next rule height lies above this one, since the visit just applied
        // its rules. The `max` only guards that: a mark at the next block would cost a visit,
        // never change an outcome.
        if let Some(at) = state
            .leases
            .get(&id)
            .and_then(|l| rule_due(&state.params, l))
        {
            state.due_leases.mark(at.max(height.saturating_add(1)), id);
        }
    }
}

/// The escrow is empty: stop billing and tell the provider to stop the workload (keeping it),
/// or end the lease at once when there is no grace.
fn pause(state: &mut State, id: LeaseId, events: &mut Vec<Event>) {
    let height = state.height;
    let grace = state.params.pause_grace_blocks;
    if grace == 0 {
        settle_and_end(state, id, LeaseEndReason::InsufficientFunds, events);
        return;
    }
    if let Some(l) = state.leases.get_mut(&id) {
        // The closed segment counts only what the escrow paid for.
        l.accrued_ms = l.billed_ms;
        l.status = LeaseStatus::Paused {
            since_height: height,
        };
        events.push(Event::LeasePaused {
            lease: id,
            order: l.order,
            grace_until_height: height.saturating_add(grace),
        });
    }
}

/// Sends `escrow_low` once when the escrow pays for less than `escrow_warning_secs` more.
fn warn_if_low(state: &mut State, id: LeaseId, events: &mut Vec<Event>) {
    let warning_ms = state.params.escrow_warning_secs.saturating_mul(1_000);
    let Some(lease) = state.leases.get(&id) else {
        return;
    };
    if lease.warned_low || lease.price_per_hour.is_zero() {
        return;
    }
    let Some(order) = state.orders.get(&lease.order) else {
        return;
    };
    let remaining = u128::from(order.escrow.micros()) * u128::from(MS_PER_HOUR)
        / u128::from(lease.price_per_hour.micros());
    let remaining_ms = u64::try_from(remaining).unwrap_or(u64::MAX);
    if remaining_ms >= warning_ms {
        return;
    }
    let (order_id, escrow) = (order.id, order.escrow);
    if let Some(l) = state.leases.get_mut(&id) {
        l.warned_low = true;
    }
    events.push(Event::EscrowLow {
        order: order_id,
        lease: id,
        escrow,
        remaining_ms,
    });
}

pub(crate) fn check_heartbeat(
    state: &State,
    signer: &Address,
    leases: &[LeaseId],
) -> Result<(), Rejection> {
    if !state.providers.contains_key(signer) {
        return Err(Rejection::ProviderNotRegistered);
    }
    if leases.len() > MAX_HEARTBEAT_LEASES || leases.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Rejection::HeartbeatInvalid);
    }
    for id in leases {
        // A lease that ended is passed over (the heartbeat raced its end), whoever ran it.
        let Some(lease) = state.leases.get(id) else {
            if state.lease_ended(*id) {
                continue;
            }
            return Err(Rejection::LeaseNotFound);
        };
        if lease.provider != *signer {
            return Err(Rejection::NotLeaseProvider);
        }
    }
    Ok(())
}

/// Records the provider alive and each listed live lease proven running at this block. A
/// lease that ended meanwhile is passed over (the heartbeat raced its end).
pub(crate) fn heartbeat(state: &mut State, signer: Address, leases: &[LeaseId]) {
    let height = state.height;
    if let Some(p) = state.providers.get_mut(&signer) {
        p.last_heartbeat_height = height;
    }
    for id in leases {
        // A proof moves a running lease's bill and every live lease's liveness deadline.
        due_now(state, *id);
        prove_alive(state, *id);
        // A pending (waiting for its manifest) or paused lease is not billed: the heartbeat
        // only shows its provider is still there.
        if let Some(l) = state.leases.get_mut(id)
            && matches!(l.status, LeaseStatus::Pending | LeaseStatus::Paused { .. })
        {
            l.last_proof_height = height;
        }
    }
}

pub(crate) fn check_top_up(
    state: &State,
    signer: &Address,
    fee: Amount,
    order_id: OrderId,
    amount: Amount,
) -> Result<(), Rejection> {
    if amount.is_zero() {
        return Err(Rejection::ZeroAmount);
    }
    let order = state
        .orders
        .get(&order_id)
        .ok_or_else(|| crate::market::missing_order(state, order_id))?;
    // A verifying order's escrow pays its next run (a check, a referee, a disputed rerun).
    if !matches!(
        order.status,
        OrderStatus::Open | OrderStatus::Leased { .. } | OrderStatus::Verifying
    ) {
        return Err(Rejection::OrderNotOpen);
    }
    order
        .escrow
        .checked_add(amount)
        .ok_or(Rejection::AmountOverflow)?;
    check_can_pay(state, signer, fee, Denom::Usd, amount)
}

/// Adds to the escrow; a paused lease resumes (billing waits for its next proof of life).
pub(crate) fn top_up(
    state: &mut State,
    from: Address,
    order_id: OrderId,
    amount: Amount,
    events: &mut Vec<Event>,
) {
    let (now, height) = (state.time_ms, state.height);
    debit(state, from, Denom::Usd, amount);
    let Some(order) = state.orders.get_mut(&order_id) else {
        return;
    };
    order.escrow = order
        .escrow
        .checked_add(amount)
        .expect("checked in check_top_up");
    // Bounded by the minted supply, like the escrow.
    order.topped_up = order.topped_up.checked_add(amount).unwrap_or(Amount::MAX);
    let escrow = order.escrow;
    let lease = match order.status {
        OrderStatus::Leased { lease } => Some(lease),
        _ => None,
    };
    events.push(Event::EscrowToppedUp {
        order: order_id,
        from,
        amount,
        escrow,
    });
    // More escrow re-arms `escrow_low` (and may resume a paused lease): its visit decides.
    if let Some(id) = lease {
        due_now(state, id);
    }
    let Some(l) = lease.and_then(|id| state.leases.get_mut(&id)) else {
        return;
    };
    l.warned_low = false;
    if matches!(l.status, LeaseStatus::Paused { .. }) {
        l.status = LeaseStatus::Running;
        l.segment_start_ms = now;
        // Billing needs a fresh proof that the workload runs again; the liveness clock
        // restarts so the provider has a full timeout to give it.
        l.last_proof_ms = now;
        l.last_proof_height = height;
        events.push(Event::LeaseResumed {
            lease: l.id,
            order: order_id,
        });
    }
}

/// Only a leaving provider (one that announced its exit) hands leases back: otherwise a
/// provider could release any lease it was about to fail, to keep failures off its record.
pub(crate) fn check_release(state: &State, signer: &Address, id: LeaseId) -> Result<(), Rejection> {
    live_lease_of(state, signer, id)?;
    if !state.providers.get(signer).is_some_and(|p| p.leaving) {
        return Err(Rejection::ProviderNotLeaving);
    }
    Ok(())
}

/// The provider gives the lease back: paid up to now (the release proves it alive), not
/// counted as its failure, retried elsewhere under the order's policy.
pub(crate) fn release(state: &mut State, id: LeaseId, events: &mut Vec<Event>) {
    // It ends here: its pending mark (at the height its last proof names) goes first.
    forget_due(state, id);
    prove_alive(state, id);
    settle_and_end(state, id, LeaseEndReason::ProviderLeft, events);
}
