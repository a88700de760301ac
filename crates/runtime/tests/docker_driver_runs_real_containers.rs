//! The Docker driver against the real engine, with an image built from host binaries (no
//! registry needed): outputs, logs, isolation, limits, stop, recover, missing images and the
//! network.
//!
//! Without a reachable engine each test prints "skipped: …" and passes — unless
//! `GPUNET_REQUIRE_DOCKER=1` (set by `.ci/run`, so CI always runs them), when it fails.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use gpunet_runtime::testimage::{ContainerCleanup, ensure_test_image};
use gpunet_runtime::{
    DockerDriver, Driver, DriverError, ExitOutcome, ExitReason, ExposedPort, NetworkMode,
    PortProto, RecoverState, WorkloadHandle, WorkloadSpec,
};

/// Longest any single workload in these tests may take to end before the test gives up.
const TEST_WAIT_LIMIT: Duration = Duration::from_secs(90);

/// The driver and the test image, or `None` when the engine is unreachable and skipping is
/// allowed.
async fn engine(test: &str) -> Option<(DockerDriver, String)> {
    let driver = DockerDriver::new();
    if let Err(error) = driver.fingerprint().await {
        if std::env::var("GPUNET_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!(
                "the Docker Engine is needed by this test and is unreachable: {error}\n\
                 (GPUNET_REQUIRE_DOCKER=1 is set, so the Docker tests may not be skipped)"
            );
        }
        println!(
            "skipped: {test}: no Docker Engine ({error}); set GPUNET_REQUIRE_DOCKER=1 to make this fail"
        );
        return None;
    }
    let image = ensure_test_image()
        .await
        .unwrap_or_else(|e| panic!("could not build the test image: {e}"));
    Some((driver, image))
}

/// A workload id unique to this test process, so parallel runs do not collide.
fn workload_id(name: &str) -> String {
    format!("t{}-{name}", std::process::id())
}

fn spec(id: &str, image: &str, root: &Path, script: &str) -> WorkloadSpec {
    WorkloadSpec {
        memory_mib: 128,
        max_duration: Duration::from_secs(60),
        image: Some(image.to_owned()),
        ..WorkloadSpec::new(id, vec!["/bin/sh".into(), "-c".into(), script.into()], root)
    }
}

async fn wait(driver: &DockerDriver, handle: &WorkloadHandle) -> ExitOutcome {
    tokio::time::timeout(TEST_WAIT_LIMIT, driver.wait(handle))
        .await
        .expect("the workload ends in time")
        .expect("waits")
}

/// The whole log, read in small chunks until the driver says it is finished.
async fn all_logs(driver: &DockerDriver, handle: &WorkloadHandle) -> String {
    let deadline = Instant::now() + TEST_WAIT_LIMIT;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let chunk = driver.logs(handle, offset, 7).await.expect("reads logs");
        out.extend_from_slice(&chunk.data);
        offset = chunk.next_offset;
        if chunk.finished {
            return String::from_utf8(out).expect("utf-8 logs");
        }
        assert!(Instant::now() < deadline, "log never finished: {out:?}");
        if chunk.data.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until the log file contains `needle`.
async fn log_shows(root: &Path, needle: &str) {
    let deadline = Instant::now() + TEST_WAIT_LIMIT;
    loop {
        let log = std::fs::read_to_string(root.join("logs/combined.log")).unwrap_or_default();
        if log.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never logged: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unreachable_engine_is_reported_unavailable_with_the_reason() {
    let driver = DockerDriver::with_socket("/nonexistent/gpunet/docker.sock");
    assert_eq!(driver.name(), "docker");
    let error = driver.fingerprint().await.expect_err("no engine there");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            DriverError::Unavailable {
                driver: "docker",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn batch_job_writes_its_outputs_and_its_stdout_and_stderr_are_logged() {
    let Some((driver, image)) = engine("batch job").await else {
        return;
    };
    let info = driver.fingerprint().await.expect("fingerprints");
    assert_eq!(info.name, "docker");
    assert!(!info.version.is_empty(), "{info:?}");

    let id = workload_id("batch");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let script =
        r#"echo to-stdout; echo to-stderr >&2; printf hello > "$GPUNET_OUTPUTS/greeting.txt""#;
    let handle = driver
        .start(&spec(&id, &image, dir.path(), script))
        .await
        .expect("starts");
    assert_eq!(handle.driver, "docker");

    let logs = all_logs(&driver, &handle).await;
    let outcome = wait(&driver, &handle).await;
    assert_eq!(
        outcome.reason,
        ExitReason::Completed,
        "{outcome:?} {logs:?}"
    );
    assert_eq!((outcome.exit_code, outcome.signal), (Some(0), None));
    let greeting =
        std::fs::read_to_string(dir.path().join("outputs/greeting.txt")).expect("output exists");
    assert_eq!(greeting, "hello");
    assert!(
        logs.contains("to-stdout\n") && logs.contains("to-stderr\n"),
        "{logs:?}"
    );

    // Starting the same workload again is refused while its container exists.
    let again = driver.start(&spec(&id, &image, dir.path(), script)).await;
    assert!(
        matches!(again, Err(DriverError::AlreadyExists { .. })),
        "{again:?}"
    );

    driver.destroy(&handle).await.expect("destroys");
    assert_eq!(
        driver.recover(&handle).await.expect("recovers"),
        RecoverState::Lost,
        "the container is gone"
    );
    assert!(dir.path().join("outputs/greeting.txt").exists());
    let kept = std::fs::read_to_string(dir.path().join("logs/combined.log")).expect("log kept");
    assert_eq!(kept, logs);
}

#[tokio::test]
async fn workload_sees_no_host_files_cannot_write_its_root_or_mount_and_has_no_capabilities() {
    let Some((driver, image)) = engine("isolation").await else {
        return;
    };
    let id = workload_id("isolation");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
        echo "hostname=[$(cat /etc/hostname)]"
        if touch /rootfs-probe 2>/dev/null; then echo rootfs=writable; else echo rootfs=read-only; fi
        if touch /tmp/probe && touch /outputs/probe; then echo tmp-and-outputs=writable; fi
        mkdir -p /tmp/m
        if mount -t tmpfs none /tmp/m 2>/dev/null; then echo mount=allowed; else echo mount=denied; fi
        echo "uid=$(id -u)"
        while read -r key value; do
            if [ "$key" = "CapEff:" ]; then echo "capeff=$value"; fi
        done < /proc/self/status
    "#;
    let handle = driver
        .start(&spec(&id, &image, dir.path(), script))
        .await
        .expect("starts");
    let logs = all_logs(&driver, &handle).await;
    let outcome = wait(&driver, &handle).await;
    assert_eq!(
        outcome.reason,
        ExitReason::Completed,
        "{outcome:?} {logs:?}"
    );

    let host_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert!(
        !logs.contains(&format!("hostname=[{}]", host_hostname.trim())),
        "the container sees the host's /etc/hostname: {logs:?}"
    );
    for expected in [
        "rootfs=read-only\n",
        "tmp-and-outputs=writable\n",
        "mount=denied\n",
        "uid=0\n",
        "capeff=0000000000000000\n",
    ] {
        assert!(logs.contains(expected), "{expected:?} not in {logs:?}");
    }
    assert!(dir.path().join("outputs/probe").exists());
}

#[tokio::test]
async fn memory_hog_under_a_small_memory_limit_ends_out_of_memory() {
    let Some((driver, image)) = engine("memory hog").await else {
        return;
    };
    let id = workload_id("oom");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec(
        &id,
        &image,
        dir.path(),
        r#"x=$(head -c 300000000 /dev/zero | tr "\0" a); echo survived"#,
    );
    s.memory_mib = 64;
    let handle = driver.start(&s).await.expect("starts");
    let outcome = wait(&driver, &handle).await;
    let logs = all_logs(&driver, &handle).await;
    assert_eq!(
        outcome.reason,
        ExitReason::OutOfMemory,
        "{outcome:?} {logs:?}"
    );
    assert!(!logs.contains("survived"), "{logs:?}");
}

#[tokio::test]
async fn busy_workload_past_its_wall_clock_limit_is_killed_and_its_usage_sampled() {
    let Some((driver, image)) = engine("wall clock").await else {
        return;
    };
    let id = workload_id("wallclock");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec(&id, &image, dir.path(), "while :; do :; done");
    s.max_duration = Duration::from_secs(3);
    let began = Instant::now();
    let handle = driver.start(&s).await.expect("starts");
    let outcome = wait(&driver, &handle).await;
    assert_eq!(outcome.reason, ExitReason::WallClockLimit, "{outcome:?}");
    assert_eq!(outcome.signal, Some(9), "{outcome:?}");
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    assert!(outcome.usage.wall_ms >= 2_500, "{outcome:?}");
    // Sampled once a second: at least the first couple of seconds of spinning show.
    let cpu_ms = outcome.usage.cpu_user_ms + outcome.usage.cpu_system_ms;
    assert!(cpu_ms >= 200, "{outcome:?}");
    assert!(outcome.usage.max_rss_kib > 0, "{outcome:?}");
}

#[tokio::test]
async fn stop_ends_a_running_workload_as_stopped_while_another_task_waits() {
    let Some((driver, image)) = engine("stop").await else {
        return;
    };
    let driver = std::sync::Arc::new(driver);
    let id = workload_id("stop");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    // The shell is PID 1 and ignores SIGTERM, so the grace must run out and SIGKILL follow.
    let handle = driver
        .start(&spec(&id, &image, dir.path(), "echo up; sleep 120"))
        .await
        .expect("starts");
    log_shows(dir.path(), "up\n").await;
    let waiter = {
        let driver = std::sync::Arc::clone(&driver);
        let handle = handle.clone();
        tokio::spawn(async move { driver.wait(&handle).await })
    };
    driver
        .stop(&handle, Duration::from_millis(500))
        .await
        .expect("stops");
    let outcome = tokio::time::timeout(TEST_WAIT_LIMIT, waiter)
        .await
        .expect("waiter ends in time")
        .expect("waiter did not panic")
        .expect("waits");
    assert_eq!(outcome.reason, ExitReason::Stopped, "{outcome:?}");
    driver
        .stop(&handle, Duration::from_secs(1))
        .await
        .expect("stopping an ended workload does nothing");
    assert!(matches!(
        driver.recover(&handle).await.expect("recovers"),
        RecoverState::Exited(o) if o.reason == ExitReason::Stopped
    ));
}

#[tokio::test]
async fn a_new_driver_recovers_a_running_workload_and_its_log_without_duplicates() {
    let Some((first, image)) = engine("recover").await else {
        return;
    };
    let id = workload_id("recover");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "echo started-once; sleep 3; echo finished-once; printf done > /outputs/done.txt";
    let s = spec(&id, &image, dir.path(), script);
    let handle = first.start(&s).await.expect("starts");
    log_shows(dir.path(), "started-once\n").await;
    // The agent "crashes": its tasks die, the container runs on.
    drop(first);

    let second = DockerDriver::new();
    assert_eq!(
        second.recover(&handle).await.expect("recovers"),
        RecoverState::Running
    );
    let again = second.start(&s).await;
    assert!(
        matches!(again, Err(DriverError::AlreadyExists { .. })),
        "never started twice: {again:?}"
    );
    let outcome = wait(&second, &handle).await;
    assert_eq!(outcome.reason, ExitReason::Completed, "{outcome:?}");
    assert_eq!(
        wait(&second, &handle).await,
        outcome,
        "one outcome, however often asked"
    );
    let logs = all_logs(&second, &handle).await;
    assert_eq!(logs.matches("started-once").count(), 1, "{logs:?}");
    assert_eq!(logs.matches("finished-once").count(), 1, "{logs:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("outputs/done.txt")).expect("output"),
        "done"
    );

    // A third driver, after the exit, reads the same outcome from the engine.
    let third = DockerDriver::new();
    match third.recover(&handle).await.expect("recovers") {
        RecoverState::Exited(o) => {
            assert_eq!(o.reason, ExitReason::Completed);
            assert_eq!(o.exit_code, Some(0));
        }
        other => panic!("expected an exit, got {other:?}"),
    }
    assert_eq!(
        all_logs(&third, &handle).await,
        logs,
        "nothing logged twice"
    );
    third.destroy(&handle).await.expect("destroys");
}

#[tokio::test]
async fn missing_image_that_cannot_be_pulled_is_image_unavailable() {
    let Some((driver, _image)) = engine("missing image").await else {
        return;
    };
    let id = workload_id("noimage");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = format!("gpunet-test/absent-{}:v1", std::process::id());
    let error = driver
        .start(&spec(&id, &missing, dir.path(), "true"))
        .await
        .expect_err("no such image");
    assert!(error.is_image_unavailable(), "{error:?}");
    match &error {
        DriverError::ImageUnavailable { image, reason } => {
            assert_eq!(image, &missing);
            assert!(reason.contains("not present locally"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    let mut no_image = spec(&id, &missing, dir.path(), "true");
    no_image.image = None;
    let error = driver.start(&no_image).await.expect_err("needs an image");
    assert!(!error.is_image_unavailable());
    assert!(
        matches!(error, DriverError::InvalidSpec { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn workload_without_network_has_only_loopback_and_egress_publishes_ports_on_loopback() {
    let Some((driver, image)) = engine("network").await else {
        return;
    };
    let id = workload_id("nonet");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = driver
        .start(&spec(&id, &image, dir.path(), "cat /proc/net/dev"))
        .await
        .expect("starts");
    let logs = all_logs(&driver, &handle).await;
    assert_eq!(wait(&driver, &handle).await.reason, ExitReason::Completed);
    let interfaces: Vec<&str> = logs
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim())
        .collect();
    assert_eq!(interfaces, vec!["lo"], "{logs:?}");

    let id = workload_id("service");
    let _cleanup_service = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec(&id, &image, dir.path(), "cat /proc/net/dev; sleep 120");
    s.network = NetworkMode::Egress;
    s.expose = vec![ExposedPort {
        container_port: 8080,
        proto: PortProto::Tcp,
    }];
    let handle = driver.start(&s).await.expect("starts");
    log_shows(dir.path(), "lo:").await;
    let ports = driver.ports(&handle).await.expect("ports");
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(
        (ports[0].container_port, ports[0].proto),
        (8080, PortProto::Tcp)
    );
    assert!(ports[0].host.ip().is_loopback(), "{ports:?}");
    assert_ne!(ports[0].host.port(), 0, "{ports:?}");
    driver
        .stop(&handle, Duration::from_millis(200))
        .await
        .expect("stops");
    let logs = std::fs::read_to_string(dir.path().join("logs/combined.log")).expect("log");
    assert!(logs.contains("eth0:"), "egress gets the bridge: {logs:?}");
    assert!(driver.ports(&handle).await.expect("ports").is_empty());
}

#[tokio::test]
async fn a_service_answers_http_through_its_published_port_and_stops_when_asked() {
    let Some((driver, _)) = engine("service_http").await else {
        return;
    };
    let httpd = Path::new(env!("CARGO_BIN_EXE_gpunet-test-httpd"));
    let image = gpunet_runtime::testimage::ensure_test_image_with(&[("httpd", httpd)])
        .await
        .expect("the test image with a server builds");
    let id = workload_id("httpd");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = WorkloadSpec {
        memory_mib: 128,
        max_duration: Duration::from_secs(60),
        image: Some(image),
        network: NetworkMode::Egress,
        expose: vec![ExposedPort {
            container_port: 8000,
            proto: PortProto::Tcp,
        }],
        ..WorkloadSpec::new(&id, vec!["/bin/httpd".into(), "8000".into()], dir.path())
    };
    let handle = driver.start(&s).await.expect("starts");
    log_shows(dir.path(), "listening on 8000").await;
    let ports = driver.ports(&handle).await.expect("ports");
    let host = ports.first().expect("one published port").host;

    // A plain HTTP/1.1 request through the published port on the provider's loopback.
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect_timeout(&host, Duration::from_secs(5))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")?;
        let mut out = String::new();
        conn.read_to_string(&mut out)?;
        std::io::Result::Ok(out)
    })
    .await
    .expect("joins")
    .expect("the service answers");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
    assert!(
        answer.ends_with("hello from a gpunet service on port 8000\n"),
        "{answer:?}"
    );

    driver
        .stop(&handle, Duration::from_millis(200))
        .await
        .expect("stops");
    assert_eq!(wait(&driver, &handle).await.reason, ExitReason::Stopped);
    let refused = std::net::TcpStream::connect_timeout(&host, Duration::from_secs(2));
    assert!(refused.is_err(), "the port is closed after stop");
}

/// Two leases with egress on one machine: the service's exposed port is published in the
/// operator's range on all addresses, and the other lease's container, hostile, can reach
/// neither that port nor an unexposed one at the service's address on the lease network —
/// while its own server answers it (so the client works).
#[tokio::test]
async fn a_lease_cannot_reach_another_leases_container_and_ports_land_in_the_operators_range() {
    let Some(_) = engine("lease network isolation").await else {
        return;
    };
    let range: gpunet_runtime::PortRange = "41000-41099".parse().expect("range");
    let driver = DockerDriver::new().with_publish(gpunet_runtime::Publish {
        host_ip: "0.0.0.0".parse().expect("address"),
        ports: Some(range),
    });
    let httpd = Path::new(env!("CARGO_BIN_EXE_gpunet-test-httpd"));
    let image = gpunet_runtime::testimage::ensure_test_image_with(&[("httpd", httpd)])
        .await
        .expect("the test image with a server builds");
    let service_id = workload_id("isolated-svc");
    let _cleanup_service = ContainerCleanup::new(&service_id);
    let service_dir = tempfile::tempdir().expect("tempdir");
    let service = WorkloadSpec {
        memory_mib: 128,
        max_duration: Duration::from_secs(60),
        image: Some(image.clone()),
        network: NetworkMode::Egress,
        expose: vec![ExposedPort {
            container_port: 8000,
            proto: PortProto::Tcp,
        }],
        ..WorkloadSpec::new(
            &service_id,
            vec!["/bin/httpd".into(), "8000".into(), "9000".into()],
            service_dir.path(),
        )
    };
    let service_handle = driver.start(&service).await.expect("the service starts");
    log_shows(service_dir.path(), "listening on 9000").await;
    let ports = driver.ports(&service_handle).await.expect("ports");
    assert_eq!(
        ports.len(),
        1,
        "only the exposed port is published: {ports:?}"
    );
    let published = ports[0].host;
    assert!(
        (range.first..=range.last).contains(&published.port()),
        "{published} is in {range}"
    );
    assert!(published.ip().is_loopback(), "{published}");
    let answer = tokio::task::spawn_blocking(move || {
        std::process::Command::new(httpd)
            .args(["get", &published.to_string()])
            .output()
    })
    .await
    .expect("joins")
    .expect("the client runs");
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains("on port 8000"),
        "the published port answers: {answer:?}"
    );

    // The service's address on the lease network, as the engine has it.
    let docker = bollard::Docker::connect_with_unix_defaults().expect("engine");
    let inspected = docker
        .inspect_container(&gpunet_runtime::container_name(&service_id), None)
        .await
        .expect("inspects");
    let networks = inspected
        .network_settings
        .and_then(|n| n.networks)
        .expect("networks");
    assert_eq!(
        networks.keys().collect::<Vec<_>>(),
        vec![gpunet_runtime::LEASE_NETWORK],
        "the service is on the lease network only"
    );
    let service_ip = networks[gpunet_runtime::LEASE_NETWORK]
        .ip_address
        .clone()
        .expect("an address");

    let attacker_id = workload_id("isolated-atk");
    let _cleanup_attacker = ContainerCleanup::new(&attacker_id);
    let attacker_dir = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "/bin/httpd 7000 & sleep 0.5; \
         /bin/httpd get 127.0.0.1:7000; echo own=$?; \
         /bin/httpd get {service_ip}:8000; echo exposed=$?; \
         /bin/httpd get {service_ip}:9000; echo unexposed=$?"
    );
    let mut attacker = spec(&attacker_id, &image, attacker_dir.path(), &script);
    attacker.network = NetworkMode::Egress;
    let attacker_handle = driver.start(&attacker).await.expect("the attacker starts");
    log_shows(attacker_dir.path(), "unexposed=").await;
    let logs = std::fs::read_to_string(attacker_dir.path().join("logs/combined.log")).expect("log");
    assert!(logs.contains("own=0"), "its own server answers: {logs}");
    assert!(
        logs.contains("exposed=1") && logs.contains("unexposed=1"),
        "another lease's container is unreachable, exposed port or not: {logs}"
    );
    assert!(
        !logs.contains("on port 8000") && !logs.contains("on port 9000"),
        "{logs}"
    );
    for handle in [&attacker_handle, &service_handle] {
        driver
            .stop(handle, Duration::from_millis(200))
            .await
            .expect("stops");
    }
}

/// A workload of three containers (a main one and two replicas of a companion service) on a
/// network of its own: the main container reaches the service by name and the service the main
/// one by its hostname; `exec` runs in the service named; a container of another lease reaches
/// neither, by name or address. When a replica exits, the others are stopped and the workload
/// fails with its exit code; the log keeps each container's lines under its name and says which
/// ended. `destroy` leaves no container and no network behind.
#[tokio::test]
async fn a_workloads_containers_find_one_another_by_name_and_the_first_to_end_ends_them_all() {
    let Some((driver, _)) = engine("workloads with companions").await else {
        return;
    };
    let httpd = Path::new(env!("CARGO_BIN_EXE_gpunet-test-httpd"));
    let image = gpunet_runtime::testimage::ensure_test_image_with(&[("httpd", httpd)])
        .await
        .expect("the test image with a server builds");
    let id = workload_id("group");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    // Each replica serves 9000 until the test drops a file in the shared outputs, then leaves.
    let replica = |n: u32| gpunet_runtime::Companion {
        args: Vec::new(),
        capabilities: Default::default(),
        service: "api".into(),
        replica: n,
        image: image.clone(),
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "/bin/httpd 9000 & while [ ! -e /outputs/stop-api ]; do sleep 0.1; done; \
             echo api leaving; exit 3"
                .into(),
        ],
        env: Default::default(),
        cpu_millis: 250,
        memory_mib: 64,
        gpu_uuids: Vec::new(),
        network: NetworkMode::None,
        expose: Vec::new(),
        volumes: Vec::new(),
        read_only_rootfs: true,
    };
    let group = WorkloadSpec {
        memory_mib: 128,
        max_duration: Duration::from_secs(120),
        image: Some(image.clone()),
        network: NetworkMode::Egress,
        expose: vec![ExposedPort {
            container_port: 8000,
            proto: PortProto::Tcp,
        }],
        hostname: Some("web".into()),
        companions: vec![replica(0), replica(1)],
        ..WorkloadSpec::new(&id, vec!["/bin/httpd".into(), "8000".into()], dir.path())
    };
    let handle = driver.start(&group).await.expect("the workload starts");
    log_shows(dir.path(), "web | ").await;
    log_shows(dir.path(), "api-1 | ").await;

    let ports = driver.ports(&handle).await.expect("ports");
    assert_eq!(ports.len(), 1, "only the main container exposes: {ports:?}");
    assert_eq!(
        (ports[0].container_port, ports[0].service.as_deref()),
        (8000, None)
    );

    let exec = |service: Option<&'static str>, target: &'static str| {
        let (driver, handle) = (&driver, &handle);
        async move {
            driver
                .exec(
                    handle,
                    service,
                    &["/bin/httpd".into(), "get".into(), target.into()],
                    Duration::from_secs(20),
                )
                .await
        }
    };
    let out = exec(None, "api:9000")
        .await
        .expect("exec in the main container");
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("on port 9000"),
        "{out:?}"
    );
    let out = exec(Some("api"), "web:8000")
        .await
        .expect("exec in the api service");
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("on port 8000"),
        "{out:?}"
    );
    let out = exec(Some("web"), "api:9000")
        .await
        .expect("exec by the main hostname");
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    match exec(Some("db"), "api:9000").await {
        Err(DriverError::NoSuchService { service, known, .. }) => {
            assert_eq!(service, "db");
            assert_eq!(known, vec!["web".to_owned(), "api".to_owned()]);
        }
        other => panic!("an unknown service is refused, got {other:?}"),
    }

    // Another lease on the same machine, with egress: neither the name nor the address of the
    // api replica on the workload's network leads anywhere.
    let docker = bollard::Docker::connect_with_unix_defaults().expect("engine");
    let inspected = docker
        .inspect_container(
            &gpunet_runtime::companion_container_name(&id, "api-0"),
            None,
        )
        .await
        .expect("inspects the replica");
    let networks = inspected
        .network_settings
        .and_then(|n| n.networks)
        .expect("networks");
    let group_network = gpunet_runtime::group_network_name(&id);
    assert_eq!(
        networks.keys().collect::<Vec<_>>(),
        vec![&group_network],
        "a replica without egress is on the workload's network only"
    );
    let api_ip = networks[&group_network]
        .ip_address
        .clone()
        .expect("an address");
    let outsider_id = workload_id("group-out");
    let _cleanup_outsider = ContainerCleanup::new(&outsider_id);
    let outsider_dir = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "/bin/httpd get {api_ip}:9000; echo by-address=$?; /bin/httpd get api:9000; echo by-name=$?"
    );
    let mut outsider = spec(&outsider_id, &image, outsider_dir.path(), &script);
    outsider.network = NetworkMode::Egress;
    let outsider_handle = driver.start(&outsider).await.expect("the outsider starts");
    wait(&driver, &outsider_handle).await;
    let logs = all_logs(&driver, &outsider_handle).await;
    assert!(
        logs.contains("by-address=1")
            && logs.contains("by-name=1")
            && !logs.contains("on port 9000"),
        "another lease reaches the workload's service: {logs}"
    );

    std::fs::write(dir.path().join("outputs/stop-api"), b"").expect("signal the replicas");
    let ended = wait(&driver, &handle).await;
    assert_eq!(
        (ended.reason, ended.exit_code),
        (ExitReason::Failed, Some(3)),
        "{ended:?}"
    );
    let logs = all_logs(&driver, &handle).await;
    assert!(logs.contains("web | listening on 8000"), "{logs}");
    assert!(
        logs.contains("api-0 | api leaving") || logs.contains("api-1 | api leaving"),
        "{logs}"
    );
    assert!(
        logs.contains("[gpunet] api-0 ended; stopping the job's other containers")
            || logs.contains("[gpunet] api-1 ended; stopping the job's other containers"),
        "{logs}"
    );
    for line in logs.lines().filter(|l| !l.is_empty()) {
        assert!(
            ["web | ", "api-0 | ", "api-1 | ", "[gpunet] "]
                .iter()
                .any(|p| line.starts_with(p)),
            "every line names its container: {line:?}"
        );
    }
    driver.destroy(&handle).await.expect("destroys");
    let left = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(std::collections::HashMap::from([(
                "label".to_owned(),
                vec![format!("{}={id}", gpunet_runtime::LABEL_WORKLOAD)],
            )])),
            ..Default::default()
        }))
        .await
        .expect("lists");
    assert!(left.is_empty(), "containers left: {left:?}");
    match docker.inspect_network(&group_network, None).await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        other => panic!("the workload's network is gone, got {other:?}"),
    }
}

/// A container with a volume and one restart in place: what its first run wrote to the volume
/// is there for the second, which the log notes; a run that keeps failing ends once its
/// restarts are spent; a volume filled past its size ends the workload `disk_exceeded` naming
/// it; and `destroy` erases the volumes with the workload.
#[tokio::test]
async fn a_volume_survives_a_restart_in_place_is_held_to_its_size_and_goes_with_the_workload() {
    let Some((driver, image)) = engine("volumes and restarts").await else {
        return;
    };
    let with_volume = |name: &str, dir: &Path, script: &str, size_mib: u64, restarts: u32| {
        let mut s = spec(&workload_id(name), &image, dir, script);
        s.disk_mib = Some(64);
        s.restarts = restarts;
        s.volumes = vec![gpunet_runtime::Volume {
            name: "data".into(),
            mount: "/data".into(),
            size_mib,
        }];
        s
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let script = "if [ -e /data/note ]; then echo found $(cat /data/note); exit 0; fi; \
                  echo first > /data/note; echo wrote; exit 7";
    let survivor = with_volume("vol-keep", dir.path(), script, 8, 1);
    let _cleanup = ContainerCleanup::new(&survivor.workload_id);
    let handle = driver.start(&survivor).await.expect("starts");
    let ended = wait(&driver, &handle).await;
    let logs = all_logs(&driver, &handle).await;
    assert_eq!(
        (ended.reason, ended.exit_code),
        (ExitReason::Completed, Some(0)),
        "{logs}"
    );
    let restarted = "[gpunet] main exited with code 7; restarting it in place (0 restart(s) left)";
    assert!(
        logs.contains("wrote") && logs.contains(restarted) && logs.contains("found first"),
        "{logs}"
    );
    let kept = gpunet_runtime::volume_dir(dir.path(), gpunet_runtime::MAIN_VOLUME_OWNER, "data");
    assert!(
        kept.join("note").is_file(),
        "the volume is on the host while the workload is"
    );
    driver.destroy(&handle).await.expect("destroys");
    assert!(
        !dir.path().join("volumes").exists(),
        "the volume is erased with the workload"
    );

    // Failing every time: one restart, then the workload fails with the exit code.
    let dir = tempfile::tempdir().expect("tempdir");
    let failing = with_volume("vol-fail", dir.path(), "echo run; exit 5", 8, 1);
    let _cleanup = ContainerCleanup::new(&failing.workload_id);
    let handle = driver.start(&failing).await.expect("starts");
    let ended = wait(&driver, &handle).await;
    let logs = all_logs(&driver, &handle).await;
    assert_eq!(
        (ended.reason, ended.exit_code),
        (ExitReason::Failed, Some(5)),
        "{logs}"
    );
    assert_eq!(logs.matches("restarting it in place").count(), 1, "{logs}");
    assert_eq!(logs.matches("run\n").count(), 2, "two runs: {logs}");

    // Past its size: killed, the log names the volume, and no restart is spent on it.
    let dir = tempfile::tempdir().expect("tempdir");
    let filler = with_volume(
        "vol-full",
        dir.path(),
        "head -c 12000000 /dev/zero > /data/big; echo filled; sleep 60",
        4,
        1,
    );
    let _cleanup = ContainerCleanup::new(&filler.workload_id);
    let handle = driver.start(&filler).await.expect("starts");
    let ended = wait(&driver, &handle).await;
    let logs = all_logs(&driver, &handle).await;
    assert_eq!(ended.reason, ExitReason::DiskExceeded, "{logs}");
    assert!(
        logs.contains("[gpunet] volume data of main holds more than its 4 MiB; ending the job"),
        "{logs}"
    );
    assert!(!logs.contains("restarting it in place"), "{logs}");
}

/// `shell` joins a command in a running container to its input: with a terminal the command
/// sees one (and a resize reaches it), without one plain pipes; what is written runs in order,
/// the output comes back and the exit code is read once it ends.
#[tokio::test]
async fn a_shell_in_a_container_takes_input_with_or_without_a_terminal_and_gives_its_exit_code() {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let Some((driver, image)) = engine("shells").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(&workload_id("shell"), &image, dir.path(), "sleep 120");
    let _cleanup = ContainerCleanup::new(&s.workload_id);
    let handle = driver.start(&s).await.expect("starts");
    for (tty, want_tty) in [(Some((100, 30)), "is-a-tty"), (None, "no-tty")] {
        let mut shell = driver
            .shell(&handle, None, &["/bin/sh".into()], tty)
            .await
            .expect("the shell starts");
        shell.control.resize(120, 40).await;
        shell
            .input
            .write_all(b"if [ -t 0 ]; then echo is-a-tty; else echo no-tty; fi; echo $((40 + 2)); exit 6\n")
            .await
            .expect("input");
        let mut seen = Vec::new();
        let collected = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(bytes) = shell.output.next().await {
                seen.extend_from_slice(&bytes);
            }
        })
        .await;
        assert!(collected.is_ok(), "the output ends with the command");
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.contains(want_tty) && text.contains("42"),
            "{tty:?}: {text:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let code = loop {
            if let Some(code) = shell.control.exit_code().await {
                break code;
            }
            assert!(Instant::now() < deadline, "no exit code");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(code, 6);
    }
    driver
        .stop(&handle, Duration::from_millis(200))
        .await
        .expect("stops");
}

#[tokio::test]
async fn a_container_writing_past_its_disk_limit_ends_disk_exceeded() {
    let Some((driver, image)) = engine("disk limit").await else {
        return;
    };
    let id = workload_id("disk");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    // 1 MiB files into /outputs until killed; under any per-file limit, so only the watchdog
    // can end it.
    let mut s = spec(
        &id,
        &image,
        dir.path(),
        r#"i=0; while [ $i -lt 1000 ]; do head -c 1048576 /dev/zero > /outputs/f$i; i=$((i+1)); sleep 0.02; done; echo survived"#,
    );
    s.disk_mib = Some(8);
    let handle = driver.start(&s).await.expect("starts");
    let outcome = wait(&driver, &handle).await;
    let logs = all_logs(&driver, &handle).await;
    assert_eq!(
        outcome.reason,
        ExitReason::DiskExceeded,
        "{outcome:?} {logs:?}"
    );
    assert!(!logs.contains("survived"), "{logs:?}");
    let written = std::fs::read_dir(dir.path().join("outputs"))
        .expect("outputs")
        .count();
    // Killed within seconds of passing 8 MiB, far from the 1000 MiB the script would write; a
    // loaded machine scans and kills later (202 files were seen on a busy 2-core one), hence
    // the wide bound: this checks the watchdog acts, `docs/benchmarks.md` is for how fast.
    assert!((6..600).contains(&written), "{written} files written");
    // The reason is recorded, so a restarted driver reports it too.
    let again = DockerDriver::new();
    match again.recover(&handle).await.expect("recovers") {
        RecoverState::Exited(o) => assert_eq!(o.reason, ExitReason::DiskExceeded, "{o:?}"),
        other => panic!("expected the exit, got {other:?}"),
    }
}

/// An image that runs as a user of its own (nginx as 101, postgres as 999) reads its inputs and
/// writes its outputs and volumes: what is mounted for it is open to any uid, while the lease's
/// directory above them stays the agent's alone.
#[tokio::test]
async fn an_image_running_as_its_own_user_reads_its_inputs_and_writes_its_outputs_and_volumes() {
    let Some((driver, _)) = engine("an image with its own user").await else {
        return;
    };
    let image = gpunet_runtime::testimage::ensure_test_image_as(1000)
        .await
        .expect("the image builds");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("lease");
    let inputs = root.join("inputs");
    std::fs::create_dir_all(inputs.join("sub")).expect("inputs");
    std::fs::write(inputs.join("sub/in.txt"), "from-the-tenant").expect("input written");
    for private in [&root, &inputs, &inputs.join("sub")] {
        std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o700)).expect("0700");
    }
    std::fs::set_permissions(
        inputs.join("sub/in.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("0600");
    let mut s = spec(
        &workload_id("own-user"),
        &image,
        &root,
        "id -u; cat /inputs/sub/in.txt; echo; echo out > /outputs/o && echo kept > /data/n \
         && echo all-written",
    );
    s.disk_mib = Some(64);
    s.volumes = vec![gpunet_runtime::Volume {
        name: "data".into(),
        mount: "/data".into(),
        size_mib: 8,
    }];
    let _cleanup = ContainerCleanup::new(&s.workload_id);
    let handle = driver.start(&s).await.expect("starts");
    let outcome = wait(&driver, &handle).await;
    let logs = all_logs(&driver, &handle).await;
    assert_eq!(outcome.reason, ExitReason::Completed, "{outcome:?} {logs}");
    assert!(
        logs.starts_with("1000\nfrom-the-tenant\nall-written"),
        "{logs}"
    );
    assert_eq!(
        std::fs::metadata(&root).expect("root").permissions().mode() & 0o777,
        0o700,
        "the lease's directory stays the agent's"
    );
    driver.destroy(&handle).await.expect("destroyed");
}

/// An image that writes where it was installed (nginx, postgres) runs with a writable root
/// (`run.writable_root`); a hostile job filling it instead of its outputs is held to its disk
/// limit all the same: the engine measures the layer, and the watchdog counts it.
#[tokio::test]
async fn a_writable_root_takes_writes_and_counts_them_within_the_disk_limit() {
    let Some((driver, image)) = engine("writable root").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |name: &str, script: &str, writable: bool| {
        let mut s = spec(&workload_id(name), &image, &dir.path().join(name), script);
        s.read_only_rootfs = !writable;
        s.disk_mib = Some(8);
        s
    };
    // Read-only by default; writable when asked, within the limit.
    let write = "mkdir -p /var/cache/app && echo kept > /var/cache/app/f && cat /var/cache/app/f \
                 || echo refused";
    for (name, writable, said) in [("rootro", false, "refused"), ("rootrw", true, "kept")] {
        let s = run(name, write, writable);
        let _cleanup = ContainerCleanup::new(&s.workload_id);
        let handle = driver.start(&s).await.expect("starts");
        let outcome = wait(&driver, &handle).await;
        let logs = all_logs(&driver, &handle).await;
        assert_eq!(
            outcome.reason,
            ExitReason::Completed,
            "{outcome:?} {logs:?}"
        );
        assert!(logs.contains(said), "{name}: {logs:?}");
        driver.destroy(&handle).await.expect("destroyed");
    }
    // 1 MiB files into the root until killed.
    let s = run(
        "rootfill",
        r#"mkdir -p /var/fill; i=0; while [ $i -lt 1000 ]; do head -c 1048576 /dev/zero > /var/fill/f$i; i=$((i+1)); sleep 0.05; done; echo survived"#,
        true,
    );
    let _cleanup = ContainerCleanup::new(&s.workload_id);
    let handle = driver.start(&s).await.expect("starts");
    let outcome = wait(&driver, &handle).await;
    let logs = all_logs(&driver, &handle).await;
    assert_eq!(
        outcome.reason,
        ExitReason::DiskExceeded,
        "{outcome:?} {logs:?}"
    );
    assert!(!logs.contains("survived"), "{logs:?}");
    driver.destroy(&handle).await.expect("destroyed");
}

/// An image that starts as root, takes its directory and switches to its own user (as the
/// official nginx and postgres images do, with `chown` and `gosu`) runs when granted the
/// baseline capabilities (`run.capabilities: baseline`, ADR 0013) and fails without them.
/// Granted, root holds exactly the baseline (Docker's default set without `NET_RAW`) and still
/// cannot mount; a capability past the baseline is refused before anything starts.
#[tokio::test]
async fn an_image_that_switches_users_runs_with_the_baseline_capabilities_and_no_more() {
    let Some((driver, image)) = engine("baseline capabilities").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "cat /proc/self/status; \
                  mkdir -p /outputs/db && chown 999:999 /outputs/db && echo took-the-directory; \
                  setpriv --reuid=999 --regid=999 --clear-groups \
                    sh -c 'echo \"now uid $(id -u)\"; touch /outputs/db/f && echo wrote-as-999'; \
                  mount -t tmpfs t /mnt 2>/dev/null && echo mounted || echo mount-refused";
    let run = |name: &str, capabilities: &[&str]| {
        let mut s = spec(&workload_id(name), &image, &dir.path().join(name), script);
        s.capabilities = capabilities.iter().map(|c| c.to_string()).collect();
        s
    };
    let line = |logs: &str, key: &str| {
        logs.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    for (name, capabilities) in [
        ("capsnone", &[][..]),
        ("capsbase", gpunet_runtime::GRANTABLE_CAPABILITIES),
    ] {
        let s = run(name, capabilities);
        let _cleanup = ContainerCleanup::new(&s.workload_id);
        let handle = driver.start(&s).await.expect("starts");
        let outcome = wait(&driver, &handle).await;
        let logs = all_logs(&driver, &handle).await;
        assert_eq!(
            outcome.reason,
            ExitReason::Completed,
            "{outcome:?} {logs:?}"
        );
        let granted = !capabilities.is_empty();
        // Docker's default set is 0xa80425fb; the baseline is that without NET_RAW (bit 13).
        let (eff, bnd) = if granted {
            ("00000000a80405fb", "00000000a80405fb")
        } else {
            ("0000000000000000", "0000000000000000")
        };
        assert_eq!(line(&logs, "CapEff:"), eff, "{name}: {logs}");
        assert_eq!(line(&logs, "CapBnd:"), bnd, "{name}: {logs}");
        assert_eq!(line(&logs, "NoNewPrivs:"), "1", "{name}: {logs}");
        assert_eq!(
            logs.contains("took-the-directory"),
            granted,
            "{name}: {logs}"
        );
        assert_eq!(logs.contains("now uid 999"), granted, "{name}: {logs}");
        assert_eq!(logs.contains("wrote-as-999"), granted, "{name}: {logs}");
        assert!(logs.contains("mount-refused"), "{name}: {logs}");
        driver.destroy(&handle).await.expect("destroyed");
    }
    // Past the baseline: refused, naming what may be granted.
    let s = run("capsadmin", &["CHOWN", "SYS_ADMIN"]);
    let _cleanup = ContainerCleanup::new(&s.workload_id);
    let refused = driver
        .start(&s)
        .await
        .expect_err("SYS_ADMIN is never granted");
    let said = refused.to_string();
    assert!(
        said.contains("\"SYS_ADMIN\"") && said.contains("SETUID"),
        "{said}"
    );
}

/// Most published images are run as they are: their own entrypoint, with their default
/// arguments or the job's `args` in their place; a command replaces both.
#[tokio::test]
async fn a_container_without_a_command_runs_its_images_entrypoint_with_its_args() {
    let Some((driver, _)) = engine("image entrypoint").await else {
        return;
    };
    let image = gpunet_runtime::testimage::ensure_test_image_with_entrypoint(
        &[
            "/bin/sh",
            "-c",
            "echo \"entrypoint with [$0] [$1]\"; exit 3",
        ],
        &["default-zero", "default-one"],
    )
    .await
    .expect("the entrypoint image");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, command, args, said, code) in [
        (
            "epdefault",
            vec![],
            vec![],
            "entrypoint with [default-zero] [default-one]",
            3,
        ),
        (
            "epargs",
            vec![],
            vec!["given".to_owned(), String::new()],
            "entrypoint with [given] []",
            3,
        ),
        (
            "epcommand",
            vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                "echo replaced".to_owned(),
            ],
            vec![],
            "replaced",
            0,
        ),
    ] {
        let mut s = spec(&workload_id(name), &image, &dir.path().join(name), "unused");
        s.command = command;
        s.args = args;
        let _cleanup = ContainerCleanup::new(&s.workload_id);
        let handle = driver.start(&s).await.expect("starts");
        let outcome = wait(&driver, &handle).await;
        let logs = all_logs(&driver, &handle).await;
        assert_eq!(
            outcome.exit_code,
            Some(code),
            "{name}: {outcome:?} {logs:?}"
        );
        assert_eq!(logs.trim(), said, "{name}");
        driver.destroy(&handle).await.expect("destroyed");
    }
    // Args with a command are refused: they would be silently dropped.
    let mut s = spec(
        &workload_id("epboth"),
        &image,
        &dir.path().join("epboth"),
        "true",
    );
    s.args = vec!["x".into()];
    let refused = driver.start(&s).await.expect_err("args with a command");
    assert!(refused.to_string().contains("args"), "{refused}");
}

/// A hostile job filling its checkpoint directory instead of its outputs: the mount is the
/// host's directory, so the watchdog counts it too.
#[tokio::test]
async fn a_container_filling_its_checkpoints_past_its_disk_limit_ends_disk_exceeded() {
    let Some((driver, image)) = engine("checkpoint disk limit").await else {
        return;
    };
    let id = workload_id("ckpt-disk");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    // The agent makes the directory for a job that keeps checkpoints; the driver mounts it.
    let checkpoints = gpunet_runtime::checkpoints_dir(dir.path());
    std::fs::create_dir_all(&checkpoints).expect("mkdir");
    let mut s = spec(
        &id,
        &image,
        dir.path(),
        r#"echo "into $GPUNET_CHECKPOINTS"; i=0; while [ $i -lt 1000 ]; do head -c 1048576 /dev/zero > "$GPUNET_CHECKPOINTS/f$i"; i=$((i+1)); sleep 0.02; done; echo survived"#,
    );
    s.disk_mib = Some(8);
    let handle = driver.start(&s).await.expect("starts");
    let outcome = wait(&driver, &handle).await;
    let logs = all_logs(&driver, &handle).await;
    assert!(logs.contains("into /checkpoints"), "{logs:?}");
    assert_eq!(
        outcome.reason,
        ExitReason::DiskExceeded,
        "{outcome:?} {logs:?}"
    );
    assert!(!logs.contains("survived"), "{logs:?}");
    // What the container wrote is on the host, where the agent packs it.
    let written = std::fs::read_dir(&checkpoints)
        .expect("checkpoints")
        .count();
    assert!((6..600).contains(&written), "{written} files written");
}

#[tokio::test]
async fn a_container_under_its_disk_limit_completes_and_its_tmp_is_sized_within_it() {
    let Some((driver, image)) = engine("disk under limit").await else {
        return;
    };
    let id = workload_id("diskok");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    // A 16 MiB limit gives /tmp a quarter: 4 MiB; writing 6 MiB there fails, 2 MiB to the
    // outputs is fine.
    let mut s = spec(
        &id,
        &image,
        dir.path(),
        r#"head -c 2097152 /dev/zero > /outputs/two && sleep 1.5 && if head -c 6291456 /dev/zero > /tmp/six 2>/dev/null; then echo tmp-unbounded; else echo tmp-bounded; fi"#,
    );
    s.disk_mib = Some(16);
    let handle = driver.start(&s).await.expect("starts");
    let outcome = wait(&driver, &handle).await;
    let logs = all_logs(&driver, &handle).await;
    assert_eq!(
        outcome.reason,
        ExitReason::Completed,
        "{outcome:?} {logs:?}"
    );
    assert!(logs.contains("tmp-bounded"), "{logs:?}");
}

/// A counter's value: the length of a file under the workload's outputs (0 before it exists).
fn count(root: &Path, name: &str) -> u64 {
    std::fs::metadata(root.join("outputs").join(name)).map_or(0, |m| m.len())
}

/// Waits until the `main` and `child` counters are both past `than`.
async fn both_move_past(root: &Path, than: (u64, u64)) {
    let deadline = Instant::now() + TEST_WAIT_LIMIT;
    loop {
        let now = (count(root, "main"), count(root, "child"));
        if now.0 > than.0 && now.1 > than.1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "counters stuck at {now:?}, need past {than:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_paused_container_and_its_child_hold_still_and_go_on_when_resumed() {
    let Some((driver, image)) = engine("pause").await else {
        return;
    };
    let id = workload_id("pause");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Two counters growing two bytes every 50 ms, one kept by a forked child, until `done`.
    let script = r#"
( while [ ! -e "$GPUNET_OUTPUTS/done" ]; do echo x >> "$GPUNET_OUTPUTS/child"; sleep 0.05; done ) &
while [ ! -e "$GPUNET_OUTPUTS/done" ]; do echo x >> "$GPUNET_OUTPUTS/main"; sleep 0.05; done
wait
exit 7
"#;
    let handle = driver
        .start(&spec(&id, &image, root, script))
        .await
        .expect("starts");
    both_move_past(root, (4, 4)).await;

    driver.pause(&handle).await.expect("pauses");
    driver
        .pause(&handle)
        .await
        .expect("pausing a paused container does nothing");
    let frozen = (count(root, "main"), count(root, "child"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        (count(root, "main"), count(root, "child")),
        frozen,
        "a counter moved while paused"
    );
    // A restarted agent finds it running.
    let second = DockerDriver::new();
    assert_eq!(
        second.recover(&handle).await.expect("recovers"),
        RecoverState::Running
    );

    second.resume(&handle).await.expect("resumes");
    driver
        .resume(&handle)
        .await
        .expect("resuming a running container does nothing");
    both_move_past(root, frozen).await;

    std::fs::write(root.join("outputs/done"), b"").expect("writes done");
    let outcome = wait(&driver, &handle).await;
    assert_eq!(
        (outcome.reason, outcome.exit_code),
        (ExitReason::Failed, Some(7)),
        "{outcome:?}"
    );
    driver
        .pause(&handle)
        .await
        .expect("pausing an ended container does nothing");
}

#[tokio::test]
async fn stop_on_a_paused_container_ends_it_promptly() {
    let Some((driver, image)) = engine("stop while paused").await else {
        return;
    };
    let id = workload_id("stop-paused");
    let _cleanup = ContainerCleanup::new(&id);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"trap 'echo got-term; exit 3' TERM
echo up
while :; do sleep 0.05; done"#;
    let handle = driver
        .start(&spec(&id, &image, dir.path(), script))
        .await
        .expect("starts");
    log_shows(dir.path(), "up\n").await;
    driver.pause(&handle).await.expect("pauses");
    let grace = Duration::from_secs(60);
    let asked = Instant::now();
    tokio::time::timeout(TEST_WAIT_LIMIT, driver.stop(&handle, grace))
        .await
        .expect("stop returns")
        .expect("stops");
    let took = asked.elapsed();
    println!("stop of a paused container took {took:?}");
    assert!(took < grace / 2, "stop waited out the grace: {took:?}");
    assert_eq!(wait(&driver, &handle).await.reason, ExitReason::Stopped);
    log_shows(dir.path(), "got-term").await;
}
