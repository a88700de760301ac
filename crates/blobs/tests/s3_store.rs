//! The S3 backend against a real S3-protocol server: moto's server (PyPI `moto[server]`),
//! started by the test on a free loopback port and killed at the end (`gpunet_testkit::moto`).
//! Without it installed the tests say plainly that they are skipped — and fail instead where
//! `GPUNET_REQUIRE_S3=1` (CI).

mod common;

use common::*;
use gpunet_blobs::{
    BlobError, BlobStore, Hash, Limits, RefName, S3_MIN_PART_SIZE_BYTES, S3Config, S3Store,
};
use gpunet_testkit::moto::{Moto, start_moto};

const PART: u64 = S3_MIN_PART_SIZE_BYTES;
const BUCKET: &str = "gpunet-blobs";

/// A store in moto's bucket.
trait MotoStores {
    fn config(&self, bucket: &str, prefix: &str) -> S3Config;
    fn store(&self, prefix: &str) -> S3Store;
}

impl MotoStores for Moto {
    fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint()),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            access_key_id: "test-key".into(),
            secret_access_key: "test-secret".into(),
            prefix: prefix.into(),
            session_token: None,
            allow_http: true,
            public_addresses_only: false,
        }
    }

    fn store(&self, prefix: &str) -> S3Store {
        let limits = Limits {
            part_size_bytes: PART,
            ..Limits::default()
        };
        S3Store::with_limits(self.config(BUCKET, prefix), limits).expect("config")
    }
}

#[tokio::test]
async fn s3_store_behaves_as_a_blob_store() {
    let Some(moto) = start_moto("s3_store_behaves_as_a_blob_store") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let (_guard, work) = scratch();
    behaves_as_a_blob_store(&moto.store("suite"), PART, &work).await;
    // The keys are where the docs say, under the prefix.
    let digest = Hash::of(b"hello, blobs");
    let (status, body) = moto.raw("GET", &format!("/{BUCKET}/suite/blobs/{digest}"), b"");
    assert_eq!((status, body.as_slice()), (200, &b"hello, blobs"[..]));
    let (status, body) = moto.raw(
        "GET",
        &format!("/{BUCKET}/suite/refs/jobs/7/checkpoint/latest"),
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("{}\n", Hash::of(b"checkpoint 2")).into_bytes()
    );
}

#[tokio::test]
async fn s3_resume_continues_the_recorded_multipart_upload() {
    let Some(moto) = start_moto("s3_resume_continues_the_recorded_multipart_upload") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let (_guard, work) = scratch();
    let src = work.join("ckpt.bin");
    let digest = write_pattern(&src, PART * 2 + 1000, 11);
    // The interrupted put runs in one store, the retry in another: nothing is carried in memory.
    moto.store("resume")
        .put_file_with(&src, &Recorder::stopping_after(1))
        .await
        .expect_err("interrupted");
    let record_path = format!("/{BUCKET}/resume/uploads/{digest}");
    let (status, record) = moto.raw("GET", &record_path, b"");
    assert_eq!(status, 200, "the unfinished upload must be recorded");
    let record: serde_json::Value = serde_json::from_slice(&record).expect("json");
    assert_eq!(
        record["parts"].as_array().map(Vec::len),
        Some(1),
        "{record}"
    );
    // The server itself holds that one part of that upload (ListParts).
    let upload_id = record["upload_id"].as_str().expect("upload id").to_owned();
    let (status, parts) = moto.raw(
        "GET",
        &format!("/{BUCKET}/resume/blobs/{digest}?uploadId={upload_id}"),
        b"",
    );
    assert_eq!(status, 200);
    let parts = String::from_utf8_lossy(&parts);
    assert_eq!(parts.matches("<PartNumber>").count(), 1, "{parts}");

    let retry = Recorder::default();
    moto.store("resume")
        .put_file_with(&src, &retry)
        .await
        .expect("resumed");
    assert_eq!(retry.seen(), vec![(0, true), (1, false), (2, false)]);
    assert_eq!(
        moto.raw("GET", &record_path, b"").0,
        404,
        "the record outlived the upload"
    );
    let out = work.join("out.bin");
    moto.store("resume")
        .get_to_file(&digest, &out)
        .await
        .expect("get");
    assert_eq!(digest_of(&out), digest);
}

#[tokio::test]
async fn s3_corrupt_object_fails_its_get_and_writes_nothing() {
    let Some(moto) = start_moto("s3_corrupt_object_fails_its_get_and_writes_nothing") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let store = moto.store("corrupt");
    let blob = store.put_bytes(b"the checkpoint").await.expect("put");
    let (status, _) = moto.raw(
        "PUT",
        &format!("/{BUCKET}/corrupt/blobs/{}", blob.digest),
        b"the checkpoinT",
    );
    assert_eq!(status, 200);
    let (_guard, work) = scratch();
    let out = work.join("restored");
    match store.get_to_file(&blob.digest, &out).await {
        Err(BlobError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, blob.digest);
            assert_eq!(actual, Hash::of(b"the checkpoinT"));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(
        names_in(&work),
        Vec::<String>::new(),
        "something was written"
    );
}

#[tokio::test]
async fn s3_missing_bucket_is_named_as_such() {
    let Some(moto) = start_moto("s3_missing_bucket_is_named_as_such") else {
        return;
    };
    let store = S3Store::new(moto.config("no-such-bucket", "")).expect("config");
    let (_guard, work) = scratch();
    let error = store
        .get_to_file(&Hash::of(b"x"), &work.join("out"))
        .await
        .expect_err("no bucket");
    assert!(
        matches!(error, BlobError::BucketMissing { .. }),
        "expected BucketMissing, got {error:?}"
    );
    assert!(error.to_string().contains("no-such-bucket"), "{error}");
    let error = store.put_bytes(b"x").await.expect_err("no bucket");
    assert!(
        matches!(error, BlobError::BucketMissing { .. }),
        "expected BucketMissing, got {error:?}"
    );
    let name = RefName::new("jobs/1/latest").expect("valid");
    assert!(matches!(
        store.get_ref(&name).await,
        Err(BlobError::BucketMissing { .. })
    ));
}

#[test]
fn s3_config_refuses_a_part_size_s3_cannot_take_and_a_bad_prefix() {
    let config = S3Config {
        endpoint: Some("http://127.0.0.1:9".into()),
        bucket: "b".into(),
        region: "us-east-1".into(),
        access_key_id: "k".into(),
        secret_access_key: "s".into(),
        prefix: "".into(),
        session_token: None,
        allow_http: true,
        public_addresses_only: false,
    };
    let small = Limits {
        part_size_bytes: S3_MIN_PART_SIZE_BYTES - 1,
        ..Limits::default()
    };
    assert!(matches!(
        S3Store::with_limits(config.clone(), small),
        Err(BlobError::BadLimits { .. })
    ));
    for prefix in ["../up", "/abs", "a//b"] {
        let config = S3Config {
            prefix: prefix.into(),
            ..config.clone()
        };
        assert!(
            matches!(S3Store::new(config), Err(BlobError::BadS3Config { .. })),
            "{prefix}"
        );
    }
}

#[tokio::test]
async fn a_guarded_store_does_not_reach_a_server_whose_name_resolves_to_loopback() {
    let Some(moto) =
        start_moto("a_guarded_store_does_not_reach_a_server_whose_name_resolves_to_loopback")
    else {
        return;
    };
    moto.create_bucket(BUCKET);
    // The same server, by a name: the guard resolves it at connection time and refuses it.
    let config = S3Config {
        endpoint: Some(format!("http://localhost:{}", moto.port)),
        public_addresses_only: true,
        ..moto.config(BUCKET, "guarded")
    };
    let store = S3Store::new(config.clone()).expect("a name is checked when resolved");
    let error = store.put_bytes(b"x").await.expect_err("refused");
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    assert!(text.contains("not a public address"), "{text}");
    assert!(moto.keys(BUCKET).is_empty(), "{:?}", moto.keys(BUCKET));
    // Unguarded (an operator that allows private endpoints), it works.
    let open = S3Store::new(S3Config {
        public_addresses_only: false,
        ..config
    })
    .expect("config");
    open.put_bytes(b"x").await.expect("stored");
    assert_eq!(
        moto.keys(BUCKET),
        vec![format!("guarded/blobs/{}", Hash::of(b"x"))]
    );
}

// No "credentials refused" test here: moto's server accepts any access key and does not check
// signatures unless IAM authentication is switched on (`INITIAL_NO_AUTH_ACTION_COUNT`), and then
// it wants an IAM user, key and policy made through its IAM API first. The mapping of 401/403
// to `BlobError::CredentialsRefused` (`S3Store::error`) is therefore untested against a server.
