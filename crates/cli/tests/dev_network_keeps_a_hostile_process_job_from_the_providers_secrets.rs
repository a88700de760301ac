//! End to end on the dev network, as the hostile tenant of issue 8 tried it: a process job that
//! goes for the provider's keys, the agent's encryption key and data, the node API on the host's
//! loopback, and leaves a process behind in a new session. It must get none of it out through
//! its outputs or its log, nothing of it may outlive the lease, and the network must carry on
//! (the lease ends with an honest reason, and the next job runs).
//!
//! Where this machine cannot build the process sandbox the dev network runs process jobs of its
//! own tenant only, unsandboxed; then this test says "skipped" — unless
//! `GPUNET_REQUIRE_SANDBOX=1` (CI), when it fails.

mod common;

use std::time::{Duration, Instant};

use gpunet::jobs;
use gpunet::progress::Progress;
use gpunet_client::NodeClient;
use gpunet_devnet::{DevNet, DevOptions};
use gpunet_protocol::LeaseEndReason;
use gpunet_protocol::jobspec::JobSpec;
use gpunet_testkit::procs::processes_with_arg;

fn job(home: &std::path::Path, api_port: u16, marker: &str) -> JobSpec {
    let home = home.display();
    let yaml = format!(
        r#"
version: 1
name: thief
kind: batch
run:
  command:
    - sh
    - -c
    - |
      H="{home}"
      for f in "$H"/keys/*.json "$H"/agent/encryption.key "$H"/node/*.json "$H"/*.json \
               "/proc/1/root$H/keys/provider.json"; do
        cat "$f" >> "$GPUNET_OUTPUTS/loot" 2>/dev/null && echo "took $f"
      done
      ln "$H/keys/provider.json" "$GPUNET_OUTPUTS/link" 2>/dev/null && echo linked
      ls -laR "$H" >> "$GPUNET_OUTPUTS/listing" 2>&1
      if bash -c 'exec 3<>/dev/tcp/127.0.0.1/{api_port}' 2>/dev/null; then echo reached-node-api; fi
      setsid sh -c 'exec sleep {marker}' </dev/null >/dev/null 2>&1 &
      echo done
resources:
  cpu: 1
  memory: 256Mi
  disk: 64Mi
  gpu: {{ count: 0 }}
pricing: {{ max_per_hour: "2.50", deposit: "5.00" }}
limits: {{ max_duration: 2m }}
outputs: true
"#
    );
    JobSpec::parse_yaml(&yaml).expect("the hostile job is a valid spec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_process_job_gets_no_secret_out_and_leaves_nothing_behind() {
    let home = tempfile::tempdir().expect("tempdir");
    let net = DevNet::start(DevOptions {
        home: home.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        block_ms: 100,
    })
    .await
    .expect("dev network starts");
    if !net.agent.unisolated_runtimes().is_empty() {
        assert!(
            std::env::var("GPUNET_REQUIRE_SANDBOX").as_deref() != Ok("1"),
            "GPUNET_REQUIRE_SANDBOX=1 but the dev network's process runtime has no sandbox"
        );
        println!(
            "skipped: no process sandbox on this machine; set GPUNET_REQUIRE_SANDBOX=1 to make this fail"
        );
        net.stop().await;
        return;
    }
    let reader = NodeClient::new(&net.api);
    common::wait_for_provider(&reader, Duration::from_secs(30)).await;

    let secrets: Vec<String> = [
        "keys/provider.json",
        "keys/tenant.json",
        "agent/encryption.key",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(home.path().join(f)).expect("a key file"))
    .collect();
    let api_port: u16 = net
        .api
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the api has a port");
    let marker = format!("95.{}", std::process::id());

    let spec = job(home.path(), api_port, &marker);
    let client = NodeClient::new(&net.api).with_signer(net.tenant.clone());
    let followed = tokio::time::timeout(
        Duration::from_secs(90),
        jobs::submit_and_follow(&client, &net.tenant, &spec, true, &Progress::new(true)),
    )
    .await
    .expect("the job finishes in time")
    .expect("the job runs");
    let lease = followed.lease.expect("the job got a lease");
    assert_eq!(
        lease.end_reason,
        Some(LeaseEndReason::Completed),
        "{lease:?}"
    );

    let mut kept = String::new();
    let (_, files) = jobs::fetch_outputs(&net.tenant, &lease, None)
        .await
        .expect("outputs");
    for (_, bytes) in &files {
        kept.push_str(&String::from_utf8_lossy(bytes));
    }
    jobs::read_logs(&net.tenant, &lease, false, |text| kept.push_str(text))
        .await
        .expect("logs");
    assert!(kept.contains("done"), "the job ran to its end: {kept}");
    // It looked, and the provider's home was not there to see.
    assert!(
        kept.contains("No such file or directory"),
        "the job saw the provider's home: {kept}"
    );
    for secret in &secrets {
        // Any distinctive part of a key file: the whole of it, or its secret's hex.
        let needle = secret
            .split('"')
            .rfind(|part| part.len() >= 32)
            .unwrap_or(secret);
        assert!(!kept.contains(needle), "a secret got out: {kept}");
    }
    for forbidden in ["took ", "linked", "reached-node-api"] {
        assert!(!kept.contains(forbidden), "{forbidden:?} in {kept}");
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with_arg(&marker).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        processes_with_arg(&marker).is_empty(),
        "a process outlived its lease"
    );

    // The provider carries on: the next job runs to completion.
    let hello = JobSpec::parse_yaml(include_str!("../../../examples/jobs/hello.yaml"))
        .expect("example parses");
    let next = tokio::time::timeout(
        Duration::from_secs(60),
        jobs::submit_and_follow(&client, &net.tenant, &hello, true, &Progress::new(true)),
    )
    .await
    .expect("the next job finishes in time")
    .expect("the next job runs");
    assert_eq!(
        next.lease.and_then(|l| l.end_reason),
        Some(LeaseEndReason::Completed)
    );
    net.stop().await;
}
