//! The agent's HTTP server: the tenant of a lease sends its manifest and reads status, logs and
//! outputs. Every request is signed (`gpunet_api::auth`) over its method, path and query, a
//! timestamp, a random nonce and its body; the signer must be the lease's tenant on chain, and
//! each signed request is accepted once.
//!
//! Checks run cheapest first: body size, signature (401), then the lease's tenant (403), then
//! the nonce (401 `replayed_request`, or 429 `too_many_requests` when the signer's remembered
//! nonces are at their cap), and only then the request itself. Nonces are remembered only for
//! tenants of this provider's leases, so no one else can fill the book.
//!
//! The verifier of a `compare: tensors` order takes each run's outputs from the order's tenant
//! (`PUT /v1/verdicts/{order}/runs/{lease}`, see [`crate::verdicts`]); the same checks apply,
//! with the order's tenant in the lease's place, and only while this provider judges it.
//!
//! Manifests arrive sealed to this provider's encryption key; output files leave sealed to the
//! tenant's output key (named in the manifest), chunk by chunk as they stream, and so does each
//! slice of the log (purpose `Logs`), one sealed box per response. The blobs and logs at rest
//! stay plaintext: this provider ran the job and saw them anyway.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use gpunet_api::ErrorBody;
use gpunet_api::auth::{AuthError, AuthHeaders, NonceBook, SignedRequest, verify_request};
use gpunet_api::provider::{
    ExecRequest, ExecResult, ExecSealed, MAX_LOG_CHUNK_BYTES, MAX_SEALED_MANIFEST_BYTES,
    ManifestDelivery, SealedLogChunk,
};
use gpunet_protocol::sealed::{SEALED_CHUNK_BYTES, SEALED_HEADER_BYTES, Sealer, sealed_len};
use gpunet_protocol::{Address, EncryptionKey, Hash, LeaseId, OrderId, Purpose, SealContext};
use tokio::io::AsyncReadExt;

use crate::leases::{LeaseError, Leases};
use crate::verdicts::{BundleError, Judge};

/// Largest request body read: a hex sealed manifest (twice its bytes) in a small JSON object.
pub const MAX_REQUEST_BODY_BYTES: usize = 2 * MAX_SEALED_MANIFEST_BYTES + 1024;
/// Largest body a GET may carry (none is expected).
const MAX_GET_BODY_BYTES: usize = 1024;
/// Log bytes returned when the request does not say `max`.
const DEFAULT_LOG_CHUNK_BYTES: usize = 64 * 1024;

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, name: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody::new(name, message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl From<LeaseError> for ApiError {
    fn from(e: LeaseError) -> ApiError {
        let (status, name) = match &e {
            LeaseError::NotFound { .. }
            | LeaseError::NotOurs { .. }
            | LeaseError::NoRecord { .. } => (StatusCode::NOT_FOUND, "not_found"),
            LeaseError::Chain { .. } => (StatusCode::BAD_GATEWAY, "chain_unavailable"),
            LeaseError::ManifestTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "manifest_too_large")
            }
            LeaseError::ManifestUnreadable { .. } => {
                (StatusCode::BAD_REQUEST, "manifest_unreadable")
            }
            LeaseError::HashMismatch { .. } => (StatusCode::BAD_REQUEST, "manifest_hash_mismatch"),
            LeaseError::InputsTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "inputs_too_large")
            }
            LeaseError::InputsUnreadable { .. } => (StatusCode::BAD_REQUEST, "inputs_unreadable"),
            LeaseError::InputsMissing { .. } => (StatusCode::CONFLICT, "inputs_missing"),
            LeaseError::InputsMismatch { .. } => (StatusCode::BAD_REQUEST, "inputs_mismatch"),
            LeaseError::InputsFromBucket { .. } => {
                (StatusCode::CONFLICT, "inputs_unavailable_in_bucket")
            }
            LeaseError::InputsStore { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "inputs_unstored")
            }
            LeaseError::AlreadyReceived { .. } => {
                (StatusCode::CONFLICT, "manifest_already_received")
            }
            LeaseError::Ended { .. } => (StatusCode::GONE, "lease_ended"),
            LeaseError::ManifestInvalid { .. } => (StatusCode::BAD_REQUEST, "manifest_invalid"),
            LeaseError::StartFailed { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "start_failed"),
            LeaseError::ImageUnavailable { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "image_unavailable")
            }
            LeaseError::NoDriver { .. } => (StatusCode::SERVICE_UNAVAILABLE, "driver_unavailable"),
            LeaseError::Log { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "log_unreadable"),
            LeaseError::Driver { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "driver_error"),
        };
        ApiError::new(status, name, e.to_string())
    }
}

/// What the routes share: the leases, and the nonces of requests already accepted.
pub struct AgentState {
    leases: Arc<Leases>,
    nonces: Mutex<NonceBook>,
    /// Shells open now, across leases ([`crate::shell::MAX_SHELLS`] at most).
    shells: Arc<tokio::sync::Semaphore>,
    /// Judges `compare: tensors` orders; `None` in tests that do not.
    judge: Option<Arc<Judge>>,
}

/// The agent's routes over `leases`.
pub fn router(leases: Arc<Leases>) -> Router {
    router_with_nonce_book(leases, NonceBook::default())
}

/// [`router`] that also takes runs' outputs for the verdicts `judge` gives.
pub fn router_with_judge(leases: Arc<Leases>, judge: Arc<Judge>) -> Router {
    build(leases, NonceBook::default(), Some(judge))
}

/// [`router`] with a nonce book of the caller's caps, so tests can reach them.
pub fn router_with_nonce_book(leases: Arc<Leases>, nonces: NonceBook) -> Router {
    build(leases, nonces, None)
}

fn build(leases: Arc<Leases>, nonces: NonceBook, judge: Option<Arc<Judge>>) -> Router {
    let state = Arc::new(AgentState {
        leases,
        nonces: Mutex::new(nonces),
        shells: Arc::new(tokio::sync::Semaphore::new(crate::shell::MAX_SHELLS)),
        judge,
    });
    Router::new()
        .route("/v1/leases/{id}/manifest", post(manifest))
        .route("/v1/leases/{id}/inputs", put(inputs))
        .route("/v1/leases/{id}/status", get(status))
        .route("/v1/leases/{id}/logs", get(logs))
        .route("/v1/leases/{id}/outputs", get(outputs))
        .route("/v1/leases/{id}/outputs/{digest}", get(output))
        .route("/v1/leases/{id}/exec", post(exec))
        .route("/v1/leases/{id}/shell", get(shell))
        .route("/v1/verdicts/{order}/runs/{lease}", put(verdict_run))
        // Unknown paths and wrong methods answer in the same JSON error format as the rest.
        .fallback(|uri: axum::http::Uri| async move {
            let body = ErrorBody::no_route(uri.path());
            ApiError {
                status: StatusCode::NOT_FOUND,
                body,
            }
        })
        .method_not_allowed_fallback(|m: axum::http::Method, uri: axum::http::Uri| async move {
            let body = ErrorBody::method_not_allowed(m.as_str(), uri.path());
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                body,
            }
        })
        .with_state(state)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse_lease(id: &str) -> Result<LeaseId, ApiError> {
    id.parse().map_err(|e: gpunet_protocol::IdError| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    })
}

/// Reads the body (at most `limit` bytes), checks the signature, checks that the signer is the
/// tenant of `lease`, then that the request was not accepted before. Returns the lease and the
/// body.
async fn authorize(
    state: &AgentState,
    id: &str,
    req: Request,
    limit: usize,
) -> Result<(LeaseId, Bytes), ApiError> {
    let lease = parse_lease(id)?;
    let (signed, body) = signed_body(req, limit).await?;
    let signer = signed.signer;
    let tenant = state.leases.tenant_of(lease).await?;
    if signer != tenant {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the request is signed by {signer}, but lease {lease} belongs to {tenant}; sign with the tenant's key"
            ),
        ));
    }
    admit(state, &signed)?;
    Ok((lease, body))
}

/// Reads the body (at most `limit` bytes) and checks the signature. The caller checks who may
/// ask, then [`admit`]s the nonce: only those who may ask fill the nonce book.
async fn signed_body(req: Request, limit: usize) -> Result<(SignedRequest, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
    })?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let now = now_ms();
    let signed = verify_request(
        &AuthHeaders::from_lookup(|name| header(&parts.headers, name)),
        parts.method.as_str(),
        path_and_query,
        &body,
        now,
    )
    .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()))?;
    Ok((signed, body))
}

/// Accepts the request's nonce once: a replay is refused.
fn admit(state: &AgentState, signed: &SignedRequest) -> Result<(), ApiError> {
    state
        .nonces
        .lock()
        .expect("the nonce book's lock is never held across a panic")
        .admit(signed, now_ms())
        .map_err(|e| {
            let (status, name) = match e {
                AuthError::Replayed => (StatusCode::UNAUTHORIZED, "replayed_request"),
                _ => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            };
            ApiError::new(status, name, e.to_string())
        })
}

/// A command to run in the lease's workload, from its tenant, sealed to this provider; the
/// answer is sealed to the tenant's output key.
async fn exec(
    State(state): State<Arc<AgentState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (lease, body) = authorize(&state, &id, req, MAX_REQUEST_BODY_BYTES).await?;
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", why);
    let sealed: ExecSealed = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body is not {{\"sealed_hex\": \"…\"}}: {e}")))?;
    let sealed = hex::decode(sealed.sealed_hex.trim())
        .map_err(|e| bad(format!("sealed_hex is not hex: {e}")))?;
    let ctx = SealContext {
        purpose: Purpose::Exec,
        lease,
    };
    let plain = state.leases.open_sealed(ctx, &sealed).map_err(|e| {
        bad(format!(
            "the command does not open with this provider's key for lease {lease}: {e}; seal it \
             to the encryption_key this provider registered on chain"
        ))
    })?;
    let request: ExecRequest = serde_json::from_slice(&plain)
        .map_err(|e| bad(format!("the sealed command is not an exec request: {e}")))?;
    request.validate().map_err(bad)?;
    let output_key = tenant_key(&state.leases, lease, "exec output")?;
    let out = state
        .leases
        .exec(
            lease,
            request.service.as_deref(),
            &request.argv,
            std::time::Duration::from_secs(u64::from(request.timeout_secs)),
        )
        .await
        .map_err(|e| match e {
            LeaseError::Driver {
                source: source @ gpunet_runtime::DriverError::NoSuchService { .. },
            } => ApiError::new(StatusCode::NOT_FOUND, "no_such_service", source.to_string()),
            LeaseError::Driver {
                source: gpunet_runtime::DriverError::NotRunning { .. },
            } => ApiError::new(
                StatusCode::CONFLICT,
                "not_running",
                format!("lease {lease}'s workload is not running; exec works only while it runs"),
            ),
            LeaseError::Driver {
                source: source @ gpunet_runtime::DriverError::ExecUnsupported { .. },
            } => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "exec_unsupported",
                source.to_string(),
            ),
            e => ApiError::from(e),
        })?;
    let result = ExecResult {
        exit_code: out.exit_code,
        stdout_hex: hex::encode(&out.stdout),
        stderr_hex: hex::encode(&out.stderr),
        truncated: out.truncated,
        timed_out: out.timed_out,
    };
    let json = serde_json::to_vec(&result).expect("an exec result always serialises");
    let ctx = SealContext {
        purpose: Purpose::ExecOutput,
        lease,
    };
    let sealed = gpunet_client::sealing::seal(&output_key, ctx, &json)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "output_key_unusable", e.to_string()))?;
    Ok(axum::Json(ExecSealed {
        sealed_hex: hex::encode(sealed),
    })
    .into_response())
}

/// A shell into the lease's workload for its tenant: a WebSocket upgrade signed like every
/// tenant request (no body), then the stream `crate::shell` carries.
async fn shell(
    State(state): State<Arc<AgentState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    use axum::extract::FromRequestParts;
    let (mut parts, body) = req.into_parts();
    let upgrade = axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_a_websocket",
                format!("a shell is a WebSocket: {}", e.body_text()),
            )
        })?;
    let (lease, _) = authorize(&state, &id, Request::from_parts(parts, body), 0).await?;
    let permit = Arc::clone(&state.shells).try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_shells",
            format!(
                "this provider has {} shells open, its most; close one and try again",
                crate::shell::MAX_SHELLS
            ),
        )
    })?;
    let leases = Arc::clone(&state.leases);
    Ok(upgrade
        .max_message_size(crate::shell::MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            crate::shell::serve(&leases, lease, socket).await;
            drop(permit);
        }))
}

/// One run's outputs of a `compare: tensors` order this provider judges, from the order's
/// tenant, sealed to this provider (`verdicts`).
async fn verdict_run(
    State(state): State<Arc<AgentState>>,
    Path((order, lease)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(judge) = state.judge.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_judging",
            "this agent does not judge verdicts",
        ));
    };
    let order: OrderId = order.parse().map_err(|e: gpunet_protocol::IdError| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    })?;
    let lease = parse_lease(&lease)?;
    let max = gpunet_protocol::sealed::sealed_len(
        gpunet_protocol::MAX_BUNDLE_OUTPUT_BYTES
            + gpunet_protocol::jobspec::MAX_MANIFEST_BYTES as u64
            + 4 * 1024 * 1024,
    );
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let bundle_error = |e: BundleError| {
        let (status, name) = match &e {
            BundleError::NotJudging { .. } => (StatusCode::CONFLICT, "not_judging"),
            BundleError::NotTenant { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            BundleError::NotARun { .. } => (StatusCode::NOT_FOUND, "not_a_run"),
            BundleError::Malformed { .. } => (StatusCode::BAD_REQUEST, "bundle_malformed"),
            BundleError::Mismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "bundle_mismatch"),
            BundleError::Node { .. } => (StatusCode::SERVICE_UNAVAILABLE, "node_unreachable"),
            BundleError::Store { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "store_failed"),
        };
        ApiError::new(status, name, e.to_string())
    };
    // Who claims to send it is checked before a body of up to a few hundred MiB is read:
    // only the order's tenant, while this provider judges it, gets that far. The signature,
    // over the body, is then checked against that same signer.
    let claimed: Address = header(req.headers(), gpunet_api::auth::SIGNER_HEADER)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the request is not signed: sign it with the tenant's key (gpunet_api::auth)",
            )
        })?;
    judge
        .check_tenant(claimed, order)
        .await
        .map_err(bundle_error)?;
    let (signed, body) = signed_body(req, max).await?;
    if signed.signer != claimed {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the signature is not the claimed signer's",
        ));
    }
    admit(&state, &signed)?;
    judge
        .receive(signed.signer, order, lease, &body)
        .await
        .map_err(bundle_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn manifest(
    State(state): State<Arc<AgentState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (lease, body) = authorize(&state, &id, req, MAX_REQUEST_BODY_BYTES).await?;
    let leases = &state.leases;
    let delivery: ManifestDelivery = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not a manifest delivery ({{\"sealed_hex\": \"…\"}}): {e}"),
        )
    })?;
    let bytes = hex::decode(delivery.sealed_hex.trim()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("sealed_hex is not hex: {e}"),
        )
    })?;
    let view = leases.deliver_manifest(lease, &bytes).await?;
    Ok(axum::Json(view).into_response())
}

/// The tenant's sealed inputs, as raw bytes (sealed to this provider, purpose `Inputs`).
async fn inputs(
    State(state): State<Arc<AgentState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let max = gpunet_protocol::sealed::sealed_len(gpunet_protocol::inputs::MAX_INPUTS_BYTES);
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let (lease, body) = authorize(&state, &id, req, max).await?;
    state.leases.deliver_inputs(lease, &body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn status(
    State(state): State<Arc<AgentState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (lease, _) = authorize(&state, &id, req, MAX_GET_BODY_BYTES).await?;
    let leases = &state.leases;
    let record = leases.get(lease).ok_or(LeaseError::NoRecord { lease })?;
    Ok(axum::Json(record.view()).into_response())
}

/// `offset` and `max` from a query string; absent ones are defaults, bad ones an error.
fn log_query(query: Option<&str>) -> Result<(u64, usize), ApiError> {
    let mut offset = 0u64;
    let mut max = DEFAULT_LOG_CHUNK_BYTES;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{what} must be a whole number, not {v:?}"),
            )
        };
        match k {
            "offset" => offset = v.parse().map_err(|_| bad("offset"))?,
            "max" => max = v.parse().map_err(|_| bad("max"))?,
            _ => {}
        }
    }
    Ok((offset, max.min(MAX_LOG_CHUNK_BYTES)))
}

async fn logs(
    State(state): State<Arc<AgentState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let query = req.uri().query().map(str::to_owned);
    let (lease, _) = authorize(&state, &id, req, MAX_GET_BODY_BYTES).await?;
    let leases = &state.leases;
    let (offset, max) = log_query(query.as_deref())?;
    let output_key = tenant_key(leases, lease, "logs")?;
    let slice = leases.logs(lease, offset, max).await?;
    let ctx = SealContext {
        purpose: Purpose::Logs,
        lease,
    };
    let sealed = gpunet_client::sealing::seal(&output_key, ctx, &slice.to_bytes())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "output_key_unusable", e.to_string()))?;
    Ok(axum::Json(SealedLogChunk {
        offset: slice.offset,
        next_offset: slice.next_offset(),
        finished: slice.finished,
        sealed_hex: hex::encode(sealed),
    })
    .into_response())
}

/// The tenant's key that `what` of `lease` is sealed to, or 409 `no_output_key`: nothing of a
/// lease leaves this agent in the clear.
fn tenant_key(leases: &Leases, lease: LeaseId, what: &str) -> Result<EncryptionKey, ApiError> {
    leases.output_key(lease).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_output_key",
            format!(
                "lease {lease} has no output_key to seal its {what} to: its manifest has not \
                 arrived yet, or named none; {what} are served only sealed to the tenant"
            ),
        )
    })
}

async fn outputs(
    State(state): State<Arc<AgentState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (lease, _) = authorize(&state, &id, req, MAX_GET_BODY_BYTES).await?;
    let leases = &state.leases;
    let record = leases.get(lease).ok_or(LeaseError::NoRecord { lease })?;
    match record.listing {
        Some(listing) => Ok(axum::Json(listing).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_outputs",
            format!(
                "lease {lease} has no outputs (yet): it is {:?}{}",
                record.state(),
                record.detail.map(|d| format!(" ({d})")).unwrap_or_default()
            ),
        )),
    }
}

async fn output(
    State(state): State<Arc<AgentState>>,
    Path((id, digest)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let (lease, _) = authorize(&state, &id, req, MAX_GET_BODY_BYTES).await?;
    let leases = &state.leases;
    let digest = Hash::from_hex(&digest)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("lease {lease} has no output with digest {digest}"),
        )
    };
    let path = leases.output_blob(lease, &digest).ok_or_else(not_found)?;
    let output_key = tenant_key(leases, lease, "outputs")?;
    let ctx = SealContext {
        purpose: Purpose::Output,
        lease,
    };
    let (sealer, header) = gpunet_client::sealing::sealer(&output_key, ctx)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "output_key_unusable", e.to_string()))?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::warn!(?path, error = %e, "a listed output blob cannot be opened");
        not_found()
    })?;
    let len = file.metadata().await.map(|m| m.len()).ok();
    let body = sealed_stream(file, sealer, header);
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(len) = len {
        resp.headers_mut().insert(
            header::CONTENT_LENGTH,
            header::HeaderValue::from(sealed_len(len)),
        );
    }
    Ok(resp)
}

/// Where a sealed stream is: the header goes first, then each chunk, read one ahead so the last
/// one is sealed as the last.
enum SealState {
    Header([u8; SEALED_HEADER_BYTES]),
    Body(Vec<u8>),
    Done,
}

/// Reads until `buf` holds [`SEALED_CHUNK_BYTES`] or the file ends.
async fn read_chunk(file: &mut tokio::fs::File) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; SEALED_CHUNK_BYTES];
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The file's bytes sealed chunk by chunk, so a large output never sits whole in memory.
fn sealed_stream(
    file: tokio::fs::File,
    sealer: Sealer,
    header: [u8; SEALED_HEADER_BYTES],
) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
    futures::stream::unfold(
        (file, sealer, SealState::Header(header)),
        |(mut file, mut sealer, state)| async move {
            match state {
                SealState::Header(header) => {
                    let next = match read_chunk(&mut file).await {
                        Ok(chunk) => SealState::Body(chunk),
                        Err(e) => return Some((Err(e), (file, sealer, SealState::Done))),
                    };
                    Some((Ok(Bytes::copy_from_slice(&header)), (file, sealer, next)))
                }
                SealState::Body(chunk) => {
                    let ahead = if chunk.len() == SEALED_CHUNK_BYTES {
                        match read_chunk(&mut file).await {
                            Ok(ahead) => ahead,
                            Err(e) => return Some((Err(e), (file, sealer, SealState::Done))),
                        }
                    } else {
                        Vec::new()
                    };
                    let last = ahead.is_empty();
                    let sealed = Bytes::from(sealer.seal_chunk(&chunk, last));
                    let next = if last {
                        SealState::Done
                    } else {
                        SealState::Body(ahead)
                    };
                    Some((Ok(sealed), (file, sealer, next)))
                }
                SealState::Done => None,
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_queries_have_defaults_and_limits() {
        assert_eq!(log_query(None).ok(), Some((0, DEFAULT_LOG_CHUNK_BYTES)));
        assert_eq!(log_query(Some("offset=10&max=5")).ok(), Some((10, 5)));
        assert_eq!(
            log_query(Some("max=999999999")).ok(),
            Some((0, MAX_LOG_CHUNK_BYTES))
        );
        assert!(log_query(Some("offset=-1")).is_err());
    }
}
