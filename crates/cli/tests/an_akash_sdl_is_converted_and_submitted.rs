//! Akash SDL through the CLI (issue 14): `gpunet sdl convert` prints the gpunet spec and names
//! what does not map, refusing a lossy conversion unless asked; `gpunet job submit --from-sdl`
//! runs an SDL deployment on a real network, in a container on the real Docker Engine.
//!
//! Without a reachable engine the submit test prints "skipped: …" and passes — unless
//! `GPUNET_REQUIRE_DOCKER=1` (set by `.ci/run`, so CI always runs it), when it fails.

mod binary;

use std::time::Duration;

use binary::User;

fn sdl(image: &str, extra_service: &str) -> String {
    format!(
        r#"version: "2.0"
services:
  hello:
    image: {image}
    command: ["/bin/sh", "-c"]
    args: ["echo hello from an sdl, $GREETING"]
    env:
      - GREETING=hi
{extra_service}profiles:
  compute:
    hello:
      resources:
        cpu: {{ units: 0.5 }}
        memory: {{ size: 64Mi }}
        storage: [{{ size: 64Mi }}]
  placement:
    anywhere:
      pricing:
        hello: {{ denom: uakt, amount: 100 }}
deployment:
  hello:
    anywhere: {{ profile: hello, count: 1 }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdl_convert_prints_the_spec_and_names_what_does_not_map() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    std::fs::write(base.join("deploy.yaml"), sdl("busybox:1", "")).expect("sdl");
    let converted = binary::run(
        user.gpunet(
            &["sdl", "convert", "deploy.yaml", "--max-per-hour", "0.50"],
            base,
        ),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(converted.code, Some(0), "{converted:?}");
    let spec = gpunet_protocol::jobspec::JobSpec::parse_yaml(&converted.stdout)
        .expect("the printed spec is a gpunet spec");
    assert_eq!(spec.run.image.as_deref(), Some("busybox:1"));
    assert_eq!(spec.run.env.get("GREETING").map(String::as_str), Some("hi"));
    assert_eq!(spec.pricing.max_per_hour.to_string(), "0.50");

    // Without a usd price: refused, naming the flag.
    let unpriced = binary::run(
        user.gpunet(&["sdl", "convert", "deploy.yaml"], base),
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(unpriced.code, Some(0), "{unpriced:?}");
    assert!(unpriced.stderr.contains("--max-per-hour"), "{unpriced:?}");

    // A second service and a persistent volume do not map: named, refused, then --lossy.
    let db = "    params:\n      storage:\n        data: { mount: /data }\n  db:\n    image: postgres:16\n    command: [\"postgres\"]\n";
    std::fs::write(base.join("two.yaml"), sdl("busybox:1", db)).expect("sdl");
    let refused = binary::run(
        user.gpunet(
            &["sdl", "convert", "two.yaml", "--max-per-hour", "0.50"],
            base,
        ),
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(refused.code, Some(0), "{refused:?}");
    for path in ["services.db", "services.hello.params.storage", "--lossy"] {
        assert!(refused.stderr.contains(path), "{path}: {refused:?}");
    }
    let lossy = binary::run(
        user.gpunet(
            &[
                "sdl",
                "convert",
                "two.yaml",
                "--max-per-hour",
                "0.50",
                "--lossy",
                "--json",
            ],
            base,
        ),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(lossy.code, Some(0), "{lossy:?}");
    let v: serde_json::Value = serde_json::from_str(lossy.stdout.trim()).expect("json");
    let paths: Vec<&str> = v["unmapped"]
        .as_array()
        .expect("unmapped")
        .iter()
        .filter_map(|u| u["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"services.db") && paths.contains(&"services.hello.params.storage.data"),
        "{v}"
    );
    assert_eq!(v["spec"]["run"]["image"], "busybox:1", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdl_deployment_runs_with_job_submit_from_sdl() {
    let Some(image) = gpunet_runtime::testimage::test_image_or_skip(
        "an_sdl_deployment_runs_with_job_submit_from_sdl",
    )
    .await
    else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let network = binary::Network::start(&user, base, 1, 200, &[]).await;
    // SDL services ask for Docker's baseline capabilities, as Akash gives them: only a provider
    // that grants them takes the job.
    let _provider = network.provider_with_docker(
        &user,
        base,
        0,
        "0.10",
        &["--allow-capabilities", "baseline"],
    );
    network.until_providers(1).await;
    std::fs::write(base.join("deploy.yaml"), sdl(&image, "")).expect("sdl");
    let submitted = binary::run(
        network.tenant(
            &user,
            &[
                "job",
                "submit",
                "--from-sdl",
                "deploy.yaml",
                "--max-per-hour",
                "0.50",
                "--max-duration",
                "10m",
                "--wait",
            ],
            base,
        ),
        Duration::from_secs(180),
    )
    .await;
    let said = format!("{}{}", submitted.stdout, submitted.stderr);
    assert_eq!(submitted.code, Some(0), "{said}");
    // The job's log, which `--wait` prints: the command, its args and env came through.
    assert!(
        said.contains("ended: completed") && said.contains("hello from an sdl, hi"),
        "{said}"
    );
    // SDL options belong with --from-sdl only.
    let mixed = binary::run(
        network.tenant(&user, &["job", "submit", "deploy.yaml", "--lossy"], base),
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(mixed.code, Some(0), "{mixed:?}");
    assert!(mixed.stderr.contains("go with --from-sdl"), "{mixed:?}");
}
