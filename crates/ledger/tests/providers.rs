//! Providers register with a stake that stays locked until they deregister, with a profile the
//! ledger validates, and cannot leave while they hold a live lease.

use gpunet_ledger::apply_tx;
use gpunet_protocol::{
    Amount, Denom, Event, Msg, ProviderProfile, Rejection, Runtime, WorkloadOutcome,
};
use gpunet_testkit::{OutcomeExt, World, gpu, h100, order_terms, provider_profile, usd};

fn profile() -> ProviderProfile {
    provider_profile(8_000, 32_768, vec![h100()])
}

/// A world with one registered provider (0) and one funded but unregistered (1).
fn world() -> World {
    World::builder()
        .provider(profile())
        .unregistered_provider()
        .build()
}

/// Applies `msg` from `signer` on its own; a rejection must leave the root unchanged.
fn check(
    w: &mut World,
    signer: gpunet_protocol::Address,
    msg: Msg,
    expected: Result<(), Rejection>,
) {
    let tx = w.probe(signer, msg);
    let root = w.state.digest();
    let got = apply_tx(&mut w.state, &tx).map(|_| ());
    assert_eq!(got, expected, "{:?}", tx.body.msg);
    if expected.is_err() {
        assert_eq!(w.state.digest(), root, "a rejected tx changed the state");
    }
}

#[test]
fn registration_locks_the_stake_and_deregistration_unbonds_it() {
    let mut w = world();
    let p = w.provider_addr(1);
    let fee = w.state.params.min_tx_fee;
    let stake = usd(250);
    let gpn0 = w.gpn(&p);

    let tx = w.register(p, stake, profile());
    let events = w.submit(tx).expect("registers");
    assert!(events.contains(&Event::ProviderRegistered { provider: p, stake }));
    let registered = w.provider(&p).expect("registered");
    assert_eq!(registered.stake, stake);
    assert_eq!(registered.profile, profile());
    let locked = gpn0.checked_sub(stake).and_then(|x| x.checked_sub(fee));
    assert_eq!(Some(w.gpn(&p)), locked);

    let tx = w.deregister(p);
    let events = w.submit(tx).expect("deregisters");
    let release_height = w.state.height + w.state.params.unbonding_blocks;
    assert!(events.contains(&Event::ProviderDeregistered {
        provider: p,
        stake,
        release_height,
    }));
    assert!(w.provider(&p).is_none());
    // Unbonding: not in the balance yet, but held (conservation counts it).
    assert_eq!(Some(w.gpn(&p)), locked.and_then(|x| x.checked_sub(fee)));
    let account = w.state.accounts.get(&p).expect("account");
    assert_eq!(account.unbonding_total(), stake);
    w.advance_to(release_height - 1);
    assert_eq!(
        w.state.accounts.get(&p).expect("account").unbonding_total(),
        stake
    );
    let outcome = w.block(Vec::new());
    assert!(outcome.events().contains(&&Event::StakeReleased {
        account: p,
        amount: stake
    }));
    let back = gpn0.checked_sub(fee).and_then(|x| x.checked_sub(fee));
    assert_eq!(
        Some(w.gpn(&p)),
        back,
        "all the stake came back; only the two fees are gone"
    );
    assert!(
        w.state
            .accounts
            .get(&p)
            .expect("account")
            .unbonding
            .is_empty()
    );
}

#[test]
fn unbonding_keeps_what_the_listing_needs_and_returns_the_rest_later() {
    let mut w = World::builder()
        .provider(profile())
        .with_params(|p| p.unbonding_blocks = 10)
        .build();
    let p = w.provider_addr(0);
    let needed = gpunet_ledger::trust::required_stake(&w.state.params, 1);
    let bond = w.tx(p, Msg::BondStake { amount: usd(30) });
    w.submit(bond).expect("bonds");
    let stake = w.provider(&p).expect("registered").stake;
    let spare = stake.checked_sub(needed).expect("more than needed");
    // Too much, nothing, or while a jail is in force: refused.
    let over = spare.checked_add(Amount::from_micros(1)).expect("fits");
    check(
        &mut w,
        p,
        Msg::UnbondStake { amount: over },
        Err(Rejection::UnbondInvalid),
    );
    check(
        &mut w,
        p,
        Msg::UnbondStake {
            amount: Amount::ZERO,
        },
        Err(Rejection::UnbondInvalid),
    );
    let stranger = w.tenant(0);
    check(
        &mut w,
        stranger,
        Msg::UnbondStake { amount: spare },
        Err(Rejection::ProviderNotRegistered),
    );
    let gpn = w.gpn(&p);
    let tx = w.tx(p, Msg::UnbondStake { amount: spare });
    let events = w.submit(tx).expect("unbonds");
    let release_height = w.state.height + 10;
    assert!(events.contains(&Event::StakeUnbonding {
        provider: p,
        amount: spare,
        release_height,
    }));
    assert_eq!(w.provider(&p).expect("registered").stake, needed);
    w.advance_to(release_height);
    let fee = w.state.params.min_tx_fee;
    assert_eq!(
        w.gpn(&p),
        gpn.checked_sub(fee)
            .and_then(|g| g.checked_add(spare))
            .expect("fits"),
        "the spare stake is back, less the fee"
    );
}

#[test]
fn bad_registrations_are_rejected_with_their_code() {
    let mut w = world();
    let (registered, fresh, tenant) = (w.provider_addr(0), w.provider_addr(1), w.tenant(0));
    let min = w.state.params.min_provider_stake;
    let below = min
        .checked_sub(Amount::from_micros(1))
        .expect("min stake > 0");
    let gpn = w.gpn(&fresh);
    let reg = |stake, profile| Msg::RegisterProvider { stake, profile };
    let with = |f: fn(&mut ProviderProfile)| {
        let mut p = profile();
        f(&mut p);
        p
    };

    check(
        &mut w,
        fresh,
        reg(below, profile()),
        Err(Rejection::StakeBelowMinimum),
    );
    check(
        &mut w,
        fresh,
        reg(Amount::ZERO, profile()),
        Err(Rejection::StakeBelowMinimum),
    );
    check(
        &mut w,
        fresh,
        reg(gpn, profile()),
        Err(Rejection::InsufficientFunds),
    );
    check(
        &mut w,
        fresh,
        reg(Amount::MAX, profile()),
        Err(Rejection::AmountOverflow),
    );
    check(
        &mut w,
        registered,
        reg(min, profile()),
        Err(Rejection::ProviderAlreadyRegistered),
    );

    let bad_profiles: Vec<(&str, ProviderProfile)> = vec![
        ("empty endpoint", with(|p| p.endpoint.clear())),
        (
            "endpoint without a scheme",
            with(|p| p.endpoint = "provider.test:7000".into()),
        ),
        (
            "endpoint too long",
            with(|p| p.endpoint = format!("http://{}", "a".repeat(300))),
        ),
        ("empty region", with(|p| p.region.clear())),
        (
            "region with capitals and spaces",
            with(|p| p.region = "EU West".into()),
        ),
        ("no runtimes", with(|p| p.runtimes.clear())),
        (
            "runtimes unsorted",
            with(|p| p.runtimes = vec![Runtime::Docker, Runtime::Process]),
        ),
        (
            "runtimes duplicated",
            with(|p| p.runtimes = vec![Runtime::Process, Runtime::Process]),
        ),
        (
            "a GPU model with a space",
            with(|p| p.capacity.gpus = vec![gpu("h 100", "h100", 1)]),
        ),
        (
            "an empty GPU family",
            with(|p| p.capacity.gpus = vec![gpu("h100", "", 1)]),
        ),
        ("65 GPUs", with(|p| p.capacity.gpus = vec![h100(); 65])),
        (
            "an all-zero encryption key",
            with(|p| p.encryption_key = Default::default()),
        ),
    ];
    for (what, bad) in bad_profiles {
        let root = w.state.digest();
        let tx = w.probe(fresh, reg(min, bad.clone()));
        assert_eq!(
            apply_tx(&mut w.state, &tx).map(|_| ()),
            Err(Rejection::ProfileInvalid),
            "{what}"
        );
        let tx = w.probe(registered, Msg::UpdateProvider { profile: bad });
        assert_eq!(
            apply_tx(&mut w.state, &tx).map(|_| ()),
            Err(Rejection::ProfileInvalid),
            "update: {what}"
        );
        assert_eq!(w.state.digest(), root, "{what}");
    }

    check(
        &mut w,
        tenant,
        Msg::UpdateProvider { profile: profile() },
        Err(Rejection::ProviderNotRegistered),
    );
    check(
        &mut w,
        tenant,
        Msg::DeregisterProvider,
        Err(Rejection::ProviderNotRegistered),
    );
    // 64 GPUs need 64 × stake_per_gpu, not the minimum (ADR 0010).
    let per_gpu = w.state.params.stake_per_gpu;
    let full = Amount::from_micros(per_gpu.micros() * 8);
    check(
        &mut w,
        fresh,
        reg(min, with(|p| p.capacity.gpus = vec![h100(); 8])),
        Err(Rejection::StakeBelowMinimum),
    );
    check(
        &mut w,
        fresh,
        reg(
            Amount::from_micros(full.micros() - 1),
            with(|p| p.capacity.gpus = vec![h100(); 8]),
        ),
        Err(Rejection::StakeBelowMinimum),
    );
    check(
        &mut w,
        fresh,
        reg(full, with(|p| p.capacity.gpus = vec![h100(); 8])),
        Ok(()),
    );
}

#[test]
fn a_provider_cannot_deregister_while_a_lease_is_pending_or_running() {
    let mut w = World::builder().provider(profile()).build();
    let (t, p) = (w.tenant(0), w.provider_addr(0));
    let tx = w.create_order(t, order_terms());
    let order = w.block(vec![tx]).orders_created()[0];
    let tx = w.bid(p, order, usd(1));
    w.block(vec![tx]).assert_all_applied();
    let window = w.state.params.bid_window_blocks;
    let lease = w
        .advance_to(w.order(order).created_height + window)
        .iter()
        .flat_map(|o| o.leases_created())
        .next()
        .expect("the bid wins")
        .0;

    let tx = w.deregister(p);
    assert_eq!(
        w.submit(tx),
        Err(Rejection::ProviderHasLiveLeases),
        "pending lease"
    );
    let tx = w.start(p, lease);
    w.submit(tx).expect("starts");
    let tx = w.deregister(p);
    assert_eq!(
        w.submit(tx),
        Err(Rejection::ProviderHasLiveLeases),
        "running lease"
    );
    let stake = w.provider(&p).expect("registered").stake;

    let tx = w.complete(p, lease, WorkloadOutcome::Succeeded);
    w.submit(tx).expect("completes");
    assert_eq!(w.provider(&p).expect("registered").leases_completed, 1);
    let gpn = w.gpn(&p);
    let tx = w.deregister(p);
    w.submit(tx).expect("no live lease: deregisters");
    // Its stake unbonds, then returns.
    assert_eq!(
        w.state.accounts.get(&p).expect("account").unbonding_total(),
        stake
    );
    w.advance_to(w.state.height + w.state.params.unbonding_blocks);
    let fee = w.state.params.min_tx_fee;
    assert_eq!(
        Some(w.gpn(&p)),
        gpn.checked_add(stake).and_then(|x| x.checked_sub(fee))
    );
}

#[test]
fn an_update_changes_the_profile_and_keeps_the_stake() {
    let mut w = world();
    let p = w.provider_addr(0);
    let stake = w.provider(&p).expect("registered").stake;
    let mut new = profile();
    new.region = "us-east".into();
    let tx = w.update_provider(p, new.clone());
    let events = w.submit(tx).expect("updates");
    assert!(events.contains(&Event::ProviderUpdated { provider: p }));
    let now = w.provider(&p).expect("registered");
    assert_eq!(now.profile, new);
    assert_eq!(now.stake, stake);
    assert_eq!(w.state.supply.burned.get(Denom::Usd), Amount::ZERO);
}

#[test]
fn genesis_refuses_params_that_cannot_work() {
    use gpunet_ledger::{Genesis, GenesisError, Params, State};
    for (edit, why) in [
        (
            (|p: &mut Params| p.protocol_fee_bps = 10_001) as fn(&mut Params),
            "protocol_fee_bps",
        ),
        (
            |p: &mut Params| p.bid_window_blocks = 0,
            "bid_window_blocks",
        ),
        (
            |p: &mut Params| p.start_timeout_blocks = 0,
            "start_timeout_blocks",
        ),
        (
            |p: &mut Params| p.max_bids_per_order = 0,
            "max_bids_per_order",
        ),
    ] {
        let mut params = Params::default();
        edit(&mut params);
        let g = Genesis {
            chain_id: "t".into(),
            genesis_time_ms: 0,
            params,
            accounts: vec![],
        };
        match State::from_genesis(&g) {
            Err(GenesisError::BadParams(msg)) => assert!(msg.contains(why), "{msg}"),
            other => panic!("{why}: expected BadParams, got {other:?}"),
        }
    }
}
