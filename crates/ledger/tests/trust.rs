//! Trust (issue 12, ADR 0010): stake per GPU, verified orders — spot checks on probation,
//! replicas, reveals that catch a copier, a referee that settles a disagreement — and slashing
//! that moves money exactly as documented. The World checks conservation after every block.

use gpunet_ledger::{OrderStatus, VerifyStage};
use gpunet_protocol::{
    Amount, Compare, Denom, Event, Hash, LeaseId, LeaseResult, Msg, OrderId, Rejection,
    Verification, VerificationMode, VerificationOutcome, WorkloadOutcome, result_tag,
};
use gpunet_testkit::world::lease_result;
use gpunet_testkit::{OutcomeExt, World, h100, order_terms, provider_profile, usd};

const PRICE: Amount = Amount::from_micros(1_000_000);
const RIGHT: Hash = Hash([1; 32]);
const WRONG: Hash = Hash([2; 32]);

fn world() -> World {
    World::builder().tenants(2).providers(4).build()
}

fn verified(mode: VerificationMode, replicas: u8) -> Verification {
    Verification {
        mode,
        replicas,
        compare: Compare::Exact,
    }
}

fn open(w: &mut World, v: Verification) -> OrderId {
    let t = w.tenant(0);
    let mut terms = order_terms().build();
    terms.verification = v;
    let tx = w.create_order(t, terms);
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    outcome.orders_created()[0]
}

/// Provider `p` bids on the open `order` and wins it; returns the lease.
fn lease_to(w: &mut World, order: OrderId, p: usize) -> LeaseId {
    w.lease_to(order, p, PRICE)
}

/// Runs `lease` and reports the tag of `digest`; returns the events of the reporting block.
fn run(w: &mut World, order: OrderId, lease: LeaseId, digest: Hash) -> Vec<Event> {
    let provider = w.lease(lease).provider;
    let tx = w.start(provider, lease);
    w.submit(tx).expect("starts");
    w.blocks(2);
    let tx = w.tx(
        provider,
        Msg::CompleteLease {
            lease,
            result: LeaseResult {
                output_digest: Some(result_tag(order, &digest)),
                ..lease_result(WorkloadOutcome::Succeeded)
            },
        },
    );
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    outcome.events().into_iter().cloned().collect()
}

fn reveal(w: &mut World, order: OrderId, lease: LeaseId, digest: Hash) -> Vec<Event> {
    let provider = w.lease(lease).provider;
    let tx = w.tx(
        provider,
        Msg::RevealDigest {
            order,
            lease,
            digest,
        },
    );
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    outcome.events().into_iter().cloned().collect()
}

/// What the ledger would say to `msg` from `signer` now (applied to a copy of the state).
fn refusal(w: &World, signer: gpunet_protocol::Address, msg: Msg) -> Result<(), Rejection> {
    w.refusal(signer, msg)
}

fn bid_msg(order: OrderId) -> Msg {
    Msg::PlaceBid {
        order,
        price_per_hour: PRICE,
    }
}

/// What a `VerificationDecided` event said.
struct Decision {
    outcome: VerificationOutcome,
    tag: Option<Hash>,
    agreed: Vec<LeaseId>,
    wrong: Vec<LeaseId>,
    refund: Amount,
}

/// The decision among `events`; panics, showing them, if there is none.
fn decision(events: &[Event]) -> Decision {
    match decided(events) {
        Some(Event::VerificationDecided {
            outcome,
            tag,
            agreed,
            wrong,
            refund,
            ..
        }) => Decision {
            outcome,
            tag,
            agreed,
            wrong,
            refund,
        },
        _ => panic!("no decision: {events:?}"),
    }
}

fn decided(events: &[Event]) -> Option<Event> {
    events
        .iter()
        .find(|e| matches!(e, Event::VerificationDecided { .. }))
        .cloned()
}

#[test]
fn a_run_on_probation_is_always_checked_and_agreement_confirms_it() {
    let mut w = world();
    let (p0, p1, t) = (w.provider_addr(0), w.provider_addr(1), w.tenant(0));
    let order = open(&mut w, verified(VerificationMode::SpotCheck, 0));
    let l1 = lease_to(&mut w, order, 0);
    run(&mut w, order, l1, RIGHT);
    // The run is in, the order waits a block for the draw.
    assert_eq!(w.order(order).status, OrderStatus::Verifying);
    assert!(matches!(
        w.order(order).verifying.stage,
        VerifyStage::Drawing { .. }
    ));
    let drawn = w.block(Vec::new());
    assert!(drawn.events().iter().any(|e| matches!(
        e,
        Event::SpotCheckDrawn {
            probability_ppm: 1_000_000,
            checked: true,
            ..
        }
    )));
    assert_eq!(w.order(order).status, OrderStatus::Open);
    // The first run's provider may not check itself.
    assert_eq!(
        refusal(&w, p0, bid_msg(order)),
        Err(Rejection::ProviderExcluded)
    );
    let l2 = lease_to(&mut w, order, 1);
    let events = run(&mut w, order, l2, RIGHT);
    // Its tag equals the first: it must show the digest behind it.
    assert!(events.iter().any(|e| matches!(
        e,
        Event::RevealRequested { leases, .. } if leases == &vec![l2]
    )));
    // Not by another provider, not a digest that does not give the tag.
    assert_eq!(
        refusal(
            &w,
            p0,
            Msg::RevealDigest {
                order,
                lease: l2,
                digest: RIGHT,
            }
        ),
        Err(Rejection::NotLeaseProvider)
    );
    assert_eq!(
        refusal(
            &w,
            p1,
            Msg::RevealDigest {
                order,
                lease: l2,
                digest: WRONG,
            }
        ),
        Err(Rejection::RevealInvalid)
    );
    let usd_before = w.usd(&t);
    let escrow = w.escrow(order);
    let events = reveal(&mut w, order, l2, RIGHT);
    let Decision {
        outcome,
        tag,
        agreed,
        wrong,
        refund,
        ..
    } = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Agreed);
    assert_eq!(tag, Some(result_tag(order, &RIGHT)));
    assert_eq!(agreed, vec![l1, l2]);
    assert!(wrong.is_empty());
    assert_eq!(refund, escrow);
    assert_eq!(w.usd(&t), usd_before.checked_add(escrow).expect("fits"));
    assert!(matches!(w.order(order).status, OrderStatus::Closed { .. }));
    for p in [p0, p1] {
        let prov = w.provider(&p).expect("registered");
        assert_eq!(prov.verified_runs, vec![("cpu".to_owned(), 1)]);
        assert_eq!(prov.reputation.good_milli, 1_000);
        assert_eq!(prov.runs_under_verification, 0);
        assert_eq!(prov.slashed, Amount::ZERO);
    }
}

#[test]
fn a_disagreement_calls_a_referee_and_the_wrong_run_is_slashed_exactly() {
    let mut w = world();
    let (p1, t) = (w.provider_addr(1), w.tenant(0));
    let order = open(&mut w, verified(VerificationMode::SpotCheck, 0));
    let l1 = lease_to(&mut w, order, 0);
    run(&mut w, order, l1, RIGHT);
    w.block(Vec::new()); // the draw: on probation, always checked
    let l2 = lease_to(&mut w, order, 1);
    // Two different tags: nothing to reveal, no answer yet — a referee.
    let events = run(&mut w, order, l2, WRONG);
    assert!(decided(&events).is_none());
    assert_eq!(w.order(order).status, OrderStatus::Open);
    assert_eq!(w.order(order).verifying.needed, 3);
    for p in [0, 1] {
        assert_eq!(
            refusal(&w, w.provider_addr(p), bid_msg(order)),
            Err(Rejection::ProviderExcluded)
        );
    }
    let l3 = lease_to(&mut w, order, 2);
    run(&mut w, order, l3, RIGHT);
    let stake = w.provider(&p1).expect("registered").stake;
    let (tenant_gpn, burned) = (w.gpn(&t), w.burned(Denom::Gpn));
    let events = reveal(&mut w, order, l3, RIGHT);
    let Decision {
        outcome,
        agreed,
        wrong,
        ..
    } = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Majority);
    assert_eq!(agreed, vec![l1, l3]);
    assert_eq!(wrong, vec![l2]);
    // 10% of the stake; half to the tenant, half burned; jailed for jail_blocks.
    let params = w.state.params.clone();
    let amount = stake
        .mul_div_floor(u64::from(params.slash_bps), 10_000)
        .expect("fits");
    let to_tenant = amount
        .mul_div_floor(u64::from(params.slash_to_tenant_bps), 10_000)
        .expect("fits");
    let burn = amount.checked_sub(to_tenant).expect("fits");
    let height = w.state.height;
    assert!(events.contains(&Event::ProviderSlashed {
        provider: p1,
        order,
        lease: l2,
        amount,
        to_tenant,
        burned: burn,
        jailed_until_height: height + params.jail_blocks,
    }));
    assert!(!amount.is_zero() && !burn.is_zero());
    let slashed = w.provider(&p1).expect("still registered");
    assert_eq!(slashed.stake, stake.checked_sub(amount).expect("fits"));
    assert_eq!(slashed.slashed, amount);
    assert_eq!(w.gpn(&t), tenant_gpn.checked_add(to_tenant).expect("fits"));
    // Burned: the slash's share, and the block's transaction fees as ever.
    let fees: u64 = events
        .iter()
        .filter_map(|e| match e {
            Event::FeeBurned { amount, .. } => Some(amount.micros()),
            _ => None,
        })
        .sum();
    assert_eq!(
        w.burned(Denom::Gpn).micros(),
        burned.micros() + burn.micros() + fees
    );
    assert!(slashed.reputation.bad_milli >= 10_000);
    // Jailed: it bids on nothing until the jail ends.
    let other = open(&mut w, Verification::NONE);
    assert_eq!(
        refusal(&w, p1, bid_msg(other)),
        Err(Rejection::ProviderJailed)
    );
    // Now under the stake its listing needs, once out of jail it must bond again to bid.
    w.advance_to(height + params.jail_blocks);
    let other = open(&mut w, Verification::NONE);
    assert_eq!(
        refusal(&w, p1, bid_msg(other)),
        Err(Rejection::StakeBelowMinimum)
    );
    let bond = w.tx(p1, Msg::BondStake { amount });
    w.submit(bond).expect("bonds");
    assert_eq!(w.provider(&p1).expect("registered").stake, stake);
    let tx = w.tx(
        p1,
        Msg::PlaceBid {
            order: other,
            price_per_hour: PRICE,
        },
    );
    w.submit(tx).expect("bids again");
}

#[test]
fn a_run_that_copies_an_earlier_tag_cannot_reveal_and_is_replaced_and_slashed() {
    let mut w = world();
    let p1 = w.provider_addr(1);
    let order = open(&mut w, verified(VerificationMode::SpotCheck, 0));
    let l1 = lease_to(&mut w, order, 0);
    run(&mut w, order, l1, RIGHT);
    w.block(Vec::new());
    let l2 = lease_to(&mut w, order, 1);
    // The copier reports the first run's tag: it never had the digest behind it.
    let events = run(&mut w, order, l2, RIGHT);
    let deadline = events
        .iter()
        .find_map(|e| match e {
            Event::RevealRequested {
                deadline_height, ..
            } => Some(*deadline_height),
            _ => None,
        })
        .expect("asked to reveal");
    let stake = w.provider(&p1).expect("registered").stake;
    let outcomes = w.advance_to(deadline);
    let slashed = outcomes.iter().any(|o| {
        o.events()
            .iter()
            .any(|e| matches!(e, Event::ProviderSlashed { provider, lease, .. } if *provider == p1 && *lease == l2))
    });
    assert!(slashed, "the copier was not slashed at the deadline");
    assert!(w.provider(&p1).expect("registered").stake < stake);
    // A replacement run, blind as the others, settles it.
    assert_eq!(w.order(order).status, OrderStatus::Open);
    let l3 = lease_to(&mut w, order, 2);
    run(&mut w, order, l3, RIGHT);
    let events = reveal(&mut w, order, l3, RIGHT);
    let Decision {
        outcome,
        agreed,
        wrong,
        ..
    } = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Majority);
    assert_eq!(agreed, vec![l1, l3]);
    assert_eq!(wrong, vec![l2]);
    // Slashed once, not again at the decision.
    let slashes = events
        .iter()
        .filter(|e| matches!(e, Event::ProviderSlashed { .. }))
        .count();
    assert_eq!(slashes, 0);
}

#[test]
fn replicas_run_on_distinct_providers_and_the_majority_wins() {
    let mut w = world();
    let p2 = w.provider_addr(2);
    let order = open(&mut w, verified(VerificationMode::Replicas, 3));
    let l1 = lease_to(&mut w, order, 0);
    let events = run(&mut w, order, l1, RIGHT);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::SpotCheckDrawn { .. }))
    );
    assert_eq!(w.order(order).status, OrderStatus::Open);
    let l2 = lease_to(&mut w, order, 1);
    run(&mut w, order, l2, RIGHT);
    let l3 = lease_to(&mut w, order, 2);
    let events = run(&mut w, order, l3, WRONG);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::RevealRequested { leases, .. } if leases == &vec![l2]
    )));
    let events = reveal(&mut w, order, l2, RIGHT);
    let Decision {
        outcome,
        agreed,
        wrong,
        ..
    } = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Majority);
    assert_eq!(agreed, vec![l1, l2]);
    assert_eq!(wrong, vec![l3]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ProviderSlashed { provider, .. } if *provider == p2))
    );
}

#[test]
fn verified_orders_need_a_tag_exact_comparison_and_bounded_replicas() {
    let mut w = world();
    let t = w.tenant(0);
    for (v, why) in [
        (
            verified(VerificationMode::Replicas, 1),
            Rejection::VerificationInvalid,
        ),
        (
            verified(VerificationMode::Replicas, 6),
            Rejection::VerificationInvalid,
        ),
    ] {
        let mut terms = order_terms().build();
        terms.verification = v;
        assert_eq!(refusal(&w, t, Msg::CreateOrder { terms }), Err(why));
    }
    let order = open(&mut w, verified(VerificationMode::SpotCheck, 0));
    let lease = lease_to(&mut w, order, 0);
    let p0 = w.provider_addr(0);
    let tx = w.start(p0, lease);
    w.submit(tx).expect("starts");
    let tx = w.complete(p0, lease, WorkloadOutcome::Succeeded);
    assert_eq!(w.submit(tx), Err(Rejection::ResultTagMissing));
    // A failed run needs no tag, and with no run in hand nothing is compared.
    let tx = w.complete(p0, lease, WorkloadOutcome::Failed);
    w.submit(tx).expect("a failure is reported as ever");
}

#[test]
fn a_provider_with_runs_under_comparison_keeps_its_stake_until_they_are_decided() {
    let mut w = world();
    let p0 = w.provider_addr(0);
    let order = open(&mut w, verified(VerificationMode::SpotCheck, 0));
    let l1 = lease_to(&mut w, order, 0);
    run(&mut w, order, l1, RIGHT);
    assert_eq!(
        w.provider(&p0).expect("registered").runs_under_verification,
        1
    );
    let tx = w.deregister(p0);
    assert_eq!(w.submit(tx), Err(Rejection::ProviderHasLiveLeases));
}

#[test]
fn stake_follows_the_gpus_listed_and_bond_stake_adds_to_it() {
    let one = provider_profile(8_000, 32_768, vec![h100()]);
    let mut w = World::builder().provider(one.clone()).build();
    let (p, t) = (w.provider_addr(0), w.tenant(0));
    let params = w.state.params.clone();
    assert_eq!(
        w.provider(&p).expect("registered").stake,
        params.min_provider_stake
    );
    let two = provider_profile(8_000, 32_768, vec![h100(), h100()]);
    let tx = w.update_provider(p, two.clone());
    assert_eq!(w.submit(tx), Err(Rejection::StakeBelowMinimum));
    let tx = w.tx(
        p,
        Msg::BondStake {
            amount: Amount::ZERO,
        },
    );
    assert_eq!(w.submit(tx), Err(Rejection::ZeroAmount));
    let tx = w.tx(t, Msg::BondStake { amount: usd(1) });
    assert_eq!(w.submit(tx), Err(Rejection::ProviderNotRegistered));
    let gpn = w.gpn(&p);
    let tx = w.tx(
        p,
        Msg::BondStake {
            amount: params.stake_per_gpu,
        },
    );
    let events = w.submit(tx).expect("bonds");
    assert!(events.contains(&Event::StakeBonded {
        provider: p,
        amount: params.stake_per_gpu,
        stake: Amount::from_micros(
            params.min_provider_stake.micros() + params.stake_per_gpu.micros()
        ),
    }));
    let fee = params.min_tx_fee;
    assert_eq!(
        w.gpn(&p),
        Amount::from_micros(gpn.micros() - params.stake_per_gpu.micros() - fee.micros())
    );
    let tx = w.update_provider(p, two);
    w.submit(tx).expect("two GPUs are now staked");
}

#[test]
fn a_provider_on_probation_takes_small_orders_only() {
    let mut w = world();
    let (t, p0) = (w.tenant(0), w.provider_addr(0));
    let cap = w.state.params.probation_max_deposit;
    let mut terms = order_terms().build();
    terms.deposit = Amount::from_micros(cap.micros() + 1);
    let tx = w.create_order(t, terms);
    let order = w.block(vec![tx]).orders_created()[0];
    assert_eq!(
        refusal(&w, p0, bid_msg(order)),
        Err(Rejection::ProbationJobTooLarge)
    );
    // With no probation on the network, the same bid is taken.
    let mut w = World::builder()
        .providers(1)
        .with_params(|p| p.probation_runs = 0)
        .build();
    let (t, p0) = (w.tenant(0), w.provider_addr(0));
    let mut terms = order_terms().build();
    terms.deposit = Amount::from_micros(cap.micros() + 1);
    let tx = w.create_order(t, terms);
    let order = w.block(vec![tx]).orders_created()[0];
    let tx = w.bid(p0, order, PRICE);
    w.submit(tx).expect("no probation, no cap");
}

/// A world where a spot check is never drawn: no probation, no floor on the probability (the
/// economic term of these cheap runs rounds to nothing).
fn undrawn_world() -> World {
    World::builder()
        .tenants(2)
        .providers(4)
        .with_params(|p| {
            p.probation_runs = 0;
            p.spot_check_min_ppm = 0;
            p.spot_check_record_ppm = 0;
        })
        .build()
}

/// Runs the first run of a spot-checked order to its (undrawn) draw; returns the order, the
/// lease and the dispute window's end.
fn unchecked(w: &mut World, digest: Hash) -> (OrderId, LeaseId, u64) {
    let order = open(w, verified(VerificationMode::SpotCheck, 0));
    let l1 = lease_to(w, order, 0);
    run(w, order, l1, digest);
    let drawn = w.block(Vec::new());
    assert!(
        drawn
            .events()
            .iter()
            .any(|e| matches!(e, Event::SpotCheckDrawn { checked: false, .. }))
    );
    let VerifyStage::Disputable { until_height } = w.order(order).verifying.stage else {
        panic!("not disputable: {:?}", w.order(order).verifying);
    };
    assert_eq!(
        until_height,
        w.state.height + w.state.params.dispute_window_blocks
    );
    (order, l1, until_height)
}

#[test]
fn a_disputed_wrong_result_is_rerun_refereed_and_its_provider_pays() {
    let mut w = undrawn_world();
    let (t, p0) = (w.tenant(0), w.provider_addr(0));
    let (order, l1, _) = unchecked(&mut w, WRONG);
    // Only the tenant may dispute.
    assert_eq!(
        refusal(&w, w.tenant(1), Msg::Dispute { order }),
        Err(Rejection::NotOrderOwner)
    );
    let tx = w.tx(t, Msg::Dispute { order });
    let events = w.submit(tx).expect("the tenant disputes");
    assert!(events.contains(&Event::DisputeOpened { order }));
    assert_eq!(w.order(order).status, OrderStatus::Open);
    // The rerun disagrees, a referee sides with it, and the first run's provider is slashed.
    let l2 = lease_to(&mut w, order, 1);
    run(&mut w, order, l2, RIGHT);
    let l3 = lease_to(&mut w, order, 2);
    run(&mut w, order, l3, RIGHT);
    let stake = w.provider(&p0).expect("registered").stake;
    let tenant_gpn = w.gpn(&t);
    let events = reveal(&mut w, order, l3, RIGHT);
    let Decision {
        outcome,
        agreed,
        wrong,
        ..
    } = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Majority);
    assert_eq!(agreed, vec![l2, l3]);
    assert_eq!(wrong, vec![l1]);
    let slash = stake
        .mul_div_floor(u64::from(w.state.params.slash_bps), 10_000)
        .expect("fits");
    assert_eq!(
        w.provider(&p0).expect("registered").stake,
        stake.checked_sub(slash).expect("fits")
    );
    assert!(
        w.gpn(&t) > tenant_gpn,
        "the tenant got its share of the slash"
    );
    // The order closes on a run that agreed: the outputs the tenant takes are confirmed ones.
    assert_eq!(w.order(order).status, OrderStatus::Closed { lease: l2 });
}

#[test]
fn a_disputed_right_result_is_confirmed_and_the_tenant_paid_for_the_rerun() {
    let mut w = undrawn_world();
    let t = w.tenant(0);
    let (order, l1, _) = unchecked(&mut w, RIGHT);
    let escrow = w.escrow(order);
    let tx = w.tx(t, Msg::Dispute { order });
    w.submit(tx).expect("the tenant disputes");
    let l2 = lease_to(&mut w, order, 1);
    run(&mut w, order, l2, RIGHT);
    let events = reveal(&mut w, order, l2, RIGHT);
    let Decision {
        outcome,
        agreed,
        refund,
        ..
    } = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Agreed);
    assert_eq!(agreed, vec![l1, l2]);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ProviderSlashed { .. })),
        "nobody was wrong"
    );
    // The loser pays: the rerun came out of the tenant's escrow.
    let rerun = w.lease(l2).paid;
    assert!(!rerun.is_zero());
    assert_eq!(refund, escrow.checked_sub(rerun).expect("fits"));
}

#[test]
fn an_undisputed_result_closes_unchecked_when_the_window_ends() {
    let mut w = undrawn_world();
    let t = w.tenant(0);
    let (order, l1, until) = unchecked(&mut w, RIGHT);
    let escrow = w.escrow(order);
    let usd = w.usd(&t);
    let outcomes = w.advance_to(until);
    let events: Vec<Event> = outcomes
        .iter()
        .flat_map(|o| o.events().into_iter().cloned())
        .collect();
    let Decision {
        outcome,
        tag,
        refund,
        ..
    } = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Unchecked);
    assert_eq!(tag, Some(result_tag(order, &RIGHT)));
    assert_eq!(refund, escrow);
    assert_eq!(w.usd(&t), usd.checked_add(escrow).expect("fits"));
    assert_eq!(w.order(order).status, OrderStatus::Closed { lease: l1 });
    // Too late now, and never for an order without verification.
    assert_eq!(
        refusal(&w, t, Msg::Dispute { order }),
        Err(Rejection::OrderNotOpen)
    );
    let plain = open(&mut w, Verification::NONE);
    assert_eq!(
        refusal(&w, t, Msg::Dispute { order: plain }),
        Err(Rejection::DisputeNotOpen)
    );
}

/// A bid placed before its provider was slashed cannot win once the provider is out of jail
/// but still under the stake its GPUs need: the order drops it and gathers fresh bids, and
/// once bonded back the provider's new bid wins.
#[test]
fn a_bid_from_before_a_slash_cannot_win_until_the_stake_is_bonded_back() {
    let mut w = World::builder()
        .tenants(2)
        .providers(4)
        .with_params(|p| {
            p.jail_blocks = 2;
            p.bid_window_blocks = 12;
            p.order_ttl_blocks = 200;
        })
        .build();
    let p1 = w.provider_addr(1);
    let order = open(&mut w, verified(VerificationMode::SpotCheck, 0));
    let l1 = lease_to(&mut w, order, 0);
    run(&mut w, order, l1, RIGHT);
    w.block(Vec::new()); // the draw: on probation, always checked
    let l2 = lease_to(&mut w, order, 1);
    run(&mut w, order, l2, WRONG);
    let l3 = lease_to(&mut w, order, 2);
    run(&mut w, order, l3, RIGHT);
    // Before the referee's reveal slashes it, p1 bids on another order, alone.
    let other = open(&mut w, Verification::NONE);
    let tx = w.bid(p1, other, PRICE);
    w.block(vec![tx]).assert_all_applied();
    let events = reveal(&mut w, order, l3, RIGHT);
    assert_eq!(decision(&events).wrong, vec![l2]);
    let slashed = w.provider(&p1).expect("registered").clone();
    let needed =
        gpunet_ledger::trust::required_stake(&w.state.params, slashed.profile.capacity.gpus.len());
    assert!(slashed.stake < needed, "the slash left it under-staked");
    // Out of jail when the bid window closes: its bid is the only one, and it does not win.
    let window_ends = w.order(other).open_since_height + w.state.params.bid_window_blocks;
    assert!(
        window_ends > slashed.jailed_until_height,
        "the test's timing"
    );
    w.advance_to(window_ends + 1);
    assert!(!gpunet_ledger::trust::jailed(&slashed, w.state.height));
    assert_eq!(w.order(other).status, OrderStatus::Open, "no lease for it");
    assert!(w.order(other).bids.is_empty(), "its bid was dropped");
    assert_eq!(
        refusal(&w, p1, bid_msg(other)),
        Err(Rejection::StakeBelowMinimum)
    );
    // Bonded back above what its GPUs need, its fresh bid wins.
    let short = needed.checked_sub(slashed.stake).expect("under");
    let bond = w.tx(p1, Msg::BondStake { amount: short });
    w.submit(bond).expect("bonds");
    let tx = w.bid(p1, other, PRICE);
    w.block(vec![tx]).assert_all_applied();
    w.blocks(2);
    match w.order(other).status {
        OrderStatus::Leased { lease } => assert_eq!(w.lease(lease).provider, p1),
        status => panic!("the bonded provider's bid did not win: {status:?}"),
    }
}

/// Unbonding does not dodge a verdict still to come: the slash is cut on the stake bonded and
/// unbonding together, and a jailed provider cannot unbond more.
#[test]
fn a_slash_is_sized_on_the_stake_unbonding_too() {
    let mut w = World::builder()
        .tenants(2)
        .providers(4)
        .with_params(|p| p.unbonding_blocks = 1_000)
        .build();
    let p1 = w.provider_addr(1);
    let extra = gpunet_testkit::usd(200);
    let bond = w.tx(p1, Msg::BondStake { amount: extra });
    w.submit(bond).expect("bonds");
    let order = open(&mut w, verified(VerificationMode::SpotCheck, 0));
    let l1 = lease_to(&mut w, order, 0);
    run(&mut w, order, l1, RIGHT);
    w.block(Vec::new()); // the draw: on probation, always checked
    let l2 = lease_to(&mut w, order, 1);
    run(&mut w, order, l2, WRONG);
    // The wrong run in, its verdict to come: it takes its spare stake out.
    let total = w.provider(&p1).expect("registered").stake;
    let unbond = w.tx(p1, Msg::UnbondStake { amount: extra });
    w.submit(unbond).expect("unbonds the spare");
    let l3 = lease_to(&mut w, order, 2);
    run(&mut w, order, l3, RIGHT);
    let events = reveal(&mut w, order, l3, RIGHT);
    assert_eq!(decision(&events).wrong, vec![l2]);
    let amount = total
        .mul_div_floor(u64::from(w.state.params.slash_bps), 10_000)
        .expect("fits");
    let slashed = events
        .iter()
        .find_map(|e| match e {
            Event::ProviderSlashed { amount, .. } => Some(*amount),
            _ => None,
        })
        .expect("slashed");
    assert_eq!(slashed, amount, "sized on bonded + unbonding");
    let after = w.provider(&p1).expect("registered");
    let bonded = total.checked_sub(extra).expect("fits");
    assert_eq!(after.stake, bonded.checked_sub(amount).expect("fits"));
    assert_eq!(
        w.state
            .accounts
            .get(&p1)
            .expect("account")
            .unbonding_total(),
        extra
    );
    // Jailed: no more unbonding.
    assert_eq!(
        refusal(
            &w,
            p1,
            Msg::UnbondStake {
                amount: Amount::from_micros(1)
            }
        ),
        Err(Rejection::UnbondInvalid)
    );
}
