//! Types of the provider agent's API. Every request is signed by the lease's tenant
//! ([`crate::auth`]); the agent answers only the tenant of the lease named in the path.

use gpunet_protocol::{Hash, LeaseId, UsageReport};
use serde::{Deserialize, Serialize};

/// Largest manifest the agent accepts, in bytes: exactly what a valid job spec can produce.
pub const MAX_MANIFEST_BYTES: usize = gpunet_protocol::jobspec::MAX_MANIFEST_BYTES;
/// Largest log chunk one request returns, in bytes.
pub const MAX_LOG_CHUNK_BYTES: usize = 1024 * 1024;

/// `POST /v1/leases/{id}/manifest` body: the manifest bytes, hex. The agent hashes them and
/// compares with the order's `manifest_hash` on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDelivery {
    pub manifest_hex: String,
}

/// What the agent knows of a lease's workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadState {
    /// Lease seen, manifest not yet received.
    AwaitingManifest,
    Starting,
    Running,
    Exited,
    /// Could not be started (bad manifest, start failure).
    Failed,
}

/// `GET /v1/leases/{id}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadView {
    pub lease: LeaseId,
    pub state: WorkloadState,
    pub exit_code: Option<i32>,
    /// `completed`, `failed`, `out_of_memory`, ... once exited.
    pub reason: Option<String>,
    pub usage: Option<UsageReport>,
    pub detail: Option<String>,
}

/// `GET /v1/leases/{id}/logs?offset=N&max=M`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunkView {
    /// The bytes, lossily decoded as UTF-8.
    pub text: String,
    /// Pass as `offset` to continue.
    pub next_offset: u64,
    /// No more bytes will ever come.
    pub finished: bool,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative path under the outputs directory, `/`-separated.
    pub path: String,
    pub size: u64,
    /// BLAKE3 of the contents: fetch with `GET /v1/leases/{id}/outputs/{digest}`.
    pub digest: Hash,
}

/// `GET /v1/leases/{id}/outputs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputListing {
    pub lease: LeaseId,
    /// Sorted by path.
    pub files: Vec<OutputFile>,
    /// BLAKE3 of the listing's canonical form: the `output_digest` the provider reports on chain.
    pub digest: Hash,
}

impl OutputListing {
    /// The canonical digest of a sorted file list: `path \0 size \0 digest \n` per file.
    pub fn digest_of(files: &[OutputFile]) -> Hash {
        let mut h = blake3::Hasher::new();
        for f in files {
            h.update(f.path.as_bytes());
            h.update(b"\0");
            h.update(f.size.to_string().as_bytes());
            h.update(b"\0");
            h.update(f.digest.to_hex().as_bytes());
            h.update(b"\n");
        }
        Hash(*h.finalize().as_bytes())
    }
}
