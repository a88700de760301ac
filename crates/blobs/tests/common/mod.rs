//! The behaviour every backend must show, as one suite run against `&dyn BlobStore`
//! (`local_store.rs` and `s3_store.rs`), and the helpers it needs.

#![allow(dead_code)] // each test binary uses its own share of the helpers

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gpunet_blobs::{BlobError, BlobStore, Hash, PartDone, PutProgress, RefName};

/// Writes `len` bytes of a seeded pattern to `path` 64 KiB at a time (never the whole file in
/// memory) and returns their digest.
pub fn write_pattern(path: &Path, len: u64, seed: u8) -> Hash {
    let mut file = std::fs::File::create(path).expect("create");
    let mut hasher = blake3::Hasher::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    let mut n: u32 = u32::from(seed);
    while written < len {
        for b in chunk.iter_mut() {
            n = n.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (n >> 24) as u8;
        }
        let take = (len - written).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..take]).expect("write");
        hasher.update(&chunk[..take]);
        written += take as u64;
    }
    Hash(*hasher.finalize().as_bytes())
}

/// The BLAKE3 of a file, read in chunks.
pub fn digest_of(path: &Path) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::fs::File::open(path).expect("open"))
        .expect("read");
    Hash(*hasher.finalize().as_bytes())
}

/// Records each part a put reports, and stops it after `stop_after` parts if set.
#[derive(Default)]
pub struct Recorder {
    pub stop_after: Option<u32>,
    pub parts: Mutex<Vec<PartDone>>,
}

impl Recorder {
    pub fn stopping_after(parts: u32) -> Recorder {
        Recorder {
            stop_after: Some(parts),
            ..Recorder::default()
        }
    }
    /// (index, resumed) of each reported part.
    pub fn seen(&self) -> Vec<(u32, bool)> {
        self.parts
            .lock()
            .expect("lock")
            .iter()
            .map(|p| (p.index, p.resumed))
            .collect()
    }
}

impl PutProgress for Recorder {
    fn part_done(&self, part: PartDone) -> ControlFlow<()> {
        let mut parts = self.parts.lock().expect("lock");
        parts.push(part);
        match self.stop_after {
            Some(n) if parts.len() as u32 >= n => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// Files in `dir` (not recursive), names sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The suite. `part_size_bytes` is the store's part size; `work` a scratch directory.
pub async fn behaves_as_a_blob_store(store: &dyn BlobStore, part_size_bytes: u64, work: &Path) {
    round_trip_of_small_and_multi_part_blobs(store, part_size_bytes, work).await;
    a_second_put_sends_nothing(store, part_size_bytes, work).await;
    an_unknown_blob_is_not_found_and_writes_nothing(store, work).await;
    delete_removes_and_is_idempotent(store, work).await;
    refs_point_at_blobs(store).await;
    an_interrupted_put_resumes_with_the_parts_not_yet_stored(store, part_size_bytes, work).await;
}

async fn round_trip_of_small_and_multi_part_blobs(
    store: &dyn BlobStore,
    part_size_bytes: u64,
    work: &Path,
) {
    let small = store.put_bytes(b"hello, blobs").await.expect("put bytes");
    assert_eq!(small.digest, Hash::of(b"hello, blobs"));
    assert_eq!(small.bytes, 12);
    assert!(store.exists(&small.digest).await.expect("exists"));
    let out = work.join("deep/er/small.out");
    let got = store.get_to_file(&small.digest, &out).await.expect("get");
    assert_eq!(got, small);
    assert_eq!(std::fs::read(&out).expect("read"), b"hello, blobs");

    let empty = store.put_bytes(b"").await.expect("put empty");
    let out = work.join("empty.out");
    store
        .get_to_file(&empty.digest, &out)
        .await
        .expect("get empty");
    assert_eq!(std::fs::read(&out).expect("read"), b"");

    // A few parts, the last one short.
    let src = work.join("multi.bin");
    let len = part_size_bytes * 2 + part_size_bytes / 3;
    let digest = write_pattern(&src, len, 1);
    let recorder = Recorder::default();
    let put = store
        .put_file_with(&src, &recorder)
        .await
        .expect("put file");
    assert_eq!((put.digest, put.bytes), (digest, len));
    assert_eq!(recorder.seen(), vec![(0, false), (1, false), (2, false)]);
    let out = work.join("multi.out");
    store.get_to_file(&digest, &out).await.expect("get");
    assert_eq!(digest_of(&out), digest);
    assert_eq!(std::fs::metadata(&out).expect("stat").len(), len);
    // Nothing but the result is left beside it.
    assert!(
        names_in(work).iter().all(|n| !n.ends_with(".tmp")),
        "{:?}",
        names_in(work)
    );
}

async fn a_second_put_sends_nothing(store: &dyn BlobStore, part_size_bytes: u64, work: &Path) {
    let src = work.join("dedup.bin");
    write_pattern(&src, part_size_bytes * 2, 2);
    store.put_file(&src).await.expect("first put");
    let recorder = Recorder::default();
    store
        .put_file_with(&src, &recorder)
        .await
        .expect("second put");
    assert_eq!(recorder.seen(), vec![], "a stored blob was sent again");
}

async fn an_unknown_blob_is_not_found_and_writes_nothing(store: &dyn BlobStore, work: &Path) {
    let unknown = Hash::of(b"never stored");
    assert!(!store.exists(&unknown).await.expect("exists"));
    let out = work.join("unknown.out");
    match store.get_to_file(&unknown, &out).await {
        Err(BlobError::NotFound { digest }) => assert_eq!(digest, unknown),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!out.exists());
}

async fn delete_removes_and_is_idempotent(store: &dyn BlobStore, work: &Path) {
    let blob = store.put_bytes(b"to be deleted").await.expect("put");
    store.delete(&blob.digest).await.expect("delete");
    assert!(!store.exists(&blob.digest).await.expect("exists"));
    store
        .delete(&blob.digest)
        .await
        .expect("deleting again is fine");
    let out = work.join("deleted.out");
    assert!(matches!(
        store.get_to_file(&blob.digest, &out).await,
        Err(BlobError::NotFound { .. })
    ));
}

async fn refs_point_at_blobs(store: &dyn BlobStore) {
    let name = RefName::new("jobs/7/checkpoint/latest").expect("valid");
    assert_eq!(store.get_ref(&name).await.expect("get ref"), None);
    let first = store.put_bytes(b"checkpoint 1").await.expect("put");
    let second = store.put_bytes(b"checkpoint 2").await.expect("put");
    store.set_ref(&name, &first.digest).await.expect("set");
    assert_eq!(store.get_ref(&name).await.expect("get"), Some(first.digest));
    store
        .set_ref(&name, &second.digest)
        .await
        .expect("set again");
    assert_eq!(
        store.get_ref(&name).await.expect("get"),
        Some(second.digest)
    );
    // A ref and a ref below it live side by side.
    let below = RefName::new("jobs/7/checkpoint/latest/meta").expect("valid");
    store
        .set_ref(&below, &first.digest)
        .await
        .expect("set below");
    assert_eq!(
        store.get_ref(&below).await.expect("get"),
        Some(first.digest)
    );
    assert_eq!(
        store.get_ref(&name).await.expect("get"),
        Some(second.digest)
    );
}

async fn an_interrupted_put_resumes_with_the_parts_not_yet_stored(
    store: &dyn BlobStore,
    part_size_bytes: u64,
    work: &Path,
) {
    let src = work.join("resume.bin");
    let digest = write_pattern(&src, part_size_bytes * 3 + 17, 3);
    let stopper = Recorder::stopping_after(2);
    match store.put_file_with(&src, &stopper).await {
        Err(BlobError::Interrupted {
            digest: d,
            parts_stored: 2,
            parts_total: 4,
        }) => assert_eq!(d, digest),
        other => panic!("expected an interruption after 2 of 4 parts, got {other:?}"),
    }
    assert!(
        !store.exists(&digest).await.expect("exists"),
        "half a blob was published"
    );
    let retry = Recorder::default();
    let put = store
        .put_file_with(&src, &retry)
        .await
        .expect("resumed put");
    assert_eq!(put.digest, digest);
    assert_eq!(
        retry.seen(),
        vec![(0, true), (1, true), (2, false), (3, false)],
        "the retry must send only the parts not yet stored"
    );
    let out = work.join("resume.out");
    store.get_to_file(&digest, &out).await.expect("get");
    assert_eq!(digest_of(&out), digest);
}

/// A scratch directory for a test.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    (dir, path)
}
