//! A `gpunet dev` process killed with SIGKILL while producing blocks restarts from its store at a
//! consistent height, with the same state root for every height it had written, and goes on.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gpunet_client::NodeClient;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn spawn_dev(home: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gpunet"))
        .args(["dev", "--block-ms", "50", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--home")
        .arg(home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gpunet dev starts")
}

async fn wait_height(client: &NodeClient, at_least: u64) -> u64 {
    let start = Instant::now();
    loop {
        if let Ok(s) = client.status().await
            && s.height >= at_least
        {
            return s.height;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node never reached height {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn roots(client: &NodeClient, upto: u64) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for h in 1..=upto {
        let url = format!("{}/v1/blocks/{h}", client.base());
        let v: serde_json::Value = reqwest_get(&url).await;
        out.insert(h, v["state_root"].as_str().expect("root").to_owned());
    }
    out
}

async fn reqwest_get(url: &str) -> serde_json::Value {
    reqwest::get(url)
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_dev_node_restarts_with_identical_roots() {
    let home = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let client = NodeClient::new(&format!("http://127.0.0.1:{port}"));

    let mut child = spawn_dev(home.path(), port);
    wait_height(&client, 20).await;
    let seen = client.status().await.expect("status").height;
    let before = roots(&client, seen).await;
    // Kill in the middle of block production.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let mut child = spawn_dev(home.path(), port);
    let resumed = wait_height(&client, seen).await;
    assert!(resumed >= seen, "restarted below the height it had served");
    let after = roots(&client, seen).await;
    assert_eq!(before, after, "every height keeps its state root");
    // And it goes on producing.
    wait_height(&client, resumed + 5).await;
    child.kill().expect("kill");
    child.wait().expect("reaped");
}
