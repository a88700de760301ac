//! The wallet page of an address (`/accounts/{address}`): balances, nonce, stake on its way
//! back, its jobs as a tenant, and its recent transactions.
//!
//! The node keeps no index of transactions by account (only the transaction index by hash and
//! the tenant index of orders, `history.rs`), so the page shows the transactions of the last
//! [`SCANNED_BLOCKS`] blocks that the address signed or received a transfer in, and says so.
//! Anyone may ask for the page, and a browser refreshes it as blocks come: the scan reads at
//! most [`SCANNED_BYTES`] of blocks, newest first, off the async threads, and the page says
//! which blocks it read. An older transaction is still found by its hash.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use gpunet_protocol::{Address, Block, Denom, Hash, Msg};
use maud::html;

use super::market::order_state_name;
use super::{
    Page, PageResult, Section, block_link, job_link, money, provider_link, table_box, time,
};
use crate::http::{ApiError, App, account_view, address_param, orders_page};
use gpunet_store::Store;

/// Blocks scanned for an account's recent transactions, newest first.
const SCANNED_BLOCKS: u64 = 500;
/// Most block bytes one page reads: 500 busy blocks could hold gigabytes.
const SCANNED_BYTES: usize = 4 << 20;
/// Blocks read from the store at a time, newest batch first.
const SCAN_BATCH: u64 = 50;
/// Jobs the page lists; the jobs page has the rest.
const JOBS_SHOWN: usize = 10;

struct TxRow {
    hash: Hash,
    height: u64,
    time_ms: u64,
    kind: &'static str,
    /// For a transfer: its direction, counterparty and amount.
    transfer: Option<(bool, Address, gpunet_protocol::Amount, Denom)>,
}

/// What the scan found: the rows, newest first, and the oldest block it read (`None`: none).
struct Scanned {
    rows: Vec<TxRow>,
    oldest: Option<u64>,
}

/// Transactions in the newest of blocks `tip - SCANNED_BLOCKS + 1 ..= tip` (as many as fit in
/// [`SCANNED_BYTES`]) that `who` signed or received a transfer in, newest first.
fn recent_txs(store: &Store, who: Address, tip_height: u64) -> Result<Scanned, ApiError> {
    let lowest = tip_height.saturating_sub(SCANNED_BLOCKS - 1).max(1);
    let mut rows = Vec::new();
    let mut oldest = None;
    let mut bytes_read = 0usize;
    let mut top = tip_height;
    'batches: while top >= lowest {
        let from = top.saturating_sub(SCAN_BATCH - 1).max(lowest);
        let batch = store
            .blocks_range(from, (top - from + 1) as usize)
            .map_err(|e| ApiError::store("blocks", e))?;
        for (height, bytes) in batch.into_iter().rev().filter(|(h, _)| *h <= top) {
            bytes_read = bytes_read.saturating_add(bytes.len());
            if bytes_read > SCANNED_BYTES && oldest.is_some() {
                break 'batches;
            }
            oldest = Some(height);
            let b: Block = borsh::from_slice(&bytes).map_err(|e| ApiError::store("blocks", e))?;
            block_rows(&b, height, who, &mut rows);
        }
        if from == lowest {
            break;
        }
        top = from - 1;
    }
    Ok(Scanned { rows, oldest })
}

/// The rows of block `b` (at `height`) for `who`, newest first, appended to `rows`.
fn block_rows(b: &Block, height: u64, who: Address, rows: &mut Vec<TxRow>) {
    for tx in b.txs.iter().rev() {
        let transfer = match &tx.body.msg {
            Msg::Transfer { to, denom, amount } => Some((*to, *denom, *amount)),
            _ => None,
        };
        let signed = tx.body.signer == who;
        let received = transfer.is_some_and(|(to, _, _)| to == who);
        if !signed && !received {
            continue;
        }
        rows.push(TxRow {
            hash: tx.hash(),
            height,
            time_ms: b.header.time_ms,
            kind: tx.body.msg.kind(),
            transfer: transfer.map(|(to, denom, amount)| {
                if signed {
                    (true, to, amount, denom)
                } else {
                    (false, tx.body.signer, amount, denom)
                }
            }),
        });
    }
}

pub(in crate::http) async fn account(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
) -> PageResult {
    let address = address_param(p)?;
    let a = account_view(&app, address);
    let tip = app.shared.tip();
    let state = &tip.state;
    let is_provider = state.providers.contains_key(&address);
    let (jobs, more_jobs) = orders_page(&app, state, Some(address), false, JOBS_SHOWN, None)?;
    let store = std::sync::Arc::clone(&app.shared.store);
    let height = state.height;
    let Scanned { rows: txs, oldest } =
        tokio::task::spawn_blocking(move || recent_txs(&store, address, height))
            .await
            .map_err(|e| ApiError::store("blocks", e))??;
    let body = html! {
        div #account data-live {
            dl.facts {
                dt { "Address" } dd { code.hash { (address) } }
                @for d in Denom::ALL {
                    dt { "Balance " (d.as_str().to_uppercase()) } dd { (money(a.balances.get(d), d)) }
                }
                dt { "Nonce" } dd { (a.nonce) @if a.next_nonce > a.nonce { " (" (a.next_nonce - a.nonce) " waiting in the mempool)" } }
                @if !a.unbonding.is_empty() {
                    dt { "Unbonding stake" }
                    dd { @for (i, u) in a.unbonding.iter().enumerate() {
                        @if i > 0 { ", " }
                        (money(u.amount, Denom::Gpn)) " at block " (u.release_height)
                    } }
                }
                @if is_provider {
                    dt { "Provider" } dd { (provider_link(&address)) }
                }
            }
            h2 { "Jobs" }
            @if jobs.is_empty() {
                p { "No jobs as a tenant." }
            } @else {
                (table_box("Newest jobs", &["Job", "Name", "State", "Escrow"], html! {
                    @for o in &jobs {
                        tr {
                            td { (job_link(o.id)) }
                            td { (o.terms.name) }
                            td { (order_state_name(o.state)) }
                            td { (money(o.escrow, Denom::Usd)) }
                        }
                    }
                }))
                @if more_jobs.is_some() {
                    p.more { a href={ "/jobs?tenant=" (address) } { "All its jobs →" } }
                }
            }
            h2 { "Recent transactions" }
            p.note {
                "Those it signed or received a transfer in, "
                @match oldest {
                    Some(from) => { "in blocks " (from) " to " (state.height) }
                    None => { "in no block yet" }
                }
                " (at most the last " (SCANNED_BLOCKS) "; this node keeps no index by account: search an older one by its hash)."
            }
            (table_box("Recent transactions, newest first", &["Block", "Time", "Kind", "Transfer", "Hash"], html! {
                @for t in &txs {
                    tr {
                        td { (block_link(t.height)) }
                        td { (time(t.time_ms)) }
                        td { (t.kind) }
                        td {
                            @match &t.transfer {
                                Some((true, to, amount, denom)) => { "sent " (money(*amount, *denom)) " to " (super::account_link(to)) }
                                Some((false, from, amount, denom)) => { "received " (money(*amount, *denom)) " from " (super::account_link(from)) }
                                None => { "—" }
                            }
                        }
                        td { a.hash href={ "/txs/" (t.hash) } { (t.hash.to_string().get(..12).unwrap_or_default()) "…" } }
                    }
                }
                @if txs.is_empty() {
                    tr { td colspan="5" { "None in these blocks." } }
                }
            }))
        }
    };
    Ok(Page::new(
        format!("Account {}", super::short_address(&address)),
        Section::None,
        state.height,
        body,
    ))
}
