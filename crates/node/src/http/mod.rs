//! The node's HTTP API (axum): JSON reads of the committed state, transaction submission, the
//! event stream, Prometheus metrics and the OpenAPI document.
//!
//! Every read answers from one published tip, so its `height` field and the `x-gpunet-height`
//! header name the state it reflects. Input is never trusted: bad path or query parameters and
//! bad bodies get a 400 [`ErrorBody`] naming what was wrong, never a panic.

mod dashboard;
mod events;
mod pages;
mod prices;
mod sync;
mod views;

use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gpunet_api::node::{
    AccountTxList, AccountTxView, AccountView, BandView, BidView, BlockView, ChallengeEventView,
    ChallengeHistoryView, ChallengeView, ClassRuns, DecidedView, EventEnvelope, ExplainView,
    HardwareView, LeaseState, LeaseView, MAX_PAGE_EXAMINED, MAX_TX_BATCH_BODY_BYTES,
    MAX_TX_BATCH_TXS, MAX_TX_HEX_CHARS, OrderList, OrderState, OrderView, ParamsView,
    PriceClassView, PriceIndexView, ProviderList, ProviderView, QuoteRequest, RunView,
    SnapshotView, StateEntryView, StatusView, SubmitTx, SubmitTxBatch, SubmitTxBatchResult,
    SubmitTxResult, TransferDirection, TransferView, TxBatchItem, TxState, TxView, UptimeView,
    ValidatorView, VerificationView,
};
use gpunet_api::{ErrorBody, HEIGHT_HEADER, auth};
use gpunet_protocol::merkle::{self, StateTable};
use gpunet_protocol::{
    Address, Block, BlockOutcome, Hash, LeaseId, MAX_TX_BYTES, OrderId, Rejection,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::{OpenApi, ToSchema};

use crate::account_txs::{self, AccountTx, TxPosition};
use crate::chain::Shared;
use crate::history::{self, Lookup};
use crate::mempool::{Mempool, Origin};
use crate::metrics::Stage;

/// Largest request body accepted, in bytes: a hex-encoded transaction at the size limit and
/// its JSON wrapping fit with room to spare.
const MAX_BODY_BYTES: usize = 4 * MAX_TX_BYTES;

#[derive(Clone)]
pub(crate) struct App {
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
}

/// The OpenAPI document of the node API, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gpunet node API",
        description = "Read the chain, submit transactions, follow events."
    ),
    paths(
        status,
        params,
        account,
        account_txs,
        provider_challenges,
        market_prices,
        submit_tx,
        submit_tx_batch,
        tx,
        providers,
        provider,
        orders,
        order,
        order_explain,
        quote,
        lease,
        block,
        state_entry,
        sync::create_snapshot,
        sync::chunk,
        sync::decided,
        events::events,
        metrics_text,
        openapi_json
    ),
    components(schemas(
        StatusView,
        ValidatorView,
        ParamsView,
        AccountView,
        AccountTxList,
        AccountTxView,
        ChallengeHistoryView,
        ChallengeEventView,
        PriceIndexView,
        PriceClassView,
        TransferView,
        TransferDirection,
        SubmitTx,
        SubmitTxResult,
        SubmitTxBatch,
        TxBatchItem,
        SubmitTxBatchResult,
        TxState,
        TxView,
        ProviderView,
        ClassRuns,
        HardwareView,
        UptimeView,
        ChallengeView,
        BandView,
        ProviderList,
        BidView,
        OrderState,
        OrderView,
        RunView,
        VerificationView,
        OrderList,
        ExplainView,
        QuoteRequest,
        LeaseState,
        LeaseView,
        EventEnvelope,
        BlockView,
        StateEntryView,
        SnapshotView,
        DecidedView,
        OrdersStateParam,
        ErrorSchema
    ))
)]
pub struct ApiDoc;

/// The body of every error answer (`gpunet_api::ErrorBody`).
#[derive(ToSchema)]
#[schema(as = ErrorBody)]
#[allow(dead_code)] // Only describes the schema; `ErrorBody` is what goes on the wire.
struct ErrorSchema {
    /// Stable rejection code when the error is a protocol rejection.
    code: Option<u32>,
    /// Stable snake_case name (`nonce_gap`, `not_found`, `bad_request`).
    name: String,
    message: String,
}

/// Serves the API until `shutdown` turns true.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = App {
        shared,
        shutdown: shutdown.clone(),
    };
    let result = axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            // An error means the sender is gone, which also means stop.
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

fn router(app: App) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/params", get(params))
        .route("/v1/accounts/{address}", get(account))
        .route("/v1/accounts/{address}/txs", get(account_txs))
        .route("/v1/txs", post(submit_tx))
        .route(
            "/v1/txs/batch",
            // The route's own limit is the innermost layer, so it wins over the default below.
            post(submit_tx_batch).layer(DefaultBodyLimit::max(MAX_TX_BATCH_BODY_BYTES)),
        )
        .route("/v1/txs/{hash}", get(tx))
        .route("/v1/providers", get(providers))
        .route("/v1/providers/{address}", get(provider))
        .route(
            "/v1/providers/{address}/challenges",
            get(provider_challenges),
        )
        .route("/v1/market/prices", get(market_prices))
        .route("/v1/orders", get(orders))
        .route("/v1/orders/{id}", get(order))
        .route("/v1/orders/{id}/explain", get(order_explain))
        .route("/v1/quote", post(quote))
        .route("/v1/leases/{id}", get(lease))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/state/{table}/{key}", get(state_entry))
        .route("/v1/sync/snapshots", post(sync::create_snapshot))
        .route("/v1/sync/snapshots/{id}/chunk", get(sync::chunk))
        .route("/v1/sync/decided/{height}", get(sync::decided))
        .route("/v1/events", get(events::events))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .merge(dashboard::routes())
        .fallback(not_found_route)
        // After the routes: it applies to those registered before it. axum still sets `Allow`.
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

fn height_header() -> HeaderName {
    HeaderName::from_static(HEIGHT_HEADER)
}

/// A JSON answer for the state at `height`.
fn answer<T: Serialize>(status: StatusCode, height: u64, body: &T) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(height_header(), HeaderValue::from(height));
    r
}

fn ok<T: Serialize>(height: u64, body: &T) -> Response {
    answer(StatusCode::OK, height, body)
}

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    height: Option<u64>,
    body: ErrorBody,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            height: None,
            body: ErrorBody::new("bad_request", message),
        }
    }

    fn not_found(height: u64, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            height: Some(height),
            body: ErrorBody::new("not_found", message),
        }
    }

    /// A transaction refused by the admission path ([`admit_hex`]).
    fn refused(height: u64, body: ErrorBody) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            height: Some(height),
            body,
        }
    }

    fn rejected(height: u64, rejection: Rejection) -> ApiError {
        ApiError::refused(height, ErrorBody::from(rejection))
    }

    fn batch_too_large(what: String) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            height: None,
            body: ErrorBody::new(
                "batch_too_large",
                format!(
                    "{what}; a batch holds at most {MAX_TX_BATCH_TXS} transactions and \
                     {MAX_TX_BATCH_BODY_BYTES} bytes of body: split it; nothing was admitted"
                ),
            ),
        }
    }

    /// The store failed or holds something this node did not write.
    fn store(what: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "cannot read {what} from the store");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            height: None,
            body: ErrorBody::new(
                "store_unavailable",
                format!("the node cannot read {what} from its store; see the node's log"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(&self.body)).into_response();
        if let Some(h) = self.height {
            r.headers_mut()
                .insert(height_header(), HeaderValue::from(h));
        }
        r
    }
}

type ApiResult = Result<Response, ApiError>;

fn path_param<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::bad_request(format!("bad path parameter: {e}")))
}

/// The `{height}` path parameter of a block route, parsed.
fn height_param(p: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let raw = path_param(p)?;
    raw.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "path parameter height: {raw:?} is not a block height (a number, 1 and up)"
        ))
    })
}

/// Reads of orders and leases from `state`, and from this node's history for ended ones.
fn lookup_in<'a>(app: &'a App, state: &'a gpunet_ledger::State) -> Lookup<'a> {
    Lookup {
        state,
        store: &app.shared.store,
    }
}

/// Order `id`, live or ended; 404 if there never was one.
fn order_or_404<'a>(
    lookup: Lookup<'a>,
    id: OrderId,
) -> Result<std::borrow::Cow<'a, gpunet_ledger::Order>, ApiError> {
    lookup
        .order(id)
        .map_err(|e| ApiError::store("order history", e))?
        .ok_or_else(|| ApiError::not_found(lookup.state.height, format!("no order {id}")))
}

/// The `{id}` path parameter of an order or lease route, parsed.
fn id_param<T>(p: Result<Path<String>, PathRejection>) -> Result<T, ApiError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    path_param(p)?
        .parse()
        .map_err(|e| ApiError::bad_request(format!("path parameter id: {e}")))
}

async fn not_found_route(uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        height: None,
        body: ErrorBody::no_route(uri.path()),
    }
}

/// A known path asked with a method it does not take: the same JSON error format as every
/// other error, instead of axum's empty 405.
async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        height: None,
        body: ErrorBody::method_not_allowed(method.as_str(), uri.path()),
    }
}

#[utoipa::path(get, path = "/v1/status", responses((status = 200, body = StatusView)))]
async fn status(State(app): State<App>) -> Response {
    let tip = app.shared.tip();
    let mempool_size = app.shared.mempool().len();
    ok(
        tip.state.height,
        &StatusView {
            chain_id: tip.state.chain_id.clone(),
            height: tip.state.height,
            time_ms: tip.state.time_ms,
            state_root: tip.state_root,
            block_ms: app.shared.block_ms,
            orderer: app.shared.orderer.to_owned(),
            mempool_size,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            validators: app.shared.validators().to_vec(),
        },
    )
}

#[utoipa::path(get, path = "/v1/params", responses((status = 200, body = ParamsView)))]
async fn params(State(app): State<App>) -> Response {
    let tip = app.shared.tip();
    ok(tip.state.height, &views::params_view(&tip.state))
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{address}",
    params(("address" = String, Path, pattern = "^gpn1[02-9ac-hj-np-z]{58}$", description = "A gpn1… address")),
    responses(
        (status = 200, body = AccountView, description = "Unknown accounts have zero balances"),
        (status = 400, body = ErrorSchema),
    )
)]
async fn account(State(app): State<App>, p: Result<Path<String>, PathRejection>) -> ApiResult {
    let address = address_param(p)?;
    let view = account_view(&app, address);
    Ok(ok(view.height, &view))
}

#[derive(Debug, Deserialize)]
struct AccountTxsQuery {
    limit: Option<String>,
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{address}/txs",
    params(
        ("address" = String, Path, pattern = "^gpn1[02-9ac-hj-np-z]{58}$", description = "A gpn1… address"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "At most this many transactions, newest first (default 50, 1 to 200; more is refused)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page of this address; leave it out for the first page"),
    ),
    responses(
        (status = 200, body = AccountTxList, description = "The transactions the address signed (applied or rejected) and the transfers that paid it, newest first, from this node's index by account; an address with none has an empty list"),
        (status = 400, body = ErrorSchema),
    )
)]
async fn account_txs(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<AccountTxsQuery>, QueryRejection>,
) -> ApiResult {
    let address = address_param(p)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let limit = pages::parse_account_txs_limit(q.limit.as_deref())?;
    let after = pages::parse_after::<TxPosition>(q.after.as_deref())?;
    let height = app.shared.tip().state.height;
    let list = account_txs_page(&app, height, address, limit, after).await?;
    Ok(ok(list.height, &list))
}

/// One page of `address`'s transactions as of the tip at `height`, from the store's index,
/// newest first, older than the cursor `after`, at most `limit` (the caller bounds it): one
/// range read, off the async threads. Shared by `GET /v1/accounts/{address}/txs` and the
/// dashboard's account page.
async fn account_txs_page(
    app: &App,
    height: u64,
    address: Address,
    limit: usize,
    after: Option<TxPosition>,
) -> Result<AccountTxList, ApiError> {
    // The store may already hold the next block's entries: read below this tip's next height,
    // so the page shows what the tip does; a cursor from beyond it (forged) reads from there.
    let tip_next = TxPosition {
        height: height.saturating_add(1),
        index: 0,
    };
    let below = after.map_or(tip_next, |a| a.min(tip_next));
    let store = Arc::clone(&app.shared.store);
    let read = tokio::task::spawn_blocking(move || {
        let page = account_txs::page(&store, &address, below, limit)?;
        let base_height = store
            .base_height()
            .map_err(|source| account_txs::IndexError::Store { source })?;
        Ok::<_, account_txs::IndexError>((page, base_height))
    })
    .await
    .map_err(|e| ApiError::store("the account index", e))?;
    let ((txs, more), base_height) = read.map_err(|e| ApiError::store("the account index", e))?;
    let next = if more {
        txs.last().map(|t| pages::encode_cursor(t.at))
    } else {
        None
    };
    Ok(AccountTxList {
        height,
        address,
        txs: txs.iter().map(|t| account_tx_view(address, t)).collect(),
        next,
        base_height,
    })
}

/// An index entry as `address`'s history shows it.
fn account_tx_view(address: Address, t: &AccountTx) -> AccountTxView {
    let r = &t.record;
    let transfer = r.transfer.map(|(to, denom, amount)| {
        let (direction, counterparty) = if r.signer == address {
            (TransferDirection::Sent, to)
        } else {
            (TransferDirection::Received, r.signer)
        };
        TransferView {
            direction,
            counterparty,
            amount,
            denom,
        }
    });
    AccountTxView {
        tx_hash: r.tx_hash,
        block_height: t.at.height,
        position: t.at.index,
        time_ms: r.time_ms,
        kind: r.kind.clone(),
        signer: r.signer,
        transfer,
        state: match r.rejection {
            None => TxState::Applied,
            Some(_) => TxState::Rejected,
        },
        rejection: r.rejection,
    }
}

/// The `{address}` path parameter, parsed.
fn address_param(p: Result<Path<String>, PathRejection>) -> Result<Address, ApiError> {
    let raw = path_param(p)?;
    Address::parse(&raw).map_err(|e| ApiError::bad_request(format!("path parameter address: {e}")))
}

/// An account at the tip, with the next nonce counting this node's mempool; unknown accounts
/// have zero balances.
fn account_view(app: &App, address: Address) -> AccountView {
    let tip = app.shared.tip();
    let (balances, nonce, unbonding) = tip
        .state
        .accounts
        .get(&address)
        .map_or((Default::default(), 0, Vec::new()), |a| {
            (a.balances, a.nonce, a.unbonding.clone())
        });
    let pending_next = app.shared.mempool().next_nonce(&address);
    AccountView {
        height: tip.state.height,
        address,
        balances,
        nonce,
        next_nonce: pending_next.map_or(nonce, |n| n.max(nonce)),
        unbonding,
    }
}

#[utoipa::path(
    post,
    path = "/v1/txs",
    request_body = SubmitTx,
    responses(
        (status = 202, body = SubmitTxResult, description = "Admitted to the mempool"),
        (status = 400, body = ErrorSchema, description = "Rejected; `name` is the rejection"),
    )
)]
async fn submit_tx(
    State(app): State<App>,
    body: Result<Json<SubmitTx>, JsonRejection>,
) -> ApiResult {
    let height = app.shared.tip().state.height;
    let reject = |r: Rejection| {
        app.shared.metrics.rejected(Stage::Mempool, r);
        ApiError::rejected(height, r)
    };
    let Json(body) = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return reject(Rejection::TxTooLarge);
        }
        ApiError::bad_request(format!(
            "the body must be JSON {{\"tx_hex\": \"…\"}}: {}",
            e.body_text()
        ))
    })?;
    let tx_hash = admit_hex(&app.shared, &body.tx_hex, Origin::Client)
        .map_err(|body| ApiError::refused(height, body))?;
    Ok(answer(
        StatusCode::ACCEPTED,
        height,
        &SubmitTxResult { tx_hash },
    ))
}

/// The one admission path of `POST /v1/txs` and `POST /v1/txs/batch`: the hex text and its
/// size, the stateless checks ([`Mempool::precheck`]: decode, chain id, signature), then the
/// mempool's against the tip. A refusal is counted in the metrics and said as the error body.
fn admit_hex(shared: &Shared, tx_hex: &str, origin: Origin) -> Result<Hash, ErrorBody> {
    let reject = |r: Rejection| {
        shared.metrics.rejected(Stage::Mempool, r);
        ErrorBody::from(r)
    };
    // The OpenAPI document's limit, checked before anything else is done with the text.
    if tx_hex.len() > MAX_TX_HEX_CHARS {
        return Err(reject(Rejection::TxTooLarge));
    }
    let hex_text = tx_hex.trim();
    let hex_text = hex_text.strip_prefix("0x").unwrap_or(hex_text);
    if hex_text.len() > 2 * MAX_TX_BYTES {
        return Err(reject(Rejection::TxTooLarge));
    }
    let bytes = hex::decode(hex_text).map_err(|e| {
        let mut err = reject(Rejection::MalformedTx);
        err.message = format!("tx_hex is not hex ({e}); {}", err.message);
        err
    })?;
    let tx = Mempool::precheck(&bytes, &shared.chain_id).map_err(reject)?;
    shared.admit(tx, origin).map_err(reject)
}

/// A batch marked as forwarded must be signed (`gpunet_api::auth` headers) by a validator of
/// this network: only validators get the peer room in the mempool and skip forwarding.
fn check_forwarder(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let forbidden = |why: String| ApiError {
        status: StatusCode::FORBIDDEN,
        height: None,
        body: ErrorBody::new(
            "not_a_forwarder",
            format!(
                "{why}; only the network's validators may mark a batch as forwarded: \
                 leave `forwarded` out"
            ),
        ),
    };
    // The signature proves who forwarded, not freshness: no nonce book is kept, because a
    // replayed batch re-submits transactions that each carry an account nonce, so it admits
    // nothing new (docs/adr/0003-agent-requests-nonces-and-sealed-logs.md).
    let signer = auth::verify_request(
        &auth::AuthHeaders::from_lookup(header),
        "POST",
        "/v1/txs/batch",
        body,
        crate::orderer::wall_clock_ms(),
    )
    .map_err(|e| forbidden(e.to_string()))?
    .signer;
    if !shared.is_forwarder(&signer) {
        return Err(forbidden(format!(
            "{signer} is not a validator of this network"
        )));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/txs/batch",
    request_body(
        content = SubmitTxBatch,
        description = "At most 1000 transactions and 2 MiB of body"
    ),
    responses(
        (status = 200, body = SubmitTxBatchResult, description = "One result per transaction, in order: each admitted or refused exactly as `POST /v1/txs` would; a refused one does not stop the rest"),
        (status = 400, body = ErrorSchema, description = "Not a batch (`bad_request`); nothing admitted"),
        (status = 403, body = ErrorSchema, description = "Marked as forwarded but not signed by a validator of this network (`not_a_forwarder`); nothing admitted"),
        (status = 413, body = ErrorSchema, description = "Over 1000 transactions or 2 MiB of body (`batch_too_large`); nothing admitted"),
    )
)]
async fn submit_tx_batch(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let height = app.shared.tip().state.height;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::batch_too_large("the body is too large".to_owned());
        }
        ApiError::bad_request(format!("cannot read the body: {}", e.body_text()))
    })?;
    let batch: SubmitTxBatch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"txs_hex\": [\"…\", …]}}: {e}"
        ))
    })?;
    if batch.txs_hex.len() > MAX_TX_BATCH_TXS {
        return Err(ApiError::batch_too_large(format!(
            "the batch holds {} transactions",
            batch.txs_hex.len()
        )));
    }
    let origin = if batch.forwarded {
        check_forwarder(&app.shared, &headers, &body)?;
        Origin::Peer
    } else {
        Origin::Client
    };
    let shared = Arc::clone(&app.shared);
    // A thousand signature checks take tens of milliseconds: not on the async workers.
    let admitted = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let results = batch
            .txs_hex
            .iter()
            .map(|tx_hex| admit_hex(&shared, tx_hex, origin))
            .collect::<Vec<_>>();
        shared.metrics.observe_admission(started.elapsed());
        results
    })
    .await;
    let results = match admitted {
        Ok(results) => results,
        // The same checks run inline for `POST /v1/txs`; a panic there is a bug either way.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                height: None,
                body: ErrorBody::new(
                    "shutting_down",
                    "the node is shutting down; send the batch to another node or later",
                ),
            });
        }
    };
    let results: Vec<TxBatchItem> = results
        .into_iter()
        .map(|r| match r {
            Ok(tx_hash) => TxBatchItem {
                tx_hash: Some(tx_hash),
                error: None,
            },
            Err(error) => TxBatchItem {
                tx_hash: None,
                error: Some(error),
            },
        })
        .collect();
    Ok(ok(
        height,
        &SubmitTxBatchResult {
            height,
            admitted: results.iter().filter(|r| r.tx_hash.is_some()).count(),
            results,
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/txs/{hash}",
    params(("hash" = String, Path, min_length = 64, max_length = 64, description = "Transaction hash, 64 hex characters")),
    responses((status = 200, body = TxView), (status = 400, body = ErrorSchema))
)]
async fn tx(State(app): State<App>, p: Result<Path<String>, PathRejection>) -> ApiResult {
    let tx_hash = tx_hash_param(&path_param(p)?)?;
    let view = tx_view(&app, tx_hash)?;
    Ok(ok(view.height, &view))
}

/// A `{hash}` path parameter: exactly 64 hex characters.
fn tx_hash_param(raw: &str) -> Result<Hash, ApiError> {
    // Exactly as the OpenAPI document says: no padding around the 64 characters.
    if raw.len() != 64 {
        return Err(ApiError::bad_request(format!(
            "path parameter hash: is {} characters; a transaction hash is 64 hex characters",
            raw.len()
        )));
    }
    Hash::from_hex(raw).map_err(|e| ApiError::bad_request(format!("path parameter hash: {e}")))
}

/// Where transaction `tx_hash` is: in this node's mempool, in a block (with its receipt), or
/// unknown to this node.
fn tx_view(app: &App, tx_hash: Hash) -> Result<TxView, ApiError> {
    let tip = app.shared.tip();
    let height = tip.state.height;
    let view = |state, block_height, rejection, events| TxView {
        height,
        tx_hash,
        state,
        block_height,
        rejection,
        events,
    };
    // The mempool first: a transaction leaves it only after its block is in the store.
    if app.shared.mempool().contains(&tx_hash) {
        return Ok(view(TxState::Pending, None, None, Vec::new()));
    }
    let store = &app.shared.store;
    let location = store
        .tx_location(&tx_hash.0)
        .map_err(|e| ApiError::store("the transaction index", e))?;
    let Some((block_height, index)) = location else {
        return Ok(view(TxState::Unknown, None, None, Vec::new()));
    };
    let receipt = store
        .receipts(block_height)
        .map_err(|e| ApiError::store("receipts", e))?
        .ok_or_else(|| ApiError::store("receipts", format!("none at height {block_height}")))
        .and_then(|bytes| {
            borsh::from_slice::<BlockOutcome>(&bytes).map_err(|e| ApiError::store("receipts", e))
        })?
        .receipts
        .into_iter()
        .nth(index as usize)
        .ok_or_else(|| {
            ApiError::store("receipts", format!("no receipt {index} at {block_height}"))
        })?;
    let state = match receipt.rejection {
        None => TxState::Applied,
        Some(_) => TxState::Rejected,
    };
    Ok(view(
        state,
        Some(block_height),
        receipt.rejection,
        receipt.events,
    ))
}

#[derive(Debug, Deserialize)]
struct ProvidersQuery {
    limit: Option<String>,
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/providers",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many providers, by address (default 100, 1 to 1000; more is refused)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page; leave it out for the first page"),
    ),
    responses((status = 200, body = ProviderList), (status = 400, body = ErrorSchema))
)]
async fn providers(
    State(app): State<App>,
    q: Result<Query<ProvidersQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let limit = pages::parse_limit(q.limit.as_deref())?;
    let after = pages::parse_after::<Address>(q.after.as_deref())?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let from = after.map_or(Unbounded, Excluded);
    let (providers, next) = pages::page(
        state.providers.range((from, Unbounded)).map(|(a, _)| *a),
        limit,
        |a| {
            state
                .providers
                .get(&a)
                .map(|p| views::provider_view(state, p))
        },
    );
    Ok(ok(
        state.height,
        &ProviderList {
            height: state.height,
            providers,
            next,
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/providers/{address}",
    params(("address" = String, Path, pattern = "^gpn1[02-9ac-hj-np-z]{58}$", description = "A gpn1… address")),
    responses(
        (status = 200, body = ProviderView),
        (status = 400, body = ErrorSchema),
        (status = 404, body = ErrorSchema, description = "No provider is registered at this address"),
    )
)]
async fn provider(State(app): State<App>, p: Result<Path<String>, PathRejection>) -> ApiResult {
    let address = address_param(p)?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let provider = state.providers.get(&address).ok_or_else(|| {
        ApiError::not_found(
            state.height,
            format!("no provider is registered at {address}"),
        )
    })?;
    Ok(ok(state.height, &views::provider_view(state, provider)))
}

#[derive(Debug, Deserialize)]
struct ChallengesQuery {
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/providers/{address}/challenges",
    params(
        ("address" = String, Path, pattern = "^gpn1[02-9ac-hj-np-z]{58}$", description = "A gpn1… address"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "At most this many events, newest first (default 20, 1 to 100; more is refused)"),
    ),
    responses(
        (status = 200, body = ChallengeHistoryView, description = "The hardware challenges issued to the address and how each ended, newest first; none for an address never challenged (or not a provider)"),
        (status = 400, body = ErrorSchema),
    )
)]
async fn provider_challenges(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<ChallengesQuery>, QueryRejection>,
) -> ApiResult {
    let address = address_param(p)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let limit = pages::parse_challenges_limit(q.limit.as_deref())?;
    let height = app.shared.tip().state.height;
    let events = challenge_events(&app, address, limit).await?;
    Ok(ok(
        height,
        &ChallengeHistoryView {
            height,
            provider: address,
            events: events.iter().map(challenge_event_view).collect(),
        },
    ))
}

/// `provider`'s newest `limit` challenge events: one range read, off the async threads. Shared
/// by `GET /v1/providers/{address}/challenges` and the dashboard's provider page.
async fn challenge_events(
    app: &App,
    provider: Address,
    limit: usize,
) -> Result<Vec<crate::challenge_history::ChallengeEvent>, ApiError> {
    let store = Arc::clone(&app.shared.store);
    tokio::task::spawn_blocking(move || crate::challenge_history::recent(&store, &provider, limit))
        .await
        .map_err(|e| ApiError::store("the challenge history", e))?
        .map_err(|e| ApiError::store("the challenge history", e))
}

fn challenge_event_view(e: &crate::challenge_history::ChallengeEvent) -> ChallengeEventView {
    use crate::challenge_history::ChallengeStep;
    let mut v = ChallengeEventView {
        height: e.height,
        time_ms: e.record.time_ms,
        challenge: e.record.challenge,
        step: String::new(),
        n: None,
        deadline_ms: None,
        next_height: None,
        reason: None,
        slashed: None,
        jailed_until_height: None,
    };
    match &e.record.step {
        ChallengeStep::Issued { n, deadline_ms } => {
            v.step = "issued".into();
            v.n = Some(*n);
            v.deadline_ms = Some(*deadline_ms);
        }
        ChallengeStep::Passed { next_height } => {
            v.step = "passed".into();
            v.next_height = Some(*next_height);
        }
        ChallengeStep::Failed {
            reason,
            slashed,
            jailed_until_height,
        } => {
            v.step = "failed".into();
            v.reason = Some(reason.clone());
            v.slashed = Some(*slashed);
            v.jailed_until_height = Some(*jailed_until_height);
        }
    }
    v
}

#[utoipa::path(
    get,
    path = "/v1/market/prices",
    responses((status = 200, body = PriceIndexView, description = "The price index: per GPU model (per GPU-hour) and for cpu (per core-hour), the median, low, high and newest unit price of the newest 200 leases"))
)]
async fn market_prices(State(app): State<App>) -> ApiResult {
    let tip = app.shared.tip();
    let leases = prices::newest_leases(&app, &tip).await?;
    let state = &tip.state;
    let fills = prices::fills_of(state, &leases);
    let rows = prices::price_index(&fills);
    Ok(ok(
        state.height,
        &prices::index_view(state.height, leases.len(), &rows),
    ))
}

/// `state` of `GET /v1/orders`, for the OpenAPI document (the handler reads the text).
#[derive(ToSchema)]
#[schema(as = OrdersState)]
#[allow(dead_code)] // Only describes the schema.
#[schema(rename_all = "snake_case")]
enum OrdersStateParam {
    Open,
    All,
}

#[derive(Debug, Deserialize)]
struct OrdersQuery {
    tenant: Option<String>,
    state: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/orders",
    params(
        ("tenant" = Option<String>, Query, description = "Only this tenant's orders, live and ended (from the node's index by tenant). With `state=open` a page examines at most 10000 of the tenant's orders from the cursor, so it may hold fewer than `limit` (even none) and still have a `next`"),
        ("state" = Option<OrdersStateParam>, Query, description = "`open` or `all` (default)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many orders, newest first (default 100, 1 to 1000; more is refused)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page (with the same `tenant` and `state`); leave it out for the first page"),
    ),
    responses((status = 200, body = OrderList), (status = 400, body = ErrorSchema))
)]
async fn orders(
    State(app): State<App>,
    q: Result<Query<OrdersQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let tenant = q
        .tenant
        .as_deref()
        .map(Address::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("query parameter tenant: {e}")))?;
    let open_only = match q.state.as_deref() {
        None | Some("all") => false,
        Some("open") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter state: {other:?} is neither \"open\" nor \"all\""
            )));
        }
    };
    let limit = pages::parse_limit(q.limit.as_deref())?;
    let after = pages::parse_after::<OrderId>(q.after.as_deref())?;

    let tip = app.shared.tip();
    let state = &tip.state;
    let (orders, next) = orders_page(&app, state, tenant, open_only, limit, after)?;
    Ok(ok(
        state.height,
        &OrderList {
            height: state.height,
            orders,
            next,
        },
    ))
}

/// One page of orders, newest first, below the cursor `after`: `tenant`'s only (from the
/// store's index, live and ended) and/or open ones only. Shared by `GET /v1/orders` and the
/// dashboard's job lists.
fn orders_page(
    app: &App,
    state: &gpunet_ledger::State,
    tenant: Option<Address>,
    open_only: bool,
    limit: usize,
    after: Option<OrderId>,
) -> Result<(Vec<OrderView>, Option<String>), ApiError> {
    let lookup = lookup_in(app, state);
    // Newest first: the ids below the cursor, from the highest down. Ended orders come from
    // history, so a listing shows them as before.
    let view = |id: OrderId| -> Option<Result<OrderView, ApiError>> {
        if open_only && !state.open_orders.contains(&id) {
            return None;
        }
        let o = match lookup.order(id) {
            Ok(o) => o?,
            Err(e) => return Some(Err(ApiError::store("order history", e))),
        };
        if tenant.is_some_and(|t| o.tenant != t) {
            return None;
        }
        Some(views::order_view(lookup, &o).map_err(|e| ApiError::store("lease history", e)))
    };
    let (orders, next) = match tenant {
        // The tenant's orders from the store's index, live and ended; a page examines at most
        // `MAX_PAGE_EXAMINED` of them (with `state=open`, fewer may match).
        Some(tenant) => {
            // The store may hold orders of a block this tip does not have yet: start below the
            // tip's next id, so every id read is one this tip can show, and a page needs only
            // `limit + 1` of them (to know whether more follow) unless a filter drops some.
            let below = after.map_or(state.next_order_id, |a| a.0.min(state.next_order_id));
            let below = history::tenant_order_key(&tenant, OrderId(below));
            let want = if open_only {
                MAX_PAGE_EXAMINED + 1
            } else {
                limit + 1
            };
            let entries = app
                .shared
                .store
                .lookup_below(&history::tenant_prefix(&tenant), Some(&below), want)
                .map_err(|e| ApiError::store("the tenant index", e))?;
            let ids = entries.iter().filter_map(|(k, _)| history::order_of_key(k));
            pages::page(ids, limit, view)
        }
        None if open_only => pages::page(
            state
                .open_orders
                .range((Unbounded, after.map_or(Unbounded, Excluded)))
                .rev()
                .copied(),
            limit,
            view,
        ),
        // Every id ever given out is an order, live or in history.
        None => {
            let upper = after.map_or(state.next_order_id, |a| a.0.min(state.next_order_id));
            pages::page((1..upper).rev().map(OrderId), limit, view)
        }
    };
    let orders = orders.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok((orders, next))
}

#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    params(("id" = u64, Path, description = "Order id: `42` (`order-42` is also accepted)")),
    responses(
        (status = 200, body = OrderView),
        (status = 400, body = ErrorSchema),
        (status = 404, body = ErrorSchema),
    )
)]
async fn order(State(app): State<App>, p: Result<Path<String>, PathRejection>) -> ApiResult {
    let id: OrderId = id_param(p)?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let lookup = lookup_in(&app, state);
    let o = order_or_404(lookup, id)?;
    let view = views::order_view(lookup, &o).map_err(|e| ApiError::store("lease history", e))?;
    Ok(ok(state.height, &view))
}

#[utoipa::path(
    get,
    path = "/v1/orders/{id}/explain",
    params(("id" = u64, Path, description = "Order id: `42` (`order-42` is also accepted)")),
    responses(
        (status = 200, body = ExplainView, description = "Why the open order has or has not matched, from the providers registered now"),
        (status = 400, body = ErrorSchema),
        (status = 404, body = ErrorSchema),
        (status = 409, body = ErrorSchema, description = "The order is no longer open (`order_not_open`): its lease or end says what happened"),
    )
)]
async fn order_explain(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id: OrderId = id_param(p)?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let lookup = lookup_in(&app, state);
    let o = order_or_404(lookup, id)?;
    if o.status != gpunet_ledger::OrderStatus::Open {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            height: Some(state.height),
            body: ErrorBody::new(
                "order_not_open",
                format!(
                    "order {id} is {}, no longer waiting for a provider; see GET /v1/orders/{}",
                    format!("{:?}", views::order_state(o.status)).to_lowercase(),
                    id.0
                ),
            ),
        });
    }
    Ok(ok(
        state.height,
        &views::explain_view(state, Some(id), &o.terms),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/quote",
    request_body(content = QuoteRequest, description = "Order terms not yet submitted"),
    responses(
        (status = 200, body = ExplainView, description = "What the terms would cost now at each provider that can run them, and why the others cannot"),
        (status = 400, body = ErrorSchema, description = "Not JSON terms (`bad_request`), or terms `CreateOrder` would refuse (`name` is the rejection)"),
    )
)]
async fn quote(
    State(app): State<App>,
    body: Result<Json<QuoteRequest>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"terms\": {{…order terms…}}}}: {}",
            e.body_text()
        ))
    })?;
    let tip = app.shared.tip();
    let state = &tip.state;
    gpunet_ledger::explain::check_order_terms(state, &body.terms)
        .map_err(|r| ApiError::rejected(state.height, r))?;
    Ok(ok(
        state.height,
        &views::explain_view(state, None, &body.terms),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/leases/{id}",
    params(("id" = u64, Path, description = "Lease id: `7` (`lease-7` is also accepted)")),
    responses(
        (status = 200, body = LeaseView),
        (status = 400, body = ErrorSchema),
        (status = 404, body = ErrorSchema),
    )
)]
async fn lease(State(app): State<App>, p: Result<Path<String>, PathRejection>) -> ApiResult {
    let id: LeaseId = id_param(p)?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let lookup = lookup_in(&app, state);
    let l = lookup
        .lease(id)
        .map_err(|e| ApiError::store("lease history", e))?
        .ok_or_else(|| ApiError::not_found(state.height, format!("no lease {id}")))?;
    // A lease view has no `height` field of its own; the header carries it.
    Ok(ok(state.height, &views::lease_view(state, &l)))
}

#[utoipa::path(
    get,
    path = "/v1/blocks/{height}",
    params(("height" = u64, Path, description = "Block height, 1 and up")),
    responses(
        (status = 200, body = BlockView),
        (status = 400, body = ErrorSchema),
        (status = 404, body = ErrorSchema),
    )
)]
async fn block(State(app): State<App>, p: Result<Path<String>, PathRejection>) -> ApiResult {
    let height = height_param(p)?;
    let (_, view) = block_at(&app, height)?;
    Ok(ok(app.shared.tip().state.height, &view))
}

/// The committed block at `height`, decoded, and its view; 404 above the tip (or at 0).
fn block_at(app: &App, height: u64) -> Result<(Block, BlockView), ApiError> {
    let tip_height = app.shared.tip().state.height;
    let store = &app.shared.store;
    let bytes = store
        .block(height)
        .map_err(|e| ApiError::store("blocks", e))?
        .ok_or_else(|| {
            ApiError::not_found(
                tip_height,
                format!("no block at height {height}; the chain is at height {tip_height}"),
            )
        })?;
    let b: Block = borsh::from_slice(&bytes).map_err(|e| ApiError::store("blocks", e))?;
    let state_root = store
        .state_root(height)
        .map_err(|e| ApiError::store("state roots", e))?
        .ok_or_else(|| ApiError::store("state roots", format!("none at height {height}")))?;
    let view = BlockView {
        height,
        time_ms: b.header.time_ms,
        block_hash: b.header.hash(),
        state_root: Hash(state_root),
        tx_hashes: b.txs.iter().map(|t| t.hash()).collect(),
    };
    Ok((b, view))
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    proof: Option<String>,
    height: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/state/{table}/{key}",
    params(
        ("table" = String, Path, description = "`chain`, `accounts`, `providers`, `orders` or `leases`"),
        ("key" = String, Path, description = "An address (`gpn1…`) for accounts and providers, an id (`42`, `order-42`, `lease-42`) for orders and leases, `chain` or `params` for the chain table"),
        ("proof" = Option<bool>, Query, description = "Include the Merkle proof and the root it is against (default false)"),
        ("height" = Option<u64>, Query, description = "A recent height still kept by this node (default: the latest); an entity that changed after it has no proof there"),
    ),
    responses(
        (status = 200, body = StateEntryView, description = "The entity, or `found: false` (with a proof of absence when asked)"),
        (status = 400, body = ErrorSchema),
        (status = 404, body = ErrorSchema, description = "The height is not kept by this node, or the entity changed after it (only an entity's latest value is kept)"),
    )
)]
async fn state_entry(
    State(app): State<App>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> ApiResult {
    let (table_name, key_text) = path_param(p)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let table = StateTable::from_name(&table_name).ok_or_else(|| {
        let names: Vec<&str> = StateTable::ALL.iter().map(|t| t.name()).collect();
        ApiError::bad_request(format!(
            "path parameter table: {table_name:?} is not a state table; use one of {}",
            names.join(", ")
        ))
    })?;
    let key = table
        .parse_key(&key_text)
        .map_err(|e| ApiError::bad_request(format!("path parameter key: {e}")))?;
    let with_proof = match q.proof.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter proof: {other:?} is neither true nor false"
            )));
        }
    };
    let height = q
        .height
        .as_deref()
        .map(|h| {
            h.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter height: {h:?} is not a block height (a number)"
                ))
            })
        })
        .transpose()?;
    let full_key = merkle::state_key(table, &key);
    let tip_height = app.shared.tip().state.height;
    let proven = app
        .shared
        .store
        .prove(&full_key, height)
        .map_err(|e| match e {
            e @ (gpunet_store::StoreError::NoTreeAt { .. }
            | gpunet_store::StoreError::ChangedSince { .. }) => {
                ApiError::not_found(tip_height, e.to_string())
            }
            e => ApiError::store("the state tree", e),
        })?;
    let value = proven
        .value
        .as_deref()
        .map(|v| gpunet_ledger::State::entity_json(&full_key, v))
        .transpose()
        .map_err(|e| ApiError::store("an entity", e))?;
    Ok(ok(
        proven.height,
        &StateEntryView {
            height: proven.height,
            table: table.name().to_owned(),
            key_hex: hex::encode(&full_key),
            found: proven.value.is_some(),
            value_hex: proven.value.as_deref().map(hex::encode),
            value,
            root: with_proof.then(|| hex::encode(proven.root)),
            proof_hex: with_proof.then(|| hex::encode(&proven.proof)),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format"))
)]
async fn metrics_text(State(app): State<App>) -> Response {
    let height = app.shared.tip().state.height;
    let mut r = (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        app.shared.metrics.render(),
    )
        .into_response();
    r.headers_mut()
        .insert(height_header(), HeaderValue::from(height));
    r
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, content_type = "application/json", body = Object, description = "This document"))
)]
async fn openapi_json() -> Response {
    Json(ApiDoc::openapi()).into_response()
}
