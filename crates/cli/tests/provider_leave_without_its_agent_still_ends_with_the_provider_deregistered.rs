//! `gpunet provider leave` for a provider whose agent is gone (its machine died before the
//! leave): the exit is announced, a second `leave --wait` follows the leave already under way,
//! and with no lease left and no agent to deregister, it deregisters the provider itself — the
//! stake comes back. Leaving again is refused with what to check. Before it leaves, the provider
//! bonds more stake (`gpunet provider bond`), and `gpunet market providers` shows its record:
//! a newcomer's reputation, on probation, never slashed.

mod binary;

use std::time::Duration;

use binary::User;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::Denom;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_announces_follows_and_deregisters_a_provider_whose_agent_is_gone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    // Stake unbonds for 25 blocks (5 s) before it returns.
    let network = binary::Network::start(&user, base, 1, 200, &["unbonding_blocks=25"]).await;
    let client = NodeClient::new(&network.api);
    let mut agent = network.provider(&user, base, 0, "0.10");
    network.until_providers(1).await;
    // The provider's machine dies: registered, no agent.
    agent.start_kill().expect("SIGKILL the agent");
    let _ = agent.wait().await;
    let address = KeyFile::load(&network.key("provider-0"))
        .expect("provider key")
        .address();
    let gpn_before = client
        .account(&address)
        .await
        .expect("account")
        .balances
        .get(Denom::Gpn);

    let key = network.key("provider-0");
    let key = key.to_str().expect("utf-8");

    // `gpunet provider bond|unbond --amount A [--json]` with the provider's key.
    let stake_cmd = |verb: &'static str, amount: &'static str, json: bool| {
        let mut args = vec![
            "provider",
            verb,
            "--api",
            &network.api,
            "--key",
            key,
            "--amount",
            amount,
        ];
        if json {
            args.push("--json");
        }
        binary::run(user.gpunet(&args, base), Duration::from_secs(60))
    };
    let stake_before = client
        .provider(&address)
        .await
        .expect("provider")
        .expect("registered")
        .stake;
    let bond = stake_cmd("bond", "25", true).await;
    assert_eq!(bond.code, Some(0), "{bond:?}");
    let bonded: serde_json::Value = serde_json::from_str(&bond.stdout).expect("bond --json");
    let me = client
        .provider(&address)
        .await
        .expect("provider")
        .expect("registered");
    assert_eq!(
        me.stake.micros(),
        stake_before.micros() + 25_000_000,
        "{bonded}"
    );
    assert_eq!(bonded["stake"], me.stake.to_string());
    // Some of it out again: it unbonds, and the stake keeps what the listing needs.
    let unbond = stake_cmd("unbond", "10", true).await;
    assert_eq!(unbond.code, Some(0), "{unbond:?}");
    let unbonded: serde_json::Value = serde_json::from_str(&unbond.stdout).expect("unbond --json");
    assert_eq!(unbonded["unbonding"], "10.00", "{unbonded}");
    assert!(unbonded["release_height"].as_u64().is_some(), "{unbonded}");
    let me = client
        .provider(&address)
        .await
        .expect("provider")
        .expect("registered");
    assert_eq!(me.stake.micros(), stake_before.micros() + 15_000_000);
    let too_much = stake_cmd("unbond", "1000", false).await;
    assert_ne!(too_much.code, Some(0), "{too_much:?}");
    assert!(too_much.stderr.contains("unbond_invalid"), "{too_much:?}");
    assert_eq!(me.reputation_ppm, 500_000, "a newcomer's score");
    assert!(me.slashed.is_zero() && me.jailed_until_height == 0);
    let listed = binary::run(
        user.gpunet(&["market", "providers", "--api", &network.api], base),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    assert!(
        listed.stdout.contains("reputation 0.500")
            && listed.stdout.contains("on probation in every class"),
        "{listed:?}"
    );
    let refused = binary::run(
        user.gpunet(
            &[
                "provider",
                "bond",
                "--api",
                &network.api,
                "--key",
                key,
                "--amount",
                "0",
            ],
            base,
        ),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("zero_amount"), "{refused:?}");

    let leave = |extra: &[&str]| {
        let mut args = vec!["provider", "leave", "--api", &network.api, "--key", key];
        args.extend(extra);
        user.gpunet(&args, base)
    };

    let announced = binary::run(leave(&[]), Duration::from_secs(60)).await;
    assert_eq!(announced.code, Some(0), "{announced:?}");
    assert!(
        announced.stdout.contains("is leaving") && announced.stdout.contains("--wait"),
        "says what happens next and how to follow it: {announced:?}"
    );
    let providers = client.providers().await.expect("providers");
    let me = providers
        .providers
        .iter()
        .find(|p| p.address == address)
        .expect("still registered");
    assert!(me.leaving, "the exit is on chain");

    let followed = binary::run(leave(&["--wait", "--json"]), Duration::from_secs(90)).await;
    assert_eq!(followed.code, Some(0), "{followed:?}");
    let report: serde_json::Value =
        serde_json::from_str(&followed.stdout).expect("provider leave --json prints JSON");
    assert_eq!(report["announced"], false, "already leaving: {report}");
    assert_eq!(report["deregistered"], true, "{report}");
    assert_eq!(report["deregistered_by"], "this command", "{report}");
    assert_eq!(report["leases"], serde_json::json!([]), "{report}");
    let providers = client.providers().await.expect("providers");
    assert!(providers.providers.iter().all(|p| p.address != address));
    // The stake unbonds, then comes back by itself.
    let account = client.account(&address).await.expect("account");
    assert!(!account.unbonding.is_empty(), "unbonding: {account:?}");
    let start = std::time::Instant::now();
    loop {
        let account = client.account(&address).await.expect("account");
        if account.unbonding.is_empty() {
            assert!(
                account.balances.get(Denom::Gpn) > gpn_before,
                "the stake came back: {account:?}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{account:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let again = binary::run(leave(&["--wait"]), Duration::from_secs(60)).await;
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again.stderr.contains("is not a registered provider"),
        "{again:?}"
    );
}
