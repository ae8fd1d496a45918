//! The plan of one configure as data: what [`ContainerSetup::plan`] returns and
//! [`ContainerSetup::apply`] executes.

use std::fmt;
use std::path::Path;

use nvc_mount::Configuration;

#[cfg(doc)]
use crate::ContainerSetup;
use crate::{Ldconfig, Operation, Selection};

/// What [`ContainerSetup::mount`] will do, as data: the operations in order (mounts,
/// written files, links, device rules — [`Plan::operations`]), the device rules on their
/// own ([`Plan::device_rules`], also when nvc leaves the cgroup to the runtime), and the
/// linker-cache step ([`Plan::ldconfig`], [`Plan::ldconfig_dirs`]).
/// [`ContainerSetup::apply`] executes exactly this. `Display` prints it one operation a
/// line (`bind ro,nosuid,nodev TARGET <- SOURCE`, `cgroup allow c 195:0 rw`,
/// `ldconfig ...`); with the `serde` feature it is serialisable.
///
/// Its serialised form is its own, versioned (`"version": 1`): a reader refuses a newer
/// one; `nvc-core/tests/data/plan-v1.json` holds the format, and a test reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(into = "data::PlanData", try_from = "data::PlanData")
)]
pub struct Plan {
    pub(crate) configuration: Configuration,
    pub(crate) device_rules: Vec<(u32, u32)>,
    pub(crate) selection: Selection,
}

/// The linker-cache step of a plan that has none.
static SKIP: Ldconfig = Ldconfig::Skip;

impl Plan {
    /// The devices selected.
    #[must_use]
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// What is done in the container, in order. Container paths are absolute paths inside
    /// its root; bind sources are host paths (or, for [`Operation::BindFromImage`], the
    /// image's own files). [`Operation::AllowDevice`] rules are here only when nvc grants
    /// them ([`ContainerSetup::device_cgroup`]).
    #[must_use]
    pub fn operations(&self) -> &[Operation] {
        &self.configuration.plan.ops
    }

    /// The character devices (major, minor) the container needs `rw` access to, in order:
    /// what nvc grants, or — with [`ContainerSetup::device_cgroup`] off — what the runtime
    /// must allow in its own device cgroup.
    #[must_use]
    pub fn device_rules(&self) -> &[(u32, u32)] {
        &self.device_rules
    }

    /// The linker-cache step ([`Ldconfig::Skip`] when none runs).
    #[must_use]
    pub fn ldconfig(&self) -> &Ldconfig {
        self.configuration
            .ldconfig
            .as_ref()
            .map_or(&SKIP, |l| &l.ldconfig)
    }

    /// The container directories the linker-cache step adds, in the order `ldconfig` is
    /// given them (the CUDA compat directory first, in `ldconfig` compat mode).
    #[must_use]
    pub fn ldconfig_dirs(&self) -> Vec<&Path> {
        self.configuration.ldconfig_dirs()
    }

    /// The container's root filesystem it was planned for (a host path).
    #[must_use]
    pub fn rootfs(&self) -> &Path {
        &self.configuration.rootfs
    }

    /// What was left out and why (a `/proc` file the driver does not have, ...).
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.configuration.plan.warnings
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.configuration.fmt(f)
    }
}

/// The serialised form of a [`Plan`], nvc-core's own and versioned, whatever the engine's
/// types hold: what the plan does, the directories it was made for, nothing of how.
#[cfg(feature = "serde")]
mod data {
    use std::path::PathBuf;

    use nvc_mount::{Configuration, LdconfigOptions, Limits, MountPlan};

    use crate::{ContainerDirs, Ldconfig, Operation, Plan, Selection};

    /// The format this build writes and reads.
    const VERSION: u32 = 1;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub(super) struct PlanData {
        version: u32,
        rootfs: PathBuf,
        dirs: ContainerDirs,
        operations: Vec<Operation>,
        device_rules: Vec<(u32, u32)>,
        ldconfig: Ldconfig,
        no_pivot: bool,
        cuda_compat_dir: Option<PathBuf>,
        warnings: Vec<String>,
        selection: Selection,
    }

    impl From<Plan> for PlanData {
        fn from(plan: Plan) -> Self {
            let Configuration {
                plan: mounts,
                ldconfig,
                dirs,
                rootfs,
            } = plan.configuration;
            let (ldconfig, no_pivot, cuda_compat_dir) = match ldconfig {
                Some(l) => (l.ldconfig, l.no_pivot, l.cuda_compat_dir),
                None => (Ldconfig::Skip, false, None),
            };
            PlanData {
                version: VERSION,
                rootfs,
                dirs,
                operations: mounts.ops,
                device_rules: plan.device_rules,
                ldconfig,
                no_pivot,
                cuda_compat_dir,
                warnings: mounts.warnings,
                selection: plan.selection,
            }
        }
    }

    impl TryFrom<PlanData> for Plan {
        type Error = String;

        fn try_from(d: PlanData) -> Result<Self, String> {
            if d.version != VERSION {
                return Err(format!(
                    "a plan of format {}: this nvc reads format {VERSION}",
                    d.version
                ));
            }
            let ldconfig = (d.ldconfig != Ldconfig::Skip).then(|| LdconfigOptions {
                ldconfig: d.ldconfig,
                no_pivot: d.no_pivot,
                extra_dirs: Vec::new(),
                cuda_compat_dir: d.cuda_compat_dir,
                limits: Limits::default(),
            });
            let plan = MountPlan {
                ops: d.operations,
                warnings: d.warnings,
                ..MountPlan::default()
            };
            Ok(Plan {
                configuration: Configuration {
                    plan,
                    ldconfig,
                    dirs: d.dirs,
                    rootfs: d.rootfs,
                },
                device_rules: d.device_rules,
                selection: d.selection,
            })
        }
    }
}
