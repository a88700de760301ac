//! `pause` and `resume` of the process driver against real processes: a workload and a child
//! it forked (into a session of its own) stop counting while paused and go on when resumed, a
//! paused workload still stops promptly, and a restarted driver finds it running and resumes
//! it. The sandboxed tests need the sandbox: without it they say so and pass, unless
//! `GPUNET_REQUIRE_SANDBOX=1` (set in CI) makes that a failure.

use std::path::Path;
use std::time::{Duration, Instant};

use gpunet_runtime::{
    Driver, ExitReason, ProcessDriver, RecoverState, WorkloadHandle, WorkloadSpec,
};

/// Longest a workload may take to show progress, or to end, before the test gives up.
const PROGRESS_LIMIT: Duration = Duration::from_secs(60);
/// How long a paused workload is watched for not moving: the loops tick every 50 ms, so this
/// is twenty ticks.
const STILL_FOR: Duration = Duration::from_secs(1);

/// Two counters, each a file that grows by two bytes every 50 ms: `main`, kept by the
/// workload's shell, and `child`, kept by a child it forked into a session of its own (out of
/// the process group `stop` signals). Both loops end once `done` appears; then exit 7.
const COUNTING: &str = r#"
setsid /bin/sh -c 'while [ ! -e "$GPUNET_OUTPUTS/done" ]; do echo x >> "$GPUNET_OUTPUTS/child"; sleep 0.05; done' &
while [ ! -e "$GPUNET_OUTPUTS/done" ]; do echo x >> "$GPUNET_OUTPUTS/main"; sleep 0.05; done
wait
exit 7
"#;

/// The sandboxed driver, or `None` (after saying why) where this machine has no sandbox and
/// `GPUNET_REQUIRE_SANDBOX` is not set.
fn sandboxed_driver(test: &str) -> Option<ProcessDriver> {
    gpunet_runtime::testimage::sandboxed_driver_or_skip(test, Vec::new())
}

fn spec(root: &Path, script: &str) -> WorkloadSpec {
    WorkloadSpec {
        memory_mib: 512,
        max_duration: Duration::from_secs(300),
        ..WorkloadSpec::new(
            "lease-pause",
            vec!["/bin/sh".into(), "-c".into(), script.into()],
            root,
        )
    }
}

/// A counter's value: its file's length (0 before the first tick).
fn count(root: &Path, name: &str) -> u64 {
    std::fs::metadata(root.join("outputs").join(name)).map_or(0, |m| m.len())
}

fn counts(root: &Path) -> (u64, u64) {
    (count(root, "main"), count(root, "child"))
}

/// Waits until both counters are past `than`.
async fn both_move_past(root: &Path, than: (u64, u64)) {
    let started = Instant::now();
    loop {
        let now = counts(root);
        if now.0 > than.0 && now.1 > than.1 {
            return;
        }
        assert!(
            started.elapsed() < PROGRESS_LIMIT,
            "counters stuck at {now:?} (need past {than:?}) for {PROGRESS_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts the counting workload, checks pause freezes both counters and resume frees them,
/// then lets it finish.
async fn pause_holds_both_counters_and_resume_frees_them(driver: &ProcessDriver) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let handle = driver.start(&spec(root, COUNTING)).await.expect("starts");
    both_move_past(root, (4, 4)).await;

    let asked = Instant::now();
    driver.pause(&handle).await.expect("pauses");
    println!("pause took {:?}", asked.elapsed());
    driver
        .pause(&handle)
        .await
        .expect("pausing a paused workload does nothing");
    let frozen = counts(root);
    tokio::time::sleep(STILL_FOR).await;
    assert_eq!(
        counts(root),
        frozen,
        "a counter moved while the workload was paused"
    );
    assert_eq!(
        driver.recover(&handle).await.expect("recovers"),
        RecoverState::Running
    );

    driver.resume(&handle).await.expect("resumes");
    driver
        .resume(&handle)
        .await
        .expect("resuming a running workload does nothing");
    both_move_past(root, frozen).await;

    std::fs::write(root.join("outputs/done"), b"").expect("writes done");
    let outcome = tokio::time::timeout(PROGRESS_LIMIT, driver.wait(&handle))
        .await
        .expect("ends in time")
        .expect("waits");
    assert_eq!(
        (outcome.reason, outcome.exit_code),
        (ExitReason::Failed, Some(7)),
        "{outcome:?}"
    );
    driver
        .pause(&handle)
        .await
        .expect("pausing an ended workload does nothing");
    driver
        .resume(&handle)
        .await
        .expect("resuming an ended workload does nothing");
}

#[tokio::test]
async fn sandboxed_workload_and_its_forked_child_hold_still_while_paused_and_go_on_when_resumed() {
    let Some(driver) = sandboxed_driver("sandboxed pause") else {
        return;
    };
    pause_holds_both_counters_and_resume_frees_them(&driver).await;
}

#[tokio::test]
async fn unsandboxed_workload_and_its_forked_child_hold_still_while_paused_and_go_on_when_resumed()
{
    let driver = ProcessDriver::unsandboxed("the test asks for the unsandboxed path");
    pause_holds_both_counters_and_resume_frees_them(&driver).await;
}

/// The workload traps SIGTERM and says so: a stop that only killed it after the grace would
/// neither be prompt nor log the trap.
async fn stop_on_a_paused_workload_ends_it_promptly_by_its_sigterm(driver: &ProcessDriver) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let script = r#"trap 'echo got-term; exit 3' TERM
while :; do echo x >> "$GPUNET_OUTPUTS/main"; sleep 0.05; done"#;
    let handle = driver.start(&spec(root, script)).await.expect("starts");
    let started = Instant::now();
    while count(root, "main") < 4 {
        assert!(
            started.elapsed() < PROGRESS_LIMIT,
            "the workload never ticked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    driver.pause(&handle).await.expect("pauses");

    let grace = Duration::from_secs(60);
    let asked = Instant::now();
    tokio::time::timeout(PROGRESS_LIMIT, driver.stop(&handle, grace))
        .await
        .expect("stop returns")
        .expect("stops");
    let took = asked.elapsed();
    println!("stop of a paused workload took {took:?}");
    assert!(took < grace / 2, "stop waited out the grace: {took:?}");
    let outcome = driver.wait(&handle).await.expect("waits");
    assert_eq!(outcome.reason, ExitReason::Stopped, "{outcome:?}");
    let log = std::fs::read_to_string(root.join("logs/combined.log")).expect("log");
    assert!(log.contains("got-term"), "the trap never ran: {log:?}");
}

#[tokio::test]
async fn stop_on_a_paused_sandboxed_workload_ends_it_promptly() {
    let Some(driver) = sandboxed_driver("sandboxed stop while paused") else {
        return;
    };
    stop_on_a_paused_workload_ends_it_promptly_by_its_sigterm(&driver).await;
}

#[tokio::test]
async fn stop_on_a_paused_unsandboxed_workload_ends_it_promptly() {
    let driver = ProcessDriver::unsandboxed("the test asks for the unsandboxed path");
    stop_on_a_paused_workload_ends_it_promptly_by_its_sigterm(&driver).await;
}

#[tokio::test]
async fn restarted_driver_recovers_a_paused_workload_as_running_and_resumes_it() {
    let Some(first) = sandboxed_driver("recover while paused") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let handle = first.start(&spec(root, COUNTING)).await.expect("starts");
    both_move_past(root, (4, 4)).await;
    first.pause(&handle).await.expect("pauses");
    let json = serde_json::to_string(&handle).expect("serializes");
    let handle: WorkloadHandle = serde_json::from_str(&json).expect("deserializes");

    let second = ProcessDriver::new();
    assert_eq!(
        second.recover(&handle).await.expect("recovers"),
        RecoverState::Running,
        "a paused workload has not ended"
    );
    let frozen = counts(root);
    tokio::time::sleep(STILL_FOR).await;
    assert_eq!(counts(root), frozen, "a counter moved while paused");
    second.resume(&handle).await.expect("resumes");
    both_move_past(root, frozen).await;
    second.pause(&handle).await.expect("pauses again");
    let frozen = counts(root);
    tokio::time::sleep(STILL_FOR).await;
    assert_eq!(counts(root), frozen, "a counter moved while paused again");

    tokio::time::timeout(
        PROGRESS_LIMIT,
        second.stop(&handle, Duration::from_secs(60)),
    )
    .await
    .expect("stop returns")
    .expect("stops");
    assert_eq!(
        second.wait(&handle).await.expect("waits").reason,
        ExitReason::Stopped
    );
    // The driver that started it sees the exit too.
    tokio::time::timeout(PROGRESS_LIMIT, first.wait(&handle))
        .await
        .expect("the first driver sees the end")
        .expect("waits");
}
