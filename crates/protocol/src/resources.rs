//! What a job asks for ([`Resources`]) and what a provider offers ([`Capacity`]), with the one
//! feasibility rule both the agent's bidding and the ledger's re-check use.
//!
//! Every quantity a job asks for has an upper bound ([`MAX_CPU_MILLIS`], [`MAX_MEMORY_MIB`],
//! [`MAX_DISK_MIB`], [`MAX_GPUS_PER_ORDER`], [`MAX_VRAM_MIB`]): well above any machine sold
//! today, yet far from where `u64` arithmetic could overflow, so a request for 16 EiB is refused
//! at once instead of waiting forever for a provider that cannot exist.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{EncryptionKey, Rates};

/// Most GPUs one provider may declare.
pub const MAX_GPUS_PER_PROVIDER: usize = 64;
/// Most GPU model names one order may accept.
pub const MAX_GPU_MODELS_PER_ORDER: usize = 16;
/// Longest GPU model or family name, in bytes.
pub const MAX_GPU_NAME_BYTES: usize = 48;
/// Most regions one order may list.
pub const MAX_REGIONS_PER_ORDER: usize = 16;
/// Longest region name, in bytes.
pub const MAX_REGION_BYTES: usize = 48;
/// Longest provider endpoint URL, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 256;
/// Most CPU one job may ask for, in thousandths of a core (1024 cores).
pub const MAX_CPU_MILLIS: u32 = 1024 * 1000;
/// Most memory one job may ask for, in MiB (16 TiB: the largest single servers hold 12–16).
pub const MAX_MEMORY_MIB: u64 = 16 << 20;
/// Most scratch disk one job may ask for, in MiB (1 PiB, written `1024Ti`).
pub const MAX_DISK_MIB: u64 = 1 << 30;
/// Most GPUs one job may ask for: as many as one provider may declare, since a job runs on one
/// provider.
pub const MAX_GPUS_PER_ORDER: u32 = MAX_GPUS_PER_PROVIDER as u32;
/// Largest per-GPU memory minimum a job may ask for, in MiB (1 TiB; today's largest GPUs hold
/// under 300 GiB).
pub const MAX_VRAM_MIB: u64 = 1 << 20;

/// How a workload is run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Runtime {
    /// A sandboxed host process (own directory, cleared environment, rlimits).
    Process = 0,
    /// A container on the Docker Engine.
    Docker = 1,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Process => "process",
            Runtime::Docker => "docker",
        }
    }
}

/// The Linux capabilities a container's processes may hold (ADR 0013). A job asks for them
/// (`run.capabilities`, in its order's terms) and a provider says the most it grants (in its
/// profile); the ledger matches a job only to a provider that grants what it asks.
///
/// Ordered: a provider that grants a set grants every set below it.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Capabilities {
    /// None at all (`cap_drop: ALL`): root in the container cannot change a file's owner nor
    /// switch users. Every provider grants this.
    #[default]
    None = 0,
    /// [`BASELINE_CAPABILITIES`]: Docker's default set without `NET_RAW`, as the Kubernetes
    /// Pod Security Standards' *baseline* allows. Images that start as root, `chown` their
    /// directories and switch to their own user (the official nginx and postgres images) need
    /// it. `no-new-privileges` and the engine's seccomp profile still hold.
    Baseline = 1,
}

/// The capabilities [`Capabilities::Baseline`] grants, as Docker names them.
pub const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

impl Capabilities {
    pub fn as_str(self) -> &'static str {
        match self {
            Capabilities::None => "none",
            Capabilities::Baseline => "baseline",
        }
    }

    /// The capabilities a container is given, as Docker names them.
    pub fn granted(self) -> &'static [&'static str] {
        match self {
            Capabilities::None => &[],
            Capabilities::Baseline => &BASELINE_CAPABILITIES,
        }
    }

    /// Whether it is [`Capabilities::None`], the default (for `skip_serializing_if`).
    pub fn is_none(&self) -> bool {
        *self == Capabilities::None
    }
}

/// GPUs a job needs.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct GpuRequirement {
    pub count: u32,
    /// Any of these models or families (`h100`, `a100-80gb`); empty means any GPU.
    pub models: Vec<String>,
    /// Minimum memory per GPU.
    pub vram_mib_min: u64,
}

/// Resources a job needs for its whole run.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Resources {
    /// Thousandths of a CPU core (1500 = 1.5 cores).
    pub cpu_millis: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    pub gpu: GpuRequirement,
}

/// One physical GPU a provider offers, in the order the provider lists them. Leases are
/// assigned GPUs by their index in this list.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct GpuSlot {
    /// Normalised model, e.g. `h100-80gb`.
    pub model: String,
    /// Family, e.g. `h100`.
    pub family: String,
    pub vram_mib: u64,
}

impl GpuSlot {
    /// Whether this GPU satisfies the model list and memory minimum of `req`.
    pub fn satisfies(&self, req: &GpuRequirement) -> bool {
        let model_ok = req.models.is_empty()
            || req.models.iter().any(|m| {
                m.eq_ignore_ascii_case(&self.model) || m.eq_ignore_ascii_case(&self.family)
            });
        model_ok && self.vram_mib >= req.vram_mib_min
    }
}

/// What a provider's machine offers to the market.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Capacity {
    pub cpu_millis: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    pub gpus: Vec<GpuSlot>,
}

/// A provider's public profile, declared at registration.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ProviderProfile {
    /// Base URL of the provider agent's HTTP endpoint, where tenants send manifests.
    pub endpoint: String,
    pub region: String,
    pub capacity: Capacity,
    /// Runtimes offered, sorted and without duplicates.
    pub runtimes: Vec<Runtime>,
    /// The agent's X25519 public key: tenants seal manifests to it (see [`crate::sealed`]).
    pub encryption_key: EncryptionKey,
    /// What the provider asks per hour ([`crate::rates`]): public, so tenants see prices before
    /// they submit, and binding: the ledger refuses this provider's bids above them.
    pub rates: Rates,
    /// The most a container may be granted here (ADR 0013); [`Capabilities::None`] unless the
    /// operator allows more (`gpunet provider start --allow-capabilities baseline`).
    #[serde(default, skip_serializing_if = "Capabilities::is_none")]
    pub capabilities: Capabilities,
}

/// Why a profile or resource request is not acceptable. Each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
}

fn invalid(field: &'static str, why: impl Into<String>) -> ShapeError {
    ShapeError::Invalid {
        field,
        why: why.into(),
    }
}

pub(crate) fn check_name(field: &'static str, s: &str, max: usize) -> Result<(), ShapeError> {
    if s.is_empty() || s.len() > max {
        return Err(invalid(field, format!("must be 1 to {max} bytes")));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            field,
            format!("{s:?} may hold only a-z, 0-9, '-' and '_'"),
        ));
    }
    Ok(())
}

/// Checks a region name: 1 to 48 bytes of `a-z`, `0-9`, `-`, `_`.
pub fn validate_region(field: &'static str, region: &str) -> Result<(), ShapeError> {
    check_name(field, region, MAX_REGION_BYTES)
}

impl ProviderProfile {
    /// Checks bounds and shapes; the ledger calls this on every registration.
    pub fn validate(&self) -> Result<(), ShapeError> {
        if self.endpoint.is_empty() || self.endpoint.len() > MAX_ENDPOINT_BYTES {
            return Err(invalid(
                "endpoint",
                format!("must be 1 to {MAX_ENDPOINT_BYTES} bytes"),
            ));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(invalid("endpoint", "must start with http:// or https://"));
        }
        check_name("region", &self.region, MAX_REGION_BYTES)?;
        if self.capacity.gpus.len() > MAX_GPUS_PER_PROVIDER {
            return Err(invalid(
                "capacity.gpus",
                format!("at most {MAX_GPUS_PER_PROVIDER} GPUs per provider"),
            ));
        }
        for g in &self.capacity.gpus {
            check_name("capacity.gpus.model", &g.model, MAX_GPU_NAME_BYTES)?;
            check_name("capacity.gpus.family", &g.family, MAX_GPU_NAME_BYTES)?;
        }
        if self.runtimes.is_empty() {
            return Err(invalid("runtimes", "offer at least one runtime"));
        }
        if self.runtimes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid("runtimes", "must be sorted and without duplicates"));
        }
        if self.encryption_key.is_zero() {
            return Err(invalid(
                "encryption_key",
                "is all zeros; register the agent's X25519 public key",
            ));
        }
        self.rates.validate()
    }
}

/// A size in MiB in the largest binary unit that shows it exactly: `16Ti`, `1536Mi`.
pub fn mib_text(mib: u64) -> String {
    for (shift, unit) in [(20, "Ti"), (10, "Gi")] {
        if mib != 0 && mib.is_multiple_of(1 << shift) {
            return format!("{}{unit}", mib >> shift);
        }
    }
    format!("{mib}Mi")
}

/// Thousandths of a core as a decimal number of cores: `1500` → `1.5`.
pub fn cores_text(millis: u32) -> String {
    let (whole, frac) = (millis / 1000, millis % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

impl Resources {
    /// Checks the upper bound of every quantity. Field names are the job spec's, so the job spec
    /// parser reports these errors as they are.
    pub fn check_bounds(&self) -> Result<(), ShapeError> {
        if self.cpu_millis > MAX_CPU_MILLIS {
            return Err(invalid(
                "resources.cpu",
                format!(
                    "{} cores is more than the {} a job may ask for; ask for at most {}",
                    cores_text(self.cpu_millis),
                    MAX_CPU_MILLIS / 1000,
                    MAX_CPU_MILLIS / 1000
                ),
            ));
        }
        let sizes = [
            (
                "resources.memory",
                self.memory_mib,
                MAX_MEMORY_MIB,
                "memory",
            ),
            ("resources.disk", self.disk_mib, MAX_DISK_MIB, "disk"),
            (
                "resources.gpu.vram",
                self.gpu.vram_mib_min,
                MAX_VRAM_MIB,
                "memory per GPU",
            ),
        ];
        for (field, mib, max, what) in sizes {
            if mib > max {
                return Err(invalid(
                    field,
                    format!(
                        "{} is more than the {} of {what} a job may ask for; ask for at most {}",
                        mib_text(mib),
                        mib_text(max),
                        mib_text(max)
                    ),
                ));
            }
        }
        if self.gpu.count > MAX_GPUS_PER_ORDER {
            return Err(invalid(
                "resources.gpu.count",
                format!(
                    "{} is more than the {MAX_GPUS_PER_ORDER} GPUs one provider may have, and a \
                     job runs on one provider; ask for at most {MAX_GPUS_PER_ORDER}",
                    self.gpu.count
                ),
            ));
        }
        Ok(())
    }

    /// Checks bounds and shapes of a request.
    pub fn validate(&self) -> Result<(), ShapeError> {
        self.check_bounds()?;
        if self.cpu_millis == 0 {
            return Err(invalid("resources.cpu", "must be more than 0"));
        }
        if self.memory_mib == 0 {
            return Err(invalid("resources.memory", "must be more than 0"));
        }
        if self.gpu.models.len() > MAX_GPU_MODELS_PER_ORDER {
            return Err(invalid(
                "resources.gpu.models",
                format!("at most {MAX_GPU_MODELS_PER_ORDER} models"),
            ));
        }
        for m in &self.gpu.models {
            check_name("resources.gpu.models", m, MAX_GPU_NAME_BYTES)?;
        }
        Ok(())
    }
}

/// Resources still free on a provider: its capacity less what its live leases hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Free {
    pub cpu_millis: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    /// Indices into [`Capacity::gpus`] not held by any lease.
    pub gpu_slots: Vec<u32>,
}

impl Free {
    /// Everything in `capacity` is free.
    pub fn all_of(capacity: &Capacity) -> Free {
        Free {
            cpu_millis: capacity.cpu_millis,
            memory_mib: capacity.memory_mib,
            disk_mib: capacity.disk_mib,
            gpu_slots: (0..capacity.gpus.len() as u32).collect(),
        }
    }

    /// The GPU slots `req` would be given, lowest indices first, or `None` if it does not fit.
    /// This is the feasibility rule: the agent bids only where it holds, and the ledger checks it
    /// again before it accepts a bid and again before it creates the lease.
    pub fn fit(&self, capacity: &Capacity, req: &Resources) -> Option<Vec<u32>> {
        if req.cpu_millis > self.cpu_millis
            || req.memory_mib > self.memory_mib
            || req.disk_mib > self.disk_mib
        {
            return None;
        }
        let wanted = req.gpu.count as usize;
        let slots: Vec<u32> = self
            .gpu_slots
            .iter()
            .copied()
            .filter(|&i| {
                capacity
                    .gpus
                    .get(i as usize)
                    .is_some_and(|g| g.satisfies(&req.gpu))
            })
            .take(wanted)
            .collect();
        (slots.len() == wanted).then_some(slots)
    }

    /// Removes what a lease holds. Saturating: callers have checked with [`Free::fit`].
    pub fn take(&mut self, req: &Resources, slots: &[u32]) {
        self.cpu_millis = self.cpu_millis.saturating_sub(req.cpu_millis);
        self.memory_mib = self.memory_mib.saturating_sub(req.memory_mib);
        self.disk_mib = self.disk_mib.saturating_sub(req.disk_mib);
        self.gpu_slots.retain(|s| !slots.contains(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100() -> GpuSlot {
        GpuSlot {
            model: "h100-80gb".into(),
            family: "h100".into(),
            vram_mib: 81_559,
        }
    }

    fn capacity() -> Capacity {
        Capacity {
            cpu_millis: 8_000,
            memory_mib: 32_768,
            disk_mib: 100_000,
            gpus: vec![h100(), h100()],
        }
    }

    fn job(gpus: u32, models: &[&str], vram: u64) -> Resources {
        Resources {
            cpu_millis: 1_000,
            memory_mib: 1_024,
            disk_mib: 1_024,
            gpu: GpuRequirement {
                count: gpus,
                models: models.iter().map(|s| s.to_string()).collect(),
                vram_mib_min: vram,
            },
        }
    }

    #[test]
    fn gpu_jobs_fit_by_family_or_exact_model_and_memory() {
        let cap = capacity();
        let free = Free::all_of(&cap);
        assert_eq!(free.fit(&cap, &job(1, &["h100"], 40_960)), Some(vec![0]));
        assert_eq!(
            free.fit(&cap, &job(2, &["a100", "h100-80gb"], 0)),
            Some(vec![0, 1])
        );
        assert_eq!(free.fit(&cap, &job(1, &["a100"], 0)), None);
        assert_eq!(free.fit(&cap, &job(1, &[], 90_000)), None);
        assert_eq!(free.fit(&cap, &job(3, &[], 0)), None);
    }

    #[test]
    fn taken_resources_are_no_longer_free() {
        let cap = capacity();
        let mut free = Free::all_of(&cap);
        let req = job(1, &[], 0);
        let slots = free.fit(&cap, &req).expect("fits");
        free.take(&req, &slots);
        assert_eq!(free.gpu_slots, vec![1]);
        assert_eq!(free.cpu_millis, 7_000);
        assert_eq!(free.fit(&cap, &job(2, &[], 0)), None);
    }

    #[test]
    fn profiles_with_bad_fields_name_the_field() {
        let mut p = ProviderProfile {
            capabilities: Default::default(),
            endpoint: "http://127.0.0.1:7000".into(),
            region: "eu-west".into(),
            capacity: capacity(),
            runtimes: vec![Runtime::Process],
            encryption_key: EncryptionKey([7; 32]),
            rates: Rates::default(),
        };
        assert_eq!(p.validate(), Ok(()));
        p.region = "EU West".into();
        let err = p.validate().expect_err("bad region").to_string();
        assert!(err.starts_with("region:"), "{err}");
        p.region = "eu-west".into();
        p.encryption_key = EncryptionKey::default();
        let err = p.validate().expect_err("zero key").to_string();
        assert!(err.starts_with("encryption_key:"), "{err}");
    }
}
