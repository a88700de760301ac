//! `POST /v1/txs/batch` on a real node — real redb store in a temporary directory, real HTTP on
//! 127.0.0.1: each transaction goes through the same admission as `POST /v1/txs`, one refusal
//! does not stop the others, and a batch over the limits is refused whole.

use std::path::Path;
use std::time::{Duration, Instant};

use gpunet_api::node::{
    AccountView, MAX_TX_BATCH_BODY_BYTES, MAX_TX_BATCH_TXS, StatusView, SubmitTxBatchResult,
    TxState, TxView,
};
use gpunet_api::{ErrorBody, HEIGHT_HEADER};
use gpunet_ledger::{Genesis, GenesisAccount, Params};
use gpunet_node::{MempoolLimits, NodeConfig, NodeHandle};
use gpunet_protocol::{
    Address, Amount, Balances, Denom, Hash, MAX_TX_BYTES, Msg, Rejection, SignedTx, TxBody,
};

const CHAIN: &str = "gpunet-batch-test";
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

/// Signers 1, 2 and 3 hold 1,000 usd and 1,000 gpn each.
async fn start_node(home: &Path) -> NodeHandle {
    let accounts = (1..=3)
        .map(|seed| GenesisAccount {
            address: addr(seed),
            balances: Balances {
                usd: units(1_000),
                gpn: units(1_000),
            },
        })
        .collect();
    gpunet_node::start(NodeConfig {
        home: home.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("valid address"),
        block_ms: 50,
        genesis: Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_700_000_000_000,
            params: Params::default(),
            accounts,
        },
        mempool: MempoolLimits::default(),
    })
    .await
    .expect("node starts")
}

fn transfer(seed: u8, nonce: u64) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        signer: addr(seed),
        nonce,
        fee: Params::default().min_tx_fee,
        msg: Msg::Transfer {
            to: addr(9),
            denom: Denom::Usd,
            amount: units(1),
        },
    }
    .sign(&key(seed))
}

fn hex_of(tx: &SignedTx) -> String {
    hex::encode(tx.encode())
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

    async fn post_batch(&self, txs_hex: &[String]) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}/v1/txs/batch", self.base))
            .json(&serde_json::json!({ "txs_hex": txs_hex }))
            .send()
            .await
    }

    /// A batch the node takes: 200, the height header, one result per transaction.
    async fn batch(&self, txs_hex: &[String]) -> SubmitTxBatchResult {
        let r = self.post_batch(txs_hex).await.expect("reaches the node");
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key(HEIGHT_HEADER));
        let result: SubmitTxBatchResult = r.json().await.expect("JSON answer");
        assert_eq!(result.results.len(), txs_hex.len(), "one result each");
        result
    }

    /// A batch the node refuses whole.
    async fn batch_refused(&self, txs_hex: &[String]) {
        match self.post_batch(txs_hex).await {
            Ok(r) => {
                assert_eq!(r.status(), 413);
                let body: ErrorBody = r.json().await.expect("JSON error body");
                assert_eq!(body.name, "batch_too_large", "{body}");
                assert!(
                    body.message.contains(&MAX_TX_BATCH_TXS.to_string()),
                    "{body}"
                );
            }
            // A body far over the limit may be refused before it is read: the node closes the
            // connection while the client is still writing.
            Err(e) => assert!(e.is_request(), "unexpected failure: {e}"),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("reaches the node");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("JSON answer")
    }

    async fn tx_state(&self, hash: Hash) -> TxState {
        self.get::<TxView>(&format!("/v1/txs/{hash}")).await.state
    }

    async fn wait_applied(&self, hash: Hash) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.tx_state(hash).await {
                TxState::Applied => return,
                TxState::Pending => {}
                other => panic!("transaction {hash} is {other:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "transaction {hash} never applied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_admitted_in_order_and_applied() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path()).await;
    let api = Api::new(&node);

    // Nonces 0, 1, 2 of one signer: each is admissible only after the one before it.
    let txs: Vec<SignedTx> = (0..3)
        .map(|n| transfer(1, n))
        .chain([transfer(2, 0)])
        .collect();
    let result = api.batch(&txs.iter().map(hex_of).collect::<Vec<_>>()).await;
    assert_eq!(result.admitted, 4);
    for (tx, item) in txs.iter().zip(&result.results) {
        assert_eq!(item.tx_hash, Some(tx.hash()));
        assert_eq!(item.error, None);
    }
    for tx in &txs {
        api.wait_applied(tx.hash()).await;
    }
    let sender: AccountView = api.get(&format!("/v1/accounts/{}", addr(1))).await;
    assert_eq!(sender.nonce, 3);
    assert_eq!(sender.balances.usd, units(997));

    // An empty batch is a batch.
    assert_eq!(api.batch(&[]).await.admitted, 0);

    let openapi: serde_json::Value = api.get("/openapi.json").await;
    let path = &openapi["paths"]["/v1/txs/batch"]["post"];
    assert!(path.is_object(), "{openapi}");
    assert!(path["responses"]["413"].is_object(), "{path}");
    assert!(openapi["components"]["schemas"]["SubmitTxBatchResult"].is_object());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_transaction_says_why_and_the_rest_of_its_batch_is_admitted() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path()).await;
    let api = Api::new(&node);

    let mut forged = transfer(2, 0);
    forged.signature[3] ^= 0x40;
    let mut other_chain = transfer(3, 0).body;
    other_chain.chain_id = "another-chain".into();
    let good = [transfer(1, 0), transfer(1, 1), transfer(3, 0)];
    let batch = vec![
        hex_of(&good[0]),
        hex_of(&forged),
        "zz-not-hex".to_owned(),
        hex_of(&transfer(1, 5)),
        hex_of(&good[1]),
        hex_of(&good[0]),
        hex_of(&other_chain.sign(&key(3))),
        "00".repeat(MAX_TX_BYTES + 1),
        hex_of(&good[2]),
    ];
    let result = api.batch(&batch).await;
    assert_eq!(result.admitted, 3);
    let refused = |i: usize| {
        let item = &result.results[i];
        assert_eq!(item.tx_hash, None, "item {i}");
        item.error.clone().expect("a refused item says why")
    };
    for (i, why) in [
        (1, Rejection::BadSignature),
        (2, Rejection::MalformedTx),
        (3, Rejection::NonceGap),
        (5, Rejection::DuplicateTx),
        (6, Rejection::WrongChainId),
        (7, Rejection::TxTooLarge),
    ] {
        let e = refused(i);
        assert_eq!(e.code, Some(why.code()), "item {i}: {e}");
        assert_eq!(e.name, why.name(), "item {i}");
        assert!(!e.message.is_empty(), "item {i}");
    }
    assert!(refused(2).message.contains("not hex"));
    for (i, tx) in [(0, &good[0]), (4, &good[1]), (8, &good[2])] {
        assert_eq!(result.results[i].tx_hash, Some(tx.hash()), "item {i}");
        assert_eq!(result.results[i].error, None, "item {i}");
    }
    for tx in &good {
        api.wait_applied(tx.hash()).await;
    }
    assert_eq!(api.tx_state(forged.hash()).await, TxState::Unknown);
    let bystander: AccountView = api.get(&format!("/v1/accounts/{}", addr(2))).await;
    assert_eq!(bystander.nonce, 0);
    assert_eq!(bystander.balances.usd, units(1_000));

    // A batch that is not a batch.
    let r = api
        .http
        .post(format!("{}/v1/txs/batch", api.base))
        .json(&serde_json::json!({ "tx_hex": hex_of(&transfer(2, 0)) }))
        .send()
        .await
        .expect("reaches the node");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<ErrorBody>().await.expect("JSON").name,
        "bad_request"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_limits_is_refused_whole_and_admits_nothing() {
    let home = tempfile::tempdir().expect("temp dir");
    let node = start_node(home.path()).await;
    let api = Api::new(&node);
    let good = transfer(1, 0);

    // One transaction too many.
    let mut too_many = vec![hex_of(&good)];
    too_many.extend((1..=MAX_TX_BATCH_TXS).map(|n| hex_of(&transfer(2, n as u64 - 1))));
    assert_eq!(too_many.len(), MAX_TX_BATCH_TXS + 1);
    api.batch_refused(&too_many).await;

    // Few transactions, too many bytes: each string at the per-transaction limit.
    let biggest = "00".repeat(MAX_TX_BYTES);
    let over = MAX_TX_BATCH_BODY_BYTES / biggest.len() + 1;
    let mut too_big = vec![hex_of(&good)];
    too_big.extend(std::iter::repeat_n(biggest.clone(), over));
    api.batch_refused(&too_big).await;

    // Nothing of either was admitted.
    assert_eq!(api.tx_state(good.hash()).await, TxState::Unknown);
    assert_eq!(api.tx_state(transfer(2, 0).hash()).await, TxState::Unknown);
    for seed in [1, 2] {
        let a: AccountView = api.get(&format!("/v1/accounts/{}", addr(seed))).await;
        assert_eq!((a.nonce, a.next_nonce), (0, 0), "signer {seed}");
    }

    // Just under the body limit is a batch, far above the limit of `POST /v1/txs`: each of its
    // zero-filled transactions is refused on its own.
    let fits = (MAX_TX_BATCH_BODY_BYTES - 1_024) / (biggest.len() + 3);
    let result = api.batch(&vec![biggest; fits]).await;
    assert_eq!(result.admitted, 0);
    assert!(
        result
            .results
            .iter()
            .all(|r| r.error.as_ref().and_then(|e| e.code) == Some(Rejection::MalformedTx.code()))
    );
    node.shutdown().await;
}

#[tokio::test]
async fn only_a_named_validator_may_mark_a_batch_as_forwarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path()).await;
    let validator = key(9);
    node.set_forwarders([addr(9)].into_iter().collect());
    let api = Api::new(&node);
    let url = format!("{}/v1/txs/batch", api.base);
    let post = |tx: &SignedTx, signer: Option<&ed25519_dalek::SigningKey>| {
        let body = serde_json::to_vec(&serde_json::json!({
            "txs_hex": [hex_of(tx)],
            "forwarded": true,
        }))
        .expect("JSON");
        let mut request = api
            .http
            .post(&url)
            .header("content-type", "application/json");
        if let Some(k) = signer {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis() as u64;
            let nonce = gpunet_api::auth::RequestNonce(
                now_ms.to_be_bytes().repeat(2).try_into().expect("16 bytes"),
            );
            for (name, value) in
                gpunet_api::auth::sign_request(k, "POST", "/v1/txs/batch", now_ms, nonce, &body)
            {
                request = request.header(name, value);
            }
        }
        request.body(body).send()
    };

    // Unsigned, or signed by a key that is not a validator's: refused whole, nothing admitted.
    let tx = transfer(1, 0);
    for signer in [None, Some(&key(1))] {
        let r = post(&tx, signer).await.expect("reaches the node");
        assert_eq!(r.status(), 403);
        let body: ErrorBody = r.json().await.expect("JSON error body");
        assert_eq!(body.name, "not_a_forwarder", "{body}");
        assert!(body.message.contains("leave `forwarded` out"), "{body}");
    }
    let status: StatusView = api.get("/v1/status").await;
    assert_eq!(
        status.mempool_size, 0,
        "a refused forwarded batch admits nothing"
    );

    // Signed by the named validator: admitted and applied.
    let r = post(&tx, Some(&validator)).await.expect("reaches the node");
    assert_eq!(r.status(), 200);
    let result: SubmitTxBatchResult = r.json().await.expect("JSON answer");
    assert_eq!(result.admitted, 1, "{result:?}");
    api.wait_applied(tx.hash()).await;
    node.shutdown().await;
}
