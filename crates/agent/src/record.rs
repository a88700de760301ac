//! What the agent remembers of each lease it holds: kept in memory and written as a small JSON
//! file, `leases/<id>/record.json`, so logs and outputs can still be served (and a running
//! workload recovered) after an agent restart.

use std::path::{Path, PathBuf};

use gpunet_api::provider::{OutputListing, WorkloadState, WorkloadView};
use gpunet_protocol::jobspec::{Expose, HealthCheck};
use gpunet_protocol::{
    Address, EncryptionKey, LeaseId, OrderId, OrderTerms, Resources, UsageReport, WorkloadOutcome,
};
use gpunet_runtime::{ExitOutcome, WorkloadHandle};
use serde::{Deserialize, Serialize};

/// Largest record file read back, in bytes (a listing of many files is the big part).
pub const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;
const RECORD_FILE: &str = "record.json";

/// One lease as this agent knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub lease: LeaseId,
    pub order: OrderId,
    pub tenant: Address,
    pub resources: Resources,
    pub gpu_slots: Vec<u32>,
    pub state: WorkloadState,
    /// The order's terms, once fetched (for the manifest hash and the duration).
    pub terms: Option<OrderTerms>,
    pub handle: Option<WorkloadHandle>,
    pub exit: Option<ExitOutcome>,
    pub outcome: Option<WorkloadOutcome>,
    pub usage: Option<UsageReport>,
    pub listing: Option<OutputListing>,
    /// The manifest's `output_key`: output files are served sealed to it, and only to it.
    #[serde(default)]
    pub output_key: Option<EncryptionKey>,
    pub detail: Option<String>,
    /// The chain has ended the lease (cancelled, timed out, or our own result applied).
    pub ended_on_chain: bool,
    /// Our `CompleteLease` was applied, or is no longer needed.
    pub reported: bool,
    /// The manifest's `expose`: which ports a service publishes, and their protocols.
    #[serde(default)]
    pub exposed: Vec<Expose>,
    /// The manifest's `health`.
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// Where the published ports are reached (`http://127.0.0.1:49153`), while it runs.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The last health probe's answer.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// When the agent recorded the lease's result (Unix ms); the retention sweep counts from it.
    #[serde(default)]
    pub ended_ms: Option<u64>,
}

impl LeaseRecord {
    /// Whether the lease holds its resources on this machine.
    pub fn is_live(&self) -> bool {
        !self.ended_on_chain
            && matches!(
                self.state,
                WorkloadState::AwaitingManifest | WorkloadState::Starting | WorkloadState::Running
            )
    }

    pub fn view(&self) -> WorkloadView {
        WorkloadView {
            lease: self.lease,
            state: self.state,
            exit_code: self.exit.as_ref().and_then(|e| e.exit_code),
            reason: self.exit.as_ref().and_then(|e| {
                serde_json::to_value(e.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            }),
            usage: self.usage.clone(),
            detail: self.detail.clone(),
            endpoints: self.endpoints.clone(),
            healthy: self.healthy,
        }
    }
}

/// `data_dir/leases/<id>`: the workload's root dir and the record's home.
pub fn lease_dir(data_dir: &Path, lease: LeaseId) -> PathBuf {
    data_dir.join("leases").join(lease.to_string())
}

/// Writes the record atomically (temporary file, then rename), 0600 in a 0700 lease dir.
pub fn save(data_dir: &Path, record: &LeaseRecord) -> std::io::Result<()> {
    let dir = lease_dir(data_dir, record.lease);
    gpunet_files::create_private_dir_all(&dir)?;
    let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    gpunet_files::write_private(&dir.join(RECORD_FILE), &bytes)
}

/// Every record under `data_dir/leases`. Unreadable ones are logged and skipped.
pub fn load_all(data_dir: &Path) -> Vec<LeaseRecord> {
    let root = data_dir.join("leases");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join(RECORD_FILE);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_RECORD_BYTES => {
                tracing::warn!(?path, "lease record is over the size limit; skipped");
                continue;
            }
            Ok(_) => {}
            Err(_) => continue,
        }
        match std::fs::read(&path).map(|b| serde_json::from_slice::<LeaseRecord>(&b)) {
            Ok(Ok(record)) => out.push(record),
            Ok(Err(error)) => tracing::warn!(?path, %error, "unreadable lease record; skipped"),
            Err(error) => tracing::warn!(?path, %error, "cannot read lease record; skipped"),
        }
    }
    out.sort_by_key(|r| r.lease);
    out
}
