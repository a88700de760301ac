//! The one small trait every workload driver implements (process, Docker, fake), so the agent
//! can swap them freely.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::DriverError;
use crate::workload::{
    ExecOutput, ExitOutcome, LogChunk, PublishedPort, WorkloadHandle, WorkloadSpec,
};

/// What [`Driver::fingerprint`] found: the driver is usable here, in this version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    pub name: String,
    pub version: String,
    /// Free-form facts worth logging (kernel release, engine version).
    pub detail: String,
    /// Whether workloads are walled off from the host and from each other (a container, or
    /// the process sandbox). The agent runs a stranger's job only on an isolating driver.
    pub isolated: bool,
}

/// What [`Driver::recover`] found for a workload persisted before an agent restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoverState {
    Running,
    Exited(ExitOutcome),
    Lost,
}

/// Runs workloads. All methods may be called concurrently; `wait` in particular may be pending
/// while `logs` and `stop` are called.
#[async_trait::async_trait]
pub trait Driver: Send + Sync {
    /// `"process"`, `"fake"`, ...; also written into every [`WorkloadHandle`].
    fn name(&self) -> &'static str;
    /// Whether this driver can run workloads here, and its version.
    async fn fingerprint(&self) -> Result<DriverInfo, DriverError>;
    /// Validates the spec, prepares its directories and starts it.
    async fn start(&self, spec: &WorkloadSpec) -> Result<WorkloadHandle, DriverError>;
    /// Resolves when the workload has ended.
    async fn wait(&self, handle: &WorkloadHandle) -> Result<ExitOutcome, DriverError>;
    /// Up to `max_bytes` of the combined log from `from_offset`.
    async fn logs(
        &self,
        handle: &WorkloadHandle,
        from_offset: u64,
        max_bytes: usize,
    ) -> Result<LogChunk, DriverError>;
    /// Asks the workload to end (SIGTERM to its whole process group), forces it after `grace`
    /// (SIGKILL), and returns once it has ended. Stopping an ended workload does nothing.
    async fn stop(&self, handle: &WorkloadHandle, grace: Duration) -> Result<(), DriverError>;
    /// Removes the working directory (and the container, for container drivers); the outputs
    /// and logs belong to the agent and stay.
    async fn destroy(&self, handle: &WorkloadHandle) -> Result<(), DriverError>;
    /// Freezes every process of the workload where it is (like `docker pause`): no CPU time,
    /// its memory, files and log kept, so [`Driver::resume`] continues it exactly there. For a
    /// lease whose escrow ran out. Returns once the workload is frozen. Idempotent; pausing an
    /// ended workload does nothing. `wait`, `logs`, `stop` and `destroy` keep working on a paused
    /// workload (`stop` thaws it after its SIGTERM, so the workload sees the signal and ends),
    /// and the wall-clock limit keeps counting while it is paused: a paused lease still holds
    /// memory. Where a driver cannot freeze a workload it fails with
    /// [`DriverError::PauseUnsupported`] and leaves it running: the agent stops it instead.
    async fn pause(&self, handle: &WorkloadHandle) -> Result<(), DriverError>;
    /// Thaws a paused workload, which continues where it was. Idempotent: resuming a running
    /// or ended workload does nothing.
    async fn resume(&self, handle: &WorkloadHandle) -> Result<(), DriverError>;
    /// After an agent restart: is the workload still running, did it exit, or is it lost? A
    /// paused workload is `Running` (it has not ended; `resume` or `stop` it).
    async fn recover(&self, handle: &WorkloadHandle) -> Result<RecoverState, DriverError>;
    /// Where the spec's exposed ports can be reached on this machine, sorted by container port
    /// and protocol; empty once the workload has ended. Drivers that do not publish ports (the
    /// process and fake drivers) report none.
    async fn ports(&self, handle: &WorkloadHandle) -> Result<Vec<PublishedPort>, DriverError> {
        check_driver(self.name(), handle)?;
        Ok(Vec::new())
    }
    /// Runs `argv` inside the running workload — with its isolation, user, limits and
    /// environment — and returns its exit code and output (each stream at most
    /// [`crate::MAX_EXEC_OUTPUT_BYTES`]), or what it wrote by `timeout` (a container's command is
    /// left to end with the workload; a process job's is killed). `service` picks one of a workload's companions by its service (its first
    /// replica) or the main container by its hostname; `None` is the main container. Drivers
    /// that cannot fail with [`DriverError::ExecUnsupported`].
    async fn exec(
        &self,
        handle: &WorkloadHandle,
        service: Option<&str>,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        let _ = (service, argv, timeout);
        check_driver(self.name(), handle)?;
        Err(DriverError::ExecUnsupported {
            driver: self.name(),
            why: "its workloads take no commands".into(),
        })
    }
    /// Starts `argv` inside the running workload (or the named `service`, as `exec` does) with
    /// its input attached and, with `tty`, a terminal of `cols` × `rows`: an interactive shell.
    /// Drivers that cannot fail with [`DriverError::ExecUnsupported`].
    async fn shell(
        &self,
        handle: &WorkloadHandle,
        service: Option<&str>,
        argv: &[String],
        tty: Option<(u16, u16)>,
    ) -> Result<crate::ShellSession, DriverError> {
        let _ = (service, argv, tty);
        check_driver(self.name(), handle)?;
        Err(DriverError::ExecUnsupported {
            driver: self.name(),
            why: "its workloads take no commands".into(),
        })
    }
}

/// Refuses a handle made by another driver.
pub(crate) fn check_driver(
    expected: &'static str,
    handle: &WorkloadHandle,
) -> Result<(), DriverError> {
    if handle.driver == expected {
        Ok(())
    } else {
        Err(DriverError::WrongDriver {
            expected,
            found: handle.driver.clone(),
        })
    }
}
