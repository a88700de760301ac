//! The O(changes) invariant check a validator runs on every proposal catches what the full
//! check catches, for the entities the block wrote: money made or lost, and ended orders that
//! keep escrow. (That it passes wherever the full check passes is asserted after every block of
//! every ledger test, in `World::block`.)

use gpunet_ledger::invariants::check_changes;
use gpunet_protocol::{Amount, Denom};
use gpunet_testkit::{World, order_terms, usd};

fn world() -> World {
    World::builder().tenants(2).providers(1).build()
}

#[test]
fn money_made_out_of_nothing_in_a_written_account_is_caught() {
    let mut w = world();
    w.state.take_changes();
    let before = w.state.clone();
    let a = w.tenant(0);
    let acct = w.state.accounts.get_mut(&a).expect("tenant account");
    acct.balances.usd = acct
        .balances
        .usd
        .checked_add(Amount::from_micros(1))
        .expect("fits");
    let v = check_changes(&before, &w.state).expect_err("one micro-unit from nowhere");
    assert!(
        v.0.contains("usd") && v.0.contains("moved holdings by 1"),
        "{v}"
    );

    // Minting it as well balances the books.
    let minted = w.state.supply.minted.get(Denom::Usd);
    *w.state.supply.minted.get_mut(Denom::Usd) =
        minted.checked_add(Amount::from_micros(1)).expect("fits");
    check_changes(&before, &w.state).expect("minted and held agree");
}

#[test]
fn money_moved_between_written_entities_passes_and_a_lost_account_is_caught() {
    let mut w = world();
    w.state.take_changes();
    let before = w.state.clone();
    let (a, b) = (w.tenant(0), w.tenant(1));
    let amount = usd(3);
    let from = w.state.accounts.get_mut(&a).expect("a");
    from.balances.usd = from.balances.usd.checked_sub(amount).expect("funded");
    let to = w.state.accounts.get_mut(&b).expect("b");
    to.balances.usd = to.balances.usd.checked_add(amount).expect("fits");
    check_changes(&before, &w.state).expect("a transfer conserves money");

    // Removing an account with money in it destroys that money.
    w.state.accounts.remove(&b);
    let v = check_changes(&before, &w.state).expect_err("an account vanished");
    assert!(v.0.contains("usd"), "{v}");
}

#[test]
fn an_order_written_with_its_escrow_moved_to_nobody_is_caught() {
    let mut w = world();
    let tenant = w.tenant(0);
    let tx = w.create_order(tenant, order_terms());
    w.submit(tx).expect("order created");
    w.state.take_changes();
    let before = w.state.clone();
    let id = *w.state.orders.keys().next().expect("an order");
    let order = w.state.orders.get_mut(&id).expect("order");
    order.escrow = Amount::ZERO;
    let v = check_changes(&before, &w.state).expect_err("escrow vanished");
    assert!(v.0.contains("usd"), "{v}");
}
