//! Finding the network a command talks to. `gpunet dev` records where it runs in a per-user
//! registry — one small JSON file per running dev network, in `$XDG_RUNTIME_DIR/gpunet/dev/`
//! (or `~/.gpunet/running/` where there is no runtime directory), removed when it stops — and
//! every other command looks there when it is not told where to go.
//!
//! The order, first match wins: `--api URL` (`GPUNET_API`); `--home DIR` (`GPUNET_HOME`), the
//! home of a running `gpunet dev`, whose `api.json` says where its API is; the registry, when
//! exactly one dev network runs. Several running is refused with the `--home` of each, never
//! guessed; none running says how to start one. An entry whose process is gone (killed without
//! a chance to clean up) is ignored and removed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::Conn;
use gpunet_devnet::{self as devnet, ApiFile};

/// One running dev network, as recorded in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The `gpunet dev` process.
    pub pid: u32,
    /// Its data directory, absolute.
    pub home: PathBuf,
    /// The API of validator 0 (the one the agent uses).
    pub api: String,
    /// The funded tenant key.
    pub tenant_key: PathBuf,
}

/// Where the registry lives: `$XDG_RUNTIME_DIR/gpunet/dev` (per user, emptied at logout), else
/// `~/.gpunet/running`.
pub fn registry_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir.join("gpunet").join("dev");
    }
    let base = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    base.join(".gpunet").join("running")
}

/// Whether process `pid` is alive: it exists and is not a zombie waiting to be reaped. Where
/// that cannot be told (not Linux), it is taken as alive.
fn alive(pid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state …"; comm may itself hold spaces and parentheses.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// This process's entry in the registry; dropping it removes the entry, so an early return or
/// a panic leaves no stale one (a SIGKILL does: readers ignore entries of dead processes).
pub struct Registration {
    path: PathBuf,
}

impl Registration {
    /// Records `entry` (whose `pid` must be this process's).
    pub fn record(entry: &Entry) -> Result<Registration> {
        let dir = registry_dir();
        gpunet_files::create_private_dir_all(&dir)
            .with_context(|| format!("creating the registry of dev networks {}", dir.display()))?;
        let path = dir.join(format!("{}.json", entry.pid));
        gpunet_files::write_private(&path, &serde_json::to_vec_pretty(entry)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Registration { path })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The dev networks running now, in the order they were started (by pid, which is close
/// enough); entries of dead processes are removed on the way.
pub fn running() -> Vec<Entry> {
    let dir = registry_dir();
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<Entry> = read
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let entry: Entry = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            if alive(entry.pid) {
                Some(entry)
            } else {
                let _ = std::fs::remove_file(&p);
                None
            }
        })
        .collect();
    found.sort_by_key(|e| e.pid);
    found
}

/// Where a command goes: the node API and, when the network provides one, its funded tenant
/// key (used when no `--key` is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub api: String,
    pub tenant_key: Option<PathBuf>,
}

/// The running dev network whose home is `home`, from its `api.json`.
fn from_home(home: &Path) -> Result<Target> {
    let path = home.join("api.json");
    let text = std::fs::read_to_string(&path).map_err(|_| {
        anyhow::anyhow!(
            "no gpunet dev is running with home {} (there is no {}): start it with \
             `gpunet dev --home {}`, or pass --api URL",
            home.display(),
            path.display(),
            home.display()
        )
    })?;
    let file: ApiFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a gpunet dev api.json", path.display()))?;
    if !alive(file.pid) {
        bail!(
            "the gpunet dev that wrote {} (pid {}) is no longer running: start it again with \
             `gpunet dev --home {}`",
            path.display(),
            file.pid,
            home.display()
        );
    }
    // The key under the home as named here: api.json's path may be relative to wherever
    // `gpunet dev` was started.
    Ok(Target {
        api: file.api,
        tenant_key: Some(devnet::tenant_key_path(home)),
    })
}

/// How a command names one entry, for the lists and hints.
fn how_to_name(e: &Entry) -> String {
    format!(
        "  {}  (pid {}): --home {}   or   export GPUNET_HOME={}",
        e.api,
        e.pid,
        e.home.display(),
        e.home.display()
    )
}

/// Chooses from the running dev networks: exactly one, or an error that lists them or says how
/// to start one.
pub fn choose(running: &[Entry]) -> Result<Target> {
    match running {
        [one] => Ok(Target {
            api: one.api.clone(),
            tenant_key: Some(one.tenant_key.clone()),
        }),
        [] => bail!(
            "no gpunet dev is running for this user (none recorded in {}): start one in another \
             terminal with `gpunet dev`, or point at a node with --api URL (GPUNET_API)",
            registry_dir().display()
        ),
        several => {
            let list: Vec<String> = several.iter().map(how_to_name).collect();
            bail!(
                "{} gpunet dev networks are running; say which with --home DIR (or GPUNET_HOME), \
                 or --api URL:\n{}",
                several.len(),
                list.join("\n")
            )
        }
    }
}

/// The network `conn` names, or the one running dev network.
pub fn target(conn: &Conn) -> Result<Target> {
    if let Some(api) = &conn.api {
        // A key to go with it, when no --key is given: the named home's, else that of the dev
        // network serving this API, else the default home's (a dev started by an older gpunet).
        let tenant_key = match &conn.home {
            Some(home) => Some(devnet::tenant_key_path(home)),
            None => running()
                .into_iter()
                .find(|e| e.api.trim_end_matches('/') == api.trim_end_matches('/'))
                .map(|e| e.tenant_key)
                .or_else(|| Some(devnet::tenant_key_path(&devnet::default_home()))),
        };
        return Ok(Target {
            api: api.clone(),
            tenant_key,
        });
    }
    if let Some(home) = &conn.home {
        return from_home(home);
    }
    choose(&running())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: u32, home: &str) -> Entry {
        Entry {
            pid,
            home: PathBuf::from(home),
            api: format!("http://127.0.0.1:{}", 8000 + pid),
            tenant_key: PathBuf::from(home).join("keys/tenant.json"),
        }
    }

    #[test]
    fn one_running_network_is_chosen_and_several_are_listed_not_guessed() {
        let one = choose(&[entry(1, "/a")]).expect("one is chosen");
        assert_eq!(one.api, "http://127.0.0.1:8001");
        assert_eq!(
            one.tenant_key.as_deref(),
            Some(Path::new("/a/keys/tenant.json"))
        );
        let err = choose(&[entry(1, "/a"), entry(2, "/b")])
            .expect_err("two are refused")
            .to_string();
        assert!(err.contains("2 gpunet dev networks are running"), "{err}");
        assert!(err.contains("export GPUNET_HOME=/a"), "{err}");
        assert!(err.contains("--home /b"), "{err}");
        let none = choose(&[]).expect_err("none is refused").to_string();
        assert!(none.contains("start one"), "{none}");
        assert!(none.contains("gpunet dev"), "{none}");
    }

    #[test]
    fn this_process_is_alive_and_an_impossible_pid_is_not() {
        assert!(alive(std::process::id()));
        if cfg!(target_os = "linux") {
            // Above the kernel's pid_max (at most 2^22).
            assert!(!alive(u32::MAX - 1));
        }
    }
}
