//! Pure parsers of the `/proc` files the NVIDIA kernel modules write.

/// The NVRM version in `/proc/driver/nvidia/version`
/// (`NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb ...`; the open
/// kernel modules say `Open Kernel Module for x86_64  570.86.15  Release Build ...`).
#[must_use]
pub fn nvrm_version(text: &str) -> Option<&str> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    let (_, rest) = line.split_once("Kernel Module")?;
    rest.split_whitespace()
        .take(3)
        .find(|t| t.contains('.') && t.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// The major of character device `name` in `/proc/devices`.
#[must_use]
pub fn char_major(text: &str, name: &str) -> Option<u32> {
    text.lines()
        .skip_while(|l| !l.starts_with("Character devices:"))
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("Block devices:"))
        .find_map(|l| {
            let (major, dev) = l.trim().split_once(' ')?;
            (dev.trim() == name).then(|| major.parse().ok()).flatten()
        })
}

/// The `DeviceFileMinor` of a capability file (`.../mig/gi1/access`, `mig/config`): the minor
/// of its `/dev/nvidia-caps/nvidia-cap<N>` node.
#[must_use]
pub fn cap_device_minor(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("DeviceFileMinor:")?.trim().parse().ok())
}

/// A GPU as its `/proc/driver/nvidia/gpus/<bus>/information` file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInformation {
    /// `Model:` (`NVIDIA A100-SXM4-40GB`).
    pub model: String,
    /// `GPU UUID:`.
    pub uuid: String,
    /// `Bus Location:` (`0000:07:00.0`).
    pub bus_location: String,
    /// `Device Minor:`, its `/dev/nvidia<minor>`.
    pub minor: u32,
}

/// Parses a GPU's `information` file (`Key:` then tabs and spaces, then the value); `None`
/// when one of the four fields is missing or the minor is not a number.
#[must_use]
pub fn gpu_information(text: &str) -> Option<GpuInformation> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
    };
    Some(GpuInformation {
        model: field("Model")?.to_owned(),
        uuid: field("GPU UUID")?.to_owned(),
        bus_location: field("Bus Location")?.to_owned(),
        minor: decimal(field("Device Minor")?)?,
    })
}

/// The `DeviceFileMode` of a capability file (`256`, decimal, as the driver writes it).
#[must_use]
pub fn device_file_mode(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("DeviceFileMode:")?.trim().parse().ok())
}

/// The entries of `/proc/driver/nvidia-caps/mig-minors` (`gpu0/gi1/access 12`) for GPUs
/// below `gpus`: each entry's capability file below `/proc/driver/nvidia/capabilities/`
/// (`config` → `mig/config`, `gpu0/gi1/ci0/access` → `gpu0/mig/gi1/ci0/access`) and its
/// minor. Only the shapes the driver writes are taken (`config`, `monitor`,
/// `gpu<N>/gi<G>/access`, `gpu<N>/gi<G>/ci<C>/access`, numbers in decimal), so a path made
/// from an entry never leaves the capabilities directory; anything else is skipped.
#[must_use]
pub fn mig_minors(text: &str, gpus: u32) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|line| {
            let (name, minor) = line.split_once(' ')?;
            let minor = decimal(minor.trim())?;
            Some((capability_file(name, gpus)?, minor))
        })
        .collect()
}

fn decimal(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn capability_file(name: &str, gpus: u32) -> Option<String> {
    if matches!(name, "config" | "monitor") {
        return Some(format!("mig/{name}"));
    }
    let parts: Vec<&str> = name.split('/').collect();
    let (gpu, rest) = parts.split_first()?;
    let index = decimal(gpu.strip_prefix("gpu")?)?;
    let numbered = |part: &str, prefix: &str| part.strip_prefix(prefix).and_then(decimal);
    let shaped = match rest {
        [gi, "access"] => numbered(gi, "gi").is_some(),
        [gi, ci, "access"] => numbered(gi, "gi").is_some() && numbered(ci, "ci").is_some(),
        _ => false,
    };
    (shaped && index < gpus).then(|| format!("{gpu}/mig/{}", rest.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_both_module_flavours() {
        let proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\nGCC version: gcc 12\n";
        assert_eq!(nvrm_version(proprietary), Some("550.54.14"));
        let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16)\n";
        assert_eq!(nvrm_version(open), Some("570.86.15"));
        let open = "NVRM version: NVIDIA UNIX Open Kernel Module  570.86.15  Release Build\n";
        assert_eq!(nvrm_version(open), Some("570.86.15"));
        assert_eq!(nvrm_version(""), None);
        assert_eq!(nvrm_version("NVRM version: garbage"), None);
    }

    #[test]
    fn mig_minors_entries_name_their_capability_files() {
        let table = "config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu1/gi2/ci0/access 30\n\
                     gpu2/gi2/access 40\ngpux/gi2/access 5\ngpu0/gi2/weird 6\n\
                     fabric-imex-mgmt 7\ngpu0/../../../etc/access 8\ngpu0/gi1/../access 9\n\
                     gpu0/gi+1/access 10\ngpu0/gi1/access -1\n";
        let entries = mig_minors(table, 2);
        let names: Vec<(&str, u32)> = entries.iter().map(|(f, m)| (f.as_str(), *m)).collect();
        assert_eq!(
            names,
            [
                ("mig/config", 1),
                ("mig/monitor", 2),
                ("gpu0/mig/gi1/access", 12),
                ("gpu1/mig/gi2/ci0/access", 30),
            ]
        );
    }

    #[test]
    fn capability_files_name_their_minor() {
        let text = "DeviceFileMinor: 21\nDeviceFileMode: 256\nDeviceFileModify: 1\n";
        assert_eq!(cap_device_minor(text), Some(21));
        assert_eq!(cap_device_minor("DeviceFileMode: 256\n"), None);
        assert_eq!(cap_device_minor("DeviceFileMinor: x\n"), None);
    }

    #[test]
    fn majors_come_from_the_character_section_only() {
        let text = "Character devices:\n  1 mem\n195 nvidia-frontend\n236 nvidia-uvm\n\nBlock devices:\n236 nvidia-uvm\n  8 sd\n";
        assert_eq!(char_major(text, "nvidia-uvm"), Some(236));
        assert_eq!(char_major(text, "mem"), Some(1));
        assert_eq!(char_major(text, "sd"), None);
        assert_eq!(char_major(text, "nvidia-caps"), None);
    }
}
