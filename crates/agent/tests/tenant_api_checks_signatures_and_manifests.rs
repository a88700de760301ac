//! The agent's tenant-facing HTTP API against a stub chain and the fake driver: who may call
//! it, what a manifest must be to start anything (sealed to this provider, for this lease, with
//! the order's hash), and a lease's life from manifest to reported result, sealed outputs and
//! logs — all without a node.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpunet_agent::leases::{Leases, LeasesConfig};
use gpunet_agent::lifecycle::Phase;
use gpunet_agent::server;
use gpunet_agent::{Chain, ChainError, Drivers, Retention};
use gpunet_api::ErrorBody;
use gpunet_api::auth::{MAX_CLOCK_SKEW_MS, NonceBook, RequestNonce, sign_request};
use gpunet_api::node::{LeaseState, LeaseView, OrderState, OrderView};
use gpunet_api::provider::WorkloadState;
use gpunet_client::{ClientError, KeyFile, ProviderClient};
use gpunet_protocol::jobspec::{JobSpec, Salt, Secrets};
use gpunet_protocol::sealed::{SEALED_CHUNK_BYTES, open};
use gpunet_protocol::{
    Address, Amount, EncryptionKey, EncryptionSecret, GpuRequirement, Hash, LeaseId, Msg, OrderId,
    Purpose, Resources, SealContext, SealError, WorkloadOutcome,
};
use gpunet_runtime::{Driver, FakeDriver};

const HELLO: &str = r#"
version: 1
name: hello
run:
  command: ["sh", "-c", "echo hello > \"$GPUNET_OUTPUTS/greeting.txt\""]
resources:
  cpu: 1
  memory: 512Mi
  disk: 1Gi
pricing: { max_per_hour: "2.50", deposit: "5.00" }
limits: { max_duration: 10m }
outputs: true
"#;

const LEASE: LeaseId = LeaseId(7);
const SECRET_VALUE: &str = "tok-3f9a-not-for-the-wire";
const ORDER: OrderId = OrderId(3);

/// A chain that knows one lease and one order, and records what the agent submits.
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

impl StubChain {
    fn submitted(&self) -> Vec<Msg> {
        self.submitted.lock().expect("lock").clone()
    }
}

fn resources() -> Resources {
    Resources {
        cpu_millis: 1_000,
        memory_mib: 512,
        disk_mib: 1_024,
        gpu: GpuRequirement::default(),
    }
}

fn lease_view(id: LeaseId, tenant: Address, provider: Address) -> LeaseView {
    LeaseView {
        id,
        order: ORDER,
        tenant,
        provider,
        provider_endpoint: "http://127.0.0.1:1".into(),
        endpoints: Vec::new(),
        price_per_hour: Amount::from_micros(110_000),
        resources: resources(),
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
    }
}

struct World {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    chain: Arc<StubChain>,
    driver: Arc<FakeDriver>,
    leases: Arc<Leases>,
    endpoint: String,
    tenant: KeyFile,
    manifest: Vec<u8>,
    /// The provider's registered encryption key, and its secret.
    provider_key: EncryptionKey,
    provider_secret: EncryptionSecret,
}

/// The spec as the CLI submits it: salted, with the tenant's output key and a secret.
fn submitted_spec(tenant: &KeyFile) -> JobSpec {
    let mut spec = JobSpec::parse_yaml(HELLO).expect("the test spec parses");
    spec.salt = Some(Salt([5; 32]));
    spec.output_key = Some(tenant.output_secret().public());
    spec.run.secrets = Secrets::new(BTreeMap::from([(
        "API_TOKEN".to_owned(),
        SECRET_VALUE.to_owned(),
    )]));
    spec.validate().expect("the submitted spec is valid");
    spec
}

async fn world(driver: FakeDriver, manifest_timeout: Duration) -> World {
    world_with(driver, manifest_timeout, |_| {}).await
}

/// A world whose order commits to the submitted spec as changed by `edit`.
async fn world_with(
    driver: FakeDriver,
    manifest_timeout: Duration,
    edit: impl FnOnce(&mut JobSpec),
) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("agent");
    let tenant = KeyFile::generate();
    let provider = KeyFile::generate().address();
    let provider_secret = gpunet_client::sealing::random_secret();
    let mut spec = submitted_spec(&tenant);
    edit(&mut spec);
    let manifest = spec.manifest_bytes();
    let mut leases = BTreeMap::new();
    leases.insert(LEASE, lease_view(LEASE, tenant.address(), provider));
    // A lease held by another provider.
    leases.insert(
        LeaseId(8),
        lease_view(LeaseId(8), tenant.address(), Address([9; 32])),
    );
    let mut orders = BTreeMap::new();
    orders.insert(
        ORDER,
        OrderView {
            id: ORDER,
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
    );
    let chain = Arc::new(StubChain {
        leases,
        orders,
        submitted: Mutex::new(Vec::new()),
    });
    let driver = Arc::new(driver);
    let leases = start_leases(
        &data_dir,
        provider,
        &provider_secret,
        &chain,
        &driver,
        manifest_timeout,
    );
    let endpoint = serve(&leases).await;
    World {
        _dir: dir,
        data_dir,
        chain,
        driver,
        leases,
        endpoint,
        tenant,
        manifest,
        provider_key: provider_secret.public(),
        provider_secret,
    }
}

fn start_leases(
    data_dir: &std::path::Path,
    provider: Address,
    encryption_secret: &EncryptionSecret,
    chain: &Arc<StubChain>,
    driver: &Arc<FakeDriver>,
    manifest_timeout: Duration,
) -> Arc<Leases> {
    start_leases_with_policy(
        data_dir,
        provider,
        encryption_secret,
        chain,
        driver,
        manifest_timeout,
        gpunet_agent::TenantPolicy::default(),
    )
}

fn start_leases_with_policy(
    data_dir: &std::path::Path,
    provider: Address,
    encryption_secret: &EncryptionSecret,
    chain: &Arc<StubChain>,
    driver: &Arc<FakeDriver>,
    manifest_timeout: Duration,
    policy: gpunet_agent::TenantPolicy,
) -> Arc<Leases> {
    let chain: Arc<dyn Chain> = chain.clone();
    let driver: Arc<dyn Driver> = driver.clone();
    Leases::new(
        LeasesConfig {
            capabilities: Default::default(),
            provider,
            data_dir: data_dir.to_path_buf(),
            gpu_uuids: vec![],
            manifest_timeout,
            encryption_secret: encryption_secret.clone(),
            retention: Retention::default(),
            policy,
            checkpoints: None,
            exit_grace: gpunet_agent::DEFAULT_EXIT_GRACE,
            chain_id: "gpunet-test".into(),
            allow_private_blob_endpoints: false,
            ingress: None,
        },
        chain,
        Drivers::single(driver).expect("the fake driver runs processes"),
    )
    .expect("the lease records load")
}

async fn serve(leases: &Arc<Leases>) -> String {
    serve_with(leases, NonceBook::default()).await
}

async fn serve_with(leases: &Arc<Leases>, nonces: NonceBook) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    let app = server::router_with_nonce_book(Arc::clone(leases), nonces);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn api_error(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, body, .. } => (status, body.name),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn completions(chain: &StubChain) -> Vec<WorkloadOutcome> {
    chain
        .submitted()
        .into_iter()
        .filter_map(|m| match m {
            Msg::CompleteLease { result, .. } => Some(result.outcome),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_unsigned_request_gets_401() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let resp = reqwest::get(format!("{}/v1/leases/{LEASE}/status", w.endpoint))
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 401);
    let body: ErrorBody = resp.json().await.expect("an error body");
    assert_eq!(body.name, "unauthorized");
    assert!(body.message.contains("x-gpunet-signer"), "{}", body.message);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Sends a GET of `path` signed by `key` at `timestamp_ms` with `nonce`, exactly as given.
async fn signed_get(
    endpoint: &str,
    key: &KeyFile,
    path: &str,
    timestamp_ms: u64,
    nonce: RequestNonce,
) -> (u16, Option<ErrorBody>) {
    let mut req = reqwest::Client::new().get(format!("{endpoint}{path}"));
    for (name, value) in sign_request(&key.key, "GET", path, timestamp_ms, nonce, b"") {
        req = req.header(name, value);
    }
    let resp = req.send().await.expect("answers");
    let status = resp.status().as_u16();
    (
        status,
        resp.json::<ErrorBody>()
            .await
            .ok()
            .filter(|_| status >= 400),
    )
}

#[tokio::test]
async fn the_same_signed_request_sent_twice_is_refused_the_second_time() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let path = format!("/v1/leases/{LEASE}/status");
    let now = now_ms();
    let nonce = RequestNonce([0x42; 16]);
    let (first, _) = signed_get(&w.endpoint, &w.tenant, &path, now, nonce).await;
    assert_eq!(first, 200);
    let (second, body) = signed_get(&w.endpoint, &w.tenant, &path, now, nonce).await;
    assert_eq!(second, 401);
    let body = body.expect("an error body");
    assert_eq!(body.name, "replayed_request");
    assert!(body.message.contains("nonce"), "{}", body.message);
    // A fresh nonce with the same everything else is a new request.
    let (fresh, _) = signed_get(&w.endpoint, &w.tenant, &path, now, RequestNonce([0x43; 16])).await;
    assert_eq!(fresh, 200);
}

#[tokio::test]
async fn a_request_with_a_stale_timestamp_is_refused() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let path = format!("/v1/leases/{LEASE}/status");
    let stale = now_ms() - MAX_CLOCK_SKEW_MS - 60_000;
    let (status, body) =
        signed_get(&w.endpoint, &w.tenant, &path, stale, RequestNonce([1; 16])).await;
    assert_eq!(status, 401);
    let body = body.expect("an error body");
    assert_eq!(body.name, "unauthorized");
    assert!(body.message.contains("timestamp"), "{}", body.message);
}

#[tokio::test]
async fn a_tenant_flooding_distinct_nonces_is_refused_at_its_cap_not_remembered() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let endpoint = serve_with(&w.leases, NonceBook::with_caps(3, 100)).await;
    let tenant = ProviderClient::new(&endpoint, w.tenant.clone());
    for _ in 0..3 {
        tenant.status(LEASE).await.expect("within the cap");
    }
    let err = tenant.status(LEASE).await.expect_err("over the cap");
    assert_eq!(api_error(err), (429, "too_many_requests".to_owned()));
    // A stranger is refused before the book is consulted, so it can never fill it.
    let stranger = ProviderClient::new(&endpoint, KeyFile::generate());
    let err = stranger.status(LEASE).await.expect_err("refused");
    assert_eq!(api_error(err), (403, "forbidden".to_owned()));
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_json_errors() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let http = reqwest::Client::new();
    let cases = [
        (
            reqwest::Method::GET,
            "/v1/nope".to_owned(),
            404,
            "not_found",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/leases/{LEASE}/manifest"),
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/leases/{LEASE}/status"),
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, status, name) in cases {
        let resp = http
            .request(method.clone(), format!("{}{path}", w.endpoint))
            .send()
            .await
            .expect("answers");
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        if status == 405 {
            assert!(resp.headers().contains_key("allow"), "{method} {path}");
        }
        let body: ErrorBody = resp.json().await.expect("a JSON error body");
        assert_eq!(body.name, name, "{method} {path}");
        assert!(body.message.contains(&path), "{}", body.message);
    }
}

#[tokio::test]
async fn a_request_signed_by_another_key_gets_403() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let stranger = ProviderClient::new(&w.endpoint, KeyFile::generate());
    let err = stranger.status(LEASE).await.expect_err("refused");
    assert_eq!(api_error(err), (403, "forbidden".to_owned()));
    let err = stranger
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect_err("refused");
    assert_eq!(api_error(err), (403, "forbidden".to_owned()));
    assert!(w.driver.started_specs().is_empty());
}

#[tokio::test]
async fn a_lease_of_another_provider_or_none_is_not_found() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    let err = tenant.status(LeaseId(8)).await.expect_err("not ours");
    assert_eq!(api_error(err), (404, "not_found".to_owned()));
    let err = tenant.status(LeaseId(99)).await.expect_err("no such lease");
    assert_eq!(api_error(err), (404, "not_found".to_owned()));
}

#[tokio::test]
async fn a_manifest_whose_hash_differs_gets_400_and_nothing_starts() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    let mut other = submitted_spec(&w.tenant);
    other.run.command[2] = "echo bye".into();
    let other = other.manifest_bytes();
    let err = tenant
        .deliver_manifest(LEASE, &w.provider_key, &other)
        .await
        .expect_err("refused");
    assert_eq!(api_error(err), (400, "manifest_hash_mismatch".to_owned()));
    assert!(w.driver.started_specs().is_empty());
    assert!(w.chain.submitted().is_empty());
    // The lease keeps waiting for the right manifest.
    let view = tenant.status(LEASE).await.expect("status");
    assert_eq!(view.state, WorkloadState::AwaitingManifest);
}

#[tokio::test]
async fn a_manifest_sealed_to_another_key_or_lease_gets_400_and_nothing_starts() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    // Sealed to another provider's key: this provider cannot read it, and neither could any
    // provider but the one it was sealed to.
    let another_provider = gpunet_client::sealing::random_secret();
    let err = tenant
        .deliver_manifest(LEASE, &another_provider.public(), &w.manifest)
        .await
        .expect_err("refused");
    assert_eq!(api_error(err), (400, "manifest_unreadable".to_owned()));
    // Sealed to this provider, but for another lease.
    let ctx = |lease| SealContext {
        purpose: Purpose::Manifest,
        lease,
    };
    let for_lease_8 =
        gpunet_client::sealing::seal(&w.provider_key, ctx(LeaseId(8)), &w.manifest).expect("seals");
    let err = tenant
        .deliver_sealed_manifest(LEASE, &for_lease_8)
        .await
        .expect_err("refused");
    assert_eq!(api_error(err), (400, "manifest_unreadable".to_owned()));
    // Plaintext where a sealed manifest belongs.
    let err = tenant
        .deliver_sealed_manifest(LEASE, &w.manifest)
        .await
        .expect_err("refused");
    assert_eq!(api_error(err), (400, "manifest_unreadable".to_owned()));
    // The provider the manifest was sealed to can open it; this one cannot.
    let sealed = gpunet_client::sealing::seal(&another_provider.public(), ctx(LEASE), &w.manifest)
        .expect("seals");
    assert_eq!(
        open(&another_provider, ctx(LEASE), &sealed).expect("opens"),
        w.manifest
    );
    assert_eq!(
        open(&w.provider_secret, ctx(LEASE), &sealed),
        Err(SealError::Unreadable)
    );
    assert!(w.driver.started_specs().is_empty());
    assert!(w.chain.submitted().is_empty());
    let view = tenant.status(LEASE).await.expect("status");
    assert_eq!(view.state, WorkloadState::AwaitingManifest);
    // The right one still starts it.
    tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect("accepted");
}

#[tokio::test]
async fn a_manifest_asking_for_outputs_without_an_output_key_is_rejected() {
    let w = world_with(FakeDriver::new(), Duration::from_secs(60), |spec| {
        spec.output_key = None;
    })
    .await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    let err = tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect_err("refused");
    assert_eq!(api_error(err), (400, "manifest_invalid".to_owned()));
    assert!(w.driver.started_specs().is_empty());
    wait_for("the lease to be rejected", || {
        !completions(&w.chain).is_empty()
    })
    .await;
    assert_eq!(
        completions(&w.chain),
        vec![WorkloadOutcome::ManifestRejected]
    );
}

#[tokio::test]
async fn a_strangers_manifest_for_a_runtime_without_isolation_is_rejected_and_nothing_starts() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    // The same lease, served by an agent whose process runtime has no sandbox and which trusts
    // someone else.
    let secret = gpunet_client::sealing::random_secret();
    let policy = gpunet_agent::TenantPolicy {
        unisolated: std::collections::BTreeSet::from([gpunet_protocol::Runtime::Process]),
        trusted_tenants: std::collections::BTreeSet::from([Address([7; 32])]),
    };
    let provider = w.chain.leases[&LEASE].provider;
    let leases = start_leases_with_policy(
        &w.data_dir.join("unsandboxed"),
        provider,
        &secret,
        &w.chain,
        &w.driver,
        Duration::from_secs(60),
        policy,
    );
    let endpoint = serve(&leases).await;
    let tenant = ProviderClient::new(&endpoint, w.tenant.clone());
    let err = tenant
        .deliver_manifest(LEASE, &secret.public(), &w.manifest)
        .await
        .expect_err("refused");
    let (status, name) = api_error(err);
    assert_eq!((status, name.as_str()), (400, "manifest_invalid"));
    assert!(w.driver.started_specs().is_empty(), "nothing may start");
    wait_for("the lease to be rejected", || {
        !completions(&w.chain).is_empty()
    })
    .await;
    assert_eq!(
        completions(&w.chain),
        vec![WorkloadOutcome::ManifestRejected]
    );
}

#[tokio::test]
async fn logs_before_the_manifest_are_refused_rather_than_sent_in_the_clear() {
    let w = world(FakeDriver::new(), Duration::from_secs(60)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    // Until the manifest names the tenant's output key there is nothing to seal the log to.
    let err = tenant
        .logs_sealed(LEASE, 0, 1024)
        .await
        .expect_err("no key yet");
    assert_eq!(api_error(err), (409, "no_output_key".to_owned()));
    tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect("accepted");
    let chunk = tenant
        .logs(LEASE, 0, 1024, &w.tenant.output_secret())
        .await
        .expect("logs once the manifest is in");
    assert_eq!(chunk.next_offset, chunk.text.len() as u64);
}

#[tokio::test]
async fn a_valid_manifest_runs_the_workload_and_its_result_is_reported_and_served() {
    let driver = FakeDriver::new()
        .with_log("epoch 1\nepoch 2\n")
        .with_output("greeting.txt", b"hello\n".to_vec())
        .with_output("model/w.bin", weights());
    let w = world(driver, Duration::from_secs(60)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());

    let view = tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect("accepted");
    assert_eq!(view.state, WorkloadState::Running);
    let specs = w.driver.started_specs();
    assert_eq!(specs.len(), 1);
    assert!(
        specs[0].workload_id.starts_with("lease-7-"),
        "{}",
        specs[0].workload_id
    );
    assert_eq!(specs[0].cpu_millis, 1_000);
    assert_eq!(specs[0].memory_mib, 512);
    // The disk the chain reserved (the spec's resources.disk) is the workload's disk limit.
    assert_eq!(specs[0].disk_mib, Some(1024));
    assert_eq!(specs[0].max_duration, Duration::from_secs(600));
    assert_eq!(specs[0].root_dir, w.data_dir.join("leases/7"));
    assert_eq!(specs[0].log_limit_bytes, 100 * 1024 * 1024);
    // Secrets reach the workload as environment variables.
    assert_eq!(
        specs[0].env.get("API_TOKEN").map(String::as_str),
        Some(SECRET_VALUE)
    );
    assert_eq!(w.chain.submitted()[0], Msg::StartLease { lease: LEASE });

    wait_for("the result to be reported", || {
        !completions(&w.chain).is_empty()
    })
    .await;
    assert_eq!(completions(&w.chain), vec![WorkloadOutcome::Succeeded]);

    // A second manifest is refused: the lease has already run.
    let err = tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect_err("refused");
    assert_eq!(api_error(err).0, 409);

    let listing = tenant.outputs(LEASE).await.expect("outputs");
    let paths: Vec<&str> = listing.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["greeting.txt", "model/w.bin"]);
    let reported = w.chain.submitted().into_iter().find_map(|m| match m {
        Msg::CompleteLease { result, .. } => result.output_digest,
        _ => None,
    });
    assert_eq!(reported, Some(listing.digest));
    // Served bytes are sealed to the tenant's output key: not the plaintext, not readable
    // with any other key, and they open to the listed digest.
    let output_ctx = SealContext {
        purpose: Purpose::Output,
        lease: LEASE,
    };
    for (file, plaintext) in listing.files.iter().zip([b"hello\n".to_vec(), weights()]) {
        let served = tenant.output(LEASE, &file.digest).await.expect("downloads");
        assert_ne!(served, plaintext);
        assert!(
            !served.windows(6).any(|w| w == &plaintext[..6]),
            "{}: the plaintext shows through",
            file.path
        );
        let opened = open(&w.tenant.output_secret(), output_ctx, &served).expect("opens");
        assert_eq!(opened, plaintext, "{}", file.path);
        assert_eq!(
            open(&KeyFile::generate().output_secret(), output_ctx, &served),
            Err(SealError::Unreadable)
        );
        let checked = tenant
            .output_opened(LEASE, &file.digest, &w.tenant.output_secret())
            .await
            .expect("opens and checks");
        assert_eq!(checked, plaintext);
    }
    let err = tenant
        .output(LEASE, &Hash::of(b"not an output"))
        .await
        .expect_err("not listed");
    assert_eq!(api_error(err).0, 404);

    let secret = w.tenant.output_secret();
    let chunk = tenant.logs(LEASE, 0, 8, &secret).await.expect("logs");
    assert_eq!(chunk.text, "epoch 1\n");
    let rest = tenant
        .logs(LEASE, chunk.next_offset, 1024, &secret)
        .await
        .expect("logs");
    assert_eq!(rest.text, "epoch 2\n");
    assert!(rest.finished);
    // On the wire the log is sealed like the outputs: the plaintext does not show, the box
    // opens only with the tenant's output secret, for this lease, as logs.
    let served = tenant.logs_sealed(LEASE, 0, 1024).await.expect("logs");
    assert_eq!((served.offset, served.next_offset), (0, 16));
    assert!(served.finished);
    let sealed = hex::decode(&served.sealed_hex).expect("hex");
    assert!(
        !sealed.windows(5).any(|w| w == b"epoch"),
        "the log shows through"
    );
    let logs_ctx = |purpose| SealContext {
        purpose,
        lease: LEASE,
    };
    let opened = open(&secret, logs_ctx(Purpose::Logs), &sealed).expect("opens");
    assert!(opened.ends_with(b"epoch 1\nepoch 2\n"));
    for (who, purpose) in [
        (KeyFile::generate().output_secret(), Purpose::Logs),
        (w.provider_secret.clone(), Purpose::Logs),
        (secret.clone(), Purpose::Output),
    ] {
        assert_eq!(
            open(&who, logs_ctx(purpose), &sealed),
            Err(SealError::Unreadable),
            "{purpose:?}"
        );
    }
    // Opening with another secret fails in the client too, naming the cause.
    let err = tenant
        .logs(LEASE, 0, 1024, &KeyFile::generate().output_secret())
        .await
        .expect_err("not the tenant's secret");
    assert!(matches!(err, ClientError::Sealed { .. }), "{err}");

    let status = tenant.status(LEASE).await.expect("status");
    assert_eq!(status.state, WorkloadState::Exited);
    assert_eq!(status.reason.as_deref(), Some("completed"));
    assert_eq!(status.exit_code, Some(0));

    // After a restart, the record on disk still serves the outputs and logs.
    let again = start_leases(
        &w.data_dir,
        w.leases.provider(),
        &w.provider_secret,
        &w.chain,
        &Arc::new(FakeDriver::new()),
        Duration::from_secs(60),
    );
    again.resume().await;
    let endpoint = serve(&again).await;
    let tenant = ProviderClient::new(&endpoint, w.tenant.clone());
    assert_eq!(tenant.outputs(LEASE).await.expect("outputs"), listing);
    let chunk = tenant
        .logs(LEASE, 0, 1024, &w.tenant.output_secret())
        .await
        .expect("logs");
    assert_eq!(chunk.text, "epoch 1\nepoch 2\n");
    assert_eq!(completions(&w.chain).len(), 1, "reported once only");
}

#[tokio::test]
async fn everything_the_agent_writes_for_a_lease_is_readable_by_the_provider_only() {
    use std::os::unix::fs::PermissionsExt;
    let driver = FakeDriver::new()
        .with_log("epoch 1\n")
        .with_output("model/w.bin", weights());
    let w = world(driver, Duration::from_secs(60)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect("accepted");
    wait_for("the result to be reported", || {
        !completions(&w.chain).is_empty()
    })
    .await;

    // The lease dir, its record, log and outputs, and the output blobs: every one of them.
    let mut pending = vec![w.data_dir.clone()];
    let (mut dirs, mut files) = (0, 0);
    while let Some(dir) = pending.pop() {
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        // The fake driver writes outputs as a workload would, with the umask's modes.
        if !dir.starts_with(w.data_dir.join("leases/7/outputs")) {
            assert_eq!(mode, 0o700, "{dir:?}");
        }
        dirs += 1;
        for entry in std::fs::read_dir(&dir).expect("lists") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                pending.push(path);
            } else if !path.starts_with(w.data_dir.join("leases/7/outputs")) {
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{path:?}");
                files += 1;
            }
        }
    }
    assert_eq!(
        std::fs::metadata(w.data_dir.join("leases/7/outputs"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // leases/7/{record.json, logs/combined.log} and the output blob at least.
    assert!(dirs >= 5 && files >= 3, "{dirs} dirs, {files} files");
}

#[tokio::test]
async fn a_lease_without_a_manifest_in_time_is_rejected_on_chain() {
    let w = world(FakeDriver::new(), Duration::from_millis(100)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    // Any signed request makes the agent track the lease (as the chain's event would).
    let view = tenant.status(LEASE).await.expect("status");
    assert_eq!(view.state, WorkloadState::AwaitingManifest);
    wait_for("the lease to be rejected", || {
        !completions(&w.chain).is_empty()
    })
    .await;
    assert_eq!(
        completions(&w.chain),
        vec![WorkloadOutcome::ManifestRejected]
    );
    let err = tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect_err("too late");
    assert_eq!(api_error(err), (410, "lease_ended".to_owned()));
    assert!(w.driver.started_specs().is_empty());
}

#[tokio::test]
async fn a_cancelled_lease_stops_its_workload_and_reports_nothing() {
    let w = world(FakeDriver::new().hanging(), Duration::from_secs(60)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect("accepted");
    w.leases.on_lease_ended(LEASE);
    let leases = Arc::clone(&w.leases);
    wait_for("the workload to stop", || {
        leases
            .get(LEASE)
            .is_some_and(|r| r.state() == WorkloadState::Exited)
    })
    .await;
    let record = w.leases.get(LEASE).expect("record");
    assert_eq!(record.outcome, Some(WorkloadOutcome::Failed));
    assert!(completions(&w.chain).is_empty());
    assert!(w.leases.held().is_empty());
}

/// An output over two sealed chunks, so the agent's streaming sealer is exercised.
fn weights() -> Vec<u8> {
    (0..2 * SEALED_CHUNK_BYTES + 100)
        .map(|i| (i % 251) as u8)
        .collect()
}

#[tokio::test]
async fn an_ended_leases_directory_is_kept_for_the_retention_period_then_swept() {
    let w = world(
        FakeDriver::new().with_log("epoch 1\n"),
        Duration::from_secs(60),
    )
    .await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect("accepted");
    let leases = Arc::clone(&w.leases);
    wait_for("the result to be reported", || {
        leases.get(LEASE).is_some_and(|r| r.phase == Phase::Ended)
    })
    .await;
    let ended_ms = w.leases.get(LEASE).and_then(|r| r.ended_ms).expect("ended");
    let dir = w.data_dir.join("leases").join(LEASE.to_string());
    let retention = Retention::default();
    let keep_ms = retention.keep_ended_for.as_millis() as u64;

    assert!(w.leases.sweep_ended(ended_ms + keep_ms - 1).is_empty());
    assert!(dir.exists());
    let logs = tenant
        .logs(LEASE, 0, 1024, &w.tenant.output_secret())
        .await
        .expect("logs after the end");
    assert_eq!(logs.text, "epoch 1\n");

    assert_eq!(w.leases.sweep_ended(ended_ms + keep_ms), vec![LEASE]);
    assert!(!dir.exists());
    assert!(w.leases.get(LEASE).is_none());
}

/// A small inputs archive: `train.sh` and `data/x.csv`.
fn inputs_archive(content: &str) -> Vec<u8> {
    use gpunet_protocol::inputs::{InputEntry, InputKind, pack};
    pack(&[
        InputEntry {
            path: "train.sh".into(),
            kind: InputKind::File {
                bytes: b"cat data/x.csv\n".to_vec(),
                executable: true,
            },
        },
        InputEntry {
            path: "data".into(),
            kind: InputKind::Dir,
        },
        InputEntry {
            path: "data/x.csv".into(),
            kind: InputKind::File {
                bytes: content.as_bytes().to_vec(),
                executable: false,
            },
        },
    ])
    .expect("packs")
}

#[tokio::test]
async fn inputs_must_be_the_ones_the_manifest_commits_to_and_land_read_for_the_workload() {
    let archive = inputs_archive("1,2,3\n");
    let committed = archive.clone();
    let w = world_with(FakeDriver::new(), Duration::from_secs(60), move |spec| {
        spec.inputs = vec!["train.sh".into(), "data/".into()];
        spec.inputs_archive = Some(gpunet_protocol::jobspec::InputsArchive {
            digest: gpunet_protocol::Hash::of(&committed),
            bytes: committed.len() as u64,
        });
    })
    .await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());

    // The manifest before its inputs: the tenant is told to send them first; nothing starts.
    let err = tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect_err("inputs first");
    assert_eq!(api_error(err), (409, "inputs_missing".to_owned()));

    // Tampered inputs: refused when the manifest comes, dropped, and the lease waits on.
    tenant
        .deliver_inputs(LEASE, &w.provider_key, &inputs_archive("6,6,6\n"))
        .await
        .expect("sealed inputs are taken");
    let err = tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect_err("tampered inputs refused");
    assert_eq!(api_error(err), (400, "inputs_mismatch".to_owned()));
    assert!(w.driver.started_specs().is_empty(), "nothing may start");
    assert!(completions(&w.chain).is_empty(), "the lease is not ended");

    // Inputs sealed to someone else do not open.
    let other = gpunet_client::sealing::random_secret().public();
    let err = tenant
        .deliver_inputs(LEASE, &other, &archive)
        .await
        .expect_err("not for this provider");
    assert_eq!(api_error(err), (400, "inputs_unreadable".to_owned()));

    // The right inputs, then the manifest: the workload starts with them in place.
    tenant
        .deliver_inputs(LEASE, &w.provider_key, &archive)
        .await
        .expect("inputs taken");
    tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect("the manifest is taken");
    let started = w.driver.started_specs();
    assert_eq!(started.len(), 1);
    let inputs = started[0].root_dir.join("inputs");
    assert_eq!(
        std::fs::read_to_string(inputs.join("data/x.csv")).expect("placed"),
        "1,2,3\n"
    );
    assert_eq!(
        std::fs::read_to_string(inputs.join("train.sh")).expect("placed"),
        "cat data/x.csv\n"
    );
    assert!(
        !started[0].root_dir.join("inputs.tar").exists(),
        "the staged archive is gone once placed"
    );
}

#[tokio::test]
async fn a_lease_the_chain_pauses_freezes_its_workload_until_resumed() {
    let w = world(FakeDriver::new().hanging(), Duration::from_secs(60)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect("accepted");
    let workload = w
        .leases
        .get(LEASE)
        .and_then(|r| r.handle)
        .expect("the workload runs")
        .workload_id;
    w.leases.on_lease_paused(LEASE);
    let driver = Arc::clone(&w.driver);
    wait_for("the workload to freeze", || driver.is_paused(&workload)).await;
    // Paused is not ended: it keeps its resources and reports nothing.
    assert_eq!(
        w.leases.get(LEASE).map(|r| r.state()),
        Some(WorkloadState::Running)
    );
    assert!(completions(&w.chain).is_empty());
    w.leases.on_lease_resumed(LEASE);
    wait_for("the workload to thaw", || !driver.is_paused(&workload)).await;
    w.leases.on_lease_ended(LEASE);
}

fn releases(chain: &StubChain) -> Vec<LeaseId> {
    chain
        .submitted()
        .into_iter()
        .filter_map(|m| match m {
            Msg::ReleaseLease { lease } => Some(lease),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_leaving_provider_stops_the_workload_releases_the_lease_and_reports_no_result() {
    let w = world(FakeDriver::new().hanging(), Duration::from_secs(60)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect("accepted");
    let chain = Arc::clone(&w.chain);
    wait_for("StartLease", || {
        chain
            .submitted()
            .iter()
            .any(|m| matches!(m, Msg::StartLease { .. }))
    })
    .await;
    assert!(!w.leases.is_settled(), "a workload runs");
    w.leases.leave();
    // The next poll sees the provider leaving again: nothing more happens.
    w.leases.leave();
    assert!(w.leases.is_leaving());
    let leases = Arc::clone(&w.leases);
    wait_for("the lease to be released", || {
        leases.get(LEASE).is_some_and(|r| r.phase == Phase::Ended)
    })
    .await;
    assert_eq!(releases(&w.chain), vec![LEASE], "released, once");
    assert!(
        completions(&w.chain).is_empty(),
        "a stopped workload of a leaving provider reports no result"
    );
    let record = w.leases.get(LEASE).expect("record");
    assert_eq!(record.state(), WorkloadState::Exited);
    assert_eq!(
        record.exit.map(|e| e.reason),
        Some(gpunet_runtime::ExitReason::Stopped)
    );
    assert!(w.leases.held().is_empty());
    assert!(
        w.leases.is_settled(),
        "nothing left: the agent may deregister"
    );
}

#[tokio::test]
async fn a_lease_waiting_for_its_manifest_is_released_at_once_when_the_provider_leaves() {
    let w = world(FakeDriver::new(), Duration::from_millis(300)).await;
    let tenant = ProviderClient::new(&w.endpoint, w.tenant.clone());
    // Any signed request makes the agent track the lease (as the chain's event would).
    tenant.status(LEASE).await.expect("status");
    w.leases.leave();
    let chain = Arc::clone(&w.chain);
    wait_for("the lease to be released", || {
        releases(&chain) == vec![LEASE]
    })
    .await;
    let err = tenant
        .deliver_manifest(LEASE, &w.provider_key, &w.manifest)
        .await
        .expect_err("given back");
    assert_eq!(api_error(err), (410, "lease_ended".to_owned()));
    // The manifest timer fires later and finds nothing to reject.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(completions(&w.chain).is_empty());
    assert!(w.driver.started_specs().is_empty(), "nothing started");
    assert_eq!(releases(&w.chain), vec![LEASE]);
    let view = tenant.status(LEASE).await.expect("status");
    assert_eq!(view.state, WorkloadState::Failed);
    assert!(
        view.detail.is_some_and(|d| d.contains("leaving")),
        "the tenant is told why"
    );
}
