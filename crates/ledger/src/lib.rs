//! The gpunet ledger: the deterministic, replicated state machine of accounts, providers,
//! orders, the reverse auction, leases and settlement.
//!
//! One entry point decides everything: [`apply_block`]. Each transaction is first *checked*
//! against the state with read-only access; only if every check passes is it *applied*, and the
//! apply step cannot fail on user input. A rejected transaction leaves no trace: no fee, no
//! nonce, no event. After the transactions, end-of-block rules run in a fixed order: settle
//! running leases up to their last proof of life, end those whose provider went silent, pause
//! those whose escrow ran out, time out unstarted ones, draw spot checks and decide the
//! comparisons of verified orders whose runs are in ([`checks`], ADR 0010), issue, sample and
//! time out hardware challenges ([`challenges`], ADR 0009), match orders whose
//! bid window closed (by price weighed by reputation, [`trust`]), expire orders nobody served, and move the orders and leases that ended for good out of the state into the
//! block's archive ([`Archive`]), which the node keeps as history.
//!
//! Architecture Invariant: no I/O, no clock, no randomness, no floats, no threads, no async, no
//! hash-map iteration. Time and randomness arrive in [`BlockCtx`]. Signatures are verified by
//! the caller (the node's mempool and block validation) before transactions reach this crate.

#![forbid(unsafe_code)]
#![deny(clippy::float_arithmetic)]

mod accounts;
pub mod challenges;
mod checks;
pub mod explain;
pub mod invariants;
mod leases;
mod market;
mod params;
mod providers;
mod state;
mod table;
pub mod trust;
pub mod uptime;

pub use gpunet_protocol::Account;
pub use params::Params;
pub use state::{
    Archive, Bid, Challenge, Changes, Due, DueLeases, DueOrders, EntityError, Genesis,
    GenesisAccount, GenesisError, Hardware, Lease, LeaseStatus, Order, OrderStatus, Provider,
    Reputation, Run, State, StateLoader, Supply, Uptime, VerifyStage, Verifying,
};
pub use table::Table;

use gpunet_protocol::{
    BlockCtx, BlockOutcome, Denom, Event, Msg, Receipt, Rejection, SignedTx, TxBody,
};

/// Checks a transaction against `state` without changing it: the envelope (chain id, nonce,
/// fee) and then the message's own rules. The mempool calls this to refuse early; the ledger
/// calls it again at apply time because state may have moved.
pub fn check_tx(state: &State, body: &TxBody) -> Result<(), Rejection> {
    if body.chain_id != state.chain_id {
        return Err(Rejection::WrongChainId);
    }
    let expected = state.nonce(&body.signer);
    if body.nonce < expected {
        return Err(Rejection::NonceReplayed);
    }
    if body.nonce > expected {
        return Err(Rejection::NonceGap);
    }
    check_fee(state, body)?;
    check_msg(state, body)
}

/// The fee checks alone (minimum and payability), shared with the mempool.
pub fn check_fee(state: &State, body: &TxBody) -> Result<(), Rejection> {
    if body.fee < state.params.min_tx_fee {
        return Err(Rejection::FeeTooLow);
    }
    if state.balance(&body.signer, Denom::Gpn) < body.fee {
        return Err(Rejection::FeeUnpayable);
    }
    Ok(())
}

fn check_msg(state: &State, body: &TxBody) -> Result<(), Rejection> {
    let signer = &body.signer;
    let fee = body.fee;
    match &body.msg {
        Msg::Transfer { denom, amount, .. } => {
            accounts::check_transfer(state, signer, fee, *denom, *amount)
        }
        Msg::RegisterProvider { stake, profile } => {
            providers::check_register(state, signer, fee, *stake, profile)
        }
        Msg::UpdateProvider { profile } => providers::check_update(state, signer, profile),
        Msg::DeregisterProvider => providers::check_deregister(state, signer),
        Msg::CreateOrder { terms } => market::check_create_order(state, signer, fee, terms),
        Msg::CancelOrder { order } => market::check_cancel_order(state, signer, *order),
        Msg::PlaceBid {
            order,
            price_per_hour,
        } => market::check_place_bid(state, signer, *order, *price_per_hour),
        Msg::StartLease { lease } => leases::check_start(state, signer, *lease),
        Msg::CompleteLease { lease, result } => {
            leases::check_complete(state, signer, *lease, result)
        }
        Msg::Heartbeat { leases } => leases::check_heartbeat(state, signer, leases),
        Msg::TopUpOrder { order, amount } => {
            leases::check_top_up(state, signer, fee, *order, *amount)
        }
        Msg::ReleaseLease { lease } => leases::check_release(state, signer, *lease),
        Msg::AnnounceExit => providers::check_announce_exit(state, signer),
        Msg::BondStake { amount } => providers::check_bond(state, signer, fee, *amount),
        Msg::UnbondStake { amount } => providers::check_unbond(state, signer, *amount),
        Msg::RevealDigest {
            order,
            lease,
            digest,
        } => checks::check_reveal(state, signer, *order, *lease, digest),
        Msg::Dispute { order } => checks::check_dispute(state, signer, *order),
        Msg::CommitChallenge { challenge, .. } => {
            challenges::check_commit(state, signer, *challenge)
        }
        Msg::OpenChallenge {
            challenge,
            openings,
        } => challenges::check_open(state, signer, *challenge, openings),
        Msg::PostVerdict {
            order,
            agreeing,
            missing,
        } => checks::check_verdict(state, signer, *order, agreeing, missing),
        Msg::PublishEndpoints { lease, endpoints } => {
            leases::check_endpoints(state, signer, *lease, endpoints)
        }
    }
}

/// Applies a transaction that passed [`check_tx`] against this very state.
fn apply_checked(state: &mut State, body: TxBody, events: &mut Vec<Event>) {
    let signer = body.signer;
    accounts::charge_fee(state, signer, body.fee, events);
    match body.msg {
        Msg::Transfer { to, denom, amount } => {
            accounts::transfer(state, signer, to, denom, amount, events)
        }
        Msg::RegisterProvider { stake, profile } => {
            providers::register(state, signer, stake, profile, events)
        }
        Msg::UpdateProvider { profile } => providers::update(state, signer, profile, events),
        Msg::DeregisterProvider => providers::deregister(state, signer, events),
        Msg::CreateOrder { terms } => market::create_order(state, signer, terms, events),
        Msg::CancelOrder { order } => market::cancel_order(state, order, events),
        Msg::PlaceBid {
            order,
            price_per_hour,
        } => market::place_bid(state, signer, order, price_per_hour, events),
        Msg::StartLease { lease } => leases::start(state, lease, events),
        Msg::CompleteLease { lease, result } => leases::complete(state, lease, result, events),
        Msg::Heartbeat { leases } => leases::heartbeat(state, signer, &leases),
        Msg::TopUpOrder { order, amount } => leases::top_up(state, signer, order, amount, events),
        Msg::ReleaseLease { lease } => leases::release(state, lease, events),
        Msg::AnnounceExit => providers::announce_exit(state, signer, events),
        Msg::BondStake { amount } => providers::bond(state, signer, amount, events),
        Msg::UnbondStake { amount } => providers::unbond(state, signer, amount, events),
        Msg::RevealDigest { order, lease, .. } => checks::reveal(state, order, lease),
        Msg::Dispute { order } => checks::dispute(state, order, events),
        Msg::CommitChallenge { root, .. } => challenges::commit(state, signer, root),
        Msg::OpenChallenge { openings, .. } => challenges::open(state, signer, openings, events),
        Msg::PostVerdict {
            order,
            agreeing,
            missing,
        } => checks::post_verdict(state, signer, order, agreeing, missing, events),
        Msg::PublishEndpoints { lease, endpoints } => {
            leases::publish_endpoints(state, lease, endpoints)
        }
    }
}

/// Checks and, if it passes, applies one transaction. `Err` means nothing changed.
pub fn apply_tx(state: &mut State, tx: &SignedTx) -> Result<Vec<Event>, Rejection> {
    check_tx(state, &tx.body)?;
    let mut events = Vec::new();
    apply_checked(state, tx.body.clone(), &mut events);
    Ok(events)
}

/// Applies a block: its transactions in order, then the end-of-block rules.
///
/// The caller must have verified every signature. `ctx.height` must be `state.height + 1` and
/// `ctx.time_ms` must not go backwards; consensus guarantees both, and a violation is a bug
/// (assert), not bad input.
pub fn apply_block(state: &mut State, ctx: &BlockCtx, txs: &[SignedTx]) -> BlockOutcome {
    assert_eq!(ctx.height, state.height + 1, "blocks apply in height order");
    assert!(ctx.time_ms >= state.time_ms, "block time never goes back");
    state.height = ctx.height;
    state.time_ms = ctx.time_ms;
    let mut receipts = Vec::with_capacity(txs.len());
    for tx in txs {
        let (rejection, events) = match apply_tx(state, tx) {
            Ok(events) => (None, events),
            Err(r) => (Some(r), Vec::new()),
        };
        receipts.push(Receipt {
            tx_hash: tx.hash(),
            rejection,
            events,
        });
    }
    let mut end_block_events = Vec::new();
    leases::settle_all(state, &mut end_block_events);
    checks::advance_all(state, &ctx.seed, &mut end_block_events);
    challenges::advance_all(state, &ctx.seed, &mut end_block_events);
    accounts::release_unbonded(state, &mut end_block_events);
    market::match_and_expire(state, &mut end_block_events);
    state.archive_ended();
    if cfg!(debug_assertions)
        && let Err(v) = invariants::check_all(state)
    {
        panic!("ledger invariant broken at height {}: {v}", ctx.height);
    }
    BlockOutcome {
        receipts,
        end_block_events,
    }
}
