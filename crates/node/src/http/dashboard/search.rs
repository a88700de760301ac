//! `/search?q=…`: an address, a job (order) id, a lease id, a block height or a transaction
//! hash, answered with a 303 to its page. A bare number may name a block, a job and a lease at
//! once: one that exists is a redirect, several a page that links each. Nothing matching is a
//! 404 page that lists the forms searched.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use gpunet_api::node::TxState;
use gpunet_protocol::{Address, Hash, LeaseId, OrderId};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Page, PageError, Section, block_link, job_link, lease_link};
use crate::http::{ApiError, App, lookup_in, tx_view};

#[derive(Debug, Deserialize)]
pub(in crate::http) struct SearchQuery {
    q: Option<String>,
}

/// Longest query looked at: an address is 62 characters, a `0x` hash 66.
const MAX_QUERY_CHARS: usize = 100;

fn forms() -> Markup {
    html! {
        p { "The search box takes:" }
        ul {
            li { "an address: " code { "gpn1…" } " (its wallet page)" }
            li { "a job: " code { "42" } ", " code { "job-42" } " or " code { "order-42" } }
            li { "a lease: " code { "lease-7" } " (or " code { "7" } ")" }
            li { "a block height: " code { "block-1200" } " (or " code { "1200" } ")" }
            li { "a transaction hash: 64 hex characters" }
        }
    }
}

fn see_other(to: String) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response()
}

/// What a query may name.
enum Target {
    Address(Address),
    Job(OrderId),
    Lease(LeaseId),
    Block(u64),
    Tx(Hash),
    /// A bare number: a block, a job or a lease.
    Number(u64),
}

fn parse(q: &str) -> Option<Target> {
    let lower = q.to_ascii_lowercase();
    if lower.starts_with("gpn1") {
        return Address::parse(&lower).ok().map(Target::Address);
    }
    let number = |prefix: &str| {
        lower
            .strip_prefix(prefix)
            .map(|rest| rest.trim_start_matches(['-', ' ', '#']))
            .and_then(|digits| digits.parse::<u64>().ok())
    };
    if let Some(n) = number("job").or_else(|| number("order")) {
        return Some(Target::Job(OrderId(n)));
    }
    if let Some(n) = number("lease") {
        return Some(Target::Lease(LeaseId(n)));
    }
    if let Some(n) = number("block") {
        return Some(Target::Block(n));
    }
    if let Ok(n) = lower.trim_start_matches('#').parse::<u64>() {
        return Some(Target::Number(n));
    }
    let hex = lower.strip_prefix("0x").unwrap_or(&lower);
    if hex.len() == 64 {
        return Hash::from_hex(hex).ok().map(Target::Tx);
    }
    None
}

pub(in crate::http) async fn search(
    State(app): State<App>,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(q) =
        q.map_err(|e| PageError::bad_request(format!("bad query: {}", e.body_text())))?;
    let text = q.q.as_deref().unwrap_or_default().trim();
    if text.is_empty() {
        return Err(PageError::bad_request("the search is empty").with_hint(forms()));
    }
    let tip = app.shared.tip();
    let state = &tip.state;
    let nothing = || {
        PageError::not_found(
            state.height,
            format!(
                "nothing on this chain matches {:?}",
                gpunet_api::shorten(text)
            ),
        )
        .with_hint(forms())
    };
    if text.len() > MAX_QUERY_CHARS {
        return Err(nothing());
    }
    let lookup = lookup_in(&app, state);
    let store_err = |e| PageError::from(ApiError::store("order and lease history", e));
    let job_exists = |id: OrderId| lookup.order(id).map(|o| o.is_some()).map_err(store_err);
    let lease_exists = |id: LeaseId| lookup.lease(id).map(|l| l.is_some()).map_err(store_err);
    let block_exists = |h: u64| (1..=state.height).contains(&h);
    let found = match parse(text).ok_or_else(nothing)? {
        Target::Address(a) => format!("/accounts/{a}"),
        Target::Job(id) if job_exists(id)? => format!("/jobs/{}", id.0),
        Target::Lease(id) if lease_exists(id)? => format!("/leases/{}", id.0),
        Target::Block(h) if block_exists(h) => format!("/blocks/{h}"),
        Target::Tx(h) => {
            if tx_view(&app, h)?.state == TxState::Unknown {
                return Err(nothing());
            }
            format!("/txs/{h}")
        }
        Target::Number(n) => {
            let (block, job, lease) = (
                block_exists(n),
                job_exists(OrderId(n))?,
                lease_exists(LeaseId(n))?,
            );
            match (block, job, lease) {
                (false, false, false) => return Err(nothing()),
                (true, false, false) => format!("/blocks/{n}"),
                (false, true, false) => format!("/jobs/{n}"),
                (false, false, true) => format!("/leases/{n}"),
                _ => {
                    let body = html! {
                        p { (n) " names more than one thing here:" }
                        ul {
                            @if block { li { "block " (block_link(n)) } }
                            @if job { li { (job_link(OrderId(n))) } }
                            @if lease { li { (lease_link(LeaseId(n))) } }
                        }
                        p.note { "Search " code { "job-" (n) } ", " code { "lease-" (n) } " or " code { "block-" (n) } " to go straight there." }
                    };
                    return Ok(Page::new(
                        format!("Search: {n}"),
                        Section::None,
                        state.height,
                        body,
                    )
                    .into_response());
                }
            }
        }
        Target::Job(_) | Target::Lease(_) | Target::Block(_) => return Err(nothing()),
    };
    Ok(see_other(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_into_what_they_name() {
        assert!(matches!(parse("job-4"), Some(Target::Job(OrderId(4)))));
        assert!(matches!(parse("Order 4"), Some(Target::Job(OrderId(4)))));
        assert!(matches!(parse("lease-7"), Some(Target::Lease(LeaseId(7)))));
        assert!(matches!(parse("block-12"), Some(Target::Block(12))));
        assert!(matches!(parse("#12"), Some(Target::Number(12))));
        assert!(matches!(parse(&"ab".repeat(32)), Some(Target::Tx(_))));
        assert!(matches!(
            parse(&format!("0x{}", "AB".repeat(32))),
            Some(Target::Tx(_))
        ));
        assert!(parse("gpn1nope").is_none());
        assert!(parse("job-x").is_none());
        assert!(parse("hello").is_none());
        assert!(parse(&"ab".repeat(31)).is_none());
    }
}
