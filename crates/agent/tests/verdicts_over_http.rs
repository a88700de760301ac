//! The verifier's side of a `compare: tensors` order over the wire: the real agent route
//! (`PUT /v1/verdicts/{order}/runs/{lease}`) and the real `Judge`, against a stub node that
//! serves what `NodeClient` reads (the order, this provider, the status, the params, the
//! account) and records every transaction posted to it, answering each as applied.
//!
//! A tenant's bundles are kept only as the chain committed to them, only from the order's
//! tenant, only for the order's runs, only while this provider judges it, and each signed
//! request once; the verdict names the runs that agree, and those never received once the
//! deadline is near.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gpunet_agent::leases::{Leases, LeasesConfig};
use gpunet_agent::server;
use gpunet_agent::verdicts::Judge;
use gpunet_agent::{Chain, Drivers, NodeChain, Retention};
use gpunet_api::ErrorBody;
use gpunet_api::auth::{RequestNonce, sign_request};
use gpunet_api::node::{
    AccountView, HardwareView, OrderState, OrderView, ParamsView, ProviderView, RunView,
    StatusView, SubmitTx, SubmitTxResult, TxState, TxView, VerificationView,
};
use gpunet_api::provider::{OutputFile, OutputListing};
use gpunet_client::{ClientError, KeyFile, NodeClient, ProviderClient};
use gpunet_protocol::jobspec::JobSpec;
use gpunet_protocol::{
    Address, Amount, BundleEntry, EncryptionKey, Hash, LeaseId, Msg, OrderId, Purpose, RunBundle,
    SealContext, SignedTx, result_tag,
};
use gpunet_runtime::{Driver, FakeDriver};

const ORDER: OrderId = OrderId(5);
/// An order the stub node does not know.
const UNKNOWN_ORDER: OrderId = OrderId(6);
/// An order another provider judges.
const OTHERS_ORDER: OrderId = OrderId(7);
const RUN_A: LeaseId = LeaseId(11);
const RUN_B: LeaseId = LeaseId(12);
/// A lease that is not one of the order's runs.
const NOT_A_RUN: LeaseId = LeaseId(99);
/// The verdict is due by this height.
const DEADLINE_HEIGHT: u64 = 100;
const MARGIN_BLOCKS: u64 = 2;
/// A height far from the deadline: the agent judges only once every run is in.
const EARLY_HEIGHT: u64 = 10;
const CHAIN_ID: &str = "gpunet-test";

const TENSOR_JOB: &str = "version: 1\nname: t\nrun: { command: [\"true\"] }\nresources: { cpu: 1, memory: 64Mi, disk: 64Mi }\npricing: { max_per_hour: \"1.00\", deposit: \"1.00\" }\nlimits: { max_duration: 1m }\nverification: { mode: replicas, replicas: 2, compare: tensors, tensors: { outputs: [y.npy], rtol: 1e-3, atol: 1e-6 } }\n";

/// A 1-d little-endian f32 `.npy` file.
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

/// The run's bundle with `y` as its only output, and the tag the run reported for it.
fn run_bundle(manifest: &[u8], y: Vec<u8>) -> (Hash, RunBundle) {
    let entry = BundleEntry {
        path: "y.npy".into(),
        size: y.len() as u64,
        digest: Hash::of(&y),
    };
    (
        tag_of(std::slice::from_ref(&entry)),
        RunBundle {
            manifest: manifest.to_vec(),
            listing: vec![entry],
            files: vec![("y.npy".into(), y)],
        },
    )
}

/// The tag a run of [`ORDER`] reports for `listing`.
fn tag_of(listing: &[BundleEntry]) -> Hash {
    let files: Vec<OutputFile> = listing
        .iter()
        .map(|e| OutputFile {
            path: e.path.clone(),
            size: e.size,
            digest: e.digest,
        })
        .collect();
    result_tag(ORDER, &OutputListing::digest_of(&files))
}

/// A node that knows one order and one provider, and applies every well-signed transaction.
struct StubNode {
    orders: BTreeMap<OrderId, OrderView>,
    provider: ProviderView,
    txs: Mutex<Vec<SignedTx>>,
}

impl StubNode {
    fn txs(&self) -> Vec<SignedTx> {
        self.txs.lock().expect("the stub's lock").clone()
    }
}

type Node = State<Arc<StubNode>>;

fn not_found(what: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(ErrorBody::new(
            "not_found",
            format!("{what} is not on chain"),
        )),
    )
        .into_response()
}

fn bad_tx(why: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(ErrorBody::new("malformed_tx", why)),
    )
        .into_response()
}

async fn node_status(State(node): Node) -> Json<StatusView> {
    Json(StatusView {
        chain_id: CHAIN_ID.into(),
        height: EARLY_HEIGHT,
        time_ms: 0,
        state_root: Hash([0; 32]),
        block_ms: 1_000,
        orderer: "solo".into(),
        mempool_size: node.txs().len(),
        version: "stub".into(),
        validators: Vec::new(),
    })
}

async fn node_params() -> Json<ParamsView> {
    Json(ParamsView {
        height: EARLY_HEIGHT,
        min_tx_fee: Amount::from_micros(1_000),
        min_provider_stake: Amount::ZERO,
        protocol_fee_bps: 0,
        bid_window_blocks: 1,
        order_ttl_blocks: 100,
        start_timeout_blocks: 10,
        max_bids_per_order: 10,
        max_lease_duration_secs: 3_600,
        heartbeat_interval_blocks: 10,
        liveness_timeout_blocks: 30,
        escrow_warning_secs: 60,
        pause_grace_blocks: 10,
        exclusion_lapse_blocks: 0,
        stake_per_gpu: Amount::ZERO,
        slash_bps: 0,
        slash_to_tenant_bps: 0,
        jail_blocks: 0,
        probation_runs: 0,
        probation_max_deposit: Amount::ZERO,
        spot_check_min_ppm: 0,
        spot_check_record_ppm: 0,
        gpn_reference_price: Amount::ZERO,
        reveal_window_blocks: 10,
        reputation_half_life_blocks: 1_000,
        dispute_window_blocks: 10,
        verdict_window_blocks: 20,
        verdict_fee: Amount::ZERO,
        challenge_bands: Vec::new(),
        challenge_target_ms: 0,
        challenge_slack_bps: 0,
        challenge_allowance_ms: 0,
        challenge_samples: 0,
        challenge_open_blocks: 0,
        challenge_interval_blocks: 0,
        unbonding_blocks: 0,
    })
}

async fn node_account(State(node): Node, Path(address): Path<String>) -> Response {
    let Ok(address) = address.parse::<Address>() else {
        return bad_tx(format!("{address:?} is not an address"));
    };
    let sent = node
        .txs()
        .iter()
        .filter(|t| t.body.signer == address)
        .count() as u64;
    Json(AccountView {
        height: EARLY_HEIGHT,
        address,
        balances: Default::default(),
        nonce: sent,
        next_nonce: sent,
        unbonding: Vec::new(),
    })
    .into_response()
}

/// Admits a transaction as the node would: hex of its borsh encoding, a valid signature, this
/// chain, the signer's next nonce.
async fn node_submit(State(node): Node, Json(submit): Json<SubmitTx>) -> Response {
    let hex_str = submit.tx_hex.trim();
    let hex_str = hex_str.strip_prefix("0x").unwrap_or(hex_str);
    let Ok(bytes) = hex::decode(hex_str) else {
        return bad_tx("tx_hex is not hex".into());
    };
    let tx = match SignedTx::decode(&bytes) {
        Ok(tx) => tx,
        Err(r) => return bad_tx(format!("not a transaction: {r:?}")),
    };
    if let Err(r) = tx.verify_signature() {
        return bad_tx(format!("bad signature: {r:?}"));
    }
    if tx.body.chain_id != CHAIN_ID {
        return bad_tx(format!("chain id {:?}", tx.body.chain_id));
    }
    let mut txs = node.txs.lock().expect("the stub's lock");
    let next = txs
        .iter()
        .filter(|t| t.body.signer == tx.body.signer)
        .count() as u64;
    if tx.body.nonce != next {
        return bad_tx(format!("nonce {} where {next} is next", tx.body.nonce));
    }
    let tx_hash = tx.hash();
    txs.push(tx);
    Json(SubmitTxResult { tx_hash }).into_response()
}

async fn node_tx(State(node): Node, Path(hash): Path<String>) -> Json<TxView> {
    let found = node
        .txs()
        .iter()
        .find(|t| t.hash().to_string() == hash)
        .map(SignedTx::hash);
    Json(TxView {
        height: EARLY_HEIGHT,
        tx_hash: found.unwrap_or(Hash([0; 32])),
        state: if found.is_some() {
            TxState::Applied
        } else {
            TxState::Unknown
        },
        block_height: found.map(|_| EARLY_HEIGHT),
        rejection: None,
        events: Vec::new(),
    })
}

async fn node_order(State(node): Node, Path(id): Path<String>) -> Response {
    match id
        .parse::<OrderId>()
        .ok()
        .and_then(|id| node.orders.get(&id))
    {
        Some(order) => Json(order.clone()).into_response(),
        None => not_found(format!("order {id}")),
    }
}

async fn node_provider(State(node): Node, Path(address): Path<String>) -> Response {
    if address == node.provider.address.to_string() {
        Json(node.provider.clone()).into_response()
    } else {
        not_found(format!("provider {address}"))
    }
}

async fn serve_node(node: Arc<StubNode>) -> String {
    let app = Router::new()
        .route("/v1/status", get(node_status))
        .route("/v1/params", get(node_params))
        .route("/v1/accounts/{address}", get(node_account))
        .route("/v1/txs", axum::routing::post(node_submit))
        .route("/v1/txs/{hash}", get(node_tx))
        .route("/v1/orders/{id}", get(node_order))
        .route("/v1/providers/{address}", get(node_provider))
        .with_state(node);
    serve(app).await
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn order_view(tenant: Address, spec: &JobSpec, verifier: Address, runs: &[Run]) -> OrderView {
    OrderView {
        id: ORDER,
        tenant,
        terms: spec.order_terms(),
        state: OrderState::Verifying,
        created_height: 1,
        created_ms: 0,
        escrow: Amount::from_micros(1_000_000),
        bids: vec![],
        lease: None,
        attempts: vec![],
        excluded: vec![],
        open_since_height: 1,
        not_before_ms: 0,
        verification: Some(VerificationView {
            stage: "judging".into(),
            needed: 2,
            until_height: Some(DEADLINE_HEIGHT),
            verifier: Some(verifier),
            runs: runs
                .iter()
                .enumerate()
                .map(|(i, r)| RunView {
                    lease: r.lease,
                    provider: Address([i as u8 + 1; 32]),
                    tag: r.tag,
                    reveal_due: false,
                    revealed: false,
                    wrong: false,
                })
                .collect(),
            outcome: None,
        }),
    }
}

fn provider_view(address: Address, encryption_key: EncryptionKey) -> ProviderView {
    ProviderView {
        address,
        profile: gpunet_protocol::ProviderProfile {
            encryption_key,
            ..Default::default()
        },
        stake: Amount::ZERO,
        registered_height: 1,
        live_leases: Vec::new(),
        free_cpu_millis: 1_000,
        free_memory_mib: 1_024,
        free_gpus: 0,
        leases_completed: 0,
        leases_failed: 0,
        last_heartbeat_height: 1,
        leaving: false,
        reputation_ppm: 500_000,
        jailed_until_height: 0,
        slashed: Amount::ZERO,
        verified_runs: Vec::new(),
        hardware: HardwareView {
            challenged: false,
            proven: true,
            passed: 0,
            failed: 0,
            next_at_height: 1,
            challenge: None,
        },
        judging: vec![ORDER],
        uptime: Default::default(),
    }
}

/// One run of the order: its lease, the tag it reported, and the bundle the tenant holds.
struct Run {
    lease: LeaseId,
    tag: Hash,
    bundle: RunBundle,
}

struct World {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    node: Arc<StubNode>,
    judge: Arc<Judge>,
    /// The verifier's agent.
    endpoint: String,
    agent: Address,
    /// The verifier's registered encryption key.
    verifier_key: EncryptionKey,
    tenant: KeyFile,
    manifest: Vec<u8>,
    runs: Vec<Run>,
}

/// A verifier judging [`ORDER`], whose runs reported outputs `ys`, in run order.
async fn world(ys: &[(LeaseId, &[f32])]) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("agent");
    let tenant = KeyFile::generate();
    let agent_key = KeyFile::generate();
    let agent = agent_key.address();
    let secret = gpunet_client::sealing::random_secret();
    let spec = JobSpec::parse_yaml(TENSOR_JOB).expect("a valid tensors job");
    let manifest = spec.manifest_bytes();
    assert_eq!(spec.order_terms().manifest_hash, Hash::of(&manifest));
    let runs: Vec<Run> = ys
        .iter()
        .map(|(lease, y)| {
            let (tag, bundle) = run_bundle(&manifest, npy_f32(y));
            Run {
                lease: *lease,
                tag,
                bundle,
            }
        })
        .collect();
    let mut others = order_view(tenant.address(), &spec, Address([0xee; 32]), &runs);
    others.id = OTHERS_ORDER;
    let node = Arc::new(StubNode {
        orders: [
            (ORDER, order_view(tenant.address(), &spec, agent, &runs)),
            (OTHERS_ORDER, others),
        ]
        .into(),
        provider: provider_view(agent, secret.public()),
        txs: Mutex::new(Vec::new()),
    });
    let node_url = serve_node(Arc::clone(&node)).await;

    // As the agent's `run` wires them: one client for the judge and the leases' chain.
    let client = Arc::new(NodeClient::new(&node_url).with_signer(agent_key));
    let judge = Arc::new(Judge::new(
        Arc::clone(&client),
        agent,
        secret.clone(),
        &data_dir,
    ));
    let chain: Arc<dyn Chain> = Arc::new(NodeChain::new(Arc::clone(&client)));
    let driver: Arc<dyn Driver> = Arc::new(FakeDriver::new());
    let leases: Arc<Leases> = Leases::new(
        LeasesConfig {
            capabilities: Default::default(),
            provider: agent,
            data_dir: data_dir.clone(),
            gpu_uuids: vec![],
            manifest_timeout: Duration::from_secs(60),
            encryption_secret: secret.clone(),
            retention: Retention::default(),
            policy: gpunet_agent::TenantPolicy::default(),
            checkpoints: None,
            exit_grace: gpunet_agent::DEFAULT_EXIT_GRACE,
            chain_id: CHAIN_ID.into(),
            allow_private_blob_endpoints: false,
            ingress: None,
        },
        chain,
        Drivers::single(driver).expect("the fake driver runs processes"),
    )
    .expect("the lease records load");
    let endpoint = serve(server::router_with_judge(leases, Arc::clone(&judge))).await;
    World {
        _dir: dir,
        data_dir,
        node,
        judge,
        endpoint,
        agent,
        verifier_key: secret.public(),
        tenant,
        manifest,
        runs,
    }
}

impl World {
    fn run(&self, lease: LeaseId) -> &Run {
        self.runs
            .iter()
            .find(|r| r.lease == lease)
            .expect("a run of the world")
    }

    fn tenant_client(&self) -> ProviderClient {
        ProviderClient::new(&self.endpoint, self.tenant.clone())
    }

    /// Sends `bundle` as the tenant, sealed to the verifier, as the run of `lease` of `order`.
    async fn deliver(
        &self,
        order: OrderId,
        lease: LeaseId,
        bundle: &RunBundle,
    ) -> Result<(), ClientError> {
        self.tenant_client()
            .deliver_run_for_verdict(order, lease, &self.verifier_key, bundle)
            .await
    }

    /// Every transaction the agent posted: its signer and message.
    fn posted(&self) -> Vec<(Address, Msg)> {
        self.node
            .txs()
            .into_iter()
            .map(|t| (t.body.signer, t.body.msg))
            .collect()
    }

    /// The bundles the agent keeps for [`ORDER`].
    fn kept(&self) -> Vec<String> {
        let dir = self.data_dir.join("verdicts").join(ORDER.0.to_string());
        match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .map(|e| {
                    e.expect("a readable entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot read {}: {e}", dir.display()),
        }
    }
}

fn verdict(agreeing: &[LeaseId], missing: &[LeaseId]) -> Msg {
    Msg::PostVerdict {
        order: ORDER,
        agreeing: agreeing.to_vec(),
        missing: missing.to_vec(),
    }
}

fn api_error(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, body, .. } => (status, body.name),
        other => panic!("expected an API error, got {other}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// PUTs `body` as `key` at `path` with exactly this `nonce` and timestamp.
async fn signed_put(
    endpoint: &str,
    key: &KeyFile,
    path: &str,
    timestamp_ms: u64,
    nonce: RequestNonce,
    body: &[u8],
) -> (u16, Option<ErrorBody>) {
    let mut req = reqwest::Client::new()
        .put(format!("{endpoint}{path}"))
        .header("content-type", "application/octet-stream")
        .body(body.to_vec());
    for (name, value) in sign_request(&key.key, "PUT", path, timestamp_ms, nonce, body) {
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

/// `bundle` sealed to `key` for the run of `lease`, as the tenant's client seals it.
fn sealed(key: &EncryptionKey, lease: LeaseId, bundle: &RunBundle) -> Vec<u8> {
    let ctx = SealContext {
        purpose: Purpose::Verdict,
        lease,
    };
    let plain = borsh::to_vec(bundle).expect("a bundle encodes");
    gpunet_client::sealing::seal(key, ctx, &plain).expect("seals")
}

#[tokio::test]
async fn the_tenants_bundles_are_kept_and_one_verdict_names_both_close_runs_agreeing() {
    let w = world(&[(RUN_A, &[1.0, 2.0]), (RUN_B, &[1.0, 2.000_000_2])]).await;
    // Out of run order: the verdict follows the order's runs, not the deliveries.
    for lease in [RUN_B, RUN_A] {
        w.deliver(ORDER, lease, &w.run(lease).bundle)
            .await
            .unwrap_or_else(|e| panic!("the run of lease {lease} is refused: {e}"));
    }
    let mut kept = w.kept();
    kept.sort();
    assert_eq!(kept, vec![RUN_A.0.to_string(), RUN_B.0.to_string()]);

    // Every run is in: the agent judges at once, far from the deadline.
    w.judge.round(EARLY_HEIGHT, MARGIN_BLOCKS).await;
    assert_eq!(w.posted(), vec![(w.agent, verdict(&[RUN_A, RUN_B], &[]))]);
    // Once posted, never again, though the node still lists the order as being judged.
    w.judge
        .round(DEADLINE_HEIGHT - MARGIN_BLOCKS, MARGIN_BLOCKS)
        .await;
    assert_eq!(w.posted().len(), 1, "{:?}", w.posted());
}

#[tokio::test]
async fn hostile_bundles_are_refused_and_kept_nowhere_so_a_late_verdict_names_every_run_missing() {
    let w = world(&[(RUN_A, &[1.0, 2.0]), (RUN_B, &[1.0, 2.000_000_2])]).await;
    let good = &w.run(RUN_A).bundle;

    let mut altered = good.clone();
    altered.files[0].1 = npy_f32(&[1.0, 9.0]);
    // The listing re-made for the altered bytes: consistent, but not what the run reported.
    let mut relisted = altered.clone();
    relisted.listing[0].digest = Hash::of(&relisted.files[0].1);
    relisted.listing[0].size = relisted.files[0].1.len() as u64;
    assert_ne!(tag_of(&relisted.listing), w.run(RUN_A).tag);
    let mut other_manifest = good.clone();
    other_manifest.manifest = JobSpec::parse_yaml(&TENSOR_JOB.replace("rtol: 1e-3", "rtol: 1"))
        .expect("a valid tensors job")
        .manifest_bytes();
    assert_ne!(other_manifest.manifest, w.manifest);

    for (what, bundle) in [
        ("altered bytes", &altered),
        ("a listing the run did not report", &relisted),
        ("a manifest the order does not commit to", &other_manifest),
    ] {
        let err = w.deliver(ORDER, RUN_A, bundle).await.expect_err("refused");
        assert_eq!(
            api_error(err),
            (422, "bundle_mismatch".to_owned()),
            "{what}"
        );
    }

    let stranger = ProviderClient::new(&w.endpoint, KeyFile::generate());
    let err = stranger
        .deliver_run_for_verdict(ORDER, RUN_A, &w.verifier_key, good)
        .await
        .expect_err("a stranger is refused");
    assert_eq!(api_error(err), (403, "forbidden".to_owned()));

    let err = w
        .deliver(ORDER, NOT_A_RUN, good)
        .await
        .expect_err("not a run");
    assert_eq!(api_error(err), (404, "not_a_run".to_owned()));

    for order in [UNKNOWN_ORDER, OTHERS_ORDER] {
        let err = w
            .deliver(order, RUN_A, good)
            .await
            .expect_err("an order this agent does not judge");
        assert_eq!(api_error(err), (409, "not_judging".to_owned()), "{order}");
    }

    let someone_else = gpunet_client::sealing::random_secret().public();
    let err = w
        .tenant_client()
        .deliver_run_for_verdict(ORDER, RUN_A, &someone_else, good)
        .await
        .expect_err("sealed to another key");
    assert_eq!(api_error(err), (400, "bundle_malformed".to_owned()));

    // Sealed to the verifier, but for the other run: it does not open as this one.
    let path = format!("/v1/verdicts/{ORDER}/runs/{RUN_B}");
    let for_a = sealed(&w.verifier_key, RUN_A, good);
    let (status, body) = signed_put(
        &w.endpoint,
        &w.tenant,
        &path,
        now_ms(),
        RequestNonce([7; 16]),
        &for_a,
    )
    .await;
    assert_eq!(
        (status, body.map(|b| b.name)),
        (400, Some("bundle_malformed".to_owned()))
    );

    assert_eq!(w.kept(), Vec::<String>::new(), "a hostile bundle was kept");

    // Far from the deadline, with runs still out, the agent waits.
    w.judge.round(EARLY_HEIGHT, MARGIN_BLOCKS).await;
    assert_eq!(w.posted(), vec![], "judged early without every run");
    // Within the margin of the deadline, it judges with what it has: nothing.
    w.judge
        .round(DEADLINE_HEIGHT - MARGIN_BLOCKS, MARGIN_BLOCKS)
        .await;
    assert_eq!(w.posted(), vec![(w.agent, verdict(&[], &[RUN_A, RUN_B]))]);
}

#[tokio::test]
async fn the_same_signed_bundle_sent_twice_is_refused_the_second_time() {
    let w = world(&[(RUN_A, &[1.0, 2.0]), (RUN_B, &[1.0, 2.000_000_2])]).await;
    let path = format!("/v1/verdicts/{ORDER}/runs/{RUN_A}");
    let body = sealed(&w.verifier_key, RUN_A, &w.run(RUN_A).bundle);
    let now = now_ms();
    let nonce = RequestNonce([0x42; 16]);
    let (first, error) = signed_put(&w.endpoint, &w.tenant, &path, now, nonce, &body).await;
    assert_eq!(first, 204, "{error:?}");
    let (second, error) = signed_put(&w.endpoint, &w.tenant, &path, now, nonce, &body).await;
    assert_eq!(
        (second, error.map(|b| b.name)),
        (401, Some("replayed_request".to_owned()))
    );
    // The first was kept; with the other run in too, the verdict comes at once.
    w.deliver(ORDER, RUN_B, &w.run(RUN_B).bundle)
        .await
        .expect("the other run is kept");
    w.judge.round(EARLY_HEIGHT, MARGIN_BLOCKS).await;
    assert_eq!(w.posted(), vec![(w.agent, verdict(&[RUN_A, RUN_B], &[]))]);
}

#[tokio::test]
async fn a_run_far_from_the_other_agrees_with_none_and_the_verdict_names_no_run() {
    const RUN_C: LeaseId = LeaseId(13);
    let w = world(&[(RUN_A, &[1.0, 2.0]), (RUN_C, &[1.0, 9.0])]).await;
    for lease in [RUN_A, RUN_C] {
        w.deliver(ORDER, lease, &w.run(lease).bundle)
            .await
            .unwrap_or_else(|e| panic!("the run of lease {lease} is refused: {e}"));
    }
    w.judge.round(EARLY_HEIGHT, MARGIN_BLOCKS).await;
    assert_eq!(w.posted(), vec![(w.agent, verdict(&[], &[]))]);
}

#[tokio::test]
async fn a_run_never_sent_is_named_missing_once_the_deadline_is_near() {
    let w = world(&[(RUN_A, &[1.0, 2.0]), (RUN_B, &[1.0, 2.000_000_2])]).await;
    w.deliver(ORDER, RUN_A, &w.run(RUN_A).bundle)
        .await
        .expect("the run is kept");
    // One run of two is in: the agent waits for the other while there is time.
    w.judge.round(EARLY_HEIGHT, MARGIN_BLOCKS).await;
    assert_eq!(w.posted(), vec![], "judged early without every run");
    // A lone run agrees with none; the withheld one is missing, which costs its provider
    // nothing.
    w.judge
        .round(DEADLINE_HEIGHT - MARGIN_BLOCKS, MARGIN_BLOCKS)
        .await;
    assert_eq!(w.posted(), vec![(w.agent, verdict(&[], &[RUN_B]))]);
}
