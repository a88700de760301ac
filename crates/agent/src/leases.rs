//! The lease lifecycle's runner: the I/O around [`crate::lifecycle`]. A lease is tracked when
//! the chain creates it, waits for its tenant's manifest (at most [`MANIFEST_TIMEOUT`]; it
//! arrives sealed to this provider's encryption key and is opened here), starts the workload,
//! reports `StartLease`, waits for the end, keeps the last checkpoint and the outputs, and
//! reports `CompleteLease` — or, when the provider leaves, stops the workload and releases the
//! lease.
//!
//! What happens next is never decided here: every event (the chain's, the tenant's, the
//! driver's, a timer's) is fed to [`crate::lifecycle::step`] as an [`Input`] under the records'
//! lock, the new [`Phase`] is stored in the lease's record (in memory and, durably, in
//! `leases/<id>/record.json`) before anything is done, and the [`Effect`]s that come back are
//! carried out by small functions here. So a request that races another sees a clear phase,
//! and an agent restart picks up where it was.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gpunet_api::node::{LeaseState, LeaseView};
use gpunet_api::provider::{
    LogSlice, MAX_LOG_CHUNK_BYTES, MAX_SEALED_MANIFEST_BYTES, WorkloadState, WorkloadView,
};
use gpunet_client::ClientError;
use gpunet_protocol::jobspec::{ExposeProto, JobSpec, Network};
use gpunet_protocol::tx::MAX_RESULT_DETAIL_BYTES;
use gpunet_protocol::{
    Address, Capabilities, EncryptionKey, EncryptionSecret, Hash, LeaseId, LeaseResult, Msg,
    OrderTerms, Purpose, Resources, Runtime, SealContext, SealError, UsageReport,
};
use gpunet_runtime::{
    Companion, DEFAULT_LOG_LIMIT_BYTES, Driver, DriverError, ExitOutcome, ExitReason, ExposedPort,
    GpuSampler, GpuUsage, NetworkMode, PortProto, RecoverState, Usage, WorkloadHandle,
    WorkloadSpec,
};
use tokio::task::JoinSet;

use crate::chain::{Chain, ChainError};
use crate::checkpoints::{
    CHECKPOINT_INTERVAL, CheckpointStore, LeaseCheckpoints, MAX_CHECKPOINT_BYTES,
};
use crate::drivers::Drivers;
use crate::health::{HEALTH_PROBE_INTERVAL, HEALTH_PROBE_TIMEOUT, probe};
use crate::lifecycle::{self, Ctx, Effect, Input, Phase, Recovery};
use crate::outputs::{blob_path, collect_outputs};
use crate::record::{self, LeaseRecord, lease_dir};

/// How long a new lease waits for a valid manifest before it is given up.
pub const MANIFEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a workload may take to end after it is asked to stop, before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a leaving provider's workloads get to end after SIGTERM (to write a last
/// checkpoint), before they are killed: `gpunet provider start --exit-grace`.
pub const DEFAULT_EXIT_GRACE: Duration = Duration::from_secs(30);
/// How often the GPUs of a running GPU lease are sampled for its usage report.
pub const GPU_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Most attempts at reporting a lease's result when the node cannot be reached.
pub const MAX_REPORT_ATTEMPTS: u32 = 6;
/// Wait before the first retry of a report; doubled for each next one.
const REPORT_RETRY_BASE: Duration = Duration::from_secs(2);
/// Cap on the log bytes kept per workload: 100 MiB.
pub const LOG_LIMIT_BYTES: u64 = DEFAULT_LOG_LIMIT_BYTES;
/// Where a driver keeps a workload's combined log, under its root dir (the `WorkloadSpec`
/// contract); read directly once the workload is gone.
const LOG_FILE: &str = "logs/combined.log";

/// How long ended leases' directories (record, logs, outputs) are kept, so a tenant can still
/// read logs after the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// An ended lease's directory is kept at least this long after its result: default 7 days.
    pub keep_ended_for: Duration,
    /// ...unless its logs hold more than this many bytes, when the next sweep removes it:
    /// default 100 MiB. Outputs do not count: they live on in the blob store and the lease
    /// directory's copy goes with the directory.
    pub max_lease_dir_bytes: u64,
    /// How often the agent sweeps: default every hour.
    pub sweep_every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_ended_for: Duration::from_secs(7 * 86_400),
            max_lease_dir_bytes: 100 * 1024 * 1024,
            sweep_every: Duration::from_secs(60 * 60),
        }
    }
}

/// What the lease side of the agent is configured with.
#[derive(Debug, Clone)]
pub struct LeasesConfig {
    /// This provider's address.
    pub provider: Address,
    /// Absolute: workloads live under `data_dir/leases/<id>`, outputs under `data_dir/blobs`.
    pub data_dir: PathBuf,
    /// The GPU uuid behind each capacity slot.
    pub gpu_uuids: Vec<String>,
    pub manifest_timeout: Duration,
    /// Opens manifests sealed to this provider's registered encryption key.
    pub encryption_secret: EncryptionSecret,
    pub retention: Retention,
    /// Whose jobs runtimes without isolation take (see [`crate::policy`]).
    pub policy: crate::policy::TenantPolicy,
    /// Where jobs' checkpoints go and come from (see [`crate::checkpoints`]); `None`: no
    /// checkpoints are kept or restored. A job that names its own store (its spec's
    /// `storage:`) uses that one instead ([`crate::tenant_store`]).
    pub checkpoints: Option<crate::checkpoints::CheckpointStore>,
    /// The most a container is granted here (the profile's `capabilities`): a manifest asking
    /// for more is refused, whatever its order's terms said.
    pub capabilities: Capabilities,
    /// How long a workload gets between SIGTERM and SIGKILL when this provider leaves
    /// ([`DEFAULT_EXIT_GRACE`] by default).
    pub exit_grace: Duration,
    /// The chain's id: order ids are per chain, so the refs of a job's blobs name it.
    pub chain_id: String,
    /// Whether a job's own store may be reached over `http://` or at a private address
    /// (`gpunet provider start --allow-private-blob-endpoints`): for test networks only; off,
    /// a tenant cannot point this agent at its operator's network.
    pub allow_private_blob_endpoints: bool,
    /// Where services are reached from outside (see [`crate::ingress`]); `None`: on this
    /// machine's loopback only.
    pub ingress: Option<crate::ingress::IngressConfig>,
}

/// Why a lease request could not be served. The server maps each to a status and an
/// [`gpunet_api::ErrorBody`] name.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {lease} is not on chain")]
    NotFound { lease: LeaseId },
    #[error("lease {lease} is not held by this provider")]
    NotOurs { lease: LeaseId },
    #[error("this provider has no record of lease {lease}")]
    NoRecord { lease: LeaseId },
    #[error("cannot reach the chain: {source}")]
    Chain {
        #[source]
        source: ChainError,
    },
    #[error("the sealed manifest is {bytes} bytes; the limit is {max} bytes")]
    ManifestTooLarge { bytes: usize, max: usize },
    #[error(
        "the manifest cannot be opened with this provider's key: {source}; seal it to the \
         encryption_key this provider registered on chain, for this lease"
    )]
    ManifestUnreadable {
        #[source]
        source: SealError,
    },
    #[error(
        "the manifest's BLAKE3 is {got}, but the order commits to {expected}; send the manifest the order was created with"
    )]
    HashMismatch { expected: Hash, got: Hash },
    #[error("the sealed inputs are {bytes} bytes; the limit is {max} bytes")]
    InputsTooLarge { bytes: usize, max: usize },
    #[error(
        "the inputs cannot be opened with this provider's key: {source}; seal them to the \
         encryption_key this provider registered on chain, for this lease"
    )]
    InputsUnreadable {
        #[source]
        source: SealError,
    },
    #[error(
        "the manifest names inputs, but none were delivered; send them first (PUT /v1/leases/{lease}/inputs), then the manifest again"
    )]
    InputsMissing { lease: LeaseId },
    #[error(
        "the inputs delivered ({got}, {got_bytes} bytes) are not those the manifest commits to \
         ({expected}, {expected_bytes} bytes); they were dropped: send the inputs the order was made for, then the manifest again"
    )]
    InputsMismatch {
        expected: Hash,
        expected_bytes: u64,
        got: Hash,
        got_bytes: u64,
    },
    #[error("the job's inputs cannot be taken from its own bucket: {source}")]
    InputsFromBucket {
        #[source]
        source: crate::tenant_store::InputsBlobError,
    },
    #[error("cannot keep the inputs: {source}")]
    InputsStore {
        #[source]
        source: std::io::Error,
    },
    #[error("the manifest was already received; the lease is {state:?}")]
    AlreadyReceived { state: WorkloadState },
    #[error("lease {lease} has ended")]
    Ended { lease: LeaseId },
    #[error("the manifest matches the order but cannot be run, so the lease is rejected: {why}")]
    ManifestInvalid { why: String },
    #[error("the workload could not be started: {why}")]
    StartFailed { why: String },
    #[error("the job's image cannot be had, so the lease ends and its deposit is returned: {why}")]
    ImageUnavailable { why: String },
    #[error("the {driver} driver that ran this workload is not usable by this agent now")]
    NoDriver { driver: String },
    #[error("cannot read the lease's log: {source}")]
    Log {
        #[source]
        source: std::io::Error,
    },
    #[error("the driver failed: {source}")]
    Driver {
        #[source]
        source: DriverError,
    },
}

/// The leases this provider holds, and what runs for them.
pub struct Leases {
    config: LeasesConfig,
    chain: Arc<dyn Chain>,
    drivers: Drivers,
    records: Mutex<BTreeMap<LeaseId, LeaseRecord>>,
    tasks: Mutex<JoinSet<()>>,
    /// Reads GPU utilisation and memory by UUID (NVML); samples nothing without it.
    gpus: Arc<GpuSampler>,
    /// Running leases whose jobs keep checkpoints (held in memory only: the job's key is).
    checkpointing: Mutex<BTreeMap<LeaseId, Arc<LeaseCheckpoints>>>,
    /// The stores jobs named (their spec's `storage:`), by lease, from the manifest until the
    /// outputs are kept: in memory only, because they hold the tenant's credentials.
    job_stores: Mutex<BTreeMap<LeaseId, CheckpointStore>>,
    /// The provider is leaving the network: every lease is given back, none is taken.
    leaving: AtomicBool,
    /// The ingress proxy's routes to running services' `http` ports (served only when the
    /// ingress has a domain).
    routes: crate::ingress::Routes,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// A lease book with the records persisted under `config.data_dir` loaded back. Call
    /// [`Leases::resume`] to pick up their work. A manifest runs on the driver of its runtime;
    /// the runtimes offered are those of `drivers`.
    /// A record that cannot be read is an error: the agent must not forget a lease it holds.
    pub fn new(
        config: LeasesConfig,
        chain: Arc<dyn Chain>,
        drivers: Drivers,
    ) -> Result<Arc<Self>, record::RecordError> {
        let records = record::load_all(&config.data_dir)?
            .into_iter()
            .map(|r| (r.lease, r))
            .collect();
        Ok(Arc::new(Leases {
            config,
            chain,
            drivers,
            records: Mutex::new(records),
            tasks: Mutex::new(JoinSet::new()),
            gpus: Arc::new(GpuSampler::new()),
            checkpointing: Mutex::new(BTreeMap::new()),
            job_stores: Mutex::new(BTreeMap::new()),
            leaving: AtomicBool::new(false),
            routes: crate::ingress::Routes::new(),
        }))
    }

    pub fn provider(&self) -> Address {
        self.config.provider
    }

    /// The ingress proxy's routing table (see [`crate::ingress`]).
    pub fn routes(&self) -> &crate::ingress::Routes {
        &self.routes
    }

    /// The runtimes this agent runs, sorted.
    pub fn runtimes(&self) -> Vec<Runtime> {
        self.drivers.runtimes()
    }

    fn driver_for(&self, handle: &WorkloadHandle) -> Result<Arc<dyn Driver>, LeaseError> {
        self.drivers
            .for_handle(handle)
            .cloned()
            .ok_or_else(|| LeaseError::NoDriver {
                driver: handle.driver.clone(),
            })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<LeaseId, LeaseRecord>> {
        // Every update is a whole-record replacement or a field store, so a poisoned lock still
        // holds consistent records.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap finished tasks so the set stays as small as what is running.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Stops every background task (timers, supervisors, reports). Workloads keep running;
    /// a restarted agent recovers them from their records.
    pub fn abort_all(&self) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .abort_all();
    }

    /// A copy of the record of `lease`.
    pub fn get(&self, lease: LeaseId) -> Option<LeaseRecord> {
        self.lock().get(&lease).cloned()
    }

    /// Marks the reveal of a verified run settled: revealed, or no longer owed.
    pub fn settle_reveal(&self, lease: LeaseId) {
        self.update(lease, |r| r.reveal_settled = true);
    }

    /// A copy of every record.
    pub fn records(&self) -> Vec<LeaseRecord> {
        self.lock().values().cloned().collect()
    }

    /// Every lease id this agent has a record of.
    pub fn ids(&self) -> Vec<LeaseId> {
        self.lock().keys().copied().collect()
    }

    /// What live leases hold: their resources and GPU slots.
    pub fn held(&self) -> Vec<(Resources, Vec<u32>)> {
        self.lock()
            .values()
            .filter(|r| r.is_live())
            .map(|r| (r.resources.clone(), r.gpu_slots.clone()))
            .collect()
    }

    /// Changes the record of `lease` and persists it; `None` if there is no record. For data
    /// only: the phase changes through [`Leases::advance`].
    fn update<T>(&self, lease: LeaseId, f: impl FnOnce(&mut LeaseRecord) -> T) -> Option<T> {
        let mut records = self.lock();
        let record = records.get_mut(&lease)?;
        let out = f(record);
        self.persist(record);
        Some(out)
    }

    fn persist(&self, record: &LeaseRecord) {
        if let Err(error) = record::save(&self.config.data_dir, record) {
            tracing::warn!(lease = %record.lease, %error, "could not persist the lease record");
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            exit_grace: self.config.exit_grace,
            stop_grace: STOP_GRACE,
        }
    }

    /// Feeds `input` to the lifecycle of `lease` (see [`crate::lifecycle::step`]): under the
    /// records' lock, steps its phase, writes down what the effects record (a note, a result)
    /// and persists the record — then returns the effects left to carry out, in order, for
    /// [`Leases::perform`]. `None` if there is no record.
    fn advance(&self, lease: LeaseId, input: Input) -> Option<Vec<Effect>> {
        self.advance_with(lease, input, |_| {})
    }

    /// [`Leases::advance`], with the facts the input brings (a workload handle, an exit)
    /// stored in the record when the phase takes the input.
    fn advance_with(
        &self,
        lease: LeaseId,
        input: Input,
        facts: impl FnOnce(&mut LeaseRecord),
    ) -> Option<Vec<Effect>> {
        let mut records = self.lock();
        let record = records.get_mut(&lease)?;
        let (next, effects) = lifecycle::step(&record.phase, &input, &self.ctx());
        if next == record.phase && effects.is_empty() {
            tracing::debug!(%lease, phase = ?record.phase, ?input, "nothing to do");
            return Some(effects);
        }
        facts(record);
        record.phase = next;
        let persist = note(record, &effects);
        if persist {
            self.persist(record);
        }
        Some(
            effects
                .into_iter()
                .filter(|e| !matches!(e, Effect::Persist | Effect::Note { .. }))
                .collect(),
        )
    }

    /// Carries out `effects` of `lease` in a task of its own.
    fn run_effects(self: &Arc<Self>, lease: LeaseId, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let this = Arc::clone(self);
        self.spawn(async move { this.perform(lease, effects).await });
    }

    /// Carries out `effects` of `lease` in order, and those of the inputs they lead to.
    /// Background work (supervising, reporting, timers) is spawned; the rest is awaited, so
    /// the last checkpoint is kept before the outputs, and both before the lease is settled.
    async fn perform(self: &Arc<Self>, lease: LeaseId, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            queue.extend(self.carry_out(lease, effect).await);
        }
    }

    async fn carry_out(self: &Arc<Self>, lease: LeaseId, effect: Effect) -> Vec<Effect> {
        match effect {
            // Done under the lock by `advance`; starting is the manifest request's own work.
            Effect::Persist | Effect::Note { .. } | Effect::StartWorkload => {}
            Effect::ArmManifestTimer => self.spawn_manifest_timer(lease),
            Effect::SubmitStart => self.spawn_submit_start(lease),
            Effect::PublishEndpoints => self.publish_endpoints(lease).await,
            Effect::StartCheckpointer => self.spawn_checkpointer(lease),
            Effect::Supervise => self.spawn_supervisor(lease),
            Effect::StopWorkload { grace } => self.spawn_stop(lease, grace),
            Effect::Pause => self.spawn_freeze(lease, true),
            Effect::Resume => self.spawn_freeze(lease, false),
            Effect::UploadCheckpoint => {
                let job = self.lock_checkpointing().get(&lease).cloned();
                if let Some(job) = job
                    && let Some(next) = upload_checkpoint(&job).await
                {
                    self.update(lease, |r| r.checkpoint_seq = next);
                }
            }
            Effect::KeepOutputs => return self.keep_outputs(lease).await,
            Effect::Report { .. } => self.spawn_report(lease),
            Effect::ReleaseLease => self.spawn_release(lease),
        }
        Vec::new()
    }

    /// The running workload's driver and handle, if the record names one.
    fn workload_of(&self, lease: LeaseId) -> Option<(Arc<dyn Driver>, WorkloadHandle)> {
        let handle = self.get(lease)?.handle?;
        match self.driver_for(&handle) {
            Ok(driver) => Some((driver, handle)),
            Err(error) => {
                tracing::warn!(%lease, %error, "cannot reach the workload's driver");
                None
            }
        }
    }

    /// Starts tracking a lease the chain assigned to this provider: a pending one waits for
    /// its manifest (or, while this provider leaves, is given back at once); a running one
    /// this agent never saw is reported as lost. Idempotent; returns whether the lease was new.
    pub fn track(self: &Arc<Self>, view: &LeaseView) -> bool {
        if view.provider != self.config.provider {
            return false;
        }
        let running_on_chain = match view.state {
            LeaseState::Pending => false,
            LeaseState::Running | LeaseState::Paused => true,
            LeaseState::Ended => return false,
        };
        let (phase, effects) = Phase::tracked(running_on_chain, self.is_leaving());
        let mut record = LeaseRecord::new(
            view.id,
            view.order,
            view.tenant,
            view.resources.clone(),
            view.gpu_slots.clone(),
            phase,
        );
        {
            let mut records = self.lock();
            if records.contains_key(&view.id) {
                return false;
            }
            note(&mut record, &effects);
            self.persist(&record);
            records.insert(view.id, record);
        }
        if running_on_chain {
            tracing::warn!(lease = %view.id, "the chain says lease is running, but this agent has no workload for it");
        } else if self.is_leaving() {
            tracing::info!(lease = %view.id, order = %view.order, "lease created while this provider leaves; releasing it");
        } else {
            tracing::info!(lease = %view.id, order = %view.order, tenant = %view.tenant, "lease created; waiting for the manifest");
        }
        self.run_effects(view.id, effects);
        true
    }

    fn spawn_manifest_timer(self: &Arc<Self>, lease: LeaseId) {
        let this = Arc::clone(self);
        let timeout = self.config.manifest_timeout;
        self.spawn(async move {
            tokio::time::sleep(timeout).await;
            let after_secs = timeout.as_secs();
            let effects = this
                .advance(lease, Input::ManifestTimeout { after_secs })
                .unwrap_or_default();
            if !effects.is_empty() {
                tracing::warn!(%lease, ?timeout, "no valid manifest arrived in time; rejecting the lease");
                this.perform(lease, effects).await;
            }
        });
    }

    /// The chain ended `lease` (cancelled, start timeout, max duration, out of escrow, lost
    /// while this agent was away, or our own result): stop its workload if it still runs, and
    /// claim nothing more for it.
    pub fn on_lease_ended(self: &Arc<Self>, lease: LeaseId) {
        let Some(effects) = self.advance(lease, Input::LeaseEndedOnChain) else {
            return;
        };
        if effects
            .iter()
            .any(|e| matches!(e, Effect::StopWorkload { .. }))
        {
            tracing::info!(%lease, "lease ended on chain; stopping its workload");
        }
        self.run_effects(lease, effects);
    }

    /// The chain paused `lease` (its escrow ran out): freeze the workload — no CPU, its memory
    /// and files kept — until [`Leases::on_lease_resumed`]. A driver that cannot freeze it here
    /// stops it instead (the lease then ends with the workload's exit).
    pub fn on_lease_paused(self: &Arc<Self>, lease: LeaseId) {
        if let Some(effects) = self.advance(lease, Input::LeasePausedOnChain) {
            self.run_effects(lease, effects);
        }
    }

    /// A top-up resumed `lease`: thaw the workload where it stopped.
    pub fn on_lease_resumed(self: &Arc<Self>, lease: LeaseId) {
        if let Some(effects) = self.advance(lease, Input::LeaseResumedOnChain) {
            self.run_effects(lease, effects);
        }
    }

    /// This provider is leaving the network (its `AnnounceExit` is on chain): every workload
    /// gets SIGTERM and the exit grace to end, keeps its last checkpoint, and its lease is
    /// released; leases waiting for a manifest are released at once, and new ones too.
    /// Idempotent: called again, it changes nothing.
    pub fn leave(self: &Arc<Self>) {
        if !self.leaving.swap(true, Ordering::SeqCst) {
            tracing::info!(grace = ?self.config.exit_grace, "this provider is leaving: stopping its workloads and releasing its leases");
        }
        for lease in self.ids() {
            if let Some(effects) = self.advance(lease, Input::ExitRequested) {
                self.run_effects(lease, effects);
            }
        }
    }

    /// Whether this provider is leaving (see [`Leases::leave`]).
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    /// Whether no lease needs this agent any more: no workload runs or is being concluded,
    /// nothing waits to be released (see [`Phase::is_settled`]).
    pub fn is_settled(&self) -> bool {
        self.lock().values().all(|r| r.phase.is_settled())
    }

    /// Freezes (or thaws) the lease's workload, in the background. A driver that cannot
    /// freeze it says so, and the lifecycle has it stopped instead.
    fn spawn_freeze(self: &Arc<Self>, lease: LeaseId, pause: bool) {
        let Some((driver, handle)) = self.workload_of(lease) else {
            return;
        };
        let this = Arc::clone(self);
        self.spawn(async move {
            let done = if pause {
                driver.pause(&handle).await
            } else {
                driver.resume(&handle).await
            };
            match done {
                Ok(()) if pause => {
                    tracing::info!(%lease, "escrow ran out: workload paused until a top-up")
                }
                Ok(()) => tracing::info!(%lease, "topped up: workload resumed"),
                Err(DriverError::PauseUnsupported { why, .. }) if pause => {
                    tracing::warn!(%lease, %why, "cannot pause here; stopping the workload instead");
                    let effects = this
                        .advance(lease, Input::PauseUnsupported)
                        .unwrap_or_default();
                    this.perform(lease, effects).await;
                }
                Err(error) => {
                    tracing::warn!(%lease, %error, pause, "could not pause or resume the workload")
                }
            }
        });
    }

    /// Asks the lease's workload to end (SIGTERM, SIGKILL after `grace`), in the background;
    /// its supervisor sees it end.
    fn spawn_stop(self: &Arc<Self>, lease: LeaseId, grace: Duration) {
        let Some((driver, handle)) = self.workload_of(lease) else {
            return;
        };
        self.spawn(async move {
            if let Err(error) = driver.stop(&handle, grace).await {
                tracing::warn!(%lease, %error, "could not stop the workload");
            }
        });
    }

    async fn terms_of(&self, record: &LeaseRecord) -> Result<OrderTerms, LeaseError> {
        if let Some(terms) = &record.terms {
            return Ok(terms.clone());
        }
        let order = self
            .chain
            .order(record.order)
            .await
            .map_err(|source| LeaseError::Chain { source })?;
        let terms = order.terms;
        self.update(record.lease, |r| r.terms = Some(terms.clone()));
        Ok(terms)
    }

    /// The tenant of `lease`: from the record, or from the chain for a lease not yet seen
    /// (which is then tracked).
    pub async fn tenant_of(self: &Arc<Self>, lease: LeaseId) -> Result<Address, LeaseError> {
        if let Some(r) = self.lock().get(&lease) {
            return Ok(r.tenant);
        }
        let view = match self.chain.lease(lease).await {
            Ok(v) => v,
            Err(ChainError::NotFound { .. }) => return Err(LeaseError::NotFound { lease }),
            Err(source) => return Err(LeaseError::Chain { source }),
        };
        if view.provider != self.config.provider {
            return Err(LeaseError::NotOurs { lease });
        }
        self.track(&view);
        Ok(view.tenant)
    }

    /// Takes the tenant's sealed inputs for `lease` (before its manifest): opens them with this
    /// provider's secret and keeps them, owner-only, until the manifest says what they must be.
    pub async fn deliver_inputs(
        self: &Arc<Self>,
        lease: LeaseId,
        sealed: &[u8],
    ) -> Result<(), LeaseError> {
        let max = gpunet_protocol::sealed::sealed_len(gpunet_protocol::inputs::MAX_INPUTS_BYTES);
        if sealed.len() as u64 > max {
            return Err(LeaseError::InputsTooLarge {
                bytes: sealed.len(),
                max: usize::try_from(max).unwrap_or(usize::MAX),
            });
        }
        let record = self.get(lease).ok_or(LeaseError::NoRecord { lease })?;
        check_awaiting(&record)?;
        let ctx = SealContext {
            purpose: Purpose::Inputs,
            lease,
        };
        let archive = gpunet_protocol::sealed::open(&self.config.encryption_secret, ctx, sealed)
            .map_err(|source| LeaseError::InputsUnreadable { source })?;
        let dir = lease_dir(&self.config.data_dir, lease);
        gpunet_files::create_private_dir_all(&dir)
            .and_then(|()| gpunet_files::write_private(&staged_inputs_path(&dir), &archive))
            .map_err(|source| LeaseError::InputsStore { source })?;
        tracing::info!(%lease, bytes = archive.len(), "inputs received");
        Ok(())
    }

    /// The staged inputs of `lease`, checked against what `spec` commits to and written out
    /// under the lease's `inputs/` (read-only to the workload: `/inputs`, `$GPUNET_INPUTS`).
    /// Mismatching inputs are dropped, so the tenant can send the right ones.
    fn place_inputs(&self, lease: LeaseId, spec: &JobSpec) -> Result<(), InputsProblem> {
        let Some(expected) = spec.inputs_archive else {
            return Err(InputsProblem::Invalid(
                "it lists inputs but carries no inputs_archive; submit it with a gpunet that packs inputs".into(),
            ));
        };
        let dir = lease_dir(&self.config.data_dir, lease);
        let staged = staged_inputs_path(&dir);
        let archive = match std::fs::read(&staged) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InputsProblem::Retry(LeaseError::InputsMissing { lease }));
            }
            Err(source) => return Err(InputsProblem::Retry(LeaseError::InputsStore { source })),
        };
        let got = Hash::of(&archive);
        if got != expected.digest || archive.len() as u64 != expected.bytes {
            let _ = std::fs::remove_file(&staged);
            return Err(InputsProblem::Retry(LeaseError::InputsMismatch {
                expected: expected.digest,
                expected_bytes: expected.bytes,
                got,
                got_bytes: archive.len() as u64,
            }));
        }
        // The tenant committed to these bytes: a malformed archive can never run.
        let entries = gpunet_protocol::inputs::unpack(&archive)
            .map_err(|e| InputsProblem::Invalid(format!("its inputs are refused: {e}")))?;
        let target = dir.join("inputs");
        write_inputs(&target, &entries)
            .map_err(|source| InputsProblem::Retry(LeaseError::InputsStore { source }))?;
        let _ = std::fs::remove_file(&staged);
        Ok(())
    }

    /// For a manifest naming an inputs blob in the job's own bucket: fetches it, opens it with
    /// the job's key, checks it against `inputs_archive` and stages the archive where pushed
    /// inputs wait, for [`Leases::place_inputs`] to place. On any failure the lease waits, as
    /// for inputs that never arrived, and the reason (naming the fix) is written to the
    /// lease's log — once, however often the tenant retries — and returned to the tenant.
    async fn fetch_inputs_from_bucket(
        &self,
        lease: LeaseId,
        spec: &JobSpec,
    ) -> Result<(), LeaseError> {
        use crate::tenant_store::InputsBlobError;
        let dir = lease_dir(&self.config.data_dir, lease);
        let fetched = match &spec.storage {
            None => Err(InputsBlobError::Incomplete),
            Some(storage) => {
                let limits = gpunet_blobs::Limits {
                    max_blob_bytes: crate::tenant_store::max_sealed_inputs_bytes(),
                    ..gpunet_blobs::Limits::default()
                };
                match crate::tenant_store::open_with_limits(
                    storage,
                    self.config.allow_private_blob_endpoints,
                    limits,
                )
                .await
                {
                    Ok(store) => {
                        let scratch = dir.join("inputs.sealed");
                        crate::tenant_store::fetch_inputs(&store, spec, &scratch).await
                    }
                    Err(source) => Err(InputsBlobError::Store { source }),
                }
            }
        };
        let archive = match fetched {
            Ok(Some(archive)) => archive,
            Ok(None) => return Ok(()),
            Err(source) => {
                let error = LeaseError::InputsFromBucket { source };
                if append_log_line_once(&dir, &format!("gpunet: {error}")) {
                    tracing::warn!(%lease, %error, "the job's inputs are not taken from its bucket");
                }
                return Err(error);
            }
        };
        gpunet_files::create_private_dir_all(&dir)
            .and_then(|()| gpunet_files::write_private(&staged_inputs_path(&dir), &archive))
            .map_err(|source| LeaseError::InputsStore { source })?;
        tracing::info!(%lease, bytes = archive.len(), "inputs fetched from the job's bucket");
        append_log_line(
            &dir,
            &format!(
                "gpunet: the job's inputs ({} bytes) came, sealed, from its own bucket",
                archive.len()
            ),
        );
        Ok(())
    }

    /// Takes the tenant's sealed manifest for `lease`: opens it with this provider's secret,
    /// checks it against the order's hash, checks it can run here, starts the workload and
    /// reports `StartLease`. A manifest that does not open or has the wrong hash leaves the
    /// lease waiting; one with the right hash that cannot run rejects the lease.
    pub async fn deliver_manifest(
        self: &Arc<Self>,
        lease: LeaseId,
        sealed: &[u8],
    ) -> Result<WorkloadView, LeaseError> {
        let (record, terms, manifest) = self.open_manifest(lease, sealed).await?;
        let admitted = self.admit(&record, &manifest).await?;
        self.claim(lease, &admitted.spec)?;
        self.open_job_store(lease, &admitted.spec).await;
        let workload = self.workload_spec(&record, &terms, &admitted).await;
        self.start_workload(lease, &admitted.driver, &workload)
            .await?;
        self.get(lease)
            .map(|r| r.view())
            .ok_or(LeaseError::NoRecord { lease })
    }

    /// The manifest of a lease waiting for it, opened and checked against the order's hash:
    /// with the record and the order's terms.
    async fn open_manifest(
        &self,
        lease: LeaseId,
        sealed: &[u8],
    ) -> Result<(LeaseRecord, OrderTerms, Vec<u8>), LeaseError> {
        if sealed.len() > MAX_SEALED_MANIFEST_BYTES {
            return Err(LeaseError::ManifestTooLarge {
                bytes: sealed.len(),
                max: MAX_SEALED_MANIFEST_BYTES,
            });
        }
        let record = self.get(lease).ok_or(LeaseError::NoRecord { lease })?;
        check_awaiting(&record)?;
        let ctx = SealContext {
            purpose: Purpose::Manifest,
            lease,
        };
        let manifest = gpunet_protocol::sealed::open(&self.config.encryption_secret, ctx, sealed)
            .map_err(|source| LeaseError::ManifestUnreadable { source })?;
        let terms = self.terms_of(&record).await?;
        let got = Hash::of(&manifest);
        if got != terms.manifest_hash {
            return Err(LeaseError::HashMismatch {
                expected: terms.manifest_hash,
                got,
            });
        }
        Ok((record, terms, manifest))
    }

    /// Whether the order's own manifest can run here: it parses, its runtime is offered and
    /// allowed for this tenant, its inputs are the ones it commits to, it names an output key
    /// if it wants outputs, and the lease's GPU slots exist. A manifest that cannot run
    /// rejects the lease; inputs not (yet) right leave it waiting.
    async fn admit(
        self: &Arc<Self>,
        record: &LeaseRecord,
        manifest: &[u8],
    ) -> Result<Admitted, LeaseError> {
        let lease = record.lease;
        let spec = JobSpec::from_manifest_bytes(manifest)
            .map_err(|e| self.reject_manifest(lease, format!("{e}")))?;
        let Some(driver) = self.drivers.for_runtime(spec.runtime()).cloned() else {
            let why = format!(
                "it needs runtime {}, which this provider does not offer",
                spec.runtime().as_str()
            );
            return Err(self.reject_manifest(lease, why));
        };
        if !self.config.policy.allows(spec.runtime(), record.tenant) {
            let why = format!(
                "this provider's {} runtime cannot isolate workloads (no sandbox on this \
                 machine), so it runs only its operator's own jobs; submit it with run.image, \
                 or to another provider",
                spec.runtime().as_str()
            );
            return Err(self.reject_manifest(lease, why));
        }
        // The order's terms are the tenant's word, apart from the manifest they hash: a manifest
        // may ask for more than its order did. Only what this provider grants runs.
        if spec.capabilities() > self.config.capabilities {
            let why = format!(
                "it asks for the {} capabilities (run.capabilities), which this provider does \
                 not grant (it grants {}); submit it to a provider that does",
                spec.capabilities().as_str(),
                self.config.capabilities.as_str()
            );
            return Err(self.reject_manifest(lease, why));
        }
        if !spec.services.is_empty()
            && let Err(why) = services_fit(&spec.resources(), &record.resources)
        {
            return Err(self.reject_manifest(lease, why));
        }
        if !spec.inputs.is_empty() {
            if spec.inputs_blob.is_some() {
                self.fetch_inputs_from_bucket(lease, &spec).await?;
            }
            match self.place_inputs(lease, &spec) {
                Ok(()) => {}
                Err(InputsProblem::Retry(error)) => return Err(error),
                Err(InputsProblem::Invalid(why)) => return Err(self.reject_manifest(lease, why)),
            }
        }
        if spec.outputs && spec.output_key.is_none() {
            let why = "it asks for outputs but names no output_key to seal them to; submit it \
                       with a gpunet that seals outputs"
                .to_owned();
            return Err(self.reject_manifest(lease, why));
        }
        let mut gpu_uuids = Vec::new();
        for slot in &record.gpu_slots {
            match self.config.gpu_uuids.get(*slot as usize) {
                Some(uuid) => gpu_uuids.push(uuid.clone()),
                None => {
                    let why = format!("the lease names GPU slot {slot}, which this machine lacks");
                    return Err(self.fail_start(lease, why, false));
                }
            }
        }
        Ok(Admitted {
            spec,
            driver,
            gpu_uuids,
        })
    }

    /// Claims the lease for this manifest: one manifest starts it, a concurrent one (or one
    /// after the lease ended or was given back) finds it taken.
    fn claim(&self, lease: LeaseId, spec: &JobSpec) -> Result<(), LeaseError> {
        let effects = self
            .advance_with(lease, Input::ManifestAccepted, |r| {
                r.output_key = spec.output_key;
                r.exposed = spec.expose.clone();
                r.service_exposed = spec
                    .services
                    .iter()
                    .filter(|s| !s.expose.is_empty())
                    .map(|s| (s.name.clone(), s.expose.clone()))
                    .collect();
                r.health = spec.health.clone();
            })
            .ok_or(LeaseError::NoRecord { lease })?;
        if effects.contains(&Effect::StartWorkload) {
            return Ok(());
        }
        let record = self.get(lease).ok_or(LeaseError::NoRecord { lease })?;
        check_awaiting(&record)?;
        Err(LeaseError::AlreadyReceived {
            state: record.state(),
        })
    }

    /// What the driver is asked to run: the command and environment of the manifest (its
    /// secrets and checkpoint directory included), within what the chain reserved.
    async fn workload_spec(
        &self,
        record: &LeaseRecord,
        terms: &OrderTerms,
        admitted: &Admitted,
    ) -> WorkloadSpec {
        let (lease, spec) = (record.lease, &admitted.spec);
        let duration_secs = spec.max_duration_secs().min(terms.max_duration_secs).max(1);
        let mut env = env_of(&spec.run);
        if let Some(path) = self.prepare_checkpoints(lease, record, spec).await {
            env.insert("GPUNET_CHECKPOINTS".into(), path);
        }
        // Lease ids are per chain, and container names per engine: the provider's address
        // keeps two agents (two dev networks, two chains) on one engine apart.
        let workload_id = format!(
            "lease-{lease}-{}",
            hex::encode(&self.config.provider.0[..6])
        );
        let root_dir = lease_dir(&self.config.data_dir, lease);
        let (main, companions) = workload_parts(spec, &admitted.gpu_uuids);
        WorkloadSpec {
            workload_id: workload_id.clone(),
            command: spec.run.command.clone(),
            args: spec.run.args.clone(),
            env,
            // The lease's resources are what the chain reserved and bills; the manifest's are
            // the tenant's wish and committed to by the same hash. A job with services runs
            // each container with its own share, which admission checked fit the lease.
            cpu_millis: main
                .as_ref()
                .map_or(record.resources.cpu_millis, |m| m.cpu_millis),
            memory_mib: main
                .as_ref()
                .map_or(record.resources.memory_mib, |m| m.memory_mib),
            // Like CPU and memory, the disk the chain reserved is what the workload may fill.
            disk_mib: Some(record.resources.disk_mib),
            max_duration: Duration::from_secs(duration_secs),
            root_dir: root_dir.clone(),
            gpu_uuids: main.map_or_else(|| admitted.gpu_uuids.clone(), |m| m.gpu_uuids),
            log_limit_bytes: LOG_LIMIT_BYTES,
            hostname: (!companions.is_empty()).then(|| spec.name.clone()),
            companions,
            volumes: volumes_of(&spec.volumes),
            restarts: spec.recovery.restarts,
            image: spec.run.image.clone(),
            network: network_mode(spec.run.network),
            read_only_rootfs: !spec.run.writable_root,
            capabilities: capability_names(spec.run.capabilities),
            expose: exposed_ports(&spec.expose),
            ..WorkloadSpec::new(workload_id, spec.run.command.clone(), root_dir)
        }
    }

    /// Starts the claimed lease's workload and carries on as the lifecycle says: `StartLease`
    /// in the background (the tenant hears "running" now; the chain records the start a block
    /// later, and the supervisor — with it `CompleteLease` — waits for that, so a completion
    /// can never get ahead of its start), the endpoints published before the answer.
    async fn start_workload(
        self: &Arc<Self>,
        lease: LeaseId,
        driver: &Arc<dyn Driver>,
        workload: &WorkloadSpec,
    ) -> Result<(), LeaseError> {
        let handle = match driver.start(workload).await {
            Ok(handle) => handle,
            Err(e) => {
                let image_unavailable = e.is_image_unavailable();
                return Err(self.fail_start(lease, e.to_string(), image_unavailable));
            }
        };
        tracing::info!(%lease, command = ?workload.command, "workload started; reporting StartLease");
        let effects = self
            .advance_with(lease, Input::Started, |r| r.handle = Some(handle.clone()))
            .unwrap_or_default();
        if effects.is_empty() {
            // Nothing took the workload (the lease is gone): it must not run unseen.
            tracing::warn!(%lease, "the lease no longer takes its workload; stopping it");
            if let Err(error) = driver.stop(&handle, STOP_GRACE).await {
                tracing::warn!(%lease, %error, "could not stop the workload");
            }
            return Err(LeaseError::Ended { lease });
        }
        self.perform(lease, effects).await;
        Ok(())
    }

    /// Records the lease's endpoints on chain (`PublishEndpoints`), in the background, so the
    /// node's API shows them to anyone; a refusal is logged, and `job status` still has them
    /// from the agent.
    fn spawn_record_endpoints(self: &Arc<Self>, lease: LeaseId, endpoints: Vec<String>) {
        if endpoints.is_empty() {
            return;
        }
        if !gpunet_protocol::tx::endpoints_valid(&endpoints) {
            tracing::warn!(%lease, ?endpoints, "these endpoints cannot be recorded on chain");
            return;
        }
        let this = Arc::clone(self);
        self.spawn(async move {
            let msg = Msg::PublishEndpoints { lease, endpoints };
            if let Err(error) = this.chain.submit(msg).await {
                tracing::warn!(%lease, %error, "could not record the lease's endpoints on chain");
            }
        });
    }

    /// Submits `StartLease`, in the background, and feeds the answer to the lifecycle.
    fn spawn_submit_start(self: &Arc<Self>, lease: LeaseId) {
        let this = Arc::clone(self);
        self.spawn(async move {
            let input = match this.chain.submit(Msg::StartLease { lease }).await {
                Ok(()) => Input::StartRecorded,
                Err(source) => {
                    tracing::warn!(%lease, error = %source, "StartLease failed; stopping the workload");
                    Input::StartNotRecorded {
                        why: source.to_string(),
                    }
                }
            };
            let effects = this.advance(lease, input).unwrap_or_default();
            this.perform(lease, effects).await;
        });
    }

    /// For a job with a checkpoint key: restores the order's latest checkpoint into the
    /// lease's checkpoint directory (or leaves it empty) and remembers the lease for uploads.
    /// Returns the path the workload sees, or `None` when the job keeps no checkpoints here.
    async fn prepare_checkpoints(
        &self,
        lease: LeaseId,
        record: &LeaseRecord,
        spec: &JobSpec,
    ) -> Option<String> {
        let key = spec.checkpoint_key.as_ref()?;
        let store = self.checkpoint_store_for(lease, spec)?;
        let root = lease_dir(&self.config.data_dir, lease);
        let dir = crate::checkpoints::checkpoint_dir(&root);
        let scratch = root.join("checkpoint.incoming");
        // The job's earlier attempts, from the chain: each wrote its own checkpoints.
        let restored = match self.chain.order(record.order).await {
            Ok(order) => {
                let earlier: Vec<LeaseId> = order
                    .attempts
                    .iter()
                    .map(|a| a.id)
                    .filter(|id| *id < lease)
                    .collect();
                crate::checkpoints::restore(
                    &store,
                    record.order,
                    &earlier,
                    &key.secret(),
                    &dir,
                    &scratch,
                )
                .await
            }
            Err(source) => Err(crate::checkpoints::CheckpointError::Attempts {
                why: source.to_string(),
            }),
        };
        let line = match &restored {
            Ok(Some(r)) => Some(format!(
                "gpunet: restored checkpoint {} from attempt lease {} (checkpoint {})",
                r.digest, r.from_lease, r.seq
            )),
            Ok(None) => None,
            Err(error) => Some(format!(
                "gpunet: the job's latest checkpoint could not be restored, so it starts fresh: {error}"
            )),
        };
        if let Some(line) = &line {
            tracing::info!(%lease, "{line}");
            append_log_line(&root, line);
        }
        let restored_ok = matches!(restored, Ok(Some(_)));
        if !restored_ok && let Err(error) = crate::checkpoints::create_empty(&dir) {
            tracing::warn!(%lease, %error, "cannot create the checkpoint directory; no checkpoints");
            return None;
        }
        let job = lease_checkpoints(store, record, key.public(), dir.clone(), 0);
        self.lock_checkpointing().insert(lease, Arc::new(job));
        // Kept in the record, so a restarted agent goes on checkpointing the workload.
        self.update(lease, |r| {
            r.checkpoint_key = Some(key.public());
            r.checkpoint_seq = 0;
        });
        // A container gets the directory mounted (the Docker driver names it in the
        // container's environment itself). Sandboxed, a process's work directory is `/work`;
        // without the sandbox (trusted tenants only) it sees the host's paths.
        Some(match spec.runtime() {
            Runtime::Docker => gpunet_runtime::CONTAINER_CHECKPOINTS_DIR.to_owned(),
            Runtime::Process if self.config.policy.unisolated.contains(&Runtime::Process) => {
                dir.to_string_lossy().into_owned()
            }
            Runtime::Process => format!("/work/{}", crate::checkpoints::CHECKPOINT_DIR_NAME),
        })
    }

    /// For a job that names its own store (its spec's `storage:`): builds it, through the
    /// endpoint guard, and keeps it for the lease. A refused one is said in the lease's log;
    /// the job runs on without it.
    async fn open_job_store(&self, lease: LeaseId, spec: &JobSpec) {
        let Some(storage) = &spec.storage else {
            return;
        };
        self.update(lease, |r| r.job_store = true);
        let root = lease_dir(&self.config.data_dir, lease);
        let allow_private = self.config.allow_private_blob_endpoints;
        match crate::tenant_store::open(storage, allow_private).await {
            Ok(store) => {
                tracing::info!(%lease, endpoint = %storage.s3.endpoint, bucket = %storage.s3.bucket, "the job keeps its checkpoints and outputs in its own store");
                append_log_line(
                    &root,
                    &format!(
                        "gpunet: the job's checkpoints and outputs go to its own bucket {} at {}",
                        storage.s3.bucket, storage.s3.endpoint
                    ),
                );
                self.lock_job_stores().insert(
                    lease,
                    CheckpointStore {
                        store: Arc::new(store),
                        chain_id: self.config.chain_id.clone(),
                    },
                );
            }
            Err(error) => {
                tracing::warn!(%lease, %error, "the job's own store is not used");
                append_log_line(&root, &format!("gpunet: {error}"));
            }
        }
    }

    /// Where the lease's checkpoints go: the job's own store when it names one (or none, if
    /// that one was refused), else the operator's.
    fn checkpoint_store_for(&self, lease: LeaseId, spec: &JobSpec) -> Option<CheckpointStore> {
        if spec.storage.is_some() {
            return self.lock_job_stores().get(&lease).cloned();
        }
        let store = self.config.checkpoints.clone();
        if store.is_none() {
            tracing::info!(%lease, "this agent has no blob store: the job's checkpoints are not kept");
        }
        store
    }

    fn lock_job_stores(&self) -> MutexGuard<'_, BTreeMap<LeaseId, CheckpointStore>> {
        self.job_stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_checkpointing(&self) -> MutexGuard<'_, BTreeMap<LeaseId, Arc<LeaseCheckpoints>>> {
        self.checkpointing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks at the lease's checkpoints every [`CHECKPOINT_INTERVAL`] while it runs (frozen,
    /// it is looked at again once thawed); the last upload is the lifecycle's, once the
    /// workload has ended.
    fn spawn_checkpointer(self: &Arc<Self>, lease: LeaseId) {
        let Some(job) = self.lock_checkpointing().get(&lease).cloned() else {
            return;
        };
        let this = Arc::clone(self);
        self.spawn(async move {
            loop {
                tokio::time::sleep(CHECKPOINT_INTERVAL).await;
                if !this.lock_checkpointing().contains_key(&lease) {
                    return;
                }
                let Some(effects) = this.advance(lease, Input::CheckpointDue) else {
                    return;
                };
                if effects.contains(&Effect::UploadCheckpoint) {
                    if let Some(next) = upload_checkpoint(&job).await {
                        this.update(lease, |r| r.checkpoint_seq = next);
                    }
                } else if !this
                    .get(lease)
                    .is_some_and(|r| matches!(r.phase, Phase::Paused { .. }))
                {
                    return;
                }
            }
        });
    }

    /// Rejects the lease for a manifest that matches the order but cannot run.
    fn reject_manifest(self: &Arc<Self>, lease: LeaseId, why: String) -> LeaseError {
        tracing::warn!(%lease, %why, "rejecting the lease's manifest");
        let input = Input::ManifestRejected { why: why.clone() };
        if let Some(effects) = self.advance(lease, input) {
            self.run_effects(lease, effects);
        }
        LeaseError::ManifestInvalid { why }
    }

    /// The workload could not be started: the lease never started, so the ledger refunds the
    /// tenant in full; `why` (the driver's message) says why. `image_unavailable`: its image
    /// cannot be had.
    fn fail_start(
        self: &Arc<Self>,
        lease: LeaseId,
        why: String,
        image_unavailable: bool,
    ) -> LeaseError {
        if image_unavailable {
            tracing::warn!(%lease, %why, "the workload's image is not available");
        } else {
            tracing::warn!(%lease, %why, "the workload could not be started");
        }
        self.lock_job_stores().remove(&lease);
        let input = Input::StartFailed {
            why: why.clone(),
            image_unavailable,
        };
        if let Some(effects) = self.advance(lease, input) {
            self.run_effects(lease, effects);
        }
        if image_unavailable {
            LeaseError::ImageUnavailable { why }
        } else {
            LeaseError::StartFailed { why }
        }
    }

    /// Asks the driver where the service's ports are published, records them as endpoints and,
    /// if the manifest has a health check, starts probing it.
    async fn publish_endpoints(self: &Arc<Self>, lease: LeaseId) {
        let Some(record) = self.get(lease) else {
            return;
        };
        if record.exposed.is_empty() && record.service_exposed.is_empty() {
            return;
        }
        let Some((driver, handle)) = self.workload_of(lease) else {
            return;
        };
        let ports = match driver.ports(&handle).await {
            Ok(ports) => ports,
            Err(error) => {
                tracing::warn!(%lease, %error, "could not read the published ports");
                return;
            }
        };
        let ingress = self.config.ingress.as_ref();
        let endpoints = crate::ingress::endpoints_of(lease, &record.exposed, &ports, ingress);
        if ingress.is_some_and(|i| i.domain.is_some()) {
            for e in record
                .exposed
                .iter()
                .filter(|e| e.proto == ExposeProto::Http)
            {
                if let Some(p) = ports
                    .iter()
                    .find(|p| p.service.is_none() && p.container_port == e.port)
                {
                    self.routes.add(lease, e.port, p.host);
                }
            }
        }
        let service_endpoints =
            crate::ingress::service_endpoints_of(lease, &record.service_exposed, &ports, ingress);
        if ingress.is_some_and(|i| i.domain.is_some()) {
            for (service, exposed) in &record.service_exposed {
                for e in exposed.iter().filter(|e| e.proto == ExposeProto::Http) {
                    let upstreams: Vec<std::net::SocketAddr> = ports
                        .iter()
                        .filter(|p| {
                            p.service.as_deref() == Some(service) && p.container_port == e.port
                        })
                        .map(|p| p.host)
                        .collect();
                    let name = crate::ingress::service_route_name(lease, service, e.port);
                    self.routes.add_named(name, lease, &upstreams);
                }
            }
        }
        tracing::info!(%lease, ?endpoints, ?service_endpoints, "service endpoints published");
        let mut recorded: Vec<String> = Vec::new();
        for url in endpoints
            .iter()
            .chain(service_endpoints.iter().map(|e| &e.url))
        {
            if !recorded.contains(url) && recorded.len() < gpunet_protocol::tx::MAX_LEASE_ENDPOINTS
            {
                recorded.push(url.clone());
            }
        }
        self.update(lease, |r| {
            r.endpoints = endpoints;
            r.service_endpoints = service_endpoints;
        });
        self.spawn_record_endpoints(lease, recorded);
        let target = record.health.as_ref().and_then(|h| {
            let port = record
                .exposed
                .iter()
                .find(|e| e.proto == ExposeProto::Http)?
                .port;
            let published = ports
                .iter()
                .find(|p| p.service.is_none() && p.container_port == port)?;
            Some((published.host, h.http_path.clone()))
        });
        if let Some((addr, path)) = target {
            self.spawn_health_probe(lease, addr, path);
        }
    }

    /// Probes the service's health while its workload runs; records changes of the answer.
    fn spawn_health_probe(
        self: &Arc<Self>,
        lease: LeaseId,
        addr: std::net::SocketAddr,
        path: String,
    ) {
        let this = Arc::clone(self);
        self.spawn(async move {
            loop {
                let running = this.get(lease).is_some_and(|r| {
                    matches!(
                        r.phase,
                        Phase::Started | Phase::Running | Phase::Paused { .. }
                    )
                });
                if !running {
                    return;
                }
                let healthy = probe(addr, &path, HEALTH_PROBE_TIMEOUT).await;
                let changed = this.get(lease).is_some_and(|r| r.healthy != Some(healthy));
                if changed {
                    tracing::info!(%lease, healthy, "service health changed");
                    this.update(lease, |r| r.healthy = Some(healthy));
                }
                tokio::time::sleep(HEALTH_PROBE_INTERVAL).await;
            }
        });
    }

    fn spawn_supervisor(self: &Arc<Self>, lease: LeaseId) {
        let Some(handle) = self.get(lease).and_then(|r| r.handle) else {
            tracing::warn!(%lease, "no workload to supervise");
            return;
        };
        let this = Arc::clone(self);
        self.spawn(async move { this.supervise(lease, handle).await });
    }

    /// Waits for the workload to end, then has the lifecycle conclude it.
    async fn supervise(self: Arc<Self>, lease: LeaseId, handle: WorkloadHandle) {
        // GPU leases are sampled while they run; the mean and peak go into the usage report.
        let uuids = self.gpu_uuids_of(lease);
        let gpu_usage = Arc::new(std::sync::Mutex::new(GpuUsage::default()));
        let sampling = (!uuids.is_empty() && self.gpus.available()).then(|| {
            let (sampler, usage) = (Arc::clone(&self.gpus), Arc::clone(&gpu_usage));
            tokio::spawn(async move {
                loop {
                    let (s, u) = (Arc::clone(&sampler), uuids.clone());
                    if let Ok(Some(sample)) =
                        tokio::task::spawn_blocking(move || s.sample(&u)).await
                    {
                        usage
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .add(sample);
                    }
                    tokio::time::sleep(GPU_SAMPLE_INTERVAL).await;
                }
            })
        });
        let waited = match self.driver_for(&handle) {
            Ok(driver) => driver.wait(&handle).await,
            Err(e) => Err(DriverError::Unavailable {
                driver: "unknown",
                reason: e.to_string(),
            }),
        };
        if let Some(task) = sampling {
            task.abort();
        }
        let gpu = *gpu_usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let exit = match waited {
            Ok(exit) => exit,
            Err(error) => {
                tracing::warn!(%lease, %error, "lost track of the workload");
                lost_exit()
            }
        };
        self.exited(lease, exit, gpu).await;
    }

    /// The workload of `lease` ended with `exit`: recorded, and concluded as the lifecycle says.
    async fn exited(self: &Arc<Self>, lease: LeaseId, exit: ExitOutcome, gpu: GpuUsage) {
        let input = Input::WorkloadExited {
            reason: exit.reason,
        };
        let usage = usage_report(&exit.usage, &gpu);
        let effects = self
            .advance_with(lease, input, |r| {
                r.exit = Some(exit);
                r.usage = Some(usage);
            })
            .unwrap_or_default();
        self.perform(lease, effects).await;
    }

    /// The UUIDs of the GPUs the lease holds, from its slots.
    fn gpu_uuids_of(&self, lease: LeaseId) -> Vec<String> {
        self.get(lease)
            .map(|r| {
                r.gpu_slots
                    .iter()
                    .filter_map(|slot| self.config.gpu_uuids.get(*slot as usize).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Collects an ended workload's outputs and cleans it up; returns what the lifecycle
    /// says next (settling the lease).
    async fn keep_outputs(self: &Arc<Self>, lease: LeaseId) -> Vec<Effect> {
        // No more checkpoints: the last one, if any, was taken before this. The job's own
        // store (and the tenant's credentials with it) is dropped once the outputs are in it.
        self.lock_checkpointing().remove(&lease);
        let job_store = self.lock_job_stores().remove(&lease);
        let Some(record) = self.get(lease) else {
            return Vec::new();
        };
        let exit = record.exit.clone().unwrap_or_else(lost_exit);
        let mut detail = describe_exit(&exit);
        let mut listing = None;
        if let Some(handle) = &record.handle {
            let outputs_dir = handle.root_dir.join("outputs");
            let blobs_dir = self.blobs_dir();
            let collected = tokio::task::spawn_blocking(move || {
                collect_outputs(lease, &outputs_dir, &blobs_dir)
            })
            .await;
            let destroyed = match self.driver_for(handle) {
                Ok(driver) => driver.destroy(handle).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(error) = destroyed {
                tracing::warn!(%lease, %error, "could not clean up the workload's directory");
            }
            match collected {
                Ok(Ok(kept)) => listing = Some(kept),
                Ok(Err(e)) => {
                    tracing::warn!(%lease, error = %e, "outputs not kept");
                    detail = format!("{detail}; {e}");
                }
                Err(e) => detail = format!("{detail}; collecting outputs failed: {e}"),
            }
        }
        if let (Some(store), Some(listing), Some(key)) =
            (&job_store, &listing, record.output_key.as_ref())
        {
            self.upload_outputs(&record, store, listing, key).await;
        }
        let kept = listing.is_some() || record.handle.is_none();
        tracing::info!(%lease, %detail, files = listing.as_ref().map_or(0, |l| l.files.len()), "workload ended");
        // What the end amounts to, kept even when nothing is reported (the chain ended the
        // lease); a report states its own outcome.
        let outcome = if kept {
            outcome_of(exit.reason)
        } else {
            gpunet_protocol::WorkloadOutcome::Failed
        };
        // The workload is gone: so are its names on the proxy.
        self.routes.remove_lease(lease);
        self.advance_with(lease, Input::OutputsKept { kept }, |r| {
            r.outcome = Some(outcome);
            r.listing = listing;
            r.detail = Some(detail);
            r.endpoints.clear();
            r.service_endpoints.clear();
        })
        .unwrap_or_default()
    }

    /// Puts the kept outputs in the job's own store too, sealed to the tenant; says in the
    /// lease's log how it went. Never fails the job: the agent still serves them.
    async fn upload_outputs(
        &self,
        record: &LeaseRecord,
        store: &CheckpointStore,
        listing: &gpunet_api::provider::OutputListing,
        key: &EncryptionKey,
    ) {
        let lease = record.lease;
        let root = lease_dir(&self.config.data_dir, lease);
        let scratch = root.join("outputs.sealing");
        let uploaded = crate::tenant_store::upload_outputs(
            store,
            record.order,
            lease,
            listing,
            &self.blobs_dir(),
            key,
            &scratch,
        )
        .await;
        let _ = std::fs::remove_dir_all(&scratch);
        let line = match uploaded {
            Ok(sent) => {
                tracing::info!(%lease, files = listing.files.len(), sent, "outputs uploaded to the job's own store");
                format!(
                    "gpunet: {} output file(s) uploaded, sealed, to the job's own bucket",
                    listing.files.len()
                )
            }
            Err(error) => {
                tracing::warn!(%lease, %error, "outputs not uploaded to the job's own store");
                format!(
                    "gpunet: the outputs could not be uploaded to the job's own bucket ({error}); \
                     they stay on this provider"
                )
            }
        };
        append_log_line(&root, &line);
    }

    fn spawn_report(self: &Arc<Self>, lease: LeaseId) {
        let this = Arc::clone(self);
        self.spawn(async move { this.report(lease).await });
    }

    /// Reports the lease's result with `CompleteLease`, retried while the node cannot be
    /// reached; not once the chain has ended the lease.
    async fn report(self: &Arc<Self>, lease: LeaseId) {
        let Some(record) = self.get(lease) else {
            return;
        };
        let Phase::Reporting { outcome, .. } = record.phase else {
            return;
        };
        // A run of a verified order reports its result tag, never the digest itself, which it
        // reveals only when the ledger asks (ADR 0010, `crate::reveals`).
        let output_digest =
            if record.verified() && outcome == gpunet_protocol::WorkloadOutcome::Succeeded {
                Some(gpunet_protocol::result_tag(
                    record.order,
                    &record.output_digest(),
                ))
            } else {
                record.listing.as_ref().map(|l| l.digest)
            };
        let result = LeaseResult {
            outcome,
            exit_code: record.exit.as_ref().and_then(|e| e.exit_code),
            output_digest,
            usage: record.usage.clone().unwrap_or_default(),
            detail: truncate(
                record.detail.as_deref().unwrap_or(""),
                MAX_RESULT_DETAIL_BYTES,
            ),
        };
        let msg = Msg::CompleteLease {
            lease,
            result: result.clone(),
        };
        let settled = self
            .settle(
                lease,
                msg,
                |p| matches!(p, Phase::Reporting { .. }),
                "report the lease result",
            )
            .await;
        if settled {
            tracing::info!(%lease, ?outcome, "lease result reported");
            let effects = self.advance(lease, Input::Reported).unwrap_or_default();
            self.perform(lease, effects).await;
        }
    }

    fn spawn_release(self: &Arc<Self>, lease: LeaseId) {
        let this = Arc::clone(self);
        self.spawn(async move { this.release(lease).await });
    }

    /// Gives the lease back with `ReleaseLease` (this provider is leaving), retried while the
    /// node cannot be reached; not once the chain has ended the lease.
    async fn release(self: &Arc<Self>, lease: LeaseId) {
        let msg = Msg::ReleaseLease { lease };
        let settled = self
            .settle(lease, msg, |p| *p == Phase::Releasing, "release the lease")
            .await;
        if settled {
            tracing::info!(%lease, "lease released: the job goes on with another provider");
            let effects = self.advance(lease, Input::Released).unwrap_or_default();
            self.perform(lease, effects).await;
        }
    }

    /// Submits `msg` while the lease is still in a phase `still` accepts, retrying while the
    /// node cannot be reached (at most [`MAX_REPORT_ATTEMPTS`], backing off). Returns whether
    /// the lease is settled: included, refused for good, or no longer needed. `false`: left
    /// to the next agent start.
    async fn settle(
        &self,
        lease: LeaseId,
        msg: Msg,
        still: impl Fn(&Phase) -> bool,
        what: &'static str,
    ) -> bool {
        let mut delay = REPORT_RETRY_BASE;
        for attempt in 1..=MAX_REPORT_ATTEMPTS {
            if !self.get(lease).is_some_and(|r| still(&r.phase)) {
                return true;
            }
            match self.chain.submit(msg.clone()).await {
                Ok(()) => return true,
                Err(e) if !is_transient(&e) => {
                    tracing::warn!(%lease, error = %e, "the chain refused to {what}");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(%lease, attempt, error = %e, "could not {what}; retrying");
                    if attempt == MAX_REPORT_ATTEMPTS {
                        return false;
                    }
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
            }
        }
        false
    }

    /// Picks up persisted leases after a restart: each is fed [`Input::Restarted`] with what
    /// its driver says of its workload — waiting ones get a fresh manifest timer, running ones
    /// are supervised again, ended ones concluded, and results or releases not yet on chain
    /// are sent again.
    pub async fn resume(self: &Arc<Self>) {
        let records: Vec<LeaseRecord> = self.lock().values().cloned().collect();
        for r in records {
            let (workload, exit) = self.recover(&r).await;
            if workload == Recovery::Running {
                self.resume_checkpointing(&r);
            }
            let effects = self
                .advance_with(r.lease, Input::Restarted { workload }, |record| {
                    if let Some(exit) = exit {
                        record.usage = Some(usage_report(&exit.usage, &GpuUsage::default()));
                        record.exit = Some(exit);
                    }
                })
                .unwrap_or_default();
            if effects.contains(&Effect::KeepOutputs) {
                // Collecting outputs may take a while: not before the agent serves.
                self.run_effects(r.lease, effects);
            } else {
                self.perform(r.lease, effects).await;
            }
        }
    }

    /// A workload found running after a restart goes on checkpointing where it left off (the
    /// key and the next sequence number are in its record).
    /// A job that named its own store is not checkpointed after a restart: its credentials
    /// were never written down (see [`crate::tenant_store`]).
    fn resume_checkpointing(&self, r: &LeaseRecord) {
        let root = lease_dir(&self.config.data_dir, r.lease);
        if r.job_store {
            append_log_line(
                &root,
                "gpunet: the provider's agent restarted; it does not keep the job's storage \
                 credentials, so this attempt uploads no more checkpoints and its outputs stay on \
                 this provider",
            );
            return;
        }
        let (Some(key), Some(store)) = (r.checkpoint_key, self.config.checkpoints.clone()) else {
            return;
        };
        let dir = crate::checkpoints::checkpoint_dir(&root);
        let job = lease_checkpoints(store, r, key, dir, r.checkpoint_seq);
        self.lock_checkpointing().insert(r.lease, Arc::new(job));
    }

    /// What the driver says of a record's workload after a restart, with its exit if it ended.
    async fn recover(&self, r: &LeaseRecord) -> (Recovery, Option<ExitOutcome>) {
        let Some(handle) = r.handle.as_ref().filter(|_| r.phase.has_workload()) else {
            return (Recovery::NoWorkload, None);
        };
        // A workload concluded before the restart keeps the exit it had.
        if let (Phase::Concluding { .. }, Some(exit)) = (&r.phase, &r.exit) {
            return (Recovery::Exited(exit.reason), None);
        }
        let recovered = match self.driver_for(handle) {
            Ok(driver) => driver.recover(handle).await,
            Err(e) => Err(DriverError::Unavailable {
                driver: "unknown",
                reason: e.to_string(),
            }),
        };
        match recovered {
            Ok(RecoverState::Running) => {
                tracing::info!(lease = %r.lease, "recovered a running workload");
                (Recovery::Running, None)
            }
            Ok(RecoverState::Exited(exit)) => (Recovery::Exited(exit.reason), Some(exit)),
            Ok(RecoverState::Lost) => (Recovery::Exited(ExitReason::Lost), Some(lost_exit())),
            Err(error) => {
                tracing::warn!(lease = %r.lease, %error, "could not recover the workload");
                (Recovery::Exited(ExitReason::Lost), Some(lost_exit()))
            }
        }
    }

    /// Removes the directories (record, logs, outputs) of ended leases that are past
    /// `retention.keep_ended_for`, or hold more than `retention.max_lease_dir_bytes`, and
    /// forgets them. Live leases and leases whose result is still to be reported stay. Returns
    /// the leases removed. (Output blobs are shared by digest and stay.)
    pub fn sweep_ended(&self, now_ms: u64) -> Vec<LeaseId> {
        let retention = self.config.retention;
        let keep_ms = u64::try_from(retention.keep_ended_for.as_millis()).unwrap_or(u64::MAX);
        let candidates: Vec<(LeaseId, Option<u64>)> = self
            .lock()
            .values()
            .filter(|r| r.phase == Phase::Ended)
            .map(|r| (r.lease, r.ended_ms))
            .collect();
        let mut removed = Vec::new();
        for (lease, ended_ms) in candidates {
            let dir = lease_dir(&self.config.data_dir, lease);
            // Records from before `ended_ms` existed count from their last write.
            let ended_ms = ended_ms.or_else(|| {
                let modified = std::fs::metadata(dir.join("record.json"))
                    .ok()?
                    .modified()
                    .ok()?;
                let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
                u64::try_from(since.as_millis()).ok()
            });
            let old = ended_ms.is_none_or(|t| now_ms.saturating_sub(t) >= keep_ms);
            let large = dir_bytes(&dir.join("logs"), 32) > retention.max_lease_dir_bytes;
            if !(old || large) {
                continue;
            }
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(%lease, %error, "could not remove an ended lease's directory");
                    continue;
                }
            }
            tracing::info!(%lease, old, large, "removed an ended lease's directory");
            self.lock().remove(&lease);
            removed.push(lease);
        }
        removed
    }

    /// Runs [`Leases::sweep_ended`] every `retention.sweep_every`, until aborted.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let this = Arc::clone(self);
        let every = self.config.retention.sweep_every;
        self.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let sweeper = Arc::clone(&this);
                let _ = tokio::task::spawn_blocking(move || sweeper.sweep_ended(now_ms())).await;
            }
        });
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.config.data_dir.join("blobs")
    }

    /// A slice of the lease's combined log, as plaintext (the server seals it to the tenant);
    /// empty until the workload has started.
    pub async fn logs(
        &self,
        lease: LeaseId,
        offset: u64,
        max_bytes: usize,
    ) -> Result<LogSlice, LeaseError> {
        let record = self.get(lease).ok_or(LeaseError::NoRecord { lease })?;
        let Some(handle) = record.handle.clone() else {
            return Ok(LogSlice {
                offset,
                finished: !record.is_live(),
                data: Vec::new(),
            });
        };
        let max_bytes = max_bytes.min(MAX_LOG_CHUNK_BYTES);
        if record.state() == WorkloadState::Exited {
            // Concluded and destroyed: the log file is all there is, and all there will be.
            let path = handle.root_dir.join(LOG_FILE);
            let read =
                tokio::task::spawn_blocking(move || read_log_chunk(&path, offset, max_bytes))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|read| read)
                    .map_err(|source| LeaseError::Log { source })?;
            let (data, len) = read;
            let next_offset = offset + data.len() as u64;
            return Ok(LogSlice {
                offset,
                finished: next_offset >= len,
                data,
            });
        }
        let chunk = self
            .driver_for(&handle)?
            .logs(&handle, offset, max_bytes)
            .await
            .map_err(|source| LeaseError::Driver { source })?;
        Ok(LogSlice {
            offset,
            finished: chunk.finished,
            data: chunk.data,
        })
    }

    /// Opens bytes the tenant sealed to this provider for `ctx`.
    pub fn open_sealed(
        &self,
        ctx: gpunet_protocol::SealContext,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        gpunet_protocol::sealed::open(&self.config.encryption_secret, ctx, sealed)
    }

    /// The lease's workload and its driver, if it is running now.
    fn running_workload(
        &self,
        lease: LeaseId,
    ) -> Result<(WorkloadHandle, Arc<dyn Driver>), LeaseError> {
        let record = self.get(lease).ok_or(LeaseError::NoRecord { lease })?;
        let handle = match record.handle.clone() {
            Some(handle) if record.state() == WorkloadState::Running => handle,
            _ => {
                return Err(LeaseError::Driver {
                    source: gpunet_runtime::DriverError::NotRunning {
                        workload_id: format!("of lease {lease}"),
                    },
                });
            }
        };
        let driver = self.driver_for(&handle)?;
        Ok((handle, driver))
    }

    /// Runs `argv` inside the lease's running workload for its tenant (`gpunet job exec`), as
    /// the workload runs (its isolation, user and limits), and notes it in the lease's log
    /// before and after: the log shows every exec, which the tenant alone can read.
    pub async fn exec(
        &self,
        lease: LeaseId,
        service: Option<&str>,
        argv: &[String],
        timeout: Duration,
    ) -> Result<gpunet_runtime::ExecOutput, LeaseError> {
        let (handle, driver) = self.running_workload(lease)?;
        let log = handle.root_dir.join(LOG_FILE);
        let place = service.map_or(String::new(), |s| format!(" in {s}"));
        note_in_log(
            &log,
            &format!("[gpunet] exec by the tenant{place}: {argv:?}"),
        );
        let out = driver
            .exec(&handle, service, argv, timeout)
            .await
            .map_err(|source| LeaseError::Driver { source });
        let said = match &out {
            Ok(o) if o.timed_out => format!("still running after {} s", timeout.as_secs()),
            Ok(o) => format!("exit {}", o.exit_code.map_or("?".into(), |c| c.to_string())),
            Err(e) => format!("failed: {e}"),
        };
        note_in_log(&log, &format!("[gpunet] exec ended: {said}"));
        out
    }

    /// Starts `argv` with its input attached (and a terminal of `tty`) in the lease's running
    /// workload for its tenant (`gpunet job shell`), noted in the lease's log; the caller notes
    /// its end ([`Leases::note_in_log`]).
    pub async fn shell(
        &self,
        lease: LeaseId,
        service: Option<&str>,
        argv: &[String],
        tty: Option<(u16, u16)>,
    ) -> Result<gpunet_runtime::ShellSession, LeaseError> {
        let (handle, driver) = self.running_workload(lease)?;
        let place = service.map_or(String::new(), |s| format!(" in {s}"));
        let session = driver
            .shell(&handle, service, argv, tty)
            .await
            .map_err(|source| LeaseError::Driver { source })?;
        self.note_in_log(
            lease,
            &format!("[gpunet] shell opened by the tenant{place}: {argv:?}"),
        );
        Ok(session)
    }

    /// Appends a line to the lease's log (what the tenant did inside its workload).
    pub fn note_in_log(&self, lease: LeaseId, line: &str) {
        let Some(handle) = self.get(lease).and_then(|r| r.handle) else {
            return;
        };
        note_in_log(&handle.root_dir.join(LOG_FILE), line);
    }

    /// The key a lease's logs and outputs are sealed to: the manifest's `output_key`, so `None`
    /// until the manifest has arrived, or if it named none.
    pub fn output_key(&self, lease: LeaseId) -> Option<EncryptionKey> {
        self.get(lease)?.output_key
    }

    /// Where the output blob `digest` of `lease` is, if the lease's listing names it. It is
    /// served sealed to [`Leases::output_key`].
    pub fn output_blob(&self, lease: LeaseId, digest: &Hash) -> Option<PathBuf> {
        let record = self.get(lease)?;
        let listing = record.listing?;
        listing
            .files
            .iter()
            .any(|f| f.digest == *digest)
            .then(|| blob_path(&self.blobs_dir(), digest))
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }
}

/// What went wrong placing a lease's inputs: the tenant may try again, or the lease cannot run.
enum InputsProblem {
    Retry(LeaseError),
    Invalid(String),
}

/// A manifest that can run here: the job, the driver of its runtime, the lease's GPUs.
struct Admitted {
    spec: JobSpec,
    driver: Arc<dyn Driver>,
    gpu_uuids: Vec<String>,
}

/// The share of a job's own container when the job has services.
#[derive(Debug, PartialEq, Eq)]
struct MainShare {
    cpu_millis: u32,
    memory_mib: u64,
    gpu_uuids: Vec<String>,
}

/// A job with services as the driver runs it: its own container's share, and a companion per
/// replica of each service. Each takes its spec's CPU and memory and the next of the lease's
/// GPUs in order (admission checked the lease holds them all). A job without services: `None`
/// and none, and its container takes the whole lease.
fn workload_parts(spec: &JobSpec, gpu_uuids: &[String]) -> (Option<MainShare>, Vec<Companion>) {
    if spec.services.is_empty() {
        return (None, Vec::new());
    }
    let mut gpus = gpu_uuids.iter().cloned();
    let mut take = |count: u32| -> Vec<String> {
        gpus.by_ref()
            .take(usize::try_from(count).unwrap_or(usize::MAX))
            .collect()
    };
    let main = MainShare {
        cpu_millis: spec.resources.cpu.0,
        memory_mib: spec.resources.memory.0,
        gpu_uuids: take(spec.resources.gpu.count),
    };
    let mut companions = Vec::new();
    for service in &spec.services {
        for replica in 0..service.count {
            companions.push(Companion {
                service: service.name.clone(),
                replica,
                image: service.run.image.clone().unwrap_or_default(),
                command: service.run.command.clone(),
                args: service.run.args.clone(),
                env: env_of(&service.run),
                cpu_millis: service.resources.cpu.0,
                memory_mib: service.resources.memory.0,
                gpu_uuids: take(service.resources.gpu.count),
                network: network_mode(service.run.network),
                expose: exposed_ports(&service.expose),
                volumes: volumes_of(&service.volumes),
                read_only_rootfs: !service.run.writable_root,
                capabilities: capability_names(service.run.capabilities),
            });
        }
    }
    (Some(main), companions)
}

/// The capabilities a container asking for `wanted` is given, as Docker names them.
fn capability_names(wanted: Capabilities) -> Vec<String> {
    wanted.granted().iter().map(|&c| c.to_owned()).collect()
}

/// A container's environment: `env` and, as variables too, its secrets (validation keeps
/// their names apart). Nothing here logs the environment.
fn env_of(run: &gpunet_protocol::jobspec::RunSpec) -> std::collections::BTreeMap<String, String> {
    let mut env = run.env.clone();
    env.extend(
        run.secrets
            .expose()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env
}

fn network_mode(network: Network) -> NetworkMode {
    match network {
        Network::None => NetworkMode::None,
        Network::Egress => NetworkMode::Egress,
    }
}

/// A container's exposed ports: `http` and `tcp` are both TCP; the proto only names the
/// endpoint's scheme.
fn exposed_ports(expose: &[gpunet_protocol::jobspec::Expose]) -> Vec<ExposedPort> {
    expose
        .iter()
        .map(|e| ExposedPort {
            container_port: e.port,
            proto: PortProto::Tcp,
        })
        .collect()
}

/// A container's volumes as the driver takes them.
fn volumes_of(volumes: &[gpunet_protocol::jobspec::VolumeSpec]) -> Vec<gpunet_runtime::Volume> {
    volumes
        .iter()
        .map(|v| gpunet_runtime::Volume {
            name: v.name.clone(),
            mount: v.mount.clone(),
            size_mib: v.size.0,
        })
        .collect()
}

/// Whether the lease holds what a job with services needs in all: a tenant could commit a
/// manifest asking for more than the order it places (the chain sees only the order), and its
/// containers would then take more than the provider is paid for.
fn services_fit(need: &Resources, reserved: &Resources) -> Result<(), String> {
    let short = [
        (
            "CPU (millicores)",
            u64::from(need.cpu_millis),
            u64::from(reserved.cpu_millis),
        ),
        ("memory (MiB)", need.memory_mib, reserved.memory_mib),
        ("disk (MiB)", need.disk_mib, reserved.disk_mib),
        (
            "GPUs",
            u64::from(need.gpu.count),
            u64::from(reserved.gpu.count),
        ),
    ]
    .into_iter()
    .find(|(_, need, reserved)| need > reserved);
    match short {
        None => Ok(()),
        Some((what, need, reserved)) => Err(format!(
            "its services need {need} {what} in all, more than the order reserved ({reserved}); \
             submit it with `gpunet job submit`, which orders the sum"
        )),
    }
}

/// Writes into `record` what `effects` record — a note, a result, when the lease's result was
/// known (the retention sweep counts from it) — and returns whether it is to be persisted.
fn note(record: &mut LeaseRecord, effects: &[Effect]) -> bool {
    for effect in effects {
        match effect {
            Effect::Note { detail } => record.detail = Some(detail.clone()),
            Effect::Report { outcome, detail } => {
                record.outcome = Some(*outcome);
                if let Some(detail) = detail {
                    record.detail = Some(detail.clone());
                }
            }
            _ => {}
        }
    }
    let over = matches!(
        record.phase,
        Phase::Reporting { .. } | Phase::Releasing | Phase::Ended
    );
    if over && record.ended_ms.is_none() {
        record.ended_ms = Some(now_ms());
    }
    effects.contains(&Effect::Persist)
}

/// The exit of a workload whose end was not seen.
fn lost_exit() -> ExitOutcome {
    ExitOutcome {
        exit_code: None,
        signal: None,
        reason: ExitReason::Lost,
        usage: Usage::default(),
    }
}

/// Where a lease's inputs wait, packed, for the manifest.
fn staged_inputs_path(lease_dir: &Path) -> PathBuf {
    lease_dir.join("inputs.tar")
}

/// Writes checked inputs entries under a fresh `target`: directories 0755, files 0644 (0755
/// executable), each created new — the entries were checked to be relative, without `..` and
/// without links, and nothing else is in `target`, so nothing can be written outside it.
fn write_inputs(
    target: &Path,
    entries: &[gpunet_protocol::inputs::InputEntry],
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    match std::fs::remove_dir_all(target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Modes are set after creation too: the umask must not make inputs unreadable to a
    // container's non-root user.
    let readable = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
    };
    std::fs::DirBuilder::new().mode(0o755).create(target)?;
    readable(target, 0o755)?;
    for entry in entries {
        let path = target.join(&entry.path);
        match &entry.kind {
            gpunet_protocol::inputs::InputKind::Dir => {
                std::fs::DirBuilder::new().mode(0o755).create(&path)?;
                readable(&path, 0o755)?;
            }
            gpunet_protocol::inputs::InputKind::File { bytes, executable } => {
                let mode = if *executable { 0o755 } else { 0o644 };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)?;
                file.write_all(bytes)?;
                file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            }
        }
    }
    Ok(())
}

/// Uploads a lease's checkpoint if it changed; never fails the job.
/// A lease's checkpointing: `record`'s job, sealing to `key`, from `dir`, numbering uploads
/// from `next_seq`.
fn lease_checkpoints(
    store: CheckpointStore,
    record: &LeaseRecord,
    key: EncryptionKey,
    dir: PathBuf,
    next_seq: u64,
) -> LeaseCheckpoints {
    let disk_bytes = record.resources.disk_mib.saturating_mul(1024 * 1024);
    LeaseCheckpoints {
        store,
        order: record.order,
        lease: record.lease,
        key,
        dir,
        max_bytes: MAX_CHECKPOINT_BYTES.min(disk_bytes),
        state: tokio::sync::Mutex::new((None, next_seq)),
    }
}

/// Uploads the lease's checkpoint if it changed; returns the sequence number of the next
/// upload when one was made.
async fn upload_checkpoint(job: &LeaseCheckpoints) -> Option<u64> {
    match job.upload_if_changed().await {
        Ok(Some((digest, next_seq))) => {
            tracing::info!(lease = %job.lease, order = %job.order, %digest, "checkpoint uploaded");
            return Some(next_seq);
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(lease = %job.lease, %error, "checkpoint not uploaded");
        }
    }
    None
}

/// Appends one line of the agent's own to the lease's log (before the workload starts).
fn append_log_line(root: &Path, line: &str) {
    use std::io::Write;
    let path = root.join(LOG_FILE);
    let written = path
        .parent()
        .map_or(Ok(()), gpunet_files::create_private_dir_all)
        .and_then(|()| gpunet_files::open_private_append(&path))
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(error) = written {
        tracing::warn!(?path, %error, "cannot write to the lease's log");
    }
}

/// As [`append_log_line`], unless the log already ends with `line` (a tenant retrying a
/// manifest whose inputs cannot be had gets the reason once, not once per retry). Returns
/// whether it was written.
fn append_log_line_once(root: &Path, line: &str) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let tail = std::fs::File::open(root.join(LOG_FILE)).and_then(|mut f| {
        let len = f.metadata()?.len();
        let want = line.len() as u64 + 1;
        f.seek(SeekFrom::Start(len.saturating_sub(want)))?;
        let mut tail = Vec::new();
        f.take(want).read_to_end(&mut tail)?;
        Ok(tail)
    });
    if tail.is_ok_and(|t| t == format!("{line}\n").as_bytes()) {
        return false;
    }
    append_log_line(root, line);
    true
}

/// Whether the lease still waits for its manifest; else why a manifest (or inputs) cannot be
/// taken now.
fn check_awaiting(record: &LeaseRecord) -> Result<(), LeaseError> {
    if record.phase == Phase::AwaitingManifest {
        return Ok(());
    }
    match record.state() {
        WorkloadState::Failed => Err(LeaseError::Ended {
            lease: record.lease,
        }),
        state => Err(LeaseError::AlreadyReceived { state }),
    }
}

/// Up to `max_bytes` of the file at `path` from `offset`, and the file's length. A missing
/// file reads as empty.
fn read_log_chunk(path: &Path, offset: u64, max_bytes: usize) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if offset >= len {
        return Ok((Vec::new(), len));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(max_bytes as u64).read_to_end(&mut data)?;
    Ok((data, len))
}

/// Milliseconds since the Unix epoch, by the agent's clock.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Bytes of regular files under `dir`, not following symlinks, at most `depth` levels deep.
fn dir_bytes(dir: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0u64;
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_file() {
            total = total.saturating_add(meta.len());
        } else if meta.is_dir() && depth > 0 {
            total = total.saturating_add(dir_bytes(&entry.path(), depth - 1));
        }
    }
    total
}

/// Whether a failed submission may succeed if tried again (the node was unreachable or slow),
/// as opposed to a refusal that will not change.
fn is_transient(e: &ChainError) -> bool {
    match e {
        ChainError::NotFound { .. } => false,
        ChainError::Client { source } => {
            matches!(
                source,
                ClientError::Unreachable { .. }
                    | ClientError::Timeout { .. }
                    | ClientError::Decode { .. }
                    | ClientError::Body { .. }
                    | ClientError::Stream { .. }
            ) || matches!(source, ClientError::Api { status, .. } if *status >= 500)
        }
    }
}

pub use crate::lifecycle::outcome_of;

/// The driver's usage as the chain counts it.
pub fn usage_report(usage: &Usage, gpu: &GpuUsage) -> UsageReport {
    UsageReport {
        wall_ms: usage.wall_ms,
        cpu_ms: usage.cpu_user_ms.saturating_add(usage.cpu_system_ms),
        max_rss_mib: usage.max_rss_kib.div_ceil(1024),
        gpu_util_pct: gpu.mean_util_pct(),
        gpu_memory_mib: (gpu.samples > 0).then_some(gpu.peak_memory_used_mib),
    }
}

fn describe_exit(exit: &ExitOutcome) -> String {
    let reason = serde_json::to_value(exit.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    match (exit.exit_code, exit.signal) {
        (Some(code), _) => format!("{reason}: exit code {code}"),
        (None, Some(sig)) => format!("{reason}: killed by signal {sig}"),
        (None, None) => reason,
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Appends one line to a workload's log (opened for appending, as the driver writes it), for
/// what the agent did to it; a failure is logged here and changes nothing else.
fn note_in_log(path: &Path, line: &str) {
    use std::io::Write;
    let written = gpunet_files::open_private_append(path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(error) = written {
        tracing::warn!(path = %path.display(), %error, "could not note an exec in the lease's log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol's baseline set (what the market matches) and the runtime's grantable
    /// capabilities (what a container may be given) are written twice, as the runtime does not
    /// depend on the protocol: they must be the same list, or a baseline job would be refused
    /// at start where it was matched.
    #[test]
    fn the_baseline_the_market_matches_is_what_the_runtime_grants() {
        assert_eq!(
            capability_names(Capabilities::Baseline),
            gpunet_runtime::GRANTABLE_CAPABILITIES
        );
        assert!(capability_names(Capabilities::None).is_empty());
    }

    #[test]
    fn a_job_with_services_splits_its_gpus_and_must_fit_the_lease() {
        let spec = JobSpec::parse_yaml(
            r#"
version: 1
name: web
kind: service
run: { image: web:1, command: [web], env: { A: "1" } }
services:
  - name: api
    count: 2
    run: { image: api:1, network: egress, command: [api], env: { B: "2" }, secrets: { TOKEN: t } }
    expose: [{ port: 9000 }]
    volumes: [{ name: pg, size: 512Mi, mount: /pg }]
    resources: { cpu: 500m, memory: 256Mi, disk: 1Gi, gpu: { count: 1 } }
resources: { cpu: 1, memory: 512Mi, disk: 1Gi, gpu: { count: 1 } }
pricing: { max_per_hour: "1.00", deposit: "1.00" }
limits: { max_duration: 1h }
"#,
        )
        .expect("parses");
        let gpus: Vec<String> = ["GPU-a", "GPU-b", "GPU-c"].map(String::from).to_vec();
        let (main, companions) = workload_parts(&spec, &gpus);
        assert_eq!(
            main,
            Some(MainShare {
                cpu_millis: 1000,
                memory_mib: 512,
                gpu_uuids: vec!["GPU-a".into()],
            })
        );
        let shares: Vec<(String, u32, Vec<String>)> = companions
            .iter()
            .map(|c| (c.member(), c.cpu_millis, c.gpu_uuids.clone()))
            .collect();
        assert_eq!(
            shares,
            vec![
                ("api-0".into(), 500, vec!["GPU-b".into()]),
                ("api-1".into(), 500, vec!["GPU-c".into()]),
            ]
        );
        let api = &companions[0];
        assert_eq!(
            api.volumes,
            vec![gpunet_runtime::Volume {
                name: "pg".into(),
                mount: "/pg".into(),
                size_mib: 512
            }]
        );
        assert_eq!(api.env.get("TOKEN").map(String::as_str), Some("t"));
        assert_eq!(
            api.env.get("A"),
            None,
            "each service has its own environment"
        );
        assert_eq!((api.network, api.expose.len()), (NetworkMode::Egress, 1));
        assert_eq!(
            workload_parts(
                &JobSpec {
                    services: Vec::new(),
                    ..spec.clone()
                },
                &gpus
            )
            .1
            .len(),
            0
        );

        // A hostile tenant orders less than its manifest's services take.
        let need = spec.resources();
        assert!(services_fit(&need, &need).is_ok());
        let mut short = need.clone();
        short.memory_mib -= 1;
        let why = services_fit(&need, &short).expect_err("short on memory");
        assert!(
            why.contains("1024 memory (MiB) in all, more than the order reserved (1023)"),
            "{why}"
        );
        let mut short = need.clone();
        short.gpu.count = 2;
        assert!(
            services_fit(&need, &short)
                .expect_err("short on GPUs")
                .contains("3 GPUs")
        );
    }

    #[test]
    fn usage_is_summed_and_rounded_up_to_the_mib() {
        let u = usage_report(
            &Usage {
                wall_ms: 10,
                cpu_user_ms: 3,
                cpu_system_ms: 4,
                max_rss_kib: 1_025,
            },
            &GpuUsage::default(),
        );
        assert_eq!(
            u,
            UsageReport {
                wall_ms: 10,
                cpu_ms: 7,
                max_rss_mib: 2,
                gpu_util_pct: None,
                gpu_memory_mib: None,
            }
        );
        let mut gpu = GpuUsage::default();
        gpu.add(gpunet_runtime::GpuSample {
            util_pct: 80,
            memory_used_mib: 30_000,
        });
        let u = usage_report(&Usage::default(), &gpu);
        assert_eq!((u.gpu_util_pct, u.gpu_memory_mib), (Some(80), Some(30_000)));
    }

    #[test]
    fn details_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
