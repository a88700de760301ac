//! On `gpunet dev` (in process): prices are public before submitting and a job that cannot run
//! is explained instead of waiting silently. The provider posts the agent's default rates
//! (0.10 per core-hour, 0.01 per GiB-hour, 2.00 per GPU-hour), so a 1-core, 512 MiB job costs
//! 0.105 usd/hour there.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use gpunet::quote;
use gpunet_client::NodeClient;
use gpunet_devnet::{self as devnet, DevNet};
use gpunet_protocol::explain::{Change, Requirement};
use gpunet_protocol::jobspec::JobSpec;
use gpunet_protocol::{Amount, Event, Msg, OrderId, Rates};

/// A 1-core, 512 MiB process job with these GPU, price and deposit lines.
fn spec_yaml(gpu_count: u32, max_per_hour: &str, deposit: &str, duration: &str) -> String {
    format!(
        "version: 1\nname: probe\nkind: batch\nrun:\n  command: [\"true\"]\nresources:\n  cpu: 1\n  memory: 512Mi\n  disk: 1Gi\n  gpu: {{ count: {gpu_count} }}\npricing: {{ max_per_hour: \"{max_per_hour}\", deposit: \"{deposit}\" }}\nlimits: {{ max_duration: {duration} }}\n"
    )
}

fn write_spec(dir: &Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write spec");
    path
}

/// Runs the `gpunet` binary against the dev network as its tenant.
fn gpunet(net: &DevNet, home: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gpunet"))
        .args(args)
        .env("GPUNET_API", &net.api)
        .env("GPUNET_KEY", devnet::tenant_key_path(home))
        .env("GPUNET_HOME", home)
        .output()
        .expect("gpunet runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Creates the order without the CLI's checks; returns its id and the height it opened at.
async fn open_order(net: &DevNet, spec: &JobSpec) -> (OrderId, u64) {
    let client = NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let view = client
        .send_and_wait(
            Msg::CreateOrder {
                terms: spec.order_terms(),
            },
            Duration::from_secs(30),
        )
        .await
        .expect("the order is accepted");
    let id = view
        .events
        .iter()
        .find_map(|e| match e {
            Event::OrderCreated { order, .. } => Some(*order),
            _ => None,
        })
        .expect("an order id");
    (id, view.block_height.expect("in a block"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_cannot_run_are_explained_and_prices_are_shown_before_submitting() {
    let home = tempfile::tempdir().expect("tempdir");
    let specs = tempfile::tempdir().expect("tempdir");
    let net = common::ready_dev_net(home.path().to_path_buf()).await;
    let reader = NodeClient::new(&net.api);
    let providers = reader.providers().await.expect("providers");
    let dev = &providers.providers[0];
    assert_eq!(dev.address, net.agent.address());
    assert_eq!(
        dev.profile.rates,
        Rates::default(),
        "the agent posts its rates on chain"
    );
    let price = Amount::from_micros(105_000);

    // `market providers` shows them.
    let out = gpunet(&net, home.path(), &["market", "providers"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("rates 0.10/core-h, 0.01/GiB-h, 2.00/GPU-h"),
        "{}",
        text(&out)
    );
    // The dev network grants its containers the baseline capabilities, where it has Docker.
    let shown = text(&out);
    let granted = if shown.contains("runtimes process, docker;") {
        "baseline"
    } else {
        assert!(shown.contains("runtimes process;"), "{shown}");
        "none"
    };
    assert!(
        shown.contains(&format!("containers get {granted} capabilities")),
        "{shown}"
    );

    // `job quote` shows the dev provider's price, the full run and how long the deposit lasts.
    let hello = write_spec(
        specs.path(),
        "hello.yaml",
        &spec_yaml(0, "2.50", "5.00", "10m"),
    );
    let hello_path = hello.to_str().expect("utf-8 path");
    let out = gpunet(&net, home.path(), &["job", "quote", hello_path]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("0.105"), "{shown}");
    assert!(shown.contains("minimum deposit 0.416667"), "{shown}");
    let out = gpunet(&net, home.path(), &["job", "quote", hello_path, "--json"]);
    let q: serde_json::Value = serde_json::from_slice(&out.stdout).expect("quote JSON");
    assert_eq!(q["offers"][0]["provider"], dev.address.to_string());
    assert_eq!(q["offers"][0]["price_per_hour"], "0.105");
    // Ten minutes at 0.105: 0.0175; 5.00 lasts 47 h 37 min at that price.
    assert_eq!(q["offers"][0]["full_run"], "0.0175");
    assert_eq!(q["offers"][0]["deposit_lasts_secs"], 171_428);

    // A deposit too small for max price × duration is refused, naming the minimum; nothing is
    // signed.
    let nonce = reader
        .account(&net.tenant.address())
        .await
        .expect("account")
        .nonce;
    let tiny = write_spec(
        specs.path(),
        "tiny.yaml",
        &spec_yaml(0, "2.50", "0.000001", "1h"),
    );
    let out = gpunet(
        &net,
        home.path(),
        &["job", "submit", tiny.to_str().expect("utf-8")],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("at least 2.50"), "{}", text(&out));

    // A price below every provider: refused at submit with the closest offer and the price
    // that would match.
    let cheap = write_spec(
        specs.path(),
        "cheap.yaml",
        &spec_yaml(0, "0.01", "1.00", "10m"),
    );
    let out = gpunet(
        &net,
        home.path(),
        &["job", "submit", cheap.to_str().expect("utf-8")],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let refused = text(&out);
    assert!(
        refused.contains("raise pricing.max_per_hour to 0.105"),
        "{refused}"
    );
    assert!(refused.contains("--submit-anyway"), "{refused}");
    assert_eq!(
        reader
            .account(&net.tenant.address())
            .await
            .expect("account")
            .nonce,
        nonce,
        "refused submissions sign nothing"
    );
    // Submitted anyway, the open order is explained the same way.
    let spec = JobSpec::parse_yaml(&spec_yaml(0, "0.01", "1.00", "10m")).expect("parses");
    let (order, _) = open_order(&net, &spec).await;
    let view = reader.explain_order(order).await.expect("explained");
    assert_eq!(view.explanation.failing(Requirement::Price), 1);
    assert_eq!(view.explanation.offers[0].provider, dev.address);
    assert_eq!(view.explanation.offers[0].price_per_hour, price);
    assert_eq!(
        view.explanation.changes,
        vec![Change::RaiseMaxPrice { to: price }]
    );
    let out = gpunet(&net, home.path(), &["job", "status", &order.0.to_string()]);
    assert!(
        text(&out).contains("raise pricing.max_per_hour to 0.105"),
        "{}",
        text(&out)
    );

    // A GPU job on a network without GPUs (where this machine has one, the dev provider
    // offers it, and the case cannot be made here).
    if dev.profile.capacity.gpus.is_empty() {
        let yaml = spec_yaml(1, "5.00", "5.00", "10m");
        let gpu = write_spec(specs.path(), "gpu.yaml", &yaml);
        let spec = JobSpec::parse_yaml(&yaml).expect("parses");
        let refused = quote::preflight(&reader, &spec.order_terms(), false, false)
            .await
            .expect_err("refused without --submit-anyway")
            .to_string();
        assert!(refused.contains("1 fail gpu model"), "{refused}");
        assert!(
            refused.contains("set resources.gpu.count to 0"),
            "{refused}"
        );
        let out = gpunet(
            &net,
            home.path(),
            &["job", "submit", gpu.to_str().expect("utf-8")],
        );
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("gpu model"), "{}", text(&out));

        let (order, created) = open_order(&net, &spec).await;
        let view = loop {
            match reader.explain_order(order).await {
                Ok(v) => break v,
                Err(e) => {
                    let head = reader.status().await.expect("status").height;
                    assert!(head <= created + 3, "not explained within 3 blocks: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert!(
            view.height <= created + 3,
            "explained at {} for an order of {created}",
            view.height
        );
        assert!(!view.explanation.matches());
        assert_eq!(view.explanation.failing(Requirement::GpuModel), 1);
        assert!(matches!(
            view.explanation.changes.as_slice(),
            [Change::GpuModel { .. }]
        ));
    } else {
        eprintln!("this machine has a GPU: the GPU-less case is left to machines without one");
    }

    // Listings page: one order at a time with the cursor each page prints, or every page.
    let (newest, _) = open_order(&net, &spec).await;
    let page = |args: &[&str]| {
        let out = gpunet(&net, home.path(), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("a JSON page")
    };
    let ids = |page: &serde_json::Value| -> Vec<u64> {
        page["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .map(|o| o["id"].as_u64().expect("id"))
            .collect()
    };
    let every = page(&["job", "list", "--all-pages", "--json"]);
    assert!(every["next"].is_null(), "{every}");
    let all = ids(&every);
    assert!(all.len() >= 2 && all[0] == newest.0, "{all:?}");
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["job", "list", "--limit", "1", "--json"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let one = page(&args);
        walked.extend(ids(&one));
        match one["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        walked, all,
        "one page at a time gives the same orders, once each"
    );
    let out = gpunet(
        &net,
        home.path(),
        &["market", "orders", "--all", "--limit", "1"],
    );
    assert!(
        text(&out).contains("more: pass --after o."),
        "the text listing says how to read on: {}",
        text(&out)
    );
    let out = gpunet(
        &net,
        home.path(),
        &["market", "providers", "--limit", "1001"],
    );
    assert!(
        !out.status.success(),
        "a page over 1000 is refused: {}",
        text(&out)
    );

    net.stop().await;
}
