//! The account transaction index: the transactions each account signed or was paid by, so a
//! wallet's history reaches back to genesis.
//!
//! With each block the committer hands the store, in the block's own write transaction, one
//! lookup entry per transaction and account it touches ([`tx_accounts`]): the key is
//! [`ACCOUNT_TX`] ‖ address (32 bytes) ‖ height (big-endian `u64`) ‖ position in the block
//! (big-endian `u32`), so one account's keys sort oldest to newest and a page newest first is
//! one reverse range read from a cursor ([`page`], through `Store::lookup_below`). The value
//! ([`AccountTxRecord`], borsh) holds what a history shows of the transaction — its hash, the
//! block's time, its kind, a transfer's terms and what its receipt said — so a page reads
//! neither blocks nor receipts: it costs O(page · log n) however large the blocks are.
//!
//! A block holds rejected transactions too, each with its rejection in the receipts (and then
//! nothing changed). The signer's history lists them with that rejection: it sent them. A
//! transfer's recipient is indexed only when the transfer was applied: a rejected one paid it
//! nothing, and a stranger's failed transfers are not the recipient's history.

use borsh::{BorshDeserialize, BorshSerialize};
use gpunet_protocol::{Address, Amount, Denom, Hash, Msg, Receipt, Rejection, SignedTx, TxBody};
use gpunet_store::{LookupEntry, Store, StoreError};

use crate::history::TENANT_ORDER;

/// Tag of the lookup keys that index transactions by account.
pub(crate) const ACCOUNT_TX: u8 = 2;
const _: () = assert!(
    ACCOUNT_TX != TENANT_ORDER,
    "each lookup index has its own tag"
);

/// Width of a key: tag, address, height, position.
const KEY_LEN: usize = 1 + 32 + 8 + 4;

/// Where a transaction is in the chain: its block's height and its position in the block.
/// Ordered as the chain is, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TxPosition {
    pub(crate) height: u64,
    pub(crate) index: u32,
}

/// What an account's history shows of one transaction, kept as the value of its index entry.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct AccountTxRecord {
    pub(crate) tx_hash: Hash,
    /// The block's time.
    pub(crate) time_ms: u64,
    pub(crate) signer: Address,
    /// [`Msg::kind`].
    pub(crate) kind: String,
    /// A transfer's recipient, denomination and amount.
    pub(crate) transfer: Option<(Address, Denom, Amount)>,
    /// The receipt's rejection; `None`: applied.
    pub(crate) rejection: Option<Rejection>,
}

/// One entry of an account's history: where the transaction is, and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountTx {
    pub(crate) at: TxPosition,
    pub(crate) record: AccountTxRecord,
}

/// Why the index cannot be read: the store failed, or holds an entry this node cannot decode.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexError {
    #[error("reading the account index: {source}")]
    Store {
        #[source]
        source: StoreError,
    },
    #[error("the account index entry {key_hex} does not decode")]
    Malformed { key_hex: String },
}

/// The accounts whose history lists a transaction: its signer, and the recipient of a transfer
/// that was `applied` (each once: a transfer to oneself is one entry).
pub(crate) fn tx_accounts(body: &TxBody, applied: bool) -> Vec<Address> {
    let mut accounts = vec![body.signer];
    if let Msg::Transfer { to, .. } = &body.msg
        && applied
        && *to != body.signer
    {
        accounts.push(*to);
    }
    accounts
}

/// The index keys of `who` start with this.
pub(crate) fn account_prefix(who: &Address) -> Vec<u8> {
    let mut key = Vec::with_capacity(KEY_LEN);
    key.push(ACCOUNT_TX);
    key.extend_from_slice(&who.0);
    key
}

/// The index key of `who`'s transaction at `at`.
pub(crate) fn account_tx_key(who: &Address, at: TxPosition) -> Vec<u8> {
    let mut key = account_prefix(who);
    key.extend_from_slice(&at.height.to_be_bytes());
    key.extend_from_slice(&at.index.to_be_bytes());
    key
}

/// Where the transaction an [`account_tx_key`] names is; `None` for any other key.
pub(crate) fn position_of_key(key: &[u8]) -> Option<TxPosition> {
    if key.len() != KEY_LEN || key[0] != ACCOUNT_TX {
        return None;
    }
    let height: [u8; 8] = key[33..41].try_into().ok()?;
    let index: [u8; 4] = key[41..].try_into().ok()?;
    Some(TxPosition {
        height: u64::from_be_bytes(height),
        index: u32::from_be_bytes(index),
    })
}

/// The index entries (key, value) of the block at `height`, made at `time_ms`, whose
/// transactions are `txs` (hashes `tx_hashes`) and receipts `receipts`, both in block order.
pub(crate) fn block_entries(
    height: u64,
    time_ms: u64,
    txs: &[SignedTx],
    tx_hashes: &[Hash],
    receipts: &[Receipt],
) -> Vec<LookupEntry> {
    assert!(
        txs.len() == tx_hashes.len() && txs.len() == receipts.len(),
        "a block has one hash and one receipt per transaction"
    );
    let mut out = Vec::with_capacity(txs.len() * 2);
    for (index, ((tx, tx_hash), receipt)) in (0u32..).zip(txs.iter().zip(tx_hashes).zip(receipts)) {
        let body = &tx.body;
        let record = AccountTxRecord {
            tx_hash: *tx_hash,
            time_ms,
            signer: body.signer,
            kind: body.msg.kind().to_owned(),
            transfer: match &body.msg {
                Msg::Transfer { to, denom, amount } => Some((*to, *denom, *amount)),
                _ => None,
            },
            rejection: receipt.rejection,
        };
        let value = borsh::to_vec(&record).expect("borsh encoding into a Vec cannot fail");
        let at = TxPosition { height, index };
        for who in tx_accounts(body, receipt.rejection.is_none()) {
            out.push((account_tx_key(&who, at), value.clone()));
        }
    }
    out
}

/// At most `limit` of `who`'s transactions strictly before `below`, newest first, and whether
/// older ones remain: one range read of `limit + 1` entries.
pub(crate) fn page(
    store: &Store,
    who: &Address,
    below: TxPosition,
    limit: usize,
) -> Result<(Vec<AccountTx>, bool), IndexError> {
    let entries = store
        .lookup_below(
            &account_prefix(who),
            Some(&account_tx_key(who, below)),
            limit.saturating_add(1),
        )
        .map_err(|source| IndexError::Store { source })?;
    let more = entries.len() > limit;
    let txs = entries
        .into_iter()
        .take(limit)
        .map(|(key, value)| {
            let malformed = || IndexError::Malformed {
                key_hex: hex::encode(&key),
            };
            let at = position_of_key(&key).ok_or_else(malformed)?;
            let record = borsh::from_slice(&value).map_err(|_| malformed())?;
            Ok(AccountTx { at, record })
        })
        .collect::<Result<Vec<_>, IndexError>>()?;
    Ok((txs, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(signer: Address, msg: Msg) -> TxBody {
        TxBody {
            chain_id: "c".into(),
            signer,
            nonce: 0,
            fee: Amount::ZERO,
            msg,
        }
    }

    fn pay(to: Address) -> Msg {
        Msg::Transfer {
            to,
            denom: Denom::Usd,
            amount: Amount::from_micros(1),
        }
    }

    #[test]
    fn a_transaction_belongs_to_its_signer_and_to_the_recipient_it_paid() {
        let (me, you) = (Address([1; 32]), Address([2; 32]));
        let check = |msg: Msg, applied: bool, expect: &[Address]| {
            let kind = msg.kind();
            assert_eq!(
                tx_accounts(&body(me, msg), applied),
                expect,
                "{kind}, applied {applied}"
            );
        };
        check(pay(you), true, &[me, you]);
        // A rejected transfer paid nobody: it is its signer's alone.
        check(pay(you), false, &[me]);
        // To oneself: one entry, not two under one key.
        check(pay(me), true, &[me]);
        check(
            Msg::BondStake {
                amount: Amount::ZERO,
            },
            true,
            &[me],
        );
        check(Msg::AnnounceExit, false, &[me]);
    }

    /// Heights and positions that straddle byte boundaries, where any other byte order breaks.
    const AWKWARD: [(u64, u32); 8] = [
        (1, 0),
        (1, 1),
        (1, 256),
        (255, u32::MAX),
        (256, 0),
        (256, 1),
        (1 << 32, 7),
        (u64::MAX, u32::MAX),
    ];

    fn at((height, index): (u64, u32)) -> TxPosition {
        TxPosition { height, index }
    }

    #[test]
    fn keys_sort_by_address_then_height_then_position_and_name_their_position() {
        // Addresses that differ only in their last byte, so a sloppy prefix would let one into
        // the other's range.
        let a = Address([0xaa; 32]);
        let mut b = a;
        b.0[31] = 0xab;
        let mut keys = Vec::new();
        for who in [a, b] {
            for p in AWKWARD {
                let key = account_tx_key(&who, at(p));
                assert!(key.starts_with(&account_prefix(&who)));
                assert_eq!(position_of_key(&key), Some(at(p)));
                keys.push(key);
            }
        }
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?} out of order");
        }
        // Every key of `a` sorts below `b`'s prefix: `a`'s range ends before `b`'s begins.
        let last_of_a = account_tx_key(&a, at((u64::MAX, u32::MAX)));
        assert!(last_of_a < account_prefix(&b));
        assert!(!last_of_a.starts_with(&account_prefix(&b)));

        let key = account_tx_key(&a, at((3, 4)));
        assert_eq!(position_of_key(&key[..KEY_LEN - 1]), None, "cut short");
        let mut other = key.clone();
        other[0] = TENANT_ORDER;
        assert_eq!(position_of_key(&other), None, "another index");
    }

    /// A store at genesis, with blocks committed through the index as the node commits them.
    struct Chain {
        _dir: tempfile::TempDir,
        store: Store,
        height: u64,
    }

    impl Chain {
        fn new() -> Chain {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open(&dir.path().join("chain.redb")).expect("open");
            let genesis = [gpunet_protocol::merkle::StateWrite {
                key: b"\x00genesis".to_vec(),
                value: Some(b"g".to_vec()),
            }];
            store
                .init_genesis("c", b"genesis", &genesis)
                .expect("genesis");
            Chain {
                _dir: dir,
                store,
                height: 0,
            }
        }

        /// Commits a block of `txs` (all applied) and returns its height.
        fn block(&mut self, txs: &[(u8, Msg)]) -> u64 {
            self.height += 1;
            let txs: Vec<SignedTx> = txs
                .iter()
                .map(|(seed, msg)| {
                    let key = ed25519_dalek::SigningKey::from_bytes(&[*seed; 32]);
                    body(Address::from_key(&key.verifying_key()), msg.clone()).sign(&key)
                })
                .collect();
            let hashes: Vec<Hash> = txs.iter().map(SignedTx::hash).collect();
            let receipts: Vec<Receipt> = hashes
                .iter()
                .map(|h| Receipt {
                    tx_hash: *h,
                    rejection: None,
                    events: Vec::new(),
                })
                .collect();
            let entries = block_entries(self.height, 1_000 * self.height, &txs, &hashes, &receipts);
            let change = [gpunet_protocol::merkle::StateWrite {
                key: b"\x00chain".to_vec(),
                value: Some(self.height.to_be_bytes().to_vec()),
            }];
            let raw: Vec<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
            self.store
                .commit_block(&gpunet_store::BlockRecord {
                    height: self.height,
                    block_hash: [self.height as u8; 32],
                    block: b"block",
                    receipts: b"receipts",
                    changes: &change,
                    tx_hashes: &raw,
                    history: &[],
                    lookups: &entries,
                })
                .expect("commit");
            self.height
        }
    }

    fn who(seed: u8) -> Address {
        Address::from_key(&ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
    }

    /// Every entry of `who`'s history below `top`, `limit` at a time, as (height, position).
    fn walk(chain: &Chain, who: Address, limit: usize) -> Vec<(u64, u32)> {
        let mut below = TxPosition {
            height: chain.height + 1,
            index: 0,
        };
        let mut out = Vec::new();
        loop {
            let (txs, more) = page(&chain.store, &who, below, limit).expect("page");
            assert!(txs.len() <= limit);
            out.extend(txs.iter().map(|t| (t.at.height, t.at.index)));
            if !more {
                return out;
            }
            assert_eq!(txs.len(), limit, "a page before the last is full");
            below = txs.last().expect("a full page").at;
        }
    }

    #[test]
    fn pages_run_newest_first_across_heights_and_positions_and_never_into_another_account() {
        let mut chain = Chain::new();
        // Seeds 1 and 2 are neighbours in no particular order; seed 3 pays seed 1.
        let h1 = chain.block(&[
            (1, pay(who(2))),
            (2, Msg::AnnounceExit),
            (1, Msg::AnnounceExit),
        ]);
        let h2 = chain.block(&[(3, Msg::AnnounceExit)]);
        let h3 = chain.block(&[(2, Msg::AnnounceExit), (3, pay(who(1)))]);
        let h4 = chain.block(&[(1, Msg::AnnounceExit)]);
        let mine = vec![(h4, 0), (h3, 1), (h1, 2), (h1, 0)];
        for limit in [1, 2, 3, 4, 200] {
            assert_eq!(walk(&chain, who(1), limit), mine, "limit {limit}");
        }
        assert_eq!(walk(&chain, who(2), 1), vec![(h3, 0), (h1, 1), (h1, 0)]);
        assert_eq!(walk(&chain, who(3), 2), vec![(h3, 1), (h2, 0)]);
        assert!(walk(&chain, who(9), 5).is_empty());

        // A record says what the transaction was, for the recipient as for the signer.
        let (got, _) = page(&chain.store, &who(1), at((h3 + 1, 0)), 1).expect("page");
        let r = &got[0].record;
        assert_eq!(
            (r.signer, r.kind.as_str(), r.time_ms),
            (who(3), "transfer", 3_000)
        );
        assert_eq!(
            r.transfer,
            Some((who(1), Denom::Usd, Amount::from_micros(1)))
        );
        assert_eq!(r.rejection, None);
        // A cursor beyond the chain (a forged one) reads from the newest; one at the oldest
        // entry reads nothing.
        let (got, more) = page(&chain.store, &who(1), at((u64::MAX, u32::MAX)), 10).expect("page");
        assert_eq!(got.len(), 4);
        assert!(!more);
        let (got, more) = page(&chain.store, &who(1), at((h1, 0)), 10).expect("page");
        assert!(got.is_empty() && !more);
    }
}
