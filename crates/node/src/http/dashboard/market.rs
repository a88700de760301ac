//! The market (`/market`: open orders, their bids as the order book, the price index with its
//! chart and the book's depth ([`super::prices`]), recent leases), a tenant's jobs
//! (`/jobs?tenant=`), one job (`/jobs/{id}`) and one lease (`/leases/{id}`).
//!
//! A job is an order: its id is the order id `gpunet job` prints. Logs and outputs are sealed
//! to the tenant (HPKE with ChaCha20-Poly1305, which a browser's WebCrypto does not offer) and
//! served only to requests it signs, so the pages show what is public (the output listing's
//! digest) and the CLI commands that read the rest, instead of fetching them.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use gpunet_api::node::{LeaseState, LeaseView, OrderState, OrderView};
use gpunet_protocol::{Address, Amount, Denom, LeaseId, OrderId};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    PAGE_ROWS, Page, PageError, PageResult, Section, account_link, after_param, block_link,
    duration, job_link, lease_link, money, next_link, per_hour, prices, provider_link, resources,
    table_box, time,
};
use crate::http::{App, id_param, lookup_in, order_or_404, orders_page, views};

/// Leases the market page lists, newest first.
const RECENT_LEASES: usize = 20;

/// A unit price of `class`: per GPU-hour, or per core-hour for `cpu`.
fn per_unit(micros: u64, class: &str) -> Markup {
    let unit = if crate::http::prices::per_core(class) {
        "core-hour"
    } else {
        "GPU-hour"
    };
    html! { span.amount { (Amount::from_micros(micros)) " USD/" (unit) } }
}

pub(super) fn order_state_name(s: OrderState) -> &'static str {
    match s {
        OrderState::Open => "open",
        OrderState::Leased => "leased",
        OrderState::Expired => "expired",
        OrderState::Cancelled => "cancelled",
        OrderState::Closed => "closed",
        OrderState::Verifying => "verifying",
    }
}

pub(super) fn lease_state_name(l: &LeaseView) -> String {
    match (l.state, l.end_reason) {
        (LeaseState::Pending, _) => "waiting to start".to_owned(),
        (LeaseState::Running, _) => "running".to_owned(),
        (LeaseState::Paused, _) => "paused: escrow ran out".to_owned(),
        (LeaseState::Ended, Some(r)) => format!("ended: {}", r.as_str()),
        (LeaseState::Ended, None) => "ended".to_owned(),
    }
}

#[derive(Debug, Deserialize)]
pub(in crate::http) struct ListQuery {
    pub(super) after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(in crate::http) struct JobsQuery {
    tenant: Option<String>,
    after: Option<String>,
}

fn bad_query(e: QueryRejection) -> PageError {
    PageError::bad_request(format!("bad query: {}", e.body_text()))
}

/// Open orders: what each asks and pays, its bids and its best bid.
fn open_orders_table(orders: &[OrderView]) -> Markup {
    table_box(
        "Open orders, newest first",
        &[
            "Job",
            "Name",
            "Tenant",
            "Asks for",
            "Max price",
            "Deposit",
            "Bids",
            "Best bid",
        ],
        html! {
            @for o in orders {
                tr {
                    td { (job_link(o.id)) }
                    td { (o.terms.name) }
                    td { (account_link(&o.tenant)) }
                    td { (resources(&o.terms.resources)) }
                    td { (per_hour(o.terms.max_price_per_hour)) }
                    td { (money(o.terms.deposit, Denom::Usd)) }
                    td.num { (o.bids.len()) }
                    td {
                        @match o.bids.iter().map(|b| b.price_per_hour).min() {
                            Some(p) => { (per_hour(p)) }
                            None => { "—" }
                        }
                    }
                }
            }
            @if orders.is_empty() {
                tr { td colspan="8" { "No open orders." } }
            }
        },
    )
}

fn leases_table(caption: &str, leases: &[LeaseView]) -> Markup {
    table_box(
        caption,
        &[
            "Lease", "Job", "Provider", "State", "Price", "Paid", "Created",
        ],
        html! {
            @for l in leases {
                tr {
                    td { (lease_link(l.id)) }
                    td { (job_link(l.order)) }
                    td { (provider_link(&l.provider)) }
                    td { (lease_state_name(l)) }
                    td { (per_hour(l.price_per_hour)) }
                    td { (money(l.paid, Denom::Usd)) }
                    td { (block_link(l.created_height)) }
                }
            }
            @if leases.is_empty() {
                tr { td colspan="7" { "No leases yet." } }
            }
        },
    )
}

pub(in crate::http) async fn market(
    State(app): State<App>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let Query(q) = q.map_err(bad_query)?;
    let after = after_param::<OrderId>(q.after.as_deref())?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let (open, next) = orders_page(&app, state, None, true, PAGE_ROWS, after)?;
    // The order book: every bid on the open orders shown, cheapest first.
    let mut book: Vec<(Amount, OrderId, Address, u64)> = open
        .iter()
        .flat_map(|o| {
            o.bids
                .iter()
                .map(|b| (b.price_per_hour, o.id, b.provider, b.height))
        })
        .collect();
    book.sort();
    // The newest leases, for the table, the index and the chart.
    let leases = crate::http::prices::newest_leases(&app, &tip).await?;
    let fills = crate::http::prices::fills_of(state, &leases);
    let index = crate::http::prices::price_index(&fills);
    let asks: Vec<u64> = open
        .iter()
        .map(|o| o.terms.max_price_per_hour.micros())
        .collect();
    let bids: Vec<u64> = book.iter().map(|(p, ..)| p.micros()).collect();
    let recent = &leases[..leases.len().min(RECENT_LEASES)];
    let body = html! {
        p {
            (state.open_orders.len()) " open orders; "
            (state.live_leases.len()) " live leases; "
            (state.next_lease_id.saturating_sub(1)) " leases in all. "
            "Prices are per hour, in USD; stake and fees in GPN."
        }
        section aria-labelledby="open-h" {
            h2 #open-h { "Open orders" }
            div #open-orders data-live { (open_orders_table(&open)) (next_link("/market", next.as_deref())) }
        }
        section aria-labelledby="book-h" {
            h2 #book-h { "Order book" }
            p.note { "Each open order above is a buy at its max price; providers answer with bids at or below it. The lowest feasible bid wins when the order's bid window closes." }
            div #order-book data-live {
                (table_box("Bids on open orders, cheapest first", &["Price", "Job", "Provider", "Placed at"], html! {
                    @for (price, order, provider, height) in &book {
                        tr {
                            td { (per_hour(*price)) }
                            td { (job_link(*order)) }
                            td { (provider_link(provider)) }
                            td { (block_link(*height)) }
                        }
                    }
                    @if book.is_empty() {
                        tr { td colspan="4" { "No bids on open orders." } }
                    }
                }))
            }
        }
        section aria-labelledby="index-h" {
            h2 #index-h { "Price index" }
            p.note { "The median unit price of the " (leases.len()) " newest leases (fills), per GPU model by GPU-hour, and for leases without GPUs (cpu) by core-hour. A median, so one odd fill does not move it. As JSON: " a href="/v1/market/prices" { "/v1/market/prices" } "." }
            div #price-index data-live {
                (table_box("Price index by GPU model, busiest first", &["Class", "Median", "Low", "High", "Fills", "Last fill"], html! {
                    @for r in &index {
                        tr {
                            td { (r.class) }
                            td.num { (per_unit(r.median, &r.class)) }
                            td.num { (per_unit(r.low, &r.class)) }
                            td.num { (per_unit(r.high, &r.class)) }
                            td.num { (r.fills) }
                            td { (per_unit(r.last.0, &r.class)) " at " (block_link(r.last.1)) }
                        }
                    }
                    @if index.is_empty() {
                        tr { td colspan="6" { "No fills yet." } }
                    }
                }))
                (prices::fills_chart(&fills, &index))
            }
        }
        section aria-labelledby="depth-h" {
            h2 #depth-h { "Depth" }
            div #depth data-live { (prices::depth_chart(&asks, &bids)) }
        }
        section aria-labelledby="leases-h" {
            h2 #leases-h { "Recent leases" }
            div #recent-leases data-live { (leases_table("Recent leases, newest first", recent)) }
        }
    };
    Ok(Page::new("Market", Section::Market, state.height, body))
}

fn tenant_form(value: &str) -> Markup {
    html! {
        form.inline action="/jobs" method="get" {
            label for="tenant" { "Tenant address" }
            input #tenant type="text" name="tenant" value=(value) required
                autocomplete="off" spellcheck="false" placeholder="gpn1…";
            button type="submit" { "Show jobs" }
        }
    }
}

fn jobs_table(orders: &[OrderView]) -> Markup {
    table_box(
        "Jobs, newest first",
        &[
            "Job", "Name", "State", "Attempts", "Lease", "Escrow", "Paid", "Created",
        ],
        html! {
            @for o in orders {
                tr {
                    td { (job_link(o.id)) }
                    td { (o.terms.name) }
                    td { (order_state_name(o.state)) }
                    td.num { (o.attempts.len()) " of " (o.terms.recovery.max_attempts) }
                    td {
                        @match &o.lease {
                            Some(l) => { (lease_link(l.id)) }
                            None => { "—" }
                        }
                    }
                    td { (money(o.escrow, Denom::Usd)) }
                    td { (money(paid(o), Denom::Usd)) }
                    td { (block_link(o.created_height)) }
                }
            }
            @if orders.is_empty() {
                tr { td colspan="8" { "No jobs." } }
            }
        },
    )
}

/// What the tenant has paid for a job so far, over all its attempts.
fn paid(o: &OrderView) -> Amount {
    o.attempts.iter().fold(Amount::ZERO, |sum, l| {
        sum.checked_add(l.paid).unwrap_or(Amount::MAX)
    })
}

pub(in crate::http) async fn jobs(
    State(app): State<App>,
    q: Result<Query<JobsQuery>, QueryRejection>,
) -> PageResult {
    let Query(q) = q.map_err(bad_query)?;
    let tenant_text = q.tenant.as_deref().map(str::trim).unwrap_or_default();
    let tenant = match tenant_text {
        "" => None,
        t => Some(Address::parse(t).map_err(|e| {
            PageError::bad_request(format!("tenant: {e}; a tenant is a gpn1… address"))
        })?),
    };
    let after = after_param::<OrderId>(q.after.as_deref())?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let (orders, next) = orders_page(&app, state, tenant, false, PAGE_ROWS, after)?;
    let (title, base) = match &tenant {
        Some(t) => (format!("Jobs of {t}"), format!("/jobs?tenant={t}")),
        None => ("Jobs".to_owned(), "/jobs".to_owned()),
    };
    let body = html! {
        (tenant_form(tenant_text))
        @if let Some(t) = &tenant {
            p { "Wallet: " (account_link(t)) ". From the CLI: " code { "gpunet job list" } " with this account's key." }
        } @else {
            p.note { "Every tenant's jobs, newest first. Give an address to see one tenant's." }
        }
        div #jobs data-live { (jobs_table(&orders)) (next_link(&base, next.as_deref())) }
    };
    Ok(Page::new(title, Section::Jobs, state.height, body))
}

pub(in crate::http) async fn job(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
) -> PageResult {
    let id: OrderId = id_param(p)?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let lookup = lookup_in(&app, state);
    let o = order_or_404(lookup, id).map_err(|e| {
        PageError::from(e).with_hint(html! {
            p { "Jobs are numbered from 1; the newest is job " (state.next_order_id.saturating_sub(1)) "." }
        })
    })?;
    let o = views::order_view(lookup, &o)
        .map_err(|e| crate::http::ApiError::store("lease history", e))?;
    let t = &o.terms;
    let body = html! {
        div #job data-live {
            dl.facts {
                dt { "Name" } dd { (t.name) }
                dt { "State" } dd { (order_state_name(o.state)) }
                dt { "Tenant" } dd { (account_link(&o.tenant)) " · " a href={ "/jobs?tenant=" (o.tenant) } { "all its jobs" } }
                dt { "Created" } dd { "block " (block_link(o.created_height)) ", " (time(o.created_ms)) }
                dt { "Asks for" } dd { (resources(&t.resources)) }
                dt { "Runtime" } dd { (t.runtime.as_str()) }
                @if !t.capabilities.is_none() {
                    dt { "Capabilities" } dd { (t.capabilities.as_str()) }
                }
                dt { "Regions" } dd { @if t.regions.is_empty() { "anywhere" } @else { (t.regions.join(", ")) } }
                dt { "Max price" } dd { (per_hour(t.max_price_per_hour)) }
                dt { "Deposit" } dd { (money(t.deposit, Denom::Usd)) }
                dt { "Escrow now" } dd { (money(o.escrow, Denom::Usd)) }
                dt { "Paid so far" } dd { (money(paid(&o), Denom::Usd)) }
                dt { "Max duration" } dd { (duration(t.max_duration_secs)) }
                dt { "Attempts" }
                dd { (o.attempts.len()) " of at most " (t.recovery.max_attempts)
                     @if !t.recovery.on_exit_codes.is_empty() {
                         "; retried on exit codes "
                         (t.recovery.on_exit_codes.iter().map(i32::to_string).collect::<Vec<_>>().join(", "))
                     } }
                dt { "Verification" } dd { (t.verification.mode.as_str())
                     @if let Some(v) = &o.verification {
                         "; " (v.stage)
                         @if let Some(out) = &v.outcome { ", outcome " (out) }
                     } }
                dt { "Manifest hash" } dd { code.hash { (t.manifest_hash) } }
                @if !o.excluded.is_empty() {
                    dt { "Excluded providers" }
                    dd { @for (i, a) in o.excluded.iter().enumerate() { @if i > 0 { ", " } (provider_link(a)) } }
                }
            }
            @if !o.bids.is_empty() {
                (table_box("Bids", &["Provider", "Price", "Placed at"], html! {
                    @for b in &o.bids {
                        tr { td { (provider_link(&b.provider)) } td { (per_hour(b.price_per_hour)) } td { (block_link(b.height)) } }
                    }
                }))
            }
            (leases_table("Attempts (leases), oldest first", &o.attempts))
        }
        section aria-labelledby="cli-h" {
            h2 #cli-h { "Logs and outputs" }
            p { "Logs and outputs are sealed to the tenant; only its key can read them. From the CLI, with the tenant's key:" }
            pre.cli { "gpunet job status " (o.id) "\ngpunet job logs " (o.id) " --follow\ngpunet job output " (o.id) }
        }
    };
    Ok(Page::new(
        format!("Job {}", o.id),
        Section::Jobs,
        state.height,
        body,
    ))
}

/// Endpoints as text; a link only for the web schemes (the ledger admits `http://`,
/// `https://` and `tcp://`, and a link is what a person would follow).
fn endpoint(e: &str) -> Markup {
    let web = e.starts_with("http://") || e.starts_with("https://");
    html! {
        @if web { a href=(e) rel="nofollow noopener noreferrer" { code { (e) } } }
        @else { code { (e) } }
    }
}

pub(in crate::http) async fn lease(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
) -> PageResult {
    let id: LeaseId = id_param(p)?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let l = lookup_in(&app, state)
        .lease(id)
        .map_err(|e| crate::http::ApiError::store("lease history", e))?
        .ok_or_else(|| {
            PageError::not_found(state.height, format!("no lease {id}")).with_hint(html! {
                p { "Leases are numbered from 1; the newest is lease " (state.next_lease_id.saturating_sub(1)) "." }
            })
        })?;
    let l = views::lease_view(state, &l);
    let body = html! {
        div #lease data-live {
            dl.facts {
                dt { "State" } dd { (lease_state_name(&l)) }
                dt { "Job" } dd { (job_link(l.order)) ", attempt " (l.attempt) }
                dt { "Tenant" } dd { (account_link(&l.tenant)) }
                dt { "Provider" } dd { (provider_link(&l.provider)) }
                dt { "Provider agent" } dd { @if l.provider_endpoint.is_empty() { "—" } @else { code { (l.provider_endpoint) } } }
                dt { "Endpoints" }
                dd {
                    @if l.endpoints.is_empty() { "none published" }
                    @else { ul.plain { @for e in &l.endpoints { li { (endpoint(e)) } } } }
                }
                dt { "Price" } dd { (per_hour(l.price_per_hour)) }
                dt { "Resources" } dd { (resources(&l.resources)) }
                @if !l.gpu_slots.is_empty() {
                    dt { "GPU slots" } dd { (l.gpu_slots.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")) }
                }
                dt { "Created" } dd { "block " (block_link(l.created_height)) ", " (time(l.created_ms)) }
                dt { "Started" } dd { (l.started_ms.map_or("—".to_owned(), time)) }
                dt { "Ended" } dd { (l.ended_ms.map_or("—".to_owned(), time)) }
                dt { "Last proof of life" } dd { (time(l.last_proof_ms)) ", block " (block_link(l.last_proof_height)) }
                dt { "Billed time" } dd { (duration(l.billed_ms / 1000)) }
                dt { "Paid" } dd { (money(l.paid, Denom::Usd)) " (protocol fee " (money(l.protocol_fee, Denom::Usd)) ", provider earned " (money(l.provider_earned, Denom::Usd)) ")" }
                dt { "Refunded" } dd { (money(l.refund, Denom::Usd)) }
                @if let Some(r) = &l.result {
                    dt { "Result" }
                    dd { (format!("{:?}", r.outcome).to_lowercase())
                         @if let Some(code) = r.exit_code { ", exit code " (code) }
                         @if !r.detail.is_empty() { ": " (r.detail) } }
                    dt { "Outputs" }
                    dd {
                        @match &r.output_digest {
                            Some(d) => { "listing digest " code.hash { (d) } }
                            None => { "none kept" }
                        }
                    }
                }
            }
        }
        section aria-labelledby="cli-h" {
            h2 #cli-h { "Logs and outputs" }
            p { "The lease's log and output files are sealed to its tenant: its provider serves them only to a request the tenant signs, encrypted to the tenant's key, so no page can show them. The digest above is public: the files the tenant fetches must hash to it. With the tenant's key:" }
            pre.cli { "gpunet job logs " (l.order) "\ngpunet job output " (l.order) }
        }
    };
    Ok(Page::new(
        format!("Lease {}", l.id),
        Section::Market,
        state.height,
        body,
    ))
}
