//! Balances, transfers and fees.
//!
//! `credit` cannot overflow: conservation holds after every block and genesis checked that the
//! minted supply of each denomination fits in a `u64`, so no single balance can exceed it.

use gpunet_protocol::{Address, Amount, Denom, Event, Rejection};

use crate::State;

/// Adds to a balance. See the module doc for why it cannot overflow.
pub(crate) fn credit(state: &mut State, who: Address, denom: Denom, amount: Amount) {
    let acct = state.accounts.get_or_default(who);
    let bal = acct.balances.get_mut(denom);
    *bal = bal
        .checked_add(amount)
        .expect("a balance never exceeds the minted supply, which fits in u64");
}

/// Takes from a balance the caller has checked.
pub(crate) fn debit(state: &mut State, who: Address, denom: Denom, amount: Amount) {
    let acct = state.accounts.get_or_default(who);
    let bal = acct.balances.get_mut(denom);
    *bal = bal
        .checked_sub(amount)
        .expect("debits are checked against the balance before they are applied");
}

/// Checks that `who` can pay `fee` gpn plus `amount` of `denom`.
pub(crate) fn check_can_pay(
    state: &State,
    who: &Address,
    fee: Amount,
    denom: Denom,
    amount: Amount,
) -> Result<(), Rejection> {
    let (gpn_needed, usd_needed) = match denom {
        Denom::Gpn => (
            fee.checked_add(amount).ok_or(Rejection::AmountOverflow)?,
            Amount::ZERO,
        ),
        Denom::Usd => (fee, amount),
    };
    if state.balance(who, Denom::Gpn) < gpn_needed || state.balance(who, Denom::Usd) < usd_needed {
        return Err(Rejection::InsufficientFunds);
    }
    Ok(())
}

pub(crate) fn check_transfer(
    state: &State,
    signer: &Address,
    fee: Amount,
    denom: Denom,
    amount: Amount,
) -> Result<(), Rejection> {
    if amount.is_zero() {
        return Err(Rejection::ZeroAmount);
    }
    check_can_pay(state, signer, fee, denom, amount)
}

pub(crate) fn transfer(
    state: &mut State,
    from: Address,
    to: Address,
    denom: Denom,
    amount: Amount,
    events: &mut Vec<Event>,
) {
    debit(state, from, denom, amount);
    credit(state, to, denom, amount);
    events.push(Event::Transferred {
        from,
        to,
        denom,
        amount,
    });
}

/// Burns the fee and advances the nonce: the first effect of every accepted transaction.
pub(crate) fn charge_fee(state: &mut State, payer: Address, fee: Amount, events: &mut Vec<Event>) {
    debit(state, payer, Denom::Gpn, fee);
    let burned = state.supply.burned.get_mut(Denom::Gpn);
    *burned = burned
        .checked_add(fee)
        .expect("burned never exceeds minted, which fits in u64");
    let acct = state.accounts.get_or_default(payer);
    acct.nonce = acct
        .nonce
        .checked_add(1)
        .expect("a nonce cannot reach u64::MAX: each one costs a fee");
    if !fee.is_zero() {
        events.push(Event::FeeBurned { payer, amount: fee });
    }
}
