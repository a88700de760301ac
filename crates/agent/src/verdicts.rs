//! Judging `compare: tensors` orders (ADR 0010). The ledger draws a provider to compare the
//! runs of such an order (`VerdictRequested`, listed in the provider's `judging`); the tenant,
//! who alone can open the runs' outputs, sends this agent one bundle per run, sealed to it
//! (`PUT /v1/verdicts/{order}/runs/{lease}`); the agent compares the declared outputs within
//! the job's tolerances and posts its verdict (`PostVerdict`) before the deadline.
//!
//! What a hostile party could do, and what stops it:
//! - **A tenant altering a run** (to have an honest provider slashed, and take part of the
//!   slash): every bundle is checked against the chain before it is kept. The manifest (the
//!   declared outputs and tolerances) must hash to the order's `manifest_hash`; the listing
//!   must give the tag the run reported; each file must hash to its listing entry. A tenant can
//!   withhold a run — it is then `missing`, which costs its provider nothing — but not change
//!   one.
//! - **A tenant or stranger flooding the agent**: only the order's tenant may send (signed
//!   requests, nonces), only while this provider judges the order, only for its runs, each at
//!   most [`gpunet_protocol::MAX_BUNDLE_OUTPUT_BYTES`] of outputs.
//! - **A provider's garbage outputs**: a declared output its listing lacks, or that does not
//!   parse as a tensor file, disagrees with every other run; parsing never panics
//!   (`gpunet_verify::tensors`).
//!
//! The verdict ([`judge`]) is a pure function: the largest set of at least two runs whose
//! declared outputs agree pairwise; ties go to the earliest runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpunet_api::provider::{OutputFile, OutputListing};
use gpunet_client::NodeClient;
use gpunet_protocol::jobspec::JobSpec;
use gpunet_protocol::{
    Address, EncryptionSecret, Hash, LeaseId, MAX_BUNDLE_OUTPUT_BYTES, Msg, OrderId, Purpose,
    Rejection, RunBundle, SealContext, TensorsSpec, result_tag,
};
use gpunet_verify::tensors::{self, Tolerance};

/// Blocks before the deadline at which the agent judges with what it has, at least.
const MIN_MARGIN_BLOCKS: u64 = 2;

/// Why a run's bundle was refused; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("this provider is not judging order {order} now (see the order's verification)")]
    NotJudging { order: OrderId },
    #[error(
        "the request is signed by {signer}, but order {order} belongs to {tenant}; sign with the tenant's key"
    )]
    NotTenant {
        signer: Address,
        order: OrderId,
        tenant: Address,
    },
    #[error("lease {lease} is not a run of order {order} under comparison")]
    NotARun { order: OrderId, lease: LeaseId },
    #[error("the bundle is malformed: {why}")]
    Malformed { why: String },
    #[error("the bundle does not match the chain: {why}")]
    Mismatch { why: String },
    #[error("cannot reach the node: {why}; retry")]
    Node { why: String },
    #[error("cannot keep the bundle: {why}")]
    Store { why: String },
}

/// One run's declared outputs as received: each declared path, with its bytes, or `None` when
/// the run's own listing lacks it (the provider's fault: it disagrees with every run).
pub type RunOutputs = BTreeMap<String, Option<Vec<u8>>>;

/// A verdict: runs that agree (none, or at least two) and runs never received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub agreeing: Vec<LeaseId>,
    pub missing: Vec<LeaseId>,
}

/// Whether two runs' declared outputs all agree within `tol`.
fn agree(spec: &TensorsSpec, tol: Tolerance, a: &RunOutputs, b: &RunOutputs) -> bool {
    spec.outputs.iter().all(|path| {
        let (Some(Some(x)), Some(Some(y))) = (a.get(path), b.get(path)) else {
            return false;
        };
        match tensors::format_of(path) {
            Some(format) => tensors::compare(format, x, y, tol).is_ok(),
            None => false,
        }
    })
}

/// The verdict on `runs` (in the order's run order) given what was received: the largest set
/// of at least two runs that agree pairwise (ties: the set of the earliest runs), and the runs
/// not received. At most 7 runs reach a comparison, so every subset is tried.
pub fn judge(runs: &[LeaseId], got: &BTreeMap<LeaseId, RunOutputs>, spec: &TensorsSpec) -> Verdict {
    let tol = Tolerance {
        rtol: spec.rtol.0,
        atol: spec.atol.0,
    };
    let missing: Vec<LeaseId> = runs
        .iter()
        .filter(|l| !got.contains_key(l))
        .copied()
        .collect();
    let received: Vec<(LeaseId, &RunOutputs)> = runs
        .iter()
        .filter_map(|l| got.get(l).map(|o| (*l, o)))
        .collect();
    let n = received.len().min(16);
    let mut pair = vec![vec![false; n]; n];
    for i in 0..n {
        for j in (i + 1)..n {
            let ok = agree(spec, tol, received[i].1, received[j].1);
            pair[i][j] = ok;
            pair[j][i] = ok;
        }
    }
    let mut best: Vec<usize> = Vec::new();
    for mask in 1u32..(1u32 << n) {
        let members: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
        if members.len() < 2 || members.len() < best.len() {
            continue;
        }
        let clique = members
            .iter()
            .enumerate()
            .all(|(k, &i)| members[k + 1..].iter().all(|&j| pair[i][j]));
        // Larger wins; among equals, the lexicographically first (earliest runs).
        if clique && (members.len() > best.len() || members < best) {
            best = members;
        }
    }
    Verdict {
        agreeing: best.iter().map(|&i| received[i].0).collect(),
        missing,
    }
}

/// Checks a run's bundle against the chain's commitments and returns its declared outputs.
/// `manifest_hash` is the order's, `tag` the run's reported tag.
pub fn check_bundle(
    order: OrderId,
    manifest_hash: &Hash,
    tag: &Hash,
    bundle: &RunBundle,
) -> Result<(TensorsSpec, RunOutputs), BundleError> {
    let mismatch = |why: String| BundleError::Mismatch { why };
    if Hash::of(&bundle.manifest) != *manifest_hash {
        return Err(mismatch(
            "the manifest is not the one the order commits to; send the job's own manifest".into(),
        ));
    }
    let spec = JobSpec::from_manifest_bytes(&bundle.manifest)
        .map_err(|e| mismatch(format!("the manifest does not parse: {e}")))?;
    let Some(tensors) = spec.verification.tensors.clone() else {
        return Err(mismatch(
            "the job does not declare tensors to compare (verification.tensors)".into(),
        ));
    };
    let listing: Vec<OutputFile> = bundle
        .listing
        .iter()
        .map(|e| OutputFile {
            path: e.path.clone(),
            size: e.size,
            digest: e.digest,
        })
        .collect();
    if result_tag(order, &OutputListing::digest_of(&listing)) != *tag {
        return Err(mismatch(
            "the listing is not the one the run reported (its tag differs); send the listing \
             the run's provider serves"
                .into(),
        ));
    }
    let mut files: BTreeMap<&str, &[u8]> = BTreeMap::new();
    let mut total: u64 = 0;
    for (path, bytes) in &bundle.files {
        if !tensors.outputs.contains(path) {
            return Err(mismatch(format!(
                "{path:?} is not a declared output; send only verification.tensors.outputs"
            )));
        }
        if files.insert(path, bytes).is_some() {
            return Err(mismatch(format!("{path:?} is sent twice")));
        }
        total = total.saturating_add(bytes.len() as u64);
    }
    if total > MAX_BUNDLE_OUTPUT_BYTES {
        return Err(mismatch(format!(
            "the declared outputs are {total} bytes, over the limit of {MAX_BUNDLE_OUTPUT_BYTES}"
        )));
    }
    let mut outputs = RunOutputs::new();
    for path in &tensors.outputs {
        let Some(entry) = listing.iter().find(|f| f.path == *path) else {
            outputs.insert(path.clone(), None);
            if files.contains_key(path.as_str()) {
                return Err(mismatch(format!(
                    "{path:?} is sent but the run's listing does not hold it"
                )));
            }
            continue;
        };
        let Some(bytes) = files.get(path.as_str()) else {
            return Err(mismatch(format!(
                "{path:?} is in the run's listing but was not sent; send every declared output \
                 the listing holds"
            )));
        };
        if bytes.len() as u64 != entry.size || Hash::of(bytes) != entry.digest {
            return Err(mismatch(format!(
                "{path:?} does not match the run's listing; send the bytes the provider served"
            )));
        }
        outputs.insert(path.clone(), Some(bytes.to_vec()));
    }
    Ok((tensors, outputs))
}

/// The agent's judging: receives bundles and posts verdicts.
pub struct Judge {
    client: Arc<NodeClient>,
    address: Address,
    secret: EncryptionSecret,
    /// `data_dir/verdicts/<order>/<lease>`: bundles checked and kept.
    dir: PathBuf,
    /// Orders whose verdict this agent sent.
    posted: Mutex<BTreeSet<OrderId>>,
}

/// What the order says of a comparison this agent judges.
struct Judging {
    tenant: Address,
    manifest_hash: Hash,
    /// The runs under comparison with their tags, in run order.
    runs: Vec<(LeaseId, Hash)>,
    deadline_height: u64,
}

impl Judge {
    pub fn new(
        client: Arc<NodeClient>,
        address: Address,
        secret: EncryptionSecret,
        data_dir: &std::path::Path,
    ) -> Judge {
        Judge {
            client,
            address,
            secret,
            dir: data_dir.join("verdicts"),
            posted: Mutex::new(BTreeSet::new()),
        }
    }

    fn order_dir(&self, order: OrderId) -> PathBuf {
        self.dir.join(order.0.to_string())
    }

    async fn judging(&self, order: OrderId) -> Result<Judging, BundleError> {
        let view = self.client.order(order).await.map_err(|e| match e {
            gpunet_client::ClientError::Api { status: 404, .. } => {
                BundleError::NotJudging { order }
            }
            e => BundleError::Node { why: e.to_string() },
        })?;
        let Some(v) = view
            .verification
            .filter(|v| v.stage == "judging" && v.verifier == Some(self.address))
        else {
            return Err(BundleError::NotJudging { order });
        };
        Ok(Judging {
            tenant: view.tenant,
            manifest_hash: view.terms.manifest_hash,
            runs: v
                .runs
                .iter()
                .filter(|r| !r.wrong)
                .map(|r| (r.lease, r.tag))
                .collect(),
            deadline_height: v.until_height.unwrap_or(0),
        })
    }

    /// Whether `signer` may send runs of `order`: its tenant, while this provider judges it.
    pub async fn check_tenant(&self, signer: Address, order: OrderId) -> Result<(), BundleError> {
        let judging = self.judging(order).await?;
        if signer != judging.tenant {
            return Err(BundleError::NotTenant {
                signer,
                order,
                tenant: judging.tenant,
            });
        }
        Ok(())
    }

    /// Receives the tenant's sealed bundle for the run of `lease`: opens it, checks it
    /// against the chain, and keeps it for the verdict.
    pub async fn receive(
        &self,
        signer: Address,
        order: OrderId,
        lease: LeaseId,
        sealed: &[u8],
    ) -> Result<(), BundleError> {
        let judging = self.judging(order).await?;
        if signer != judging.tenant {
            return Err(BundleError::NotTenant {
                signer,
                order,
                tenant: judging.tenant,
            });
        }
        let Some((_, tag)) = judging.runs.iter().find(|(l, _)| *l == lease) else {
            return Err(BundleError::NotARun { order, lease });
        };
        let ctx = SealContext {
            purpose: Purpose::Verdict,
            lease,
        };
        let plain = gpunet_protocol::sealed::open(&self.secret, ctx, sealed).map_err(|e| {
            BundleError::Malformed {
                why: format!("it does not open as sealed to this provider for lease {lease}: {e}"),
            }
        })?;
        let bundle: RunBundle = borsh::from_slice(&plain).map_err(|e| BundleError::Malformed {
            why: format!("not a run bundle: {e}"),
        })?;
        check_bundle(order, &judging.manifest_hash, tag, &bundle)?;
        let dir = self.order_dir(order);
        let store = |why: std::io::Error| BundleError::Store {
            why: why.to_string(),
        };
        gpunet_files::create_private_dir_all(&dir).map_err(store)?;
        gpunet_files::write_private(&dir.join(lease.0.to_string()), &plain).map_err(store)?;
        tracing::info!(%order, %lease, "received a run's outputs to judge");
        Ok(())
    }

    /// The bundles kept for `order`, checked again (they were checked on receipt; this reads
    /// what is on disk).
    fn kept(
        &self,
        order: OrderId,
        judging: &Judging,
    ) -> (Option<TensorsSpec>, BTreeMap<LeaseId, RunOutputs>) {
        let mut spec = None;
        let mut got = BTreeMap::new();
        for (lease, tag) in &judging.runs {
            let Ok(plain) = std::fs::read(self.order_dir(order).join(lease.0.to_string())) else {
                continue;
            };
            let Ok(bundle) = borsh::from_slice::<RunBundle>(&plain) else {
                continue;
            };
            if let Ok((s, outputs)) = check_bundle(order, &judging.manifest_hash, tag, &bundle) {
                spec = Some(s);
                got.insert(*lease, outputs);
            }
        }
        (spec, got)
    }

    /// One round: every order this provider judges whose runs are all in, or whose deadline
    /// is near, gets its verdict.
    pub async fn round(&self, height: u64, margin: u64) {
        let judging = self.judging_orders().await;
        self.judge_due(judging, height, margin).await;
    }

    /// The orders this provider judges now, as its record on chain says (none if the node
    /// cannot be read: the next round retries).
    async fn judging_orders(&self) -> Vec<OrderId> {
        match self.client.provider(&self.address).await {
            Ok(Some(p)) => p.judging,
            Ok(None) => Vec::new(),
            Err(error) => {
                tracing::debug!(%error, "cannot read this provider's judging; retrying");
                Vec::new()
            }
        }
    }

    /// [`Judge::round`] over `judging`.
    async fn judge_due(&self, judging: Vec<OrderId>, height: u64, margin: u64) {
        for order in judging {
            if self.posted_lock().contains(&order) {
                continue;
            }
            let Ok(j) = self.judging(order).await else {
                continue;
            };
            // Which runs are here is a look at the directory; the bundles are read (and checked
            // again) only once the verdict is due.
            let dir = self.order_dir(order);
            let all_in = j
                .runs
                .iter()
                .all(|(lease, _)| dir.join(lease.0.to_string()).is_file());
            let near = height.saturating_add(margin) >= j.deadline_height;
            if !all_in && !near {
                continue;
            }
            let (spec, got) = self.kept(order, &j);
            let runs: Vec<LeaseId> = j.runs.iter().map(|(l, _)| *l).collect();
            let verdict = match spec {
                Some(spec) => {
                    let runs = runs.clone();
                    tokio::task::spawn_blocking(move || judge(&runs, &got, &spec))
                        .await
                        .unwrap_or_else(|_| Verdict {
                            agreeing: Vec::new(),
                            missing: Vec::new(),
                        })
                }
                // Nothing received: every run is missing.
                None => Verdict {
                    agreeing: Vec::new(),
                    missing: runs,
                },
            };
            self.post(order, verdict).await;
        }
    }

    fn posted_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<OrderId>> {
        self.posted
            .lock()
            .expect("the posted set's lock is never held across a panic")
    }

    async fn post(&self, order: OrderId, verdict: Verdict) {
        let msg = Msg::PostVerdict {
            order,
            agreeing: verdict.agreeing.clone(),
            missing: verdict.missing.clone(),
        };
        match self
            .client
            .send_and_wait(msg, Duration::from_secs(30))
            .await
        {
            Ok(tx) if tx.rejection.is_none() => {
                tracing::info!(%order, agreeing = ?verdict.agreeing, missing = ?verdict.missing, "posted a verdict");
                self.done(order);
            }
            Ok(tx) => {
                tracing::warn!(%order, rejection = ?tx.rejection, "the verdict was refused");
                self.done(order);
            }
            Err(e) if e.rejection() == Some(Rejection::VerdictInvalid) => {
                tracing::warn!(%order, error = %e, "the verdict was refused");
                self.done(order);
            }
            Err(error) => {
                tracing::warn!(%order, %error, "verdict not sent; the next round retries")
            }
        }
    }

    fn done(&self, order: OrderId) {
        self.posted_lock().insert(order);
        let _ = std::fs::remove_dir_all(self.order_dir(order));
    }
}

/// Every `every`, judges what is due. `window` is the params' `verdict_window_blocks`: the
/// agent judges with what it has a quarter of it before the deadline. Runs until aborted.
pub async fn run(judge: Arc<Judge>, every: Duration, window: u64) {
    let margin = (window / 4).max(MIN_MARGIN_BLOCKS);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // One read of its own record a tick; the height only when it judges something.
        let judging = judge.judging_orders().await;
        if judging.is_empty() {
            continue;
        }
        let Ok(status) = judge.client.status().await else {
            continue;
        };
        judge.judge_due(judging, status.height, margin).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_protocol::{BundleEntry, Tol};

    fn npy_f32(values: &[f32]) -> Vec<u8> {
        let header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
            values.len()
        );
        let mut header = header.into_bytes();
        // Pad so that the data starts on a 64-byte boundary, ending in a newline.
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header);
        for v in values {
            out.extend(v.to_le_bytes());
        }
        out
    }

    fn spec() -> TensorsSpec {
        TensorsSpec {
            outputs: vec!["y.npy".into()],
            rtol: Tol(1e-3),
            atol: Tol(1e-6),
        }
    }

    fn outputs(v: &[f32]) -> RunOutputs {
        [("y.npy".to_owned(), Some(npy_f32(v)))].into()
    }

    #[test]
    fn the_largest_agreeing_set_wins_and_missing_runs_are_named() {
        let runs = [LeaseId(1), LeaseId(2), LeaseId(3), LeaseId(4)];
        let got: BTreeMap<LeaseId, RunOutputs> = [
            (LeaseId(1), outputs(&[1.0, 2.0])),
            (LeaseId(2), outputs(&[5.0, 2.0])),
            (LeaseId(3), outputs(&[1.0004, 2.0])),
        ]
        .into();
        let v = judge(&runs, &got, &spec());
        assert_eq!(v.agreeing, vec![LeaseId(1), LeaseId(3)]);
        assert_eq!(v.missing, vec![LeaseId(4)]);
    }

    #[test]
    fn no_two_agreeing_gives_an_empty_set_and_a_run_without_the_output_agrees_with_none() {
        let runs = [LeaseId(1), LeaseId(2), LeaseId(3)];
        let mut lacking = outputs(&[1.0]);
        lacking.insert("y.npy".into(), None);
        let got: BTreeMap<LeaseId, RunOutputs> = [
            (LeaseId(1), outputs(&[1.0])),
            (LeaseId(2), outputs(&[3.0])),
            (LeaseId(3), lacking),
        ]
        .into();
        let v = judge(&runs, &got, &spec());
        assert!(v.agreeing.is_empty());
        assert!(v.missing.is_empty());
        // Ties go to the earliest runs.
        let got: BTreeMap<LeaseId, RunOutputs> = [
            (LeaseId(1), outputs(&[1.0])),
            (LeaseId(2), outputs(&[1.0])),
            (LeaseId(3), outputs(&[7.0])),
            (LeaseId(4), outputs(&[7.0])),
        ]
        .into();
        let runs = [LeaseId(1), LeaseId(2), LeaseId(3), LeaseId(4)];
        assert_eq!(
            judge(&runs, &got, &spec()).agreeing,
            vec![LeaseId(1), LeaseId(2)]
        );
    }

    fn bundle(order: OrderId, data: Vec<u8>) -> (Hash, Hash, RunBundle) {
        let manifest = tensor_job().manifest_bytes();
        let entry = BundleEntry {
            path: "y.npy".into(),
            size: data.len() as u64,
            digest: Hash::of(&data),
        };
        let listing = [OutputFile {
            path: entry.path.clone(),
            size: entry.size,
            digest: entry.digest,
        }];
        let tag = result_tag(order, &OutputListing::digest_of(&listing));
        (
            Hash::of(&manifest),
            tag,
            RunBundle {
                manifest,
                listing: vec![entry],
                files: vec![("y.npy".into(), data)],
            },
        )
    }

    fn tensor_job() -> JobSpec {
        JobSpec::parse_yaml(
            "version: 1\nname: t\nrun: { command: [\"true\"] }\nresources: { cpu: 1, memory: 64Mi, disk: 64Mi }\npricing: { max_per_hour: \"1.00\", deposit: \"1.00\" }\nlimits: { max_duration: 1m }\nverification: { mode: replicas, replicas: 2, compare: tensors, tensors: { outputs: [y.npy], rtol: 1e-3, atol: 1e-6 } }\n",
        )
        .expect("a valid tensors job")
    }

    #[test]
    fn a_bundle_is_kept_only_as_the_chain_committed_to_it() {
        let order = OrderId(7);
        let (manifest_hash, tag, good) = bundle(order, npy_f32(&[1.0, 2.0]));
        assert!(check_bundle(order, &manifest_hash, &tag, &good).is_ok());
        // Altered bytes, an altered listing, another manifest, an undeclared or missing file.
        let mut altered = good.clone();
        altered.files[0].1 = npy_f32(&[9.0, 2.0]);
        let mut relisted = altered.clone();
        relisted.listing[0].digest = Hash::of(&relisted.files[0].1);
        relisted.listing[0].size = relisted.files[0].1.len() as u64;
        let mut other_manifest = good.clone();
        other_manifest.manifest.push(b' ');
        let mut extra = good.clone();
        extra.files.push(("z.npy".into(), vec![1]));
        let mut withheld = good.clone();
        withheld.files.clear();
        for (what, b) in [
            ("altered bytes", altered),
            ("a listing the run did not report", relisted),
            ("another manifest", other_manifest),
            ("an undeclared file", extra),
            ("a listed output not sent", withheld),
        ] {
            assert!(
                check_bundle(order, &manifest_hash, &tag, &b).is_err(),
                "{what} was kept"
            );
        }
        // Another order's tag.
        assert!(check_bundle(OrderId(8), &manifest_hash, &tag, &good).is_err());
    }
}
