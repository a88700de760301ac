//! A finished workload's outputs: every regular file under its outputs directory is copied into
//! the agent's content-addressed blob store (`blobs/<blake3 hex>`) and listed, sorted by path,
//! with its size and digest. The listing's digest is what the provider reports on chain.
//!
//! Symlinks and special files are skipped (a workload must not make the agent read files
//! outside its directory), and everything has a limit: total bytes, file count, depth.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use gpunet_api::provider::{OutputFile, OutputListing};
use gpunet_protocol::{Hash, LeaseId};

/// Most bytes of outputs kept per lease: 1 GiB.
pub const MAX_OUTPUT_BYTES: u64 = 1024 * 1024 * 1024;
/// Most output files kept per lease.
pub const MAX_OUTPUT_FILES: usize = 10_000;
/// Deepest directory nesting walked under the outputs directory.
pub const MAX_OUTPUT_DEPTH: usize = 32;
/// Size of one read while copying a file into the blob store.
const COPY_BUFFER_BYTES: usize = 64 * 1024;

/// Why outputs could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("outputs exceed the limit of {max_bytes} bytes; none were kept")]
    TooLarge { max_bytes: u64 },
    #[error("outputs hold more than {max_files} files; none were kept")]
    TooManyFiles { max_files: usize },
    #[error("could not {action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OutputError {
    let path = path.to_path_buf();
    move |source| OutputError::Io {
        action,
        path,
        source,
    }
}

/// Where the blob with `digest` lives under `blobs_dir`.
pub fn blob_path(blobs_dir: &Path, digest: &Hash) -> PathBuf {
    blobs_dir.join(digest.to_hex())
}

/// Copies every regular file under `outputs_dir` into `blobs_dir` and lists them, sorted by
/// path. A missing `outputs_dir` gives an empty listing. Blocking: call from `spawn_blocking`.
pub fn collect_outputs(
    lease: LeaseId,
    outputs_dir: &Path,
    blobs_dir: &Path,
) -> Result<OutputListing, OutputError> {
    let found = walk(outputs_dir)?;
    let total: u64 = found.iter().map(|(_, _, size)| size).sum();
    if total > MAX_OUTPUT_BYTES {
        return Err(OutputError::TooLarge {
            max_bytes: MAX_OUTPUT_BYTES,
        });
    }
    gpunet_files::create_private_dir_all(blobs_dir).map_err(io("create", blobs_dir))?;
    let mut files = Vec::with_capacity(found.len());
    // Files may still grow while they are copied; the limit counts what was really copied.
    let mut budget = MAX_OUTPUT_BYTES;
    for (rel, path, _) in found {
        let (digest, size) = store_blob(&path, blobs_dir, budget)?;
        budget -= size;
        files.push(OutputFile {
            path: rel,
            size,
            digest,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let digest = OutputListing::digest_of(&files);
    Ok(OutputListing {
        lease,
        files,
        digest,
    })
}

/// Regular files under `root`: (relative `/`-separated path, full path, size). Symlinks,
/// special files and names that are not UTF-8 are skipped.
fn walk(root: &Path) -> Result<Vec<(String, PathBuf, u64)>, OutputError> {
    let mut out = Vec::new();
    match std::fs::symlink_metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(OutputError::Io {
                action: "inspect",
                path: root.to_path_buf(),
                source,
            });
        }
    }
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(io("read", &dir))?;
        for entry in entries {
            let entry = entry.map_err(io("read", &dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(?path, "skipping an output whose name is not UTF-8");
                continue;
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            // symlink_metadata: never follow a link the workload made.
            let meta = std::fs::symlink_metadata(&path).map_err(io("inspect", &path))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                if depth + 1 >= MAX_OUTPUT_DEPTH {
                    tracing::warn!(?path, "skipping outputs nested deeper than the limit");
                    continue;
                }
                stack.push((path, rel, depth + 1));
            } else if kind.is_file() {
                if out.len() >= MAX_OUTPUT_FILES {
                    return Err(OutputError::TooManyFiles {
                        max_files: MAX_OUTPUT_FILES,
                    });
                }
                out.push((rel, path, meta.len()));
            } else {
                tracing::debug!(?path, "skipping an output that is not a regular file");
            }
        }
    }
    Ok(out)
}

/// Copies `path` into the blob store under its BLAKE3 digest, reading at most `budget` bytes.
fn store_blob(path: &Path, blobs_dir: &Path, budget: u64) -> Result<(Hash, u64), OutputError> {
    let mut src = std::fs::File::open(path).map_err(io("open", path))?;
    let tmp = blobs_dir.join(format!(
        ".incoming-{}",
        blake3::hash(path.as_os_str().as_encoded_bytes()).to_hex()
    ));
    // A leftover from an interrupted copy may have any mode; blobs are made fresh, 0600.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove", &tmp)(e)),
        _ => {}
    }
    let mut dst = gpunet_files::create_private_new(&tmp).map_err(io("create", &tmp))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut size: u64 = 0;
    loop {
        let n = src.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > budget {
            drop(dst);
            let _ = std::fs::remove_file(&tmp);
            return Err(OutputError::TooLarge {
                max_bytes: MAX_OUTPUT_BYTES,
            });
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(io("write", &tmp))?;
    }
    dst.sync_all().map_err(io("sync", &tmp))?;
    let digest = Hash(*hasher.finalize().as_bytes());
    let final_path = blob_path(blobs_dir, &digest);
    std::fs::rename(&tmp, &final_path).map_err(io("rename", &final_path))?;
    Ok((digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_is_sorted_content_addressed_and_skips_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("outputs");
        let blobs = dir.path().join("blobs");
        std::fs::create_dir_all(out.join("model/sub")).expect("mkdir");
        std::fs::write(out.join("z.txt"), b"last").expect("write");
        std::fs::write(out.join("a.txt"), b"first").expect("write");
        std::fs::write(out.join("model/sub/w.bin"), b"weights").expect("write");
        std::fs::write(out.join("model/b.txt"), b"first").expect("write");
        std::fs::write(dir.path().join("secret"), b"do not read").expect("write");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret"), out.join("link"))
                .expect("symlink");
            std::os::unix::fs::symlink(dir.path(), out.join("dirlink")).expect("symlink");
        }

        let listing = collect_outputs(LeaseId(3), &out, &blobs).expect("collects");
        let paths: Vec<&str> = listing.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "model/b.txt", "model/sub/w.bin", "z.txt"]);
        for f in &listing.files {
            let contents = std::fs::read(out.join(&f.path)).expect("read");
            assert_eq!(f.digest, Hash::of(&contents), "{}", f.path);
            assert_eq!(f.size, contents.len() as u64);
            let stored = std::fs::read(blob_path(&blobs, &f.digest)).expect("blob");
            assert_eq!(stored, contents);
        }
        assert_eq!(listing.lease, LeaseId(3));
        assert_eq!(listing.digest, OutputListing::digest_of(&listing.files));
        // The same contents give the same listing digest, again.
        let again = collect_outputs(LeaseId(3), &out, &blobs).expect("collects");
        assert_eq!(again.digest, listing.digest);
        // No stray temporary files are left in the blob store.
        let blob_count = std::fs::read_dir(&blobs).expect("read").count();
        assert_eq!(blob_count, 3, "a.txt and model/b.txt share one blob");
    }

    #[test]
    fn a_missing_outputs_directory_is_an_empty_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listing = collect_outputs(LeaseId(1), &dir.path().join("nope"), &dir.path().join("b"))
            .expect("collects");
        assert!(listing.files.is_empty());
        assert_eq!(listing.digest, OutputListing::digest_of(&[]));
    }

    #[test]
    fn the_listing_digest_changes_with_any_path_size_or_content() {
        let file = |path: &str, contents: &[u8]| OutputFile {
            path: path.into(),
            size: contents.len() as u64,
            digest: Hash::of(contents),
        };
        let base = OutputListing::digest_of(&[file("a", b"1"), file("b", b"2")]);
        assert_eq!(
            base,
            OutputListing::digest_of(&[file("a", b"1"), file("b", b"2")])
        );
        assert_ne!(
            base,
            OutputListing::digest_of(&[file("a", b"1"), file("c", b"2")])
        );
        assert_ne!(
            base,
            OutputListing::digest_of(&[file("a", b"1"), file("b", b"3")])
        );
    }

    #[test]
    fn a_file_growing_past_the_budget_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        std::fs::write(&f, b"0123456789").expect("write");
        let blobs = dir.path().join("blobs");
        std::fs::create_dir_all(&blobs).expect("mkdir");
        assert!(matches!(
            store_blob(&f, &blobs, 9),
            Err(OutputError::TooLarge { .. })
        ));
        assert_eq!(std::fs::read_dir(&blobs).expect("read").count(), 0);
        assert_eq!(store_blob(&f, &blobs, 10).expect("fits").1, 10);
    }
}
