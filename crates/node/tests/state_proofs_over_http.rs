//! Proven reads of the state over real HTTP: `GET /v1/state/{table}/{key}?proof=true` on a real
//! node, checked by the client against the committed root — and a hostile node (a proxy that
//! rewrites the answer) caught by the same check.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use gpunet_api::ErrorBody;
use gpunet_api::node::{AccountView, StateEntryView};
use gpunet_client::{ClientError, NodeClient};
use gpunet_ledger::{Genesis, GenesisAccount, Params};
use gpunet_node::{MempoolLimits, NodeConfig, NodeHandle};
use gpunet_protocol::{Account, Address, Balances, Denom, Msg, TxBody};
use gpunet_testkit::{key, usd};

const CHAIN: &str = "gpunet-proof-test";

fn addr(seed: u64) -> Address {
    Address::from_key(&key(seed).verifying_key())
}

async fn start_node(home: &std::path::Path) -> NodeHandle {
    gpunet_node::start(NodeConfig {
        home: home.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("valid address"),
        block_ms: 100,
        genesis: Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_700_000_000_000,
            params: Params::default(),
            accounts: vec![GenesisAccount {
                address: addr(1),
                balances: Balances {
                    usd: usd(1_000),
                    gpn: usd(1_000),
                },
            }],
        },
        mempool: MempoolLimits::default(),
    })
    .await
    .expect("node starts")
}

/// Sends 5 usd from account 1 to account 2 and waits for it to be committed.
async fn transfer(client: &NodeClient) {
    let tx = TxBody {
        chain_id: CHAIN.into(),
        signer: addr(1),
        nonce: 0,
        fee: Params::default().min_tx_fee,
        msg: Msg::Transfer {
            to: addr(2),
            denom: Denom::Usd,
            amount: usd(5),
        },
    }
    .sign(&key(1));
    let hash = client.submit(&tx).await.expect("admitted");
    client
        .wait_tx(&hash, Duration::from_secs(15))
        .await
        .expect("committed");
}

#[tokio::test]
async fn a_proven_balance_matches_the_nodes_and_an_absent_account_is_proven_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path()).await;
    let base = format!("http://{}", node.api_addr());
    let client = NodeClient::new(&base);
    transfer(&client).await;

    let proven = client.verified_account(&addr(2)).await.expect("verified");
    let account = proven.account.expect("account 2 exists after the transfer");
    assert_eq!(account.balances.usd, usd(5));
    let plain: AccountView = client.account(&addr(2)).await.expect("account");
    assert!(plain.height >= proven.height);
    assert_eq!(plain.balances, account.balances);
    // The root is the block record's.
    let block = client.block(proven.height).await.expect("block");
    assert_eq!(block.state_root, proven.root);

    let nobody = client.verified_account(&addr(9)).await.expect("verified");
    assert_eq!(
        nobody.account, None,
        "a proof of absence, not an empty account"
    );

    // The chain table's singletons and the JSON view.
    let params = client
        .state_entry(
            gpunet_protocol::merkle::StateTable::Chain,
            "params",
            false,
            None,
        )
        .await
        .expect("params");
    assert!(params.found && params.proof_hex.is_none() && params.root.is_none());
    let value = params.value.expect("a JSON view");
    assert!(value.get("min_tx_fee").is_some(), "{value}");
    node.shutdown().await;
}

#[tokio::test]
async fn bad_tables_keys_and_heights_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path()).await;
    let base = format!("http://{}", node.api_addr());
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("{base}{path}");
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.expect("reaches the node");
            let status = r.status().as_u16();
            let body: ErrorBody = r.json().await.expect("JSON error");
            (status, body.message)
        }
    };
    let (status, msg) = get("/v1/state/bids/1").await;
    assert_eq!(status, 400);
    assert!(msg.contains("accounts, providers, orders"), "{msg}");
    let (status, msg) = get("/v1/state/orders/order-x").await;
    assert_eq!(status, 400);
    assert!(msg.contains("path parameter key"), "{msg}");
    let (status, msg) = get("/v1/state/chain/height").await;
    assert_eq!(status, 400);
    assert!(msg.contains("`chain` or `params`"), "{msg}");
    let (status, msg) = get(&format!("/v1/state/accounts/{}?proof=yes", addr(1))).await;
    assert_eq!(status, 400);
    assert!(msg.contains("neither true nor false"), "{msg}");
    let (status, msg) = get(&format!("/v1/state/accounts/{}?height=999999999", addr(1))).await;
    assert_eq!(status, 404);
    assert!(msg.contains("keeps heights"), "{msg}");
    node.shutdown().await;
}

/// How the hostile proxy rewrites a state answer.
#[derive(Clone, Copy)]
enum Forgery {
    /// A richer balance, the rest of the answer as the node sent it.
    Value,
    /// A richer balance and a made-up root to go with it.
    ValueAndRoot,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    forgery: Forgery,
    http: reqwest::Client,
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let r = p
        .http
        .get(format!("{}{path}", p.upstream))
        .send()
        .await
        .expect("upstream answers");
    let status = r.status();
    let bytes = r.bytes().await.expect("upstream body");
    if !path.starts_with("/v1/state/") || !status.is_success() {
        return (status, bytes).into_response();
    }
    let mut entry: StateEntryView = serde_json::from_slice(&bytes).expect("a state entry");
    let honest = entry
        .value_hex
        .as_deref()
        .map_or_else(Vec::new, |v| hex::decode(v).expect("hex"));
    let mut account: Account = if honest.is_empty() {
        Account::default()
    } else {
        borsh::from_slice(&honest).expect("an account")
    };
    account.balances.usd = usd(1_000_000);
    entry.found = true;
    entry.value_hex = Some(hex::encode(borsh::to_vec(&account).expect("encodes")));
    entry.value = Some(serde_json::to_value(&account).expect("json"));
    if let Forgery::ValueAndRoot = p.forgery {
        entry.root = Some(hex::encode([0x42u8; 32]));
    }
    axum::Json(entry).into_response()
}

async fn start_proxy(upstream: String, forgery: Forgery) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let local = listener.local_addr().expect("addr");
    let app = Router::new().fallback(forward).with_state(Proxy {
        upstream,
        forgery,
        http: reqwest::Client::new(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    local
}

#[tokio::test]
async fn a_node_that_rewrites_a_balance_is_caught_by_the_proof_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path()).await;
    let upstream = format!("http://{}", node.api_addr());
    transfer(&NodeClient::new(&upstream)).await;

    for (forgery, expect) in [
        (Forgery::Value, "does not match root"),
        (Forgery::ValueAndRoot, "committed root"),
    ] {
        let proxy = start_proxy(upstream.clone(), forgery).await;
        let hostile = NodeClient::new(&format!("http://{proxy}"));
        // The plain read believes the forged answer: that is why `--verify` exists.
        let forged = hostile
            .state_entry(
                gpunet_protocol::merkle::StateTable::Accounts,
                &addr(2).to_string(),
                true,
                None,
            )
            .await
            .expect("answers");
        assert!(forged.found);
        for who in [addr(2), addr(9)] {
            let err = hostile
                .verified_account(&who)
                .await
                .expect_err("a forged balance must not verify");
            assert!(
                matches!(err, ClientError::Unverified { .. }),
                "{who}: {err}"
            );
            assert!(err.to_string().contains(expect), "{who}: {err}");
        }
    }
    node.shutdown().await;
}
