//! Helpers shared by the CLI's end-to-end tests.
// Each test file uses some of these; the others are dead code there, which is fine.
#![allow(dead_code)]

pub mod validators;

use std::time::{Duration, Instant};

use gpunet_client::NodeClient;

/// Waits until a provider is registered on the node behind `client`, at most `patience`.
pub async fn wait_for_provider(client: &NodeClient, patience: Duration) {
    let start = Instant::now();
    while client
        .providers()
        .await
        .map(|p| p.providers.is_empty())
        .unwrap_or(true)
    {
        assert!(start.elapsed() < patience, "provider never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A dev network under `home` (blocks every 100 ms, API on a free port) whose provider is
/// registered.
pub async fn ready_dev_net(home: std::path::PathBuf) -> gpunet_devnet::DevNet {
    let net = gpunet_devnet::DevNet::start(gpunet_devnet::DevOptions {
        home,
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        block_ms: 100,
    })
    .await
    .expect("dev network starts");
    wait_for_provider(&NodeClient::new(&net.api), Duration::from_secs(30)).await;
    net
}
