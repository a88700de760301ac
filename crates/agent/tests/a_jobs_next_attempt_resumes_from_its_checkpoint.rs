//! Checkpoints across attempts, with real processes (the process driver, sandboxed where this
//! machine allows) and a stub chain: a job that counts into `$GPUNET_CHECKPOINTS/state` runs
//! on one agent; once the agent has uploaded a checkpoint to the shared `LocalStore`, a second
//! attempt of the same order on a second agent (its own data directory) finds `state` restored
//! before its command runs. And a checkpoint sealed for another order is refused: the job
//! starts fresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gpunet_agent::checkpoints::{CheckpointStore, checkpoint_ref};
use gpunet_agent::leases::{Leases, LeasesConfig};
use gpunet_agent::{Chain, ChainError, Drivers, Retention, TenantPolicy};
use gpunet_api::node::{LeaseState, LeaseView, OrderState, OrderView};
use gpunet_blobs::{BlobStore, LocalStore};
use gpunet_protocol::jobspec::{CheckpointKey, JobSpec, Salt};
use gpunet_protocol::{
    Address, Amount, EncryptionSecret, GpuRequirement, LeaseId, Msg, OrderId, Purpose, Resources,
    Runtime, SealContext,
};
use gpunet_runtime::{Driver, Isolation, ProcessDriver};

/// Prints the restored count first, then counts on from it, a tick every 0.2 s.
const COUNTER: &str = r#"
version: 1
name: counter
run:
  command: ["sh", "-c", "d=\"$GPUNET_CHECKPOINTS\"; n=$(cat \"$d/state\" 2>/dev/null || echo 0); echo \"restored=$n\"; while [ \"$n\" -lt 100000 ]; do n=$((n+1)); echo \"$n\" > \"$d/state.new\"; mv \"$d/state.new\" \"$d/state\"; sleep 0.2; done"]
resources:
  cpu: 1
  memory: 256Mi
  disk: 1Gi
pricing: { max_per_hour: "2.50", deposit: "5.00" }
limits: { max_duration: 10m }
"#;

const CHAIN_ID: &str = "gpunet-test";
const ORDER: OrderId = OrderId(3);
const OTHER_ORDER: OrderId = OrderId(4);

struct StubChain {
    leases: BTreeMap<LeaseId, LeaseView>,
    orders: BTreeMap<OrderId, OrderView>,
    submitted: Mutex<Vec<Msg>>,
}

#[async_trait::async_trait]
impl Chain for StubChain {
    async fn lease(&self, id: LeaseId) -> Result<LeaseView, ChainError> {
        self.leases.get(&id).cloned().ok_or(ChainError::NotFound {
            what: format!("lease {id}"),
        })
    }
    async fn order(&self, id: OrderId) -> Result<OrderView, ChainError> {
        self.orders.get(&id).cloned().ok_or(ChainError::NotFound {
            what: format!("order {id}"),
        })
    }
    async fn submit(&self, msg: Msg) -> Result<(), ChainError> {
        self.submitted.lock().expect("lock").push(msg);
        Ok(())
    }
}

fn resources() -> Resources {
    Resources {
        cpu_millis: 1_000,
        memory_mib: 256,
        disk_mib: 1_024,
        gpu: GpuRequirement::default(),
    }
}

fn lease_view(id: LeaseId, order: OrderId, tenant: Address, provider: Address) -> LeaseView {
    LeaseView {
        id,
        order,
        tenant,
        provider,
        provider_endpoint: "http://127.0.0.1:1".into(),
        endpoints: Vec::new(),
        price_per_hour: Amount::from_micros(110_000),
        resources: resources(),
        gpu_slots: vec![],
        attempt: u32::try_from(id.0).expect("small"),
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
    }
}

struct Agent {
    leases: Arc<Leases>,
    data_dir: PathBuf,
    provider: Address,
    secret: EncryptionSecret,
    /// The process driver keeps its workloads' supervision in memory: an agent "restarted" in
    /// this process recovers them through the same driver.
    driver: Arc<dyn Driver>,
    chain: Arc<dyn Chain>,
    policy: TenantPolicy,
}

struct World {
    dir: tempfile::TempDir,
    store: Arc<LocalStore>,
    manifest: Vec<u8>,
    key: CheckpointKey,
    tenant: Address,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalStore::open(&dir.path().join("blobs")).expect("opens"));
    let mut spec = JobSpec::parse_yaml(COUNTER).expect("the test spec parses");
    spec.salt = Some(Salt([5; 32]));
    let key = CheckpointKey::from_bytes(gpunet_client::sealing::random_secret().to_bytes());
    spec.checkpoint_key = Some(key.clone());
    spec.validate().expect("valid");
    World {
        dir,
        store,
        manifest: spec.manifest_bytes(),
        key,
        tenant: gpunet_client::KeyFile::generate().address(),
    }
}

/// An agent with its own data directory, holding `lease` of `order`, sharing the world's store.
fn agent(w: &World, name: &str, lease: LeaseId, order: OrderId) -> Agent {
    let provider = gpunet_client::KeyFile::generate().address();
    let secret = gpunet_client::sealing::random_secret();
    let spec = JobSpec::from_manifest_bytes(&w.manifest).expect("parses");
    let mut leases = BTreeMap::new();
    leases.insert(lease, lease_view(lease, order, w.tenant, provider));
    let mut orders = BTreeMap::new();
    orders.insert(
        order,
        OrderView {
            id: order,
            tenant: w.tenant,
            terms: spec.order_terms(),
            state: OrderState::Leased,
            created_height: 1,
            created_ms: 0,
            escrow: Amount::from_micros(5_000_000),
            bids: vec![],
            lease: None,
            // Every attempt up to this one (ids 1..=lease), as the chain lists them.
            attempts: (1..=lease.0)
                .map(|id| lease_view(LeaseId(id), order, w.tenant, provider))
                .collect(),
            excluded: vec![],
            open_since_height: 1,
            not_before_ms: 0,
            verification: None,
        },
    );
    let chain: Arc<dyn Chain> = Arc::new(StubChain {
        leases: leases.clone(),
        orders,
        submitted: Mutex::new(Vec::new()),
    });
    let data_dir = w.dir.path().join(name);
    let process = ProcessDriver::with_protected_paths(vec![w.dir.path().join("blobs")]);
    // Where this machine allows no sandbox, process jobs run for trusted tenants only.
    let policy = match process.isolation() {
        Isolation::Sandboxed { .. } => TenantPolicy::default(),
        Isolation::Unsandboxed { .. } => TenantPolicy {
            unisolated: [Runtime::Process].into(),
            trusted_tenants: [w.tenant].into(),
        },
    };
    let driver: Arc<dyn Driver> = Arc::new(process);
    let agent = Agent {
        leases: leases_book(w, &data_dir, provider, &secret, &policy, &driver, &chain),
        data_dir,
        provider,
        secret,
        driver,
        chain,
        policy,
    };
    assert!(agent.leases.track(&leases[&lease]));
    agent
}

/// The lease book of an agent on `data_dir` (loading the records there).
fn leases_book(
    w: &World,
    data_dir: &Path,
    provider: Address,
    secret: &EncryptionSecret,
    policy: &TenantPolicy,
    driver: &Arc<dyn Driver>,
    chain: &Arc<dyn Chain>,
) -> Arc<Leases> {
    Leases::new(
        LeasesConfig {
            capabilities: Default::default(),
            provider,
            data_dir: data_dir.to_path_buf(),
            gpu_uuids: vec![],
            manifest_timeout: Duration::from_secs(60),
            encryption_secret: secret.clone(),
            retention: Retention::default(),
            policy: policy.clone(),
            checkpoints: Some(CheckpointStore {
                store: w.store.clone() as Arc<dyn BlobStore>,
                chain_id: CHAIN_ID.into(),
            }),
            exit_grace: gpunet_agent::DEFAULT_EXIT_GRACE,
            chain_id: CHAIN_ID.into(),
            allow_private_blob_endpoints: false,
            ingress: None,
        },
        Arc::clone(chain),
        Drivers::single(Arc::clone(driver)).expect("the process driver runs processes"),
    )
    .expect("the lease records load")
}

impl Agent {
    /// The agent dies (its tasks stop; its workloads run on) and a new one starts on the same
    /// data directory, resuming from the lease records.
    async fn restart(self, w: &World) -> Agent {
        self.leases.abort_all();
        let leases = leases_book(
            w,
            &self.data_dir,
            self.provider,
            &self.secret,
            &self.policy,
            &self.driver,
            &self.chain,
        );
        leases.resume().await;
        Agent { leases, ..self }
    }

    async fn start(&self, w: &World, lease: LeaseId) {
        let _ = self.provider;
        let ctx = SealContext {
            purpose: Purpose::Manifest,
            lease,
        };
        let sealed =
            gpunet_client::sealing::seal(&self.secret.public(), ctx, &w.manifest).expect("seals");
        self.leases
            .deliver_manifest(lease, &sealed)
            .await
            .expect("the manifest starts the workload");
    }

    fn log(&self, lease: LeaseId) -> String {
        let path = gpunet_agent::record::lease_dir(&self.data_dir, lease).join("logs/combined.log");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Waits for a log line starting with `restored=` and gives its number.
    async fn restored_count(&self, lease: LeaseId) -> u64 {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log(lease);
            if let Some(line) = log.lines().find(|l| l.starts_with("restored=")) {
                return line["restored=".len()..].trim().parse().expect("a number");
            }
            assert!(Instant::now() < until, "the job printed nothing: {log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn wait_for_ref(store: &LocalStore, order: OrderId, lease: LeaseId) -> gpunet_protocol::Hash {
    let name = checkpoint_ref(CHAIN_ID, order, lease, "latest").expect("valid");
    let until = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(digest) = store.get_ref(&name).await.expect("reads") {
            return digest;
        }
        assert!(
            Instant::now() < until,
            "no checkpoint was uploaded for order {order}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_attempt_on_another_agent_starts_from_the_first_attempts_checkpoint() {
    let w = world();
    let first = agent(&w, "agent-a", LeaseId(1), ORDER);
    first.start(&w, LeaseId(1)).await;
    assert_eq!(
        first.restored_count(LeaseId(1)).await,
        0,
        "nothing to restore yet"
    );
    // The agent looks every CHECKPOINT_INTERVAL (10 s) while the job runs.
    let uploaded = wait_for_ref(&w.store, ORDER, LeaseId(1)).await;
    // The first provider is lost: its workload goes without a last upload's guarantee.
    first.leases.on_lease_ended(LeaseId(1));

    let second = agent(&w, "agent-b", LeaseId(2), ORDER);
    second.start(&w, LeaseId(2)).await;
    let resumed_from = second.restored_count(LeaseId(2)).await;
    assert!(
        resumed_from > 0,
        "the second attempt started from 0: {}",
        second.log(LeaseId(2))
    );
    let log = second.log(LeaseId(2));
    let restored_line = log
        .lines()
        .position(|l| l.starts_with("gpunet: restored checkpoint"))
        .unwrap_or_else(|| panic!("no restore line in the log: {log}"));
    let printed_line = log
        .lines()
        .position(|l| l.starts_with("restored="))
        .expect("printed");
    assert!(restored_line < printed_line, "{log}");
    assert!(log.contains("from attempt lease 1"), "{log}");
    // `latest` may have moved on (agent A's last upload as it stopped); the restored one is
    // one of agent A's.
    let latest = w
        .store
        .get_ref(&checkpoint_ref(CHAIN_ID, ORDER, LeaseId(1), "latest").expect("valid"))
        .await
        .expect("reads")
        .expect("set");
    assert!(
        log.contains(&latest.to_string()) || log.contains(&uploaded.to_string()),
        "{log}"
    );
    second.leases.on_lease_ended(LeaseId(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_sealed_for_another_order_is_refused_and_the_job_starts_fresh() {
    let w = world();
    // A real checkpoint of another order, under the same key: only the order binding tells.
    let src = w.dir.path().join("elsewhere");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("state"), b"777\n").expect("write");
    let archive = gpunet_agent::checkpoints::pack(&src, 1 << 20).expect("packs");
    let sealed =
        gpunet_agent::checkpoints::seal(&w.key.public(), OTHER_ORDER, LeaseId(9), 0, &archive)
            .expect("seals");
    let blob = w.store.put_bytes(&sealed).await.expect("puts");
    let theirs = checkpoint_ref(CHAIN_ID, OTHER_ORDER, LeaseId(9), "latest").expect("valid");
    w.store.set_ref(&theirs, &blob.digest).await.expect("sets");
    // The tamper: this order's first attempt's `latest` points at the other order's blob.
    let ours = checkpoint_ref(CHAIN_ID, ORDER, LeaseId(1), "latest").expect("valid");
    w.store.set_ref(&ours, &blob.digest).await.expect("sets");

    let a = agent(&w, "agent-a", LeaseId(2), ORDER);
    a.start(&w, LeaseId(2)).await;
    assert_eq!(
        a.restored_count(LeaseId(2)).await,
        0,
        "{}",
        a.log(LeaseId(2))
    );
    let log = a.log(LeaseId(2));
    assert!(
        log.contains("could not be restored, so it starts fresh"),
        "{log}"
    );
    a.leases.on_lease_ended(LeaseId(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _: &Path = w.dir.path();
}

/// The checkpoint `lease` last uploaded, opened: its digest and sequence number.
async fn latest_of(w: &World, lease: LeaseId) -> Option<(gpunet_protocol::Hash, u64)> {
    let digest = w
        .store
        .get_ref(&checkpoint_ref(CHAIN_ID, ORDER, lease, "latest").expect("valid"))
        .await
        .expect("reads")?;
    let scratch = w.dir.path().join(format!("peek-{digest}"));
    w.store
        .get_to_file(&digest, &scratch)
        .await
        .expect("fetches");
    let sealed = std::fs::read(&scratch).expect("reads");
    let opened = gpunet_agent::checkpoints::open(&w.key.secret(), ORDER, &sealed).expect("opens");
    Some((digest, opened.seq))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_under_a_running_workload_goes_on_checkpointing_it() {
    let w = world();
    let first = agent(&w, "agent-a", LeaseId(1), ORDER);
    first.start(&w, LeaseId(1)).await;
    wait_for_ref(&w.store, ORDER, LeaseId(1)).await;
    let (before, seq_before) = latest_of(&w, LeaseId(1)).await.expect("uploaded");

    // The agent restarts; the workload (counting on) is recovered from its record.
    let second = first.restart(&w).await;
    let until = Instant::now() + Duration::from_secs(40);
    let (after, seq_after) = loop {
        let latest = latest_of(&w, LeaseId(1)).await.expect("still there");
        if latest.0 != before {
            break latest;
        }
        assert!(
            Instant::now() < until,
            "no checkpoint was uploaded after the restart; the lease's log:\n{}",
            second.log(LeaseId(1))
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_ne!(after, before);
    assert!(
        seq_after > seq_before,
        "the numbering goes on ({seq_before} then {seq_after}), overwriting no earlier checkpoint"
    );
    second.leases.on_lease_ended(LeaseId(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// A tenant's bucket on the provider's own loopback (refused by an agent that does not allow
/// private endpoints), with `secret` as its secret key.
fn loopback_bucket(secret: &str) -> gpunet_protocol::storage::Storage {
    use gpunet_protocol::storage::{Credentials, S3Bucket, SecretString, Storage};
    Storage {
        s3: S3Bucket {
            endpoint: "https://127.0.0.1:9000".into(),
            bucket: "internal".into(),
            region: "us-east-1".into(),
            prefix: String::new(),
        },
        credentials: Credentials {
            access_key_id: Some(SecretString::new("AKIATENANT".into())),
            secret_access_key: Some(SecretString::new(secret.into())),
            ..Credentials::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_naming_a_private_bucket_endpoint_is_refused_it_and_runs_on_without_checkpoints() {
    const SECRET: &str = "tenant-s3-secret-never-on-disk";
    let mut w = world();
    // The tenant points the provider's agent at the provider's own loopback.
    let mut spec = JobSpec::from_manifest_bytes(&w.manifest).expect("parses");
    spec.storage = Some(loopback_bucket(SECRET));
    spec.validate().expect("valid");
    w.manifest = spec.manifest_bytes();
    // This agent does not allow private endpoints (`allow_private_blob_endpoints: false`).
    let a = agent(&w, "agent-a", LeaseId(1), ORDER);
    a.start(&w, LeaseId(1)).await;
    assert_eq!(a.restored_count(LeaseId(1)).await, 0);
    let log = a.log(LeaseId(1));
    assert!(
        log.contains("storage endpoint https://127.0.0.1:9000 is refused")
            && log.contains("not a public address (loopback"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "{log}");
    // The job runs on, without checkpoints: the job named its own store, so none go to the
    // operator's either.
    tokio::time::sleep(gpunet_agent::checkpoints::CHECKPOINT_INTERVAL + Duration::from_secs(2))
        .await;
    let name = checkpoint_ref(CHAIN_ID, ORDER, LeaseId(1), "latest").expect("valid");
    assert_eq!(w.store.get_ref(&name).await.expect("reads"), None);
    assert_eq!(
        a.leases.get(LeaseId(1)).map(|r| r.state()),
        Some(gpunet_api::provider::WorkloadState::Running)
    );
    // The credentials never reach the lease's record on disk.
    let record = std::fs::read_to_string(
        gpunet_agent::record::lease_dir(&a.data_dir, LeaseId(1)).join("record.json"),
    )
    .expect("the record");
    assert!(!record.contains(SECRET), "{record}");
    assert!(record.contains("\"job_store\": true"), "{record}");
    a.leases.on_lease_ended(LeaseId(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The glue of inputs taken from the job's own bucket: a blob that cannot be had (here the
/// bucket's endpoint is refused) is an error to the tenant naming why, said once in the lease's
/// log however often the tenant retries, and nothing starts without the inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_inputs_blob_cannot_be_had_does_not_start_and_says_why_once() {
    use gpunet_protocol::jobspec::InputsArchive;
    let mut w = world();
    let mut spec = JobSpec::from_manifest_bytes(&w.manifest).expect("parses");
    spec.inputs = vec!["data.txt".into()];
    spec.inputs_archive = Some(InputsArchive {
        digest: gpunet_protocol::Hash::of(b"the archive"),
        bytes: 11,
    });
    spec.inputs_blob = Some(gpunet_protocol::Hash::of(b"the sealed archive"));
    spec.storage = Some(loopback_bucket("tenant-secret"));
    spec.validate().expect("valid");
    w.manifest = spec.manifest_bytes();
    let a = agent(&w, "agent-a", LeaseId(1), ORDER);
    let sealed = gpunet_client::sealing::seal(
        &a.secret.public(),
        SealContext {
            purpose: Purpose::Manifest,
            lease: LeaseId(1),
        },
        &w.manifest,
    )
    .expect("seals");
    // The tenant's CLI retries a refused delivery; each time the same answer.
    for _ in 0..3 {
        let error = a
            .leases
            .deliver_manifest(LeaseId(1), &sealed)
            .await
            .expect_err("no inputs, no start");
        let said = error.to_string();
        assert!(
            said.contains("inputs cannot be taken from its own bucket")
                && said.contains("https://127.0.0.1:9000 is refused"),
            "{said}"
        );
    }
    let log = a.log(LeaseId(1));
    assert_eq!(
        log.matches("inputs cannot be taken from its own bucket")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains("tenant-secret"), "{log}");
    // Nothing runs: the lease still waits for a manifest it can act on.
    assert_eq!(
        a.leases.get(LeaseId(1)).map(|r| r.state()),
        Some(gpunet_api::provider::WorkloadState::AwaitingManifest)
    );
    a.leases.on_lease_ended(LeaseId(1));
}
