//! Four validators on Malachite, each a separate `gpunet node start` process on loopback:
//! transfers sent through different nodes commit, every node has the same state root at every
//! height, blocks keep coming with one validator killed, and the killed one catches up to the
//! same roots after a restart.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::validators::{Node, height, root_at};

use gpunet_api::node::TxState;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{Amount, Denom, Msg};

const VALIDATORS: usize = 4;
const BLOCK_MS: u64 = 200;
/// Generous: the machine running tests may be busy compiling.
const PATIENCE: Duration = Duration::from_secs(120);

fn gpunet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gpunet"))
}

/// A base port with `n` consecutive free ports after it, in this test's own range.
fn free_port_run(n: u16, avoid: &[u16]) -> u16 {
    gpunet_devnet::free_port_run(21_000..30_000, n, avoid).expect("free ports")
}

/// Waits until every node in `nodes` reports at least height `h`.
async fn wait_all_at_least(http: &reqwest::Client, nodes: &[&Node], h: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut all = true;
        for n in nodes {
            if height(http, &n.api).await.unwrap_or(0) < h {
                all = false;
            }
        }
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not all reach height {h}; see the node.log files in {}",
            nodes[0]
                .home
                .parent()
                .map_or(Path::new(""), |p| p)
                .display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every node in `nodes` has the same state root at every height from 1 to `up_to`.
async fn assert_same_roots(http: &reqwest::Client, nodes: &[&Node], up_to: u64) {
    for h in 1..=up_to {
        let mut roots = Vec::new();
        for n in nodes {
            roots.push(root_at(http, &n.api, h).await.expect("block is served"));
        }
        assert!(
            roots.windows(2).all(|w| w[0] == w[1]),
            "state roots differ at height {h}: {roots:?}"
        );
    }
}

async fn max_height(http: &reqwest::Client, nodes: &[&Node]) -> u64 {
    let mut m = 0;
    for n in nodes {
        m = m.max(height(http, &n.api).await.unwrap_or(0));
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_validators_agree_and_a_crashed_one_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("net");
    let p2p = free_port_run(VALIDATORS as u16, &[]);
    let api_base = free_port_run(
        VALIDATORS as u16,
        &(p2p..p2p + VALIDATORS as u16).collect::<Vec<_>>(),
    );
    let status = gpunet()
        .args(["node", "init", "--validators", "4", "--out"])
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
    for n in &mut nodes {
        n.start(&[]);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");

    let all: Vec<&Node> = nodes.iter().collect();
    wait_all_at_least(&http, &all, 3).await;

    // Transfers through each node in turn; each must commit, whoever proposes.
    let tenant = KeyFile::load(&out.join("keys").join("tenant.json")).expect("tenant key");
    let mut receivers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let to = KeyFile::generate().address();
        receivers.push(to);
        let client = NodeClient::new(&n.api).with_signer(tenant.clone());
        let view = client
            .send_and_wait(
                Msg::Transfer {
                    to,
                    denom: Denom::Usd,
                    amount: Amount::from_units(1 + i as u64).expect("small"),
                },
                PATIENCE,
            )
            .await
            .unwrap_or_else(|e| panic!("transfer through node {i} did not commit: {e}"));
        assert!(view.rejection.is_none(), "transfer {i} rejected: {view:?}");
    }

    let h = max_height(&http, &all).await;
    wait_all_at_least(&http, &all, h).await;
    assert_same_roots(&http, &all, h).await;
    // Every node sees every transfer.
    for n in &nodes {
        let client = NodeClient::new(&n.api);
        for (i, to) in receivers.iter().enumerate() {
            let acct = client.account(to).await.expect("account");
            assert_eq!(
                acct.balances.usd,
                Amount::from_units(1 + i as u64).expect("small"),
                "node {} balance of receiver {i}",
                n.api
            );
        }
    }

    // A transfer sent only to validator 3 reaches the others (forwarding): once validator 0
    // knows it, validator 3 is killed, and the survivors still commit it.
    let via_3 = NodeClient::new(&nodes[3].api).with_signer(tenant.clone());
    let hash = via_3
        .send(Msg::Transfer {
            to: receivers[0],
            denom: Denom::Usd,
            amount: Amount::from_units(10).expect("small"),
        })
        .await
        .expect("node 3 admits the transfer");
    let via_0 = NodeClient::new(&nodes[0].api);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let view = via_0.tx(&hash).await.expect("tx view");
        if view.state != TxState::Unknown {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "validator 0 never heard of the transfer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One validator down: three of four still decide.
    nodes[3].kill();
    let live: Vec<&Node> = nodes[..3].iter().collect();
    let view = NodeClient::new(&nodes[1].api)
        .wait_tx(&hash, PATIENCE)
        .await
        .expect("the forwarded transfer commits with validator 3 down");
    assert!(view.rejection.is_none());
    let before = max_height(&http, &live).await;
    wait_all_at_least(&http, &live, before + 5).await;

    // Back up: it catches up to the others, with the same roots.
    let target = max_height(&http, &live).await + 2;
    nodes[3].start(&[]);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_all_at_least(&http, &all, target).await;
    assert_same_roots(&http, &all, target).await;
}
