//! Stable rejection codes. A rejected transaction changes nothing; clients show the code, the
//! name and the message, which says what to do. Codes are part of the protocol: never renumber
//! one, only append.

use serde::{Deserialize, Serialize};

macro_rules! rejections {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $snake:literal, $msg:literal;)*) => {
        /// Why a transaction (or a request) was refused, in the order the checks run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, borsh::BorshSerialize, borsh::BorshDeserialize)]
        #[borsh(use_discriminant = true)]
        #[repr(u32)]
        pub enum Rejection {
            $($(#[$doc])* $name = $code,)*
        }

        impl Rejection {
            /// Every rejection, in code order.
            pub const ALL: &'static [Rejection] = &[$(Rejection::$name,)*];

            /// The stable numeric code.
            pub fn code(self) -> u32 {
                self as u32
            }

            /// The stable snake_case name.
            pub fn name(self) -> &'static str {
                match self { $(Rejection::$name => $snake,)* }
            }

            /// What was wrong and how to fix it.
            pub fn message(self) -> &'static str {
                match self { $(Rejection::$name => $msg,)* }
            }

            /// The rejection with this code, if any.
            pub fn from_code(code: u32) -> Option<Rejection> {
                match code { $($code => Some(Rejection::$name),)* _ => None }
            }
        }
    };
}

rejections! {
    // --- envelope: checked before anything is read from state ---
    MalformedTx = 1, "malformed_tx", "the transaction bytes do not decode; build it with a gpunet client of the same protocol version";
    TxTooLarge = 2, "tx_too_large", "the transaction is larger than 16 KiB; shorten names or lists";
    WrongChainId = 3, "wrong_chain_id", "the transaction is for another chain; check --api points at the network you signed for";
    BadSignature = 4, "bad_signature", "the signature does not match the signer and body; sign with the signer's own key";
    NonceReplayed = 5, "nonce_replayed", "this nonce was already used by the signer; fetch the account's current nonce and sign again";
    NonceGap = 6, "nonce_gap", "the nonce is ahead of the signer's next nonce; send the missing transactions first or use the next nonce";
    FeeTooLow = 7, "fee_too_low", "the fee is below the network minimum; raise it to at least the min_tx_fee in /v1/params";
    FeeUnpayable = 8, "fee_unpayable", "the signer's gpn balance cannot pay the fee; fund the account with gpn";
    // --- mempool ---
    MempoolFull = 9, "mempool_full", "the node's mempool is full; retry in a few seconds";
    DuplicateTx = 10, "duplicate_tx", "this exact transaction is already pending";
    // --- amounts ---
    ZeroAmount = 11, "zero_amount", "the amount must be more than zero";
    InsufficientFunds = 12, "insufficient_funds", "the signer's balance is too small for this amount plus the fee; fund the account or send less";
    AmountOverflow = 13, "amount_overflow", "the amount would overflow the ledger's totals; send less";
    // --- providers ---
    ProfileInvalid = 14, "profile_invalid", "the provider profile is malformed (endpoint, region, GPU names or runtimes); fix the named field";
    ProviderAlreadyRegistered = 15, "provider_already_registered", "this account is already a provider; use UpdateProvider to change its profile";
    StakeBelowMinimum = 16, "stake_below_minimum", "the stake is below what the provider's GPUs need: at least min_provider_stake, and stake_per_gpu for each GPU listed (see /v1/params); stake more, or bond more with BondStake (`gpunet provider bond`)";
    ProviderNotRegistered = 17, "provider_not_registered", "the signer is not a registered provider; register first";
    ProviderHasLiveLeases = 18, "provider_has_live_leases", "the provider still runs leases, has runs of verified orders still being compared, or has verdicts to post; wait for them to end before deregistering or changing the offer (capacity, region, runtimes, capabilities)";
    // --- orders ---
    OrderInvalid = 19, "order_invalid", "the order terms are malformed (resources, regions, name or duration out of bounds); fix the job spec";
    DepositTooSmall = 20, "deposit_too_small", "the deposit must be more than zero; raise pricing.deposit";
    OrderNotFound = 21, "order_not_found", "no order has this id; list orders with `gpunet job list`";
    NotOrderOwner = 22, "not_order_owner", "only the tenant who created the order may do this";
    OrderNotOpen = 23, "order_not_open", "the order is no longer open for this action (already leased, ended or cancelled)";
    // --- bids ---
    BidWindowClosed = 24, "bid_window_closed", "the order's bid window has closed (reserved: open orders take bids until matched)";
    BidAboveMaxPrice = 25, "bid_above_max_price", "the bid is above the order's max price per hour; bid lower";
    ProviderCannotFit = 26, "provider_cannot_fit", "the provider lacks free resources, GPU model, region, runtime or the capabilities this order asks for";
    TooManyBids = 27, "too_many_bids", "the order already holds the most bids allowed; bid on another order";
    BidNotLower = 28, "bid_not_lower", "a provider may replace its bid only with a lower price";
    // --- leases ---
    LeaseNotFound = 29, "lease_not_found", "no lease has this id";
    NotLeaseProvider = 30, "not_lease_provider", "only the lease's provider may do this";
    LeaseNotPending = 31, "lease_not_pending", "the lease has already started or ended";
    LeaseNotLive = 32, "lease_not_live", "the lease has already ended";
    ResultInvalid = 33, "result_invalid", "the lease result is malformed (detail longer than 512 bytes)";
    SelfDealing = 34, "self_dealing", "a provider cannot bid on its own order";
    LeaseNotStarted = 35, "lease_not_started", "a lease that never started can only end as manifest_rejected, image_unavailable or start_failed";
    // --- appended: codes below are out of check order, never renumbered ---
    ResourcesOutOfBounds = 36, "resources_out_of_bounds", "the order asks for more than any job may: at most 1024 CPU cores, 16Ti memory, 1024Ti disk, 64 GPUs and 1Ti per GPU; ask for less";
    BidAbovePostedPrice = 37, "bid_above_posted_price", "the bid is above the price the provider's own posted rates give for this order; bid at most that price, or post higher rates with UpdateProvider first";
    HeartbeatInvalid = 38, "heartbeat_invalid", "a heartbeat lists each of the provider's leases at most once, in ascending id order, and at most 1024 of them; list only your own leases";
    ProviderExcluded = 39, "provider_excluded", "this provider already ran a failed or lost attempt of this order, so the order does not take its bids; bid on another order";
    ProviderLeaving = 40, "provider_leaving", "the provider announced that it is leaving and takes no new leases; register again with a new account, or wait for the leases to end and deregister";
    RecoveryOutOfBounds = 41, "recovery_out_of_bounds", "the recovery policy is out of bounds: max_attempts 1 to 10, at most 16 on_exit_codes, backoff at most 1h; fix the job spec's recovery";
    ProviderNotLeaving = 42, "provider_not_leaving", "a provider hands a lease back only while it is leaving: announce the exit first (AnnounceExit, `gpunet provider leave`), or run the lease to its end and report its outcome";
    VerificationInvalid = 43, "verification_invalid", "the verification is out of bounds: replicas must be 2 to 5 for mode replicas; fix the job spec's verification";
    VerificationUnsupported = 44, "verification_unsupported", "compare: tensors applies only to a checked order: give it mode spot_check or replicas, or leave compare out";
    ProviderJailed = 45, "provider_jailed", "the provider was jailed after a failed verification and takes no new leases until its jail ends (see its jailed_until_height)";
    ProbationJobTooLarge = 46, "probation_job_too_large", "the provider is on probation in this GPU class and may take only orders whose deposit is at most probation_max_deposit (see /v1/params); bid on smaller orders until its verified runs pass probation_runs";
    ResultTagMissing = 47, "result_tag_missing", "a successful run of a verified order must report its result tag (result_tag(order, output digest)) as output_digest";
    RevealInvalid = 48, "reveal_invalid", "no run of this lease is waiting for a reveal, or the digest does not match the tag it reported; reveal the output digest behind the reported tag, after the RevealRequested event";
    DisputeNotOpen = 49, "dispute_not_open", "only the tenant may dispute, and only a spot-checked job whose check was not drawn, within dispute_window_blocks of the draw (see the order's verification: stage disputable); its escrow must still pay a rerun (top it up with TopUpOrder)";
    ChallengeNotOpen = 50, "challenge_not_open", "this provider has no hardware challenge with this id waiting for this step: commit once, after ChallengeIssued; open after ChallengeSampled, within its window (see the provider's hardware in /v1/providers)";
    ChallengeLate = 51, "challenge_late", "the challenge's deadline has passed: the commitment had to be in a block by its deadline_ms; the challenge fails at this block's end";
    ChallengeOpeningInvalid = 52, "challenge_opening_invalid", "open from 1 to 10 leaves per transaction, each a leaf the sampled entries fall in (see the challenge's leaves_to_open), not yet opened, each once";
    HardwareUnproven = 53, "hardware_unproven", "the provider's hardware claim has not passed a challenge yet (after registering, after changing its capacity, or after a failed one); it bids once its agent answers the challenge the ledger issued (see its hardware in /v1/providers)";
    ChallengeInFlight = 54, "challenge_in_flight", "the provider has a hardware challenge in flight and cannot deregister until it passes or fails";
    UnbondInvalid = 55, "unbond_invalid", "unbond at least 1 micro-gpn and at most what keeps the stake at what the listing needs (max(min_provider_stake, stake_per_gpu x GPUs), see /v1/params), with at most 16 unbondings pending, and not while jailed; to take it all, leave the network (gpunet provider leave)";
    VerdictInvalid = 56, "verdict_invalid", "only the verifier the ledger chose (VerdictRequested) posts a verdict, before its deadline_height, naming only runs of the request, each at most once, in agreeing (none, or at least two) or missing, not both";
    EndpointsInvalid = 57, "endpoints_invalid", "a lease's endpoints are at most 32 URLs of http://, https:// or tcp://, each 1 to 256 printable ASCII bytes without spaces, each once";
    CapabilitiesInvalid = 58, "capabilities_invalid", "only container jobs (runtime docker: give run.image) may ask for capabilities beyond none; drop run.capabilities from a process job";
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code(), self.message())
    }
}

impl std::error::Error for Rejection {}

/// How a rejection crosses the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionInfo {
    pub code: u32,
    pub name: String,
    pub message: String,
}

impl From<Rejection> for RejectionInfo {
    fn from(r: Rejection) -> Self {
        RejectionInfo {
            code: r.code(),
            name: r.name().to_owned(),
            message: r.message().to_owned(),
        }
    }
}

impl Serialize for Rejection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RejectionInfo::from(*self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Rejection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let info = RejectionInfo::deserialize(d)?;
        Rejection::from_code(info.code).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown rejection code {}", info.code))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_unique_and_round_trip() {
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(r.code() as usize, i + 1, "{r:?} is out of order");
            assert_eq!(Rejection::from_code(r.code()), Some(*r));
            assert!(!r.message().is_empty());
        }
        assert_eq!(Rejection::from_code(0), None);
    }
}
