//! The mempool: signed transactions waiting for a block, bounded in total and per signer.
//!
//! Admission runs the envelope checks in the order the rejection codes list them — decode (size
//! first), chain id, signature, nonce, fee — and, when the signer has nothing pending, the
//! message's own rules through `ledger::check_tx` against the committed state. A signer with
//! pending transactions only gets the envelope and fee checks for the next ones, because their
//! message rules depend on state the pending ones have not changed yet; the ledger checks them
//! again when the block applies.
//!
//! Pending nonces of one signer are always contiguous from the signer's account nonce, so a
//! signer's transactions leave in nonce order simply by leaving in arrival order.
//!
//! The mempool never removes a transaction when it is proposed, only when a block is committed
//! ([`Mempool::on_commit`]): a proposal may fail to be decided, and until the block is committed
//! the transaction must still count towards its signer's next nonce.
//!
//! Each transaction remembers its [`Origin`]: those a client sent are the ones a validator
//! forwards to its peers ([`Mempool::to_forward`]); those a peer forwarded are not sent on again,
//! so a transaction crosses the network once per peer, not once per pair of peers.

use std::collections::{BTreeMap, HashMap};

use gpunet_ledger::State;
use gpunet_protocol::{Address, Amount, Hash, Rejection, SignedTx};

/// Bounds on the mempool and on what one block takes from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Most transactions waiting at once, over all signers, when a client sends one; a peer
    /// forwarding one may fill [`PEER_ROOM_FACTOR`] times as many.
    pub max_txs: usize,
    /// Most transactions one block takes.
    pub max_txs_per_block: usize,
    /// Most transactions one signer may have waiting when a client sends one; when a peer
    /// forwards one, [`PEER_ROOM_FACTOR`] times as many.
    pub max_pending_per_signer: usize,
}

/// How many times the limits ([`MempoolLimits::max_txs`],
/// [`MempoolLimits::max_pending_per_signer`]) a transaction forwarded by a peer may fill. The
/// peer already held it to those limits, and every validator's mempool holds the backlog of the
/// whole network, not only of its own clients: the room above the limits is for that backlog
/// and for the moment when the peer has committed a block and admitted a signer's next
/// transactions while this node is still committing it. A forwarded transaction refused here
/// would make every later one of its signer a nonce gap here, so this node would hold none of
/// them until the peer proposed, and would verify their signatures again in each block.
/// Clients get the plain limits, counting forwarded transactions: when the network's backlog
/// is full, they wait.
pub const PEER_ROOM_FACTOR: usize = 2;

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            max_txs: 10_000,
            max_txs_per_block: 5_000,
            max_pending_per_signer: 64,
        }
    }
}

/// Who handed this node a transaction. The checks are the same; it decides whether the node
/// forwards it and how much room it may take ([`PEER_ROOM_FACTOR`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client (`POST /v1/txs`, or a batch not marked as forwarded): forwarded to the peers.
    Client,
    /// Another validator forwarding what its clients sent: kept, not forwarded again.
    Peer,
}

#[derive(Debug)]
struct Pending {
    tx: SignedTx,
    /// Order of arrival.
    seq: u64,
    origin: Origin,
}

/// Transactions admitted and not yet committed.
#[derive(Debug)]
pub struct Mempool {
    limits: MempoolLimits,
    txs: HashMap<Hash, Pending>,
    /// Arrival order: seq → tx hash.
    arrival: BTreeMap<u64, Hash>,
    /// Each signer's pending nonces → tx hash; contiguous from the account nonce.
    by_signer: BTreeMap<Address, BTreeMap<u64, Hash>>,
    next_seq: u64,
}

impl Mempool {
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            txs: HashMap::new(),
            arrival: BTreeMap::new(),
            by_signer: BTreeMap::new(),
            next_seq: 0,
        }
    }

    pub fn limits(&self) -> MempoolLimits {
        self.limits
    }

    /// How many transactions are waiting.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.txs.contains_key(hash)
    }

    /// The nonce the signer's next transaction should carry counting pending ones, if the signer
    /// has any pending.
    pub fn next_nonce(&self, signer: &Address) -> Option<u64> {
        let pending = self.by_signer.get(signer)?;
        let (last, _) = pending.last_key_value()?;
        last.checked_add(1)
    }

    /// Every check that needs no state, in rejection-code order: decode (size first), chain id,
    /// signature. Kept apart so a server can run it without holding the mempool.
    pub fn precheck(tx_bytes: &[u8], chain_id: &str) -> Result<SignedTx, Rejection> {
        let tx = SignedTx::decode(tx_bytes)?;
        if tx.body.chain_id != chain_id {
            return Err(Rejection::WrongChainId);
        }
        tx.verify_signature()?;
        Ok(tx)
    }

    /// Admits an encoded transaction checked against the committed `state`; returns its hash.
    pub fn admit(&mut self, tx_bytes: &[u8], state: &State) -> Result<Hash, Rejection> {
        let tx = Mempool::precheck(tx_bytes, &state.chain_id)?;
        self.admit_verified(tx, state)
    }

    /// Admits many encoded transactions, in order, as if by [`Mempool::admit`] one by one;
    /// the stateless checks (decode, chain id, signature) run in parallel on up to
    /// `std::thread::available_parallelism` threads first.
    pub fn admit_many<B: AsRef<[u8]> + Sync>(
        &mut self,
        txs: &[B],
        state: &State,
    ) -> Vec<Result<Hash, Rejection>> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let chunk = txs.len().div_ceil(threads).max(1);
        let chain_id = state.chain_id.as_str();
        let prechecked: Vec<Result<SignedTx, Rejection>> = std::thread::scope(|scope| {
            let workers: Vec<_> = txs
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|b| Mempool::precheck(b.as_ref(), chain_id))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| {
                    // A worker only runs decode and signature checks, which do not panic on
                    // any input; a panic there is a bug worth stopping for.
                    w.join().expect("signature-check worker panicked")
                })
                .collect()
        });
        prechecked
            .into_iter()
            .map(|tx| tx.and_then(|tx| self.admit_verified(tx, state)))
            .collect()
    }

    /// Admits a transaction whose signature the caller has verified ([`Mempool::precheck`]),
    /// from a client.
    pub fn admit_verified(&mut self, tx: SignedTx, state: &State) -> Result<Hash, Rejection> {
        self.admit_verified_from(tx, state, Origin::Client)
    }

    /// [`Mempool::admit_verified`] for a transaction from `origin`; the checks are the same.
    pub fn admit_verified_from(
        &mut self,
        tx: SignedTx,
        state: &State,
        origin: Origin,
    ) -> Result<Hash, Rejection> {
        let body = &tx.body;
        if body.chain_id != state.chain_id {
            return Err(Rejection::WrongChainId);
        }
        let hash = tx.hash();
        let account_nonce = state.nonce(&body.signer);
        let pending = self.by_signer.get(&body.signer);
        let pending_count = pending.map_or(0, BTreeMap::len);
        if body.nonce < account_nonce {
            return Err(Rejection::NonceReplayed);
        }
        let next = account_nonce.saturating_add(pending_count as u64);
        if body.nonce < next || self.txs.contains_key(&hash) {
            return Err(Rejection::DuplicateTx);
        }
        if body.nonce > next {
            return Err(Rejection::NonceGap);
        }
        match pending {
            None => gpunet_ledger::check_tx(state, body)?,
            Some(pending) => {
                gpunet_ledger::check_fee(state, body)?;
                // Pending transactions pay their fees first; a fee nobody can pay would only
                // fill blocks with rejections.
                let pending_fees = pending
                    .values()
                    .filter_map(|h| self.txs.get(h))
                    .try_fold(Amount::ZERO, |sum, p| sum.checked_add(p.tx.body.fee));
                let needed = pending_fees.and_then(|f| f.checked_add(body.fee));
                let balance = state.balance(&body.signer, gpunet_protocol::Denom::Gpn);
                if needed.is_none_or(|needed| balance < needed) {
                    return Err(Rejection::FeeUnpayable);
                }
            }
        }
        let room = match origin {
            Origin::Client => 1,
            Origin::Peer => PEER_ROOM_FACTOR,
        };
        if self.txs.len() >= self.limits.max_txs.saturating_mul(room)
            || pending_count >= self.limits.max_pending_per_signer.saturating_mul(room)
        {
            return Err(Rejection::MempoolFull);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_signer
            .entry(body.signer)
            .or_default()
            .insert(body.nonce, hash);
        self.arrival.insert(seq, hash);
        self.txs.insert(hash, Pending { tx, seq, origin });
        Ok(hash)
    }

    /// Where the next [`Mempool::to_forward`] should start to see only transactions admitted
    /// from now on.
    pub fn arrival_cursor(&self) -> u64 {
        self.next_seq
    }

    /// Up to `max` transactions from clients ([`Origin::Client`]) still waiting that arrived at
    /// or after `cursor`, in arrival order (so each signer's in nonce order), and the cursor
    /// that continues after them. Transactions from peers are skipped, not returned.
    pub fn to_forward(&self, cursor: u64, max: usize) -> (Vec<SignedTx>, u64) {
        let mut out = Vec::new();
        for (&seq, hash) in self.arrival.range(cursor..) {
            if out.len() == max {
                return (out, seq);
            }
            if let Some(p) = self.txs.get(hash)
                && p.origin == Origin::Client
            {
                out.push(p.tx.clone());
            }
        }
        // Everything that arrived so far was looked at; what arrives later gets a larger number.
        (out, self.next_seq.max(cursor))
    }

    /// Up to `max` transactions for the next block, in arrival order (which keeps each signer's
    /// in nonce order). Nothing is removed.
    pub fn select(&self, max: usize) -> Vec<SignedTx> {
        self.arrival
            .values()
            .filter_map(|h| self.txs.get(h))
            .take(max)
            .map(|p| p.tx.clone())
            .collect()
    }

    /// After a block is committed: drops the transactions it included and every pending one
    /// that can no longer apply — a nonce below the signer's new account nonce, or above a gap
    /// left by a transaction the block rejected. Returns how many were dropped.
    pub fn on_commit(&mut self, block_txs: &[SignedTx], state: &State) -> usize {
        let before = self.txs.len();
        let mut touched = std::collections::BTreeSet::new();
        for tx in block_txs {
            self.remove(&tx.hash());
            touched.insert(tx.body.signer);
        }
        // Only the block's signers can have new nonces. The block may hold transactions this
        // mempool never saw (another validator's proposal), so look at all of them.
        for signer in touched {
            let Some(pending) = self.by_signer.get(&signer) else {
                continue;
            };
            let mut expected = state.nonce(&signer);
            let mut stale = Vec::new();
            for (&nonce, &h) in pending {
                if nonce == expected {
                    expected = expected.saturating_add(1);
                } else {
                    stale.push(h);
                }
            }
            for h in stale {
                self.remove(&h);
            }
        }
        before - self.txs.len()
    }

    fn remove(&mut self, hash: &Hash) -> Option<Pending> {
        let p = self.txs.remove(hash)?;
        self.arrival.remove(&p.seq);
        let signer = p.tx.body.signer;
        if let Some(nonces) = self.by_signer.get_mut(&signer) {
            nonces.remove(&p.tx.body.nonce);
            if nonces.is_empty() {
                self.by_signer.remove(&signer);
            }
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_ledger::{Genesis, GenesisAccount, Params};
    use gpunet_protocol::{Balances, BlockCtx, Denom, Msg, TxBody};

    const CHAIN: &str = "mempool-test";

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    fn addr(seed: u8) -> Address {
        Address::from_key(&key(seed).verifying_key())
    }

    fn units(n: u64) -> Amount {
        Amount::from_units(n).expect("small amounts fit")
    }

    /// A state where signers 1..=4 hold 100 usd and 100 gpn each.
    fn state() -> State {
        let accounts = (1..=4)
            .map(|seed| GenesisAccount {
                address: addr(seed),
                balances: Balances {
                    usd: units(100),
                    gpn: units(100),
                },
            })
            .collect();
        State::from_genesis(&Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_000,
            params: Params::default(),
            accounts,
        })
        .expect("valid genesis")
    }

    fn transfer(seed: u8, nonce: u64, usd: u64) -> SignedTx {
        TxBody {
            chain_id: CHAIN.into(),
            signer: addr(seed),
            nonce,
            fee: Params::default().min_tx_fee,
            msg: Msg::Transfer {
                to: addr(9),
                denom: Denom::Usd,
                amount: units(usd),
            },
        }
        .sign(&key(seed))
    }

    fn limits(max_txs: usize, max_pending_per_signer: usize) -> MempoolLimits {
        MempoolLimits {
            max_txs,
            max_txs_per_block: 100,
            max_pending_per_signer,
        }
    }

    fn admit(m: &mut Mempool, tx: &SignedTx, state: &State) -> Result<Hash, Rejection> {
        m.admit(&tx.encode(), state)
    }

    fn apply(state: &mut State, txs: &[SignedTx]) {
        let ctx = BlockCtx {
            height: state.height + 1,
            time_ms: state.time_ms + 500,
            seed: Hash::default(),
        };
        let outcome = gpunet_ledger::apply_block(state, &ctx, txs);
        assert!(outcome.receipts.iter().all(|r| r.rejection.is_none()));
    }

    #[test]
    fn a_full_mempool_refuses_with_mempool_full() {
        let s = state();
        let mut m = Mempool::new(limits(2, 64));
        admit(&mut m, &transfer(1, 0, 1), &s).expect("first fits");
        admit(&mut m, &transfer(2, 0, 1), &s).expect("second fits");
        assert_eq!(
            admit(&mut m, &transfer(3, 0, 1), &s),
            Err(Rejection::MempoolFull)
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn one_signer_cannot_hold_more_than_its_share() {
        let s = state();
        let mut m = Mempool::new(limits(100, 2));
        admit(&mut m, &transfer(1, 0, 1), &s).expect("fits");
        admit(&mut m, &transfer(1, 1, 1), &s).expect("fits");
        assert_eq!(
            admit(&mut m, &transfer(1, 2, 1), &s),
            Err(Rejection::MempoolFull)
        );
        admit(&mut m, &transfer(2, 0, 1), &s).expect("another signer still fits");
    }

    #[test]
    fn the_same_transaction_or_another_with_the_same_nonce_is_a_duplicate() {
        let s = state();
        let mut m = Mempool::new(MempoolLimits::default());
        let tx = transfer(1, 0, 1);
        admit(&mut m, &tx, &s).expect("first admission");
        assert_eq!(admit(&mut m, &tx, &s), Err(Rejection::DuplicateTx));
        assert_eq!(
            admit(&mut m, &transfer(1, 0, 2), &s),
            Err(Rejection::DuplicateTx)
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn nonces_count_pending_transactions_and_refuse_gaps_and_replays() {
        let mut s = state();
        let mut m = Mempool::new(MempoolLimits::default());
        assert_eq!(
            admit(&mut m, &transfer(1, 1, 1), &s),
            Err(Rejection::NonceGap)
        );
        admit(&mut m, &transfer(1, 0, 1), &s).expect("next nonce");
        assert_eq!(
            admit(&mut m, &transfer(1, 2, 1), &s),
            Err(Rejection::NonceGap)
        );
        admit(&mut m, &transfer(1, 1, 1), &s).expect("next after the pending one");
        assert_eq!(m.next_nonce(&addr(1)), Some(2));

        let block = m.select(10);
        apply(&mut s, &block);
        m.on_commit(&block, &s);
        assert!(m.is_empty());
        assert_eq!(
            admit(&mut m, &transfer(1, 0, 5), &s),
            Err(Rejection::NonceReplayed)
        );
    }

    #[test]
    fn message_rules_are_checked_only_when_the_signer_has_nothing_pending() {
        let s = state();
        let mut m = Mempool::new(MempoolLimits::default());
        assert_eq!(
            admit(&mut m, &transfer(1, 0, 1_000), &s),
            Err(Rejection::InsufficientFunds)
        );
        admit(&mut m, &transfer(1, 0, 1), &s).expect("affordable");
        // The ledger will judge this one against the state the first leaves behind.
        admit(&mut m, &transfer(1, 1, 1_000), &s).expect("only envelope and fee checked");
    }

    #[test]
    fn envelope_checks_run_in_rejection_code_order() {
        let s = state();
        let mut m = Mempool::new(MempoolLimits::default());
        let mut tx = transfer(1, 0, 1);
        tx.body.chain_id = "other".into();
        // Wrong chain id and (hence) a bad signature: the chain id is reported.
        assert_eq!(admit(&mut m, &tx, &s), Err(Rejection::WrongChainId));
        let mut tx = transfer(1, 0, 1);
        tx.signature[0] ^= 1;
        assert_eq!(admit(&mut m, &tx, &s), Err(Rejection::BadSignature));
        let mut tx = transfer(1, 0, 1);
        tx.body.fee = Amount::from_micros(1);
        let tx = tx.body.sign(&key(1));
        assert_eq!(admit(&mut m, &tx, &s), Err(Rejection::FeeTooLow));
        let bytes = transfer(1, 0, 1).encode();
        assert_eq!(
            m.admit(&bytes[..bytes.len() - 3], &s),
            Err(Rejection::MalformedTx)
        );
        assert!(m.is_empty());
    }

    #[test]
    fn a_batch_admits_like_one_by_one() {
        let s = state();
        let mut m = Mempool::new(MempoolLimits::default());
        let mut bad = transfer(3, 0, 1);
        bad.signature[1] ^= 1;
        let txs: Vec<Vec<u8>> = [
            transfer(1, 0, 1),
            transfer(1, 1, 1),
            bad,
            transfer(2, 1, 1),
            transfer(2, 0, 1),
        ]
        .iter()
        .map(SignedTx::encode)
        .collect();
        let results: Vec<_> = m
            .admit_many(&txs, &s)
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect();
        assert_eq!(
            results,
            vec![
                Ok(()),
                Ok(()),
                Err(Rejection::BadSignature),
                Err(Rejection::NonceGap),
                Ok(())
            ]
        );
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn blocks_take_transactions_in_arrival_order() {
        let s = state();
        let mut m = Mempool::new(MempoolLimits::default());
        let txs = [
            transfer(2, 0, 1),
            transfer(1, 0, 1),
            transfer(2, 1, 1),
            transfer(3, 0, 1),
        ];
        for tx in &txs {
            admit(&mut m, tx, &s).expect("valid");
        }
        assert_eq!(m.select(10), txs.to_vec());
        assert_eq!(m.select(2), txs[..2].to_vec());
        assert_eq!(m.len(), 4, "selecting removes nothing");
    }

    #[test]
    fn forwarded_transactions_get_more_room_than_a_clients() {
        let s = state();
        let from_peer = |m: &mut Mempool, tx: SignedTx| m.admit_verified_from(tx, &s, Origin::Peer);
        // Per signer: 2 from a client, 2 × PEER_ROOM_FACTOR from a peer.
        let mut m = Mempool::new(limits(100, 2));
        admit(&mut m, &transfer(1, 0, 1), &s).expect("fits");
        admit(&mut m, &transfer(1, 1, 1), &s).expect("fits");
        let third = transfer(1, 2, 1);
        assert_eq!(admit(&mut m, &third, &s), Err(Rejection::MempoolFull));
        from_peer(&mut m, third).expect("a peer's fits");
        from_peer(&mut m, transfer(1, 3, 1)).expect("a peer's fits");
        assert_eq!(
            from_peer(&mut m, transfer(1, 4, 1)),
            Err(Rejection::MempoolFull)
        );
        // In all: 2 counting every origin for a client, 2 × PEER_ROOM_FACTOR for a peer.
        let mut m = Mempool::new(limits(2, 64));
        from_peer(&mut m, transfer(1, 0, 1)).expect("fits");
        from_peer(&mut m, transfer(2, 0, 1)).expect("fits");
        assert_eq!(
            admit(&mut m, &transfer(3, 0, 1), &s),
            Err(Rejection::MempoolFull)
        );
        from_peer(&mut m, transfer(3, 0, 1)).expect("a peer's fits");
        from_peer(&mut m, transfer(4, 0, 1)).expect("a peer's fits");
        assert_eq!(
            from_peer(&mut m, transfer(3, 1, 1)),
            Err(Rejection::MempoolFull)
        );
        assert_eq!(PEER_ROOM_FACTOR, 2, "the cases above count on it");
    }

    #[test]
    fn only_client_transactions_are_forwarded_each_once_in_arrival_order() {
        let s = state();
        let mut m = Mempool::new(MempoolLimits::default());
        let mine = [transfer(1, 0, 1), transfer(1, 1, 1), transfer(3, 0, 1)];
        let from_peer = transfer(2, 0, 1);
        m.admit_verified(mine[0].clone(), &s).expect("valid");
        m.admit_verified_from(from_peer, &s, Origin::Peer)
            .expect("valid");
        m.admit_verified(mine[1].clone(), &s).expect("valid");

        let (first, cursor) = m.to_forward(0, 100);
        assert_eq!(first, mine[..2].to_vec(), "the peer's is not sent on");
        assert_eq!(m.to_forward(cursor, 100), (Vec::new(), cursor));

        m.admit_verified(mine[2].clone(), &s).expect("valid");
        let (second, cursor) = m.to_forward(cursor, 100);
        assert_eq!(second, mine[2..].to_vec(), "only what arrived since");

        // At most `max`; the cursor resumes at the first one left out.
        let (one, next) = m.to_forward(0, 1);
        assert_eq!(one, mine[..1].to_vec());
        assert_eq!(m.to_forward(next, 100).0, mine[1..].to_vec());
        assert_eq!(m.arrival_cursor(), cursor);
    }

    #[test]
    fn stale_transactions_are_dropped_after_a_block() {
        let mut s = state();
        let mut m = Mempool::new(MempoolLimits::default());
        for nonce in 0..3 {
            admit(&mut m, &transfer(1, nonce, 1), &s).expect("contiguous nonces");
        }
        admit(&mut m, &transfer(2, 0, 1), &s).expect("another signer");

        // This node's block takes only signer 1's first transaction.
        let block = vec![transfer(1, 0, 1)];
        apply(&mut s, &block);
        assert_eq!(m.on_commit(&block, &s), 1);
        assert_eq!(m.len(), 3);

        // A block decided elsewhere spends signer 1's nonce 1 with another transaction:
        // the pending nonce-1 transaction is stale, nonce 2 is next and stays.
        let block = vec![transfer(1, 1, 7)];
        apply(&mut s, &block);
        assert_eq!(m.on_commit(&block, &s), 1);
        assert!(!m.contains(&transfer(1, 1, 1).hash()));
        assert!(m.contains(&transfer(1, 2, 1).hash()));
        assert!(m.contains(&transfer(2, 0, 1).hash()));
        assert_eq!(m.next_nonce(&addr(1)), Some(3));
    }
}
