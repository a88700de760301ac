//! `GET /v1/events`: Server-Sent Events of every committed block's events, as
//! [`EventEnvelope`] JSON under the event name `event`, each with the block height as its id.
//!
//! With `from_height=H` the stream first replays stored blocks from H — at most
//! [`MAX_REPLAY_BLOCKS`] of them; past that it sends an `error` event naming the height to
//! reconnect from and ends — and then follows new blocks live. A client too slow for the live
//! feed gets an `error` event (`lagged`) with the height to reconnect from, and the stream ends.
//! No block is ever skipped silently.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use gpunet_api::ErrorBody;
use gpunet_protocol::{Block, BlockOutcome};
use gpunet_store::Store;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{ApiError, App};
use crate::chain::BlockEvents;

/// Most stored blocks one request replays.
pub(crate) const MAX_REPLAY_BLOCKS: u64 = 1000;
/// SSE events buffered for one client before its feeder waits (and, live, falls behind).
const CLIENT_BUFFER_EVENTS: usize = 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    from_height: Option<String>,
}

fn error_event(name: &str, message: String) -> Event {
    let body = ErrorBody::new(name, message);
    Event::default()
        .event("error")
        .json_data(&body)
        .unwrap_or_else(|_| Event::default().event("error").data(name))
}

fn envelope_events(block: &BlockEvents) -> impl Iterator<Item = Event> + '_ {
    block.events.iter().filter_map(move |e| {
        Event::default()
            .event("event")
            .id(block.height.to_string())
            .json_data(e)
            .ok()
    })
}

#[utoipa::path(
    get,
    path = "/v1/events",
    params(("from_height" = Option<u64>, Query, description = "Replay stored blocks from this height (at most 1000), then follow live; without it, live only")),
    responses(
        (status = 200, content_type = "text/event-stream", body = gpunet_api::node::EventEnvelope, description = "`event` events carry an EventEnvelope; an `error` event (ErrorBody) ends the stream"),
        (status = 400, body = super::ErrorSchema),
    )
)]
pub(crate) async fn events(
    State(app): State<App>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let from_height = q
        .from_height
        .as_deref()
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter from_height: {s:?} is not a block height"
                ))
            })
        })
        .transpose()?;

    // Subscribe before reading the head: every block above the head read below then arrives
    // live, and those at or below it are skipped there and replayed from the store.
    let live = app.shared.events.subscribe();
    let head = app.shared.tip().state.height;
    let next = from_height.unwrap_or(head.saturating_add(1)).max(1);
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER_EVENTS);
    tokio::spawn(feed(app, live, head, next, tx));
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

/// Why a replay stopped early.
enum ReplayStop {
    ClientGone,
    Store(String),
}

/// Replays the stored events of heights `from..=to` into `tx`. Blocking: runs on the blocking
/// pool.
fn replay(
    store: &Store,
    from: u64,
    to: u64,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
) -> Result<(), ReplayStop> {
    for height in from..=to {
        let block = store
            .block(height)
            .map_err(|e| ReplayStop::Store(e.to_string()))?
            .ok_or_else(|| ReplayStop::Store(format!("no block at height {height}")))?;
        let receipts = store
            .receipts(height)
            .map_err(|e| ReplayStop::Store(e.to_string()))?
            .ok_or_else(|| ReplayStop::Store(format!("no receipts at height {height}")))?;
        let block: Block =
            borsh::from_slice(&block).map_err(|e| ReplayStop::Store(e.to_string()))?;
        let outcome: BlockOutcome =
            borsh::from_slice(&receipts).map_err(|e| ReplayStop::Store(e.to_string()))?;
        let events = BlockEvents::from_outcome(height, block.header.time_ms, outcome);
        for e in envelope_events(&events) {
            tx.blocking_send(Ok(e))
                .map_err(|_| ReplayStop::ClientGone)?;
        }
    }
    Ok(())
}

/// Feeds one client: replay, then live, until the client leaves, lags, or the node stops.
async fn feed(
    app: App,
    mut live: broadcast::Receiver<Arc<BlockEvents>>,
    head: u64,
    mut next: u64,
    tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    if next <= head {
        let to = head.min(next.saturating_add(MAX_REPLAY_BLOCKS - 1));
        let store = Arc::clone(&app.shared.store);
        let replay_tx = tx.clone();
        let from = next;
        let replayed =
            tokio::task::spawn_blocking(move || replay(&store, from, to, &replay_tx)).await;
        match replayed {
            Ok(Ok(())) => {}
            Ok(Err(ReplayStop::ClientGone)) => return,
            Ok(Err(ReplayStop::Store(e))) => {
                tracing::error!(error = %e, "cannot replay events from the store");
                let msg = format!(
                    "the node cannot read stored events; reconnect later with from_height={from}"
                );
                let _ = tx.send(Ok(error_event("store_unavailable", msg))).await;
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "event replay task failed");
                return;
            }
        }
        next = to + 1;
        if to < head {
            let msg = format!(
                "replayed {MAX_REPLAY_BLOCKS} blocks, the most one request replays; reconnect with from_height={next}"
            );
            let _ = tx.send(Ok(error_event("replay_limit", msg))).await;
            return;
        }
    }

    let mut shutdown = app.shutdown.clone();
    loop {
        let received = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tx.closed() => return,
            received = live.recv() => received,
        };
        match received {
            Ok(block) => {
                if block.height < next {
                    continue;
                }
                for e in envelope_events(&block) {
                    let sent = tokio::select! {
                        _ = shutdown.wait_for(|stop| *stop) => return,
                        sent = tx.send(Ok(e)) => sent,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                next = block.height + 1;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let msg = format!(
                    "this client fell behind the event stream; reconnect with from_height={next}"
                );
                let _ = tx.send(Ok(error_event("lagged", msg))).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
