//! Owned descriptions of GPUs and MIG devices (what NVML reports, snapshot into plain data).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;

/// A PCI address of a GPU (function 0), printed as upstream does: `00000000:07:00.0`.
/// Deliberately plain, exhaustive data: a PCI address is these three numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PciBusId {
    /// PCI domain.
    pub domain: u32,
    /// Bus.
    pub bus: u8,
    /// Device.
    pub device: u8,
}

impl fmt::Display for PciBusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:08x}:{:02x}:{:02x}.0",
            self.domain, self.bus, self.device
        )
    }
}

/// Parses `[domain:]bus:device[.0]` in hex, any case and any domain width
/// (`00000000:07:00.0`, `0000:07:00.0`, `07:00.0`, `7:0`).
impl FromStr for PciBusId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidBusId {
            input: s.to_owned(),
        };
        let (rest, function) = match s.rsplit_once('.') {
            Some((rest, f)) => (rest, Some(f)),
            None => (s, None),
        };
        if function.is_some_and(|f| u8::from_str_radix(f, 16) != Ok(0)) {
            return Err(bad());
        }
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, v] => (*d, *b, *v),
            [b, v] => ("0", *b, *v),
            _ => return Err(bad()),
        };
        let hex = |t: &str, max_len: usize| {
            if t.is_empty() || t.len() > max_len || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(t, 16).map_err(|_| bad())
        };
        let byte = |t: &str| hex(t, 2).and_then(|v| u8::try_from(v).map_err(|_| bad()));
        Ok(PciBusId {
            domain: hex(domain, 8)?,
            bus: byte(bus)?,
            device: byte(device)?,
        })
    }
}

/// A MIG device (a compute instance inside a GPU instance). Made by discovery (or read back
/// with `serde`); `Default` gives an empty one to fill in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct MigDevice {
    /// Position in the parent's NVML MIG enumeration.
    pub index: u32,
    /// GPU instance id.
    pub gi: u32,
    /// Compute instance id.
    pub ci: u32,
    /// `MIG-<uuid>`.
    pub uuid: String,
    /// The `/dev/nvidia-caps` minors of its GPU-instance and compute-instance `access`
    /// files (their `DeviceFileMinor`), read at discovery; `None` where the file is missing.
    pub access_minors: (Option<u32>, Option<u32>),
}

/// A GPU. Made by discovery (or read back with `serde`); `Default` gives an empty one to
/// fill in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Gpu {
    /// NVML index.
    pub index: u32,
    /// `/dev/nvidia<minor>`.
    pub minor: u32,
    /// `GPU-<uuid>`.
    pub uuid: String,
    /// PCI address.
    pub bus_id: PciBusId,
    /// Product name.
    pub model: String,
    /// Brand name as upstream prints it (`Tesla`, `GeForce`, ..., `Unknown`); `None` when
    /// NVML was not asked.
    pub brand: Option<String>,
    /// Compute capability, `major.minor`; `None` when NVML was not asked.
    pub architecture: Option<String>,
    /// Whether the GPU can do MIG (NVML answers `nvmlDeviceGetMigMode`).
    pub mig_capable: bool,
    /// MIG devices, in NVML order (empty when MIG is off or unsupported).
    pub mig_devices: Vec<MigDevice>,
    /// Its directory under `/proc/driver/nvidia/gpus/` as found at discovery (named by the
    /// full bus id, or on older drivers without the domain).
    pub proc_dir: PathBuf,
}

/// Where the kernel module publishes capabilities (`/proc/driver/nvidia/capabilities`).
pub const CAPS_DIR: &str = "/proc/driver/nvidia/capabilities";

impl Gpu {
    /// The GPU's MIG capability directory, `/proc/driver/nvidia/capabilities/gpu<minor>`.
    #[must_use]
    pub fn mig_caps_path(&self) -> String {
        format!("{CAPS_DIR}/gpu{}", self.minor)
    }

    /// The capability directory of one of its GPU instances (`.../gpu<minor>/mig/gi<gi>`).
    #[must_use]
    pub fn gi_caps_path(&self, mig: &MigDevice) -> String {
        format!("{}/mig/gi{}", self.mig_caps_path(), mig.gi)
    }

    /// The capability directory of one of its compute instances (`.../gi<gi>/ci<ci>`).
    #[must_use]
    pub fn ci_caps_path(&self, mig: &MigDevice) -> String {
        format!("{}/ci{}", self.gi_caps_path(mig), mig.ci)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bus_ids_in_every_accepted_spelling() {
        let want = PciBusId {
            domain: 0,
            bus: 7,
            device: 0,
        };
        for s in [
            "00000000:07:00.0",
            "0000:07:00.0",
            "0:7:0",
            "07:00.0",
            "7:0",
            "0000:07:00.00",
        ] {
            assert_eq!(s.parse::<PciBusId>().unwrap(), want, "{s}");
        }
        assert_eq!(
            "0001:AB:1f.0".parse::<PciBusId>().unwrap().to_string(),
            "00000001:ab:1f.0"
        );
        for s in [
            "",
            "7",
            "0000:07:00.1",
            "x:07:00.0",
            "000000000:07:00.0",
            "0000:107:00.0",
            "0:0:0:0",
            "07:00.",
        ] {
            assert!(s.parse::<PciBusId>().is_err(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(domain: u32, bus: u8, device: u8) {
            let id = PciBusId { domain, bus, device };
            prop_assert_eq!(id.to_string().parse::<PciBusId>()?, id);
            prop_assert_eq!(id.to_string().to_uppercase().parse::<PciBusId>()?, id);
        }
    }
}
