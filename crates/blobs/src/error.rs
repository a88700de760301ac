//! What can go wrong with a blob store, each error saying what to do about it.

use std::io;
use std::path::PathBuf;

use gpunet_protocol::Hash;

use crate::refs::RefNameError;

/// Why a blob store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {digest} is not in the store; upload it first, or check the digest")]
    NotFound { digest: Hash },

    #[error(
        "blob {expected} read back as {actual}: the stored copy (or the transfer) is corrupt; \
         nothing was written — delete the blob and upload it again"
    )]
    DigestMismatch { expected: Hash, actual: Hash },

    #[error(
        "{} changed while it was being uploaded (it hashed as {expected} before, and other \
         bytes were read after); nothing was published — upload it again once it stops changing",
        .path.display()
    )]
    SourceChanged { path: PathBuf, expected: Hash },

    #[error(
        "{what} is {bytes} bytes, over this store's limit of {max_bytes} bytes \
         (`Limits::max_blob_bytes`)"
    )]
    TooLarge {
        what: String,
        bytes: u64,
        max_bytes: u64,
    },

    #[error(transparent)]
    BadRefName(#[from] RefNameError),

    #[error("ref {name} holds {found:?}, not a blob digest; set it again with a valid digest")]
    CorruptRef { name: String, found: String },

    #[error(
        "upload of {digest} stopped after {parts_stored} of {parts_total} parts, as its \
         progress observer asked; put the same file again to resume"
    )]
    Interrupted {
        digest: Hash,
        parts_stored: u32,
        parts_total: u32,
    },

    #[error(
        "the server no longer has the unfinished upload of {digest} (aborted, perhaps by a \
         bucket lifecycle rule); its record was removed, so putting the file again starts over"
    )]
    UploadExpired {
        digest: Hash,
        #[source]
        source: object_store::Error,
    },

    #[error("cannot read {}: {source}", .path.display())]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot {action} {}: {source}", .path.display())]
    Local {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid store limits: {reason}")]
    BadLimits { reason: String },

    #[error("invalid S3 configuration: {reason}")]
    BadS3Config {
        reason: String,
        #[source]
        source: Option<object_store::Error>,
    },

    #[error("the S3 endpoint is refused: {source}")]
    EndpointRefused {
        #[source]
        source: crate::guard::EndpointRefused,
    },

    #[error("bucket {bucket:?} does not exist at {endpoint}; create it or fix `S3Config::bucket`")]
    BucketMissing {
        bucket: String,
        endpoint: String,
        #[source]
        source: object_store::Error,
    },

    #[error(
        "the S3 server at {endpoint} refused the credentials for bucket {bucket:?}; check \
         `S3Config::access_key_id` and `secret_access_key`, and that the key may use the bucket"
    )]
    CredentialsRefused {
        bucket: String,
        endpoint: String,
        #[source]
        source: object_store::Error,
    },

    #[error("S3 {action} of {key} failed: {source}")]
    S3 {
        action: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },

    #[error("a background task of the blob store failed: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
}
