//! Ended orders and leases leave the state for history: at the end of the block they end in
//! they move out of the tables into the block's archive, `take_changes` hands them over beside
//! the removals, and a transaction that names one later is refused as ended, never as unknown.

use borsh::BorshSerialize;
use gpunet_ledger::{Lease, Order, OrderStatus, apply_tx};
use gpunet_protocol::merkle::{StateTable, StateWrite, id_key, state_key};
use gpunet_protocol::{Address, LeaseId, Msg, OrderId, Rejection, WorkloadOutcome};
use gpunet_testkit::world::lease_result;
use gpunet_testkit::{OutcomeExt, TermsBuilder, World, order_terms, usd};

fn world() -> World {
    World::builder().tenants(2).providers(2).build()
}

/// Opens an order from tenant 0, has provider 0 bid on it, and returns the lease once the bid
/// window closes.
fn leased(w: &mut World, terms: TermsBuilder) -> (OrderId, LeaseId) {
    let (t, p) = (w.tenant(0), w.provider_addr(0));
    let tx = w.create_order(t, terms);
    let order = w.block(vec![tx]).orders_created()[0];
    let tx = w.bid(p, order, usd(1));
    w.block(vec![tx]).assert_all_applied();
    let closes = w.order(order).created_height + w.state.params.bid_window_blocks;
    w.advance_to(closes);
    match w.order(order).status {
        OrderStatus::Leased { lease } => (order, lease),
        other => panic!("order {order} is {other:?} after its window"),
    }
}

/// Applies `msg` from `signer` alone against the state (no block) and returns the rejection.
fn refused(w: &mut World, signer: Address, msg: Msg) -> Result<(), Rejection> {
    let tx = w.probe(signer, msg);
    apply_tx(&mut w.state, &tx).map(|_| ())
}

fn order_write(id: OrderId, value: Option<&Order>) -> StateWrite {
    StateWrite {
        key: state_key(StateTable::Orders, &id_key(id.0)),
        value: value.map(|o| borsh::to_vec(o).expect("encode")),
    }
}

fn lease_write(id: LeaseId, value: Option<&Lease>) -> StateWrite {
    StateWrite {
        key: state_key(StateTable::Leases, &id_key(id.0)),
        value: value.map(|l| borsh::to_vec(l).expect("encode")),
    }
}

fn encoded<T: BorshSerialize>(v: &T) -> Vec<u8> {
    borsh::to_vec(v).expect("encode")
}

#[test]
fn a_finished_job_leaves_the_state_in_its_last_block_and_the_block_hands_it_over() {
    let mut w = world();
    let (order, lease) = leased(&mut w, order_terms());
    let p = w.provider_addr(0);
    let tx = w.start(p, lease);
    w.submit(tx).expect("started");
    assert!(w.state.orders.contains_key(&order) && w.state.leases.contains_key(&lease));

    let tx = w.complete(p, lease, WorkloadOutcome::Succeeded);
    w.submit(tx).expect("completed");
    assert!(
        !w.state.orders.contains_key(&order),
        "the closed order left"
    );
    assert!(!w.state.leases.contains_key(&lease), "the ended lease left");
    assert!(!w.state.live_leases.contains(&lease));
    assert_eq!(w.state.next_order_id, order.0 + 1, "ids are never reused");

    // The block's archive holds them as they ended; the changes carry their removal from the
    // state and their values for history.
    let archived_order = w.state.archived().orders()[&order].clone();
    let archived_lease = w.state.archived().leases()[&lease].clone();
    assert_eq!(archived_order.status, OrderStatus::Closed { lease });
    assert!(archived_order.escrow.is_zero());
    assert!(!archived_lease.is_live());
    assert_eq!(
        archived_lease.result,
        Some(lease_result(WorkloadOutcome::Succeeded))
    );
    assert_eq!(
        w.order(order),
        &archived_order,
        "the world's history has it too"
    );

    let changes = w.state.take_changes();
    assert!(changes.state.contains(&order_write(order, None)));
    assert!(changes.state.contains(&lease_write(lease, None)));
    assert_eq!(
        changes.history(),
        vec![
            order_write(order, Some(&archived_order)),
            lease_write(lease, Some(&archived_lease)),
        ]
    );
    assert_eq!(
        changes.history()[0].value.as_deref(),
        Some(encoded(&archived_order).as_slice())
    );
    // Taken once: the next block's changes archive nothing more.
    assert!(w.state.archived().orders().is_empty() && w.state.archived().leases().is_empty());
    w.block(Vec::new());
    let next = w.state.take_changes();
    assert!(next.history().is_empty());
    assert!(
        w.state
            .entities()
            .iter()
            .all(|e| e.key != order_write(order, None).key)
    );
}

#[test]
fn a_retried_attempt_leaves_while_its_order_stays_open_and_lists_it() {
    let mut w = world();
    let (order, lease) = leased(&mut w, order_terms().recovery(2, &[], 0));
    let p = w.provider_addr(0);
    let tx = w.start(p, lease);
    w.submit(tx).expect("started");
    let tx = w.tx(p, Msg::AnnounceExit);
    w.submit(tx).expect("leaving");
    let tx = w.tx(p, Msg::ReleaseLease { lease });
    w.submit(tx).expect("released");

    assert!(
        !w.state.leases.contains_key(&lease),
        "the ended attempt left"
    );
    assert!(w.state.archived().leases().contains_key(&lease));
    let o = w
        .state
        .orders
        .get(&order)
        .expect("the order stays for its retry");
    assert_eq!(o.status, OrderStatus::Open);
    assert_eq!(o.attempts, vec![lease]);
    assert!(!o.escrow.is_zero(), "its escrow waits for the next attempt");
}

#[test]
fn expired_and_cancelled_orders_leave_the_state_with_their_refunds_paid() {
    let mut w = world();
    let t = w.tenant(0);
    let before = w.usd(&t);
    let tx = w.create_order(t, order_terms());
    let cancelled = w.block(vec![tx]).orders_created()[0];
    let tx = w.cancel(t, cancelled);
    w.submit(tx).expect("cancelled");
    assert!(!w.state.orders.contains_key(&cancelled));
    assert_eq!(w.order(cancelled).status, OrderStatus::Cancelled);

    let tx = w.create_order(t, order_terms());
    let expired = w.block(vec![tx]).orders_created()[0];
    let ttl = w.state.params.order_ttl_blocks;
    w.advance_to(w.order(expired).created_height + ttl);
    assert_eq!(w.order(expired).status, OrderStatus::Expired);
    assert!(!w.state.orders.contains_key(&expired));
    assert!(w.state.orders.is_empty() && w.state.open_orders.is_empty());
    // Both deposits came back; only the fees were spent (in gpn).
    assert_eq!(w.usd(&t), before);
}

#[test]
fn a_transaction_naming_an_ended_order_or_lease_is_refused_as_ended_not_unknown() {
    let mut w = world();
    let (order, lease) = leased(&mut w, order_terms());
    let (t, other, p, q) = (
        w.tenant(0),
        w.tenant(1),
        w.provider_addr(0),
        w.provider_addr(1),
    );
    let tx = w.start(p, lease);
    w.submit(tx).expect("started");
    let tx = w.complete(p, lease, WorkloadOutcome::Succeeded);
    w.submit(tx).expect("completed");
    assert!(w.state.order_ended(order) && w.state.lease_ended(lease));

    let not_open = Err(Rejection::OrderNotOpen);
    let top_up = Msg::TopUpOrder {
        order,
        amount: usd(1),
    };
    assert_eq!(refused(&mut w, t, top_up), not_open);
    assert_eq!(refused(&mut w, t, Msg::CancelOrder { order }), not_open);
    // Its owner is not in the state any more: anyone is told it ended.
    assert_eq!(refused(&mut w, other, Msg::CancelOrder { order }), not_open);
    let bid = Msg::PlaceBid {
        order,
        price_per_hour: usd(1),
    };
    assert_eq!(refused(&mut w, q, bid), not_open);

    let not_live = Err(Rejection::LeaseNotLive);
    assert_eq!(refused(&mut w, p, Msg::StartLease { lease }), not_live);
    let complete = Msg::CompleteLease {
        lease,
        result: lease_result(WorkloadOutcome::Succeeded),
    };
    assert_eq!(refused(&mut w, p, complete), not_live);
    assert_eq!(refused(&mut w, p, Msg::ReleaseLease { lease }), not_live);
    // A heartbeat that raced the end passes over the ended lease, as before it left.
    let beat = Msg::Heartbeat {
        leases: vec![lease],
    };
    assert_eq!(refused(&mut w, p, beat), Ok(()));

    // Ids never given out are unknown, as ever.
    let (next_order, next_lease) = (
        OrderId(w.state.next_order_id),
        LeaseId(w.state.next_lease_id),
    );
    let cancel = Msg::CancelOrder { order: next_order };
    assert_eq!(refused(&mut w, t, cancel), Err(Rejection::OrderNotFound));
    let start = Msg::StartLease { lease: next_lease };
    assert_eq!(refused(&mut w, p, start), Err(Rejection::LeaseNotFound));
    let beat = Msg::Heartbeat {
        leases: vec![next_lease],
    };
    assert_eq!(refused(&mut w, p, beat), Err(Rejection::LeaseNotFound));
    let cancel = Msg::CancelOrder { order: OrderId(0) };
    assert_eq!(refused(&mut w, t, cancel), Err(Rejection::OrderNotFound));
}

#[test]
fn the_state_holds_only_live_jobs_however_many_have_run() {
    let mut w = world();
    let p = w.provider_addr(0);
    for _ in 0..5 {
        let (_, lease) = leased(&mut w, order_terms());
        let tx = w.start(p, lease);
        w.submit(tx).expect("started");
        let tx = w.complete(p, lease, WorkloadOutcome::Failed);
        w.submit(tx).expect("completed");
    }
    assert_eq!(w.all_orders().count(), 5);
    assert!(w.state.orders.is_empty() && w.state.leases.is_empty());
    let ours: Vec<_> = w
        .state
        .entities()
        .into_iter()
        .filter(|e| {
            e.key.first() == Some(&StateTable::Orders.tag())
                || e.key.first() == Some(&StateTable::Leases.tag())
        })
        .collect();
    assert!(
        ours.is_empty(),
        "no order or lease entity is left: {ours:?}"
    );
}
