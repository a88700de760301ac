//! A job that names its own bucket (the spec's `storage:`, a real S3 server: moto's, on
//! loopback), on a network of real processes — one validator and two `gpunet provider start`
//! with no operator blob store at all (no `--blob-store`), both allowing private endpoints
//! (the bucket is on 127.0.0.1). The first provider is killed mid-job; the job resumes on the
//! other one from the checkpoint in the tenant's bucket; once done, the second provider is
//! killed too, and `gpunet job output` still delivers the outputs — from the bucket. Every
//! object in the bucket is sealed (the job's plaintext marker is in none of them).
//!
//! The job's input file goes through the bucket too: `gpunet job submit` seals it to the job's
//! key and uploads it (the manifest names the blob), and both attempts' providers fetch it
//! from there and run the command that reads it; nothing is pushed to them.
//!
//! And the credentials (given through environment variables, read by `gpunet job submit`)
//! appear nowhere they must not: not in `job submit`'s output, `job status --json`, the job's
//! log, the providers' output, their lease records or any other file of theirs, nor in the
//! bucket.
//!
//! Without moto installed the test says it is skipped — and fails where `GPUNET_REQUIRE_S3=1`.

mod binary;

use std::path::Path;
use std::time::Duration;

use binary::User;
use gpunet_api::node::LeaseState;
use gpunet_client::{KeyFile, NodeClient};
use gpunet_protocol::{LeaseEndReason, OrderId};

const BUCKET: &str = "tenant-bucket";
const KEY_ID: &str = "AKIATENANTKEYID00042";
const SECRET: &str = "tenant-s3-secret-Zq9vX3-never-shown";

/// Shows its input file (`data.txt`), counts 40 ticks of 0.5 s, keeping its count (and a note
/// carrying `marker`) as a checkpoint, then writes `marker` to its outputs. Its bucket is
/// moto's, its credentials named by environment variable.
fn job(endpoint: &str, marker: &str) -> String {
    format!(
        r#"version: 1
name: own-bucket
run:
  command: ["sh", "-c", "echo \"input $(cat \"$GPUNET_INPUTS/data.txt\")\"; d=\"$GPUNET_CHECKPOINTS\"; echo \"note $1\" > \"$d/note\"; i=$(cat \"$d/tick\" 2>/dev/null || echo 0); echo \"resumed at $i\"; while [ $i -lt 40 ]; do i=$((i+1)); echo tick $i; echo $i > \"$d/tick.new\"; mv \"$d/tick.new\" \"$d/tick\"; sleep 0.5; done; echo \"result $1\" > \"$GPUNET_OUTPUTS/result.txt\"", "sh", "{marker}"]
resources: {{ cpu: 0.5, memory: 64Mi, disk: 64Mi }}
pricing: {{ max_per_hour: "1.00", deposit: "1.00" }}
limits: {{ max_duration: 10m }}
recovery: {{ max_attempts: 3, backoff: 1s }}
outputs: true
inputs: [data.txt]
storage:
  s3: {{ endpoint: "{endpoint}", bucket: {BUCKET}, region: us-east-1, prefix: gpunet }}
  credentials: {{ access_key_id_env: TENANT_S3_KEY_ID, secret_access_key_env: TENANT_S3_SECRET }}
"#
    )
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_its_own_bucket_resumes_from_it_on_another_provider_and_delivers_from_it() {
    let Some(moto) = gpunet_testkit::moto::start_moto(
        "a_job_with_its_own_bucket_resumes_from_it_on_another_provider_and_delivers_from_it",
    ) else {
        return;
    };
    moto.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let user = User::new(base);
    let network = binary::Network::start(&user, base, 2, 200, &[]).await;
    let client = NodeClient::new(&network.api);
    // No operator store: the job's own bucket is the only place checkpoints can go.
    let allow = ["--allow-private-blob-endpoints"];
    let mut cheap = network.provider_with(&user, base, 0, "0.10", &allow);
    let mut dear = network.provider_with(&user, base, 1, "0.20", &allow);
    network.until_providers(2).await;
    let cheap_addr = KeyFile::load(&network.key("provider-0"))
        .expect("provider key")
        .address();
    let chain = client.status().await.expect("status").chain_id;

    let marker = format!("plaintext-marker-{}", std::process::id());
    std::fs::write(base.join("job.yaml"), job(&moto.endpoint(), &marker)).expect("spec");
    let input_marker = format!("input-marker-{}", std::process::id());
    std::fs::write(base.join("data.txt"), &input_marker).expect("the input");
    let mut submit = network.tenant(&user, &["job", "submit", "job.yaml", "--wait"], base);
    submit
        .env("TENANT_S3_KEY_ID", KEY_ID)
        .env("TENANT_S3_SECRET", SECRET);
    let submit = submit.spawn().expect("submit starts");

    let job = OrderId(1);
    let running = binary::until_order(&client, job, Duration::from_secs(90), "the job runs", |o| {
        o.lease
            .as_ref()
            .is_some_and(|l| l.state == LeaseState::Running)
    })
    .await;
    let first = running.lease.expect("leased");
    assert_eq!(first.provider, cheap_addr, "the cheaper provider won");
    // The first attempt's checkpoint lands in the tenant's bucket (the agent looks every 10 s).
    let first_ref = format!("gpunet/refs/jobs/{chain}/1/checkpoint/{}/latest", first.id);
    let start = std::time::Instant::now();
    while !moto.keys(BUCKET).contains(&first_ref) {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no checkpoint in the bucket: {:?}",
            moto.keys(BUCKET)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cheap.start_kill().expect("SIGKILL the first agent");
    let cheap_out = binary::run_child(cheap, Duration::from_secs(10)).await;

    let ran = binary::run_child(submit, Duration::from_secs(180)).await;
    assert_eq!(ran.code, Some(0), "the job completed: {ran:?}");
    let log = binary::job_log(&network, &user, 1, base).await;
    let resumed_at = binary::resumed_at(&log);
    assert!(resumed_at >= 5, "resumed at tick {resumed_at}: {log}");
    assert!(log.contains("go to its own bucket tenant-bucket"), "{log}");
    // The second attempt read the input, fetched from the bucket; so did the first (its log
    // is on the killed provider's disk).
    assert!(log.contains(&format!("input {input_marker}\n")), "{log}");
    assert!(
        log.contains("the job's inputs (") && log.contains("came, sealed, from its own bucket"),
        "{log}"
    );
    let first_log = std::fs::read_to_string(
        base.join("provider-0")
            .join("leases")
            .join(first.id.to_string())
            .join("logs/combined.log"),
    )
    .unwrap_or_default();
    assert!(
        first_log.contains(&format!("input {input_marker}\n")),
        "the first attempt read its input: {first_log}"
    );
    assert!(
        ran.stderr.contains("uploaded to its bucket tenant-bucket"),
        "{}",
        ran.stderr
    );
    assert!(
        log.contains("uploaded, sealed, to the job's own bucket"),
        "{log}"
    );
    let done = client.order(job).await.expect("the order");
    assert_eq!(done.attempts.len(), 2, "{done:?}");
    assert_eq!(
        done.attempts[0].end_reason,
        Some(LeaseEndReason::ProviderLost)
    );
    assert_eq!(done.attempts[1].end_reason, Some(LeaseEndReason::Completed));
    let second = done.attempts[1].id;

    // With the second provider gone too, the outputs still come: from the bucket.
    let status = binary::run(
        network.tenant(&user, &["job", "status", "1", "--json"], base),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(status.code, Some(0), "{status:?}");
    dear.start_kill().expect("SIGKILL the second agent");
    let dear_out = binary::run_child(dear, Duration::from_secs(10)).await;
    let out = base.join("out");
    let fetched = binary::run(
        network.tenant(
            &user,
            &["job", "output", "1", "--to", out.to_str().expect("utf-8")],
            base,
        ),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(fetched.code, Some(0), "job output: {fetched:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("result.txt")).expect("the output"),
        format!("result {marker}\n")
    );

    // What is in the bucket: the checkpoints of both attempts' refs layout, the outputs'
    // listing and file, all sealed.
    let keys = moto.keys(BUCKET);
    for want in [
        first_ref.clone(),
        format!("gpunet/refs/jobs/{chain}/1/outputs/{second}/listing"),
    ] {
        assert!(keys.contains(&want), "{want} not in {keys:?}");
    }
    assert!(
        keys.iter().any(|k| k.starts_with(&format!(
            "gpunet/refs/jobs/{chain}/1/outputs/{second}/files/"
        ))),
        "{keys:?}"
    );
    let blobs = keys
        .iter()
        .filter(|k| k.starts_with("gpunet/blobs/"))
        .count();
    assert!(
        blobs >= 4,
        "the inputs, a checkpoint, a listing and a file: {keys:?}"
    );
    // The sealed inputs blob the journaled manifest names is in the bucket.
    let journaled: Vec<String> = files_holding(base, b"\"inputs_blob\"")
        .into_iter()
        .filter(|p| p.ends_with("/1.json"))
        .collect();
    assert_eq!(journaled.len(), 1, "the journaled manifest: {journaled:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&journaled[0]).expect("the manifest")).expect("json");
    let inputs_blob = manifest["inputs_blob"].as_str().expect("inputs_blob");
    assert!(
        keys.contains(&format!("gpunet/blobs/{inputs_blob}")),
        "{inputs_blob} not in {keys:?}"
    );
    for key in &keys {
        let body = moto.get(BUCKET, key);
        for needle in [
            marker.as_bytes(),
            input_marker.as_bytes(),
            SECRET.as_bytes(),
            KEY_ID.as_bytes(),
        ] {
            assert!(
                !body.windows(needle.len()).any(|w| w == needle),
                "{key} holds {:?} in the clear",
                String::from_utf8_lossy(needle)
            );
        }
    }

    // The credentials appear nowhere they must not (an agent's errors go to its log file).
    let agent_log = |i: usize| {
        std::fs::read_to_string(base.join(format!("provider-{i}.log"))).expect("the agent's log")
    };
    let (cheap_errors, dear_errors) = (agent_log(0), agent_log(1));
    for (what, text) in [
        ("job submit's stdout", &ran.stdout),
        ("job submit's stderr", &ran.stderr),
        ("job status --json", &status.stdout),
        ("the job's log", &log),
        ("job output's output", &fetched.stdout),
        ("job output's stderr", &fetched.stderr),
        ("provider 0's output", &cheap_out.stdout),
        ("provider 0's errors", &cheap_errors),
        ("provider 1's output", &dear_out.stdout),
        ("provider 1's errors", &dear_errors),
    ] {
        for secret in [SECRET, KEY_ID] {
            assert!(!text.contains(secret), "{what} shows a credential: {text}");
        }
    }
    for provider in ["provider-0", "provider-1"] {
        for secret in [SECRET, KEY_ID] {
            let holding = files_holding(&base.join(provider), secret.as_bytes());
            assert!(
                holding.is_empty(),
                "{provider}'s files hold a credential: {holding:?}"
            );
        }
    }
    // Both providers did write lease records (so the search above looked at something).
    assert!(
        files_holding(
            &base.join("provider-1").join("leases"),
            b"\"job_store\": true"
        )
        .len()
            == 1,
        "provider 1's lease record marks the job's own store"
    );
    let _ = network;
}
