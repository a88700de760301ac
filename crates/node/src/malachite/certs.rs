//! What consensus keeps beside the chain store, in its own redb file (`consensus.redb` in the
//! node's home), since the chain store knows nothing of consensus:
//!
//! - commit certificates of decided heights, so the node can serve decided blocks with their
//!   proof to peers that are catching up (value sync). A certificate is written before its
//!   block is handed to the commit path, so every committed height has one;
//! - undecided blocks this validator proposed or accepted, so that after a crash, when
//!   Malachite's write-ahead log replays a proposal and the height is then decided, the block
//!   is still here. They are dropped once their height is decided.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

/// Height (big-endian u64) → borsh of the height's `ExtendedCommitCertificate`.
const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
/// (height, block id) → borsh of the undecided `Block`.
const UNDECIDED: TableDefinition<(u64, [u8; 32]), &[u8]> = TableDefinition::new("undecided");

/// Why a certificate could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("consensus store {path}: {source}")]
pub struct CertStoreError {
    path: PathBuf,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The certificate store.
pub struct CertStore {
    db: Database,
    path: PathBuf,
}

impl CertStore {
    pub fn open(path: &Path) -> Result<CertStore, CertStoreError> {
        let err = |e: redb::Error| CertStoreError {
            path: path.to_path_buf(),
            source: Box::new(e),
        };
        // Owner-only, created before redb opens it by path (which would use the umask's mode).
        gpunet_files::touch_private(path).map_err(|e| err(redb::StorageError::Io(e).into()))?;
        let db = Database::create(path).map_err(|e| err(e.into()))?;
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        txn.open_table(CERTIFICATES).map_err(|e| err(e.into()))?;
        txn.open_table(UNDECIDED).map_err(|e| err(e.into()))?;
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(CertStore {
            db,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: impl Into<redb::Error>) -> CertStoreError {
        CertStoreError {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    /// Durably records the certificate bytes of `height`, replacing any earlier ones, and
    /// forgets the undecided blocks of that height and below.
    pub fn put(&self, height: u64, certificate: &[u8]) -> Result<(), CertStoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(CERTIFICATES).map_err(|e| self.err(e))?;
            table.insert(height, certificate).map_err(|e| self.err(e))?;
            let mut undecided = txn.open_table(UNDECIDED).map_err(|e| self.err(e))?;
            undecided
                .retain(|(h, _), _| h > height)
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Durably keeps an undecided block (encoded) until its height is decided.
    pub fn put_undecided(
        &self,
        height: u64,
        block_id: [u8; 32],
        block: &[u8],
    ) -> Result<(), CertStoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(UNDECIDED).map_err(|e| self.err(e))?;
            table
                .insert((height, block_id), block)
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    pub fn undecided(
        &self,
        height: u64,
        block_id: [u8; 32],
    ) -> Result<Option<Vec<u8>>, CertStoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(UNDECIDED).map_err(|e| self.err(e))?;
        Ok(table
            .get((height, block_id))
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    pub fn get(&self, height: u64) -> Result<Option<Vec<u8>>, CertStoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(CERTIFICATES).map_err(|e| self.err(e))?;
        Ok(table
            .get(height)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    /// The lowest height with a certificate, if any.
    pub fn first_height(&self) -> Result<Option<u64>, CertStoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(CERTIFICATES).map_err(|e| self.err(e))?;
        use redb::ReadableTable;
        Ok(table
            .first()
            .map_err(|e| self.err(e))?
            .map(|(k, _)| k.value()))
    }
}

impl crate::chain::CertificateSource for CertStore {
    fn certificate(&self, height: u64) -> Result<Option<Vec<u8>>, String> {
        self.get(height).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecided_blocks_survive_a_reopen_until_their_height_is_decided() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::CERTS_FILE);
        {
            let s = CertStore::open(&path).expect("opens");
            s.put_undecided(5, [1; 32], b"five").expect("writes");
            s.put_undecided(6, [2; 32], b"six").expect("writes");
        }
        let s = CertStore::open(&path).expect("reopens");
        assert_eq!(
            s.undecided(5, [1; 32]).expect("reads"),
            Some(b"five".to_vec())
        );
        assert_eq!(s.first_height().expect("reads"), None);

        s.put(5, b"cert-5").expect("writes");
        assert_eq!(s.get(5).expect("reads"), Some(b"cert-5".to_vec()));
        assert_eq!(s.first_height().expect("reads"), Some(5));
        assert_eq!(
            s.undecided(5, [1; 32]).expect("reads"),
            None,
            "decided: dropped"
        );
        assert_eq!(
            s.undecided(6, [2; 32]).expect("reads"),
            Some(b"six".to_vec())
        );
    }
}
