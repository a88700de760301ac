//! Hardware challenges on chain (ADR 0009): a provider proves the hardware it lists by
//! multiplying two int8 matrices the ledger draws, within a deadline its claimed hardware can
//! meet, and showing sampled entries of the product.
//!
//! **Who is challenged.** A listing's *units* are its GPUs whose family has a throughput band
//! (`challenge_bands`), or, when none has, its CPU cores if `cpu` has one; a listing no band
//! covers is not challenged. The bands' sum is the listing's claimed throughput; its memory
//! (the GPUs', or the machine's) caps the matrices.
//!
//! **The steps**, each at a block's end (these rules run after settlement and result checks,
//! before matching):
//! 1. *Issue*, at registration, after a capacity change, after a jail, and at a height drawn
//!    uniformly from the next `challenge_interval_blocks` after each pass (only while the
//!    provider runs no lease: a busy provider's results are spot-checked instead). The seed is
//!    the block's seed hashed with the provider and the challenge's id; `n` comes from
//!    [`gpunet_verify::size_for`] and the deadline (a block time) from
//!    [`gpunet_verify::deadline_ms`].
//! 2. *Commit*: `CommitChallenge` with the root of the product's tree, in a block timed by the
//!    deadline. No commitment by then fails the challenge.
//! 3. *Sample*: at the end of the block after the commitment's, that block's seed (the
//!    commitment's block's hash, unknown when the provider committed) and the root pick
//!    `challenge_samples` entries; the provider has `challenge_open_blocks` to open the leaves
//!    holding them (`OpenChallenge`, up to ten per transaction).
//! 4. *Check*: each opened leaf against the root and each sampled entry in it exactly, as it
//!    arrives. A wrong one fails the challenge at once; all right passes it.
//!
//! **Passing** proves the listing (it may bid), counts as an agreed run in its reputation and
//! draws the next challenge's height. **Failing** cuts `slash_bps` of its stake (burned: no
//! tenant was harmed), jails it for `jail_blocks`, counts as a wrong run, and leaves it
//! unproven: it is challenged again when its jail ends and bids only after passing.

use gpunet_protocol::{Address, ChallengeOpening, Event, Hash, MAX_OPENINGS_PER_TX, Rejection};
use gpunet_verify::challenge::leaves_to_open;
use gpunet_verify::{Matrices, Opening};

use crate::state::{Challenge, Provider};
use crate::trust::{self, Evidence};
use crate::{Params, State};

const SEED_DOMAIN: &[u8] = b"gpunet/challenge/seed/v1\0";
const NEXT_DOMAIN: &[u8] = b"gpunet/challenge/next/v1\0";

/// A listing's claimed throughput (ops per ms, all units together) and memory (bytes), if a
/// band covers it (see the module doc).
pub fn claim(params: &Params, provider: &Provider) -> Option<(u64, u64)> {
    let band = |class: &str| {
        params
            .challenge_bands
            .iter()
            .find(|b| b.class == class)
            .map(|b| b.ops_per_ms)
    };
    let capacity = &provider.profile.capacity;
    let (mut ops, mut memory) = (0u64, 0u64);
    for gpu in &capacity.gpus {
        if let Some(o) = band(&gpu.family) {
            ops = ops.saturating_add(o);
            memory = memory.saturating_add(gpu.vram_mib.saturating_mul(1 << 20));
        }
    }
    if ops > 0 {
        return Some((ops, memory));
    }
    let per_core = band("cpu")?;
    let cores = u64::from(capacity.cpu_millis.div_ceil(1000)).max(1);
    Some((
        per_core.saturating_mul(cores),
        capacity.memory_mib.saturating_mul(1 << 20),
    ))
}

/// Whether the provider's listing may take leases as far as its hardware goes: no band covers
/// it, or it passed its last challenge.
pub fn hardware_ok(params: &Params, provider: &Provider) -> bool {
    provider.hardware.proven || claim(params, provider).is_none()
}

/// The entries the ledger sampled for a drawn challenge.
pub fn sampled(params: &Params, c: &Challenge) -> Option<Vec<u64>> {
    let (draw, root) = (c.draw?, c.root?);
    Some(gpunet_verify::samples(
        &draw.0,
        &root.0,
        c.n as usize,
        params.challenge_samples as usize,
    ))
}

/// The leaves a drawn challenge's provider must open, ascending.
pub fn leaves_due(params: &Params, c: &Challenge) -> Vec<u64> {
    sampled(params, c).map_or_else(Vec::new, |s| leaves_to_open(&s))
}

/// Marks a newly registered (or re-listed) provider for a challenge at this block's end. A
/// challenge in flight is dropped: it was sized for the old claim, and passing it must not
/// prove the new one. (Dropping it spares no one: the listing stays unproven, and bids no
/// more, until a challenge of the new claim passes.)
pub(crate) fn relisted(state: &mut State, provider: Address) {
    let height = state.height;
    if let Some(p) = state.providers.get_mut(&provider) {
        p.hardware.proven = false;
        p.hardware.challenge = None;
        p.hardware.next_at_height = height;
        state.due_challenges.mark(height, provider);
    }
}

fn in_flight<'a>(state: &'a State, signer: &Address, id: u64) -> Result<&'a Challenge, Rejection> {
    state
        .providers
        .get(signer)
        .ok_or(Rejection::ProviderNotRegistered)?
        .hardware
        .challenge
        .as_ref()
        .filter(|c| c.id == id)
        .ok_or(Rejection::ChallengeNotOpen)
}

pub(crate) fn check_commit(state: &State, signer: &Address, id: u64) -> Result<(), Rejection> {
    let c = in_flight(state, signer, id)?;
    if c.root.is_some() {
        return Err(Rejection::ChallengeNotOpen);
    }
    if state.time_ms > c.deadline_ms {
        return Err(Rejection::ChallengeLate);
    }
    Ok(())
}

pub(crate) fn commit(state: &mut State, signer: Address, root: Hash) {
    let height = state.height;
    if let Some(c) = state
        .providers
        .get_mut(&signer)
        .and_then(|p| p.hardware.challenge.as_mut())
    {
        c.root = Some(root);
        c.committed_height = height;
        // Drawn at the next block's end, from the hash of this one.
        state.due_challenges.mark(height.saturating_add(1), signer);
    }
}

pub(crate) fn check_open(
    state: &State,
    signer: &Address,
    id: u64,
    openings: &[ChallengeOpening],
) -> Result<(), Rejection> {
    let c = in_flight(state, signer, id)?;
    if c.draw.is_none() || state.height > c.open_until_height {
        return Err(Rejection::ChallengeNotOpen);
    }
    if openings.is_empty() || openings.len() > MAX_OPENINGS_PER_TX {
        return Err(Rejection::ChallengeOpeningInvalid);
    }
    let due = leaves_due(&state.params, c);
    let mut seen = std::collections::BTreeSet::new();
    for o in openings {
        let wanted = due.binary_search(&o.leaf).is_ok();
        let fresh = c.opened.binary_search(&o.leaf).is_err() && seen.insert(o.leaf);
        if !wanted || !fresh {
            return Err(Rejection::ChallengeOpeningInvalid);
        }
    }
    Ok(())
}

/// Checks the openings (they passed [`check_open`]): a wrong one fails the challenge, and
/// when every leaf due is opened and right, it passes.
pub(crate) fn open(
    state: &mut State,
    signer: Address,
    openings: Vec<ChallengeOpening>,
    events: &mut Vec<Event>,
) {
    let Some(c) = state
        .providers
        .get(&signer)
        .and_then(|p| p.hardware.challenge.clone())
    else {
        return;
    };
    let (Some(root), Some(samples)) = (c.root, sampled(&state.params, &c)) else {
        return;
    };
    let Ok(matrices) = Matrices::new(c.seed.0, c.n as usize) else {
        fail(state, signer, "its matrices' size is out of range", events);
        return;
    };
    let mut opened = c.opened.clone();
    for o in openings {
        let leaf = o.leaf;
        let opening = Opening {
            leaf,
            entries: o.entries,
            path: o.path.into_iter().map(|h| h.map(|h| h.0)).collect(),
        };
        // Only this leaf's sampled entries: the others' leaves arrive on their own.
        let here: Vec<u64> = samples
            .iter()
            .copied()
            .filter(|e| e / gpunet_protocol::challenge::LEAF_ENTRIES as u64 == leaf)
            .collect();
        if let Err(e) = gpunet_verify::check_openings(&matrices, &root.0, &here, &[opening]) {
            fail(state, signer, &e.to_string(), events);
            return;
        }
        if let Err(i) = opened.binary_search(&leaf) {
            opened.insert(i, leaf);
        }
    }
    if opened.len() == leaves_to_open(&samples).len() {
        pass(state, signer, events);
    } else if let Some(c) = state
        .providers
        .get_mut(&signer)
        .and_then(|p| p.hardware.challenge.as_mut())
    {
        c.opened = opened;
    }
}

/// The hardware-challenge rules for the providers due at this block's end (see the module
/// doc), in address order.
pub(crate) fn advance_all(state: &mut State, seed: &Hash, events: &mut Vec<Event>) {
    let height = state.height;
    for provider in state.due_challenges.take_due(height) {
        let Some(p) = state.providers.get(&provider) else {
            continue;
        };
        match &p.hardware.challenge {
            Some(c) if c.root.is_none() => {
                if state.time_ms > c.deadline_ms {
                    fail(state, provider, "no commitment by its deadline", events);
                } else {
                    state
                        .due_challenges
                        .mark(height.saturating_add(1), provider);
                }
            }
            Some(c) if c.draw.is_none() => {
                if height > c.committed_height {
                    draw(state, provider, seed, events);
                } else {
                    state
                        .due_challenges
                        .mark(c.committed_height.saturating_add(1), provider);
                }
            }
            Some(c) => {
                if height >= c.open_until_height {
                    fail(
                        state,
                        provider,
                        "its sampled entries were not opened in time",
                        events,
                    );
                } else {
                    state.due_challenges.mark(c.open_until_height, provider);
                }
            }
            None => {
                if claim(&state.params, p).is_none() || p.leaving {
                    // No band covers it (nothing to prove until a relisting marks it again),
                    // or it is leaving (it takes no new leases, and must be free to go).
                    continue;
                }
                let due_at = p
                    .hardware
                    .next_at_height
                    .max(p.jailed_until_height)
                    .max(height);
                if due_at > height {
                    state.due_challenges.mark(due_at, provider);
                } else if !p.live_leases.is_empty() {
                    // Busy: its runs are spot-checked meanwhile; look again a window later.
                    let later = height.saturating_add(state.params.challenge_open_blocks);
                    state.due_challenges.mark(later, provider);
                } else {
                    issue(state, provider, seed, events);
                }
            }
        }
    }
}

fn issue(state: &mut State, provider: Address, seed: &Hash, events: &mut Vec<Event>) {
    let (height, now) = (state.height, state.time_ms);
    let params = state.params.clone();
    let Some(p) = state.providers.get_mut(&provider) else {
        return;
    };
    let Some((ops, memory)) = claim(&params, p) else {
        return;
    };
    let id = p.hardware.issued.saturating_add(1);
    let mut h = blake3::Hasher::new();
    h.update(SEED_DOMAIN);
    h.update(&seed.0);
    h.update(&provider.0);
    h.update(&id.to_le_bytes());
    let challenge_seed = Hash(*h.finalize().as_bytes());
    let n = gpunet_verify::size_for(ops, params.challenge_target_ms, memory);
    let deadline_ms = now.saturating_add(gpunet_verify::deadline_ms(
        n,
        ops,
        u64::from(params.challenge_slack_bps),
        params.challenge_allowance_ms,
    ));
    let n = u32::try_from(n).expect("n is at most MAX_N");
    p.hardware.issued = id;
    p.hardware.challenge = Some(Challenge {
        id,
        seed: challenge_seed,
        n,
        issued_height: height,
        deadline_ms,
        root: None,
        committed_height: 0,
        draw: None,
        open_until_height: 0,
        opened: Vec::new(),
    });
    state
        .due_challenges
        .mark(height.saturating_add(1), provider);
    events.push(Event::ChallengeIssued {
        provider,
        challenge: id,
        seed: challenge_seed,
        n,
        deadline_ms,
    });
}

fn draw(state: &mut State, provider: Address, seed: &Hash, events: &mut Vec<Event>) {
    let height = state.height;
    let open_until_height = height.saturating_add(state.params.challenge_open_blocks);
    let Some(c) = state
        .providers
        .get_mut(&provider)
        .and_then(|p| p.hardware.challenge.as_mut())
    else {
        return;
    };
    c.draw = Some(*seed);
    c.open_until_height = open_until_height;
    let challenge = c.id;
    state.due_challenges.mark(open_until_height, provider);
    events.push(Event::ChallengeSampled {
        provider,
        challenge,
        open_until_height,
    });
}

fn pass(state: &mut State, provider: Address, events: &mut Vec<Event>) {
    let height = state.height;
    let interval = state.params.challenge_interval_blocks.max(1);
    trust::record(state, &provider, Evidence::ChallengePassed);
    let Some(p) = state.providers.get_mut(&provider) else {
        return;
    };
    let Some(c) = p.hardware.challenge.take() else {
        return;
    };
    // The next one at a height drawn from this challenge's draw: unknown until now.
    let mut h = blake3::Hasher::new();
    h.update(NEXT_DOMAIN);
    h.update(&c.draw.unwrap_or(c.seed).0);
    let word = u64::from_le_bytes(
        h.finalize().as_bytes()[..8]
            .try_into()
            .expect("eight bytes"),
    );
    let next_height = height.saturating_add(1).saturating_add(word % interval);
    p.hardware.proven = true;
    p.hardware.passed = p.hardware.passed.saturating_add(1);
    p.hardware.next_at_height = next_height;
    state.due_challenges.mark(next_height, provider);
    events.push(Event::ChallengePassed {
        provider,
        challenge: c.id,
        next_height,
    });
}

fn fail(state: &mut State, provider: Address, reason: &str, events: &mut Vec<Event>) {
    trust::record(state, &provider, Evidence::Wrong);
    let Some(cut) = trust::cut_stake(state, provider, None) else {
        return;
    };
    let Some(p) = state.providers.get_mut(&provider) else {
        return;
    };
    let Some(c) = p.hardware.challenge.take() else {
        return;
    };
    p.hardware.proven = false;
    p.hardware.failed = p.hardware.failed.saturating_add(1);
    // Challenged again once out of jail; it bids only after passing.
    p.hardware.next_at_height = cut.jailed_until_height;
    state.due_challenges.mark(cut.jailed_until_height, provider);
    events.push(Event::ChallengeFailed {
        provider,
        challenge: c.id,
        reason: reason.to_owned(),
        slashed: cut.amount,
        jailed_until_height: cut.jailed_until_height,
    });
}
