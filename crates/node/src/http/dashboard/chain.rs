//! The network overview (`/`), blocks (`/blocks/{height}`) and transactions (`/txs/{hash}`).

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use gpunet_api::node::TxState;
use gpunet_ledger::{LeaseStatus, State as LedgerState};
use gpunet_protocol::{Block, BlockOutcome, Denom, Hash};
use maud::{Markup, html};

use super::{
    Page, PageError, PageResult, Section, account_link, block_link, cores, mib, money, percent,
    table_box, time,
};
use crate::http::{ApiError, App, block_at, height_param, tx_hash_param, tx_view};

/// Blocks the overview lists.
const RECENT_BLOCKS: usize = 20;
/// Most providers and live leases the overview counts; past it the page says it stopped.
const MAX_COUNTED: usize = 10_000;

/// What the registered providers offer and hold, by region and by GPU model.
#[derive(Default)]
struct Census {
    providers: usize,
    /// Stopped counting at [`MAX_COUNTED`] providers.
    cut_short: bool,
    by_region: BTreeMap<String, RegionRow>,
    /// GPUs by model: (all, free).
    by_model: BTreeMap<String, (u64, u64)>,
    total: RegionRow,
}

#[derive(Default, Clone)]
struct RegionRow {
    providers: u64,
    gpus: u64,
    gpus_free: u64,
    cpu_millis: u64,
    cpu_free_millis: u64,
    memory_mib: u64,
    memory_free_mib: u64,
}

impl RegionRow {
    fn add(&mut self, other: &RegionRow) {
        self.providers += other.providers;
        self.gpus += other.gpus;
        self.gpus_free += other.gpus_free;
        self.cpu_millis += other.cpu_millis;
        self.cpu_free_millis += other.cpu_free_millis;
        self.memory_mib += other.memory_mib;
        self.memory_free_mib += other.memory_free_mib;
    }
}

impl Census {
    fn of(state: &LedgerState) -> Census {
        let mut c = Census::default();
        for (_, p) in state.providers.iter().take(MAX_COUNTED) {
            c.providers += 1;
            let cap = &p.profile.capacity;
            let free = state.provider_free(p);
            let row = RegionRow {
                providers: 1,
                gpus: cap.gpus.len() as u64,
                gpus_free: free.gpu_slots.len() as u64,
                cpu_millis: u64::from(cap.cpu_millis),
                cpu_free_millis: u64::from(free.cpu_millis),
                memory_mib: cap.memory_mib,
                memory_free_mib: free.memory_mib,
            };
            c.by_region
                .entry(p.profile.region.clone())
                .or_default()
                .add(&row);
            c.total.add(&row);
            for (i, gpu) in cap.gpus.iter().enumerate() {
                let entry = c.by_model.entry(gpu.model.clone()).or_default();
                entry.0 += 1;
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                if free.gpu_slots.contains(&index) {
                    entry.1 += 1;
                }
            }
        }
        c.cut_short = state.providers.len() > MAX_COUNTED;
        c
    }
}

/// Live leases by status: (pending, running, paused), and whether counting stopped early.
fn lease_counts(state: &LedgerState) -> ((u64, u64, u64), bool) {
    let mut counts = (0, 0, 0);
    for id in state.live_leases.iter().take(MAX_COUNTED) {
        match state.leases.get(id).map(|l| l.status) {
            Some(LeaseStatus::Pending) => counts.0 += 1,
            Some(LeaseStatus::Running) => counts.1 += 1,
            Some(LeaseStatus::Paused { .. }) => counts.2 += 1,
            Some(LeaseStatus::Ended { .. }) | None => {}
        }
    }
    (counts, state.live_leases.len() > MAX_COUNTED)
}

/// One row of the recent blocks.
struct BlockRow {
    height: u64,
    time_ms: u64,
    txs: usize,
    kinds: Vec<&'static str>,
}

/// The newest [`RECENT_BLOCKS`] blocks up to `tip_height`, newest first: read and decoded off
/// the async threads, as a block may be large and anyone may ask for the page.
async fn recent_blocks(app: &App, tip_height: u64) -> Result<Vec<BlockRow>, PageError> {
    let store = std::sync::Arc::clone(&app.shared.store);
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<BlockRow>, ApiError> {
        let from = tip_height.saturating_sub(RECENT_BLOCKS as u64 - 1).max(1);
        let blocks = store
            .blocks_range(from, RECENT_BLOCKS)
            .map_err(|e| ApiError::store("blocks", e))?;
        let mut rows = Vec::with_capacity(blocks.len());
        for (height, bytes) in blocks.into_iter().filter(|(h, _)| *h <= tip_height) {
            let b: Block = borsh::from_slice(&bytes).map_err(|e| ApiError::store("blocks", e))?;
            let mut kinds: Vec<&'static str> = b.txs.iter().map(|t| t.body.msg.kind()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            rows.push(BlockRow {
                height,
                time_ms: b.header.time_ms,
                txs: b.txs.len(),
                kinds,
            });
        }
        rows.reverse();
        Ok(rows)
    });
    Ok(read.await.map_err(|e| ApiError::store("blocks", e))??)
}

/// The mean time between the blocks of `rows` (newest first), in milliseconds; `None` with
/// fewer than two.
fn measured_block_ms(rows: &[BlockRow]) -> Option<u64> {
    let (newest, oldest) = (rows.first()?, rows.last()?);
    let blocks = newest
        .height
        .checked_sub(oldest.height)
        .filter(|&n| n > 0)?;
    Some(newest.time_ms.saturating_sub(oldest.time_ms) / blocks)
}

fn blocks_table(rows: &[BlockRow]) -> Markup {
    table_box(
        "Recent blocks, newest first",
        &["Height", "Time", "Transactions", "Kinds"],
        html! {
            @for r in rows {
                tr {
                    td { (block_link(r.height)) }
                    td { (time(r.time_ms)) }
                    td.num { (r.txs) }
                    td { (r.kinds.join(", ")) }
                }
            }
            @if rows.is_empty() {
                tr { td colspan="4" { "No blocks yet." } }
            }
        },
    )
}

/// `part` of `total` in millionths, 0 of nothing.
fn share_ppm(part: u64, total: u64) -> u64 {
    let ppm = u128::from(part) * 1_000_000 / u128::from(total.max(1));
    u64::try_from(ppm).unwrap_or(u64::MAX)
}

pub(in crate::http) async fn network(State(app): State<App>) -> PageResult {
    let tip = app.shared.tip();
    let state = &tip.state;
    let blocks = recent_blocks(&app, state.height).await?;
    let census = Census::of(state);
    let ((pending, running, paused), leases_cut) = lease_counts(state);
    let t = &census.total;
    let validators = app.shared.validators();
    let total_power = validators
        .iter()
        .fold(0u64, |sum, v| sum.saturating_add(v.voting_power));
    let body = html! {
        section aria-labelledby="chain-h" {
            h2 #chain-h { "Chain" }
            dl.facts #chain-facts data-live {
                dt { "Chain id" } dd { code { (state.chain_id) } }
                dt { "Height" } dd { (block_link(state.height)) }
                dt { "Last block" } dd { (time(state.time_ms)) }
                dt { "Block time" }
                dd {
                    @if let Some(ms) = measured_block_ms(&blocks) {
                        (ms) " ms over the last " (blocks.len()) " blocks; "
                    }
                    (app.shared.block_ms) " ms target"
                }
                dt { "Orderer" } dd { (app.shared.orderer) }
                dt { "Validators" }
                dd {
                    @if validators.is_empty() { "1: this node decides every block alone" }
                    @else { (validators.len()) ", " (total_power) " voting power in all (below)" }
                }
                dt { "State root" } dd { code.hash { (tip.state_root) } }
                dt { "Mempool" } dd { (app.shared.mempool().len()) " transactions waiting" }
                dt { "Supply" }
                dd {
                    (money(state.supply.minted.get(Denom::Usd)
                        .saturating_sub(state.supply.burned.get(Denom::Usd)), Denom::Usd))
                    ", "
                    (money(state.supply.minted.get(Denom::Gpn)
                        .saturating_sub(state.supply.burned.get(Denom::Gpn)), Denom::Gpn))
                }
            }
        }
        @if !validators.is_empty() {
            section aria-labelledby="val-h" {
                h2 #val-h { "Validators" }
                p.note { "A block is decided when validators holding more than two thirds of the voting power sign it." }
                (table_box("Validators, as the genesis names them", &["Name", "Consensus key address", "Voting power", "Share"], html! {
                    @for v in validators {
                        tr {
                            td { (v.name) @if v.this_node { " (this node)" } }
                            td { code.hash { (v.address) } }
                            td.num { (v.voting_power) }
                            td.num { (super::ppm_percent(share_ppm(v.voting_power, total_power))) }
                        }
                    }
                }))
            }
        }
        section aria-labelledby="use-h" {
            h2 #use-h { "Utilisation" }
            dl.facts #utilisation data-live {
                dt { "Leases" }
                dd { (running) " running, " (pending) " waiting to start, " (paused) " paused"
                     @if leases_cut { " (counted the first " (MAX_COUNTED) ")" } }
                dt { "GPUs leased" }
                dd { (t.gpus - t.gpus_free) " of " (t.gpus)
                     " (" (percent(t.gpus - t.gpus_free, t.gpus)) " %)" }
                dt { "CPU leased" }
                dd { (cores(u32::try_from(t.cpu_millis - t.cpu_free_millis).unwrap_or(u32::MAX)))
                     " of " (cores(u32::try_from(t.cpu_millis).unwrap_or(u32::MAX)))
                     " (" (percent(t.cpu_millis - t.cpu_free_millis, t.cpu_millis)) " %)" }
                dt { "Memory leased" }
                dd { (mib(t.memory_mib - t.memory_free_mib)) " of " (mib(t.memory_mib))
                     " (" (percent(t.memory_mib - t.memory_free_mib, t.memory_mib)) " %)" }
                dt { "Open orders" } dd { a href="/market" { (state.open_orders.len()) } }
            }
            p.note { "Capacity is what providers declared on chain; leased is what live leases hold of it." }
        }
        section aria-labelledby="blocks-h" {
            h2 #blocks-h { "Recent blocks" }
            div #recent-blocks data-live { (blocks_table(&blocks)) }
        }
        section aria-labelledby="prov-h" {
            h2 #prov-h { "Providers and GPUs" }
            div #census data-live {
                p { a href="/providers" { (census.providers) " providers" } " registered"
                    @if census.cut_short { " (the tables count the first " (MAX_COUNTED) ")" } "." }
                (table_box("By region", &["Region", "Providers", "GPUs", "GPUs free", "CPU", "Memory"], html! {
                    @for (region, r) in &census.by_region {
                        tr {
                            td { (region) }
                            td.num { (r.providers) }
                            td.num { (r.gpus) }
                            td.num { (r.gpus_free) }
                            td { (cores(u32::try_from(r.cpu_millis).unwrap_or(u32::MAX))) }
                            td { (mib(r.memory_mib)) }
                        }
                    }
                    @if census.by_region.is_empty() {
                        tr { td colspan="6" { "No providers registered." } }
                    }
                }))
                (table_box("GPUs by model", &["Model", "GPUs", "Free"], html! {
                    @for (model, (all, free)) in &census.by_model {
                        tr { td { (model) } td.num { (all) } td.num { (free) } }
                    }
                    @if census.by_model.is_empty() {
                        tr { td colspan="3" { "No GPUs offered." } }
                    }
                }))
            }
        }
    };
    Ok(Page::new("Network", Section::Network, state.height, body))
}

pub(in crate::http) async fn block(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
) -> PageResult {
    let height = height_param(p)?;
    let (b, view) = block_at(&app, height)?;
    let tip_height = app.shared.tip().state.height;
    let outcome: Option<BlockOutcome> = app
        .shared
        .store
        .receipts(height)
        .map_err(|e| ApiError::store("receipts", e))?
        .map(|bytes| borsh::from_slice(&bytes))
        .transpose()
        .map_err(|e| ApiError::store("receipts", e))?;
    let rejection = |i: usize| {
        outcome
            .as_ref()
            .and_then(|o| o.receipts.get(i))
            .and_then(|r| r.rejection)
    };
    let body = html! {
        nav.pager aria-label="Neighbouring blocks" {
            @if height > 1 { a href={ "/blocks/" (height - 1) } rel="prev" { "← " (height - 1) } }
            @if height < tip_height { a href={ "/blocks/" (height + 1) } rel="next" { (height + 1) " →" } }
        }
        dl.facts {
            dt { "Height" } dd { (height) }
            dt { "Time" } dd { (time(view.time_ms)) }
            dt { "Block hash" } dd { code.hash { (view.block_hash) } }
            dt { "Parent" } dd { code.hash { (b.header.prev_hash) } }
            dt { "State root after it" } dd { code.hash { (view.state_root) } }
            dt { "Transactions" } dd { (b.txs.len()) }
        }
        (table_box("Transactions, in order", &["#", "Hash", "Kind", "Signer", "Result"], html! {
            @for (i, tx) in b.txs.iter().enumerate() {
                @let hash = tx.hash();
                tr {
                    td.num { (i) }
                    td { a.hash href={ "/txs/" (hash) } { (short_hash(&hash)) } }
                    td { (tx.body.msg.kind()) }
                    td { (account_link(&tx.body.signer)) }
                    td {
                        @match rejection(i) {
                            None => { "applied" }
                            Some(r) => { "rejected: " (r.name()) }
                        }
                    }
                }
            }
            @if b.txs.is_empty() {
                tr { td colspan="5" { "No transactions in this block." } }
            }
        }))
        @if let Some(o) = &outcome {
            @if !o.end_block_events.is_empty() {
                h2 { "End-of-block events" }
                (events_list(&o.end_block_events))
            }
        }
    };
    Ok(Page::new(
        format!("Block {height}"),
        Section::Network,
        tip_height,
        body,
    ))
}

/// The first and last few hex digits of a hash.
fn short_hash(h: &Hash) -> String {
    let s = h.to_string();
    match (s.get(..10), s.get(s.len().saturating_sub(6)..)) {
        (Some(head), Some(tail)) if s.len() > 20 => format!("{head}…{tail}"),
        _ => s,
    }
}

/// Events as the API's JSON, one per line (escaped like everything else).
pub(super) fn events_list(events: &[gpunet_protocol::Event]) -> Markup {
    html! {
        ol.events {
            @for e in events {
                li { code { (serde_json::to_string(e).unwrap_or_else(|_| format!("{e:?}"))) } }
            }
        }
    }
}

pub(in crate::http) async fn tx(
    State(app): State<App>,
    p: Result<Path<String>, PathRejection>,
) -> PageResult {
    let raw = super::path_text(p)?;
    let hash = tx_hash_param(&raw)?;
    let view = tx_view(&app, hash)?;
    if view.state == TxState::Unknown {
        return Err(PageError::not_found(
            view.height,
            format!("this node knows no transaction {hash}: not in its mempool, not in a block"),
        ));
    }
    let body_tx = match view.block_height {
        Some(h) => {
            let (b, _) = block_at(&app, h)?;
            b.txs.into_iter().find(|t| t.hash() == hash)
        }
        None => None,
    };
    let state = match view.state {
        TxState::Pending => "pending: waiting in this node's mempool",
        TxState::Applied => "applied",
        TxState::Rejected => "rejected: it changed nothing",
        TxState::Unknown => "unknown",
    };
    let body = html! {
        dl.facts {
            dt { "Hash" } dd { code.hash { (hash) } }
            dt { "State" } dd { (state) }
            @if let Some(h) = view.block_height { dt { "Block" } dd { (block_link(h)) } }
            @if let Some(r) = view.rejection {
                dt { "Rejection" } dd { code { (r.name()) } " (code " (r.code()) "): " (r.message()) }
            }
            @if let Some(t) = &body_tx {
                dt { "Kind" } dd { (t.body.msg.kind()) }
                dt { "Signer" } dd { (account_link(&t.body.signer)) }
                dt { "Nonce" } dd { (t.body.nonce) }
                dt { "Fee" } dd { (money(t.body.fee, Denom::Gpn)) }
            }
        }
        @if let Some(t) = &body_tx {
            h2 { "Message" }
            pre.json { (serde_json::to_string_pretty(&t.body.msg).unwrap_or_else(|_| format!("{:?}", t.body.msg))) }
        }
        @if !view.events.is_empty() {
            h2 { "Events" }
            (events_list(&view.events))
        }
    };
    Ok(Page::new(
        "Transaction",
        Section::Network,
        view.height,
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(height: u64, time_ms: u64) -> BlockRow {
        BlockRow {
            height,
            time_ms,
            txs: 0,
            kinds: Vec::new(),
        }
    }

    #[test]
    fn the_measured_block_time_is_the_mean_gap_between_the_blocks_shown() {
        // Newest first; a gap in heights (a block not shown) still counts as its blocks.
        let rows = [row(10, 5_000), row(9, 4_400), row(6, 2_000)];
        assert_eq!(measured_block_ms(&rows), Some(750));
        assert_eq!(measured_block_ms(&rows[..1]), None);
        assert_eq!(measured_block_ms(&[]), None);
    }

    #[test]
    fn a_validators_share_of_the_voting_power_is_in_millionths() {
        assert_eq!(share_ppm(1, 4), 250_000);
        assert_eq!(share_ppm(2, 3), 666_666);
        assert_eq!(share_ppm(u64::MAX, u64::MAX), 1_000_000);
        assert_eq!(share_ppm(0, 0), 0);
    }
}
