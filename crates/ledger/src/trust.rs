//! What the network believes of a provider, in integers (ADR 0010): the stake its GPUs need,
//! its reputation, whether it is on probation in a GPU class, how likely its runs are to be
//! spot-checked, how matching weighs its price, and the slash that a wrong run costs.
//!
//! **Reputation** is a beta-style score over decaying evidence: verified runs that agreed count
//! for it (1 each), wrong or unrevealed runs against it (10 each), and leases it lost (its
//! heartbeats stopped: 1 each). With `good` and `bad` the decayed weights,
//! `score = (good + 1) / (good + bad + 2)`, in millionths: 500 000 for a newcomer, toward
//! 1 000 000 with a clean record. Evidence halves every `reputation_half_life_blocks`; within a
//! half-life the decay is linear (`v − v·r/(2h)`, at most 6% above the exact curve), so the
//! score is the same on every machine.
//!
//! **Spot-check probability** of a run that paid `payment`:
//! - 1 (always) while its provider is on probation in the run's GPU class;
//! - else `max(record, economic)`, at most 1, where `record = spot_check_min_ppm +
//!   spot_check_record_ppm × (1 − score)`, and `economic = payment / slash_value`: the
//!   probability at which cheating on this run costs, in expectation, what it could save
//!   (`slash_value` is the slash the provider's stake would take, in usd at
//!   `gpn_reference_price`).
//!
//! **Matching** ranks bids by `price × (3 − score) / 2`: a perfect record bids at its price,
//! a newcomer as if 25% dearer, a provider with no good evidence as if 50% dearer. The winner
//! is paid its own bid.

use gpunet_protocol::{Amount, Denom, Event, LeaseId, OrderId};

use crate::Params;
use crate::State;
use crate::accounts::credit;
use crate::state::{Provider, Reputation};

/// One million: probabilities and scores are in millionths.
pub const PPM: u64 = 1_000_000;
const MILLI: u64 = 1_000;
/// Weight of a wrong or unrevealed run against a provider, in runs.
const WRONG_WEIGHT: u64 = 10;
const BPS: u64 = 10_000;

/// The stake a provider listing `gpus` GPUs must hold.
pub fn required_stake(params: &Params, gpus: usize) -> Amount {
    let per_gpu = params
        .stake_per_gpu
        .mul_div_floor(gpus as u64, 1)
        .unwrap_or(Amount::MAX);
    per_gpu.max(params.min_provider_stake)
}

/// `v` decayed over `blocks` with half-life `half_life` (see the module doc).
fn decay(v: u64, blocks: u64, half_life: u64) -> u64 {
    let half_life = half_life.max(1);
    let halvings = blocks / half_life;
    if halvings >= 64 {
        return 0;
    }
    let v = v >> halvings;
    let rem = blocks % half_life;
    let cut = u128::from(v) * u128::from(rem) / (2 * u128::from(half_life));
    v - u64::try_from(cut).unwrap_or(v)
}

impl Reputation {
    /// The evidence decayed to `height`.
    pub fn at(&self, height: u64, half_life: u64) -> Reputation {
        let blocks = height.saturating_sub(self.at_height);
        Reputation {
            good_milli: decay(self.good_milli, blocks, half_life),
            bad_milli: decay(self.bad_milli, blocks, half_life),
            at_height: height.max(self.at_height),
        }
    }

    /// The score in millionths: `(good + 1) / (good + bad + 2)`.
    pub fn score_ppm(&self) -> u64 {
        let good = u128::from(self.good_milli) + u128::from(MILLI);
        let all = u128::from(self.good_milli) + u128::from(self.bad_milli) + 2 * u128::from(MILLI);
        u64::try_from(good * u128::from(PPM) / all).unwrap_or(PPM)
    }

    /// The score at `height`.
    pub fn score_at(&self, height: u64, half_life: u64) -> u64 {
        self.at(height, half_life).score_ppm()
    }
}

/// Which evidence a provider earned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// A run that agreed with the verified result.
    Agreed,
    /// A run that reported another result, or did not reveal its digest.
    Wrong,
    /// A lease it lost (its proofs of life stopped).
    Lost,
    /// A hardware challenge it passed (counts as an agreed run).
    ChallengePassed,
}

/// Adds evidence to a provider's reputation at the state's height.
pub(crate) fn record(state: &mut State, provider: &gpunet_protocol::Address, evidence: Evidence) {
    let (height, half_life) = (state.height, state.params.reputation_half_life_blocks);
    if let Some(p) = state.providers.get_mut(provider) {
        let mut r = p.reputation.at(height, half_life);
        match evidence {
            Evidence::Agreed | Evidence::ChallengePassed => {
                r.good_milli = r.good_milli.saturating_add(MILLI)
            }
            Evidence::Wrong => r.bad_milli = r.bad_milli.saturating_add(WRONG_WEIGHT * MILLI),
            Evidence::Lost => r.bad_milli = r.bad_milli.saturating_add(MILLI),
        }
        p.reputation = r;
    }
}

/// Counts a verified run in `class` toward the end of the provider's probation there.
pub(crate) fn count_verified_run(
    state: &mut State,
    provider: &gpunet_protocol::Address,
    class: &str,
) {
    if let Some(p) = state.providers.get_mut(provider) {
        match p
            .verified_runs
            .binary_search_by(|(c, _)| c.as_str().cmp(class))
        {
            Ok(i) => p.verified_runs[i].1 = p.verified_runs[i].1.saturating_add(1),
            Err(i) => p.verified_runs.insert(i, (class.to_owned(), 1)),
        }
    }
}

/// The GPU class a lease on `provider` holding `gpu_slots` runs in: the family of its first
/// GPU, or `cpu`.
pub fn class_of(provider: &Provider, gpu_slots: &[u32]) -> String {
    gpu_slots
        .first()
        .and_then(|s| provider.profile.capacity.gpus.get(*s as usize))
        .map_or_else(|| "cpu".to_owned(), |g| g.family.clone())
}

/// Whether the provider is on probation in `class`.
pub fn on_probation(params: &Params, provider: &Provider, class: &str) -> bool {
    let runs = provider
        .verified_runs
        .binary_search_by(|(c, _)| c.as_str().cmp(class))
        .map_or(0, |i| provider.verified_runs[i].1);
    runs < params.probation_runs
}

/// Whether the provider is jailed at `height`.
pub fn jailed(provider: &Provider, height: u64) -> bool {
    height < provider.jailed_until_height
}

/// The slash a wrong run costs a provider holding `stake` (bonded and unbonding): `slash_bps` of it.
pub fn slash_amount(params: &Params, stake: Amount) -> Amount {
    stake
        .mul_div_floor(u64::from(params.slash_bps), BPS)
        .unwrap_or(Amount::ZERO)
}

/// The probability, in millionths, that a run by `provider` in `class` that paid `payment`
/// (usd) is spot-checked at `height` (see the module doc).
pub fn spot_check_ppm(
    params: &Params,
    provider: &Provider,
    class: &str,
    payment: Amount,
    height: u64,
) -> u32 {
    if on_probation(params, provider, class) {
        return PPM as u32;
    }
    let score = provider
        .reputation
        .score_at(height, params.reputation_half_life_blocks);
    let record = u64::from(params.spot_check_min_ppm)
        + u64::from(params.spot_check_record_ppm) * (PPM - score.min(PPM)) / PPM;
    // The slash in usd micro-units: gpn micro-units × usd per gpn.
    let slash_usd = u128::from(slash_amount(params, provider.stake).micros())
        * u128::from(params.gpn_reference_price.micros())
        / u128::from(gpunet_protocol::MICROS_PER_UNIT);
    // Nothing to slash: always checked.
    let economic = (u128::from(payment.micros()) * u128::from(PPM))
        .checked_div(slash_usd)
        .unwrap_or(u128::from(PPM));
    let p = u128::from(record).max(economic).min(u128::from(PPM));
    u32::try_from(p).unwrap_or(PPM as u32)
}

/// The price matching ranks a bid at (see the module doc); never below the bid.
pub fn ranked_price(price: Amount, score_ppm: u64) -> u128 {
    u128::from(price.micros()) * u128::from(3 * PPM - score_ppm.min(PPM)) / u128::from(2 * PPM)
}

/// Cuts the provider's stake for a wrong run of `order` by `tenant`: `slash_to_tenant_bps` of
/// the cut to the tenant, the rest burned; jails it, and counts the evidence.
pub(crate) fn slash(
    state: &mut State,
    provider: gpunet_protocol::Address,
    order: OrderId,
    lease: LeaseId,
    tenant: gpunet_protocol::Address,
    events: &mut Vec<Event>,
) {
    record(state, &provider, Evidence::Wrong);
    let Some(cut) = cut_stake(state, provider, Some(tenant)) else {
        return;
    };
    events.push(Event::ProviderSlashed {
        provider,
        order,
        lease,
        amount: cut.amount,
        to_tenant: cut.to_tenant,
        burned: cut.burned,
        jailed_until_height: cut.jailed_until_height,
    });
}

/// What a slash took.
pub(crate) struct Cut {
    pub amount: Amount,
    pub to_tenant: Amount,
    pub burned: Amount,
    pub jailed_until_height: u64,
}

/// Cuts `slash_bps` of the provider's stake — `slash_to_tenant_bps` of the cut to `tenant`
/// when a tenant was harmed, the rest burned — and jails it for `jail_blocks`. `None` if it is
/// not registered.
pub(crate) fn cut_stake(
    state: &mut State,
    provider: gpunet_protocol::Address,
    tenant: Option<gpunet_protocol::Address>,
) -> Option<Cut> {
    let params = state.params.clone();
    let height = state.height;
    // Stake on its way out is slashable too: a verdict still to come cannot be dodged by
    // unbonding first. The cut takes the bonded stake first, then the newest unbondings.
    let unbonding = state
        .accounts
        .get(&provider)
        .map_or(Amount::ZERO, |a| a.unbonding_total());
    let p = state.providers.get_mut(&provider)?;
    let amount = slash_amount(
        &params,
        p.stake.checked_add(unbonding).unwrap_or(Amount::MAX),
    );
    let from_stake = if amount < p.stake { amount } else { p.stake };
    let to_tenant = match tenant {
        Some(_) => amount
            .mul_div_floor(u64::from(params.slash_to_tenant_bps), BPS)
            .unwrap_or(Amount::ZERO),
        None => Amount::ZERO,
    };
    let burned = amount
        .checked_sub(to_tenant)
        .expect("the tenant's share is a fraction of the slash");
    p.stake = p.stake.checked_sub(from_stake).expect("at most the stake");
    p.slashed = p.slashed.checked_add(amount).unwrap_or(Amount::MAX);
    let jailed_until_height = height
        .saturating_add(params.jail_blocks)
        .max(p.jailed_until_height);
    p.jailed_until_height = jailed_until_height;
    let rest = amount.checked_sub(from_stake).expect("at most the amount");
    let taken = crate::accounts::cut_unbonding(state, provider, rest);
    debug_assert_eq!(
        taken, rest,
        "a slash is a fraction of stake and unbonding together"
    );
    if let Some(tenant) = tenant {
        credit(state, tenant, Denom::Gpn, to_tenant);
    }
    let b = state.supply.burned.get_mut(Denom::Gpn);
    *b = b
        .checked_add(burned)
        .expect("burned never exceeds the minted supply");
    Some(Cut {
        amount,
        to_tenant,
        burned,
        jailed_until_height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_halves_every_half_life_and_never_grows() {
        assert_eq!(decay(1_000, 0, 100), 1_000);
        assert_eq!(decay(1_000, 100, 100), 500);
        assert_eq!(decay(1_000, 200, 100), 250);
        // Halfway through a half-life: linear, 750 (the exact curve gives 707).
        assert_eq!(decay(1_000, 50, 100), 750);
        assert_eq!(decay(u64::MAX, 64 * 100, 100), 0);
        let mut last = u64::MAX;
        for b in 0..1_000 {
            let v = decay(1_000_000, b, 97);
            assert!(v <= last, "decay grew at {b}");
            last = v;
        }
    }

    #[test]
    fn scores_start_at_one_half_and_move_with_the_evidence() {
        let r = Reputation::default();
        assert_eq!(r.score_ppm(), 500_000);
        let good = Reputation {
            good_milli: 98_000,
            bad_milli: 0,
            at_height: 0,
        };
        assert_eq!(good.score_ppm(), 990_000);
        let bad = Reputation {
            good_milli: 0,
            bad_milli: 10_000,
            at_height: 0,
        };
        assert_eq!(bad.score_ppm(), 83_333);
        // Ranking: a perfect record at its price, a newcomer as if 25% dearer.
        assert_eq!(ranked_price(Amount::from_micros(100), PPM), 100);
        assert_eq!(ranked_price(Amount::from_micros(100), 500_000), 125);
        assert_eq!(ranked_price(Amount::from_micros(100), 0), 150);
    }
}
