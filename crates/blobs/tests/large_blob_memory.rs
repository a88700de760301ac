//! A blob many times the part size goes in and out with one part in memory at a time. Its own
//! test binary, so the process's peak resident memory (`VmHWM`) is this test's alone.

mod common;

use common::*;
use gpunet_blobs::{BlobStore, Limits, LocalStore, MIB};

/// The process's peak resident set so far, in bytes (Linux).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

#[tokio::test]
async fn a_blob_of_many_parts_streams_through_bounded_memory() {
    let (_guard, dir) = scratch();
    let part = MIB;
    let len = 48 * MIB;
    let store = LocalStore::open_with(
        &dir.join("store"),
        Limits {
            part_size_bytes: part,
            ..Limits::default()
        },
    )
    .expect("open");
    let src = dir.join("big.bin");
    let digest = write_pattern(&src, len, 42);
    let before = peak_rss_bytes();
    let recorder = Recorder::default();
    let put = store.put_file_with(&src, &recorder).await.expect("put");
    assert_eq!((put.digest, put.bytes), (digest, len));
    assert_eq!(recorder.seen().len(), 48);
    let out = dir.join("out.bin");
    store.get_to_file(&digest, &out).await.expect("get");
    assert_eq!(digest_of(&out), digest);
    let grew = peak_rss_bytes().saturating_sub(before);
    // A few parts' worth of buffers is fine; holding the blob (48 MiB) is not.
    assert!(
        grew < 16 * MIB,
        "peak memory grew by {} MiB moving a 48 MiB blob in 1 MiB parts",
        grew / MIB
    );
}
