//! State sync: a new validator starts from a peer's recent state instead of replaying every
//! block since genesis.
//!
//! **Serving** (every node): `POST /v1/sync/snapshots` pins the head's state
//! ([`gpunet_store::Snapshot`]) under a random id; `GET /v1/sync/snapshots/{id}/chunk` reads it
//! in chunks with range proofs; `GET /v1/sync/decided/{h}` gives a decided block with its commit
//! certificate (a BFT validator's). A node serves at most [`MAX_SNAPSHOTS`] at once and drops one
//! unread for [`SNAPSHOT_IDLE_SECS`], so a peer cannot pin old pages of the store forever.
//!
//! **Syncing** ([`sync_state`], before a validator with an empty home starts): ask a peer for a
//! snapshot at height S; fetch block S + 1 with its commit certificate and check that more than
//! two thirds of the genesis validators' voting power signed it and that it extends the
//! snapshot (its `prev_hash` is the snapshot's block hash, its `prev_state_root` the snapshot's
//! root) — so the root is the decided one, whoever the peer is; then restore the chunks into a
//! new store, each checked against that root, and only then put the store in place. Consensus
//! then starts at S + 1 and value sync brings the blocks since. A peer that lies, or goes away,
//! costs a retry with the next peer, never a wrong state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gpunet_api::node::{DecidedView, MAX_SNAPSHOTS, SNAPSHOT_IDLE_SECS, SnapshotView};
use gpunet_protocol::merkle::{MAX_CHUNK_ENTITIES, StateChunk, leaf_key};
use gpunet_protocol::{Block, Hash};
use gpunet_store::{Head, Snapshot, Store};
use rand_core::RngCore;

use crate::malachite::{ValidatorEntry, verify_decided_block};

/// The snapshots a node serves, by id.
#[derive(Default)]
pub struct Snapshots {
    open: BTreeMap<String, Served>,
}

struct Served {
    snapshot: Arc<Snapshot>,
    last_read: Instant,
}

/// Why a snapshot is not served.
#[derive(Debug)]
pub(crate) enum SnapshotRefusal {
    /// [`MAX_SNAPSHOTS`] are being read; retry after this many seconds.
    Busy(u64),
    /// No snapshot has this id (never, or dropped unread).
    Unknown,
}

impl Snapshots {
    fn expire(&mut self, now: Instant) {
        let idle = Duration::from_secs(SNAPSHOT_IDLE_SECS);
        self.open
            .retain(|_, s| now.duration_since(s.last_read) < idle);
    }

    /// Pins `snapshot` under a new random id.
    pub(crate) fn open(
        &mut self,
        snapshot: Snapshot,
        now: Instant,
    ) -> Result<(String, Arc<Snapshot>), SnapshotRefusal> {
        self.expire(now);
        if self.open.len() >= MAX_SNAPSHOTS {
            let idle = Duration::from_secs(SNAPSHOT_IDLE_SECS);
            let wait = self
                .open
                .values()
                .map(|s| idle.saturating_sub(now.duration_since(s.last_read)))
                .min()
                .unwrap_or(idle);
            return Err(SnapshotRefusal::Busy(wait.as_secs().max(1)));
        }
        let mut raw = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut raw);
        let id = hex::encode(raw);
        let snapshot = Arc::new(snapshot);
        self.open.insert(
            id.clone(),
            Served {
                snapshot: Arc::clone(&snapshot),
                last_read: now,
            },
        );
        Ok((id, snapshot))
    }

    /// The snapshot under `id`, marked read now.
    pub(crate) fn get(&mut self, id: &str, now: Instant) -> Result<Arc<Snapshot>, SnapshotRefusal> {
        self.expire(now);
        let served = self.open.get_mut(id).ok_or(SnapshotRefusal::Unknown)?;
        served.last_read = now;
        Ok(Arc::clone(&served.snapshot))
    }
}

/// What a syncing node needs to know about its network.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    pub chain_id: String,
    /// The genesis as the node records it in its store (JSON of the ledger genesis).
    pub genesis_bytes: Vec<u8>,
    /// The genesis validator set: whose signatures make a block decided.
    pub validators: Vec<ValidatorEntry>,
    /// The peers' API URLs, tried in order.
    pub peers: Vec<String>,
}

/// Why a state sync failed.
#[derive(Debug, thiserror::Error)]
pub enum StateSyncError {
    #[error("{path} already holds a chain store; state sync only fills a new home")]
    NotEmpty { path: PathBuf },
    #[error("no peer could give a state that checks out: {}", .0.join("; "))]
    NoPeer(Vec<String>),
    #[error("cannot set up the store at {path}: {why}")]
    Store { path: PathBuf, why: String },
}

/// How long a sync waits for the block after its snapshot to be decided.
const NEXT_BLOCK_PATIENCE: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Fills the empty store at `store_path` with a peer's recent state, checked as the module doc
/// says; returns the height it starts from.
pub async fn sync_state(store_path: &Path, target: &SyncTarget) -> Result<Head, StateSyncError> {
    if store_path.exists() {
        return Err(StateSyncError::NotEmpty {
            path: store_path.to_path_buf(),
        });
    }
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| StateSyncError::NoPeer(vec![e.to_string()]))?;
    let partial = store_path.with_extension("syncing");
    let mut failures = Vec::new();
    for peer in &target.peers {
        let _ = std::fs::remove_file(&partial);
        match sync_from(&http, peer, &partial, target).await {
            Ok(head) => {
                std::fs::rename(&partial, store_path).map_err(|e| StateSyncError::Store {
                    path: store_path.to_path_buf(),
                    why: e.to_string(),
                })?;
                return Ok(head);
            }
            Err(why) => {
                tracing::warn!(%peer, %why, "state sync from this peer failed; trying the next");
                failures.push(format!("{peer}: {why}"));
            }
        }
    }
    let _ = std::fs::remove_file(&partial);
    Err(StateSyncError::NoPeer(failures))
}

async fn sync_from(
    http: &reqwest::Client,
    peer: &str,
    partial: &Path,
    target: &SyncTarget,
) -> Result<Head, String> {
    let peer = peer.trim_end_matches('/');
    let snap: SnapshotView = json(
        http.post(format!("{peer}/v1/sync/snapshots"))
            .send()
            .await
            .map_err(|e| format!("asking for a snapshot: {e}"))?,
    )
    .await?;
    tracing::info!(%peer, height = snap.height, "state sync: snapshot pinned");

    // The root is trusted only once the validators' certificate on the next block vouches it.
    let next = snap
        .height
        .checked_add(1)
        .ok_or_else(|| format!("the peer offers a snapshot at height {}", snap.height))?;
    let deadline = Instant::now() + NEXT_BLOCK_PATIENCE;
    let decided: DecidedView = loop {
        let r = http
            .get(format!("{peer}/v1/sync/decided/{next}"))
            .send()
            .await
            .map_err(|e| format!("asking for block {next}: {e}"))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        break json(r).await?;
    };
    let block_bytes = hex::decode(&decided.block_hex).map_err(|e| format!("block hex: {e}"))?;
    let block: Block = borsh::from_slice(&block_bytes)
        .map_err(|e| format!("block {next} does not decode: {e}"))?;
    let cert =
        hex::decode(&decided.certificate_hex).map_err(|e| format!("certificate hex: {e}"))?;
    if block.header.height != next || block.header.chain_id != target.chain_id {
        return Err(format!(
            "the peer sent block {} of chain {:?} for block {next} of {:?}",
            block.header.height, block.header.chain_id, target.chain_id
        ));
    }
    verify_decided_block(&target.chain_id, &target.validators, &block, &cert).await?;
    if block.header.prev_hash != snap.block_hash || block.header.prev_state_root != snap.state_root
    {
        return Err(format!(
            "the snapshot (block {}, root {}) is not what decided block {next} extends \
             (block {}, root {})",
            snap.block_hash, snap.state_root, block.header.prev_hash, block.header.prev_state_root
        ));
    }

    let store = Store::open(partial).map_err(|e| e.to_string())?;
    let head = Head {
        height: snap.height,
        block_hash: snap.block_hash.0,
        state_root: snap.state_root.0,
    };
    let mut restore = store
        .begin_restore(&target.chain_id, &target.genesis_bytes, head)
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        let mut url = format!(
            "{peer}/v1/sync/snapshots/{}/chunk?limit={MAX_CHUNK_ENTITIES}",
            snap.id
        );
        if let Some(after) = restore.cursor() {
            url.push_str(&format!("&after={}", hex::encode(after)));
        }
        let r = http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("reading a chunk: {e}"))?;
        if !r.status().is_success() {
            return Err(error_text(r).await);
        }
        let bytes = body(r, MAX_CHUNK_BYTES).await?;
        let chunk: StateChunk =
            borsh::from_slice(&bytes).map_err(|e| format!("a chunk does not decode: {e}"))?;
        if let Some((k, _)) = chunk.entities.first()
            && restore.cursor().is_some_and(|c| leaf_key(k).0 <= c)
        {
            return Err("the peer sent a chunk that does not follow the last".to_owned());
        }
        restore.add_chunk(&chunk).map_err(|e| e.to_string())?;
        if chunk.last {
            break;
        }
        if restore.entities() % (16 * MAX_CHUNK_ENTITIES as u64) == 0 {
            tracing::info!(entities = restore.entities(), "state sync: restoring");
        }
    }
    let entities = restore.entities();
    restore.finish().map_err(|e| e.to_string())?;
    tracing::info!(
        %peer,
        height = head.height,
        entities,
        secs = started.elapsed().as_secs_f64(),
        root = %Hash(head.state_root),
        "state sync: state restored and checked against the decided root"
    );
    Ok(head)
}

async fn json<T: serde::de::DeserializeOwned>(r: reqwest::Response) -> Result<T, String> {
    if !r.status().is_success() {
        return Err(error_text(r).await);
    }
    let bytes = body(r, MAX_JSON_BYTES).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("an answer that is not the JSON expected: {e}"))
}

/// The most a chunk's encoding may take: 4,096 entities of 32 KiB each.
const MAX_CHUNK_BYTES: usize = 128 << 20;
/// The most a snapshot or decided-block answer may take: a block of 5,000 transactions at their
/// 16 KiB limit, in hex, with room for its certificate.
const MAX_JSON_BYTES: usize = 256 << 20;

/// `r`'s body, read piece by piece and refused past `limit` bytes: a peer cannot make this node
/// hold more than that.
async fn body(mut r: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(piece) = r
        .chunk()
        .await
        .map_err(|e| format!("reading an answer: {e}"))?
    {
        if out.len() + piece.len() > limit {
            return Err(format!("the peer's answer exceeds {limit} bytes"));
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

async fn error_text(r: reqwest::Response) -> String {
    let status = r.status();
    // An error body is only quoted: a peer that sends more than 64 KiB is not read further.
    let bytes = body(r, 64 << 10).await.unwrap_or_default();
    let body: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
    format!("HTTP {status}: {body}")
}
