//! The built `gpunet` binary run as a user runs it, for the CLI's end-to-end tests: a clean
//! environment (no `GPUNET_*` from the machine running the tests, its own `HOME` and
//! `XDG_RUNTIME_DIR`, so neither a developer's dev network nor another test's is found), the
//! exit code, stdout and stderr.
// Each test file uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A user's world: a home directory and a runtime directory of its own.
pub struct User {
    pub home: PathBuf,
    pub runtime_dir: PathBuf,
}

impl User {
    pub fn new(base: &Path) -> User {
        let home = base.join("user-home");
        let runtime_dir = base.join("runtime");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&runtime_dir).expect("runtime dir");
        User { home, runtime_dir }
    }

    /// `gpunet ARGS` as this user, in `cwd`.
    pub fn gpunet(&self, args: &[&str], cwd: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpunet"));
        cmd.args(args)
            .current_dir(cwd)
            .env_remove("GPUNET_API")
            .env_remove("GPUNET_HOME")
            .env_remove("GPUNET_KEY")
            .env("GPUNET_LOG", "warn")
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// What a finished command did.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end, at most `patience`.
pub async fn run(mut cmd: Command, patience: Duration) -> Ran {
    let out = tokio::time::timeout(patience, cmd.output())
        .await
        .expect("the command finishes in time")
        .expect("the command runs");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Waits for a spawned `child` (stdout and stderr piped) to end, at most `patience`.
pub async fn run_child(child: Child, patience: Duration) -> Ran {
    let out = tokio::time::timeout(patience, child.wait_with_output())
        .await
        .expect("the command finishes in time")
        .expect("the command runs");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends `signal` (`-INT`, `-TERM`) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the child still runs");
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}
