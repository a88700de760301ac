//! Types of the provider agent's API. Every request is signed by the lease's tenant
//! ([`crate::auth`]); the agent answers only the tenant of the lease named in the path.

use gpunet_protocol::{Hash, LeaseId, UsageReport};
use serde::{Deserialize, Serialize};

/// Largest manifest the agent accepts, in bytes: exactly what a valid job spec can produce.
pub const MAX_MANIFEST_BYTES: usize = gpunet_protocol::jobspec::MAX_MANIFEST_BYTES;
/// Largest sealed manifest the agent accepts, in bytes: a [`MAX_MANIFEST_BYTES`] manifest with
/// its sealing overhead.
pub const MAX_SEALED_MANIFEST_BYTES: usize = MAX_MANIFEST_BYTES
    + gpunet_protocol::sealed::SEALED_HEADER_BYTES
    + MAX_MANIFEST_BYTES.div_ceil(gpunet_protocol::sealed::SEALED_CHUNK_BYTES)
        * gpunet_protocol::sealed::SEALED_TAG_BYTES;
/// Largest log chunk one request returns, in plaintext bytes (sealed and hex, a little over
/// twice that goes on the wire).
pub const MAX_LOG_CHUNK_BYTES: usize = 1024 * 1024;

/// `POST /v1/leases/{id}/manifest` body: the manifest sealed to the provider's registered
/// encryption key for this lease (`gpunet_protocol::sealed`, purpose `Manifest`), hex. The agent
/// opens it, hashes the plaintext and compares with the order's `manifest_hash` on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDelivery {
    pub sealed_hex: String,
}

/// Most arguments of a command run with `job exec`.
pub const MAX_EXEC_ARGS: usize = 256;
/// Most bytes of a `job exec` command line, all arguments together.
pub const MAX_EXEC_ARGV_BYTES: usize = 64 * 1024;
/// Longest a `job exec` command may run before its output so far is returned, in seconds.
pub const MAX_EXEC_TIMEOUT_SECS: u32 = 600;

/// `POST /v1/leases/{id}/exec` body: an [`ExecRequest`] as JSON, sealed to the provider's
/// registered encryption key for this lease (purpose `Exec`), hex. The answer is an
/// [`ExecSealed`]: an [`ExecResult`] as JSON sealed to the tenant's output key (purpose
/// `ExecOutput`), hex. The command line and its output may hold secrets, and the agent's HTTP
/// is not encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSealed {
    pub sealed_hex: String,
}

/// A command to run inside a lease's running workload, as its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The program and its arguments (no shell: give `["sh", "-c", "..."]` for one).
    pub argv: Vec<String>,
    /// Seconds to wait for it, 1 to [`MAX_EXEC_TIMEOUT_SECS`].
    pub timeout_secs: u32,
    /// Which of the job's services to run it in (its first replica), or the job's own run by
    /// the job's name; absent: the job's own run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl ExecRequest {
    /// Checks the bounds; `Err` says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.argv.is_empty() || self.argv.len() > MAX_EXEC_ARGS {
            return Err(format!(
                "give 1 to {MAX_EXEC_ARGS} arguments, the program first (got {})",
                self.argv.len()
            ));
        }
        let bytes: usize = self.argv.iter().map(String::len).sum();
        if bytes > MAX_EXEC_ARGV_BYTES {
            return Err(format!(
                "the command line is {bytes} bytes; at most {MAX_EXEC_ARGV_BYTES}"
            ));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err("arguments cannot hold NUL bytes".into());
        }
        if self.argv[0].is_empty() {
            return Err("the program name is empty".into());
        }
        if let Some(service) = &self.service
            && !gpunet_protocol::jobspec::is_dns_label(service)
        {
            return Err(format!(
                "service {service:?} is not a service name (a-z 0-9 -); give one of the \
                 job's services"
            ));
        }
        if !(1..=MAX_EXEC_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs must be 1 to {MAX_EXEC_TIMEOUT_SECS} (got {})",
                self.timeout_secs
            ));
        }
        Ok(())
    }
}

/// What a `job exec` command gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Its exit code; `None` when it was still running at the timeout.
    pub exit_code: Option<i64>,
    /// Its standard output and error, hex (each at most 1 MiB kept).
    pub stdout_hex: String,
    pub stderr_hex: String,
    /// Output past the limit was cut.
    pub truncated: bool,
    /// The timeout passed first: the output is what it wrote until then, and it is left to
    /// end with the workload.
    pub timed_out: bool,
}

impl ExecResult {
    /// Its standard output and error as bytes; `Err` if the agent sent something not hex.
    pub fn streams(&self) -> Result<(Vec<u8>, Vec<u8>), hex::FromHexError> {
        Ok((
            hex::decode(&self.stdout_hex)?,
            hex::decode(&self.stderr_hex)?,
        ))
    }
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
    /// Where a service's exposed ports can be reached, e.g. `http://127.0.0.1:49153` (the
    /// scheme is the port's `proto`), sorted by container port; empty for batch jobs and once
    /// the workload has ended.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Where the exposed ports of the job's `services` are reached, by service, port and
    /// replica; empty for a job without services and once the workload has ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_endpoints: Vec<ServiceEndpoint>,
    /// The last answer of the service's health check (`health.http_path`): `None` when the
    /// spec has none or no probe has answered yet.
    #[serde(default)]
    pub healthy: Option<bool>,
}

/// The opening of a shell into a lease's workload (`GET /v1/leases/{id}/shell`, a signed
/// WebSocket upgrade; `gpunet job shell`): its first message, sealed by the tenant to the
/// provider (purpose `Shell`). Every later message either way is a frame of
/// `gpunet_protocol::stream` sealed under `key_hex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellOpen {
    /// The program and its arguments, e.g. `["/bin/sh"]`.
    pub argv: Vec<String>,
    /// Which of the job's services, as for `exec`; absent: the job's own run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A terminal of `[cols, rows]`; absent: plain pipes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<(u16, u16)>,
    /// The stream's key: 32 random bytes, hex, fresh for every shell.
    pub key_hex: String,
}

impl ShellOpen {
    /// Checks the bounds (as an exec's) and the key; `Err` says what to fix.
    pub fn validate(&self) -> Result<gpunet_protocol::stream::StreamKey, String> {
        ExecRequest {
            argv: self.argv.clone(),
            timeout_secs: 1,
            service: self.service.clone(),
        }
        .validate()?;
        let key: [u8; 32] = hex::decode(&self.key_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("key_hex must be 32 bytes in hex")?;
        Ok(gpunet_protocol::stream::StreamKey(key))
    }
}

/// One endpoint of one of a job's `services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    /// The service's name in the spec.
    pub service: String,
    /// Which replica's port this is; `None`: the service's name through the provider's proxy,
    /// which takes the replicas in turn.
    pub replica: Option<u32>,
    /// `http://…` or `tcp://…`, as for the job's own endpoints.
    pub url: String,
}

/// `GET /v1/leases/{id}/logs?offset=N&max=M`: one slice of the lease's combined log, sealed to
/// the manifest's `output_key` (`gpunet_protocol::sealed`, purpose `Logs`, this lease) like
/// output files, so a proxy or anyone on the wire learns only its size and offsets. The fields
/// outside the box say where the slice lies; the box holds a [`LogSlice`] that says so again,
/// authenticated, and the tenant believes only that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedLogChunk {
    /// Where the slice starts in the log, in plaintext bytes: the `offset` asked for.
    pub offset: u64,
    /// Pass as `offset` to continue.
    pub next_offset: u64,
    /// No more bytes will ever come.
    pub finished: bool,
    /// The sealed [`LogSlice::to_bytes`], hex.
    pub sealed_hex: String,
}

/// What a [`SealedLogChunk`] holds once opened: the slice's place in the log, whether the log
/// is finished, and the raw bytes. Sealing the offset with the bytes stops a proxy from
/// answering one request with a slice from elsewhere in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSlice {
    pub offset: u64,
    pub finished: bool,
    pub data: Vec<u8>,
}

impl LogSlice {
    /// Bytes before the data: the offset (u64 big-endian) and the finished flag.
    pub const HEADER_BYTES: usize = 9;

    /// Where the next slice starts.
    pub fn next_offset(&self) -> u64 {
        self.offset + self.data.len() as u64
    }

    /// `offset (u64 BE) ‖ finished (0 or 1) ‖ data`, the plaintext that is sealed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER_BYTES + self.data.len());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.push(u8::from(self.finished));
        out.extend_from_slice(&self.data);
        out
    }

    /// The inverse of [`LogSlice::to_bytes`]; `None` for bytes too short or a flag other
    /// than 0 or 1.
    pub fn from_bytes(bytes: &[u8]) -> Option<LogSlice> {
        let (head, data) = bytes.split_at_checked(Self::HEADER_BYTES)?;
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&head[..8]);
        let finished = match head[8] {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(LogSlice {
            offset: u64::from_be_bytes(offset),
            finished,
            data: data.to_vec(),
        })
    }
}

/// A slice of the log as the tenant reads it, once opened and checked
/// (`ProviderClient::logs`).
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
    /// BLAKE3 of the plaintext contents. `GET /v1/leases/{id}/outputs/{digest}` answers them
    /// sealed to the manifest's `output_key` (purpose `Output`); check the digest after opening.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_slice_survives_its_byte_form_and_bad_forms_are_refused() {
        for slice in [
            LogSlice {
                offset: 0,
                finished: false,
                data: Vec::new(),
            },
            LogSlice {
                offset: u64::MAX - 3,
                finished: true,
                data: b"epoch 1\n".to_vec(),
            },
        ] {
            assert_eq!(LogSlice::from_bytes(&slice.to_bytes()), Some(slice.clone()));
        }
        let slice = LogSlice {
            offset: 5,
            finished: false,
            data: b"abc".to_vec(),
        };
        assert_eq!(slice.next_offset(), 8);
        let mut bad_flag = slice.to_bytes();
        bad_flag[8] = 2;
        assert_eq!(LogSlice::from_bytes(&bad_flag), None);
        assert_eq!(LogSlice::from_bytes(&[0; 8]), None);
    }
}
