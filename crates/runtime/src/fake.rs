//! A driver that runs nothing, for the agent's unit tests: it writes a configured log and
//! outputs, then ends with a configured outcome. Time comes from tokio, so tests may pause it.
//! `pause` holds a workload's run time until `resume` (its wall-clock limit keeps counting, as
//! with the real drivers), and [`FakeDriver::is_paused`] lets tests see it.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::driver::{Driver, DriverInfo, RecoverState, check_driver};
use crate::error::{DriverError, SpecError};
use crate::logs::{LogCap, read_chunk};
use crate::workload::{
    ExitOutcome, ExitReason, LogChunk, Usage, WorkloadHandle, WorkloadSpec, create_workload_dirs,
    log_path, outputs_dir, remove_work_dir,
};

/// The name of this driver, as written into handles.
pub const FAKE_DRIVER_NAME: &str = "fake";

/// A scripted driver. By default every workload completes at once with exit 0, no log and no
/// outputs; the builder methods change that for all workloads it starts.
#[derive(Debug, Default)]
pub struct FakeDriver {
    script: Script,
    workloads: Mutex<BTreeMap<String, FakeEntry>>,
    started: Mutex<Vec<WorkloadSpec>>,
}

#[derive(Debug, Clone)]
struct Script {
    reason: ExitReason,
    exit_code: Option<i32>,
    signal: Option<i32>,
    outputs: Vec<(String, Vec<u8>)>,
    log: Vec<u8>,
    run_time: Duration,
    hangs: bool,
    unusable: Option<String>,
    /// `pause` fails with `PauseUnsupported` and this reason.
    cannot_pause: Option<String>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            reason: ExitReason::Completed,
            exit_code: Some(0),
            signal: None,
            outputs: Vec::new(),
            log: Vec::new(),
            run_time: Duration::ZERO,
            hangs: false,
            unusable: None,
            cannot_pause: None,
        }
    }
}

#[derive(Debug, Clone)]
struct FakeEntry {
    outcome: watch::Receiver<Option<ExitOutcome>>,
    stop: Arc<watch::Sender<bool>>,
    paused: Arc<watch::Sender<bool>>,
}

impl FakeDriver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Workloads end with this reason and exit code (and no signal).
    pub fn with_exit(mut self, reason: ExitReason, exit_code: Option<i32>) -> Self {
        self.script.reason = reason;
        self.script.exit_code = exit_code;
        self.script.signal = None;
        self
    }

    /// Workloads end killed by `signal`, with this reason.
    pub fn with_signal(mut self, reason: ExitReason, signal: i32) -> Self {
        self.script.reason = reason;
        self.script.exit_code = None;
        self.script.signal = Some(signal);
        self
    }

    /// Workloads write `contents` to `outputs/<relative_path>` just before they end normally.
    ///
    /// # Panics
    /// If `relative_path` is not a plain relative path (a test's own mistake).
    pub fn with_output(mut self, relative_path: &str, contents: impl Into<Vec<u8>>) -> Self {
        let path = Path::new(relative_path);
        assert!(
            !relative_path.is_empty()
                && path.components().all(|c| matches!(c, Component::Normal(_))),
            "fake output path {relative_path:?} must be relative, without '..'"
        );
        self.script
            .outputs
            .push((relative_path.to_owned(), contents.into()));
        self
    }

    /// Workloads write this to their combined log when they start (subject to the log cap).
    pub fn with_log(mut self, log: impl Into<Vec<u8>>) -> Self {
        self.script.log = log.into();
        self
    }

    /// Workloads run this long before ending (ended early by `stop` or the wall-clock limit).
    pub fn with_run_time(mut self, run_time: Duration) -> Self {
        self.script.run_time = run_time;
        self
    }

    /// Workloads run until stopped or until their `max_duration` passes.
    pub fn hanging(mut self) -> Self {
        self.script.hangs = true;
        self
    }

    /// `fingerprint` fails with this reason.
    pub fn unusable(mut self, reason: impl Into<String>) -> Self {
        self.script.unusable = Some(reason.into());
        self
    }

    /// `pause` fails with [`DriverError::PauseUnsupported`] and this reason (the workload runs on).
    pub fn unpausable(mut self, why: impl Into<String>) -> Self {
        self.script.cannot_pause = Some(why.into());
        self
    }

    /// Whether the workload is paused now: `pause` was called, and no `resume` since, and it has
    /// not ended. `false` for a workload this driver does not know.
    pub fn is_paused(&self, workload_id: &str) -> bool {
        self.lock()
            .get(workload_id)
            .is_some_and(|e| e.outcome.borrow().is_none() && *e.paused.borrow())
    }

    /// Every spec `start` accepted, in order.
    pub fn started_specs(&self) -> Vec<WorkloadSpec> {
        self.started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FakeEntry>> {
        self.workloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry(&self, handle: &WorkloadHandle) -> Result<Option<FakeEntry>, DriverError> {
        check_driver(FAKE_DRIVER_NAME, handle)?;
        Ok(self.lock().get(&handle.workload_id).cloned())
    }

    fn known(&self, handle: &WorkloadHandle) -> Result<FakeEntry, DriverError> {
        self.entry(handle)?
            .ok_or_else(|| DriverError::UnknownWorkload {
                workload_id: handle.workload_id.clone(),
            })
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_path_buf();
    move |source| DriverError::Io {
        action,
        path,
        source,
    }
}

#[async_trait::async_trait]
impl Driver for FakeDriver {
    fn name(&self) -> &'static str {
        FAKE_DRIVER_NAME
    }

    async fn fingerprint(&self) -> Result<DriverInfo, DriverError> {
        match &self.script.unusable {
            Some(reason) => Err(DriverError::Unavailable {
                driver: FAKE_DRIVER_NAME,
                reason: reason.clone(),
            }),
            None => Ok(DriverInfo {
                name: FAKE_DRIVER_NAME.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                detail: "runs nothing".into(),
                isolated: true,
            }),
        }
    }

    async fn start(&self, spec: &WorkloadSpec) -> Result<WorkloadHandle, DriverError> {
        spec.validate()?;
        if !spec.companions.is_empty() {
            return Err(SpecError::CompanionsUnsupported.into());
        }
        if !spec.volumes.is_empty() || spec.restarts > 0 {
            return Err(SpecError::VolumesUnsupported.into());
        }
        let root = spec.root_dir.clone();
        create_workload_dirs(&root)?;
        let log = LogCap::new(0, spec.log_limit_bytes).admit(&self.script.log);
        gpunet_files::write_private(&log_path(&root), &log)
            .map_err(io_error("write log", &log_path(&root)))?;

        let (outcome_tx, outcome_rx) = watch::channel(None);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let (paused_tx, mut paused_rx) = watch::channel(false);
        {
            let mut map = self.lock();
            if map.contains_key(&spec.workload_id) {
                return Err(DriverError::AlreadyExists {
                    workload_id: spec.workload_id.clone(),
                });
            }
            map.insert(
                spec.workload_id.clone(),
                FakeEntry {
                    outcome: outcome_rx,
                    stop: Arc::new(stop_tx),
                    paused: Arc::new(paused_tx),
                },
            );
        }
        self.started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(spec.clone());

        let script = self.script.clone();
        let max_duration = spec.max_duration;
        let workload_id = spec.workload_id.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let run = async {
                if script.hangs {
                    std::future::pending::<()>().await;
                }
                // Run time passes only while not paused.
                let mut left = script.run_time;
                loop {
                    // An error means the driver is gone; the workload can no longer be paused.
                    let _ = paused_rx.wait_for(|paused| !*paused).await;
                    let resumed = tokio::time::Instant::now();
                    tokio::select! {
                        () = tokio::time::sleep(left) => break,
                        paused = async { paused_rx.wait_for(|paused| *paused).await.is_ok() } => {
                            if !paused {
                                tokio::time::sleep(left).await;
                                break;
                            }
                            left = left.saturating_sub(resumed.elapsed());
                        }
                    }
                }
            };
            let stopped = async {
                // An error means the driver is gone; then only the clock ends the workload.
                if stop_rx.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let (reason, exit_code, signal) = tokio::select! {
                () = run => {
                    for (name, contents) in &script.outputs {
                        let path = outputs_dir(&root).join(name);
                        let written = match path.parent() {
                            Some(parent) => std::fs::create_dir_all(parent).and_then(|()| std::fs::write(&path, contents)),
                            None => std::fs::write(&path, contents),
                        };
                        if let Err(error) = written {
                            tracing::warn!(%workload_id, ?path, %error, "fake driver could not write an output");
                        }
                    }
                    (script.reason, script.exit_code, script.signal)
                }
                () = tokio::time::sleep(max_duration) => (ExitReason::WallClockLimit, None, Some(libc::SIGKILL)),
                () = stopped => (ExitReason::Stopped, None, Some(libc::SIGTERM)),
            };
            let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            outcome_tx.send_replace(Some(ExitOutcome {
                exit_code,
                signal,
                reason,
                usage: Usage {
                    wall_ms,
                    ..Usage::default()
                },
            }));
        });
        Ok(WorkloadHandle {
            workload_id: spec.workload_id.clone(),
            driver: FAKE_DRIVER_NAME.into(),
            pid: None,
            start_ticks: None,
            root_dir: spec.root_dir.clone(),
        })
    }

    async fn wait(&self, handle: &WorkloadHandle) -> Result<ExitOutcome, DriverError> {
        let mut outcome = self.known(handle)?.outcome;
        let gone = || DriverError::SupervisorGone {
            workload_id: handle.workload_id.clone(),
        };
        let seen = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| gone())?;
        seen.clone().ok_or_else(gone)
    }

    async fn logs(
        &self,
        handle: &WorkloadHandle,
        from_offset: u64,
        max_bytes: usize,
    ) -> Result<LogChunk, DriverError> {
        let ended = self
            .entry(handle)?
            .is_none_or(|e| e.outcome.borrow().is_some());
        let (data, len) = read_chunk(&log_path(&handle.root_dir), from_offset, max_bytes)?;
        let next_offset = from_offset + data.len() as u64;
        Ok(LogChunk {
            data,
            next_offset,
            finished: ended && next_offset >= len,
        })
    }

    async fn stop(&self, handle: &WorkloadHandle, _grace: Duration) -> Result<(), DriverError> {
        let entry = self.known(handle)?;
        if entry.outcome.borrow().is_some() {
            return Ok(());
        }
        entry.stop.send_replace(true);
        self.wait(handle).await.map(|_| ())
    }

    async fn pause(&self, handle: &WorkloadHandle) -> Result<(), DriverError> {
        let entry = self.known(handle)?;
        if entry.outcome.borrow().is_some() {
            return Ok(());
        }
        if let Some(why) = &self.script.cannot_pause {
            return Err(DriverError::PauseUnsupported {
                workload_id: handle.workload_id.clone(),
                why: why.clone(),
            });
        }
        entry.paused.send_replace(true);
        Ok(())
    }

    async fn resume(&self, handle: &WorkloadHandle) -> Result<(), DriverError> {
        let entry = self.known(handle)?;
        entry.paused.send_replace(false);
        Ok(())
    }

    async fn destroy(&self, handle: &WorkloadHandle) -> Result<(), DriverError> {
        if let Some(entry) = self.entry(handle)?
            && entry.outcome.borrow().is_none()
        {
            return Err(DriverError::StillRunning {
                workload_id: handle.workload_id.clone(),
            });
        }
        remove_work_dir(&handle.root_dir)?;
        self.lock().remove(&handle.workload_id);
        Ok(())
    }

    async fn recover(&self, handle: &WorkloadHandle) -> Result<RecoverState, DriverError> {
        let Some(entry) = self.entry(handle)? else {
            return Ok(RecoverState::Lost);
        };
        let outcome = entry.outcome.borrow().clone();
        Ok(outcome.map_or(RecoverState::Running, RecoverState::Exited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: &Path) -> WorkloadSpec {
        WorkloadSpec {
            memory_mib: 128,
            max_duration: Duration::from_secs(60),
            log_limit_bytes: 1024,
            ..WorkloadSpec::new("lease-1", vec!["train".into()], root)
        }
    }

    #[tokio::test]
    async fn fake_workload_writes_its_outputs_and_log_then_completes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = FakeDriver::new()
            .with_output("model/weights.bin", b"w".to_vec())
            .with_log("epoch 1\n");
        let handle = driver.start(&spec(dir.path())).await.expect("starts");
        let outcome = driver.wait(&handle).await.expect("waits");
        assert_eq!(outcome.reason, ExitReason::Completed);
        assert_eq!(
            std::fs::read(dir.path().join("outputs/model/weights.bin")).expect("output"),
            b"w"
        );
        let chunk = driver.logs(&handle, 0, 100).await.expect("logs");
        assert_eq!(chunk.data, b"epoch 1\n");
        assert!(chunk.finished);
        assert_eq!(
            driver.recover(&handle).await.expect("recovers"),
            RecoverState::Exited(outcome)
        );
        assert_eq!(driver.started_specs().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_fake_workload_ends_when_stopped_or_at_its_wall_clock_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = FakeDriver::new().hanging();
        let handle = driver.start(&spec(dir.path())).await.expect("starts");
        assert_eq!(
            driver.recover(&handle).await.expect("recovers"),
            RecoverState::Running
        );
        assert!(matches!(
            driver.destroy(&handle).await,
            Err(DriverError::StillRunning { .. })
        ));
        driver
            .stop(&handle, Duration::from_secs(1))
            .await
            .expect("stops");
        assert_eq!(
            driver.wait(&handle).await.expect("waits").reason,
            ExitReason::Stopped
        );
        driver.destroy(&handle).await.expect("destroys");

        let mut other = spec(dir.path());
        other.workload_id = "lease-2".into();
        let handle = driver.start(&other).await.expect("starts");
        assert_eq!(
            driver.wait(&handle).await.expect("waits").reason,
            ExitReason::WallClockLimit
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paused_fake_workload_holds_its_run_time_until_resumed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = FakeDriver::new().with_run_time(Duration::from_secs(10));
        let handle = driver.start(&spec(dir.path())).await.expect("starts");
        tokio::time::sleep(Duration::from_secs(4)).await;
        driver.pause(&handle).await.expect("pauses");
        driver
            .pause(&handle)
            .await
            .expect("pausing twice does nothing");
        assert!(driver.is_paused(&handle.workload_id));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            driver.recover(&handle).await.expect("recovers"),
            RecoverState::Running,
            "a paused workload has not ended"
        );
        driver.resume(&handle).await.expect("resumes");
        driver
            .resume(&handle)
            .await
            .expect("resuming twice does nothing");
        assert!(!driver.is_paused(&handle.workload_id));
        let outcome = driver.wait(&handle).await.expect("waits");
        assert_eq!(outcome.reason, ExitReason::Completed);
        // 4 s, 30 s paused, then the 6 s left.
        assert_eq!(outcome.usage.wall_ms, 40_000);
        driver
            .pause(&handle)
            .await
            .expect("pausing an ended workload does nothing");
        assert!(!driver.is_paused(&handle.workload_id));
    }

    #[tokio::test(start_paused = true)]
    async fn paused_fake_workload_still_stops_and_a_driver_can_refuse_to_pause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = FakeDriver::new().hanging();
        let handle = driver.start(&spec(dir.path())).await.expect("starts");
        driver.pause(&handle).await.expect("pauses");
        driver
            .stop(&handle, Duration::from_secs(1))
            .await
            .expect("stops");
        assert_eq!(
            driver.wait(&handle).await.expect("waits").reason,
            ExitReason::Stopped
        );

        let driver = FakeDriver::new().hanging().unpausable("no freezer");
        let handle = driver.start(&spec(dir.path())).await.expect("starts");
        assert!(matches!(
            driver.pause(&handle).await,
            Err(DriverError::PauseUnsupported { why, .. }) if why == "no freezer"
        ));
        assert!(!driver.is_paused(&handle.workload_id));
    }

    #[tokio::test]
    async fn fake_driver_reports_the_configured_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = FakeDriver::new()
            .with_exit(ExitReason::Failed, Some(3))
            .unusable("no engine");
        assert!(matches!(
            driver.fingerprint().await,
            Err(DriverError::Unavailable { .. })
        ));
        let handle = driver.start(&spec(dir.path())).await.expect("starts");
        let outcome = driver.wait(&handle).await.expect("waits");
        assert_eq!(
            (outcome.reason, outcome.exit_code),
            (ExitReason::Failed, Some(3))
        );
    }
}
