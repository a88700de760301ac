//! A client that sends faster than blocks commit meets a full mempool: the node holds at most
//! 64 waiting transactions per signer. `NodeClient::send` waits for the blocks to make room
//! instead of failing (so a tenant submitting many jobs at once loses none of them), on a real
//! node started with `gpunet node start`.

mod binary;

use std::sync::Arc;
use std::time::{Duration, Instant};

use binary::{Network, User};
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{Amount, Denom, Msg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sends_at_once_from_one_signer_all_land() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    // One-second blocks: a hundred sends arrive well before the first block makes room.
    let network = Network::start(&user, base, 1, 1_000, &[]).await;
    let tenant = KeyFile::load(&network.key("tenant")).expect("tenant key");
    let to = KeyFile::load(&network.key("provider-0"))
        .expect("provider key")
        .address();
    let reader = NodeClient::new(&network.api);
    let up = Instant::now();
    while reader.status().await.is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(60),
            "the node did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = reader
        .account(&to)
        .await
        .expect("account")
        .balances
        .get(Denom::Usd);
    let nonce = reader
        .account(&tenant.address())
        .await
        .expect("account")
        .nonce;

    const SENDS: u64 = 100;
    let client = Arc::new(NodeClient::new(&network.api).with_signer(tenant.clone()));
    let mut tasks = Vec::new();
    for _ in 0..SENDS {
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            client
                .send(Msg::Transfer {
                    to,
                    denom: Denom::Usd,
                    amount: Amount::from_micros(1),
                })
                .await
        }));
    }
    for task in tasks {
        let sent = task.await.expect("the task runs");
        assert!(sent.is_ok(), "a send failed: {sent:?}");
    }
    // Every one of them is applied, each once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let account = reader.account(&tenant.address()).await.expect("account");
        if account.nonce >= nonce + SENDS {
            assert_eq!(account.nonce, nonce + SENDS);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {SENDS} transfers applied",
            account.nonce - nonce
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let after = reader
        .account(&to)
        .await
        .expect("account")
        .balances
        .get(Denom::Usd);
    assert_eq!(
        after,
        before
            .checked_add(Amount::from_micros(SENDS))
            .expect("fits")
    );
}
