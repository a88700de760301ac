//! `gpunet wallet history` on a real node started with `gpunet node start`: the tenant's
//! transfers newest first, a page at a time with the `--after` it prints, and the same
//! transfers in the recipient's history as received; `--json` gives the node's rows.

mod binary;

use std::time::Duration;

use binary::{Network, User, run};
use gpunet_client::KeyFile;

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallets_history_pages_through_its_transfers_and_the_recipient_sees_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let network = Network::start(&user, base, 1, 100, &[]).await;
    let tenant = KeyFile::load(&network.key("tenant"))
        .expect("tenant key")
        .address()
        .to_string();
    let to = KeyFile::load(&network.key("provider-0"))
        .expect("provider key")
        .address()
        .to_string();

    // Three transfers, each waited for: 1.25, 2.50, then 3.75 usd.
    for amount in ["1.25", "2.5", "3.75"] {
        let sent = run(
            network.tenant(&user, &["wallet", "transfer", &to, amount], base),
            PATIENCE,
        )
        .await;
        assert_eq!(sent.code, Some(0), "{sent:?}");
    }

    // The signing key's own history by default, two a page, newest first.
    let first = run(
        network.tenant(&user, &["wallet", "history", "--limit", "2"], base),
        PATIENCE,
    )
    .await;
    assert_eq!(first.code, Some(0), "{first:?}");
    let lines: Vec<&str> = first.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!("{tenant} at height ")),
        "{}",
        first.stdout
    );
    assert!(lines[1].contains("BLOCK") && lines[1].contains("RESULT"));
    assert!(
        lines[2].contains("transfer")
            && lines[2].contains("applied")
            && lines[2].ends_with(&format!("sent 3.75 usd to {to}")),
        "{}",
        first.stdout
    );
    assert!(lines[3].ends_with(&format!("sent 2.50 usd to {to}")));
    let cursor = lines[4]
        .strip_prefix("older: pass --after ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cursor to read on: {}", first.stdout));

    // The page it names: the oldest, and the last.
    let second = run(
        network.tenant(
            &user,
            &["wallet", "history", "--limit", "2", "--after", cursor],
            base,
        ),
        PATIENCE,
    )
    .await;
    assert_eq!(second.code, Some(0), "{second:?}");
    let lines: Vec<&str> = second.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", second.stdout);
    assert!(lines[2].ends_with(&format!("sent 1.25 usd to {to}")));

    // Anyone's history by address, as JSON rows: the recipient's, received from the tenant.
    let theirs = run(
        network.tenant(&user, &["wallet", "history", &to, "--json"], base),
        PATIENCE,
    )
    .await;
    assert_eq!(theirs.code, Some(0), "{theirs:?}");
    let page: serde_json::Value = serde_json::from_str(&theirs.stdout).expect("JSON");
    assert!(page["next"].is_null(), "{page}");
    let rows = page["txs"].as_array().expect("rows");
    let amounts: Vec<&str> = rows
        .iter()
        .map(|r| r["transfer"]["amount"].as_str().expect("an amount"))
        .collect();
    assert_eq!(amounts, ["3.75", "2.50", "1.25"]);
    for r in rows {
        assert_eq!(r["transfer"]["direction"], "received", "{r}");
        assert_eq!(r["transfer"]["counterparty"], tenant.as_str(), "{r}");
        assert_eq!(r["state"], "applied", "{r}");
        assert_eq!(r["tx_hash"].as_str().map(str::len), Some(64), "{r}");
    }

    // A page larger than the node serves is refused before it is asked for.
    let too_many = run(
        network.tenant(&user, &["wallet", "history", "--limit", "201"], base),
        PATIENCE,
    )
    .await;
    assert_ne!(too_many.code, Some(0), "{too_many:?}");
    assert!(too_many.stderr.contains("1..=200"), "{}", too_many.stderr);
    // A garbled cursor: the node's message says what a cursor is.
    let garbled = run(
        network.tenant(&user, &["wallet", "history", "--after", "nope"], base),
        PATIENCE,
    )
    .await;
    assert_eq!(garbled.code, Some(1), "{garbled:?}");
    assert!(
        garbled.stderr.contains("a cursor is the `next` string"),
        "{}",
        garbled.stderr
    );
}
