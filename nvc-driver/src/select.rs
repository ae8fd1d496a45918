//! The `--device` selection grammar.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Error, Gpu, MigDevice, PciBusId};

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

/// What a [`DeviceRequest`] selects on a host: the GPUs themselves, as discovered, so that
/// planning needs no second look-up that could fail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Selection {
    /// The selected GPUs, parents of selected MIG devices included, ascending by NVML index.
    /// Each is the discovered [`Gpu`] except that its `mig_devices` holds only the selected
    /// MIG devices (all of them with `all`).
    pub gpus: Vec<Gpu>,
    /// Whether `all` was given.
    pub all: bool,
}

impl Selection {
    /// The selected MIG devices with their parents, in NVML order.
    pub fn migs(&self) -> impl Iterator<Item = (&Gpu, &MigDevice)> {
        self.gpus
            .iter()
            .flat_map(|g| g.mig_devices.iter().map(move |m| (g, m)))
    }

    /// Whether the GPU with this NVML index is selected.
    #[must_use]
    pub fn contains(&self, index: u32) -> bool {
        self.gpus.iter().any(|g| g.index == index)
    }

    /// The same GPUs without their MIG devices (what `--mig-config`/`--mig-monitor` mount
    /// instead of the devices' access files).
    #[must_use]
    pub fn without_migs(mut self) -> Self {
        for g in &mut self.gpus {
            g.mig_devices.clear();
        }
        self
    }
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
        // NVML index -> positions in its MIG list; a GPU with an empty set is selected whole.
        let mut picked: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
        let all = self.specs().any(|s| *s == DeviceSpec::All);
        if all {
            for g in gpus {
                picked
                    .entry(g.index)
                    .or_default()
                    .extend(0..g.mig_devices.len());
            }
        }
        let uuid_eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        for (token, spec) in &self.specs {
            let unknown = || Error::UnknownDevice {
                token: token.clone(),
            };
            let gpu = |f: &dyn Fn(&Gpu) -> bool| gpus.iter().find(|g| f(g)).ok_or_else(unknown);
            let (index, mig_position) = match spec {
                DeviceSpec::All | DeviceSpec::Nothing => continue,
                DeviceSpec::Index(i) => (gpu(&|g| g.index == *i)?.index, None),
                DeviceSpec::GpuUuid(u) => (gpu(&|g| uuid_eq(&g.uuid, u))?.index, None),
                DeviceSpec::BusId(id) => (gpu(&|g| g.bus_id == *id)?.index, None),
                DeviceSpec::MigUuid(u) => gpus
                    .iter()
                    .find_map(|g| {
                        let at = g.mig_devices.iter().position(|m| uuid_eq(&m.uuid, u));
                        at.map(|at| (g.index, Some(at)))
                    })
                    .ok_or_else(unknown)?,
                DeviceSpec::LegacyMig { gpu_uuid, gi, ci } => {
                    let g = gpu(&|g| uuid_eq(&g.uuid, gpu_uuid))?;
                    let at = g
                        .mig_devices
                        .iter()
                        .position(|m| m.gi == *gi && m.ci == *ci);
                    (g.index, Some(at.ok_or_else(unknown)?))
                }
                DeviceSpec::MigIndex { gpu: i, mig: m } => {
                    let g = gpu(&|g| g.index == *i)?;
                    let at = g.mig_devices.iter().position(|d| d.index == *m);
                    (g.index, Some(at.ok_or_else(unknown)?))
                }
            };
            picked.entry(index).or_default().extend(mig_position);
        }
        let gpus = picked
            .into_iter()
            .filter_map(|(index, migs)| {
                let g = gpus.iter().find(|g| g.index == index)?;
                Some(Gpu {
                    mig_devices: migs
                        .into_iter()
                        .filter_map(|at| g.mig_devices.get(at).cloned())
                        .collect(),
                    ..g.clone()
                })
            })
            .collect();
        Ok(Selection { gpus, all })
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
) -> Result<Vec<Gpu>, Error> {
    if !value.eq_ignore_ascii_case("all") {
        return Err(Error::InvalidMigAccess {
            option,
            value: value.to_owned(),
        });
    }
    if !visible.all && visible.migs().next().is_some() {
        return Err(Error::MigAccessWithMigDevices { option });
    }
    Ok(visible
        .gpus
        .iter()
        .filter(|g| g.mig_capable)
        .map(|g| Gpu {
            mig_devices: Vec::new(),
            ..g.clone()
        })
        .collect())
}
