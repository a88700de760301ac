//! Result verification of an order (ADR 0010): spot checks, replicas, reveals, referees, and
//! the decision that slashes the providers of wrong runs.
//!
//! A run of a verified order that succeeds reports a *tag* ([`gpunet_protocol::result_tag`]),
//! never its digest. Its lease ends and is paid as any other; the order keeps its escrow and
//! goes on:
//! - **spot check**: after the first run, the order waits one block (`Drawing`) and the end of
//!   that block draws from its seed — which the run's transaction helped make, so the run could
//!   not know the draw when it reported — whether to rerun it, with the probability
//!   [`crate::trust::spot_check_ppm`] gives. Drawn: the order reopens for a second run, on any
//!   provider but the first.
//!   Not drawn: the order waits `dispute_window_blocks` (`Disputable`, escrow kept); the tenant
//!   may `Dispute` it, which reruns it as a drawn check would — the loser pays: a wrong provider
//!   is slashed, a tenant whose provider was right has paid for the reruns. Undisputed, the order
//!   closes `unchecked`.
//! - **replicas**: the order reopens after each run until it has `replicas` of them.
//!
//! Once every run needed is in, each run whose tag equals an earlier run's must reveal the
//! digest behind it (`RevealDigest`) within `reveal_window_blocks`: a run that copied an
//! earlier tag from the chain cannot, and counts as wrong. The first run of each tag need not
//! reveal: nothing it could have copied matches it. So a digest becomes public only once it is
//! confirmed, and no later run of the order can copy a revealed answer.
//!
//! The decision: among the runs not judged wrong, a tag reported by at least two runs is the
//! result, and runs with any other tag are wrong — runs that do not collude cannot agree on a
//! wrong answer. With no such tag (the two runs of a spot check disagree, a copier failed its
//! reveal) the order reopens for one more run — a referee, or a replacement — up to two more
//! than the mode needs; past that, or with two tags each reported twice (a job that is not
//! deterministic, or providers that collude), the result is `inconclusive` and nobody is
//! slashed for it. The providers of wrong runs are slashed and jailed
//! ([`crate::trust::slash`]); those of agreeing runs earn reputation and count a verified run
//! toward the end of their probation.
//!
//! `compare: tensors`: close runs report different tags, so after the reveals a verifier
//! provider drawn from the block seed compares their declared outputs, which the tenant sends it
//! off chain, and posts a verdict (`Judging`, [`post_verdict`]): runs it names agreeing (two or
//! more) confirm the result, the other runs it received are wrong, runs it never received cost
//! nothing. A verifier that misses its deadline is replaced, up to [`MAX_VERIFIERS`].
//!
//! Every run is paid from the order's escrow at its own lease's price: the tenant pays for the
//! checks it asked for (and a verifier's fee), and gets the tenant's share of every slash.

use std::collections::BTreeMap;

use gpunet_protocol::{
    Address, Amount, Compare, Denom, Event, Hash, LeaseEndReason, LeaseId, OrderId, Rejection,
    VerificationMode, VerificationOutcome, result_tag,
};

use crate::State;
use crate::accounts::credit;
use crate::state::{Lease, OrderStatus, Run, VerifyStage};
use crate::trust::{self, Evidence};

/// Domain of the spot-check draw.
const DRAW_DOMAIN: &[u8] = b"gpunet/spot-check/v1\0";
/// Domain of the draw of a verifier.
const VERIFIER_DOMAIN: &[u8] = b"gpunet/verifier/v1\0";
/// Verifiers a `compare: tensors` order asks in one round (between two runs coming in) before
/// it ends inconclusive.
pub const MAX_VERIFIERS: usize = 3;
/// Orders one provider judges at once, at most: a busy verifier is not drawn.
pub const MAX_JUDGING: usize = 8;

/// What becomes of a verified order when one of its runs ends.
pub(crate) enum Next {
    /// Not a verified run: the lease's own rules decide (retry or close).
    Unchanged,
    /// Reopen the order for another run.
    AnotherRun,
    /// The order waits in `Verifying` (a draw, reveals), escrow kept.
    Wait,
}

/// The runs the comparison can use at most: two more than the mode needs.
fn max_runs(mode: VerificationMode, replicas: u8) -> usize {
    match mode {
        VerificationMode::Replicas => usize::from(replicas) + 2,
        _ => 4,
    }
}

/// Whether a successful run of `lease` must report a tag.
pub(crate) fn check_tag(
    state: &State,
    lease: &Lease,
    succeeded: bool,
    tag: Option<Hash>,
) -> Result<(), Rejection> {
    let verified = state
        .orders
        .get(&lease.order)
        .is_some_and(|o| o.terms.verification.is_verified());
    if verified && succeeded && tag.is_none() {
        return Err(Rejection::ResultTagMissing);
    }
    Ok(())
}

/// A lease of a verified order ended with `reason`: records a successful run and says what the
/// order does next. Called by settlement before it reopens or closes the order.
pub(crate) fn run_ended(state: &mut State, lease_id: LeaseId, reason: LeaseEndReason) -> Next {
    let Some(lease) = state.leases.get(&lease_id) else {
        return Next::Unchanged;
    };
    let Some(order) = state.orders.get(&lease.order) else {
        return Next::Unchanged;
    };
    let v = order.terms.verification;
    let tag = lease.result.as_ref().and_then(|r| r.output_digest);
    if !v.is_verified() || reason != LeaseEndReason::Completed {
        return Next::Unchanged;
    }
    let Some(tag) = tag else {
        return Next::Unchanged;
    };
    let class = state.providers.get(&lease.provider).map_or_else(
        || "cpu".to_owned(),
        |p| trust::class_of(p, &lease.gpu_slots),
    );
    let run = Run {
        lease: lease_id,
        provider: lease.provider,
        tag,
        class,
        paid: lease.paid,
        reveal_due: false,
        revealed: false,
        wrong: false,
    };
    let (order_id, provider, height) = (lease.order, lease.provider, state.height);
    if let Some(p) = state.providers.get_mut(&provider) {
        p.runs_under_verification = p.runs_under_verification.saturating_add(1);
    }
    let Some(order) = state.orders.get_mut(&order_id) else {
        return Next::Unchanged;
    };
    let f = &mut order.verifying;
    f.runs.push(run);
    if f.needed == 0 {
        f.needed = match v.mode {
            VerificationMode::Replicas => v.replicas,
            _ => 1,
        };
    }
    if f.runs.len() < usize::from(f.needed) {
        return Next::AnotherRun;
    }
    if v.mode == VerificationMode::SpotCheck && f.runs.len() == 1 {
        f.stage = VerifyStage::Drawing {
            at_height: height.saturating_add(1),
        };
        state.due_checks.mark(height.saturating_add(1), order_id);
        return Next::Wait;
    }
    Next::Wait
}

/// After [`run_ended`] said `Wait` and the order is `Verifying`: starts the reveals when every
/// run needed is in (the draw waits for its block).
pub(crate) fn begin_reveals(state: &mut State, order_id: OrderId, events: &mut Vec<Event>) {
    let height = state.height;
    let window = state.params.reveal_window_blocks;
    let Some(order) = state.orders.get_mut(&order_id) else {
        return;
    };
    let f = &mut order.verifying;
    if matches!(f.stage, VerifyStage::Drawing { .. }) {
        return;
    }
    for i in 1..f.runs.len() {
        let tag = f.runs[i].tag;
        if f.runs[..i].iter().any(|r| r.tag == tag) {
            f.runs[i].reveal_due = true;
        }
    }
    let asked: Vec<LeaseId> = f
        .runs
        .iter()
        .filter(|r| r.reveal_due && !r.revealed && !r.wrong)
        .map(|r| r.lease)
        .collect();
    let deadline_height = height.saturating_add(window);
    f.stage = VerifyStage::Revealing { deadline_height };
    if asked.is_empty() {
        // Nothing to wait for: decide at this block's end.
        state.due_checks.mark(height, order_id);
    } else {
        state.due_checks.mark(deadline_height, order_id);
        events.push(Event::RevealRequested {
            order: order_id,
            leases: asked,
            deadline_height,
        });
    }
}

pub(crate) fn check_dispute(
    state: &State,
    signer: &Address,
    order_id: OrderId,
) -> Result<(), Rejection> {
    let order = crate::market::owned_order(state, signer, order_id)?;
    let open = matches!(order.verifying.stage, VerifyStage::Disputable { until_height } if state.height < until_height);
    if !open || order.escrow.is_zero() {
        return Err(Rejection::DisputeNotOpen);
    }
    Ok(())
}

/// The tenant disputes the unchecked result: the order reopens for a rerun, as a drawn check
/// does, and the comparison goes on from there.
pub(crate) fn dispute(state: &mut State, order_id: OrderId, events: &mut Vec<Event>) {
    if let Some(o) = state.orders.get_mut(&order_id) {
        o.verifying.needed = 2;
        o.verifying.stage = VerifyStage::Running;
    }
    reopen_for_run(state, order_id);
    events.push(Event::DisputeOpened { order: order_id });
}

pub(crate) fn check_reveal(
    state: &State,
    signer: &Address,
    order_id: OrderId,
    lease: LeaseId,
    digest: &Hash,
) -> Result<(), Rejection> {
    let order = state
        .orders
        .get(&order_id)
        .ok_or_else(|| crate::market::missing_order(state, order_id))?;
    if !matches!(order.verifying.stage, VerifyStage::Revealing { .. }) {
        return Err(Rejection::RevealInvalid);
    }
    let run = order
        .verifying
        .runs
        .iter()
        .find(|r| r.lease == lease)
        .ok_or(Rejection::RevealInvalid)?;
    if run.provider != *signer {
        return Err(Rejection::NotLeaseProvider);
    }
    if !run.reveal_due || run.revealed || run.wrong || result_tag(order_id, digest) != run.tag {
        return Err(Rejection::RevealInvalid);
    }
    Ok(())
}

pub(crate) fn reveal(state: &mut State, order_id: OrderId, lease: LeaseId) {
    let height = state.height;
    let Some(order) = state.orders.get_mut(&order_id) else {
        return;
    };
    let runs = &mut order.verifying.runs;
    if let Some(r) = runs.iter_mut().find(|r| r.lease == lease) {
        r.revealed = true;
    }
    if runs.iter().all(|r| !r.reveal_due || r.revealed || r.wrong) {
        state.due_checks.mark(height, order_id);
    }
}

/// The spot-check draw: a number in `0..1_000_000` from the block seed, the order and the run.
fn draw(seed: &Hash, order: OrderId, lease: LeaseId) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(DRAW_DOMAIN);
    h.update(&seed.0);
    h.update(&order.0.to_le_bytes());
    h.update(&lease.0.to_le_bytes());
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u32::try_from(u64::from_le_bytes(first) % trust::PPM).unwrap_or(0)
}

/// End of block: the verifying orders that are due draw their spot check, or decide once
/// their reveals are in or their deadline passed. Runs after settlement (which records runs)
/// and before matching (which serves the orders reopened here).
pub(crate) fn advance_all(state: &mut State, seed: &Hash, events: &mut Vec<Event>) {
    let height = state.height;
    for id in state.due_checks.take_due(height) {
        let Some(order) = state.orders.get(&id) else {
            continue;
        };
        if order.status != OrderStatus::Verifying {
            continue;
        }
        match order.verifying.stage {
            VerifyStage::Drawing { at_height } if at_height <= height => {
                spot_check(state, id, seed, events);
            }
            VerifyStage::Revealing { deadline_height } => {
                let all_in = order
                    .verifying
                    .runs
                    .iter()
                    .all(|r| !r.reveal_due || r.revealed || r.wrong);
                if all_in || height >= deadline_height {
                    decide(state, id, seed, events);
                } else {
                    state.due_checks.mark(deadline_height, id);
                }
            }
            VerifyStage::Drawing { at_height } => state.due_checks.mark(at_height, id),
            VerifyStage::Disputable { until_height } if until_height <= height => {
                let tag = order.verifying.runs.first().map(|r| r.tag);
                finish(
                    state,
                    id,
                    VerificationOutcome::Unchecked,
                    tag,
                    Vec::new(),
                    Vec::new(),
                    events,
                );
            }
            VerifyStage::Disputable { until_height } => state.due_checks.mark(until_height, id),
            VerifyStage::Judging {
                verifier,
                deadline_height,
            } if deadline_height <= height => {
                // The verifier let its deadline pass: it counts against it, and another is
                // asked.
                unassign(state, &verifier, id);
                trust::record(state, &verifier, Evidence::Lost);
                events.push(Event::VerdictMissed {
                    order: id,
                    verifier,
                });
                ask_verifier(state, id, seed, events);
            }
            VerifyStage::Judging {
                deadline_height, ..
            } => state.due_checks.mark(deadline_height, id),
            VerifyStage::Running => {}
        }
    }
}

fn spot_check(state: &mut State, id: OrderId, seed: &Hash, events: &mut Vec<Event>) {
    let Some(order) = state.orders.get(&id) else {
        return;
    };
    let Some(run) = order.verifying.runs.first().cloned() else {
        return;
    };
    let probability_ppm = state
        .providers
        .get(&run.provider)
        .map_or(trust::PPM as u32, |p| {
            trust::spot_check_ppm(&state.params, p, &run.class, run.paid, state.height)
        });
    let checked = draw(seed, id, run.lease) < probability_ppm;
    events.push(Event::SpotCheckDrawn {
        order: id,
        lease: run.lease,
        probability_ppm,
        checked,
    });
    let window = state.params.dispute_window_blocks;
    if checked {
        if let Some(o) = state.orders.get_mut(&id) {
            o.verifying.needed = 2;
            o.verifying.stage = VerifyStage::Running;
        }
        reopen_for_run(state, id);
    } else if window > 0 {
        // Unchecked, unless the tenant disputes it in time.
        let until_height = state.height.saturating_add(window);
        if let Some(o) = state.orders.get_mut(&id) {
            o.verifying.stage = VerifyStage::Disputable { until_height };
        }
        state.due_checks.mark(until_height, id);
    } else {
        finish(
            state,
            id,
            VerificationOutcome::Unchecked,
            Some(run.tag),
            Vec::new(),
            Vec::new(),
            events,
        );
    }
}

/// Judges the runs once their reveals are in (or late): see the module doc.
fn decide(state: &mut State, id: OrderId, seed: &Hash, events: &mut Vec<Event>) {
    let Some(order) = state.orders.get(&id) else {
        return;
    };
    let tenant = order.tenant;
    let v = order.terms.verification;
    let runs = order.verifying.runs.clone();
    // Runs that owed a reveal and did not give it are wrong whatever the result.
    let mut newly_wrong: Vec<usize> = (0..runs.len())
        .filter(|&i| runs[i].reveal_due && !runs[i].revealed && !runs[i].wrong)
        .collect();
    if v.compare == Compare::Tensors {
        // Tags of runs that are close but not equal differ: a verifier compares the outputs.
        judge_wrong(state, id, tenant, &newly_wrong, events);
        let valid = runs
            .iter()
            .enumerate()
            .filter(|(i, r)| !r.wrong && !newly_wrong.contains(i))
            .count();
        if valid >= 2 {
            if let Some(o) = state.orders.get_mut(&id) {
                o.verifying.round_verifiers = 0;
            }
            ask_verifier(state, id, seed, events);
        } else {
            no_answer_yet(state, id, runs.len(), v, events);
        }
        return;
    }
    let is_valid: Vec<bool> = (0..runs.len())
        .map(|i| !runs[i].wrong && !newly_wrong.contains(&i))
        .collect();
    let valid = |i: usize| is_valid[i];
    let mut by_tag: BTreeMap<Hash, Vec<usize>> = BTreeMap::new();
    for i in (0..runs.len()).filter(|&i| valid(i)) {
        by_tag.entry(runs[i].tag).or_default().push(i);
    }
    let confirmed: Vec<(&Hash, &Vec<usize>)> =
        by_tag.iter().filter(|(_, runs)| runs.len() >= 2).collect();
    let outcome = match confirmed.as_slice() {
        [(tag, agreeing)] => {
            let tag = **tag;
            let agreeing = (*agreeing).clone();
            for i in (0..runs.len()).filter(|&i| valid(i) && runs[i].tag != tag) {
                newly_wrong.push(i);
            }
            Some((tag, agreeing))
        }
        [] if runs.len() < max_runs(v.mode, v.replicas) => {
            // No answer yet: a referee (the runs disagree) or a replacement (a run failed its
            // reveal). Nothing was revealed, so it runs as blind as the others.
            judge_wrong(state, id, tenant, &newly_wrong, events);
            no_answer_yet(state, id, runs.len(), v, events);
            return;
        }
        _ => None,
    };
    judge_wrong(state, id, tenant, &newly_wrong, events);
    match outcome {
        Some((tag, agreeing)) => {
            let wrong = wrong_runs(state, id);
            for &i in &agreeing {
                trust::record(state, &runs[i].provider, Evidence::Agreed);
                trust::count_verified_run(state, &runs[i].provider, &runs[i].class);
            }
            let kind = if wrong.is_empty() {
                VerificationOutcome::Agreed
            } else {
                VerificationOutcome::Majority
            };
            let agreed = agreeing.iter().map(|&i| runs[i].lease).collect();
            finish(state, id, kind, Some(tag), agreed, wrong, events);
        }
        None => inconclusive(state, id, events),
    }
}

/// No two runs agree (yet): one more run — a referee, or a replacement for a wrong one —
/// while the order may have more; past that, `inconclusive`, nobody slashed for it.
fn no_answer_yet(
    state: &mut State,
    id: OrderId,
    runs: usize,
    v: gpunet_protocol::Verification,
    events: &mut Vec<Event>,
) {
    if runs < max_runs(v.mode, v.replicas) {
        if let Some(o) = state.orders.get_mut(&id) {
            o.verifying.needed = u8::try_from(runs + 1).unwrap_or(u8::MAX);
            o.verifying.stage = VerifyStage::Running;
        }
        reopen_for_run(state, id);
    } else {
        inconclusive(state, id, events);
    }
}

/// Ends the comparison `inconclusive`: no result, and nobody slashed for it (runs already
/// judged wrong stay so).
fn inconclusive(state: &mut State, id: OrderId, events: &mut Vec<Event>) {
    let wrong = wrong_runs(state, id);
    finish(
        state,
        id,
        VerificationOutcome::Inconclusive,
        None,
        Vec::new(),
        wrong,
        events,
    );
}

fn wrong_runs(state: &State, id: OrderId) -> Vec<LeaseId> {
    state
        .orders
        .get(&id)
        .map(|o| {
            o.verifying
                .runs
                .iter()
                .filter(|r| r.wrong)
                .map(|r| r.lease)
                .collect()
        })
        .unwrap_or_default()
}

/// Draws a verifier for a `compare: tensors` order from the block seed and asks it
/// (`VerdictRequested`). Eligible: a registered provider that is not leaving or jailed, whose
/// hardware claim stands, that ran none of the order's runs, is not its tenant, was not asked
/// for this order before, and judges fewer than [`MAX_JUDGING`] orders. With none — or after
/// [`MAX_VERIFIERS`] were asked in this round — the order ends `inconclusive`, nobody slashed.
///
/// O(providers): it runs once per verifier asked, not per block.
fn ask_verifier(state: &mut State, id: OrderId, seed: &Hash, events: &mut Vec<Event>) {
    let height = state.height;
    let Some(order) = state.orders.get(&id) else {
        return;
    };
    let tenant = order.tenant;
    let f = &order.verifying;
    let asked = f.verifiers.len();
    let asked_this_round = usize::from(f.round_verifiers);
    let runs: Vec<LeaseId> = f
        .runs
        .iter()
        .filter(|r| !r.wrong)
        .map(|r| r.lease)
        .collect();
    let excluded: Vec<Address> = f
        .runs
        .iter()
        .map(|r| r.provider)
        .chain(f.verifiers.iter().copied())
        .chain(std::iter::once(tenant))
        .collect();
    let candidates: Vec<Address> = if asked_this_round >= MAX_VERIFIERS {
        Vec::new()
    } else {
        state
            .providers
            .values()
            .filter(|p| {
                !p.leaving
                    && p.jailed_until_height <= height
                    && p.judging.len() < MAX_JUDGING
                    && crate::challenges::hardware_ok(&state.params, p)
                    && !excluded.contains(&p.address)
            })
            .map(|p| p.address)
            .collect()
    };
    let Some(verifier) = pick(seed, id, asked, &candidates) else {
        inconclusive(state, id, events);
        return;
    };
    let deadline_height = height.saturating_add(state.params.verdict_window_blocks);
    if let Some(o) = state.orders.get_mut(&id) {
        o.verifying.verifiers.push(verifier);
        o.verifying.round_verifiers = o.verifying.round_verifiers.saturating_add(1);
        o.verifying.stage = VerifyStage::Judging {
            verifier,
            deadline_height,
        };
    }
    if let Some(p) = state.providers.get_mut(&verifier)
        && let Err(at) = p.judging.binary_search(&id)
    {
        p.judging.insert(at, id);
    }
    state.due_checks.mark(deadline_height, id);
    events.push(Event::VerdictRequested {
        order: id,
        verifier,
        runs,
        deadline_height,
    });
}

/// One of `candidates` (in the providers' table order), drawn from the seed, the order and
/// how many verifiers it asked before.
fn pick(seed: &Hash, order: OrderId, asked: usize, candidates: &[Address]) -> Option<Address> {
    if candidates.is_empty() {
        return None;
    }
    let mut h = blake3::Hasher::new();
    h.update(VERIFIER_DOMAIN);
    h.update(&seed.0);
    h.update(&order.0.to_le_bytes());
    h.update(&(asked as u64).to_le_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    let len = candidates.len() as u64;
    candidates
        .get(usize::try_from(u64::from_le_bytes(first) % len).ok()?)
        .copied()
}

fn unassign(state: &mut State, verifier: &Address, id: OrderId) {
    if let Some(p) = state.providers.get_mut(verifier)
        && let Ok(at) = p.judging.binary_search(&id)
    {
        p.judging.remove(at);
    }
}

pub(crate) fn check_verdict(
    state: &State,
    signer: &Address,
    order_id: OrderId,
    agreeing: &[LeaseId],
    missing: &[LeaseId],
) -> Result<(), Rejection> {
    let order = state
        .orders
        .get(&order_id)
        .ok_or_else(|| crate::market::missing_order(state, order_id))?;
    let VerifyStage::Judging {
        verifier,
        deadline_height,
    } = order.verifying.stage
    else {
        return Err(Rejection::VerdictInvalid);
    };
    if verifier != *signer || state.height >= deadline_height || agreeing.len() == 1 {
        return Err(Rejection::VerdictInvalid);
    }
    let mut named = std::collections::BTreeSet::new();
    for lease in agreeing.iter().chain(missing) {
        let judged = order
            .verifying
            .runs
            .iter()
            .any(|r| r.lease == *lease && !r.wrong);
        if !judged || !named.insert(*lease) {
            return Err(Rejection::VerdictInvalid);
        }
    }
    Ok(())
}

/// Applies the verifier's verdict: pays it, then decides. At least two runs agreeing confirm
/// the result, and every other run it received disagreed with them: wrong, slashed. Runs it
/// never received intact (`missing`) are neither: the tenant may have withheld them, so they
/// cost their providers nothing and are not confirmed. No two agreeing: one more run, as for
/// exact comparison, if at least two were received (they disagree); otherwise the tenant sent
/// too little to compare and the order ends `inconclusive`.
pub(crate) fn post_verdict(
    state: &mut State,
    verifier: Address,
    id: OrderId,
    agreeing: Vec<LeaseId>,
    missing: Vec<LeaseId>,
    events: &mut Vec<Event>,
) {
    unassign(state, &verifier, id);
    let fee_due = state.params.verdict_fee;
    let Some(order) = state.orders.get_mut(&id) else {
        return;
    };
    let fee = fee_due.min(order.escrow);
    order.escrow = order.escrow.checked_sub(fee).unwrap_or(Amount::ZERO);
    order.verifying.stage = VerifyStage::Running;
    let (tenant, v) = (order.tenant, order.terms.verification);
    let runs = order.verifying.runs.clone();
    credit(state, verifier, Denom::Usd, fee);
    events.push(Event::VerdictPosted {
        order: id,
        verifier,
        agreeing: agreeing.clone(),
        missing: missing.clone(),
        fee,
    });
    if agreeing.is_empty() {
        let delivered = runs
            .iter()
            .filter(|r| !r.wrong && !missing.contains(&r.lease))
            .count();
        if delivered >= 2 {
            // They disagree with each other: a referee run.
            no_answer_yet(state, id, runs.len(), v, events);
        } else {
            // The tenant did not send the verifier enough to compare: another run would not
            // change that. Nobody is slashed; what is left of the escrow goes back.
            inconclusive(state, id, events);
        }
        return;
    }
    let disagreeing: Vec<usize> = (0..runs.len())
        .filter(|&i| {
            !runs[i].wrong
                && !agreeing.contains(&runs[i].lease)
                && !missing.contains(&runs[i].lease)
        })
        .collect();
    judge_wrong(state, id, tenant, &disagreeing, events);
    let agreed: Vec<LeaseId> = runs
        .iter()
        .filter(|r| agreeing.contains(&r.lease))
        .map(|r| r.lease)
        .collect();
    for r in runs.iter().filter(|r| agreeing.contains(&r.lease)) {
        trust::record(state, &r.provider, Evidence::Agreed);
        trust::count_verified_run(state, &r.provider, &r.class);
    }
    let wrong = wrong_runs(state, id);
    let kind = if wrong.is_empty() {
        VerificationOutcome::Agreed
    } else {
        VerificationOutcome::Majority
    };
    let tag = runs
        .iter()
        .find(|r| agreeing.contains(&r.lease))
        .map(|r| r.tag);
    finish(state, id, kind, tag, agreed, wrong, events);
}

/// Slashes the providers of the runs at `indices` and marks them wrong.
fn judge_wrong(
    state: &mut State,
    id: OrderId,
    tenant: Address,
    indices: &[usize],
    events: &mut Vec<Event>,
) {
    for &i in indices {
        let Some(run) = state
            .orders
            .get_mut(&id)
            .and_then(|o| o.verifying.runs.get_mut(i))
        else {
            continue;
        };
        if run.wrong {
            continue;
        }
        run.wrong = true;
        let (provider, lease) = (run.provider, run.lease);
        trust::slash(state, provider, id, lease, tenant, events);
    }
}

/// Reopens a verifying order for one more run: bids gather afresh, no backoff, and the
/// providers of its runs may not bid (see `market::check_place_bid`).
pub(crate) fn reopen_for_run(state: &mut State, id: OrderId) {
    let height = state.height;
    let now = state.time_ms;
    let Some(o) = state.orders.get_mut(&id) else {
        return;
    };
    o.status = OrderStatus::Open;
    o.bids.clear();
    o.open_since_height = height;
    o.not_before_ms = now;
    state.open_orders.insert(id);
    state.due_orders.mark(height, id);
}

/// Ends a verified order's comparison: the event, and its runs no longer hold their
/// providers. The caller closes the order when it is `Verifying` here; an order closed another
/// way (it expired, was cancelled, or its run failed for good) calls [`abandon`].
fn finish(
    state: &mut State,
    id: OrderId,
    outcome: VerificationOutcome,
    tag: Option<Hash>,
    agreed: Vec<LeaseId>,
    wrong: Vec<LeaseId>,
    events: &mut Vec<Event>,
) {
    release_runs(state, id);
    // Close the order and return what is left of its escrow. Its lease is a run that agreed
    // with the result, so the tenant takes the outputs from one.
    let mut refund = Amount::ZERO;
    if let Some(o) = state.orders.get_mut(&id) {
        o.verifying.outcome = Some(outcome);
    }
    if let Some(o) = state.orders.get_mut(&id)
        && o.status == OrderStatus::Verifying
    {
        refund = o.escrow;
        o.escrow = Amount::ZERO;
        let last = o.verifying.runs.last().map_or(LeaseId(0), |r| r.lease);
        let first = o.verifying.runs.first().map_or(last, |r| r.lease);
        let shown = match outcome {
            VerificationOutcome::Unchecked => first,
            _ => agreed.first().copied().unwrap_or(last),
        };
        o.status = OrderStatus::Closed { lease: shown };
        o.verifying.stage = VerifyStage::Running;
        let tenant = o.tenant;
        credit(state, tenant, Denom::Usd, refund);
    }
    events.push(Event::VerificationDecided {
        order: id,
        outcome,
        tag,
        agreed,
        wrong,
        refund,
    });
}

fn release_runs(state: &mut State, id: OrderId) {
    if let Some(VerifyStage::Judging { verifier, .. }) =
        state.orders.get(&id).map(|o| o.verifying.stage)
    {
        unassign(state, &verifier, id);
    }
    let providers: Vec<Address> = state
        .orders
        .get(&id)
        .map(|o| o.verifying.runs.iter().map(|r| r.provider).collect())
        .unwrap_or_default();
    for p in providers {
        if let Some(p) = state.providers.get_mut(&p) {
            p.runs_under_verification = p.runs_under_verification.saturating_sub(1);
        }
    }
}

/// A verified order with runs in hand ends before its comparison did (it expired waiting for
/// a run, was cancelled, or a run failed for good): `incomplete`, nobody slashed.
pub(crate) fn abandon(state: &mut State, id: OrderId, events: &mut Vec<Event>) {
    let has_runs = state
        .orders
        .get(&id)
        .is_some_and(|o| !o.verifying.runs.is_empty());
    if has_runs {
        release_runs(state, id);
        if let Some(o) = state.orders.get_mut(&id) {
            o.verifying.outcome = Some(VerificationOutcome::Incomplete);
        }
        events.push(Event::VerificationDecided {
            order: id,
            outcome: VerificationOutcome::Incomplete,
            tag: None,
            agreed: Vec::new(),
            wrong: Vec::new(),
            refund: Amount::ZERO,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_spreads_over_the_range() {
        let mut below = 0;
        for i in 0..10_000u64 {
            let d = draw(&Hash([3; 32]), OrderId(i), LeaseId(i + 1));
            assert!(u64::from(d) < trust::PPM);
            if d < 100_000 {
                below += 1;
            }
        }
        // 10% of 10 000, within five standard deviations (30 each).
        assert!((850..=1_150).contains(&below), "{below}");
    }
}
