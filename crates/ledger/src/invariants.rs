//! Invariants that must hold after every block. A violation is a bug in the ledger, never the
//! fault of input, so callers `assert!` on it: halting beats forking.

use std::collections::BTreeMap;

use gpunet_protocol::{Amount, Denom, LeaseId, OrderId};

use crate::State;
use crate::state::{Lease, LeaseStatus, Order, OrderStatus};

/// A broken invariant, described for the crash report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn sum(items: impl Iterator<Item = Amount>, what: &str) -> Result<u128, Violation> {
    let mut total: u128 = 0;
    for a in items {
        total = total
            .checked_add(u128::from(a.micros()))
            .ok_or_else(|| Violation(format!("{what} overflow u128")))?;
    }
    Ok(total)
}

/// Conservation per denomination: balances + escrow + stake + treasury = minted − burned.
/// Escrow is usd only and stake is gpn only; stake counts what providers hold bonded and what
/// accounts have unbonding.
pub fn check_conservation(state: &State) -> Result<(), Violation> {
    for d in Denom::ALL {
        let balances = sum(
            state.accounts.values().map(|a| a.balances.get(d)),
            "balances",
        )?;
        let escrow = match d {
            Denom::Usd => sum(state.orders.values().map(|o| o.escrow), "escrow")?,
            Denom::Gpn => 0,
        };
        let stake = match d {
            Denom::Gpn => {
                sum(state.providers.values().map(|p| p.stake), "stake")?
                    + sum(
                        state.accounts.values().map(|a| a.unbonding_total()),
                        "unbonding",
                    )?
            }
            Denom::Usd => 0,
        };
        let treasury = u128::from(state.treasury.get(d).micros());
        let held = balances + escrow + stake + treasury;
        let minted = u128::from(state.supply.minted.get(d).micros());
        let burned = u128::from(state.supply.burned.get(d).micros());
        let expected = minted
            .checked_sub(burned)
            .ok_or_else(|| Violation(format!("{d}: burned {burned} exceeds minted {minted}")))?;
        if held != expected {
            return Err(Violation(format!(
                "{d}: balances {balances} + escrow {escrow} + stake {stake} + treasury {treasury} = {held}, \
                 but minted {minted} - burned {burned} = {expected}"
            )));
        }
    }
    Ok(())
}

/// Every index agrees with the records it indexes, and nothing ended is left in the tables.
pub fn check_indexes(state: &State) -> Result<(), Violation> {
    for (id, o) in &state.orders {
        check_order(state, id, o)?;
    }
    for (id, l) in &state.leases {
        check_lease(state, id, l)?;
    }
    check_due_leases(state)?;
    check_due_checks(state)?;
    check_due_challenges(state)
}

/// Every provider with a hardware challenge in flight is marked for a visit: its deadline,
/// draw or opening window cannot pass unseen.
fn check_due_challenges(state: &State) -> Result<(), Violation> {
    let marked: std::collections::BTreeSet<gpunet_protocol::Address> =
        state.due_challenges.iter().map(|(_, a)| *a).collect();
    for (address, p) in &state.providers {
        if let Some(c) = &p.hardware.challenge
            && !marked.contains(address)
        {
            return Err(Violation(format!(
                "provider {address}: challenge {} in flight but never visited again",
                c.id
            )));
        }
    }
    Ok(())
}

/// Every verifying order is marked for another visit (a draw, a reveal deadline, a dispute
/// window's end): none waits forever. Read once into a set here, in the full check, rather than
/// scanned per order in the O(changes) one.
fn check_due_checks(state: &State) -> Result<(), Violation> {
    let marked: std::collections::BTreeSet<OrderId> =
        state.due_checks.iter().map(|(_, id)| *id).collect();
    for (id, o) in &state.orders {
        if o.status == OrderStatus::Verifying && !marked.contains(id) {
            return Err(Violation(format!(
                "order {id}: verifying but never visited again"
            )));
        }
    }
    Ok(())
}

/// Every live lease is marked for a visit no later than the height its rules next name
/// (`DueLeases`): settlement cannot miss a silent provider, a start timeout or a pause's end.
/// (A mark a transaction needs — for a new proof of life, a top-up — lies at its own block and
/// is taken at that block's end, so it is not seen here; the property tests cover those.)
fn check_due_leases(state: &State) -> Result<(), Violation> {
    let mut first: BTreeMap<LeaseId, u64> = BTreeMap::new();
    for &(height, id) in state.due_leases.iter() {
        first.entry(id).or_insert(height);
    }
    for id in &state.live_leases {
        let Some(l) = state.leases.get(id) else {
            continue;
        };
        let Some(due) = crate::leases::rule_due(&state.params, l) else {
            continue;
        };
        if first.get(id).is_none_or(|&at| at > due) {
            return Err(Violation(format!(
                "lease {id}: due at {due} but not marked for a visit by then ({:?})",
                first.get(id)
            )));
        }
    }
    Ok(())
}

fn check_order(state: &State, id: &OrderId, o: &Order) -> Result<(), Violation> {
    {
        let open = o.status == OrderStatus::Open;
        if open != state.open_orders.contains(id) {
            return Err(Violation(format!("order {id}: open index disagrees")));
        }
        let holds_escrow = matches!(
            o.status,
            OrderStatus::Open | OrderStatus::Leased { .. } | OrderStatus::Verifying
        );
        if !holds_escrow {
            return Err(Violation(format!(
                "order {id}: ended but still in the state, not archived"
            )));
        }
        let f = &o.verifying;
        if !o.terms.verification.is_verified() && (!f.runs.is_empty() || f.needed != 0) {
            return Err(Violation(format!("order {id}: runs without verification")));
        }
        let waiting = !matches!(f.stage, crate::VerifyStage::Running);
        if (o.status == OrderStatus::Verifying) != waiting || (waiting && f.runs.is_empty()) {
            return Err(Violation(format!(
                "order {id}: status {:?} disagrees with verification stage {:?} ({} runs)",
                o.status,
                f.stage,
                f.runs.len()
            )));
        }
        if let crate::VerifyStage::Judging { verifier, .. } = f.stage {
            let asked = state
                .providers
                .get(&verifier)
                .is_none_or(|p| p.judging.binary_search(id).is_ok());
            if !asked || f.verifiers.last() != Some(&verifier) {
                return Err(Violation(format!(
                    "order {id}: judged by {verifier}, which does not list it or was not the last asked"
                )));
            }
        }
        for r in &f.runs {
            let under = state
                .providers
                .get(&r.provider)
                .map_or(0, |p| p.runs_under_verification);
            if under == 0 {
                return Err(Violation(format!(
                    "order {id}: run {} of provider {} not counted under verification",
                    r.lease, r.provider
                )));
            }
        }
    }
    Ok(())
}

fn check_lease(state: &State, id: &LeaseId, l: &Lease) -> Result<(), Violation> {
    {
        let live = !matches!(l.status, LeaseStatus::Ended { .. });
        let archived = state.archived().leases().contains_key(id);
        if !live && !archived {
            return Err(Violation(format!(
                "lease {id}: ended but still in the state, not archived"
            )));
        }
        if live != state.live_leases.contains(id) {
            return Err(Violation(format!("lease {id}: live index disagrees")));
        }
        if live
            && !state
                .providers
                .get(&l.provider)
                .is_some_and(|p| p.live_leases.contains(id))
        {
            return Err(Violation(format!("lease {id}: missing from its provider")));
        }
        if l.fee > l.paid {
            return Err(Violation(format!("lease {id}: fee exceeds paid")));
        }
        // No tenant pays for time after the provider's last proof of life.
        let proven = l
            .price_per_hour
            .mul_div_floor(l.proven_ms(), 3_600_000)
            .unwrap_or(gpunet_protocol::Amount::MAX);
        if l.paid > proven || l.billed_ms > l.proven_ms() {
            return Err(Violation(format!(
                "lease {id}: paid {} for {} ms, more than its {} ms proven running",
                l.paid,
                l.billed_ms,
                l.proven_ms()
            )));
        }
    }
    Ok(())
}

/// An order or lease in the archive has ended for good, holds no money, and is gone from the
/// tables and their indexes.
fn check_archived(state: &State) -> Result<(), Violation> {
    for (id, o) in state.archived().orders() {
        let ended = matches!(
            o.status,
            OrderStatus::Expired | OrderStatus::Cancelled | OrderStatus::Closed { .. }
        );
        if !ended || !o.escrow.is_zero() {
            return Err(Violation(format!(
                "order {id}: archived while {:?} holding {} escrow",
                o.status, o.escrow
            )));
        }
        if state.orders.contains_key(id) || state.open_orders.contains(id) {
            return Err(Violation(format!(
                "order {id}: archived but still in the state"
            )));
        }
    }
    for (id, l) in state.archived().leases() {
        if l.is_live() {
            return Err(Violation(format!("lease {id}: archived while live")));
        }
        if state.leases.contains_key(id) || state.live_leases.contains(id) {
            return Err(Violation(format!(
                "lease {id}: archived but still in the state"
            )));
        }
        check_lease(state, id, l)?;
    }
    Ok(())
}

/// All invariants.
pub fn check_all(state: &State) -> Result<(), Violation> {
    check_conservation(state)?;
    check_indexes(state)?;
    check_judging(state)?;
    check_uptime(state)?;
    check_archived(state)
}

/// A provider's uptime record loses no more blocks than its leases were held, and counts an
/// outage only with a lost block.
fn check_uptime(state: &State) -> Result<(), Violation> {
    for (address, p) in &state.providers {
        let u = &p.uptime;
        if u.lost_blocks > u.leased_blocks || u.outages > u.lost_blocks {
            return Err(Violation(format!(
                "provider {address}: uptime record {u:?} loses more than it held"
            )));
        }
    }
    Ok(())
}

/// Every order a provider lists as judging is a live order waiting on its verdict.
fn check_judging(state: &State) -> Result<(), Violation> {
    for (address, p) in &state.providers {
        if p.judging.len() > crate::checks::MAX_JUDGING || !p.judging.is_sorted_by(|a, b| a < b) {
            return Err(Violation(format!(
                "provider {address}: judging list too long or not ascending"
            )));
        }
        for id in &p.judging {
            let waits = state.orders.get(id).is_some_and(|o| {
                matches!(o.verifying.stage, crate::VerifyStage::Judging { verifier, .. } if verifier == *address)
            });
            if !waits {
                return Err(Violation(format!(
                    "provider {address}: judges order {id}, which waits on no verdict of it"
                )));
            }
        }
    }
    Ok(())
}

/// The invariants of `after`, given that `before` held them and `after` is `before` with one
/// block applied and its changes not yet taken: O(entities the block wrote), not O(state).
///
/// Conservation is checked as a balance of changes: what the written accounts, orders (escrow)
/// and providers (stake) and the treasury gained must equal what was minted less what was
/// burned in the block. Orders and leases the block wrote are checked against the indexes and
/// their money rules. An index changed without its entity being written is not seen here; the
/// full [`check_all`] runs after every block in debug builds and tests.
pub fn check_changes(before: &State, after: &State) -> Result<(), Violation> {
    let (accounts, orders) = (after.accounts.touched(), after.orders.touched());
    let providers = after.providers.touched();
    for d in Denom::ALL {
        let mut delta: i128 = 0;
        let mut add = |new: Amount, old: Amount| {
            delta += i128::from(new.micros()) - i128::from(old.micros());
        };
        for k in &accounts {
            let get = |s: &State| {
                s.accounts
                    .get(k)
                    .map_or(Amount::ZERO, |a| a.balances.get(d))
            };
            add(get(after), get(before));
            if d == Denom::Gpn {
                let unbonding = |s: &State| {
                    s.accounts
                        .get(k)
                        .map_or(Amount::ZERO, |a| a.unbonding_total())
                };
                add(unbonding(after), unbonding(before));
            }
        }
        if d == Denom::Usd {
            for k in &orders {
                let get = |s: &State| s.orders.get(k).map_or(Amount::ZERO, |o| o.escrow);
                add(get(after), get(before));
            }
        }
        if d == Denom::Gpn {
            for k in &providers {
                let get = |s: &State| s.providers.get(k).map_or(Amount::ZERO, |p| p.stake);
                add(get(after), get(before));
            }
        }
        add(after.treasury.get(d), before.treasury.get(d));
        let supply = |s: &State| {
            i128::from(s.supply.minted.get(d).micros())
                - i128::from(s.supply.burned.get(d).micros())
        };
        let supply_delta = supply(after) - supply(before);
        if delta != supply_delta {
            return Err(Violation(format!(
                "{d}: the block moved holdings by {delta} micro-units but supply by {supply_delta}"
            )));
        }
    }
    for id in &orders {
        match after.orders.get(id) {
            Some(o) => check_order(after, id, o)?,
            // Orders leave the state only for the archive.
            None if !after.archived().orders().contains_key(id) => {
                return Err(Violation(format!("order {id}: removed but not archived")));
            }
            None => {}
        }
    }
    for id in &after.leases.touched() {
        match after.leases.get(id) {
            Some(l) => check_lease(after, id, l)?,
            None if !after.archived().leases().contains_key(id) => {
                return Err(Violation(format!("lease {id}: removed but not archived")));
            }
            None => {}
        }
    }
    check_archived(after)
}
