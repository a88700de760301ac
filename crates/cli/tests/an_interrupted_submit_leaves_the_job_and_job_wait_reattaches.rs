//! Ctrl-C while `gpunet job submit --wait` follows a running job: the process exits 130 and
//! says the job goes on, with the exact commands to re-attach and to cancel; the job's log was
//! streamed while it waited. `gpunet job wait ID` then follows the job to its end and exits
//! with its code (2: the command exited 3), its last log lines shown.
#![cfg(unix)]

mod binary;
mod common;

use std::time::Duration;

use binary::{User, run, signal};
use gpunet::devnet::{DevNet, DevOptions};
use gpunet_client::NodeClient;
use tokio::io::{AsyncBufReadExt, BufReader};

const PATIENCE: Duration = Duration::from_secs(120);

const SPEC: &str = r#"version: 1
name: slow-then-fails
kind: batch
run:
  command: [sh, -c, "echo started; sleep 4; echo finishing; exit 3"]
resources:
  cpu: 1
  memory: 256Mi
  disk: 64Mi
pricing: { max_per_hour: "2.50", deposit: "5.00" }
limits: { max_duration: 1m }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_submit_wait_says_how_to_reattach_and_job_wait_gets_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let user = User::new(dir.path());
    let net = DevNet::start(DevOptions {
        home: dir.path().join("net"),
        listen: "127.0.0.1:0".parse().expect("addr"),
        block_ms: 100,
    })
    .await
    .expect("dev network starts");
    common::wait_for_provider(&NodeClient::new(&net.api), Duration::from_secs(30)).await;
    let key = gpunet::devnet::tenant_key_path(&net.home)
        .display()
        .to_string();
    let spec = dir.path().join("slow.yaml");
    std::fs::write(&spec, SPEC).expect("spec written");
    let spec = spec.display().to_string();
    let conn = ["--api", net.api.as_str(), "--key", key.as_str()];

    let mut args = vec!["job", "submit", spec.as_str(), "--wait"];
    args.extend(conn);
    let mut child = user
        .gpunet(&args, dir.path())
        .spawn()
        .expect("gpunet job submit starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The job's own first line, streamed while submit waits: the job is running.
    let mut streamed = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = stdout.next_line().await.expect("stdout reads") {
            streamed.push(line.clone());
            if line == "started" {
                return;
            }
        }
        panic!("stdout ended before the job's log arrived: {streamed:?}");
    })
    .await
    .expect("the job's log is streamed while submit waits");
    signal(&child, "-INT");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("submit ends after Ctrl-C")
        .expect("waits");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt as _;
        e.read_to_string(&mut stderr).await.expect("stderr reads");
    }
    assert_eq!(status.code(), Some(130), "{stderr}");
    let id = stderr
        .lines()
        .find_map(|l| l.split("order ").nth(1)?.split(' ').next())
        .expect("the order id is printed")
        .to_owned();
    assert!(
        stderr.contains("is still running"),
        "the job goes on: {stderr}"
    );
    assert!(
        stderr.contains(&format!("gpunet job wait {id} --api {}", net.api)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("gpunet job cancel {id}")),
        "{stderr}"
    );

    let mut args = vec!["job", "wait", id.as_str()];
    args.extend(conn);
    let waited = run(user.gpunet(&args, dir.path()), PATIENCE).await;
    assert_eq!(waited.code, Some(2), "{waited:?}");
    assert!(
        waited.stdout.contains("✗ failed: exit code 3"),
        "{waited:?}"
    );
    assert!(waited.stdout.contains("| finishing"), "{waited:?}");

    net.stop().await;
}
