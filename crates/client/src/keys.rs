//! Key files: one ed25519 account key per JSON file, readable only by its owner; and an
//! agent's X25519 encryption secret, in a file of its own beside its data. Both are written
//! 0600 and refused on load when group or others may read or change them
//! ([`KeyError::Exposed`], which names the `chmod 600` that fixes it).

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use gpunet_protocol::{Address, EncryptionKey, EncryptionSecret};
use serde::{Deserialize, Serialize};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path} (create one with `gpunet wallet new --out {path}`)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite a key (move it away first)")]
    Exists { path: PathBuf },
    #[error("{path} is not a gpunet key file: {why}")]
    Malformed { path: PathBuf, why: String },
    #[error(transparent)]
    Exposed(#[from] gpunet_files::ExposedSecret),
}

/// Reads a key file, refusing one that others may read or change (see [`gpunet_files`]).
fn read_key_text(path: &Path) -> Result<String, KeyError> {
    let bytes = gpunet_files::read_secret(path).map_err(|e| match e {
        gpunet_files::SecretFileError::Read { source, .. } => KeyError::Read {
            path: path.to_owned(),
            source,
        },
        gpunet_files::SecretFileError::TooLarge { max_bytes, .. } => KeyError::Malformed {
            path: path.to_owned(),
            why: format!("it is larger than {max_bytes} bytes"),
        },
        gpunet_files::SecretFileError::Exposed(exposed) => KeyError::Exposed(exposed),
    })?;
    String::from_utf8(bytes).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        why: "it is not UTF-8 text".into(),
    })
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    address: Address,
    secret_key_hex: String,
}

/// An account key loaded in memory.
#[derive(Clone)]
pub struct KeyFile {
    pub key: SigningKey,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyFile({})", self.address())
    }
}

impl KeyFile {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> KeyFile {
        KeyFile {
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    pub fn address(&self) -> Address {
        Address::from_key(&self.key.verifying_key())
    }

    /// The X25519 secret this account opens its jobs' outputs with. Derived from the account
    /// key (`EncryptionSecret::derive_from_account_secret`), so it is never stored.
    pub fn output_secret(&self) -> EncryptionSecret {
        EncryptionSecret::derive_from_account_secret(&self.key.to_bytes())
    }

    /// Writes the key, failing if the file exists. Mode 0600 on Unix.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        let body = OnDisk {
            address: self.address(),
            secret_key_hex: hex::encode(self.key.to_bytes()),
        };
        write_new(path, &body)
    }

    pub fn load(path: &Path) -> Result<KeyFile, KeyError> {
        let text = read_key_text(path)?;
        let malformed = |why: String| KeyError::Malformed {
            path: path.to_owned(),
            why,
        };
        let disk: OnDisk = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(disk.secret_key_hex.trim(), &mut bytes)
            .map_err(|_| malformed("secret_key_hex is not 64 hex characters".into()))?;
        let kf = KeyFile {
            key: SigningKey::from_bytes(&bytes),
        };
        if kf.address() != disk.address {
            return Err(malformed(format!(
                "the address {} does not belong to the secret key (which is {})",
                disk.address,
                kf.address()
            )));
        }
        Ok(kf)
    }
}

/// An agent's encryption secret on disk.
#[derive(Serialize, Deserialize)]
struct EncryptionOnDisk {
    public_key: EncryptionKey,
    secret_key_hex: String,
}

/// Loads the X25519 encryption secret at `path`, or creates one from the operating system's
/// randomness (mode 0600) if there is none. The agent registers its public key on chain;
/// tenants seal manifests to it.
pub fn load_or_create_encryption_secret(path: &Path) -> Result<EncryptionSecret, KeyError> {
    if !path.exists() {
        let secret = crate::sealing::random_secret();
        let body = EncryptionOnDisk {
            public_key: secret.public(),
            secret_key_hex: hex::encode(secret.to_bytes()),
        };
        match write_new(path, &body) {
            Ok(()) => return Ok(secret),
            // Another process created it first: use theirs.
            Err(KeyError::Exists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let text = read_key_text(path)?;
    let malformed = |why: String| KeyError::Malformed {
        path: path.to_owned(),
        why,
    };
    let disk: EncryptionOnDisk =
        serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(disk.secret_key_hex.trim(), &mut bytes)
        .map_err(|_| malformed("secret_key_hex is not 64 hex characters".into()))?;
    let secret = EncryptionSecret::from_bytes(bytes);
    bytes.fill(0);
    if secret.public() != disk.public_key {
        return Err(malformed(format!(
            "the public key {} does not belong to the secret key (which is {})",
            disk.public_key,
            secret.public()
        )));
    }
    Ok(secret)
}

/// Writes `body` as pretty JSON to a new file, failing if it exists. Mode 0600; missing parent
/// directories 0700.
fn write_new<T: Serialize>(path: &Path, body: &T) -> Result<(), KeyError> {
    if path.exists() {
        return Err(KeyError::Exists {
            path: path.to_owned(),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        gpunet_files::create_private_dir_all(dir).map_err(|source| KeyError::Write {
            path: path.to_owned(),
            source,
        })?;
    }
    let text = serde_json::to_string_pretty(body).expect("a key file always serialises");
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let mut f = gpunet_files::create_private_new(path)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    write().map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists {
            path: path.to_owned(),
        },
        _ => KeyError::Write {
            path: path.to_owned(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.json");
        let k = KeyFile::generate();
        k.save_new(&path).expect("saves");
        assert_eq!(KeyFile::load(&path).expect("loads").address(), k.address());
        assert!(matches!(
            KeyFile::generate().save_new(&path),
            Err(KeyError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_encryption_secret_is_created_once_then_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("encryption.key");
        let first = load_or_create_encryption_secret(&path).expect("creates");
        let again = load_or_create_encryption_secret(&path).expect("loads");
        assert_eq!(first.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let other = crate::sealing::random_secret().public().to_hex();
        std::fs::write(&path, text.replace(&first.public().to_hex(), &other)).expect("write");
        assert!(matches!(
            load_or_create_encryption_secret(&path),
            Err(KeyError::Malformed { .. })
        ));
    }

    #[test]
    fn the_output_secret_is_derived_from_the_account_key() {
        let k = KeyFile::generate();
        assert_eq!(
            k.output_secret().public(),
            k.clone().output_secret().public()
        );
        assert_ne!(
            k.output_secret().public(),
            KeyFile::generate().output_secret().public()
        );
    }

    #[test]
    fn a_tampered_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.json");
        KeyFile::generate().save_new(&path).expect("saves");
        let text = std::fs::read_to_string(&path).expect("read");
        let other = KeyFile::generate().address().to_string();
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let tampered = text.replace(v["address"].as_str().expect("address"), &other);
        std::fs::write(&path, tampered).expect("write");
        assert!(matches!(
            KeyFile::load(&path),
            Err(KeyError::Malformed { .. })
        ));
    }

    #[test]
    fn key_files_others_may_read_or_change_are_refused_with_the_chmod_that_fixes_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let account = dir.path().join("k.json");
        KeyFile::generate().save_new(&account).expect("saves");
        let encryption = dir.path().join("encryption.key");
        load_or_create_encryption_secret(&encryption).expect("creates");
        for mode in [0o644, 0o666] {
            for path in [&account, &encryption] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
            }
            let refused = [
                KeyFile::load(&account).map(|_| ()),
                load_or_create_encryption_secret(&encryption).map(|_| ()),
            ];
            for (path, result) in [&account, &encryption].into_iter().zip(refused) {
                let Err(KeyError::Exposed(error)) = result else {
                    panic!("{path:?} with mode {mode:o} was not refused: {result:?}");
                };
                let text = error.to_string();
                assert!(text.contains(&format!("{mode:04o}")), "{text}");
                assert!(
                    text.contains(&format!("chmod 600 {}", path.display())),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn missing_parent_directories_of_a_new_key_are_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("home/keys/k.json");
        KeyFile::generate().save_new(&path).expect("saves");
        for d in ["home", "home/keys"] {
            let mode = std::fs::metadata(dir.path().join(d))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{d}");
        }
    }
}
