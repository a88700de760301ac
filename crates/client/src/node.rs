//! The node API client and the transaction signer.

use std::time::Duration;

use futures::{Stream, StreamExt};
use gpunet_api::node::{
    AccountTxList, AccountView, EventEnvelope, ExplainView, LeaseView, OrderList, OrderView,
    ParamsView, ProviderList, ProviderView, QuoteRequest, StatusView, SubmitTx, SubmitTxResult,
    TxState, TxView,
};
use gpunet_protocol::{
    Address, Hash, LeaseId, Msg, OrderId, OrderTerms, Rejection, SignedTx, TxBody,
};
use tokio::sync::Mutex;

use crate::{ClientError, KeyFile, MAX_RESPONSE_BODY_BYTES, decode};

/// How often [`NodeClient::wait_tx`] polls, in milliseconds.
const TX_POLL_MS: u64 = 100;
/// How long [`NodeClient::send`] keeps retrying a transaction the node refuses as
/// `mempool_full` before it returns that refusal.
pub const MEMPOOL_FULL_PATIENCE: Duration = Duration::from_secs(30);

/// Which orders to list.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub tenant: Option<Address>,
    /// Only open orders.
    pub open_only: bool,
    /// Entries per page (the node's default when `None`; at most
    /// `gpunet_api::node::MAX_PAGE_LIMIT`).
    pub limit: Option<usize>,
    /// Start after this cursor: the `next` of an earlier page with the same filter.
    pub after: Option<String>,
}

/// Most pages one walk ([`NodeClient::providers`], [`NodeClient::orders_all`]) reads before it
/// gives up: a million entries at the largest page, or a node whose cursor never ends.
pub const MAX_WALK_PAGES: usize = 1_000;

/// `s` as a query value: unreserved characters as they are, every other byte `%XX`.
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Walks a cursor-paged list: `fetch(after)` reads one page and returns its height, its
/// entries and `next`; the walk returns the first page's height and every entry. Each page
/// reads the tip at its own height, so a walk is not one snapshot: an entry added meanwhile
/// before the cursor is missed, one changed meanwhile may appear in its newer form; none
/// appears twice, since the cursor only moves on.
async fn walk<T, F, Fut>(
    what: &str,
    first: Option<String>,
    mut fetch: F,
) -> Result<(u64, Vec<T>), ClientError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(u64, Vec<T>, Option<String>), ClientError>>,
{
    let mut all = Vec::new();
    let mut after = first;
    let mut first_height = None;
    for _ in 0..MAX_WALK_PAGES {
        let (height, mut page, next) = fetch(after.clone()).await?;
        first_height.get_or_insert(height);
        all.append(&mut page);
        match next {
            None => return Ok((first_height.unwrap_or(height), all)),
            Some(n) if Some(&n) == after.as_ref() => {
                return Err(ClientError::Pages {
                    url: what.to_owned(),
                    why: format!("the node answered the cursor {n:?} it was given"),
                });
            }
            Some(n) => after = Some(n),
        }
    }
    Err(ClientError::Pages {
        url: what.to_owned(),
        why: format!("more than {MAX_WALK_PAGES} pages; read one page at a time instead"),
    })
}

/// A client for one node, optionally holding a signing key.
pub struct NodeClient {
    base: String,
    http: reqwest::Client,
    signer: Option<KeyFile>,
    /// The next nonce to use, once learned; `None` means ask the node.
    next_nonce: Mutex<Option<u64>>,
    /// The chain id and minimum fee, fixed at genesis: learned once, on the first send.
    chain: tokio::sync::OnceCell<(String, gpunet_protocol::Amount)>,
}

impl NodeClient {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:8645`).
    pub fn new(base: &str) -> NodeClient {
        NodeClient {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("a plain HTTP client always builds"),
            signer: None,
            next_nonce: Mutex::new(None),
            chain: tokio::sync::OnceCell::new(),
        }
    }

    /// The same client, signing with `key`.
    pub fn with_signer(mut self, key: KeyFile) -> NodeClient {
        self.signer = Some(key);
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn signer(&self) -> Option<&KeyFile> {
        self.signer.as_ref()
    }

    pub(crate) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        decode(&url, resp).await
    }

    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/v1/status").await
    }

    pub async fn params(&self) -> Result<ParamsView, ClientError> {
        self.get("/v1/params").await
    }

    pub async fn account(&self, address: &Address) -> Result<AccountView, ClientError> {
        self.get(&format!("/v1/accounts/{address}")).await
    }

    /// One page of the transactions `address` signed (applied or rejected) and the transfers
    /// that paid it, newest first: at most `limit` (the node's default of 50 when `None`; at
    /// most `gpunet_api::node::MAX_ACCOUNT_TXS_LIMIT`), older than the cursor `after` (`None`:
    /// from the newest).
    pub async fn account_txs(
        &self,
        address: &Address,
        limit: Option<usize>,
        after: Option<&str>,
    ) -> Result<AccountTxList, ClientError> {
        let mut q = Vec::new();
        if let Some(l) = limit {
            q.push(format!("limit={l}"));
        }
        if let Some(a) = after {
            q.push(format!("after={}", query_value(a)));
        }
        self.get(&format!("/v1/accounts/{address}/txs?{}", q.join("&")))
            .await
    }

    /// The price index the node computes from the newest leases (`GET /v1/market/prices`).
    pub async fn market_prices(&self) -> Result<gpunet_api::node::PriceIndexView, ClientError> {
        self.get("/v1/market/prices").await
    }

    /// `provider`'s newest hardware challenge events (`limit`: the node's default when `None`).
    pub async fn provider_challenges(
        &self,
        provider: &Address,
        limit: Option<usize>,
    ) -> Result<gpunet_api::node::ChallengeHistoryView, ClientError> {
        let q = limit.map(|l| format!("?limit={l}")).unwrap_or_default();
        self.get(&format!("/v1/providers/{provider}/challenges{q}"))
            .await
    }

    /// One page of providers, by address: at most `limit` (the node's default when `None`)
    /// after the cursor `after` (`None`: from the first).
    pub async fn providers_page(
        &self,
        limit: Option<usize>,
        after: Option<&str>,
    ) -> Result<ProviderList, ClientError> {
        let mut q = Vec::new();
        if let Some(l) = limit {
            q.push(format!("limit={l}"));
        }
        if let Some(a) = after {
            q.push(format!("after={}", query_value(a)));
        }
        self.get(&format!("/v1/providers?{}", q.join("&"))).await
    }

    /// Every provider, walking the pages (largest pages; see `walk` for what a walk across
    /// heights may miss). `height` is the first page's; `next` is `None`.
    pub async fn providers(&self) -> Result<ProviderList, ClientError> {
        let (height, providers) = walk(
            &format!("{}/v1/providers", self.base),
            None,
            |after| async move {
                let page = self
                    .providers_page(Some(gpunet_api::node::MAX_PAGE_LIMIT), after.as_deref())
                    .await?;
                Ok((page.height, page.providers, page.next))
            },
        )
        .await?;
        Ok(ProviderList {
            height,
            providers,
            next: None,
        })
    }

    /// The provider registered at `address`, `None` if there is none. A node too old to have
    /// `GET /v1/providers/{address}` answers an error (its "no route"), not `None`: a caller
    /// must not take "cannot ask" for "not registered".
    pub async fn provider(&self, address: &Address) -> Result<Option<ProviderView>, ClientError> {
        match self.get(&format!("/v1/providers/{address}")).await {
            Ok(view) => Ok(Some(view)),
            Err(ClientError::Api {
                status: 404, body, ..
            }) if body.name == "not_found" && !body.message.starts_with("no route") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of orders, newest first, from `filter.after`.
    pub async fn orders(&self, filter: &OrderFilter) -> Result<OrderList, ClientError> {
        let mut q = vec![format!(
            "state={}",
            if filter.open_only { "open" } else { "all" }
        )];
        if let Some(t) = filter.tenant {
            q.push(format!("tenant={t}"));
        }
        if let Some(l) = filter.limit {
            q.push(format!("limit={l}"));
        }
        if let Some(a) = &filter.after {
            q.push(format!("after={}", query_value(a)));
        }
        self.get(&format!("/v1/orders?{}", q.join("&"))).await
    }

    /// Every order `filter` selects, newest first, walking the pages from `filter.after`
    /// (pages of `filter.limit`, or the largest). `height` is the first page's; `next` is
    /// `None`.
    pub async fn orders_all(&self, filter: &OrderFilter) -> Result<OrderList, ClientError> {
        let limit = filter.limit.or(Some(gpunet_api::node::MAX_PAGE_LIMIT));
        let (height, orders) = walk(
            &format!("{}/v1/orders", self.base),
            filter.after.clone(),
            |after| {
                let page_filter = OrderFilter {
                    limit,
                    after,
                    ..filter.clone()
                };
                async move {
                    let page = self.orders(&page_filter).await?;
                    Ok((page.height, page.orders, page.next))
                }
            },
        )
        .await?;
        Ok(OrderList {
            height,
            orders,
            next: None,
        })
    }

    pub async fn order(&self, id: OrderId) -> Result<OrderView, ClientError> {
        self.get(&format!("/v1/orders/{id}")).await
    }

    /// Why an open order has (or has not) matched: `GET /v1/orders/{id}/explain`.
    pub async fn explain_order(&self, id: OrderId) -> Result<ExplainView, ClientError> {
        self.get(&format!("/v1/orders/{id}/explain")).await
    }

    /// What `terms` would cost now, and who could run them: `POST /v1/quote`.
    pub async fn quote(&self, terms: &OrderTerms) -> Result<ExplainView, ClientError> {
        let url = format!("{}/v1/quote", self.base);
        let resp = self
            .http
            .post(&url)
            .json(&QuoteRequest {
                terms: terms.clone(),
            })
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        decode(&url, resp).await
    }

    pub async fn lease(&self, id: LeaseId) -> Result<LeaseView, ClientError> {
        self.get(&format!("/v1/leases/{id}")).await
    }

    pub async fn tx(&self, hash: &Hash) -> Result<TxView, ClientError> {
        self.get(&format!("/v1/txs/{hash}")).await
    }

    /// Submits a signed transaction; the node checks it and queues it.
    pub async fn submit(&self, tx: &SignedTx) -> Result<Hash, ClientError> {
        let url = format!("{}/v1/txs", self.base);
        let body = SubmitTx {
            tx_hex: hex::encode(tx.encode()),
        };
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let r: SubmitTxResult = decode(&url, resp).await?;
        Ok(r.tx_hash)
    }

    /// Waits until `hash` is in a block. `Err(Rejected)` if the ledger refused it there.
    pub async fn wait_tx(&self, hash: &Hash, timeout: Duration) -> Result<TxView, ClientError> {
        let start = std::time::Instant::now();
        loop {
            let view = self.tx(hash).await?;
            match view.state {
                TxState::Applied => return Ok(view),
                TxState::Rejected => {
                    return Err(ClientError::Rejected {
                        tx_hash: *hash,
                        rejection: view.rejection.unwrap_or(Rejection::MalformedTx),
                    });
                }
                TxState::Pending | TxState::Unknown => {}
            }
            if start.elapsed() > timeout {
                return Err(ClientError::Timeout {
                    what: format!("transaction {hash} to be included"),
                    waited_ms: timeout.as_millis() as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(TX_POLL_MS)).await;
        }
    }

    /// Signs `msg` with this client's key at the next nonce and the minimum fee, and submits it.
    /// Sends from one client are serialised so their nonces never collide; a nonce the node
    /// refuses is re-learned and the send retried once. A full mempool (for everyone, or for
    /// this signer's waiting transactions) empties as blocks commit: the send waits and tries
    /// again, with a growing pause, for up to [`MEMPOOL_FULL_PATIENCE`].
    pub async fn send(&self, msg: Msg) -> Result<Hash, ClientError> {
        let key = self.signer.as_ref().ok_or_else(|| ClientError::Api {
            url: self.base.clone(),
            status: 0,
            body: gpunet_api::ErrorBody::new(
                "no_key",
                "this command signs a transaction; pass --key PATH or set GPUNET_KEY",
            ),
        })?;
        let mut cached = self.next_nonce.lock().await;
        let (chain_id, fee) = self
            .chain
            .get_or_try_init(|| async {
                let status = self.status().await?;
                let params = self.params().await?;
                Ok::<_, ClientError>((status.chain_id, params.min_tx_fee))
            })
            .await?;
        let mut retried = false;
        let full_since = std::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let nonce = match *cached {
                Some(n) => n,
                None => self.account(&key.address()).await?.next_nonce,
            };
            let tx = TxBody {
                chain_id: chain_id.clone(),
                signer: key.address(),
                nonce,
                fee: *fee,
                msg: msg.clone(),
            }
            .sign(&key.key);
            match self.submit(&tx).await {
                Ok(hash) => {
                    *cached = Some(nonce + 1);
                    return Ok(hash);
                }
                Err(e)
                    if !retried
                        && matches!(
                            e.rejection(),
                            Some(Rejection::NonceGap | Rejection::NonceReplayed)
                        ) =>
                {
                    retried = true;
                    *cached = None;
                }
                Err(e)
                    if e.rejection() == Some(Rejection::MempoolFull)
                        && full_since.elapsed() < MEMPOOL_FULL_PATIENCE =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    *cached = None;
                    return Err(e);
                }
            }
        }
    }

    /// [`send`](Self::send), then wait for the block that applies it.
    pub async fn send_and_wait(&self, msg: Msg, timeout: Duration) -> Result<TxView, ClientError> {
        let hash = self.send(msg).await?;
        let view = self.wait_tx(&hash, timeout).await;
        if view.is_err() {
            // A refused transaction did not use its nonce.
            *self.next_nonce.lock().await = None;
        }
        view
    }

    /// The node's event stream from `from_height` on (Server-Sent Events).
    pub async fn events(
        &self,
        from_height: u64,
    ) -> Result<impl Stream<Item = Result<EventEnvelope, ClientError>> + use<>, ClientError> {
        let url = format!("{}/v1/events?from_height={from_height}", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(decode::<()>(&url, resp)
                .await
                .err()
                .unwrap_or(ClientError::Stream {
                    url: url.clone(),
                    why: "unexpected status".into(),
                }));
        }
        let bytes = resp.bytes_stream().boxed();
        let state = (bytes, Vec::<u8>::new(), url);
        Ok(futures::stream::unfold(
            state,
            |(mut bytes, mut buf, url)| async move {
                loop {
                    match take_frame(&mut buf, MAX_RESPONSE_BODY_BYTES) {
                        Ok(Some(frame)) => match parse_frame(&frame, &url) {
                            Some(item) => return Some((item, (bytes, buf, url))),
                            None => continue,
                        },
                        Ok(None) => {}
                        Err(FrameTooLong) => {
                            let err = ClientError::TooLarge {
                                url: url.clone(),
                                limit_bytes: MAX_RESPONSE_BODY_BYTES,
                            };
                            // Ends the stream: what follows is not known to be a frame.
                            let stop = futures::stream::empty().boxed();
                            return Some((Err(err), (stop, Vec::new(), url)));
                        }
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            let err = ClientError::Stream {
                                url: url.clone(),
                                why: e.to_string(),
                            };
                            return Some((Err(err), (bytes, Vec::new(), url)));
                        }
                        None => return None,
                    }
                }
            },
        ))
    }
}

/// An event frame grew past the limit without ending.
#[derive(Debug, PartialEq, Eq)]
struct FrameTooLong;

/// The first whole SSE frame of `buf`, taken out of it; `None` while it is still incomplete;
/// refused once `buf` holds more than `limit_bytes` with no frame end, so a node (or anything
/// answering in its place) cannot make the reader buffer without bound.
fn take_frame(buf: &mut Vec<u8>, limit_bytes: usize) -> Result<Option<Vec<u8>>, FrameTooLong> {
    match find_frame_end(buf) {
        Some(pos) if pos <= limit_bytes => Ok(Some(buf.drain(..pos).collect())),
        Some(_) => Err(FrameTooLong),
        None if buf.len() > limit_bytes => Err(FrameTooLong),
        None => Ok(None),
    }
}

/// End of the first SSE frame (after its blank line), if the buffer holds a whole one.
fn find_frame_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
}

/// One SSE frame: `event:` and `data:` lines. Comments and keep-alives give `None`.
fn parse_frame(frame: &[u8], url: &str) -> Option<Result<EventEnvelope, ClientError>> {
    let text = String::from_utf8_lossy(frame);
    let mut name = "message";
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return None;
    }
    if name == "error" {
        return Some(Err(ClientError::Stream {
            url: url.to_owned(),
            why: data,
        }));
    }
    Some(
        serde_json::from_str::<EventEnvelope>(&data).map_err(|e| ClientError::Stream {
            url: url.to_owned(),
            why: format!("bad event JSON: {e}"),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake list of `total` numbers served `per_page` at a time, cursors as the last number.
    async fn numbers(
        total: u64,
        per_page: u64,
        after: Option<String>,
    ) -> Result<(u64, Vec<u64>, Option<String>), ClientError> {
        let start = after.map_or(0, |a| a.parse::<u64>().expect("our cursor") + 1);
        let page: Vec<u64> = (start..total).take(per_page as usize).collect();
        let next = page.last().filter(|&&l| l + 1 < total).map(u64::to_string);
        Ok((start, page, next))
    }

    #[tokio::test]
    async fn a_walk_reads_every_page_once_and_stops_on_a_cursor_that_does_not_move() {
        let (height, all) = walk("u", None, |after| numbers(7, 3, after))
            .await
            .expect("walks");
        assert_eq!(all, (0..7).collect::<Vec<_>>());
        assert_eq!(height, 0, "the first page's height");
        let (_, rest) = walk("u", Some("3".into()), |after| numbers(7, 3, after))
            .await
            .expect("walks");
        assert_eq!(rest, vec![4, 5, 6]);

        let stuck = walk("u", None, |_| async {
            Ok::<_, ClientError>((1, vec![1u64], Some("same".to_owned())))
        })
        .await;
        assert!(matches!(stuck, Err(ClientError::Pages { .. })), "{stuck:?}");
    }

    #[test]
    fn sse_frames_parse_and_keepalives_are_skipped() {
        let env = EventEnvelope {
            height: 3,
            time_ms: 9,
            tx_hash: None,
            event: gpunet_protocol::Event::OrderExpired {
                order: OrderId(1),
                refund: gpunet_protocol::Amount::from_micros(5),
            },
        };
        let frame = format!(
            "event: event\ndata: {}\n\n",
            serde_json::to_string(&env).expect("json")
        );
        let buf = frame.as_bytes();
        let end = find_frame_end(buf).expect("whole frame");
        let parsed = parse_frame(&buf[..end], "u").expect("some").expect("ok");
        assert_eq!(parsed, env);
        assert!(parse_frame(b": keep-alive\n\n", "u").is_none());

        // Frames are taken whole, one at a time, up to the limit.
        let mut buf = b"data: 1\n\ndata: 2".to_vec();
        assert_eq!(take_frame(&mut buf, 64), Ok(Some(b"data: 1\n\n".to_vec())));
        assert_eq!(take_frame(&mut buf, 64), Ok(None));
        assert_eq!(buf, b"data: 2");
        // A frame that does not end within the limit is refused, ended or not.
        let mut endless = vec![b'x'; 65];
        assert_eq!(take_frame(&mut endless, 64), Err(FrameTooLong));
        let mut long = [vec![b'x'; 64], b"\n\n".to_vec()].concat();
        assert_eq!(take_frame(&mut long, 64), Err(FrameTooLong));
        assert!(matches!(
            parse_frame(b"event: error\ndata: lagged\n\n", "u"),
            Some(Err(_))
        ));
    }
}
