//! Cursor pages for the list endpoints (`GET /v1/providers`, `GET /v1/orders`).
//!
//! A page is `?limit=N&after=<cursor>`: at most `limit` entries (default
//! [`DEFAULT_PAGE_LIMIT`], at most [`MAX_PAGE_LIMIT`]; more is refused, not clamped) after the
//! entry the cursor names, in the list's key order. The answer's `next` is the cursor of the
//! page after it, `null` once the list is done. The ledger's tables are ordered maps, so a page
//! starts with one `range` lookup and costs O(page · log n), never a walk of the whole table.
//!
//! A cursor names the last key a page *examined* (not the last it returned), so a filter no
//! range lookup answers (`tenant=` with `state=open`: the tenant's orders, from the node's
//! index, kept when open) can stop after [`MAX_PAGE_EXAMINED`] entries and still hand back
//! where to go on. Cursors are opaque to clients: `p.<address>` for providers,
//! `o.<order id>` for orders, `t.<height>.<position>` for an account's transactions
//! (`GET /v1/accounts/{address}/txs`, newest first, pages of at most
//! [`MAX_ACCOUNT_TXS_LIMIT`]); one list's cursor is refused by another.

use gpunet_api::node::{
    DEFAULT_PAGE_LIMIT, MAX_ACCOUNT_TXS_LIMIT, MAX_PAGE_EXAMINED, MAX_PAGE_LIMIT,
};
use gpunet_protocol::{Address, OrderId};

use super::ApiError;
use crate::account_txs::TxPosition;

/// What a cursor names: the last key of the page it came from.
pub(crate) trait CursorKey: Sized + Copy {
    /// Tells this list's cursors from another's.
    const PREFIX: &'static str;
    fn to_text(self) -> String;
    fn from_text(s: &str) -> Option<Self>;
}

impl CursorKey for Address {
    const PREFIX: &'static str = "p.";
    fn to_text(self) -> String {
        self.to_string()
    }
    fn from_text(s: &str) -> Option<Self> {
        Address::parse(s).ok()
    }
}

impl CursorKey for OrderId {
    const PREFIX: &'static str = "o.";
    fn to_text(self) -> String {
        self.0.to_string()
    }
    fn from_text(s: &str) -> Option<Self> {
        canonical(s).map(OrderId)
    }
}

/// Only the canonical digits, so every key has exactly one cursor.
fn canonical<N: std::str::FromStr + ToString>(s: &str) -> Option<N> {
    let n: N = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

impl CursorKey for TxPosition {
    const PREFIX: &'static str = "t.";
    fn to_text(self) -> String {
        format!("{}.{}", self.height, self.index)
    }
    fn from_text(s: &str) -> Option<Self> {
        let (height, index) = s.split_once('.')?;
        Some(TxPosition {
            height: canonical(height)?,
            index: canonical(index)?,
        })
    }
}

pub(crate) fn encode_cursor<K: CursorKey>(key: K) -> String {
    format!("{}{}", K::PREFIX, key.to_text())
}

/// The `after` query parameter: `None` for the first page.
pub(crate) fn parse_after<K: CursorKey>(after: Option<&str>) -> Result<Option<K>, ApiError> {
    let Some(raw) = after else {
        return Ok(None);
    };
    raw.strip_prefix(K::PREFIX)
        .and_then(K::from_text)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter after: {:?} is not a cursor of this list; a cursor is the \
                 `next` string of an earlier page of the same list, passed back unchanged \
                 (leave `after` out for the first page)",
                gpunet_api::shorten(raw)
            ))
        })
}

/// The `limit` query parameter: refused, not clamped, outside 1 to [`MAX_PAGE_LIMIT`] (the
/// OpenAPI document declares the range; a client asking for more should learn it gets less).
pub(crate) fn parse_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    parse_limit_of(limit, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT)
}

/// [`parse_limit`] for an account's transactions: default 50, at most
/// [`MAX_ACCOUNT_TXS_LIMIT`].
pub(crate) fn parse_account_txs_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    parse_limit_of(
        limit,
        gpunet_api::node::DEFAULT_ACCOUNT_TXS_LIMIT,
        MAX_ACCOUNT_TXS_LIMIT,
    )
}

/// `limit` of `GET /v1/providers/{address}/challenges`: absent is the default, else 1 to the
/// maximum.
pub(crate) fn parse_challenges_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    parse_limit_of(
        limit,
        gpunet_api::node::DEFAULT_CHALLENGE_EVENTS,
        gpunet_api::node::MAX_CHALLENGE_EVENTS,
    )
}

fn parse_limit_of(limit: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(s) = limit else {
        return Ok(default);
    };
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter limit: {:?} is not a number from 1 to {max} \
                 (a page holds at most {max} entries; follow `next` for more)",
                gpunet_api::shorten(s)
            ))
        })
}

/// One page from `keys` (already positioned after the cursor, in list order): the entries
/// `keep` returns, at most `limit` of them, examining at most [`MAX_PAGE_EXAMINED`] keys.
/// The cursor returned is the last key examined when any key is left, `None` at the end.
pub(crate) fn page<K: CursorKey, T>(
    keys: impl Iterator<Item = K>,
    limit: usize,
    mut keep: impl FnMut(K) -> Option<T>,
) -> (Vec<T>, Option<String>) {
    let mut keys = keys.peekable();
    let mut out = Vec::with_capacity(limit.min(MAX_PAGE_LIMIT));
    let mut examined = 0;
    while let Some(key) = keys.next() {
        examined += 1;
        if let Some(entry) = keep(key) {
            out.push(entry);
        }
        if out.len() >= limit || examined >= MAX_PAGE_EXAMINED {
            let next = keys.peek().is_some().then(|| encode_cursor(key));
            return (out, next);
        }
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<u64>) -> impl Iterator<Item = OrderId> {
        range.map(OrderId)
    }

    #[test]
    fn a_page_ends_at_its_limit_and_names_its_last_key_only_when_more_remain() {
        let (got, next) = page(ids(0..5), 2, Some);
        assert_eq!(got, vec![OrderId(0), OrderId(1)]);
        assert_eq!(next.as_deref(), Some("o.1"));
        // Exactly `limit` left: the page is the last one.
        let (got, next) = page(ids(3..5), 2, Some);
        assert_eq!(got.len(), 2);
        assert_eq!(next, None);
        let (got, next) = page(ids(0..0), 2, Some);
        assert!(got.is_empty() && next.is_none());
    }

    #[test]
    fn a_filter_that_matches_nothing_stops_after_the_examined_bound_with_a_cursor() {
        let total = MAX_PAGE_EXAMINED as u64 * 2;
        let (got, next) = page(ids(0..total), 10, |_| None::<OrderId>);
        assert!(got.is_empty());
        assert_eq!(
            next,
            Some(encode_cursor(OrderId(MAX_PAGE_EXAMINED as u64 - 1)))
        );
    }

    #[test]
    fn cursors_round_trip_and_other_text_is_refused() {
        let c = encode_cursor(OrderId(42));
        assert_eq!(
            parse_after::<OrderId>(Some(&c)).ok(),
            Some(Some(OrderId(42)))
        );
        let a = Address([7; 32]);
        let c = encode_cursor(a);
        assert_eq!(parse_after::<Address>(Some(&c)).ok(), Some(Some(a)));
        // Another list's cursor, a bare key, a non-canonical number, garbage.
        for bad in [c.as_str(), "42", "o.042", "o.", "o.-1", "zzz"] {
            assert!(parse_after::<OrderId>(Some(bad)).is_err(), "{bad}");
        }
        assert!(parse_after::<Address>(Some("o.1")).is_err());
        assert_eq!(parse_after::<OrderId>(None).ok(), Some(None));

        // An account's transactions: height and position, each canonical, each in range.
        let at = TxPosition {
            height: u64::MAX,
            index: u32::MAX,
        };
        let c = encode_cursor(at);
        assert_eq!(parse_after::<TxPosition>(Some(&c)).ok(), Some(Some(at)));
        for bad in [
            "t.1",
            "t.1.",
            "t..1",
            "t.01.1",
            "t.1.01",
            "t.1.2.3",
            "t.-1.0",
            "t.1.4294967296",
            "t.18446744073709551616.0",
            "o.1",
            "1.2",
        ] {
            assert!(parse_after::<TxPosition>(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_outside_one_to_the_maximum_are_refused() {
        assert_eq!(parse_limit(None).ok(), Some(DEFAULT_PAGE_LIMIT));
        assert_eq!(parse_limit(Some("1")).ok(), Some(1));
        assert_eq!(parse_limit(Some("1000")).ok(), Some(MAX_PAGE_LIMIT));
        for bad in ["0", "1001", "-1", "x", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(parse_account_txs_limit(None).ok(), Some(50));
        assert_eq!(parse_account_txs_limit(Some("200")).ok(), Some(200));
        assert!(parse_account_txs_limit(Some("201")).is_err());
    }
}
