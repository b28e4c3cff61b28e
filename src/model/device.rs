//! Devices by name (`cpu`, `cuda:N`) and what they are: the GPU's name and
//! memory, or the machine's, for the service's health report.

use candle_core::Device;
use serde::Serialize;

/// Parses a device name: `cpu`, or `cuda:N` (which needs a build with
/// `--features cuda` and a GPU at run time).
pub fn parse_device(spec: &str) -> Result<Device, String> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = spec
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| format!("device `{spec}`: expected `cpu` or `cuda:N`"))?;
            Device::new_cuda(ordinal).map_err(|e| match e {
                candle_core::Error::NotCompiledWithCudaSupport => format!(
                    "device `{spec}`: this binary was built without CUDA \
                     (build it with `--features cuda`, see scripts/build_cuda.sh)"
                ),
                e => format!("device `{spec}`: {e}"),
            })
        }
    }
}

/// A device and its memory, as the service reports it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceInfo {
    /// The device as named on the command line: `cpu`, `cuda:0`.
    pub name: String,
    /// What it is: the GPU's name, or `cpu` with its thread count.
    pub description: String,
    /// Its memory in bytes: the GPU's, or the machine's for `cpu` (absent
    /// when the system does not say).
    pub memory_total_bytes: Option<u64>,
    /// Of which free now.
    pub memory_free_bytes: Option<u64>,
}

impl DeviceInfo {
    /// Describes `device`, named `name`, as it is now.
    pub fn of(name: &str, device: &Device) -> Self {
        let (description, memory) = match device {
            Device::Cpu => (
                format!("cpu ({} threads)", rayon::current_num_threads()),
                host_memory(),
            ),
            _ => gpu(device),
        };
        Self {
            name: name.to_string(),
            description,
            memory_total_bytes: memory.map(|m| m.0),
            memory_free_bytes: memory.map(|m| m.1),
        }
    }
}

/// The machine's memory `(total, available)` from `/proc/meminfo`.
fn host_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// A GPU's name and memory `(total, free)`, asked of the driver.
#[cfg(feature = "cuda")]
fn gpu(device: &Device) -> (String, Option<(u64, u64)>) {
    let Device::Cuda(cuda) = device else {
        return (format!("{device:?}"), None);
    };
    let stream = cuda.cuda_stream();
    let context = stream.context();
    let name = context.name().unwrap_or_else(|e| format!("GPU ({e})"));
    let memory = context.mem_get_info().ok();
    (
        name,
        memory.map(|(free, total)| (total as u64, free as u64)),
    )
}

#[cfg(not(feature = "cuda"))]
fn gpu(device: &Device) -> (String, Option<(u64, u64)>) {
    (format!("{device:?}"), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_the_cpu_reports_its_memory() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("gpu0")
            .unwrap_err()
            .contains("expected `cpu` or `cuda:N`"));
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:0")
            .unwrap_err()
            .contains("--features cuda"));
        let info = DeviceInfo::of("cpu", &Device::Cpu);
        assert_eq!(info.name, "cpu");
        assert!(info.description.starts_with("cpu ("), "{info:?}");
        let (total, free) = (
            info.memory_total_bytes.unwrap(),
            info.memory_free_bytes.unwrap(),
        );
        assert!(total > 0 && free <= total, "{info:?}");
    }
}
