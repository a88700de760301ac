//! What the lease side of the agent needs from the chain, behind one small trait so that the
//! HTTP server and the lease lifecycle can be tested without a node. [`NodeChain`] is the real
//! one, over a [`NodeClient`] that signs with the provider's key.

use std::sync::Arc;
use std::time::Duration;

use gpunet_api::node::{LeaseView, OrderView};
use gpunet_client::{ClientError, NodeClient};
use gpunet_protocol::{LeaseId, Msg, OrderId};

/// How long a submitted transaction may take to be included.
pub const TX_INCLUSION_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a chain lookup or a transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{what} is not on chain")]
    NotFound { what: String },
    #[error(transparent)]
    Client {
        #[from]
        source: ClientError,
    },
}

/// Reads leases and orders, and submits the provider's transactions.
#[async_trait::async_trait]
pub trait Chain: Send + Sync {
    async fn lease(&self, id: LeaseId) -> Result<LeaseView, ChainError>;
    async fn order(&self, id: OrderId) -> Result<OrderView, ChainError>;
    /// Signs and submits `msg` as the provider, and waits until a block applies it.
    async fn submit(&self, msg: Msg) -> Result<(), ChainError>;
}

/// The chain as a node's HTTP API shows it.
pub struct NodeChain {
    client: Arc<NodeClient>,
}

impl NodeChain {
    /// `client` must hold the provider's key; every send goes through it, so nonces never
    /// collide.
    pub fn new(client: Arc<NodeClient>) -> NodeChain {
        NodeChain { client }
    }
}

fn not_found(what: String) -> impl FnOnce(ClientError) -> ChainError {
    move |e| match &e {
        ClientError::Api { status: 404, .. } => ChainError::NotFound { what },
        _ => ChainError::Client { source: e },
    }
}

#[async_trait::async_trait]
impl Chain for NodeChain {
    async fn lease(&self, id: LeaseId) -> Result<LeaseView, ChainError> {
        self.client
            .lease(id)
            .await
            .map_err(not_found(format!("lease {id}")))
    }

    async fn order(&self, id: OrderId) -> Result<OrderView, ChainError> {
        self.client
            .order(id)
            .await
            .map_err(not_found(format!("order {id}")))
    }

    async fn submit(&self, msg: Msg) -> Result<(), ChainError> {
        self.client
            .send_and_wait(msg, TX_INCLUSION_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(ChainError::from)
    }
}
