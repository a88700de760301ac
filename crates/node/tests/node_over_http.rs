//! A real node — real redb store in a temporary directory, real HTTP on 127.0.0.1 — driven the
//! way a client drives it.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gpunet_api::node::{AccountView, EventEnvelope, StatusView, SubmitTxResult, TxState, TxView};
use gpunet_api::{ErrorBody, HEIGHT_HEADER};
use gpunet_ledger::{Genesis, GenesisAccount, Params};
use gpunet_node::{MempoolLimits, NodeConfig, NodeHandle};
use gpunet_protocol::{
    Address, Amount, Balances, Denom, Event, Hash, Msg, OrderId, OrderTerms, Resources, Runtime,
    SignedTx, TxBody,
};

const CHAIN: &str = "gpunet-node-test";
/// Longest a test waits for something the node should do within a few blocks.
const PATIENCE: Duration = Duration::from_secs(15);

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn addr(seed: u8) -> Address {
    Address::from_key(&key(seed).verifying_key())
}

fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("small amounts fit")
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        params: Params::default(),
        accounts: std::iter::once(1)
            .chain(PROVIDER_SEEDS)
            .map(|seed| GenesisAccount {
                address: addr(seed),
                balances: Balances {
                    usd: units(1_000),
                    gpn: units(1_000),
                },
            })
            .collect(),
    }
}

/// Accounts funded at genesis to register as providers (and post orders of their own).
const PROVIDER_SEEDS: std::ops::Range<u8> = 10..15;

async fn start_node(home: &Path, block_ms: u64) -> NodeHandle {
    gpunet_node::start(NodeConfig {
        home: home.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("valid address"),
        block_ms,
        genesis: genesis(),
        mempool: MempoolLimits::default(),
    })
    .await
    .expect("node starts")
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(node: &NodeHandle) -> Api {
        Api {
            base: format!("http://{}", node.api_addr()),
            http: reqwest::Client::new(),
        }
    }

    async fn get_raw(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request reaches the node")
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let r = self.get_raw(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        assert!(r.headers().contains_key(HEIGHT_HEADER), "GET {path}");
        r.json().await.expect("JSON answer")
    }

    async fn get_error(&self, path: &str, status: u16) -> ErrorBody {
        let r = self.get_raw(path).await;
        assert_eq!(r.status(), status, "GET {path}");
        r.json().await.expect("JSON error body")
    }

    async fn post_hex(&self, tx_hex: String) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/txs", self.base))
            .json(&serde_json::json!({ "tx_hex": tx_hex }))
            .send()
            .await
            .expect("request reaches the node")
    }

    async fn submit(&self, tx: &SignedTx) -> Hash {
        let r = self.post_hex(hex::encode(tx.encode())).await;
        assert_eq!(r.status(), 202, "submit {:?}", tx.body.msg.kind());
        r.json::<SubmitTxResult>().await.expect("JSON").tx_hash
    }

    async fn rejection(&self, tx_hex: String) -> String {
        let r = self.post_hex(tx_hex).await;
        assert_eq!(r.status(), 400);
        r.json::<ErrorBody>().await.expect("JSON error body").name
    }

    async fn account(&self, who: Address) -> AccountView {
        self.get(&format!("/v1/accounts/{who}")).await
    }

    async fn wait_applied(&self, hash: Hash) -> TxView {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let view: TxView = self.get(&format!("/v1/txs/{hash}")).await;
            match view.state {
                TxState::Applied => return view,
                TxState::Pending => {}
                other => panic!("transaction {hash} is {other:?}: {view:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "transaction {hash} never applied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_height(&self, height: u64) {
        let deadline = Instant::now() + PATIENCE;
        while self.get::<StatusView>("/v1/status").await.height < height {
            assert!(Instant::now() < deadline, "height {height} never reached");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn transfer(nonce: u64, fee: Amount, amount: Amount) -> TxBody {
    TxBody {
        chain_id: CHAIN.into(),
        signer: addr(1),
        nonce,
        fee,
        msg: Msg::Transfer {
            to: addr(2),
            denom: Denom::Usd,
            amount,
        },
    }
}

fn fee() -> Amount {
    Params::default().min_tx_fee
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_submitted_over_http_is_applied_and_balances_match() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 50).await;
    let api = Api::new(&node);

    let hash = api
        .submit(&transfer(0, fee(), units(25)).sign(&key(1)))
        .await;
    let view = api.wait_applied(hash).await;
    assert!(view.block_height.is_some());
    assert!(view.events.iter().any(|e| matches!(
        e,
        Event::Transferred { amount, .. } if *amount == units(25)
    )));

    let sender = api.account(addr(1)).await;
    assert_eq!(sender.balances.usd, units(975));
    assert_eq!(
        sender.balances.gpn,
        units(1_000).checked_sub(fee()).expect("fee < balance")
    );
    assert_eq!(sender.nonce, 1);
    assert_eq!(sender.next_nonce, 1);
    let recipient = api.account(addr(2)).await;
    assert_eq!(recipient.balances.usd, units(25));

    // The block that holds it is served too.
    let block_height = view.block_height.expect("applied in a block");
    let block: gpunet_api::node::BlockView = api.get(&format!("/v1/blocks/{block_height}")).await;
    assert_eq!(block.tx_hashes, vec![hash]);

    let metrics = api.get_raw("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("gpunet_blocks_produced_total"),
        "{metrics}"
    );
    assert!(metrics.contains("gpunet_txs_applied_total 1"), "{metrics}");
    let openapi: serde_json::Value = api
        .get_raw("/openapi.json")
        .await
        .json()
        .await
        .expect("JSON");
    assert!(openapi["paths"]["/v1/accounts/{address}"].is_object());
    // Integer parameters are integers, and limits the server enforces are declared.
    let param = |path: &str, name: &str| {
        openapi["paths"][path]["get"]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .map(|p| p["schema"].clone())
            .unwrap_or_else(|| panic!("no parameter {name} on {path}"))
    };
    for (path, name) in [
        ("/v1/orders/{id}", "id"),
        ("/v1/orders/{id}/explain", "id"),
        ("/v1/leases/{id}", "id"),
        ("/v1/blocks/{height}", "height"),
        ("/v1/orders", "limit"),
        ("/v1/events", "from_height"),
    ] {
        assert_eq!(param(path, name)["type"], "integer", "{path} {name}");
    }
    for list in ["/v1/orders", "/v1/providers"] {
        assert_eq!(param(list, "limit")["type"], "integer", "{list}");
        assert_eq!(
            param(list, "limit")["maximum"],
            gpunet_api::node::MAX_PAGE_LIMIT,
            "{list}"
        );
        assert_eq!(param(list, "limit")["minimum"], 1, "{list}");
        assert_eq!(param(list, "after")["type"], "string", "{list}");
    }
    assert!(openapi["paths"]["/v1/providers/{address}"]["get"].is_object());
    let account_txs = "/v1/accounts/{address}/txs";
    assert_eq!(param(account_txs, "limit")["type"], "integer");
    assert_eq!(
        param(account_txs, "limit")["maximum"],
        gpunet_api::node::MAX_ACCOUNT_TXS_LIMIT
    );
    assert_eq!(param(account_txs, "limit")["minimum"], 1);
    assert_eq!(param(account_txs, "after")["type"], "string");
    assert!(openapi["components"]["schemas"]["AccountTxList"].is_object());
    let schemas = &openapi["components"]["schemas"];
    assert_eq!(
        schemas["SubmitTx"]["properties"]["tx_hex"]["maxLength"],
        gpunet_api::node::MAX_TX_HEX_CHARS
    );
    assert_eq!(
        schemas["SubmitTxBatch"]["properties"]["txs_hex"]["maxItems"],
        gpunet_api::node::MAX_TX_BATCH_TXS
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_over_http_gets_a_named_400_and_changes_nothing() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 50).await;
    let api = Api::new(&node);

    // One good transaction first, so that nonce 0 can be replayed.
    let hash = api
        .submit(&transfer(0, fee(), units(1)).sign(&key(1)))
        .await;
    api.wait_applied(hash).await;
    let sender_before = api.account(addr(1)).await;
    let recipient_before = api.account(addr(2)).await;

    let good = transfer(1, fee(), units(1)).sign(&key(1));
    let encoded = good.encode();
    assert_eq!(api.rejection("zz-not-hex".into()).await, "malformed_tx");
    assert_eq!(
        api.rejection(hex::encode(&encoded[..encoded.len() - 5]))
            .await,
        "malformed_tx"
    );
    // Just over the limit, and far over the request body limit.
    let too_large = gpunet_protocol::MAX_TX_BYTES + 1;
    assert_eq!(api.rejection("00".repeat(too_large)).await, "tx_too_large");
    // A body far over the limit is refused before it is read: the answer is `tx_too_large`, or —
    // when the node closes the connection while the client is still writing — a failed send.
    // Either way nothing is admitted (checked with the balances below).
    let huge = api
        .http
        .post(format!("{}/v1/txs", api.base))
        .json(&serde_json::json!({ "tx_hex": "00".repeat(1 << 20) }))
        .send()
        .await;
    match huge {
        Ok(r) => {
            assert!(r.status().is_client_error(), "{}", r.status());
            let body: ErrorBody = r.json().await.expect("JSON error body");
            assert_eq!(body.name, "tx_too_large");
        }
        Err(e) => assert!(e.is_request(), "unexpected failure: {e}"),
    }
    let mut bad_sig = good.clone();
    bad_sig.signature[3] ^= 0x40;
    assert_eq!(
        api.rejection(hex::encode(bad_sig.encode())).await,
        "bad_signature"
    );
    let mut other_chain = transfer(1, fee(), units(1));
    other_chain.chain_id = "another-chain".into();
    assert_eq!(
        api.rejection(hex::encode(other_chain.sign(&key(1)).encode()))
            .await,
        "wrong_chain_id"
    );
    let replay = transfer(0, fee(), units(2)).sign(&key(1));
    assert_eq!(
        api.rejection(hex::encode(replay.encode())).await,
        "nonce_replayed"
    );
    let skipped = transfer(5, fee(), units(1)).sign(&key(1));
    assert_eq!(
        api.rejection(hex::encode(skipped.encode())).await,
        "nonce_gap"
    );
    let cheap = transfer(1, Amount::from_micros(1), units(1)).sign(&key(1));
    assert_eq!(
        api.rejection(hex::encode(cheap.encode())).await,
        "fee_too_low"
    );
    let too_much = transfer(1, fee(), units(5_000)).sign(&key(1));
    assert_eq!(
        api.rejection(hex::encode(too_much.encode())).await,
        "insufficient_funds"
    );

    // Bodies and parameters that are not even transactions.
    let r = api
        .http
        .post(format!("{}/v1/txs", api.base))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("reaches the node");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<ErrorBody>().await.expect("JSON").name,
        "bad_request"
    );
    for path in [
        "/v1/accounts/gpn1notanaddress",
        "/v1/txs/abc",
        "/v1/orders/x",
        "/v1/leases/lease-x",
        "/v1/blocks/-1",
        "/v1/orders?state=closed",
        "/v1/orders?limit=many",
        "/v1/orders?limit=0",
        "/v1/orders?limit=1001",
        "/v1/providers?limit=0",
        "/v1/providers?limit=1001",
        "/v1/providers?after=p.gpn1nope",
        "/v1/orders?after=o.x",
        "/v1/providers/gpn1notanaddress",
        "/v1/blocks/%201",
        "/v1/orders?tenant=cosmos1xyz",
        "/v1/events?from_height=soon",
    ] {
        let e = api.get_error(path, 400).await;
        assert_eq!(e.name, "bad_request", "{path}");
    }
    let unregistered = format!("/v1/providers/{}", addr(2));
    for path in [
        unregistered.as_str(),
        "/v1/orders/999",
        "/v1/leases/999",
        "/v1/blocks/999999",
        "/v1/nope",
    ] {
        let e = api.get_error(path, 404).await;
        assert_eq!(e.name, "not_found", "{path}");
    }
    // A known path with a method it does not take: 405, `Allow`, and the same JSON errors.
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/v1/status", "GET,HEAD"),
        (reqwest::Method::GET, "/v1/txs", "POST"),
        (reqwest::Method::PUT, "/v1/txs/batch", "POST"),
    ] {
        let r = api
            .http
            .request(method.clone(), format!("{}{path}", api.base))
            .send()
            .await
            .expect("reaches the node");
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(
            r.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        let e: ErrorBody = r.json().await.expect("a JSON error body");
        assert_eq!(e.name, "method_not_allowed", "{method} {path}");
        assert!(e.message.contains(path), "{}", e.message);
    }
    let unknown: TxView = api.get(&format!("/v1/txs/{}", Hash::of(b"nothing"))).await;
    assert_eq!(unknown.state, TxState::Unknown);

    // Blocks go on; nothing moved.
    let height = api.get::<StatusView>("/v1/status").await.height;
    api.wait_height(height + 2).await;
    let sender = api.account(addr(1)).await;
    assert_eq!(sender.balances, sender_before.balances);
    assert_eq!(sender.nonce, sender_before.nonce);
    assert_eq!(sender.next_nonce, sender_before.nonce);
    let recipient = api.account(addr(2)).await;
    assert_eq!(recipient.balances, recipient_before.balances);
    assert_eq!(recipient.nonce, recipient_before.nonce);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_and_explanations_answer_json_and_name_what_is_wrong() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 50).await;
    let api = Api::new(&node);
    let terms = OrderTerms {
        capabilities: Default::default(),
        name: "render".into(),
        manifest_hash: Hash::of(b"manifest"),
        resources: Resources {
            cpu_millis: 1_000,
            memory_mib: 1_024,
            ..Resources::default()
        },
        regions: Vec::new(),
        runtime: Runtime::Process,
        max_price_per_hour: units(2),
        deposit: units(10),
        max_duration_secs: 1_800,
        recovery: gpunet_protocol::RecoveryPolicy::none(),
        verification: Default::default(),
    };
    let quote = |body: serde_json::Value| {
        api.http
            .post(format!("{}/v1/quote", api.base))
            .json(&body)
            .send()
    };
    // No provider on this network: the explainer says so, with the minimum deposit.
    let r = quote(serde_json::json!({ "terms": terms }))
        .await
        .expect("request reaches the node");
    assert_eq!(r.status(), 200);
    let view: gpunet_api::node::ExplainView = r.json().await.expect("JSON");
    assert_eq!(view.explanation.providers, 0);
    assert!(!view.explanation.matches());
    assert_eq!(
        view.explanation.changes,
        vec![gpunet_protocol::explain::Change::NoProviders]
    );
    assert_eq!(view.min_deposit, units(1));
    // Terms CreateOrder would refuse are refused by name; a body that is not terms is a 400.
    let mut bad = terms.clone();
    bad.name = String::new();
    let r = quote(serde_json::json!({ "terms": bad }))
        .await
        .expect("request reaches the node");
    assert_eq!(r.status(), 400);
    let err: ErrorBody = r.json().await.expect("JSON error body");
    assert_eq!(err.name, "order_invalid");
    let r = quote(serde_json::json!({ "terms": 7 }))
        .await
        .expect("request reaches the node");
    assert_eq!(r.status(), 400);
    let err: ErrorBody = r.json().await.expect("JSON error body");
    assert_eq!(err.name, "bad_request");
    // Explaining an order that does not exist, or is not a number.
    assert_eq!(
        api.get_error("/v1/orders/99/explain", 404).await.name,
        "not_found"
    );
    assert_eq!(
        api.get_error("/v1/orders/x/explain", 400).await.name,
        "bad_request"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_at_the_same_height_and_state_root() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 50).await;
    let api = Api::new(&node);
    let hash = api
        .submit(&transfer(0, fee(), units(3)).sign(&key(1)))
        .await;
    api.wait_applied(hash).await;
    api.wait_height(5).await;
    node.shutdown().await;

    let head = {
        let store = gpunet_store::Store::open(&home.path().join(gpunet_node::STORE_FILE))
            .expect("the stopped node released the store");
        store.head().expect("readable").expect("initialised")
    };
    assert!(head.height >= 5);

    // Long blocks, so that the first check runs before the restarted node's first block.
    let node = start_node(home.path(), 2_000).await;
    assert_eq!(node.height(), head.height);
    assert_eq!(node.state_root(), Hash(head.state_root));
    let api = Api::new(&node);
    let status: StatusView = api.get("/v1/status").await;
    assert_eq!(status.height, head.height);
    assert_eq!(status.state_root, Hash(head.state_root));
    assert_eq!(api.account(addr(2)).await.balances.usd, units(3));
    let view = api.wait_applied(hash).await;
    assert!(view.block_height.is_some_and(|h| h <= head.height));

    // It keeps producing, on top of what it had.
    let hash = api
        .submit(&transfer(1, fee(), units(4)).sign(&key(1)))
        .await;
    api.wait_applied(hash).await;
    assert!(node.height() > head.height);
    assert_eq!(api.account(addr(2)).await.balances.usd, units(7));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_genesis_for_another_chain_on_its_store() {
    let home = tempfile::tempdir().expect("temp dir");
    start_node(home.path(), 50).await.shutdown().await;
    let mut other = genesis();
    other.chain_id = "another-chain".into();
    let err = gpunet_node::start(NodeConfig {
        home: home.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("valid address"),
        block_ms: 50,
        genesis: other,
        mempool: MempoolLimits::default(),
    })
    .await
    .expect_err("another chain's genesis");
    assert!(
        matches!(err, gpunet_node::NodeError::ChainMismatch { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_listen_address_is_reported_naming_listen() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 50).await;
    let other_home = tempfile::tempdir().expect("temp dir");
    let err = gpunet_node::start(NodeConfig {
        home: other_home.path().to_path_buf(),
        listen: node.api_addr(),
        block_ms: 50,
        genesis: genesis(),
        mempool: MempoolLimits::default(),
    })
    .await
    .expect_err("address in use");
    assert!(err.to_string().contains("--listen"), "{err}");
    node.shutdown().await;
}

fn create_order(nonce: u64) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        signer: addr(1),
        nonce,
        fee: fee(),
        msg: Msg::CreateOrder {
            terms: OrderTerms {
                capabilities: Default::default(),
                name: "render".into(),
                manifest_hash: Hash::of(b"manifest"),
                resources: Resources {
                    cpu_millis: 1_000,
                    memory_mib: 1_024,
                    ..Resources::default()
                },
                regions: Vec::new(),
                runtime: Runtime::Process,
                max_price_per_hour: units(2),
                deposit: units(10),
                max_duration_secs: 3_600,
                recovery: gpunet_protocol::RecoveryPolicy::none(),
                verification: Default::default(),
            },
        },
    }
    .sign(&key(1))
}

/// Reads SSE frames until one `event` frame carries an event `pick` accepts.
async fn next_matching<B: AsRef<[u8]>>(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<B>> + Unpin),
    buf: &mut String,
    pick: impl Fn(&EventEnvelope) -> bool,
) -> EventEnvelope {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut name = "";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            assert_ne!(name, "error", "the stream reported an error: {data}");
            if name == "event" {
                let envelope: EventEnvelope = serde_json::from_str(&data).expect("envelope JSON");
                if pick(&envelope) {
                    return envelope;
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("an event within the patience")
            .expect("the stream stays open")
            .expect("the stream reads");
        buf.push_str(std::str::from_utf8(chunk.as_ref()).expect("SSE is UTF-8"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_an_order_created_over_http() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 50).await;
    let api = Api::new(&node);
    let is_created = |e: &EventEnvelope| matches!(e.event, Event::OrderCreated { tenant, .. } if tenant == addr(1));

    // Live: subscribe, then submit.
    let live = api.get_raw("/v1/events").await;
    assert_eq!(live.status(), 200);
    let mut live = live.bytes_stream();
    let hash = api.submit(&create_order(0)).await;
    let mut buf = String::new();
    let seen = next_matching(&mut live, &mut buf, is_created).await;
    assert_eq!(seen.tx_hash, Some(hash));
    let applied = api.wait_applied(hash).await;
    assert_eq!(Some(seen.height), applied.block_height);

    // Replay: the same event from the store, then the stream goes on live.
    let replay = api.get_raw("/v1/events?from_height=1").await;
    let mut replay = replay.bytes_stream();
    let mut buf = String::new();
    let again = next_matching(&mut replay, &mut buf, is_created).await;
    assert_eq!(again, seen);

    let order: gpunet_api::node::OrderView = api.get("/v1/orders/1").await;
    assert_eq!(order.tenant, addr(1));
    let list: gpunet_api::node::OrderList = api
        .get(&format!("/v1/orders?tenant={}&state=open&limit=5", addr(1)))
        .await;
    assert_eq!(list.orders.len(), 1);

    drop(live);
    drop(replay);
    node.shutdown().await;
}

fn create_order_by(seed: u8, nonce: u64) -> SignedTx {
    let mut tx = create_order(nonce).body;
    tx.signer = addr(seed);
    tx.sign(&key(seed))
}

fn register_provider(seed: u8) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        signer: addr(seed),
        nonce: 0,
        fee: fee(),
        msg: Msg::RegisterProvider {
            stake: Params::default().min_provider_stake,
            profile: gpunet_testkit::fixtures::provider_profile(4_000, 8_192, Vec::new()),
        },
    }
    .sign(&key(seed))
}

/// Every page of `list` (`/v1/orders?…` or `/v1/providers?…`) from the first, `limit` at a
/// time, as the entries' keys in the order they came; each page but the last is full.
async fn walk_pages(api: &Api, list: &str, limit: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("{list}&limit={limit}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page: serde_json::Value = api.get(&path).await;
        let entries = page["orders"]
            .as_array()
            .or(page["providers"].as_array())
            .unwrap_or_else(|| panic!("{path}: no list in {page}"));
        keys.extend(entries.iter().map(|e| {
            e["id"]
                .as_u64()
                .map(|id| id.to_string())
                .or(e["address"].as_str().map(str::to_owned))
                .expect("an id or an address")
        }));
        match page["next"].as_str() {
            None => {
                assert!(page["next"].is_null(), "{path}: next is null at the end");
                return keys;
            }
            Some(next) => {
                assert_eq!(
                    entries.len(),
                    limit,
                    "{path}: a page before the last is full"
                );
                after = Some(next.to_owned());
            }
        }
    }
    panic!("{list}: the cursor never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_read_page_by_page_each_entry_once_in_order() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 200).await;
    let api = Api::new(&node);
    // Blocks of 200 ms: the orders stay open (their time to live is 600 blocks) while read.

    // 7 orders: 5 by addr(1), then 2 by the first provider's account; 5 providers.
    let mut last = None;
    for nonce in 0..5 {
        last = Some(api.submit(&create_order(nonce)).await);
    }
    for seed in PROVIDER_SEEDS {
        last = Some(api.submit(&register_provider(seed)).await);
    }
    let other = PROVIDER_SEEDS.start;
    for nonce in 1..3 {
        last = Some(api.submit(&create_order_by(other, nonce)).await);
    }
    api.wait_applied(last.expect("submitted")).await;

    // Orders: newest first, over page boundaries that do and do not divide the count.
    let all: Vec<String> = (1..=7).rev().map(|id: u64| id.to_string()).collect();
    for limit in [1, 2, 3, 7, 1000] {
        assert_eq!(
            walk_pages(&api, "/v1/orders?state=all", limit).await,
            all,
            "limit {limit}"
        );
        assert_eq!(
            walk_pages(&api, "/v1/orders?state=open", limit).await,
            all,
            "limit {limit}"
        );
    }
    // A tenant's own orders, paged past the other tenant's.
    let mine: Vec<String> = (1..=5).rev().map(|id: u64| id.to_string()).collect();
    let by_tenant = format!("/v1/orders?tenant={}", addr(1));
    for limit in [1, 2, 5] {
        assert_eq!(
            walk_pages(&api, &by_tenant, limit).await,
            mine,
            "limit {limit}"
        );
    }
    // The tenant index catches up with orders created since it was last read.
    let newest = api.submit(&create_order(5)).await;
    api.wait_applied(newest).await;
    let first: gpunet_api::node::OrderList = api.get(&format!("{by_tenant}&limit=1")).await;
    assert_eq!(
        first.orders[0].id.0, 8,
        "the tenant's newest order comes first"
    );
    let open_mine = format!("/v1/orders?tenant={}&state=open", addr(1));
    let mine: Vec<String> = [8, 5, 4, 3, 2, 1].map(|id: u64| id.to_string()).to_vec();
    assert_eq!(walk_pages(&api, &open_mine, 2).await, mine);
    let all: Vec<String> = (1..=8).rev().map(|id: u64| id.to_string()).collect();

    // The default page is the largest the list needs here, and says it is the last.
    let page: gpunet_api::node::OrderList = api.get("/v1/orders").await;
    assert_eq!(page.orders.len(), 8);
    assert_eq!(page.next, None);

    // Providers: by address (its bytes, not its gpn1… text).
    let mut addresses: Vec<Address> = PROVIDER_SEEDS.map(addr).collect();
    addresses.sort();
    let addresses: Vec<String> = addresses.iter().map(Address::to_string).collect();
    for limit in [1, 2, 5, 6] {
        assert_eq!(
            walk_pages(&api, "/v1/providers?", limit).await,
            addresses,
            "limit {limit}"
        );
    }
    let one: gpunet_api::node::ProviderView =
        api.get(&format!("/v1/providers/{}", addr(other))).await;
    assert_eq!(one.address, addr(other));

    // The client walks every page, and reads one provider.
    let client = gpunet_client::NodeClient::new(&api.base);
    let everyone = client.providers().await.expect("providers");
    assert_eq!(everyone.providers.len(), PROVIDER_SEEDS.len());
    let filter = gpunet_client::OrderFilter {
        limit: Some(2),
        ..Default::default()
    };
    let orders = client.orders_all(&filter).await.expect("orders");
    let ids: Vec<String> = orders.orders.iter().map(|o| o.id.0.to_string()).collect();
    assert_eq!(ids, all);
    assert!(client.provider(&addr(other)).await.expect("read").is_some());
    assert!(client.provider(&addr(2)).await.expect("read").is_none());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_too_large_or_a_garbled_cursor_is_refused_saying_why() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 50).await;
    let api = Api::new(&node);
    let max = gpunet_api::node::MAX_PAGE_LIMIT;
    for list in ["/v1/orders", "/v1/providers"] {
        let e = api
            .get_error(&format!("{list}?limit={}", max + 1), 400)
            .await;
        assert_eq!(e.name, "bad_request");
        assert!(
            e.message.contains(&format!("from 1 to {max}")),
            "{list}: {}",
            e.message
        );
        let ok: serde_json::Value = api.get(&format!("{list}?limit={max}")).await;
        assert!(ok["next"].is_null(), "{list}: {ok}");
    }
    // Garbled, another list's, or a bare key: each refused, saying what a cursor is.
    for path in [
        "/v1/orders?after=garbled".to_owned(),
        "/v1/orders?after=o.01".to_owned(),
        format!("/v1/orders?after=p.{}", addr(1)),
        format!("/v1/providers?after={}", addr(1)),
        "/v1/providers?after=o.1".to_owned(),
    ] {
        let e = api.get_error(&path, 400).await;
        assert_eq!(e.name, "bad_request", "{path}");
        assert!(
            e.message.contains("query parameter after")
                && e.message
                    .contains("a cursor is the `next` string of an earlier page"),
            "{path}: {}",
            e.message
        );
    }
    node.shutdown().await;
}

fn signed(seed: u8, nonce: u64, msg: Msg) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        signer: addr(seed),
        nonce,
        fee: fee(),
        msg,
    }
    .sign(&key(seed))
}

/// What the node says about an ended job: its order (closed, with its lease and attempt) and a
/// cancelled order, from the order, lease and list endpoints; none of them in the state.
async fn check_ended_jobs_are_served(api: &Api, lease: gpunet_protocol::LeaseId) {
    use gpunet_api::node::{LeaseState, OrderList, OrderState, OrderView, StateEntryView};
    let closed: OrderView = api.get("/v1/orders/3").await;
    assert_eq!(closed.state, OrderState::Closed);
    let its_lease = closed
        .lease
        .as_ref()
        .expect("the closed order shows its lease");
    assert_eq!((its_lease.id, its_lease.state), (lease, LeaseState::Ended));
    assert_eq!(closed.attempts.len(), 1);
    assert!(its_lease.paid <= units(10) && its_lease.refund > Amount::ZERO);
    let view: gpunet_api::node::LeaseView = api.get(&format!("/v1/leases/{}", lease.0)).await;
    assert_eq!(view.state, LeaseState::Ended);
    let cancelled: OrderView = api.get("/v1/orders/2").await;
    assert_eq!(cancelled.state, OrderState::Cancelled);

    // The state proves them gone.
    for path in ["/v1/state/orders/2", "/v1/state/orders/3"] {
        let entry: StateEntryView = api.get(&format!("{path}?proof=true")).await;
        assert!(!entry.found, "{path} is not in the state");
    }
    let entry: StateEntryView = api.get(&format!("/v1/state/leases/{}", lease.0)).await;
    assert!(!entry.found);
    let live: StateEntryView = api.get("/v1/state/orders/1").await;
    assert!(live.found, "the open order is");

    // Listings show them as before: by tenant, all, and open only.
    let mine = format!("/v1/orders?tenant={}", addr(1));
    for limit in [1, 2, 3] {
        assert_eq!(walk_pages(api, &mine, limit).await, ["3", "2", "1"]);
        assert_eq!(
            walk_pages(api, "/v1/orders?state=all", limit).await,
            ["3", "2", "1"]
        );
    }
    assert_eq!(
        walk_pages(api, &format!("{mine}&state=open"), 1).await,
        ["1"]
    );
    let other: OrderList = api.get(&format!("/v1/orders?tenant={}", addr(2))).await;
    assert!(other.orders.is_empty() && other.next.is_none());
    let explain = api.get_error("/v1/orders/3/explain", 409).await;
    assert_eq!(explain.name, "order_not_open");
    api.get_error("/v1/orders/4", 404).await;
    api.get_error(&format!("/v1/leases/{}", lease.0 + 1), 404)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_leave_the_state_and_are_still_served_from_history_after_a_restart() {
    use gpunet_api::node::{OrderState, OrderView};
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 100).await;
    let api = Api::new(&node);
    // 100 ms blocks: the lease, which gets no heartbeats here, stays live for 30 of them.
    let provider = PROVIDER_SEEDS.start;
    api.submit(&register_provider(provider)).await;
    for nonce in 0..3 {
        api.submit(&create_order(nonce)).await;
    }
    let cancel = api
        .submit(&signed(1, 3, Msg::CancelOrder { order: OrderId(2) }))
        .await;
    api.wait_applied(cancel).await;
    let bid = Msg::PlaceBid {
        order: OrderId(3),
        price_per_hour: units(1),
    };
    api.wait_applied(api.submit(&signed(provider, 1, bid)).await)
        .await;
    let deadline = Instant::now() + PATIENCE;
    let lease = loop {
        let order: OrderView = api.get("/v1/orders/3").await;
        if let Some(l) = order.lease {
            break l.id;
        }
        assert!(Instant::now() < deadline, "order 3 never leased");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let started = api
        .submit(&signed(provider, 2, Msg::StartLease { lease }))
        .await;
    api.wait_applied(started).await;
    // Some billed time, so the lease has paid something and refunds the rest.
    api.wait_height(node.height() + 4).await;
    let result = gpunet_testkit::world::lease_result(gpunet_protocol::WorkloadOutcome::Succeeded);
    let done = api
        .submit(&signed(provider, 3, Msg::CompleteLease { lease, result }))
        .await;
    api.wait_applied(done).await;
    let closed: OrderView = api.get("/v1/orders/3").await;
    assert_eq!(closed.state, OrderState::Closed);

    check_ended_jobs_are_served(&api, lease).await;
    // A transaction naming the ended order is refused as ended, not unknown.
    let again = signed(1, 4, Msg::CancelOrder { order: OrderId(3) });
    assert_eq!(
        api.rejection(hex::encode(again.encode())).await,
        "order_not_open"
    );
    node.shutdown().await;

    // History is in the store, not in memory: a restarted node serves the same.
    let node = start_node(home.path(), 100).await;
    let api = Api::new(&node);
    check_ended_jobs_are_served(&api, lease).await;
    node.shutdown().await;
}

/// Every transaction in `who`'s history, `limit` at a time from the newest, following `next`;
/// each page but the last is full, and the last says so with a `null`.
async fn walk_account_txs(
    api: &Api,
    who: Address,
    limit: usize,
) -> Vec<gpunet_api::node::AccountTxView> {
    let mut txs = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/v1/accounts/{who}/txs?limit={limit}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page: gpunet_api::node::AccountTxList = api.get(&path).await;
        assert_eq!(page.address, who);
        assert_eq!(page.base_height, 0, "this node has every block");
        let full = page.txs.len() == limit;
        txs.extend(page.txs);
        match page.next {
            None => return txs,
            Some(next) => {
                assert!(full, "{path}: a page before the last is full");
                after = Some(next);
            }
        }
    }
    panic!("{who}: the cursor never ended");
}

/// Polls transaction `hash` until a block has taken it, applied or rejected.
async fn wait_in_block(api: &Api, hash: Hash) -> TxView {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let view: TxView = api.get(&format!("/v1/txs/{hash}")).await;
        if view.block_height.is_some() {
            return view;
        }
        assert!(Instant::now() < deadline, "{hash} never reached a block");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_history_pages_newest_first_back_to_its_first_transaction() {
    use gpunet_api::node::{AccountTxList, TransferDirection};

    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path(), 50).await;
    let api = Api::new(&node);
    let (me, you) = (addr(1), addr(2));
    let (payer, spender) = (PROVIDER_SEEDS.start, PROVIDER_SEEDS.start + 1);

    // Oldest first: seven transfers to `you`, each in a block of its own, then an order.
    let mut mine = Vec::new();
    for nonce in 0..7 {
        let tx = transfer(nonce, fee(), units(1)).sign(&key(1));
        let view = api.wait_applied(api.submit(&tx).await).await;
        mine.push(view.tx_hash);
    }
    let sent_to_you = mine.clone();
    mine.push(
        api.wait_applied(api.submit(&create_order(7)).await)
            .await
            .tx_hash,
    );
    // Another account pays `me`.
    let pay = |seed: u8, nonce: u64, n: u64| {
        signed(
            seed,
            nonce,
            Msg::Transfer {
                to: me,
                denom: Denom::Usd,
                amount: units(n),
            },
        )
    };
    mine.push(
        api.wait_applied(api.submit(&pay(payer, 0, 5)).await)
            .await
            .tx_hash,
    );
    // `spender` (1,000 usd) sends 600 twice in one batch: both are admitted (the second only
    // gets the fee check behind the first), and the block rejects the second.
    let batch = [pay(spender, 0, 600), pay(spender, 1, 600)];
    let r = api
        .http
        .post(format!("{}/v1/txs/batch", api.base))
        .json(&serde_json::json!({
            "txs_hex": batch.iter().map(|t| hex::encode(t.encode())).collect::<Vec<_>>()
        }))
        .send()
        .await
        .expect("request reaches the node");
    assert_eq!(r.status(), 200);
    let admitted: gpunet_api::node::SubmitTxBatchResult = r.json().await.expect("JSON");
    assert_eq!(admitted.admitted, 2, "{admitted:?}");
    let applied = wait_in_block(&api, batch[0].hash()).await;
    let rejected = wait_in_block(&api, batch[1].hash()).await;
    assert_eq!(applied.state, TxState::Applied);
    assert_eq!(rejected.state, TxState::Rejected, "{rejected:?}");
    mine.push(applied.tx_hash);
    let tip: StatusView = api.get("/v1/status").await;
    assert!(
        tip.height >= 10,
        "spread over blocks: height {}",
        tip.height
    );

    // Newest first, whatever the page size, each transaction once; a rejected transfer paid
    // `me` nothing and is not in its history.
    let newest_first: Vec<Hash> = mine.iter().rev().copied().collect();
    for limit in [1, 3, 4, 10, 200] {
        let txs = walk_account_txs(&api, me, limit).await;
        let hashes: Vec<Hash> = txs.iter().map(|t| t.tx_hash).collect();
        assert_eq!(hashes, newest_first, "limit {limit}");
        for pair in txs.windows(2) {
            assert!(
                (pair[0].block_height, pair[0].position) > (pair[1].block_height, pair[1].position),
                "newest first: {pair:?}"
            );
        }
    }
    let txs = walk_account_txs(&api, me, 200).await;
    // What each row says, from `me`'s side.
    let received = &txs[0];
    assert_eq!(received.kind, "transfer");
    assert_eq!(received.signer, addr(spender));
    let t = received.transfer.as_ref().expect("a transfer");
    assert_eq!(
        (t.direction, t.counterparty, t.amount, t.denom),
        (
            TransferDirection::Received,
            addr(spender),
            units(600),
            Denom::Usd
        )
    );
    assert_eq!(
        (received.state, received.rejection),
        (TxState::Applied, None)
    );
    assert_eq!(
        received.block_height,
        applied.block_height.expect("in a block")
    );
    assert_eq!(
        txs[1].transfer.as_ref().map(|t| t.counterparty),
        Some(addr(payer))
    );
    let order = &txs[2];
    assert_eq!(
        (order.kind.as_str(), order.transfer.is_none()),
        ("create_order", true)
    );
    let first = txs.last().expect("the first");
    let t = first.transfer.as_ref().expect("a transfer");
    assert_eq!(
        (t.direction, t.counterparty, t.amount),
        (TransferDirection::Sent, you, units(1))
    );
    assert!(first.time_ms >= 1_700_000_000_000, "the block's time");

    // A transfer is in the recipient's history too, as received, by the same hash.
    let yours = walk_account_txs(&api, you, 2).await;
    let yours_hashes: Vec<Hash> = yours.iter().map(|t| t.tx_hash).collect();
    let expect: Vec<Hash> = sent_to_you.iter().rev().copied().collect();
    assert_eq!(yours_hashes, expect);
    assert!(yours.iter().all(
        |t| t.transfer.as_ref().map(|x| (x.direction, x.counterparty))
            == Some((TransferDirection::Received, me))
    ));
    // The rejected transfer is its signer's, with the rejection.
    let spent = walk_account_txs(&api, addr(spender), 1).await;
    assert_eq!(spent.len(), 2);
    assert_eq!(spent[0].tx_hash, batch[1].hash());
    assert_eq!(spent[0].state, TxState::Rejected);
    assert_eq!(
        spent[0].rejection.map(|r| r.name()),
        Some("insufficient_funds")
    );
    assert_eq!(spent[1].state, TxState::Applied);

    // An address with none: an empty last page.
    let none: AccountTxList = api.get(&format!("/v1/accounts/{}/txs", addr(3))).await;
    assert!(none.txs.is_empty() && none.next.is_none(), "{none:?}");
    // The default page and its largest.
    let page: AccountTxList = api.get(&format!("/v1/accounts/{me}/txs")).await;
    assert_eq!(page.txs.len(), mine.len());
    // A cursor from beyond the chain reads from the newest; none panics the node.
    for after in ["t.99999999.0", "t.18446744073709551615.4294967295", "t.0.0"] {
        let page: AccountTxList = api
            .get(&format!("/v1/accounts/{me}/txs?after={after}"))
            .await;
        let expect = if after == "t.0.0" { 0 } else { mine.len() };
        assert_eq!(page.txs.len(), expect, "{after}");
    }

    // Malformed input: a 400 that says what to send instead.
    let max = gpunet_api::node::MAX_ACCOUNT_TXS_LIMIT;
    let e = api.get_error("/v1/accounts/gpn1nope/txs", 400).await;
    assert!(
        e.message.contains("path parameter address") && e.message.contains("gpn1…"),
        "{}",
        e.message
    );
    for after in ["garbage", "o.1", "t.1", "t.01.0", "t.1.-1"] {
        let e = api
            .get_error(&format!("/v1/accounts/{me}/txs?after={after}"), 400)
            .await;
        assert!(
            e.message.contains("query parameter after")
                && e.message
                    .contains("a cursor is the `next` string of an earlier page"),
            "{after}: {}",
            e.message
        );
    }
    for limit in ["0".to_owned(), (max + 1).to_string(), "x".to_owned()] {
        let e = api
            .get_error(&format!("/v1/accounts/{me}/txs?limit={limit}"), 400)
            .await;
        assert!(
            e.message.contains(&format!("from 1 to {max}")),
            "{limit}: {}",
            e.message
        );
    }

    // The client reads the same pages.
    let client = gpunet_client::NodeClient::new(&api.base);
    let page = client.account_txs(&me, Some(4), None).await.expect("page");
    assert_eq!(page.txs.len(), 4);
    let next = client
        .account_txs(&me, Some(200), page.next.as_deref())
        .await
        .expect("page");
    let both: Vec<Hash> = page
        .txs
        .iter()
        .chain(&next.txs)
        .map(|t| t.tx_hash)
        .collect();
    assert_eq!(both, newest_first);
    assert_eq!(next.next, None);
    node.shutdown().await;
}
