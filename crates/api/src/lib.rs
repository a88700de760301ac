//! The HTTP API's request and response types, shared by the node's server, the provider
//! agent's server and the client. JSON everywhere; amounts as decimal strings, addresses as
//! `gpn1…`, hashes as hex. Every read answer carries the `height` it reflects.
//!
//! Two servers speak it:
//! - a **node** (`/v1/status`, `/v1/accounts/…`, `/v1/txs`, `/v1/txs/batch`, `/v1/orders`,
//!   `/v1/leases/…`, `/v1/providers`, `/v1/events`, `/metrics`, `/openapi.json`);
//! - a **provider agent** (`/v1/leases/{id}/manifest|status|logs|outputs`), where every request
//!   is signed by the lease's tenant (see [`auth`]).
//!
//! Architecture Invariant: types only — no business logic, no I/O.

pub mod auth;
pub mod node;
pub mod provider;

use serde::{Deserialize, Serialize};

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable rejection code when the error is a protocol [`gpunet_protocol::Rejection`].
    pub code: Option<u32>,
    /// Stable snake_case name (`nonce_gap`, `not_found`, `bad_request`, `unauthorized`).
    pub name: String,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl ErrorBody {
    pub fn new(name: &str, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: None,
            name: name.to_owned(),
            message: message.into(),
        }
    }
}

impl From<gpunet_protocol::Rejection> for ErrorBody {
    fn from(r: gpunet_protocol::Rejection) -> Self {
        ErrorBody {
            code: Some(r.code()),
            name: r.name().to_owned(),
            message: r.message().to_owned(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "{} ({c}): {}", self.name, self.message),
            None => write!(f, "{}: {}", self.name, self.message),
        }
    }
}

/// Header naming the height an answer reflects.
pub const HEIGHT_HEADER: &str = "x-gpunet-height";
