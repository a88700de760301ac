//! A job's inputs from the tenant's disk: the files and directories a spec's `inputs` names,
//! relative to the spec file, read into `gpunet_protocol::inputs` entries and packed. Links,
//! devices and sockets are refused by name (a link could point anywhere on the tenant's
//! machine; nothing is sent that the spec does not name).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gpunet_protocol::inputs::{
    InputEntry, InputKind, InputsError, MAX_INPUT_ENTRIES, MAX_INPUTS_BYTES, pack,
};

/// Why the inputs could not be read or packed.
#[derive(Debug, thiserror::Error)]
pub enum InputsReadError {
    #[error("cannot read input {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "input {path} is a link, device or socket; only files and directories can be sent (copy the file beside the spec)"
    )]
    NotFileOrDir { path: PathBuf },
    #[error(
        "the inputs are larger than {max} bytes; send less, or fetch large data from inside the job"
    )]
    TooLarge { max: u64 },
    #[error(transparent)]
    Inputs(#[from] InputsError),
}

/// Reads `paths` (as a spec lists them) below `base` and packs them; the archive's entries
/// keep the spec's relative paths, with every directory on the way.
pub fn pack_inputs(base: &Path, paths: &[String]) -> Result<Vec<u8>, InputsReadError> {
    let mut entries = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut total: u64 = 0;
    for path in paths {
        let relative = path.trim_end_matches('/');
        gpunet_protocol::inputs::check_path(relative)?;
        // The directories the path lies in.
        let mut prefix = String::new();
        for part in relative
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, rest)| rest)
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if dirs.insert(prefix.clone()) {
                entries.push(InputEntry {
                    path: prefix.clone(),
                    kind: InputKind::Dir,
                });
            }
        }
        add(base, relative, &mut entries, &mut dirs, &mut total)?;
    }
    Ok(pack(&entries)?)
}

fn add(
    base: &Path,
    relative: &str,
    entries: &mut Vec<InputEntry>,
    dirs: &mut BTreeSet<String>,
    total: &mut u64,
) -> Result<(), InputsReadError> {
    let path = base.join(relative);
    let io = |source| InputsReadError::Io {
        path: path.clone(),
        source,
    };
    let meta = std::fs::symlink_metadata(&path).map_err(io)?;
    if entries.len() >= MAX_INPUT_ENTRIES {
        return Err(InputsError::TooManyEntries {
            count: entries.len() + 1,
            max: MAX_INPUT_ENTRIES,
        }
        .into());
    }
    if meta.is_dir() {
        if dirs.insert(relative.to_owned()) {
            entries.push(InputEntry {
                path: relative.to_owned(),
                kind: InputKind::Dir,
            });
        }
        let mut children: Vec<String> = std::fs::read_dir(&path)
            .map_err(io)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        children.sort();
        for child in children {
            add(base, &format!("{relative}/{child}"), entries, dirs, total)?;
        }
        Ok(())
    } else if meta.is_file() {
        *total = total.saturating_add(meta.len());
        if *total > MAX_INPUTS_BYTES {
            return Err(InputsReadError::TooLarge {
                max: MAX_INPUTS_BYTES,
            });
        }
        let bytes = std::fs::read(&path).map_err(io)?;
        entries.push(InputEntry {
            path: relative.to_owned(),
            kind: InputKind::File {
                bytes,
                executable: meta.permissions().mode() & 0o111 != 0,
            },
        });
        Ok(())
    } else {
        Err(InputsReadError::NotFileOrDir { path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_are_packed_with_their_relative_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("train.py"), "print(1)").expect("writes");
        std::fs::create_dir_all(dir.path().join("data/sub")).expect("mkdir");
        std::fs::write(dir.path().join("data/sub/a.csv"), "1,2").expect("writes");
        let packed = pack_inputs(dir.path(), &["train.py".into(), "data/".into()]).expect("packs");
        let mut paths: Vec<String> = gpunet_protocol::inputs::unpack(&packed)
            .expect("unpacks")
            .into_iter()
            .map(|e| e.path)
            .collect();
        paths.sort();
        assert_eq!(paths, ["data", "data/sub", "data/sub/a.csv", "train.py"]);
        // A file deep in a directory brings its directories along.
        let deep = pack_inputs(dir.path(), &["data/sub/a.csv".into()]).expect("packs");
        assert_eq!(
            gpunet_protocol::inputs::unpack(&deep)
                .expect("unpacks")
                .len(),
            3
        );
    }

    #[test]
    fn links_and_missing_files_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).expect("links");
        let error = pack_inputs(dir.path(), &["link".into()]).expect_err("refused");
        assert!(
            matches!(error, InputsReadError::NotFileOrDir { .. }),
            "{error}"
        );
        let error = pack_inputs(dir.path(), &["missing.py".into()]).expect_err("refused");
        assert!(error.to_string().contains("missing.py"), "{error}");
        let error = pack_inputs(dir.path(), &["../outside".into()]).expect_err("refused");
        assert!(matches!(error, InputsReadError::Inputs(_)), "{error}");
    }
}
