//! A job's checkpoints, so that a job whose provider is lost resumes on the next one instead of
//! starting over. The workload writes whatever it wants to keep under `$GPUNET_CHECKPOINTS`
//! (`<lease>/work/.gpunet-checkpoints` on the host, [`gpunet_runtime::checkpoints_dir`]: a
//! process job sees it inside its own working directory, `/work/.gpunet-checkpoints`; a
//! container gets it mounted at `/checkpoints`). While the lease runs the agent
//! looks at that directory every [`CHECKPOINT_INTERVAL`] and once more when the workload ends;
//! when its listing changed it packs it (the inputs' tar format, `gpunet_protocol::inputs`),
//! seals it to the job's checkpoint key (purpose `Checkpoint`, bound to the *order*, so any
//! attempt of the job opens it and no other job's does), puts it in the blob store and points
//! the attempt's own ref `jobs/<chain>/<order>/checkpoint/<lease>/latest` (and
//! `.../<lease>/<n>`) at it.
//!
//! When a manifest with a checkpoint key arrives, the agent looks up the job's earlier
//! attempts (from the chain), newest first, takes the first one that left a checkpoint and
//! unpacks it into the checkpoint directory, with the inputs' path rules (no `..`, no links,
//! bounded). Nothing here ever fails a job: an upload or a restore that goes wrong is logged
//! and the job runs on (fresh, for a restore).
//!
//! Each attempt writes only its own ref, because an attempt declared lost may not be dead: a
//! provider cut off from the chain keeps its workload running (and, if it still reaches the
//! blob store, uploading) until it hears that its lease ended. With one shared `latest` that
//! orphan would overwrite the live attempt's checkpoints; with a ref per attempt, the next
//! attempt restores the newest *attempt's* checkpoint, and an orphan's late uploads are read
//! only if no later attempt left one.
//!
//! The sealed plaintext is `lease id (u64 BE) ‖ sequence (u64 BE) ‖ tar archive`, so a restore
//! can say which attempt wrote it; the seal authenticates both.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gpunet_blobs::{BlobError, BlobStore, RefName, RefNameError};
use gpunet_protocol::inputs::{InputKind, InputsError, MAX_INPUTS_BYTES};
use gpunet_protocol::{EncryptionKey, EncryptionSecret, Hash, LeaseId, OrderId, SealContext};

/// How often a running lease's checkpoint directory is looked at.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// Largest packed checkpoint, in bytes: the inputs' limit, because both are packed in memory
/// (64 MiB). A bigger directory is not uploaded (logged).
pub const MAX_CHECKPOINT_BYTES: u64 = MAX_INPUTS_BYTES;
/// The checkpoint directory's name under the lease's working directory.
pub const CHECKPOINT_DIR_NAME: &str = gpunet_runtime::CHECKPOINTS_DIR_NAME;
/// Most entries looked at when listing the checkpoint directory.
const MAX_LISTED_ENTRIES: usize = gpunet_protocol::inputs::MAX_INPUT_ENTRIES;
/// Bytes before the archive in the sealed plaintext: lease id and sequence.
const HEADER_BYTES: usize = 16;

/// The blob store checkpoints go to, and the chain they belong to (order ids are per chain).
#[derive(Clone)]
pub struct CheckpointStore {
    pub store: Arc<dyn BlobStore>,
    pub chain_id: String,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

/// Why a checkpoint was not uploaded or restored.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("could not {action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the checkpoint directory cannot be packed: {reason}")]
    Pack { reason: String },
    #[error("the checkpoint takes {bytes} bytes packed; the limit is {max} bytes")]
    TooLarge { bytes: u64, max: u64 },
    #[error("the checkpoint cannot be opened with this job's key: {source}")]
    Unreadable {
        #[source]
        source: gpunet_protocol::SealError,
    },
    #[error("the checkpoint archive is refused: {source}")]
    Archive {
        #[source]
        source: Box<InputsError>,
    },
    #[error("the job's earlier attempts could not be read from the chain: {why}")]
    Attempts { why: String },
    #[error("the checkpoint is damaged: {why}")]
    Malformed { why: &'static str },
    #[error("bad ref name: {source}")]
    RefName {
        #[source]
        source: Box<RefNameError>,
    },
    #[error("the blob store failed: {source}")]
    Store {
        #[source]
        source: Box<BlobError>,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io {
        action,
        path,
        source,
    }
}

/// The lease's checkpoint directory on this machine.
pub fn checkpoint_dir(lease_root: &Path) -> PathBuf {
    gpunet_runtime::checkpoints_dir(lease_root)
}

/// `jobs/<chain>/<order>/checkpoint/<lease>/<leaf>`: one attempt's checkpoints (`latest`, or
/// the sequence number of one upload).
pub fn checkpoint_ref(
    chain_id: &str,
    order: OrderId,
    lease: LeaseId,
    leaf: &str,
) -> Result<RefName, CheckpointError> {
    RefName::new(&format!(
        "jobs/{chain_id}/{}/checkpoint/{}/{leaf}",
        order.0, lease.0
    ))
    .map_err(|source| CheckpointError::RefName {
        source: Box::new(source),
    })
}

/// A digest of the directory's sorted listing (path, kind, size, modification time), or
/// `None` when it is missing or empty. Cheap: reads no file contents. Blocking.
pub fn listing_digest(dir: &Path) -> Result<Option<Hash>, CheckpointError> {
    use std::os::unix::fs::MetadataExt;
    let mut lines = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((at, prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&at) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => {
                return Ok(None);
            }
            Err(e) => return Err(io("read", &at)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("read", &at))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{prefix}/{name}");
            let meta = std::fs::symlink_metadata(entry.path()).map_err(io("inspect", &at))?;
            if meta.is_dir() {
                stack.push((entry.path(), rel.clone()));
            }
            lines.push(format!(
                "{rel}\0{:o}\0{}\0{}.{}",
                meta.mode(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            ));
            if lines.len() > MAX_LISTED_ENTRIES {
                return Err(CheckpointError::Pack {
                    reason: format!("it holds more than {MAX_LISTED_ENTRIES} entries"),
                });
            }
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    lines.sort();
    Ok(Some(Hash::of(lines.join("\n").as_bytes())))
}

/// Packs the directory (links, devices and sockets refused) within `max_bytes`. Blocking.
pub fn pack(dir: &Path, max_bytes: u64) -> Result<Vec<u8>, CheckpointError> {
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("read", dir))? {
        let entry = entry.map_err(io("read", dir))?;
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(_) => {
                return Err(CheckpointError::Pack {
                    reason: "a name is not UTF-8".into(),
                });
            }
        }
    }
    names.sort();
    let archive =
        gpunet_client::inputs::pack_inputs(dir, &names).map_err(|e| CheckpointError::Pack {
            reason: e.to_string(),
        })?;
    let bytes = archive.len() as u64;
    if bytes > max_bytes {
        return Err(CheckpointError::TooLarge {
            bytes,
            max: max_bytes,
        });
    }
    Ok(archive)
}

/// Seals a packed checkpoint of `lease` (the `seq`th) to the job's key, bound to `order`.
pub fn seal(
    key: &EncryptionKey,
    order: OrderId,
    lease: LeaseId,
    seq: u64,
    archive: &[u8],
) -> Result<Vec<u8>, CheckpointError> {
    let mut plaintext = Vec::with_capacity(HEADER_BYTES + archive.len());
    plaintext.extend_from_slice(&lease.0.to_be_bytes());
    plaintext.extend_from_slice(&seq.to_be_bytes());
    plaintext.extend_from_slice(archive);
    gpunet_client::sealing::seal(key, SealContext::checkpoint(order), &plaintext)
        .map_err(|source| CheckpointError::Unreadable { source })
}

/// A checkpoint opened for restoring: who wrote it, and its entries (already checked).
#[derive(Debug)]
pub struct Opened {
    pub lease: LeaseId,
    pub seq: u64,
    pub entries: Vec<gpunet_protocol::inputs::InputEntry>,
}

/// Opens a sealed checkpoint for `order` with the job's secret and checks its archive.
pub fn open(
    secret: &EncryptionSecret,
    order: OrderId,
    sealed: &[u8],
) -> Result<Opened, CheckpointError> {
    let plaintext = gpunet_protocol::sealed::open(secret, SealContext::checkpoint(order), sealed)
        .map_err(|source| CheckpointError::Unreadable { source })?;
    if plaintext.len() < HEADER_BYTES {
        return Err(CheckpointError::Malformed {
            why: "it is shorter than its header",
        });
    }
    let (header, archive) = plaintext.split_at(HEADER_BYTES);
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let entries =
        gpunet_protocol::inputs::unpack(archive).map_err(|source| CheckpointError::Archive {
            source: Box::new(source),
        })?;
    Ok(Opened {
        lease: LeaseId(word(0)),
        seq: word(8),
        entries,
    })
}

/// Writes checked entries under `target` (replacing what was there). Writable to the
/// workload: the process sandbox gives the lease its own uid only when it starts, after this
/// runs, so the directories are 0777 and files 0666 (0777 if executable). Only the lease (and
/// the agent) can reach them: the lease directory above is the agent's, owner-only.
pub fn write_entries(
    target: &Path,
    entries: &[gpunet_protocol::inputs::InputEntry],
) -> Result<(), CheckpointError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    match std::fs::remove_dir_all(target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove", target)(e)),
        _ => {}
    }
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", path))
    };
    if let Some(parent) = target.parent() {
        gpunet_files::create_private_dir_all(parent).map_err(io("create", parent))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o777)
        .create(target)
        .map_err(io("create", target))?;
    mode(target, 0o777)?;
    for entry in entries {
        let path = target.join(&entry.path);
        match &entry.kind {
            InputKind::Dir => {
                std::fs::DirBuilder::new()
                    .mode(0o777)
                    .create(&path)
                    .map_err(io("create", &path))?;
                mode(&path, 0o777)?;
            }
            InputKind::File { bytes, executable } => {
                let m = if *executable { 0o777 } else { 0o666 };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(m)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io("create", &path))?;
                file.write_all(bytes).map_err(io("write", &path))?;
                mode(&path, m)?;
            }
        }
    }
    Ok(())
}

/// Creates an empty checkpoint directory the workload can write (see [`write_entries`]).
pub fn create_empty(target: &Path) -> Result<(), CheckpointError> {
    write_entries(target, &[])
}

/// What a restore found.
#[derive(Debug)]
pub struct Restored {
    pub digest: Hash,
    pub from_lease: LeaseId,
    pub seq: u64,
}

/// Finds the latest checkpoint of the newest of `earlier` (the job's earlier attempts, in any
/// order) that left one, and unpacks it into `target`. `Ok(None)`: none left one. On an error
/// `target` is left empty.
pub async fn restore(
    store: &CheckpointStore,
    order: OrderId,
    earlier: &[LeaseId],
    secret: &EncryptionSecret,
    target: &Path,
    scratch: &Path,
) -> Result<Option<Restored>, CheckpointError> {
    let mut newest_first = earlier.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    newest_first.dedup();
    let mut found = None;
    for lease in newest_first {
        let name = checkpoint_ref(&store.chain_id, order, lease, "latest")?;
        let digest = store
            .store
            .get_ref(&name)
            .await
            .map_err(|source| CheckpointError::Store {
                source: Box::new(source),
            })?;
        if let Some(digest) = digest {
            found = Some((lease, digest));
            break;
        }
    }
    let Some((writer, digest)) = found else {
        return Ok(None);
    };
    // The blob store verifies the digest on the way in.
    store
        .store
        .get_to_file(&digest, scratch)
        .await
        .map_err(|source| CheckpointError::Store {
            source: Box::new(source),
        })?;
    let (secret, order, scratch_path, target_path) = (
        secret.clone(),
        order,
        scratch.to_path_buf(),
        target.to_path_buf(),
    );
    let opened = tokio::task::spawn_blocking(move || {
        let max = gpunet_protocol::sealed::sealed_len(MAX_CHECKPOINT_BYTES + HEADER_BYTES as u64);
        let len = std::fs::metadata(&scratch_path)
            .map_err(io("inspect", &scratch_path))?
            .len();
        let result = if len > max {
            Err(CheckpointError::TooLarge {
                bytes: len,
                max: MAX_CHECKPOINT_BYTES,
            })
        } else {
            std::fs::read(&scratch_path)
                .map_err(io("read", &scratch_path))
                .and_then(|sealed| open(&secret, order, &sealed))
        };
        let _ = std::fs::remove_file(&scratch_path);
        let opened = result?;
        // The seal authenticates the writing attempt: a blob moved under another attempt's
        // ref is refused.
        if opened.lease != writer {
            return Err(CheckpointError::Malformed {
                why: "it was written by another attempt than the one whose ref points at it",
            });
        }
        write_entries(&target_path, &opened.entries)?;
        Ok::<_, CheckpointError>(opened)
    })
    .await
    .map_err(|e| CheckpointError::Io {
        action: "unpack",
        path: target.to_path_buf(),
        source: std::io::Error::other(e),
    })??;
    Ok(Some(Restored {
        digest,
        from_lease: opened.lease,
        seq: opened.seq,
    }))
}

/// One running lease's checkpointing: the job's key and what was last uploaded.
#[derive(Debug)]
pub struct LeaseCheckpoints {
    pub store: CheckpointStore,
    pub order: OrderId,
    pub lease: LeaseId,
    pub key: EncryptionKey,
    pub dir: PathBuf,
    /// Most packed bytes: [`MAX_CHECKPOINT_BYTES`], or the lease's disk if smaller.
    pub max_bytes: u64,
    /// Last uploaded listing digest and the sequence number of the next upload; the lock also
    /// keeps two uploads of one lease from running at once.
    pub state: tokio::sync::Mutex<(Option<Hash>, u64)>,
}

impl LeaseCheckpoints {
    /// Uploads the directory if its listing changed since the last upload. Returns the blob's
    /// digest and the sequence number of the next upload when it uploaded one.
    pub async fn upload_if_changed(&self) -> Result<Option<(Hash, u64)>, CheckpointError> {
        let mut state = self.state.lock().await;
        let dir = self.dir.clone();
        let max_bytes = self.max_bytes;
        let last = state.0;
        let packed = tokio::task::spawn_blocking(move || {
            let Some(listing) = listing_digest(&dir)? else {
                return Ok(None);
            };
            if Some(listing) == last {
                return Ok(None);
            }
            Ok::<_, CheckpointError>(Some((listing, pack(&dir, max_bytes)?)))
        })
        .await
        .map_err(|e| CheckpointError::Io {
            action: "pack",
            path: self.dir.clone(),
            source: std::io::Error::other(e),
        })??;
        let Some((listing, archive)) = packed else {
            return Ok(None);
        };
        let seq = state.1;
        let sealed = seal(&self.key, self.order, self.lease, seq, &archive)?;
        let blob = self
            .store
            .store
            .put_bytes(&sealed)
            .await
            .map_err(|source| CheckpointError::Store {
                source: Box::new(source),
            })?;
        let chain = &self.store.chain_id;
        for leaf in [seq.to_string(), "latest".to_owned()] {
            let name = checkpoint_ref(chain, self.order, self.lease, &leaf)?;
            self.store
                .store
                .set_ref(&name, &blob.digest)
                .await
                .map_err(|source| CheckpointError::Store {
                    source: Box::new(source),
                })?;
        }
        *state = (Some(listing), seq + 1);
        Ok(Some((blob.digest, seq + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_opens_only_for_its_own_order_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("ck");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("state"), b"41").expect("write");
        std::fs::write(src.join("sub/x"), b"y").expect("write");
        let digest = listing_digest(&src).expect("lists").expect("not empty");
        assert_eq!(listing_digest(&src).expect("lists"), Some(digest));
        let archive = pack(&src, MAX_CHECKPOINT_BYTES).expect("packs");
        let key = gpunet_client::sealing::random_secret();
        let sealed = seal(&key.public(), OrderId(3), LeaseId(7), 2, &archive).expect("seals");
        let opened = open(&key, OrderId(3), &sealed).expect("opens");
        assert_eq!((opened.lease, opened.seq), (LeaseId(7), 2));
        assert!(matches!(
            open(&key, OrderId(4), &sealed),
            Err(CheckpointError::Unreadable { .. })
        ));
        let other = gpunet_client::sealing::random_secret();
        assert!(open(&other, OrderId(3), &sealed).is_err());
        let dest = dir.path().join("restored");
        write_entries(&dest, &opened.entries).expect("writes");
        assert_eq!(std::fs::read(dest.join("state")).expect("read"), b"41");
        assert_eq!(std::fs::read(dest.join("sub/x")).expect("read"), b"y");
        assert!(matches!(
            pack(&src, 10),
            Err(CheckpointError::TooLarge { .. })
        ));
        assert_eq!(listing_digest(&dir.path().join("nope")).expect("ok"), None);
    }

    /// Seals `count` as a checkpoint of `lease` and points that attempt's `latest` at it.
    async fn checkpoint_of(
        store: &CheckpointStore,
        key: &EncryptionSecret,
        lease: LeaseId,
        count: &str,
        scratch: &Path,
    ) {
        let src = scratch.join(format!("src-{}", lease.0));
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("count"), count).expect("write");
        let archive = pack(&src, MAX_CHECKPOINT_BYTES).expect("packs");
        let sealed = seal(&key.public(), OrderId(3), lease, 0, &archive).expect("seals");
        let blob = store.store.put_bytes(&sealed).await.expect("puts");
        let name = checkpoint_ref(&store.chain_id, OrderId(3), lease, "latest").expect("valid");
        store
            .store
            .set_ref(&name, &blob.digest)
            .await
            .expect("sets");
    }

    #[tokio::test]
    async fn the_newest_attempt_with_a_checkpoint_wins_over_an_orphans_later_uploads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore {
            store: Arc::new(
                gpunet_blobs::LocalStore::open(&dir.path().join("blobs")).expect("opens"),
            ),
            chain_id: "test".into(),
        };
        let key = gpunet_client::sealing::random_secret();
        let restore_into = |name: &str| dir.path().join(name);
        let scratch = dir.path().join("scratch");
        // Nothing yet: a fresh start.
        let got = restore(
            &store,
            OrderId(3),
            &[LeaseId(1)],
            &key,
            &restore_into("a"),
            &scratch,
        )
        .await
        .expect("restores");
        assert!(got.is_none());

        // Attempt 2 checkpointed; then attempt 1, lost but still running behind a partition,
        // uploads a later one under its own ref. Attempt 3 resumes from attempt 2's.
        checkpoint_of(&store, &key, LeaseId(2), "20", dir.path()).await;
        checkpoint_of(&store, &key, LeaseId(1), "35", dir.path()).await;
        let got = restore(
            &store,
            OrderId(3),
            &[LeaseId(1), LeaseId(2)],
            &key,
            &restore_into("b"),
            &scratch,
        )
        .await
        .expect("restores")
        .expect("found");
        assert_eq!(got.from_lease, LeaseId(2));
        assert_eq!(
            std::fs::read(restore_into("b").join("count")).expect("read"),
            b"20"
        );

        // An attempt that left nothing is passed over for the one before it.
        let got = restore(
            &store,
            OrderId(3),
            &[LeaseId(1), LeaseId(4)],
            &key,
            &restore_into("c"),
            &scratch,
        )
        .await
        .expect("restores")
        .expect("found");
        assert_eq!(got.from_lease, LeaseId(1));

        // A blob moved under another attempt's ref is refused: the seal names its writer.
        let moved = store
            .store
            .get_ref(&checkpoint_ref("test", OrderId(3), LeaseId(1), "latest").expect("valid"))
            .await
            .expect("reads")
            .expect("set");
        let name = checkpoint_ref("test", OrderId(3), LeaseId(4), "latest").expect("valid");
        store.store.set_ref(&name, &moved).await.expect("sets");
        let err = restore(
            &store,
            OrderId(3),
            &[LeaseId(4)],
            &key,
            &restore_into("d"),
            &scratch,
        )
        .await
        .expect_err("refused");
        assert!(matches!(err, CheckpointError::Malformed { .. }), "{err}");
    }
}
