//! Operational errors of the store: what went wrong opening, reading or writing the chain file,
//! and the caller mistakes (a gap in heights, a second genesis) that the store refuses.

use std::path::PathBuf;

/// Everything that can go wrong in [`crate::Store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another `Store` in this one) has the file open.
    #[error(
        "store file {path} is locked by another process; stop the other node or pick another data dir"
    )]
    Locked { path: PathBuf },

    /// The file exists but is not a readable redb database.
    #[error("store file {path} is corrupt or not a gpunet store")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },

    /// Any other failure to open the file (permissions, missing directory, I/O).
    #[error("cannot open store file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },

    /// The file was written by a store with a layout this build does not read.
    #[error(
        "store file {path} has storage format {found}; this build reads format {supported} only. \
         A chain cannot be carried across formats: move the node's home directory aside and start \
         it again (a dev network starts afresh; a validator re-syncs from its peers), or run the \
         gpunet release that wrote it"
    )]
    UnsupportedSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// A state restore was refused or could not finish.
    #[error("state restore: {0}")]
    Restore(String),

    /// The file holds a state restore that never finished.
    #[error(
        "store file {path} holds a state restore (of height {height}) that never finished; \
         delete the file and sync again"
    )]
    IncompleteRestore { path: PathBuf, height: u64 },

    /// The state tree could not be read or updated.
    #[error("state tree: {0}")]
    Tree(String),

    /// A proof was asked for at a height whose tree has been pruned (or not yet committed).
    #[error(
        "no state tree is kept for height {height}: this node keeps heights {kept_from} to {head}"
    )]
    NoTreeAt {
        height: u64,
        kept_from: u64,
        head: u64,
    },

    /// A proof was asked for at an older height for an entity that has changed since: only
    /// the latest value of an entity is kept.
    #[error(
        "the entity has changed since height {height} and only its latest value is kept; ask at \
         the latest height ({head}) or leave the height out"
    )]
    ChangedSince { height: u64, head: u64 },

    /// A read or write transaction could not be started.
    #[error("cannot begin a store transaction")]
    Begin {
        #[from]
        source: redb::TransactionError,
    },

    /// A table could not be opened.
    #[error("cannot open a store table")]
    Table {
        #[from]
        source: redb::TableError,
    },

    /// Reading or writing a table failed.
    #[error("store read or write failed")]
    Storage {
        #[from]
        source: redb::StorageError,
    },

    /// The write transaction could not be made durable; nothing of it was kept.
    #[error("cannot commit store transaction")]
    Commit {
        #[from]
        source: redb::CommitError,
    },

    /// A block was committed before genesis.
    #[error("store has no genesis yet; call init_genesis before committing blocks")]
    NotInitialised,

    /// `init_genesis` was called on a store that already holds another chain's genesis.
    #[error(
        "store already holds a different genesis (chain {stored_chain_id}); refusing genesis for chain {given_chain_id}"
    )]
    GenesisMismatch {
        stored_chain_id: String,
        given_chain_id: String,
    },

    /// A block was committed at a height other than head + 1.
    #[error("block height {got} is not contiguous with the store; expected height {expected}")]
    NonContiguousHeight { expected: u64, got: u64 },

    /// A block listed more transactions than a `u32` index can address.
    #[error("block at height {height} has {count} transactions, more than a u32 index can address")]
    TooManyTransactions { height: u64, count: usize },

    /// A singleton record in the file did not have the shape this build writes.
    #[error("store record {record} is malformed ({len} bytes)")]
    MalformedRecord { record: &'static str, len: usize },
}
