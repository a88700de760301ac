//! What the agent remembers of each lease it holds: kept in memory and written as a small JSON
//! file, `leases/<id>/record.json`, so logs and outputs can still be served (and a running
//! workload recovered) after an agent restart. Where the lease is in its life is its
//! [`Phase`] (see [`crate::lifecycle`]); what a tenant is shown is derived from it.

use std::path::{Path, PathBuf};

use gpunet_api::provider::{OutputListing, WorkloadState, WorkloadView};
use gpunet_protocol::jobspec::{Expose, HealthCheck};
use gpunet_protocol::{
    Address, EncryptionKey, Hash, LeaseId, OrderId, OrderTerms, Resources, UsageReport,
    WorkloadOutcome,
};
use gpunet_runtime::{ExitOutcome, WorkloadHandle};
use serde::{Deserialize, Serialize};

use crate::lifecycle::Phase;

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
    /// Where the lease is in its life here; changed only by [`crate::lifecycle::step`].
    pub phase: Phase,
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
    /// The manifest's `expose`: which ports a service publishes, and their protocols.
    #[serde(default)]
    pub exposed: Vec<Expose>,
    /// The manifest's `health`.
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// Where the published ports are reached (`http://127.0.0.1:49153`), while it runs.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The manifest's `services`' exposed ports, by service.
    #[serde(default)]
    pub service_exposed: std::collections::BTreeMap<String, Vec<Expose>>,
    /// Where the services' published ports are reached, while it runs.
    #[serde(default)]
    pub service_endpoints: Vec<gpunet_api::provider::ServiceEndpoint>,
    /// The last health probe's answer.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// When the agent recorded the lease's result (Unix ms); the retention sweep counts from it.
    #[serde(default)]
    pub ended_ms: Option<u64>,
    /// The key the job's checkpoints are sealed to (public: uploads need no secret), kept so
    /// an agent that restarts under a running workload goes on checkpointing it.
    #[serde(default)]
    pub checkpoint_key: Option<EncryptionKey>,
    /// The sequence number of the lease's next checkpoint upload.
    #[serde(default)]
    pub checkpoint_seq: u64,
    /// The job named its own store (its spec's `storage:`). Its credentials are never
    /// recorded: after an agent restart the lease keeps no more checkpoints there.
    #[serde(default)]
    pub job_store: bool,
    /// A run of a verified order: the digest behind its reported tag was revealed, or no
    /// reveal is owed any more (ADR 0010; see [`crate::reveals`]).
    #[serde(default)]
    pub reveal_settled: bool,
}

impl LeaseRecord {
    /// A lease as first tracked: what the chain says of it, in `phase`, nothing run yet.
    pub fn new(
        lease: LeaseId,
        order: OrderId,
        tenant: Address,
        resources: Resources,
        gpu_slots: Vec<u32>,
        phase: Phase,
    ) -> LeaseRecord {
        LeaseRecord {
            lease,
            order,
            tenant,
            resources,
            gpu_slots,
            phase,
            terms: None,
            handle: None,
            exit: None,
            outcome: None,
            usage: None,
            listing: None,
            output_key: None,
            detail: None,
            exposed: Vec::new(),
            health: None,
            endpoints: Vec::new(),
            service_exposed: Default::default(),
            service_endpoints: Vec::new(),
            healthy: None,
            ended_ms: None,
            checkpoint_key: None,
            checkpoint_seq: 0,
            job_store: false,
            reveal_settled: false,
        }
    }

    /// The output digest of the run: its listing's, or an empty listing's when it kept none
    /// (what every run of the same deterministic job gives).
    pub fn output_digest(&self) -> Hash {
        self.listing.as_ref().map_or_else(
            || gpunet_api::provider::OutputListing::digest_of(&[]),
            |l| l.digest,
        )
    }

    /// Whether this is a run of an order whose result is verified (it reports a result tag).
    pub fn verified(&self) -> bool {
        self.terms
            .as_ref()
            .is_some_and(|t| t.verification.is_verified())
    }

    /// Whether the lease holds its resources on this machine (see [`Phase::is_live`]).
    pub fn is_live(&self) -> bool {
        self.phase.is_live()
    }

    /// What the tenant is shown: the workload runs from its start until its result is known
    /// (paused or being stopped, it still holds its place); after that it `Exited` if it ran
    /// and `Failed` if it never did.
    pub fn state(&self) -> WorkloadState {
        match self.phase {
            Phase::AwaitingManifest => WorkloadState::AwaitingManifest,
            Phase::Starting => WorkloadState::Starting,
            Phase::Started
            | Phase::Running
            | Phase::Paused { .. }
            | Phase::Stopping { .. }
            | Phase::Concluding { .. } => WorkloadState::Running,
            Phase::Reporting { .. } | Phase::Releasing | Phase::Ended => {
                if self.exit.is_some() {
                    WorkloadState::Exited
                } else {
                    WorkloadState::Failed
                }
            }
        }
    }

    pub fn view(&self) -> WorkloadView {
        WorkloadView {
            lease: self.lease,
            state: self.state(),
            exit_code: self.exit.as_ref().and_then(|e| e.exit_code),
            reason: self.exit.as_ref().and_then(|e| {
                serde_json::to_value(e.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            }),
            usage: self.usage.clone(),
            detail: self.detail.clone(),
            endpoints: self.endpoints.clone(),
            service_endpoints: self.service_endpoints.clone(),
            healthy: self.healthy,
        }
    }
}

/// `data_dir/leases/<id>`: the workload's root dir and the record's home.
pub fn lease_dir(data_dir: &Path, lease: LeaseId) -> PathBuf {
    data_dir.join("leases").join(lease.to_string())
}

/// Writes the record atomically and durably (temporary file synced, renamed, directory
/// synced), 0600 in a 0700 lease dir: after a crash the record is the old one or the new one.
pub fn save(data_dir: &Path, record: &LeaseRecord) -> std::io::Result<()> {
    let dir = lease_dir(data_dir, record.lease);
    gpunet_files::create_private_dir_all(&dir)?;
    let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    gpunet_files::write_private_durable(&dir.join(RECORD_FILE), &bytes)
}

/// A lease record that exists but cannot be used. The agent refuses to start rather than
/// forget a lease (and a workload) it may still hold.
#[derive(Debug, thiserror::Error)]
#[error(
    "the lease record {path:?} cannot be read ({why}); the agent will not start without knowing \
     what that lease holds. If its lease is over, move the directory {dir:?} out of the data \
     directory; otherwise restore the file from a backup"
)]
pub struct RecordError {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub why: String,
}

/// Every record under `data_dir/leases` (a lease directory without a record holds none yet).
/// A record that is too large, unreadable or malformed is an error.
pub fn load_all(data_dir: &Path) -> Result<Vec<LeaseRecord>, RecordError> {
    let root = data_dir.join("leases");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let path = dir.join(RECORD_FILE);
        let fail = |why: String| RecordError {
            path: path.clone(),
            dir: dir.clone(),
            why,
        };
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_RECORD_BYTES => {
                return Err(fail(format!(
                    "{} bytes, over the {MAX_RECORD_BYTES}-byte limit",
                    m.len()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fail(e.to_string())),
        }
        let bytes = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let record = parse(&bytes).map_err(|e| fail(e.to_string()))?;
        out.push(record);
    }
    out.sort_by_key(|r| r.lease);
    Ok(out)
}

/// A record from its JSON, including one written before records had a `phase` (they had
/// `state`, `ended_on_chain` and `reported`), whose phase is then derived from those.
pub fn parse(bytes: &[u8]) -> Result<LeaseRecord, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(fields) = value.as_object_mut()
        && !fields.contains_key("phase")
    {
        let phase = legacy_phase(fields);
        fields.insert("phase".into(), serde_json::to_value(phase)?);
    }
    serde_json::from_value(value)
}

/// The phase of a record written before phases: what its old flags meant.
fn legacy_phase(fields: &serde_json::Map<String, serde_json::Value>) -> Phase {
    let flag = |name: &str| fields.get(name).and_then(|v| v.as_bool()).unwrap_or(false);
    let state = fields
        .get("state")
        .cloned()
        .and_then(|v| serde_json::from_value::<WorkloadState>(v).ok());
    let outcome = fields
        .get("outcome")
        .cloned()
        .and_then(|v| serde_json::from_value::<Option<WorkloadOutcome>>(v).ok())
        .flatten();
    let (ended_on_chain, reported) = (flag("ended_on_chain"), flag("reported"));
    match state {
        Some(WorkloadState::AwaitingManifest) if !ended_on_chain => Phase::AwaitingManifest,
        Some(WorkloadState::Starting) if !ended_on_chain => Phase::Starting,
        Some(WorkloadState::Running) if !ended_on_chain => Phase::Running,
        Some(WorkloadState::Starting | WorkloadState::Running) => Phase::Stopping {
            why: crate::lifecycle::StopCause::LeaseEnded,
            supervised: false,
        },
        Some(WorkloadState::Exited | WorkloadState::Failed) if !reported && !ended_on_chain => {
            match outcome {
                Some(outcome) => Phase::Reporting {
                    outcome,
                    detail: None,
                },
                None => Phase::Ended,
            }
        }
        _ => Phase::Ended,
    }
}

#[cfg(test)]
mod load_tests {
    use super::*;

    #[test]
    fn a_record_that_cannot_be_read_is_an_error_naming_it_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load_all(dir.path()).expect("no leases yet").is_empty());
        let lease = dir.path().join("leases").join("7");
        gpunet_files::create_private_dir_all(&lease).expect("lease dir");
        // A lease directory without a record yet holds nothing to forget.
        assert!(load_all(dir.path()).expect("an empty lease dir").is_empty());
        gpunet_files::write_private(&lease.join(RECORD_FILE), b"{ torn").expect("written");
        let err = load_all(dir.path()).expect_err("a torn record is refused");
        assert_eq!(err.path, lease.join(RECORD_FILE));
        let text = err.to_string();
        assert!(text.contains("move the directory"), "{text}");
    }
}

#[cfg(test)]
mod legacy_tests {
    use super::*;
    use crate::lifecycle::StopCause;

    /// A record as agents wrote it before phases: `state`, `ended_on_chain`, `reported`.
    fn legacy(state: &str, ended_on_chain: bool, reported: bool, outcome: Option<&str>) -> Vec<u8> {
        let record = LeaseRecord::new(
            LeaseId(7),
            OrderId(3),
            Address([1; 32]),
            Resources {
                cpu_millis: 1_000,
                memory_mib: 64,
                disk_mib: 64,
                gpu: Default::default(),
            },
            vec![],
            Phase::Ended,
        );
        let mut value = serde_json::to_value(&record).expect("serializes");
        let fields = value.as_object_mut().expect("an object");
        fields.remove("phase");
        fields.insert("state".into(), state.into());
        fields.insert("ended_on_chain".into(), ended_on_chain.into());
        fields.insert("reported".into(), reported.into());
        fields.insert("outcome".into(), outcome.into());
        serde_json::to_vec(&value).expect("serializes")
    }

    #[test]
    fn a_record_written_before_phases_loads_in_the_phase_its_flags_meant() {
        let reporting = Phase::Reporting {
            outcome: WorkloadOutcome::Succeeded,
            detail: None,
        };
        let orphan = Phase::Stopping {
            why: StopCause::LeaseEnded,
            supervised: false,
        };
        for (state, ended, reported, outcome, phase) in [
            (
                "awaiting_manifest",
                false,
                false,
                None,
                Phase::AwaitingManifest,
            ),
            ("awaiting_manifest", true, true, None, Phase::Ended),
            ("starting", false, false, None, Phase::Starting),
            ("running", false, false, None, Phase::Running),
            ("running", true, false, None, orphan),
            ("exited", false, false, Some("succeeded"), reporting),
            ("exited", false, true, Some("succeeded"), Phase::Ended),
            ("exited", true, false, Some("succeeded"), Phase::Ended),
            ("failed", false, false, None, Phase::Ended),
        ] {
            let record = parse(&legacy(state, ended, reported, outcome))
                .unwrap_or_else(|e| panic!("{state}: {e}"));
            assert_eq!(
                record.phase, phase,
                "{state} ended={ended} reported={reported}"
            );
        }
    }

    #[test]
    fn a_record_round_trips_with_its_phase() {
        let mut record = parse(&legacy("running", false, false, None)).expect("parses");
        record.phase = Phase::Stopping {
            why: StopCause::StartNotRecorded { why: "x".into() },
            supervised: true,
        };
        let bytes = serde_json::to_vec(&record).expect("serializes");
        assert_eq!(parse(&bytes).expect("parses"), record);
    }
}
