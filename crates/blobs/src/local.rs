//! The local-disk backend: a directory on this machine.
//!
//! ```text
//! <dir>/blobs/<first two hex>/<hex>   a blob, named by its digest
//! <dir>/parts/<hex>/<n>               part n of an unfinished multi-part put of blob <hex>
//! <dir>/refs/<name>.ref               a ref: the digest's hex and a newline
//! ```
//!
//! Refs carry a `.ref` suffix so that `a` and `a/b` can both be refs (a file `a.ref` beside a
//! directory `a`). Every directory is created 0700 and every file 0600 (`gpunet-files`); every
//! file is written under a hidden temporary name, synced and renamed into place, so readers
//! and a crash see a whole file or none. Concurrent puts of one blob are safe without locks:
//! each writes its own temporary files, parts and blobs are only ever renamed into place whole,
//! and a blob is published only after its digest is verified — two writers publish the same
//! bytes.

use std::path::{Path, PathBuf};

use gpunet_protocol::Hash;
use tokio::io::AsyncReadExt;

use crate::download::VerifiedFile;
use crate::parts::{HashedSource, PartPlan, Source};
use crate::{
    BlobError, BlobRef, BlobStore, Limits, MIN_PART_SIZE_BYTES, PartDone, PutProgress, RefName,
};

/// Bytes read at a time when a blob is copied on disk.
const COPY_CHUNK_BYTES: usize = 1024 * 1024;

/// A blob store in a directory on this machine. See the module docs for its layout.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
    limits: Limits,
}

fn local(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BlobError {
    let path = path.to_owned();
    move |source| BlobError::Local {
        action,
        path,
        source,
    }
}

impl LocalStore {
    /// Opens (creating it 0700 if missing) the store at `dir` with the default [`Limits`].
    pub fn open(dir: &Path) -> Result<LocalStore, BlobError> {
        LocalStore::open_with(dir, Limits::default())
    }

    pub fn open_with(dir: &Path, limits: Limits) -> Result<LocalStore, BlobError> {
        limits.check(MIN_PART_SIZE_BYTES)?;
        for sub in ["blobs", "parts", "refs"] {
            let path = dir.join(sub);
            gpunet_files::create_private_dir_all(&path)
                .map_err(local("create directory", &path))?;
        }
        Ok(LocalStore {
            dir: dir.to_owned(),
            limits,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where blob `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Hash) -> PathBuf {
        let hex = digest.to_hex();
        self.dir.join("blobs").join(&hex[..2]).join(hex)
    }

    /// Where the parts of an unfinished put of blob `digest` are kept.
    pub fn parts_dir(&self, digest: &Hash) -> PathBuf {
        self.dir.join("parts").join(digest.to_hex())
    }

    fn ref_path(&self, name: &RefName) -> PathBuf {
        self.dir.join("refs").join(format!("{}.ref", name.as_str()))
    }

    /// The length of blob `digest` if it is stored.
    async fn stored_len(&self, digest: &Hash) -> Result<Option<u64>, BlobError> {
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(local("read", &path)(e)),
        }
    }

    async fn put_source(
        &self,
        hashed: HashedSource<'_>,
        progress: &dyn PutProgress,
    ) -> Result<BlobRef, BlobError> {
        let HashedSource {
            mut source,
            digest,
            len_bytes,
        } = hashed;
        let done = BlobRef {
            digest,
            bytes: len_bytes,
        };
        // A stored blob of another length is a torn copy from outside this crate: replace it.
        if self.stored_len(&digest).await? == Some(len_bytes) {
            return Ok(done);
        }
        let plan = PartPlan::new(len_bytes, &self.limits);
        let blob_path = self.blob_path(&digest);
        if plan.parts_total == 1 {
            let bytes = source.read_part(&plan, 0, &digest).await?;
            let mut out = VerifiedFile::create(&blob_path, self.limits.max_blob_bytes)?;
            out.write(&bytes).await?;
            return match out.finish(&digest).await {
                Ok(_) => Ok(done),
                Err(BlobError::DigestMismatch { .. }) => Err(source.changed(&digest)),
                Err(e) => Err(e),
            };
        }

        let parts_dir = self.parts_dir(&digest);
        let mut hasher = blake3::Hasher::new();
        for index in 0..plan.parts_total {
            let bytes = source.read_part(&plan, index, &digest).await?;
            hasher.update(&bytes);
            let part_path = parts_dir.join(index.to_string());
            let resumed = match tokio::fs::metadata(&part_path).await {
                Ok(meta) => meta.len() == plan.part_len(index),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(local("read", &part_path)(e)),
            };
            if !resumed && let Err(e) = self.write_part(&part_path, &plan, &bytes).await {
                // Another put of the same blob may have finished and taken the parts directory
                // away under this one: then the blob is whole and this put is done too.
                if self.stored_len(&digest).await? == Some(len_bytes) {
                    return Ok(done);
                }
                return Err(e);
            }
            let part = PartDone {
                digest,
                index,
                parts_total: plan.parts_total,
                bytes: plan.part_len(index),
                resumed,
            };
            if progress.part_done(part).is_break() && index + 1 < plan.parts_total {
                return Err(BlobError::Interrupted {
                    digest,
                    parts_stored: index + 1,
                    parts_total: plan.parts_total,
                });
            }
        }
        if Hash(*hasher.finalize().as_bytes()) != digest {
            self.remove_parts(&digest).await?;
            return Err(source.changed(&digest));
        }
        if self.stored_len(&digest).await? != Some(len_bytes) {
            match self.join_parts(&plan, &digest).await {
                Ok(()) => {}
                // Another put of the same blob finished first and took the parts away.
                Err(BlobError::Local { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && self.stored_len(&digest).await? == Some(len_bytes) => {}
                Err(e @ BlobError::DigestMismatch { .. }) => {
                    // A stored part is corrupt: start the next put afresh.
                    self.remove_parts(&digest).await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        self.remove_parts(&digest).await?;
        Ok(done)
    }

    /// Joins the stored parts into the blob, verifying its digest on the way.
    async fn join_parts(&self, plan: &PartPlan, digest: &Hash) -> Result<(), BlobError> {
        let parts_dir = self.parts_dir(digest);
        let mut out = VerifiedFile::create(&self.blob_path(digest), self.limits.max_blob_bytes)?;
        let mut buf = vec![0u8; COPY_CHUNK_BYTES];
        for index in 0..plan.parts_total {
            let part_path = parts_dir.join(index.to_string());
            let mut part = tokio::fs::File::open(&part_path)
                .await
                .map_err(local("read", &part_path))?;
            loop {
                let n = part
                    .read(&mut buf)
                    .await
                    .map_err(local("read", &part_path))?;
                if n == 0 {
                    break;
                }
                out.write(&buf[..n]).await?;
            }
        }
        out.finish(digest).await.map(drop)
    }

    async fn write_part(
        &self,
        part_path: &std::path::Path,
        plan: &PartPlan,
        bytes: &[u8],
    ) -> Result<(), BlobError> {
        let mut out = VerifiedFile::create(part_path, plan.part_size_bytes)?;
        out.write(bytes).await?;
        out.finish(&Hash::of(bytes)).await.map(drop)
    }

    /// Removes the parts of `digest`'s put. A concurrent put of the same blob may be writing a
    /// part into the directory meanwhile (the removal then finds it not empty): it is tried
    /// again, and if that put is still at it, left to it — every put removes the parts when it
    /// ends, so the last one leaves none.
    async fn remove_parts(&self, digest: &Hash) -> Result<(), BlobError> {
        let parts_dir = self.parts_dir(digest);
        for _ in 0..5 {
            match tokio::fs::remove_dir_all(&parts_dir).await {
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(local("remove", &parts_dir)(e));
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalStore {
    async fn put_file_with(
        &self,
        path: &Path,
        progress: &dyn PutProgress,
    ) -> Result<BlobRef, BlobError> {
        let hashed = Source::open_file(path, &self.limits).await?;
        self.put_source(hashed, progress).await
    }

    async fn put_bytes(&self, bytes: &[u8]) -> Result<BlobRef, BlobError> {
        let hashed = Source::memory(bytes, &self.limits)?;
        self.put_source(hashed, &crate::NoProgress).await
    }

    async fn get_to_file(&self, digest: &Hash, dest: &Path) -> Result<BlobRef, BlobError> {
        let path = self.blob_path(digest);
        let mut blob = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound { digest: *digest });
            }
            Err(e) => return Err(local("read", &path)(e)),
        };
        let mut out = VerifiedFile::create(dest, self.limits.max_blob_bytes)?;
        let mut buf = vec![0u8; COPY_CHUNK_BYTES];
        loop {
            let n = blob.read(&mut buf).await.map_err(local("read", &path))?;
            if n == 0 {
                break;
            }
            out.write(&buf[..n]).await?;
        }
        let bytes = out.finish(digest).await?;
        Ok(BlobRef {
            digest: *digest,
            bytes,
        })
    }

    async fn exists(&self, digest: &Hash) -> Result<bool, BlobError> {
        Ok(self.stored_len(digest).await?.is_some())
    }

    async fn delete(&self, digest: &Hash) -> Result<(), BlobError> {
        let path = self.blob_path(digest);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(local("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    async fn set_ref(&self, name: &RefName, digest: &Hash) -> Result<(), BlobError> {
        let path = self.ref_path(name);
        let dir = path.parent().expect("a ref path has a parent").to_owned();
        let contents = format!("{}\n", digest.to_hex());
        tokio::task::spawn_blocking(move || {
            gpunet_files::create_private_dir_all(&dir).map_err(local("create directory", &dir))?;
            gpunet_files::write_private(&path, contents.as_bytes()).map_err(local("write", &path))
        })
        .await
        .map_err(|source| BlobError::Task { source })?
    }

    async fn get_ref(&self, name: &RefName) -> Result<Option<Hash>, BlobError> {
        let path = self.ref_path(name);
        let text = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(local("read", &path)(e)),
        };
        parse_ref(name, &text).map(Some)
    }
}

/// A ref's contents: 64 hex digits and an optional newline. Shared with the S3 backend.
pub(crate) fn parse_ref(name: &RefName, text: &[u8]) -> Result<Hash, BlobError> {
    let corrupt = || BlobError::CorruptRef {
        name: name.to_string(),
        found: String::from_utf8_lossy(&text[..text.len().min(80)]).into_owned(),
    };
    let s = std::str::from_utf8(text).map_err(|_| corrupt())?;
    let s = s.strip_suffix('\n').unwrap_or(s);
    if s.len() != 64 {
        return Err(corrupt());
    }
    Hash::from_hex(s).map_err(|_| corrupt())
}
