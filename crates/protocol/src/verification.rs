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
    /// The declared numeric outputs (`.npy`, `.safetensors`) within `rtol`/`atol`, judged by
    /// a verifier provider the ledger draws, which posts a signed verdict (`PostVerdict`). For
    /// jobs that are not bit-for-bit deterministic (GPU inference, training steps).
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

/// Most outputs a `compare: tensors` job may declare.
pub const MAX_TENSOR_OUTPUTS: usize = 16;
/// Longest declared output path, in bytes.
pub const MAX_TENSOR_PATH_BYTES: usize = 256;

/// A tolerance of `compare: tensors`: a finite, non-negative number (`1e-5`). Compared by its
/// bits, so a spec stays `Eq` and its manifest's hash is stable.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tol(pub f64);

impl PartialEq for Tol {
    fn eq(&self, other: &Tol) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Tol {}

/// What the job spec says about checking, as the tenant writes it: the on-chain
/// [`Verification`] plus, for `compare: tensors`, which outputs to compare and how closely.
/// The tolerances travel in the manifest, whose hash the order commits to, so the tenant
/// cannot hand the verifier other ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationSpec {
    pub mode: VerificationMode,
    /// Runs in all for `replicas` (2 to [`MAX_REPLICAS`]); ignored otherwise.
    #[serde(default)]
    pub replicas: u8,
    #[serde(default)]
    pub compare: Compare,
    /// For `compare: tensors` (and only then): the outputs to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors: Option<TensorsSpec>,
}

/// The outputs a `compare: tensors` job declares and the tolerances its runs must agree
/// within: element by element, `|a - b| <= atol + rtol * max(|a|, |b|)` (numpy's `isclose`,
/// made symmetric); integer and bool tensors exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorsSpec {
    /// Paths under `$GPUNET_OUTPUTS` of `.npy` or `.safetensors` files, 1 to
    /// [`MAX_TENSOR_OUTPUTS`]. Other outputs are kept but not compared.
    pub outputs: Vec<String>,
    /// Relative tolerance; numpy's default `1e-5` when absent.
    #[serde(default = "default_rtol")]
    pub rtol: Tol,
    /// Absolute tolerance; numpy's default `1e-8` when absent.
    #[serde(default = "default_atol")]
    pub atol: Tol,
}

fn default_rtol() -> Tol {
    Tol(1e-5)
}

fn default_atol() -> Tol {
    Tol(1e-8)
}

impl VerificationSpec {
    /// What the order carries on chain.
    pub fn terms(&self) -> Verification {
        Verification {
            mode: self.mode,
            replicas: self.replicas,
            compare: self.compare,
        }
    }

    /// Whether this is no checking at all.
    pub fn is_none(&self) -> bool {
        self.terms().is_none()
    }

    /// Checks the bounds; `Err` names the field and the problem for people.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.terms()
            .validate()
            .map_err(|why| ("verification", why.to_owned()))?;
        match (self.compare, &self.tensors) {
            (Compare::Exact, None) => Ok(()),
            (Compare::Exact, Some(_)) => Err((
                "verification.tensors",
                "is given but compare is exact; set compare: tensors, or remove tensors".into(),
            )),
            (Compare::Tensors, None) => Err((
                "verification.tensors",
                "is missing: compare: tensors needs tensors: { outputs: [out.npy], rtol: 1e-5, \
                 atol: 1e-8 }"
                    .into(),
            )),
            (Compare::Tensors, Some(_)) if !self.terms().is_verified() => Err((
                "verification.compare",
                "tensors needs mode spot_check or replicas".into(),
            )),
            (Compare::Tensors, Some(t)) => t.validate(),
        }
    }
}

impl TensorsSpec {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.outputs.is_empty() || self.outputs.len() > MAX_TENSOR_OUTPUTS {
            return Err((
                "verification.tensors.outputs",
                format!(
                    "lists {} paths; list 1 to {MAX_TENSOR_OUTPUTS} output files to compare",
                    self.outputs.len()
                ),
            ));
        }
        for (i, path) in self.outputs.iter().enumerate() {
            tensor_path_ok(path).map_err(|why| {
                (
                    "verification.tensors.outputs",
                    format!("[{i}] {path:?}: {why}"),
                )
            })?;
            if self.outputs[..i].contains(path) {
                return Err((
                    "verification.tensors.outputs",
                    format!("[{i}] {path:?} is listed twice"),
                ));
            }
        }
        for (name, tol) in [("rtol", self.rtol), ("atol", self.atol)] {
            if !tol.0.is_finite() || tol.0 < 0.0 {
                return Err((
                    "verification.tensors",
                    format!("{name} must be a finite number of at least 0, e.g. 1e-5"),
                ));
            }
        }
        Ok(())
    }
}

/// A declared output's path: relative, no `.` or `..` parts, ending `.npy` or `.safetensors`.
fn tensor_path_ok(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > MAX_TENSOR_PATH_BYTES {
        return Err("must be 1 to 256 bytes");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err("must be relative to $GPUNET_OUTPUTS, with / between parts");
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("must not have empty, . or .. parts");
    }
    if !(path.ends_with(".npy") || path.ends_with(".safetensors")) {
        return Err("must end in .npy or .safetensors");
    }
    Ok(())
}

/// Most bytes of declared outputs one run's bundle may carry to a verifier: 256 MiB.
pub const MAX_BUNDLE_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;

/// One file of a run's output listing, as the provider listed it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BundleEntry {
    pub path: String,
    pub size: u64,
    /// BLAKE3 of the plaintext.
    pub digest: Hash,
}

/// What the tenant sends the verifier of a `compare: tensors` order for one run, sealed to it
/// (purpose `Verdict`, bound to the run's lease): the manifest (whose hash the order commits
/// to: the declared outputs and tolerances), the run's whole output listing (whose digest the
/// run's tag commits to), and the bytes of the declared outputs the listing holds. The
/// verifier checks each against the chain, so a tenant can withhold a run but not alter one.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RunBundle {
    pub manifest: Vec<u8>,
    pub listing: Vec<BundleEntry>,
    /// `(path, bytes)` of each declared output the listing holds.
    pub files: Vec<(String, Vec<u8>)>,
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

    #[test]
    fn tensors_need_declared_outputs_with_safe_paths_and_sane_tolerances() {
        let spec = |paths: &[&str], rtol: f64| VerificationSpec {
            mode: VerificationMode::Replicas,
            replicas: 2,
            compare: Compare::Tensors,
            tensors: Some(TensorsSpec {
                outputs: paths.iter().map(|p| (*p).to_owned()).collect(),
                rtol: Tol(rtol),
                atol: Tol(1e-8),
            }),
        };
        assert_eq!(
            spec(&["logits.npy", "w/model.safetensors"], 1e-5).validate(),
            Ok(())
        );
        for bad in [
            spec(&[], 1e-5),
            spec(&["../etc/passwd.npy"], 1e-5),
            spec(&["/abs.npy"], 1e-5),
            spec(&["a//b.npy"], 1e-5),
            spec(&["out.txt"], 1e-5),
            spec(&["a.npy", "a.npy"], 1e-5),
            spec(&["a.npy"], -1.0),
            spec(&["a.npy"], f64::NAN),
            spec(&["a.npy"], f64::INFINITY),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let mut exact_with_tensors = spec(&["a.npy"], 1e-5);
        exact_with_tensors.compare = Compare::Exact;
        assert!(exact_with_tensors.validate().is_err());
        let mut unchecked = spec(&["a.npy"], 1e-5);
        unchecked.mode = VerificationMode::None;
        assert!(unchecked.validate().is_err());
        let mut missing = spec(&["a.npy"], 1e-5);
        missing.tensors = None;
        assert!(missing.validate().is_err());
    }
}
