//! Five validators in the genesis, four running (four fifths of the power decide): after a run
//! of blocks the fifth starts with `--state-sync` and an empty store. It fetches a peer's state
//! in chunks, checks it against the root a block signed by the validators vouches for, and joins
//! consensus from there — it keeps no block from before, agrees on every root after, and its
//! vote counts: with one of the first four stopped, blocks still come. The first peer it asks is
//! hostile (a proxy that swaps the snapshot's state root for another): that peer is caught and
//! the next one is asked.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{Amount, Denom, Msg};

use common::validators::{self, Node, root_at};

const VALIDATORS: usize = 5;
const BLOCK_MS: u64 = 200;
/// Generous: the machine running tests may be busy compiling.
const PATIENCE: Duration = Duration::from_secs(120);

fn gpunet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gpunet"))
}

async fn height(http: &reqwest::Client, api: &str) -> u64 {
    validators::height(http, api).await.unwrap_or(0)
}

async fn wait_at_least(http: &reqwest::Client, nodes: &[&Node], h: u64, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut all = true;
        for n in nodes {
            all &= height(http, &n.api).await >= h;
        }
        if all {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| {
                    let log = n.log();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    format!("--- {} ---\n{}", n.home.display(), tail.join("\n"))
                })
                .collect();
            panic!("{what}: not all at height {h}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A peer that lies about the state it offers: it forwards everything to an honest node, but
/// the snapshot it hands out names a state root of its own making.
#[derive(Clone)]
struct LyingPeer {
    upstream: String,
    http: reqwest::Client,
}

async fn lie(State(p): State<LyingPeer>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let mut forwarded = p
        .http
        .request(method.clone(), format!("{}{path}", p.upstream))
        .body(body);
    if method == Method::POST {
        forwarded = forwarded.header("content-type", "application/json");
    }
    let Ok(r) = forwarded.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes: Bytes = r.bytes().await.unwrap_or_default();
    if method == Method::POST && path == "/v1/sync/snapshots" && status.is_success() {
        let mut snap: serde_json::Value = serde_json::from_slice(&bytes).expect("a snapshot");
        snap["state_root"] = serde_json::Value::String("42".repeat(32));
        return (status, axum::Json(snap)).into_response();
    }
    (status, [("content-type", content_type)], bytes).into_response()
}

async fn start_lying_peer(upstream: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().fallback(lie).with_state(LyingPeer {
        upstream,
        http: reqwest::Client::new(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_validator_joins_by_state_sync_and_its_vote_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("net");
    let p2p =
        gpunet_devnet::free_port_run(21_000..30_000, VALIDATORS as u16, &[]).expect("free ports");
    let taken: Vec<u16> = (p2p..p2p + VALIDATORS as u16).collect();
    let api_base = gpunet_devnet::free_port_run(21_000..30_000, VALIDATORS as u16, &taken)
        .expect("free ports");
    let status = gpunet()
        .args([
            "node",
            "init",
            "--validators",
            &VALIDATORS.to_string(),
            "--out",
        ])
        .arg(&out)
        .args(["--p2p-port", &p2p.to_string()])
        .args(["--api-port", &api_base.to_string()])
        .args(["--block-ms", &BLOCK_MS.to_string()])
        .status()
        .expect("run gpunet node init");
    assert!(status.success(), "gpunet node init failed");
    let mut nodes: Vec<Node> = (0..VALIDATORS)
        .map(|i| {
            Node::new(
                out.join(format!("node-{i}")),
                format!("http://127.0.0.1:{}", api_base + i as u16),
            )
        })
        .collect();
    for n in &mut nodes[..4] {
        n.start(&[]);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let first4: Vec<&Node> = nodes[..4].iter().collect();
    wait_at_least(&http, &first4, 3, "the first four validators").await;

    // Some state: transfers to fresh accounts.
    let tenant = KeyFile::load(&out.join("keys").join("tenant.json")).expect("tenant key");
    let client = NodeClient::new(&nodes[0].api).with_signer(tenant.clone());
    let mut receivers = Vec::new();
    for i in 0..5u64 {
        let to = KeyFile::generate().address();
        let view = client
            .send_and_wait(
                Msg::Transfer {
                    to,
                    denom: Denom::Usd,
                    amount: Amount::from_units(1 + i).expect("small"),
                },
                PATIENCE,
            )
            .await
            .expect("transfer commits");
        assert!(view.rejection.is_none(), "{view:?}");
        receivers.push(to);
    }
    wait_at_least(&http, &first4, 60, "a run of blocks before the fifth joins").await;

    // The fifth starts from an empty store, by state sync; the first peer it asks (validator
    // 0, in its genesis file) is reached through the lying proxy.
    assert!(!nodes[4].home.join("chain.redb").exists());
    let liar = start_lying_peer(nodes[0].api.clone()).await;
    let genesis_path = nodes[4].home.join("genesis.json");
    let genesis = std::fs::read_to_string(&genesis_path).expect("genesis");
    let honest_api = nodes[0].api.trim_start_matches("http://");
    assert!(
        genesis.contains(honest_api),
        "validator 0's API is in the genesis file"
    );
    std::fs::write(
        &genesis_path,
        genesis.replace(honest_api, &liar.to_string()),
    )
    .expect("point validator 0's API at the liar");
    nodes[4].start(&["--state-sync"]);
    let target = height(&http, &nodes[0].api).await + 10;
    let all: Vec<&Node> = nodes.iter().collect();
    wait_at_least(&http, &all, target, "all five after the fifth synced").await;

    let log = nodes[4].log();
    assert!(
        log.contains("state restored and checked against the decided root"),
        "the fifth did not sync its state:\n{log}"
    );
    assert!(
        log.contains("is not what decided block") && log.contains(&liar.to_string()),
        "the lying peer's root was not caught:\n{log}"
    );
    // It never replayed: it has no early blocks, and the blocks it has agree with the others'.
    assert!(
        root_at(&http, &nodes[4].api, 1).await.is_none(),
        "the synced validator serves block 1, so it replayed from genesis"
    );
    let mut first_kept = None;
    for h in 2..=target {
        if let Some(r) = root_at(&http, &nodes[4].api, h).await {
            first_kept.get_or_insert(h);
            assert_eq!(
                Some(r),
                root_at(&http, &nodes[0].api, h).await,
                "roots differ at height {h}"
            );
        } else {
            assert!(
                first_kept.is_none(),
                "a gap at height {h} after the synced height"
            );
        }
    }
    let first_kept = first_kept.expect("the synced validator commits blocks after its state");
    assert!(
        first_kept > 60,
        "synced at a recent height, not from genesis: {first_kept}"
    );
    // The state it restored holds what happened before it joined.
    let synced = NodeClient::new(&nodes[4].api);
    for (i, to) in receivers.iter().enumerate() {
        let acct = synced.account(to).await.expect("account");
        assert_eq!(
            acct.balances.usd,
            Amount::from_units(1 + i as u64).expect("small")
        );
    }

    // Its vote counts: with validator 3 stopped, four of five (the fifth among them) still
    // decide, and a transfer sent through the fifth commits.
    nodes[3].kill();
    let via_fifth = NodeClient::new(&nodes[4].api).with_signer(tenant);
    let view = via_fifth
        .send_and_wait(
            Msg::Transfer {
                to: receivers[0],
                denom: Denom::Usd,
                amount: Amount::from_units(1).expect("small"),
            },
            PATIENCE,
        )
        .await
        .expect("a transfer through the synced validator commits without validator 3");
    assert!(view.rejection.is_none(), "{view:?}");
    let live: Vec<&Node> = [0, 1, 2, 4].iter().map(|&i| &nodes[i]).collect();
    let now = height(&http, &nodes[4].api).await;
    wait_at_least(&http, &live, now + 5, "four of five with the synced one").await;
}
