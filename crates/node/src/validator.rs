//! A validator of a multi-node network: its files on disk, how it starts, and how
//! transactions reach whichever validator proposes next.
//!
//! A network is made by [`init_network`]: one shared [`NetworkGenesis`] (the ledger's genesis,
//! the validator set with voting power and addresses, block time) copied into each validator's
//! home `DIR/node-<i>/`, beside its secret key and its [`ValidatorFile`] (which validator of the
//! list it is). [`start_validator`] runs one from its home: the node with the Malachite orderer
//! and the HTTP API, and the transaction forwarder.
//!
//! Transactions travel by *forwarding*: each validator's mempool admits a transaction (full
//! checks) and every 50 ms the forwarder POSTs what its clients sent since the last time to
//! every other validator's `/v1/txs/batch` — one request per peer (more only past the
//! endpoint's 1,000 transactions / 2 MiB), to all peers at once, each at its own pace. Whoever
//! proposes next holds them. Transactions that arrived from a peer are not forwarded again, so
//! each crosses the network once per peer. Forwarding reuses the API's own admission path and
//! needs no second gossip network; its cost is at most one request per peer per 50 ms, whatever
//! the load.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gpunet_api::node::{
    MAX_TX_BATCH_BODY_BYTES, MAX_TX_BATCH_TXS, SubmitTxBatch, SubmitTxBatchResult,
};
use gpunet_ledger::Genesis;
use gpunet_protocol::SignedTx;
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::addr::HostPort;
use crate::chain::Shared;
use crate::malachite::{Fault, MalachiteConfig, MalachiteOrderer, ValidatorEntry};
use crate::{MempoolLimits, NodeConfig, NodeError, NodeHandle};

/// The network's shared genesis, identical in every validator's home.
pub const GENESIS_FILE: &str = "genesis.json";
/// Which validator of the genesis list a home is.
pub const VALIDATOR_FILE: &str = "validator.json";
/// The validator's secret consensus key (hex), mode 0600.
pub const KEY_FILE: &str = "validator_key.json";

/// How often the forwarder looks for new transactions: at most this long is added to the time
/// a transaction takes to reach the next proposer.
const FORWARD_POLL: Duration = Duration::from_millis(50);
/// Transactions forwarded to one peer per poll, at most (the mempool's default size, so a
/// full mempool goes out in one poll, in batches of the endpoint's limits).
const FORWARD_TXS_PER_POLL: usize = 10_000;
/// Room kept in a batch body for the JSON around the transactions, in bytes.
const FORWARD_BODY_SLACK_BYTES: usize = 64;
/// Longest one forwarding request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// One validator as every node knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    pub name: String,
    /// ed25519 consensus key, hex.
    pub public_key: String,
    pub voting_power: u64,
    /// Where peers reach it for consensus: `IP:port` or `name:port` (DNS, resolved at every
    /// dial). It listens on that IP, or on every interface when the host is a name.
    pub p2p: HostPort,
    /// Where its HTTP API is reached (transactions are forwarded there); listens like `p2p`.
    pub api: HostPort,
}

/// The genesis of a network of validators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkGenesis {
    pub ledger: Genesis,
    pub validators: Vec<GenesisValidator>,
    /// Least time between blocks, in milliseconds.
    pub block_ms: u64,
}

/// Which validator a home belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorFile {
    /// Index into `NetworkGenesis::validators`.
    pub index: usize,
}

#[derive(Serialize, Deserialize)]
struct KeyFileJson {
    secret_key: String,
}

/// Why a validator home could not be written or a validator not started.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite a validator home")]
    Exists { path: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error(transparent)]
    Exposed(#[from] gpunet_files::ExposedSecret),
    #[error(transparent)]
    Consensus(#[from] crate::MalachiteConfigError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    StateSync(#[from] crate::StateSyncError),
}

/// A fresh secret consensus key from the operating system's randomness.
pub fn generate_validator_key() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut seed);
    seed
}

/// Home of validator `index` under `out`.
pub fn validator_home(out: &Path, index: usize) -> PathBuf {
    out.join(format!("node-{index}"))
}

/// Writes a network of `keys.len()` validators on this machine under `out`: validator `i`
/// listens for peers on `127.0.0.1:(p2p_base_port + i)` and serves its API on
/// `127.0.0.1:(api_base_port + i)`, with voting power 1. See [`init_network_with`].
pub fn init_network(
    out: &Path,
    ledger: Genesis,
    keys: &[[u8; 32]],
    p2p_base_port: u16,
    api_base_port: u16,
    block_ms: u64,
) -> Result<NetworkGenesis, ValidatorError> {
    let localhost = "127.0.0.1".to_owned();
    let validators: Vec<ValidatorLayout> = (0..keys.len())
        .map(|_| ValidatorLayout {
            host: localhost.clone(),
            voting_power: 1,
        })
        .collect();
    init_network_with(
        out,
        ledger,
        keys,
        &validators,
        p2p_base_port,
        api_base_port,
        block_ms,
    )
}

/// Where one validator of a new network is reached and how much it weighs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorLayout {
    /// IP address or DNS name (e.g. a container's name on a private Docker network).
    pub host: String,
    pub voting_power: u64,
}

/// Writes a network of `keys.len()` validators under `out`: `out/node-<i>/` with the shared
/// genesis, the key and the validator file. Validator `i` is reached for consensus at
/// `layout[i].host:(p2p_base_port + i)` and for its API at `layout[i].host:(api_base_port + i)`.
/// Refuses to overwrite an existing home, a layout of another length than `keys`, a host that
/// is not an IP address or DNS name, and a validator set without power.
pub fn init_network_with(
    out: &Path,
    ledger: Genesis,
    keys: &[[u8; 32]],
    layout: &[ValidatorLayout],
    p2p_base_port: u16,
    api_base_port: u16,
    block_ms: u64,
) -> Result<NetworkGenesis, ValidatorError> {
    let invalid = |why: String| ValidatorError::Invalid {
        path: out.to_path_buf(),
        why,
    };
    if layout.len() != keys.len() {
        return Err(invalid(format!(
            "{} hosts or powers for {} validators",
            layout.len(),
            keys.len()
        )));
    }
    if let Some(i) = layout.iter().position(|v| v.voting_power == 0) {
        return Err(invalid(format!(
            "validator {i} has voting power 0; every validator needs at least 1"
        )));
    }
    if layout
        .iter()
        .try_fold(0u64, |sum, v| sum.checked_add(v.voting_power))
        .is_none()
    {
        return Err(invalid(
            "the voting powers add up to more than 2^64".to_owned(),
        ));
    }
    let port = |base: u16, i: usize| {
        u16::try_from(i)
            .ok()
            .and_then(|i| base.checked_add(i))
            .ok_or_else(|| ValidatorError::Invalid {
                path: out.to_path_buf(),
                why: format!("port {base} + {i} is out of range"),
            })
    };
    let mut validators = Vec::with_capacity(keys.len());
    for (i, (key, v)) in keys.iter().zip(layout).enumerate() {
        let at = |port: u16| {
            format!("{}:{port}", v.host)
                .parse::<HostPort>()
                .map_err(|e| invalid(format!("validator {i}: {e}")))
        };
        validators.push(GenesisValidator {
            name: format!("node-{i}"),
            public_key: hex::encode(MalachiteConfig::public_key_of(*key)),
            voting_power: v.voting_power,
            p2p: at(port(p2p_base_port, i)?)?,
            api: at(port(api_base_port, i)?)?,
        });
    }
    let genesis = NetworkGenesis {
        ledger,
        validators,
        block_ms,
    };
    let genesis_json =
        serde_json::to_vec_pretty(&genesis).expect("a genesis of plain data always encodes");
    for (i, key) in keys.iter().enumerate() {
        let home = validator_home(out, i);
        if home.exists() {
            return Err(ValidatorError::Exists { path: home });
        }
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ValidatorError::Write { path, source }
        };
        gpunet_files::create_private_dir_all(&home).map_err(write_err(&home))?;
        let p = home.join(GENESIS_FILE);
        gpunet_files::write_private(&p, &genesis_json).map_err(write_err(&p))?;
        let p = home.join(VALIDATOR_FILE);
        let v = serde_json::to_vec_pretty(&ValidatorFile { index: i }).expect("plain data");
        gpunet_files::write_private(&p, &v).map_err(write_err(&p))?;
        let p = home.join(KEY_FILE);
        let k = serde_json::to_vec_pretty(&KeyFileJson {
            secret_key: hex::encode(key),
        })
        .expect("plain data");
        write_secret(&p, &k).map_err(write_err(&p))?;
    }
    Ok(genesis)
}

fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = gpunet_files::create_private_new(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Reads the validator's key file, refusing one that others may read or change.
fn read_key_file(path: &Path) -> Result<KeyFileJson, ValidatorError> {
    let bytes = gpunet_files::read_secret(path).map_err(|e| match e {
        gpunet_files::SecretFileError::Read { source, .. } => ValidatorError::Read {
            path: path.to_path_buf(),
            source,
        },
        gpunet_files::SecretFileError::TooLarge { max_bytes, .. } => ValidatorError::Invalid {
            path: path.to_path_buf(),
            why: format!("it is larger than {max_bytes} bytes, not a key file"),
        },
        gpunet_files::SecretFileError::Exposed(exposed) => ValidatorError::Exposed(exposed),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ValidatorError::Invalid {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ValidatorError> {
    let bytes = std::fs::read(path).map_err(|source| ValidatorError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ValidatorError::Invalid {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

fn decode_key(path: &Path, hex_key: &str) -> Result<[u8; 32], ValidatorError> {
    hex::decode(hex_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ValidatorError::Invalid {
            path: path.to_path_buf(),
            why: "a key is not 32 bytes of hex".to_owned(),
        })
}

/// A running validator: the node and its transaction forwarder.
pub struct ValidatorHandle {
    pub node: NodeHandle,
    pub genesis: NetworkGenesis,
    pub index: usize,
    forwarder: JoinHandle<()>,
    stop_forwarder: watch::Sender<bool>,
}

impl ValidatorHandle {
    /// Stops forwarding, then the node (see [`NodeHandle::shutdown`]).
    pub async fn shutdown(self) {
        let _ = self.stop_forwarder.send(true);
        let _ = self.forwarder.await;
        self.node.shutdown().await;
    }
}

/// Starts the validator whose home is `home` (written by [`init_network`]).
pub async fn start_validator(home: &Path) -> Result<ValidatorHandle, ValidatorError> {
    start_validator_with(home, None, false).await
}

/// [`start_validator`], misbehaving as `fault` says (for tests of the network's defences), and
/// with `state_sync`, filling a home that holds no chain yet with a recent state from the other
/// validators first ([`crate::sync_state`]).
pub async fn start_validator_with(
    home: &Path,
    fault: Option<Fault>,
    state_sync: bool,
) -> Result<ValidatorHandle, ValidatorError> {
    if let Some(fault) = fault {
        tracing::warn!(
            ?fault,
            "FAULT INJECTION: this validator will misbehave on purpose; never do this on a real network"
        );
    }
    let genesis: NetworkGenesis = read_json(&home.join(GENESIS_FILE))?;
    let ValidatorFile { index } = read_json(&home.join(VALIDATOR_FILE))?;
    let key_path = home.join(KEY_FILE);
    let key = read_key_file(&key_path)?;
    let secret_key = decode_key(&key_path, &key.secret_key)?;
    let gpath = home.join(GENESIS_FILE);
    let me = genesis
        .validators
        .get(index)
        .ok_or_else(|| ValidatorError::Invalid {
            path: home.join(VALIDATOR_FILE),
            why: format!("index {index} is not in the genesis validator list"),
        })?
        .clone();
    let mut validators = Vec::with_capacity(genesis.validators.len());
    for v in &genesis.validators {
        validators.push(ValidatorEntry {
            public_key: decode_key(&gpath, &v.public_key)?,
            voting_power: v.voting_power,
        });
    }
    let others: Vec<&GenesisValidator> = genesis
        .validators
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, v)| v)
        .collect();
    if state_sync {
        let store_path = home.join(crate::STORE_FILE);
        if store_path.exists() {
            tracing::info!(
                store = %store_path.display(),
                "state sync asked for, but this home holds a chain: starting from it"
            );
        } else {
            let target = crate::SyncTarget {
                chain_id: genesis.ledger.chain_id.clone(),
                genesis_bytes: serde_json::to_vec(&genesis.ledger)
                    .expect("a genesis of plain data always encodes as JSON"),
                validators: validators.clone(),
                peers: others.iter().map(|v| v.api.http_url()).collect(),
            };
            let head = crate::sync_state(&store_path, &target).await?;
            tracing::info!(
                height = head.height,
                "state synced; consensus starts at the next height"
            );
        }
    }
    let mempool = MempoolLimits::default();
    let orderer = MalachiteOrderer::new(MalachiteConfig {
        home: home.to_path_buf(),
        moniker: me.name.clone(),
        secret_key,
        validators: validators.clone(),
        p2p_listen: me.p2p.listen_addr(),
        peers: others.iter().map(|v| v.p2p.clone()).collect(),
        block_ms: genesis.block_ms,
        max_txs_per_block: mempool.max_txs_per_block,
        propose_timeout: Duration::from_secs(2),
        fault,
    })?;
    let node = crate::start_with_orderer(
        NodeConfig {
            home: home.to_path_buf(),
            listen: me.api.listen_addr(),
            block_ms: genesis.block_ms,
            genesis: genesis.ledger.clone(),
            mempool,
        },
        orderer,
    )
    .await?;
    let (stop_forwarder, stop) = watch::channel(false);
    let peer_apis = others.iter().map(|v| v.api.http_url()).collect();
    // The other validators may mark the batches they forward to this node; their consensus keys
    // sign them (and this one's, the batches it forwards).
    let mut forwarders = std::collections::BTreeSet::new();
    let mut shown = Vec::with_capacity(validators.len());
    for (i, (v, g)) in validators.iter().zip(&genesis.validators).enumerate() {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&v.public_key).map_err(|_| {
            ValidatorError::Invalid {
                path: gpath.clone(),
                why: format!("validator {i}'s key is not an ed25519 public key"),
            }
        })?;
        let address = gpunet_protocol::Address::from_key(&key);
        if i != index {
            forwarders.insert(address);
        }
        shown.push(gpunet_api::node::ValidatorView {
            name: g.name.clone(),
            address,
            voting_power: v.voting_power,
            this_node: i == index,
        });
    }
    node.set_forwarders(forwarders);
    node.set_validators(shown);
    let forwarder = tokio::spawn(forward_txs(
        Arc::clone(&node.shared),
        ed25519_dalek::SigningKey::from_bytes(&secret_key),
        peer_apis,
        stop,
    ));
    Ok(ValidatorHandle {
        node,
        genesis,
        index,
        forwarder,
        stop_forwarder,
    })
}

/// Forwards what this node's clients send to every peer's `POST /v1/txs/batch`: every
/// [`FORWARD_POLL`], one request per peer holding all that arrived since the last (split only at
/// the endpoint's limits), to all peers at once, each at its own pace so a slow one delays no
/// other. A peer that is down or slow misses what it failed to take; the transactions still wait
/// here until this validator proposes. `peers` are base URLs (`http://10.0.0.3:8651`,
/// `http://v2:8652`); a host name is resolved at every connection.
async fn forward_txs(
    shared: Arc<Shared>,
    key: ed25519_dalek::SigningKey,
    peers: Vec<String>,
    stop: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder().timeout(FORWARD_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the forwarding HTTP client; not forwarding");
            return;
        }
    };
    let forwarders = peers.into_iter().map(|base| {
        forward_to_peer(
            Arc::clone(&shared),
            key.clone(),
            client.clone(),
            format!("{}/v1/txs/batch", base.trim_end_matches('/')),
            stop.clone(),
        )
    });
    futures::future::join_all(forwarders).await;
}

/// One peer's forwarder (see [`forward_txs`]): its own place in the mempool's arrival order.
async fn forward_to_peer(
    shared: Arc<Shared>,
    key: ed25519_dalek::SigningKey,
    client: reqwest::Client,
    url: String,
    mut stop: watch::Receiver<bool>,
) {
    // From the first arrival: what clients sent before the forwarder started goes out too.
    let mut cursor = 0;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(FORWARD_POLL) => {}
        }
        let (txs, next) = shared.mempool().to_forward(cursor, FORWARD_TXS_PER_POLL);
        cursor = next;
        if txs.is_empty() {
            continue;
        }
        let send = async {
            // In order, one after another: a signer's later nonces need its earlier ones.
            for body in forward_bodies(&txs) {
                let mut nonce = [0u8; 16];
                rand_core::OsRng.fill_bytes(&mut nonce);
                let signed = gpunet_api::auth::sign_request(
                    &key,
                    "POST",
                    "/v1/txs/batch",
                    crate::orderer::wall_clock_ms(),
                    gpunet_api::auth::RequestNonce(nonce),
                    &body,
                );
                let mut request = client.post(&url);
                for (name, value) in signed {
                    request = request.header(name, value);
                }
                let sent = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status);
                match sent {
                    // Read to the end, so the connection is kept for the next batch. A peer
                    // that already has some answers with their rejections; that is fine.
                    Ok(r) => match r.json::<SubmitTxBatchResult>().await {
                        Ok(answer) => tracing::trace!(
                            %url,
                            admitted = answer.admitted,
                            refused = answer.results.len().saturating_sub(answer.admitted),
                            "forwarded"
                        ),
                        Err(e) => tracing::debug!(%url, error = %e, "unreadable forwarding answer"),
                    },
                    Err(e) => {
                        // The rest would only meet the same fate or nonce gaps.
                        tracing::debug!(%url, txs = txs.len(), error = %e, "forwarding failed");
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = send => {}
        }
    }
}

/// `txs` as `POST /v1/txs/batch` bodies marked as forwarded, in order, each within the
/// endpoint's limits ([`MAX_TX_BATCH_TXS`], [`MAX_TX_BATCH_BODY_BYTES`]).
fn forward_bodies(txs: &[SignedTx]) -> Vec<Vec<u8>> {
    let budget = MAX_TX_BATCH_BODY_BYTES - FORWARD_BODY_SLACK_BYTES;
    let mut bodies = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    let mut bytes = 0;
    let mut flush = |batch: &mut Vec<String>| {
        let body = SubmitTxBatch {
            txs_hex: std::mem::take(batch),
            forwarded: true,
        };
        bodies.push(serde_json::to_vec(&body).expect("a batch of strings always encodes"));
    };
    for tx in txs {
        let tx_hex = hex::encode(tx.encode());
        // The string, its quotes and a comma.
        let len = tx_hex.len() + 3;
        if !batch.is_empty() && (batch.len() == MAX_TX_BATCH_TXS || bytes + len > budget) {
            flush(&mut batch);
            bytes = 0;
        }
        bytes += len;
        batch.push(tx_hex);
    }
    if !batch.is_empty() {
        flush(&mut batch);
    }
    bodies
}

#[cfg(test)]
mod forwarding_tests {
    use super::*;
    use gpunet_protocol::{Address, Amount, Denom, Msg, TxBody};

    /// A transfer padded to size with a long chain id.
    fn transfer(nonce: u64, chain_id_bytes: usize) -> SignedTx {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        TxBody {
            chain_id: "c".repeat(chain_id_bytes.max(1)),
            signer: Address::from_key(&key.verifying_key()),
            nonce,
            fee: Amount::from_micros(1),
            msg: Msg::Transfer {
                to: Address::from_key(&key.verifying_key()),
                denom: Denom::Usd,
                amount: Amount::from_micros(1),
            },
        }
        .sign(&key)
    }

    fn decode(bodies: &[Vec<u8>]) -> Vec<SubmitTxBatch> {
        bodies
            .iter()
            .map(|b| serde_json::from_slice(b).expect("a batch body"))
            .collect()
    }

    #[test]
    fn forwarded_batches_keep_the_order_and_the_endpoints_limits() {
        // Small transactions: the count limit splits them.
        let small: Vec<SignedTx> = (0..2_500).map(|n| transfer(n, 1)).collect();
        let bodies = forward_bodies(&small);
        let batches = decode(&bodies);
        assert_eq!(
            batches.iter().map(|b| b.txs_hex.len()).collect::<Vec<_>>(),
            vec![MAX_TX_BATCH_TXS, MAX_TX_BATCH_TXS, 500]
        );
        // Large ones: the body limit does.
        let large: Vec<SignedTx> = (0..300).map(|n| transfer(n, 8_000)).collect();
        let large_bodies = forward_bodies(&large);
        assert!(large_bodies.len() > 1);
        for body in bodies.iter().chain(&large_bodies) {
            assert!(body.len() <= MAX_TX_BATCH_BODY_BYTES, "{}", body.len());
            let batch = &decode(std::slice::from_ref(body))[0];
            assert!(batch.txs_hex.len() <= MAX_TX_BATCH_TXS);
            assert!(batch.forwarded);
        }
        for (txs, bodies) in [(&small, &bodies), (&large, &large_bodies)] {
            let sent: Vec<String> = decode(bodies).into_iter().flat_map(|b| b.txs_hex).collect();
            let expected: Vec<String> = txs.iter().map(|t| hex::encode(t.encode())).collect();
            assert_eq!(sent, expected, "every transaction once, in order");
        }
        assert!(forward_bodies(&[]).is_empty());
    }
}

#[cfg(test)]
mod home_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    fn write_one(out: &Path) {
        let ledger = Genesis {
            chain_id: "homes".into(),
            genesis_time_ms: 1_700_000_000_000,
            params: gpunet_ledger::Params::default(),
            accounts: Vec::new(),
        };
        init_network(out, ledger, &[generate_validator_key()], 26_000, 8_000, 500)
            .expect("writes the network");
    }

    #[test]
    fn a_validator_home_is_written_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("net");
        write_one(&out);
        let home = validator_home(&out, 0);
        assert_eq!(mode_of(&out), 0o700);
        assert_eq!(mode_of(&home), 0o700);
        for file in [GENESIS_FILE, VALIDATOR_FILE, KEY_FILE] {
            assert_eq!(mode_of(&home.join(file)), 0o600, "{file}");
        }
    }

    #[tokio::test]
    async fn a_validator_key_others_may_read_is_refused_with_the_chmod_that_fixes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("net");
        write_one(&out);
        let home = validator_home(&out, 0);
        let key = home.join(KEY_FILE);
        for mode in [0o644, 0o666] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let Err(ValidatorError::Exposed(error)) = start_validator(&home).await else {
                panic!("a key with mode {mode:o} was not refused");
            };
            let text = error.to_string();
            assert!(
                text.contains(&format!("chmod 600 {}", key.display())),
                "{text}"
            );
        }
    }
}
