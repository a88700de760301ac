//! `gpunet dev --validators 2` is SIGKILLed — no chance to stop its children — and both
//! `gpunet node start` validators it spawned still go away within seconds (Linux's
//! parent-death signal), instead of running on, holding their ports and home directory.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gpunet_client::NodeClient;

const VALIDATORS: u16 = 2;
/// Generous: the machine running tests may be busy compiling.
const PATIENCE: Duration = Duration::from_secs(120);
/// How long validators may take to go once their parent is killed: the SIGTERM arrives at
/// once, and a validator's orderly stop takes well under a second.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// A base port with `n` consecutive free ports after it, in this test's own range.
fn free_port_run(n: u16, avoid: &[u16]) -> u16 {
    gpunet_devnet::free_port_run(47_000..56_000, n, avoid).expect("free ports")
}

/// `/proc/<pid>/stat`'s state and parent pid, or `None` once the process is gone.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …"; comm may itself hold spaces and parentheses.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let parent = rest.next()?.parse().ok()?;
    Some((state, parent))
}

fn is_validator(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.windows(11).any(|w| w == b"node\0start\0"))
        .unwrap_or(false)
}

/// Alive as a validator: not gone, not a zombie waiting for a reaper (a container's init may
/// never reap it), and still running `node start` (not a reused pid).
fn validator_alive(pid: u32) -> bool {
    matches!(state_and_parent(pid), Some((s, _)) if s != 'Z' && s != 'X') && is_validator(pid)
}

/// The `gpunet node start` processes whose parent is `parent`.
fn validator_children(parent: u32) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| matches!(state_and_parent(pid), Some((_, p)) if p == parent))
        .filter(|&pid| is_validator(pid))
        .collect();
    pids.sort_unstable();
    pids
}

fn kill(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// If the test fails early: SIGKILL `gpunet dev` and whichever of its validators still run.
struct Cleanup {
    dev: Option<Child>,
    validators: Vec<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.dev.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for &pid in &self.validators {
            if validator_alive(pid) {
                kill("-KILL", pid);
            }
        }
    }
}

fn logs_hint(home: &Path) -> String {
    format!("see {}/node-*/node.log", home.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_of_a_sigkilled_dev_network_exit_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("dev");
    let api_base = free_port_run(VALIDATORS, &[]);
    let p2p = free_port_run(
        VALIDATORS,
        &(api_base..api_base + VALIDATORS).collect::<Vec<_>>(),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_gpunet"))
        .args(["dev", "--validators", &VALIDATORS.to_string(), "--home"])
        .arg(&home)
        .args(["--listen", &format!("127.0.0.1:{api_base}")])
        .args(["--p2p-port", &p2p.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn gpunet dev");
    let dev_pid = child.id();
    let mut cleanup = Cleanup {
        dev: Some(child),
        validators: Vec::new(),
    };
    let apis: Vec<String> = (0..VALIDATORS)
        .map(|i| format!("http://127.0.0.1:{}", api_base + i))
        .collect();

    // `gpunet dev` serves: it writes api.json once every validator answers and the agent runs.
    let deadline = Instant::now() + PATIENCE;
    while !home.join("api.json").exists() {
        let dev = cleanup.dev.as_mut().expect("still ours");
        assert!(
            matches!(dev.try_wait(), Ok(None)),
            "gpunet dev exited early; {}",
            logs_hint(&home)
        );
        assert!(
            Instant::now() < deadline,
            "gpunet dev never served; {}",
            logs_hint(&home)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for api in &apis {
        assert!(
            NodeClient::new(api).status().await.is_ok(),
            "{api} does not answer; {}",
            logs_hint(&home)
        );
    }
    let validators = validator_children(dev_pid);
    cleanup.validators.clone_from(&validators);
    assert_eq!(
        validators.len(),
        usize::from(VALIDATORS),
        "gpunet dev (pid {dev_pid}) should have one `node start` child per validator"
    );

    // SIGKILL: `gpunet dev` runs no code of its own after this.
    let mut dev = cleanup.dev.take().expect("still ours");
    dev.kill().expect("SIGKILL gpunet dev");
    dev.wait().expect("reap gpunet dev");

    let killed = Instant::now();
    loop {
        let alive: Vec<u32> = validators
            .iter()
            .copied()
            .filter(|&pid| validator_alive(pid))
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < GONE_WITHIN,
            "validators {alive:?} still run {} s after gpunet dev was SIGKILLed",
            GONE_WITHIN.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "both validators gone {} ms after the SIGKILL",
        killed.elapsed().as_millis()
    );
    for api in &apis {
        assert!(
            NodeClient::new(api).status().await.is_err(),
            "{api} still answers after its validator exited"
        );
    }
}
