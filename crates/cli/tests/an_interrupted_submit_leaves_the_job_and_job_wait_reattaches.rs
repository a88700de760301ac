//! Ctrl-C while `gpunet job submit --wait` follows a running job: the process exits 130 and
//! says the job goes on, with the exact commands to re-attach and to cancel; the job's log was
//! streamed while it waited. `gpunet job wait ID` then follows the job to its end and exits
//! with its code (2: the command exited 3), its last log lines shown.
#![cfg(unix)]

mod binary;
mod common;

use std::time::Duration;

use binary::{User, run, signal};
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
    let net = common::ready_dev_net(dir.path().join("net")).await;
    let key = gpunet_devnet::tenant_key_path(&net.home)
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

/// No provider asks this little: the order stays open.
const TOO_CHEAP: &str = r#"version: 1
name: too-cheap
kind: batch
run:
  command: [sh, -c, "echo never"]
resources:
  cpu: 1
  memory: 256Mi
  disk: 64Mi
pricing: { max_per_hour: "0.000001", deposit: "1.00" }
limits: { max_duration: 1m }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_an_order_is_still_open_leaves_it_open_and_says_how_to_cancel_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let user = User::new(dir.path());
    let net = common::ready_dev_net(dir.path().join("net")).await;
    let reader = NodeClient::new(&net.api);
    let key = gpunet_devnet::tenant_key_path(&net.home)
        .display()
        .to_string();
    let spec = dir.path().join("cheap.yaml");
    std::fs::write(&spec, TOO_CHEAP).expect("spec written");
    let spec = spec.display().to_string();
    let conn = ["--api", net.api.as_str(), "--key", key.as_str()];

    let mut args = vec!["job", "submit", spec.as_str(), "--wait", "--submit-anyway"];
    args.extend(conn);
    let mut child = user
        .gpunet(&args, dir.path())
        .spawn()
        .expect("gpunet job submit starts");
    // Interrupt once gpunet says the order is open (and so past creating it).
    let order = gpunet_protocol::OrderId(1);
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut stderr = String::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("stderr reads") {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("order 1 open") {
                return;
            }
        }
        panic!("stderr ended before the order was open: {stderr}");
    })
    .await
    .expect("the order is created");
    signal(&child, "-INT");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("submit ends after Ctrl-C")
        .expect("waits");
    while let Ok(Some(line)) = lines.next_line().await {
        stderr.push_str(&line);
        stderr.push('\n');
    }
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("gpunet job cancel 1"), "{stderr}");
    assert_eq!(
        reader.order(order).await.expect("order").state,
        gpunet_api::node::OrderState::Open,
        "Ctrl-C leaves the order as it is"
    );

    let mut args = vec!["job", "cancel", "1"];
    args.extend(conn);
    let cancelled = run(user.gpunet(&args, dir.path()), PATIENCE).await;
    assert_eq!(cancelled.code, Some(0), "{cancelled:?}");
    assert_eq!(
        reader.order(order).await.expect("order").state,
        gpunet_api::node::OrderState::Cancelled
    );
    net.stop().await;
}
