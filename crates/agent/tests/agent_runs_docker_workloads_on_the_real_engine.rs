//! The agent's lease lifecycle with the real Docker driver against the real engine, and a stub
//! chain that records what the agent submits: a batch job's outputs, logs and result; an image
//! that cannot be had; a memory hog; an agent restart mid-run; and a service's endpoint.
//!
//! Without a reachable engine each test prints "skipped: …" and passes — unless
//! `GPUNET_REQUIRE_DOCKER=1` (set by `.ci/run`, so CI always runs them), when it fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gpunet_agent::leases::{LeaseError, Leases, LeasesConfig};
use gpunet_agent::{Chain, ChainError, Drivers, Retention};
use gpunet_api::node::{LeaseState, LeaseView, OrderState, OrderView};
use gpunet_api::provider::WorkloadState;
use gpunet_client::KeyFile;
use gpunet_protocol::jobspec::{Expose, ExposeProto, HealthCheck, JobKind, JobSpec, Network, Salt};
use gpunet_protocol::{
    Amount, Capabilities, EncryptionSecret, GpuRequirement, LeaseId, Msg, OrderId, Purpose,
    Resources, SealContext, WorkloadOutcome,
};
use gpunet_runtime::testimage::ContainerCleanup;
use gpunet_runtime::{DockerDriver, ProcessDriver};

/// Longest any wait in these tests may take.
const TEST_WAIT_LIMIT: Duration = Duration::from_secs(90);

const BASE: &str = r#"
version: 1
name: docker-test
run:
  image: placeholder
  command: ["true"]
resources: { cpu: 1, memory: 128Mi, disk: 1Gi }
pricing: { max_per_hour: "2.50", deposit: "5.00" }
limits: { max_duration: 10m }
outputs: true
"#;

/// The test image, or `None` when the engine is unreachable and skipping is allowed.
async fn engine(test: &str) -> Option<String> {
    gpunet_runtime::testimage::test_image_or_skip(test).await
}

/// A lease id unique to this test process and test, so parallel runs never share a container.
fn lease_id(n: u64) -> LeaseId {
    LeaseId(u64::from(std::process::id()) * 100 + n)
}

/// A chain that knows one lease and its order, and records what the agent submits.
struct StubChain {
    lease: LeaseView,
    order: OrderView,
    submitted: Mutex<Vec<Msg>>,
}

#[async_trait::async_trait]
impl Chain for StubChain {
    async fn lease(&self, id: LeaseId) -> Result<LeaseView, ChainError> {
        if id == self.lease.id {
            Ok(self.lease.clone())
        } else {
            Err(ChainError::NotFound {
                what: format!("lease {id}"),
            })
        }
    }
    async fn order(&self, id: OrderId) -> Result<OrderView, ChainError> {
        if id == self.order.id {
            Ok(self.order.clone())
        } else {
            Err(ChainError::NotFound {
                what: format!("order {id}"),
            })
        }
    }
    async fn submit(&self, msg: Msg) -> Result<(), ChainError> {
        self.submitted.lock().expect("lock").push(msg);
        Ok(())
    }
}

impl StubChain {
    fn completions(&self) -> Vec<(WorkloadOutcome, Msg)> {
        self.submitted
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|m| match m {
                Msg::CompleteLease { result, .. } => Some((result.outcome, m.clone())),
                _ => None,
            })
            .collect()
    }
    fn starts(&self) -> usize {
        self.submitted
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| matches!(m, Msg::StartLease { .. }))
            .count()
    }
}

struct World {
    dir: tempfile::TempDir,
    chain: Arc<StubChain>,
    lease: LeaseId,
    secret: EncryptionSecret,
    manifest: Vec<u8>,
    _cleanup: ContainerCleanup,
}

impl World {
    /// A lease of `memory_mib` for `spec`, on a chain stub; no agent yet.
    fn new(n: u64, spec: &JobSpec, memory_mib: u64) -> World {
        let lease = lease_id(n);
        let tenant = KeyFile::generate();
        let provider = KeyFile::generate().address();
        let mut spec = spec.clone();
        spec.salt = Some(Salt([n as u8; 32]));
        spec.output_key = Some(tenant.output_secret().public());
        spec.validate().expect("the test spec is valid");
        let order = OrderId(n);
        let chain = Arc::new(StubChain {
            lease: LeaseView {
                id: lease,
                order,
                tenant: tenant.address(),
                provider,
                provider_endpoint: "http://127.0.0.1:1".into(),
                endpoints: Vec::new(),
                price_per_hour: Amount::from_micros(110_000),
                resources: Resources {
                    cpu_millis: 1_000,
                    memory_mib,
                    disk_mib: 1_024,
                    gpu: GpuRequirement::default(),
                },
                gpu_slots: vec![],
                attempt: 1,
                state: LeaseState::Pending,
                end_reason: None,
                created_height: 1,
                created_ms: 0,
                started_ms: None,
                ended_ms: None,
                last_proof_ms: 0,
                last_proof_height: 0,
                paused_since_height: None,
                billed_ms: 0,
                paid: Amount::ZERO,
                protocol_fee: Amount::ZERO,
                provider_earned: Amount::ZERO,
                refund: Amount::ZERO,
                result: None,
            },
            order: OrderView {
                id: order,
                tenant: tenant.address(),
                terms: spec.order_terms(),
                state: OrderState::Leased,
                created_height: 1,
                created_ms: 0,
                escrow: Amount::from_micros(5_000_000),
                bids: vec![],
                lease: None,
                attempts: vec![],
                excluded: vec![],
                open_since_height: 1,
                not_before_ms: 0,
                verification: None,
            },
            submitted: Mutex::new(Vec::new()),
        });
        World {
            dir: tempfile::tempdir().expect("tempdir"),
            chain,
            lease,
            secret: gpunet_client::sealing::random_secret(),
            manifest: spec.manifest_bytes(),
            _cleanup: ContainerCleanup::new(format!(
                "lease-{lease}-{}",
                hex::encode(&provider.0[..6])
            )),
        }
    }

    /// An agent's lease book over this world's data dir, with a fresh Docker driver (and the
    /// process driver, as `gpunet dev` has both).
    fn agent(&self) -> Arc<Leases> {
        self.agent_granting(Capabilities::None)
    }

    /// [`World::agent`] granting containers at most `capabilities`.
    fn agent_granting(&self, capabilities: Capabilities) -> Arc<Leases> {
        let mut drivers = Drivers::new();
        drivers.add(Arc::new(ProcessDriver::new()));
        drivers.add(Arc::new(DockerDriver::new()));
        let chain: Arc<dyn Chain> = self.chain.clone();
        Leases::new(
            LeasesConfig {
                capabilities,
                provider: self.chain.lease.provider,
                data_dir: self.dir.path().join("agent"),
                gpu_uuids: vec![],
                manifest_timeout: Duration::from_secs(60),
                encryption_secret: self.secret.clone(),
                retention: Retention::default(),
                policy: gpunet_agent::TenantPolicy::default(),
                checkpoints: None,
                exit_grace: gpunet_agent::DEFAULT_EXIT_GRACE,
                chain_id: "gpunet-test".into(),
                allow_private_blob_endpoints: false,
                ingress: None,
            },
            chain,
            drivers,
        )
        .expect("the lease records load")
    }

    async fn deliver(&self, leases: &Arc<Leases>) -> Result<(), LeaseError> {
        assert!(leases.track(&self.chain.lease));
        let sealed = gpunet_client::sealing::seal(
            &self.secret.public(),
            SealContext {
                purpose: Purpose::Manifest,
                lease: self.lease,
            },
            &self.manifest,
        )
        .expect("seals");
        leases
            .deliver_manifest(self.lease, &sealed)
            .await
            .map(|_| ())
    }
}

fn spec(image: &str, script: &str) -> JobSpec {
    let mut spec = JobSpec::parse_yaml(BASE).expect("the base spec parses");
    spec.run.image = Some(image.to_owned());
    spec.run.command = vec!["/bin/sh".into(), "-c".into(), script.into()];
    spec
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TEST_WAIT_LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn whole_log(leases: &Leases, lease: LeaseId) -> String {
    let mut text = String::new();
    let mut offset = 0;
    loop {
        let chunk = leases.logs(lease, offset, 1024).await.expect("reads logs");
        text.push_str(&String::from_utf8_lossy(&chunk.data));
        offset = chunk.next_offset();
        if chunk.finished {
            return text;
        }
    }
}

#[tokio::test]
async fn a_batch_job_runs_in_a_container_and_its_outputs_logs_and_usage_are_reported() {
    let Some(image) = engine("batch job through the agent").await else {
        return;
    };
    let w = World::new(
        1,
        &spec(
            &image,
            "echo working; echo oops >&2; printf hello > /outputs/greeting.txt; sleep 1",
        ),
        128,
    );
    let leases = w.agent();
    w.deliver(&leases).await.expect("the manifest is accepted");
    wait_until("the result to be reported", || {
        !w.chain.completions().is_empty()
    })
    .await;
    let completions = w.chain.completions();
    assert_eq!(completions.len(), 1);
    let Msg::CompleteLease { result, .. } = &completions[0].1 else {
        unreachable!("filtered to CompleteLease");
    };
    assert_eq!(result.outcome, WorkloadOutcome::Succeeded, "{result:?}");
    assert_eq!(result.exit_code, Some(0));
    // A second of sleep, timed by the engine (from the container's start and finish times).
    assert!(
        (900..30_000).contains(&result.usage.wall_ms),
        "the engine's usage flows: {result:?}"
    );
    assert_eq!(w.chain.starts(), 1);

    let record = leases.get(w.lease).expect("record");
    let listing = record.listing.clone().expect("outputs kept");
    assert_eq!(result.output_digest, Some(listing.digest));
    assert_eq!(listing.files.len(), 1);
    assert_eq!(listing.files[0].path, "greeting.txt");
    let blob = leases
        .output_blob(w.lease, &listing.files[0].digest)
        .expect("served");
    assert_eq!(std::fs::read(blob).expect("blob"), b"hello");
    assert_eq!(
        leases.get(w.lease).expect("record").view().usage,
        Some(result.usage.clone())
    );

    // Logs outlive the workload (and its container) and are read by a restarted agent too.
    let log = whole_log(&leases, w.lease).await;
    assert!(
        log.contains("working\n") && log.contains("oops\n"),
        "{log:?}"
    );
    leases.abort_all();
    let again = w.agent();
    assert_eq!(whole_log(&again, w.lease).await, log);
}

#[tokio::test]
async fn a_missing_image_ends_the_lease_as_image_unavailable_without_starting_it() {
    let Some(_image) = engine("missing image through the agent").await else {
        return;
    };
    let missing = format!("gpunet-test/absent-{}:v1", std::process::id());
    let w = World::new(2, &spec(&missing, "true"), 128);
    let leases = w.agent();
    let error = w.deliver(&leases).await.expect_err("cannot start");
    assert!(
        matches!(error, LeaseError::ImageUnavailable { .. }),
        "{error:?}"
    );
    wait_until("the result to be reported", || {
        !w.chain.completions().is_empty()
    })
    .await;
    let completions = w.chain.completions();
    assert_eq!(completions.len(), 1);
    let Msg::CompleteLease { result, .. } = &completions[0].1 else {
        unreachable!("filtered to CompleteLease");
    };
    assert_eq!(result.outcome, WorkloadOutcome::ImageUnavailable);
    assert!(result.detail.contains(&missing), "{}", result.detail);
    assert_eq!(w.chain.starts(), 0, "never StartLease");
}

/// A hostile tenant's order asks for no capabilities (so providers that grant none bid) while
/// its manifest asks for the baseline: the agent goes by what it grants, not by the order, and
/// rejects it before anything starts. A provider that grants them runs the container with
/// exactly the baseline.
#[tokio::test]
async fn a_manifest_asking_for_capabilities_runs_only_where_they_are_granted() {
    let Some(image) = engine("capabilities through the agent").await else {
        return;
    };
    let mut asking = spec(&image, "cat /proc/self/status");
    asking.run.capabilities = Capabilities::Baseline;
    let mut w = World::new(6, &asking, 128);
    Arc::get_mut(&mut w.chain)
        .expect("no agent holds the chain yet")
        .order
        .terms
        .capabilities = Capabilities::None;
    let leases = w.agent();
    let error = w.deliver(&leases).await.expect_err("not granted here");
    assert!(
        error.to_string().contains("baseline capabilities"),
        "{error}"
    );
    wait_until("the rejection to be reported", || {
        !w.chain.completions().is_empty()
    })
    .await;
    assert_eq!(
        w.chain.completions()[0].0,
        WorkloadOutcome::ManifestRejected
    );
    assert_eq!(w.chain.starts(), 0, "nothing started");

    let w = World::new(7, &asking, 128);
    let leases = w.agent_granting(Capabilities::Baseline);
    w.deliver(&leases).await.expect("granted here");
    wait_until("the result to be reported", || {
        !w.chain.completions().is_empty()
    })
    .await;
    assert_eq!(w.chain.completions()[0].0, WorkloadOutcome::Succeeded);
    let log = whole_log(&leases, w.lease).await;
    // Docker's default set (0xa80425fb) without NET_RAW.
    assert!(log.contains("CapEff:\t00000000a80405fb"), "{log}");
}

#[tokio::test]
async fn a_memory_hog_in_a_container_ends_out_of_memory() {
    let Some(image) = engine("memory hog through the agent").await else {
        return;
    };
    let w = World::new(
        3,
        &spec(
            &image,
            r#"x=$(head -c 300000000 /dev/zero | tr "\0" a); echo survived"#,
        ),
        64,
    );
    let leases = w.agent();
    w.deliver(&leases).await.expect("starts");
    wait_until("the result to be reported", || {
        !w.chain.completions().is_empty()
    })
    .await;
    let outcomes: Vec<WorkloadOutcome> = w.chain.completions().into_iter().map(|c| c.0).collect();
    assert_eq!(outcomes, vec![WorkloadOutcome::OutOfMemory]);
}

#[tokio::test]
async fn a_restarted_agent_recovers_its_container_and_reports_it_once() {
    let Some(image) = engine("agent restart").await else {
        return;
    };
    let w = World::new(
        4,
        &spec(
            &image,
            "echo started-once; sleep 4; printf done > /outputs/done.txt; echo finished-once",
        ),
        128,
    );
    let first = w.agent();
    w.deliver(&first).await.expect("starts");
    wait_until("StartLease", || w.chain.starts() == 1).await;
    // The agent "crashes": its tasks and driver go, the container runs on.
    first.abort_all();
    drop(first);

    let second = w.agent();
    second.resume().await;
    assert_eq!(
        second.get(w.lease).expect("record").state(),
        WorkloadState::Running,
        "recovered while it still runs"
    );
    wait_until("the result to be reported", || {
        !w.chain.completions().is_empty()
    })
    .await;
    // Give a duplicate report the time to show up, were there one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcomes: Vec<WorkloadOutcome> = w.chain.completions().into_iter().map(|c| c.0).collect();
    assert_eq!(outcomes, vec![WorkloadOutcome::Succeeded], "reported once");
    assert_eq!(w.chain.starts(), 1, "started once");
    let record = second.get(w.lease).expect("record");
    assert_eq!(record.listing.expect("outputs").files.len(), 1);
    let log = whole_log(&second, w.lease).await;
    assert_eq!(log.matches("started-once").count(), 1, "{log:?}");
    assert_eq!(log.matches("finished-once").count(), 1, "{log:?}");

    // A third start after the end resumes nothing and reports nothing again.
    second.abort_all();
    let third = w.agent();
    third.resume().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.chain.completions().len(), 1);
}

/// The test image has no HTTP server (it is assembled from host binaries and this host has no
/// `nc`), so this checks the endpoint is published and reported, the health probe answers
/// "unhealthy", and the service stops when the chain ends its lease. The probe itself is tested
/// against a real listener in the agent's `health` module.
#[tokio::test]
async fn a_service_reports_its_endpoint_and_stops_when_its_lease_ends() {
    let Some(image) = engine("service through the agent").await else {
        return;
    };
    let mut s = spec(&image, "echo serving; sleep 300");
    s.kind = JobKind::Service;
    s.run.network = Network::Egress;
    s.expose = vec![Expose {
        port: 8000,
        proto: ExposeProto::Http,
    }];
    s.health = Some(HealthCheck {
        http_path: "/healthz".into(),
    });
    let w = World::new(5, &s, 128);
    let leases = w.agent();
    w.deliver(&leases).await.expect("starts");
    let view = leases.get(w.lease).expect("record").view();
    assert_eq!(view.state, WorkloadState::Running);
    assert_eq!(view.endpoints.len(), 1, "{view:?}");
    let endpoint = &view.endpoints[0];
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_ne!(endpoint, "http://127.0.0.1:0");
    // The same endpoints are recorded on chain, for anyone reading the lease.
    let recorded = endpoint.clone();
    wait_until("the endpoints recorded on chain", || {
        w.chain.submitted.lock().expect("lock").iter().any(|m| {
            matches!(m, Msg::PublishEndpoints { lease, endpoints }
                if *lease == w.lease && endpoints == std::slice::from_ref(&recorded))
        })
    })
    .await;
    wait_until("a health answer", || {
        leases.get(w.lease).is_some_and(|r| r.healthy.is_some())
    })
    .await;
    assert_eq!(
        leases.get(w.lease).expect("record").healthy,
        Some(false),
        "nothing serves /healthz in the test image"
    );

    leases.on_lease_ended(w.lease);
    wait_until("the service to stop", || {
        leases
            .get(w.lease)
            .is_some_and(|r| r.state() == WorkloadState::Exited)
    })
    .await;
    let view = leases.get(w.lease).expect("record").view();
    assert!(view.endpoints.is_empty(), "{view:?}");
    assert!(
        w.chain.completions().is_empty(),
        "the chain ended it; nothing to report"
    );
}
