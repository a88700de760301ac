//! Helpers shared by the CLI's end-to-end tests.

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
