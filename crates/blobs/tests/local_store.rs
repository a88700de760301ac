//! The local-disk backend: the shared suite, then what only a directory on disk can show —
//! files not rewritten, corruption on disk caught, parts reused, modes.

mod common;

use std::ops::ControlFlow;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use gpunet_blobs::{
    BlobError, BlobStore, Hash, Limits, LocalStore, PartDone, PutProgress, RefName,
};

const PART: u64 = 64 * 1024;

fn store_in(dir: &Path) -> LocalStore {
    LocalStore::open_with(
        &dir.join("store"),
        Limits {
            part_size_bytes: PART,
            max_blob_bytes: 64 * 1024 * 1024,
        },
    )
    .expect("open")
}

#[tokio::test]
async fn local_store_behaves_as_a_blob_store() {
    let (_guard, dir) = scratch();
    let store = store_in(&dir);
    let work = dir.join("work");
    std::fs::create_dir(&work).expect("mkdir");
    behaves_as_a_blob_store(&store, PART, &work).await;
}

#[tokio::test]
async fn a_second_put_of_a_stored_blob_does_not_rewrite_its_file() {
    let (_guard, dir) = scratch();
    let store = store_in(&dir);
    for len in [100, PART * 3] {
        let src = dir.join("src.bin");
        let digest = write_pattern(&src, len, 9);
        store.put_file(&src).await.expect("put");
        let before = std::fs::metadata(store.blob_path(&digest)).expect("stat");
        store.put_file(&src).await.expect("put again");
        let after = std::fs::metadata(store.blob_path(&digest)).expect("stat");
        // Every write is a fresh file renamed into place: a rewrite would change the inode.
        assert_eq!(
            before.ino(),
            after.ino(),
            "len {len}: the blob was rewritten"
        );
        assert_eq!(
            (before.mtime(), before.mtime_nsec()),
            (after.mtime(), after.mtime_nsec())
        );
    }
}

#[tokio::test]
async fn a_blob_corrupted_on_disk_fails_its_get_naming_both_digests_and_writes_nothing() {
    let (_guard, dir) = scratch();
    let store = store_in(&dir);
    let blob = store.put_bytes(b"the checkpoint").await.expect("put");
    let path = store.blob_path(&blob.digest);
    std::fs::write(&path, b"the checkpoinT").expect("corrupt it");
    let out_dir = dir.join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out = out_dir.join("restored");
    let error = store
        .get_to_file(&blob.digest, &out)
        .await
        .expect_err("a corrupt blob must not be returned");
    match &error {
        BlobError::DigestMismatch { expected, actual } => {
            assert_eq!(*expected, blob.digest);
            assert_eq!(*actual, Hash::of(b"the checkpoinT"));
            let text = error.to_string();
            assert!(text.contains(&expected.to_hex()) && text.contains(&actual.to_hex()));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!out.exists());
    assert_eq!(
        names_in(&out_dir),
        Vec::<String>::new(),
        "a temporary file was left"
    );

    // An existing destination is kept, not replaced by the corrupt bytes.
    std::fs::write(&out, b"previous").expect("write");
    store
        .get_to_file(&blob.digest, &out)
        .await
        .expect_err("still corrupt");
    assert_eq!(std::fs::read(&out).expect("read"), b"previous");
}

#[tokio::test]
async fn a_resumed_put_reuses_the_parts_on_disk_and_a_corrupt_part_is_never_published() {
    let (_guard, dir) = scratch();
    let store = store_in(&dir);
    let src = dir.join("ckpt.bin");
    let digest = write_pattern(&src, PART * 3, 4);
    store
        .put_file_with(&src, &Recorder::stopping_after(1))
        .await
        .expect_err("interrupted");
    let parts = store.parts_dir(&digest);
    assert_eq!(
        names_in(&parts),
        vec!["0"],
        "exactly the first part is kept"
    );
    assert!(!store.blob_path(&digest).exists());

    // Spoil the kept part. A retry that really reuses it (rather than sending it again) joins
    // the spoiled bytes, and the digest check refuses them.
    let mut bytes = std::fs::read(parts.join("0")).expect("read part");
    bytes[0] ^= 0xff;
    std::fs::write(parts.join("0"), &bytes).expect("spoil part");
    let retry = Recorder::default();
    match store.put_file_with(&src, &retry).await {
        Err(BlobError::DigestMismatch { expected, .. }) => assert_eq!(expected, digest),
        other => panic!("expected the spoiled part to be caught, got {other:?}"),
    }
    assert_eq!(retry.seen(), vec![(0, true), (1, false), (2, false)]);
    assert!(
        !store.blob_path(&digest).exists(),
        "a corrupt blob was published"
    );
    assert!(
        !parts.exists(),
        "the spoiled parts must go so the next put starts afresh"
    );

    let again = Recorder::default();
    store.put_file_with(&src, &again).await.expect("fresh put");
    assert_eq!(again.seen(), vec![(0, false), (1, false), (2, false)]);
    assert_eq!(digest_of(&store.blob_path(&digest)), digest);
    assert!(!parts.exists(), "parts are removed once the blob is whole");
}

/// Rewrites the source's last byte when the first part is stored.
struct ChangesTheSource {
    path: PathBuf,
    done: AtomicBool,
}

impl PutProgress for ChangesTheSource {
    fn part_done(&self, _part: PartDone) -> ControlFlow<()> {
        if !self.done.swap(true, Ordering::SeqCst) {
            let mut bytes = std::fs::read(&self.path).expect("read");
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&self.path, bytes).expect("write");
        }
        ControlFlow::Continue(())
    }
}

#[tokio::test]
async fn a_source_changed_during_its_put_is_not_published() {
    let (_guard, dir) = scratch();
    let store = store_in(&dir);
    let src = dir.join("moving.bin");
    let digest = write_pattern(&src, PART * 2 + 5, 5);
    let changer = ChangesTheSource {
        path: src.clone(),
        done: AtomicBool::new(false),
    };
    match store.put_file_with(&src, &changer).await {
        Err(BlobError::SourceChanged { path, expected }) => {
            assert_eq!((path, expected), (src.clone(), digest));
        }
        other => panic!("expected SourceChanged, got {other:?}"),
    }
    assert!(!store.blob_path(&digest).exists());
    let changed = digest_of(&src);
    assert!(!store.blob_path(&changed).exists());
    assert!(!store.parts_dir(&digest).exists());
}

#[tokio::test]
async fn a_blob_over_the_limit_is_refused_before_anything_is_written() {
    let (_guard, dir) = scratch();
    let store = LocalStore::open_with(
        &dir.join("store"),
        Limits {
            part_size_bytes: PART,
            max_blob_bytes: 1000,
        },
    )
    .expect("open");
    let src = dir.join("big.bin");
    let digest = write_pattern(&src, 1001, 6);
    assert!(matches!(
        store.put_file(&src).await,
        Err(BlobError::TooLarge {
            bytes: 1001,
            max_bytes: 1000,
            ..
        })
    ));
    assert!(matches!(
        store.put_bytes(&[0u8; 1001]).await,
        Err(BlobError::TooLarge { .. })
    ));
    assert!(!store.blob_path(&digest).exists());
    // A part size S3 could never take is fine locally, but nonsense is refused.
    for part_size_bytes in [0, 1, u64::MAX] {
        let limits = Limits {
            part_size_bytes,
            max_blob_bytes: 1000,
        };
        assert!(matches!(
            LocalStore::open_with(&dir.join("s2"), limits),
            Err(BlobError::BadLimits { .. })
        ));
    }
}

#[tokio::test]
async fn hostile_ref_names_are_refused_and_refs_stay_inside_the_store() {
    for hostile in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a\0b",
        "",
        ".",
        "a//b",
        "trailing/",
        &"x".repeat(257),
    ] {
        let e = RefName::new(hostile).expect_err(hostile);
        assert!(e.to_string().contains("refused"), "{e}");
    }
    let (_guard, dir) = scratch();
    let store = store_in(&dir);
    let name = RefName::new("jobs/1/latest").expect("valid");
    let blob = store.put_bytes(b"x").await.expect("put");
    store.set_ref(&name, &blob.digest).await.expect("set");
    assert_eq!(
        std::fs::read_to_string(dir.join("store/refs/jobs/1/latest.ref")).expect("read"),
        format!("{}\n", blob.digest.to_hex())
    );
    // A ref file spoiled outside the store is an error, not a panic or a guess.
    std::fs::write(dir.join("store/refs/jobs/1/latest.ref"), b"not a digest").expect("write");
    assert!(matches!(
        store.get_ref(&name).await,
        Err(BlobError::CorruptRef { .. })
    ));
}

#[tokio::test]
async fn the_store_creates_directories_0700_and_files_0600() {
    let (_guard, dir) = scratch();
    let store = store_in(&dir);
    store.put_bytes(b"small").await.expect("put");
    let src = dir.join("multi.bin");
    let digest = write_pattern(&src, PART * 2 + 1, 7);
    // Leave parts behind, then finish, so both are seen.
    store
        .put_file_with(&src, &Recorder::stopping_after(1))
        .await
        .expect_err("interrupted");
    let mut seen = (0, 0);
    check_modes(store.dir(), &mut seen);
    store.put_file(&src).await.expect("put");
    store
        .set_ref(&RefName::new("a/b/c").expect("valid"), &digest)
        .await
        .expect("set");
    let out = dir.join("fresh/dir/out.bin");
    store.get_to_file(&digest, &out).await.expect("get");
    check_modes(store.dir(), &mut seen);
    assert!(seen.0 >= 10 && seen.1 >= 4, "checked too little: {seen:?}");
    assert_eq!(mode(&out), 0o600);
    assert_eq!(mode(&dir.join("fresh")), 0o700);
    assert_eq!(mode(&dir.join("fresh/dir")), 0o700);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn check_modes(path: &Path, seen: &mut (u32, u32)) {
    let want = if path.is_dir() { 0o700 } else { 0o600 };
    assert_eq!(mode(path), want, "{}", path.display());
    if path.is_dir() {
        seen.0 += 1;
        for entry in std::fs::read_dir(path).expect("read dir") {
            check_modes(&entry.expect("entry").path(), seen);
        }
    } else {
        seen.1 += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_of_one_blob_all_succeed_and_publish_it_whole() {
    let (_guard, dir) = scratch();
    let store = store_in(&dir);
    let src = dir.join("same.bin");
    let digest = write_pattern(&src, PART * 6 + 3, 8);
    let puts: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            let src = src.clone();
            tokio::spawn(async move { store.put_file(&src).await })
        })
        .collect();
    for put in puts {
        let put = put.await.expect("join").expect("every put succeeds");
        assert_eq!(put.digest, digest);
    }
    assert_eq!(digest_of(&store.blob_path(&digest)), digest);
    assert!(!store.parts_dir(&digest).exists(), "parts were left behind");
    let blob_dir = store.blob_path(&digest).parent().expect("dir").to_owned();
    assert_eq!(
        names_in(&blob_dir),
        vec![digest.to_hex()],
        "temporary files were left"
    );
}
