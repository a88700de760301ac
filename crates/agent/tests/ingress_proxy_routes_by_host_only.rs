//! The agent's ingress proxy over real HTTP: routed by `Host` to a registered service only,
//! never an open proxy, honest about what it is and what it could not reach.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use gpunet_agent::ingress::{Routes, router};
use gpunet_protocol::LeaseId;

const DOMAIN: &str = "apps.gpunet.test";

/// A service that counts its requests and answers with its name and the headers it got.
async fn service(name: &'static str) -> (SocketAddr, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&hits);
    let app = Router::new().fallback(get(move |headers: HeaderMap| {
        let counted = Arc::clone(&counted);
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut out = format!("service {name}\n");
            for (k, v) in &headers {
                out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            out
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// The proxy over `routes`, on loopback.
async fn proxy(routes: Routes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("address");
    let app = router(routes, DOMAIN).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One raw HTTP/1.1 exchange: what a hostile client can send that a library would not.
async fn raw(proxy: SocketAddr, request: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(proxy).expect("connects");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        conn.write_all(request.as_bytes()).expect("writes");
        let mut out = String::new();
        let _ = conn.read_to_string(&mut out);
        out
    })
    .await
    .expect("joins")
}

fn client(name: &str, proxy: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve(name, proxy)
        .no_proxy()
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_service_is_reached_by_its_name_with_the_clients_host_and_address_passed_on() {
    let (web, web_hits) = service("web").await;
    let routes = Routes::new();
    routes.add(LeaseId(7), 8080, web);
    let proxy = proxy(routes.clone()).await;
    let name = format!("7-8080.{DOMAIN}");
    let answer = client(&name, proxy)
        .get(format!("http://{name}:{}/some/path?q=1", proxy.port()))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 200);
    let body = answer.text().await.expect("body");
    assert!(body.starts_with("service web\n"), "{body}");
    // The service sees the name it was asked by, who asked, and that a proxy was in between.
    assert!(
        body.contains(&format!("host: {name}:{}", proxy.port())),
        "{body}"
    );
    assert!(body.contains("x-forwarded-for: 127.0.0.1"), "{body}");
    assert!(
        body.contains("gpunet-ingress"),
        "a Via header names the proxy: {body}"
    );
    assert_eq!(web_hits.load(Ordering::SeqCst), 1);

    // Names are case-blind, as DNS is.
    let upper = format!("7-8080.{}", DOMAIN.to_uppercase());
    let answer = raw(
        proxy,
        format!("GET / HTTP/1.1\r\nHost: {upper}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Once the lease's workload ends its name is gone.
    routes.remove_lease(LeaseId(7));
    let gone = client(&name, proxy)
        .get(format!("http://{name}:{}/", proxy.port()))
        .send()
        .await
        .expect("answers");
    assert_eq!(gone.status(), 404);
    assert!(
        gone.text()
            .await
            .expect("body")
            .contains("no service is published at")
    );
    assert_eq!(web_hits.load(Ordering::SeqCst), 2);
}

/// A hostile client tries to use the proxy to reach what it was not given: another host by
/// absolute URI, the provider's own loopback services by Host, a name one label too deep, a
/// request with no host. Nothing but the registered service is ever contacted.
#[tokio::test]
async fn the_proxy_is_never_an_open_one() {
    let (web, web_hits) = service("web").await;
    let (secret, secret_hits) = service("provider-private").await;
    let routes = Routes::new();
    routes.add(LeaseId(7), 8080, web);
    let proxy = proxy(routes).await;
    let ask = |host: String, target: String| {
        raw(
            proxy,
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };

    // An absolute URI naming the private service: the Host decides, and the path goes to the
    // registered service.
    let answer = ask(format!("7-8080.{DOMAIN}"), format!("http://{secret}/admin")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("service web"), "{answer}");

    for host in [
        secret.to_string(),
        format!("localhost:{}", secret.port()),
        DOMAIN.to_owned(),
        format!("x.7-8080.{DOMAIN}"),
        format!("7-8080.{DOMAIN}.evil.test"),
        "7-8080".to_owned(),
        format!("7-9090.{DOMAIN}"),
        format!("8-8080.{DOMAIN}"),
    ] {
        let answer = ask(host.clone(), "/".to_owned()).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{host}: {answer}");
        assert!(answer.contains("gpunet ingress:"), "{host}: {answer}");
    }

    // HTTP/1.0 allows leaving the host out: refused, naming what to send.
    let answer = raw(proxy, "GET / HTTP/1.0\r\n\r\n".to_owned()).await;
    assert!(
        answer.starts_with("HTTP/1.") && answer.contains(" 400 "),
        "{answer}"
    );
    assert!(answer.contains("Host header"), "{answer}");

    assert_eq!(
        secret_hits.load(Ordering::SeqCst),
        0,
        "the private service was reached"
    );
    assert_eq!(web_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_loop_and_a_service_that_is_down_are_answered_for_what_they_are() {
    let routes = Routes::new();
    // A port nothing listens on: the workload died between two checks.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        l.local_addr().expect("address")
    };
    routes.add(LeaseId(3), 80, closed);
    let (web, web_hits) = service("web").await;
    routes.add(LeaseId(4), 80, web);
    let proxy = proxy(routes).await;

    let started = std::time::Instant::now();
    let down = raw(
        proxy,
        format!("GET / HTTP/1.1\r\nHost: 3-80.{DOMAIN}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(down.starts_with("HTTP/1.1 502"), "{down}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // A request that already passed through this proxy (a service pointing back at it).
    let looped = raw(
        proxy,
        format!(
            "GET / HTTP/1.1\r\nHost: 4-80.{DOMAIN}\r\nVia: 1.1 gpunet-ingress\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(looped.starts_with("HTTP/1.1 508"), "{looped}");
    assert_eq!(web_hits.load(Ordering::SeqCst), 0);
}
