//! `gpunet bench ingress`: what the agent's ingress reverse proxy adds to an HTTP service,
//! measured beside a direct connection in one run.
//!
//! One process holds all three parts, on loopback: the service ([`serve_upstream`], which
//! answers each request after `service_ms`, like a service doing work), the agent's real
//! proxy (`gpunet_agent::ingress::router` with one route to the service), and the clients
//! (keep-alive connections that resolve the route's name to the proxy, as a wildcard DNS
//! record would). Phases alternate — direct, proxied, direct, proxied — and each figure is
//! the better of its two phases, so a slow moment of the machine does not land on one side only.
//!
//! With `service_ms` 0 the figures are raw forwarding on this machine's cores, where the
//! proxy competes with the clients and the service for the same CPUs: a lower bound.
//! `gpunet bench upstream` runs the same service on its own, e.g. as a container job.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;

/// The route's name under the bench's domain.
const DOMAIN: &str = "bench.gpunet.test";
/// Requests timed one after another, per phase, for the latency figures.
const LATENCY_SAMPLES: usize = 1000;

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct IngressBench {
    /// Keep-alive connections sending requests at once during the throughput phases.
    pub connections: usize,
    /// How long each throughput phase lasts.
    pub phase: Duration,
    /// How long the service takes for each answer.
    pub service_ms: u64,
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

/// Runs the bench.
pub async fn run(bench: IngressBench) -> Result<IngressFigures> {
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let service_addr = service.local_addr()?;
    tokio::spawn(serve_upstream(service, bench.service_ms, None));

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
    let direct = Target::new(format!("http://{service_addr}/"), None, bench.connections)?;
    let proxied = Target::new(
        format!("http://{name}:{}/", proxy_addr.port()),
        Some((name, proxy_addr)),
        bench.connections,
    )?;
    // Both answer before anything is timed.
    for target in [&direct, &proxied] {
        target
            .once()
            .await
            .with_context(|| format!("the first request to {} failed", target.url))?;
    }

    let mut figures = IngressFigures::default();
    let (mut direct_rps, mut proxied_rps) = (Vec::new(), Vec::new());
    let (mut direct_ms, mut proxied_ms) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        for (target, rps, ms) in [
            (&direct, &mut direct_rps, &mut direct_ms),
            (&proxied, &mut proxied_rps, &mut proxied_ms),
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
    Ok(figures)
}

/// The better of two phases' figures: the higher rate or the lower latency.
fn best(values: &[f64], higher: bool) -> f64 {
    let pick = |a: f64, b: f64| if higher { a.max(b) } else { a.min(b) };
    values.iter().copied().reduce(pick).unwrap_or(0.0)
}

/// One way to the service.
struct Target {
    url: String,
    client: reqwest::Client,
}

impl Target {
    fn new(url: String, resolve: Option<(String, SocketAddr)>, pool: usize) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .timeout(Duration::from_secs(10))
            .no_proxy();
        if let Some((name, addr)) = resolve {
            builder = builder.resolve(&name, addr);
        }
        Ok(Self {
            url,
            client: builder.build()?,
        })
    }

    async fn once(&self) -> Result<()> {
        let response = self.client.get(&self.url).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "answered {}",
            response.status()
        );
        response.bytes().await?;
        Ok(())
    }

    /// Requests answered, and failed, by `connections` loops over `phase`.
    async fn throughput(&self, connections: usize, phase: Duration) -> (u64, u64) {
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..connections.max(1) {
            let (client, url) = (self.client.clone(), self.url.clone());
            let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
            loops.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = match client.get(&url).send().await {
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

    /// A short run on loopback: both ways answer, nothing fails, and the figures are filled.
    /// (How fast is for the bench itself, not for a test.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_run_measures_both_ways_without_errors() {
        let figures = run(IngressBench {
            connections: 2,
            phase: Duration::from_millis(200),
            service_ms: 0,
        })
        .await
        .expect("runs");
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
}
