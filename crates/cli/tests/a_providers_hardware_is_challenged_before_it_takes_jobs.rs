//! Hardware challenges end to end (ADR 0009), with real processes: a network whose genesis
//! names a throughput band for CPU cores challenges a provider's listing when it registers;
//! `gpunet provider start`'s agent computes the challenge's product on the CPU, commits to it
//! before the deadline, opens the entries the ledger samples, and passes — only then does it
//! bid, and a job runs on it. `gpunet market providers` and the API show the record.

mod binary;

use std::time::Duration;

use binary::User;
use gpunet_client::{KeyFile, NodeClient};

const SPEC: &str = r#"version: 1
name: after-the-challenge
run:
  command: ["sh", "-c", "echo proven"]
resources: { cpu: 0.5, memory: 64Mi, disk: 64Mi }
pricing: { max_per_hour: "1.00", deposit: "1.00" }
limits: { max_duration: 10m }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_passes_its_hardware_challenge_and_then_runs_a_job() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    // 100 ops per ms per core: a few-core machine gets a challenge of n ≈ 100, done at once.
    let band = r#"challenge_bands=[{"class":"cpu","ops_per_ms":100}]"#;
    let network = binary::Network::start(&user, base, 1, 200, &[band]).await;
    let client = NodeClient::new(&network.api);
    let _agent = network.provider(&user, base, 0, "0.10");
    network.until_providers(1).await;
    let address = KeyFile::load(&network.key("provider-0"))
        .expect("provider key")
        .address();

    // Registered, challenged, and within the deadline (tens of seconds) proven.
    let start = std::time::Instant::now();
    let hardware = loop {
        let p = client
            .provider(&address)
            .await
            .expect("provider")
            .expect("registered");
        if p.hardware.passed > 0 || p.hardware.failed > 0 {
            break p.hardware;
        }
        assert!(p.hardware.challenged, "the band covers its cores: {p:?}");
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no verdict on the challenge: {:?}\n{}",
            p.hardware,
            std::fs::read_to_string(base.join("provider-0.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (hardware.passed, hardware.failed),
        (1, 0),
        "{hardware:?}\n{}",
        std::fs::read_to_string(base.join("provider-0.log")).unwrap_or_default()
    );
    assert!(hardware.proven && hardware.challenge.is_none());

    // Proven: it bids, and the job runs on it.
    std::fs::write(base.join("job.yaml"), SPEC).expect("spec written");
    let submitted = binary::run(
        network.tenant(&user, &["job", "submit", "job.yaml", "--wait"], base),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");

    // The record, as people read it.
    let shown = binary::run(
        network.tenant(&user, &["market", "providers", "--json"], base),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).expect("json");
    let p = &v["providers"][0];
    assert_eq!(p["hardware"]["passed"], 1, "{p}");
    assert_eq!(p["hardware"]["proven"], true, "{p}");
    let text = binary::run(
        network.tenant(&user, &["market", "providers"], base),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        text.stdout
            .contains("hardware: proven (1 challenge passed, 0 failed"),
        "{}",
        text.stdout
    );
    // Its dashboard page keeps the challenge's history: issued, then passed.
    let page = reqwest::get(format!("{}/providers/{address}", network.api))
        .await
        .expect("the provider's page")
        .text()
        .await
        .expect("page text");
    let (issued, passed) = (page.find("issued: "), page.find("passed; the next is due"));
    assert!(
        matches!((issued, passed), (Some(i), Some(p)) if p < i),
        "the page lists the challenge issued and, newest first, passed: {page}"
    );
    // ... as the API does.
    let history = client
        .provider_challenges(&address, None)
        .await
        .expect("the challenge history");
    let steps: Vec<(&str, u64)> = history
        .events
        .iter()
        .map(|e| (e.step.as_str(), e.challenge))
        .collect();
    assert_eq!(steps, vec![("passed", 1), ("issued", 1)], "{history:?}");
    assert!(history.events[0].next_height.is_some() && history.events[1].n.is_some());

    // The job it ran is the market's one fill: the price index says what it paid per core-hour.
    let prices = binary::run(
        network.tenant(&user, &["market", "prices", "--json"], base),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(prices.code, Some(0), "{prices:?}");
    let index: gpunet_api::node::PriceIndexView =
        serde_json::from_str(&prices.stdout).expect("the index as JSON");
    assert_eq!(index.leases_read, 1, "{index:?}");
    let cpu = &index.classes[0];
    assert_eq!(
        (cpu.class.as_str(), cpu.unit.as_str(), cpu.fills),
        ("cpu", "core_hour", 1)
    );
    assert!(cpu.low == cpu.median && cpu.median == cpu.high && !cpu.median.is_zero());
    let text = binary::run(
        network.tenant(&user, &["market", "prices"], base),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        text.stdout.contains("from the newest 1 lease(s)")
            && text.stdout.contains(&format!(
                "cpu              core-hour  {:>12}",
                cpu.median.to_string()
            )),
        "{}",
        text.stdout
    );
}
