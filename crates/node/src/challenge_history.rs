//! Each provider's hardware challenge history (ADR 0009): every challenge the ledger issued
//! it, and how each ended, kept beside the state so its page can show them long after the
//! ledger's counters (`passed`, `failed`) and its one in-flight challenge have moved on.
//!
//! With each block the committer hands the store, in the block's own write transaction, one
//! lookup entry per `ChallengeIssued`, `ChallengePassed` and `ChallengeFailed` event of the
//! block (from its transactions' receipts and its end-of-block rules): the key is
//! [`PROVIDER_CHALLENGE`] ‖ provider (32 bytes) ‖ height (big-endian `u64`) ‖ the event's
//! place among the block's challenge events (big-endian `u32`), so a provider's newest events
//! are one reverse range read ([`recent`]). The value ([`ChallengeRecord`], borsh) is what the
//! page shows of the event. Sampling (`ChallengeSampled`) is a step within a challenge, not an
//! outcome, and is not kept.

use borsh::{BorshDeserialize, BorshSerialize};
use gpunet_protocol::{Address, Amount, BlockOutcome, Event};
use gpunet_store::{LookupEntry, Store, StoreError};

use crate::account_txs::ACCOUNT_TX;
use crate::history::TENANT_ORDER;

/// Tag of the lookup keys that index challenge events by provider.
pub(crate) const PROVIDER_CHALLENGE: u8 = 3;
const _: () = assert!(
    PROVIDER_CHALLENGE != TENANT_ORDER && PROVIDER_CHALLENGE != ACCOUNT_TX,
    "each lookup index has its own tag"
);

/// Width of a key: tag, provider, height, place.
const KEY_LEN: usize = 1 + 32 + 8 + 4;

/// What happened to one challenge in one block.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) enum ChallengeStep {
    /// Issued: `n × n` matrices, committed to by a block timed at most `deadline_ms`.
    Issued { n: u32, deadline_ms: u64 },
    /// Every sampled entry was right; the next challenge is due from `next_height`.
    Passed { next_height: u64 },
    /// Failed for `reason`: `slashed` gpn burned, jailed until `jailed_until_height`.
    Failed {
        reason: String,
        slashed: Amount,
        jailed_until_height: u64,
    },
}

/// One challenge event as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct ChallengeRecord {
    pub(crate) challenge: u64,
    /// The block's time.
    pub(crate) time_ms: u64,
    pub(crate) step: ChallengeStep,
}

/// One event of a provider's history, with the height of its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChallengeEvent {
    pub(crate) height: u64,
    pub(crate) record: ChallengeRecord,
}

fn prefix(provider: &Address) -> Vec<u8> {
    let mut key = Vec::with_capacity(KEY_LEN);
    key.push(PROVIDER_CHALLENGE);
    key.extend_from_slice(&provider.0);
    key
}

fn key(provider: &Address, height: u64, place: u32) -> Vec<u8> {
    let mut key = prefix(provider);
    key.extend_from_slice(&height.to_be_bytes());
    key.extend_from_slice(&place.to_be_bytes());
    key
}

/// The challenge event `e` as (provider, record), `None` for any other event.
fn record_of(e: &Event, time_ms: u64) -> Option<(Address, ChallengeRecord)> {
    let (provider, challenge, step) = match e {
        Event::ChallengeIssued {
            provider,
            challenge,
            n,
            deadline_ms,
            ..
        } => (
            provider,
            challenge,
            ChallengeStep::Issued {
                n: *n,
                deadline_ms: *deadline_ms,
            },
        ),
        Event::ChallengePassed {
            provider,
            challenge,
            next_height,
        } => (
            provider,
            challenge,
            ChallengeStep::Passed {
                next_height: *next_height,
            },
        ),
        Event::ChallengeFailed {
            provider,
            challenge,
            reason,
            slashed,
            jailed_until_height,
        } => (
            provider,
            challenge,
            ChallengeStep::Failed {
                reason: reason.clone(),
                slashed: *slashed,
                jailed_until_height: *jailed_until_height,
            },
        ),
        _ => return None,
    };
    Some((
        *provider,
        ChallengeRecord {
            challenge: *challenge,
            time_ms,
            step,
        },
    ))
}

/// The index entries (key, value) of the block at `height`, made at `time_ms`, whose outcome
/// is `outcome`: its challenge events in the order the block made them (transactions first,
/// then the end-of-block rules).
pub(crate) fn block_entries(height: u64, time_ms: u64, outcome: &BlockOutcome) -> Vec<LookupEntry> {
    let events = outcome
        .receipts
        .iter()
        .flat_map(|r| &r.events)
        .chain(&outcome.end_block_events);
    events
        .filter_map(|e| record_of(e, time_ms))
        .zip(0u32..)
        .map(|((provider, record), place)| {
            let value = borsh::to_vec(&record).expect("borsh encoding into a Vec cannot fail");
            (key(&provider, height, place), value)
        })
        .collect()
}

/// Why the history cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChallengeHistoryError {
    #[error("reading the challenge history: {source}")]
    Store {
        #[source]
        source: StoreError,
    },
    #[error("the challenge history entry {key_hex} does not decode")]
    Malformed { key_hex: String },
}

/// `provider`'s newest `limit` challenge events, newest first: one range read.
pub(crate) fn recent(
    store: &Store,
    provider: &Address,
    limit: usize,
) -> Result<Vec<ChallengeEvent>, ChallengeHistoryError> {
    let entries = store
        .lookup_below(&prefix(provider), None, limit)
        .map_err(|source| ChallengeHistoryError::Store { source })?;
    entries
        .into_iter()
        .map(|(key, value)| {
            let malformed = || ChallengeHistoryError::Malformed {
                key_hex: hex::encode(&key),
            };
            let height: [u8; 8] = key
                .get(33..41)
                .filter(|_| key.len() == KEY_LEN)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(malformed)?;
            let record = borsh::from_slice(&value).map_err(|_| malformed())?;
            Ok(ChallengeEvent {
                height: u64::from_be_bytes(height),
                record,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_protocol::{Hash, Receipt};

    fn issued(provider: Address, challenge: u64) -> Event {
        Event::ChallengeIssued {
            provider,
            challenge,
            seed: Hash([0; 32]),
            n: 512,
            deadline_ms: 9_000,
        }
    }

    #[test]
    fn a_blocks_challenge_events_become_entries_in_block_order_and_nothing_else_does() {
        let (a, b) = (Address([1; 32]), Address([2; 32]));
        let outcome = BlockOutcome {
            receipts: vec![Receipt {
                tx_hash: Hash([9; 32]),
                rejection: None,
                events: vec![
                    Event::ChallengePassed {
                        provider: a,
                        challenge: 1,
                        next_height: 500,
                    },
                    Event::ChallengeSampled {
                        provider: b,
                        challenge: 4,
                        open_until_height: 12,
                    },
                ],
            }],
            end_block_events: vec![
                issued(b, 5),
                Event::ChallengeFailed {
                    provider: a,
                    challenge: 2,
                    reason: "late".into(),
                    slashed: Amount::from_micros(7),
                    jailed_until_height: 99,
                },
            ],
        };
        let entries = block_entries(10, 1_000, &outcome);
        assert_eq!(entries.len(), 3, "sampling is not an outcome");
        assert_eq!(entries[0].0, key(&a, 10, 0));
        assert_eq!(entries[1].0, key(&b, 10, 1));
        assert_eq!(entries[2].0, key(&a, 10, 2));
        let failed: ChallengeRecord = borsh::from_slice(&entries[2].1).expect("decodes");
        assert_eq!(
            failed,
            ChallengeRecord {
                challenge: 2,
                time_ms: 1_000,
                step: ChallengeStep::Failed {
                    reason: "late".into(),
                    slashed: Amount::from_micros(7),
                    jailed_until_height: 99,
                },
            }
        );
    }

    #[test]
    fn keys_sort_by_provider_then_height_then_place() {
        let (a, b) = (Address([1; 32]), Address([2; 32]));
        assert!(key(&a, 1, 5) < key(&a, 2, 0));
        assert!(key(&a, 256, 0) > key(&a, 255, 9));
        assert!(key(&a, u64::MAX, u32::MAX) < key(&b, 0, 0));
        assert!(key(&a, 3, 0).starts_with(&prefix(&a)));
        assert_eq!(key(&a, 3, 0).len(), KEY_LEN);
    }
}
