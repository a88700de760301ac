//! The version-1 job spec: the YAML a tenant writes, the [`JobSpec`] it parses into, and the
//! canonical JSON manifest the tenant sends the winning provider.
//!
//! A spec is parsed from text (never from a file: this crate does no I/O), every field is
//! checked, and each error names its field path (`resources.memory: "512MB" is not a size; use
//! e.g. 512Mi`). Quantities are held in integer units — thousandths of a core, MiB, seconds,
//! micro-units of money — and numbers are read by their text, never through a float.
//!
//! The chain never sees the spec itself: [`JobSpec::order_terms`] gives what an order needs,
//! including [`JobSpec::manifest_hash`], the BLAKE3 of [`JobSpec::manifest_bytes`]. The provider
//! turns the manifest back into a checked spec with [`JobSpec::from_manifest_bytes`] and compares
//! the hash of the bytes it received with the order's.
//!
//! The manifest is private: the tenant sends it sealed to the provider's encryption key
//! ([`crate::sealed`]), so `run.secrets` (and `storage.credentials`, see [`crate::storage`])
//! travel only inside it. The chain holds only its hash,
//! and at submit time the CLI fills [`JobSpec::salt`] with 32 random bytes so that the hash
//! reveals nothing about the manifest (not even a guessable secret), and
//! [`JobSpec::output_key`] with the key the provider seals outputs to, and
//! [`JobSpec::checkpoint_key`] with a fresh per-job secret that every attempt's provider seals
//! and opens the job's checkpoints with.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub use crate::resources::MAX_CPU_MILLIS;
use crate::resources::{
    MAX_GPU_MODELS_PER_ORDER, MAX_GPU_NAME_BYTES, MAX_REGION_BYTES, MAX_REGIONS_PER_ORDER,
    check_name,
};
pub use crate::storage::{Credentials, S3Bucket, SecretString, Storage};
use crate::tx::MAX_ORDER_NAME_BYTES;
use crate::{
    Amount, Capabilities, EncryptionKey, GpuRequirement, Hash, OrderTerms, Resources, Runtime,
    ShapeError,
};

/// Largest spec text accepted, in bytes; larger text is rejected before it is parsed.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;
/// Largest manifest (canonical JSON) accepted, in bytes. JSON escapes may make a manifest larger
/// than the YAML it came from, so this is more than [`MAX_SPEC_BYTES`].
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// The one spec version this code understands.
pub const SPEC_VERSION: u32 = 1;
/// Most arguments in `run.command`, the program included.
pub const MAX_COMMAND_ARGS: usize = 256;
/// Most bytes in all of `run.command` together.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Most variables in `run.env`.
pub const MAX_ENV_VARS: usize = 128;
/// Most bytes in all of `run.env` together, names and values.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// Most variables in `run.secrets`.
pub const MAX_SECRETS: usize = 64;
/// Most bytes in all of `run.secrets` together, names and values.
pub const MAX_SECRETS_BYTES: usize = 16 * 1024;
/// Longest container image reference, in bytes.
pub const MAX_IMAGE_BYTES: usize = 256;
/// Shortest `limits.max_duration`, in seconds.
pub const MIN_DURATION_SECS: u64 = 1;
/// Longest `limits.max_duration`, in seconds (30 days).
pub const MAX_DURATION_SECS: u64 = 30 * 86_400;
/// Environment names with this prefix are set by gpunet (`GPUNET_OUTPUTS`) and may not be given.
pub const RESERVED_ENV_PREFIX: &str = "GPUNET_";
/// Most ports a service may expose.
pub const MAX_EXPOSED_PORTS: usize = 16;
/// Longest `health.http_path`, in bytes.
pub const MAX_HEALTH_PATH_BYTES: usize = 256;
/// Most entries in `services`.
pub const MAX_SERVICES: usize = 8;
/// Most replicas (`count`) of one service.
pub const MAX_SERVICE_REPLICAS: u32 = 8;
/// Most containers one job runs at once: its own `run` and every service's replicas.
pub const MAX_CONTAINERS_PER_JOB: u32 = 16;
/// Longest service name (a DNS label).
pub const MAX_SERVICE_NAME_BYTES: usize = 63;
/// Most volumes of one container.
pub const MAX_VOLUMES: usize = 8;
/// Longest volume mount path, in bytes.
pub const MAX_MOUNT_PATH_BYTES: usize = 256;
/// Most in-place restarts of a container within one lease (`recovery.restarts`).
pub const MAX_RESTARTS: u32 = 10;
/// Container paths gpunet mounts or the kernel owns, which no volume may cover.
pub const RESERVED_MOUNTS: &[&str] = &[
    "/outputs",
    "/inputs",
    "/checkpoints",
    "/tmp",
    "/proc",
    "/sys",
    "/dev",
];

/// A parsed version-1 job spec. Field names are the YAML's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Spec format version; must be [`SPEC_VERSION`].
    pub version: u32,
    /// Job name, for people: 1–64 bytes of `a-z 0-9 - _`.
    pub name: String,
    #[serde(default)]
    pub kind: JobKind,
    pub run: RunSpec,
    /// Ports a service listens on; the provider publishes each on its loopback and reports the
    /// address. Only for `kind: service`, and only with `run.network: egress` (a container
    /// without a network cannot have published ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<Expose>,
    /// How the provider checks a service is up. Only for `kind: service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// More containers that run beside `run`, on one provider, as one job (a web front end with
    /// its API and database): see [`ServiceSpec`]. With services, the job's own `run` is known
    /// to them by the job's `name`, and `resources` are its own; the order asks for the sum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    /// Directories of the job's own container that keep what it writes across its restarts
    /// within the lease (`recovery.restarts`): see [`VolumeSpec`]. Container jobs only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    pub resources: ResourceSpec,
    #[serde(default)]
    pub placement: Placement,
    pub pricing: Pricing,
    pub limits: Limits,
    /// What the network does when an attempt fails or its provider is lost; see
    /// [`Recovery`]. Absent: up to 3 attempts, lost providers retried, failures not.
    #[serde(default, skip_serializing_if = "Recovery::is_default")]
    pub recovery: Recovery,
    /// How the network checks the result: `verification: { mode: spot_check }` or
    /// `{ mode: replicas, replicas: 3 }` (ADR 0010). Absent: not checked. With `compare:
    /// exact` (the default) the job must be deterministic: its runs are compared byte for
    /// byte; `compare: tensors` compares the declared `.npy`/`.safetensors` outputs within
    /// tolerances, judged by a verifier provider.
    #[serde(default, skip_serializing_if = "crate::VerificationSpec::is_none")]
    pub verification: crate::VerificationSpec,
    /// Local files and directories, relative to the spec file, that the CLI packs, seals to
    /// the winning provider and delivers with the manifest (or, with `storage`, seals to the
    /// job's key and leaves in the job's bucket: [`JobSpec::inputs_blob`]); the job finds them read-only under
    /// `$GPUNET_INPUTS` with the same relative paths. At most [`MAX_INPUT_PATHS`]; packed, at
    /// most [`crate::inputs::MAX_INPUTS_BYTES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// The packed inputs: the archive's BLAKE3 and size, so the provider checks it got exactly
    /// them. Set by the CLI at submit; not written in the YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_archive: Option<InputsArchive>,
    /// For a job with its own bucket (`storage`): the digest of the sealed inputs blob the CLI
    /// left there — the archive sealed to the job's `checkpoint_key` (purpose `JobInputs`,
    /// bound to the salt). Every attempt's provider fetches it from the bucket instead of
    /// being sent the inputs, opens it, and checks the archive against `inputs_archive`. Set
    /// by the CLI at submit; not written in the YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_blob: Option<Hash>,
    /// Collect everything the job writes under `$GPUNET_OUTPUTS`.
    #[serde(default)]
    pub outputs: bool,
    /// The tenant's own S3-compatible bucket for the job's checkpoints, outputs and inputs, and the
    /// credentials for it (secrets: see [`crate::storage`]). Absent: checkpoints go to the
    /// provider's store, if it has one, and outputs are fetched from the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// The X25519 key the provider seals outputs to. Set by the CLI at submit (the tenant's
    /// output key); not written in the YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<EncryptionKey>,
    /// 32 random bytes, so the manifest hash on chain reveals nothing about the manifest. Set
    /// by the CLI at submit; not written in the YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<Salt>,
    /// The job's checkpoint secret: the provider running any attempt seals what the job
    /// leaves under `$GPUNET_CHECKPOINTS` to its public key, and the next attempt's provider
    /// opens it with it. Set by the CLI at submit (fresh for every job); not written in the
    /// YAML. It travels only inside the sealed manifest, so only the tenant and the job's
    /// providers hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_key: Option<CheckpointKey>,
}

/// A job's checkpoint secret (X25519). `Debug` shows only its public key; JSON (inside the
/// sealed manifest only) shows 64 hex characters.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckpointKey([u8; 32]);

impl CheckpointKey {
    pub fn from_bytes(bytes: [u8; 32]) -> CheckpointKey {
        CheckpointKey(bytes)
    }

    /// The secret that opens the job's checkpoints.
    pub fn secret(&self) -> crate::EncryptionSecret {
        crate::EncryptionSecret::from_bytes(self.0)
    }

    /// The key checkpoints are sealed to.
    pub fn public(&self) -> EncryptionKey {
        self.secret().public()
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey(public {})", self.public())
    }
}

impl Serialize for CheckpointKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for CheckpointKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(|_| {
            de::Error::custom("is not a checkpoint key; expected 64 hex characters")
        })?;
        Ok(CheckpointKey(out))
    }
}

/// Most paths a spec's `inputs` may list (each a file or a whole directory).
pub const MAX_INPUT_PATHS: usize = 64;

/// What the manifest says of the packed inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsArchive {
    /// BLAKE3 of the archive's bytes (before sealing).
    pub digest: crate::Hash,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Random bytes mixed into a manifest before it is hashed. JSON shows 64 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Salt(pub [u8; 32]);

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salt({})", hex::encode(self.0))
    }
}

impl Serialize for Salt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Salt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|_| de::Error::custom("is not a salt; expected 64 hex characters"))?;
        Ok(Salt(out))
    }
}

/// Secret environment variables: passed to the workload like `env`, but their values are never
/// shown — `Debug` prints names only, and no error message quotes a value. They live in the
/// manifest, which only ever travels sealed to the lease's provider.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>);

impl Secrets {
    pub fn new(vars: BTreeMap<String, String>) -> Secrets {
        Secrets(vars)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The names and values, for handing to the workload. Do not log them.
    pub fn expose(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

impl Serialize for Secrets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Secrets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read_string_map(d, true).map(Secrets)
    }
}

/// What kind of workload a job is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Runs to completion, then the lease settles.
    #[default]
    Batch,
    /// A long-running server in a container: runs until the tenant cancels, the escrow runs
    /// out or `limits.max_duration` passes. Needs `run.image`.
    Service,
}

/// Whether a job's container may use the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Loopback only.
    #[default]
    None,
    /// Outbound connections, and the ports in `expose` published on the provider's loopback.
    Egress,
}

impl Network {
    fn is_none(&self) -> bool {
        *self == Network::None
    }
}

/// A port a service listens on inside its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expose {
    pub port: u16,
    /// What speaks on the port; decides the scheme of the reported endpoint. Default `http`.
    #[serde(default)]
    pub proto: ExposeProto,
}

/// The protocol of an exposed port. Both are published as TCP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExposeProto {
    #[default]
    Http,
    Tcp,
}

impl ExposeProto {
    /// `http` or `tcp`: the scheme of an endpoint URL.
    pub fn as_str(self) -> &'static str {
        match self {
            ExposeProto::Http => "http",
            ExposeProto::Tcp => "tcp",
        }
    }
}

/// One more service of a job: its own image, command, environment, resources and exposed ports,
/// in `count` replicas. A job's services and its own `run` share a private network on the
/// provider, where each reaches the others by name (`http://db:5432`, every port, exposed or
/// not) and nothing else reaches them; `expose` publishes ports to the world as for the job's
/// own `run` (and needs `run.network: egress`). The first container of the job to end ends
/// the job: a service that exits, even with status 0, fails it, and the others are stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Its name on the job's network: a DNS label (`a-z 0-9 -`, 1 to 63 bytes, not starting or
    /// ending with `-`), unique in the job and not the job's own name.
    pub name: String,
    /// Replicas, 1 to [`MAX_SERVICE_REPLICAS`]; all answer to `name`, the network's DNS giving
    /// their addresses in turn. Default 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// What to run; `run.image` is required.
    pub run: RunSpec,
    /// Ports published to the world, as the job's own `expose`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<Expose>,
    /// Its volumes, as the job's own `volumes`; each replica has its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    /// What each replica needs; the order asks for `count` times this.
    pub resources: ResourceSpec,
}

/// A persistent volume: `{name: data, size: 10Gi, mount: /data}`. A directory on the
/// provider's disk mounted read-write at `mount`, which keeps what the container writes there
/// while the lease lasts — across the container's restarts in place (`recovery.restarts`) and
/// the agent's — and is erased when the lease ends. Its `size` counts within the container's
/// `resources.disk` and is enforced: a volume past its size ends the attempt `disk_exceeded`.
/// An attempt on another provider starts with an empty volume: what must move between
/// providers belongs in `$GPUNET_CHECKPOINTS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// A DNS label, unique among the container's volumes.
    pub name: String,
    /// The most it may hold.
    pub size: Mebibytes,
    /// The absolute path in the container, e.g. `/data`.
    pub mount: String,
}

/// A container's `volumes`: a bounded number, unique names and mounts (none inside another, nor
/// over what gpunet mounts), sizes within `disk`, and an image to run in.
fn check_volumes(volumes: &[VolumeSpec], disk: Mebibytes, image: bool) -> Result<(), SpecError> {
    if volumes.is_empty() {
        return Ok(());
    }
    if !image {
        return Err(invalid(
            "volumes",
            "are for container jobs; set run.image (a process job keeps state in \
             $GPUNET_CHECKPOINTS)",
        ));
    }
    if volumes.len() > MAX_VOLUMES {
        return Err(invalid(
            "volumes",
            format!(
                "lists {} volumes; at most {MAX_VOLUMES} are allowed",
                volumes.len()
            ),
        ));
    }
    let mut total: u64 = 0;
    for (i, v) in volumes.iter().enumerate() {
        let at = |field: &str| format!("volumes[{i}].{field}");
        if !is_dns_label(&v.name) {
            return Err(invalid(
                at("name"),
                format!(
                    "{:?} must be a DNS label (a-z 0-9 -), e.g. data",
                    v.name.escape_debug().to_string()
                ),
            ));
        }
        if volumes[..i].iter().any(|o| o.name == v.name) {
            return Err(invalid(
                at("name"),
                format!("{:?} names two volumes", v.name),
            ));
        }
        if v.size.0 == 0 {
            return Err(invalid(at("size"), "must be more than 0, e.g. 1Gi"));
        }
        let m = &v.mount;
        let clean = m.starts_with('/')
            && m.len() > 1
            && m.len() <= MAX_MOUNT_PATH_BYTES
            && !m.ends_with('/')
            && m[1..]
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && !m.chars().any(|c| c.is_control() || c == ':' || c == ',');
        if !clean {
            return Err(invalid(
                at("mount"),
                format!(
                    "{:?} must be an absolute path without . or .. parts, a trailing / or : , \
                     (at most {MAX_MOUNT_PATH_BYTES} bytes), e.g. /data",
                    m.escape_debug().to_string()
                ),
            ));
        }
        let inside = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        if let Some(r) = RESERVED_MOUNTS
            .iter()
            .find(|r| inside(m, r) || inside(r, m))
        {
            return Err(invalid(
                at("mount"),
                format!(
                    "{m} would cover or sit in {r}, which gpunet or the kernel provides; choose another path, e.g. /data"
                ),
            ));
        }
        if let Some(o) = volumes[..i]
            .iter()
            .find(|o| inside(m, &o.mount) || inside(&o.mount, m))
        {
            return Err(invalid(
                at("mount"),
                format!(
                    "{m} overlaps volume {:?} at {}; give each its own path",
                    o.name, o.mount
                ),
            ));
        }
        total = total.saturating_add(v.size.0);
    }
    if total > disk.0 {
        return Err(invalid(
            "volumes",
            format!(
                "hold {total}Mi in all, more than resources.disk ({}Mi), which they count \
                 within; raise resources.disk or shrink them",
                disk.0
            ),
        ));
    }
    Ok(())
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// A service's health check: `GET http_path` on its first `http` port answers 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub http_path: String,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Container image; when present the job needs [`Runtime::Docker`], else
    /// [`Runtime::Process`].
    #[serde(default)]
    pub image: Option<String>,
    /// Whether the container may use the network; default `none`. Only for container jobs:
    /// a job without `image` runs in the process sandbox, which has no network to grant, so
    /// `egress` without `image` is refused.
    #[serde(default, skip_serializing_if = "Network::is_none")]
    pub network: Network,
    /// Program and arguments, run without a shell. In a container they replace the image's
    /// entrypoint and default arguments. A container job may leave it out to run the image's
    /// own entrypoint, with `args` or the image's default arguments; a process job needs it.
    #[serde(default)]
    pub command: Vec<String>,
    /// Arguments for the image's own entrypoint, replacing the image's default arguments
    /// (Docker's `CMD`; Akash SDL's `args` without `command`). Only for container jobs without
    /// `command`, whose arguments go in `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables, sorted by name.
    #[serde(default, deserialize_with = "env_without_duplicates")]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables (API tokens, passwords): like `env`, but never shown.
    #[serde(default, skip_serializing_if = "Secrets::is_empty")]
    pub secrets: Secrets,
    /// Whether the container may write to its own root filesystem, as images made to write
    /// where they were installed need (nginx's cache, postgres's run directory). Off by
    /// default: the root is read-only, and only `/outputs`, `/tmp` and the volumes take
    /// writes. What it writes there counts within `resources.disk`, and is gone with the
    /// container (keep state in a volume). Only for container jobs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable_root: bool,
    /// The Linux capabilities the container needs (ADR 0013): `none` (the default: all
    /// dropped) or `baseline` (Docker's default set without `NET_RAW`), which images that
    /// start as root and switch to their own user need (the official nginx and postgres
    /// images). Only providers that grant it bid. Only for container jobs.
    #[serde(default, skip_serializing_if = "Capabilities::is_none")]
    pub capabilities: Capabilities,
}

/// What the job needs for its whole run, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub cpu: Millicores,
    pub memory: Mebibytes,
    pub disk: Mebibytes,
    #[serde(default)]
    pub gpu: GpuSpec,
}

/// GPUs the job needs. Absent means none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    pub count: u32,
    /// Any of these models or families (`h100`, `a100-80gb`), lower-cased; empty means any.
    #[serde(default, deserialize_with = "lower_case_names")]
    pub models: Vec<String>,
    /// Minimum memory per GPU.
    #[serde(default)]
    pub vram: Mebibytes,
}

/// Where the job may run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Acceptable provider regions; empty means anywhere.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// What the tenant will pay, in usd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Highest price per hour the tenant accepts.
    pub max_per_hour: Amount,
    /// Moved into escrow when the order is accepted; what the lease does not use comes back.
    pub deposit: Amount,
}

/// Bounds on the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The workload is stopped, and billing ends, this long after it starts.
    pub max_duration: Seconds,
}

/// The job's recovery policy as written: `recovery: { max_attempts: 4, on_exit_codes: [137,
/// 143], backoff: 10s }`. A lost provider is always retried while attempts remain; a workload
/// that exits non-zero only for the listed codes. Every retry runs on a provider that has not
/// failed this job, from the same escrow, under the same job id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// Attempts in all, the first included (1 = never retry); 1 to 10. Default 3.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Exit codes after which a failed workload is retried; at most 16. Default none.
    #[serde(default)]
    pub on_exit_codes: Vec<i32>,
    /// Least wait between an attempt's end and the next match. Default 5s; at most 1h.
    #[serde(default = "default_backoff")]
    pub backoff: Seconds,
    /// Times a container of the job that exits non-zero (or is killed for memory) is started
    /// again in place, on the same provider within the same lease and keeping its volumes,
    /// before the attempt ends; 0 to [`MAX_RESTARTS`]. Container jobs only. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_max_attempts() -> u32 {
    crate::RecoveryPolicy::DEFAULT_MAX_ATTEMPTS
}

fn default_backoff() -> Seconds {
    Seconds(crate::RecoveryPolicy::DEFAULT_BACKOFF_SECS)
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            max_attempts: default_max_attempts(),
            on_exit_codes: Vec::new(),
            backoff: default_backoff(),
            restarts: 0,
        }
    }
}

impl Recovery {
    fn is_default(&self) -> bool {
        *self == Recovery::default()
    }

    /// The policy as the order carries it.
    pub fn policy(&self) -> crate::RecoveryPolicy {
        crate::RecoveryPolicy {
            max_attempts: self.max_attempts,
            on_exit_codes: self.on_exit_codes.clone(),
            backoff_secs: self.backoff.0,
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        use crate::tx::{MAX_ATTEMPTS, MAX_BACKOFF_SECS, MAX_RETRY_EXIT_CODES};
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(invalid(
                "recovery.max_attempts",
                format!(
                    "is {}; give 1 (never retry) to {MAX_ATTEMPTS}",
                    self.max_attempts
                ),
            ));
        }
        if self.on_exit_codes.len() > MAX_RETRY_EXIT_CODES {
            return Err(invalid(
                "recovery.on_exit_codes",
                format!(
                    "lists {} codes, more than {MAX_RETRY_EXIT_CODES}",
                    self.on_exit_codes.len()
                ),
            ));
        }
        if let Some(code) = self.on_exit_codes.iter().find(|c| **c == 0) {
            return Err(invalid(
                "recovery.on_exit_codes",
                format!("lists {code}, which is success; list only failing exit codes"),
            ));
        }
        if self.backoff.0 > MAX_BACKOFF_SECS {
            return Err(invalid(
                "recovery.backoff",
                format!("is {}; the longest backoff is 1h", self.backoff),
            ));
        }
        if self.restarts > MAX_RESTARTS {
            return Err(invalid(
                "recovery.restarts",
                format!("is {}; give 0 to {MAX_RESTARTS}", self.restarts),
            ));
        }
        Ok(())
    }
}

/// CPU in thousandths of a core. Written `1`, `0.5`, `1.5` or `250m`; kept as `1500m`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millicores(pub u32);

/// A size in MiB. Written with `Ki Mi Gi Ti` (binary) or `K M G T` (decimal), rounded up to
/// whole MiB; kept as `512Mi`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mebibytes(pub u64);

/// A duration in seconds. Written `90s`, `30m`, `1h30m`, `2d`; kept as `5400s`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub u64);

/// Why a spec or manifest is not acceptable. Display is `<field path>: <what is wrong and how
/// to fix it>`; the path is `spec` (or `manifest`) when the problem is the text as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The text is over its size limit; nothing was parsed.
    #[error("{what}: is {bytes} bytes; the limit is {max} bytes")]
    TooLarge {
        what: &'static str,
        bytes: usize,
        max: usize,
    },
    /// The text is not YAML (or JSON), or a field has the wrong shape: unknown, missing,
    /// mistyped, or not a size, duration or amount.
    #[error("{path}: {message}")]
    Malformed {
        path: String,
        message: String,
        /// 1-based line and column in the text, when known.
        line: Option<usize>,
        column: Option<usize>,
    },
    /// The spec is well-formed but breaks a rule (a bound, a reserved name, a version).
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
    /// The bytes are not UTF-8 text; nothing was parsed. `offset` is the 0-based position of
    /// the first bad byte, `line` and `column` (1-based, column in characters) where it sits.
    #[error(
        "{what}: is not UTF-8 text: byte {offset} (line {line}, column {column}) is \
         0x{byte:02x}; save the file as UTF-8"
    )]
    NotUtf8 {
        what: &'static str,
        offset: usize,
        line: usize,
        column: usize,
        byte: u8,
    },
}

impl SpecError {
    /// The field path the error is about, e.g. `resources.memory`.
    pub fn path(&self) -> &str {
        match self {
            SpecError::TooLarge { what, .. } | SpecError::NotUtf8 { what, .. } => what,
            SpecError::Malformed { path, .. } | SpecError::Invalid { path, .. } => path,
        }
    }
}

fn invalid(path: impl Into<String>, why: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        path: path.into(),
        why: why.into(),
    }
}

/// Re-homes a [`ShapeError`] from the shared name and resource checks under `path`.
fn reshape(path: impl Into<String>) -> impl FnOnce(ShapeError) -> SpecError {
    let path = path.into();
    move |ShapeError::Invalid { why, .. }| invalid(path, why)
}

/// `bytes` as text, or where the first byte that is not UTF-8 sits.
fn utf8_text<'a>(what: &'static str, bytes: &'a [u8]) -> Result<&'a str, SpecError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let valid = &bytes[..offset];
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // `valid` is UTF-8 up to `offset`, so this slice is too; count characters, not bytes.
        let column = std::str::from_utf8(&valid[line_start..])
            .map_or(offset - line_start, |t| t.chars().count())
            + 1;
        SpecError::NotUtf8 {
            what,
            offset,
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            column,
            byte: bytes[offset],
        }
    })
}

impl JobSpec {
    /// Parses and validates spec bytes as read from a file: like [`JobSpec::parse_yaml`], and
    /// bytes that are not UTF-8 are refused naming the offset, line and column of the first
    /// bad one.
    pub fn parse_yaml_bytes(bytes: &[u8]) -> Result<JobSpec, SpecError> {
        if bytes.len() > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge {
                what: "spec",
                bytes: bytes.len(),
                max: MAX_SPEC_BYTES,
            });
        }
        JobSpec::parse_yaml(utf8_text("spec", bytes)?)
    }

    /// Parses and validates spec text. Text over [`MAX_SPEC_BYTES`] is rejected unread.
    pub fn parse_yaml(text: &str) -> Result<JobSpec, SpecError> {
        if text.len() > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge {
                what: "spec",
                bytes: text.len(),
                max: MAX_SPEC_BYTES,
            });
        }
        if text.trim().is_empty() {
            return Err(invalid(
                "spec",
                "is empty; start from examples/jobs/hello.yaml",
            ));
        }
        let parsed: Result<JobSpec, _> =
            serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text));
        let spec = match parsed {
            Ok(spec) => spec,
            Err(err) => {
                // A spec from a newer gpunet fails on its new fields; saying which version it
                // is helps more than naming a field this version does not know.
                if let Ok(VersionOnly { version }) = serde_yaml_ng::from_str(text) {
                    check_version(version)?;
                }
                return Err(yaml_error(&err));
            }
        };
        if spec.output_key.is_some() {
            return Err(invalid(
                "output_key",
                "is set by gpunet when the job is submitted; remove it",
            ));
        }
        if spec.salt.is_some() {
            return Err(invalid(
                "salt",
                "is set by gpunet when the job is submitted; remove it",
            ));
        }
        if spec.inputs_archive.is_some() {
            return Err(invalid(
                "inputs_archive",
                "is set by gpunet when the job is submitted; remove it",
            ));
        }
        if spec.inputs_blob.is_some() {
            return Err(invalid(
                "inputs_blob",
                "is set by gpunet when the job is submitted; remove it",
            ));
        }
        if spec.checkpoint_key.is_some() {
            return Err(invalid(
                "checkpoint_key",
                "is set by gpunet when the job is submitted; remove it",
            ));
        }
        spec.validate()?;
        Ok(spec)
    }

    /// The provider's side: turns manifest bytes back into a validated spec. The caller also
    /// checks that `Hash::of(bytes)` is the order's `manifest_hash`.
    pub fn from_manifest_bytes(bytes: &[u8]) -> Result<JobSpec, SpecError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(SpecError::TooLarge {
                what: "manifest",
                bytes: bytes.len(),
                max: MAX_MANIFEST_BYTES,
            });
        }
        // serde_json would say only "invalid unicode code point"; name the byte instead.
        utf8_text("manifest", bytes)?;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let spec: JobSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let inner = e.inner();
            SpecError::Malformed {
                path: root_as(e.path().to_string(), "manifest"),
                message: strip_json_location(&inner.to_string()),
                line: Some(inner.line()),
                column: Some(inner.column()),
            }
        })?;
        de.end().map_err(|e| SpecError::Malformed {
            path: "manifest".into(),
            message: strip_json_location(&e.to_string()),
            line: Some(e.line()),
            column: Some(e.column()),
        })?;
        spec.validate()?;
        if let Some(storage) = &spec.storage {
            storage.check_resolved()?;
        }
        Ok(spec)
    }

    /// Checks every rule, in the order the fields are written. Parsing calls this; call it
    /// again after changing a spec by hand.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_version(self.version)?;
        check_name("name", &self.name, MAX_ORDER_NAME_BYTES).map_err(reshape("name"))?;
        self.run.validate()?;
        self.validate_service()?;
        self.validate_services()?;
        self.resources.validate()?;
        check_volumes(&self.volumes, self.resources.disk, self.run.image.is_some())?;
        if self.recovery.restarts > 0 && self.run.image.is_none() {
            return Err(invalid(
                "recovery.restarts",
                "restarts in place are for container jobs; set run.image, or retry the job \
                 with recovery.max_attempts",
            ));
        }
        self.placement.validate()?;
        self.pricing.validate()?;
        self.limits.validate()?;
        self.recovery.validate()?;
        self.verification
            .validate()
            .map_err(|(path, why)| invalid(path, why))?;
        self.validate_inputs()?;
        if let Some(storage) = &self.storage {
            storage.validate()?;
        }
        // The shared request rules the ledger applies too; the checks above are stricter, so
        // this only guards against the two drifting apart.
        self.resources().validate().map_err(|e| {
            let ShapeError::Invalid { field, why } = e;
            invalid(field, why)
        })?;
        let manifest_len = self.manifest_bytes().len();
        if manifest_len > MAX_MANIFEST_BYTES {
            return Err(invalid(
                "spec",
                format!(
                    "its manifest is {manifest_len} bytes, over the {MAX_MANIFEST_BYTES}-byte \
                     limit; shorten the command or the environment"
                ),
            ));
        }
        Ok(())
    }

    /// `inputs`: relative paths inside the spec's directory, a bounded number of them; the
    /// packed archive (when set) within its limit.
    fn validate_inputs(&self) -> Result<(), SpecError> {
        if self.inputs.len() > MAX_INPUT_PATHS {
            return Err(invalid(
                "inputs",
                format!(
                    "lists {} paths, more than {MAX_INPUT_PATHS}; list directories instead of their files",
                    self.inputs.len()
                ),
            ));
        }
        for (i, path) in self.inputs.iter().enumerate() {
            crate::inputs::check_path(path.trim_end_matches('/')).map_err(|e| {
                invalid(
                    format!("inputs[{i}]"),
                    format!(
                        "{e}; name files and directories beside the spec file, e.g. train.py or data/"
                    ),
                )
            })?;
        }
        if let Some(archive) = &self.inputs_archive {
            if self.inputs.is_empty() {
                return Err(invalid(
                    "inputs_archive",
                    "is set but the spec lists no inputs",
                ));
            }
            if archive.bytes > crate::inputs::MAX_INPUTS_BYTES {
                return Err(invalid(
                    "inputs",
                    format!(
                        "pack to {} bytes, over the limit of {} bytes; send less, or fetch large data from inside the job",
                        archive.bytes,
                        crate::inputs::MAX_INPUTS_BYTES
                    ),
                ));
            }
        }
        if self.inputs_blob.is_some() {
            // The provider opens the blob with the job's key and the salt, fetches it from
            // the job's bucket and checks it against the archive's digest: all must be there.
            let missing = [
                ("inputs_archive", self.inputs_archive.is_none()),
                ("storage", self.storage.is_none()),
                ("checkpoint_key", self.checkpoint_key.is_none()),
                ("salt", self.salt.is_none()),
            ];
            if let Some((field, _)) = missing.iter().find(|(_, absent)| *absent) {
                return Err(invalid(
                    "inputs_blob",
                    format!(
                        "is set but the manifest has no {field}; submit the job with \
                         `gpunet job submit`"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `expose` and `health`: only for services, which run in containers.
    fn validate_service(&self) -> Result<(), SpecError> {
        match self.kind {
            JobKind::Batch => {
                if !self.expose.is_empty() {
                    return Err(invalid(
                        "expose",
                        "is only for kind: service; a batch job's ports are not published",
                    ));
                }
                if self.health.is_some() {
                    return Err(invalid("health", "is only for kind: service"));
                }
                return Ok(());
            }
            JobKind::Service if self.run.image.is_none() => {
                return Err(invalid(
                    "run.image",
                    "is required for kind: service; services run in containers",
                ));
            }
            JobKind::Service => {}
        }
        check_expose(&self.expose, self.run.network)?;
        if let Some(health) = &self.health {
            let path = &health.http_path;
            if !path.starts_with('/')
                || path.len() > MAX_HEALTH_PATH_BYTES
                || path.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    "health.http_path",
                    format!(
                        "{:?} must start with '/', be at most {MAX_HEALTH_PATH_BYTES} bytes and \
                         hold no spaces or control characters, e.g. /healthz",
                        path.escape_debug().to_string()
                    ),
                ));
            }
            if self.health_port().is_none() {
                return Err(invalid(
                    "health",
                    "needs a port with proto: http in expose to check",
                ));
            }
        }
        Ok(())
    }

    /// `services`: containers, named as DNS labels unique in the job (the job's own `run`
    /// being its `name`), a bounded number of them, each valid as the job's own `run`, and GPU
    /// models that agree (the order names one list).
    fn validate_services(&self) -> Result<(), SpecError> {
        if self.services.is_empty() {
            return Ok(());
        }
        if self.services.len() > MAX_SERVICES {
            return Err(invalid(
                "services",
                format!(
                    "lists {} services; at most {MAX_SERVICES} are allowed",
                    self.services.len()
                ),
            ));
        }
        if self.run.image.is_none() {
            return Err(invalid(
                "run.image",
                "is required when the job has services: they run as containers beside the \
                 job's own run, on a network of their own",
            ));
        }
        if !is_dns_label(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "{:?} must be a DNS label (a-z 0-9 -, not starting or ending with -) when \
                     the job has services, which reach the job's own run by it; e.g. {:?}",
                    self.name,
                    self.name.replace('_', "-").trim_matches('-')
                ),
            ));
        }
        let mut containers: u32 = 1;
        let mut gpu_models: Option<&Vec<String>> =
            (!self.resources.gpu.models.is_empty()).then_some(&self.resources.gpu.models);
        for (i, service) in self.services.iter().enumerate() {
            let at = format!("services[{i}]");
            if !is_dns_label(&service.name) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!(
                        "{:?} must be a DNS label: 1 to {MAX_SERVICE_NAME_BYTES} of a-z 0-9 -, \
                         not starting or ending with -; e.g. db or api-v2",
                        service.name.escape_debug().to_string()
                    ),
                ));
            }
            if service.name == self.name {
                return Err(invalid(
                    format!("{at}.name"),
                    format!(
                        "{:?} is the job's name, which its own run answers to on the job's \
                         network; choose another",
                        service.name
                    ),
                ));
            }
            if self.services[..i].iter().any(|s| s.name == service.name) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("{:?} names two services; give each its own", service.name),
                ));
            }
            if service.count == 0 || service.count > MAX_SERVICE_REPLICAS {
                return Err(invalid(
                    format!("{at}.count"),
                    format!(
                        "is {}; a service runs 1 to {MAX_SERVICE_REPLICAS} replicas",
                        service.count
                    ),
                ));
            }
            containers = containers.saturating_add(service.count);
            service.run.validate().map_err(under(&at))?;
            if service.run.image.is_none() {
                return Err(invalid(
                    format!("{at}.run.image"),
                    "is required: services run in containers",
                ));
            }
            if self.kind == JobKind::Batch && !service.expose.is_empty() {
                return Err(invalid(
                    format!("{at}.expose"),
                    "is only for kind: service; a batch job's ports are not published",
                ));
            }
            check_expose(&service.expose, service.run.network).map_err(under(&at))?;
            service.resources.validate().map_err(under(&at))?;
            check_volumes(&service.volumes, service.resources.disk, true).map_err(under(&at))?;
            let models = &service.resources.gpu.models;
            if !models.is_empty() {
                match gpu_models {
                    Some(first) if first != models => {
                        return Err(invalid(
                            format!("{at}.resources.gpu.models"),
                            format!(
                                "{models:?} differs from {first:?} asked elsewhere in the job; \
                                 a job runs on one provider and its order names one list of \
                                 models, so give every service with GPUs the same list"
                            ),
                        ));
                    }
                    _ => gpu_models = Some(models),
                }
            }
        }
        if containers > MAX_CONTAINERS_PER_JOB {
            return Err(invalid(
                "services",
                format!(
                    "with their counts, the job runs {containers} containers; at most \
                     {MAX_CONTAINERS_PER_JOB} are allowed"
                ),
            ));
        }
        Ok(())
    }

    /// The port the health check polls: the first exposed `http` port.
    pub fn health_port(&self) -> Option<u16> {
        self.expose
            .iter()
            .find(|e| e.proto == ExposeProto::Http)
            .map(|e| e.port)
    }

    /// The resources as the protocol counts them: the job's own, plus every service's times its
    /// `count`. GPU models are the one list the job names (validation makes them agree) and
    /// the GPU memory the most any of them asks.
    pub fn resources(&self) -> Resources {
        let mut total = self.resources.as_resources();
        for service in &self.services {
            let each = service.resources.as_resources();
            let n = service.count;
            // Saturating: a sum past the bounds is refused by validation all the same.
            total.cpu_millis = total
                .cpu_millis
                .saturating_add(each.cpu_millis.saturating_mul(n));
            total.memory_mib = total
                .memory_mib
                .saturating_add(each.memory_mib.saturating_mul(u64::from(n)));
            total.disk_mib = total
                .disk_mib
                .saturating_add(each.disk_mib.saturating_mul(u64::from(n)));
            total.gpu.count = total
                .gpu
                .count
                .saturating_add(each.gpu.count.saturating_mul(n));
            if total.gpu.models.is_empty() {
                total.gpu.models = each.gpu.models;
            }
            total.gpu.vram_mib_min = total.gpu.vram_mib_min.max(each.gpu.vram_mib_min);
        }
        total
    }

    /// A container runtime when the spec names an image, else a sandboxed process.
    pub fn runtime(&self) -> Runtime {
        if self.run.image.is_some() {
            Runtime::Docker
        } else {
            Runtime::Process
        }
    }

    pub fn max_duration_secs(&self) -> u64 {
        self.limits.max_duration.0
    }

    /// The canonical manifest: compact JSON of this struct, fields in declaration order and
    /// `run.env` sorted by name, so the same spec always gives the same bytes.
    pub fn manifest_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job spec has only string keys and cannot fail to encode")
    }

    /// BLAKE3 of [`JobSpec::manifest_bytes`]; the order commits to it.
    pub fn manifest_hash(&self) -> Hash {
        Hash::of(&self.manifest_bytes())
    }

    /// Everything the chain needs to open an order for this job.
    pub fn order_terms(&self) -> OrderTerms {
        OrderTerms {
            name: self.name.clone(),
            manifest_hash: self.manifest_hash(),
            resources: self.resources(),
            regions: self.placement.regions.clone(),
            runtime: self.runtime(),
            max_price_per_hour: self.pricing.max_per_hour,
            deposit: self.pricing.deposit,
            max_duration_secs: self.max_duration_secs(),
            recovery: self.recovery.policy(),
            verification: self.verification.terms(),
            capabilities: self.capabilities(),
        }
    }

    /// The most any of the job's containers asks for: what the order asks of its provider.
    pub fn capabilities(&self) -> Capabilities {
        self.services
            .iter()
            .map(|s| s.run.capabilities)
            .fold(self.run.capabilities, Capabilities::max)
    }
}

/// A job's or a service's `expose`: a bounded number of distinct ports, and a network to
/// publish them on.
fn check_expose(expose: &[Expose], network: Network) -> Result<(), SpecError> {
    if expose.len() > MAX_EXPOSED_PORTS {
        return Err(invalid(
            "expose",
            format!(
                "has {} ports; at most {MAX_EXPOSED_PORTS} are allowed",
                expose.len()
            ),
        ));
    }
    for (i, e) in expose.iter().enumerate() {
        if e.port == 0 {
            return Err(invalid(
                format!("expose[{i}].port"),
                "must be 1 to 65535: the port the service listens on",
            ));
        }
        if expose[..i].iter().any(|o| o.port == e.port) {
            return Err(invalid(
                format!("expose[{i}].port"),
                format!("{} is exposed twice", e.port),
            ));
        }
    }
    if !expose.is_empty() && network == Network::None {
        return Err(invalid(
            "run.network",
            "must be egress when ports are exposed: Docker cannot publish the ports of a \
             container without a network, so exposing ports also gives the container \
             outbound network access; set run.network: egress",
        ));
    }
    Ok(())
}

/// Puts an error about a part of the spec under that part's path: `run.image` in
/// `services[1]` becomes `services[1].run.image`.
fn under(prefix: &str) -> impl FnOnce(SpecError) -> SpecError + '_ {
    move |e| match e {
        SpecError::Invalid { path, why } => SpecError::Invalid {
            path: format!("{prefix}.{path}"),
            why,
        },
        SpecError::Malformed {
            path,
            message,
            line,
            column,
        } => SpecError::Malformed {
            path: format!("{prefix}.{path}"),
            message,
            line,
            column,
        },
        other => other,
    }
}

/// A DNS label as container networks resolve it: 1 to [`MAX_SERVICE_NAME_BYTES`] of `a-z 0-9
/// -`, not starting or ending with `-`.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SERVICE_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn check_version(version: u32) -> Result<(), SpecError> {
    if version == SPEC_VERSION {
        Ok(())
    } else {
        Err(invalid(
            "version",
            format!("{version} is not supported; this gpunet understands version {SPEC_VERSION}"),
        ))
    }
}

fn check_no_nul(path: impl FnOnce() -> String, s: &str) -> Result<(), SpecError> {
    if s.contains('\0') {
        return Err(invalid(path(), "contains a NUL byte; remove it"));
    }
    Ok(())
}

impl RunSpec {
    fn validate(&self) -> Result<(), SpecError> {
        if let Some(image) = &self.image {
            if image.is_empty() || image.len() > MAX_IMAGE_BYTES {
                return Err(invalid(
                    "run.image",
                    format!(
                        "must be 1 to {MAX_IMAGE_BYTES} bytes, e.g. example/hello:1; leave it \
                         out to run a plain process"
                    ),
                ));
            }
            if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    "run.image",
                    format!("{image:?} may not hold spaces or control characters"),
                ));
            }
        }
        if self.image.is_none() && !self.capabilities.is_none() {
            return Err(invalid(
                "run.capabilities",
                "is only for container jobs: a job without run.image runs in the process \
                 sandbox, as an unprivileged user with no capabilities; set run.image, or \
                 remove run.capabilities",
            ));
        }
        if self.image.is_none() && self.writable_root {
            return Err(invalid(
                "run.writable_root",
                "is only for container jobs: a job without run.image runs in the process \
                 sandbox, whose root is the provider's system directories, read-only (it writes \
                 to /work, /outputs and /tmp); set run.image, or remove run.writable_root",
            ));
        }
        if self.image.is_none() && self.network == Network::Egress {
            return Err(invalid(
                "run.network",
                "egress is only for container jobs: a job without run.image runs in the process \
                 sandbox, which has no network; set run.image to run it in a container with \
                 outbound access, or remove run.network",
            ));
        }
        if self.command.is_empty() && self.image.is_none() {
            return Err(invalid(
                "run.command",
                "is empty; name the program to run, e.g. [\"sh\", \"-c\", \"echo hello\"] \
                 (a container job may leave it out to run its image's entrypoint)",
            ));
        }
        if !self.args.is_empty() && (self.image.is_none() || !self.command.is_empty()) {
            return Err(invalid(
                "run.args",
                "is for the arguments of a container image's own entrypoint, without \
                 run.command; with run.command, put the arguments in run.command",
            ));
        }
        let (field, argv) = if self.command.is_empty() {
            ("run.args", &self.args)
        } else {
            ("run.command", &self.command)
        };
        if argv.len() > MAX_COMMAND_ARGS {
            return Err(invalid(
                field,
                format!(
                    "has {} arguments; at most {MAX_COMMAND_ARGS} are allowed",
                    argv.len()
                ),
            ));
        }
        let command_bytes: usize = argv.iter().map(String::len).sum();
        if command_bytes > MAX_COMMAND_BYTES {
            return Err(invalid(
                field,
                format!(
                    "is {command_bytes} bytes; at most {MAX_COMMAND_BYTES} are allowed — put \
                     long scripts in the image"
                ),
            ));
        }
        if self.command.first().is_some_and(String::is_empty) {
            return Err(invalid(
                "run.command[0]",
                "is empty; it must name the program to run",
            ));
        }
        for (i, arg) in argv.iter().enumerate() {
            check_no_nul(|| format!("{field}[{i}]"), arg)?;
        }
        if self.env.len() > MAX_ENV_VARS {
            return Err(invalid(
                "run.env",
                format!(
                    "has {} variables; at most {MAX_ENV_VARS} are allowed",
                    self.env.len()
                ),
            ));
        }
        let env_bytes: usize = self.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        if env_bytes > MAX_ENV_BYTES {
            return Err(invalid(
                "run.env",
                format!("is {env_bytes} bytes; at most {MAX_ENV_BYTES} are allowed"),
            ));
        }
        for (key, value) in &self.env {
            let path = || format!("run.env.{}", key.escape_debug());
            if !is_env_name(key) {
                return Err(invalid(
                    path(),
                    format!(
                        "{:?} is not a variable name; use letters, digits and '_', not \
                         starting with a digit",
                        key.escape_debug().to_string()
                    ),
                ));
            }
            if key.starts_with(RESERVED_ENV_PREFIX) {
                return Err(invalid(
                    path(),
                    format!(
                        "names starting with {RESERVED_ENV_PREFIX} are reserved for gpunet; \
                         choose another name"
                    ),
                ));
            }
            check_no_nul(path, value)?;
        }
        self.validate_secrets()
    }

    /// Like `env`, and no name in both. No message quotes a value.
    fn validate_secrets(&self) -> Result<(), SpecError> {
        let secrets = self.secrets.expose();
        if secrets.len() > MAX_SECRETS {
            return Err(invalid(
                "run.secrets",
                format!(
                    "has {} variables; at most {MAX_SECRETS} are allowed",
                    secrets.len()
                ),
            ));
        }
        let bytes: usize = secrets.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > MAX_SECRETS_BYTES {
            return Err(invalid(
                "run.secrets",
                format!("is {bytes} bytes; at most {MAX_SECRETS_BYTES} are allowed"),
            ));
        }
        for (key, value) in secrets {
            let path = || format!("run.secrets.{}", key.escape_debug());
            if !is_env_name(key) {
                return Err(invalid(
                    path(),
                    format!(
                        "{:?} is not a variable name; use letters, digits and '_', not \
                         starting with a digit",
                        key.escape_debug().to_string()
                    ),
                ));
            }
            if key.starts_with(RESERVED_ENV_PREFIX) {
                return Err(invalid(
                    path(),
                    format!(
                        "names starting with {RESERVED_ENV_PREFIX} are reserved for gpunet; \
                         choose another name"
                    ),
                ));
            }
            if self.env.contains_key(key) {
                return Err(invalid(
                    path(),
                    "is also in run.env; give each variable in one place",
                ));
            }
            check_no_nul(path, value)?;
        }
        Ok(())
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`
pub(crate) fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl ResourceSpec {
    fn as_resources(&self) -> Resources {
        Resources {
            cpu_millis: self.cpu.0,
            memory_mib: self.memory.0,
            disk_mib: self.disk.0,
            gpu: GpuRequirement {
                count: self.gpu.count,
                models: self.gpu.models.clone(),
                vram_mib_min: self.gpu.vram.0,
            },
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        if self.cpu.0 == 0 {
            return Err(invalid(
                "resources.cpu",
                "must be more than 0, e.g. 1, 0.5 or 250m",
            ));
        }
        if self.memory.0 == 0 {
            return Err(invalid(
                "resources.memory",
                "must be more than 0, e.g. 512Mi",
            ));
        }
        if self.disk.0 == 0 {
            return Err(invalid("resources.disk", "must be more than 0, e.g. 1Gi"));
        }
        // The upper bounds are the ledger's own (it refuses an order past them); its messages
        // already name the spec's fields.
        self.as_resources().check_bounds().map_err(|e| {
            let ShapeError::Invalid { field, why } = e;
            invalid(field, why)
        })?;
        let gpu = &self.gpu;
        if gpu.count == 0 && (!gpu.models.is_empty() || gpu.vram.0 > 0) {
            return Err(invalid(
                "resources.gpu.count",
                "is 0, so models and vram ask for nothing; set count to 1 or more, or remove them",
            ));
        }
        if gpu.models.len() > MAX_GPU_MODELS_PER_ORDER {
            return Err(invalid(
                "resources.gpu.models",
                format!(
                    "lists {} models; at most {MAX_GPU_MODELS_PER_ORDER} are allowed",
                    gpu.models.len()
                ),
            ));
        }
        for (i, model) in gpu.models.iter().enumerate() {
            check_name("resources.gpu.models", model, MAX_GPU_NAME_BYTES)
                .map_err(reshape(format!("resources.gpu.models[{i}]")))?;
        }
        Ok(())
    }
}

impl Placement {
    fn validate(&self) -> Result<(), SpecError> {
        if self.regions.len() > MAX_REGIONS_PER_ORDER {
            return Err(invalid(
                "placement.regions",
                format!(
                    "lists {} regions; at most {MAX_REGIONS_PER_ORDER} are allowed",
                    self.regions.len()
                ),
            ));
        }
        for (i, region) in self.regions.iter().enumerate() {
            check_name("placement.regions", region, MAX_REGION_BYTES)
                .map_err(reshape(format!("placement.regions[{i}]")))?;
        }
        Ok(())
    }
}

impl Pricing {
    fn validate(&self) -> Result<(), SpecError> {
        if self.max_per_hour.is_zero() {
            return Err(invalid(
                "pricing.max_per_hour",
                "must be more than 0, e.g. \"2.50\"",
            ));
        }
        if self.deposit.is_zero() {
            return Err(invalid(
                "pricing.deposit",
                "must be more than 0, e.g. \"5.00\"",
            ));
        }
        Ok(())
    }
}

impl Limits {
    fn validate(&self) -> Result<(), SpecError> {
        let secs = self.max_duration.0;
        if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&secs) {
            return Err(invalid(
                "limits.max_duration",
                format!(
                    "{} is out of range; use between 1s and 30d",
                    self.max_duration
                ),
            ));
        }
        Ok(())
    }
}

/// Just the version, read leniently, for a better message when the whole spec does not parse.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

/// `.` (serde_path_to_error's root) reads badly at the start of a message, and an empty path
/// (an unknown field named `""` at the top) names nothing at all.
fn root_as(path: String, root: &str) -> String {
    if path == "." || path.is_empty() {
        root.to_owned()
    } else {
        path
    }
}

/// Makes a [`SpecError`] from a YAML error. serde_yaml_ng writes its own path before the
/// message and the location after it; for errors inside a field both are dropped, since the
/// path already says where. Errors about the text as a whole keep their location.
fn yaml_error(err: &serde_path_to_error::Error<serde_yaml_ng::Error>) -> SpecError {
    let inner = err.inner();
    let (line, column) = match inner.location() {
        Some(loc) => (Some(loc.line()), Some(loc.column())),
        None => (None, None),
    };
    // A syntax error met while reading a key leaves an unknown (`?`) last segment: the error
    // is about the map that holds it.
    let full_path = err.path().to_string();
    let path = full_path
        .trim_end_matches('?')
        .trim_end_matches('.')
        .to_owned();
    let mut message = inner.to_string();
    if path.is_empty() {
        return SpecError::Malformed {
            path: "spec".into(),
            message,
            line,
            column,
        };
    }
    // serde_yaml_ng's path is ours or, for an unknown field, its parent map's.
    let ancestors = path
        .match_indices(['.', '['])
        .map(|(i, _)| &path[..i])
        .chain([path.as_str()]);
    let yaml_prefix = ancestors
        .map(|p| format!("{p}: "))
        .filter(|p| message.starts_with(p.as_str()))
        .max_by_key(String::len);
    if let Some(prefix) = yaml_prefix {
        message.drain(..prefix.len());
    }
    if let Some(at) = message.rfind(" at line ") {
        let tail = &message[at + " at line ".len()..];
        let is_location = tail
            .split_once(" column ")
            .is_some_and(|(l, c)| is_digits(l) && is_digits(c));
        if is_location {
            message.truncate(at);
        }
    }
    let message = with_shape_hint(&path, without_internal_fields(message));
    SpecError::Malformed {
        path,
        message,
        line,
        column,
    }
}

/// Fields gpunet fills in at submit; a person writing a spec is never offered them.
const INTERNAL_FIELDS: [&str; 5] = [
    "inputs_archive",
    "inputs_blob",
    "output_key",
    "salt",
    "checkpoint_key",
];

/// An unknown-field message lists the fields a spec may have; drop the internal ones.
fn without_internal_fields(message: String) -> String {
    if !message.starts_with("unknown field") {
        return message;
    }
    INTERNAL_FIELDS
        .iter()
        .fold(message, |m, field| m.replace(&format!(", `{field}`"), ""))
}

/// For the shapes people get wrong most (a bare number for `gpu`, a string for `command`),
/// a type error ends with the form that works.
fn with_shape_hint(path: &str, message: String) -> String {
    if !message.starts_with("invalid type") {
        return message;
    }
    let hint = match path {
        "resources.gpu" => {
            "; write GPUs as a map, e.g. gpu: {count: 1} or gpu: {count: 1, models: [h100], vram: 40Gi}"
        }
        "run.command" => {
            "; write the command as a list of program and arguments, e.g. command: [python3, train.py] \
             or, for a shell line, command: [sh, -c, \"echo hello && date\"]"
        }
        _ => return message,
    };
    message + hint
}

fn strip_json_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Reads a map, refusing a name given twice (a plain `BTreeMap` keeps the last silently).
fn env_without_duplicates<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    read_string_map(d, false)
}

/// Reads a map of names to string values, refusing a name given twice. With `secret`, an error
/// about a value never quotes it.
fn read_string_map<'de, D: Deserializer<'de>>(
    d: D,
    secret: bool,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct MapVisitor {
        secret: bool,
    }
    impl<'de> Visitor<'de> for MapVisitor {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of variable names to values, e.g. { GREETING: hello }")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = if self.secret {
                    map.next_value::<String>().map_err(|_| {
                        de::Error::custom("the value is not a string; quote it (not shown)")
                    })?
                } else {
                    map.next_value::<String>()?
                };
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!(
                        "{key:?} is given twice; keep one"
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(MapVisitor { secret })
}

/// Reads a list of names, lower-casing each (`H100` → `h100`).
fn lower_case_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    Ok(names.into_iter().map(|n| n.to_lowercase()).collect())
}

/// Serializes as a string via `Display`; deserializes from the scalar's text with `parse`, so a
/// plain YAML number (`cpu: 1.5`) is read by its digits, never through a float.
macro_rules! text_quantity {
    ($ty:ident, $expecting:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct TextVisitor;
                impl<'de> Visitor<'de> for TextVisitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$ty, E> {
                        $ty::parse(s).map_err(E::custom)
                    }
                }
                d.deserialize_str(TextVisitor)
            }
        }
    };
}

text_quantity!(Millicores, "a CPU amount such as 1, 0.5 or 250m");
text_quantity!(Mebibytes, "a size such as 512Mi or 1Gi");
text_quantity!(Seconds, "a duration such as 90s, 30m, 1h30m or 2d");

impl Millicores {
    /// `1`, `0.5`, `1.5` (cores, at most 3 decimal places) or `250m` (thousandths).
    pub fn parse(s: &str) -> Result<Millicores, String> {
        let bad = || format!("{s:?} is not a CPU amount; use e.g. 1, 0.5 or 250m");
        let millis: u64 = if let Some(m) = s.strip_suffix('m') {
            if !is_digits(m) {
                return Err(bad());
            }
            m.parse().map_err(|_| bad())?
        } else {
            let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
            let digits_ok = (whole.is_empty() || is_digits(whole))
                && (frac.is_empty() || is_digits(frac))
                && !(whole.is_empty() && frac.is_empty());
            if !digits_ok {
                return Err(bad());
            }
            if frac.len() > 3 {
                return Err(format!(
                    "{s:?} is finer than a thousandth of a core; use at most 3 decimal places"
                ));
            }
            let whole_v: u64 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| bad())?
            };
            let frac_v: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
            whole_v
                .checked_mul(1000)
                .and_then(|w| w.checked_add(frac_v))
                .ok_or_else(bad)?
        };
        u32::try_from(millis).map(Millicores).map_err(|_| {
            format!(
                "{s:?} is more than the {} cores a job may ask for",
                MAX_CPU_MILLIS / 1000
            )
        })
    }
}

impl fmt::Display for Millicores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0)
    }
}

impl Mebibytes {
    /// A number (decimals allowed) and a unit: `Ki Mi Gi Ti` or `K M G T`; a bare `0` is also
    /// fine. Rounded up to whole MiB.
    pub fn parse(s: &str) -> Result<Mebibytes, String> {
        let bad = || format!("{s:?} is not a size; use e.g. 512Mi");
        if s == "0" {
            return Ok(Mebibytes(0));
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, unit) = s.split_at(split);
        let unit_bytes: u128 = match unit {
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            "K" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if !is_digits(whole) || (number.contains('.') && !is_digits(frac)) || frac.len() > 6 {
            return Err(bad());
        }
        let scale = 10u128.pow(frac.len() as u32);
        let whole_v: u128 = whole.parse().map_err(|_| bad())?;
        let frac_v: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad())?
        };
        let too_large = || format!("{s:?} is too large");
        // bytes = (whole + frac/scale) × unit; MiB = ⌈bytes ÷ 2^20⌉, all in integers.
        let scaled_bytes = whole_v
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac_v))
            .and_then(|n| n.checked_mul(unit_bytes))
            .ok_or_else(too_large)?;
        let mib = scaled_bytes.div_ceil(scale << 20);
        u64::try_from(mib).map(Mebibytes).map_err(|_| too_large())
    }
}

impl fmt::Display for Mebibytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Mi", self.0)
    }
}

impl Seconds {
    /// Whole numbers with units, largest first, each unit at most once: `90s`, `30m`, `1h30m`,
    /// `2d`, `1d12h`.
    pub fn parse(s: &str) -> Result<Seconds, String> {
        let bad = || format!("{s:?} is not a duration; use e.g. 90s, 30m, 1h30m or 2d");
        const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
        let mut rest = s;
        let mut next_unit = 0;
        let mut total: u64 = 0;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits_end == 0 {
                return Err(bad());
            }
            let (digits, tail) = rest.split_at(digits_end);
            let unit = tail.chars().next().ok_or_else(bad)?;
            let offset = UNITS[next_unit..]
                .iter()
                .position(|&(u, _)| u == unit)
                .ok_or_else(bad)?;
            let unit_secs = UNITS[next_unit + offset].1;
            next_unit += offset + 1;
            let n: u64 = digits.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(unit_secs)
                .and_then(|v| v.checked_add(total))
                .ok_or_else(|| format!("{s:?} is too long"))?;
            rest = &tail[unit.len_utf8()..];
        }
        Ok(Seconds(total))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = include_str!("../../../examples/jobs/hello.yaml");

    const FULL: &str = r#"
version: 1
name: hello
kind: batch
run:
  image: example/hello:1
  command: ["sh", "-c", "echo hello > \"$GPUNET_OUTPUTS/greeting.txt\""]
  env: { GREETING: hello }
resources:
  cpu: 1
  memory: 512Mi
  disk: 1Gi
  gpu: { count: 1, models: [H100, a100], vram: 40Gi }
placement: { regions: [eu-west, us-east] }
pricing: { max_per_hour: "2.50", deposit: "5.00" }
limits: { max_duration: 1h }
outputs: true
"#;

    const COMMAND: &str =
        r#"command: ["sh", "-c", "echo hello > \"$GPUNET_OUTPUTS/greeting.txt\""]"#;

    /// Parses `text`; `Ok(())` expects success, `Err(s)` expects an error whose message starts
    /// with `s`.
    fn check(text: &str, want: Result<(), &str>) {
        match (JobSpec::parse_yaml(text), want) {
            (Ok(spec), Ok(())) => {
                let back = JobSpec::from_manifest_bytes(&spec.manifest_bytes())
                    .expect("a parsed spec's manifest parses");
                assert_eq!(back, spec);
                assert_eq!(back.manifest_hash(), spec.manifest_hash());
            }
            (Err(e), Err(prefix)) => {
                let msg = e.to_string();
                assert!(msg.starts_with(prefix), "want {prefix:?}…\n got {msg:?}");
            }
            (got, want) => panic!("want {want:?}, got {got:?}\nfor:\n{text}"),
        }
    }

    /// `FULL` with the first `from` replaced by `to`.
    fn edit(from: &str, to: &str) -> String {
        assert!(FULL.contains(from), "{from:?} is not in FULL");
        FULL.replacen(from, to, 1)
    }

    #[test]
    fn the_example_spec_parses_and_runs_without_gpus() {
        check(HELLO, Ok(()));
        let spec = JobSpec::parse_yaml(HELLO).expect("hello.yaml parses");
        assert_eq!(spec.name, "hello");
        assert_eq!(spec.runtime(), Runtime::Process);
        assert_eq!(spec.resources().gpu, GpuRequirement::default());
        assert!(spec.placement.regions.is_empty());
        assert_eq!(spec.max_duration_secs(), 600);
        assert!(spec.outputs);
        let terms = spec.order_terms();
        assert_eq!(terms.max_price_per_hour, Amount::from_micros(2_500_000));
        assert_eq!(terms.deposit, Amount::from_micros(5_000_000));
    }

    #[test]
    fn the_full_spec_gives_the_order_terms_the_chain_needs() {
        let spec = JobSpec::parse_yaml(FULL).expect("FULL parses");
        let terms = spec.order_terms();
        assert_eq!(
            terms,
            OrderTerms {
                capabilities: Default::default(),
                name: "hello".into(),
                manifest_hash: Hash::of(&spec.manifest_bytes()),
                resources: Resources {
                    cpu_millis: 1_000,
                    memory_mib: 512,
                    disk_mib: 1_024,
                    gpu: GpuRequirement {
                        count: 1,
                        models: vec!["h100".into(), "a100".into()],
                        vram_mib_min: 40_960,
                    },
                },
                regions: vec!["eu-west".into(), "us-east".into()],
                runtime: Runtime::Docker,
                max_price_per_hour: Amount::from_micros(2_500_000),
                deposit: Amount::from_micros(5_000_000),
                max_duration_secs: 3_600,
                recovery: crate::RecoveryPolicy::default(),
                verification: Default::default(),
            }
        );
    }

    #[test]
    fn manifests_round_trip_to_the_same_spec_and_hash() {
        for text in [HELLO, FULL] {
            let spec = JobSpec::parse_yaml(text).expect("parses");
            let bytes = spec.manifest_bytes();
            let back = JobSpec::from_manifest_bytes(&bytes).expect("manifest parses");
            assert_eq!(back, spec);
            assert_eq!(back.manifest_bytes(), bytes);
            assert_eq!(back.manifest_hash(), spec.manifest_hash());
        }
    }

    #[test]
    fn the_same_job_written_differently_has_the_same_manifest() {
        let a = JobSpec::parse_yaml(FULL).expect("parses");
        let b = JobSpec::parse_yaml(
            &edit("cpu: 1\n", "cpu: 1000m\n")
                .replacen("disk: 1Gi", "disk: 1024Mi", 1)
                .replacen("max_duration: 1h", "max_duration: 60m", 1)
                .replacen("\"2.50\"", "2.5", 1),
        )
        .expect("parses");
        assert_eq!(a.manifest_bytes(), b.manifest_bytes());
    }

    #[test]
    fn well_formed_variations_are_accepted() {
        for (from, to) in [
            ("cpu: 1\n", "cpu: 0.5\n"),
            ("cpu: 1\n", "cpu: \"250m\"\n"),
            ("cpu: 1\n", "cpu: 1024\n"),
            ("memory: 512Mi", "memory: 1.5G"),
            ("memory: 512Mi", "memory: 100K"),
            ("memory: 512Mi", "memory: 16Ti"),
            ("disk: 1Gi", "disk: 1024Ti"),
            ("vram: 40Gi", "vram: 1Ti"),
            ("count: 1,", "count: 64,"),
            ("max_duration: 1h", "max_duration: 1h30m"),
            ("max_duration: 1h", "max_duration: 30d"),
            ("max_duration: 1h", "max_duration: 1s"),
            ("max_per_hour: \"2.50\"", "max_per_hour: 2.5"),
            ("max_per_hour: \"2.50\"", "max_per_hour: 3"),
            ("kind: batch\n", ""),
            ("placement: { regions: [eu-west, us-east] }\n", ""),
            ("  image: example/hello:1\n", ""),
            (
                "  gpu: { count: 1, models: [H100, a100], vram: 40Gi }\n",
                "",
            ),
            ("env: { GREETING: hello }", "env: { _X1: 1, y: \"\" }"),
        ] {
            check(&edit(from, to), Ok(()));
        }
    }

    #[test]
    fn recovery_is_optional_defaults_to_three_attempts_and_is_bounded() {
        let spec = JobSpec::parse_yaml(FULL).expect("FULL parses");
        assert_eq!(spec.recovery, Recovery::default());
        assert_eq!(
            spec.order_terms().recovery,
            crate::RecoveryPolicy::default()
        );
        // The default is left out of the manifest, so specs without it keep their bytes.
        assert!(!String::from_utf8_lossy(&spec.manifest_bytes()).contains("recovery"));
        let with = |r: &str| JobSpec::parse_yaml(&format!("{FULL}recovery: {r}\n"));
        let spec = with("{ max_attempts: 4, on_exit_codes: [137, 143], backoff: 10s }")
            .expect("a full policy parses");
        assert_eq!(
            spec.order_terms().recovery,
            crate::RecoveryPolicy {
                max_attempts: 4,
                on_exit_codes: vec![137, 143],
                backoff_secs: 10,
            }
        );
        for (bad, path) in [
            ("{ max_attempts: 0 }", "recovery.max_attempts"),
            ("{ max_attempts: 11 }", "recovery.max_attempts"),
            ("{ on_exit_codes: [0] }", "recovery.on_exit_codes"),
            (
                "{ on_exit_codes: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17] }",
                "recovery.on_exit_codes",
            ),
            ("{ backoff: 2h }", "recovery.backoff"),
        ] {
            let err = with(bad).expect_err(bad);
            assert_eq!(err.path(), path, "{bad}: {err}");
        }
    }

    #[test]
    fn shape_errors_people_make_most_show_the_working_form_and_no_internal_fields() {
        let message = |text: &str| {
            JobSpec::parse_yaml(text)
                .expect_err("the spec is refused")
                .to_string()
        };
        let unknown = message(&edit("outputs: true", "outputs: true\nextra: 1"));
        assert_eq!(
            unknown,
            "extra: unknown field `extra`, expected one of `version`, `name`, `kind`, `run`, \
             `expose`, `health`, `services`, `volumes`, `resources`, `placement`, `pricing`, `limits`, \
             `recovery`, `verification`, \
             `inputs`, `outputs`, `storage`"
        );
        let gpu = message(&edit(
            "gpu: { count: 1, models: [H100, a100], vram: 40Gi }",
            "gpu: 1",
        ));
        assert!(gpu.starts_with("resources.gpu: invalid type"), "{gpu}");
        assert!(gpu.contains("e.g. gpu: {count: 1}"), "{gpu}");
        let command = message(&edit(COMMAND, "command: python3 train.py"));
        assert!(
            command.starts_with("run.command: invalid type"),
            "{command}"
        );
        assert!(command.contains("command: [sh, -c, "), "{command}");
        // A hint only where it fits: another type error is left as it was.
        let other = message(&edit("cpu: 1", "cpu: [1]"));
        assert!(!other.contains("e.g. gpu"), "{other}");
        assert!(!other.contains("command: ["), "{other}");
    }

    #[test]
    fn bad_specs_are_rejected_naming_the_field() {
        let too_big = format!("{FULL}# {}\n", "x".repeat(MAX_SPEC_BYTES));
        let many_args = format!("command: [{}]", vec!["a"; MAX_COMMAND_ARGS + 1].join(", "));
        for (text, want) in [
            (
                edit("outputs: true", "outputs: true\nextra: 1"),
                "extra: unknown field `extra`, expected one of `version`",
            ),
            (
                edit("disk: 1Gi", "disk: 1Gi\n  disks: 2"),
                "resources.disks: unknown field `disks`, expected one of `cpu`, `memory`, `disk`, `gpu`",
            ),
            (
                edit("vram: 40Gi", "vram: 40Gi, mig: true"),
                "resources.gpu.mig: unknown field `mig`",
            ),
            (
                edit("memory: 512Mi", "memory: 512MB"),
                "resources.memory: \"512MB\" is not a size; use e.g. 512Mi",
            ),
            (
                edit("memory: 512Mi", "memory: 512"),
                "resources.memory: \"512\" is not a size; use e.g. 512Mi",
            ),
            (
                edit("memory: 512Mi", "memory: 0Mi"),
                "resources.memory: must be more than 0",
            ),
            (
                edit("cpu: 1\n", "cpu: 0\n"),
                "resources.cpu: must be more than 0",
            ),
            (
                edit("cpu: 1\n", "cpu: 1024.001\n"),
                "resources.cpu: 1024.001 cores is more than the 1024 a job may ask for",
            ),
            (
                edit("memory: 512Mi", "memory: 16777216Ti"),
                "resources.memory: 16777216Ti is more than the 16Ti of memory a job may ask for; \
                 ask for at most 16Ti",
            ),
            (
                edit("memory: 512Mi", "memory: 16385Gi"),
                "resources.memory: 16385Gi is more than the 16Ti",
            ),
            (
                edit("disk: 1Gi", "disk: 1025Ti"),
                "resources.disk: 1025Ti is more than the 1024Ti of disk a job may ask for; ask \
                 for at most 1024Ti",
            ),
            (
                edit("vram: 40Gi", "vram: 1025Gi"),
                "resources.gpu.vram: 1025Gi is more than the 1Ti of memory per GPU",
            ),
            (
                edit("  image: example/hello:1\n", "  network: egress\n"),
                "run.network: egress is only for container jobs: a job without run.image runs \
                 in the process sandbox, which has no network; set run.image",
            ),
            (
                edit("  image: example/hello:1\n", "  capabilities: baseline\n"),
                "run.capabilities: is only for container jobs: a job without run.image runs in \
                 the process sandbox, as an unprivileged user with no capabilities; set \
                 run.image, or remove run.capabilities",
            ),
            (
                edit("  image: example/hello:1\n", "  writable_root: true\n"),
                "run.writable_root: is only for container jobs: a job without run.image runs in \
                 the process sandbox",
            ),
            (
                edit("cpu: 1\n", "cpu: 1e3\n"),
                "resources.cpu: \"1e3\" is not a CPU amount",
            ),
            (
                edit("cpu: 1\n", "cpu: 0.0001\n"),
                "resources.cpu: \"0.0001\" is finer than a thousandth",
            ),
            (
                edit("version: 1", "version: 2"),
                "version: 2 is not supported; this gpunet understands version 1",
            ),
            (
                edit("version: 1", "version: 2\nnew_in_v2: true"),
                "version: 2 is not supported",
            ),
            (edit("version: 1\n", ""), "spec: missing field `version`"),
            (
                edit("name: hello", "name: Hello"),
                "name: \"Hello\" may hold only a-z, 0-9",
            ),
            (
                edit("name: hello", &format!("name: {}", "a".repeat(65))),
                "name: must be 1 to 64 bytes",
            ),
            (
                edit("outputs: true", "outputs: true\nexpose: [{ port: 80 }]"),
                "expose: is only for kind: service",
            ),
            (
                edit("outputs: true", "outputs: true\nhealth: { http_path: /h }"),
                "health: is only for kind: service",
            ),
            (
                edit("kind: batch", "kind: service").replacen("  image: example/hello:1\n", "", 1),
                "run.image: is required for kind: service",
            ),
            (
                edit("kind: batch", "kind: cron"),
                "kind: unknown variant `cron`, expected `batch` or `service`",
            ),
            (
                edit("image: example/hello:1", "image: \"\""),
                "run.image: must be 1 to 256 bytes",
            ),
            (
                edit(COMMAND, "command: []").replacen("  image: example/hello:1\n", "", 1),
                "run.command: is empty; name the program",
            ),
            (
                edit(COMMAND, "command: [sh]\n  args: [x]"),
                "run.args: is for the arguments of a container image's own entrypoint, \
                 without run.command",
            ),
            (
                edit(COMMAND, "command: [sh]\n  args: [x]").replacen(
                    "  image: example/hello:1\n",
                    "",
                    1,
                ),
                "run.args: is for the arguments of a container image's own entrypoint",
            ),
            (
                edit(COMMAND, "command: [\"\", x]"),
                "run.command[0]: is empty",
            ),
            (edit(COMMAND, &many_args), "run.command: has 257 arguments"),
            (
                edit("\"-c\"", "\"a\\0b\""),
                "run.command[1]: contains a NUL byte",
            ),
            (
                edit("GREETING: hello", "GPUNET_OUTPUTS: /tmp"),
                "run.env.GPUNET_OUTPUTS: names starting with GPUNET_ are reserved",
            ),
            (
                edit("GREETING: hello", "1X: a"),
                "run.env.1X: \"1X\" is not a variable name",
            ),
            (edit("GREETING: hello", "A: x, A: y"), "run.env"),
            (
                edit("GREETING: hello", "A: \"x\\0\""),
                "run.env.A: contains a NUL byte",
            ),
            (
                edit("count: 1,", "count: 0,"),
                "resources.gpu.count: is 0, so models and vram ask for nothing",
            ),
            (
                edit("count: 1,", "count: 65,"),
                "resources.gpu.count: 65 is more than the 64 GPUs",
            ),
            (
                edit("a100]", "a100, \"h 100\"]"),
                "resources.gpu.models[2]: \"h 100\" may hold only",
            ),
            (
                edit("us-east]", "US-East]"),
                "placement.regions[1]: \"US-East\" may hold only",
            ),
            (
                edit("deposit: \"5.00\"", "deposit: \"abc\""),
                "pricing.deposit: \"abc\" is not an amount",
            ),
            (
                edit("deposit: \"5.00\"", "deposit: 0"),
                "pricing.deposit: must be more than 0",
            ),
            (
                edit("max_per_hour: \"2.50\"", "max_per_hour: \"0.00\""),
                "pricing.max_per_hour: must be more than 0",
            ),
            (
                edit("max_per_hour: \"2.50\"", "max_per_hour: 2.5e0"),
                "pricing.max_per_hour: \"2.5e0\" is not an amount",
            ),
            (
                edit("max_duration: 1h", "max_duration: forever"),
                "limits.max_duration: \"forever\" is not a duration; use e.g. 90s",
            ),
            (
                edit("max_duration: 1h", "max_duration: 30m1h"),
                "limits.max_duration: \"30m1h\" is not a duration",
            ),
            (
                edit("max_duration: 1h", "max_duration: 3600"),
                "limits.max_duration: \"3600\" is not a duration",
            ),
            (
                edit("max_duration: 1h", "max_duration: 0s"),
                "limits.max_duration: 0s is out of range; use between 1s and 30d",
            ),
            (
                edit("max_duration: 1h", "max_duration: 30d1s"),
                "limits.max_duration: 2592001s is out of range",
            ),
            (
                edit("limits: { max_duration: 1h }\n", ""),
                "spec: missing field `limits`",
            ),
            (
                edit("outputs: true", "outputs: yes please"),
                "outputs: invalid type",
            ),
            (
                "version: 1\nname: \"unterminated\n".to_owned(),
                "name: found unexpected end of stream at line 3",
            ),
            ("- version: 1\n".to_owned(), "spec: invalid type: sequence"),
            (
                "version: 1\nname: x\n  kind: batch\n".to_owned(),
                "spec: mapping values are not allowed in this context at line 3 column 7",
            ),
            ("".to_owned(), "spec: is empty"),
            (too_big, "spec: is 65"),
        ] {
            check(&text, Err(want));
        }
    }

    /// FULL as a service with `network` and `extra` top-level lines.
    fn service(network: &str, extra: &str) -> String {
        edit("kind: batch", "kind: service")
            .replacen(
                "  image: example/hello:1\n",
                &format!("  image: example/hello:1\n{network}"),
                1,
            )
            .replacen("outputs: true", &format!("outputs: true\n{extra}"), 1)
    }

    #[test]
    fn services_expose_ports_with_egress_and_are_checked_naming_the_field() {
        let egress = "  network: egress\n";
        check(&service("", ""), Ok(()));
        check(
            &service(
                egress,
                "expose: [{ port: 8000 }, { port: 9000, proto: tcp }]\nhealth: { http_path: /healthz }",
            ),
            Ok(()),
        );
        let spec = JobSpec::parse_yaml(&service(
            egress,
            "expose: [{ port: 9000, proto: tcp }, { port: 8000, proto: http }]",
        ))
        .expect("parses");
        assert_eq!(spec.kind, JobKind::Service);
        assert_eq!(spec.run.network, Network::Egress);
        assert_eq!(spec.health_port(), Some(8000));
        let many: Vec<String> = (1..=17).map(|p| format!("{{ port: {p} }}")).collect();
        for (text, want) in [
            (
                service("", "expose: [{ port: 8000 }]"),
                "run.network: must be egress when ports are exposed: Docker cannot publish",
            ),
            (
                service(egress, "expose: [{ port: 0 }]"),
                "expose[0].port: must be 1 to 65535",
            ),
            (
                service(egress, "expose: [{ port: 80 }, { port: 80, proto: tcp }]"),
                "expose[1].port: 80 is exposed twice",
            ),
            (
                service(egress, &format!("expose: [{}]", many.join(", "))),
                "expose: has 17 ports; at most 16",
            ),
            (
                service(egress, "expose: [{ port: 80, proto: udp }]"),
                "expose[0].proto: unknown variant `udp`, expected `http` or `tcp`",
            ),
            (
                service(
                    egress,
                    "expose: [{ port: 80 }]\nhealth: { http_path: healthz }",
                ),
                "health.http_path: \"healthz\" must start with '/'",
            ),
            (
                service(
                    egress,
                    "expose: [{ port: 80, proto: tcp }]\nhealth: { http_path: /h }",
                ),
                "health: needs a port with proto: http",
            ),
            (
                service("  network: everything\n", ""),
                "run.network: unknown variant `everything`, expected `none` or `egress`",
            ),
        ] {
            check(&text, Err(want));
        }
    }

    /// A web front end (the job's own run) with an api of `count` replicas and a database.
    fn shop(api: &str, db: &str) -> String {
        format!(
            r#"
version: 1
name: web
kind: service
run: {{ image: example/web:1, network: egress, command: [web] }}
expose: [{{ port: 8080 }}]
services:
  - name: api
    run: {{ image: example/api:1, command: [api, --port, "9000"] }}
    resources: {{ cpu: 500m, memory: 256Mi, disk: 100Mi{api} }}
  - name: db
    run: {{ image: example/db:1, network: egress, command: [db] }}
    expose: [{{ port: 5432, proto: tcp }}]
    resources: {{ cpu: 1, memory: 1Gi, disk: 10Gi{db} }}
resources: {{ cpu: 250m, memory: 128Mi, disk: 50Mi }}
pricing: {{ max_per_hour: "1.00", deposit: "2.00" }}
limits: {{ max_duration: 1h }}
"#
        )
    }

    #[test]
    fn a_multi_service_job_asks_for_the_sum_of_its_services() {
        let text = shop("", "").replacen("  - name: api\n", "  - name: api\n    count: 3\n", 1);
        check(&text, Ok(()));
        let spec = JobSpec::parse_yaml(&text).expect("parses");
        assert_eq!(spec.services.len(), 2);
        assert_eq!(spec.services[0].count, 3);
        assert_eq!(spec.services[1].count, 1, "count defaults to 1");
        assert_eq!(spec.services[1].expose[0].proto, ExposeProto::Tcp);
        let total = spec.resources();
        assert_eq!(total.cpu_millis, 250 + 3 * 500 + 1000);
        assert_eq!(total.memory_mib, 128 + 3 * 256 + 1024);
        assert_eq!(total.disk_mib, 50 + 3 * 100 + 10 * 1024);
        assert_eq!(spec.order_terms().resources, total);
        // Replicas' GPUs add up; the models are the one list, the memory the most asked.
        let gpus = JobSpec::parse_yaml(&shop(
            ", gpu: { count: 1, models: [h100], vram: 40Gi }",
            ", gpu: { count: 2, models: [h100], vram: 80Gi }",
        ))
        .expect("parses")
        .resources()
        .gpu;
        assert_eq!(gpus.count, 3);
        assert_eq!(gpus.models, vec!["h100".to_owned()]);
        assert_eq!(gpus.vram_mib_min, 80 * 1024);
        // A count of 1 stays out of the manifest; a job without services keeps its bytes.
        let manifest = String::from_utf8(spec.manifest_bytes()).expect("utf-8");
        assert!(
            manifest.contains(r#"{"name":"api","count":3,"run""#),
            "{manifest}"
        );
        assert!(manifest.contains(r#"{"name":"db","run""#), "{manifest}");
        let plain = String::from_utf8(JobSpec::parse_yaml(FULL).expect("parses").manifest_bytes())
            .expect("utf-8");
        assert!(!plain.contains("services"), "{plain}");
    }

    #[test]
    fn a_writable_root_is_asked_for_per_container_and_left_out_of_the_manifest_when_off() {
        let text = shop("", "").replacen(
            "run: { image: example/db:1, network: egress, command: [db] }",
            "run: { image: example/db:1, network: egress, command: [db], writable_root: true }",
            1,
        );
        check(&text, Ok(()));
        let spec = JobSpec::parse_yaml(&text).expect("parses");
        assert!(!spec.run.writable_root, "off by default");
        assert!(!spec.services[0].run.writable_root);
        assert!(spec.services[1].run.writable_root);
        let manifest = String::from_utf8(spec.manifest_bytes()).expect("utf-8");
        assert_eq!(manifest.matches("writable_root").count(), 1, "{manifest}");
        let plain = String::from_utf8(JobSpec::parse_yaml(FULL).expect("parses").manifest_bytes())
            .expect("utf-8");
        assert!(!plain.contains("writable_root"), "{plain}");
        let refused = JobSpec::parse_yaml(&text.replacen(
            "writable_root: true",
            "writable_root: yes please",
            1,
        ))
        .expect_err("not a boolean");
        assert!(refused.to_string().contains("writable_root"), "{refused}");
    }

    #[test]
    fn a_container_job_may_run_its_images_entrypoint_with_or_without_args() {
        let entrypoint = edit(&format!("  {COMMAND}\n"), "");
        check(&entrypoint, Ok(()));
        let spec = JobSpec::parse_yaml(&entrypoint).expect("parses");
        assert!(spec.run.command.is_empty() && spec.run.args.is_empty());
        let with_args = edit(COMMAND, "args: [--port, \"8080\", \"\"]");
        check(&with_args, Ok(()));
        let spec = JobSpec::parse_yaml(&with_args).expect("parses");
        assert_eq!(spec.run.args, ["--port", "8080", ""]);
        let manifest = String::from_utf8(spec.manifest_bytes()).expect("utf-8");
        assert!(
            manifest.contains(r#""args":["--port","8080",""]"#),
            "{manifest}"
        );
        let plain = String::from_utf8(JobSpec::parse_yaml(FULL).expect("parses").manifest_bytes())
            .expect("utf-8");
        assert!(!plain.contains("\"args\""), "{plain}");
    }

    #[test]
    fn capabilities_are_asked_per_container_and_the_order_asks_the_most_of_them() {
        let text = shop("", "").replacen(
            "run: { image: example/db:1, network: egress, command: [db] }",
            "run: { image: example/db:1, network: egress, command: [db], capabilities: baseline }",
            1,
        );
        check(&text, Ok(()));
        let spec = JobSpec::parse_yaml(&text).expect("parses");
        assert_eq!(spec.run.capabilities, Capabilities::None, "none by default");
        assert_eq!(spec.services[0].run.capabilities, Capabilities::None);
        assert_eq!(spec.services[1].run.capabilities, Capabilities::Baseline);
        // One service asks: the order asks its provider for it.
        assert_eq!(spec.order_terms().capabilities, Capabilities::Baseline);
        let manifest = String::from_utf8(spec.manifest_bytes()).expect("utf-8");
        assert_eq!(manifest.matches("capabilities").count(), 1, "{manifest}");
        let plain = JobSpec::parse_yaml(FULL).expect("parses");
        assert_eq!(plain.order_terms().capabilities, Capabilities::None);
        let bytes = String::from_utf8(plain.manifest_bytes()).expect("utf-8");
        assert!(!bytes.contains("capabilities"), "{bytes}");
        // Only the sets the protocol names: nothing else, and no list of capabilities.
        for bad in ["all", "SYS_ADMIN", "[CHOWN]"] {
            let refused = JobSpec::parse_yaml(&text.replacen(
                "capabilities: baseline",
                &format!("capabilities: {bad}"),
                1,
            ))
            .expect_err(bad);
            assert!(refused.to_string().contains("capabilities"), "{refused}");
        }
    }

    #[test]
    fn volumes_are_checked_naming_the_field_and_counted_within_disk() {
        let with = |volumes: &str| {
            shop("", "").replacen(
                "resources: { cpu: 250m, memory: 128Mi, disk: 50Mi }",
                &format!("volumes: {volumes}\nresources: {{ cpu: 250m, memory: 128Mi, disk: 50Mi }}\nrecovery: {{ restarts: 2 }}"),
                1,
            )
        };
        let ok = with(
            "[{ name: data, size: 40Mi, mount: /data }, { name: cache, size: 10Mi, mount: /var/cache }]",
        );
        check(&ok, Ok(()));
        let spec = JobSpec::parse_yaml(&ok).expect("parses");
        assert_eq!(spec.volumes[0].size, Mebibytes(40));
        assert_eq!(spec.recovery.restarts, 2);
        // A service's volumes, per replica within its disk.
        check(
            &shop("", "").replacen(
                "    resources: { cpu: 1, memory: 1Gi, disk: 10Gi }",
                "    volumes: [{ name: pg, size: 10Gi, mount: /var/lib/postgresql }]\n    resources: { cpu: 1, memory: 1Gi, disk: 10Gi }",
                1,
            ),
            Ok(()),
        );
        for (volumes, want) in [
            (
                "[{ name: Data, size: 1Mi, mount: /data }]",
                "volumes[0].name: \"Data\" must be a DNS label",
            ),
            (
                "[{ name: a, size: 1Mi, mount: /a }, { name: a, size: 1Mi, mount: /b }]",
                "volumes[1].name: \"a\" names two volumes",
            ),
            (
                "[{ name: a, size: 0Mi, mount: /a }]",
                "volumes[0].size: must be more than 0",
            ),
            (
                "[{ name: a, size: 1Mi, mount: data }]",
                "volumes[0].mount: \"data\" must be an absolute path",
            ),
            (
                "[{ name: a, size: 1Mi, mount: /data/../etc }]",
                "volumes[0].mount: \"/data/../etc\" must be an absolute path",
            ),
            (
                "[{ name: a, size: 1Mi, mount: / }]",
                "volumes[0].mount: \"/\" must be an absolute path",
            ),
            (
                "[{ name: a, size: 1Mi, mount: /outputs/x }]",
                "volumes[0].mount: /outputs/x would cover or sit in /outputs",
            ),
            (
                "[{ name: a, size: 1Mi, mount: /dev }]",
                "volumes[0].mount: /dev would cover or sit in /dev",
            ),
            (
                "[{ name: a, size: 1Mi, mount: /data }, { name: b, size: 1Mi, mount: /data/b }]",
                "volumes[1].mount: /data/b overlaps volume \"a\" at /data",
            ),
            (
                "[{ name: a, size: 51Mi, mount: /data }]",
                "volumes: hold 51Mi in all, more than resources.disk (50Mi)",
            ),
        ] {
            check(&with(volumes), Err(want));
        }
        check(
            &shop("", "").replacen(
                "    resources: { cpu: 500m, memory: 256Mi, disk: 100Mi }",
                "    volumes: [{ name: a, size: 1Gi, mount: /a }]\n    resources: { cpu: 500m, memory: 256Mi, disk: 100Mi }",
                1,
            ),
            Err("services[0].volumes: hold 1024Mi in all, more than resources.disk (100Mi)"),
        );
        check(
            &edit(
                "limits: { max_duration: 1h }",
                "limits: { max_duration: 1h }\nrecovery: { restarts: 11 }",
            ),
            Err("recovery.restarts: is 11; give 0 to 10"),
        );
        check(
            &edit("  image: example/hello:1\n", "").replacen(
                "limits: { max_duration: 1h }",
                "limits: { max_duration: 1h }\nrecovery: { restarts: 1 }",
                1,
            ),
            Err("recovery.restarts: restarts in place are for container jobs"),
        );
        check(
            &edit("  image: example/hello:1\n", "").replacen(
                "outputs: true",
                "outputs: true\nvolumes: [{ name: a, size: 1Mi, mount: /a }]",
                1,
            ),
            Err("volumes: are for container jobs"),
        );
    }

    #[test]
    fn services_are_refused_naming_the_field_and_the_fix() {
        let nine: String = (0..9)
            .map(|i| {
                format!(
                    "  - {{ name: s{i}, run: {{ image: x, command: [x] }}, resources: {{ cpu: 1, memory: 1Mi, disk: 1Mi }} }}\n"
                )
            })
            .collect();
        for (text, want) in [
            (
                shop("", "").replacen("name: web", "name: my_web", 1),
                "name: \"my_web\" must be a DNS label",
            ),
            (
                shop("", "").replacen("name: db", "name: Db", 1),
                "services[1].name: \"Db\" must be a DNS label",
            ),
            (
                shop("", "").replacen("name: db", "name: -db", 1),
                "services[1].name: \"-db\" must be a DNS label",
            ),
            (
                shop("", "").replacen("name: db", "name: web", 1),
                "services[1].name: \"web\" is the job's name",
            ),
            (
                shop("", "").replacen("name: db", "name: api", 1),
                "services[1].name: \"api\" names two services",
            ),
            (
                shop("", "").replacen("  - name: api\n", "  - name: api\n    count: 0\n", 1),
                "services[0].count: is 0; a service runs 1 to 8 replicas",
            ),
            (
                shop("", "").replacen("  - name: api\n", "  - name: api\n    count: 9\n", 1),
                "services[0].count: is 9",
            ),
            (
                shop("", "").replacen("image: example/api:1, ", "", 1),
                "services[0].run.image: is required",
            ),
            (
                shop("", "")
                    .replacen("kind: service", "kind: batch", 1)
                    .replacen("image: example/web:1, network: egress, ", "", 1)
                    .replacen("expose: [{ port: 8080 }]\n", "", 1),
                "run.image: is required when the job has services",
            ),
            (
                shop("", "").replacen("command: [api, --port, \"9000\"]", "args: [\"a\\0\"]", 1),
                "services[0].run.args[0]: contains a NUL byte",
            ),
            (
                shop("", "").replacen(
                    "image: example/db:1, network: egress, ",
                    "image: example/db:1, ",
                    1,
                ),
                "services[1].run.network: must be egress when ports are exposed",
            ),
            (
                shop("", "").replacen("{ port: 5432, proto: tcp }", "{ port: 0 }", 1),
                "services[1].expose[0].port: must be 1 to 65535",
            ),
            (
                shop("", "").replacen("cpu: 500m", "cpu: 0", 1),
                "services[0].resources.cpu: must be more than 0",
            ),
            (
                shop(
                    ", gpu: { count: 1, models: [h100] }",
                    ", gpu: { count: 1, models: [a100] }",
                ),
                "services[1].resources.gpu.models: [\"a100\"] differs from [\"h100\"]",
            ),
            (
                shop("", "")
                    .replacen("  - name: api\n", "  - name: api\n    count: 8\n", 1)
                    .replacen("  - name: db\n", "  - name: db\n    count: 8\n", 1),
                "services: with their counts, the job runs 17 containers; at most 16",
            ),
            (
                shop("", "").replacen("services:\n", &format!("services:\n{nine}"), 1),
                "services: lists 11 services; at most 8",
            ),
            (
                shop("", "").replacen("  - name: api\n", "  - name: api\n    replicas: 2\n", 1),
                "services[0].replicas: unknown field `replicas`, expected one of `name`, `count`",
            ),
            (
                shop("", "")
                    .replacen("kind: service", "kind: batch", 1)
                    .replacen("expose: [{ port: 8080 }]\n", "", 1),
                "services[1].expose: is only for kind: service",
            ),
        ] {
            check(&text, Err(want));
        }
        // A batch job may have services (a database its tests use), unexposed.
        check(
            &shop("", "")
                .replacen("kind: service", "kind: batch", 1)
                .replacen("expose: [{ port: 8080 }]\n", "", 1)
                .replacen("    expose: [{ port: 5432, proto: tcp }]\n", "", 1),
            Ok(()),
        );
    }

    #[test]
    fn specs_without_the_service_fields_keep_their_manifest() {
        // Absent `network`, `expose` and `health` are left out of the manifest, so manifests
        // (and hashes) of specs written before they existed are unchanged.
        let manifest =
            String::from_utf8(JobSpec::parse_yaml(FULL).expect("parses").manifest_bytes())
                .expect("utf-8");
        for field in ["network", "expose", "health"] {
            assert!(!manifest.contains(field), "{field} in {manifest}");
        }
    }

    const SECRET: &str = "hunter2-s3cr3t-value";

    #[test]
    fn secrets_travel_in_the_manifest_but_never_show() {
        let text = edit(
            "env: { GREETING: hello }",
            &format!("env: {{ GREETING: hello }}\n  secrets: {{ API_TOKEN: {SECRET} }}"),
        );
        check(&text, Ok(()));
        let spec = JobSpec::parse_yaml(&text).expect("parses");
        assert_eq!(
            spec.run
                .secrets
                .expose()
                .get("API_TOKEN")
                .map(String::as_str),
            Some(SECRET)
        );
        assert_eq!(spec.run.secrets.names().collect::<Vec<_>>(), ["API_TOKEN"]);
        let manifest = String::from_utf8(spec.manifest_bytes()).expect("utf-8");
        assert!(manifest.contains(SECRET), "the provider needs the value");
        let shown = format!("{spec:?} {:#?}", spec.run);
        assert!(shown.contains("API_TOKEN"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        // No secrets, no field: manifests of specs without secrets are unchanged.
        let plain = JobSpec::parse_yaml(FULL).expect("parses");
        let plain_json = String::from_utf8(plain.manifest_bytes()).expect("utf-8");
        assert!(!plain_json.contains("secrets"), "{plain_json}");
    }

    #[test]
    fn bad_secrets_are_rejected_without_quoting_their_values() {
        let with = |secrets: &str| {
            edit(
                "env: { GREETING: hello }",
                &format!("env: {{ GREETING: hello }}\n  secrets: {secrets}"),
            )
        };
        let many = format!(
            "{{ {} }}",
            (0..=MAX_SECRETS)
                .map(|i| format!("S{i}: x"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (text, want) in [
            (
                with(&format!("{{ 1X: {SECRET} }}")),
                "run.secrets.1X: \"1X\" is not a variable name",
            ),
            (
                with(&format!("{{ GPUNET_KEY: {SECRET} }}")),
                "run.secrets.GPUNET_KEY: names starting with GPUNET_ are reserved",
            ),
            (
                with(&format!("{{ GREETING: {SECRET} }}")),
                "run.secrets.GREETING: is also in run.env",
            ),
            (
                with(&format!("{{ A: {SECRET}, A: {SECRET} }}")),
                "run.secrets",
            ),
            (
                with(&format!("{{ A: \"{SECRET}\\0\" }}")),
                "run.secrets.A: contains a NUL byte",
            ),
            (
                with(&format!("{{ A: [{SECRET}] }}")),
                "run.secrets.A: the value is not a string",
            ),
            (with(&many), "run.secrets: has 65 variables"),
            (
                with(&format!("{{ A: {} }}", "x".repeat(MAX_SECRETS_BYTES))),
                "run.secrets: is 16385 bytes",
            ),
        ] {
            let err = JobSpec::parse_yaml(&text).expect_err(want);
            let msg = format!("{err} {err:?}");
            assert!(msg.starts_with(want), "want {want:?}…\n got {msg:?}");
            assert!(!msg.contains(SECRET), "{msg}");
        }
    }

    const STORAGE_SECRET: &str = "wJalrXUtnFEMI-K7MDENG-s3cr3t";
    const STORAGE_KEY_ID: &str = "AKIAEXAMPLEKEYID0001";

    fn with_storage(section: &str) -> String {
        format!("{FULL}storage:\n{section}")
    }

    fn storage_values() -> String {
        with_storage(&format!(
            "  s3: {{ endpoint: https://s3.example.com, bucket: my-bucket, region: us-east-1, prefix: gpunet }}\n  credentials: {{ access_key_id: {STORAGE_KEY_ID}, secret_access_key: \"{STORAGE_SECRET}\" }}\n"
        ))
    }

    #[test]
    fn storage_credentials_travel_in_the_manifest_but_never_show() {
        let text = storage_values();
        check(&text, Ok(()));
        let spec = JobSpec::parse_yaml(&text).expect("parses");
        let storage = spec.storage.as_ref().expect("storage");
        assert_eq!(storage.s3.bucket, "my-bucket");
        assert_eq!(
            storage
                .credentials
                .secret_access_key
                .as_ref()
                .map(SecretString::expose),
            Some(STORAGE_SECRET)
        );
        let manifest = String::from_utf8(spec.manifest_bytes()).expect("utf-8");
        assert!(manifest.contains(STORAGE_SECRET), "the provider needs it");
        let shown = format!("{spec:?} {spec:#?} {storage:?}");
        assert!(shown.contains("my-bucket"), "{shown}");
        assert!(!shown.contains(STORAGE_SECRET), "{shown}");
        assert!(!shown.contains(STORAGE_KEY_ID), "{shown}");
        // No storage, no field: manifests of specs without it are unchanged.
        let plain = JobSpec::parse_yaml(FULL).expect("parses");
        let plain_json = String::from_utf8(plain.manifest_bytes()).expect("utf-8");
        assert!(!plain_json.contains("storage"), "{plain_json}");
    }

    #[test]
    fn storage_credentials_from_the_environment_are_resolved_at_submit() {
        let text = with_storage(
            "  s3: { endpoint: https://s3.example.com, bucket: my-bucket, region: us-east-1 }\n  credentials: { access_key_id_env: MY_KEY_ID, secret_access_key_env: MY_SECRET, session_token_env: MY_TOKEN }\n",
        );
        let mut spec = JobSpec::parse_yaml(&text).expect("a spec may name variables");
        // A manifest must carry values: the provider cannot read the tenant's environment.
        let err = JobSpec::from_manifest_bytes(&spec.manifest_bytes()).expect_err("unresolved");
        assert!(
            err.to_string()
                .starts_with("storage.credentials.access_key_id_env: is read by gpunet"),
            "{err}"
        );
        let env = |name: &str| match name {
            "MY_KEY_ID" => Some(STORAGE_KEY_ID.to_owned()),
            "MY_SECRET" => Some(STORAGE_SECRET.to_owned()),
            _ => None,
        };
        let storage = spec.storage.as_mut().expect("storage");
        let err = storage
            .clone()
            .resolve_env(env)
            .expect_err("MY_TOKEN unset");
        assert_eq!(
            err.to_string(),
            "storage.credentials.session_token_env: names MY_TOKEN, which is not set in this \
             environment; export it before `gpunet job submit`, or give session_token instead"
        );
        storage.credentials.session_token_env = None;
        storage.resolve_env(env).expect("resolves");
        assert_eq!(storage.credentials.access_key_id_env, None);
        let back = JobSpec::from_manifest_bytes(&spec.manifest_bytes()).expect("resolved");
        assert_eq!(back, spec);
        assert!(!format!("{back:?}").contains(STORAGE_SECRET));
    }

    #[test]
    fn bad_storage_is_rejected_naming_the_field_without_quoting_credentials() {
        let s3 =
            "  s3: { endpoint: https://s3.example.com, bucket: my-bucket, region: us-east-1 }\n";
        let creds = format!(
            "  credentials: {{ access_key_id: {STORAGE_KEY_ID}, secret_access_key: {STORAGE_SECRET} }}\n"
        );
        let with_s3 = |s3: &str| with_storage(&format!("  s3: {s3}\n{creds}"));
        let with_creds = |c: &str| with_storage(&format!("{s3}  credentials: {c}\n"));
        for (text, want) in [
            (
                with_s3("{ endpoint: s3.example.com, bucket: my-bucket, region: us-east-1 }"),
                "storage.s3.endpoint: \"s3.example.com\" must start with https://",
            ),
            (
                with_s3(
                    "{ endpoint: https://s3.example.com/my-bucket, bucket: my-bucket, region: us-east-1 }",
                ),
                "storage.s3.endpoint: \"https://s3.example.com/my-bucket\" must be only scheme, host and port",
            ),
            (
                with_s3(
                    "{ endpoint: https://s3.example.com, bucket: My_Bucket, region: us-east-1 }",
                ),
                "storage.s3.bucket: \"My_Bucket\" is not an S3 bucket name",
            ),
            (
                with_s3("{ endpoint: https://s3.example.com, bucket: my-bucket, region: US East }"),
                "storage.s3.region: \"US East\" must be 1 to 64 bytes",
            ),
            (
                with_s3(
                    "{ endpoint: https://s3.example.com, bucket: my-bucket, region: us-east-1, prefix: ../x }",
                ),
                "storage.s3.prefix: \"../x\" must be",
            ),
            (
                with_s3("{ endpoint: https://s3.example.com, region: us-east-1 }"),
                "storage.s3: missing field `bucket`",
            ),
            (
                with_creds(&format!("{{ secret_access_key: {STORAGE_SECRET} }}")),
                "storage.credentials.access_key_id: is missing; give access_key_id_env",
            ),
            (
                with_creds(&format!(
                    "{{ access_key_id: {STORAGE_KEY_ID}, access_key_id_env: K, secret_access_key: {STORAGE_SECRET} }}"
                )),
                "storage.credentials.access_key_id: is given both as a value and as access_key_id_env",
            ),
            (
                with_creds(&format!(
                    "{{ access_key_id: {STORAGE_KEY_ID}, secret_access_key: [{STORAGE_SECRET}] }}"
                )),
                // The YAML reader names the shape itself, without the value.
                "storage.credentials.secret_access_key: invalid type: sequence, expected a string (not shown)",
            ),
            (
                with_creds(&format!(
                    "{{ access_key_id: {STORAGE_KEY_ID}, secret_access_key: \"{STORAGE_SECRET} x\" }}"
                )),
                "storage.credentials.secret_access_key: holds a space",
            ),
            (
                with_creds(&format!(
                    "{{ access_key_id: {STORAGE_KEY_ID}, secret_access_key: {} }}",
                    "x".repeat(300)
                )),
                "storage.credentials.secret_access_key: is 300 bytes; at most 256",
            ),
            (
                with_creds(&format!(
                    "{{ access_key_id: {STORAGE_KEY_ID}, secret_access_key_env: 1BAD }}"
                )),
                "storage.credentials.secret_access_key_env: \"1BAD\" is not an environment variable name",
            ),
            (
                with_creds(&format!(
                    "{{ access_key_id: {STORAGE_KEY_ID}, secret_access_key: {STORAGE_SECRET}, password: {STORAGE_SECRET} }}"
                )),
                "storage.credentials.password: unknown field `password`",
            ),
        ] {
            let err = JobSpec::parse_yaml(&text).expect_err(want);
            let msg = format!("{err} {err:?}");
            assert!(msg.starts_with(want), "want {want:?}…\n got {msg:?}");
            assert!(!msg.contains(STORAGE_SECRET), "{msg}");
            if !want.contains("unknown field") {
                assert!(!msg.contains(STORAGE_KEY_ID), "{msg}");
            }
        }
    }

    #[test]
    fn the_inputs_archive_is_set_at_submit_not_written_in_a_spec() {
        let text = edit(
            "outputs: true",
            &format!(
                "outputs: true\ninputs: [train.py]\ninputs_archive: {{ digest: \"{}\", bytes: 10 }}",
                "ab".repeat(32)
            ),
        );
        let err = JobSpec::parse_yaml(&text).expect_err("refused").to_string();
        assert!(err.starts_with("inputs_archive: is set by gpunet"), "{err}");
        let fine = edit("outputs: true", "outputs: true\ninputs: [train.py, data/]");
        let spec = JobSpec::parse_yaml(&fine).expect("inputs are a spec field");
        assert_eq!(spec.inputs, ["train.py", "data/"]);
    }

    #[test]
    fn the_inputs_blob_is_set_at_submit_for_a_job_with_its_own_bucket_only() {
        let blob = "cd".repeat(32);
        let text = format!(
            "{}inputs: [train.py]\ninputs_blob: \"{blob}\"\n",
            storage_values()
        );
        let err = JobSpec::parse_yaml(&text).expect_err("refused").to_string();
        assert_eq!(
            err,
            "inputs_blob: is set by gpunet when the job is submitted; remove it"
        );
        // A typo is not offered the internal field.
        let err = JobSpec::parse_yaml(&edit("outputs: true", "outputs: true\ninputs_blb: 1"))
            .expect_err("refused")
            .to_string();
        assert!(!err.contains("inputs_blob"), "{err}");

        // As submitted: with the archive, the bucket, the job's key and the salt.
        let mut spec = JobSpec::parse_yaml(&format!("{}inputs: [train.py]\n", storage_values()))
            .expect("parses");
        spec.inputs_archive = Some(InputsArchive {
            digest: Hash::of(b"archive"),
            bytes: 7,
        });
        spec.salt = Some(Salt([1; 32]));
        spec.checkpoint_key = Some(CheckpointKey::from_bytes([2; 32]));
        let without_blob = spec.manifest_bytes();
        assert!(
            !String::from_utf8_lossy(&without_blob).contains("inputs_blob"),
            "no blob, no field: the manifest is as before"
        );
        spec.inputs_blob = Some(Hash::of(b"sealed"));
        let back = JobSpec::from_manifest_bytes(&spec.manifest_bytes()).expect("a manifest");
        assert_eq!(back.inputs_blob, spec.inputs_blob);
        for (field, clear) in [
            (
                "inputs_archive",
                (|s: &mut JobSpec| s.inputs_archive = None) as fn(&mut JobSpec),
            ),
            ("storage", |s| s.storage = None),
            ("checkpoint_key", |s| s.checkpoint_key = None),
            ("salt", |s| s.salt = None),
        ] {
            let mut broken = spec.clone();
            clear(&mut broken);
            let err = JobSpec::from_manifest_bytes(&broken.manifest_bytes())
                .expect_err(field)
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "inputs_blob: is set but the manifest has no {field}"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn salt_and_output_key_are_set_at_submit_and_change_the_hash() {
        for field in ["salt", "output_key", "checkpoint_key"] {
            let text = edit(
                "outputs: true",
                &format!("outputs: true\n{field}: {}", "ab".repeat(32)),
            );
            let err = JobSpec::parse_yaml(&text).expect_err(field).to_string();
            assert!(
                err.starts_with(&format!("{field}: is set by gpunet")),
                "{err}"
            );
        }
        let spec = JobSpec::parse_yaml(FULL).expect("parses");
        let mut submitted = spec.clone();
        submitted.salt = Some(Salt([1; 32]));
        submitted.output_key = Some(EncryptionKey([2; 32]));
        let back = JobSpec::from_manifest_bytes(&submitted.manifest_bytes()).expect("parses");
        assert_eq!(back, submitted);
        assert_ne!(submitted.manifest_hash(), spec.manifest_hash());
        let mut resalted = submitted.clone();
        resalted.salt = Some(Salt([3; 32]));
        assert_ne!(resalted.manifest_hash(), submitted.manifest_hash());
    }

    #[test]
    fn the_checkpoint_key_round_trips_in_the_manifest_and_never_shows_in_debug() {
        let mut submitted = JobSpec::parse_yaml(FULL).expect("parses");
        submitted.salt = Some(Salt([1; 32]));
        let without = submitted.manifest_hash();
        let key = CheckpointKey::from_bytes([0x5a; 32]);
        submitted.checkpoint_key = Some(key.clone());
        let bytes = submitted.manifest_bytes();
        let back = JobSpec::from_manifest_bytes(&bytes).expect("parses");
        assert_eq!(back, submitted);
        assert_eq!(
            back.checkpoint_key.as_ref().map(|k| k.public()),
            Some(key.public())
        );
        // The hash commits to the key: another key is another manifest.
        assert_ne!(submitted.manifest_hash(), without);
        let mut other = submitted.clone();
        other.checkpoint_key = Some(CheckpointKey::from_bytes([0x5b; 32]));
        assert_ne!(other.manifest_hash(), submitted.manifest_hash());
        // Debug shows the public key only, never the secret's bytes.
        let secret_hex = "5a".repeat(32);
        for shown in [
            format!("{key:?}"),
            format!("{submitted:?}"),
            format!("{:?}", key.secret()),
        ] {
            assert!(!shown.to_lowercase().contains(&secret_hex), "{shown}");
        }
        assert!(format!("{submitted:?}").contains("CheckpointKey(public "));
        // Only the manifest carries it, as hex; a spec without one is byte-for-byte as before.
        assert!(String::from_utf8_lossy(&bytes).contains(&secret_hex));
        let mut plain = submitted.clone();
        plain.checkpoint_key = None;
        assert!(!String::from_utf8_lossy(&plain.manifest_bytes()).contains("checkpoint_key"));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_naming_the_first_bad_byte() {
        let mut bytes = FULL.as_bytes().to_vec();
        // FULL starts with a newline; `name: hé` puts the bad byte after a 2-byte character.
        let at = FULL.find("name: hello").expect("FULL names the job") + "name: hé".len();
        bytes.splice(
            at - "é".len()..at,
            "é".bytes().chain([0xff]).collect::<Vec<_>>(),
        );
        let err = JobSpec::parse_yaml_bytes(&bytes).expect_err("not UTF-8");
        assert_eq!(
            err,
            SpecError::NotUtf8 {
                what: "spec",
                offset: at,
                line: 3,
                column: 9,
                byte: 0xff,
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "spec: is not UTF-8 text: byte {at} (line 3, column 9) is 0xff; save the file \
                 as UTF-8"
            )
        );
        let manifest = [
            b"{\"version\":1,\n\"name\":\"".as_slice(),
            &[0xc3, 0x28],
            b"\"}",
        ]
        .concat();
        let err = JobSpec::from_manifest_bytes(&manifest).expect_err("not UTF-8");
        assert_eq!(
            err.to_string(),
            "manifest: is not UTF-8 text: byte 22 (line 2, column 9) is 0xc3; save the file as \
             UTF-8"
        );
        assert_eq!(
            JobSpec::parse_yaml_bytes(HELLO.as_bytes()),
            JobSpec::parse_yaml(HELLO)
        );
    }

    #[test]
    fn errors_inside_a_field_drop_the_yaml_location_but_keep_it_as_data() {
        let err = JobSpec::parse_yaml(&edit("memory: 512Mi", "memory: 512MB")).expect_err("bad");
        assert_eq!(
            err.to_string(),
            "resources.memory: \"512MB\" is not a size; use e.g. 512Mi"
        );
        assert_eq!(err.path(), "resources.memory");
        let SpecError::Malformed { line, .. } = err else {
            panic!("want Malformed, got {err:?}")
        };
        assert_eq!(line, Some(11));
    }

    #[test]
    fn bad_manifests_are_rejected_naming_the_field() {
        let spec = JobSpec::parse_yaml(FULL).expect("parses");
        let json = String::from_utf8(spec.manifest_bytes()).expect("json is utf-8");
        for (bytes, want) in [
            (
                json.replacen("\"version\":1", "\"version\":2", 1),
                "version: 2 is not supported",
            ),
            (
                json.replacen("\"outputs\":true", "\"outputs\":true,\"x\":1", 1),
                "x: unknown field `x`",
            ),
            (
                json.replacen("\"1024Mi\"", "\"1GB\"", 1),
                "resources.disk: \"1GB\" is not a size",
            ),
            (format!("{json} {{}}"), "manifest: trailing characters"),
            // Found by fuzz_job_specs: an unknown field with an empty name left the path empty.
            (
                json.replacen("\"name\":", "\"\":", 1),
                "manifest: unknown field ``",
            ),
            (
                "x".repeat(MAX_MANIFEST_BYTES + 1),
                "manifest: is 262145 bytes",
            ),
        ] {
            let got = JobSpec::from_manifest_bytes(bytes.as_bytes())
                .expect_err(want)
                .to_string();
            assert!(got.starts_with(want), "want {want:?}…\n got {got:?}");
        }
    }

    #[test]
    fn quantities_parse_by_their_text_in_integer_units() {
        for (s, millis) in [
            ("1", 1_000),
            ("0.5", 500),
            (".25", 250),
            ("1.5", 1_500),
            ("250m", 250),
        ] {
            assert_eq!(Millicores::parse(s), Ok(Millicores(millis)), "{s}");
        }
        for (s, mib) in [
            ("512Mi", 512),
            ("1Gi", 1_024),
            ("1.5Gi", 1_536),
            ("2Ti", 2 << 20),
            ("1Ki", 1),
            ("1M", 1),
            ("1G", 954),
            ("0.1K", 1),
            ("0", 0),
        ] {
            assert_eq!(Mebibytes::parse(s), Ok(Mebibytes(mib)), "{s}");
        }
        for s in [
            "",
            "Mi",
            "1",
            "1.Mi",
            "-1Mi",
            "1mi",
            "1MB",
            "1Pi",
            "1 Mi",
            "99999999999999999999Ti",
        ] {
            assert!(Mebibytes::parse(s).is_err(), "{s:?} should not be a size");
        }
        for (s, secs) in [
            ("90s", 90),
            ("30m", 1_800),
            ("1h30m", 5_400),
            ("2d", 172_800),
            ("1d1h1m1s", 90_061),
        ] {
            assert_eq!(Seconds::parse(s), Ok(Seconds(secs)), "{s}");
        }
        for s in ["", "1", "h", "1h1h", "1m1h", "1w", "1.5h", "-1s", "1hm"] {
            assert!(Seconds::parse(s).is_err(), "{s:?} should not be a duration");
        }
    }
}
