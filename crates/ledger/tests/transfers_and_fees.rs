//! Transfers move exactly the amount, every accepted transaction burns its fee and advances its
//! signer's nonce, and every bad envelope or amount is rejected with its own code and no trace.

use gpunet_ledger::apply_tx;
use gpunet_protocol::{Amount, Denom, Event, Msg, Rejection, SignedTx};
use gpunet_testkit::{World, usd};

/// Applies `tx` on its own and checks the result; a rejection must leave the root unchanged.
fn check(world: &mut World, tx: &SignedTx, expected: Result<(), Rejection>) {
    let root = world.state.digest();
    let got = apply_tx(&mut world.state, tx).map(|_| ());
    assert_eq!(got, expected, "{:?}", tx.body);
    if expected.is_err() {
        assert_eq!(
            world.state.digest(),
            root,
            "a rejected tx changed the state"
        );
    }
}

fn world() -> World {
    World::builder().tenants(2).build()
}

#[test]
fn a_transfer_moves_exactly_the_amount_burns_the_fee_and_advances_the_nonce() {
    let mut w = world();
    let (a, b) = (w.tenant(0), w.tenant(1));
    let fee = w.state.params.min_tx_fee;
    for denom in [Denom::Usd, Denom::Gpn] {
        let (a0, b0) = (w.balance(&a, denom), w.balance(&b, denom));
        let (a_gpn0, burned0, nonce0) = (w.gpn(&a), w.burned(Denom::Gpn), w.state.nonce(&a));
        let amount = Amount::from_micros(1_234_567);
        let tx = w.transfer(a, b, denom, amount);
        let events = w.submit(tx).expect("transfer applies");

        assert_eq!(w.balance(&b, denom), b0.checked_add(amount).expect("fits"));
        let a_expected = match denom {
            Denom::Usd => a0.checked_sub(amount),
            Denom::Gpn => a0.checked_sub(amount).and_then(|x| x.checked_sub(fee)),
        };
        assert_eq!(Some(w.balance(&a, denom)), a_expected);
        if denom == Denom::Usd {
            assert_eq!(
                Some(w.gpn(&a)),
                a_gpn0.checked_sub(fee),
                "the fee is paid in gpn"
            );
        }
        assert_eq!(
            Some(w.burned(Denom::Gpn)),
            burned0.checked_add(fee),
            "the fee is burned"
        );
        assert_eq!(w.state.nonce(&a), nonce0 + 1);
        assert_eq!(w.state.nonce(&b), 0, "receiving does not use a nonce");
        assert_eq!(
            events,
            vec![
                Event::FeeBurned {
                    payer: a,
                    amount: fee
                },
                Event::Transferred {
                    from: a,
                    to: b,
                    denom,
                    amount
                },
            ]
        );
    }
}

#[test]
fn a_transfer_to_a_new_address_creates_its_account() {
    let mut w = world();
    let (a, nobody) = (w.tenant(0), w.stranger(0));
    let tx = w.transfer(a, nobody, Denom::Usd, usd(3));
    w.submit(tx).expect("applies");
    assert_eq!(w.usd(&nobody), usd(3));
}

#[test]
fn a_signer_may_send_its_whole_gpn_balance_less_the_fee_but_not_a_micro_more() {
    let mut w = world();
    let (a, b) = (w.tenant(0), w.tenant(1));
    let fee = w.state.params.min_tx_fee;
    let all = w.gpn(&a).checked_sub(fee).expect("funded");
    let too_much = all.checked_add(Amount::from_micros(1)).expect("fits");
    let tx = w.probe(
        a,
        Msg::Transfer {
            to: b,
            denom: Denom::Gpn,
            amount: too_much,
        },
    );
    check(&mut w, &tx, Err(Rejection::InsufficientFunds));
    let tx = w.transfer(a, b, Denom::Gpn, all);
    check(&mut w, &tx, Ok(()));
    assert_eq!(w.gpn(&a), Amount::ZERO);
}

#[test]
fn bad_transfers_are_rejected_with_their_code_and_change_nothing() {
    let mut w = world();
    let (a, b, stranger) = (w.tenant(0), w.tenant(1), w.stranger(0));
    let min_fee = w.state.params.min_tx_fee;
    let gpn_a = w.gpn(&a);
    // Use nonce 0 once so that a replay is possible.
    let first = w.transfer(a, b, Denom::Usd, usd(1));
    check(&mut w, &first, Ok(()));

    let usd_of = |amount| Msg::Transfer {
        to: b,
        denom: Denom::Usd,
        amount,
    };
    let gpn_of = |amount| Msg::Transfer {
        to: b,
        denom: Denom::Gpn,
        amount,
    };
    let cases: Vec<(&str, SignedTx, Rejection)> = vec![
        (
            "zero amount",
            w.probe(a, usd_of(Amount::ZERO)),
            Rejection::ZeroAmount,
        ),
        (
            "more usd than the balance",
            w.probe(a, usd_of(usd(10_001))),
            Rejection::InsufficientFunds,
        ),
        (
            "fee below the minimum",
            w.tx_with(a, usd_of(usd(1)), |b| {
                b.fee = min_fee
                    .checked_sub(Amount::from_micros(1))
                    .expect("min fee > 0")
            }),
            Rejection::FeeTooLow,
        ),
        (
            "fee above the gpn balance",
            w.tx_with(a, usd_of(usd(1)), |b| {
                b.fee = gpn_a.checked_add(Amount::from_micros(1)).expect("fits")
            }),
            Rejection::FeeUnpayable,
        ),
        (
            "unfunded signer",
            w.probe(stranger, usd_of(usd(1))),
            Rejection::FeeUnpayable,
        ),
        (
            "wrong chain id",
            w.tx_with(a, usd_of(usd(1)), |b| b.chain_id = "gpunet-main".into()),
            Rejection::WrongChainId,
        ),
        ("replayed nonce", first.clone(), Rejection::NonceReplayed),
        (
            "replayed nonce with a new body",
            w.tx_with(a, usd_of(usd(2)), |b| b.nonce = 0),
            Rejection::NonceReplayed,
        ),
        (
            "skipped nonce",
            w.tx_with(a, usd_of(usd(1)), |b| b.nonce += 1),
            Rejection::NonceGap,
        ),
        (
            "amount overflow",
            w.probe(a, gpn_of(Amount::MAX)),
            Rejection::AmountOverflow,
        ),
        (
            "fee plus amount overflow",
            w.probe(
                a,
                gpn_of(
                    Amount::MAX
                        .checked_sub(min_fee)
                        .and_then(|x| x.checked_add(Amount::from_micros(1)))
                        .expect("fits"),
                ),
            ),
            Rejection::AmountOverflow,
        ),
    ];
    for (what, tx, why) in cases {
        let root = w.state.digest();
        let got = apply_tx(&mut w.state, &tx).map(|_| ());
        assert_eq!(got, Err(why), "{what}");
        assert_eq!(
            w.state.digest(),
            root,
            "{what}: a rejected tx changed the state"
        );
    }
}

#[test]
fn a_rejected_tx_in_a_block_costs_no_fee_and_no_nonce() {
    let mut w = world();
    let (a, b) = (w.tenant(0), w.tenant(1));
    let (gpn0, burned0) = (w.gpn(&a), w.burned(Denom::Gpn));
    let bad = w.probe(
        a,
        Msg::Transfer {
            to: b,
            denom: Denom::Usd,
            amount: Amount::ZERO,
        },
    );
    let outcome = w.block(vec![bad]);
    assert_eq!(outcome.receipts[0].rejection, Some(Rejection::ZeroAmount));
    assert!(outcome.receipts[0].events.is_empty());
    assert_eq!(w.gpn(&a), gpn0);
    assert_eq!(w.burned(Denom::Gpn), burned0);
    assert_eq!(w.state.nonce(&a), 0);
}

#[test]
fn several_txs_from_one_signer_in_one_block_apply_in_nonce_order() {
    let mut w = world();
    let (a, b) = (w.tenant(0), w.tenant(1));
    let b0 = w.usd(&b);
    let txs = (0..5)
        .map(|_| w.transfer(a, b, Denom::Usd, usd(1)))
        .collect();
    let outcome = w.block(txs);
    assert!(outcome.receipts.iter().all(|r| r.rejection.is_none()));
    assert_eq!(w.usd(&b), b0.checked_add(usd(5)).expect("fits"));
    assert_eq!(w.state.nonce(&a), 5);
}
