//! Hardware challenges on chain (ADR 0009): a listing a throughput band covers is challenged
//! when it registers and bids only once it passes; a claim never answered fails at its
//! deadline, and one answered wrong fails when opened — each slashed (burned), jailed and
//! challenged again after the jail; late or stray answers are refused; a passed provider is
//! challenged again within the interval, but not while it runs a lease. The World checks
//! conservation after every block.

use gpunet_ledger::challenges::leaves_due;
use gpunet_ledger::{Challenge, OrderStatus};
use gpunet_protocol::{
    Address, Amount, ChallengeOpening, Denom, Event, Hash, MAX_OPENINGS_PER_TX, Msg, OrderId,
    Rejection, ThroughputBand,
};
use gpunet_testkit::{OutcomeExt, World, h100, order_terms, provider_profile};
use gpunet_verify::{Matrices, Tree, multiply};

const PRICE: Amount = Amount::from_micros(1_000_000);

/// A world with one tenant whose network names one band: `class` at `ops_per_ms`.
fn banded(class: &str, ops_per_ms: u64) -> gpunet_testkit::WorldBuilder {
    World::builder().tenants(1).with_params(|p| {
        p.challenge_bands = vec![ThroughputBand {
            class: class.to_owned(),
            ops_per_ms,
        }];
    })
}

/// Two-core CPU providers, with a `cpu` band so small the challenge is 32 × 32.
fn cpu_world(providers: usize, edit: impl FnOnce(&mut gpunet_ledger::Params)) -> World {
    let mut b = banded("cpu", 4).with_params(edit);
    for _ in 0..providers {
        b = b.provider(provider_profile(2_000, 4_096, Vec::new()));
    }
    b.build()
}

fn challenge(w: &World, p: &Address) -> Challenge {
    w.provider(p)
        .expect("registered")
        .hardware
        .challenge
        .clone()
        .expect("a challenge in flight")
}

/// The right product of `c`'s matrices, committed.
fn right_tree(c: &Challenge) -> Tree {
    let m = Matrices::new(c.seed.0, c.n as usize).expect("size");
    Tree::build(multiply(&m.a(), &m.b(), m.n))
}

fn opening(tree: &Tree, leaf: u64) -> ChallengeOpening {
    let o = tree.open(leaf).expect("a leaf of the tree");
    ChallengeOpening {
        leaf: o.leaf,
        entries: o.entries,
        path: o.path.into_iter().map(|h| h.map(Hash)).collect(),
    }
}

fn commit(w: &mut World, p: Address, tree: &Tree) -> Result<Vec<Event>, Rejection> {
    let id = challenge(w, &p).id;
    let tx = w.tx(
        p,
        Msg::CommitChallenge {
            challenge: id,
            root: Hash(tree.root()),
        },
    );
    w.submit(tx)
}

/// Opens every leaf due, ten to a transaction, all in one block; the block's events.
fn open_all(w: &mut World, p: Address, tree: &Tree) -> Vec<Event> {
    let c = challenge(w, &p);
    let due = leaves_due(&w.state.params, &c);
    assert!(!due.is_empty(), "drawn");
    let txs: Vec<_> = due
        .chunks(MAX_OPENINGS_PER_TX)
        .map(|leaves| {
            w.tx(
                p,
                Msg::OpenChallenge {
                    challenge: c.id,
                    openings: leaves.iter().map(|l| opening(tree, *l)).collect(),
                },
            )
        })
        .collect();
    let outcome = w.block(txs);
    outcome.assert_all_applied();
    outcome.events().into_iter().cloned().collect()
}

/// Answers `p`'s challenge with `tree`: commit, the draw's block, the openings.
fn answer(w: &mut World, p: Address, tree: &Tree) -> Vec<Event> {
    commit(w, p, tree).expect("committed in time");
    let drawn = w.block(Vec::new());
    assert!(
        drawn
            .events()
            .iter()
            .any(|e| matches!(e, Event::ChallengeSampled { provider, .. } if *provider == p)),
        "sampled the block after the commitment"
    );
    open_all(w, p, tree)
}

fn bid(w: &mut World, p: Address, order: OrderId) -> Result<Vec<Event>, Rejection> {
    let tx = w.bid(p, order, PRICE);
    w.submit(tx)
}

fn open_order(w: &mut World) -> OrderId {
    let t = w.tenant(0);
    let tx = w.create_order(t, order_terms().build());
    let outcome = w.block(vec![tx]);
    outcome.assert_all_applied();
    outcome.orders_created()[0]
}

#[test]
fn a_listing_a_band_covers_is_challenged_at_registration_and_bids_once_it_passes() {
    let mut w = cpu_world(1, |_| {});
    let p = w.provider_addr(0);
    let c = challenge(&w, &p);
    assert_eq!((c.id, c.n), (1, 32), "2 cores × 4 ops/ms for 20 s: n = 32");
    // 2·32³ ops at 8 ops/ms is 8192 ms; ×1.5, plus the 10 s allowance, from block 1's time.
    assert_eq!(
        c.deadline_ms,
        w.genesis.genesis_time_ms + 500 + 12_288 + 10_000
    );
    let order = open_order(&mut w);
    assert_eq!(bid(&mut w, p, order), Err(Rejection::HardwareUnproven));
    let before = w.provider(&p).expect("registered").reputation.good_milli;

    let tree = right_tree(&c);
    let events = answer(&mut w, p, &tree);
    let height = w.state.height;
    let next = events
        .iter()
        .find_map(|e| match e {
            Event::ChallengePassed {
                provider,
                challenge,
                next_height,
            } if *provider == p && *challenge == 1 => Some(*next_height),
            _ => None,
        })
        .expect("passed");
    let interval = w.state.params.challenge_interval_blocks;
    assert!(next > height && next <= height + interval, "{next}");
    let hw = &w.provider(&p).expect("registered").hardware;
    assert!(hw.proven && hw.challenge.is_none());
    assert_eq!((hw.passed, hw.failed, hw.next_at_height), (1, 0, next));
    assert!(w.provider(&p).expect("registered").reputation.good_milli > before);
    // Proven: it bids, and wins.
    let order = open_order(&mut w);
    bid(&mut w, p, order).expect("a proven listing bids");
    w.blocks(3);
    assert!(matches!(w.order(order).status, OrderStatus::Leased { .. }));
}

/// What a provider claiming GPUs it does not have comes to: nothing answers its challenge in
/// time (or a CPU computes too slowly), so it fails at the deadline — slashed, all burned,
/// jailed, unproven — and is challenged again once out of jail.
#[test]
fn a_claim_never_answered_fails_at_its_deadline_and_is_slashed_jailed_and_rechallenged() {
    let mut w = banded("h100", 2)
        .with_params(|p| p.jail_blocks = 40)
        .provider(provider_profile(16_000, 65_536, vec![h100(), h100()]))
        .build();
    let p = w.provider_addr(0);
    let c = challenge(&w, &p);
    assert_eq!(c.n, 32, "two H100s at 2 ops/ms each, 20 s");
    let stake = w.provider(&p).expect("registered").stake;
    let burned = w.burned(Denom::Gpn);
    // No commitment: the block past the deadline fails it.
    let mut failed = None;
    while failed.is_none() {
        assert!(
            w.state.time_ms <= c.deadline_ms + 500,
            "failed at the deadline"
        );
        let outcome = w.block(Vec::new());
        failed = outcome.events().into_iter().find_map(|e| match e {
            Event::ChallengeFailed {
                reason,
                slashed,
                jailed_until_height,
                ..
            } => Some((reason.clone(), *slashed, *jailed_until_height)),
            _ => None,
        });
    }
    let (reason, slashed, jailed_until) = failed.expect("failed");
    assert!(w.state.time_ms > c.deadline_ms);
    assert!(reason.contains("deadline"), "{reason}");
    let expected = stake
        .mul_div_floor(u64::from(w.state.params.slash_bps), 10_000)
        .expect("fits");
    assert_eq!(slashed, expected);
    let after = w.provider(&p).expect("still registered");
    assert_eq!(after.stake, stake.checked_sub(expected).expect("fits"));
    assert_eq!(after.slashed, expected);
    assert_eq!(after.jailed_until_height, jailed_until);
    assert_eq!(jailed_until, w.state.height + 40);
    assert!(!after.hardware.proven && after.hardware.challenge.is_none());
    assert_eq!(after.hardware.failed, 1);
    assert!(after.reputation.bad_milli > 0);
    // All burned (beyond the block's fees): no tenant was harmed.
    assert!(w.burned(Denom::Gpn).micros() >= burned.micros() + expected.micros());
    // Jailed, then still unproven: no bids either way.
    let order = open_order(&mut w);
    assert_eq!(bid(&mut w, p, order), Err(Rejection::ProviderJailed));
    w.advance_to(jailed_until);
    let again = challenge(&w, &p);
    assert_eq!(again.id, 2, "challenged again when the jail ends");
    let order = open_order(&mut w);
    assert!(matches!(
        bid(&mut w, p, order),
        Err(Rejection::StakeBelowMinimum | Rejection::HardwareUnproven)
    ));
}

#[test]
fn a_wrong_product_fails_when_its_sampled_entries_are_opened() {
    let mut w = cpu_world(1, |_| {});
    let p = w.provider_addr(0);
    let c = challenge(&w, &p);
    // Half the work undone: every other entry left zero.
    let m = Matrices::new(c.seed.0, c.n as usize).expect("size");
    let mut product = multiply(&m.a(), &m.b(), m.n);
    for e in product.iter_mut().step_by(2) {
        *e = 0;
    }
    let tree = Tree::build(product);
    commit(&mut w, p, &tree).expect("committed in time");
    w.block(Vec::new());
    let c = challenge(&w, &p);
    let first = leaves_due(&w.state.params, &c);
    let tx = w.tx(
        p,
        Msg::OpenChallenge {
            challenge: c.id,
            openings: first.iter().take(10).map(|l| opening(&tree, *l)).collect(),
        },
    );
    let events = w.submit(tx).expect("openings are checked, not refused");
    let reason = events
        .iter()
        .find_map(|e| match e {
            Event::ChallengeFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("failed at the first wrong entry");
    assert!(reason.contains("entry"), "{reason}");
    let hw = &w.provider(&p).expect("registered").hardware;
    assert!(!hw.proven && hw.challenge.is_none() && hw.failed == 1);
}

#[test]
fn late_stray_and_early_answers_are_refused() {
    let mut w = cpu_world(2, |_| {});
    let (p, q) = (w.provider_addr(0), w.provider_addr(1));
    let c = challenge(&w, &p);
    let tree = right_tree(&c);
    let probe = |w: &World, signer: Address, msg: Msg| {
        let tx = w.probe(signer, msg);
        gpunet_ledger::apply_tx(&mut w.state.clone(), &tx).map(|_| ())
    };
    // Another provider's id, an id not issued, opening before any commitment.
    let root = Hash(tree.root());
    assert_eq!(
        probe(&w, p, Msg::CommitChallenge { challenge: 9, root }),
        Err(Rejection::ChallengeNotOpen)
    );
    assert_eq!(
        probe(&w, w.tenant(0), Msg::CommitChallenge { challenge: 1, root }),
        Err(Rejection::ProviderNotRegistered)
    );
    assert_eq!(
        probe(
            &w,
            p,
            Msg::OpenChallenge {
                challenge: 1,
                openings: vec![opening(&tree, 0)]
            }
        ),
        Err(Rejection::ChallengeNotOpen)
    );
    // A challenge in flight holds the stake: no deregistering away from it.
    assert_eq!(
        probe(&w, p, Msg::DeregisterProvider),
        Err(Rejection::ChallengeInFlight)
    );
    // p commits; committing twice is refused; before the draw nothing opens.
    commit(&mut w, p, &tree).expect("in time");
    assert_eq!(
        probe(&w, p, Msg::CommitChallenge { challenge: 1, root }),
        Err(Rejection::ChallengeNotOpen)
    );
    w.block(Vec::new());
    let c = challenge(&w, &p);
    let due = leaves_due(&w.state.params, &c);
    let stray = (0..)
        .find(|l| due.binary_search(l).is_err())
        .expect("a leaf");
    let open = |leaves: Vec<u64>| Msg::OpenChallenge {
        challenge: 1,
        openings: leaves.into_iter().map(|l| opening(&tree, l)).collect(),
    };
    assert_eq!(
        probe(&w, p, open(vec![stray])),
        Err(Rejection::ChallengeOpeningInvalid),
        "a leaf nobody asked for"
    );
    assert_eq!(
        probe(&w, p, open(vec![due[0], due[0]])),
        Err(Rejection::ChallengeOpeningInvalid),
        "the same leaf twice"
    );
    assert_eq!(
        probe(&w, p, open(Vec::new())),
        Err(Rejection::ChallengeOpeningInvalid)
    );
    if due.len() > MAX_OPENINGS_PER_TX {
        assert_eq!(
            probe(&w, p, open(due[..=MAX_OPENINGS_PER_TX].to_vec())),
            Err(Rejection::ChallengeOpeningInvalid),
            "more than ten"
        );
    }
    // q never committed: past its deadline a commitment is late.
    let deadline = challenge(&w, &q).deadline_ms;
    while w.state.time_ms + 500 <= deadline {
        w.block(Vec::new());
    }
    let late = w.tx(q, Msg::CommitChallenge { challenge: 1, root });
    assert_eq!(w.submit(late), Err(Rejection::ChallengeLate));
}

#[test]
fn sampled_entries_left_unopened_fail_when_the_window_ends() {
    let mut w = cpu_world(1, |p| p.challenge_open_blocks = 5);
    let p = w.provider_addr(0);
    let tree = right_tree(&challenge(&w, &p));
    commit(&mut w, p, &tree).expect("in time");
    w.block(Vec::new());
    let until = challenge(&w, &p).open_until_height;
    assert_eq!(until, w.state.height + 5);
    let outcomes = w.advance_to(until);
    let reason = outcomes
        .iter()
        .flat_map(|o| o.events())
        .find_map(|e| match e {
            Event::ChallengeFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("failed at the window's end");
    assert!(reason.contains("not opened"), "{reason}");
}

#[test]
fn a_passed_provider_is_challenged_again_within_the_interval_but_not_while_busy() {
    let mut w = cpu_world(1, |p| {
        p.challenge_interval_blocks = 30;
        p.challenge_open_blocks = 10;
    });
    let p = w.provider_addr(0);
    let tree = right_tree(&challenge(&w, &p));
    answer(&mut w, p, &tree);
    let next = w.provider(&p).expect("registered").hardware.next_at_height;
    // Busy before its next challenge comes due: none is issued while the lease runs.
    let order = open_order(&mut w);
    bid(&mut w, p, order).expect("bids");
    w.blocks(3);
    let OrderStatus::Leased { lease } = w.order(order).status else {
        panic!("leased: {:?}", w.order(order).status);
    };
    let start = w.start(p, lease);
    w.submit(start).expect("starts");
    w.advance_to(next + 20);
    assert!(
        w.provider(&p)
            .expect("registered")
            .hardware
            .challenge
            .is_none()
    );
    // Idle again: challenged within a window.
    let done = w.complete(p, lease, gpunet_protocol::WorkloadOutcome::Succeeded);
    w.submit(done).expect("completes");
    let idle_at = w.state.height;
    w.advance_to(idle_at + 11);
    let c = challenge(&w, &p);
    assert_eq!(c.id, 2);
    assert!(c.issued_height > idle_at);
}

#[test]
fn a_listing_no_band_covers_is_not_challenged() {
    let mut w = banded("a100", 2).providers(1).build();
    let p = w.provider_addr(0);
    assert!(
        w.provider(&p)
            .expect("registered")
            .hardware
            .challenge
            .is_none()
    );
    let order = open_order(&mut w);
    bid(&mut w, p, order).expect("nothing to prove: it bids");
}

/// A listing that changes its capacity mid-challenge loses that challenge (sized for the old
/// claim) and gets one sized for the new claim: passing the small one cannot prove the big one.
#[test]
fn a_capacity_change_mid_challenge_is_challenged_afresh_at_its_new_size() {
    let mut w = cpu_world(1, |_| {});
    let p = w.provider_addr(0);
    let small = challenge(&w, &p);
    assert_eq!(small.n, 32);
    let tree = right_tree(&small);
    commit(&mut w, p, &tree).expect("in time");
    // Now it claims eight times the cores.
    let mut bigger = w.provider(&p).expect("registered").profile.clone();
    bigger.capacity.cpu_millis = 16_000;
    let tx = w.update_provider(p, bigger);
    w.submit(tx).expect("updates");
    let fresh = challenge(&w, &p);
    assert_eq!(fresh.id, small.id + 1, "a new challenge");
    assert!(fresh.n > small.n, "sized for the new claim: {}", fresh.n);
    assert!(fresh.root.is_none());
    // The old answer opens nothing now.
    let tx = w.tx(
        p,
        Msg::OpenChallenge {
            challenge: small.id,
            openings: vec![opening(&tree, 0)],
        },
    );
    assert_eq!(w.submit(tx), Err(Rejection::ChallengeNotOpen));
    assert!(!w.provider(&p).expect("registered").hardware.proven);
}

/// A provider that announced its exit is not challenged again: it takes no new leases, and a
/// challenge in flight would hold up its deregistration.
#[test]
fn a_leaving_provider_is_not_challenged_again() {
    let mut w = cpu_world(1, |p| p.challenge_interval_blocks = 10);
    let p = w.provider_addr(0);
    let tree = right_tree(&challenge(&w, &p));
    answer(&mut w, p, &tree);
    let next = w.provider(&p).expect("registered").hardware.next_at_height;
    let tx = w.tx(p, Msg::AnnounceExit);
    w.submit(tx).expect("announces");
    w.advance_to(next + 5);
    assert!(
        w.provider(&p)
            .expect("registered")
            .hardware
            .challenge
            .is_none()
    );
    let tx = w.deregister(p);
    w.submit(tx).expect("free to go");
}
