//! The node's web dashboard: HTML pages of the network, the market, providers, jobs, leases,
//! accounts, blocks and transactions, served by the node itself beside its API.
//!
//! Pages are rendered on the server with `maud` (templates compiled with the code; every
//! interpolated value is HTML-escaped unless wrapped in `PreEscaped`, which no chain data ever
//! is) from the same tip and the same view-building functions as the `/v1/...` handlers, so a
//! page and the JSON it mirrors cannot disagree. They read fully without JavaScript. One small
//! script (`/assets/live.js`) follows `/v1/events` and, when blocks carry events, fetches the
//! same page again and swaps in its `data-live` regions; one stylesheet
//! (`/assets/dashboard.css`) lays them out from phone width up. Every page answers with a
//! Content-Security-Policy that allows only this origin's script and style, so even a value
//! that slipped past escaping could not run.
//!
//! Errors are pages too: a malformed id is a 400 page saying what form is expected, an unknown
//! one a 404 page, never a 500 (a store failure is a 500 page naming the store).

mod accounts;
mod chain;
mod market;
mod prices;
mod providers;
mod search;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gpunet_protocol::{Address, Amount, Denom, LeaseId, OrderId, Resources};
use maud::{DOCTYPE, Markup, html};

use super::{ApiError, App, height_header};

/// Most rows a dashboard table shows before it offers the next page.
const PAGE_ROWS: usize = 50;

const CSS: &str = include_str!("dashboard.css");
const LIVE_JS: &str = include_str!("live.js");

/// Only this origin's script and style, no framing, no plugins: escaping is the first line,
/// this is the second.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The dashboard's routes, merged into the API router.
pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/", get(chain::network))
        .route("/blocks/{height}", get(chain::block))
        .route("/txs/{hash}", get(chain::tx))
        .route("/market", get(market::market))
        .route("/jobs", get(market::jobs))
        .route("/jobs/{id}", get(market::job))
        .route("/leases/{id}", get(market::lease))
        .route("/providers", get(providers::list))
        .route("/providers/{address}", get(providers::provider))
        .route("/accounts/{address}", get(accounts::account))
        .route("/search", get(search::search))
        .route("/assets/dashboard.css", get(css))
        .route("/assets/live.js", get(live_js))
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn live_js() -> Response {
    asset("text/javascript; charset=utf-8", LIVE_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("max-age=300")),
        ],
        body,
    )
        .into_response()
}

/// Which section of the navigation a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Network,
    Market,
    Providers,
    Jobs,
    None,
}

/// A rendered page: its title, section, the height it reflects and its body.
struct Page {
    title: String,
    section: Section,
    height: Option<u64>,
    body: Markup,
}

impl Page {
    fn new(title: impl Into<String>, section: Section, height: u64, body: Markup) -> Page {
        Page {
            title: title.into(),
            section,
            height: Some(height),
            body,
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        html_response(StatusCode::OK, self.height, layout(&self))
    }
}

fn html_response(status: StatusCode, height: Option<u64>, markup: Markup) -> Response {
    let mut r = (status, markup.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CSP),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if let Some(height) = height {
        h.insert(height_header(), HeaderValue::from(height));
    }
    r
}

fn layout(page: &Page) -> Markup {
    let nav = [
        (Section::Network, "/", "Network"),
        (Section::Market, "/market", "Market"),
        (Section::Providers, "/providers", "Providers"),
        (Section::Jobs, "/jobs", "Jobs"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (page.title) " · gpunet" }
                // No icon: without this the browser asks for /favicon.ico, a 404.
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/dashboard.css";
                script src="/assets/live.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "gpunet" }
                    nav aria-label="Sections" {
                        ul {
                            @for (section, href, label) in nav {
                                li {
                                    @if section == page.section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form.search role="search" action="/search" method="get" {
                        label for="q" { "Search" }
                        input #q type="search" name="q" required
                            placeholder="address, job, lease, block or tx hash";
                        button type="submit" { "Go" }
                    }
                }
                main #main {
                    h1 { (page.title) }
                    (page.body)
                }
                footer {
                    @if let Some(h) = page.height {
                        p #live-status data-live {
                            "As of height " span #live-height { (h) } ". "
                            "Data from this node's API: "
                            a href="/v1/status" { "/v1/status" } ", "
                            a href="/openapi.json" { "/openapi.json" } "."
                        }
                    }
                }
            }
        }
    }
}

/// An error page: 400 for input that is not any id of the kind asked for, 404 for an id
/// nobody has, 500 only when the node cannot read its own store.
#[derive(Debug)]
pub(super) struct PageError {
    status: StatusCode,
    height: Option<u64>,
    message: String,
    /// What the reader may try instead.
    hint: Option<Markup>,
}

impl PageError {
    fn bad_request(message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            height: None,
            message: message.into(),
            hint: None,
        }
    }

    fn not_found(height: u64, message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            height: Some(height),
            message: message.into(),
            hint: None,
        }
    }

    fn with_hint(mut self, hint: Markup) -> PageError {
        self.hint = Some(hint);
        self
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError {
            status: e.status,
            height: e.height,
            message: e.body.message,
            hint: None,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::BAD_REQUEST => "Not a valid request",
            StatusCode::NOT_FOUND => "Not found",
            _ => "The node cannot answer",
        };
        let page = Page {
            title: title.to_owned(),
            section: Section::None,
            height: self.height,
            body: html! {
                p.error { (self.message) }
                @if let Some(hint) = &self.hint { (hint) }
                p { a href="/" { "Back to the network overview" } }
            },
        };
        html_response(self.status, self.height, layout(&page))
    }
}

type PageResult = Result<Page, PageError>;

/// A path parameter that did not even reach our parser (bad UTF-8, say).
fn path_text(
    p: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, PageError> {
    p.map(|axum::extract::Path(s)| s)
        .map_err(|e| PageError::bad_request(format!("bad path parameter: {e}")))
}

// --- Formatting -------------------------------------------------------------------------------

/// An amount with its denomination: `2.50 USD`.
fn money(amount: Amount, denom: Denom) -> Markup {
    html! { span.amount { (amount) " " (denom.as_str().to_uppercase()) } }
}

/// A price per hour, in usd: `2.50 USD/h`.
fn per_hour(amount: Amount) -> Markup {
    html! { span.amount { (amount) " USD/h" } }
}

/// `gpn1abcdef…uvwxyz`, with the whole address in the title.
fn short_address(a: &Address) -> String {
    let s = a.to_string();
    match (s.get(..10), s.get(s.len().saturating_sub(6)..)) {
        (Some(head), Some(tail)) if s.len() > 20 => format!("{head}…{tail}"),
        _ => s,
    }
}

fn account_link(a: &Address) -> Markup {
    html! { a.addr href={ "/accounts/" (a) } title=(a) { (short_address(a)) } }
}

fn provider_link(a: &Address) -> Markup {
    html! { a.addr href={ "/providers/" (a) } title=(a) { (short_address(a)) } }
}

fn job_link(id: OrderId) -> Markup {
    html! { a href={ "/jobs/" (id.0) } { "job " (id.0) } }
}

fn lease_link(id: LeaseId) -> Markup {
    html! { a href={ "/leases/" (id.0) } { "lease " (id.0) } }
}

fn block_link(height: u64) -> Markup {
    html! { a href={ "/blocks/" (height) } { (height) } }
}

/// A block time, as UTC: `2024-05-01 12:00:00 UTC`; `—` for 0 (never).
fn time(ms: u64) -> String {
    if ms == 0 {
        return "—".to_owned();
    }
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A duration in seconds, in the largest whole units that say it: `1 h 30 min`.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "min"), (s, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    if parts.is_empty() {
        "0 s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Thousandths of a core as cores: `1.5 cores`.
fn cores(cpu_millis: u32) -> String {
    let whole = cpu_millis / 1000;
    match cpu_millis % 1000 {
        0 if whole == 1 => "1 core".to_owned(),
        0 => format!("{whole} cores"),
        frac => format!(
            "{whole}.{} cores",
            format!("{frac:03}").trim_end_matches('0')
        ),
    }
}

/// MiB in the unit that reads best: `512 MiB`, `8 GiB`, `1.5 TiB`.
fn mib(n: u64) -> String {
    const GIB: u64 = 1024;
    const TIB: u64 = 1024 * 1024;
    let scaled = |n: u64, unit: u64, name: &str| {
        let tenths = n * 10 / unit;
        if tenths.is_multiple_of(10) {
            format!("{} {name}", tenths / 10)
        } else {
            format!("{}.{} {name}", tenths / 10, tenths % 10)
        }
    };
    if n >= TIB {
        scaled(n, TIB, "TiB")
    } else if n >= GIB {
        scaled(n, GIB, "GiB")
    } else {
        format!("{n} MiB")
    }
}

/// What a job asks for, in one line.
fn resources(r: &Resources) -> String {
    let mut s = format!("{}, {} memory", cores(r.cpu_millis), mib(r.memory_mib));
    if r.disk_mib > 0 {
        s.push_str(&format!(", {} disk", mib(r.disk_mib)));
    }
    if r.gpu.count > 0 {
        let models = if r.gpu.models.is_empty() {
            "any model".to_owned()
        } else {
            r.gpu.models.join(" or ")
        };
        s.push_str(&format!(", {} × GPU ({models})", r.gpu.count));
    }
    s
}

/// Millionths as a percentage with one decimal: `50.0 %`.
fn ppm_percent(ppm: u64) -> String {
    format!("{}.{} %", ppm / 10_000, ppm % 10_000 / 1000)
}

/// `used / total` as a whole percentage, 0 of nothing.
fn percent(used: u64, total: u64) -> u64 {
    (used.saturating_mul(100))
        .checked_div(total)
        .unwrap_or_default()
}

/// A table inside a scroll box, so a wide table scrolls on a phone instead of the page.
fn table_box(caption: &str, head: &[&str], rows: Markup) -> Markup {
    html! {
        div.table-box role="region" aria-label=(caption) tabindex="0" {
            table {
                caption { (caption) }
                thead { tr { @for h in head { th scope="col" { (h) } } } }
                tbody { (rows) }
            }
        }
    }
}

/// A link to the next page of a list, keeping the other query parameters.
fn next_link(base: &str, next: Option<&str>) -> Markup {
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        @if let Some(next) = next {
            p.more { a href={ (base) (sep) "after=" (next) } rel="next" { "Older →" } }
        }
    }
}

/// A page parameter (`after=`) of a dashboard list.
fn after_param<K: super::pages::CursorKey>(after: Option<&str>) -> Result<Option<K>, PageError> {
    super::pages::parse_after::<K>(after).map_err(PageError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_durations_and_sizes_read_as_people_write_them() {
        assert_eq!(time(0), "—");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(duration(5400), "1 h 30 min");
        assert_eq!(duration(0), "0 s");
        assert_eq!(cores(1500), "1.5 cores");
        assert_eq!(cores(4000), "4 cores");
        assert_eq!(cores(1000), "1 core");
        assert_eq!(cores(250), "0.25 cores");
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(8192), "8 GiB");
        assert_eq!(mib(1536), "1.5 GiB");
        assert_eq!(ppm_percent(500_000), "50.0 %");
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(1, 0), 0);
    }

    #[test]
    fn chain_text_is_escaped_in_every_page() {
        let hostile = "<script>alert(1)</script>";
        let page = Page::new(hostile, Section::None, 1, html! { p { (hostile) } });
        let text = layout(&page).into_string();
        assert!(!text.contains(hostile), "{text}");
        assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
