//! A provider's agent started before its node is up (both started together by a script, or
//! the node still opening its store) waits for the node, saying so, and then registers —
//! rather than exiting with "cannot reach".

mod binary;

use std::time::Duration;

use binary::User;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_started_before_its_node_waits_and_then_registers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let mut network = binary::Network::init(&user, base, 1, 200, &[]).await;
    let mut agent = network.provider(&user, base, 0, "0.10");
    // Long enough for the agent to find nothing at the node's address and ask again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        agent.try_wait().expect("the agent's state").is_none(),
        "the agent gave up on a node not started yet: {}",
        std::fs::read_to_string(base.join("provider-0.log")).unwrap_or_default()
    );
    let said = std::fs::read_to_string(base.join("provider-0.log")).expect("the agent's log");
    assert!(
        said.contains("waiting up to") && said.contains("for the node"),
        "the agent says it waits for its node: {said}"
    );
    network.start_node(&user, base);
    network.until_providers(1).await;
}
