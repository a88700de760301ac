//! A challenge's deadline is what catches a listing that claims more than its machine has
//! (ADR 0009), with real processes and real time. The test first measures this machine with
//! `gpunet bench challenge` and names that speed, per core, as the network's `cpu` band:
//!
//! - **Two listings on one machine** (two agents, each listing every core) are challenged
//!   together; each gets half the machine, takes about twice its band's time, and misses its
//!   deadline (1.25× the band's time plus a short allowance): both fail, slashed and jailed.
//!   Alone again after its jail, the same listing passes: the band is honest for one.
//! - **A claim far beyond the machine** — a band a thousand times faster, as a GPU's would be
//!   for a CPU answering it — misses its deadline; the agent stops computing there and says
//!   why.
//!
//! One test function, so the two phases never share the machine with each other.

mod binary;

use std::path::Path;
use std::time::{Duration, Instant};

use binary::User;
use gpunet_api::node::HardwareView;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::Address;

/// This machine's challenge throughput (ops per ms, all cores) and its core count: the best of
/// three runs. A run that something else slowed would name a band below the machine, and
/// deadlines loose enough for two listings to meet them; the best run is the machine's speed.
async fn measure(user: &User, base: &Path) -> (u64, u64) {
    let mut best = (0, 1);
    for _ in 0..3 {
        let (ops, threads) = measure_once(user, base).await;
        if ops > best.0 {
            best = (ops, threads);
        }
    }
    best
}

async fn measure_once(user: &User, base: &Path) -> (u64, u64) {
    let out = base.join("bench.json");
    let ran = binary::run(
        user.gpunet(
            &[
                "bench",
                "challenge",
                "--n",
                "1536",
                "--json",
                "--out",
                out.to_str().expect("utf-8"),
            ],
            base,
        ),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).expect("bench json");
    let ops = v["ops_per_ms"].as_f64().expect("ops_per_ms") as u64;
    let threads = v["threads"].as_u64().expect("threads");
    (ops, threads)
}

/// Waits until `address`'s challenges reach `done` verdicts (passes and failures), at most
/// `patience`; returns its hardware record.
async fn until_verdicts(
    client: &NodeClient,
    address: &Address,
    done: u64,
    patience: Duration,
    log: &Path,
) -> HardwareView {
    let start = Instant::now();
    loop {
        if let Ok(Some(p)) = client.provider(address).await
            && p.hardware.passed + p.hardware.failed >= done
        {
            return p.hardware;
        }
        assert!(
            start.elapsed() < patience,
            "no {done} verdict(s) for {address} in {patience:?}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn address(network: &binary::Network, name: &str) -> Address {
    KeyFile::load(&network.key(name))
        .expect("provider key")
        .address()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_claims_beyond_the_machine_miss_their_deadlines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let (ops, cores) = measure(&user, base).await;
    let per_core = (ops / cores.max(1)).max(1);
    eprintln!("this machine: {ops} ops/ms on {cores} core(s); the band: {per_core} per core");

    // Two listings on one machine.
    let shared = base.join("shared");
    std::fs::create_dir_all(&shared).expect("dir");
    let band = format!(r#"challenge_bands=[{{"class":"cpu","ops_per_ms":{per_core}}}]"#);
    // Halfway (in ratio) between one listing's time (1×) and two listings' (2×): the deadline
    // is 1.25 × 8 s + 1.5 s = 1.44× the band's time, so a band misread by a quarter either way
    // still tells the two apart.
    let params = [
        band.as_str(),
        "challenge_target_ms=8000",
        "challenge_slack_bps=12500",
        "challenge_allowance_ms=1500",
        "jail_blocks=25",
    ];
    let network = binary::Network::start(&user, &shared, 2, 200, &params).await;
    let client = NodeClient::new(&network.api);
    let mut first = network.provider(&user, &shared, 0, "0.10");
    let mut second = network.provider(&user, &shared, 1, "0.10");
    network.until_providers(2).await;
    let (a, b) = (
        address(&network, "provider-0"),
        address(&network, "provider-1"),
    );
    let log = |i: usize| shared.join(format!("provider-{i}.log"));
    let patience = Duration::from_secs(90);
    let ha = until_verdicts(&client, &a, 1, patience, &log(0)).await;
    let hb = until_verdicts(&client, &b, 1, patience, &log(1)).await;
    assert_eq!(
        (ha.passed, ha.failed, hb.passed, hb.failed),
        (0, 1, 0, 1),
        "both listings on one machine miss: {ha:?} {hb:?}\n{}\n{}",
        std::fs::read_to_string(log(0)).unwrap_or_default(),
        std::fs::read_to_string(log(1)).unwrap_or_default()
    );
    for p in [&a, &b] {
        let view = client
            .provider(p)
            .await
            .expect("provider")
            .expect("registered");
        assert!(!view.slashed.is_zero(), "slashed: {view:?}");
        assert!(!view.hardware.proven);
    }
    // The second machine's listing goes; alone, the first passes its next challenge.
    second.start_kill().expect("stop the second agent");
    let _ = second.wait().await;
    let ha = until_verdicts(&client, &a, 2, patience, &log(0)).await;
    assert_eq!(
        (ha.passed, ha.failed),
        (1, 1),
        "alone, the listing meets its band: {ha:?}\n{}",
        std::fs::read_to_string(log(0)).unwrap_or_default()
    );
    first.start_kill().expect("stop the first agent");
    let _ = first.wait().await;
    drop(network);

    // A claim a thousand times beyond the machine.
    let beyond = base.join("beyond");
    std::fs::create_dir_all(&beyond).expect("dir");
    let band = format!(
        r#"challenge_bands=[{{"class":"cpu","ops_per_ms":{}}}]"#,
        per_core.saturating_mul(1000)
    );
    let params = [
        band.as_str(),
        "challenge_target_ms=2000",
        "challenge_allowance_ms=1000",
    ];
    let network = binary::Network::start(&user, &beyond, 1, 200, &params).await;
    let client = NodeClient::new(&network.api);
    let _agent = network.provider(&user, &beyond, 0, "0.10");
    network.until_providers(1).await;
    let p = address(&network, "provider-0");
    let log = beyond.join("provider-0.log");
    let started = Instant::now();
    let h = until_verdicts(&client, &p, 1, patience, &log).await;
    assert_eq!((h.passed, h.failed), (0, 1), "{h:?}");
    // It failed at its deadline (seconds), not after computing for the hours the product takes
    // on this machine, and the agent said why.
    assert!(started.elapsed() < Duration::from_secs(60));
    // Its dashboard page keeps the failure in its challenge history, with the slash.
    let page = reqwest::get(format!("{}/providers/{p}", network.api))
        .await
        .expect("the provider's page")
        .text()
        .await
        .expect("page text");
    assert!(
        page.contains("<span class=\"error\">failed</span>")
            && page.contains("slashed, jailed until block"),
        "the page lists the failed challenge: {page}"
    );
    let history = client
        .provider_challenges(&p, Some(1))
        .await
        .expect("the challenge history");
    let newest = &history.events[..];
    assert!(
        matches!(newest, [e] if e.step == "failed" && e.slashed.is_some_and(|s| !s.is_zero()) && e.reason.is_some()),
        "the API's newest event is the failure, with its slash: {history:?}"
    );
    let start = Instant::now();
    loop {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if said.contains("missed a hardware challenge's deadline") {
            break;
        }
        assert!(
            // Generous: on a loaded machine the agent may still be generating the (large)
            // matrices when the chain's deadline passes; what matters is that it says why.
            start.elapsed() < Duration::from_secs(30),
            "the agent never said it missed the deadline; its log {}:\n{said}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
