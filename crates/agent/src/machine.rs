//! From what [`gpunet_runtime::discover`] found to what the provider offers: the [`Capacity`]
//! it registers (memory less a reserve for the agent and the system) and the GPU uuid behind
//! each slot index, in discovery order.

use gpunet_protocol::resources::{MAX_GPU_NAME_BYTES, MAX_GPUS_PER_PROVIDER};
use gpunet_protocol::{Capacity, GpuSlot, Runtime};
use gpunet_runtime::{GpuSource, MachineInfo};

/// Share of the machine's memory kept back from tenants, in percent.
pub const MEMORY_RESERVE_PERCENT: u64 = 10;

/// What the provider offers, and the GPU uuid behind each slot of `capacity.gpus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub capacity: Capacity,
    /// `gpu_uuids[i]` is the device of `capacity.gpus[i]`.
    pub gpu_uuids: Vec<String>,
}

/// The offer for a discovered machine. At most [`MAX_GPUS_PER_PROVIDER`] GPUs are offered.
pub fn inventory(info: &MachineInfo) -> Inventory {
    // In u128: `memory_mib × percent` may not fit in a u64 when discovery reports a huge value.
    let reserve_mib = u128::from(info.memory_mib) * u128::from(MEMORY_RESERVE_PERCENT) / 100;
    let memory_mib = info.memory_mib
        - u64::try_from(reserve_mib).expect("a percentage of at most 100 of a u64 fits in a u64");
    let mut gpus = Vec::new();
    let mut gpu_uuids = Vec::new();
    for gpu in info.gpus.iter().take(MAX_GPUS_PER_PROVIDER) {
        gpus.push(GpuSlot {
            model: gpu_name(&gpu.model),
            family: gpu_name(&gpu.family),
            vram_mib: gpu.memory_mib,
        });
        gpu_uuids.push(gpu.uuid.clone());
    }
    Inventory {
        capacity: Capacity {
            cpu_millis: info.cpu_millis,
            memory_mib,
            disk_mib: info.disk_free_mib,
            gpus,
        },
        gpu_uuids,
    }
}

/// A model or family name the ledger accepts: `[a-z0-9-_]`, 1 to [`MAX_GPU_NAME_BYTES`] bytes.
fn gpu_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_GPU_NAME_BYTES)
        .collect();
    if name.is_empty() {
        name.push_str("unknown");
    }
    name
}

/// The runtime a driver provides, by its name (`fake` pretends to be a process driver).
pub fn runtime_of_driver(name: &str) -> Option<Runtime> {
    match name {
        "process" | "fake" => Some(Runtime::Process),
        "docker" => Some(Runtime::Docker),
        _ => None,
    }
}

/// One line for the log describing what was found.
pub fn describe(info: &MachineInfo) -> String {
    let gpus = match &info.gpu_source {
        GpuSource::None { reason } => format!("no GPU: {reason}"),
        source => {
            let names: Vec<String> = info
                .gpus
                .iter()
                .map(|g| format!("{} ({} MiB, {})", g.name, g.memory_mib, g.uuid))
                .collect();
            format!(
                "{} GPU(s) via {source:?}: {}",
                info.gpus.len(),
                names.join(", ")
            )
        }
    };
    format!(
        "{} millicores, {} MiB memory, {} MiB free disk; {gpus}",
        info.cpu_millis, info.memory_mib, info.disk_free_mib
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_runtime::GpuDevice;

    fn device(uuid: &str, model: &str) -> GpuDevice {
        GpuDevice {
            uuid: uuid.into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            model: model.into(),
            family: "h100".into(),
            memory_mib: 81_559,
            driver_version: None,
            cuda_version: None,
            compute_capability: None,
            interface: None,
        }
    }

    #[test]
    fn memory_keeps_a_reserve_and_gpus_keep_discovery_order() {
        let info = MachineInfo {
            cpu_millis: 16_000,
            memory_mib: 10_000,
            disk_free_mib: 1_000,
            gpus: vec![device("GPU-b", "h100-80gb"), device("GPU-a", "H100 SXM")],
            gpu_source: GpuSource::Nvml,
        };
        let inv = inventory(&info);
        assert_eq!(inv.capacity.memory_mib, 9_000);
        assert_eq!(inv.capacity.cpu_millis, 16_000);
        assert_eq!(inv.capacity.disk_mib, 1_000);
        assert_eq!(inv.gpu_uuids, vec!["GPU-b", "GPU-a"]);
        assert_eq!(inv.capacity.gpus[0].model, "h100-80gb");
        assert_eq!(inv.capacity.gpus[1].model, "h100-sxm");
        assert!(describe(&info).contains("2 GPU(s)"));
    }

    #[test]
    fn a_huge_reported_memory_keeps_its_reserve_without_overflow() {
        let info = MachineInfo {
            cpu_millis: 1_000,
            memory_mib: u64::MAX,
            disk_free_mib: u64::MAX,
            gpus: Vec::new(),
            gpu_source: GpuSource::Nvml,
        };
        let inv = inventory(&info);
        assert_eq!(inv.capacity.memory_mib, u64::MAX - u64::MAX / 10);
    }

    #[test]
    fn a_machine_without_gpus_says_why() {
        let info = MachineInfo {
            cpu_millis: 2_000,
            memory_mib: 4_096,
            disk_free_mib: 1_000,
            gpus: vec![],
            gpu_source: GpuSource::None {
                reason: "nvml: not found".into(),
            },
        };
        assert!(inventory(&info).capacity.gpus.is_empty());
        assert!(describe(&info).contains("no GPU: nvml: not found"));
    }
}
