//! Provider registration, profile updates and deregistration, with stake: at least
//! `max(min_provider_stake, stake_per_gpu × GPUs listed)` ([`crate::trust::required_stake`]),
//! added to with `BondStake`, kept while any of its runs is still being compared.

use std::collections::BTreeSet;

use gpunet_protocol::{Address, Amount, Denom, Event, ProviderProfile, Rejection};

use crate::accounts::{check_can_pay, debit};
use crate::trust::required_stake;
use crate::{Provider, State};

pub(crate) fn check_register(
    state: &State,
    signer: &Address,
    fee: Amount,
    stake: Amount,
    profile: &ProviderProfile,
) -> Result<(), Rejection> {
    profile.validate().map_err(|_| Rejection::ProfileInvalid)?;
    if state.providers.contains_key(signer) {
        return Err(Rejection::ProviderAlreadyRegistered);
    }
    if stake < required_stake(&state.params, profile.capacity.gpus.len()) {
        return Err(Rejection::StakeBelowMinimum);
    }
    check_can_pay(state, signer, fee, Denom::Gpn, stake)
}

pub(crate) fn register(
    state: &mut State,
    signer: Address,
    stake: Amount,
    profile: ProviderProfile,
    events: &mut Vec<Event>,
) {
    debit(state, signer, Denom::Gpn, stake);
    let height = state.height;
    state.providers.insert(
        signer,
        Provider {
            address: signer,
            profile,
            stake,
            registered_height: height,
            live_leases: BTreeSet::new(),
            leases_completed: 0,
            leases_failed: 0,
            last_heartbeat_height: height,
            leaving: false,
            jailed_until_height: 0,
            reputation: crate::Reputation {
                good_milli: 0,
                bad_milli: 0,
                at_height: height,
            },
            verified_runs: Vec::new(),
            runs_under_verification: 0,
            slashed: Amount::ZERO,
            hardware: crate::state::Hardware::default(),
            uptime: crate::state::Uptime::default(),
            judging: Vec::new(),
        },
    );
    // Its claim is challenged at this block's end, if a band covers it.
    crate::challenges::relisted(state, signer);
    events.push(Event::ProviderRegistered {
        provider: signer,
        stake,
    });
}

pub(crate) fn check_update(
    state: &State,
    signer: &Address,
    profile: &ProviderProfile,
) -> Result<(), Rejection> {
    profile.validate().map_err(|_| Rejection::ProfileInvalid)?;
    let p = state
        .providers
        .get(signer)
        .ok_or(Rejection::ProviderNotRegistered)?;
    // Live leases hold resources (and GPU slot indices) by the profile they were matched
    // under, and containers hold the capabilities they were granted: while any run, only the
    // endpoint may move (an agent restarted on a new address).
    let same_offer = p.profile.capacity == profile.capacity
        && p.profile.region == profile.region
        && p.profile.runtimes == profile.runtimes
        && p.profile.capabilities == profile.capabilities;
    if !p.live_leases.is_empty() && !same_offer {
        return Err(Rejection::ProviderHasLiveLeases);
    }
    if p.stake < required_stake(&state.params, profile.capacity.gpus.len()) {
        return Err(Rejection::StakeBelowMinimum);
    }
    Ok(())
}

pub(crate) fn check_bond(
    state: &State,
    signer: &Address,
    fee: Amount,
    amount: Amount,
) -> Result<(), Rejection> {
    let p = state
        .providers
        .get(signer)
        .ok_or(Rejection::ProviderNotRegistered)?;
    if amount.is_zero() {
        return Err(Rejection::ZeroAmount);
    }
    p.stake
        .checked_add(amount)
        .ok_or(Rejection::AmountOverflow)?;
    check_can_pay(state, signer, fee, Denom::Gpn, amount)
}

pub(crate) fn bond(state: &mut State, signer: Address, amount: Amount, events: &mut Vec<Event>) {
    debit(state, signer, Denom::Gpn, amount);
    if let Some(p) = state.providers.get_mut(&signer) {
        p.stake = p
            .stake
            .checked_add(amount)
            .expect("checked: the stake plus the amount fits");
        events.push(Event::StakeBonded {
            provider: signer,
            amount,
            stake: p.stake,
        });
    }
}

pub(crate) fn check_unbond(
    state: &State,
    signer: &Address,
    amount: Amount,
) -> Result<(), Rejection> {
    let p = state
        .providers
        .get(signer)
        .ok_or(Rejection::ProviderNotRegistered)?;
    let needed = required_stake(&state.params, p.profile.capacity.gpus.len());
    let pending = state.accounts.get(signer).map_or(0, |a| a.unbonding.len());
    let keeps = p
        .stake
        .checked_sub(amount)
        .is_some_and(|left| left >= needed);
    if amount.is_zero()
        || !keeps
        || pending >= crate::accounts::MAX_UNBONDINGS
        || crate::trust::jailed(p, state.height)
    {
        return Err(Rejection::UnbondInvalid);
    }
    Ok(())
}

/// Moves `amount` from the provider's stake into unbonding (see [`check_unbond`]).
pub(crate) fn unbond(state: &mut State, signer: Address, amount: Amount, events: &mut Vec<Event>) {
    if let Some(p) = state.providers.get_mut(&signer) {
        p.stake = p
            .stake
            .checked_sub(amount)
            .expect("checked: at most the stake");
        let release_height = crate::accounts::start_unbonding(state, signer, amount);
        events.push(Event::StakeUnbonding {
            provider: signer,
            amount,
            release_height,
        });
    }
}

pub(crate) fn update(
    state: &mut State,
    signer: Address,
    profile: ProviderProfile,
    events: &mut Vec<Event>,
) {
    if let Some(p) = state.providers.get_mut(&signer) {
        let relisted = p.profile.capacity != profile.capacity;
        p.profile = profile;
        events.push(Event::ProviderUpdated { provider: signer });
        if relisted {
            // A new claim: proven again before it bids.
            crate::challenges::relisted(state, signer);
        }
    }
}

pub(crate) fn check_deregister(state: &State, signer: &Address) -> Result<(), Rejection> {
    let p = state
        .providers
        .get(signer)
        .ok_or(Rejection::ProviderNotRegistered)?;
    // Runs still being compared may yet cost it a slash: the stake stays until they are
    // decided.
    // A verifier posts the verdicts it was asked for (or lets their deadlines pass) first.
    if !p.live_leases.is_empty() || p.runs_under_verification > 0 || !p.judging.is_empty() {
        return Err(Rejection::ProviderHasLiveLeases);
    }
    // A claim being tested may yet cost a slash, too.
    if p.hardware.challenge.is_some() {
        return Err(Rejection::ChallengeInFlight);
    }
    Ok(())
}

pub(crate) fn check_announce_exit(state: &State, signer: &Address) -> Result<(), Rejection> {
    let p = state
        .providers
        .get(signer)
        .ok_or(Rejection::ProviderNotRegistered)?;
    if p.leaving {
        return Err(Rejection::ProviderLeaving);
    }
    Ok(())
}

/// Marks the provider leaving and drops its bids: it takes no new leases. Its live leases run
/// on until they end or it releases them.
pub(crate) fn announce_exit(state: &mut State, signer: Address, events: &mut Vec<Event>) {
    if let Some(p) = state.providers.get_mut(&signer) {
        p.leaving = true;
        drop_bids(state, signer);
        events.push(Event::ProviderLeaving { provider: signer });
    }
}

fn drop_bids(state: &mut State, provider: Address) {
    // Only the orders it bid on are written (and so stored and re-hashed), not every open one.
    let bid_on: Vec<_> = state
        .open_orders
        .iter()
        .copied()
        .filter(|id| {
            state
                .orders
                .get(id)
                .is_some_and(|o| o.bids.iter().any(|b| b.provider == provider))
        })
        .collect();
    for id in bid_on {
        if let Some(o) = state.orders.get_mut(&id) {
            o.bids.retain(|b| b.provider != provider);
        }
        // Fewer bids can make its exclusions lapse now.
        state.due_orders.mark(state.height, id);
    }
}

pub(crate) fn deregister(state: &mut State, signer: Address, events: &mut Vec<Event>) {
    if let Some(p) = state.providers.remove(&signer) {
        // Its bids go too: they could never win, and must not hold an order's bid slots.
        drop_bids(state, signer);
        // Its stake unbonds for unbonding_blocks. Nothing can slash it now: a provider with a
        // run under comparison or a challenge in flight could not have deregistered.
        let release_height = crate::accounts::start_unbonding(state, signer, p.stake);
        events.push(Event::ProviderDeregistered {
            provider: signer,
            stake: p.stake,
            release_height,
        });
    }
}
