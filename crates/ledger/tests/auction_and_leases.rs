//! The market from order to settlement: deposits go to escrow, providers bid during the window,
//! the lowest feasible bid wins, the lease is billed to the micro-unit while it runs, and every
//! way a lease or order can end pays the provider, the treasury and the tenant exactly.

use std::collections::BTreeSet;

use gpunet_ledger::{LeaseStatus, OrderStatus, apply_tx};
use gpunet_protocol::resources::{
    MAX_CPU_MILLIS, MAX_DISK_MIB, MAX_GPUS_PER_ORDER, MAX_MEMORY_MIB, MAX_VRAM_MIB,
};
use gpunet_protocol::{
    Address, Amount, Capabilities, Denom, Event, LeaseEndReason, LeaseId, Msg, OrderId, OrderTerms,
    Rejection, Runtime, WorkloadOutcome,
};
use gpunet_testkit::outcome::LeaseEnd;
use gpunet_testkit::world::lease_result;
use gpunet_testkit::{OutcomeExt, TermsBuilder, World, h100, order_terms, provider_profile, usd};

const MS_PER_HOUR: u64 = 3_600_000;

fn micros(m: u64) -> Amount {
    Amount::from_micros(m)
}

/// Two tenants and three providers with 16 cores, 64 GiB and two H100s each.
fn world() -> World {
    World::builder().tenants(2).providers(3).build()
}

/// Opens an order from tenant 0 in its own block.
fn open(w: &mut World, terms: TermsBuilder) -> OrderId {
    let t = w.tenant(0);
    let tx = w.create_order(t, terms);
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    outcome.orders_created()[0]
}

/// Runs empty blocks until the order's bid window has closed and returns its lease.
fn lease_after_window(w: &mut World, order: OrderId) -> LeaseId {
    let closes = w.order(order).created_height + w.state.params.bid_window_blocks;
    w.advance_to(closes);
    match w.order(order).status {
        OrderStatus::Leased { lease } => lease,
        other => panic!("order {order} is {other:?} after its window"),
    }
}

/// Opens an order, has provider `p` bid `price` on it and returns the lease, still pending.
fn leased(w: &mut World, terms: TermsBuilder, p: usize, price: Amount) -> (OrderId, LeaseId) {
    let order = open(w, terms);
    let tx = w.bid(w.provider_addr(p), order, price);
    w.block(vec![tx]).assert_all_applied();
    (order, lease_after_window(w, order))
}

/// Starts a pending lease in its own block.
fn start(w: &mut World, lease: LeaseId) {
    let tx = w.start(w.lease(lease).provider, lease);
    w.submit(tx).expect("the lease's provider starts it");
}

/// Runs empty blocks (at most `limit`) until the lease ends; returns how it ended.
fn run_until_ended(w: &mut World, lease: LeaseId, limit: u64) -> LeaseEnd {
    for _ in 0..limit {
        let outcome = w.block(Vec::new());
        if let Some(end) = outcome
            .leases_ended()
            .into_iter()
            .find(|e| e.lease == lease)
        {
            return end;
        }
    }
    panic!("lease {lease} still live after {limit} blocks");
}

/// What the rules say a lease at `price` owes after `billed_ms`: (paid, fee).
fn bill(w: &World, price: Amount, billed_ms: u64) -> (Amount, Amount) {
    let paid = price.mul_div_floor(billed_ms, MS_PER_HOUR).expect("fits");
    let fee = paid
        .mul_div_floor(u64::from(w.state.params.protocol_fee_bps), 10_000)
        .expect("fits");
    (paid, fee)
}

fn plus(a: Amount, b: Amount) -> Amount {
    a.checked_add(b).expect("fits")
}

fn minus(a: Amount, b: Amount) -> Amount {
    a.checked_sub(b).expect("no underflow")
}

/// Applies `msg` from `signer` on its own; a rejection must leave the root unchanged.
fn check(w: &mut World, signer: Address, msg: Msg, expected: Result<(), Rejection>) {
    let tx = w.probe(signer, msg);
    let root = w.state.digest();
    let got = apply_tx(&mut w.state, &tx).map(|_| ());
    assert_eq!(got, expected, "{:?} from {}", tx.body.msg, signer.short());
    if expected.is_err() {
        assert_eq!(w.state.digest(), root, "a rejected tx changed the state");
    }
}

fn bid(order: OrderId, price: Amount) -> Msg {
    Msg::PlaceBid {
        order,
        price_per_hour: price,
    }
}

#[test]
fn the_lowest_bid_wins_and_the_tenant_pays_exactly_for_the_time_it_ran() {
    let mut w = world();
    let (t, p) = (
        w.tenant(0),
        [w.provider_addr(0), w.provider_addr(1), w.provider_addr(2)],
    );
    let deposit = usd(10);
    let usd_t0 = w.usd(&t);
    let usd_p0: Vec<Amount> = p.iter().map(|a| w.usd(a)).collect();

    let order = open(
        &mut w,
        order_terms().deposit(deposit).max_price_per_hour(usd(5)),
    );
    assert_eq!(w.escrow(order), deposit, "the deposit is in escrow");
    assert_eq!(w.usd(&t), minus(usd_t0, deposit));

    // Provider 1 and 2 tie on price; provider 1 bid first.
    let winning = micros(2_345_678);
    let txs = vec![
        w.bid(p[0], order, micros(3_000_000)),
        w.bid(p[1], order, winning),
        w.bid(p[2], order, winning),
    ];
    w.block(txs).assert_all_applied();
    let closes = w.order(order).created_height + w.state.params.bid_window_blocks;
    let before_close = w.advance_to(closes - 1);
    assert!(
        before_close.iter().all(|o| o.leases_created().is_empty()),
        "no match inside the window"
    );
    assert_eq!(w.order(order).status, OrderStatus::Open);
    let lease = lease_after_window(&mut w, order);
    let l = w.lease(lease);
    assert_eq!(
        (l.provider, l.price_per_hour, l.status),
        (p[1], winning, LeaseStatus::Pending)
    );
    assert!(w.order(order).bids.is_empty());

    // Pending leases are not billed.
    w.blocks(5);
    assert_eq!(w.escrow(order), deposit);
    assert_eq!(w.lease(lease).billed_ms, 0);

    start(&mut w, lease);
    let started_ms = w.state.time_ms;
    assert_eq!(w.lease(lease).started_ms, Some(started_ms));
    w.blocks(6);
    // Billing is cumulative: after every block the escrow holds exactly the deposit less the bill.
    let (paid_so_far, _) = bill(&w, winning, w.state.time_ms - started_ms);
    assert_eq!(w.escrow(order), minus(deposit, paid_so_far));

    let tx = w.complete(p[1], lease, WorkloadOutcome::Succeeded);
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    let billed_ms = w.state.time_ms - started_ms;
    assert_eq!(billed_ms, 7 * 500);
    let (paid, fee) = bill(&w, winning, billed_ms);
    assert_eq!(
        (paid, fee),
        (micros(2_280), micros(22)),
        "floor(2.345678 × 3500 / 3.6e6), 1%"
    );
    let refund = minus(deposit, paid);
    let ended = outcome.leases_ended();
    assert_eq!(
        ended,
        vec![LeaseEnd {
            lease,
            order,
            reason: LeaseEndReason::Completed,
            billed_ms,
            paid,
            fee,
            refund,
        }]
    );
    assert_eq!(
        w.usd(&t),
        minus(usd_t0, paid),
        "the tenant paid exactly the bill"
    );
    assert_eq!(w.usd(&p[1]), plus(usd_p0[1], minus(paid, fee)));
    assert_eq!(w.usd(&p[0]), usd_p0[0]);
    assert_eq!(w.usd(&p[2]), usd_p0[2]);
    assert_eq!(w.treasury(Denom::Usd), fee);
    assert_eq!(w.escrow(order), Amount::ZERO);
    assert_eq!(w.order(order).status, OrderStatus::Closed { lease });
    let l = w.lease(lease);
    assert_eq!(
        (l.billed_ms, l.paid, l.fee, l.refund),
        (billed_ms, paid, fee, refund)
    );
    assert_eq!(
        l.status,
        LeaseStatus::Ended {
            reason: LeaseEndReason::Completed
        }
    );
    assert!(w.state.live_leases.is_empty());
    assert!(
        w.provider(&p[1])
            .expect("registered")
            .live_leases
            .is_empty()
    );
}

#[test]
fn on_a_tie_the_earlier_bid_wins_even_from_a_later_block() {
    let mut w = world();
    let order = open(&mut w, order_terms());
    let price = usd(1);
    let tx = w.bid(w.provider_addr(2), order, price);
    w.block(vec![tx]).assert_all_applied();
    let tx = w.bid(w.provider_addr(0), order, price);
    w.block(vec![tx]).assert_all_applied();
    let lease = lease_after_window(&mut w, order);
    assert_eq!(w.lease(lease).provider, w.provider_addr(2));
}

#[test]
fn a_lowered_rebid_replaces_the_old_bid_and_can_win() {
    let mut w = World::builder()
        .providers(2)
        .with_params(|p| p.bid_window_blocks = 5)
        .build();
    let (p0, p1) = (w.provider_addr(0), w.provider_addr(1));
    let order = open(&mut w, order_terms());
    let txs = vec![w.bid(p0, order, usd(3)), w.bid(p1, order, usd(2))];
    w.block(txs).assert_all_applied();
    let tx = w.bid(p0, order, usd(1));
    w.block(vec![tx]).assert_all_applied();
    assert_eq!(
        w.order(order).bids.len(),
        2,
        "a re-bid replaces, it does not add"
    );
    let lease = lease_after_window(&mut w, order);
    assert_eq!(
        (w.lease(lease).provider, w.lease(lease).price_per_hour),
        (p0, usd(1))
    );
}

#[test]
fn bad_bids_are_rejected_with_their_code() {
    let mut only_process = provider_profile(16_000, 65_536, vec![h100(), h100()]);
    only_process.runtimes = vec![Runtime::Process];
    let mut w = World::builder()
        .tenants(2)
        .providers(2)
        .provider(only_process)
        .with_params(|p| p.max_bids_per_order = 2)
        .build();
    let (t, stranger_tenant) = (w.tenant(0), w.tenant(1));
    let (p0, p1, p2) = (w.provider_addr(0), w.provider_addr(1), w.provider_addr(2));
    let max = usd(5);
    let order = open(
        &mut w,
        order_terms().max_price_per_hour(max).gpus(1, &["h100"]),
    );
    let above = plus(max, micros(1));

    check(
        &mut w,
        p0,
        bid(OrderId(999), usd(1)),
        Err(Rejection::OrderNotFound),
    );
    check(
        &mut w,
        stranger_tenant,
        bid(order, usd(1)),
        Err(Rejection::ProviderNotRegistered),
    );
    check(
        &mut w,
        p0,
        bid(order, above),
        Err(Rejection::BidAboveMaxPrice),
    );
    check(
        &mut w,
        p0,
        bid(order, Amount::ZERO),
        Err(Rejection::ZeroAmount),
    );
    check(&mut w, p0, bid(order, max), Ok(()));
    check(&mut w, p0, bid(order, max), Err(Rejection::BidNotLower));
    check(
        &mut w,
        p0,
        bid(order, plus(max, micros(0))),
        Err(Rejection::BidNotLower),
    );
    check(&mut w, p0, bid(order, usd(4)), Ok(()));
    check(&mut w, p1, bid(order, usd(4)), Ok(()));
    check(&mut w, p2, bid(order, usd(3)), Err(Rejection::TooManyBids));
    check(&mut w, p1, bid(order, usd(3)), Ok(()));

    // Orders this world's providers cannot serve.
    let cannot_fit: Vec<(&str, TermsBuilder, Address)> = vec![
        ("too much memory", order_terms().memory_mib(65_537), p0),
        ("too many cores", order_terms().cpu_millis(16_001), p0),
        ("too many GPUs", order_terms().gpus(3, &[]), p0),
        ("wrong GPU model", order_terms().gpus(1, &["a100"]), p0),
        (
            "too little VRAM",
            order_terms().gpus(1, &[]).vram_mib_min(81_560),
            p0,
        ),
        ("wrong region", order_terms().regions(&["us-east"]), p0),
        ("wrong runtime", order_terms().runtime(Runtime::Docker), p2),
    ];
    for (what, terms, p) in cannot_fit {
        let o = open(&mut w, terms);
        let root = w.state.digest();
        let tx = w.probe(p, bid(o, usd(1)));
        assert_eq!(
            apply_tx(&mut w.state, &tx).map(|_| ()),
            Err(Rejection::ProviderCannotFit),
            "{what}"
        );
        assert_eq!(w.state.digest(), root, "{what}");
    }

    // A tenant that is also a provider may not bid on its own order.
    let min = w.state.params.min_provider_stake;
    let tx = w.register(t, min, provider_profile(16_000, 65_536, vec![h100()]));
    w.submit(tx).expect("the tenant registers as a provider");
    let own = open(&mut w, order_terms());
    check(&mut w, t, bid(own, usd(1)), Err(Rejection::SelfDealing));

    // Once the order is leased, the window is closed for good.
    let lease = lease_after_window(&mut w, order);
    assert_eq!(
        w.lease(lease).provider,
        p1,
        "p1's 3 usd re-bid is the lowest"
    );
    check(&mut w, p0, bid(order, usd(1)), Err(Rejection::OrderNotOpen));
}

#[test]
fn an_order_nobody_bids_on_expires_with_a_full_refund() {
    let mut w = World::builder()
        .providers(1)
        .with_params(|p| p.order_ttl_blocks = 10)
        .build();
    let t = w.tenant(0);
    let usd0 = w.usd(&t);
    let order = open(&mut w, order_terms().deposit(usd(7)));
    let expires = w.order(order).created_height + 10;
    let early = w.advance_to(expires - 1);
    assert!(early.iter().all(|o| o.end_block_events.is_empty()));
    assert_eq!(w.order(order).status, OrderStatus::Open);
    let outcome = w.block(Vec::new());
    assert_eq!(
        outcome.end_block_events,
        vec![Event::OrderExpired {
            order,
            refund: usd(7)
        }]
    );
    assert_eq!(w.order(order).status, OrderStatus::Expired);
    assert_eq!(w.escrow(order), Amount::ZERO);
    assert_eq!(w.usd(&t), usd0);
    assert!(w.state.open_orders.is_empty());
}

#[test]
fn a_bid_after_the_window_is_still_taken_while_the_order_is_open() {
    let mut w = World::builder()
        .providers(1)
        .with_params(|p| p.order_ttl_blocks = 10)
        .build();
    let order = open(&mut w, order_terms());
    w.advance_to(w.order(order).created_height + w.state.params.bid_window_blocks + 3);
    assert_eq!(w.order(order).status, OrderStatus::Open);
    let tx = w.bid(w.provider_addr(0), order, usd(1));
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    assert_eq!(
        outcome.leases_created().len(),
        1,
        "a late bid matches at the end of its block"
    );
}

#[test]
fn a_lease_not_started_in_time_ends_with_a_full_refund() {
    let mut w = World::builder()
        .providers(1)
        .with_params(|p| p.start_timeout_blocks = 5)
        .build();
    let (t, p) = (w.tenant(0), w.provider_addr(0));
    let usd0 = w.usd(&t);
    let (order, lease) = leased(&mut w, order_terms().deposit(usd(3)), 0, usd(1));
    let created = w.lease(lease).created_height;
    w.advance_to(created + 4);
    assert!(w.lease(lease).is_live());
    let end = run_until_ended(&mut w, lease, 1);
    assert_eq!(
        end,
        LeaseEnd {
            lease,
            order,
            reason: LeaseEndReason::StartTimeout,
            billed_ms: 0,
            paid: Amount::ZERO,
            fee: Amount::ZERO,
            refund: usd(3),
        }
    );
    assert_eq!(w.usd(&t), usd0);
    assert_eq!(w.usd(&p), Amount::ZERO);
    let tx = w.start(p, lease);
    assert_eq!(w.submit(tx), Err(Rejection::LeaseNotLive));
}

#[test]
fn a_provider_may_start_on_the_last_block_before_the_timeout() {
    let mut w = World::builder()
        .providers(1)
        .with_params(|p| p.start_timeout_blocks = 5)
        .build();
    let (_, lease) = leased(&mut w, order_terms(), 0, usd(1));
    w.advance_to(w.lease(lease).created_height + 4);
    start(&mut w, lease);
    assert_eq!(w.lease(lease).status, LeaseStatus::Running);
}

#[test]
fn a_lease_whose_escrow_runs_out_pays_the_provider_the_whole_deposit() {
    // No pause grace: the lease ends the block its escrow runs out (the pause has its own
    // tests in survival.rs).
    let mut w = World::builder()
        .providers(1)
        .with_params(|p| p.pause_grace_blocks = 0)
        .build();
    let (t, p) = (w.tenant(0), w.provider_addr(0));
    let usd_t0 = w.usd(&t);
    // 3.6 usd/hour is 1 000 micro-usd a second: 500 a block.
    let deposit = micros(2_250);
    let (order, lease) = leased(&mut w, order_terms().deposit(deposit), 0, micros(3_600_000));
    start(&mut w, lease);
    let end = run_until_ended(&mut w, lease, 10);
    let fee = micros(22);
    assert_eq!(
        end,
        LeaseEnd {
            lease,
            order,
            reason: LeaseEndReason::InsufficientFunds,
            // The deposit covers 2 250 ms at 1 000 micro-usd a second.
            billed_ms: 2_250,
            paid: deposit,
            fee,
            refund: Amount::ZERO,
        }
    );
    assert_eq!(w.usd(&p), minus(deposit, fee));
    assert_eq!(w.treasury(Denom::Usd), fee);
    assert_eq!(w.usd(&t), minus(usd_t0, deposit));
}

#[test]
fn a_lease_that_reaches_its_max_duration_is_billed_exactly_the_max_duration() {
    // 700 ms blocks overshoot the 3 s max duration: billing must stop at 3 000 ms.
    let mut w = World::builder().providers(1).step_ms(700).build();
    let (t, p) = (w.tenant(0), w.provider_addr(0));
    let usd_t0 = w.usd(&t);
    let deposit = usd(1);
    let (order, lease) = leased(
        &mut w,
        order_terms().deposit(deposit).max_duration_secs(3),
        0,
        micros(3_600_000),
    );
    start(&mut w, lease);
    let end = run_until_ended(&mut w, lease, 10);
    let (paid, fee) = (micros(3_000), micros(30));
    assert_eq!(
        end,
        LeaseEnd {
            lease,
            order,
            reason: LeaseEndReason::MaxDurationReached,
            billed_ms: 3_000,
            paid,
            fee,
            refund: minus(deposit, paid),
        }
    );
    assert_eq!(w.usd(&t), minus(usd_t0, paid));
    assert_eq!(w.usd(&p), minus(paid, fee));
}

#[test]
fn a_tenant_may_cancel_an_open_order_for_a_full_refund() {
    let mut w = world();
    let (t, other) = (w.tenant(0), w.tenant(1));
    let usd0 = w.usd(&t);
    let order = open(&mut w, order_terms().deposit(usd(4)));
    check(
        &mut w,
        other,
        Msg::CancelOrder { order },
        Err(Rejection::NotOrderOwner),
    );
    check(
        &mut w,
        t,
        Msg::CancelOrder {
            order: OrderId(999),
        },
        Err(Rejection::OrderNotFound),
    );
    let tx = w.cancel(t, order);
    let events = w.submit(tx).expect("cancels");
    assert!(events.contains(&Event::OrderCancelled {
        order,
        refund: usd(4)
    }));
    assert_eq!(w.usd(&t), usd0);
    assert_eq!(w.order(order).status, OrderStatus::Cancelled);
    check(
        &mut w,
        t,
        Msg::CancelOrder { order },
        Err(Rejection::OrderNotOpen),
    );
    let p0 = w.provider_addr(0);
    check(&mut w, p0, bid(order, usd(1)), Err(Rejection::OrderNotOpen));
}

#[test]
fn a_tenant_that_cancels_a_running_lease_pays_for_the_time_used() {
    let mut w = world();
    let (t, p) = (w.tenant(0), w.provider_addr(0));
    let (usd_t0, usd_p0) = (w.usd(&t), w.usd(&p));
    let price = micros(7_777_777);
    let (order, lease) = leased(&mut w, order_terms().deposit(usd(5)), 0, price);
    start(&mut w, lease);
    let started = w.state.time_ms;
    w.blocks(3);
    // The provider's last proof of life is the heartbeat of the block before the cancel (the
    // cancel applies before this block's heartbeat): billing stops there.
    let proven_until = w.state.time_ms;
    let tx = w.cancel(t, order);
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    let billed_ms = proven_until - started;
    let (paid, fee) = bill(&w, price, billed_ms);
    assert!(!paid.is_zero());
    assert_eq!(
        outcome.leases_ended(),
        vec![LeaseEnd {
            lease,
            order,
            reason: LeaseEndReason::CancelledByTenant,
            billed_ms,
            paid,
            fee,
            refund: minus(usd(5), paid),
        }]
    );
    assert_eq!(w.usd(&t), minus(usd_t0, paid));
    assert_eq!(w.usd(&p), plus(usd_p0, minus(paid, fee)));
    check(
        &mut w,
        t,
        Msg::CancelOrder { order },
        Err(Rejection::OrderNotOpen),
    );
}

#[test]
fn a_tenant_that_cancels_a_pending_lease_pays_nothing() {
    let mut w = world();
    let t = w.tenant(0);
    let usd0 = w.usd(&t);
    let (order, lease) = leased(&mut w, order_terms(), 0, usd(1));
    let tx = w.cancel(t, order);
    let outcome = w.block(vec![tx]);
    let end = outcome.leases_ended()[0];
    assert_eq!(
        (end.lease, end.reason, end.paid),
        (lease, LeaseEndReason::CancelledByTenant, Amount::ZERO)
    );
    assert_eq!(w.usd(&t), usd0);
}

#[test]
fn lease_transitions_by_the_wrong_party_or_in_the_wrong_state_are_rejected() {
    let mut w = world();
    let (p0, p1) = (w.provider_addr(0), w.provider_addr(1));
    let (_, lease) = leased(&mut w, order_terms(), 0, usd(1));
    let start_msg = Msg::StartLease { lease };
    let complete = |outcome| Msg::CompleteLease {
        lease,
        result: lease_result(outcome),
    };
    check(
        &mut w,
        p1,
        start_msg.clone(),
        Err(Rejection::NotLeaseProvider),
    );
    check(
        &mut w,
        p1,
        complete(WorkloadOutcome::Succeeded),
        Err(Rejection::NotLeaseProvider),
    );
    let t = w.tenant(0);
    check(
        &mut w,
        t,
        complete(WorkloadOutcome::Succeeded),
        Err(Rejection::NotLeaseProvider),
    );
    check(
        &mut w,
        p0,
        Msg::StartLease {
            lease: LeaseId(999),
        },
        Err(Rejection::LeaseNotFound),
    );
    let mut long = lease_result(WorkloadOutcome::Failed);
    long.detail = "x".repeat(513);
    check(
        &mut w,
        p0,
        Msg::CompleteLease {
            lease,
            result: long,
        },
        Err(Rejection::ResultInvalid),
    );
    check(&mut w, p0, start_msg.clone(), Ok(()));
    check(
        &mut w,
        p0,
        start_msg.clone(),
        Err(Rejection::LeaseNotPending),
    );
    check(&mut w, p0, complete(WorkloadOutcome::Failed), Ok(()));
    check(
        &mut w,
        p0,
        complete(WorkloadOutcome::Succeeded),
        Err(Rejection::LeaseNotLive),
    );
    check(&mut w, p0, start_msg, Err(Rejection::LeaseNotLive));
    let p = w.provider(&p0).expect("registered");
    assert_eq!((p.leases_completed, p.leases_failed), (0, 1));
}

#[test]
fn a_provider_that_could_not_start_ends_the_lease_with_a_full_refund() {
    let mut w = world();
    let t = w.tenant(0);
    let usd0 = w.usd(&t);
    let (_, lease) = leased(&mut w, order_terms(), 0, usd(1));
    let tx = w.complete(w.provider_addr(0), lease, WorkloadOutcome::ImageUnavailable);
    let end = w.block(vec![tx]).leases_ended()[0];
    assert_eq!(
        (end.reason, end.paid, end.billed_ms),
        (LeaseEndReason::ImageUnavailable, Amount::ZERO, 0)
    );
    assert_eq!(w.usd(&t), usd0);
}

#[test]
fn a_provider_filled_by_one_lease_loses_the_auction_for_an_order_it_cannot_also_fit() {
    let one_gpu = || provider_profile(16_000, 65_536, vec![h100()]);
    let mut w = World::builder()
        .provider(one_gpu())
        .provider(one_gpu())
        .build();
    let (t, cheap, dear) = (w.tenant(0), w.provider_addr(0), w.provider_addr(1));
    let terms = || order_terms().gpus(1, &[]).build();
    let txs = vec![w.create_order(t, terms()), w.create_order(t, terms())];
    let orders = w.block(txs).orders_created();
    let mut txs = Vec::new();
    for &o in &orders {
        txs.push(w.bid(cheap, o, usd(1)));
        txs.push(w.bid(dear, o, usd(2)));
    }
    w.block(txs).assert_all_applied();
    let first = lease_after_window(&mut w, orders[0]);
    let OrderStatus::Leased { lease: second } = w.order(orders[1]).status else {
        panic!("the second order found no provider");
    };
    assert_eq!(
        w.lease(first).provider,
        cheap,
        "earlier orders get first pick"
    );
    assert_eq!(w.lease(second).provider, dear, "the cheap provider is full");
    assert_eq!(w.lease(second).price_per_hour, usd(2));

    // A third order: both providers are full, so neither may bid, and none is matched.
    let third = open(&mut w, order_terms().gpus(1, &[]));
    check(
        &mut w,
        cheap,
        bid(third, usd(1)),
        Err(Rejection::ProviderCannotFit),
    );
    // A job without GPUs still fits beside the leases.
    let cpu_only = open(&mut w, order_terms());
    check(&mut w, cheap, bid(cpu_only, usd(1)), Ok(()));
}

#[test]
fn an_order_whose_only_bidder_filled_up_gets_no_lease_and_keeps_taking_bids() {
    let one_gpu = provider_profile(16_000, 65_536, vec![h100()]);
    let mut w = World::builder().provider(one_gpu).providers(1).build();
    let (t, p0, p1) = (w.tenant(0), w.provider_addr(0), w.provider_addr(1));
    let terms = || order_terms().gpus(1, &[]).build();
    let txs = vec![w.create_order(t, terms()), w.create_order(t, terms())];
    let orders = w.block(txs).orders_created();
    let txs = vec![w.bid(p0, orders[0], usd(1)), w.bid(p0, orders[1], usd(1))];
    w.block(txs).assert_all_applied();
    lease_after_window(&mut w, orders[0]);
    assert_eq!(w.order(orders[1]).status, OrderStatus::Open);
    assert!(w.order(orders[1]).bids.is_empty(), "stale bids are dropped");
    let tx = w.bid(p1, orders[1], usd(2));
    let outcome = w.block(vec![tx]);
    assert_eq!(outcome.leases_created(), vec![(LeaseId(2), orders[1])]);
}

#[test]
fn two_leases_never_share_a_gpu_slot() {
    let four = provider_profile(64_000, 262_144, vec![h100(); 4]);
    let mut w = World::builder()
        .provider(four)
        .with_params(|p| p.order_ttl_blocks = 20)
        .build();
    let (t, p) = (w.tenant(0), w.provider_addr(0));
    let terms = |gpus| order_terms().gpus(gpus, &["h100"]).build();
    let txs = vec![
        w.create_order(t, terms(1)),
        w.create_order(t, terms(2)),
        w.create_order(t, terms(1)),
        w.create_order(t, terms(1)),
    ];
    let orders = w.block(txs).orders_created();
    let txs = orders.iter().map(|&o| w.bid(p, o, usd(1))).collect();
    w.block(txs).assert_all_applied();
    lease_after_window(&mut w, orders[0]);

    let slots_of = |w: &World| -> Vec<Vec<u32>> {
        w.state
            .live_leases
            .iter()
            .map(|id| w.lease(*id).gpu_slots.clone())
            .collect()
    };
    let held = slots_of(&w);
    assert_eq!(held, vec![vec![0], vec![1, 2], vec![3]]);
    assert_eq!(
        w.order(orders[3]).status,
        OrderStatus::Open,
        "no GPU left for the fourth"
    );

    // Ending the two-GPU lease frees exactly its slots for the next match.
    let middle = w
        .state
        .live_leases
        .iter()
        .copied()
        .nth(1)
        .expect("three leases");
    let tx = w.complete(p, middle, WorkloadOutcome::StartFailed);
    w.block(vec![tx]).assert_all_applied();
    let tx = w.bid(p, orders[3], usd(1));
    w.block(vec![tx]).assert_all_applied();
    let held = slots_of(&w);
    let all: Vec<u32> = held.iter().flatten().copied().collect();
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a slot is held twice: {held:?}");
    assert_eq!(held, vec![vec![0], vec![3], vec![1]]);
}

#[test]
fn order_terms_out_of_bounds_are_rejected() {
    let mut w = world();
    let t = w.tenant(0);
    let max_secs = w.state.params.max_lease_duration_secs;
    let usd_balance = w.usd(&t);
    let create = |terms: OrderTerms| Msg::CreateOrder { terms };
    let cases: Vec<(&str, TermsBuilder, Rejection)> = vec![
        (
            "empty name",
            order_terms().name(""),
            Rejection::OrderInvalid,
        ),
        (
            "name too long",
            order_terms().name(&"n".repeat(65)),
            Rejection::OrderInvalid,
        ),
        (
            "no cpu",
            order_terms().cpu_millis(0),
            Rejection::OrderInvalid,
        ),
        (
            "no memory",
            order_terms().memory_mib(0),
            Rejection::OrderInvalid,
        ),
        (
            "65 GPUs",
            order_terms().gpus(65, &[]),
            Rejection::ResourcesOutOfBounds,
        ),
        (
            "16 EiB of memory",
            order_terms().memory_mib(u64::MAX),
            Rejection::ResourcesOutOfBounds,
        ),
        (
            "a MiB over 16 TiB of memory",
            order_terms().memory_mib(MAX_MEMORY_MIB + 1),
            Rejection::ResourcesOutOfBounds,
        ),
        (
            "a MiB over 1 PiB of disk",
            order_terms().disk_mib(MAX_DISK_MIB + 1),
            Rejection::ResourcesOutOfBounds,
        ),
        (
            "a thousandth of a core over 1024 cores",
            order_terms().cpu_millis(MAX_CPU_MILLIS + 1),
            Rejection::ResourcesOutOfBounds,
        ),
        (
            "a MiB over 1 TiB per GPU",
            order_terms().gpus(1, &[]).vram_mib_min(MAX_VRAM_MIB + 1),
            Rejection::ResourcesOutOfBounds,
        ),
        (
            "bad GPU model",
            order_terms().gpus(1, &["H100"]),
            Rejection::OrderInvalid,
        ),
        (
            "zero duration",
            order_terms().max_duration_secs(0),
            Rejection::OrderInvalid,
        ),
        (
            "duration too long",
            order_terms().max_duration_secs(max_secs + 1),
            Rejection::OrderInvalid,
        ),
        (
            "zero max price",
            order_terms().max_price_per_hour(Amount::ZERO),
            Rejection::OrderInvalid,
        ),
        (
            "zero deposit",
            order_terms().deposit(Amount::ZERO),
            Rejection::DepositTooSmall,
        ),
        (
            "deposit above the balance",
            order_terms().deposit(plus(usd_balance, micros(1))),
            Rejection::InsufficientFunds,
        ),
    ];
    for (what, terms, why) in cases {
        let root = w.state.digest();
        let tx = w.probe(t, create(terms.build()));
        assert_eq!(apply_tx(&mut w.state, &tx).map(|_| ()), Err(why), "{what}");
        assert_eq!(w.state.digest(), root, "{what}");
    }
    check(
        &mut w,
        t,
        create(
            order_terms()
                .max_duration_secs(max_secs)
                .deposit(usd_balance)
                // Every bound is inclusive.
                .cpu_millis(MAX_CPU_MILLIS)
                .memory_mib(MAX_MEMORY_MIB)
                .disk_mib(MAX_DISK_MIB)
                .gpus(MAX_GPUS_PER_ORDER, &[])
                .vram_mib_min(MAX_VRAM_MIB)
                .build(),
        ),
        Ok(()),
    );
}

#[test]
fn a_provider_cannot_claim_a_run_for_a_lease_it_never_started() {
    let mut w = World::builder().providers(1).build();
    let p = w.provider_addr(0);
    let (_, lease) = leased(&mut w, order_terms(), 0, usd(1));
    for outcome in [
        WorkloadOutcome::Succeeded,
        WorkloadOutcome::Failed,
        WorkloadOutcome::OutOfMemory,
        WorkloadOutcome::TimedOut,
    ] {
        let result = gpunet_testkit::world::lease_result(outcome);
        check(
            &mut w,
            p,
            Msg::CompleteLease { lease, result },
            Err(Rejection::LeaseNotStarted),
        );
    }
    let tx = w.complete(p, lease, WorkloadOutcome::ImageUnavailable);
    w.block(vec![tx]).assert_all_applied();
    let provider = w.provider(&p).expect("registered");
    assert_eq!((provider.leases_completed, provider.leases_failed), (0, 1));
}

#[test]
fn a_deregistered_provider_takes_its_bids_with_it() {
    let mut w = World::builder().providers(2).build();
    let (p0, p1) = (w.provider_addr(0), w.provider_addr(1));
    let order = open(&mut w, order_terms());
    let tx = w.bid(p0, order, usd(1));
    w.block(vec![tx]).assert_all_applied();
    assert_eq!(w.order(order).bids.len(), 1);
    let tx = w.deregister(p0);
    w.block(vec![tx]).assert_all_applied();
    assert!(w.order(order).bids.is_empty(), "the leaver's bid is gone");
    let tx = w.bid(p1, order, usd(2));
    w.block(vec![tx]).assert_all_applied();
    let lease = lease_after_window(&mut w, order);
    assert_eq!(w.lease(lease).provider, p1);
}

#[test]
fn a_provider_can_only_move_its_endpoint_under_live_leases() {
    let mut w = World::builder().providers(1).build();
    let p = w.provider_addr(0);
    let (_, lease) = leased(&mut w, order_terms(), 0, usd(1));
    let profile = w.provider(&p).expect("registered").profile.clone();
    let mut smaller = profile.clone();
    smaller.capacity.memory_mib /= 2;
    check(
        &mut w,
        p,
        Msg::UpdateProvider { profile: smaller },
        Err(Rejection::ProviderHasLiveLeases),
    );
    let mut moved = profile.clone();
    moved.endpoint = "http://127.0.0.1:9999".into();
    check(&mut w, p, Msg::UpdateProvider { profile: moved }, Ok(()));
    let tx = w.complete(p, lease, WorkloadOutcome::StartFailed);
    w.block(vec![tx]).assert_all_applied();
    check(&mut w, p, Msg::UpdateProvider { profile }, Ok(()));
}

#[test]
fn a_leases_provider_records_its_endpoints_and_nobody_else_can() {
    let mut w = world();
    let (p0, p1) = (w.provider_addr(0), w.provider_addr(1));
    let t = w.tenant(0);
    let (order, lease) = leased(&mut w, order_terms(), 0, usd(1));
    let publish = |endpoints: &[&str]| Msg::PublishEndpoints {
        lease,
        endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
    };
    let good = [
        "http://203.0.113.7:30001",
        "http://7-8080.apps.example.net",
        "tcp://203.0.113.7:30002",
    ];
    // Only the lease's provider: not another provider, not the tenant.
    check(&mut w, p1, publish(&good), Err(Rejection::NotLeaseProvider));
    check(&mut w, t, publish(&good), Err(Rejection::NotLeaseProvider));
    // Bounded and well-formed.
    let too_many: Vec<String> = (0..33).map(|i| format!("tcp://10.0.0.1:{i}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let too_long = format!("http://{}", "a".repeat(250));
    for bad in [
        &too_many[..],
        &["ftp://203.0.113.7:21"],
        &["http://"],
        &["http://a b"],
        &["http://\u{e9}t\u{e9}.example"],
        &[too_long.as_str()],
        &["tcp://10.0.0.1:1", "tcp://10.0.0.1:1"],
    ] {
        check(&mut w, p0, publish(bad), Err(Rejection::EndpointsInvalid));
    }
    // Recorded while pending, replaced later, shown on the lease.
    check(&mut w, p0, publish(&good[..1]), Ok(()));
    assert_eq!(w.lease(lease).endpoints, [good[0]]);
    check(&mut w, p0, publish(&good), Ok(()));
    assert_eq!(w.lease(lease).endpoints, good);
    // Not once the lease has ended.
    let tx = w.cancel(t, order);
    w.block(vec![tx]);
    check(&mut w, p0, publish(&good), Err(Rejection::LeaseNotLive));
}

/// A job whose containers need the baseline capabilities (ADR 0013) goes only to a provider
/// that grants them, even at a higher price; a process job may not ask for them; and a
/// provider cannot withdraw the grant from under a live lease.
#[test]
fn an_order_asking_for_capabilities_goes_only_to_a_provider_that_grants_them() {
    let mut granting = provider_profile(16_000, 65_536, vec![h100(), h100()]);
    granting.capabilities = Capabilities::Baseline;
    let mut w = World::builder()
        .tenants(1)
        .provider(provider_profile(16_000, 65_536, vec![h100(), h100()]))
        .provider(granting)
        .build();
    let (p0, p1) = (w.provider_addr(0), w.provider_addr(1));
    let terms = order_terms()
        .runtime(Runtime::Docker)
        .capabilities(Capabilities::Baseline)
        .max_price_per_hour(usd(1_000));
    let e = gpunet_ledger::explain::explain(&w.state, &terms.clone().build());
    assert_eq!(e.matching, 1, "{e:?}");
    assert!(
        e.failing.iter().any(|f| f.requirement
            == gpunet_protocol::explain::Requirement::Capabilities
            && f.providers == 1),
        "{e:?}"
    );
    let order = open(&mut w, terms);
    check(
        &mut w,
        p0,
        bid(order, usd(1)),
        Err(Rejection::ProviderCannotFit),
    );
    let tx = w.bid(p1, order, usd(2));
    w.block(vec![tx]).assert_all_applied();
    let lease = lease_after_window(&mut w, order);
    assert_eq!(w.lease(lease).provider, p1);
    // Held while the lease lives.
    let mut withdrawn = w.provider(&p1).expect("registered").profile.clone();
    withdrawn.capabilities = Capabilities::None;
    check(
        &mut w,
        p1,
        Msg::UpdateProvider { profile: withdrawn },
        Err(Rejection::ProviderHasLiveLeases),
    );
    // Only containers have capabilities.
    let t = w.tenant(0);
    let process = order_terms().capabilities(Capabilities::Baseline).build();
    check(
        &mut w,
        t,
        Msg::CreateOrder { terms: process },
        Err(Rejection::CapabilitiesInvalid),
    );
    // Nobody grants them: the explainer says so and how to go on.
    let w = World::builder().tenants(1).providers(1).build();
    let e = gpunet_ledger::explain::explain(
        &w.state,
        &order_terms()
            .runtime(Runtime::Docker)
            .capabilities(Capabilities::Baseline)
            .max_price_per_hour(usd(1_000))
            .build(),
    );
    assert_eq!(
        e.changes,
        [gpunet_protocol::explain::Change::Capabilities {
            wanted: Capabilities::Baseline
        }]
    );
    assert!(
        e.changes[0]
            .to_string()
            .contains("--allow-capabilities baseline"),
        "{}",
        e.changes[0]
    );
}
