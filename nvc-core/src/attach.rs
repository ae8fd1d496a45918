//! Running containers: GPUs given to a started container ([`Driver::running`] then
//! [`ContainerSetup::mount`]) and taken back ([`ContainerSetup::detach`]).

use std::path::PathBuf;

use nvc_driver::tables::Capability;
use nvc_mount::{MountKind, MountPlan, Op, Part, PlanOptions};

use crate::container::ContainerSetup;
use crate::error::{Error, Step};
use crate::{Driver, Gpu};

impl Driver {
    /// A running container (started, its root pivoted), by its init process `pid`: its
    /// root is the process's own, taken from the host's `/proc/<pid>/root` and held open
    /// (no host path of the rootfs is needed, or exists in its mount namespace). What
    /// [`ContainerSetup::mount`] then does is an attach: everything `configure` gives,
    /// where the container lacks it — a second attach of the same GPU adds nothing, a
    /// container that has the driver's files keeps them and gets the GPU's node and rule —
    /// undone as a whole on failure; [`ContainerSetup::detach`] takes GPUs back.
    ///
    /// A running container's processes are live: they can race everything nvc does in
    /// their tree. Every path there is resolved inside the root held open (`openat2`
    /// `RESOLVE_IN_ROOT`), mountpoints are created without following links, each mount is
    /// checked to be the one made before it is recorded, and removal acts on recorded
    /// inodes only: what a process swaps in meanwhile is refused or left alone, never
    /// followed out of the container.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoContainer`](crate::ErrorKind::NoContainer) when the process does
    /// not exist (or exits during the lookup); a detection error in its root.
    pub fn running(&self, pid: u32) -> Result<ContainerSetup<'_>, Error> {
        let container =
            nvc_mount::Container::running(pid).map_err(|e| Error::mount(Step::Container, e))?;
        let rootfs = container.rootfs.clone();
        Ok(ContainerSetup::new(self, &rootfs, Some(container)))
    }

    /// [`Driver::running`] for the container whose init `pidfd` refers to (the descriptor a
    /// runtime holds from `pidfd_open(2)` or `clone3(CLONE_PIDFD)`): the process is never
    /// looked up by its number, so a pid reused since cannot stand in for it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoContainer`](crate::ErrorKind::NoContainer) when `pidfd` is not a
    /// pidfd or its process has exited; else as [`Driver::running`]. Linux 5.3.
    pub fn running_pidfd(&self, pidfd: std::os::fd::OwnedFd) -> Result<ContainerSetup<'_>, Error> {
        let container = nvc_mount::Container::running_pidfd(pidfd)
            .map_err(|e| Error::mount(Step::Container, e))?;
        let rootfs = container.rootfs.clone();
        Ok(ContainerSetup::new(self, &rootfs, Some(container)))
    }
}

impl ContainerSetup<'_> {
    /// Takes the selected GPUs (and MIG devices) back from a running container
    /// ([`Driver::running`]): their device rules are denied in its device cgroup first,
    /// so no process there can open them from then on, then their nodes and `/proc`
    /// directories are unmounted. A MIG device's access goes with it, except what another
    /// MIG device still in the container shares (its GPU instance's access file, the parent
    /// GPU's node): that goes with the last of them. When no other GPU of the host remains
    /// in the container,
    /// the driver-wide nodes (`nvidiactl`, `nvidia-uvm`, ...) are taken back too; the
    /// driver's libraries, binaries, firmware and `/proc/driver/nvidia` stay (processes may
    /// have them mapped; without a device node they reach no GPU).
    ///
    /// The kernel checks device access at `open(2)`: a process that opened a GPU before
    /// keeps that descriptor and its mappings until it closes them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) for a setup that is not a
    /// running container, a device not on this host or no device selected; the cgroup's
    /// errors (nothing changed then); a `container error` naming the mounts left in place
    /// (the device rules are denied then).
    pub fn detach(self) -> Result<Detached, Error> {
        let container = self
            .container
            .as_ref()
            .filter(|c| c.is_running())
            .ok_or_else(|| Error::input("detach needs a running container (Driver::running)"))?;
        let selection = self.driver.select(&self.devices)?;
        if selection.gpus.is_empty() {
            return Err(Error::input("no device to detach"));
        }
        let info = self.driver.info();
        let dirs = self.image_dirs()?;
        let part = |part: Part| {
            let opts = PlanOptions {
                capabilities: Capability::ALL.to_vec(),
                no_devbind: self.options.plan.no_devbind,
                no_cgroups: !self.device_cgroup,
                part: Some(part),
                ..PlanOptions::default()
            };
            MountPlan::build(self.driver.root(), info, &dirs, &opts)
                .map_err(|e| Error::mount(Step::Container, e))
        };
        // What goes: each GPU's parts and the selected MIG devices' access. What stays: the
        // access of the parent's other MIG devices still in the container (one with a file
        // of its own in place), and with them the parent's node: MIG devices of one GPU
        // instance share its access file.
        let mut plan = MountPlan::default();
        for g in &selection.gpus {
            plan.ops.extend(part(Part::Gpu(g.clone()))?.ops);
        }
        for (g, m) in selection.migs() {
            plan.ops
                .extend(part(Part::MigAccess(g.clone(), m.clone()))?.ops);
        }
        let going: Vec<PathBuf> = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Bind { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect();
        // A sibling's mounts are the container's to fake (a process that can mount may bind
        // a host file back where it was): where the kernel keeps the device rules readably
        // (cgroup v1), a sibling counts only while its own capability is still allowed.
        let caps_major = info.files.caps_major;
        let cgroup = match caps_major {
            Some(_) if self.device_cgroup => Some(
                nvc_mount::cgroup::DeviceCgroup::of_process(container.pid, &container.proc_root)
                    .map_err(|e| Error::mount(Step::Configure, e))?,
            ),
            _ => None,
        };
        let allowed = |m: &nvc_driver::MigDevice| -> Result<bool, Error> {
            match (&cgroup, caps_major, m.access_minors.1) {
                (Some(cg), Some(major), Some(minor)) => Ok(cg
                    .allows(major, minor)
                    .map_err(|e| Error::mount(Step::Configure, e))?
                    .unwrap_or(true)),
                _ => Ok(true),
            }
        };
        let mut keep = MountPlan::default();
        for g in selection.gpus.iter().filter(|g| !g.mig_devices.is_empty()) {
            let mut sibling_stays = false;
            let siblings = info
                .gpus
                .iter()
                .filter(|h| h.minor == g.minor)
                .flat_map(|h| &h.mig_devices)
                .filter(|m| !g.mig_devices.iter().any(|s| s.index == m.index));
            for m in siblings {
                if !allowed(m)? {
                    continue;
                }
                let access = part(Part::MigAccess(g.clone(), m.clone()))?;
                let in_place = access
                    .in_place(container)
                    .map_err(|e| Error::mount(Step::Configure, e))?;
                if in_place.iter().any(|t| !going.contains(t)) {
                    keep.ops.extend(access.ops);
                    sibling_stays = true;
                }
            }
            if sibling_stays {
                keep.ops.extend(part(Part::Gpu(g.clone()))?.ops);
            }
        }
        plan.ops.retain(|op| !keep.ops.contains(op));
        let others: Vec<&Gpu> = info
            .gpus
            .iter()
            .filter(|g| !selection.gpus.iter().any(|s| s.minor == g.minor))
            .collect();
        let nodes = |g: &Gpu| PathBuf::from(format!("/dev/nvidia{}", g.minor));
        let mut probe = MountPlan::default();
        for g in &others {
            probe.ops.extend(part(Part::Gpu((*g).clone()))?.ops);
        }
        let in_place = probe
            .in_place(container)
            .map_err(|e| Error::mount(Step::Configure, e))?;
        let last = keep.ops.is_empty() && !others.iter().any(|g| in_place.contains(&nodes(g)));
        if last {
            plan.ops
                .extend(part(Part::Driver)?.ops.into_iter().filter(|op| {
                    matches!(
                        op,
                        Op::AllowDevice { .. }
                            | Op::Bind {
                                kind: MountKind::Device,
                                ..
                            }
                    )
                }));
        }
        let done = plan
            .detach(container)
            .map_err(|e| Error::mount(Step::Configure, e))?;
        Ok(Detached {
            unmounted: done.unmounted,
            revoked: done.cgroup.map(|(_, g)| g.added).unwrap_or_default(),
            last,
        })
    }
}

/// What [`ContainerSetup::detach`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Detached {
    unmounted: Vec<PathBuf>,
    revoked: Vec<(u32, u32)>,
    last: bool,
}

impl Detached {
    /// Container paths unmounted (device nodes, `/proc` directories), in order.
    #[must_use]
    pub fn unmounted(&self) -> &[PathBuf] {
        &self.unmounted
    }

    /// Character devices (major, minor) denied in the device cgroup now (those it still
    /// allowed).
    #[must_use]
    pub fn revoked(&self) -> &[(u32, u32)] {
        &self.revoked
    }

    /// Whether no GPU of the host remains in the container, so the driver-wide nodes were
    /// taken back too.
    #[must_use]
    pub fn was_last(&self) -> bool {
        self.last
    }
}
