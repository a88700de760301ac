//! GPU discovery: NVML first, then `nvidia-smi`, then nothing — never an invented GPU.
//!
//! The parsers ([`parse_nvidia_smi_csv`], [`parse_cuda_version_banner`], [`normalise_gpu_name`])
//! are pure and tested on captured output; [`discover_gpus`] is the thin shell around them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::GpuParseError;

/// The `--query-gpu` fields asked of `nvidia-smi`, in the order [`parse_nvidia_smi_csv`] expects.
pub const NVIDIA_SMI_QUERY_FIELDS: &str =
    "uuid,name,memory.total,driver_version,compute_cap,pci.bus_id";
/// How long one `nvidia-smi` run may take before it is killed.
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(15);
/// Most bytes read from one `nvidia-smi` stream.
const NVIDIA_SMI_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
const MIB_BYTES: u64 = 1024 * 1024;

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuDevice {
    pub uuid: String,
    /// Raw, as the driver reports it, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Normalised, e.g. `h100-80gb`; see [`normalise_gpu_name`].
    pub model: String,
    /// e.g. `h100`; see [`normalise_gpu_name`].
    pub family: String,
    pub memory_mib: u64,
    pub driver_version: Option<String>,
    pub cuda_version: Option<String>,
    /// e.g. `9.0`.
    pub compute_capability: Option<String>,
    /// `pcie` or `sxm`, only when the name says so.
    pub interface: Option<String>,
}

/// Where the GPU list came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GpuSource {
    Nvml,
    NvidiaSmi,
    /// No GPU was found; `reason` says what was tried and how it failed.
    None {
        reason: String,
    },
}

/// The result of [`normalise_gpu_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalisedName {
    pub model: String,
    pub family: String,
    pub interface: Option<String>,
}

/// Turns a raw GPU name into a model, a family and, where the name says it, the interface.
///
/// The rule, applied to the lowercased name split on spaces, `-` and `_` (other characters
/// outside `[a-z0-9]` also split):
/// 1. brand words are dropped: `nvidia`, `tesla`, `geforce`, `quadro`, `generation`;
/// 2. a memory size (`80gb`) is taken aside, the first one only;
/// 3. `sxm`, `sxm2`, `sxm4`, `sxm5` mean interface `sxm`; `pcie` means `pcie`; `nvl` is a
///    board variant; all three are taken aside;
/// 4. memory technologies (`hbm3`, `hbm2e`, `gddr6x`, ...) are dropped;
/// 5. the family is what remains, joined with `-` (`h100`, `rtx-4090`, `rtx-a6000`);
/// 6. the model is the family plus the memory size if there is one, else plus the board variant
///    or interface word if there is one, else the family alone.
///
/// So `NVIDIA H100 80GB HBM3` → `h100-80gb`, `NVIDIA H100 PCIe` → `h100-pcie`,
/// `NVIDIA A100-SXM4-80GB` → `a100-80gb` (sxm), `NVIDIA GeForce RTX 4090` → `rtx-4090`.
/// A name with nothing left after step 5 gets family `unknown`.
pub fn normalise_gpu_name(raw: &str) -> NormalisedName {
    let lower = raw.to_ascii_lowercase();
    let mut family_tokens: Vec<&str> = Vec::new();
    let mut memory: Option<&str> = None;
    let mut interface: Option<&'static str> = None;
    let mut variant: Option<&str> = None;
    for token in lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        if matches!(
            token,
            "nvidia" | "tesla" | "geforce" | "quadro" | "generation"
        ) {
            continue;
        }
        if is_memory_size(token) {
            memory.get_or_insert(token);
        } else if token.starts_with("sxm") && token[3..].bytes().all(|b| b.is_ascii_digit()) {
            interface = Some("sxm");
            variant.get_or_insert("sxm");
        } else if token == "pcie" {
            interface = Some("pcie");
            variant.get_or_insert("pcie");
        } else if token == "nvl" {
            variant = Some("nvl");
        } else if is_memory_technology(token) {
            continue;
        } else {
            family_tokens.push(token);
        }
    }
    let family = if family_tokens.is_empty() {
        "unknown".to_owned()
    } else {
        family_tokens.join("-")
    };
    let model = match (memory, variant) {
        (Some(size), _) => format!("{family}-{size}"),
        (None, Some(v)) => format!("{family}-{v}"),
        (None, None) => family.clone(),
    };
    NormalisedName {
        model,
        family,
        interface: interface.map(str::to_owned),
    }
}

fn is_memory_size(token: &str) -> bool {
    token
        .strip_suffix("gb")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_memory_technology(token: &str) -> bool {
    let rest = token
        .strip_prefix("hbm")
        .or_else(|| token.strip_prefix("gddr"));
    rest.is_some_and(|r| {
        r.trim_end_matches(['e', 'x'])
            .bytes()
            .all(|b| b.is_ascii_digit())
    })
}

/// One row of `nvidia-smi --query-gpu=` [`NVIDIA_SMI_QUERY_FIELDS`]
/// `--format=csv,noheader,nounits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmiRow {
    pub uuid: String,
    pub name: String,
    pub memory_mib: u64,
    pub driver_version: Option<String>,
    pub compute_capability: Option<String>,
    pub pci_bus_id: Option<String>,
}

/// Parses `nvidia-smi` CSV (no header, no units). Blank lines are skipped. A name containing
/// commas is tolerated: the uuid is the first field and the last four are fixed.
/// `[N/A]`-style values become `None`; a missing uuid, name or memory size is an error, because
/// a GPU we cannot describe is not offered.
pub fn parse_nvidia_smi_csv(text: &str) -> Result<Vec<SmiRow>, GpuParseError> {
    const FIELDS: usize = 6;
    let mut rows = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        if raw_line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw_line.split(',').collect();
        if fields.len() < FIELDS {
            return Err(GpuParseError::FieldCount {
                line,
                expected: FIELDS,
                found: fields.len(),
            });
        }
        let tail = fields.len() - 4;
        let uuid = available(fields[0]).ok_or(GpuParseError::MissingField {
            line,
            field: "uuid",
        })?;
        let name = fields[1..tail].join(",");
        let name = name.trim();
        let name = available(name).ok_or(GpuParseError::MissingField {
            line,
            field: "name",
        })?;
        let memory = available(fields[tail]).ok_or(GpuParseError::MissingField {
            line,
            field: "memory.total",
        })?;
        let memory_mib = memory
            .parse::<u64>()
            .map_err(|_| GpuParseError::BadMemory {
                line,
                value: memory.to_owned(),
            })?;
        rows.push(SmiRow {
            uuid: uuid.to_owned(),
            name: name.to_owned(),
            memory_mib,
            driver_version: available(fields[tail + 1]).map(str::to_owned),
            compute_capability: available(fields[tail + 2]).map(str::to_owned),
            pci_bus_id: available(fields[tail + 3]).map(str::to_owned),
        });
    }
    Ok(rows)
}

/// `None` for empty values and `nvidia-smi`'s `[N/A]`, `[Not Supported]`, `N/A`.
fn available(value: &str) -> Option<&str> {
    let v = value.trim();
    if v.is_empty() || v.starts_with('[') || v.eq_ignore_ascii_case("n/a") {
        None
    } else {
        Some(v)
    }
}

/// Finds the CUDA version in `nvidia-smi`'s banner (`CUDA Version: 12.4`) or in
/// `nvidia-smi --version` output (`CUDA Version : 12.4`).
pub fn parse_cuda_version_banner(text: &str) -> Option<String> {
    let (_, after) = text.split_once("CUDA Version")?;
    let after = after.trim_start_matches([' ', ':', '\t']);
    let version: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if version.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        None
    } else {
        Some(version)
    }
}

fn device_from_smi_row(row: SmiRow, cuda_version: Option<String>) -> GpuDevice {
    let normal = normalise_gpu_name(&row.name);
    GpuDevice {
        uuid: row.uuid,
        name: row.name,
        model: normal.model,
        family: normal.family,
        memory_mib: row.memory_mib,
        driver_version: row.driver_version,
        cuda_version,
        compute_capability: row.compute_capability,
        interface: normal.interface,
    }
}

/// Finds GPUs: NVML, then `nvidia-smi`, then none with the reasons both failed. Blocking; may
/// take up to [`NVIDIA_SMI_TIMEOUT`] twice when `nvidia-smi` hangs.
pub(crate) fn discover_gpus() -> (Vec<GpuDevice>, GpuSource) {
    let nvml_failure = match probe_nvml() {
        Ok(gpus) if gpus.is_empty() => {
            return (
                gpus,
                GpuSource::None {
                    reason: "nvml initialised but reports no GPUs".into(),
                },
            );
        }
        Ok(gpus) => return (gpus, GpuSource::Nvml),
        Err(reason) => reason,
    };
    tracing::debug!(%nvml_failure, "nvml unavailable, trying nvidia-smi");
    match probe_nvidia_smi() {
        Ok(gpus) if gpus.is_empty() => (
            gpus,
            GpuSource::None {
                reason: format!("{nvml_failure}; nvidia-smi lists no GPUs"),
            },
        ),
        Ok(gpus) => (gpus, GpuSource::NvidiaSmi),
        Err(smi_failure) => (
            Vec::new(),
            GpuSource::None {
                reason: format!("{nvml_failure}; {smi_failure}"),
            },
        ),
    }
}

fn probe_nvml() -> Result<Vec<GpuDevice>, String> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("nvml could not start: {e}"))?;
    let count = nvml
        .device_count()
        .map_err(|e| format!("nvml could not count GPUs: {e}"))?;
    let driver_version = nvml.sys_driver_version().ok();
    let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(v),
            nvml_wrapper::cuda_driver_version_minor(v)
        )
    });
    let mut gpus = Vec::new();
    for index in 0..count {
        let described = (|| {
            let device = nvml.device_by_index(index)?;
            let uuid = device.uuid()?;
            let name = device.name()?;
            let memory_mib = device.memory_info()?.total / MIB_BYTES;
            let compute_capability = device
                .cuda_compute_capability()
                .ok()
                .map(|c| format!("{}.{}", c.major, c.minor));
            Ok::<_, nvml_wrapper::error::NvmlError>((uuid, name, memory_mib, compute_capability))
        })();
        match described {
            Ok((uuid, name, memory_mib, compute_capability)) => {
                let normal = normalise_gpu_name(&name);
                gpus.push(GpuDevice {
                    uuid,
                    name,
                    model: normal.model,
                    family: normal.family,
                    memory_mib,
                    driver_version: driver_version.clone(),
                    cuda_version: cuda_version.clone(),
                    compute_capability,
                    interface: normal.interface,
                });
            }
            // A GPU we cannot describe is not offered; the others still are.
            Err(error) => tracing::warn!(index, %error, "nvml could not describe GPU; skipping it"),
        }
    }
    if gpus.is_empty() && count > 0 {
        return Err(format!("nvml found {count} GPUs but could describe none"));
    }
    Ok(gpus)
}

fn probe_nvidia_smi() -> Result<Vec<GpuDevice>, String> {
    let Some(smi) = find_on_path("nvidia-smi") else {
        return Err("nvidia-smi not found on PATH".into());
    };
    let query = format!("--query-gpu={NVIDIA_SMI_QUERY_FIELDS}");
    let stdout = run_with_timeout(&smi, &[&query, "--format=csv,noheader,nounits"])?;
    let rows =
        parse_nvidia_smi_csv(&stdout).map_err(|e| format!("nvidia-smi output unreadable: {e}"))?;
    // The CUDA version is only in the banner; without it the GPUs are still real.
    let cuda_version = run_with_timeout(&smi, &[])
        .ok()
        .and_then(|t| parse_cuda_version_banner(&t));
    Ok(rows
        .into_iter()
        .map(|row| device_from_smi_row(row, cuda_version.clone()))
        .collect())
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs a short diagnostic command, killing it after [`NVIDIA_SMI_TIMEOUT`].
fn run_with_timeout(program: &Path, args: &[&str]) -> Result<String, String> {
    let shown = program.display();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown} could not start: {e}"))?;
    let readers = [
        child.stdout.take().map(read_in_thread),
        child.stderr.take().map(read_in_thread),
    ];
    let deadline = Instant::now() + NVIDIA_SMI_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // Best effort: it may have exited between the check and the kill.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown} timed out after {}s",
                    NVIDIA_SMI_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("{shown} could not be waited for: {e}")),
        }
    };
    let [stdout, stderr] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    if status.success() {
        Ok(stdout)
    } else {
        let detail = stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!("{shown} failed ({status}): {}", detail.trim()))
    }
}

fn read_in_thread(stream: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error leaves what was read so far; the exit status tells the rest.
        let _ = stream
            .take(NVIDIA_SMI_MAX_OUTPUT_BYTES)
            .read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, model: &str, family: &str, interface: Option<&str>) {
        let got = normalise_gpu_name(raw);
        assert_eq!(
            (
                got.model.as_str(),
                got.family.as_str(),
                got.interface.as_deref()
            ),
            (model, family, interface),
            "normalising {raw:?}"
        );
    }

    #[test]
    fn gpu_names_normalise_to_model_and_family() {
        check("NVIDIA H100 80GB HBM3", "h100-80gb", "h100", None);
        check("NVIDIA H100 PCIe", "h100-pcie", "h100", Some("pcie"));
        check("NVIDIA H100 NVL", "h100-nvl", "h100", None);
        check("NVIDIA A100-SXM4-80GB", "a100-80gb", "a100", Some("sxm"));
        check("NVIDIA A100-SXM4-40GB", "a100-40gb", "a100", Some("sxm"));
        check("NVIDIA A100-PCIE-40GB", "a100-40gb", "a100", Some("pcie"));
        check("NVIDIA A100 80GB PCIe", "a100-80gb", "a100", Some("pcie"));
        check("NVIDIA GeForce RTX 4090", "rtx-4090", "rtx-4090", None);
        check(
            "NVIDIA GeForce RTX 3080 Ti",
            "rtx-3080-ti",
            "rtx-3080-ti",
            None,
        );
        check("Tesla V100-SXM2-16GB", "v100-16gb", "v100", Some("sxm"));
        check("Tesla V100-PCIE-32GB", "v100-32gb", "v100", Some("pcie"));
        check("Tesla T4", "t4", "t4", None);
        check("NVIDIA L4", "l4", "l4", None);
        check("NVIDIA L40S", "l40s", "l40s", None);
        check("NVIDIA A10G", "a10g", "a10g", None);
        check("NVIDIA H200", "h200", "h200", None);
        check("NVIDIA GH200 480GB", "gh200-480gb", "gh200", None);
        check("NVIDIA RTX A6000", "rtx-a6000", "rtx-a6000", None);
        check(
            "NVIDIA RTX 6000 Ada Generation",
            "rtx-6000-ada",
            "rtx-6000-ada",
            None,
        );
        check("Quadro RTX 8000", "rtx-8000", "rtx-8000", None);
        check("NVIDIA", "unknown", "unknown", None);
    }

    #[test]
    fn nvidia_smi_csv_from_an_eight_gpu_h100_box_parses() {
        let out = "\
GPU-4e3a1b0e-5c1d-2f3e-8a9b-0c1d2e3f4a5b, NVIDIA H100 80GB HBM3, 81559, 550.54.15, 9.0, 00000000:19:00.0
GPU-7f8e9d0c-1b2a-3c4d-5e6f-7a8b9c0d1e2f, NVIDIA H100 80GB HBM3, 81559, 550.54.15, 9.0, 00000000:3B:00.0
";
        let rows = parse_nvidia_smi_csv(out).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            SmiRow {
                uuid: "GPU-4e3a1b0e-5c1d-2f3e-8a9b-0c1d2e3f4a5b".into(),
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_mib: 81559,
                driver_version: Some("550.54.15".into()),
                compute_capability: Some("9.0".into()),
                pci_bus_id: Some("00000000:19:00.0".into()),
            }
        );
        let device = device_from_smi_row(rows[1].clone(), Some("12.4".into()));
        assert_eq!(device.model, "h100-80gb");
        assert_eq!(device.family, "h100");
        assert_eq!(device.cuda_version.as_deref(), Some("12.4"));
    }

    #[test]
    fn nvidia_smi_csv_with_unavailable_fields_and_blank_lines_parses() {
        let out =
            "\nGPU-1, Tesla V100-SXM2-16GB, 16384, [N/A], [Not Supported], 00000000:00:1E.0\n\n";
        let rows = parse_nvidia_smi_csv(out).expect("parses");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].driver_version, None);
        assert_eq!(rows[0].compute_capability, None);
        assert_eq!(rows[0].memory_mib, 16384);
    }

    #[test]
    fn nvidia_smi_csv_name_with_a_comma_keeps_the_whole_name() {
        let rows = parse_nvidia_smi_csv("GPU-1, Odd, Name, 1024, 535.1, 8.6, 0:0").expect("parses");
        assert_eq!(rows[0].name, "Odd, Name");
        assert_eq!(rows[0].memory_mib, 1024);
    }

    #[test]
    fn malformed_nvidia_smi_csv_is_an_error_not_a_gpu() {
        assert_eq!(
            parse_nvidia_smi_csv("GPU-1, NVIDIA L4, 23034"),
            Err(GpuParseError::FieldCount {
                line: 1,
                expected: 6,
                found: 3
            })
        );
        assert_eq!(
            parse_nvidia_smi_csv("GPU-1, NVIDIA L4, [N/A], 550.1, 8.9, 0:0"),
            Err(GpuParseError::MissingField {
                line: 1,
                field: "memory.total"
            })
        );
        assert_eq!(
            parse_nvidia_smi_csv("GPU-1, NVIDIA L4, 22.5, 550.1, 8.9, 0:0"),
            Err(GpuParseError::BadMemory {
                line: 1,
                value: "22.5".into()
            })
        );
        assert_eq!(
            parse_nvidia_smi_csv("[N/A], NVIDIA L4, 23034, 550.1, 8.9, 0:0"),
            Err(GpuParseError::MissingField {
                line: 1,
                field: "uuid"
            })
        );
        assert_eq!(parse_nvidia_smi_csv(""), Ok(vec![]));
    }

    #[test]
    fn cuda_version_is_read_from_the_banner_and_from_version_output() {
        let banner = "\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+";
        assert_eq!(parse_cuda_version_banner(banner).as_deref(), Some("12.4"));
        let version = "NVIDIA-SMI version  : 560.35.03\nDRIVER version      : 560.35.03\nCUDA Version        : 12.6\n";
        assert_eq!(parse_cuda_version_banner(version).as_deref(), Some("12.6"));
        assert_eq!(parse_cuda_version_banner("CUDA Version: N/A"), None);
        assert_eq!(parse_cuda_version_banner("no banner"), None);
    }
}

/// One reading of the GPUs a workload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuSample {
    /// Mean utilisation over the sampled GPUs, in percent.
    pub util_pct: u32,
    /// Memory in use over the sampled GPUs, summed.
    pub memory_used_mib: u64,
}

/// GPU usage of one workload over its run: the mean of the utilisation samples and the peak
/// memory in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuUsage {
    pub samples: u32,
    util_pct_sum: u64,
    pub peak_memory_used_mib: u64,
}

impl GpuUsage {
    pub fn add(&mut self, s: GpuSample) {
        self.samples = self.samples.saturating_add(1);
        self.util_pct_sum = self.util_pct_sum.saturating_add(u64::from(s.util_pct));
        self.peak_memory_used_mib = self.peak_memory_used_mib.max(s.memory_used_mib);
    }

    /// Mean utilisation in percent, if anything was sampled.
    pub fn mean_util_pct(&self) -> Option<u8> {
        (self.samples > 0).then(|| {
            let mean = self.util_pct_sum / u64::from(self.samples);
            u8::try_from(mean.min(100)).unwrap_or(100)
        })
    }
}

/// Samples GPU utilisation and memory by UUID through NVML. Without NVML (no NVIDIA driver, as on
/// machines without GPUs) every sample is `None`: usage is never invented.
pub struct GpuSampler {
    nvml: Option<nvml_wrapper::Nvml>,
}

impl std::fmt::Debug for GpuSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuSampler(nvml: {})", self.nvml.is_some())
    }
}

impl GpuSampler {
    /// Loads NVML if it is there.
    pub fn new() -> GpuSampler {
        GpuSampler {
            nvml: nvml_wrapper::Nvml::init().ok(),
        }
    }

    /// Whether samples can be taken on this machine.
    pub fn available(&self) -> bool {
        self.nvml.is_some()
    }

    /// One reading over `uuids`; `None` without NVML, without UUIDs, or if a GPU cannot be read.
    pub fn sample(&self, uuids: &[String]) -> Option<GpuSample> {
        let nvml = self.nvml.as_ref()?;
        if uuids.is_empty() {
            return None;
        }
        let mut util_sum: u64 = 0;
        let mut memory_used_mib: u64 = 0;
        for uuid in uuids {
            let device = nvml.device_by_uuid(uuid.as_str()).ok()?;
            util_sum += u64::from(device.utilization_rates().ok()?.gpu);
            memory_used_mib += device.memory_info().ok()?.used / (1024 * 1024);
        }
        let util_pct = u32::try_from(util_sum / uuids.len() as u64).unwrap_or(u32::MAX);
        Some(GpuSample {
            util_pct,
            memory_used_mib,
        })
    }
}

impl Default for GpuSampler {
    fn default() -> Self {
        GpuSampler::new()
    }
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn gpu_usage_is_the_mean_utilisation_and_the_peak_memory() {
        let mut u = GpuUsage::default();
        assert_eq!(u.mean_util_pct(), None);
        u.add(GpuSample {
            util_pct: 90,
            memory_used_mib: 1_000,
        });
        u.add(GpuSample {
            util_pct: 30,
            memory_used_mib: 4_000,
        });
        u.add(GpuSample {
            util_pct: 60,
            memory_used_mib: 2_000,
        });
        assert_eq!(u.mean_util_pct(), Some(60));
        assert_eq!(u.peak_memory_used_mib, 4_000);
    }

    #[test]
    fn without_nvml_or_gpus_nothing_is_sampled() {
        let sampler = GpuSampler::new();
        assert_eq!(sampler.sample(&[]), None);
        if !sampler.available() {
            assert_eq!(sampler.sample(&["GPU-0".to_owned()]), None);
        }
    }
}
