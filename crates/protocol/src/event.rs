//! Events the ledger emits as it applies transactions and end-of-block rules. They are the
//! public record of what happened: the API streams them and the CLI follows jobs by them.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{Address, Amount, Denom, Hash, LeaseId, OrderId, WorkloadOutcome};

/// Why a lease ended. Every lease ends with exactly one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum LeaseEndReason {
    /// The workload finished successfully.
    Completed = 0,
    /// The workload exited with an error of its own.
    WorkloadFailed = 1,
    OutOfMemory = 2,
    /// The workload ran past the spec's max duration and was stopped by the provider.
    TimedOut = 3,
    /// The provider never got a manifest matching the order's hash.
    ManifestRejected = 4,
    ImageUnavailable = 5,
    StartFailed = 6,
    /// The provider did not start the workload within the start timeout.
    StartTimeout = 7,
    CancelledByTenant = 8,
    EscrowExhausted = 9,
    /// The ledger ended the lease at the spec's max duration.
    MaxDurationReached = 10,
    /// The workload filled more disk than the spec's `resources.disk` and was stopped.
    DiskExceeded = 11,
    /// The provider stopped proving that the lease runs (no heartbeat listing it for
    /// `liveness_timeout_blocks`); payment stopped at its last proof of life.
    ProviderLost = 12,
    /// The provider gave the lease back on its way out (graceful exit); not its failure.
    ProviderLeft = 13,
    /// The escrow ran out, the lease stayed paused for the whole grace period, and nobody
    /// topped it up.
    InsufficientFunds = 14,
}

impl LeaseEndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseEndReason::Completed => "completed",
            LeaseEndReason::WorkloadFailed => "workload_failed",
            LeaseEndReason::OutOfMemory => "out_of_memory",
            LeaseEndReason::TimedOut => "timed_out",
            LeaseEndReason::ManifestRejected => "manifest_rejected",
            LeaseEndReason::ImageUnavailable => "image_unavailable",
            LeaseEndReason::StartFailed => "start_failed",
            LeaseEndReason::StartTimeout => "start_timeout",
            LeaseEndReason::CancelledByTenant => "cancelled_by_tenant",
            LeaseEndReason::EscrowExhausted => "escrow_exhausted",
            LeaseEndReason::MaxDurationReached => "max_duration_reached",
            LeaseEndReason::DiskExceeded => "disk_exceeded",
            LeaseEndReason::ProviderLost => "provider_lost",
            LeaseEndReason::ProviderLeft => "provider_left",
            LeaseEndReason::InsufficientFunds => "insufficient_funds",
        }
    }

    /// The end reason for a workload outcome the provider reported.
    pub fn from_outcome(outcome: WorkloadOutcome) -> LeaseEndReason {
        match outcome {
            WorkloadOutcome::Succeeded => LeaseEndReason::Completed,
            WorkloadOutcome::Failed => LeaseEndReason::WorkloadFailed,
            WorkloadOutcome::OutOfMemory => LeaseEndReason::OutOfMemory,
            WorkloadOutcome::TimedOut => LeaseEndReason::TimedOut,
            WorkloadOutcome::ManifestRejected => LeaseEndReason::ManifestRejected,
            WorkloadOutcome::ImageUnavailable => LeaseEndReason::ImageUnavailable,
            WorkloadOutcome::StartFailed => LeaseEndReason::StartFailed,
            WorkloadOutcome::DiskExceeded => LeaseEndReason::DiskExceeded,
            WorkloadOutcome::Lost => LeaseEndReason::ProviderLost,
        }
    }
}

impl std::fmt::Display for LeaseEndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the verification of an order ended (ADR 0010).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum VerificationOutcome {
    /// The spot check was not drawn: the one run's report stands, unchecked.
    Unchecked = 0,
    /// Every run reported the same tag (and the later runs revealed its digest).
    Agreed = 1,
    /// A strict majority of the runs agreed; the others were wrong and their providers slashed.
    Majority = 2,
    /// No strict majority: nobody is slashed, and the tenant is told the result is not
    /// confirmed (a job that is not deterministic ends here).
    Inconclusive = 3,
    /// A run needed for the comparison could not be had (no provider, the escrow ran out):
    /// nobody is slashed, nothing is confirmed.
    Incomplete = 4,
}

impl VerificationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationOutcome::Unchecked => "unchecked",
            VerificationOutcome::Agreed => "agreed",
            VerificationOutcome::Majority => "majority",
            VerificationOutcome::Inconclusive => "inconclusive",
            VerificationOutcome::Incomplete => "incomplete",
        }
    }
}

/// Something that happened on chain.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Transferred {
        from: Address,
        to: Address,
        denom: Denom,
        amount: Amount,
    },
    FeeBurned {
        payer: Address,
        amount: Amount,
    },
    ProviderRegistered {
        provider: Address,
        stake: Amount,
    },
    ProviderUpdated {
        provider: Address,
    },
    /// The provider left: its whole `stake` unbonds, returning at the end of block
    /// `release_height` (`StakeReleased`).
    ProviderDeregistered {
        provider: Address,
        stake: Amount,
        release_height: u64,
    },
    /// A provider took `amount` out of its stake (`UnbondStake`): it returns at the end of
    /// block `release_height`, slashable until then.
    StakeUnbonding {
        provider: Address,
        amount: Amount,
        release_height: u64,
    },
    /// Unbonded stake reached its height and was paid to the account's balance.
    StakeReleased {
        account: Address,
        amount: Amount,
    },
    OrderCreated {
        order: OrderId,
        tenant: Address,
        deposit: Amount,
    },
    BidPlaced {
        order: OrderId,
        provider: Address,
        price_per_hour: Amount,
    },
    LeaseCreated {
        lease: LeaseId,
        order: OrderId,
        tenant: Address,
        provider: Address,
        price_per_hour: Amount,
    },
    LeaseStarted {
        lease: LeaseId,
        order: OrderId,
    },
    LeaseEnded {
        lease: LeaseId,
        order: OrderId,
        reason: LeaseEndReason,
        billed_ms: u64,
        /// Everything the tenant paid for this lease (provider earnings plus fee).
        paid: Amount,
        /// The protocol's share of `paid`, credited to the treasury.
        fee: Amount,
        refund: Amount,
    },
    OrderExpired {
        order: OrderId,
        refund: Amount,
    },
    OrderCancelled {
        order: OrderId,
        refund: Amount,
    },
    /// An attempt ended in a way the order's recovery policy retries: the order takes bids
    /// again (not before `not_before_ms`), its escrow kept, the failed provider excluded.
    OrderReopened {
        order: OrderId,
        /// The attempt that ended.
        after_lease: LeaseId,
        /// The number the next attempt will have (2 for the first retry).
        attempt: u32,
        excluded: Address,
        not_before_ms: u64,
    },
    /// The escrow pays for less than `escrow_warning_secs` more of the running lease.
    EscrowLow {
        order: OrderId,
        lease: LeaseId,
        escrow: Amount,
        /// Running time the escrow still pays for at the lease price.
        remaining_ms: u64,
    },
    /// The escrow ran out: the workload is stopped (not deleted) and billing stopped until a
    /// top-up, or the end of the grace period.
    LeasePaused {
        lease: LeaseId,
        order: OrderId,
        /// The lease ends `insufficient_funds` at this height unless topped up before.
        grace_until_height: u64,
    },
    /// A top-up paid for a paused lease: the workload runs again.
    LeaseResumed {
        lease: LeaseId,
        order: OrderId,
    },
    /// Someone (anyone) added to an order's escrow.
    EscrowToppedUp {
        order: OrderId,
        from: Address,
        amount: Amount,
        escrow: Amount,
    },
    /// The provider announced it is leaving: it takes no new leases.
    ProviderLeaving {
        provider: Address,
    },
    /// A reopened order went `exclusion_lapse_blocks` without a bid from anyone else: the
    /// providers that failed its earlier attempts may bid on it again.
    OrderExclusionLapsed {
        order: OrderId,
        /// The providers no longer excluded.
        providers: Vec<Address>,
    },
    /// A provider added to its stake.
    StakeBonded {
        provider: Address,
        amount: Amount,
        stake: Amount,
    },
    /// The ledger drew, after a verified order's first run reported, whether to rerun it
    /// elsewhere. Drawn from the next block's seed, so the run could not know when it reported.
    SpotCheckDrawn {
        order: OrderId,
        lease: LeaseId,
        /// The probability it was drawn with, in millionths.
        probability_ppm: u32,
        checked: bool,
    },
    /// Every run a comparison needs has reported: the providers of the listed runs must reveal
    /// the digests behind their tags (`RevealDigest`) by `deadline_height`.
    RevealRequested {
        order: OrderId,
        leases: Vec<LeaseId>,
        deadline_height: u64,
    },
    /// A verified order's comparison ended; `tag` is the result the majority reported.
    VerificationDecided {
        order: OrderId,
        outcome: VerificationOutcome,
        tag: Option<Hash>,
        /// Runs that reported the winning tag.
        agreed: Vec<LeaseId>,
        /// Runs that reported another tag, or did not reveal in time.
        wrong: Vec<LeaseId>,
        /// Escrow returned to the tenant as the order closed (0 when it closed another way:
        /// its lease's or expiry's event tells the refund).
        refund: Amount,
    },
    /// The tenant disputed the unchecked result: the order reopens for a rerun elsewhere.
    DisputeOpened {
        order: OrderId,
    },
    /// A provider's stake was cut for a wrong or unrevealed run: `to_tenant` went to the
    /// harmed tenant and `burned` was destroyed; it takes no new leases until
    /// `jailed_until_height`.
    ProviderSlashed {
        provider: Address,
        order: OrderId,
        lease: LeaseId,
        amount: Amount,
        to_tenant: Amount,
        burned: Amount,
        jailed_until_height: u64,
    },
    /// The ledger challenged a provider's hardware claim: commit to the product of the
    /// `n × n` matrices of `seed` (`CommitChallenge`) in a block timed by `deadline_ms`.
    ChallengeIssued {
        provider: Address,
        challenge: u64,
        seed: Hash,
        n: u32,
        deadline_ms: u64,
    },
    /// The entries of a committed answer to open were drawn (from this block's seed): open the
    /// leaves holding them (`OpenChallenge`) by `open_until_height`.
    ChallengeSampled {
        provider: Address,
        challenge: u64,
        open_until_height: u64,
    },
    /// Every sampled entry was right: the claim stands until the next challenge, at
    /// `next_height` or later.
    ChallengePassed {
        provider: Address,
        challenge: u64,
        next_height: u64,
    },
    /// The claim failed (`reason`): its stake was cut by `slashed` (all burned) and it takes no
    /// new leases until `jailed_until_height`, nor until it passes a new challenge.
    ChallengeFailed {
        provider: Address,
        challenge: u64,
        reason: String,
        slashed: Amount,
        jailed_until_height: u64,
    },
    /// A `compare: tensors` order's runs are in: `verifier` (a provider drawn from the block
    /// seed, none of the runs' own) compares their declared outputs, which the tenant sends
    /// it, and posts its verdict (`PostVerdict`) by `deadline_height`.
    VerdictRequested {
        order: OrderId,
        verifier: Address,
        runs: Vec<LeaseId>,
        deadline_height: u64,
    },
    /// The verifier posted its verdict and was paid `fee` (usd) from the order's escrow.
    VerdictPosted {
        order: OrderId,
        verifier: Address,
        agreeing: Vec<LeaseId>,
        missing: Vec<LeaseId>,
        fee: Amount,
    },
    /// The verifier let its deadline pass: it counts as a lost lease in its reputation, and
    /// the order asks another verifier, or ends inconclusive after three.
    VerdictMissed {
        order: OrderId,
        verifier: Address,
    },
}

impl Event {
    /// The order this event concerns, if any.
    pub fn order(&self) -> Option<OrderId> {
        match self {
            Event::OrderCreated { order, .. }
            | Event::BidPlaced { order, .. }
            | Event::LeaseCreated { order, .. }
            | Event::LeaseStarted { order, .. }
            | Event::LeaseEnded { order, .. }
            | Event::OrderExpired { order, .. }
            | Event::OrderCancelled { order, .. }
            | Event::OrderReopened { order, .. }
            | Event::EscrowLow { order, .. }
            | Event::LeasePaused { order, .. }
            | Event::LeaseResumed { order, .. }
            | Event::EscrowToppedUp { order, .. }
            | Event::OrderExclusionLapsed { order, .. }
            | Event::SpotCheckDrawn { order, .. }
            | Event::RevealRequested { order, .. }
            | Event::VerificationDecided { order, .. }
            | Event::DisputeOpened { order, .. }
            | Event::ProviderSlashed { order, .. }
            | Event::VerdictRequested { order, .. }
            | Event::VerdictPosted { order, .. }
            | Event::VerdictMissed { order, .. } => Some(*order),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_exceeded_is_appended_and_never_renumbers_the_others() {
        assert_eq!(WorkloadOutcome::StartFailed as u8, 6);
        assert_eq!(WorkloadOutcome::DiskExceeded as u8, 7);
        assert_eq!(LeaseEndReason::MaxDurationReached as u8, 10);
        assert_eq!(LeaseEndReason::DiskExceeded as u8, 11);
        assert_eq!(
            LeaseEndReason::from_outcome(WorkloadOutcome::DiskExceeded),
            LeaseEndReason::DiskExceeded
        );
        assert_eq!(LeaseEndReason::DiskExceeded.as_str(), "disk_exceeded");
        assert_eq!(
            serde_json::to_string(&LeaseEndReason::DiskExceeded).expect("json"),
            "\"disk_exceeded\""
        );
        assert_eq!(
            borsh::to_vec(&WorkloadOutcome::DiskExceeded).expect("borsh"),
            [7]
        );
    }
}
