//! `gpunet bench ingress`: what the agent's ingress reverse proxy adds to an HTTP service,
//! measured beside a direct connection in one run.
//!
//! Two setups, measured by the same code ([`run`] with a [`Setup`]):
//!
//! - [`Setup::InProcess`]: one process holds all three parts, on loopback: the service
//!   ([`serve_upstream`], which answers each request after `service_ms`, like a service doing
//!   work), the agent's real proxy (`gpunet_agent::ingress::router` with one route to the
//!   service), and the clients (keep-alive connections that name the route in `Host`, as a
//!   wildcard DNS record would send them to the proxy). With `service_ms` 0 the figures are raw
//!   forwarding on this machine's cores, where the proxy competes with the clients and the
//!   service for the same CPUs: a lower bound.
//! - [`Setup::External`]: a service and a provider's proxy already running elsewhere, e.g.
//!   `gpunet bench upstream` as a container job in the cluster: the clients reach the service at
//!   its published port, and the provider's ingress with the route's name in `Host`.
//!
//! Phases alternate — direct, proxied, direct, proxied — and each figure is the better of its
//! two phases, so a slow moment of the machine does not land on one side only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get;

/// The route's name under the bench's domain.
const DOMAIN: &str = "bench.gpunet.test";
/// Requests timed one after another, per phase, for the latency figures.
const LATENCY_SAMPLES: usize = 1000;

/// How hard and how long to measure.
#[derive(Debug, Clone, Copy)]
pub struct IngressBench {
    /// Keep-alive connections sending requests at once during the throughput phases.
    pub connections: usize,
    /// How long each throughput phase lasts.
    pub phase: Duration,
}

/// Where the service and the proxy in front of it are.
#[derive(Debug, Clone)]
pub enum Setup {
    /// Both started here, on loopback, the service answering after `service_ms`.
    InProcess { service_ms: u64 },
    /// Both already running elsewhere.
    External(Endpoints),
}

/// A running service and a proxy that routes a name to it.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The service itself, e.g. its published port: `http://HOST:PORT`.
    pub direct: String,
    /// The proxy: `http://HOST:PORT`, asked with `Host: host`.
    pub proxied: String,
    /// The name the proxy routes to the service, e.g. `7-8080.apps.cluster`.
    pub host: String,
}

/// What was measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngressFigures {
    pub direct_rps: f64,
    pub proxied_rps: f64,
    /// Median of one request at a time, each way.
    pub direct_ms_p50: f64,
    pub proxied_ms_p50: f64,
    /// Requests that failed in all phases (any non-2xx or connection error).
    pub errors: u64,
}

impl IngressFigures {
    /// `proxied_ms_p50 - direct_ms_p50`.
    pub fn added_ms_p50(&self) -> f64 {
        self.proxied_ms_p50 - self.direct_ms_p50
    }

    /// `proxied_rps / direct_rps`.
    pub fn throughput_ratio(&self) -> f64 {
        if self.direct_rps > 0.0 {
            self.proxied_rps / self.direct_rps
        } else {
            0.0
        }
    }
}

/// The bench's HTTP service: `GET /` answers `ok` after `service_ms`; `GET /headers` answers
/// the request's headers, one `name: value` per line (what a proxy in front changed). With a
/// `backend` (`HOST:PORT`, e.g. another service of the job by name), `GET /backend/<path>`
/// asks it for `/<path>` and answers `backend <status>: <its body>`, or 502 naming why not.
pub fn upstream(service_ms: u64, backend: Option<String>) -> Router {
    let delay = Duration::from_millis(service_ms);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let relay = move |axum::extract::Path(path): axum::extract::Path<String>| {
        let (client, backend) = (client.clone(), backend.clone());
        async move {
            let Some(backend) = backend else {
                return (StatusCode::NOT_FOUND, "no --backend\n".to_owned());
            };
            match client.get(format!("http://{backend}/{path}")).send().await {
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let body = answer.text().await.unwrap_or_default();
                    (StatusCode::OK, format!("backend {status}: {body}"))
                }
                Err(e) => (StatusCode::BAD_GATEWAY, format!("backend {backend}: {e}\n")),
            }
        }
    };
    Router::new()
        .route("/backend/{*path}", get(relay))
        .route(
            "/",
            get(move || async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                "ok\n"
            }),
        )
        .route(
            "/headers",
            get(|headers: HeaderMap| async move {
                let mut out = String::new();
                for (name, value) in &headers {
                    out.push_str(&format!(
                        "{name}: {}\n",
                        String::from_utf8_lossy(value.as_bytes())
                    ));
                }
                out
            }),
        )
}

/// Serves [`upstream`] on `listener` until the process ends.
pub async fn serve_upstream(
    listener: tokio::net::TcpListener,
    service_ms: u64,
    backend: Option<String>,
) -> Result<()> {
    axum::serve(listener, upstream(service_ms, backend))
        .await
        .context("serving")
}

/// Runs the bench: starts what `setup` says is not running yet, checks that both ways answer,
/// then measures them.
pub async fn run(bench: IngressBench, setup: &Setup) -> Result<IngressFigures> {
    let (direct, proxied) = match setup {
        Setup::InProcess { service_ms } => {
            let (direct, proxy, name) = start_in_process(*service_ms).await?;
            (
                Target::new(&format!("http://{direct}/"), None, bench.connections)?,
                Target::new(&format!("http://{proxy}/"), Some(&name), bench.connections)?,
            )
        }
        Setup::External(at) => (
            Target::new(&at.direct, None, bench.connections).context("--direct")?,
            Target::new(&at.proxied, Some(&at.host), bench.connections).context("--proxied")?,
        ),
    };
    // Both answer before anything is timed, or the error says which and what to check.
    if let Err(e) = direct.once().await {
        anyhow::bail!(
            "the service at {} (direct) failed: {e:#}; is it running, and is this its \
             published port? (`gpunet job status ID` prints it as the job's first endpoint)",
            direct.url
        );
    }
    if let Err(e) = proxied.once().await {
        anyhow::bail!(
            "the proxy at {} (proxied, Host: {}) failed: {e:#}; is this the provider's \
             ingress (`--ingress-listen`), and the name one `gpunet job status ID` prints?",
            proxied.url,
            proxied
                .host
                .as_ref()
                .map_or("", |h| h.to_str().unwrap_or("?"))
        );
    }
    Ok(measure(bench, &direct, &proxied).await)
}

/// The service and the agent's proxy with one route to it, on loopback: the service's
/// address, the proxy's, and the route's name.
async fn start_in_process(service_ms: u64) -> Result<(SocketAddr, SocketAddr, String)> {
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let service_addr = service.local_addr()?;
    tokio::spawn(serve_upstream(service, service_ms, None));

    let routes = gpunet_agent::ingress::Routes::new();
    let lease = gpunet_protocol::LeaseId(1);
    routes.add(lease, 8080, service_addr);
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = proxy.local_addr()?;
    let app = gpunet_agent::ingress::router(routes, DOMAIN)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(proxy, app).await });
    let name = format!(
        "{}.{DOMAIN}",
        gpunet_agent::ingress::route_name(lease, 8080)
    );
    Ok((service_addr, proxy_addr, name))
}

/// Alternating phases, direct then proxied, twice; each figure the better of its two.
async fn measure(bench: IngressBench, direct: &Target, proxied: &Target) -> IngressFigures {
    let mut figures = IngressFigures::default();
    let (mut direct_rps, mut proxied_rps) = (Vec::new(), Vec::new());
    let (mut direct_ms, mut proxied_ms) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        for (target, rps, ms) in [
            (direct, &mut direct_rps, &mut direct_ms),
            (proxied, &mut proxied_rps, &mut proxied_ms),
        ] {
            let (count, errors) = target.throughput(bench.connections, bench.phase).await;
            rps.push(count as f64 / bench.phase.as_secs_f64());
            figures.errors += errors;
            let (mut latencies, errors) = target.latencies(LATENCY_SAMPLES).await;
            figures.errors += errors;
            latencies.sort_unstable();
            ms.push(crate::figures::percentile(&latencies, 50) as f64 / 1000.0);
        }
    }
    figures.direct_rps = best(&direct_rps, true);
    figures.proxied_rps = best(&proxied_rps, true);
    figures.direct_ms_p50 = best(&direct_ms, false);
    figures.proxied_ms_p50 = best(&proxied_ms, false);
    figures
}

/// The better of two phases' figures: the higher rate or the lower latency.
fn best(values: &[f64], higher: bool) -> f64 {
    let pick = |a: f64, b: f64| if higher { a.max(b) } else { a.min(b) };
    values.iter().copied().reduce(pick).unwrap_or(0.0)
}

/// Longest a failed answer's body is quoted in an error.
const QUOTED_BODY_CHARS: usize = 200;

/// One way to the service: a URL, and the name to send as `Host` (a proxy's route).
#[derive(Clone)]
struct Target {
    url: reqwest::Url,
    host: Option<HeaderValue>,
    client: reqwest::Client,
}

impl Target {
    fn new(url: &str, host: Option<&str>, pool: usize) -> Result<Self> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|u| u.scheme() == "http" && u.host_str().is_some())
            .with_context(|| format!("{url:?} is not an http://HOST:PORT URL"))?;
        let host = host
            .map(|h| {
                HeaderValue::from_str(h)
                    .ok()
                    .filter(|_| !h.is_empty() && !h.contains(['/', ' ']))
                    .with_context(|| format!("{h:?} is not a host name"))
            })
            .transpose()?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()?;
        Ok(Self { url, host, client })
    }

    fn get(&self) -> reqwest::RequestBuilder {
        let request = self.client.get(self.url.clone());
        match &self.host {
            Some(host) => request.header(header::HOST, host.clone()),
            None => request,
        }
    }

    /// One request, read to its end; an error quotes the start of a failed answer's body.
    async fn once(&self) -> Result<()> {
        let response = self.get().send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&body);
            let quoted: String = body.trim().chars().take(QUOTED_BODY_CHARS).collect();
            anyhow::bail!("answered {status}: {quoted}");
        }
        Ok(())
    }

    /// Requests answered, and failed, by `connections` loops over `phase`.
    async fn throughput(&self, connections: usize, phase: Duration) -> (u64, u64) {
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..connections.max(1) {
            let target = self.clone();
            let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
            loops.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = match target.get().send().await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        tokio::time::sleep(phase).await;
        stop.store(true, Ordering::Relaxed);
        while loops.join_next().await.is_some() {}
        (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
    }

    /// Microseconds of `n` requests, one at a time, and how many failed.
    async fn latencies(&self, n: usize) -> (Vec<u64>, u64) {
        let mut out = Vec::with_capacity(n);
        let mut failed = 0;
        for _ in 0..n {
            let started = Instant::now();
            match self.once().await {
                Ok(()) => {
                    out.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))
                }
                Err(_) => failed += 1,
            }
        }
        (out, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: IngressBench = IngressBench {
        connections: 2,
        phase: Duration::from_millis(200),
    };

    /// Both ways answered, nothing failed, and the figures are filled. (How fast is for the
    /// bench itself, not for a test.)
    fn assert_measured(figures: &IngressFigures) {
        assert_eq!(figures.errors, 0, "{figures:?}");
        assert!(
            figures.direct_rps > 0.0 && figures.proxied_rps > 0.0,
            "{figures:?}"
        );
        assert!(
            figures.direct_ms_p50 > 0.0 && figures.proxied_ms_p50 > 0.0,
            "{figures:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_run_in_process_measures_both_ways_without_errors() {
        let figures = run(SHORT, &Setup::InProcess { service_ms: 0 })
            .await
            .expect("runs");
        assert_measured(&figures);
    }

    /// The external mode, against a service and the agent's proxy started apart from it: the
    /// proxy is reached by address, and routes by the name in `Host`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_run_against_running_endpoints_measures_both_ways_without_errors() {
        let (service, proxy, name) = start_in_process(0).await.expect("starts");
        let at = Endpoints {
            direct: format!("http://{service}"),
            proxied: format!("http://{proxy}"),
            host: name,
        };
        let figures = run(SHORT, &Setup::External(at)).await.expect("runs");
        assert_measured(&figures);
    }

    /// Runs against `direct`, `proxied` and `host`, which must fail with all of `expected`.
    async fn check_refused(direct: String, proxied: String, host: &str, expected: &[&str]) {
        let at = Endpoints {
            direct,
            proxied,
            host: host.to_owned(),
        };
        let e = run(SHORT, &Setup::External(at)).await.expect_err("refused");
        let e = format!("{e:#}");
        for part in expected {
            assert!(e.contains(part), "{part:?} not in: {e}");
        }
    }

    /// An endpoint that does not answer, or a name the proxy has no route for, stops the run
    /// before anything is timed, with the endpoint and what to check in the error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoint_that_does_not_answer_is_named() {
        let (service, proxy, name) = start_in_process(0).await.expect("starts");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
            l.local_addr().expect("addr")
        };
        check_refused(
            format!("http://{closed}"),
            format!("http://{proxy}"),
            &name,
            &[
                &format!("the service at http://{closed}/ (direct)"),
                "job status",
            ],
        )
        .await;
        check_refused(
            format!("http://{service}"),
            format!("http://{proxy}"),
            "9-8080.bench.gpunet.test",
            &[
                &format!("the proxy at http://{proxy}/ (proxied, Host: 9-8080.bench.gpunet.test)"),
                "answered 404 Not Found: gpunet ingress: no service is published at 9-8080.bench.gpunet.test",
            ],
        )
        .await;
        check_refused(
            format!("http://{service}"),
            "provider-0:8080".to_owned(),
            &name,
            &["--proxied", "is not an http://HOST:PORT URL"],
        )
        .await;
    }
}
