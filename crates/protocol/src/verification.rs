//! Result verification, chosen per order: what a tenant asks the network to check, and the
//! result *tag* a provider reports instead of its output digest when it is checked.
//!
//! A verified order is run more than once on providers that are not each other (ADR 0010): a
//! spot check reruns it elsewhere with a probability the ledger draws after the first run has
//! reported, replicas run it `replicas` times. Runs are compared by their tags,
//! `tag = BLAKE3(domain ‖ order id ‖ output digest)` ([`result_tag`]). A tag hides the digest
//! (the outputs' listing, which has the outputs' own digests in it), so a later run cannot
//! learn the earlier runs' answer from the chain, and a run after the first must later reveal
//! the digest behind its tag: one that copied an earlier tag cannot, and loses as a wrong run.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{Hash, OrderId};

/// Domain tag of a result tag.
pub const RESULT_TAG_DOMAIN: &[u8] = b"gpunet/result-tag/v1\0";
/// Most runs a replicated order may ask for.
pub const MAX_REPLICAS: u8 = 5;

/// How an order's result is checked.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum VerificationMode {
    /// Not checked: the provider's report is taken as it is.
    #[default]
    None = 0,
    /// Rerun on another provider with a probability the ledger sets from the payment, the
    /// provider's stake and its verified record (always, while the provider is on probation).
    SpotCheck = 1,
    /// Run `replicas` times on distinct providers; the majority of their tags wins.
    Replicas = 2,
}

impl VerificationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationMode::None => "none",
            VerificationMode::SpotCheck => "spot_check",
            VerificationMode::Replicas => "replicas",
        }
    }
}

/// How two runs' results are compared.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Compare {
    /// Byte for byte: the output listings' digests must be equal. The job must be
    /// deterministic.
    #[default]
    Exact = 0,
    /// Declared numeric outputs within a tolerance, judged by a verifier provider. Not yet
    /// built: the ledger refuses it (`verification_unsupported`).
    Tensors = 1,
}

/// What an order asks the network to check.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    pub mode: VerificationMode,
    /// Runs in all for `replicas` (2 to [`MAX_REPLICAS`]); ignored otherwise.
    #[serde(default)]
    pub replicas: u8,
    #[serde(default)]
    pub compare: Compare,
}

impl Verification {
    /// No checking.
    pub const NONE: Verification = Verification {
        mode: VerificationMode::None,
        replicas: 0,
        compare: Compare::Exact,
    };

    /// Whether this is no checking at all.
    pub fn is_none(&self) -> bool {
        !self.is_verified()
    }

    /// Whether runs of an order with this verification report tags and are compared.
    pub fn is_verified(&self) -> bool {
        self.mode != VerificationMode::None
    }

    /// Checks the bounds; `Err` names the problem for people.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self.mode {
            VerificationMode::None => Ok(()),
            VerificationMode::SpotCheck => Ok(()),
            VerificationMode::Replicas if (2..=MAX_REPLICAS).contains(&self.replicas) => Ok(()),
            VerificationMode::Replicas => Err("replicas must be 2 to 5 for mode replicas"),
        }
    }
}

/// The tag a run of a verified order reports (as its `output_digest`) for an output listing
/// with digest `digest`.
pub fn result_tag(order: OrderId, digest: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(RESULT_TAG_DOMAIN);
    h.update(&order.0.to_le_bytes());
    h.update(&digest.0);
    Hash(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_bind_the_order_and_the_digest() {
        let d = Hash([7; 32]);
        assert_eq!(result_tag(OrderId(1), &d), result_tag(OrderId(1), &d));
        assert_ne!(result_tag(OrderId(1), &d), result_tag(OrderId(2), &d));
        assert_ne!(
            result_tag(OrderId(1), &d),
            result_tag(OrderId(1), &Hash([8; 32]))
        );
        assert_ne!(result_tag(OrderId(1), &d), d);
    }

    #[test]
    fn replicas_are_bounded_and_the_default_is_none() {
        assert_eq!(Verification::default(), Verification::NONE);
        let r = |n| Verification {
            mode: VerificationMode::Replicas,
            replicas: n,
            compare: Compare::Exact,
        };
        assert!(r(1).validate().is_err());
        assert!(r(2).validate().is_ok());
        assert!(r(5).validate().is_ok());
        assert!(r(6).validate().is_err());
    }
}
