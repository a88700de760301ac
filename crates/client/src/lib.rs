//! The typed client every gpunet program uses to talk to a node and to provider agents: the
//! HTTP calls, a transaction signer that fetches nonces and fees, key files, and a reader for
//! the node's event stream, and the randomness behind sealed manifests and outputs.

pub mod inputs;
pub mod keys;
mod node;
mod provider;
pub mod sealing;
mod state;

pub use keys::{KeyError, KeyFile, load_or_create_encryption_secret};
pub use node::{NodeClient, OrderFilter};
pub use provider::ProviderClient;
pub use state::VerifiedAccount;

use gpunet_api::ErrorBody;

/// What can go wrong talking to a node or an agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {source}; is the node running? (`gpunet dev` starts one)")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Api {
        url: String,
        status: u16,
        body: ErrorBody,
    },
    #[error("{url} answered something that is not the expected JSON: {source}")]
    Decode {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout { what: String, waited_ms: u64 },
    #[error("transaction {tx_hash} was rejected: {rejection}")]
    Rejected {
        tx_hash: gpunet_protocol::Hash,
        rejection: gpunet_protocol::Rejection,
    },
    #[error("{what} could not be verified: {why}; the node's answer does not prove it")]
    Unverified { what: String, why: String },
    #[error("the event stream from {url} broke: {why}")]
    Stream { url: String, why: String },
    #[error("cannot seal or open {what}: {source}")]
    Sealed {
        what: String,
        #[source]
        source: gpunet_protocol::SealError,
    },
    #[error("{what} came back wrong: {why}; the provider or a proxy on the way sent other bytes")]
    LogMismatch { what: String, why: String },
    #[error("{what} does not match its digest {expected}; the provider sent other bytes")]
    DigestMismatch {
        what: String,
        expected: gpunet_protocol::Hash,
    },
}

impl ClientError {
    /// The protocol rejection behind this error, if it is one.
    pub fn rejection(&self) -> Option<gpunet_protocol::Rejection> {
        match self {
            ClientError::Api { body, .. } => {
                body.code.and_then(gpunet_protocol::Rejection::from_code)
            }
            ClientError::Rejected { rejection, .. } => Some(*rejection),
            _ => None,
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Turns an HTTP answer into `T` or a [`ClientError::Api`] carrying the server's error body.
pub(crate) async fn decode<T: serde::de::DeserializeOwned>(
    url: &str,
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return resp
            .json::<T>()
            .await
            .map_err(|source| ClientError::Decode {
                url: url.to_owned(),
                source,
            });
    }
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str::<ErrorBody>(&text)
        .unwrap_or_else(|_| ErrorBody::new("http_error", text.trim().to_owned()));
    Err(ClientError::Api {
        url: url.to_owned(),
        status: status.as_u16(),
        body,
    })
}
