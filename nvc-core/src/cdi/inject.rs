//! Applying CDI edits to an OCI spec (features `cdi` and `oci`): what podman, containerd and
//! CRI-O do themselves, for runtimes that do not read CDI (runc, crun, youki).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path};

use oci_spec::runtime::{
    Hook as OciHook, Hooks, Linux, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources,
    Mount as OciMount, Process, Spec as OciSpec,
};

use super::registry::Registry;
use super::spec::{ContainerEdits, DeviceNode, Hook, Mount};
use crate::Error;

impl Registry {
    /// Gives the container `spec` describes the devices `names` (fully qualified,
    /// `nvidia.com/gpu=all`), as a CDI-aware runtime does, and as the Go reference library
    /// (podman, containerd, CRI-O) does where the Rust `container-device-interface` crate
    /// differs: the environment entries (replacing a variable already set, in place), the
    /// device nodes (created by the runtime, and allowed in the device cgroup with the node's
    /// permissions, `rwm` by default), the mounts (replacing one at the same destination,
    /// their type as the spec gives it; then all mounts ordered parents first), the hooks
    /// and the supplementary groups. A node whose type or numbers the spec leaves out is
    /// `stat`ed on the host (its `hostPath`, else its path).
    ///
    /// All or nothing: on error `spec` is unchanged.
    ///
    /// # Errors
    ///
    /// [`Registry::edits`]'s; a device node that cannot be `stat`ed or is no device, named.
    pub fn inject<S: AsRef<str>>(&self, spec: &mut OciSpec, names: &[S]) -> Result<(), Error> {
        let mut out = spec.clone();
        for edits in self.edits(names)? {
            apply(&mut out, edits)?;
        }
        if let Some(mounts) = out.mounts_mut() {
            // Parents before what is mounted inside them (stable: equal depths keep order).
            mounts.sort_by_key(|m| depth(m.destination()));
        }
        *spec = out;
        Ok(())
    }
}

fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn apply(spec: &mut OciSpec, edits: &ContainerEdits) -> Result<(), Error> {
    let process = spec.process_mut().get_or_insert_with(Process::default);
    let env = process.env_mut().get_or_insert_with(Vec::new);
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    for entry in &edits.env {
        // In place, as the Go reference library does (podman, containerd, CRI-O).
        match env.iter_mut().find(|e| key(e) == key(entry)) {
            Some(old) => old.clone_from(entry),
            None => env.push(entry.clone()),
        }
    }
    let gids = process
        .user_mut()
        .additional_gids_mut()
        .get_or_insert_with(Vec::new);
    for &gid in &edits.additional_gids {
        if gid != 0 && !gids.contains(&gid) {
            gids.push(gid);
        }
    }

    let linux = spec.linux_mut().get_or_insert_with(Linux::default);
    for node in &edits.device_nodes {
        let (device, rule) = device(node)?;
        let devices = linux.devices_mut().get_or_insert_with(Vec::new);
        devices.retain(|d| d.path() != device.path());
        devices.push(device);
        linux
            .resources_mut()
            .get_or_insert_with(LinuxResources::default)
            .devices_mut()
            .get_or_insert_with(Vec::new)
            .push(rule);
    }

    let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
    for m in &edits.mounts {
        mounts.retain(|o| o.destination() != &m.container_path);
        mounts.push(mount(m));
    }

    for h in &edits.hooks {
        let hooks = spec.hooks_mut().get_or_insert_with(Hooks::default);
        let list = match h.hook_name.as_str() {
            "prestart" => hooks.prestart_mut(),
            "createRuntime" => hooks.create_runtime_mut(),
            "createContainer" => hooks.create_container_mut(),
            "startContainer" => hooks.start_container_mut(),
            "poststart" => hooks.poststart_mut(),
            "poststop" => hooks.poststop_mut(),
            other => return Err(Error::input(format!("unknown CDI hook name {other:?}"))),
        };
        list.get_or_insert_with(Vec::new).push(hook(h));
    }
    Ok(())
}

/// The node to create and its cgroup rule.
fn device(node: &DeviceNode) -> Result<(LinuxDevice, LinuxDeviceCgroup), Error> {
    let host = node.host_path.as_deref().unwrap_or(&node.path);
    let (kind, major, minor) = match (&node.kind, node.major, node.minor) {
        (Some(k), Some(major), Some(minor)) => (kind_of(k, host)?, major, minor),
        _ => {
            let meta = std::fs::metadata(host)
                .map_err(|e| Error::io(format!("cannot stat device node {}", host.display()), e))?;
            let t = meta.file_type();
            let kind = if t.is_char_device() {
                LinuxDeviceType::C
            } else if t.is_block_device() {
                LinuxDeviceType::B
            } else if t.is_fifo() {
                LinuxDeviceType::P
            } else {
                return Err(Error::input(format!(
                    "{}: not a device node",
                    host.display()
                )));
            };
            let rdev = meta.rdev();
            (
                kind,
                i64::from(libc::major(rdev)),
                i64::from(libc::minor(rdev)),
            )
        }
    };
    let mut d = LinuxDevice::default();
    d.set_path(node.path.clone());
    d.set_typ(kind);
    d.set_major(major);
    d.set_minor(minor);
    d.set_file_mode(node.file_mode);
    d.set_uid(node.uid);
    d.set_gid(node.gid);
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_typ(Some(kind));
    rule.set_major(Some(major));
    rule.set_minor(Some(minor));
    rule.set_access(Some(
        node.permissions.clone().unwrap_or_else(|| "rwm".into()),
    ));
    Ok((d, rule))
}

fn kind_of(kind: &str, path: &Path) -> Result<LinuxDeviceType, Error> {
    match kind {
        "c" => Ok(LinuxDeviceType::C),
        "b" => Ok(LinuxDeviceType::B),
        "u" => Ok(LinuxDeviceType::U),
        "p" => Ok(LinuxDeviceType::P),
        other => Err(Error::input(format!(
            "device node {}: invalid type {other:?}",
            path.display()
        ))),
    }
}

fn mount(m: &Mount) -> OciMount {
    let mut o = OciMount::default();
    o.set_destination(m.container_path.clone());
    o.set_source(Some(m.host_path.clone()));
    o.set_typ(m.kind.clone());
    o.set_options((!m.options.is_empty()).then(|| m.options.clone()));
    o
}

fn hook(h: &Hook) -> OciHook {
    let mut o = OciHook::default();
    o.set_path(h.path.clone());
    o.set_args((!h.args.is_empty()).then(|| h.args.clone()));
    o.set_env((!h.env.is_empty()).then(|| h.env.clone()));
    o.set_timeout(h.timeout.map(i64::from));
    o
}
