//! `gpunet dev --home DIR --listen ADDR` is found by every other command from any directory,
//! without `--api` or `GPUNET_HOME`: it records itself in the user's registry of running dev
//! networks. Two running at once are listed with the line that names each, not guessed; either
//! is reached with `--home` or `GPUNET_HOME`; once both stop, the registry is empty and the CLI
//! says how to start one. Its banner prints the `export` lines.
#![cfg(target_os = "linux")]

mod binary;

use std::path::Path;
use std::time::Duration;

use binary::{User, run, signal};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

const PATIENCE: Duration = Duration::from_secs(120);

/// Starts `gpunet dev --home home` on a free port and waits for its banner; returns the child
/// and the banner's lines.
async fn start_dev(user: &User, home: &Path, cwd: &Path) -> (Child, Vec<String>) {
    let home = home.display().to_string();
    let mut child = user
        .gpunet(
            &[
                "dev",
                "--home",
                &home,
                "--listen",
                "127.0.0.1:0",
                "--block-ms",
                "100",
            ],
            cwd,
        )
        .spawn()
        .expect("gpunet dev starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = stdout.next_line().await.expect("stdout reads") {
            let last = line.starts_with("Stop with Ctrl-C");
            banner.push(line);
            if last {
                return;
            }
        }
        panic!("gpunet dev ended before its banner: {banner:?}");
    })
    .await
    .expect("gpunet dev prints its banner");
    // Keep reading so the dev network never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    (child, banner)
}

async fn stop(mut child: Child) {
    signal(&child, "-INT");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("gpunet dev stops on Ctrl-C")
        .expect("waits");
    assert!(status.success(), "gpunet dev exits 0 on Ctrl-C: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_networks_are_found_from_anywhere_and_several_are_listed_not_guessed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let user = User::new(dir.path());
    let elsewhere = dir.path().join("somewhere-else");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    // Relative homes, started from a directory of their own: what a user types.
    let start_dir = dir.path().join("projects");
    std::fs::create_dir_all(&start_dir).expect("dir");
    let a = start_dir.join("net-a");
    let b = start_dir.join("net-b");

    // None running: the CLI says how to start one.
    let none = run(user.gpunet(&["wallet", "balance"], &elsewhere), PATIENCE).await;
    assert_eq!(none.code, Some(1), "{none:?}");
    assert!(none.stderr.contains("no gpunet dev is running"), "{none:?}");
    assert!(none.stderr.contains("`gpunet dev`"), "{none:?}");

    let (dev_a, banner) = start_dev(&user, Path::new("net-a"), &start_dir).await;
    let a = std::fs::canonicalize(&a).expect("home a exists");
    let banner = banner.join("\n");
    assert!(
        banner.contains(&format!("export GPUNET_HOME={}", a.display())),
        "{banner}"
    );
    assert!(
        banner.contains("export GPUNET_API=http://127.0.0.1:"),
        "{banner}"
    );

    // One running: found from another directory, with its funded tenant key.
    let found = run(
        user.gpunet(&["wallet", "balance", "--json"], &elsewhere),
        PATIENCE,
    )
    .await;
    assert_eq!(found.code, Some(0), "{found:?}");
    let balance: serde_json::Value = serde_json::from_str(&found.stdout).expect("JSON");
    assert!(balance["balances"]["usd"].is_string(), "{balance}");
    let list = run(user.gpunet(&["job", "list"], &elsewhere), PATIENCE).await;
    assert_eq!(list.code, Some(0), "{list:?}");

    // Two running: refused, each listed with how to name it.
    let (dev_b, _) = start_dev(&user, Path::new("net-b"), &start_dir).await;
    let b = std::fs::canonicalize(&b).expect("home b exists");
    let several = run(user.gpunet(&["wallet", "balance"], &elsewhere), PATIENCE).await;
    assert_eq!(several.code, Some(1), "{several:?}");
    assert!(
        several.stderr.contains("2 gpunet dev networks are running"),
        "{several:?}"
    );
    for home in [&a, &b] {
        assert!(
            several
                .stderr
                .contains(&format!("export GPUNET_HOME={}", home.display())),
            "{several:?}"
        );
    }
    // Named by --home, or by GPUNET_HOME.
    let b_arg = b.display().to_string();
    let by_flag = run(
        user.gpunet(&["wallet", "balance", "--home", &b_arg], &elsewhere),
        PATIENCE,
    )
    .await;
    assert_eq!(by_flag.code, Some(0), "{by_flag:?}");
    let mut by_env = user.gpunet(&["job", "list"], &elsewhere);
    by_env.env("GPUNET_HOME", &a);
    let by_env = run(by_env, PATIENCE).await;
    assert_eq!(by_env.code, Some(0), "{by_env:?}");

    // Stopped: each leaves the registry, and a stopped home is named as stopped.
    stop(dev_b).await;
    let gone = run(
        user.gpunet(&["wallet", "balance", "--home", &b_arg], &elsewhere),
        PATIENCE,
    )
    .await;
    assert_eq!(gone.code, Some(1), "{gone:?}");
    assert!(
        gone.stderr.contains("no gpunet dev is running with home"),
        "{gone:?}"
    );
    let one_left = run(user.gpunet(&["wallet", "balance"], &elsewhere), PATIENCE).await;
    assert_eq!(one_left.code, Some(0), "{one_left:?}");
    stop(dev_a).await;
    let registry = user.runtime_dir.join("gpunet").join("dev");
    let left: Vec<_> = std::fs::read_dir(&registry)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "entries left behind: {left:?}");

    // A stale entry (a dev network killed without cleaning up) is ignored.
    std::fs::create_dir_all(&registry).expect("registry");
    std::fs::write(
        registry.join("4194000.json"),
        format!(
            r#"{{"pid": 4194000, "home": "{}", "api": "http://127.0.0.1:9", "tenant_key": "{}/keys/tenant.json"}}"#,
            a.display(),
            a.display()
        ),
    )
    .expect("stale entry");
    let stale = run(user.gpunet(&["wallet", "balance"], &elsewhere), PATIENCE).await;
    assert_eq!(stale.code, Some(1), "{stale:?}");
    assert!(
        stale.stderr.contains("no gpunet dev is running"),
        "{stale:?}"
    );
}
