//! What both backends share when they put: the plan of a blob's parts, its source (a file or
//! bytes in memory) read one part at a time, and temporary file names.

use std::io::{Read, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gpunet_protocol::Hash;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{BlobError, Limits, MAX_PARTS, MIB};

/// How a blob of `len_bytes` is cut into parts: all of `part_size_bytes` but the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartPlan {
    pub len_bytes: u64,
    pub part_size_bytes: u64,
    pub parts_total: u32,
}

impl PartPlan {
    /// The plan for a blob of `len_bytes` under `limits`; the part size grows (in whole MiB)
    /// only when the blob would not fit in [`MAX_PARTS`] parts. Deterministic, so a retry of
    /// the same blob plans the same parts.
    pub fn new(len_bytes: u64, limits: &Limits) -> PartPlan {
        let mut part_size_bytes = limits.part_size_bytes;
        if len_bytes.div_ceil(part_size_bytes) > MAX_PARTS {
            part_size_bytes = len_bytes.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        }
        let parts_total = len_bytes.div_ceil(part_size_bytes).max(1);
        PartPlan {
            len_bytes,
            part_size_bytes,
            parts_total: u32::try_from(parts_total).expect("at most MAX_PARTS parts"),
        }
    }

    pub fn offset(&self, index: u32) -> u64 {
        u64::from(index) * self.part_size_bytes
    }

    pub fn part_len(&self, index: u32) -> u64 {
        (self.len_bytes - self.offset(index)).min(self.part_size_bytes)
    }
}

/// Refuses a blob over the store's limit, before anything is read or sent.
pub(crate) fn check_size(what: &str, bytes: u64, limits: &Limits) -> Result<(), BlobError> {
    if bytes > limits.max_blob_bytes {
        return Err(BlobError::TooLarge {
            what: what.to_owned(),
            bytes,
            max_bytes: limits.max_blob_bytes,
        });
    }
    Ok(())
}

/// Where a put's bytes come from. A file is opened once and read twice through the same
/// handle: first whole, to learn its digest (dedup and resume are keyed by it), then part by
/// part while it is sent.
pub(crate) enum Source<'a> {
    File {
        path: PathBuf,
        file: tokio::fs::File,
    },
    Memory(&'a [u8]),
}

/// A source whose digest and length are known.
pub(crate) struct HashedSource<'a> {
    pub source: Source<'a>,
    pub digest: Hash,
    pub len_bytes: u64,
}

impl<'a> Source<'a> {
    /// Opens `path` and hashes it (on a blocking thread, 1 MiB at a time), refusing it if it
    /// is larger than the store's limit.
    pub async fn open_file(path: &Path, limits: &Limits) -> Result<HashedSource<'a>, BlobError> {
        let read_err = |source| BlobError::ReadSource {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        check_size(&path.display().to_string(), meta.len(), limits)?;
        let max_bytes = limits.max_blob_bytes;
        let (file, digest, len_bytes) = tokio::task::spawn_blocking(move || {
            let mut hasher = blake3::Hasher::new();
            // One more byte than the limit: a file that grew past it is refused, not hashed on.
            let len = std::io::copy(&mut (&file).take(max_bytes + 1), &mut hasher)?;
            Ok::<_, std::io::Error>((file, Hash(*hasher.finalize().as_bytes()), len))
        })
        .await
        .map_err(|source| BlobError::Task { source })?
        .map_err(read_err)?;
        check_size(&path.display().to_string(), len_bytes, limits)?;
        Ok(HashedSource {
            source: Source::File {
                path: path.to_owned(),
                file: tokio::fs::File::from_std(file),
            },
            digest,
            len_bytes,
        })
    }

    pub fn memory(bytes: &'a [u8], limits: &Limits) -> Result<HashedSource<'a>, BlobError> {
        let len_bytes = bytes.len() as u64;
        check_size("the bytes to put", len_bytes, limits)?;
        Ok(HashedSource {
            source: Source::Memory(bytes),
            digest: Hash::of(bytes),
            len_bytes,
        })
    }

    /// Reads part `index` of `plan`. A file that became shorter since it was hashed is
    /// [`BlobError::SourceChanged`].
    pub async fn read_part(
        &mut self,
        plan: &PartPlan,
        index: u32,
        digest: &Hash,
    ) -> Result<Vec<u8>, BlobError> {
        let offset = plan.offset(index);
        let len = plan.part_len(index);
        match self {
            Source::Memory(bytes) => {
                let start = usize::try_from(offset).expect("in memory");
                let end = usize::try_from(offset + len).expect("in memory");
                Ok(bytes[start..end].to_vec())
            }
            Source::File { path, file } => {
                let read_err = |source| BlobError::ReadSource {
                    path: path.clone(),
                    source,
                };
                file.seek(SeekFrom::Start(offset)).await.map_err(read_err)?;
                let mut buf = vec![0u8; usize::try_from(len).expect("a part fits in memory")];
                match file.read_exact(&mut buf).await {
                    Ok(_) => Ok(buf),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        Err(BlobError::SourceChanged {
                            path: path.clone(),
                            expected: *digest,
                        })
                    }
                    Err(e) => Err(read_err(e)),
                }
            }
        }
    }

    /// The error for a source whose bytes, read part by part, did not hash to `digest`.
    pub fn changed(&self, digest: &Hash) -> BlobError {
        BlobError::SourceChanged {
            path: match self {
                Source::File { path, .. } => path.clone(),
                Source::Memory(_) => PathBuf::from("<bytes in memory>"),
            },
            expected: *digest,
        }
    }
}

/// A name for a temporary file beside `final_name`, unique within this host: `.` (hidden, and
/// never a valid ref segment or blob name), the final name, the process id and a counter.
pub(crate) fn temp_name(final_name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{final_name}.{}.{n}.tmp", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_blob_exactly() {
        let limits = |part| Limits {
            part_size_bytes: part,
            max_blob_bytes: u64::MAX,
        };
        for (len, part, total) in [(0, 8, 1), (1, 8, 1), (8, 8, 1), (9, 8, 2), (20, 8, 3)] {
            let plan = PartPlan::new(len, &limits(part));
            assert_eq!(plan.parts_total, total, "len {len}");
            let sum: u64 = (0..plan.parts_total).map(|i| plan.part_len(i)).sum();
            assert_eq!(sum, len);
        }
        // Too many parts: the part size grows to whole MiB, and S3's 10,000 parts still hold it.
        let plan = PartPlan::new(200 * 1024 * MIB, &limits(8 * MIB));
        assert_eq!(plan.part_size_bytes, 21 * MIB);
        assert!(u64::from(plan.parts_total) <= MAX_PARTS);
        assert_eq!(
            plan.offset(plan.parts_total - 1) + plan.part_len(plan.parts_total - 1),
            200 * 1024 * MIB
        );
    }
}
