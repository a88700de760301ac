//! Public ingress (issue 14), end to end with real processes and the real Docker Engine: a
//! provider started with `--public-address`, `--ingress-domain` and a port range runs a
//! `kind: service` job whose container listens on an exposed port and on one the spec does not
//! expose. `gpunet job status` prints where the service is; it is reached there by this
//! machine's non-loopback address and port, and by name through the agent's reverse proxy;
//! the unexposed port is published nowhere in the range. Once the job is cancelled both ways
//! are gone.
//!
//! Without a reachable engine the test prints "skipped: …" and passes — unless
//! `GPUNET_REQUIRE_DOCKER=1` (set by `.ci/run`, so CI always runs it), when it fails.

mod binary;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use binary::User;
use gpunet_client::KeyFile;
use gpunet_runtime::testimage::ContainerCleanup;

const DOMAIN: &str = "apps.gpunet.test";

/// An address of this machine that is not loopback (the one its default route leaves from;
/// no packet is sent), or loopback where it has none, said plainly.
fn outside_address() -> IpAddr {
    let found = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    found.unwrap_or_else(|| {
        println!("this machine has no route off loopback: the service is reached on loopback");
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    })
}

/// The test image plus a stripped copy of this build's `gpunet` (whose `bench upstream` is the
/// service), or `None` when Docker tests may be skipped and there is no engine.
async fn image_with_gpunet(dir: &std::path::Path) -> Option<String> {
    gpunet_runtime::testimage::test_image_or_skip(
        "a_service_is_reached_by_port_and_by_name_and_only_what_it_exposes",
    )
    .await?;
    let copy = dir.join("gpunet");
    std::fs::copy(env!("CARGO_BIN_EXE_gpunet"), &copy).expect("copies the binary");
    // Without its debug info the binary is a quarter of the size: a faster image import.
    let stripped = std::process::Command::new("strip")
        .arg(&copy)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        println!("strip is not available: the image holds the unstripped binary");
    }
    Some(
        gpunet_runtime::testimage::ensure_test_image_with(&[("gpunet", &copy)])
            .await
            .expect("the image with gpunet builds"),
    )
}

/// A dev network whose one provider runs Docker jobs with ingress: `--public-address` this
/// machine's outside address, a domain, the proxy on a free port, and a range of 20 ports of
/// the test's own from `ports_from` (so parallel runs do not share one).
struct Ingress {
    network: binary::Network,
    host: IpAddr,
    proxy_port: u16,
    first: u16,
    last: u16,
    provider: gpunet_protocol::Address,
    _provider: tokio::process::Child,
}

impl Ingress {
    async fn start(user: &User, base: &std::path::Path, ports_from: u16) -> Ingress {
        let network = binary::Network::start(user, base, 1, 200, &[]).await;
        let host = outside_address();
        let proxy_port = binary::free_port();
        let first = ports_from + (std::process::id() % 100) as u16 * 20;
        let last = first + 19;
        let (host_s, listen, range) = (
            host.to_string(),
            format!("0.0.0.0:{proxy_port}"),
            format!("{first}-{last}"),
        );
        let provider_process = network.provider_with_docker(
            user,
            base,
            0,
            "0.10",
            &[
                "--public-address",
                &host_s,
                "--ingress-domain",
                DOMAIN,
                "--ingress-listen",
                &listen,
                "--ingress-ports",
                &range,
            ],
        );
        network.until_providers(1).await;
        let provider = KeyFile::load(&network.key("provider-0"))
            .expect("provider key")
            .address();
        Ingress {
            network,
            host,
            proxy_port,
            first,
            last,
            provider,
            _provider: provider_process,
        }
    }
}

fn spec(image: &str) -> String {
    format!(
        "version: 1\nname: web\nkind: service\nrun:\n  image: {image}\n  network: egress\n  command: [\"/bin/sh\", \"-c\", \"/bin/gpunet bench upstream --listen 0.0.0.0:9090 & exec /bin/gpunet bench upstream --listen 0.0.0.0:8080\"]\nexpose:\n  - {{ port: 8080, proto: http }}\nresources: {{ cpu: 0.5, memory: 256Mi, disk: 64Mi }}\npricing: {{ max_per_hour: \"1.00\", deposit: \"1.00\" }}\nlimits: {{ max_duration: 10m }}\n"
    )
}

/// The `endpoint` lines of `gpunet job status 1`, once there are `n`.
async fn endpoints(
    network: &binary::Network,
    user: &User,
    base: &std::path::Path,
    n: usize,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = binary::run(
            network.tenant(user, &["job", "status", "1"], base),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(status.code, Some(0), "{status:?}");
        let found: Vec<String> = status
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("endpoint "))
            .map(|e| e.trim().to_owned())
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "job status never showed {n} endpoints: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_reached_by_port_and_by_name_and_only_what_it_exposes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let Some(image) = image_with_gpunet(base).await else {
        return;
    };
    let user = User::new(base);
    let Ingress {
        network,
        host,
        proxy_port,
        first,
        last,
        provider,
        _provider,
    } = Ingress::start(&user, base, 42_000).await;
    let range = format!("{first}-{last}");

    std::fs::write(base.join("web.yaml"), spec(&image)).expect("spec written");
    let lease = binary::running_job(&network, &user, base, "web.yaml").await;
    let _cleanup = ContainerCleanup::new(binary::workload_id(lease, &provider));

    // Status names the public address and port, and the name through the proxy.
    let shown = endpoints(&network, &user, base, 2).await;
    let by_port = shown[0]
        .strip_prefix(&format!("http://{host}:"))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("the first endpoint is {host}:PORT: {shown:?}"));
    assert!(
        (first..=last).contains(&by_port),
        "{by_port} in {range}: {shown:?}"
    );
    let name = format!("{lease}-8080.{DOMAIN}");
    assert_eq!(shown[1], format!("http://{name}:{proxy_port}"), "{shown:?}");
    assert_eq!(
        shown.len(),
        2,
        "the unexposed port has no endpoint: {shown:?}"
    );
    // The node's record of the lease has the same, for anyone (and the dashboard) to read.
    let node = gpunet_client::NodeClient::new(&network.api);
    binary::until_order(
        &node,
        gpunet_protocol::OrderId(1),
        Duration::from_secs(60),
        "the lease's endpoints on chain",
        |o| o.lease.as_ref().is_some_and(|l| l.endpoints == shown),
    )
    .await;

    // By port, at the address clients outside use.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let answer = plain
        .get(&shown[0])
        .send()
        .await
        .expect("the service answers by port");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("body"), "ok\n");

    // By name: the wildcard record would send the name to the provider's address.
    let named = reqwest::Client::builder()
        .no_proxy()
        .resolve(&name, SocketAddr::new(host, proxy_port))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let answer = named
        .get(format!("{}/headers", shown[1]))
        .send()
        .await
        .expect("the service answers by name");
    assert_eq!(answer.status(), 200);
    let headers = answer.text().await.expect("body");
    assert!(headers.contains(&format!("host: {name}")), "{headers}");
    assert!(headers.contains("x-forwarded-for: "), "{headers}");

    // Only the exposed port is published: one port of the range answers, and it is that one.
    let open: Vec<u16> = (first..=last)
        .filter(|p| {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(host, *p),
                Duration::from_millis(500),
            )
            .is_ok()
        })
        .collect();
    assert_eq!(open, vec![by_port], "ports open in {range}");
    let unexposed_name = format!("{lease}-9090.{DOMAIN}");
    let unexposed = reqwest::Client::builder()
        .no_proxy()
        .resolve(&unexposed_name, SocketAddr::new(host, proxy_port))
        .build()
        .expect("client")
        .get(format!("http://{unexposed_name}:{proxy_port}/"))
        .send()
        .await
        .expect("the proxy answers");
    assert_eq!(
        unexposed.status(),
        404,
        "the unexposed port has no name either"
    );

    // Cancelled: neither way leads anywhere.
    let cancelled = binary::run(
        network.tenant(&user, &["job", "cancel", "1"], base),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(cancelled.code, Some(0), "{cancelled:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let by_name = named
            .get(format!("{}/", shown[1]))
            .send()
            .await
            .map(|r| r.status().as_u16());
        let by_port = plain.get(&shown[0]).send().await.is_ok();
        if by_name.as_ref().is_ok_and(|s| *s == 404) && !by_port {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service is still reached after cancel: by name {by_name:?}, by port {by_port}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A two-service job on a provider with ingress: `job status` shows the front end's and each
/// api replica's endpoints and the names through the proxy; the front answers by port and by
/// name with what the api said to it by name; the api answers by its name (its replicas in
/// turn); its unexposed port is published nowhere; after cancel nothing answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_service_job_is_reached_at_its_front_which_calls_its_backend_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let Some(image) = image_with_gpunet(base).await else {
        return;
    };
    let user = User::new(base);
    let Ingress {
        network,
        host,
        proxy_port,
        first,
        last,
        provider,
        _provider,
    } = Ingress::start(&user, base, 44_000).await;
    let range = format!("{first}-{last}");

    std::fs::write(base.join("shop.yaml"), binary::two_services(&image)).expect("spec written");
    let lease = binary::running_job(&network, &user, base, "shop.yaml").await;
    let _cleanup = ContainerCleanup::new(binary::workload_id(lease, &provider));

    // The front's port and name, each api replica's port, and the api's name.
    let shown = endpoints(&network, &user, base, 5).await;
    let front_name = format!("{lease}-8080.{DOMAIN}");
    let api_name = format!("{lease}-api-9000.{DOMAIN}");
    assert_eq!(shown.len(), 5, "{shown:?}");
    assert_eq!(
        shown[1],
        format!("http://{front_name}:{proxy_port}"),
        "{shown:?}"
    );
    for (i, who) in [(2, "api-0"), (3, "api-1")] {
        assert!(
            shown[i].starts_with(&format!("http://{host}:"))
                && shown[i].ends_with(&format!("({who})")),
            "{shown:?}"
        );
    }
    assert_eq!(
        shown[4],
        format!("http://{api_name}:{proxy_port} (api)"),
        "{shown:?}"
    );

    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(&front_name, SocketAddr::new(host, proxy_port))
        .resolve(&api_name, SocketAddr::new(host, proxy_port))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let get = |url: String| {
        let client = client.clone();
        async move {
            let answer = client.get(&url).send().await.expect("answers");
            let status = answer.status().as_u16();
            (status, answer.text().await.expect("body"))
        }
    };
    // The front, by port and by name, asks the api by its name on the job's network.
    for front in [
        shown[0].clone(),
        format!("http://{front_name}:{proxy_port}"),
    ] {
        let (status, body) = get(format!("{front}/backend/headers")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("backend 200: "), "{body}");
        assert!(
            body.contains("host: api:9000"),
            "the front called the api by name: {body}"
        );
    }
    // Each api replica by its port, and the api by its name.
    for replica in &shown[2..4] {
        let url = replica.split_whitespace().next().expect("url");
        assert_eq!(get(format!("{url}/")).await, (200, "ok\n".to_owned()));
    }
    for _ in 0..4 {
        let (status, body) = get(format!("http://{api_name}:{proxy_port}/headers")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("host: {api_name}")), "{body}");
    }

    // Three ports of the range are open: the front's and the two replicas' 9000, not 9091.
    let open: Vec<u16> = (first..=last)
        .filter(|p| {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(host, *p),
                Duration::from_millis(500),
            )
            .is_ok()
        })
        .collect();
    assert_eq!(open.len(), 3, "ports open in {range}: {open:?}");

    let cancelled = binary::run(
        network.tenant(&user, &["job", "cancel", "1"], base),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(cancelled.code, Some(0), "{cancelled:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let front = client.get(&shown[0]).send().await.is_ok();
        let api = client
            .get(format!("http://{api_name}:{proxy_port}/"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if !front && api.as_ref().is_ok_and(|s| *s == 404) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job is still reached after cancel: front {front}, api {api:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
