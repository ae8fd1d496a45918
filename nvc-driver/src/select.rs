//! The `--device` selection grammar.

use crate::{Error, Gpu, PciBusId};

/// One token of a device list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// `all` (any case): every GPU and every MIG device.
    All,
    /// `none` or `void` (any case): nothing, as `NVIDIA_VISIBLE_DEVICES=none|void` means to
    /// the toolkit. Upstream's CLI rejects these as unknown devices.
    Nothing,
    /// A decimal NVML index.
    Index(u32),
    /// `GPU-<uuid>`, matched case-insensitively.
    GpuUuid(String),
    /// `MIG-<uuid>`, matched case-insensitively.
    MigUuid(String),
    /// The pre-R470 form `MIG-GPU-<gpu uuid>/<gi>/<ci>` (upstream no longer accepts it).
    LegacyMig {
        /// `GPU-<uuid>` of the parent.
        gpu_uuid: String,
        /// GPU instance id.
        gi: u32,
        /// Compute instance id.
        ci: u32,
    },
    /// A PCI bus id, with or without domain (`00000000:07:00.0`, `0000:07:00.0`, `07:00.0`).
    BusId(PciBusId),
    /// `<gpu index>:<mig index>`: a MIG device by its position in its parent's list.
    MigIndex {
        /// NVML index of the parent GPU.
        gpu: u32,
        /// Position in the parent's MIG list.
        mig: u32,
    },
}

impl DeviceSpec {
    /// Parses one token. The token forms do not overlap: a bus id needs two colons or a
    /// `.0` suffix, so `1:0` is always `<gpu>:<mig>`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDevice`] naming the token, in upstream's words.
    pub fn parse(token: &str) -> Result<Self, Error> {
        let unknown = || Error::UnknownDevice {
            token: token.to_owned(),
        };
        let upper = token.to_ascii_uppercase();
        if upper == "ALL" {
            return Ok(DeviceSpec::All);
        }
        if upper == "NONE" || upper == "VOID" {
            return Ok(DeviceSpec::Nothing);
        }
        if let Some(rest) = upper.strip_prefix("MIG-GPU-") {
            let mut parts = rest.split('/');
            let (Some(uuid), Some(gi), Some(ci), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(unknown());
            };
            return Ok(DeviceSpec::LegacyMig {
                gpu_uuid: format!("GPU-{uuid}"),
                gi: gi.parse().map_err(|_| unknown())?,
                ci: ci.parse().map_err(|_| unknown())?,
            });
        }
        if upper.starts_with("GPU-") && upper.len() > 4 {
            return Ok(DeviceSpec::GpuUuid(upper));
        }
        if upper.starts_with("MIG-") && upper.len() > 4 {
            return Ok(DeviceSpec::MigUuid(upper));
        }
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            return token.parse().map(DeviceSpec::Index).map_err(|_| unknown());
        }
        let colons = token.matches(':').count();
        if colons == 1 && !token.contains('.') {
            let (gpu, mig) = token.split_once(':').ok_or_else(unknown)?;
            let num = |s: &str| {
                (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse().ok())
                    .flatten()
            };
            return match (num(gpu), num(mig)) {
                (Some(gpu), Some(mig)) => Ok(DeviceSpec::MigIndex { gpu, mig }),
                _ => Err(unknown()),
            };
        }
        token.parse().map(DeviceSpec::BusId).map_err(|_| unknown())
    }
}

/// A parsed device list: comma-separated tokens, empty ones skipped; several `--device`
/// options add up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DeviceRequest {
    specs: Vec<(String, DeviceSpec)>,
}

/// What a [`DeviceRequest`] selects on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selection {
    /// NVML indices of the selected GPUs (MIG parents included), ascending.
    pub gpus: Vec<u32>,
    /// Selected MIG devices as (parent NVML index, MIG index), ascending.
    pub migs: Vec<(u32, u32)>,
    /// Whether `all` was given.
    pub all: bool,
}

impl DeviceRequest {
    /// Parses one `--device` value and adds it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDevice`] for the first token that is no device spelling.
    pub fn add(&mut self, list: &str) -> Result<(), Error> {
        for token in list.split(',').filter(|t| !t.is_empty()) {
            self.specs
                .push((token.to_owned(), DeviceSpec::parse(token)?));
        }
        Ok(())
    }

    /// Parses a device list.
    ///
    /// # Errors
    ///
    /// As [`DeviceRequest::add`].
    pub fn parse(list: &str) -> Result<Self, Error> {
        let mut request = DeviceRequest::default();
        request.add(list)?;
        Ok(request)
    }

    /// The tokens, in order.
    pub fn specs(&self) -> impl Iterator<Item = &DeviceSpec> {
        self.specs.iter().map(|(_, s)| s)
    }

    /// Resolves the request against the host's GPUs. Selecting a MIG device selects its
    /// parent GPU too; duplicates collapse.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDevice`] naming the first token that matches nothing.
    pub fn select(&self, gpus: &[Gpu]) -> Result<Selection, Error> {
        let mut sel = Selection::default();
        if self.specs().any(|s| *s == DeviceSpec::All) {
            sel.all = true;
            for g in gpus {
                sel.gpus.push(g.index);
                sel.migs
                    .extend(g.mig_devices.iter().map(|m| (g.index, m.index)));
            }
        }
        for (token, spec) in &self.specs {
            let unknown = || Error::UnknownDevice {
                token: token.clone(),
            };
            let uuid_eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
            match spec {
                DeviceSpec::All | DeviceSpec::Nothing => {}
                DeviceSpec::Index(i) => sel.gpus.push(
                    gpus.iter()
                        .find(|g| g.index == *i)
                        .ok_or_else(unknown)?
                        .index,
                ),
                DeviceSpec::GpuUuid(u) => {
                    sel.gpus.push(
                        gpus.iter()
                            .find(|g| uuid_eq(&g.uuid, u))
                            .ok_or_else(unknown)?
                            .index,
                    );
                }
                DeviceSpec::BusId(id) => sel.gpus.push(
                    gpus.iter()
                        .find(|g| g.bus_id == *id)
                        .ok_or_else(unknown)?
                        .index,
                ),
                DeviceSpec::MigUuid(u) => {
                    let (g, m) = gpus
                        .iter()
                        .flat_map(|g| g.mig_devices.iter().map(move |m| (g, m)))
                        .find(|(_, m)| uuid_eq(&m.uuid, u))
                        .ok_or_else(unknown)?;
                    sel.migs.push((g.index, m.index));
                }
                DeviceSpec::LegacyMig { gpu_uuid, gi, ci } => {
                    let g = gpus
                        .iter()
                        .find(|g| uuid_eq(&g.uuid, gpu_uuid))
                        .ok_or_else(unknown)?;
                    let m = g
                        .mig_devices
                        .iter()
                        .find(|m| m.gi == *gi && m.ci == *ci)
                        .ok_or_else(unknown)?;
                    sel.migs.push((g.index, m.index));
                }
                DeviceSpec::MigIndex { gpu, mig } => {
                    let g = gpus.iter().find(|g| g.index == *gpu).ok_or_else(unknown)?;
                    let m = g
                        .mig_devices
                        .iter()
                        .find(|m| m.index == *mig)
                        .ok_or_else(unknown)?;
                    sel.migs.push((g.index, m.index));
                }
            }
        }
        sel.gpus.extend(sel.migs.iter().map(|&(g, _)| g));
        sel.gpus.sort_unstable();
        sel.gpus.dedup();
        sel.migs.sort_unstable();
        sel.migs.dedup();
        Ok(sel)
    }
}

/// `--mig-config` / `--mig-monitor`: which visible GPUs get the MIG configuration (or
/// monitoring) capability. Only `all` is accepted, as upstream; it selects every visible
/// MIG-capable GPU and cannot be combined with a selection of specific MIG devices.
///
/// # Errors
///
/// [`Error::InvalidMigAccess`] for a value other than `all`,
/// [`Error::MigAccessWithMigDevices`] when specific MIG devices are visible.
pub fn select_mig_access(
    option: &'static str,
    value: &str,
    visible: &Selection,
    gpus: &[Gpu],
) -> Result<Vec<u32>, Error> {
    if !value.eq_ignore_ascii_case("all") {
        return Err(Error::InvalidMigAccess {
            option,
            value: value.to_owned(),
        });
    }
    if !visible.all && !visible.migs.is_empty() {
        return Err(Error::MigAccessWithMigDevices { option });
    }
    Ok(gpus
        .iter()
        .filter(|g| g.mig_capable && visible.gpus.contains(&g.index))
        .map(|g| g.index)
        .collect())
}
