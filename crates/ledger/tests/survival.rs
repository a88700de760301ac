//! Jobs that survive their providers: heartbeats keep a lease alive and paid, a silent
//! provider's lease ends `provider_lost` paid only up to its last proof of life, the order's
//! recovery policy reopens it for another provider from the same escrow, an empty escrow pauses
//! the lease until a top-up (or ends it after the grace), and a provider that leaves hands its
//! leases back without a failure on its record.

use gpunet_ledger::{LeaseStatus, OrderStatus};
use gpunet_protocol::{
    Amount, Event, LeaseEndReason, LeaseId, Msg, OrderId, Rejection, WorkloadOutcome,
};
use gpunet_testkit::world::lease_result;
use gpunet_testkit::{OutcomeExt, TermsBuilder, World, order_terms, usd};

const MS_PER_HOUR: u64 = 3_600_000;
/// 3.6 usd an hour: one micro-usd a millisecond, so amounts read as milliseconds.
const PRICE: Amount = Amount::from_micros(3_600_000);

fn world() -> World {
    World::builder().tenants(2).providers(3).build()
}

fn open(w: &mut World, terms: TermsBuilder) -> OrderId {
    let t = w.tenant(0);
    let tx = w.create_order(t, terms);
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    outcome.orders_created()[0]
}

/// Provider `p` bids on the open `order`; blocks run until it is leased; returns the lease.
fn lease_to(w: &mut World, order: OrderId, p: usize) -> LeaseId {
    w.lease_to(order, p, PRICE)
}

/// Runs blocks until the order is leased; returns the lease.
fn wait_leased(w: &mut World, order: OrderId) -> LeaseId {
    for _ in 0..100 {
        if let OrderStatus::Leased { lease } = w.order(order).status {
            return lease;
        }
        w.block(Vec::new());
    }
    panic!(
        "order {order} was never leased: {:?}",
        w.order(order).status
    );
}

fn start(w: &mut World, lease: LeaseId) {
    let tx = w.start(w.lease(lease).provider, lease);
    w.submit(tx).expect("the lease's provider starts it");
}

/// Runs blocks until `lease` ends; returns the block's events.
fn until_ended(w: &mut World, lease: LeaseId, limit: u64) -> Vec<Event> {
    for _ in 0..limit {
        let outcome = w.block(Vec::new());
        if outcome.leases_ended().iter().any(|e| e.lease == lease) {
            return outcome.events().into_iter().cloned().collect();
        }
    }
    panic!("lease {lease} still live after {limit} blocks");
}

fn paid_for(ms: u64) -> Amount {
    PRICE.mul_div_floor(ms, MS_PER_HOUR).expect("fits")
}

#[test]
fn a_silent_providers_lease_ends_provider_lost_paid_only_to_its_last_proof_of_life() {
    let mut w = world();
    let (t, p0) = (w.tenant(0), w.provider_addr(0));
    let usd_t0 = w.usd(&t);
    let order = open(&mut w, order_terms().deposit(usd(10)).recovery(1, &[], 0));
    let lease = lease_to(&mut w, order, 0);
    start(&mut w, lease);
    let started = w.state.time_ms;
    w.blocks(4);
    // The last heartbeat went out with this block; then the provider's machine dies.
    let last_proof = w.state.time_ms;
    let last_proof_height = w.state.height;
    w.silence(p0);
    let timeout = w.state.params.liveness_timeout_blocks;
    let events = until_ended(&mut w, lease, timeout + 2);
    assert_eq!(
        w.state.height,
        last_proof_height + timeout + 1,
        "lost the first block past the liveness timeout"
    );
    let l = w.lease(lease);
    assert_eq!(
        l.status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::ProviderLost
        }
    );
    // Paid exactly up to the last proof, not for the silent blocks after it.
    assert_eq!(l.billed_ms, last_proof - started);
    assert_eq!(l.paid, paid_for(last_proof - started));
    assert_eq!(w.state.providers[&p0].leases_failed, 1);
    // One attempt allowed: the order closes and everything not paid returns.
    assert_eq!(w.order(order).status, OrderStatus::Closed { lease });
    assert_eq!(
        w.usd(&t),
        usd_t0.checked_sub(l.paid).expect("paid < balance")
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::OrderReopened { .. })),
        "no retry without attempts left"
    );
}

#[test]
fn a_lost_attempt_reopens_the_order_for_another_provider_from_the_same_escrow() {
    let mut w = world();
    let (t, p0, p1) = (w.tenant(0), w.provider_addr(0), w.provider_addr(1));
    let usd_t0 = w.usd(&t);
    let deposit = usd(10);
    let order = open(&mut w, order_terms().deposit(deposit).recovery(3, &[], 2));
    let first = lease_to(&mut w, order, 0);
    start(&mut w, first);
    w.blocks(3);
    w.silence(p0);
    let events = until_ended(&mut w, first, 100);
    let first_paid = w.lease(first).paid;
    assert!(!first_paid.is_zero());
    let reopened = events.iter().find_map(|e| match e {
        Event::OrderReopened {
            order: o,
            after_lease,
            attempt,
            excluded,
            not_before_ms,
        } if *o == order => Some((*after_lease, *attempt, *excluded, *not_before_ms)),
        _ => None,
    });
    let now = w.state.time_ms;
    assert_eq!(reopened, Some((first, 2, p0, now + 2_000)));
    let o = w.order(order);
    assert_eq!(o.status, OrderStatus::Open);
    assert_eq!(o.excluded, vec![p0]);
    // The escrow stays with the order, less what the lost attempt earned.
    assert_eq!(o.escrow, deposit.checked_sub(first_paid).expect("fits"));
    assert_eq!(w.lease(first).refund, Amount::ZERO);

    // The provider that lost it may not bid again; another may.
    w.revive(p0);
    let tx = w.bid(p0, order, PRICE);
    assert_eq!(w.submit(tx), Err(Rejection::ProviderExcluded));
    let bid = w.bid(p1, order, PRICE);
    w.block(vec![bid]).assert_all_applied();
    // Not matched before the backoff has passed.
    let not_before = w.order(order).not_before_ms;
    while w.state.time_ms + w.step_ms < not_before {
        w.block(Vec::new());
        assert_eq!(
            w.order(order).status,
            OrderStatus::Open,
            "matched during the backoff"
        );
    }
    let second = wait_leased(&mut w, order);
    assert_eq!(w.lease(second).provider, p1);
    assert_eq!(w.lease(second).attempt, 2);
    start(&mut w, second);
    w.blocks(2);
    let done = w.complete(p1, second, WorkloadOutcome::Succeeded);
    let outcome = w.block(vec![done]);
    outcome.assert_all_applied();
    let s = w.lease(second);
    assert_eq!(
        s.status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::Completed
        }
    );
    assert_eq!(w.order(order).status, OrderStatus::Closed { lease: second });
    assert_eq!(w.order(order).attempts, vec![first, second]);
    // The tenant's bill is the sum of the attempts; the rest came back.
    let total = first_paid.checked_add(s.paid).expect("fits");
    assert_eq!(s.refund, deposit.checked_sub(total).expect("fits"));
    assert_eq!(w.usd(&t), usd_t0.checked_sub(total).expect("fits"));
}

#[test]
fn a_failed_workload_is_retried_only_for_the_listed_exit_codes() {
    for (exit_code, retried) in [(137, true), (143, true), (1, false)] {
        let mut w = world();
        let p0 = w.provider_addr(0);
        let order = open(&mut w, order_terms().recovery(4, &[137, 143], 0));
        let lease = lease_to(&mut w, order, 0);
        start(&mut w, lease);
        w.blocks(2);
        let mut result = lease_result(WorkloadOutcome::Failed);
        result.exit_code = Some(exit_code);
        let tx = w.tx(p0, Msg::CompleteLease { lease, result });
        let outcome = w.block(vec![tx]);
        outcome.assert_all_applied();
        let reopened = outcome
            .events()
            .iter()
            .any(|e| matches!(e, Event::OrderReopened { .. }));
        assert_eq!(reopened, retried, "exit code {exit_code}");
        let status = w.order(order).status;
        if retried {
            assert_eq!(status, OrderStatus::Open, "exit code {exit_code}");
        } else {
            assert_eq!(
                status,
                OrderStatus::Closed { lease },
                "exit code {exit_code}"
            );
        }
    }
}

#[test]
fn attempts_stop_at_max_attempts_and_each_attempt_excludes_its_provider() {
    let mut w = world();
    let order = open(&mut w, order_terms().recovery(2, &[], 0));
    for (attempt, p) in [(1, 0usize), (2, 1)] {
        let lease = lease_to(&mut w, order, p);
        assert_eq!(w.lease(lease).attempt, attempt);
        start(&mut w, lease);
        let who = w.provider_addr(p);
        w.silence(who);
        until_ended(&mut w, lease, 100);
    }
    let o = w.order(order);
    assert!(
        matches!(o.status, OrderStatus::Closed { .. }),
        "{:?}",
        o.status
    );
    assert_eq!(o.attempts.len(), 2);
    assert_eq!(o.escrow, Amount::ZERO);
}

/// Ends `order`'s current attempt on provider `p` as lost; returns the block height the order
/// reopened at.
fn lose_attempt(w: &mut World, order: OrderId, p: usize) -> u64 {
    let lease = lease_to(w, order, p);
    start(w, lease);
    let who = w.provider_addr(p);
    w.silence(who);
    until_ended(w, lease, 100);
    w.revive(who);
    assert_eq!(w.order(order).status, OrderStatus::Open);
    assert_eq!(w.order(order).excluded, [who]);
    w.order(order).open_since_height
}

fn lapsed(outcome: &gpunet_protocol::BlockOutcome) -> Option<Vec<gpunet_protocol::Address>> {
    outcome.events().into_iter().find_map(|e| match e {
        Event::OrderExclusionLapsed { providers, .. } => Some(providers.clone()),
        _ => None,
    })
}

#[test]
fn an_exclusion_lapses_when_nobody_else_bids_so_a_small_network_does_not_strand_the_job() {
    const LAPSE: u64 = 8;
    let mut w = World::builder()
        .tenants(1)
        .providers(1)
        .with_params(|p| p.exclusion_lapse_blocks = LAPSE)
        .build();
    let p0 = w.provider_addr(0);
    let order = open(&mut w, order_terms().recovery(3, &[], 0));
    let reopened_at = lose_attempt(&mut w, order, 0);
    // The provider that failed it may not bid while the exclusion holds.
    let early = w.bid(p0, order, PRICE);
    assert_eq!(w.submit(early), Err(Rejection::ProviderExcluded));
    // Nobody else bids: after LAPSE blocks the exclusion lapses, and not a block before.
    let lapsed_at = loop {
        let outcome = w.block(Vec::new());
        if let Some(providers) = lapsed(&outcome) {
            assert_eq!(providers, [p0]);
            break w.state.height;
        }
        assert!(w.state.height < reopened_at + 2 * LAPSE, "it never lapsed");
    };
    assert_eq!(lapsed_at, reopened_at + LAPSE);
    assert!(w.order(order).excluded.is_empty());
    // So the only provider runs the second attempt.
    let lease = lease_to(&mut w, order, 0);
    assert_eq!(w.lease(lease).attempt, 2);
}

#[test]
fn an_exclusion_holds_while_another_provider_bids_and_when_the_lapse_is_off() {
    // Another bid within the lapse: it wins, and the failed provider stays excluded.
    let mut w = world();
    let p0 = w.provider_addr(0);
    let order = open(&mut w, order_terms().recovery(3, &[], 0));
    lose_attempt(&mut w, order, 0);
    let lease = lease_to(&mut w, order, 1);
    assert_eq!(w.lease(lease).provider, w.provider_addr(1));
    assert_eq!(w.order(order).excluded, [p0]);

    // exclusion_lapse_blocks = 0: never, however long the order waits.
    let mut w = World::builder()
        .tenants(1)
        .providers(1)
        .with_params(|p| p.exclusion_lapse_blocks = 0)
        .build();
    let p0 = w.provider_addr(0);
    let order = open(&mut w, order_terms().recovery(3, &[], 0));
    lose_attempt(&mut w, order, 0);
    for outcome in w.blocks(200) {
        assert_eq!(lapsed(&outcome), None);
    }
    assert_eq!(w.order(order).excluded, [p0]);
}

#[test]
fn heartbeats_are_checked_list_only_the_providers_own_leases_and_race_safely_with_an_end() {
    let mut w = world();
    let (p0, p1, stranger) = (w.provider_addr(0), w.provider_addr(1), w.stranger(0));
    let order = open(&mut w, order_terms());
    let lease = lease_to(&mut w, order, 0);
    start(&mut w, lease);
    let other = open(&mut w, order_terms().name("other"));
    let other_lease = lease_to(&mut w, other, 1);
    let cases = [
        (p1, vec![lease], Rejection::NotLeaseProvider),
        (p0, vec![LeaseId(999)], Rejection::LeaseNotFound),
        (p0, vec![lease, lease], Rejection::HeartbeatInvalid),
        (p0, vec![other_lease, lease], Rejection::HeartbeatInvalid),
        (
            p0,
            vec![lease; gpunet_protocol::tx::MAX_HEARTBEAT_LEASES + 1],
            Rejection::HeartbeatInvalid,
        ),
    ];
    for (signer, leases, want) in cases {
        let tx = w.tx(signer, Msg::Heartbeat { leases });
        assert_eq!(w.submit(tx), Err(want));
    }
    let funded_stranger = w.transfer(w.tenant(1), stranger, gpunet_protocol::Denom::Gpn, usd(1));
    w.block(vec![funded_stranger]).assert_all_applied();
    let tx = w.tx(stranger, Msg::Heartbeat { leases: vec![] });
    assert_eq!(w.submit(tx), Err(Rejection::ProviderNotRegistered));
    // A heartbeat in the same block as the lease's end is applied and changes nothing more.
    let done = w.complete(p0, lease, WorkloadOutcome::Succeeded);
    let late = w.tx(
        p0,
        Msg::Heartbeat {
            leases: vec![lease],
        },
    );
    w.block(vec![done, late]).assert_all_applied();
    assert!(!w.lease(lease).is_live());
}

#[test]
fn an_empty_escrow_pauses_the_lease_a_top_up_resumes_it_and_a_second_run_dry_ends_it() {
    let mut w = World::builder()
        .tenants(2)
        .providers(1)
        .with_params(|p| {
            p.escrow_warning_secs = 2;
            p.pause_grace_blocks = 6;
        })
        .build();
    let (t, friend, p0) = (w.tenant(0), w.tenant(1), w.provider_addr(0));
    // 3 000 micro-usd: three seconds at one micro-usd a millisecond.
    let order = open(&mut w, order_terms().deposit(Amount::from_micros(3_000)));
    let lease = lease_to(&mut w, order, 0);
    start(&mut w, lease);
    let mut warned = false;
    let mut paused_at = None;
    for _ in 0..20 {
        let outcome = w.block(Vec::new());
        for e in outcome.events() {
            match e {
                Event::EscrowLow { remaining_ms, .. } => {
                    assert!(*remaining_ms < 2_000);
                    warned = true;
                }
                Event::LeasePaused {
                    grace_until_height, ..
                } => paused_at = Some((w.state.height, *grace_until_height)),
                _ => {}
            }
        }
        if paused_at.is_some() {
            break;
        }
    }
    assert!(warned, "escrow_low went out before the escrow ran dry");
    let (paused_height, grace_until) = paused_at.expect("the lease paused");
    assert_eq!(grace_until, paused_height + 6);
    let l = w.lease(lease);
    assert!(matches!(l.status, LeaseStatus::Paused { .. }));
    assert_eq!((l.paid, l.billed_ms), (Amount::from_micros(3_000), 3_000));
    assert_eq!(w.escrow(order), Amount::ZERO);
    // Paused: no billing however long it waits (within the grace).
    w.blocks(3);
    assert_eq!(w.lease(lease).paid, Amount::from_micros(3_000));

    // Anyone may top up: a friend pays for two more seconds; the lease resumes.
    let tx = w.tx(
        friend,
        Msg::TopUpOrder {
            order,
            amount: Amount::from_micros(2_000),
        },
    );
    let events = w.submit(tx).expect("top-up applies");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::LeaseResumed { .. }))
    );
    assert_eq!(w.lease(lease).status, LeaseStatus::Running);
    assert_eq!(w.order(order).topped_up, Amount::from_micros(2_000));
    // The resumed segment is billed from the next proof of life, and runs dry again.
    let events = until_ended(&mut w, lease, 40);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::LeaseResumed { .. })),
        "no second resume"
    );
    let l = w.lease(lease);
    assert_eq!(
        l.status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::InsufficientFunds
        }
    );
    assert_eq!(
        l.paid,
        Amount::from_micros(5_000),
        "all of deposit and top-up, no more"
    );
    assert_eq!(l.refund, Amount::ZERO);
    assert!(w.usd(&p0) > Amount::ZERO);
    // A closed order takes no more top-ups.
    let tx = w.tx(
        t,
        Msg::TopUpOrder {
            order,
            amount: Amount::from_micros(1),
        },
    );
    assert_eq!(w.submit(tx), Err(Rejection::OrderNotOpen));
}

#[test]
fn a_leaving_provider_releases_its_leases_without_a_failure_and_takes_no_new_ones() {
    let mut w = world();
    let (p0, p1) = (w.provider_addr(0), w.provider_addr(1));
    let order = open(&mut w, order_terms().recovery(2, &[], 0));
    let lease = lease_to(&mut w, order, 0);
    start(&mut w, lease);
    w.blocks(2);
    let tx = w.tx(p0, Msg::AnnounceExit);
    let events = w.submit(tx).expect("announce applies");
    assert!(events.contains(&Event::ProviderLeaving { provider: p0 }));
    let again = w.tx(p0, Msg::AnnounceExit);
    assert_eq!(w.submit(again), Err(Rejection::ProviderLeaving));
    let other = open(&mut w, order_terms().name("other"));
    let bid = w.bid(p0, other, PRICE);
    assert_eq!(w.submit(bid), Err(Rejection::ProviderLeaving));

    let release = w.tx(p0, Msg::ReleaseLease { lease });
    let events = w.submit(release).expect("release applies");
    let l = w.lease(lease);
    assert_eq!(
        l.status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::ProviderLeft
        }
    );
    assert!(!l.paid.is_zero(), "paid up to the release");
    assert_eq!(w.state.providers[&p0].leases_failed, 0);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::OrderReopened { .. }))
    );
    let second = lease_to(&mut w, order, 1);
    assert_eq!(w.lease(second).provider, p1);
    // With its leases gone it may deregister and take its stake back.
    let tx = w.deregister(p0);
    w.submit(tx).expect("deregister applies");
}

#[test]
fn a_released_lease_is_paid_only_to_its_last_proof_of_life_and_only_its_provider_can_release_it() {
    let mut w = world();
    let (t, p0, p1) = (w.tenant(0), w.provider_addr(0), w.provider_addr(1));
    let usd_t0 = w.usd(&t);
    let order = open(&mut w, order_terms().deposit(usd(10)).recovery(2, &[], 0));
    let lease = lease_to(&mut w, order, 0);
    start(&mut w, lease);
    let started = w.lease(lease).started_ms.expect("started");
    w.blocks(3);

    // Leaving is no way to end a lease one does not hold: another provider can neither
    // release it nor end it by leaving itself.
    let tx = w.tx(p1, Msg::ReleaseLease { lease });
    assert_eq!(w.submit(tx), Err(Rejection::NotLeaseProvider));
    let tx = w.tx(p1, Msg::AnnounceExit);
    w.submit(tx).expect("p1 may leave");
    assert_eq!(w.lease(lease).status, LeaseStatus::Running);
    let tx = w.tx(p1, Msg::ReleaseLease { lease });
    assert_eq!(w.submit(tx), Err(Rejection::NotLeaseProvider));
    assert_eq!(w.state.providers[&p0].leases_failed, 0);

    // Its own provider cannot hand it back without leaving: a release is no way to keep a
    // failure off its record.
    let tx = w.tx(p0, Msg::ReleaseLease { lease });
    assert_eq!(w.submit(tx), Err(Rejection::ProviderNotLeaving));
    assert_eq!(w.lease(lease).status, LeaseStatus::Running);

    // Its provider goes quiet a while (its workload being stopped), then releases it.
    w.silence(p0);
    let last_heartbeat = w.state.time_ms;
    w.blocks(2);
    let tx = w.tx(p0, Msg::AnnounceExit);
    w.submit(tx).expect("announce applies");
    let tx = w.tx(p0, Msg::ReleaseLease { lease });
    w.submit(tx).expect("release applies");
    let released_at = w.state.time_ms;
    assert!(released_at > last_heartbeat);
    let l = w.lease(lease).clone();
    assert_eq!(
        l.status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::ProviderLeft
        }
    );
    // The release is itself a proof of life (like a heartbeat or a result): the lease is
    // paid up to it, and not a millisecond past it.
    assert_eq!(l.last_proof_ms, released_at);
    assert_eq!(l.billed_ms, released_at - started);
    assert_eq!(l.paid, paid_for(released_at - started));
    assert_eq!(
        w.state.providers[&p0].leases_failed, 0,
        "leaving is not failing"
    );
    w.blocks(5);
    assert_eq!(
        w.lease(lease).paid,
        l.paid,
        "nothing is paid after the release"
    );
    // Once ended it cannot be released (or paid) again.
    let tx = w.tx(p0, Msg::ReleaseLease { lease });
    assert_eq!(w.submit(tx), Err(Rejection::LeaseNotLive));
    // The order is open again with its escrow, for another provider (not the leaver).
    let o = w.order(order);
    assert_eq!(o.status, OrderStatus::Open);
    assert!(o.excluded.contains(&p0));
    assert_eq!(
        w.escrow(order),
        usd(10).checked_sub(l.paid).expect("paid < deposit")
    );
    assert_eq!(
        w.usd(&t),
        usd_t0.checked_sub(usd(10)).expect("deposit held")
    );
}

#[test]
fn a_paused_lease_released_is_paid_nothing_for_its_pause() {
    let mut w = World::builder()
        .tenants(1)
        .providers(1)
        .with_params(|p| p.pause_grace_blocks = 20)
        .build();
    let p0 = w.provider_addr(0);
    // 2 000 micro-usd: two seconds at one micro-usd a millisecond.
    let order = open(&mut w, order_terms().deposit(Amount::from_micros(2_000)));
    let lease = lease_to(&mut w, order, 0);
    start(&mut w, lease);
    for _ in 0..20 {
        w.block(Vec::new());
        if matches!(w.lease(lease).status, LeaseStatus::Paused { .. }) {
            break;
        }
    }
    assert!(matches!(w.lease(lease).status, LeaseStatus::Paused { .. }));
    let paid = w.lease(lease).paid;
    w.blocks(4);
    let tx = w.tx(p0, Msg::AnnounceExit);
    w.submit(tx).expect("announce applies");
    let tx = w.tx(p0, Msg::ReleaseLease { lease });
    w.submit(tx).expect("a paused lease can be released");
    let l = w.lease(lease);
    assert_eq!(
        l.status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::ProviderLeft
        }
    );
    assert_eq!(l.paid, paid, "a release proves nothing for the paused time");
    assert_eq!(w.state.providers[&p0].leases_failed, 0);
}

#[test]
fn a_provider_that_lost_the_workload_is_paid_only_to_its_last_proof_and_the_job_is_retried() {
    let mut w = world();
    let p0 = w.provider_addr(0);
    let order = open(&mut w, order_terms().recovery(2, &[], 0));
    let lease = lease_to(&mut w, order, 0);
    start(&mut w, lease);
    w.blocks(2);
    let started = w.lease(lease).started_ms.expect("started");
    let last_proof = w.state.time_ms;
    // The agent crashed, came back a few blocks later and found its workload gone.
    w.silence(p0);
    w.blocks(3);
    let tx = w.complete(p0, lease, WorkloadOutcome::Lost);
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    let l = w.lease(lease);
    assert_eq!(
        l.status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::ProviderLost
        }
    );
    assert_eq!(
        l.billed_ms,
        last_proof - started,
        "nothing after the last proof"
    );
    assert_eq!(w.state.providers[&p0].leases_failed, 1);
    assert!(
        outcome
            .events()
            .iter()
            .any(|e| matches!(e, Event::OrderReopened { .. })),
        "retried"
    );
}

#[test]
fn a_provider_silent_before_it_starts_the_lease_loses_it_within_the_liveness_timeout() {
    let mut w = world();
    let p0 = w.provider_addr(0);
    let order = open(&mut w, order_terms().recovery(2, &[], 0));
    let lease = lease_to(&mut w, order, 0);
    let liveness = w.state.params.liveness_timeout_blocks;
    // Its heartbeats keep a pending lease (waiting for the manifest) its own.
    w.blocks(liveness + 5);
    assert!(w.lease(lease).is_live());
    w.silence(p0);
    let silent_from = w.state.height;
    until_ended(&mut w, lease, liveness + 2);
    let l = w.lease(lease);
    assert_eq!(
        l.status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::ProviderLost
        }
    );
    assert!(w.state.height < l.created_height + w.state.params.start_timeout_blocks);
    assert_eq!(
        w.state.height,
        silent_from + w.state.params.liveness_timeout_blocks + 1
    );
    assert_eq!(l.paid, Amount::ZERO, "never started, never paid");
    assert_eq!(w.order(order).status, OrderStatus::Open, "retried");
}

/// Settlement visits only the leases that have something due, not every live lease: with 40
/// running leases whose providers heartbeat on schedule (a tenth of them each block), no lease
/// is due by its rules between proofs — each waits under one mark, at the height its provider
/// would count as silent — so a block visits just the leases its heartbeats prove. Billing still
/// follows every proof, and a provider that goes silent loses its leases at exactly
/// `liveness_timeout_blocks` after its last proof, as when every lease was visited every block.
#[test]
fn a_block_visits_only_the_leases_that_are_due() {
    const LEASES: usize = 40;
    const PROVIDERS: usize = 10;
    let mut w = World::builder().tenants(1).providers(PROVIDERS).build();
    let (interval, liveness) = (
        w.state.params.heartbeat_interval_blocks,
        w.state.params.liveness_timeout_blocks,
    );
    assert_eq!(
        interval, PROVIDERS as u64,
        "one provider heartbeats per block"
    );
    // Heartbeats are sent by hand below, on each provider's own schedule.
    for p in w.providers.clone() {
        w.silence(p);
    }
    let t = w.tenant(0);
    let txs: Vec<_> = (0..LEASES)
        .map(|_| w.create_order(t, order_terms().deposit(usd(2))))
        .collect();
    let outcome = w.block(txs);
    outcome.assert_all_applied();
    let orders = outcome.orders_created();
    let txs: Vec<_> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| w.bid(w.provider_addr(i % PROVIDERS), *o, PRICE))
        .collect();
    w.block(txs).assert_all_applied();
    let leases: Vec<LeaseId> = orders.iter().map(|o| wait_leased(&mut w, *o)).collect();
    let txs: Vec<_> = leases
        .iter()
        .map(|l| w.start(w.lease(*l).provider, *l))
        .collect();
    w.block(txs).assert_all_applied();
    assert!(
        leases
            .iter()
            .all(|l| w.lease(*l).status == LeaseStatus::Running)
    );

    let heartbeat = |w: &mut World, p: usize| {
        let provider = w.provider_addr(p);
        let mine: Vec<LeaseId> = w
            .state
            .providers
            .get(&provider)
            .expect("registered")
            .live_leases
            .iter()
            .copied()
            .collect();
        (
            w.tx(
                provider,
                Msg::Heartbeat {
                    leases: mine.clone(),
                },
            ),
            mine.len(),
        )
    };
    // Provider p heartbeats at the heights ≡ p (mod interval); the last one goes silent after
    // its first round.
    let silent = PROVIDERS - 1;
    let mut last_proof = w.state.height;
    let mut lost_at = None;
    for _ in 0..(3 * interval + liveness) {
        let height = w.state.height + 1;
        let p = (height % interval) as usize;
        let mut visited = w.state.due_leases.due_by(height);
        let mut txs = Vec::new();
        if p != silent || lost_at.is_none() && height < last_proof + interval {
            let (tx, n) = heartbeat(&mut w, p);
            visited += n;
            txs.push(tx);
            if p == silent {
                last_proof = height;
            }
        }
        let live = w.state.live_leases.len();
        let outcome = w.block(txs);
        outcome.assert_all_applied();
        if let Some(end) = outcome.leases_ended().first() {
            assert_eq!(end.reason, LeaseEndReason::ProviderLost);
            lost_at = Some(height);
        }
        // A round of heartbeats proves a tenth of the leases; only a silent provider's leases
        // add to that, once, when they are lost.
        let lost = outcome.leases_ended().len();
        assert!(
            visited <= LEASES / PROVIDERS + lost,
            "block {height} visits {visited} of {live} live leases"
        );
        // Each live lease waits under exactly one mark, at a height to come.
        assert_eq!(w.state.due_leases.len(), w.state.live_leases.len());
        assert_eq!(w.state.due_leases.due_by(height), 0);
    }
    let lost_at = lost_at.expect("the silent provider's leases were lost");
    assert_eq!(lost_at, last_proof + liveness + 1);
    let silent_addr = w.provider_addr(silent);
    for l in &leases {
        let lease = w.lease(*l);
        if lease.provider == silent_addr {
            assert_eq!(
                lease.status,
                LeaseStatus::Ended {
                    reason: LeaseEndReason::ProviderLost
                }
            );
        } else {
            // Paid for exactly the time up to its provider's last heartbeat.
            assert_eq!(lease.status, LeaseStatus::Running);
            assert_eq!(lease.billed_ms, lease.proven_ms());
            assert_eq!(lease.paid, paid_for(lease.proven_ms()));
            assert!(lease.proven_ms() > 0);
        }
    }
}

#[test]
fn uptime_counts_the_blocks_a_provider_was_silent_under_lease_and_nothing_while_it_attended() {
    use gpunet_ledger::uptime;
    let mut w = world();
    let (p0, p1) = (w.provider_addr(0), w.provider_addr(1));
    assert_eq!(
        uptime::uptime_ppm(&w.state.providers[&p0]),
        None,
        "no lease yet"
    );
    // Provider 0 attends its lease to the end: all of its time counts as up.
    let order = open(&mut w, order_terms().recovery(1, &[], 0));
    let kept = lease_to(&mut w, order, 0);
    start(&mut w, kept);
    w.blocks(5);
    assert_eq!(uptime::silent_blocks(&w.state, &w.state.providers[&p0]), 0);
    let done = w.complete(p0, kept, WorkloadOutcome::Succeeded);
    w.block(vec![done]).assert_all_applied();
    let held = w.state.height - w.lease(kept).created_height;
    let u = &w.state.providers[&p0].uptime;
    assert_eq!((u.leased_blocks, u.lost_blocks, u.outages), (held, 0, 0));
    assert_eq!(uptime::uptime_ppm(&w.state.providers[&p0]), Some(1_000_000));
    assert_eq!(
        uptime::silent_blocks(&w.state, &w.state.providers[&p0]),
        0,
        "idle"
    );
    // Provider 1 goes silent under lease: the blocks after its last proof are lost.
    let order = open(&mut w, order_terms().name("second").recovery(1, &[], 0));
    let lost = lease_to(&mut w, order, 1);
    start(&mut w, lost);
    w.blocks(3);
    let last_proof_height = w.state.height;
    w.silence(p1);
    let interval = w.state.params.heartbeat_interval_blocks;
    w.blocks(interval + 1);
    assert_eq!(
        uptime::silent_blocks(&w.state, &w.state.providers[&p1]),
        interval + 1,
        "silent past one heartbeat interval, and counting"
    );
    let timeout = w.state.params.liveness_timeout_blocks;
    until_ended(&mut w, lost, timeout + 2);
    let end = w.state.height;
    let held = end - w.lease(lost).created_height;
    let silent = end - last_proof_height;
    let u = &w.state.providers[&p1].uptime;
    assert_eq!(
        (u.leased_blocks, u.lost_blocks, u.outages),
        (held, silent, 1)
    );
    assert_eq!(
        uptime::uptime_ppm(&w.state.providers[&p1]),
        Some((held - silent) * 1_000_000 / held)
    );
    assert!(silent > timeout, "lost only past the liveness timeout");
    assert_eq!(
        uptime::silent_blocks(&w.state, &w.state.providers[&p1]),
        0,
        "no live lease left to be silent about"
    );
    // Provider 0's record is its own.
    assert_eq!(w.state.providers[&p0].uptime.outages, 0);
    // A provider that reports the workload lost while it proves itself there had no outage: a
    // failure on its record, not an absence.
    let order = open(&mut w, order_terms().name("third").recovery(1, &[], 0));
    let reported = lease_to(&mut w, order, 0);
    start(&mut w, reported);
    w.blocks(2);
    let before = w.state.providers[&p0].uptime.clone();
    let lost = w.complete(p0, reported, WorkloadOutcome::Lost);
    w.block(vec![lost]).assert_all_applied();
    assert_eq!(
        w.lease(reported).status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::ProviderLost
        }
    );
    let u = &w.state.providers[&p0].uptime;
    assert_eq!((u.lost_blocks, u.outages), (before.lost_blocks, 0), "{u:?}");
    assert!(u.leased_blocks > before.leased_blocks);
}
