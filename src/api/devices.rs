//! The devices the service trains and classifies on, each opened once.

use candle_core::Device;

use super::ServeConfig;
use crate::model::parse_device;

/// A device the service uses, opened once: a training device that also
/// runs inference is one device (one CUDA stream), so a model trained there is
/// served without a copy.
#[derive(Debug, Clone)]
pub struct ServiceDevice {
    /// As named on the command line.
    pub name: String,
    /// Opened once, shared by the worker and the inference thread on it.
    pub device: Device,
    /// Whether a training worker runs on it.
    pub training: bool,
    /// Whether `/classify` runs on it.
    pub inference: bool,
}

impl ServiceDevice {
    /// Opens `--devices` and `--infer-device`, each name once.
    pub(super) fn open(config: &ServeConfig) -> anyhow::Result<Vec<Self>> {
        let mut out: Vec<Self> = Vec::new();
        let names = config.devices.iter().chain([&config.infer_device]);
        for name in names {
            if out.iter().any(|d| &d.name == name) {
                continue;
            }
            out.push(Self {
                name: name.clone(),
                device: parse_device(name).map_err(anyhow::Error::msg)?,
                training: config.devices.contains(name),
                inference: *name == config.infer_device,
            });
        }
        Ok(out)
    }

    /// The opened device named `name` (one of those [`ServiceDevice::open`]
    /// opened).
    pub(super) fn named(devices: &[Self], name: &str) -> Device {
        let found = devices.iter().find(|d| d.name == name);
        found.expect("every named device is opened").device.clone()
    }
}
