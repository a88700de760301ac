//! Validators run as `gpunet node start` processes on loopback, and reads of their APIs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// One validator's process: its home (with its log, `node.log`) and API. Killed when dropped.
pub struct Node {
    pub home: PathBuf,
    pub api: String,
    pub child: Option<Child>,
}

impl Node {
    pub fn new(home: PathBuf, api: String) -> Node {
        Node {
            home,
            api,
            child: None,
        }
    }

    /// Starts `gpunet node start --home <home> <extra…>`, its log appended to `node.log`.
    pub fn start(&mut self, extra: &[&str]) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("node.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_gpunet"))
            .args(["node", "start", "--home"])
            .arg(&self.home)
            .args(extra)
            .env("GPUNET_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gpunet node start");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What the node has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A successful JSON answer from `url`; `None` for an error status or no answer.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// The height the node at `api` reports.
pub async fn height(http: &reqwest::Client, api: &str) -> Option<u64> {
    get_json(http, &format!("{api}/v1/status"))
        .await?
        .get("height")?
        .as_u64()
}

/// The state root after block `h` at `api`; `None` if the node has no such block.
pub async fn root_at(http: &reqwest::Client, api: &str, h: u64) -> Option<String> {
    Some(
        get_json(http, &format!("{api}/v1/blocks/{h}"))
            .await?
            .get("state_root")?
            .as_str()?
            .to_owned(),
    )
}
