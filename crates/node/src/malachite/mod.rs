//! The Malachite BFT orderer: a network of validators decides each block.
//!
//! [`MalachiteOrderer`] implements the node's [`Orderer`] trait. On its first call it starts
//! the Malachite engine (libp2p networking, the consensus state machine, its write-ahead log
//! and value sync) and the application loop in `app`, which answers the engine. Each block
//! the network decides comes out of [`Orderer::next_block`] and goes through the node's one
//! commit path; consensus starts the next height only once that commit is durable.
//!
//! Every validator in the genesis list votes at every height, with its voting power.
//! Malachite's types stay inside this module: callers see plain keys, powers and addresses.
//!
//! Files in the node's home: `consensus.redb` (commit certificates, served to peers that catch
//! up), `consensus.wal` (Malachite's write-ahead log).

mod app;
mod certs;
mod codec;
mod context;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gpunet_protocol::Block;
use malachitebft_app_channel::app::config::{ConsensusConfig, NodeConfig, ValueSyncConfig};
use malachitebft_app_channel::app::engine::host::HeightParams;
use malachitebft_app_channel::app::net::Multiaddr;
use malachitebft_app_channel::app::types::Keypair;
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::core::LinearTimeouts;
use malachitebft_app_channel::{
    ConsensusContext, EngineHandle, NetworkContext, NetworkIdentity, RequestContext, Signer,
    SyncContext, WalContext,
};
use malachitebft_signing_ed25519::{PrivateKey, PublicKey};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::addr::HostPort;
use crate::orderer::{Orderer, OrdererContext, OrdererError};
use app::{App, DecidedBlock};
use certs::CertStore;
use codec::BorshCodec;
use context::{GpunetContext, Height, Validator, ValidatorSet, ValidatorSigner};

/// File of the commit certificates inside the node's home.
pub const CERTS_FILE: &str = "consensus.redb";
/// Malachite's write-ahead log inside the node's home.
pub const WAL_FILE: &str = "consensus.wal";
/// Requests to the engine that may wait in line.
const REQUEST_CHANNEL_SIZE: usize = 100;

/// One member of the validator set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorEntry {
    /// The validator's ed25519 consensus key.
    pub public_key: [u8; 32],
    pub voting_power: u64,
}

/// How one validator takes part in consensus.
#[derive(Debug, Clone)]
pub struct MalachiteConfig {
    /// Where `consensus.redb` and `consensus.wal` live (the node's home).
    pub home: PathBuf,
    /// Name in logs and peer exchange.
    pub moniker: String,
    /// Secret seed of this validator's ed25519 key; also its libp2p identity.
    pub secret_key: [u8; 32],
    /// The whole validator set, this one included.
    pub validators: Vec<ValidatorEntry>,
    /// Where this validator listens for peers (TCP).
    pub p2p_listen: SocketAddr,
    /// The other validators' p2p addresses (IPs or DNS names, resolved at every dial); kept
    /// connected, and dialled again after a disconnection.
    pub peers: Vec<HostPort>,
    /// Least time between blocks, in milliseconds.
    pub block_ms: u64,
    pub max_txs_per_block: usize,
    /// Time a round waits for a proposal before it moves on (grows by half a second a round).
    pub propose_timeout: Duration,
    /// Misbehaviour to inject, for tests of the network's defences only.
    pub fault: Option<Fault>,
}

/// Misbehaviour a validator can be told to show, so tests can check that the others refuse
/// it. Never set on a real network: `gpunet node start` accepts it only through a hidden flag
/// and logs a warning at every faulty act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every block this validator proposes carries a forged transfer: the richest account's
    /// dollars sent to the validator, signed with the validator's key instead of the owner's.
    InvalidProposals,
}

/// Why a Malachite orderer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MalachiteConfigError {
    #[error("the validator set is empty, lists a key twice, or gives a validator no power")]
    BadValidatorSet,
    #[error("validator set entry {index} is not an ed25519 public key")]
    BadValidatorKey { index: usize },
    #[error("this node's key is not in the validator set")]
    NotAValidator,
}

impl MalachiteConfig {
    /// The public key of `secret_key`.
    pub fn public_key_of(secret_key: [u8; 32]) -> [u8; 32] {
        *PrivateKey::from(secret_key).public_key().as_bytes()
    }

    fn validator_set(&self) -> Result<ValidatorSet, MalachiteConfigError> {
        validator_set(&self.validators)
    }
}

fn validator_set(validators: &[ValidatorEntry]) -> Result<ValidatorSet, MalachiteConfigError> {
    let mut vals = Vec::with_capacity(validators.len());
    for (index, v) in validators.iter().enumerate() {
        let key = PublicKey::from_bytes(v.public_key)
            .map_err(|_| MalachiteConfigError::BadValidatorKey { index })?;
        vals.push(Validator::new(key, v.voting_power));
    }
    ValidatorSet::new(vals).ok_or(MalachiteConfigError::BadValidatorSet)
}

/// Checks that `block` was decided by `validators`: `certificate` (a commit certificate as a
/// validator keeps and serves it) names this block's height and hash, and carries valid
/// precommit signatures of more than two thirds of the voting power. What a node that syncs its
/// state checks before it trusts a peer's state root.
pub async fn verify_decided_block(
    chain_id: &str,
    validators: &[ValidatorEntry],
    block: &Block,
    certificate: &[u8],
) -> Result<(), String> {
    use malachitebft_app_channel::app::types::core::ThresholdParams;
    use malachitebft_signing::VerifierExt as _;

    let set = validator_set(validators).map_err(|e| e.to_string())?;
    let wire: codec::WireCertificate = borsh::from_slice(certificate)
        .map_err(|e| format!("the commit certificate does not decode: {e}"))?;
    let cert = wire.into_certificate().trim_vote_extensions();
    if cert.height != Height(block.header.height) {
        return Err(format!(
            "the certificate is for height {}, the block is at {}",
            cert.height.0, block.header.height
        ));
    }
    if cert.value_id != context::BlockId(block.header.hash().0) {
        return Err(format!(
            "the certificate is for block {}, not this block ({})",
            cert.value_id,
            block.header.hash()
        ));
    }
    // Verification uses the validators' public keys only; the signer's own key is never used.
    let verifier = ValidatorSigner::new(PrivateKey::from([0; 32]), chain_id);
    verifier
        .verify_commit_certificate(&GpunetContext, &cert, &set, ThresholdParams::default())
        .await
        .map_err(|e| format!("the commit certificate does not hold: {e}"))
}

/// The BFT orderer. Create it with [`MalachiteOrderer::new`] and hand it to
/// [`crate::start_with_orderer`].
pub struct MalachiteOrderer {
    config: MalachiteConfig,
    validators: ValidatorSet,
    running: Option<Running>,
    /// Fired at the next call of `next_block`, which the node makes only after committing the
    /// block the previous call returned.
    committed: Option<oneshot::Sender<()>>,
}

struct Running {
    decided: mpsc::Receiver<DecidedBlock>,
    app_task: JoinHandle<()>,
    engine: EngineHandle,
}

impl std::fmt::Debug for MalachiteOrderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MalachiteOrderer")
            .field("moniker", &self.config.moniker)
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

impl MalachiteOrderer {
    /// Checks the configuration; starts nothing (the engine starts on the first block).
    pub fn new(config: MalachiteConfig) -> Result<MalachiteOrderer, MalachiteConfigError> {
        let validators = config.validator_set()?;
        let me = PublicKey::from_bytes(MalachiteConfig::public_key_of(config.secret_key))
            .map_err(|_| MalachiteConfigError::NotAValidator)?;
        if validators
            .get(&context::ValidatorAddress::of(&me))
            .is_none()
        {
            return Err(MalachiteConfigError::NotAValidator);
        }
        Ok(MalachiteOrderer {
            config,
            validators,
            running: None,
            committed: None,
        })
    }

    async fn launch(&self, ctx: &OrdererContext) -> Result<Running, OrdererError> {
        let stopped = |reason: String| OrdererError::Stopped {
            orderer: "malachite",
            reason,
        };
        let cfg = &self.config;
        let shared = Arc::clone(ctx.shared());
        let chain_id = shared.chain_id.clone();
        let signer = Arc::new(ValidatorSigner::new(
            PrivateKey::from(cfg.secret_key),
            &chain_id,
        ));
        let address = signer.address();

        let keypair = Keypair::ed25519_from_bytes(cfg.secret_key)
            .map_err(|e| stopped(format!("p2p key: {e}")))?;
        let peer_id = keypair.public().to_peer_id();
        let proof = signer
            .sign_validator_proof(signer.public_key().as_bytes().to_vec(), peer_id.to_bytes())
            .await
            .map_err(|e| stopped(format!("validator proof: {e:?}")))?;
        let proof_bytes = BorshCodec
            .encode(&proof)
            .map_err(|e| stopped(format!("validator proof: {e}")))?;
        let identity = NetworkIdentity::new_validator(
            cfg.moniker.clone(),
            keypair,
            address.to_string(),
            proof_bytes,
        );

        let mut consensus = ConsensusConfig::default();
        consensus.p2p.listen_addr = tcp_multiaddr(cfg.p2p_listen);
        consensus.p2p.persistent_peers = cfg
            .peers
            .iter()
            .map(|p| p.multiaddr().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| stopped(format!("peer address: {e}")))?;
        let value_sync = ValueSyncConfig {
            status_update_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            ..ValueSyncConfig::default()
        };
        let engine_config = EngineConfig {
            moniker: cfg.moniker.clone(),
            consensus,
            value_sync,
        };

        let certs = Arc::new(
            CertStore::open(&cfg.home.join(CERTS_FILE)).map_err(|e| stopped(e.to_string()))?,
        );
        // Served to nodes that sync their state from this one (`GET /v1/sync/decided/{h}`).
        shared.set_certificates(Arc::clone(&certs) as Arc<dyn crate::chain::CertificateSource>);
        let mctx = GpunetContext;
        let (channels, engine) = malachitebft_app_channel::start_engine(
            mctx,
            engine_config,
            WalContext::new(cfg.home.join(WAL_FILE), BorshCodec),
            NetworkContext::new(identity, BorshCodec),
            ConsensusContext::new_validator(
                address,
                Box::new(ValidatorSigner::new(
                    PrivateKey::from(cfg.secret_key),
                    &chain_id,
                )),
                Box::new(ValidatorSigner::new(
                    PrivateKey::from(cfg.secret_key),
                    &chain_id,
                )),
            ),
            SyncContext::new(BorshCodec),
            RequestContext::new(REQUEST_CHANNEL_SIZE),
        )
        .await
        .map_err(|e| stopped(format!("cannot start the engine: {e:#}")))?;

        let timeouts = LinearTimeouts {
            propose: cfg.propose_timeout,
            ..LinearTimeouts::default()
        };
        let (decided_tx, decided) = mpsc::channel(1);
        let app = App {
            ctx: ctx.clone(),
            shared,
            signer,
            validators: self.validators.clone(),
            params: HeightParams::new(self.validators.clone(), timeouts, None),
            certs,
            max_txs_per_block: cfg.max_txs_per_block,
            block_ms: cfg.block_ms,
            decided: decided_tx,
            current: Height(0),
            blocks: BTreeMap::new(),
            future: BTreeMap::new(),
            last_commit: tokio::time::Instant::now(),
            fault: cfg.fault.map(|f| (f, cfg.secret_key)),
        };
        let app_task = tokio::spawn(async move {
            if let Err(e) = app.run(channels).await {
                tracing::error!(error = %e, "consensus application stopped");
            }
        });
        tracing::info!(
            moniker = %cfg.moniker,
            %address,
            p2p = %cfg.p2p_listen,
            validators = self.config.validators.len(),
            "malachite consensus started"
        );
        Ok(Running {
            decided,
            app_task,
            engine,
        })
    }
}

impl Drop for MalachiteOrderer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.app_task.abort();
            r.engine.actor.stop(None);
            r.engine.handle.abort();
        }
    }
}

impl Orderer for MalachiteOrderer {
    fn name(&self) -> &'static str {
        "malachite"
    }

    async fn next_block(&mut self, ctx: &OrdererContext) -> Result<Block, OrdererError> {
        if let Some(committed) = self.committed.take() {
            // The app loop may be gone already; then `recv` below reports it.
            let _ = committed.send(());
        }
        if self.running.is_none() {
            self.running = Some(self.launch(ctx).await?);
        }
        let running = self.running.as_mut().expect("launched above");
        // `recv` is cancel-safe: a block not yet taken stays in the channel.
        match running.decided.recv().await {
            Some(DecidedBlock { block, committed }) => {
                self.committed = Some(committed);
                Ok(block)
            }
            None => Err(OrdererError::Stopped {
                orderer: "malachite",
                reason: "the consensus application stopped (see the log)".to_owned(),
            }),
        }
    }
}

/// `/ip4/A/tcp/P` (or `/ip6/…`) for a socket address.
fn tcp_multiaddr(addr: SocketAddr) -> Multiaddr {
    HostPort::new_ip(addr)
        .multiaddr()
        .parse()
        .expect("an IP address and port always form a multiaddr")
}

/// What Malachite's engine reads its settings from.
struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }
    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }
    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }
    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }
    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}
