//! A download's destination: a private temporary file beside the destination, hashed as it is
//! written and renamed into place only when the digest matches. Dropped without
//! [`VerifiedFile::finish`] (an error, a cancelled future), it removes itself.

use std::path::{Path, PathBuf};

use gpunet_protocol::Hash;
use tokio::io::AsyncWriteExt;

use crate::BlobError;
use crate::parts::temp_name;

pub(crate) struct VerifiedFile {
    dest: PathBuf,
    /// `Some` until the file is renamed into place; removed on drop while `Some`.
    temp: Option<PathBuf>,
    file: tokio::fs::File,
    hasher: blake3::Hasher,
    written_bytes: u64,
    max_bytes: u64,
}

fn local(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BlobError {
    let path = path.to_owned();
    move |source| BlobError::Local {
        action,
        path,
        source,
    }
}

impl VerifiedFile {
    /// Starts a download to `dest`, creating its missing parent directories (0700).
    pub fn create(dest: &Path, max_bytes: u64) -> Result<VerifiedFile, BlobError> {
        let name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BlobError::Local {
                action: "write to",
                path: dest.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the destination has no UTF-8 file name",
                ),
            })?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        gpunet_files::create_private_dir_all(&dir).map_err(local("create directory", &dir))?;
        let temp = dir.join(temp_name(name));
        let file = gpunet_files::create_private_new(&temp).map_err(local("create", &temp))?;
        Ok(VerifiedFile {
            dest: dest.to_owned(),
            temp: Some(temp),
            file: tokio::fs::File::from_std(file),
            hasher: blake3::Hasher::new(),
            written_bytes: 0,
            max_bytes,
        })
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.written_bytes += chunk.len() as u64;
        if self.written_bytes > self.max_bytes {
            return Err(BlobError::TooLarge {
                what: format!("the download to {}", self.dest.display()),
                bytes: self.written_bytes,
                max_bytes: self.max_bytes,
            });
        }
        self.hasher.update(chunk);
        let temp = self.temp.as_deref().expect("not finished");
        self.file
            .write_all(chunk)
            .await
            .map_err(local("write", temp))
    }

    /// Checks the digest; if it is `expected`, makes the file durable and renames it to the
    /// destination. Otherwise the temporary file is removed and nothing is left.
    pub async fn finish(mut self, expected: &Hash) -> Result<u64, BlobError> {
        let actual = Hash(*self.hasher.finalize().as_bytes());
        if actual != *expected {
            return Err(BlobError::DigestMismatch {
                expected: *expected,
                actual,
            });
        }
        let temp = self.temp.clone().expect("not finished");
        self.file.flush().await.map_err(local("write", &temp))?;
        self.file.sync_all().await.map_err(local("sync", &temp))?;
        tokio::fs::rename(&temp, &self.dest)
            .await
            .map_err(local("rename into place", &self.dest))?;
        self.temp = None;
        // The rename is durable once the directory is.
        if let Some(dir) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            let dir_file = tokio::fs::File::open(dir)
                .await
                .map_err(local("open directory", dir))?;
            dir_file.sync_all().await.map_err(local("sync", dir))?;
        }
        Ok(self.written_bytes)
    }
}

impl Drop for VerifiedFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            // Best effort: the file is hidden and named as ours if removing it fails.
            let _ = std::fs::remove_file(temp);
        }
    }
}
