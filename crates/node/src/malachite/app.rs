//! The application side of Malachite: answers the engine's requests (`AppMsg`) for gpunet.
//!
//! - `GetValue`: when this validator proposes, it builds a block from the mempool on the tip
//!   (`ChainTip::propose`), keeps it, and streams it to the others as one signed part.
//! - `ReceivedProposalPart` / `ProcessSyncedValue`: a block from another validator (live or
//!   synced) is checked against the tip and applied to a scratch copy of the state; anything
//!   wrong makes it `Invalid`, so this validator prevotes nil.
//! - `Decided`: the certificate is written, the block goes to `MalachiteOrderer::next_block`
//!   and so to the node's one commit path; consensus moves on only after the commit.
//! - `GetDecidedValues`: committed blocks with their certificates, for peers catching up.
//!
//! Heights advance one at a time and only after the previous block is committed, so when a
//! proposal for the current height is checked, the committed tip is exactly its parent.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gpunet_protocol::{Block, SignedTx};
use malachitebft_app_channel::app::engine::host::{HeightParams, Next, SyncedValueOutcome};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, Height as _, Round, Validity,
};
use malachitebft_app_channel::app::types::sync::RawDecidedValue;
use malachitebft_app_channel::app::types::{LocallyProposedValue, ProposedValue};
use malachitebft_app_channel::{AppMsg, Channels, NetworkMsg};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::certs::CertStore;
use super::codec::WireCertificate;
use super::context::{BlockId, BlockPart, GpunetContext, Height, ValidatorSet, ValidatorSigner};
use crate::chain::{Shared, Tip};
use crate::orderer::{OrdererContext, wall_clock_ms};

/// Most heights served in one sync answer.
const MAX_SYNC_HEIGHTS_PER_REQUEST: u64 = 32;
/// How far ahead of this node's clock a proposed block's time may be.
const MAX_CLOCK_DRIFT_MS: u64 = 5_000;
/// Proposals for heights after the current one are kept only this many heights ahead …
const MAX_FUTURE_HEIGHTS: u64 = 2;
/// … and at most this many of them in all.
const MAX_FUTURE_PARTS: usize = 64;

/// A decided block on its way to the commit path; `committed` fires once it is durable.
pub(crate) struct DecidedBlock {
    pub block: Block,
    pub committed: oneshot::Sender<()>,
}

/// Why the application loop stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    #[error("consensus decided block {block_id} at height {height}, which this node never saw")]
    UnknownDecidedBlock { height: u64, block_id: BlockId },
    #[error("cannot record the commit certificate of height {height}")]
    Certificate {
        height: u64,
        #[source]
        source: super::certs::CertStoreError,
    },
    #[error("the node stopped taking decided blocks")]
    NodeGone,
}

pub(crate) struct App {
    pub ctx: OrdererContext,
    pub shared: Arc<Shared>,
    pub signer: Arc<ValidatorSigner>,
    pub validators: ValidatorSet,
    pub params: HeightParams<GpunetContext>,
    pub certs: Arc<CertStore>,
    pub max_txs_per_block: usize,
    pub block_ms: u64,
    pub decided: mpsc::Sender<DecidedBlock>,
    pub current: Height,
    /// Blocks proposed or received for the current height (and, briefly, the next).
    pub blocks: BTreeMap<(Height, BlockId), Block>,
    /// Parts for heights not started yet, checked when their round starts.
    pub future: BTreeMap<(Height, Round), Vec<BlockPart>>,
    pub last_commit: Instant,
    /// Test-only misbehaviour, with the key the forgeries are signed with.
    pub fault: Option<(super::Fault, [u8; 32])>,
}

impl App {
    pub(crate) async fn run(
        mut self,
        mut channels: Channels<GpunetContext>,
    ) -> Result<(), AppError> {
        while let Some(msg) = channels.consensus.recv().await {
            self.handle(msg, &channels.network).await?;
        }
        Ok(())
    }

    fn chain_id(&self) -> &str {
        &self.shared.chain_id
    }

    async fn handle(
        &mut self,
        msg: AppMsg<GpunetContext>,
        network: &mpsc::Sender<NetworkMsg<GpunetContext>>,
    ) -> Result<(), AppError> {
        // A dropped reply channel only means consensus no longer waits for that answer.
        match msg {
            AppMsg::ConsensusReady { reply } => {
                let start = Height(self.ctx.tip().height).increment();
                self.current = start;
                tracing::info!(height = %start, "consensus ready");
                let _ = reply.send((start, self.params.clone()));
            }
            AppMsg::StartedRound {
                height,
                round,
                proposer,
                reply_value,
                ..
            } => {
                tracing::debug!(%height, %round, %proposer, "round started");
                self.current = height;
                self.blocks.retain(|(h, _), _| *h >= height);
                self.future.retain(|(h, _), _| *h >= height);
                let parts = self.future.remove(&(height, round)).unwrap_or_default();
                let mut values = Vec::new();
                for part in parts {
                    if let Some(v) = self.on_part(part).await {
                        values.push(v);
                    }
                }
                let _ = reply_value.send(values);
            }
            AppMsg::GetValue {
                height,
                round,
                timeout,
                reply,
            } => {
                // Pace blocks: no sooner than `block_ms` after the last commit, and never so
                // late that the proposal misses its own timeout.
                let earliest = self.last_commit + Duration::from_millis(self.block_ms);
                let latest = Instant::now() + timeout / 2;
                tokio::time::sleep_until(earliest.min(latest)).await;
                let tip = self.ctx.tip();
                if Height(tip.height).increment() != height {
                    tracing::warn!(%height, tip = tip.height, "asked to propose off the tip");
                    return Ok(());
                }
                let mut block = tip.propose(
                    self.ctx.pending_txs(self.max_txs_per_block),
                    wall_clock_ms(),
                );
                if let Some((super::Fault::InvalidProposals, key)) = self.fault {
                    forge_theft(&self.shared.tip(), &mut block, key);
                }
                let id = BlockId(block.header.hash().0);
                let bytes = borsh::to_vec(&block).expect("borsh encoding into a Vec cannot fail");
                tracing::debug!(%height, %round, txs = block.txs.len(), block_id = %id, "proposing");
                self.keep(height, id, block).await;
                let _ = reply.send(LocallyProposedValue::new(height, round, id));
                let part = self.signer.sign_part(height, round, Round::Nil, bytes, id);
                publish(network, part).await;
            }
            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }
            AppMsg::VerifyVoteExtensions {
                extensions, reply, ..
            } => {
                let _ = reply.send(extensions.into_iter().map(|(a, _)| (a, Ok(()))).collect());
            }
            AppMsg::RestreamProposal {
                height,
                round,
                valid_round,
                value_id,
                ..
            } => {
                if let Some(block) = self.find(height, value_id) {
                    let bytes =
                        borsh::to_vec(&block).expect("borsh encoding into a Vec cannot fail");
                    let part = self
                        .signer
                        .sign_part(height, round, valid_round, bytes, value_id);
                    publish(network, part).await;
                } else {
                    tracing::warn!(%height, %round, block_id = %value_id, "cannot restream a block this node does not hold");
                }
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                let first = self.certs.first_height().ok().flatten();
                let tip = self.ctx.tip().height;
                let _ = reply.send(Height(first.unwrap_or(tip.saturating_add(1))));
            }
            AppMsg::ReceivedProposalPart { part, reply, .. } => {
                let value = match part.content {
                    StreamContent::Data(p) => self.on_part(p).await,
                    StreamContent::Fin => None,
                };
                let _ = reply.send(value);
            }
            AppMsg::Decided {
                certificate,
                extensions,
                reply,
            } => {
                let height = certificate.height;
                let block_id = certificate.value_id;
                let Some(block) = self.take_decided(height, block_id) else {
                    return Err(AppError::UnknownDecidedBlock {
                        height: height.0,
                        block_id,
                    });
                };
                let cert = ExtendedCommitCertificate::from_commit_certificate_and_extensions(
                    certificate,
                    extensions,
                );
                self.record_certificate(&cert).await?;
                let (committed, done) = oneshot::channel();
                tracing::info!(%height, round = %cert.round, txs = block.txs.len(), %block_id, "decided");
                self.decided
                    .send(DecidedBlock { block, committed })
                    .await
                    .map_err(|_| AppError::NodeGone)?;
                done.await.map_err(|_| AppError::NodeGone)?;
                self.last_commit = Instant::now();
                let _ = reply.send(());
            }
            AppMsg::Finalized {
                certificate, reply, ..
            } => {
                let next = certificate.height.increment();
                self.current = next;
                let _ = reply.send(Next::Start(next, self.params.clone()));
            }
            AppMsg::GetDecidedValues { range, reply } => {
                let _ = reply.send(self.decided_values(*range.start(), *range.end()));
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let Ok(block) = borsh::from_slice::<Block>(&value_bytes) else {
                    let _ = reply.send(SyncedValueOutcome::PeerFault);
                    return Ok(());
                };
                if height != self.current {
                    let _ = reply.send(SyncedValueOutcome::LocalTransientError);
                    return Ok(());
                }
                let id = BlockId(block.header.hash().0);
                let validity = self.check(&block).await;
                if validity.is_valid() {
                    self.keep(height, id, block).await;
                }
                let _ = reply.send(SyncedValueOutcome::Verdict(ProposedValue {
                    height,
                    round,
                    valid_round: Round::Nil,
                    proposer,
                    value: id,
                    validity,
                }));
            }
        }
        Ok(())
    }

    /// Keeps a proposed or accepted block until its height is decided, in memory and on disk.
    async fn keep(&mut self, height: Height, id: BlockId, block: Block) {
        let bytes = borsh::to_vec(&block).expect("borsh encoding into a Vec cannot fail");
        let certs = Arc::clone(&self.certs);
        let written =
            tokio::task::spawn_blocking(move || certs.put_undecided(height.0, id.0, &bytes)).await;
        if !matches!(written, Ok(Ok(()))) {
            // Only a crash before the decision needs the disk copy; keep going.
            tracing::warn!(%height, block_id = %id, "cannot keep the undecided block on disk");
        }
        self.blocks.insert((height, id), block);
    }

    /// The block consensus decided, from memory or, after a restart, from disk.
    fn take_decided(&mut self, height: Height, id: BlockId) -> Option<Block> {
        self.blocks
            .remove(&(height, id))
            .or_else(|| self.kept_on_disk(height, id))
    }

    /// A block kept for (`height`, `id`), from memory or disk.
    fn find(&self, height: Height, id: BlockId) -> Option<Block> {
        self.blocks
            .get(&(height, id))
            .cloned()
            .or_else(|| self.kept_on_disk(height, id))
    }

    fn kept_on_disk(&self, height: Height, id: BlockId) -> Option<Block> {
        let bytes = self.certs.undecided(height.0, id.0).ok().flatten()?;
        borsh::from_slice(&bytes).ok()
    }

    /// A complete proposal part: `None` if it is not for now (kept for later if it is for a
    /// coming height) or not signed by a validator; otherwise the value with its verdict.
    async fn on_part(&mut self, part: BlockPart) -> Option<ProposedValue<GpunetContext>> {
        let key = self.validators.get(&part.proposer)?.public_key;
        if !part.signed_by(self.chain_id(), &key) {
            tracing::warn!(proposer = %part.proposer, "proposal part with a bad signature");
            return None;
        }
        if part.height > self.current {
            let ahead = part.height.0 - self.current.0;
            let stored: usize = self.future.values().map(Vec::len).sum();
            if ahead <= MAX_FUTURE_HEIGHTS && stored < MAX_FUTURE_PARTS {
                self.future
                    .entry((part.height, part.round))
                    .or_default()
                    .push(part);
            }
            return None;
        }
        if part.height < self.current {
            return None;
        }
        let validity = match borsh::from_slice::<Block>(&part.block) {
            Ok(block) if block.header.hash().0 == part.block_id.0 => {
                let validity = self.check(&block).await;
                if validity.is_valid() {
                    self.keep(part.height, part.block_id, block).await;
                }
                validity
            }
            Ok(_) => {
                tracing::warn!(proposer = %part.proposer, "proposal part whose block does not hash to its id");
                Validity::Invalid
            }
            Err(_) => {
                tracing::warn!(proposer = %part.proposer, "proposal part with an undecodable block");
                Validity::Invalid
            }
        };
        Some(ProposedValue {
            height: part.height,
            round: part.round,
            valid_round: part.pol_round,
            proposer: part.proposer,
            value: part.block_id,
            validity,
        })
    }

    /// Checks a block against the committed tip on a blocking thread.
    async fn check(&self, block: &Block) -> Validity {
        let tip = self.shared.tip();
        let shared = Arc::clone(&self.shared);
        let block = block.clone();
        let max = self.max_txs_per_block;
        let now = wall_clock_ms();
        let checked = tokio::task::spawn_blocking(move || {
            // Signatures this node verified already (its mempool's, or a proposal's it checked)
            // are not verified again: they are the bulk of a check. The commit of this block
            // then verifies none of them.
            let hashes: Vec<_> = block.txs.iter().map(SignedTx::hash).collect();
            let verified = shared.signatures_verified(&hashes);
            let result = check_block(&tip, &block, max, now, |i| verified[i]);
            if result.is_ok() {
                shared.verified_txs().remember(hashes);
            }
            result
        });
        match checked.await {
            Ok(Ok(())) => Validity::Valid,
            Ok(Err(why)) => {
                tracing::warn!(%why, "voting nil on an invalid block");
                self.shared.metrics.proposal_refused();
                Validity::Invalid
            }
            Err(e) => {
                tracing::warn!(error = %e, "block check failed; voting nil");
                Validity::Invalid
            }
        }
    }

    async fn record_certificate(
        &self,
        cert: &ExtendedCommitCertificate<GpunetContext>,
    ) -> Result<(), AppError> {
        let height = cert.height.0;
        let bytes = borsh::to_vec(&WireCertificate::from_certificate(cert))
            .expect("borsh encoding into a Vec cannot fail");
        let certs = Arc::clone(&self.certs);
        tokio::task::spawn_blocking(move || certs.put(height, &bytes))
            .await
            .expect("a certificate write does not panic")
            .map_err(|source| AppError::Certificate { height, source })
    }

    /// Committed blocks from `from` to `to` with their certificates, stopping at the first
    /// height this node lacks, at most [`MAX_SYNC_HEIGHTS_PER_REQUEST`].
    fn decided_values(&self, from: Height, to: Height) -> Vec<RawDecidedValue<GpunetContext>> {
        let last =
            to.0.min(from.0.saturating_add(MAX_SYNC_HEIGHTS_PER_REQUEST - 1));
        let mut out = Vec::new();
        for h in from.0..=last {
            let Ok(Some(block)) = self.shared.store.block(h) else {
                break;
            };
            let Ok(Some(cert)) = self.certs.get(h) else {
                break;
            };
            let Ok(cert) = borsh::from_slice::<WireCertificate>(&cert) else {
                tracing::error!(height = h, "stored commit certificate does not decode");
                break;
            };
            out.push(RawDecidedValue::new(
                Bytes::from(block),
                cert.into_certificate(),
            ));
        }
        out
    }
}

/// Fault injection ([`super::Fault::InvalidProposals`]): appends to `block` a transfer of the
/// richest account's dollars to the key's own account, signed with that key rather than the
/// owner's. Honest validators must refuse the block (bad signature).
fn forge_theft(tip: &Tip, block: &mut Block, key: [u8; 32]) {
    let key = ed25519_dalek::SigningKey::from_bytes(&key);
    let thief = gpunet_protocol::Address::from_key(&key.verifying_key());
    let Some((victim, account)) = tip
        .state
        .accounts
        .iter()
        .filter(|(a, _)| **a != thief)
        .max_by_key(|(_, acc)| acc.balances.usd)
    else {
        return;
    };
    let forged = gpunet_protocol::TxBody {
        chain_id: tip.state.chain_id.clone(),
        signer: *victim,
        nonce: account.nonce,
        fee: tip.state.params.min_tx_fee,
        msg: gpunet_protocol::Msg::Transfer {
            to: thief,
            denom: gpunet_protocol::Denom::Usd,
            amount: account.balances.usd,
        },
    }
    .sign(&key);
    tracing::warn!(
        height = block.header.height,
        %victim,
        "FAULT INJECTION: proposing a block with a forged transfer"
    );
    block.txs.push(forged);
    block.header.txs_hash = Block::txs_hash(&block.txs);
}

/// Sends one part and the end of its stream. The stream id is (height, round), unique per
/// proposer, which is what receivers key streams on.
async fn publish(network: &mpsc::Sender<NetworkMsg<GpunetContext>>, part: BlockPart) {
    let mut id = part.height.0.to_be_bytes().to_vec();
    id.extend_from_slice(&part.round.as_i64().to_be_bytes());
    let stream_id = StreamId::new(Bytes::from(id));
    let msgs = [
        StreamMessage::new(stream_id.clone(), 0, StreamContent::Data(part)),
        StreamMessage::new(stream_id, 1, StreamContent::Fin),
    ];
    for m in msgs {
        if network
            .send(NetworkMsg::PublishProposalPart(m))
            .await
            .is_err()
        {
            tracing::warn!("network actor gone; proposal part not published");
            return;
        }
    }
}

/// Whether `block` may be committed on `tip`: it extends the tip, its time is sane, its
/// transactions are signed and within the block limit, and applying it to a copy of the
/// state keeps every ledger invariant. `signature_verified(i)` says that transaction `i`'s
/// signature is already known good (this node verified those exact bytes); the others' are
/// verified here.
pub(crate) fn check_block(
    tip: &Tip,
    block: &Block,
    max_txs_per_block: usize,
    now_ms: u64,
    signature_verified: impl Fn(usize) -> bool,
) -> Result<(), String> {
    let h = &block.header;
    if h.chain_id != tip.state.chain_id {
        return Err(format!("chain id {:?}", h.chain_id));
    }
    if Some(h.height) != tip.state.height.checked_add(1) {
        return Err(format!(
            "height {} on a tip at {}",
            h.height, tip.state.height
        ));
    }
    if h.prev_hash != tip.block_hash {
        return Err(format!(
            "parent {} is not the tip {}",
            h.prev_hash, tip.block_hash
        ));
    }
    if h.prev_state_root != tip.state_root {
        return Err(format!(
            "prev_state_root {} is not the tip's",
            h.prev_state_root
        ));
    }
    if h.time_ms < tip.state.time_ms {
        return Err(format!(
            "time {} before the tip's {}",
            h.time_ms, tip.state.time_ms
        ));
    }
    if h.time_ms > now_ms.saturating_add(MAX_CLOCK_DRIFT_MS) {
        return Err(format!(
            "time {} is in the future (now {now_ms})",
            h.time_ms
        ));
    }
    if h.txs_hash != Block::txs_hash(&block.txs) {
        return Err("txs_hash does not match the transactions".to_owned());
    }
    if block.txs.len() > max_txs_per_block {
        return Err(format!(
            "{} transactions, limit {max_txs_per_block}",
            block.txs.len()
        ));
    }
    if let Some((_, tx)) = block
        .txs
        .iter()
        .enumerate()
        .find(|(i, tx)| !signature_verified(*i) && tx.verify_signature().is_err())
    {
        return Err(format!("transaction {} has a bad signature", tx.hash()));
    }
    let mut scratch = tip.state.clone();
    let ctx = block.ctx();
    catch_unwind(AssertUnwindSafe(|| {
        gpunet_ledger::apply_block(&mut scratch, &ctx, &block.txs)
    }))
    .map_err(|_| "applying it breaks a ledger invariant (panic)".to_owned())?;
    gpunet_ledger::invariants::check_changes(&tip.state, &scratch)
        .map_err(|v| format!("applying it breaks a ledger invariant: {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_ledger::{Genesis, GenesisAccount, Params, State};
    use gpunet_protocol::{Address, Amount, Balances, Denom, Hash, Msg, SignedTx, TxBody};

    use crate::orderer::ChainTip;

    const CHAIN: &str = "malachite-test";
    const NOW_MS: u64 = 10_000;

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    fn addr(seed: u8) -> Address {
        Address::from_key(&key(seed).verifying_key())
    }

    fn units(n: u64) -> Amount {
        Amount::from_units(n).expect("small amounts fit")
    }

    fn tip() -> Tip {
        let state = State::from_genesis(&Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_000,
            params: Params::default(),
            accounts: vec![GenesisAccount {
                address: addr(1),
                balances: Balances {
                    usd: units(100),
                    gpn: units(100),
                },
            }],
        })
        .expect("valid genesis");
        // Any root does: the check compares the proposal's with the tip's.
        let state_root = state.digest();
        Tip {
            state,
            block_hash: Hash([7; 32]),
            state_root,
        }
    }

    fn chain_tip(t: &Tip) -> ChainTip {
        ChainTip {
            chain_id: t.state.chain_id.clone(),
            height: t.state.height,
            time_ms: t.state.time_ms,
            block_hash: t.block_hash,
            state_root: t.state_root,
        }
    }

    fn transfer(nonce: u64, usd: u64) -> SignedTx {
        TxBody {
            chain_id: CHAIN.into(),
            signer: addr(1),
            nonce,
            fee: Params::default().min_tx_fee,
            msg: Msg::Transfer {
                to: addr(2),
                denom: Denom::Usd,
                amount: units(usd),
            },
        }
        .sign(&key(1))
    }

    /// Proposes `txs` on the test tip, lets `edit` spoil it, and checks it.
    fn check(txs: Vec<SignedTx>, edit: impl FnOnce(&mut Block)) -> Result<(), String> {
        let t = tip();
        let mut block = chain_tip(&t).propose(txs, NOW_MS);
        edit(&mut block);
        check_block(&t, &block, 10, NOW_MS, |_| false)
    }

    #[test]
    fn a_block_of_good_transfers_is_valid() {
        assert_eq!(check(vec![transfer(0, 5), transfer(1, 5)], |_| {}), Ok(()));
    }

    #[test]
    fn a_transfer_the_ledger_rejects_does_not_spoil_the_block() {
        // Overdrawn: the ledger refuses it with a receipt; the block itself is fine.
        assert_eq!(check(vec![transfer(0, 1_000)], |_| {}), Ok(()));
    }

    #[test]
    fn only_signatures_not_verified_before_are_checked() {
        let t = tip();
        let mut forged = transfer(1, 5);
        forged.signature[0] ^= 1;
        let block = chain_tip(&t).propose(vec![transfer(0, 5), forged], NOW_MS);
        // The forged one was never verified: refused, whatever is known of the first.
        assert!(check_block(&t, &block, 10, NOW_MS, |i| i == 0).is_err());
        // Signatures said to be verified are not checked again: even the forged one passes,
        // which shows the check was skipped (the mempool vouches for bytes it verified).
        assert_eq!(check_block(&t, &block, 10, NOW_MS, |_| true), Ok(()));
    }

    #[test]
    fn bad_blocks_are_voted_nil() {
        type Spoil = Box<dyn FnOnce(&mut Block)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("other chain", Box::new(|b| b.header.chain_id = "x".into())),
            ("skips a height", Box::new(|b| b.header.height += 1)),
            (
                "wrong parent",
                Box::new(|b| b.header.prev_hash = Hash([0; 32])),
            ),
            (
                "wrong root",
                Box::new(|b| b.header.prev_state_root = Hash([0; 32])),
            ),
            ("time before tip", Box::new(|b| b.header.time_ms = 0)),
            (
                "time in the future",
                Box::new(|b| b.header.time_ms = NOW_MS + 60_000),
            ),
            ("txs_hash", Box::new(|b| b.txs.clear())),
            (
                "bad signature",
                Box::new(|b| {
                    b.txs[0].signature[0] ^= 1;
                    b.header.txs_hash = Block::txs_hash(&b.txs);
                }),
            ),
            (
                "too many txs",
                Box::new(|b| {
                    b.txs = (0..11).map(|n| transfer(n, 1)).collect();
                    b.header.txs_hash = Block::txs_hash(&b.txs);
                }),
            ),
        ];
        for (name, edit) in cases {
            assert!(
                check(vec![transfer(0, 5)], edit).is_err(),
                "{name} was accepted"
            );
        }
    }
}
