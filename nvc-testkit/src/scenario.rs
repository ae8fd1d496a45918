//! What a simulated host has: driver version, GPUs, MIG devices, which files exist.

/// A PCI address (`domain:bus:device.function`, function always 0 for GPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddress {
    /// PCI domain.
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number.
    pub device: u8,
}

impl PciAddress {
    /// Upstream's bus id spelling, `%08x:%02x:%02x.0` (`00000000:07:00.0`).
    #[must_use]
    pub fn bus_id(&self) -> String {
        format!("{:08x}:{:02x}:{:02x}.0", self.domain, self.bus, self.device)
    }

    /// The kernel's spelling in `/proc/driver/nvidia/gpus/` (`0000:07:00.0`).
    #[must_use]
    pub fn proc_name(&self) -> String {
        format!("{:04x}:{:02x}:{:02x}.0", self.domain, self.bus, self.device)
    }
}

/// A MIG device: a compute instance inside a GPU instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MigDevice {
    /// GPU instance id.
    pub gi: u32,
    /// Compute instance id.
    pub ci: u32,
    /// `MIG-<uuid>`.
    pub uuid: String,
}

/// One GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gpu {
    /// NVML index.
    pub index: u32,
    /// `GPU-<uuid>`.
    pub uuid: String,
    /// PCI address.
    pub pci: PciAddress,
    /// `/dev/nvidia<minor>`.
    pub minor: u32,
    /// Product name (`NVIDIA A100-SXM4-80GB`).
    pub name: String,
    /// NVML brand (`nvmlBrandType_t` value: 2 Tesla, 5 GeForce, 12 NVIDIA, ...).
    pub brand: u32,
    /// NVML architecture (`nvmlDeviceArchitecture_t`: 7 Ampere, 9 Hopper, ...).
    pub architecture: u32,
    /// CUDA compute capability (major, minor).
    pub compute_capability: (u32, u32),
    /// MIG mode (current, pending), `None` where the GPU cannot do MIG.
    pub mig_mode: Option<(bool, bool)>,
    /// MIG devices, in NVML index order.
    pub mig_devices: Vec<MigDevice>,
}

/// Which optional parts of a driver install exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Files {
    /// The i386 compatibility libraries.
    pub lib32: bool,
    /// `/etc/ld.so.cache` (a NixOS-like host has none).
    pub ldcache: bool,
    /// Graphics and display libraries (a compute-only install has none).
    pub graphics: bool,
    /// Fabric manager and NSCQ (NVSwitch systems).
    pub fabricmanager: bool,
    /// GSP firmware.
    pub firmware: bool,
    /// `libnvidia-ml.so.1` (the fake one, answering from the scenario).
    pub nvml: bool,
}

impl Files {
    /// Whether this install has `part` of the driver.
    #[must_use]
    pub fn installs(&self, part: crate::driver_files::Part) -> bool {
        use crate::driver_files::Part;
        match part {
            Part::Core => true,
            Part::Graphics => self.graphics,
            Part::Fabric => self.fabricmanager,
        }
    }
}

/// How the fake NVML misbehaves, for the error paths of driver discovery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NvmlFaults {
    /// What `nvmlInit` returns (0 = success; 9 = `NVML_ERROR_DRIVER_NOT_LOADED`, ...).
    pub init_result: u32,
    /// How long `nvmlInit` blocks before answering, in milliseconds.
    pub init_delay_ms: u64,
    /// An NVML call (named without its `_v2` suffix, as nvc's errors name it) that never
    /// returns or crashes the process.
    pub misbehave: Option<(&'static str, Misbehaviour)>,
    /// `nvmlDeviceGetName` answers bytes that are not UTF-8.
    pub garbage_names: bool,
    /// What `nvmlDeviceGetMaxMigDeviceCount` answers (7, as today's parts, by default).
    pub max_mig_devices: Option<u32>,
}

/// How an NVML call misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Misbehaviour {
    /// It never returns.
    Hang,
    /// It aborts the process (`SIGABRT`), as a crash inside the library would.
    Crash,
}

/// A simulated host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scenario {
    /// Name (`single`, `dgx`, ...).
    pub name: String,
    /// NVRM version, which versioned library file names end with.
    pub driver_version: String,
    /// CUDA driver API version as NVML reports it (12040 = 12.4).
    pub cuda_version: u32,
    /// GPUs in NVML index order.
    pub gpus: Vec<Gpu>,
    /// Optional parts.
    pub files: Files,
    /// Fault injection into the fake NVML.
    pub nvml_faults: NvmlFaults,
}

/// The names of the built-in scenarios.
pub const BUILTIN: &[&str] = &["single", "dgx", "mig", "nogpu", "nocache", "legacy32"];

const VERSION: &str = "550.54.14";
const CUDA: u32 = 12040;

fn uuid(kind: &str, n: u32) -> String {
    // Deterministic, well-formed and distinct per (kind, n).
    let seed = 0x9e37_79b9u32.wrapping_mul(n + 1)
        ^ u32::from(kind.as_bytes().first().copied().unwrap_or(0));
    format!(
        "{kind}-{seed:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        n & 0xffff,
        0x4000 | (seed & 0x0fff),
        0x8000 | (n & 0x0fff),
        u64::from(seed) << 8 | u64::from(n)
    )
}

fn gpu(index: u32, name: &str, bus: u8, architecture: u32, cc: (u32, u32)) -> Gpu {
    Gpu {
        index,
        uuid: uuid("GPU", index),
        pci: PciAddress {
            domain: 0,
            bus,
            device: 0,
        },
        minor: index,
        name: name.to_owned(),
        brand: 14, // NVML_BRAND_NVIDIA
        architecture,
        compute_capability: cc,
        mig_mode: None,
        mig_devices: Vec::new(),
    }
}

const FULL: Files = Files {
    lib32: false,
    ldcache: true,
    graphics: true,
    fabricmanager: false,
    firmware: true,
    nvml: true,
};

impl Scenario {
    /// A built-in scenario by name (see [`BUILTIN`]), or `dgx<N>`: the dgx host with N GPUs
    /// (1 to 200).
    #[must_use]
    pub fn builtin(name: &str) -> Option<Self> {
        let mut s = Scenario {
            name: name.to_owned(),
            driver_version: VERSION.to_owned(),
            cuda_version: CUDA,
            gpus: Vec::new(),
            files: FULL,
            nvml_faults: NvmlFaults::default(),
        };
        match name {
            // One desktop-class GPU.
            "single" => {
                s.gpus.push(Gpu {
                    brand: 5, // NVML_BRAND_GEFORCE
                    ..gpu(0, "NVIDIA GeForce RTX 4090", 0x01, 8, (8, 9))
                });
            }
            // Eight H100 on NVSwitch, with fabric manager.
            "dgx" => {
                let buses = [0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb];
                for (i, bus) in (0u32..).zip(buses) {
                    s.gpus.push(Gpu {
                        mig_mode: Some((false, false)),
                        ..gpu(i, "NVIDIA H100 80GB HBM3", bus, 9, (9, 0))
                    });
                }
                s.files.fabricmanager = true;
                s.files.graphics = false;
            }
            // An A100 with MIG on: two GPU instances, the first split into two compute
            // instances; a second A100 with MIG capable but off.
            "mig" => {
                let mut a = gpu(0, "NVIDIA A100-SXM4-40GB", 0x07, 7, (8, 0));
                a.mig_mode = Some((true, true));
                a.mig_devices = vec![
                    MigDevice {
                        gi: 1,
                        ci: 0,
                        uuid: uuid("MIG", 10),
                    },
                    MigDevice {
                        gi: 1,
                        ci: 1,
                        uuid: uuid("MIG", 11),
                    },
                    MigDevice {
                        gi: 2,
                        ci: 0,
                        uuid: uuid("MIG", 20),
                    },
                ];
                s.gpus.push(a);
                s.gpus.push(Gpu {
                    mig_mode: Some((false, false)),
                    ..gpu(1, "NVIDIA A100-SXM4-40GB", 0x0f, 7, (8, 0))
                });
            }
            // The driver is installed, no GPU is visible.
            "nogpu" => {}
            // NixOS-like: no /etc/ld.so.cache.
            "nocache" => {
                s.gpus.push(gpu(0, "NVIDIA L4", 0x03, 8, (8, 9)));
                s.files.ldcache = false;
            }
            // With the i386 compatibility libraries.
            "legacy32" => {
                s.gpus.push(Gpu {
                    brand: 2, // NVML_BRAND_TESLA
                    ..gpu(0, "Tesla T4", 0x3b, 6, (7, 5))
                });
                s.files.lib32 = true;
            }
            // `dgx<N>`: the dgx host with N H100s (1 to 200), for scaling measurements.
            other => {
                let n: u32 = other.strip_prefix("dgx")?.parse().ok()?;
                if !(1..=200).contains(&n) {
                    return None;
                }
                // Distinct PCI buses from 0x10 on (n is at most 200).
                let bus = |i: u32| u8::try_from(0x10 + i).unwrap_or(u8::MAX);
                s.gpus = (0..n)
                    .map(|i| Gpu {
                        mig_mode: Some((false, false)),
                        ..gpu(i, "NVIDIA H100 80GB HBM3", bus(i), 9, (9, 0))
                    })
                    .collect();
                s.files.fabricmanager = true;
                s.files.graphics = false;
            }
        }
        Some(s)
    }
}

impl Gpu {
    /// The brand as libnvidia-container names it, by `nvmlBrandType_t` value (`Tesla`,
    /// `Nvidia` for H100 and A100, ...; `Unknown` for values it does not know).
    #[must_use]
    pub fn upstream_brand(&self) -> &'static str {
        match self.brand {
            1 => "Quadro",
            2 => "Tesla",
            3 => "NVS",
            4 => "GRID",
            5 => "GeForce",
            6 => "TITAN",
            7 => "VApps",
            8 => "VPC",
            9 => "VCS",
            10 => "VWS",
            11 => "CloudGaming",
            12 => "QuadroRTX",
            13 => "NvidiaRTX",
            14 => "Nvidia",
            15 => "GeForceRTX",
            16 => "TitanRTX",
            _ => "Unknown",
        }
    }
}

impl Scenario {
    /// The fake NVML's configuration for this scenario (`nvc-fake-nvml.conf`, read by
    /// `fake-nvml/nvml.rs`): one line per fact, GPU fields as `key=value` with `name` last.
    #[must_use]
    pub fn fake_nvml_config(&self) -> String {
        let mut out = format!(
            "driver_version {}\ncuda_version {}\ninit_result {}\ninit_delay_ms {}\n",
            self.driver_version,
            self.cuda_version,
            self.nvml_faults.init_result,
            self.nvml_faults.init_delay_ms
        );
        let faults = &self.nvml_faults;
        if let Some((call, how)) = faults.misbehave {
            let how = match how {
                Misbehaviour::Hang => "hang",
                Misbehaviour::Crash => "crash",
            };
            out.push_str(&format!("misbehave {call} {how}\n"));
        }
        if faults.garbage_names {
            out.push_str("garbage_names 1\n");
        }
        if let Some(n) = faults.max_mig_devices {
            out.push_str(&format!("max_mig_devices {n}\n"));
        }
        for g in &self.gpus {
            let mig = g.mig_mode.map_or("none".to_owned(), |(c, p)| {
                format!("{},{}", u8::from(c), u8::from(p))
            });
            out.push_str(&format!(
                "gpu index={} uuid={} domain={} bus={} device={} minor={} brand={} arch={} cc={}.{} mig={mig} name={}\n",
                g.index,
                g.uuid,
                g.pci.domain,
                g.pci.bus,
                g.pci.device,
                g.minor,
                g.brand,
                g.architecture,
                g.compute_capability.0,
                g.compute_capability.1,
                g.name
            ));
            for m in &g.mig_devices {
                out.push_str(&format!("mig gi={} ci={} uuid={}\n", m.gi, m.ci, m.uuid));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_exists_with_distinct_ids() {
        for name in BUILTIN {
            let s = Scenario::builtin(name).unwrap();
            let mut ids: Vec<&str> = s.gpus.iter().map(|g| g.uuid.as_str()).collect();
            ids.extend(
                s.gpus
                    .iter()
                    .flat_map(|g| g.mig_devices.iter().map(|m| m.uuid.as_str())),
            );
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), n, "{name}");
            for g in &s.gpus {
                assert!(
                    g.uuid.starts_with("GPU-") && g.uuid.len() == 40,
                    "{}",
                    g.uuid
                );
            }
        }
        assert!(Scenario::builtin("nope").is_none());
        assert_eq!(Scenario::builtin("dgx").unwrap().gpus.len(), 8);
    }

    #[test]
    fn bus_ids_use_upstream_and_kernel_spellings() {
        let p = PciAddress {
            domain: 0,
            bus: 0x07,
            device: 0,
        };
        assert_eq!(p.bus_id(), "00000000:07:00.0");
        assert_eq!(p.proc_name(), "0000:07:00.0");
    }
}
