//! A job's inputs (code, data) as they travel from the tenant to the provider: one tar archive,
//! packed deterministically by the CLI from the files the spec's `inputs` names, sealed to the
//! provider (purpose `Inputs`), and committed to by the manifest (the archive's BLAKE3 and
//! size), so the provider checks it got exactly what the order was made for.
//!
//! The archive holds only directories and regular files (executable or not) under relative
//! paths without `..`: no links, devices or absolute paths, whatever a hostile tenant writes.
//! [`unpack`] checks every entry and every limit before anything touches a disk, and gives the
//! entries back in memory; the agent writes them.
//!
//! Architecture Invariant: pure — packing and unpacking work on bytes in memory.

use std::collections::BTreeSet;

/// Largest packed archive, in bytes (before sealing).
pub const MAX_INPUTS_BYTES: u64 = 64 * 1024 * 1024;
/// Most entries (files and directories) an archive may hold.
pub const MAX_INPUT_ENTRIES: usize = 10_000;
/// Longest path of an entry, in bytes.
pub const MAX_INPUT_PATH_BYTES: usize = 1024;

/// One file or directory of a job's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputEntry {
    /// Relative, `/`-separated, without `.` or `..` components.
    pub path: String,
    pub kind: InputKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    Dir,
    File { bytes: Vec<u8>, executable: bool },
}

/// Why inputs could not be packed or were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputsError {
    #[error("input path {path:?} is not allowed: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("input {path:?} appears twice")]
    Duplicate { path: String },
    #[error("the inputs hold {count} entries, over the limit of {max}")]
    TooManyEntries { count: usize, max: usize },
    #[error(
        "the inputs take {bytes} bytes packed, over the limit of {max} bytes; send less, or fetch large data from inside the job"
    )]
    TooLarge { bytes: u64, max: u64 },
    #[error("input {path:?} is a {kind}; only files and directories can be sent")]
    UnsupportedKind { path: String, kind: String },
    #[error("the inputs archive is damaged: {why}")]
    Malformed { why: String },
}

/// Checks one entry path: relative, `/`-separated, no empty, `.` or `..` components, no NUL,
/// at most [`MAX_INPUT_PATH_BYTES`].
pub fn check_path(path: &str) -> Result<(), InputsError> {
    let bad = |why| {
        Err(InputsError::BadPath {
            path: path.to_owned(),
            why,
        })
    };
    if path.is_empty() {
        return bad("it is empty");
    }
    if path.len() > MAX_INPUT_PATH_BYTES {
        return bad("it is longer than 1024 bytes");
    }
    if path.starts_with('/') {
        return bad("it is absolute; inputs are relative to the spec file");
    }
    if path.contains('\0') || path.contains('\\') {
        return bad("it contains a NUL byte or a backslash");
    }
    for part in path.split('/') {
        match part {
            "" => return bad("it has an empty component (`//` or a trailing `/`)"),
            "." | ".." => return bad("it has a `.` or `..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Packs `entries` into a tar archive, the same bytes for the same entries whatever their
/// order: sorted by path, owner 0, mtime 0, mode 0755 for directories and executables and 0644
/// for other files. Every directory an entry lies in must be an entry too.
pub fn pack(entries: &[InputEntry]) -> Result<Vec<u8>, InputsError> {
    if entries.len() > MAX_INPUT_ENTRIES {
        return Err(InputsError::TooManyEntries {
            count: entries.len(),
            max: MAX_INPUT_ENTRIES,
        });
    }
    let mut sorted: Vec<&InputEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    check_tree(
        sorted
            .iter()
            .map(|e| (e.path.as_str(), matches!(e.kind, InputKind::Dir))),
    )?;
    let mut builder = tar::Builder::new(Vec::new());
    for entry in sorted {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let (data, mode, kind): (&[u8], u32, tar::EntryType) = match &entry.kind {
            InputKind::Dir => (&[], 0o755, tar::EntryType::Directory),
            InputKind::File { bytes, executable } => (
                bytes,
                if *executable { 0o755 } else { 0o644 },
                tar::EntryType::Regular,
            ),
        };
        header.set_mode(mode);
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, &entry.path, data)
            .map_err(|e| InputsError::Malformed {
                why: format!("cannot pack {:?}: {e}", entry.path),
            })?;
    }
    let bytes = builder.into_inner().map_err(|e| InputsError::Malformed {
        why: format!("cannot finish the archive: {e}"),
    })?;
    if bytes.len() as u64 > MAX_INPUTS_BYTES {
        return Err(InputsError::TooLarge {
            bytes: bytes.len() as u64,
            max: MAX_INPUTS_BYTES,
        });
    }
    Ok(bytes)
}

/// Every path valid and unique, and every parent directory present as a directory entry.
fn check_tree<'a>(entries: impl Iterator<Item = (&'a str, bool)>) -> Result<(), InputsError> {
    let mut dirs = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (path, is_dir) in entries {
        check_path(path)?;
        if !seen.insert(path) {
            return Err(InputsError::Duplicate {
                path: path.to_owned(),
            });
        }
        if let Some((parent, _)) = path.rsplit_once('/')
            && !dirs.contains(parent)
        {
            return Err(InputsError::BadPath {
                path: path.to_owned(),
                why: "its directory is not among the inputs (list directories before their contents)",
            });
        }
        if is_dir {
            dirs.insert(path);
        }
    }
    Ok(())
}

/// Reads a packed archive back, refusing anything [`pack`] would not have made: entries other
/// than directories and regular files, bad paths, duplicates, a file whose directory comes
/// later, more than [`MAX_INPUT_ENTRIES`], an archive over [`MAX_INPUTS_BYTES`].
pub fn unpack(archive: &[u8]) -> Result<Vec<InputEntry>, InputsError> {
    if archive.len() as u64 > MAX_INPUTS_BYTES {
        return Err(InputsError::TooLarge {
            bytes: archive.len() as u64,
            max: MAX_INPUTS_BYTES,
        });
    }
    if !archive.len().is_multiple_of(512) || archive.len() < 1024 {
        return Err(InputsError::Malformed {
            why: format!(
                "{} bytes is not a tar archive (a whole number of 512-byte blocks, ending in two empty ones)",
                archive.len()
            ),
        });
    }
    let malformed = |e: std::io::Error| InputsError::Malformed { why: e.to_string() };
    let mut reader = tar::Archive::new(archive);
    let mut out = Vec::new();
    for entry in reader.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        if out.len() >= MAX_INPUT_ENTRIES {
            return Err(InputsError::TooManyEntries {
                count: out.len() + 1,
                max: MAX_INPUT_ENTRIES,
            });
        }
        let raw = entry.path_bytes().into_owned();
        let path = String::from_utf8(raw).map_err(|_| InputsError::BadPath {
            path: "(not UTF-8)".into(),
            why: "it is not UTF-8",
        })?;
        let path = path.trim_end_matches('/').to_owned();
        let header = entry.header();
        let mode = header.mode().map_err(malformed)?;
        let kind = match header.entry_type() {
            tar::EntryType::Directory => InputKind::Dir,
            tar::EntryType::Regular => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(malformed)?;
                InputKind::File {
                    bytes,
                    executable: mode & 0o111 != 0,
                }
            }
            other => {
                return Err(InputsError::UnsupportedKind {
                    path,
                    kind: format!("{other:?}").to_lowercase(),
                });
            }
        };
        out.push(InputEntry { path, kind });
    }
    check_tree(
        out.iter()
            .map(|e| (e.path.as_str(), matches!(e.kind, InputKind::Dir))),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, bytes: &[u8]) -> InputEntry {
        InputEntry {
            path: path.into(),
            kind: InputKind::File {
                bytes: bytes.to_vec(),
                executable: false,
            },
        }
    }

    fn dir(path: &str) -> InputEntry {
        InputEntry {
            path: path.into(),
            kind: InputKind::Dir,
        }
    }

    #[test]
    fn inputs_pack_and_unpack_to_the_same_entries_whatever_their_order() {
        let entries = vec![
            file("train.py", b"print('hi')"),
            dir("data"),
            file("data/a.csv", b"1,2\n"),
            InputEntry {
                path: "run.sh".into(),
                kind: InputKind::File {
                    bytes: b"#!/bin/sh\n".to_vec(),
                    executable: true,
                },
            },
        ];
        let packed = pack(&entries).expect("packs");
        let mut reversed = entries.clone();
        reversed.reverse();
        assert_eq!(pack(&reversed).expect("packs"), packed, "deterministic");
        let mut back = unpack(&packed).expect("unpacks");
        back.sort_by(|a, b| a.path.cmp(&b.path));
        let mut expected = entries;
        expected.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(back, expected);
    }

    #[test]
    fn paths_that_climb_out_or_are_absolute_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/",
            "",
            "a\\b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_path("data/train.csv").is_ok());
        assert!(matches!(
            pack(&[file("../escape", b"x")]),
            Err(InputsError::BadPath { .. })
        ));
        assert!(matches!(
            pack(&[file("data/x", b"x")]),
            Err(InputsError::BadPath { .. })
        ));
        assert!(matches!(
            pack(&[file("a", b"x"), file("a", b"y")]),
            Err(InputsError::Duplicate { .. })
        ));
    }

    /// A hand-made archive with one entry of the given type and name, as a hostile tenant
    /// could send.
    fn raw_archive(kind: tar::EntryType, name: &[u8], link: Option<&str>) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(0);
        header.set_mode(0o644);
        {
            let bytes = header.as_old_mut();
            bytes.name[..name.len()].copy_from_slice(name);
        }
        if let Some(link) = link {
            header.set_link_name(link).expect("link name");
        }
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &[][..]).expect("appends");
        builder.into_inner().expect("finishes")
    }

    #[test]
    fn hostile_archives_are_refused_before_anything_is_written() {
        let symlink = raw_archive(tar::EntryType::Symlink, b"key", Some("/etc/shadow"));
        assert!(matches!(
            unpack(&symlink),
            Err(InputsError::UnsupportedKind { .. })
        ));
        let hardlink = raw_archive(tar::EntryType::Link, b"key", Some("/etc/shadow"));
        assert!(matches!(
            unpack(&hardlink),
            Err(InputsError::UnsupportedKind { .. })
        ));
        let device = raw_archive(tar::EntryType::Char, b"null", None);
        assert!(matches!(
            unpack(&device),
            Err(InputsError::UnsupportedKind { .. })
        ));
        let climbing = raw_archive(tar::EntryType::Regular, b"../../x", None);
        assert!(matches!(
            unpack(&climbing),
            Err(InputsError::BadPath { .. })
        ));
        let absolute = raw_archive(tar::EntryType::Regular, b"/etc/x", None);
        assert!(matches!(
            unpack(&absolute),
            Err(InputsError::BadPath { .. })
        ));
        assert!(matches!(
            unpack(&vec![0u8; (MAX_INPUTS_BYTES + 1) as usize]),
            Err(InputsError::TooLarge { .. })
        ));
        assert!(unpack(b"not a tar archive at all, just text that is long enough").is_err());
    }
}
