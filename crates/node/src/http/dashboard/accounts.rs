//! The wallet page of an address (`/accounts/{address}`): balances, nonce, stake on its way
//! back, its jobs as a tenant, and its transactions back to genesis.
//!
//! The transactions come from the node's index by account (`account_txs.rs`): those the
//! address signed, applied or rejected, and the transfers that paid it, newest first,
//! [`PAGE_ROWS`] a page with an `after=` link to the older ones — the same page as
//! `GET /v1/accounts/{address}/txs`, read off the async threads. Anyone may ask for any
//! address and a browser refreshes the page as blocks come, so a page is one range read of
//! the index, whatever the blocks hold; a malformed cursor is a 400 page.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use gpunet_api::node::{TransferDirection, TransferView};
use gpunet_protocol::Denom;
use maud::html;

use super::market::{ListQuery, order_state_name};
use super::{
    PAGE_ROWS, Page, PageError, PageResult, Section, account_link, after_param, block_link,
    job_link, money, next_link, provider_link, table_box, time,
};
use crate::account_txs::TxPosition;
use crate::http::{App, account_txs_page, account_view, address_param, orders_page};

/// Jobs the page lists; the jobs page has the rest.
const JOBS_SHOWN: usize = 10;

pub(in crate::http) async fn account(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let address = address_param(p)?;
    let Query(q) =
        q.map_err(|e| PageError::bad_request(format!("bad query: {}", e.body_text())))?;
    let after = after_param::<TxPosition>(q.after.as_deref())?;
    let a = account_view(&app, address);
    let tip = app.shared.tip();
    let state = &tip.state;
    let is_provider = state.providers.contains_key(&address);
    let (jobs, more_jobs) = orders_page(&app, state, Some(address), false, JOBS_SHOWN, None)?;
    let txs = account_txs_page(&app, state.height, address, PAGE_ROWS, after).await?;
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
            h2 { "Transactions" }
            p.note {
                "Those it signed (applied or rejected: a rejected one changed nothing) and the transfers that paid it, newest first, "
                @if txs.base_height == 0 {
                    "back to genesis."
                } @else {
                    "back to block " (txs.base_height + 1) ", the first this node holds (it began from a state snapshot; older ones are on nodes that hold those blocks)."
                }
            }
            (table_box("Transactions, newest first", &["Block", "Time", "Kind", "Transfer", "Result", "Hash"], html! {
                @for t in &txs.txs {
                    tr {
                        td { (block_link(t.block_height)) }
                        td { (time(t.time_ms)) }
                        td { (t.kind) }
                        td {
                            @match &t.transfer {
                                Some(TransferView { direction: TransferDirection::Sent, counterparty, amount, denom }) => {
                                    "sent " (money(*amount, *denom)) " to " (account_link(counterparty))
                                }
                                Some(TransferView { direction: TransferDirection::Received, counterparty, amount, denom }) => {
                                    "received " (money(*amount, *denom)) " from " (account_link(counterparty))
                                }
                                None => { "—" }
                            }
                        }
                        td {
                            @match t.rejection {
                                None => { "applied" }
                                Some(r) => { "rejected: " (r.name()) }
                            }
                        }
                        td { a.hash href={ "/txs/" (t.tx_hash) } { (t.tx_hash.to_string().get(..12).unwrap_or_default()) "…" } }
                    }
                }
                @if txs.txs.is_empty() {
                    tr { td colspan="6" { @if after.is_some() { "No older transactions." } @else { "No transactions yet." } } }
                }
            }))
            (next_link(&format!("/accounts/{address}"), txs.next.as_deref()))
        }
    };
    Ok(Page::new(
        format!("Account {}", super::short_address(&address)),
        Section::None,
        state.height,
        body,
    ))
}
