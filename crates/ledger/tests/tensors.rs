//! `compare: tensors` (issue 12, ADR 0010): runs whose outputs are close but not equal report
//! different tags, so a verifier provider drawn from the block seed compares their declared
//! outputs and posts a signed verdict. The World checks conservation after every block.

use gpunet_ledger::{OrderStatus, VerifyStage};
use gpunet_protocol::{
    Address, Amount, Compare, Event, Hash, LeaseId, LeaseResult, Msg, OrderId, Rejection,
    Verification, VerificationMode, VerificationOutcome, WorkloadOutcome, result_tag,
};
use gpunet_testkit::world::lease_result;
use gpunet_testkit::{OutcomeExt, World, order_terms};

const PRICE: Amount = Amount::from_micros(1_000_000);
const WINDOW: u64 = 20;

fn world(providers: usize) -> World {
    World::builder()
        .tenants(1)
        .providers(providers)
        .with_params(|p| p.verdict_window_blocks = WINDOW)
        .build()
}

fn tensors(replicas: u8) -> Verification {
    Verification {
        mode: VerificationMode::Replicas,
        replicas,
        compare: Compare::Tensors,
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

fn lease_to(w: &mut World, order: OrderId, p: usize) -> LeaseId {
    w.lease_to(order, p, PRICE)
}

/// Runs `lease` and reports the tag of an output listing with digest `[d; 32]`; returns the
/// events of the reporting block.
fn run(w: &mut World, order: OrderId, lease: LeaseId, d: u8) -> Vec<Event> {
    let provider = w.lease(lease).provider;
    let tx = w.start(provider, lease);
    w.submit(tx).expect("starts");
    w.blocks(2);
    let tx = w.tx(
        provider,
        Msg::CompleteLease {
            lease,
            result: LeaseResult {
                output_digest: Some(result_tag(order, &Hash([d; 32]))),
                ..lease_result(WorkloadOutcome::Succeeded)
            },
        },
    );
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    outcome.events().into_iter().cloned().collect()
}

/// Runs the order on providers `ps` in turn, each reporting its own digest (close outputs,
/// different bytes); returns the leases and the events of the last block.
fn run_all(w: &mut World, order: OrderId, ps: &[usize]) -> (Vec<LeaseId>, Vec<Event>) {
    let mut leases = Vec::new();
    let mut events = Vec::new();
    for (i, &p) in ps.iter().enumerate() {
        let lease = lease_to(w, order, p);
        events = run(w, order, lease, 10 + i as u8);
        leases.push(lease);
    }
    (leases, events)
}

/// The verifier asked among `events`, with the runs and deadline it was given.
fn requested(events: &[Event]) -> Option<(Address, Vec<LeaseId>, u64)> {
    events.iter().find_map(|e| match e {
        Event::VerdictRequested {
            verifier,
            runs,
            deadline_height,
            ..
        } => Some((*verifier, runs.clone(), *deadline_height)),
        _ => None,
    })
}

fn verdict(order: OrderId, agreeing: &[LeaseId], missing: &[LeaseId]) -> Msg {
    Msg::PostVerdict {
        order,
        agreeing: agreeing.to_vec(),
        missing: missing.to_vec(),
    }
}

fn post(w: &mut World, verifier: Address, msg: Msg) -> Vec<Event> {
    let tx = w.tx(verifier, msg);
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    outcome.events().into_iter().cloned().collect()
}

fn refusal(w: &World, signer: Address, msg: Msg) -> Result<(), Rejection> {
    w.refusal(signer, msg)
}

fn decision(events: &[Event]) -> (VerificationOutcome, Vec<LeaseId>, Vec<LeaseId>) {
    events
        .iter()
        .find_map(|e| match e {
            Event::VerificationDecided {
                outcome,
                agreed,
                wrong,
                ..
            } => Some((*outcome, agreed.clone(), wrong.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no decision: {events:?}"))
}

fn slashed(events: &[Event]) -> Vec<LeaseId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ProviderSlashed { lease, .. } => Some(*lease),
            _ => None,
        })
        .collect()
}

#[test]
fn close_runs_with_different_tags_are_judged_by_a_drawn_verifier_who_is_paid() {
    let mut w = world(4);
    let order = open(&mut w, tensors(2));
    let (leases, events) = run_all(&mut w, order, &[0, 1]);
    // Different tags, nothing to reveal: a verifier is asked at once, never a runner or the
    // tenant.
    let (verifier, runs, deadline) = requested(&events).expect("a verifier is asked");
    assert_eq!(runs, leases);
    assert!([w.provider_addr(2), w.provider_addr(3)].contains(&verifier));
    assert_eq!(deadline, w.state.height + WINDOW);
    assert_eq!(w.order(order).status, OrderStatus::Verifying);
    assert!(matches!(
        w.order(order).verifying.stage,
        VerifyStage::Judging { verifier: v, .. } if v == verifier
    ));
    assert_eq!(
        w.provider(&verifier).expect("verifier").judging,
        vec![order]
    );
    // A verifier cannot leave with a verdict owed.
    assert_eq!(
        refusal(&w, verifier, Msg::DeregisterProvider),
        Err(Rejection::ProviderHasLiveLeases)
    );

    let (escrow, usd_before) = (w.escrow(order), w.usd(&verifier));
    let tenant_before = w.usd(&w.tenant(0));
    let events = post(&mut w, verifier, verdict(order, &leases, &[]));
    let fee = w.state.params.verdict_fee;
    assert_eq!(w.usd(&verifier), usd_before.checked_add(fee).expect("sum"));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::VerdictPosted { fee: f, agreeing, .. } if *f == fee && *agreeing == leases
    )));
    let (outcome, agreed, wrong) = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Agreed);
    assert_eq!(agreed, leases);
    assert!(wrong.is_empty() && slashed(&events).is_empty());
    // The rest of the escrow went back to the tenant; the order closed on an agreeing run.
    let refund = escrow.checked_sub(fee).expect("escrow covers the fee");
    assert_eq!(
        w.usd(&w.tenant(0)),
        tenant_before.checked_add(refund).expect("sum")
    );
    assert!(matches!(w.order(order).status, OrderStatus::Closed { lease } if lease == leases[0]));
    assert!(w.provider(&verifier).expect("verifier").judging.is_empty());
    for p in [0, 1] {
        let p = w.provider(&w.provider_addr(p)).expect("runner");
        assert!(p.reputation.good_milli > 0);
        assert_eq!(p.runs_under_verification, 0);
    }
}

#[test]
fn a_run_that_disagrees_with_two_that_agree_is_slashed() {
    let mut w = world(5);
    let order = open(&mut w, tensors(3));
    let (leases, events) = run_all(&mut w, order, &[0, 1, 2]);
    let (verifier, runs, _) = requested(&events).expect("asked");
    assert_eq!(runs, leases);
    let stake_before = w.provider(&w.provider_addr(2)).expect("p2").stake;
    let events = post(
        &mut w,
        verifier,
        verdict(order, &[leases[0], leases[2]], &[]),
    );
    let (outcome, agreed, wrong) = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Majority);
    assert_eq!(agreed, vec![leases[0], leases[2]]);
    assert_eq!(wrong, vec![leases[1]]);
    assert_eq!(slashed(&events), vec![leases[1]]);
    assert_eq!(
        w.provider(&w.provider_addr(2)).expect("p2").stake,
        stake_before
    );
    assert!(
        w.provider(&w.provider_addr(1))
            .expect("p1")
            .jailed_until_height
            > w.state.height
    );
}

#[test]
fn runs_the_verifier_never_received_cost_nothing_and_disagreement_calls_a_referee() {
    let mut w = world(6);
    let order = open(&mut w, tensors(3));
    let (leases, events) = run_all(&mut w, order, &[0, 1, 2]);
    let (verifier, ..) = requested(&events).expect("asked");
    // The three disagree pairwise: nobody is slashed yet, and a fourth run referees.
    let events = post(&mut w, verifier, verdict(order, &[], &[]));
    assert!(slashed(&events).is_empty());
    assert_eq!(w.order(order).status, OrderStatus::Open);
    assert_eq!(w.order(order).verifying.needed, 4);
    // The verifier saw the runs' outputs: it may not run the order (it could hand one back).
    assert_eq!(
        refusal(
            &w,
            verifier,
            Msg::PlaceBid {
                order,
                price_per_hour: PRICE
            }
        ),
        Err(Rejection::ProviderExcluded)
    );
    let referee = (3..6)
        .find(|&p| w.provider_addr(p) != verifier)
        .expect("a provider that did not judge");
    let fourth = lease_to(&mut w, order, referee);
    let events = run(&mut w, order, fourth, 42);
    let (second, runs, _) = requested(&events).expect("asked again");
    assert_eq!(runs, vec![leases[0], leases[1], leases[2], fourth]);
    // Neither a runner nor the verifier asked before.
    assert!(
        ![0, 1, 2, referee]
            .map(|p| w.provider_addr(p))
            .contains(&second)
    );
    assert_ne!(second, verifier);
    // The tenant may have withheld run 1's outputs: that must not cost its provider anything.
    // Run 2 was received and disagrees with the two that agree: slashed.
    let events = post(
        &mut w,
        second,
        verdict(order, &[leases[0], fourth], &[leases[1]]),
    );
    let (outcome, agreed, wrong) = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Majority);
    assert_eq!(agreed, vec![leases[0], fourth]);
    assert_eq!(wrong, vec![leases[2]]);
    assert_eq!(slashed(&events), vec![leases[2]]);
}

#[test]
fn a_tenant_that_sends_nothing_gets_an_inconclusive_result_and_nobody_is_slashed() {
    let mut w = world(4);
    let order = open(&mut w, tensors(2));
    let (leases, events) = run_all(&mut w, order, &[0, 1]);
    let (verifier, ..) = requested(&events).expect("asked");
    let stakes: Vec<Amount> = [0, 1]
        .map(|p| w.provider(&w.provider_addr(p)).expect("runner").stake)
        .to_vec();
    let events = post(&mut w, verifier, verdict(order, &[], &[leases[1]]));
    let (outcome, agreed, wrong) = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Inconclusive);
    assert!(agreed.is_empty() && wrong.is_empty() && slashed(&events).is_empty());
    assert!(matches!(w.order(order).status, OrderStatus::Closed { .. }));
    for (p, stake) in [0, 1].into_iter().zip(stakes) {
        assert_eq!(
            w.provider(&w.provider_addr(p)).expect("runner").stake,
            stake
        );
    }
}

#[test]
fn a_silent_verifier_loses_reputation_and_another_is_asked_until_none_is_left() {
    let mut w = world(4);
    let order = open(&mut w, tensors(2));
    let (_, events) = run_all(&mut w, order, &[0, 1]);
    let (first, _, deadline) = requested(&events).expect("asked");
    let mut events = Vec::new();
    while w.state.height < deadline {
        events = w.block(Vec::new()).events().into_iter().cloned().collect();
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::VerdictMissed { verifier, .. } if *verifier == first))
    );
    assert!(w.provider(&first).expect("first").reputation.bad_milli > 0);
    assert!(w.provider(&first).expect("first").judging.is_empty());
    let (second, _, deadline) = requested(&events).expect("another is asked");
    assert_ne!(second, first);
    // The first may no longer post.
    assert_eq!(
        refusal(&w, first, verdict(order, &[], &[])),
        Err(Rejection::VerdictInvalid)
    );
    while w.state.height < deadline {
        events = w.block(Vec::new()).events().into_iter().cloned().collect();
    }
    // No provider is left to ask: inconclusive, nobody slashed, the escrow goes back.
    let (outcome, agreed, wrong) = decision(&events);
    assert_eq!(outcome, VerificationOutcome::Inconclusive);
    assert!(agreed.is_empty() && wrong.is_empty() && slashed(&events).is_empty());
    assert!(matches!(w.order(order).status, OrderStatus::Closed { .. }));
    assert_eq!(w.escrow(order), Amount::ZERO);
}

#[test]
fn verdicts_from_others_or_naming_strange_runs_are_refused() {
    let mut w = world(4);
    let order = open(&mut w, tensors(2));
    let (leases, events) = run_all(&mut w, order, &[0, 1]);
    let (verifier, _, deadline) = requested(&events).expect("asked");
    let other = [w.provider_addr(2), w.provider_addr(3)]
        .into_iter()
        .find(|a| *a != verifier)
        .expect("another provider");
    let (a, b) = (leases[0], leases[1]);
    for (signer, msg) in [
        // Not the verifier: another provider, a runner, the tenant.
        (other, verdict(order, &[a, b], &[])),
        (w.provider_addr(0), verdict(order, &[a, b], &[])),
        (w.tenant(0), verdict(order, &[], &[a, b])),
        // One run cannot agree alone.
        (verifier, verdict(order, &[a], &[])),
        // Not a run of this order, twice, or both agreeing and missing.
        (verifier, verdict(order, &[a, LeaseId(999)], &[])),
        (verifier, verdict(order, &[a, a], &[])),
        (verifier, verdict(order, &[a, b], &[b])),
        // Another order.
        (verifier, verdict(OrderId(order.0 + 100), &[a, b], &[])),
    ] {
        assert!(
            refusal(&w, signer, msg.clone()).is_err(),
            "{msg:?} from {signer} was accepted"
        );
    }
    assert_eq!(
        refusal(&w, other, verdict(order, &[a, b], &[])),
        Err(Rejection::VerdictInvalid)
    );
    // The right verdict, but too late: at the deadline the verifier is replaced.
    w.advance_to(deadline - 1);
    assert_eq!(refusal(&w, verifier, verdict(order, &[a, b], &[])), Ok(()));
    w.block(Vec::new());
    assert_eq!(
        refusal(&w, verifier, verdict(order, &[a, b], &[])),
        Err(Rejection::VerdictInvalid)
    );
}

#[test]
fn tensors_need_a_checked_order() {
    let w = world(2);
    let t = w.tenant(0);
    let mut terms = order_terms().build();
    terms.verification = Verification {
        mode: VerificationMode::None,
        replicas: 0,
        compare: Compare::Tensors,
    };
    assert_eq!(
        refusal(&w, t, Msg::CreateOrder { terms }),
        Err(Rejection::VerificationUnsupported)
    );
}
