//! Providers (`/providers`, a page at a time by address) and one provider
//! (`/providers/{address}`): machine, runtimes, rates, stake, record, challenges.

use std::ops::Bound::{Excluded, Unbounded};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use gpunet_api::node::ProviderView;
use gpunet_protocol::{Address, Denom};
use maud::{Markup, html};

use super::market::ListQuery;
use super::{
    PAGE_ROWS, Page, PageError, PageResult, Section, account_link, after_param, block_link, cores,
    lease_link, mib, money, next_link, per_hour, ppm_percent, provider_link, table_box, time,
};
use crate::challenge_history::{ChallengeEvent, ChallengeStep};
use crate::http::{App, address_param, pages, views};

/// `h100-80gb ×8, a100 ×2`: a provider's GPUs by model.
fn gpus_summary(p: &ProviderView) -> String {
    let mut models: Vec<(&str, usize)> = Vec::new();
    for g in &p.profile.capacity.gpus {
        match models.iter_mut().find(|(m, _)| *m == g.model) {
            Some((_, n)) => *n += 1,
            None => models.push((&g.model, 1)),
        }
    }
    if models.is_empty() {
        return "none".to_owned();
    }
    models
        .iter()
        .map(|(m, n)| format!("{m} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The runtimes offered, and the capabilities containers get when it grants any (ADR 0013).
fn runtimes(p: &ProviderView) -> String {
    let offered = p
        .profile
        .runtimes
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if p.profile.capabilities.is_none() {
        offered
    } else {
        format!(
            "{offered} (containers: {} capabilities)",
            p.profile.capabilities.as_str()
        )
    }
}

/// Its uptime under lease (`gpunet_ledger::uptime`) in a few words.
fn uptime(p: &ProviderView) -> String {
    let u = &p.uptime;
    match u.uptime_ppm {
        None => "no lease ended yet".to_owned(),
        Some(ppm) => ppm_percent(ppm),
    }
}

/// What a provider's status reads as in one word or two.
fn standing(p: &ProviderView, height: u64) -> String {
    let mut s = Vec::new();
    if p.uptime.silent_blocks > 0 {
        s.push(format!(
            "silent for {} blocks under lease",
            p.uptime.silent_blocks
        ));
    }
    if p.jailed_until_height > height {
        s.push(format!("jailed until {}", p.jailed_until_height));
    }
    if p.leaving {
        s.push("leaving".to_owned());
    }
    if !p.hardware.proven {
        s.push("hardware not proven".to_owned());
    }
    if s.is_empty() {
        "active".to_owned()
    } else {
        s.join(", ")
    }
}

pub(in crate::http) async fn list(
    State(app): State<App>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let Query(q) =
        q.map_err(|e| PageError::bad_request(format!("bad query: {}", e.body_text())))?;
    let after = after_param::<Address>(q.after.as_deref())?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let from = after.map_or(Unbounded, Excluded);
    let (providers, next) = pages::page(
        state.providers.range((from, Unbounded)).map(|(a, _)| *a),
        PAGE_ROWS,
        |a| {
            state
                .providers
                .get(&a)
                .map(|p| views::provider_view(state, p))
        },
    );
    let body = html! {
        p { (state.providers.len()) " providers registered, by address." }
        div #providers data-live {
            (table_box("Providers", &["Provider", "Region", "GPUs", "CPU", "Memory", "Runtimes", "Stake", "Leases live / done / failed", "Uptime under lease", "Reputation", "Standing"], html! {
                @for p in &providers {
                    tr {
                        td { (provider_link(&p.address)) }
                        td { (p.profile.region) }
                        td { (gpus_summary(p)) }
                        td { (cores(p.profile.capacity.cpu_millis)) }
                        td { (mib(p.profile.capacity.memory_mib)) }
                        td { (runtimes(p)) }
                        td { (money(p.stake, Denom::Gpn)) }
                        td.num { (p.live_leases.len()) " / " (p.leases_completed) " / " (p.leases_failed) }
                        td { (uptime(p)) }
                        td { (ppm_percent(p.reputation_ppm)) }
                        td { (standing(p, state.height)) }
                    }
                }
                @if providers.is_empty() {
                    tr { td colspan="11" { "No providers registered." } }
                }
            }))
            (next_link("/providers", next.as_deref()))
        }
    };
    Ok(Page::new(
        "Providers",
        Section::Providers,
        state.height,
        body,
    ))
}

/// Challenge events a provider's page shows, newest first.
const CHALLENGES_SHOWN: usize = 20;

fn challenge_table(events: &[ChallengeEvent]) -> Markup {
    table_box(
        "Hardware challenge history, newest first",
        &["Block", "Time", "Challenge", "What happened"],
        html! {
            @for e in events {
                tr {
                    td { (block_link(e.height)) }
                    td { (time(e.record.time_ms)) }
                    td.num { (e.record.challenge) }
                    td {
                        @match &e.record.step {
                            ChallengeStep::Issued { n, deadline_ms } => {
                                "issued: " (n) "×" (n) " matrices, commit by " (time(*deadline_ms))
                            }
                            ChallengeStep::Passed { next_height } => {
                                "passed; the next is due from block " (block_link(*next_height))
                            }
                            ChallengeStep::Failed { reason, slashed, jailed_until_height } => {
                                span.error { "failed" } ": " (reason) "; "
                                (money(*slashed, Denom::Gpn)) " slashed, jailed until block "
                                (jailed_until_height)
                            }
                        }
                    }
                }
            }
            @if events.is_empty() {
                tr { td colspan="4" { "No challenges yet." } }
            }
        },
    )
}

fn rates_table(p: &ProviderView) -> Markup {
    let r = &p.profile.rates;
    table_box(
        "Posted rates (what its bids may not exceed)",
        &["Resource", "Price"],
        html! {
            tr { td { "CPU core" } td { (per_hour(r.per_cpu_core_hour)) } }
            tr { td { "GiB of memory" } td { (per_hour(r.per_memory_gib_hour)) } }
            @for (model, price) in &r.per_gpu_hour {
                tr { td { "GPU " (model) } td { (per_hour(*price)) } }
            }
            tr { td { "Any other GPU" } td { (per_hour(r.default_per_gpu_hour)) } }
        },
    )
}

pub(in crate::http) async fn provider(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
) -> PageResult {
    let address = address_param(p)?;
    let tip = app.shared.tip();
    let state = &tip.state;
    let p = state
        .providers
        .get(&address)
        .map(|p| views::provider_view(state, p))
        .ok_or_else(|| {
            PageError::not_found(
                state.height,
                format!("no provider is registered at {address}"),
            )
            .with_hint(html! { p { "Its account may still exist: " (account_link(&address)) "." } })
        })?;
    // Its challenge history, as `GET /v1/providers/{address}/challenges` reads it.
    let history = crate::http::challenge_events(&app, address, CHALLENGES_SHOWN).await?;
    let cap = &p.profile.capacity;
    let h = &p.hardware;
    let body = html! {
        div #provider data-live {
            dl.facts {
                dt { "Address" } dd { code.hash { (p.address) } " · " (account_link(&p.address)) }
                dt { "Standing" } dd { (standing(&p, state.height)) }
                dt { "Region" } dd { (p.profile.region) }
                dt { "Agent endpoint" } dd { code { (p.profile.endpoint) } }
                dt { "Runtimes" } dd { (runtimes(&p)) }
                dt { "CPU" } dd { (cores(cap.cpu_millis)) " (" (cores(p.free_cpu_millis)) " free)" }
                dt { "Memory" } dd { (mib(cap.memory_mib)) " (" (mib(p.free_memory_mib)) " free)" }
                dt { "Disk" } dd { (mib(cap.disk_mib)) }
                dt { "GPUs" } dd { (gpus_summary(&p)) " (" (p.free_gpus) " free)" }
                dt { "Stake" } dd { (money(p.stake, Denom::Gpn)) }
                dt { "Slashed in all" } dd { (money(p.slashed, Denom::Gpn)) }
                dt { "Registered" } dd { "block " (block_link(p.registered_height)) }
                dt { "Last heartbeat" } dd { "block " (block_link(p.last_heartbeat_height)) }
                dt { "Leases" } dd { (p.live_leases.len()) " live, " (p.leases_completed) " completed, " (p.leases_failed) " failed" }
                dt { "Uptime under lease" }
                dd {
                    (uptime(&p))
                    @if p.uptime.uptime_ppm.is_some() {
                        ": of " (p.uptime.leased_blocks) " blocks its ended leases were held, "
                        (p.uptime.lost_blocks) " were lost to silence, in "
                        (p.uptime.outages) " lost leases"
                    }
                    @if p.uptime.silent_blocks > 0 {
                        "; silent for " (p.uptime.silent_blocks) " blocks now, with live leases"
                    }
                    ". Counted only while it holds leases: an idle agent sends no heartbeats."
                }
                dt { "Reputation" } dd { (ppm_percent(p.reputation_ppm)) " (50.0 % for a newcomer)" }
                dt { "Hardware challenges" }
                dd {
                    @if h.challenged { (h.passed) " passed, " (h.failed) " failed; " @if h.proven { "proven" } @else { "not proven: it may not bid" } }
                    @else { "its listing is not challenged (no throughput band covers it)" }
                    @if let Some(c) = &h.challenge {
                        "; challenge " (c.id) " in flight (" (c.n) "×" (c.n) ", issued at block " (block_link(c.issued_height)) ", commit by " (time(c.deadline_ms)) ")"
                    }
                }
                @if !p.verified_runs.is_empty() {
                    dt { "Verified runs" }
                    dd { @for (i, c) in p.verified_runs.iter().enumerate() {
                        @if i > 0 { ", " }
                        (c.class) ": " (c.runs) @if c.on_probation { " (on probation)" }
                    } }
                }
            }
            @if !cap.gpus.is_empty() {
                (table_box("GPUs", &["Slot", "Model", "Family", "Memory"], html! {
                    @for (i, g) in cap.gpus.iter().enumerate() {
                        tr { td.num { (i) } td { (g.model) } td { (g.family) } td { (mib(g.vram_mib)) } }
                    }
                }))
            }
            (rates_table(&p))
            (challenge_table(&history))
            p.note { "As JSON: " a href={ "/v1/providers/" (p.address) "/challenges" } { "/v1/providers/…/challenges" } "." }
            @if !p.live_leases.is_empty() {
                h2 { "Live leases" }
                ul.plain { @for l in &p.live_leases { li { (lease_link(*l)) } } }
            }
        }
    };
    Ok(Page::new(
        format!("Provider {}", super::short_address(&p.address)),
        Section::Providers,
        state.height,
        body,
    ))
}
