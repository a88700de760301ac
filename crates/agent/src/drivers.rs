//! The drivers this agent runs workloads with: one per runtime it offers. A manifest runs on
//! the driver of its spec's runtime (`run.image` ⇒ docker); a persisted workload is handed back
//! to the driver whose name its handle carries.

use std::sync::Arc;

use gpunet_protocol::Runtime;
use gpunet_runtime::{Driver, WorkloadHandle};

use crate::machine::runtime_of_driver;

/// Drivers by runtime, sorted by runtime. At most one per runtime.
#[derive(Clone, Default)]
pub struct Drivers {
    by_runtime: Vec<(Runtime, Arc<dyn Driver>)>,
}

impl std::fmt::Debug for Drivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.by_runtime.iter().map(|(r, d)| (r.as_str(), d.name())))
            .finish()
    }
}

impl Drivers {
    pub fn new() -> Drivers {
        Drivers::default()
    }

    /// One driver, for the runtime its name says (`None` if it names no runtime).
    pub fn single(driver: Arc<dyn Driver>) -> Option<Drivers> {
        let mut drivers = Drivers::new();
        drivers.add(driver)?;
        Some(drivers)
    }

    /// Adds `driver` for the runtime its name says and returns that runtime; `None` (and
    /// nothing added) if the name says none. A later driver for the same runtime replaces the
    /// earlier one.
    pub fn add(&mut self, driver: Arc<dyn Driver>) -> Option<Runtime> {
        let runtime = runtime_of_driver(driver.name())?;
        self.by_runtime.retain(|(r, _)| *r != runtime);
        self.by_runtime.push((runtime, driver));
        self.by_runtime.sort_by_key(|(r, _)| *r);
        Some(runtime)
    }

    pub fn is_empty(&self) -> bool {
        self.by_runtime.is_empty()
    }

    /// The runtimes offered, sorted.
    pub fn runtimes(&self) -> Vec<Runtime> {
        self.by_runtime.iter().map(|(r, _)| *r).collect()
    }

    /// The driver that runs workloads of `runtime`.
    pub fn for_runtime(&self, runtime: Runtime) -> Option<&Arc<dyn Driver>> {
        self.by_runtime
            .iter()
            .find(|(r, _)| *r == runtime)
            .map(|(_, d)| d)
    }

    /// The driver that started `handle` (by the name it carries), if this agent has it.
    pub fn for_handle(&self, handle: &WorkloadHandle) -> Option<&Arc<dyn Driver>> {
        self.by_runtime
            .iter()
            .find(|(_, d)| d.name() == handle.driver)
            .map(|(_, d)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_runtime::{DockerDriver, FakeDriver, ProcessDriver};

    #[test]
    fn drivers_are_kept_by_runtime_sorted_and_found_by_handle() {
        let mut drivers = Drivers::new();
        assert_eq!(
            drivers.add(Arc::new(DockerDriver::new())),
            Some(Runtime::Docker)
        );
        assert_eq!(
            drivers.add(Arc::new(ProcessDriver::new())),
            Some(Runtime::Process)
        );
        assert_eq!(drivers.runtimes(), vec![Runtime::Process, Runtime::Docker]);
        // The fake driver stands in for the process driver.
        assert_eq!(
            drivers.add(Arc::new(FakeDriver::new())),
            Some(Runtime::Process)
        );
        assert_eq!(drivers.runtimes(), vec![Runtime::Process, Runtime::Docker]);
        let process = drivers.for_runtime(Runtime::Process).expect("a driver");
        assert_eq!(process.name(), "fake");
        let handle = WorkloadHandle {
            workload_id: "lease-1".into(),
            driver: "docker".into(),
            pid: None,
            start_ticks: None,
            root_dir: "/x".into(),
        };
        assert_eq!(
            drivers.for_handle(&handle).map(|d| d.name()),
            Some("docker")
        );
        let gone = WorkloadHandle {
            driver: "process".into(),
            ..handle
        };
        assert!(drivers.for_handle(&gone).is_none(), "replaced by the fake");
    }
}
