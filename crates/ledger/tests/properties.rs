//! Properties over arbitrary blocks of valid and invalid transactions: money is conserved after
//! every block, the same blocks give the same state root at every height, and a rejected
//! transaction leaves the root unchanged.

use std::collections::BTreeMap;

use gpunet_ledger::{apply_tx, invariants};
use gpunet_protocol::{BlockOutcome, Event, Hash, SignedTx};
use gpunet_testkit::{OutcomeExt, TxPlan, World, a100, arb_blocks, h100, provider_profile};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Three tenants, three providers of different shapes and regions, short windows and timeouts
/// so that short runs reach matching, expiry, timeouts and settlement. The second provider is
/// silent (it heartbeats only when a plan makes it), so its leases are lost and retried.
fn base_world() -> World {
    let mut small = provider_profile(4_000, 16_384, vec![h100()]);
    small.region = "us-east".into();
    let mut a100s = provider_profile(32_000, 131_072, vec![a100(), a100()]);
    a100s.runtimes = vec![gpunet_protocol::Runtime::Docker];
    let mut w = World::builder()
        .tenants(3)
        .provider(provider_profile(16_000, 65_536, vec![h100(), h100()]))
        .provider(small)
        .provider(a100s)
        .unregistered_provider()
        .with_params(|p| {
            p.bid_window_blocks = 2;
            p.order_ttl_blocks = 12;
            p.start_timeout_blocks = 4;
            p.max_bids_per_order = 2;
            p.max_lease_duration_secs = 300;
            p.heartbeat_interval_blocks = 1;
            p.liveness_timeout_blocks = 3;
            p.pause_grace_blocks = 3;
            p.escrow_warning_secs = 60;
            // The A100 provider's claim is challenged (n = 16), and the plans answer it.
            p.challenge_bands = vec![gpunet_protocol::ThroughputBand {
                class: "a100".to_owned(),
                ops_per_ms: 1,
            }];
            p.challenge_open_blocks = 4;
            p.challenge_samples = 8;
            // Unbonded stake comes back within a run, so releases are reloaded and replayed too.
            p.unbonding_blocks = 3;
            // Verifiers that stay silent are replaced within a run.
            p.verdict_window_blocks = 4;
        })
        .build();
    let silent = w.provider_addr(1);
    w.silence(silent);
    w
}

type Blocks = Vec<(Vec<TxPlan>, u64)>;

/// Applies `blocks` to a fresh world (which asserts every invariant after every block) and
/// returns the root and outcome at every height.
fn run(blocks: &Blocks) -> Vec<(Hash, BlockOutcome)> {
    let mut w = base_world();
    blocks
        .iter()
        .map(|(plans, step_ms)| {
            let txs: Vec<SignedTx> = w.realize_block(plans);
            w.step_ms = *step_ms;
            let outcome = w.block(txs);
            (w.state.digest(), outcome)
        })
        .collect()
}

/// Rebuilds the state from its entities, as a restarted node does: every derived index afresh,
/// and every open order and live lease due for a visit.
fn reload(w: &mut World) {
    let entities = w.state.entities().into_iter().map(|e| {
        let value = e.value.expect("a whole state holds no removals");
        (e.key, value)
    });
    w.state = gpunet_ledger::State::from_entities(entities).expect("its own entities");
}

/// As [`run`], but before every block the state is rebuilt from its entities, as a restarted
/// node rebuilds it: every derived index afresh, and every open order and live lease due for a
/// visit.
fn run_reloading(blocks: &Blocks) -> Vec<(Hash, BlockOutcome)> {
    let mut w = base_world();
    blocks
        .iter()
        .map(|(plans, step_ms)| {
            reload(&mut w);
            let txs: Vec<SignedTx> = w.realize_block(plans);
            w.step_ms = *step_ms;
            let outcome = w.block(txs);
            (w.state.digest(), outcome)
        })
        .collect()
}

/// Per block, which providers send no heartbeat of their own (bit `i`: provider `i`), on top of
/// the one that is always silent.
type Quiet = Vec<u8>;

/// As [`run`] (or [`run_reloading`], with `reloading`), but before each block the providers `quiet`
/// names for it send no heartbeat: proofs of life come in some blocks and not in others, so the
/// blocks between them show whether the leases left unvisited there had anything due.
fn run_quiet(blocks: &Blocks, quiet: &Quiet, reloading: bool) -> Vec<(Hash, BlockOutcome)> {
    let mut w = base_world();
    let always = w.provider_addr(1);
    blocks
        .iter()
        .zip(quiet)
        .map(|((plans, step_ms), bits)| {
            for (i, p) in w.providers.clone().into_iter().enumerate() {
                if p == always || bits & (1 << i) != 0 {
                    w.silence(p);
                } else {
                    w.revive(p);
                }
            }
            if reloading {
                reload(&mut w);
            }
            let txs: Vec<SignedTx> = w.realize_block(plans);
            w.step_ms = *step_ms;
            let outcome = w.block(txs);
            // Settlement keeps one mark per live lease, at the height its rules name next: none
            // left behind by a proof, a pause or an end.
            assert_eq!(w.state.due_leases.len(), w.state.live_leases.len());
            (w.state.digest(), outcome)
        })
        .collect()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn money_is_conserved_after_every_block(blocks in arb_blocks(&base_world(), 16, 8)) {
        // `World::block` asserts `invariants::check_all` after every block.
        let mut w = base_world();
        for (plans, step_ms) in &blocks {
            let txs: Vec<SignedTx> = w.realize_block(plans);
            w.step_ms = *step_ms;
            w.block(txs);
            prop_assert_eq!(invariants::check_all(&w.state), Ok(()));
            for l in w.all_leases() {
                prop_assert!(l.fee <= l.paid);
                // No tenant pays for time after its provider's last proof of life.
                prop_assert!(l.billed_ms <= l.proven_ms());
            }
            // Across all its attempts an order never pays out more than it was funded with.
            for o in w.all_orders() {
                let funded = u128::from(o.terms.deposit.micros()) + u128::from(o.topped_up.micros());
                let out: u128 = o
                    .attempts
                    .iter()
                    .map(|id| w.lease(*id))
                    .map(|l| u128::from(l.paid.micros()) + u128::from(l.refund.micros()))
                    .sum::<u128>()
                    + u128::from(o.escrow.micros());
                prop_assert!(out <= funded, "order {} paid out {} of {}", o.id, out, funded);
                prop_assert!(o.attempts.len() <= o.terms.recovery.max_attempts as usize);
            }
        }
    }

    #[test]
    fn the_same_blocks_give_the_same_root_at_every_height(blocks in arb_blocks(&base_world(), 12, 8)) {
        let first = run(&blocks);
        let second = run(&blocks);
        prop_assert_eq!(first.len(), second.len());
        for (h, (a, b)) in first.iter().zip(&second).enumerate() {
            prop_assert_eq!(a.0, b.0, "roots differ at block {}", h + 1);
            prop_assert_eq!(&a.1, &b.1, "outcomes differ at block {}", h + 1);
        }
    }

    /// The state survives its own entities (what the store keeps) whole, and the end-of-block
    /// rules that visit only the due orders and leases do what a visit of every open order and
    /// live lease does: a state reloaded before every block has every one of them due.
    #[test]
    fn a_state_reloaded_from_its_entities_before_every_block_goes_the_same_way(blocks in arb_blocks(&base_world(), 12, 8)) {
        let straight = run(&blocks);
        let reloaded = run_reloading(&blocks);
        for (h, (a, b)) in straight.iter().zip(&reloaded).enumerate() {
            prop_assert_eq!(&a.1, &b.1, "outcomes differ at block {}", h + 1);
            prop_assert_eq!(a.0, b.0, "states differ at block {}", h + 1);
        }
    }

    #[test]
    fn a_rejected_tx_leaves_the_root_unchanged(blocks in arb_blocks(&base_world(), 12, 8)) {
        let mut w = base_world();
        for (plans, step_ms) in &blocks {
            let txs: Vec<SignedTx> = w.realize_block(plans);
            w.step_ms = *step_ms;
            // Replay the block's transaction phase by hand, as `apply_block` runs it.
            let ctx = w.next_ctx();
            let mut shadow = w.state.clone();
            shadow.height = ctx.height;
            shadow.time_ms = ctx.time_ms;
            let mut expected = Vec::new();
            for tx in &txs {
                let before = shadow.digest();
                let got = apply_tx(&mut shadow, tx);
                if got.is_err() {
                    prop_assert_eq!(shadow.digest(), before, "rejected {:?} changed the state", tx.body);
                }
                expected.push(got.err());
            }
            let outcome = w.block(txs);
            prop_assert_eq!(outcome.rejections(), expected);
        }
    }
}

proptest! {
    // More cases than above: what it guards (a top-up or a pause between two proofs of life, on
    // a lease nobody heartbeats that block) is a rare path through random blocks.
    #![proptest_config(config(1024))]

    /// As `a_state_reloaded_from_its_entities_before_every_block_goes_the_same_way`, with
    /// providers that heartbeat only in some blocks: settlement, which visits
    /// only the due leases, must bill, warn, pause, resume and end them exactly as a visit of
    /// every live lease does, whatever came between two proofs of life (a top-up, a pause).
    #[test]
    fn a_state_reloaded_before_every_block_goes_the_same_way_with_heartbeats_by_chance(
        blocks in arb_blocks(&base_world(), 16, 8),
        quiet in prop::collection::vec(any::<u8>(), 16),
    ) {
        let straight = run_quiet(&blocks, &quiet, false);
        let reloaded = run_quiet(&blocks, &quiet, true);
        for (h, (a, b)) in straight.iter().zip(&reloaded).enumerate() {
            prop_assert_eq!(&a.1, &b.1, "outcomes differ at block {}", h + 1);
            prop_assert_eq!(a.0, b.0, "states differ at block {}", h + 1);
        }
    }
}

/// Guards the strategies: a fixed-seed run must reach every part of the market, or the
/// properties above would prove little.
#[test]
fn the_strategies_reach_matching_settlement_and_most_rejections() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = arb_blocks(&base_world(), 16, 8);
    let mut applied: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut rejected: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut ended: BTreeMap<String, u32> = BTreeMap::new();
    let mut reopened = 0u32;
    let mut trust: BTreeMap<&'static str, u32> = BTreeMap::new();
    for _ in 0..400 {
        let blocks = strategy.new_tree(&mut runner).expect("generates").current();
        let mut w = base_world();
        for (plans, step_ms) in &blocks {
            let txs: Vec<SignedTx> = w.realize_block(plans);
            let kinds: Vec<&'static str> = txs.iter().map(|t| t.body.msg.kind()).collect();
            w.step_ms = *step_ms;
            let outcome = w.block(txs);
            for (kind, r) in kinds.iter().zip(outcome.rejections()) {
                match r {
                    None => *applied.entry(kind).or_default() += 1,
                    Some(r) => *rejected.entry(r.name()).or_default() += 1,
                }
            }
            for e in outcome.events() {
                match e {
                    Event::LeaseEnded { reason, .. } => {
                        *ended.entry(reason.to_string()).or_default() += 1;
                    }
                    Event::OrderReopened { .. } => reopened += 1,
                    Event::SpotCheckDrawn { .. } => {
                        *trust.entry("spot_check_drawn").or_default() += 1
                    }
                    Event::RevealRequested { .. } => {
                        *trust.entry("reveal_requested").or_default() += 1
                    }
                    Event::VerificationDecided { outcome, .. } => {
                        *trust.entry(outcome.as_str()).or_default() += 1
                    }
                    Event::ProviderSlashed { .. } => *trust.entry("slashed").or_default() += 1,
                    Event::ChallengePassed { .. } => {
                        *trust.entry("challenge_passed").or_default() += 1
                    }
                    Event::ChallengeFailed { .. } => {
                        *trust.entry("challenge_failed").or_default() += 1
                    }
                    Event::StakeReleased { .. } => *trust.entry("stake_released").or_default() += 1,
                    Event::VerdictRequested { .. } => {
                        *trust.entry("verdict_requested").or_default() += 1
                    }
                    Event::VerdictPosted { .. } => *trust.entry("verdict_posted").or_default() += 1,
                    _ => {}
                }
            }
        }
    }
    eprintln!("applied: {applied:?}\nrejected: {rejected:?}\nended: {ended:?}\ntrust: {trust:?}");
    for kind in [
        "transfer",
        "create_order",
        "place_bid",
        "start_lease",
        "complete_lease",
        "cancel_order",
        "heartbeat",
        "top_up_order",
        "release_lease",
        "bond_stake",
        "unbond_stake",
    ] {
        assert!(
            applied.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} ever applied"
        );
    }
    assert!(
        ended.contains_key("completed"),
        "no lease ever completed: {ended:?}"
    );
    for reason in ["provider_lost", "provider_left"] {
        assert!(
            ended.contains_key(reason),
            "no lease ever ended {reason}: {ended:?}"
        );
    }
    assert!(
        reopened > 0,
        "no order was ever reopened for another attempt"
    );
    assert!(
        ended.len() >= 4,
        "too few ways of ending a lease: {ended:?}"
    );
    assert!(
        rejected.len() >= 20,
        "too few kinds of rejection: {rejected:?}"
    );
    // Verified orders are made and refused when out of bounds; random blocks rarely carry one
    // through a draw (the flows past it are driven in tests/trust.rs and by the simulator).
    for r in [
        "verification_invalid",
        "probation_job_too_large",
        "stake_below_minimum",
    ] {
        assert!(rejected.contains_key(r), "never refused {r}: {rejected:?}");
    }
    // The A100 provider's hardware challenges pass and fail; stray answers are refused.
    for t in ["challenge_passed", "challenge_failed", "stake_released"] {
        assert!(trust.contains_key(t), "no {t}: {trust:?}");
    }
    for r in ["hardware_unproven", "challenge_not_open"] {
        assert!(rejected.contains_key(r), "never refused {r}: {rejected:?}");
    }
}
