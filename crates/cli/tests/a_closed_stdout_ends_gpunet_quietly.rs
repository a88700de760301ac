//! `gpunet job list | head -1`: when whatever reads gpunet's output stops reading, gpunet ends
//! quietly — no panic, no message — with 141, the status a shell reports for a program that a
//! broken pipe ended (128 + SIGPIPE).
#![cfg(unix)]

mod binary;
mod common;

use std::time::Duration;

use binary::User;
use tokio::io::AsyncReadExt;

const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `cmd` with its stdout closed from the start; returns its exit code and stderr.
async fn with_stdout_closed(mut cmd: tokio::process::Command) -> (Option<i32>, String) {
    let mut child = cmd.spawn().expect("gpunet starts");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("stderr reads");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("gpunet ends")
        .expect("waits");
    (status.code(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_ends_gpunet_without_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let user = User::new(dir.path());
    let net = common::ready_dev_net(dir.path().join("net")).await;
    let key = gpunet_devnet::tenant_key_path(&net.home)
        .display()
        .to_string();
    for args in [
        &["job", "list"][..],
        &["market", "providers", "--json"][..],
        &["wallet", "balance"][..],
    ] {
        let mut all = args.to_vec();
        all.extend(["--api", net.api.as_str(), "--key", key.as_str()]);
        let (code, stderr) = with_stdout_closed(user.gpunet(&all, dir.path())).await;
        assert_eq!(code, Some(141), "gpunet {args:?}: {stderr}");
        assert!(stderr.is_empty(), "gpunet {args:?} is quiet: {stderr}");
    }
    net.stop().await;
}
