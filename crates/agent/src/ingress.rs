//! Public ingress: where the services this provider runs are reached from outside.
//!
//! Without an [`IngressConfig`] a service's exposed ports are published on the provider's
//! loopback and only its own machine reaches them (`gpunet dev`). With one
//! (`gpunet provider start --public-address HOST`), the Docker driver publishes them on the
//! operator's bind address in the operator's port range (`gpunet_runtime::Publish`) and each
//! is recorded as `<proto>://HOST:<port>`. With a wildcard domain as well (`--ingress-domain
//! DOMAIN`, `*.DOMAIN` pointing at this machine), every `http` port is also served by the
//! reverse proxy here under `http://<lease>-<port>.DOMAIN`, the route chosen by the request's
//! `Host` alone.
//!
//! What a hostile party can do with it, and what stops it:
//! - A client naming another host or an absolute URI (`GET http://10.0.0.1/`) cannot make the
//!   proxy an open one: the upstream is only ever a route this agent registered for a running
//!   lease's published port; an unknown name gets 404 and no connection is made.
//! - A client cannot reach what the spec did not expose: only exposed ports are published or
//!   routed, and the container's other ports stay on [`gpunet_runtime::LEASE_NETWORK`], where
//!   other leases cannot reach them either.
//! - A slow or hostile service holds only its own requests: each waits at most
//!   [`UPSTREAM_TIMEOUT`] for its answer's head, and a request looping back through this proxy
//!   is answered `508` (the `Via` pseudonym).
//! - Routes go when the lease's workload ends, so a name never outlives its lease.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_reverse_proxy::{HostBehaviour, ProxyPolicy, ReverseProxy, XForwardedFor};
use gpunet_api::provider::ServiceEndpoint;
use gpunet_protocol::LeaseId;
use gpunet_protocol::jobspec::{Expose, ExposeProto};
use gpunet_runtime::PublishedPort;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long the proxy waits for a service's answer to begin before it answers `504`.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// The proxy's name in `Via` headers; a request already carrying it is a loop.
pub const VIA_PSEUDONYM: &str = "gpunet-ingress";
/// The port the proxy listens on unless told otherwise (`--ingress-listen`).
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:80";

/// Where this provider's services are reached from outside (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressConfig {
    /// The host name or address clients reach this machine at (`--public-address`).
    pub public_host: String,
    /// The wildcard domain whose names point at this machine (`--ingress-domain`): `http`
    /// ports are also served under `<lease>-<port>.<domain>`. `None`: by port only.
    pub domain: Option<String>,
    /// Where the reverse proxy listens when there is a domain (`--ingress-listen`).
    pub http_listen: SocketAddr,
}

impl IngressConfig {
    /// Checks what an operator gave, naming the fix.
    pub fn validate(&self) -> Result<(), String> {
        let host = self.public_host.trim();
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err(format!(
                "--public-address {:?} is not a host: give the name or address clients reach \
                 this machine at, e.g. gpu1.example.com or 203.0.113.7",
                self.public_host
            ));
        }
        if let Some(domain) = &self.domain {
            let ok = !domain.is_empty()
                && domain.len() <= 200
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if !ok {
                return Err(format!(
                    "--ingress-domain {domain:?} is not a domain name: give the domain whose \
                     wildcard (*.DOMAIN) points at this machine, e.g. apps.example.com, \
                     without a scheme or a leading '*.'"
                ));
            }
        }
        Ok(())
    }

    /// The normalised domain (lowercase, no trailing dot).
    fn domain(&self) -> Option<String> {
        self.domain
            .as_deref()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
    }

    /// `HOST:PORT`, bracketing an IPv6 address.
    fn authority(&self, port: u16) -> String {
        authority(&self.public_host, port)
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The proxy's name for one exposed port of a lease's service (all its replicas):
/// `<lease>-<service>-<port>`.
pub fn service_route_name(lease: LeaseId, service: &str, port: u16) -> String {
    format!("{lease}-{service}-{port}")
}

/// The proxy's name for one exposed port of a lease: `<lease>-<port>`.
pub fn route_name(lease: LeaseId, port: u16) -> String {
    format!("{lease}-{port}")
}

/// The route name a request's `Host` names under `domain` (`42-8080.apps.example.com:80` →
/// `42-8080`), or `None` for any other host: another domain, a deeper name, the domain itself.
pub fn route_of_host(host: &str, domain: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    // Strip a port; an IPv6 literal has no route.
    if host.starts_with('[') {
        return None;
    }
    let name = host.split(':').next()?.trim_end_matches('.');
    let label = name.strip_suffix(domain)?.strip_suffix('.')?;
    if label.is_empty() || label.contains('.') {
        return None;
    }
    Some(label.to_owned())
}

/// The endpoints of a lease's exposed ports, sorted by container port: `<proto>://<where>`.
/// Without ingress, where this machine reaches them (loopback); with it, the public host and
/// the published port, then for each `http` port under a domain its name through the proxy.
pub fn endpoints_of(
    lease: LeaseId,
    exposed: &[Expose],
    published: &[PublishedPort],
    ingress: Option<&IngressConfig>,
) -> Vec<String> {
    let mut ports: Vec<&PublishedPort> = published.iter().filter(|p| p.service.is_none()).collect();
    ports.sort_by_key(|p| (p.container_port, p.proto));
    let mut out = Vec::new();
    for p in ports {
        let Some(e) = exposed.iter().find(|e| e.port == p.container_port) else {
            continue;
        };
        let scheme = e.proto.as_str();
        match ingress {
            None => out.push(format!("{scheme}://{}", p.host)),
            Some(ingress) => {
                out.push(format!("{scheme}://{}", ingress.authority(p.host.port())));
                if let (ExposeProto::Http, Some(domain)) = (e.proto, ingress.domain()) {
                    let name = format!("{}.{domain}", route_name(lease, e.port));
                    let port = ingress.http_listen.port();
                    out.push(if port == 80 {
                        format!("http://{name}")
                    } else {
                        format!("http://{name}:{port}")
                    });
                }
            }
        }
    }
    out
}

/// The endpoints of a lease's services' exposed ports, by service, port and replica: each
/// replica's port as [`endpoints_of`] shows the job's own, then, under a domain, each `http`
/// port's name through the proxy (one for all replicas, which it takes in turn).
pub fn service_endpoints_of(
    lease: LeaseId,
    exposed: &BTreeMap<String, Vec<Expose>>,
    published: &[PublishedPort],
    ingress: Option<&IngressConfig>,
) -> Vec<ServiceEndpoint> {
    let mut ports: Vec<(&str, &PublishedPort, &Expose)> = published
        .iter()
        .filter_map(|p| {
            let service = p.service.as_deref()?;
            let e = exposed
                .get(service)?
                .iter()
                .find(|e| e.port == p.container_port)?;
            Some((service, p, e))
        })
        .collect();
    ports.sort_by_key(|(service, p, _)| (*service, p.container_port, p.replica));
    let mut out = Vec::new();
    for (i, (service, p, e)) in ports.iter().enumerate() {
        let scheme = e.proto.as_str();
        let url = match ingress {
            None => format!("{scheme}://{}", p.host),
            Some(ingress) => format!("{scheme}://{}", ingress.authority(p.host.port())),
        };
        out.push(ServiceEndpoint {
            service: (*service).to_owned(),
            replica: Some(p.replica),
            url,
        });
        let last_replica = ports
            .get(i + 1)
            .is_none_or(|(s, n, _)| s != service || n.container_port != p.container_port);
        if let (true, ExposeProto::Http, Some(ingress)) = (last_replica, e.proto, ingress)
            && let Some(domain) = ingress.domain()
        {
            let name = format!("{}.{domain}", service_route_name(lease, service, e.port));
            let port = ingress.http_listen.port();
            out.push(ServiceEndpoint {
                service: (*service).to_owned(),
                replica: None,
                url: if port == 80 {
                    format!("http://{name}")
                } else {
                    format!("http://{name}:{port}")
                },
            });
        }
    }
    out
}

/// One registered route.
#[derive(Clone)]
struct Route {
    lease: LeaseId,
    /// Where this machine reaches the port, one per replica, with its proxy: shared, so a
    /// request takes a reference count rather than a copy of its strings.
    upstreams: Vec<(SocketAddr, Arc<ReverseProxy<HttpConnector>>)>,
    /// The request count, which picks the replica in turn.
    next: Arc<std::sync::atomic::AtomicUsize>,
}

/// The proxy's routing table, shared between the leases that add and remove routes and the
/// server that reads them.
#[derive(Clone)]
pub struct Routes {
    routes: Arc<RwLock<BTreeMap<String, Route>>>,
    client: Client<HttpConnector, Body>,
    policy: ProxyPolicy,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("routes", &self.names())
            .finish_non_exhaustive()
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    /// An empty table with one connection pool for every upstream.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let policy = ProxyPolicy::new()
            .with_host_behaviour(HostBehaviour::Preserve)
            .with_x_forwarded_for(XForwardedFor::Append)
            .with_public_scheme("http")
            .with_upstream_timeout(UPSTREAM_TIMEOUT)
            .with_via(VIA_PSEUDONYM);
        Self {
            routes: Arc::new(RwLock::new(BTreeMap::new())),
            client,
            policy,
        }
    }

    /// Serves `<lease>-<port>` from `upstream` (where this machine reaches the published port).
    pub fn add(&self, lease: LeaseId, port: u16, upstream: SocketAddr) {
        self.add_named(route_name(lease, port), lease, &[upstream]);
    }

    /// Serves the route `name` of `lease` from `upstreams` in turn (a service's replicas).
    /// None: the route is dropped.
    pub fn add_named(&self, name: String, lease: LeaseId, upstreams: &[SocketAddr]) {
        if upstreams.is_empty() {
            self.write().remove(&name);
            return;
        }
        let upstreams = upstreams
            .iter()
            .map(|upstream| {
                let proxy = ReverseProxy::new_with_client(
                    "",
                    format!("http://{upstream}"),
                    self.client.clone(),
                )
                .with_policy(self.policy.clone());
                (*upstream, Arc::new(proxy))
            })
            .collect();
        let route = Route {
            lease,
            upstreams,
            next: Arc::default(),
        };
        self.write().insert(name, route);
    }

    /// Drops every route of `lease`.
    pub fn remove_lease(&self, lease: LeaseId) {
        self.write().retain(|_, r| r.lease != lease);
    }

    /// The route names served now, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Where the route `name` leads (each replica), if it exists.
    pub fn upstreams(&self, name: &str) -> Option<Vec<SocketAddr>> {
        self.read()
            .get(name)
            .map(|r| r.upstreams.iter().map(|(a, _)| *a).collect())
    }

    /// The proxy of the route `name`'s next replica in turn.
    fn proxy(&self, name: &str) -> Option<Arc<ReverseProxy<HttpConnector>>> {
        let routes = self.read();
        let route = routes.get(name)?;
        let turn = route
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (_, proxy) = &route.upstreams[turn % route.upstreams.len()];
        Some(Arc::clone(proxy))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Route>> {
        self.routes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Route>> {
        self.routes.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone)]
struct ProxyState {
    routes: Routes,
    domain: String,
}

/// The reverse proxy's HTTP service: every request is routed by its `Host` under `domain`.
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so `X-Forwarded-For`
/// names the client.
pub fn router(routes: Routes, domain: &str) -> Router {
    let state = ProxyState {
        routes,
        domain: domain.trim_end_matches('.').to_ascii_lowercase(),
    };
    Router::new().fallback(forward).with_state(state)
}

async fn forward(State(state): State<ProxyState>, request: Request<Body>) -> Response {
    let Some(host) = host_of(request.headers(), &request) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request names no host: send a Host header with the service's name, \
             <lease>-<port>.<domain>, as `gpunet job status ID` prints it"
                .to_owned(),
        );
    };
    let Some(proxy) = route_of_host(&host, &state.domain).and_then(|n| state.routes.proxy(&n))
    else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no service is published at {host} on this provider: the lease may have \
                 ended, or the name is not one `gpunet job status ID` prints \
                 (<lease>-<port>.{})",
                state.domain
            ),
        );
    };
    match proxy.proxy_request(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The request's host: the `Host` header, else an absolute URI's authority (HTTP/2).
fn host_of(headers: &HeaderMap, request: &Request<Body>) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
}

fn refuse(status: StatusCode, why: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("gpunet ingress: {why}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_runtime::PortProto;

    fn ingress(domain: Option<&str>, listen: &str) -> IngressConfig {
        IngressConfig {
            public_host: "gpu1.example.com".into(),
            domain: domain.map(str::to_owned),
            http_listen: listen.parse().expect("address"),
        }
    }

    fn published(container_port: u16, host: &str) -> PublishedPort {
        PublishedPort::new(
            container_port,
            PortProto::Tcp,
            host.parse().expect("address"),
        )
    }

    #[test]
    fn hosts_name_a_route_only_directly_under_the_domain() {
        let d = "apps.example.com";
        assert_eq!(
            route_of_host("42-8080.apps.example.com", d).as_deref(),
            Some("42-8080")
        );
        assert_eq!(
            route_of_host("42-8080.Apps.Example.COM.:8080", d).as_deref(),
            Some("42-8080")
        );
        for other in [
            "apps.example.com",
            "x.42-8080.apps.example.com",
            "42-8080.apps.example.org",
            "42-8080.evilapps.example.com",
            "42-8080apps.example.com",
            "[::1]:80",
            "",
        ] {
            assert_eq!(route_of_host(other, d), None, "{other}");
        }
    }

    #[test]
    fn endpoints_say_where_each_exposed_port_is_reached() {
        let exposed = [
            Expose {
                port: 8080,
                proto: ExposeProto::Http,
            },
            Expose {
                port: 5432,
                proto: ExposeProto::Tcp,
            },
        ];
        let ports = [
            published(8080, "127.0.0.1:30001"),
            published(5432, "127.0.0.1:30002"),
            // Published but not in the spec: never shown.
            published(9999, "127.0.0.1:30003"),
        ];
        let lease = LeaseId(42);
        assert_eq!(
            endpoints_of(lease, &exposed, &ports, None),
            vec!["tcp://127.0.0.1:30002", "http://127.0.0.1:30001"]
        );
        assert_eq!(
            endpoints_of(lease, &exposed, &ports, Some(&ingress(None, "0.0.0.0:80"))),
            vec![
                "tcp://gpu1.example.com:30002",
                "http://gpu1.example.com:30001"
            ]
        );
        assert_eq!(
            endpoints_of(
                lease,
                &exposed,
                &ports,
                Some(&ingress(Some("Apps.Example.com."), "0.0.0.0:80"))
            ),
            vec![
                "tcp://gpu1.example.com:30002",
                "http://gpu1.example.com:30001",
                "http://42-8080.apps.example.com",
            ]
        );
        assert_eq!(
            endpoints_of(
                lease,
                &exposed[..1],
                &ports,
                Some(&ingress(Some("apps.example.com"), "0.0.0.0:8080"))
            ),
            vec![
                "http://gpu1.example.com:30001",
                "http://42-8080.apps.example.com:8080",
            ]
        );
        let mut v6 = ingress(None, "0.0.0.0:80");
        v6.public_host = "2001:db8::7".into();
        assert_eq!(
            endpoints_of(lease, &exposed[..1], &ports, Some(&v6)),
            vec!["http://[2001:db8::7]:30001"]
        );
    }

    #[test]
    fn a_services_ports_are_shown_by_replica_and_named_once_for_all_of_them() {
        let of = |service: &str, replica: u32, port: u16, host: &str| PublishedPort {
            service: Some(service.into()),
            replica,
            ..published(port, host)
        };
        let exposed = BTreeMap::from([
            (
                "api".to_owned(),
                vec![Expose {
                    port: 9000,
                    proto: ExposeProto::Http,
                }],
            ),
            (
                "db".to_owned(),
                vec![Expose {
                    port: 5432,
                    proto: ExposeProto::Tcp,
                }],
            ),
        ]);
        let ports = [
            of("db", 0, 5432, "127.0.0.1:30005"),
            of("api", 1, 9000, "127.0.0.1:30004"),
            of("api", 0, 9000, "127.0.0.1:30003"),
            // The job's own port 9000 is not the api's.
            published(9000, "127.0.0.1:30001"),
            // Published but not exposed by the service: never shown.
            of("db", 0, 9999, "127.0.0.1:30006"),
        ];
        let lease = LeaseId(42);
        let shown = |ingress: Option<&IngressConfig>| -> Vec<(String, Option<u32>, String)> {
            service_endpoints_of(lease, &exposed, &ports, ingress)
                .into_iter()
                .map(|e| (e.service, e.replica, e.url))
                .collect()
        };
        let row = |s: &str, r: Option<u32>, u: &str| (s.to_owned(), r, u.to_owned());
        assert_eq!(
            shown(None),
            vec![
                row("api", Some(0), "http://127.0.0.1:30003"),
                row("api", Some(1), "http://127.0.0.1:30004"),
                row("db", Some(0), "tcp://127.0.0.1:30005"),
            ]
        );
        assert_eq!(
            shown(Some(&ingress(Some("apps.example.com"), "0.0.0.0:80"))),
            vec![
                row("api", Some(0), "http://gpu1.example.com:30003"),
                row("api", Some(1), "http://gpu1.example.com:30004"),
                row("api", None, "http://42-api-9000.apps.example.com"),
                row("db", Some(0), "tcp://gpu1.example.com:30005"),
            ]
        );
        // The job's own endpoints leave the services' ports out.
        let own = [Expose {
            port: 9000,
            proto: ExposeProto::Http,
        }];
        assert_eq!(
            endpoints_of(lease, &own, &ports, None),
            vec!["http://127.0.0.1:30001"]
        );
    }

    #[test]
    fn bad_ingress_settings_are_refused_naming_the_fix() {
        assert!(
            ingress(Some("apps.example.com"), "0.0.0.0:80")
                .validate()
                .is_ok()
        );
        for (domain, host) in [
            (Some("*.apps.example.com"), "gpu1"),
            (Some("https://apps.example.com"), "gpu1"),
            (Some("apps..example.com"), "gpu1"),
            (None, ""),
            (None, "http://gpu1/"),
        ] {
            let mut config = ingress(domain, "0.0.0.0:80");
            config.public_host = host.into();
            let error = config.validate().expect_err(host);
            assert!(error.contains("e.g."), "{error}");
        }
    }

    #[test]
    fn routes_are_added_found_and_dropped_by_lease() {
        let routes = Routes::new();
        let upstream: SocketAddr = "127.0.0.1:30001".parse().expect("address");
        routes.add(LeaseId(1), 8080, upstream);
        routes.add(LeaseId(1), 9090, upstream);
        routes.add(LeaseId(2), 8080, upstream);
        assert_eq!(routes.names(), vec!["1-8080", "1-9090", "2-8080"]);
        assert_eq!(routes.upstreams("2-8080"), Some(vec![upstream]));
        routes.remove_lease(LeaseId(1));
        assert_eq!(routes.names(), vec!["2-8080"]);
        assert_eq!(routes.upstreams("1-8080"), None);
        // A service's replicas share one name; none drops it.
        let replicas: Vec<SocketAddr> = ["127.0.0.1:30002", "127.0.0.1:30003"]
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect();
        routes.add_named(
            service_route_name(LeaseId(2), "api", 9000),
            LeaseId(2),
            &replicas,
        );
        assert_eq!(routes.upstreams("2-api-9000"), Some(replicas));
        routes.add_named("2-api-9000".into(), LeaseId(2), &[]);
        assert_eq!(routes.names(), vec!["2-8080"]);
    }
}
