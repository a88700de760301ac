//! Transactions: a [`TxBody`] (chain id, signer, nonce, fee, one [`Msg`]) signed by the signer's
//! ed25519 key. The canonical encoding is borsh; the signature covers a domain tag followed by
//! the encoded body, so a signature for one chain or one purpose is useless on another.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{
    Address, Amount, Capabilities, Denom, Hash, LeaseId, OrderId, ProviderProfile, Rejection,
    Resources, Runtime, Verification,
};

/// Largest encoded transaction the network accepts, in bytes.
pub const MAX_TX_BYTES: usize = 16 * 1024;
/// Longest order name, in bytes.
pub const MAX_ORDER_NAME_BYTES: usize = 64;
/// Longest failure detail a provider may attach to a lease result, in bytes.
pub const MAX_RESULT_DETAIL_BYTES: usize = 512;
/// Most leases one heartbeat may list.
pub const MAX_HEARTBEAT_LEASES: usize = 1_024;
/// Most attempts a recovery policy may allow.
pub const MAX_ATTEMPTS: u32 = 10;
/// Most exit codes a recovery policy may list.
pub const MAX_RETRY_EXIT_CODES: usize = 16;
/// Longest backoff before a retry, in seconds.
pub const MAX_BACKOFF_SECS: u64 = 3_600;
/// Domain tag prefixed to the signed bytes of a transaction.
pub const TX_SIGNING_DOMAIN: &[u8] = b"gpunet/tx/v1\0";

/// What an order asks for and what the tenant will pay.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct OrderTerms {
    /// Job name, for people.
    pub name: String,
    /// BLAKE3 of the manifest the tenant will send to the winning provider.
    pub manifest_hash: Hash,
    pub resources: Resources,
    /// Acceptable provider regions; empty means anywhere.
    pub regions: Vec<String>,
    pub runtime: Runtime,
    /// Highest price per hour the tenant accepts (usd).
    pub max_price_per_hour: Amount,
    /// Moved into escrow when the order is accepted (usd); pays the lease, the rest returns.
    pub deposit: Amount,
    /// The lease ends, and billing stops, this long after the workload starts.
    pub max_duration_secs: u64,
    /// What happens when an attempt fails or its provider is lost.
    pub recovery: RecoveryPolicy,
    /// How the result is checked (ADR 0010); none by default.
    #[serde(default)]
    pub verification: Verification,
    /// The Linux capabilities the job's containers need (ADR 0013): only a provider that grants
    /// them matches. None by default; only for the docker runtime.
    #[serde(default, skip_serializing_if = "Capabilities::is_none")]
    pub capabilities: Capabilities,
}

/// When the network itself retries a job on another provider, from the same order and escrow.
///
/// A lost provider (`provider_lost`), one that left (`provider_left`), never started the
/// workload (`start_timeout`) or could not start it (`start_failed`) is always retried while
/// attempts remain; a workload that exited non-zero (or was killed for memory) is retried only
/// when its exit code is listed. Each retry excludes the providers of the failed attempts.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RecoveryPolicy {
    /// Attempts in all, the first included: 1 means never retry. At most [`MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// Exit codes that make a failed workload retried, e.g. 137 (SIGKILL) and 143 (SIGTERM).
    pub on_exit_codes: Vec<i32>,
    /// Least time between an attempt's end and the next attempt's match.
    pub backoff_secs: u64,
}

impl RecoveryPolicy {
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    pub const DEFAULT_BACKOFF_SECS: u64 = 5;

    /// Within the protocol's bounds.
    pub fn within_bounds(&self) -> bool {
        (1..=MAX_ATTEMPTS).contains(&self.max_attempts)
            && self.on_exit_codes.len() <= MAX_RETRY_EXIT_CODES
            && self.backoff_secs <= MAX_BACKOFF_SECS
    }

    /// Never retry.
    pub fn none() -> RecoveryPolicy {
        RecoveryPolicy {
            max_attempts: 1,
            on_exit_codes: Vec::new(),
            backoff_secs: 0,
        }
    }
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            on_exit_codes: Vec::new(),
            backoff_secs: Self::DEFAULT_BACKOFF_SECS,
        }
    }
}

/// How a workload ended, as the provider reports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum WorkloadOutcome {
    Succeeded = 0,
    /// Exited with an error of its own.
    Failed = 1,
    OutOfMemory = 2,
    /// Ran past `max_duration`.
    TimedOut = 3,
    /// The manifest never arrived or did not match the order; nothing ran.
    ManifestRejected = 4,
    /// The image could not be found or pulled; nothing ran.
    ImageUnavailable = 5,
    /// The provider could not start it for a reason of its own; nothing ran.
    StartFailed = 6,
    /// Filled more disk than the spec's `resources.disk` and was stopped by the provider.
    DiskExceeded = 7,
    /// The provider lost the workload (its agent restarted and could not find it again):
    /// the lease ends `provider_lost`, paid only to the last proof of life, and is retried.
    Lost = 8,
}

/// Usage the provider measured, reported at completion.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct UsageReport {
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub max_rss_mib: u64,
    /// Mean GPU utilisation in percent, when GPUs were used and measured.
    pub gpu_util_pct: Option<u8>,
    /// Peak GPU memory in use, summed over the lease's GPUs, when measured.
    pub gpu_memory_mib: Option<u64>,
}

/// What a provider reports when a lease's workload ends.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct LeaseResult {
    pub outcome: WorkloadOutcome,
    pub exit_code: Option<i32>,
    /// BLAKE3 of the output listing (sorted paths with their digests), if outputs were kept.
    /// For an order with verification, the run's result tag instead
    /// ([`crate::verification::result_tag`]), required when the outcome is `succeeded`.
    pub output_digest: Option<Hash>,
    pub usage: UsageReport,
    /// A short explanation for people, e.g. the image name that was missing.
    pub detail: String,
}

/// The one action a transaction performs.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// Move `amount` of `denom` to `to`.
    Transfer {
        to: Address,
        denom: Denom,
        amount: Amount,
    },
    /// Become a provider, locking `stake` gpn.
    RegisterProvider {
        stake: Amount,
        profile: ProviderProfile,
    },
    /// Change endpoint, region, capacity or runtimes. Live leases keep what they hold.
    UpdateProvider { profile: ProviderProfile },
    /// Stop providing and take the stake back; only with no live leases.
    DeregisterProvider,
    /// Open an order; the deposit moves into escrow.
    CreateOrder { terms: OrderTerms },
    /// Cancel an open order (full refund) or end its running lease (pay for time used).
    CancelOrder { order: OrderId },
    /// Offer to run an open order at `price_per_hour` (usd).
    PlaceBid {
        order: OrderId,
        price_per_hour: Amount,
    },
    /// The provider received a valid manifest and the workload is running: billing starts.
    StartLease { lease: LeaseId },
    /// The workload ended: final settlement, refund of unused escrow.
    CompleteLease { lease: LeaseId, result: LeaseResult },
    /// The provider is alive and runs these leases (ascending ids, each at most once): each
    /// listed live lease is paid up to this block; a running lease left unlisted for
    /// `liveness_timeout_blocks` ends `provider_lost`.
    Heartbeat { leases: Vec<LeaseId> },
    /// Add `amount` usd to an order's escrow. Anyone may; a paused lease resumes.
    TopUpOrder { order: OrderId, amount: Amount },
    /// The provider gives a live lease back (graceful exit): it ends `provider_left`, paid up
    /// to now, and the order is retried elsewhere under its recovery policy.
    ReleaseLease { lease: LeaseId },
    /// The provider is leaving: it takes no new leases (its bids are refused and dropped).
    AnnounceExit,
    /// Add `amount` gpn to the signer's provider stake (to list more GPUs, or after a slash).
    BondStake { amount: Amount },
    /// Take `amount` gpn out of the signer's provider stake, keeping what its listing needs: it
    /// unbonds for `unbonding_blocks` (still slashable) and then returns to the balance.
    UnbondStake { amount: Amount },
    /// The provider of a run of a verified order that the ledger asked to reveal
    /// (`RevealRequested`) shows the output digest behind the tag it reported.
    RevealDigest {
        order: OrderId,
        lease: LeaseId,
        digest: Hash,
    },
    /// The tenant disputes the unchecked result of its spot-checked order, within the dispute
    /// window: the job is rerun elsewhere from the order's escrow, and a referee decides if the
    /// two disagree. The loser pays: a wrong provider is slashed (part to the tenant); a
    /// tenant whose provider was right has paid for the reruns.
    Dispute { order: OrderId },
    /// The provider commits to its answer to hardware challenge `challenge` (the ledger's
    /// `ChallengeIssued`): the root of the Merkle tree over the product, before the deadline.
    CommitChallenge { challenge: u64, root: Hash },
    /// The provider opens leaves of its committed answer that hold the entries the ledger
    /// sampled (`ChallengeSampled`), at most `MAX_OPENINGS_PER_TX` per transaction. Each is
    /// checked at once: a wrong one fails the challenge.
    OpenChallenge {
        challenge: u64,
        openings: Vec<crate::ChallengeOpening>,
    },
    /// The verifier the ledger chose for a `compare: tensors` order (`VerdictRequested`)
    /// posts what it found, before the deadline: the runs whose declared outputs agree within
    /// the job's tolerances (none, or at least two), and the runs whose outputs it never
    /// received intact from the tenant. Every other run named in the request disagreed.
    PostVerdict {
        order: OrderId,
        agreeing: Vec<LeaseId>,
        missing: Vec<LeaseId>,
    },
    /// The provider of a live lease says where its service is reached (each published port,
    /// and its names through the provider's ingress), replacing what it said before; the
    /// lease's record shows them to anyone. The provider's word: a tenant checks them by using
    /// them.
    PublishEndpoints {
        lease: LeaseId,
        endpoints: Vec<String>,
    },
}

/// Most endpoints one lease records.
pub const MAX_LEASE_ENDPOINTS: usize = 32;
/// Longest endpoint a lease records, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 256;

/// Whether `endpoints` may be recorded for a lease: at most [`MAX_LEASE_ENDPOINTS`], each
/// once, each an `http://`, `https://` or `tcp://` URL of 1 to [`MAX_ENDPOINT_BYTES`]
/// printable ASCII bytes without spaces.
pub fn endpoints_valid(endpoints: &[String]) -> bool {
    endpoints.len() <= MAX_LEASE_ENDPOINTS
        && endpoints.iter().enumerate().all(|(i, e)| {
            e.len() <= MAX_ENDPOINT_BYTES
                && e.bytes().all(|b| b.is_ascii_graphic())
                && ["http://", "https://", "tcp://"]
                    .iter()
                    .any(|scheme| e.len() > scheme.len() && e.starts_with(scheme))
                && !endpoints[..i].contains(e)
        })
}

impl Msg {
    /// Snake-case name, for logs, metrics and the API.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Transfer { .. } => "transfer",
            Msg::RegisterProvider { .. } => "register_provider",
            Msg::UpdateProvider { .. } => "update_provider",
            Msg::DeregisterProvider => "deregister_provider",
            Msg::CreateOrder { .. } => "create_order",
            Msg::CancelOrder { .. } => "cancel_order",
            Msg::PlaceBid { .. } => "place_bid",
            Msg::StartLease { .. } => "start_lease",
            Msg::CompleteLease { .. } => "complete_lease",
            Msg::Heartbeat { .. } => "heartbeat",
            Msg::TopUpOrder { .. } => "top_up_order",
            Msg::ReleaseLease { .. } => "release_lease",
            Msg::AnnounceExit => "announce_exit",
            Msg::BondStake { .. } => "bond_stake",
            Msg::UnbondStake { .. } => "unbond_stake",
            Msg::RevealDigest { .. } => "reveal_digest",
            Msg::Dispute { .. } => "dispute",
            Msg::CommitChallenge { .. } => "commit_challenge",
            Msg::OpenChallenge { .. } => "open_challenge",
            Msg::PostVerdict { .. } => "post_verdict",
            Msg::PublishEndpoints { .. } => "publish_endpoints",
        }
    }
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxBody {
    pub chain_id: String,
    pub signer: Address,
    /// Must equal the signer's account nonce: 0 for its first transaction, then 1, 2, …
    pub nonce: u64,
    /// Paid in gpn and burned.
    pub fee: Amount,
    pub msg: Msg,
}

/// A transaction with its signature.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTx {
    pub body: TxBody,
    pub signature: [u8; 64],
}

impl TxBody {
    /// The exact bytes the signer signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = TX_SIGNING_DOMAIN.to_vec();
        // Writing into a Vec cannot fail.
        out.extend(borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail"));
        out
    }

    /// Signs with `key`. The caller makes sure `key` belongs to `self.signer`.
    pub fn sign(self, key: &ed25519_dalek::SigningKey) -> SignedTx {
        use ed25519_dalek::Signer;
        let signature = key.sign(&self.signing_bytes()).to_bytes();
        SignedTx {
            body: self,
            signature,
        }
    }
}

impl SignedTx {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail")
    }

    /// Decodes untrusted bytes: size-checked first, and the whole input must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<SignedTx, Rejection> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(Rejection::TxTooLarge);
        }
        borsh::from_slice(bytes).map_err(|_| Rejection::MalformedTx)
    }

    /// BLAKE3 of the canonical encoding.
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }

    /// Checks the signature against the signer's key. Strict verification: no malleable
    /// signatures, no small-order keys.
    pub fn verify_signature(&self) -> Result<(), Rejection> {
        let key = self
            .body
            .signer
            .verifying_key()
            .ok_or(Rejection::BadSignature)?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&self.body.signing_bytes(), &sig)
            .map_err(|_| Rejection::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    fn transfer(signer: &ed25519_dalek::SigningKey) -> SignedTx {
        TxBody {
            chain_id: "test".into(),
            signer: Address::from_key(&signer.verifying_key()),
            nonce: 0,
            fee: Amount::from_micros(1_000),
            msg: Msg::Transfer {
                to: Address([9; 32]),
                denom: Denom::Usd,
                amount: Amount::from_micros(5),
            },
        }
        .sign(signer)
    }

    #[test]
    fn signed_transactions_verify_and_round_trip() {
        let tx = transfer(&key(1));
        assert_eq!(tx.verify_signature(), Ok(()));
        let back = SignedTx::decode(&tx.encode()).expect("decodes");
        assert_eq!(back, tx);
        assert_eq!(back.hash(), tx.hash());
    }

    #[test]
    fn a_changed_body_or_a_foreign_signer_fails_verification() {
        let mut tx = transfer(&key(1));
        tx.body.nonce = 1;
        assert_eq!(tx.verify_signature(), Err(Rejection::BadSignature));
        let mut tx = transfer(&key(1));
        tx.body.signer = Address::from_key(&key(2).verifying_key());
        assert_eq!(tx.verify_signature(), Err(Rejection::BadSignature));
    }

    #[test]
    fn oversized_truncated_or_padded_bytes_are_rejected() {
        let bytes = transfer(&key(1)).encode();
        assert_eq!(
            SignedTx::decode(&bytes[..bytes.len() - 1]),
            Err(Rejection::MalformedTx)
        );
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(SignedTx::decode(&padded), Err(Rejection::MalformedTx));
        assert_eq!(
            SignedTx::decode(&vec![0u8; MAX_TX_BYTES + 1]),
            Err(Rejection::TxTooLarge)
        );
    }
}
