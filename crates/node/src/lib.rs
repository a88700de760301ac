//! A gpunet validator node: the mempool, an orderer that decides blocks, the one commit path
//! that applies them with the ledger and writes them to the store, and the HTTP API.
//!
//! ```text
//!  POST /v1/txs ──► Mempool ──► Orderer::next_block ──► Committer::commit ──► Store
//!                                (solo / BFT)            apply_block           │
//!  GET /v1/... ◄── published Tip (Arc<State>) ◄──────────────────── publish ◄──┘
//!  GET /v1/events ◄── broadcast of each committed block's events
//! ```
//!
//! Architecture Invariant: the node holds no market logic. Every rule lives in `ledger`; the
//! mempool only calls `ledger::check_tx`/`check_fee` to refuse early.
//!
//! Architecture Invariant: nothing is published (to readers, the mempool or subscribers) before
//! the store has made it durable; a failed store write stops block production.

mod account_txs;
mod addr;
mod chain;
mod challenge_history;
mod error;
mod history;
mod http;
mod malachite;
mod mempool;
mod metrics;
mod orderer;
mod statesync;
mod validator;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gpunet_ledger::{Genesis, State, StateLoader};
use gpunet_protocol::Hash;
use gpunet_store::{Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use addr::{HostPort, HostPortError};
pub use chain::CommitError;
pub use error::NodeError;
pub use http::ApiDoc;
pub use malachite::{
    CERTS_FILE, Fault, MalachiteConfig, MalachiteConfigError, MalachiteOrderer, ValidatorEntry,
    WAL_FILE,
};
pub use mempool::{Mempool, MempoolLimits, Origin, PEER_ROOM_FACTOR};
pub use orderer::{ChainTip, Orderer, OrdererContext, OrdererError, SoloOrderer};
pub use statesync::{StateSyncError, SyncTarget, sync_state};
pub use validator::{
    GENESIS_FILE, GenesisValidator, KEY_FILE, NetworkGenesis, VALIDATOR_FILE, ValidatorError,
    ValidatorFile, ValidatorHandle, ValidatorLayout, generate_validator_key, init_network,
    init_network_with, start_validator, start_validator_with, validator_home,
};

use chain::{Committer, Shared, Tip};

/// File name of the chain store inside the node's home.
pub const STORE_FILE: &str = "chain.redb";
/// Default time between blocks, in milliseconds.
pub const DEFAULT_BLOCK_MS: u64 = 500;
/// Longest a shutdown waits for open HTTP connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory; the store lives at `home/chain.redb`.
    pub home: PathBuf,
    /// Where the HTTP API listens; port 0 picks a free port (see [`NodeHandle::api_addr`]).
    pub listen: SocketAddr,
    /// Time between blocks, in milliseconds.
    pub block_ms: u64,
    /// Used only when the store is empty; a store holding another chain id is an error.
    pub genesis: Genesis,
    pub mempool: MempoolLimits,
}

/// A running node. Dropping it stops block production and the server without waiting for
/// them; [`NodeHandle::shutdown`] stops them in order and waits.
pub struct NodeHandle {
    shared: Arc<Shared>,
    api_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    orderer_task: JoinHandle<()>,
    server_task: JoinHandle<()>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("api_addr", &self.api_addr)
            .field("height", &self.height())
            .finish_non_exhaustive()
    }
}

impl NodeHandle {
    /// The address the HTTP API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Names the validators (by the address of their consensus key) whose signed
    /// `POST /v1/txs/batch` requests marked `forwarded` this node accepts; only the first call
    /// counts. A node that never calls it refuses every forwarded batch.
    pub fn set_forwarders(&self, forwarders: std::collections::BTreeSet<gpunet_protocol::Address>) {
        self.shared.set_forwarders(forwarders);
    }

    /// Names the network's validators and their voting power, for `/v1/status` and the
    /// dashboard; only the first call counts. A solo node never calls it.
    pub fn set_validators(&self, validators: Vec<gpunet_api::node::ValidatorView>) {
        self.shared.set_validators(validators);
    }

    /// Height of the last committed block.
    pub fn height(&self) -> u64 {
        self.shared.tip().state.height
    }

    /// Root of the state after the last committed block.
    pub fn state_root(&self) -> Hash {
        self.shared.tip().state_root
    }

    /// Stops block production (after any block being committed is durable), the event streams
    /// and the HTTP server, and closes the store. Returns once the store file is released.
    pub async fn shutdown(self) {
        let NodeHandle {
            shared,
            shutdown,
            orderer_task,
            mut server_task,
            ..
        } = self;
        // Receivers live in the tasks; an error only means they are all gone already.
        let _ = shutdown.send(true);
        if let Err(e) = orderer_task.await {
            tracing::error!(error = %e, "orderer task ended abnormally");
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server_task).await {
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task ended abnormally"),
            Ok(Ok(())) => {}
            Err(_) => {
                tracing::warn!("HTTP connections still open after the grace period; closing them");
                server_task.abort();
                let _ = server_task.await;
            }
        }
        // Event-stream feeders and blocking reads may hold the store a moment longer.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while Arc::strong_count(&shared) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&shared) > 1 {
            tracing::warn!("node tasks still hold the store after shutdown");
        }
    }
}

/// Admits `txs` (encoded transactions) into a fresh mempool with `limits` against `state`, as
/// the node would, checking signatures in parallel; returns how many were admitted, or the first
/// rejection. For `gpunet bench`.
pub fn admit_batch<B: AsRef<[u8]> + Sync>(
    limits: &MempoolLimits,
    state: &State,
    txs: &[B],
) -> Result<usize, gpunet_protocol::Rejection> {
    let mut mempool = Mempool::new(*limits);
    let results = mempool.admit_many(txs, state);
    match results.into_iter().find_map(Result::err) {
        Some(rejection) => Err(rejection),
        None => Ok(mempool.len()),
    }
}

/// Starts a node with the solo orderer: opens (or initialises) the store, resumes at its head,
/// starts producing blocks and serving HTTP. Returns once the API is listening.
pub async fn start(config: NodeConfig) -> Result<NodeHandle, NodeError> {
    let orderer = SoloOrderer::new(config.block_ms, config.mempool.max_txs_per_block);
    start_with_orderer(config, orderer).await
}

/// As [`start`], with another orderer deciding the blocks.
pub async fn start_with_orderer<O: Orderer>(
    config: NodeConfig,
    orderer: O,
) -> Result<NodeHandle, NodeError> {
    let (store, tip) = open_chain(&config)?;
    let shared = Arc::new(Shared::new(
        Arc::new(store),
        tip,
        config.block_ms,
        orderer.name(),
        config.mempool,
        metrics::NodeMetrics::new(),
    ));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| bind_error(config.listen, source))?;
    let api_addr = listener
        .local_addr()
        .map_err(|source| bind_error(config.listen, source))?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let server_task = tokio::spawn(http::serve(
        listener,
        Arc::clone(&shared),
        shutdown_rx.clone(),
    ));
    let orderer_task = tokio::spawn(produce_blocks(orderer, Arc::clone(&shared), shutdown_rx));
    tracing::info!(
        %api_addr,
        chain_id = %shared.chain_id,
        height = shared.tip().state.height,
        "node started"
    );
    Ok(NodeHandle {
        shared,
        api_addr,
        shutdown,
        orderer_task,
        server_task,
    })
}

fn bind_error(addr: SocketAddr, source: std::io::Error) -> NodeError {
    if source.kind() == std::io::ErrorKind::AddrInUse {
        NodeError::AddrInUse { addr, source }
    } else {
        NodeError::Bind { addr, source }
    }
}

/// Opens the store, records genesis if it is empty, and loads the state at its head.
fn open_chain(config: &NodeConfig) -> Result<(Store, Tip), NodeError> {
    gpunet_files::create_private_dir_all(&config.home).map_err(|source| NodeError::CreateHome {
        path: config.home.clone(),
        source,
    })?;
    let path = config.home.join(STORE_FILE);
    let store_err = |source| NodeError::Store {
        path: path.clone(),
        source,
    };
    let store = Store::open(&path).map_err(store_err)?;
    match store.genesis().map_err(store_err)? {
        Some((stored_chain_id, _)) => {
            if stored_chain_id != config.genesis.chain_id {
                return Err(NodeError::ChainMismatch {
                    path,
                    stored_chain_id,
                    given_chain_id: config.genesis.chain_id.clone(),
                });
            }
        }
        None => {
            let state = State::from_genesis(&config.genesis)
                .map_err(|source| NodeError::Genesis { source })?;
            let genesis_bytes = serde_json::to_vec(&config.genesis)
                .expect("a genesis of plain data always encodes as JSON");
            store
                .init_genesis(&state.chain_id, &genesis_bytes, &state.entities())
                .map_err(store_err)?;
        }
    }
    load_tip(&store)
        .map(|tip| (store, tip))
        .map_err(|e| match e {
            LoadError::Store(source) => store_err(source),
            LoadError::Node(e) => e,
        })
}

enum LoadError {
    Store(StoreError),
    Node(NodeError),
}

impl From<StoreError> for LoadError {
    fn from(e: StoreError) -> Self {
        LoadError::Store(e)
    }
}

/// Reads the state at the store's head, entity by entity, and checks that the tree's root at
/// the head is the head's recorded root.
fn load_tip(store: &Store) -> Result<Tip, LoadError> {
    let mut loader = StateLoader::default();
    let mut decode_error = None;
    let Some((head, _size)) = store.for_each_entity(|k, v| {
        if decode_error.is_none()
            && let Err(e) = loader.add(k, v)
        {
            decode_error = Some(e);
        }
        Ok::<(), LoadError>(())
    })?
    else {
        return Err(LoadError::Node(NodeError::StateMismatch {
            height: 0,
            why: "the store has a genesis but no head".to_owned(),
        }));
    };
    let state = match decode_error {
        Some(e) => Err(e),
        None => loader.finish(),
    }
    .map_err(|source| {
        LoadError::Node(NodeError::StateDecode {
            height: head.height,
            source,
        })
    })?;
    let tree_root = store.tree_root(head.height)?;
    if state.height != head.height || tree_root != Some(head.state_root) {
        return Err(LoadError::Node(NodeError::StateMismatch {
            height: head.height,
            why: format!(
                "the stored state is at height {} and its tree root is {}, head has root {}",
                state.height,
                tree_root.map_or("missing".to_owned(), |r| Hash(r).to_string()),
                Hash(head.state_root)
            ),
        }));
    }
    Ok(Tip {
        state,
        block_hash: Hash(head.block_hash),
        state_root: Hash(head.state_root),
    })
}

/// The block production loop: decide, commit, repeat, until shutdown or a failure that makes
/// going on unsafe.
async fn produce_blocks<O: Orderer>(
    mut orderer: O,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ctx = OrdererContext::new(Arc::clone(&shared));
    let mut committer = Some(Committer::new(shared));
    loop {
        let decided = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            decided = orderer.next_block(&ctx) => decided,
        };
        let block = match decided {
            Ok(block) => block,
            Err(e) => {
                tracing::error!(error = %e, "orderer failed; block production stopped");
                break;
            }
        };
        let Some(mut c) = committer.take() else {
            break;
        };
        // Applying and the durable write block the thread; keep them off the async workers.
        let joined = tokio::task::spawn_blocking(move || {
            let result = c.commit(block);
            (c, result)
        })
        .await;
        match joined {
            Ok((c, Ok(()))) => committer = Some(c),
            Ok((_, Err(e))) => {
                tracing::error!(
                    error = %e,
                    source = ?std::error::Error::source(&e),
                    "BLOCK COMMIT FAILED; block production stopped. The store holds the last \
                     committed block; restart the node once the cause is fixed"
                );
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "BLOCK COMMIT PANICKED; block production stopped");
                break;
            }
        }
    }
}
