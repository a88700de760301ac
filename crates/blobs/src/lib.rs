//! `gpunet-blobs`: a content-addressed blob store for checkpoints, inputs and outputs.
//!
//! A job's checkpoints must outlive the provider that wrote them: the agent uploads each one to
//! the job's blob store, and a later attempt of the job, on another provider, downloads the
//! latest. This crate is that store. It keeps opaque bytes — callers seal them to the tenant
//! first — addressed by the BLAKE3 digest of those bytes ([`Hash`]), and named pointers
//! ([`RefName`], e.g. `jobs/<order>/checkpoint/latest`) so a job can find its latest blob.
//!
//! One trait, [`BlobStore`], two backends:
//!
//! - [`LocalStore`]: a directory on this machine (`blobs/<first two hex>/<hex>`, refs under
//!   `refs/`), created owner-only (0700 directories, 0600 files, through `gpunet-files`), every
//!   write a temporary file, fsync and rename.
//! - [`S3Store`]: any S3-compatible service through `object_store` (keys `<prefix>/blobs/<hex>`
//!   and `<prefix>/refs/<name>`), large blobs as S3 multipart uploads. A store in a bucket
//!   someone else named (a tenant's) is built with [`S3Config::public_addresses_only`], and
//!   then reaches only public addresses ([`guard`]).
//!
//! # What every backend guarantees
//!
//! - **A blob's name is its content.** A put hashes the source first, then sends it while
//!   hashing it again; if the two disagree (the file changed under us) nothing is published
//!   ([`BlobError::SourceChanged`]). A get hashes what it receives and publishes the file only
//!   if the digest matches ([`BlobError::DigestMismatch`] names both digests); the destination
//!   is a temporary file in the same directory renamed into place, so a failed get leaves no
//!   file behind.
//! - **Dedup.** A blob already in the store is not sent again.
//! - **Bounded memory.** Blobs move in parts ([`Limits::part_size_bytes`], 8 MiB by default);
//!   at most one part is held in memory at a time, whatever the blob's size.
//! - **Bounded input.** Blobs over [`Limits::max_blob_bytes`] are refused before anything is
//!   sent; ref names are checked by [`RefName::new`] (charset, no `.`-led segments, so no `..`,
//!   no leading `/`, at most [`MAX_REF_NAME_BYTES`]).
//!
//! # What resumes
//!
//! A blob of more than one part is uploaded part by part, and the parts already stored survive
//! an interrupted [`BlobStore::put_file`] — an error, a cancelled future, a killed process, or
//! a [`PutProgress`] observer that asked to stop. Putting the same file again (same bytes, so
//! the same digest) sends only the parts not yet stored:
//!
//! - [`LocalStore`] keeps finished parts as files `parts/<hex>/<n>` and, once all are there,
//!   joins them into the blob, verifying the digest while it does.
//! - [`S3Store`] keeps an S3 multipart upload open and records its upload id, each part's ETag
//!   and each part's BLAKE3 in a small object `<prefix>/uploads/<hex>`; a retry (in this
//!   process or another) reads that record, re-reads the source's stored parts to check they
//!   still hold the same bytes, and uploads only the rest.
//!
//! What does not resume: a blob of one part (it is sent whole), a part that was in flight when
//! the upload stopped (it is sent again), a [`BlobStore::get_to_file`] (downloads start over),
//! and an S3 upload the server has forgotten (a bucket lifecycle rule aborting incomplete
//! uploads): the retry then fails with [`BlobError::UploadExpired`] and the one after starts
//! afresh. A changed part size (a different [`Limits`]) also starts afresh.
//!
//! Architecture Invariant: stores bytes and names, nothing else — no ledger, node or agent
//! types, no sealing (callers seal before they put). Never panics on input: hostile ref names,
//! digests that do not match and oversized blobs are errors.

mod download;
mod error;
pub mod guard;
mod local;
mod parts;
mod refs;
mod s3;

use std::ops::ControlFlow;
use std::path::Path;

pub use gpunet_protocol::Hash;

pub use error::BlobError;
pub use local::LocalStore;
pub use refs::{MAX_REF_NAME_BYTES, RefName, RefNameError};
pub use s3::{S3Config, S3Store};

/// A stored blob: its digest and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Hash,
    pub bytes: u64,
}

/// The limits a store works under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Size of the parts a blob is sent in, and so the most a put holds in memory. S3 needs
    /// at least [`S3_MIN_PART_SIZE_BYTES`]. A blob too large to fit in
    /// [`MAX_PARTS`] parts of this size is sent in larger parts (whole MiB).
    pub part_size_bytes: u64,
    /// Largest blob the store accepts; a bigger one is refused before anything is sent.
    pub max_blob_bytes: u64,
}

/// 1 MiB.
pub const MIB: u64 = 1024 * 1024;
/// Default part size: 8 MiB.
pub const DEFAULT_PART_SIZE_BYTES: u64 = 8 * MIB;
/// Default largest blob: 256 GiB.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 256 * 1024 * MIB;
/// S3's smallest part (all but the last part of a multipart upload).
pub const S3_MIN_PART_SIZE_BYTES: u64 = 5 * MIB;
/// Most parts in one blob (S3's limit on a multipart upload).
pub const MAX_PARTS: u64 = 10_000;
/// Smallest part size a store accepts (tests use small parts).
pub const MIN_PART_SIZE_BYTES: u64 = 4096;
/// Largest part size a store accepts: one part is held in memory.
pub const MAX_PART_SIZE_BYTES: u64 = 512 * MIB;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            part_size_bytes: DEFAULT_PART_SIZE_BYTES,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
        }
    }
}

impl Limits {
    fn check(&self, min_part_size_bytes: u64) -> Result<(), BlobError> {
        if self.part_size_bytes < min_part_size_bytes || self.part_size_bytes > MAX_PART_SIZE_BYTES
        {
            return Err(BlobError::BadLimits {
                reason: format!(
                    "part size {} bytes is outside {min_part_size_bytes}..={MAX_PART_SIZE_BYTES} \
                     bytes",
                    self.part_size_bytes
                ),
            });
        }
        Ok(())
    }
}

/// One part of a put, reported to a [`PutProgress`] once it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartDone {
    pub digest: Hash,
    /// 0-based.
    pub index: u32,
    pub parts_total: u32,
    /// Length of this part.
    pub bytes: u64,
    /// True when an earlier, interrupted put had already stored this part and it was not sent
    /// again.
    pub resumed: bool,
}

/// Watches a multi-part put and may stop it (a lease that ended, a user who pressed Ctrl-C).
/// Called after each part is durably stored; returning `Break` ends the put with
/// [`BlobError::Interrupted`], and putting the same file again resumes after that part.
pub trait PutProgress: Send + Sync {
    fn part_done(&self, part: PartDone) -> ControlFlow<()>;
}

/// A [`PutProgress`] that watches nothing and never stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl PutProgress for NoProgress {
    fn part_done(&self, _part: PartDone) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// A content-addressed store of opaque blobs with named pointers. See the crate docs for what
/// every implementation guarantees.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the file at `path`, streaming it in parts; a blob already stored is not sent
    /// again, and an interrupted put of the same file resumes. Reports each part to `progress`.
    async fn put_file_with(
        &self,
        path: &Path,
        progress: &dyn PutProgress,
    ) -> Result<BlobRef, BlobError>;

    /// [`BlobStore::put_file_with`] without a progress observer.
    async fn put_file(&self, path: &Path) -> Result<BlobRef, BlobError> {
        self.put_file_with(path, &NoProgress).await
    }

    /// Stores `bytes` (already in memory, so meant for small blobs).
    async fn put_bytes(&self, bytes: &[u8]) -> Result<BlobRef, BlobError>;

    /// Writes blob `digest` to `dest` (created 0600, its missing parent directories 0700),
    /// verifying the digest on the way; on any error no file is left at `dest` or beside it.
    /// An existing file at `dest` is replaced only by a verified blob.
    async fn get_to_file(&self, digest: &Hash, dest: &Path) -> Result<BlobRef, BlobError>;

    /// Whether blob `digest` is stored.
    async fn exists(&self, digest: &Hash) -> Result<bool, BlobError>;

    /// Removes blob `digest`; removing a blob that is not there is not an error. Refs that
    /// point at it are left as they are (a later get through them fails with
    /// [`BlobError::NotFound`]).
    async fn delete(&self, digest: &Hash) -> Result<(), BlobError>;

    /// Points `name` at `digest`, replacing what it pointed at. The blob need not exist yet.
    async fn set_ref(&self, name: &RefName, digest: &Hash) -> Result<(), BlobError>;

    /// Where `name` points, or `None` if it was never set.
    async fn get_ref(&self, name: &RefName) -> Result<Option<Hash>, BlobError>;
}
