//! The HTTP API's request and response types, shared by the node's server, the provider
//! agent's server and the client. JSON everywhere; amounts as decimal strings, addresses as
//! `gpn1…`, hashes as hex. Every read answer carries the `height` it reflects.
//!
//! Two servers speak it:
//! - a **node** (`/v1/status`, `/v1/accounts/…`, `/v1/txs`, `/v1/txs/batch`, `/v1/orders`,
//!   `/v1/leases/…`, `/v1/providers`, `/v1/providers/…`, `/v1/events`, `/metrics`,
//!   `/openapi.json`; lists in cursor pages: `limit`, `after`, `next`);
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
    /// Stable snake_case name (`nonce_gap`, `not_found`, `method_not_allowed`, `bad_request`,
    /// `unauthorized`).
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

impl ErrorBody {
    /// The answer for a path no route serves (404 `not_found`); the node and the agent both
    /// answer unknown paths with it, so a client sees one error format everywhere.
    pub fn no_route(path: &str) -> ErrorBody {
        ErrorBody::new(
            "not_found",
            format!(
                "no route {}; check the path (a node lists its routes at /openapi.json)",
                shorten(path)
            ),
        )
    }

    /// The answer for a known path asked with a method it does not take (405
    /// `method_not_allowed`); the `Allow` header beside it lists the methods it takes.
    pub fn method_not_allowed(method: &str, path: &str) -> ErrorBody {
        ErrorBody::new(
            "method_not_allowed",
            format!(
                "{} is not allowed on {}; use a method from the Allow header",
                shorten(method),
                shorten(path)
            ),
        )
    }
}

/// Most characters of a request's own text quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 200;

/// `s`, cut to [`MAX_QUOTED_CHARS`] characters so a huge path does not make a huge answer.
pub fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_errors_have_stable_names_and_quote_at_most_200_characters() {
        assert_eq!(ErrorBody::no_route("/v2/x").name, "not_found");
        assert!(
            ErrorBody::no_route("/v2/x")
                .message
                .contains("no route /v2/x;")
        );
        let wrong = ErrorBody::method_not_allowed("DELETE", "/v1/status");
        assert_eq!(wrong.name, "method_not_allowed");
        assert_eq!(wrong.code, None);
        assert!(
            wrong
                .message
                .starts_with("DELETE is not allowed on /v1/status;")
        );
        let long = ErrorBody::no_route(&format!("/{}", "é".repeat(1000)));
        assert!(long.message.chars().count() < 300, "{}", long.message);
        assert!(long.message.contains("…;"), "{}", long.message);
    }
}
