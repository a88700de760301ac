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

/// Most unbondings an account may have pending at once.
pub const MAX_UNBONDINGS: usize = 16;

/// Starts `amount` gpn (already taken from a provider's stake) unbonding for `who`: paid to its
/// balance at the end of block `height + unbonding_blocks`. Returns that height.
pub(crate) fn start_unbonding(state: &mut State, who: Address, amount: Amount) -> u64 {
    let release_height = state.height.saturating_add(state.params.unbonding_blocks);
    let acct = state.accounts.get_or_default(who);
    acct.unbonding.push(gpunet_protocol::Unbonding {
        amount,
        release_height,
    });
    state.due_unbonding.mark(release_height, who);
    release_height
}

/// Pays the unbondings due at this block's end to their accounts' balances.
pub(crate) fn release_unbonded(state: &mut State, events: &mut Vec<Event>) {
    let height = state.height;
    for who in state.due_unbonding.take_due(height) {
        let Some(acct) = state.accounts.get(&who) else {
            continue;
        };
        if !acct.unbonding.iter().any(|u| u.release_height <= height) {
            continue;
        }
        let acct = state.accounts.get_or_default(who);
        let (due, kept): (Vec<_>, Vec<_>) = acct
            .unbonding
            .drain(..)
            .partition(|u| u.release_height <= height);
        acct.unbonding = kept;
        let amount = due.iter().fold(Amount::ZERO, |sum, u| {
            sum.checked_add(u.amount)
                .expect("unbonding stake fits in the supply")
        });
        credit(state, who, Denom::Gpn, amount);
        events.push(Event::StakeReleased {
            account: who,
            amount,
        });
    }
}

/// Cuts `amount` gpn from `who`'s unbonding stake, newest first (a slash that the provider's
/// bonded stake did not cover). Returns what it could take.
pub(crate) fn cut_unbonding(state: &mut State, who: Address, amount: Amount) -> Amount {
    let Some(acct) = state.accounts.get(&who) else {
        return Amount::ZERO;
    };
    if acct.unbonding.is_empty() {
        return Amount::ZERO;
    }
    let acct = state.accounts.get_or_default(who);
    let mut left = amount;
    for u in acct.unbonding.iter_mut().rev() {
        let take = if u.amount < left { u.amount } else { left };
        u.amount = u.amount.checked_sub(take).expect("at most what it holds");
        left = left.checked_sub(take).expect("at most what is left");
        if left.is_zero() {
            break;
        }
    }
    acct.unbonding.retain(|u| !u.amount.is_zero());
    amount.checked_sub(left).expect("took at most the amount")
}
