//! `gpunet-files`: the one place gpunet creates files and directories that are nobody else's
//! business, and reads secrets.
//!
//! Everything a node, an agent or the CLI writes under its home — keys, the chain store, lease
//! directories, logs, records, output blobs, bench figures — is created owner-only: directories
//! [`PRIVATE_DIR_MODE`] (0700), files [`PRIVATE_FILE_MODE`] (0600). The mode is given at
//! creation (`DirBuilder::mode`, `OpenOptions::mode`), so there is no moment in which the file
//! exists with wider permissions; the process umask can only narrow it further.
//!
//! Directories and files that already exist keep their mode: a home passed as `--data /tmp`
//! must not have `/tmp` narrowed under everyone else. Secrets are the exception in the other
//! direction: [`read_secret`] refuses a file that group or others may read or write, and says
//! which `chmod` fixes it — better to stop than to use a key someone else may have copied.
//!
//! Architecture Invariant: no gpunet types, no policy beyond modes; Unix only (as is gpunet).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of every directory gpunet creates: the owner may list, enter and change it.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of every file gpunet creates: the owner may read and write it.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Permission bits a secret must not have: any access by group or others.
const GROUP_OTHER_BITS: u32 = 0o077;
/// Largest secret [`read_secret`] reads; key files are a few hundred bytes.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// A secret file that group or others may read or change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} has mode {mode:04o}, so users other than its owner can read or change this secret; \
     make it the owner's alone with `chmod 600 {}` (and treat the key as leaked if others \
     could read it)",
    .path.display(),
    .path.display()
)]
pub struct ExposedSecret {
    pub path: PathBuf,
    /// The permission bits found (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Why [`read_secret`] returned no secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is larger than {max_bytes} bytes; it is not a key file", .path.display())]
    TooLarge { path: PathBuf, max_bytes: u64 },
    #[error(transparent)]
    Exposed(#[from] ExposedSecret),
}

/// Refuses `mode` for a secret at `path` if group or others have any access.
pub fn check_secret_mode(path: &Path, mode: u32) -> Result<(), ExposedSecret> {
    if mode & GROUP_OTHER_BITS == 0 {
        Ok(())
    } else {
        Err(ExposedSecret {
            path: path.to_owned(),
            mode: mode & 0o7777,
        })
    }
}

/// Reads the secret at `path` after checking that only its owner may read or write it. The
/// mode is read from the opened file, so it is the mode of what is read (a symlink's target).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    let read_err = |source| SecretFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    check_secret_mode(path, meta.mode())?;
    if meta.len() > MAX_SECRET_BYTES {
        return Err(SecretFileError::TooLarge {
            path: path.to_owned(),
            max_bytes: MAX_SECRET_BYTES,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    Ok(bytes)
}

/// Creates `path` and its missing parents with mode 0700. Existing ones keep their mode.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)
}

/// Creates a new file with mode 0600 for writing; fails with `AlreadyExists` if there is one.
pub fn create_private_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
}

/// Opens `path` for appending, creating it with mode 0600 if it is missing.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
}

/// Creates `path` empty with mode 0600 if it is missing; leaves an existing file untouched.
/// For files another library opens by path (the redb stores).
pub fn touch_private(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .map(drop)
}

/// Replaces `path` with `bytes`: written to a fresh 0600 file beside it, then renamed over it,
/// so readers see the old contents or the new, and the new file is 0600 whatever the old was.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_private(path, bytes, false)
}

/// As [`write_private`], and durable: the file's bytes are synced before the rename, and the
/// directory after it, so a crash leaves the old contents or the new, never an empty file.
pub fn write_private_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_private(path, bytes, true)
}

fn replace_private(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    // A leftover from a crash may have any mode; start from a file this call created.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = create_private_new(&tmp)?;
    file.write_all(bytes)?;
    if durable {
        file.sync_all()?;
    }
    drop(file);
    std::fs::rename(&tmp, path)?;
    if durable && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn directories_and_files_are_created_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c");
        create_private_dir_all(&deep).expect("creates");
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode_of(&dir.path().join(d)), 0o700, "{d}");
        }
        let new = deep.join("new");
        create_private_new(&new).expect("creates");
        assert_eq!(mode_of(&new), 0o600);
        let log = deep.join("log");
        open_private_append(&log).expect("opens");
        assert_eq!(mode_of(&log), 0o600);
        let store = deep.join("store");
        touch_private(&store).expect("touches");
        assert_eq!(mode_of(&store), 0o600);
        let written = deep.join("written.json");
        write_private(&written, b"{}").expect("writes");
        assert_eq!(mode_of(&written), 0o600);
        assert_eq!(std::fs::read(&written).expect("reads"), b"{}");
    }

    #[test]
    fn an_existing_directory_keeps_its_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        create_private_dir_all(&shared.join("mine")).expect("creates");
        assert_eq!(mode_of(&shared), 0o755);
        assert_eq!(mode_of(&shared.join("mine")), 0o700);
    }

    #[test]
    fn rewriting_a_world_readable_file_makes_it_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api.json");
        std::fs::write(&path, b"old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        // A stale temporary file from a crash, wide open, must not be reused.
        let tmp = dir.path().join(".api.json.tmp");
        std::fs::write(&tmp, b"stale").expect("write");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        write_private(&path, b"new").expect("writes");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(std::fs::read(&path).expect("reads"), b"new");
        assert!(!tmp.exists());
    }

    #[test]
    fn a_secret_readable_or_writable_by_others_is_refused_with_the_chmod_that_fixes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.json");
        std::fs::write(&path, b"secret").expect("write");
        for mode in [0o644, 0o666, 0o640, 0o620, 0o604, 0o602, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            match read_secret(&path) {
                Err(SecretFileError::Exposed(e)) => {
                    assert_eq!(e.mode, mode);
                    let text = e.to_string();
                    assert!(text.contains(&format!("{mode:04o}")), "{text}");
                    assert!(
                        text.contains(&format!("chmod 600 {}", path.display())),
                        "{text}"
                    );
                }
                other => panic!("mode {mode:o} was not refused: {other:?}"),
            }
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(read_secret(&path).expect("owner-only is fine"), b"secret");
        }
    }

    #[test]
    fn a_symlink_to_an_exposed_secret_is_judged_by_its_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, b"secret").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(matches!(
            read_secret(&link),
            Err(SecretFileError::Exposed(_))
        ));
    }

    #[test]
    fn a_missing_secret_is_a_read_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing.json");
        let error = read_secret(&path).expect_err("missing");
        assert!(matches!(error, SecretFileError::Read { .. }));
        assert!(error.to_string().contains("missing.json"));
    }
}
