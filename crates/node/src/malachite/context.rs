//! gpunet's Malachite `Context`: the concrete types consensus runs on.
//!
//! The consensus *value* is only a block id (the BLAKE3 hash of the block header, which binds
//! the transactions through `txs_hash`); the block itself travels as one proposal part and is
//! kept by the application until decided. Votes and proposals are signed with the validator's
//! ed25519 key over a domain-tagged borsh encoding that includes the chain id, so a signature
//! cannot be replayed on another chain or as another kind of message.
//!
//! Every type here is encoded with borsh (see `codec`); none leaves `crates/node`.

use std::cmp::Reverse;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_app_channel::app::types::core::{
    self as mc, NilOrVal, Round, SignedExtension, SignedMessage, ValidatorProof,
    VoteExtensionScope, VoteType, VotingPower,
};
use malachitebft_signing::{Signer, VerificationResult, Verifier};
use malachitebft_signing_ed25519::{PrivateKey, PublicKey, Signature as DalekSig};

/// Domain tags of everything a validator key signs.
const TAG_VOTE: &[u8] = b"gpunet/consensus/vote/v1";
const TAG_PROPOSAL: &[u8] = b"gpunet/consensus/proposal/v1";
const TAG_PART: &[u8] = b"gpunet/consensus/part/v1";
const TAG_EXTENSION: &[u8] = b"gpunet/consensus/extension/v1";

/// A block height as consensus sees it; equal to the ledger's height of that block.
#[derive(
    Clone,
    Copy,
    Default,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mc::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(
            self.0
                .checked_add(n)
                .expect("a chain of 2^64 blocks is out of reach"),
        )
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address: its ed25519 public key.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct ValidatorAddress(pub [u8; 32]);

impl ValidatorAddress {
    pub fn of(key: &PublicKey) -> ValidatorAddress {
        ValidatorAddress(*key.as_bytes())
    }
}

impl fmt::Display for ValidatorAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl mc::Address for ValidatorAddress {}

/// What consensus decides on: the hash of a block header.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct BlockId(pub [u8; 32]);

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl mc::Value for BlockId {
    type Id = BlockId;

    fn id(&self) -> BlockId {
        *self
    }
}

/// An ed25519 signature in a form borsh can encode.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Sig(pub [u8; 64]);

impl From<DalekSig> for Sig {
    fn from(s: DalekSig) -> Sig {
        Sig(s.to_bytes())
    }
}

impl Sig {
    fn verify(&self, key: &PublicKey, msg: &[u8]) -> bool {
        key.verify(msg, &DalekSig::from_bytes(self.0)).is_ok()
    }
}

/// A key or signature of the wrong length or form.
#[derive(Debug, Clone, Copy)]
pub struct KeyDecodingError;

impl fmt::Display for KeyDecodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a valid ed25519 key or signature")
    }
}

/// ed25519 with borsh-encodable signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ed25519Scheme;

impl mc::SigningScheme for Ed25519Scheme {
    type DecodingError = KeyDecodingError;
    type Signature = Sig;
    type PublicKey = PublicKey;
    type PrivateKey = PrivateKey;

    fn decode_signature(bytes: &[u8]) -> Result<Sig, KeyDecodingError> {
        <[u8; 64]>::try_from(bytes)
            .map(Sig)
            .map_err(|_| KeyDecodingError)
    }

    fn encode_signature(signature: &Sig) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, KeyDecodingError> {
        let raw = <[u8; 32]>::try_from(bytes).map_err(|_| KeyDecodingError)?;
        PublicKey::from_bytes(raw).map_err(|_| KeyDecodingError)
    }

    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.as_bytes().to_vec()
    }
}

/// One validator and its voting power.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    pub address: ValidatorAddress,
    pub public_key: PublicKey,
    pub voting_power: VotingPower,
}

impl Validator {
    pub fn new(public_key: PublicKey, voting_power: VotingPower) -> Validator {
        Validator {
            address: ValidatorAddress::of(&public_key),
            public_key,
            voting_power,
        }
    }
}

impl mc::Validator<GpunetContext> for Validator {
    fn address(&self) -> &ValidatorAddress {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn voting_power(&self) -> VotingPower {
        self.voting_power
    }
}

/// The most slots a proposer schedule has (4 bytes each). A set whose powers, divided by their
/// gcd, add up to more is scheduled on powers scaled down to fit.
const PROPOSER_SCHEDULE_MAX_SLOTS: u64 = 1 << 16;

/// The validators, sorted by address, and the order they propose in. Every one of them votes at
/// every height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    total_power: VotingPower,
    schedule: ProposerSchedule,
}

/// One cycle of proposers: slot `s` holds the index (into the sorted validators) of the
/// proposer at step `s`, and the cycle repeats. Shared, because Malachite clones the validator
/// set for every height.
#[derive(Clone, PartialEq, Eq)]
struct ProposerSchedule(Arc<[u32]>);

impl fmt::Debug for ProposerSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProposerSchedule({} slots)", self.0.len())
    }
}

impl ValidatorSet {
    /// Sorts by address and builds the proposer schedule; `None` if empty, if an address
    /// repeats, if a power is zero or if the total power does not fit in a `u64`.
    pub fn new(mut validators: Vec<Validator>) -> Option<ValidatorSet> {
        validators.sort_by_key(|v| v.address);
        let distinct = validators.windows(2).all(|w| w[0].address != w[1].address);
        let powered = validators.iter().all(|v| v.voting_power > 0);
        let indexable = u32::try_from(validators.len()).is_ok();
        if validators.is_empty() || !distinct || !powered || !indexable {
            return None;
        }
        let total_power = validators
            .iter()
            .try_fold(0u64, |total, v| total.checked_add(v.voting_power))?;
        let powers: Vec<u64> = validators.iter().map(|v| v.voting_power).collect();
        let schedule = ProposerSchedule(proposer_schedule(&powers, total_power).into());
        Some(ValidatorSet {
            validators,
            total_power,
            schedule,
        })
    }

    pub fn get(&self, address: &ValidatorAddress) -> Option<&Validator> {
        self.validators
            .binary_search_by_key(address, |v| v.address)
            .ok()
            .map(|i| &self.validators[i])
    }
}

impl mc::ValidatorSet<GpunetContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> VotingPower {
        self.total_power
    }

    fn get_by_address(&self, address: &ValidatorAddress) -> Option<&Validator> {
        self.get(address)
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// One cycle of proposers for validators of these `powers` (all positive, adding up to
/// `total`): slot `s` names the proposer at step `s` by its index in `powers`.
///
/// Each validator gets slots in proportion to its power: exactly `power / gcd` of them, or, when
/// those add up to more than [`PROPOSER_SCHEDULE_MAX_SLOTS`], `power` scaled down to fit (each
/// at least one, so no validator is left out). The heaviest validator (ties: lowest index)
/// takes its slots first, spread evenly over the whole cycle (free slot `⌈k·free/slots⌉` for
/// the `k`-th); each next one spreads its slots the same way over the slots still free. A
/// validator holding no more power than all validators after it combined takes no two adjacent
/// free slots, and later ones fill the slots between, so it is never chosen twice in a row (also
/// across the end of the cycle). With equal powers this is plain round-robin in index order.
///
/// The smooth weighted round-robin of Tendermint (every step each priority grows by its power,
/// the highest is chosen and loses the total) is no good here: its priorities return to zero
/// after one cycle, which starts with the heaviest validator and ends with the one still owed,
/// often the heaviest again (powers 1, 1, 2 give `C A B C C A B C`).
///
/// Integer arithmetic only: the schedule decides who proposes and must be the same on every
/// validator. Cost: slots × validators steps, once per validator set.
fn proposer_schedule(powers: &[u64], total: u64) -> Vec<u32> {
    let slots = slot_counts(powers, total);
    let len = slots.iter().sum();
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| (Reverse(slots[i]), i));
    let mut schedule = vec![0u32; len];
    let mut free: Vec<usize> = (0..len).collect();
    for i in order {
        let (want, had) = (slots[i], free.len());
        let index =
            u32::try_from(i).expect("ValidatorSet::new refuses more than u32::MAX validators");
        let mut taken = 0;
        free = free
            .into_iter()
            .enumerate()
            .filter_map(|(j, slot)| {
                if taken < want && j == (taken * had).div_ceil(want) {
                    schedule[slot] = index;
                    taken += 1;
                    None
                } else {
                    Some(slot)
                }
            })
            .collect();
        debug_assert_eq!(taken, want, "every validator gets all its slots");
    }
    debug_assert!(free.is_empty(), "every slot has a proposer");
    schedule
}

/// How many slots of the proposer schedule each of `powers` (all positive, adding up to
/// `total`) gets; see [`proposer_schedule`].
fn slot_counts(powers: &[u64], total: u64) -> Vec<usize> {
    let divisor = powers.iter().fold(0, |g, &p| gcd(g, p));
    let counts: Vec<u64> = if total / divisor <= PROPOSER_SCHEDULE_MAX_SLOTS {
        powers.iter().map(|p| p / divisor).collect()
    } else {
        let scaled: Vec<u64> = powers
            .iter()
            .map(|&p| {
                let share =
                    u128::from(p) * u128::from(PROPOSER_SCHEDULE_MAX_SLOTS) / u128::from(total);
                u64::try_from(share)
                    .expect("a share of the slots fits in u64")
                    .max(1)
            })
            .collect();
        let divisor = scaled.iter().fold(0, |g, &p| gcd(g, p));
        scaled.iter().map(|p| p / divisor).collect()
    };
    counts
        .into_iter()
        .map(|c| {
            usize::try_from(c).expect("a validator's slots are at most PROPOSER_SCHEDULE_MAX_SLOTS")
        })
        .collect()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A proposal for `value` at (`height`, `round`), re-proposing one locked at `pol_round`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub value: BlockId,
    pub pol_round: Round,
    pub proposer: ValidatorAddress,
}

impl mc::Proposal<GpunetContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &BlockId {
        &self.value
    }
    fn take_value(self) -> BlockId {
        self.value
    }
    fn pol_round(&self) -> Round {
        self.pol_round
    }
    fn validator_address(&self) -> &ValidatorAddress {
        &self.proposer
    }
}

/// A prevote or precommit. Vote extensions are not used (always `None`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub vote_type: VoteType,
    pub height: Height,
    pub round: Round,
    pub value: NilOrVal<BlockId>,
    pub validator: ValidatorAddress,
    pub extension: Option<SignedExtension<GpunetContext>>,
}

impl mc::Vote<GpunetContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &NilOrVal<BlockId> {
        &self.value
    }
    fn take_value(self) -> NilOrVal<BlockId> {
        self.value
    }
    fn vote_type(&self) -> VoteType {
        self.vote_type
    }
    fn validator_address(&self) -> &ValidatorAddress {
        &self.validator
    }
    fn extension(&self) -> Option<&SignedExtension<GpunetContext>> {
        self.extension.as_ref()
    }
    fn take_extension(&mut self) -> Option<SignedExtension<GpunetContext>> {
        self.extension.take()
    }
    fn extend(self, extension: SignedExtension<GpunetContext>) -> Self {
        Vote {
            extension: Some(extension),
            ..self
        }
    }
}

/// The whole proposed block in one part, signed by the round's proposer. Blocks are bounded by
/// `max_txs_per_block`, so one part stays well under the gossip size limit.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockPart {
    pub height: Height,
    pub round: Round,
    pub pol_round: Round,
    pub proposer: ValidatorAddress,
    /// The borsh encoding of a `gpunet_protocol::Block`.
    pub block: Vec<u8>,
    pub block_id: BlockId,
    pub signature: Sig,
}

impl BlockPart {
    fn signing_bytes(
        chain_id: &str,
        height: Height,
        round: Round,
        pol_round: Round,
        proposer: ValidatorAddress,
        block_id: BlockId,
    ) -> Vec<u8> {
        tagged(
            TAG_PART,
            chain_id,
            &(height, round, pol_round, proposer, block_id),
        )
    }

    /// Whether `signature` is `proposer`'s over the part's header (the block itself is bound
    /// by `block_id`, which the receiver recomputes).
    pub fn signed_by(&self, chain_id: &str, key: &PublicKey) -> bool {
        let msg = BlockPart::signing_bytes(
            chain_id,
            self.height,
            self.round,
            self.pol_round,
            self.proposer,
            self.block_id,
        );
        self.signature.verify(key, &msg)
    }
}

impl mc::ProposalPart<GpunetContext> for BlockPart {
    fn is_first(&self) -> bool {
        true
    }
    fn is_last(&self) -> bool {
        true
    }
}

/// gpunet's consensus context. It carries nothing: the chain id that every signature covers
/// lives in [`ValidatorSigner`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GpunetContext;

impl mc::Context for GpunetContext {
    type Address = ValidatorAddress;
    type Height = Height;
    type ProposalPart = BlockPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = mc::LinearTimeouts;
    type Value = BlockId;
    type Vote = Vote;
    type Extension = ();
    type SigningScheme = Ed25519Scheme;

    /// Slot `(height + round) mod len` of the set's proposer schedule: a repeating cycle in which
    /// each validator proposes in proportion to its voting power, its turns spread evenly (see
    /// `proposer_schedule`). With equal powers this is round-robin over the validators sorted by
    /// address, so a dead validator costs at most one round in every `n`. Shifted by height so
    /// the first round of consecutive heights has different proposers.
    fn select_proposer<'a>(
        &self,
        validator_set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        let schedule = &validator_set.schedule.0;
        let len = u64::try_from(schedule.len()).expect("a usize fits in u64");
        let r = u64::from(round.as_u32().unwrap_or(0));
        let slot = usize::try_from(height.0.wrapping_add(r) % len).expect("slot below the length");
        let index = usize::try_from(schedule[slot]).expect("a u32 index fits in usize");
        &validator_set.validators[index]
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockId,
        pol_round: Round,
        address: ValidatorAddress,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockId>,
        address: ValidatorAddress,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockId>,
        address: ValidatorAddress,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }
}

/// `tag || len(chain_id) || chain_id || borsh(msg)`.
fn tagged<T: BorshSerialize>(tag: &[u8], chain_id: &str, msg: &T) -> Vec<u8> {
    let mut bytes = tag.to_vec();
    borsh::to_writer(&mut bytes, chain_id).expect("borsh encoding into a Vec cannot fail");
    borsh::to_writer(&mut bytes, msg).expect("borsh encoding into a Vec cannot fail");
    bytes
}

/// The bytes a vote signature covers: the vote without its extension.
fn vote_bytes(chain_id: &str, v: &Vote) -> Vec<u8> {
    tagged(
        TAG_VOTE,
        chain_id,
        &(v.vote_type, v.height, v.round, &v.value, v.validator),
    )
}

/// Signs and verifies consensus messages with one validator's key.
pub struct ValidatorSigner {
    key: PrivateKey,
    chain_id: std::sync::Arc<str>,
}

impl ValidatorSigner {
    pub fn new(key: PrivateKey, chain_id: &str) -> ValidatorSigner {
        ValidatorSigner {
            key,
            chain_id: chain_id.into(),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    pub fn address(&self) -> ValidatorAddress {
        ValidatorAddress::of(&self.key.public_key())
    }

    /// A signed part holding `block` (encoded) for (`height`, `round`).
    pub fn sign_part(
        &self,
        height: Height,
        round: Round,
        pol_round: Round,
        block: Vec<u8>,
        block_id: BlockId,
    ) -> BlockPart {
        let proposer = self.address();
        let msg =
            BlockPart::signing_bytes(&self.chain_id, height, round, pol_round, proposer, block_id);
        BlockPart {
            height,
            round,
            pol_round,
            proposer,
            block,
            block_id,
            signature: self.key.sign(&msg).into(),
        }
    }
}

type SigningResult<T> = Result<T, malachitebft_signing::Error>;

#[async_trait]
impl Signer<GpunetContext> for ValidatorSigner {
    async fn sign_vote(&self, vote: Vote) -> SigningResult<SignedMessage<GpunetContext, Vote>> {
        let sig = self.key.sign(&vote_bytes(&self.chain_id, &vote));
        Ok(SignedMessage::new(vote, sig.into()))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> SigningResult<SignedMessage<GpunetContext, Proposal>> {
        let sig = self
            .key
            .sign(&tagged(TAG_PROPOSAL, &self.chain_id, &proposal));
        Ok(SignedMessage::new(proposal, sig.into()))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<GpunetContext>,
        extension: (),
    ) -> SigningResult<SignedMessage<GpunetContext, ()>> {
        let msg = tagged(
            TAG_EXTENSION,
            &self.chain_id,
            &(
                scope.height,
                scope.round,
                scope.value_id,
                scope.validator_address,
            ),
        );
        Ok(SignedMessage::new(extension, self.key.sign(&msg).into()))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> SigningResult<ValidatorProof<GpunetContext>> {
        let msg = ValidatorProof::<GpunetContext>::signing_bytes(&public_key, &peer_id);
        let sig = self.key.sign(&msg);
        Ok(ValidatorProof::new(public_key, peer_id, sig.into()))
    }
}

#[async_trait]
impl Verifier<GpunetContext> for ValidatorSigner {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Sig,
        public_key: &PublicKey,
    ) -> SigningResult<VerificationResult> {
        Ok(VerificationResult::from_bool(
            signature.verify(public_key, &vote_bytes(&self.chain_id, vote)),
        ))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Sig,
        public_key: &PublicKey,
    ) -> SigningResult<VerificationResult> {
        let msg = tagged(TAG_PROPOSAL, &self.chain_id, proposal);
        Ok(VerificationResult::from_bool(
            signature.verify(public_key, &msg),
        ))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<GpunetContext>,
        _extension: &(),
        signature: &Sig,
        public_key: &PublicKey,
    ) -> SigningResult<VerificationResult> {
        let msg = tagged(
            TAG_EXTENSION,
            &self.chain_id,
            &(
                scope.height,
                scope.round,
                scope.value_id,
                scope.validator_address,
            ),
        );
        Ok(VerificationResult::from_bool(
            signature.verify(public_key, &msg),
        ))
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<GpunetContext>,
    ) -> SigningResult<VerificationResult> {
        let Ok(raw) = <[u8; 32]>::try_from(proof.public_key.as_slice()) else {
            return Ok(VerificationResult::Invalid);
        };
        let Ok(key) = PublicKey::from_bytes(raw) else {
            return Ok(VerificationResult::Invalid);
        };
        Ok(VerificationResult::from_bool(
            proof.signature.verify(&key, &proof.preimage()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_app_channel::app::types::core::Context as _;

    fn signer(seed: u8, chain: &str) -> ValidatorSigner {
        ValidatorSigner::new(PrivateKey::from([seed; 32]), chain)
    }

    fn vote(s: &ValidatorSigner) -> Vote {
        GpunetContext.new_prevote(
            Height(3),
            Round::new(0),
            NilOrVal::Val(BlockId([1; 32])),
            s.address(),
        )
    }

    #[tokio::test]
    async fn a_vote_verifies_only_on_its_own_chain_and_unchanged() {
        let a = signer(1, "chain-a");
        let signed = a.sign_vote(vote(&a)).await.expect("signs");
        let pk = a.public_key();
        let ok = a
            .verify_signed_vote(&signed.message, &signed.signature, &pk)
            .await
            .expect("verifies");
        assert!(ok.is_valid());

        let other_chain = signer(1, "chain-b");
        let r = other_chain
            .verify_signed_vote(&signed.message, &signed.signature, &pk)
            .await
            .expect("verifies");
        assert!(r.is_invalid(), "a vote from another chain must not verify");

        let mut changed = signed.message.clone();
        changed.value = NilOrVal::Nil;
        let r = a
            .verify_signed_vote(&changed, &signed.signature, &pk)
            .await
            .expect("verifies");
        assert!(r.is_invalid(), "a changed vote must not verify");
    }

    #[test]
    fn a_block_part_is_bound_to_its_proposer() {
        let a = signer(1, "c");
        let part = a.sign_part(
            Height(2),
            Round::new(1),
            Round::Nil,
            vec![1, 2],
            BlockId([3; 32]),
        );
        assert!(part.signed_by("c", &a.public_key()));
        assert!(!part.signed_by("c", &signer(2, "c").public_key()));
        let mut moved = part.clone();
        moved.round = Round::new(2);
        assert!(!moved.signed_by("c", &a.public_key()));
    }

    #[test]
    fn every_validator_proposes_in_turn() {
        let vals: Vec<Validator> = (1..=4)
            .map(|s| Validator::new(signer(s, "c").public_key(), 1))
            .collect();
        let set = ValidatorSet::new(vals).expect("valid set");
        let mut seen = std::collections::BTreeSet::new();
        for h in 1..=4 {
            seen.insert(
                GpunetContext
                    .select_proposer(&set, Height(h), Round::new(0))
                    .address,
            );
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn a_validator_set_refuses_duplicates_and_zero_power() {
        let k = signer(1, "c").public_key();
        assert!(ValidatorSet::new(vec![]).is_none());
        assert!(ValidatorSet::new(vec![Validator::new(k, 1), Validator::new(k, 1)]).is_none());
        assert!(ValidatorSet::new(vec![Validator::new(k, 0)]).is_none());
    }

    /// Validators with keys from seeds 1, 2, … and these powers, in this order.
    fn validators(powers: &[u64]) -> Vec<Validator> {
        powers
            .iter()
            .zip(1u8..)
            .map(|(&power, seed)| Validator::new(signer(seed, "c").public_key(), power))
            .collect()
    }

    fn proposer(set: &ValidatorSet, height: u64, round: u32) -> ValidatorAddress {
        GpunetContext
            .select_proposer(set, Height(height), Round::new(round))
            .address
    }

    #[test]
    fn equal_powers_rotate_through_every_validator_in_address_order() {
        for n in 1..=7u64 {
            let set = ValidatorSet::new(validators(&vec![5; n as usize])).expect("valid set");
            let mut sorted = validators(&vec![5; n as usize]);
            sorted.sort_by_key(|v| v.address);
            for h in 0..3 * n {
                assert_eq!(proposer(&set, h, 0), sorted[(h % n) as usize].address);
                let window: std::collections::BTreeSet<_> =
                    (h..h + n).map(|x| proposer(&set, x, 0)).collect();
                assert_eq!(window.len() as u64, n, "{n} validators, from height {h}");
                // A failed round hands the height to the next validator in the rotation.
                assert_eq!(proposer(&set, h, 1), proposer(&set, h + 1, 0));
            }
        }
    }

    #[test]
    fn powers_one_one_two_share_heights_one_one_two_without_repeats() {
        let k = 50u64;
        for heavy in 0..3 {
            let mut powers = [1u64; 3];
            powers[heavy] = 2;
            let vals = validators(&powers);
            let heavy_address = vals[heavy].address;
            let set = ValidatorSet::new(vals.clone()).expect("valid set");
            let mut counts = std::collections::BTreeMap::new();
            for h in 0..4 * k {
                *counts.entry(proposer(&set, h, 0)).or_insert(0u64) += 1;
                let twice = proposer(&set, h, 0) == heavy_address
                    && proposer(&set, h + 1, 0) == heavy_address;
                assert!(
                    !twice,
                    "power 2 at index {heavy} proposes heights {h} and {}",
                    h + 1
                );
            }
            for (v, &power) in vals.iter().zip(&powers) {
                assert_eq!(counts[&v.address], power * k);
            }
        }
    }

    #[test]
    fn a_huge_power_still_leaves_the_small_validator_a_turn() {
        let vals = validators(&[u64::MAX / 4, 1]);
        let small = vals[1].address;
        let set = ValidatorSet::new(vals).expect("a total below u64::MAX is fine");
        let len = set.schedule.0.len() as u64;
        assert!(len <= PROPOSER_SCHEDULE_MAX_SLOTS, "{len} slots");
        let turns = (0..len).filter(|&h| proposer(&set, h, 0) == small).count();
        assert_eq!(turns, 1);
        assert_eq!(mc::ValidatorSet::total_voting_power(&set), u64::MAX / 4 + 1);
    }

    #[test]
    fn a_validator_set_refuses_a_total_power_that_overflows() {
        assert!(ValidatorSet::new(validators(&[u64::MAX, 1])).is_none());
        assert!(ValidatorSet::new(validators(&[u64::MAX / 2 + 1, u64::MAX / 2 + 1])).is_none());
        assert!(ValidatorSet::new(validators(&[u64::MAX - 1, 1])).is_some());
    }

    #[test]
    fn the_schedule_does_not_depend_on_input_order() {
        let vals = validators(&[3, 1, 4, 1, 5, 9, 2, 6]);
        let set = ValidatorSet::new(vals.clone()).expect("valid set");
        let total: u64 = vals.iter().map(|v| v.voting_power).sum();
        let mut counts = std::collections::BTreeMap::new();
        for h in 0..total {
            *counts.entry(proposer(&set, h, 0)).or_insert(0u64) += 1;
        }
        for v in &vals {
            assert_eq!(
                counts[&v.address], v.voting_power,
                "one turn per unit of power"
            );
        }
        for shift in 1..vals.len() {
            let mut shuffled = vals.clone();
            shuffled.rotate_left(shift);
            shuffled.reverse();
            let other = ValidatorSet::new(shuffled).expect("valid set");
            assert_eq!(other, set);
            assert!((0..2 * total).all(|h| proposer(&other, h, 0) == proposer(&set, h, 0)));
        }
    }
}
