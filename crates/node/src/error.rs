//! Operational errors of starting a node.

use std::net::SocketAddr;
use std::path::PathBuf;

use gpunet_ledger::GenesisError;
use gpunet_store::StoreError;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The home directory could not be created.
    #[error("cannot create node home {path}")]
    CreateHome {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The chain store could not be opened, read or initialised.
    #[error("chain store {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },

    /// The genesis cannot start a chain.
    #[error("invalid genesis: {source}")]
    Genesis {
        #[source]
        source: GenesisError,
    },

    /// The store holds another chain than the genesis given.
    #[error(
        "the store at {path} holds chain {stored_chain_id:?}, not {given_chain_id:?}; pick another --home or the matching genesis"
    )]
    ChainMismatch {
        path: PathBuf,
        stored_chain_id: String,
        given_chain_id: String,
    },

    /// An entity of the stored state does not decode.
    #[error(
        "the state stored at height {height} does not decode: the store is damaged, or was \
         written by another gpunet whose entity formats differ; start a new network in a fresh \
         directory (another --home), or move this one away"
    )]
    StateDecode {
        height: u64,
        #[source]
        source: gpunet_ledger::EntityError,
    },

    /// The store's state disagrees with its head.
    #[error("the stored state does not match the store's head at height {height}: {why}")]
    StateMismatch { height: u64, why: String },

    /// Another process listens on the address.
    #[error(
        "cannot listen on {addr}: the address is already in use; stop the other process or pass another --listen"
    )]
    AddrInUse {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The address could not be bound for another reason (permissions, not a local address).
    #[error("cannot listen on {addr}; check --listen")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
