//! A hostile tenant's workload against both runtimes: the process sandbox and a Docker
//! container. Each attack is a real job script; each must fail for the job and leave the host,
//! the agent's files and other leases untouched.
//!
//! The attacks: reading the agent's keys and data (also by hard link and through `/proc`),
//! reading another lease's environment and files, a process that outlives its lease, reaching
//! a service on the host's loopback without egress, forking past the process limit, filling the
//! disk past `resources.disk`, and — for
//! the sandbox — writing system directories, making namespaces, mounting, and keeping a
//! capability, and using more CPU than its share.
//!
//! The process sandbox must be available where `GPUNET_REQUIRE_SANDBOX=1` (CI); otherwise the
//! process half says "skipped: …". The Docker half follows `GPUNET_REQUIRE_DOCKER=1` the same way.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gpunet_runtime::testimage::{ContainerCleanup, ensure_test_image_with};
use gpunet_runtime::{
    DockerDriver, Driver, ExitOutcome, ExitReason, ProcessDriver, WorkloadHandle, WorkloadSpec,
};
use gpunet_testkit::procs::processes_with_arg;

/// Longest any workload here may take before the test gives up.
const TEST_WAIT_LIMIT: Duration = Duration::from_secs(90);
/// Bytes every stolen-secret check looks for.
const KEY_SECRET: &str = "provider-secret-key-do-not-leak";

/// A runtime under attack.
enum Target {
    Process(ProcessDriver),
    Docker(Box<DockerDriver>, String),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Process(_) => "process sandbox",
            Target::Docker(..) => "docker",
        }
    }

    fn driver(&self) -> &dyn Driver {
        match self {
            Target::Process(d) => d,
            Target::Docker(d, _) => d.as_ref(),
        }
    }

    fn spec(&self, id: &str, root: &Path, script: &str) -> WorkloadSpec {
        WorkloadSpec {
            memory_mib: 256,
            max_duration: Duration::from_secs(60),
            image: match self {
                Target::Process(_) => None,
                Target::Docker(_, image) => Some(image.clone()),
            },
            ..WorkloadSpec::new(id, vec!["/bin/sh".into(), "-c".into(), script.into()], root)
        }
    }
}

/// The targets this machine offers: the sandbox (required under `GPUNET_REQUIRE_SANDBOX=1`)
/// and Docker (required under `GPUNET_REQUIRE_DOCKER=1`).
async fn targets(test: &str) -> Vec<Target> {
    let mut targets = Vec::new();
    if let Some(process) = gpunet_runtime::testimage::sandboxed_driver_or_skip(
        &format!("{test} (process sandbox)"),
        Vec::new(),
    ) {
        targets.push(Target::Process(process));
    }
    let docker = DockerDriver::new();
    match docker.fingerprint().await {
        Ok(_) => {
            let extra = [
                ("setsid", Path::new("/usr/bin/setsid")),
                ("ln", Path::new("/usr/bin/ln")),
                ("bash", Path::new("/usr/bin/bash")),
            ];
            let image = ensure_test_image_with(&extra)
                .await
                .unwrap_or_else(|e| panic!("could not build the test image: {e}"));
            targets.push(Target::Docker(Box::new(docker), image));
        }
        Err(error) if std::env::var("GPUNET_REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("GPUNET_REQUIRE_DOCKER=1 but the Docker Engine is unreachable: {error}")
        }
        Err(error) => println!(
            "skipped: {test} (docker): no Docker Engine ({error}); set GPUNET_REQUIRE_DOCKER=1 to make this fail"
        ),
    }
    targets
}

/// A fresh agent data directory and a lease in it for `target`: the lease's id, its
/// directory, and what removes its containers when the test ends.
fn lease_for(target: &Target, name: &str) -> (AgentData, String, PathBuf, ContainerCleanup) {
    let data = AgentData::new();
    let id = workload_id(target, name);
    let cleanup = ContainerCleanup::new(&id);
    let root = data.lease_root(&id);
    (data, id, root, cleanup)
}

/// A workload id unique to this test process and target.
fn workload_id(target: &Target, name: &str) -> String {
    let kind = match target {
        Target::Process(_) => "p",
        Target::Docker(..) => "d",
    };
    format!("t{}-{kind}-{name}", std::process::id())
}

/// A provider's data directory as the agent lays it out: keys beside the leases.
struct AgentData {
    dir: tempfile::TempDir,
}

impl AgentData {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = |path: PathBuf| {
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(&path, KEY_SECRET).expect("writes");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        };
        secret(dir.path().join("keys/provider.json"));
        secret(dir.path().join("agent/encryption.key"));
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn lease_root(&self, id: &str) -> PathBuf {
        self.path().join("agent/leases").join(id)
    }

    fn keys_untouched(&self) -> bool {
        ["keys/provider.json", "agent/encryption.key"]
            .iter()
            .all(|f| {
                std::fs::read_to_string(self.path().join(f)).ok().as_deref() == Some(KEY_SECRET)
            })
    }
}

async fn wait(driver: &dyn Driver, handle: &WorkloadHandle) -> ExitOutcome {
    tokio::time::timeout(TEST_WAIT_LIMIT, driver.wait(handle))
        .await
        .expect("the workload ends in time")
        .expect("waits")
}

/// Everything a workload left behind that it could hand to its tenant: its log and outputs.
fn everything_it_kept(root: &Path) -> String {
    let mut kept = std::fs::read_to_string(root.join("logs/combined.log")).unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(root.join("outputs")) {
        for entry in entries.flatten() {
            // Read as the agent would collect outputs: not through symlinks.
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_file() {
                kept.push_str(&String::from_utf8_lossy(
                    &std::fs::read(entry.path()).unwrap_or_default(),
                ));
            }
        }
    }
    kept
}

#[tokio::test]
async fn a_workload_cannot_read_or_link_the_agents_keys_and_data() {
    for target in targets("agent keys").await {
        let (data, id, root, _cleanup) = lease_for(&target, "keys");
        let data_dir = data.path().display();
        let script = format!(
            r#"
            D="{data_dir}"
            for f in "$D/keys/provider.json" "$D/agent/encryption.key" \
                     "../../../keys/provider.json" "/proc/1/root$D/keys/provider.json" \
                     "/proc/self/root$D/keys/provider.json"; do
                cat "$f" >> "$GPUNET_OUTPUTS/stolen" 2>/dev/null && echo "read $f"
            done
            ln "$D/keys/provider.json" "$GPUNET_OUTPUTS/hardlink" 2>/dev/null && echo linked
            ln -s "$D/keys/provider.json" "$GPUNET_OUTPUTS/symlink" 2>/dev/null
            ls -la "$D" "$D/keys" 2>&1
            exit 0
            "#
        );
        let driver = target.driver();
        let handle = driver
            .start(&target.spec(&id, &root, &script))
            .await
            .unwrap_or_else(|e| panic!("{}: starts: {e}", target.name()));
        let outcome = wait(driver, &handle).await;
        let kept = everything_it_kept(&root);
        assert!(
            !kept.contains(KEY_SECRET),
            "{}: the workload got the key out: {kept:?}",
            target.name()
        );
        assert!(!kept.contains("linked"), "{}: {kept:?}", target.name());
        assert!(
            !root.join("outputs/hardlink").exists(),
            "{}: a hard link to the key was made",
            target.name()
        );
        assert!(data.keys_untouched(), "{}: keys changed", target.name());
        assert_eq!(
            outcome.reason,
            ExitReason::Completed,
            "{}: {outcome:?}",
            target.name()
        );
    }
}

#[tokio::test]
async fn a_workload_cannot_read_another_leases_environment_or_files() {
    for target in targets("other lease").await {
        let data = AgentData::new();
        let driver = target.driver();
        let secret = format!("victim-token-{}", std::process::id());
        let victim_id = workload_id(&target, "victim");
        let _victim_cleanup = ContainerCleanup::new(&victim_id);
        let victim_root = data.lease_root(&victim_id);
        let mut victim = target.spec(
            &victim_id,
            &victim_root,
            r#"echo "$SECRET_TOKEN" > secret.txt; cp secret.txt /tmp/ 2>/dev/null; sleep 30; echo victim-done"#,
        );
        victim.env.insert("SECRET_TOKEN".into(), secret.clone());
        let victim_handle = driver.start(&victim).await.expect("victim starts");
        tokio::time::sleep(Duration::from_millis(500)).await;

        let id = workload_id(&target, "thief");
        let _cleanup = ContainerCleanup::new(&id);
        let root = data.lease_root(&id);
        let victim_work = victim_root.join("work").display().to_string();
        let script = format!(
            r#"
            for e in /proc/[0-9]*/environ; do cat "$e" 2>/dev/null | tr '\0' '\n'; done
            cat "{victim_work}/secret.txt" 2>/dev/null
            cat /proc/[0-9]*/root/tmp/secret.txt 2>/dev/null
            cat /proc/[0-9]*/cwd/secret.txt 2>/dev/null
            ls /proc
            exit 0
            "#
        );
        let handle = driver
            .start(&target.spec(&id, &root, &script))
            .await
            .expect("thief starts");
        let outcome = wait(driver, &handle).await;
        let kept = everything_it_kept(&root);
        assert!(
            !kept.contains(&secret),
            "{}: the victim's secret leaked: {kept:?}",
            target.name()
        );
        assert_eq!(
            outcome.reason,
            ExitReason::Completed,
            "{}: {outcome:?}",
            target.name()
        );

        // The victim ran on untouched.
        assert!(
            driver.recover(&victim_handle).await.is_ok(),
            "{}: victim unknown",
            target.name()
        );
        driver
            .stop(&victim_handle, Duration::from_secs(1))
            .await
            .expect("victim stops");
        let victim_outcome = wait(driver, &victim_handle).await;
        assert_eq!(
            victim_outcome.reason,
            ExitReason::Stopped,
            "{}",
            target.name()
        );
        assert!(data.keys_untouched());
    }
}

#[tokio::test]
async fn no_process_of_a_lease_outlives_it_even_in_a_new_session() {
    for target in targets("outlive").await {
        let (_data, id, root, _cleanup) = lease_for(&target, "outlive");
        let marker = format!("91.{}{}", std::process::id(), target.name().len());
        let script = format!(
            r#"
            setsid sh -c 'exec sleep {marker}' < /dev/null > /dev/null 2>&1 &
            (sleep {marker} < /dev/null > /dev/null 2>&1 &)
            sleep 0.3
            echo escaped
            exit 0
            "#
        );
        let driver = target.driver();
        let handle = driver
            .start(&target.spec(&id, &root, &script))
            .await
            .expect("starts");
        let outcome = wait(driver, &handle).await;
        assert_eq!(
            outcome.reason,
            ExitReason::Completed,
            "{}: {outcome:?}",
            target.name()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_with_arg(&marker).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let survivors = processes_with_arg(&marker);
        for pid in &survivors {
            // Do not leave them behind either way.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        assert!(
            survivors.is_empty(),
            "{}: processes {survivors:?} outlived their lease",
            target.name()
        );
    }
}

#[tokio::test]
async fn a_workload_without_egress_cannot_reach_a_service_on_the_hosts_loopback() {
    for target in targets("loopback").await {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let (_data, id, root, _cleanup) = lease_for(&target, "loopback");
        let script = format!(
            r#"
            if bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; echo hello >&3' 2>/dev/null; then
                echo connected
            else
                echo refused
            fi
            "#
        );
        let driver = target.driver();
        let handle = driver
            .start(&target.spec(&id, &root, &script))
            .await
            .expect("starts");
        let outcome = wait(driver, &handle).await;
        let kept = everything_it_kept(&root);
        assert!(kept.contains("refused"), "{}: {kept:?}", target.name());
        assert!(!kept.contains("connected"), "{}: {kept:?}", target.name());
        assert!(
            listener.accept().is_err(),
            "{}: the host's loopback service was reached",
            target.name()
        );
        assert_eq!(outcome.reason, ExitReason::Completed, "{}", target.name());
    }
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_process_limit_and_the_host_can_still_fork() {
    for target in targets("fork bomb").await {
        let (_data, id, root, _cleanup) = lease_for(&target, "forks");
        let marker = format!("30.{}{}", std::process::id(), target.name().len());
        let script = format!(
            r#"
            # The shell gives up at the first failed fork, so fork from a subshell.
            ( i=0; while [ $i -lt 150 ]; do sleep {marker} 2>/dev/null & i=$((i+1)); done )
            echo spawned
            exec sleep 20
            "#
        );
        let mut spec = target.spec(&id, &root, &script);
        spec.pids_limit = 32;
        let driver = target.driver();
        let handle = driver.start(&spec).await.expect("starts");
        // Let the loop run into the limit.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(root.join("logs/combined.log"))
            .unwrap_or_default()
            .contains("spawned")
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let running = processes_with_arg(&marker).len();
        assert!(
            running > 0 && running <= 32,
            "{}: {running} processes of a lease limited to 32: {}",
            target.name(),
            std::fs::read_to_string(root.join("logs/combined.log")).unwrap_or_default()
        );
        // The host still forks.
        assert!(
            std::process::Command::new("true")
                .status()
                .expect("the host can fork")
                .success()
        );
        driver
            .stop(&handle, Duration::from_secs(1))
            .await
            .expect("stops");
        let outcome = wait(driver, &handle).await;
        assert_eq!(outcome.reason, ExitReason::Stopped, "{}", target.name());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_with_arg(&marker).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(processes_with_arg(&marker).is_empty(), "{}", target.name());
    }
}

#[tokio::test]
async fn a_sandboxed_workload_has_no_privilege_and_no_way_to_get_one() {
    let targets = targets("privileges").await;
    let Some(Target::Process(driver)) = targets
        .into_iter()
        .find(|t| matches!(t, Target::Process(_)))
    else {
        return;
    };
    let data = AgentData::new();
    let id = format!("t{}-privileges", std::process::id());
    let root = data.lease_root(&id);
    let script = r#"
        grep -E '^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
        touch /usr/pwned 2>/dev/null && echo wrote-usr
        touch /etc/pwned 2>/dev/null && echo wrote-etc
        touch /pwned 2>/dev/null && echo wrote-root
        mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>/dev/null && echo mounted
        unshare -r true 2>/dev/null && echo unshared
        unshare -n true 2>/dev/null && echo unshared-net
        echo "pid-of-self=$$"
        ls /proc | grep -c '^[0-9]' | sed 's/^/visible-processes=/'
        touch /work/ok /outputs/ok /tmp/ok && echo own-dirs-writable
        hostname
        exit 0
    "#;
    let handle = driver
        .start(&WorkloadSpec {
            memory_mib: 256,
            ..WorkloadSpec::new(
                &id,
                vec!["/bin/sh".into(), "-c".into(), script.into()],
                &root,
            )
        })
        .await
        .expect("starts");
    let outcome = wait(&driver, &handle).await;
    let log = std::fs::read_to_string(root.join("logs/combined.log")).expect("log");
    assert_eq!(outcome.reason, ExitReason::Completed, "{outcome:?} {log}");
    for expected in [
        "Uid:\t1000\t1000\t1000\t1000",
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "own-dirs-writable",
    ] {
        assert!(log.contains(expected), "{expected:?} not in {log}");
    }
    for forbidden in [
        "wrote-usr",
        "wrote-etc",
        "wrote-root",
        "mounted",
        "unshared",
    ] {
        assert!(!log.contains(forbidden), "{forbidden:?} in {log}");
    }
    // Its shell is not PID 1 (the sandbox's init is), and it sees only its own processes.
    let visible: u32 = log
        .lines()
        .find_map(|l| l.strip_prefix("visible-processes="))
        .and_then(|n| n.trim().parse().ok())
        .expect("counted processes");
    assert!(visible <= 6, "sees {visible} processes: {log}");
    assert!(log.contains(&format!("{id}\n")), "hostname: {log}");
}

#[tokio::test]
async fn a_sandboxed_busy_loop_is_held_to_its_cpu_share() {
    let targets = targets("cpu share").await;
    let Some(Target::Process(driver)) = targets
        .into_iter()
        .find(|t| matches!(t, Target::Process(_)))
    else {
        return;
    };
    // "cgroup v1 …" or "cgroup v2 …" when the sandbox has cgroups (not the "cgroup
    // namespaces" it always has).
    let detail = format!("{:?}", driver.isolation());
    if !detail.contains("cgroup v1") && !detail.contains("cgroup v2") {
        assert!(
            std::env::var("GPUNET_REQUIRE_SANDBOX").as_deref() != Ok("1"),
            "GPUNET_REQUIRE_SANDBOX=1 but the sandbox has no cgroups: {detail}"
        );
        println!("skipped: cpu share: the sandbox has no cgroup here");
        return;
    }
    let data = AgentData::new();
    let id = format!("t{}-cpu", std::process::id());
    let root = data.lease_root(&id);
    // The loop measures itself: its CPU ticks (1/100 s) over about 3 s of wall time, measured
    // too (a loaded machine stretches the sleep).
    let script = r#"
        ( while :; do :; done ) &
        loop=$!
        echo "uptime-before=$(cut -d' ' -f1 /proc/uptime)"
        sleep 3
        set -- $(cut -d')' -f2 /proc/$loop/stat)
        echo "cpu-ticks=$(( ${12} + ${13} ))"
        echo "uptime-after=$(cut -d' ' -f1 /proc/uptime)"
        kill $loop
        exit 0
    "#;
    let spec = WorkloadSpec {
        cpu_millis: 200,
        ..WorkloadSpec::new(
            &id,
            vec!["/bin/sh".into(), "-c".into(), script.into()],
            &root,
        )
    };
    let handle = driver.start(&spec).await.expect("starts");
    let outcome = wait(&driver, &handle).await;
    let log = std::fs::read_to_string(root.join("logs/combined.log")).expect("log");
    assert_eq!(outcome.reason, ExitReason::Completed, "{outcome:?} {log}");
    let ticks: u64 = log
        .lines()
        .find_map(|l| l.strip_prefix("cpu-ticks="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cpu-ticks in {log}"));
    let uptime = |key: &str| -> f64 {
        log.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {log}"))
    };
    let wall_ticks = (uptime("uptime-after=") - uptime("uptime-before=")) * 100.0;
    // 0.2 of a core is 20 ticks a second (60 in 3 s); running free it would be about 100 a
    // second. Half again over the share, plus a little, is the bound.
    assert!(
        (ticks as f64) <= wall_ticks * 0.2 * 1.5 + 10.0,
        "{ticks} ticks of CPU in {wall_ticks:.0} ticks of wall time at 0.2 cores: {log}"
    );
    assert!(ticks > 0, "{log}");
}

#[tokio::test]
async fn filling_the_disk_past_its_limit_ends_the_lease_disk_exceeded() {
    for target in targets("disk").await {
        let (data, id, root, _cleanup) = lease_for(&target, "disk");
        // 1 MiB files, each under any file size limit, into both of its writable directories.
        let script = r#"
            i=0
            while [ $i -lt 1000 ]; do
                head -c 1048576 /dev/zero > "$GPUNET_OUTPUTS/o$i"
                head -c 1048576 /dev/zero > "./w$i" 2>/dev/null
                i=$((i+1)); sleep 0.02
            done
            echo survived
        "#;
        let mut spec = target.spec(&id, &root, script);
        spec.disk_mib = Some(8);
        let driver = target.driver();
        let handle = driver.start(&spec).await.expect("starts");
        let outcome = wait(driver, &handle).await;
        let kept = everything_it_kept(&root);
        assert_eq!(
            outcome.reason,
            ExitReason::DiskExceeded,
            "{}: {outcome:?}",
            target.name()
        );
        assert!(!kept.contains("survived"), "{}", target.name());
        let written = std::fs::read_dir(root.join("outputs"))
            .map(|d| d.count())
            .unwrap_or(0);
        // Far from the 1000 MiB it would write; wide, for a loaded machine's slower scans.
        assert!(
            written < 600,
            "{}: {written} MiB written against a limit of 8",
            target.name()
        );
        assert!(data.keys_untouched());
    }
}
