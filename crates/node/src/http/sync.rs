//! State sync endpoints: pinned snapshots read in chunks, and decided blocks with their commit
//! certificates (see `crate::statesync`).

use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use gpunet_api::ErrorBody;
use gpunet_api::node::{DecidedView, MAX_SNAPSHOTS, SnapshotView};
use gpunet_protocol::Hash;
use gpunet_protocol::merkle::MAX_CHUNK_ENTITIES;
use serde::Deserialize;

use super::{
    ApiError, ApiResult, App, ErrorSchema, answer, height_header, height_param, ok, path_param,
};
use crate::chain::CertificateError;
use crate::statesync::SnapshotRefusal;

fn refusal(e: SnapshotRefusal, height: u64) -> ApiError {
    match e {
        SnapshotRefusal::Busy(secs) => ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            height: Some(height),
            body: ErrorBody::new(
                "snapshots_busy",
                format!(
                    "this node already serves {MAX_SNAPSHOTS} state snapshots; ask again in \
                     {secs} s or ask another node"
                ),
            ),
        },
        SnapshotRefusal::Unknown => ApiError::not_found(
            height,
            "no snapshot has this id: it was never made, or it went unread too long and was \
             dropped; ask for a new one with POST /v1/sync/snapshots",
        ),
    }
}

#[utoipa::path(
    post,
    path = "/v1/sync/snapshots",
    responses(
        (status = 201, body = SnapshotView, description = "The head's state, pinned for chunked reads"),
        (status = 429, body = ErrorSchema, description = "Too many snapshots are being served (`snapshots_busy`); the message says when to ask again"),
    )
)]
pub(super) async fn create_snapshot(State(app): State<App>) -> ApiResult {
    let height = app.shared.tip().state.height;
    let snapshot = app
        .shared
        .store
        .snapshot()
        .map_err(|e| ApiError::store("a snapshot", e))?;
    let head = snapshot.head();
    let (id, _) = app
        .shared
        .snapshots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .open(snapshot, Instant::now())
        .map_err(|e| refusal(e, height))?;
    Ok(answer(
        StatusCode::CREATED,
        head.height,
        &SnapshotView {
            id,
            height: head.height,
            block_hash: Hash(head.block_hash),
            state_root: Hash(head.state_root),
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct ChunkQuery {
    after: Option<String>,
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/sync/snapshots/{id}/chunk",
    params(
        ("id" = String, Path, description = "The snapshot's id"),
        ("after" = Option<String>, Query, description = "Leaf key (64 hex digits) of the last entity of the previous chunk; leave it out for the first"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 4096, description = "At most this many entities (default and most: 4096)"),
    ),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "Borsh of `gpunet_protocol::merkle::StateChunk`"),
        (status = 400, body = ErrorSchema),
        (status = 404, body = ErrorSchema, description = "No such snapshot, or no entity after `after`"),
    )
)]
pub(super) async fn chunk(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<ChunkQuery>, QueryRejection>,
) -> ApiResult {
    let id = path_param(p)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            hex::decode(a)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "query parameter after: {:?} is not a leaf key (64 hex digits)",
                        gpunet_api::shorten(a)
                    ))
                })
        })
        .transpose()?;
    let limit = match q.limit.as_deref() {
        None => MAX_CHUNK_ENTITIES,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_CHUNK_ENTITIES).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "query parameter limit: {:?} is not a number from 1 to {MAX_CHUNK_ENTITIES}",
                    gpunet_api::shorten(s)
                ))
            })?,
    };
    let height = app.shared.tip().state.height;
    let snapshot = app
        .shared
        .snapshots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&id, Instant::now())
        .map_err(|e| refusal(e, height))?;
    let at = snapshot.head().height;
    // A chunk is a range read and a proof: off the async workers.
    let chunk = tokio::task::spawn_blocking(move || snapshot.chunk(after, limit))
        .await
        .map_err(|_| ApiError::store("a snapshot chunk", "the read was cancelled"))?
        .map_err(|e| ApiError::store("a snapshot chunk", e))?
        .ok_or_else(|| ApiError::not_found(at, "no entity follows this cursor"))?;
    let bytes = borsh::to_vec(&chunk).map_err(|e| ApiError::store("a snapshot chunk", e))?;
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut()
        .insert(height_header(), HeaderValue::from(at));
    Ok(r)
}

#[utoipa::path(
    get,
    path = "/v1/sync/decided/{height}",
    params(("height" = u64, Path, description = "Block height, 1 and up")),
    responses(
        (status = 200, body = DecidedView),
        (status = 400, body = ErrorSchema),
        (status = 404, body = ErrorSchema, description = "No such block or certificate here (a solo node keeps no certificates)"),
    )
)]
pub(super) async fn decided(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let at = height_param(p)?;
    let height = app.shared.tip().state.height;
    let certificate = match app.shared.certificate(at) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(ApiError::not_found(
                height,
                format!("no commit certificate for height {at} here (yet)"),
            ));
        }
        Err(CertificateError::NotKept) => {
            return Err(ApiError::not_found(
                height,
                "this node decides blocks alone and keeps no commit certificates; sync from a \
                 validator of a BFT network",
            ));
        }
        Err(CertificateError::Unreadable(e)) => {
            return Err(ApiError::store("commit certificates", e));
        }
    };
    let block = app
        .shared
        .store
        .block(at)
        .map_err(|e| ApiError::store("blocks", e))?
        .ok_or_else(|| ApiError::not_found(height, format!("no block {at} here (yet)")))?;
    Ok(ok(
        height,
        &DecidedView {
            height: at,
            block_hex: hex::encode(block),
            certificate_hex: hex::encode(certificate),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_refusal_says_when_to_come_back() {
        let e = refusal(SnapshotRefusal::Busy(12), 5);
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.body.message.contains("12 s"), "{}", e.body.message);
    }
}
