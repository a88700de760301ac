//! A job that does not succeed is never reported as a success: on the dev network, a command
//! that exits 3, a memory hog, a job past its max duration and one that fills its disk each
//! make `gpunet job submit --wait` exit non-zero with the code of their class (2: the command
//! failed; 3: a limit ended it), name the end reason and the command's exit code in `--json`
//! with the last lines of the log, and `gpunet job wait` on the ended job says the same in
//! words. A job that succeeds exits 0. Its log is JSON under `job logs --json`, and `job output`
//! on a job without outputs fails instead of printing "0 file(s)". `gpunet demo` with a failing
//! spec exits the same way.

mod binary;
mod common;

use std::path::Path;
use std::time::Duration;

use binary::{Ran, User, run};

const PATIENCE: Duration = Duration::from_secs(120);

struct Case {
    name: &'static str,
    command: &'static str,
    memory: &'static str,
    disk: &'static str,
    max_duration: &'static str,
}

fn spec_text(c: &Case) -> String {
    format!(
        r#"version: 1
name: {}
kind: batch
run:
  command: {}
resources:
  cpu: 1
  memory: {}
  disk: {}
pricing: {{ max_per_hour: "2.50", deposit: "5.00" }}
limits: {{ max_duration: {} }}
"#,
        c.name, c.command, c.memory, c.disk, c.max_duration
    )
}

struct Net<'a> {
    user: &'a User,
    dir: &'a Path,
    api: &'a str,
    key: String,
}

impl Net<'_> {
    async fn gpunet(&self, args: &[&str]) -> Ran {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--api", self.api, "--key", &self.key]);
        run(self.user.gpunet(&all, self.dir), PATIENCE).await
    }

    /// Submits `case` with `--wait --json`; returns the exit code and the JSON.
    async fn submit(&self, case: &Case) -> (Option<i32>, serde_json::Value) {
        let path = self.dir.join(format!("{}.yaml", case.name));
        std::fs::write(&path, spec_text(case)).expect("spec written");
        let path = path.display().to_string();
        let ran = self
            .gpunet(&["job", "submit", &path, "--wait", "--json"])
            .await;
        let json = serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {ran:?}", case.name));
        (ran.code, json)
    }
}

fn log_tail(json: &serde_json::Value) -> String {
    json["log_tail"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failing_end_reason_gives_a_nonzero_exit_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let user = User::new(dir.path());
    let net = common::ready_dev_net(dir.path().join("net")).await;
    let cli = Net {
        user: &user,
        dir: dir.path(),
        api: &net.api,
        key: gpunet_devnet::tenant_key_path(&net.home)
            .display()
            .to_string(),
    };

    // The command exits 3: exit status 2, and its exit code and last words are reported.
    let failing = Case {
        name: "exits-three",
        command: r#"[sh, -c, "echo first line; echo about to fail >&2; exit 3"]"#,
        memory: "256Mi",
        disk: "64Mi",
        max_duration: "1m",
    };
    let (code, json) = cli.submit(&failing).await;
    assert_eq!(code, Some(2), "{json}");
    assert_eq!(json["end_reason"], "workload_failed", "{json}");
    assert_eq!(json["exit_code"], 3, "{json}");
    assert_eq!(json["exit_status"], 2, "{json}");
    assert!(log_tail(&json).contains("about to fail"), "{json}");
    let id = json["job"].as_u64().expect("a job id").to_string();
    let text = cli.gpunet(&["job", "wait", &id]).await;
    assert_eq!(text.code, Some(2), "{text:?}");
    assert!(text.stdout.contains("✗ failed: exit code 3"), "{text:?}");
    assert!(text.stdout.contains("| about to fail"), "{text:?}");
    assert!(!text.stdout.contains("✓"), "{text:?}");

    // Its log as JSON, and no outputs to download: both said plainly.
    let logs = cli.gpunet(&["job", "logs", &id, "--json"]).await;
    assert_eq!(logs.code, Some(0), "{logs:?}");
    let logs: serde_json::Value = serde_json::from_str(&logs.stdout).expect("logs are JSON");
    assert!(
        logs["log"]
            .as_str()
            .is_some_and(|l| l.contains("about to fail")),
        "{logs}"
    );
    let to = dir.path().join("out").display().to_string();
    let output = cli.gpunet(&["job", "output", &id, "--to", &to]).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(output.stderr.contains("has no outputs"), "{output:?}");

    // Limits: out of memory, past the max duration, past the disk. Exit status 3 each.
    let limited = [
        (
            Case {
                name: "memory-hog",
                command: r#"[perl, -e, "$x = q(a) x 400_000_000; print qq(done)"]"#,
                memory: "64Mi",
                disk: "64Mi",
                max_duration: "1m",
            },
            &["out_of_memory"][..],
            "resources.memory",
        ),
        (
            Case {
                name: "too-slow",
                command: r#"[sh, -c, "echo sleeping; sleep 60"]"#,
                memory: "256Mi",
                disk: "64Mi",
                max_duration: "2s",
            },
            // The provider stops it, or the ledger ends the lease: both are the time limit.
            &["timed_out", "max_duration_reached"][..],
            "limits.max_duration",
        ),
        (
            Case {
                name: "disk-filler",
                command: "[dd, if=/dev/zero, of=big, bs=1M, count=50]",
                memory: "256Mi",
                disk: "4Mi",
                max_duration: "1m",
            },
            &["disk_exceeded"][..],
            "resources.disk",
        ),
    ];
    for (case, reasons, hint) in limited {
        let (code, json) = cli.submit(&case).await;
        assert_eq!(code, Some(3), "{}: {json}", case.name);
        let reason = json["end_reason"].as_str().unwrap_or_default().to_owned();
        assert!(reasons.contains(&reason.as_str()), "{}: {json}", case.name);
        assert_eq!(json["exit_status"], 3, "{json}");
        assert!(
            json["hint"].as_str().is_some_and(|h| h.contains(hint)),
            "{json}"
        );
        let id = json["job"].as_u64().expect("a job id").to_string();
        let text = cli.gpunet(&["job", "wait", &id]).await;
        assert_eq!(text.code, Some(3), "{text:?}");
        assert!(
            text.stdout.contains(&format!("✗ {reason}: ")),
            "{}: {text:?}",
            case.name
        );
        assert!(text.stdout.contains(hint), "{text:?}");
    }

    // And a job that succeeds exits 0 and says so.
    let fine = Case {
        name: "fine",
        command: r#"[sh, -c, "echo all good"]"#,
        memory: "256Mi",
        disk: "64Mi",
        max_duration: "1m",
    };
    let (code, json) = cli.submit(&fine).await;
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["end_reason"], "completed", "{json}");
    assert_eq!(json["exit_code"], 0, "{json}");
    let id = json["job"].as_u64().expect("a job id").to_string();
    let text = cli.gpunet(&["job", "wait", &id]).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(text.stdout.contains("✓ completed: exit code 0"), "{text:?}");

    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_a_failing_job_exits_nonzero_and_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let user = User::new(dir.path());
    let spec = dir.path().join("fails.yaml");
    std::fs::write(
        &spec,
        spec_text(&Case {
            name: "demo-fails",
            command: r#"[sh, -c, "echo going down; exit 7"]"#,
            memory: "256Mi",
            disk: "64Mi",
            max_duration: "1m",
        }),
    )
    .expect("spec written");
    let spec = spec.display().to_string();
    let json = run(
        user.gpunet(
            &["demo", "--spec", &spec, "--block-ms", "100", "--json"],
            dir.path(),
        ),
        PATIENCE,
    )
    .await;
    assert_eq!(json.code, Some(2), "{json:?}");
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("demo --json is JSON");
    assert_eq!(v["end_reason"], "workload_failed", "{v}");
    assert_eq!(v["exit_code"], 7, "{v}");
    assert!(log_tail(&v).contains("going down"), "{v}");
    let text = run(
        user.gpunet(&["demo", "--spec", &spec, "--block-ms", "100"], dir.path()),
        PATIENCE,
    )
    .await;
    assert_eq!(text.code, Some(2), "{text:?}");
    assert!(text.stdout.contains("✗ failed: exit code 7"), "{text:?}");
    assert!(text.stdout.contains("| going down"), "{text:?}");
}
