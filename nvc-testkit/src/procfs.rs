//! Contents of the `/proc` files a simulated host provides, as the NVIDIA kernel modules
//! write them.

use crate::{Gpu, Scenario};

/// Character-device majors of the dynamically numbered NVIDIA devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Majors {
    /// `nvidia-uvm` (`/dev/nvidia-uvm`, `/dev/nvidia-uvm-tools`).
    pub uvm: u32,
    /// `nvidia-caps` (`/dev/nvidia-caps/nvidia-cap*`).
    pub caps: u32,
    /// `nvidia-caps-imex-channels`.
    pub imex: u32,
}

/// The fixed major of `nvidia` devices (`nvidia-frontend`).
pub const NVIDIA_MAJOR: u32 = 195;

impl Majors {
    /// Three majors from the dynamic range (254 downwards) that `host_devices` (the host's
    /// `/proc/devices`) does not use, so simulated nodes never alias a real driver.
    #[must_use]
    pub fn unused_in(host_devices: &str) -> Self {
        let used: Vec<u32> = host_devices
            .lines()
            .take_while(|l| !l.starts_with("Block"))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        let mut free = (200u32..=254).rev().filter(|m| !used.contains(m));
        let mut next = || free.next().unwrap_or(0);
        Majors {
            uvm: next(),
            caps: next(),
            imex: next(),
        }
    }
}

/// `/proc/devices` of the simulated host: the host's own character devices plus the NVIDIA
/// ones (`nvidia-frontend` at 195 and the dynamic ones), then the host's block devices.
#[must_use]
pub fn devices(host_devices: &str, majors: Majors) -> String {
    let (chars, blocks) = host_devices
        .split_once("\nBlock devices:")
        .unwrap_or((host_devices, "\n"));
    let mut lines: Vec<(u32, String)> = chars
        .lines()
        .filter_map(|l| {
            let (major, name) = l.trim().split_once(' ')?;
            Some((major.parse().ok()?, name.to_owned()))
        })
        .filter(|(major, _)| ![NVIDIA_MAJOR, majors.uvm, majors.caps, majors.imex].contains(major))
        .collect();
    lines.push((NVIDIA_MAJOR, "nvidia-frontend".into()));
    lines.push((majors.uvm, "nvidia-uvm".into()));
    lines.push((majors.caps, "nvidia-caps".into()));
    lines.push((majors.imex, "nvidia-caps-imex-channels".into()));
    lines.sort();
    let mut out = String::from("Character devices:\n");
    for (major, name) in lines {
        out.push_str(&format!("{major:3} {name}\n"));
    }
    out.push_str("\nBlock devices:");
    out.push_str(blocks);
    out
}

/// `/proc/driver/nvidia/version`.
#[must_use]
pub fn version(s: &Scenario) -> String {
    format!(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {}  Thu Feb 22 01:44:30 UTC 2024\n\
         GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
        s.driver_version
    )
}

/// `/proc/driver/nvidia/params` (what libnvidia-container replaces with
/// `ModifyDeviceFiles: 0` inside containers).
#[must_use]
pub fn params() -> String {
    [
        "ResmanDebugLevel: 4294967295",
        "RmLogonRC: 1",
        "ModifyDeviceFiles: 1",
        "DeviceFileUID: 0",
        "DeviceFileGID: 0",
        "DeviceFileMode: 438",
        "InitializeSystemMemoryAllocations: 1",
        "UsePageAttributeTable: 4294967295",
        "EnableMSI: 1",
        "EnablePCIeGen3: 0",
        "MemoryPoolSize: 0",
        "KMallocHeapMaxSize: 0",
        "VMallocHeapMaxSize: 0",
        "IgnoreMMIOCheck: 0",
        "TCEBypassMode: 0",
        "EnableStreamMemOPs: 0",
        "EnableUserNUMAManagement: 1",
        "NvLinkDisable: 0",
        "RmProfilingAdminOnly: 1",
        "PreserveVideoMemoryAllocations: 0",
        "EnableS0ixPowerManagement: 0",
        "S0ixPowerManagementVideoMemoryThreshold: 256",
        "DynamicPowerManagement: 3",
        "DynamicPowerManagementVideoMemoryThreshold: 200",
        "RegisterPCIDriver: 1",
        "EnablePCIERelaxedOrderingMode: 0",
        "EnableResizableBar: 0",
        "EnableGpuFirmware: 18",
        "EnableGpuFirmwareLogs: 2",
        "EnableDbgBreakpoint: 0",
        "OpenRmEnableUnsupportedGpus: 0",
        "DmaRemapPeerMmio: 1",
        "RegistryDwords: \"\"",
        "RegistryDwordsPerDevice: \"\"",
        "RmMsg: \"\"",
        "GpuBlacklist: \"\"",
        "TemporaryFilePath: \"\"",
        "ExcludedGpus: \"\"",
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect()
}

/// `/proc/driver/nvidia/registry`.
#[must_use]
pub fn registry() -> String {
    "Binary: \"\"\n".into()
}

/// `/proc/driver/nvidia/gpus/<bus>/information`.
#[must_use]
pub fn information(g: &Gpu) -> String {
    format!(
        "Model: \t\t {}\nIRQ:   \t\t {}\nGPU UUID: \t {}\nVideo BIOS: \t 96.00.99.00.01\n\
         Bus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\n\
         Bus Location: \t {}\nDevice Minor: \t {}\nGPU Excluded:\t No\n",
        g.name,
        100 + g.index,
        g.uuid,
        g.pci.proc_name(),
        g.minor
    )
}

/// A capability file (`DeviceFileMinor` is the `/dev/nvidia-caps/nvidia-cap<minor>` node).
#[must_use]
pub fn capability(minor: u32) -> String {
    format!("DeviceFileMinor: {minor}\nDeviceFileMode: 256\nDeviceFileModify: 1\n")
}

/// Minor of `/dev/nvidia-caps/nvidia-cap<N>` for MIG `config` (1) and `monitor` (2).
pub const CAP_CONFIG: u32 = 1;
/// See [`CAP_CONFIG`].
pub const CAP_MONITOR: u32 = 2;

/// Minor of the access capability of GPU instance `gi` on the GPU with `minor`, following the
/// layout of `/proc/driver/nvidia-caps/mig-minors` (per GPU 15 GPU-instance slots, each with
/// its access node and 8 compute-instance nodes).
#[must_use]
pub fn gi_minor(gpu_minor: u32, gi: u32) -> u32 {
    3 + gpu_minor * 15 * 9 + gi * 9
}

/// Minor of the access capability of compute instance `ci` in GPU instance `gi`.
#[must_use]
pub fn ci_minor(gpu_minor: u32, gi: u32, ci: u32) -> u32 {
    gi_minor(gpu_minor, gi) + 1 + ci
}

/// `/proc/driver/nvidia-caps/mig-minors` for the GPUs of a scenario.
#[must_use]
pub fn mig_minors(s: &Scenario) -> String {
    let mut out = format!("config {CAP_CONFIG}\nmonitor {CAP_MONITOR}\n");
    for g in s.gpus.iter().filter(|g| g.mig_mode.is_some()) {
        for gi in 0..15 {
            out.push_str(&format!(
                "gpu{}/gi{gi}/access {}\n",
                g.minor,
                gi_minor(g.minor, gi)
            ));
            for ci in 0..8 {
                out.push_str(&format!(
                    "gpu{}/gi{gi}/ci{ci}/access {}\n",
                    g.minor,
                    ci_minor(g.minor, gi, ci)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n195 other\n254 gpiochip\n\nBlock devices:\n  7 loop\n";

    #[test]
    fn majors_avoid_the_hosts() {
        let m = Majors::unused_in(HOST);
        assert_eq!((m.uvm, m.caps, m.imex), (253, 252, 251));
    }

    #[test]
    fn devices_lists_the_nvidia_majors_sorted_and_keeps_block_devices() {
        let m = Majors::unused_in(HOST);
        let text = devices(HOST, m);
        assert_eq!(
            text,
            "Character devices:\n  1 mem\n  4 /dev/vc/0\n195 nvidia-frontend\n251 nvidia-caps-imex-channels\n\
             252 nvidia-caps\n253 nvidia-uvm\n254 gpiochip\n\nBlock devices:\n  7 loop\n"
        );
    }

    #[test]
    fn mig_minors_are_distinct() {
        let s = Scenario::builtin("mig").unwrap();
        let text = mig_minors(&s);
        let mut minors: Vec<u32> = text
            .lines()
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        let n = minors.len();
        minors.sort_unstable();
        minors.dedup();
        assert_eq!(minors.len(), n);
        assert_eq!(n, 2 + 2 * 15 * 9);
        assert!(text.contains(&format!("gpu0/gi1/ci1/access {}\n", ci_minor(0, 1, 1))));
    }
}
