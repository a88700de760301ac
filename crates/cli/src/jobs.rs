//! `gpunet job …`: submit a job spec and follow it through the market (order open → bids →
//! leased → running → done), deliver its manifest to the winning provider, and read its status,
//! logs, outputs and bill.
//!
//! Privacy: at submit the spec is salted (so the manifest hash on chain reveals nothing) and
//! given the tenant's output key (derived from its account key, so nothing new is stored); the
//! manifest, `run.secrets` included, travels only sealed to the winning provider's registered
//! encryption key, and outputs come back sealed to the tenant. Secret values are never printed.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gpunet_api::node::{LeaseState, LeaseView, OrderState, OrderView};
use gpunet_api::provider::WorkloadState;
use gpunet_client::{KeyFile, NodeClient, ProviderClient};
use gpunet_protocol::jobspec::JobSpec;
use gpunet_protocol::{Address, Amount, EncryptionKey, Event, Hash, LeaseId, Msg, OrderId};
use serde::Serialize;

use crate::progress::Progress;

/// How often a followed job is polled.
const POLL_MS: u64 = 100;
/// How long to wait for the order transaction to be included.
const TX_TIMEOUT: Duration = Duration::from_secs(30);
/// Most attempts to hand the manifest to the provider.
const MANIFEST_ATTEMPTS: u32 = 20;
/// How long an order may wait without bids before the market explainer is asked why.
const EXPLAIN_AFTER: Duration = Duration::from_secs(2);

/// Says once why an open order has no bids yet, if no provider registered now could run it.
async fn explain_waiting(client: &NodeClient, order_id: OrderId, progress: &Progress) {
    if let Ok(view) = client.explain_order(order_id).await
        && !view.explanation.matches()
    {
        progress.stage(&format!(
            "order {order_id} has not matched: {}",
            view.explanation.to_string().trim_end()
        ));
    }
}

/// Reads and validates a job spec file.
pub fn read_spec(path: &Path) -> Result<JobSpec> {
    // Bytes, not a string: a file that is not UTF-8 gets an error naming the bad byte.
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read job spec {}", path.display()))?;
    JobSpec::parse_yaml_bytes(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// What following a submitted job found.
pub struct Followed {
    pub order: OrderView,
    pub lease: Option<LeaseView>,
    pub submit_to_running_ms: Option<u64>,
}

/// A job as it was submitted: the spec (salted, with the output key, committing to its
/// inputs) and its packed inputs, which the winning provider must be handed before the
/// manifest.
#[derive(Debug, Clone)]
pub struct Submission {
    pub spec: JobSpec,
    pub inputs: Option<Vec<u8>>,
}

impl std::ops::Deref for Submission {
    type Target = JobSpec;
    fn deref(&self) -> &JobSpec {
        &self.spec
    }
}

/// Where the jobs a key submitted on a chain are journaled: `<key's dir>/jobs/<chain>/`. A retry
/// of a job on a new provider needs its manifest and inputs delivered again, and only the
/// tenant holds them: the journal lets `gpunet job wait` and `job follow` do that after the
/// submitting command has gone.
pub fn journal_dir(key_path: &Path, chain_id: &str) -> PathBuf {
    let chain: String = chain_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    key_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("jobs")
        .join(chain)
}

/// Journals a submission (0700 directory, 0600 files): its manifest and packed inputs.
pub fn save_submission(dir: &Path, order: OrderId, sub: &Submission) -> Result<()> {
    gpunet_files::create_private_dir_all(dir)
        .with_context(|| format!("creating the job journal {}", dir.display()))?;
    gpunet_files::write_private(
        &dir.join(format!("{order}.json")),
        &sub.spec.manifest_bytes(),
    )
    .with_context(|| format!("journaling job {order} in {}", dir.display()))?;
    if let Some(archive) = &sub.inputs {
        gpunet_files::write_private(&dir.join(format!("{order}.inputs")), archive)
            .with_context(|| format!("journaling job {order}'s inputs in {}", dir.display()))?;
    }
    Ok(())
}

/// The journaled submission of `order`, if there is one and it is the very manifest the order
/// commits to (and its inputs the archive the manifest names); anything else is ignored.
pub fn load_submission(dir: &Path, order: &OrderView) -> Option<Submission> {
    let bytes = std::fs::read(dir.join(format!("{}.json", order.id))).ok()?;
    if Hash::of(&bytes) != order.terms.manifest_hash {
        tracing::warn!(order = %order.id, "the journaled manifest does not match the order; not using it");
        return None;
    }
    let spec: JobSpec = serde_json::from_slice(&bytes).ok()?;
    let inputs = match &spec.inputs_archive {
        // Inputs in the job's own bucket are fetched by each provider, not delivered.
        Some(_) if spec.inputs_blob.is_some() => None,
        Some(a) => {
            let archive = std::fs::read(dir.join(format!("{}.inputs", order.id))).ok()?;
            (Hash::of(&archive) == a.digest).then_some(archive)?.into()
        }
        None => None,
    };
    Some(Submission { spec, inputs })
}

/// The spec as it is submitted: with a fresh random salt, `key`'s output key for the
/// provider to seal outputs to, and a fresh checkpoint key for the job's checkpoints.
pub fn prepare_submission(spec: &JobSpec, key: &KeyFile) -> Result<JobSpec> {
    Ok(prepare_submission_in(spec, key, None)?.0)
}

/// As [`prepare_submission`], and the spec's `inputs` read below `base` (the spec file's
/// directory) and packed: the spec commits to the archive's digest, and the archive is what to
/// deliver to the provider.
pub fn prepare_submission_in(
    spec: &JobSpec,
    key: &KeyFile,
    base: Option<&Path>,
) -> Result<(JobSpec, Option<Vec<u8>>)> {
    let mut spec = spec.clone();
    // Credentials named by environment variable are read now: the manifest carries values,
    // sealed to the provider like `run.secrets`.
    if let Some(storage) = spec.storage.as_mut() {
        storage
            .resolve_env(|name| std::env::var(name).ok())
            .map_err(|e| anyhow::anyhow!("the job spec cannot be submitted: {e}"))?;
    }
    spec.salt = Some(gpunet_client::sealing::random_salt());
    spec.output_key = Some(key.output_secret().public());
    // Fresh per job: every attempt's provider seals and opens the job's checkpoints with it.
    spec.checkpoint_key = Some(gpunet_protocol::jobspec::CheckpointKey::from_bytes(
        gpunet_client::sealing::random_secret().to_bytes(),
    ));
    let archive = if spec.inputs.is_empty() {
        None
    } else {
        let base = base.context(
            "the spec lists inputs, which are read relative to the spec file; submit it from a file",
        )?;
        let archive = gpunet_client::inputs::pack_inputs(base, &spec.inputs)
            .map_err(|e| anyhow::anyhow!("the job's inputs cannot be sent: {e}"))?;
        spec.inputs_archive = Some(gpunet_protocol::jobspec::InputsArchive {
            digest: gpunet_protocol::Hash::of(&archive),
            bytes: archive.len() as u64,
        });
        Some(archive)
    };
    spec.validate()
        .map_err(|e| anyhow::anyhow!("the job spec cannot be submitted: {e}"))?;
    Ok((spec, archive))
}

/// The encryption key `provider` registered on chain: manifests are sealed to it.
pub async fn provider_encryption_key(
    client: &NodeClient,
    provider: Address,
) -> Result<EncryptionKey> {
    client
        .provider(&provider)
        .await
        .with_context(|| format!("reading provider {provider}"))?
        .map(|p| p.profile.encryption_key)
        .with_context(|| {
            format!("provider {provider} is not registered, so its encryption key is unknown")
        })
}

/// Job `id`'s running lease and its provider's encryption key, for a command run inside it
/// (`what`: "to run a command in"); a job that is not running is an error that says so.
pub async fn running_lease(
    client: &NodeClient,
    id: OrderId,
    what: &str,
) -> Result<(LeaseView, EncryptionKey)> {
    let order = client.order(id).await?;
    let lease = order
        .lease
        .filter(|l| l.state == LeaseState::Running)
        .with_context(|| {
            format!("the job is not running, so there is nothing {what}; check `gpunet job status`")
        })?;
    let provider_key = provider_encryption_key(client, lease.provider).await?;
    Ok((lease, provider_key))
}

/// Creates the order, waits for the lease, hands the manifest to the provider, and — with
/// `until_done` — follows the job to its end.
pub async fn submit_and_follow(
    client: &NodeClient,
    key: &KeyFile,
    spec: &JobSpec,
    until_done: bool,
    progress: &Progress,
) -> Result<Followed> {
    submit_and_follow_in(client, key, spec, None, until_done, progress).await
}

/// As [`submit_and_follow`], reading the spec's inputs below `base` (the spec file's
/// directory) and delivering them to the provider before the manifest.
pub async fn submit_and_follow_in(
    client: &NodeClient,
    key: &KeyFile,
    spec: &JobSpec,
    base: Option<&Path>,
    until_done: bool,
    progress: &Progress,
) -> Result<Followed> {
    let started = Instant::now();
    let (order_id, spec) = create_order(client, key, spec, base, progress).await?;
    follow(
        client,
        key,
        order_id,
        Some(&spec),
        until_done,
        started,
        progress,
    )
    .await
}

/// Creates the order for `spec` (its inputs read below `base`, the spec file's directory):
/// returns its id and the job as submitted, whose inputs and manifest the winning provider must
/// be handed.
pub async fn create_order(
    client: &NodeClient,
    key: &KeyFile,
    spec: &JobSpec,
    base: Option<&Path>,
    progress: &Progress,
) -> Result<(OrderId, Submission)> {
    let (mut spec, mut inputs) = prepare_submission_in(spec, key, base)?;
    match (&inputs, spec.storage.is_some()) {
        (Some(archive), true) => {
            // A job with its own bucket: the inputs go there, sealed to the job's key, and
            // every attempt's provider fetches them; nothing is pushed to providers.
            spec.inputs_blob = Some(upload_inputs(&spec, archive, progress).await?);
            spec.validate()
                .map_err(|e| anyhow::anyhow!("the job spec cannot be submitted: {e}"))?;
            inputs = None;
        }
        (Some(archive), false) => progress.stage(&format!(
            "inputs packed: {} bytes, sent sealed to the provider once leased",
            archive.len()
        )),
        (None, _) => {}
    }
    progress.status("submitting order");
    let view = client
        .send_and_wait(
            Msg::CreateOrder {
                terms: spec.order_terms(),
            },
            TX_TIMEOUT,
        )
        .await
        .context("submitting the order")?;
    let order_id = view
        .events
        .iter()
        .find_map(|e| match e {
            Event::OrderCreated { order, .. } => Some(*order),
            _ => None,
        })
        .context("the order transaction was applied but reported no order id")?;
    progress.stage(&format!(
        "order {order_id} open ({}, deposit {} usd in escrow)",
        spec.name,
        spec.order_terms().deposit
    ));
    Ok((order_id, Submission { spec, inputs }))
}

/// Seals the packed inputs to the job's checkpoint key (purpose `JobInputs`, bound to the
/// salt: `SealContext::job_inputs`) and puts them in the job's own bucket, showing each part
/// sent; returns the sealed blob's digest, for the manifest's `inputs_blob`. The bucket holds
/// only the sealed bytes; a provider of another job cannot open them, and whoever can write
/// the bucket cannot put other inputs in their place (the manifest names the blob's digest
/// and the archive's).
async fn upload_inputs(spec: &JobSpec, archive: &[u8], progress: &Progress) -> Result<Hash> {
    use gpunet_blobs::BlobStore;
    let (Some(storage), Some(key), Some(salt)) =
        (&spec.storage, spec.checkpoint_key.as_ref(), spec.salt)
    else {
        bail!("the job's inputs cannot go to its bucket: the prepared spec lacks its key");
    };
    let sealed = gpunet_client::sealing::seal(
        &key.public(),
        gpunet_protocol::SealContext::job_inputs(&salt),
        archive,
    )
    .context("sealing the job's inputs")?;
    // Through a private file, so the store streams it in parts and reports each.
    let dir = tempfile::tempdir().context("creating a temporary directory for the inputs")?;
    let path = dir.path().join("inputs.sealed");
    gpunet_files::write_private(&path, &sealed)
        .with_context(|| format!("writing the sealed inputs to {}", path.display()))?;
    let where_ = format!(
        "bucket {} at {}",
        storage.s3.bucket,
        storage.s3.endpoint.trim_end_matches('/')
    );
    progress.status(&format!(
        "uploading the sealed inputs ({} bytes) to the job's {where_}",
        sealed.len()
    ));
    let store = job_store_of(storage).with_context(|| format!("opening the job's {where_}"))?;
    let blob = store
        .put_file_with(&path, &UploadProgress { progress })
        .await
        .with_context(|| {
            format!(
                "uploading the job's sealed inputs to its {where_}; check the endpoint and \
                 that the credentials may write the bucket"
            )
        })?;
    progress.stage(&format!(
        "inputs packed: {} bytes, sealed to the job's key and uploaded to its {where_} (blob {})",
        archive.len(),
        blob.digest
    ));
    Ok(blob.digest)
}

/// Shows each part of the inputs' upload.
struct UploadProgress<'a> {
    progress: &'a Progress,
}

impl gpunet_blobs::PutProgress for UploadProgress<'_> {
    fn part_done(&self, part: gpunet_blobs::PartDone) -> std::ops::ControlFlow<()> {
        self.progress.status(&format!(
            "uploading the sealed inputs: part {} of {} sent",
            part.index + 1,
            part.parts_total
        ));
        std::ops::ControlFlow::Continue(())
    }
}

/// Follows an order; delivers `spec`'s manifest when a lease appears (if given).
pub async fn follow(
    client: &NodeClient,
    key: &KeyFile,
    order_id: OrderId,
    spec: Option<&Submission>,
    until_done: bool,
    started: Instant,
    progress: &Progress,
) -> Result<Followed> {
    let inputs = spec.and_then(|s| s.inputs.as_deref());
    let mut inputs_delivered = inputs.is_none();
    let mut seen_bids = 0usize;
    let mut delivered = false;
    let mut manifest_attempts = 0u32;
    let mut provider_key: Option<EncryptionKey> = None;
    let mut announced_lease = false;
    let mut announced_billing = false;
    let mut submit_to_running_ms = None;
    let following = Instant::now();
    let mut explained = false;
    // The attempt being followed: a lost or failed attempt the recovery policy retries brings
    // a new lease, to which the manifest (and inputs) must be delivered again.
    let mut current: Option<gpunet_protocol::LeaseId> = None;
    let mut announced_reopen = 0usize;
    let mut courier = Courier::default();
    loop {
        let order = client.order(order_id).await?;
        if let Some(sub) = spec {
            courier.carry(client, key, &order, sub, progress).await;
        }
        // A spot-checked job whose check was not drawn: done, unless the tenant disputes it.
        if let Some(v) = order
            .verification
            .as_ref()
            .filter(|v| v.stage == "disputable")
            && let Some(first) = v.runs.first()
        {
            let lease = client.lease(first.lease).await?;
            progress.stage("ended: completed");
            progress.stage(&format!(
                "verification: unchecked (the spot check was not drawn); to have it rerun \
                 elsewhere and compared, `gpunet job dispute {order_id}` before height {}",
                v.until_height.unwrap_or_default()
            ));
            return Ok(Followed {
                order,
                lease: Some(lease),
                submit_to_running_ms,
            });
        }
        if let Some(last) = order
            .attempts
            .last()
            .filter(|_| order.state == OrderState::Open)
            && last.state == LeaseState::Ended
            && announced_reopen < order.attempts.len()
        {
            announced_reopen = order.attempts.len();
            let reason = last.end_reason.map(end_reason_shown).unwrap_or_default();
            if order.verification.is_some()
                && last.end_reason == Some(gpunet_protocol::LeaseEndReason::Completed)
            {
                // A verified job's run is in; another provider reruns it to compare (a spot
                // check drawn, a replica, a referee): the manifest goes to it too.
                progress.stage(&format!(
                    "run {} on {} completed; the network reruns the job on another provider to \
                     compare results",
                    last.attempt,
                    last.provider.short()
                ));
            } else {
                progress.stage(&format!(
                    "attempt {} on {} ended: {reason}; the network retries it on another provider \
                 (attempt {} of at most {})",
                    last.attempt,
                    last.provider.short(),
                    last.attempt + 1,
                    order.terms.recovery.max_attempts
                ));
            }
        }
        if let Some(lease) = &order.lease
            && current != Some(lease.id)
        {
            if current.is_some() {
                // A new attempt: everything is delivered afresh to its provider.
                inputs_delivered = inputs.is_none();
                delivered = false;
                manifest_attempts = 0;
                provider_key = None;
                announced_lease = false;
                announced_billing = false;
                if spec.is_none() && lease.state == LeaseState::Pending {
                    progress.stage(&format!(
                        "attempt {} needs the job's manifest, which only the submitting command \
                         holds; keep `gpunet job submit --wait` running for jobs that may be retried",
                        lease.attempt
                    ));
                }
            }
            current = Some(lease.id);
        }
        if order.bids.len() != seen_bids && order.state == OrderState::Open {
            seen_bids = order.bids.len();
            let best = order.bids.iter().map(|b| b.price_per_hour).min();
            if let Some(best) = best {
                progress.stage(&format!(
                    "{seen_bids} bid(s), best {best} usd/hour (max {})",
                    order.terms.max_price_per_hour
                ));
            }
        }
        match order.state {
            OrderState::Open => {
                progress.status(&format!("order {order_id}: waiting for bids"));
                if !explained && order.bids.is_empty() && following.elapsed() >= EXPLAIN_AFTER {
                    explained = true;
                    explain_waiting(client, order_id, progress).await;
                }
            }
            OrderState::Expired => bail!(
                "no provider took order {order_id} before it expired; the deposit was refunded. \
                 Check `gpunet market providers` for capacity and raise pricing.max_per_hour if bids were too high"
            ),
            OrderState::Cancelled => {
                bail!("order {order_id} was cancelled; the deposit was refunded")
            }
            OrderState::Verifying => {
                progress.status(&format!("order {order_id}: runs being compared"));
            }
            OrderState::Leased | OrderState::Closed => {}
        }
        if let Some(lease) = order.lease.clone() {
            if !announced_lease {
                announced_lease = true;
                progress.stage(&format!(
                    "leased: lease {} to {} at {} usd/hour",
                    lease.id,
                    lease.provider.short(),
                    lease.price_per_hour
                ));
            }
            if let (Some(spec), false, LeaseState::Pending) = (spec, delivered, lease.state) {
                progress.status("sending the sealed manifest to the provider");
                let provider_key = match provider_key {
                    Some(k) => k,
                    None => {
                        let k = provider_encryption_key(client, lease.provider).await?;
                        provider_key = Some(k);
                        k
                    }
                };
                let pc = ProviderClient::new(&lease.provider_endpoint, key.clone());
                if let (Some(archive), false) = (inputs, inputs_delivered) {
                    progress.status("sending the sealed inputs to the provider");
                    match pc.deliver_inputs(lease.id, &provider_key, archive).await {
                        Ok(()) => {
                            inputs_delivered = true;
                            progress.stage("inputs delivered");
                        }
                        Err(e) => {
                            manifest_attempts += 1;
                            if manifest_attempts == MANIFEST_ATTEMPTS {
                                unreachable_provider(progress, &lease, &e);
                            }
                            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
                            continue;
                        }
                    }
                }
                match pc
                    .deliver_manifest(lease.id, &provider_key, &spec.manifest_bytes())
                    .await
                {
                    Ok(workload) => {
                        delivered = true;
                        progress.stage("manifest delivered and verified by the provider");
                        // The provider answers once the workload has started: that is the
                        // moment the job runs. The chain records it a block later.
                        if matches!(
                            workload.state,
                            WorkloadState::Running | WorkloadState::Exited
                        ) && submit_to_running_ms.is_none()
                        {
                            let ms = started.elapsed().as_millis() as u64;
                            submit_to_running_ms = Some(ms);
                            progress.stage(&format!("running ({ms} ms after submit)"));
                        }
                    }
                    // The provider took the manifest and cannot run it (the image cannot be
                    // had, the spec cannot run there): it ends the lease itself, so stop
                    // sending and follow the lease to its end reason and refund.
                    Err(gpunet_client::ClientError::Api { body, .. })
                        if matches!(
                            body.name.as_str(),
                            "image_unavailable" | "manifest_invalid" | "start_failed"
                        ) =>
                    {
                        delivered = true;
                        progress.stage(&format!("the provider cannot run it: {}", body.message));
                    }
                    Err(e) => {
                        manifest_attempts += 1;
                        if manifest_attempts == MANIFEST_ATTEMPTS {
                            unreachable_provider(progress, &lease, &e);
                        }
                    }
                }
            }
            if lease.state != LeaseState::Pending && submit_to_running_ms.is_none() {
                let ms = started.elapsed().as_millis() as u64;
                submit_to_running_ms = Some(ms);
                if lease.started_ms.is_some() {
                    progress.stage(&format!("running ({ms} ms after submit)"));
                }
            }
            if lease.state == LeaseState::Running && !announced_billing {
                announced_billing = true;
                progress.stage("started on chain: billing by the block");
            }
            if lease.state == LeaseState::Paused {
                progress.status(&format!(
                    "lease {}: paused, the escrow ran out; top up with `gpunet job top-up {order_id} AMOUNT`",
                    lease.id
                ));
            }
            let done = lease.state == LeaseState::Ended;
            if done || (!until_done && lease.state == LeaseState::Running) {
                match lease.end_reason {
                    _ if !done => {}
                    Some(gpunet_protocol::LeaseEndReason::Completed) | None => {
                        progress.stage("ended: completed");
                        if let Some(outcome) = order
                            .verification
                            .as_ref()
                            .and_then(|v| v.outcome.as_deref())
                        {
                            let runs = order.verification.as_ref().map_or(0, |v| v.runs.len());
                            progress.stage(&format!("verification: {outcome} ({runs} run(s))"));
                        }
                    }
                    Some(r) => progress.fail(&format!("ended: {}", end_reason_shown(r))),
                }
                return Ok(Followed {
                    order,
                    lease: Some(lease),
                    submit_to_running_ms,
                });
            }
            progress.status(&format!("lease {}: {:?}", lease.id, lease.state).to_lowercase());
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// The provider of `lease` does not take the job (unreachable, or refusing): say so once. The
/// follower keeps trying while the lease waits — a restarting provider takes it when it is
/// back — and the chain ends the attempt if the provider stays away (it goes silent, or never
/// starts it), after which the recovery policy retries it elsewhere.
fn unreachable_provider(progress: &Progress, lease: &LeaseView, e: &gpunet_client::ClientError) {
    progress.stage(&format!(
        "provider {} does not take the job yet ({e}); still trying while attempt {} waits, and \
         the network retries it elsewhere if that provider stays away",
        lease.provider.short(),
        lease.attempt
    ));
}

/// The bill of a job: every attempt's billed time and pay added up (a retried job pays for
/// each attempt's own time), the refund of its escrow, and the price of the latest attempt.
#[derive(Debug, Serialize)]
pub struct Bill {
    /// Attempts billed (`gpunet job status ID` lists each).
    pub attempts: usize,
    /// The latest attempt's price.
    pub price_per_hour: String,
    pub seconds_billed: String,
    pub tenant_paid: String,
    pub provider_earned: String,
    pub protocol_fee: String,
    pub refund: String,
}

/// The bill of `order`, whose latest attempt is `lease` (the order's attempts as read, with
/// `lease` standing in for its own entry, which may be newer).
pub fn bill(order: &OrderView, lease: &LeaseView) -> Bill {
    let mut attempts: Vec<&LeaseView> =
        order.attempts.iter().filter(|a| a.id != lease.id).collect();
    attempts.push(lease);
    let sum = |f: fn(&LeaseView) -> Amount| {
        attempts
            .iter()
            .try_fold(Amount::ZERO, |total, a| total.checked_add(f(a)))
            .map_or_else(|| "overflow".to_owned(), |a| a.to_string())
    };
    let billed_ms: u64 = attempts
        .iter()
        .map(|a| a.billed_ms)
        .fold(0, u64::saturating_add);
    Bill {
        attempts: attempts.len(),
        price_per_hour: lease.price_per_hour.to_string(),
        seconds_billed: format!("{}.{:03}", billed_ms / 1000, billed_ms % 1000),
        tenant_paid: sum(|a| a.paid),
        provider_earned: sum(|a| a.provider_earned),
        protocol_fee: sum(|a| a.protocol_fee),
        refund: sum(|a| a.refund),
    }
}

pub fn print_bill(order: &OrderView, lease: &LeaseView) {
    let b = bill(order, lease);
    if b.attempts > 1 {
        println!(
            "bill (usd), {} attempts together (gpunet job status {} lists each):",
            b.attempts, order.id
        );
    } else {
        println!("bill (usd):");
    }
    println!("  price per hour   {}", b.price_per_hour);
    println!("  seconds billed   {}", b.seconds_billed);
    println!("  amount paid      {}", b.tenant_paid);
    println!("    to provider    {}", b.provider_earned);
    println!("    protocol fee   {}", b.protocol_fee);
    println!("  refund           {}", b.refund);
}

/// What an escrow event of `order` tells its tenant, with its name: running low, paused when
/// it ran out, resumed after a top-up. `None` for any other event.
pub fn escrow_notice(event: &Event, order: OrderId) -> Option<(&'static str, String)> {
    match event {
        Event::EscrowLow {
            order: o,
            escrow,
            remaining_ms,
            ..
        } if *o == order => Some((
            "escrow_low",
            format!(
                "job {order}'s escrow ({escrow} usd) pays for about {} s more; top it up with                  `gpunet job top-up {order} AMOUNT`, or the job pauses when it runs out",
                remaining_ms / 1_000
            ),
        )),
        Event::LeasePaused {
            order: o,
            grace_until_height,
            ..
        } if *o == order => Some((
            "lease_paused",
            format!(
                "job {order}'s escrow ran out: its workload is paused and billing stopped; it                  ends insufficient_funds at height {grace_until_height} unless topped up with                  `gpunet job top-up {order} AMOUNT`"
            ),
        )),
        Event::LeaseResumed { order: o, .. } if *o == order => Some((
            "lease_resumed",
            format!("job {order} was topped up and runs again"),
        )),
        _ => None,
    }
}

/// Follows the chain's events from `from_height` (`None`: from now on) and hands `each` every
/// escrow notice of `order` ([`escrow_notice`]). Never returns: it runs until dropped,
/// reopening a broken stream from the last height seen (a notice replayed by the reopening is
/// not handed twice).
pub async fn watch_escrow(
    client: &NodeClient,
    order: OrderId,
    from_height: Option<u64>,
    mut each: impl FnMut(&str, &str),
) {
    use futures::StreamExt;
    let mut from = match from_height {
        Some(h) => h,
        None => client.status().await.map_or(0, |s| s.height),
    };
    let mut seen: std::collections::BTreeSet<(u64, String)> = std::collections::BTreeSet::new();
    loop {
        if let Ok(stream) = client.events(from).await {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(envelope)) = stream.next().await {
                from = from.max(envelope.height);
                if let Some((name, text)) = escrow_notice(&envelope.event, order)
                    && seen.insert((envelope.height, text.clone()))
                {
                    each(name, &text);
                }
                // Only the current height's notices can come again.
                seen.retain(|(h, _)| *h >= from);
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A relative output path that cannot escape the destination directory.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) && !path.is_empty() {
        Some(p.to_path_buf())
    } else {
        None
    }
}

/// Plaintext bytes of log asked for per request.
const LOG_CHUNK_BYTES: usize = 256 * 1024;

/// Reads `lease`'s log from its provider from the start, each slice opened with `key`'s output
/// secret (the agent seals logs to it) and handed to `each`; with `follow`, keeps polling until
/// the log is finished.
pub async fn read_logs(
    key: &KeyFile,
    lease: &LeaseView,
    follow: bool,
    mut each: impl FnMut(&str),
) -> Result<()> {
    let output_secret = key.output_secret();
    let pc = ProviderClient::new(&lease.provider_endpoint, key.clone());
    let mut offset = 0;
    loop {
        let chunk = pc
            .logs(lease.id, offset, LOG_CHUNK_BYTES, &output_secret)
            .await?;
        each(&chunk.text);
        offset = chunk.next_offset;
        if chunk.finished || (!follow && chunk.text.is_empty()) {
            return Ok(());
        }
        if chunk.text.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Downloads a lease's outputs into `dir`, opening each (they come sealed to `key`'s output
/// key) and verifying its digest. Returns (path, contents) of each file, for callers that show
/// them.
/// Whether `reported` (a lease's `output_digest` on chain) commits to the output listing with
/// digest `listing`: it is the digest itself, or — for a run of a verified order — its result
/// tag (ADR 0010).
fn reported(reported: Hash, order: OrderId, listing: &Hash) -> bool {
    reported == *listing || reported == gpunet_protocol::result_tag(order, listing)
}

/// A `compare: tensors` order's runs, sent to its verifier: fetched from each run's provider
/// (or the job's bucket), opened with the tenant's key, and sealed to the verifier. Only the
/// tenant can open the outputs, so the submitting command carries them.
#[derive(Default)]
pub struct Courier {
    /// Runs sent, by verifier.
    sent: std::collections::BTreeSet<(Address, LeaseId)>,
    /// Failed tries per run and verifier; it gives up on a run after [`COURIER_TRIES`].
    tries: std::collections::BTreeMap<(Address, LeaseId), u32>,
}

/// Tries to send one run to a verifier before giving up on it (the verifier then names it
/// missing, which costs its provider nothing).
const COURIER_TRIES: u32 = 10;

impl Courier {
    /// Sends the verifier every run of `order` it does not have yet.
    pub async fn carry(
        &mut self,
        client: &NodeClient,
        key: &KeyFile,
        order: &OrderView,
        spec: &Submission,
        progress: &Progress,
    ) {
        let Some(v) = order.verification.as_ref().filter(|v| v.stage == "judging") else {
            return;
        };
        let Some(verifier) = v.verifier else {
            return;
        };
        let Some(declared) = spec.verification.tensors.as_ref() else {
            return;
        };
        for run in v.runs.iter().filter(|r| !r.wrong) {
            let at = (verifier, run.lease);
            if self.sent.contains(&at) || self.tries.get(&at).copied().unwrap_or(0) >= COURIER_TRIES
            {
                continue;
            }
            progress.status(&format!(
                "sending run {} to verifier {}",
                run.lease,
                verifier.short()
            ));
            match send_run(
                client,
                key,
                order,
                spec,
                &declared.outputs,
                run.lease,
                verifier,
            )
            .await
            {
                Ok(()) => {
                    self.sent.insert(at);
                    progress.stage(&format!(
                        "verification: run {} sent to verifier {}, which compares the declared outputs",
                        run.lease,
                        verifier.short()
                    ));
                }
                Err(e) => {
                    let tries = self.tries.entry(at).or_default();
                    *tries += 1;
                    if *tries == COURIER_TRIES {
                        progress.stage(&format!(
                            "verification: could not send run {} to verifier {}: {e:#}; it will                              count as missing (nobody is slashed for it)",
                            run.lease,
                            verifier.short()
                        ));
                    }
                }
            }
        }
    }
}

async fn send_run(
    client: &NodeClient,
    key: &KeyFile,
    order: &OrderView,
    spec: &Submission,
    declared: &[String],
    lease: LeaseId,
    verifier: Address,
) -> Result<()> {
    let lease_view = client.lease(lease).await?;
    let from_store = match &spec.storage {
        Some(storage) => {
            let chain_id = client.status().await?.chain_id;
            fetch_outputs_from_store(key, storage, &chain_id, &lease_view, None).await?
        }
        None => None,
    };
    let entry = |path: &str, size: u64, digest: Hash| gpunet_protocol::BundleEntry {
        path: path.to_owned(),
        size,
        digest,
    };
    let (listing, files): (Vec<_>, Vec<_>) = match from_store {
        Some((_, files)) => (
            files
                .iter()
                .map(|(path, bytes)| entry(path, bytes.len() as u64, Hash::of(bytes)))
                .collect(),
            files
                .into_iter()
                .filter(|(path, _)| declared.contains(path))
                .collect(),
        ),
        // From the provider: the whole listing, but only the declared files' bytes.
        None => {
            let pc = ProviderClient::new(&lease_view.provider_endpoint, key.clone());
            let listing = pc.outputs(lease).await?;
            let secret = key.output_secret();
            let mut files = Vec::new();
            for f in listing.files.iter().filter(|f| declared.contains(&f.path)) {
                let bytes = pc
                    .output_opened(lease, &f.digest, &secret)
                    .await
                    .with_context(|| format!("fetching output {} of lease {lease}", f.path))?;
                files.push((f.path.clone(), bytes));
            }
            (
                listing
                    .files
                    .iter()
                    .map(|f| entry(&f.path, f.size, f.digest))
                    .collect(),
                files,
            )
        }
    };
    let bundle = gpunet_protocol::RunBundle {
        manifest: spec.manifest_bytes(),
        listing,
        files,
    };
    let Some(v) = client.provider(&verifier).await? else {
        bail!("verifier {verifier} is no longer registered");
    };
    ProviderClient::new(&v.profile.endpoint, key.clone())
        .deliver_run_for_verdict(order.id, lease, &v.profile.encryption_key, &bundle)
        .await?;
    Ok(())
}

pub async fn fetch_outputs(
    key: &KeyFile,
    lease: &LeaseView,
    dir: Option<&Path>,
) -> Result<(Hash, Vec<(String, Vec<u8>)>)> {
    let pc = ProviderClient::new(&lease.provider_endpoint, key.clone());
    let output_secret = key.output_secret();
    let listing = pc.outputs(lease.id).await?;
    if let Some(r) = &lease.result
        && let Some(d) = r.output_digest
        && !reported(d, lease.order, &listing.digest)
    {
        bail!(
            "the provider's output listing digest {} differs from the {} it reported on chain",
            listing.digest,
            d
        );
    }
    let mut files = Vec::new();
    for f in &listing.files {
        let rel = safe_relative(&f.path)
            .with_context(|| format!("the provider sent an unsafe output path {:?}", f.path))?;
        let bytes = pc
            .output_opened(lease.id, &f.digest, &output_secret)
            .await
            .with_context(|| format!("fetching output {}", f.path))?;
        if let Some(dir) = dir {
            write_output(dir, &rel, &bytes)?;
        }
        files.push((f.path.clone(), bytes));
    }
    Ok((listing.digest, files))
}

/// Downloads a lease's outputs from the job's own bucket (the spec's `storage:`, with the
/// credentials the tenant holds), where the provider put them sealed to `key`'s output key;
/// each is opened and checked against the listing, and the listing against the digest the
/// provider reported on chain. `Ok(None)`: the bucket holds no listing for the lease (the
/// provider kept the outputs itself: a refused endpoint, a failed upload, an agent restart).
pub async fn fetch_outputs_from_store(
    key: &KeyFile,
    storage: &gpunet_protocol::jobspec::Storage,
    chain_id: &str,
    lease: &LeaseView,
    dir: Option<&Path>,
) -> Result<Option<(Hash, Vec<(String, Vec<u8>)>)>> {
    use gpunet_agent::tenant_store::outputs_ref;
    use gpunet_blobs::BlobStore;
    let s3 = &storage.s3;
    let where_ = format!("bucket {} at {}", s3.bucket, s3.endpoint);
    let store = job_store_of(storage).with_context(|| format!("opening the job's {where_}"))?;
    let name = outputs_ref(chain_id, lease.order, lease.id, "listing")?;
    let Some(listing_digest) = store
        .get_ref(&name)
        .await
        .with_context(|| format!("reading the job's outputs from its {where_}"))?
    else {
        return Ok(None);
    };
    let scratch = std::env::temp_dir().join(format!(
        "gpunet-outputs-{}-{}",
        std::process::id(),
        lease.id
    ));
    gpunet_files::create_private_dir_all(&scratch)
        .with_context(|| format!("creating {}", scratch.display()))?;
    let fetched = fetch_listed(
        key,
        &store,
        &scratch,
        &where_,
        chain_id,
        lease,
        listing_digest,
        dir,
    )
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    fetched.map(Some)
}

/// Largest output listing read from a job's bucket: 16 MiB (the agent's own record limit).
const MAX_LISTING_BYTES: u64 = 16 * 1024 * 1024;

/// [`fetch_outputs_from_store`] once the listing is found: `scratch` holds each sealed blob
/// while it is opened.
#[allow(clippy::too_many_arguments)]
async fn fetch_listed(
    key: &KeyFile,
    store: &gpunet_blobs::S3Store,
    scratch: &Path,
    where_: &str,
    chain_id: &str,
    lease: &LeaseView,
    listing_digest: Hash,
    dir: Option<&Path>,
) -> Result<(Hash, Vec<(String, Vec<u8>)>)> {
    use gpunet_agent::tenant_store::outputs_ref;
    use gpunet_blobs::BlobStore;
    use gpunet_protocol::{Purpose, SealContext};
    let output_secret = key.output_secret();
    let ctx = SealContext {
        purpose: Purpose::Output,
        lease: lease.id,
    };
    // Whoever can write the bucket (the provider holds the credentials while it runs the job)
    // could leave anything there: each blob is read only if its size is what it must be.
    let get = |digest: Hash, what: String, max_sealed_bytes: u64| {
        let path = scratch.join(digest.to_hex());
        let secret = &output_secret;
        async move {
            // The store checks the sealed bytes' digest on the way in; the seal checks the rest.
            store
                .get_to_file(&digest, &path)
                .await
                .with_context(|| format!("fetching {what} from the job's {where_}"))?;
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            if len > max_sealed_bytes {
                let _ = std::fs::remove_file(&path);
                bail!(
                    "{what} in the job's bucket is {len} bytes, more than the {max_sealed_bytes} it may be"
                );
            }
            let sealed = std::fs::read(&path).with_context(|| format!("reading {what}"))?;
            let _ = std::fs::remove_file(&path);
            gpunet_protocol::sealed::open(secret, ctx, &sealed).with_context(|| {
                format!("{what} in the job's bucket does not open with your output key")
            })
        }
    };
    let max_listing = gpunet_protocol::sealed::sealed_len(MAX_LISTING_BYTES);
    let listing_bytes = get(listing_digest, "the output listing".into(), max_listing).await?;
    let listing: gpunet_api::provider::OutputListing = serde_json::from_slice(&listing_bytes)
        .context("the output listing in the job's bucket is not a listing")?;
    if listing.lease != lease.id
        || listing.digest != gpunet_api::provider::OutputListing::digest_of(&listing.files)
    {
        bail!(
            "the output listing in the job's bucket is not lease {}'s",
            lease.id
        );
    }
    if let Some(r) = &lease.result
        && let Some(d) = r.output_digest
        && !reported(d, lease.order, &listing.digest)
    {
        bail!(
            "the output listing in the job's bucket has digest {}, not the {d} the provider \
             reported on chain",
            listing.digest
        );
    }
    let mut files = Vec::new();
    for f in &listing.files {
        let rel = safe_relative(&f.path)
            .with_context(|| format!("the listing names an unsafe output path {:?}", f.path))?;
        let name = outputs_ref(
            chain_id,
            lease.order,
            lease.id,
            &format!("files/{}", f.digest),
        )?;
        let sealed_digest = store
            .get_ref(&name)
            .await
            .with_context(|| format!("reading output {} from the job's {where_}", f.path))?
            .with_context(|| {
                format!("output {} is listed but not in the job's {where_}", f.path)
            })?;
        let sealed_len = gpunet_protocol::sealed::sealed_len(f.size);
        let bytes = get(sealed_digest, format!("output {}", f.path), sealed_len).await?;
        if Hash::of(&bytes) != f.digest {
            bail!(
                "output {} from the job's bucket does not match its digest {}",
                f.path,
                f.digest
            );
        }
        if let Some(dir) = dir {
            write_output(dir, &rel, &bytes)?;
        }
        files.push((f.path.clone(), bytes));
    }
    Ok((listing.digest, files))
}

/// Writes one fetched output at `rel` (already checked safe) under `dir`, making its parents.
fn write_output(dir: &Path, rel: &Path, bytes: &[u8]) -> Result<()> {
    let target = dir.join(rel);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))
}

/// The tenant's side of the job's own bucket: the tenant's own configuration, so neither the
/// endpoint guard nor https is imposed (a test server on loopback is the tenant's choice).
fn job_store_of(storage: &gpunet_protocol::jobspec::Storage) -> Result<gpunet_blobs::S3Store> {
    let c = &storage.credentials;
    let value = |v: &Option<gpunet_protocol::jobspec::SecretString>| {
        v.as_ref().map(|s| s.expose().to_owned())
    };
    let config = gpunet_blobs::S3Config {
        endpoint: Some(storage.s3.endpoint.trim_end_matches('/').to_owned()),
        bucket: storage.s3.bucket.clone(),
        region: storage.s3.region.clone(),
        access_key_id: value(&c.access_key_id)
            .context("the journaled spec has no access key id")?,
        secret_access_key: value(&c.secret_access_key)
            .context("the journaled spec has no secret access key")?,
        session_token: value(&c.session_token),
        prefix: storage.s3.prefix.clone(),
        allow_http: storage.s3.endpoint.starts_with("http://"),
        public_addresses_only: false,
    };
    Ok(gpunet_blobs::S3Store::new(config)?)
}

/// An end reason as people read it: its name, and for the ones a tenant can fix, how.
pub fn end_reason_shown(reason: gpunet_protocol::LeaseEndReason) -> String {
    use gpunet_protocol::LeaseEndReason;
    let hint = match reason {
        LeaseEndReason::DiskExceeded => {
            " (the job wrote more than its resources.disk; ask for more, e.g. disk: 10Gi)"
        }
        LeaseEndReason::OutOfMemory => " (the job needed more than its resources.memory)",
        LeaseEndReason::TimedOut => " (the job ran past its limits.max_duration)",
        _ => "",
    };
    format!("{}{hint}", reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_cannot_escape_the_destination() {
        assert!(safe_relative("greeting.txt").is_some());
        assert!(safe_relative("a/b.txt").is_some());
        assert!(safe_relative("../etc/passwd").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("a/../../b").is_none());
        assert!(safe_relative("").is_none());
    }

    #[test]
    fn escrow_events_of_the_job_become_notices_that_name_the_fix() {
        use gpunet_protocol::LeaseId;
        let (job, other) = (OrderId(7), OrderId(8));
        let low = Event::EscrowLow {
            order: job,
            lease: LeaseId(3),
            escrow: Amount::from_micros(120_000),
            remaining_ms: 240_500,
        };
        let (name, text) = escrow_notice(&low, job).expect("a notice");
        assert_eq!(name, "escrow_low");
        assert!(text.contains("about 240 s more"), "{text}");
        assert!(text.contains("gpunet job top-up 7 AMOUNT"), "{text}");
        assert_eq!(escrow_notice(&low, other), None, "another job's event");
        let paused = Event::LeasePaused {
            lease: LeaseId(3),
            order: job,
            grace_until_height: 1_500,
        };
        let (name, text) = escrow_notice(&paused, job).expect("a notice");
        assert_eq!(name, "lease_paused");
        assert!(
            text.contains("height 1500") && text.contains("top-up 7"),
            "{text}"
        );
        let resumed = Event::LeaseResumed {
            lease: LeaseId(3),
            order: job,
        };
        assert_eq!(
            escrow_notice(&resumed, job).map(|n| n.0),
            Some("lease_resumed")
        );
        let topped = Event::EscrowToppedUp {
            order: job,
            from: gpunet_protocol::Address([1; 32]),
            amount: Amount::from_micros(1),
            escrow: Amount::from_micros(2),
        };
        assert_eq!(escrow_notice(&topped, job), None);
    }
}
