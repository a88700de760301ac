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
pub use node::{MAX_WALK_PAGES, NodeClient, OrderFilter};
pub use provider::{ProviderClient, ShellRx, ShellTx};
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
        source: serde_json::Error,
    },
    #[error("reading the answer of {url} failed: {source}")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{url} answered more than {limit_bytes} bytes, the most this client reads of one \
         answer; ask for less (a smaller `limit` on a list) or check that the URL is a gpunet node"
    )]
    TooLarge { url: String, limit_bytes: usize },
    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout { what: String, waited_ms: u64 },
    #[error("transaction {tx_hash} was rejected: {rejection}")]
    Rejected {
        tx_hash: gpunet_protocol::Hash,
        rejection: gpunet_protocol::Rejection,
    },
    #[error("cannot read every page of {url}: {why}")]
    Pages { url: String, why: String },
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
    #[error("the shell to {url} failed: {why}")]
    Shell { url: String, why: String },
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

/// Most bytes of one JSON answer (or error body) the client reads, from a node or an agent:
/// far above the largest page a node serves (`MAX_PAGE_LIMIT` orders), far below what would
/// hurt the reader. A larger body is refused ([`ClientError::TooLarge`]) as it arrives, not
/// after it was all held in memory.
pub const MAX_RESPONSE_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Most bytes of an error answer's body read: it becomes a message, not data.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The body of `resp`, read chunk by chunk and refused past `limit_bytes`.
pub(crate) async fn read_capped(
    url: &str,
    mut resp: reqwest::Response,
    limit_bytes: usize,
) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::TooLarge {
        url: url.to_owned(),
        limit_bytes,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > limit_bytes as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| ClientError::Body {
        url: url.to_owned(),
        source,
    })? {
        if body.len() + chunk.len() > limit_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns an HTTP answer into `T` or a [`ClientError::Api`] carrying the server's error body.
/// A success body is read up to [`MAX_RESPONSE_BODY_BYTES`], an error body up to 64 KiB.
pub(crate) async fn decode<T: serde::de::DeserializeOwned>(
    url: &str,
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    let status = resp.status();
    if status.is_success() {
        let bytes = read_capped(url, resp, MAX_RESPONSE_BODY_BYTES).await?;
        return serde_json::from_slice::<T>(&bytes).map_err(|source| ClientError::Decode {
            url: url.to_owned(),
            source,
        });
    }
    // An error body that cannot be read, or is too long to quote, still leaves the status.
    let text = read_capped(url, resp, MAX_ERROR_BODY_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let body = serde_json::from_str::<ErrorBody>(&text)
        .unwrap_or_else(|_| ErrorBody::new("http_error", text.trim().to_owned()));
    Err(ClientError::Api {
        url: url.to_owned(),
        status: status.as_u16(),
        body,
    })
}
