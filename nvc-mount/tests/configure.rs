//! Tier c: `configure` as a transaction (mounts, device cgroup, ldconfig) on a paused
//! container in a runtime-like device cgroup; CUDA forward compat end to end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::{Path, PathBuf};

use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_ldcache::elf::{Class, SharedObject, write_shared_object};
use nvc_mount::{
    Container, Error, Ldconfig, LdconfigOptions, Limits, MountPlan, PlanOptions, compat_libraries,
};
use nvc_testkit::TestCgroup;

mod common;

use common::Sim as Fixture;

fn fixture() -> Option<Fixture> {
    let sim = common::sim("single")?;
    sim.mkdirs(&["sbin", "usr/lib/x86_64-linux-gnu"]);
    fs::write(
        sim.rootfs.path().join("etc/ld.so.cache"),
        "the image's cache",
    )
    .unwrap();
    Some(sim)
}

impl Fixture {
    fn compute_plan(&self, container: &Container, compat_libs: Vec<PathBuf>) -> MountPlan {
        self.plan(
            container,
            &PlanOptions {
                capabilities: vec![Compute, Utility],
                devices: self.select("0"),
                compat_libs,
                ..PlanOptions::default()
            },
        )
    }
}

/// A runtime-like cgroup: everything denied but /dev/null.
fn runtime_cgroup() -> Option<TestCgroup> {
    let cg = TestCgroup::v1_devices()?;
    fs::write(cg.path().join("devices.deny"), "a").unwrap();
    fs::write(cg.path().join("devices.allow"), "c 1:3 rwm").unwrap();
    Some(cg)
}

/// A static program standing in for ldconfig: it does ldconfig's kind of damage (a SONAME
/// link, a new cache) and then fails.
const BAD_LDCONFIG: &str = r#"
#include <stdio.h>
#include <unistd.h>
int main(void) {
    symlink("libcuda.so.550.54.14", "/usr/lib/x86_64-linux-gnu/libcuda.so.1");
    FILE *f = fopen("/etc/ld.so.cache~", "w");
    fputs("garbage", f);
    fclose(f);
    rename("/etc/ld.so.cache~", "/etc/ld.so.cache");
    fputs("bad ldconfig: giving up\n", stderr);
    return 3;
}
"#;

#[test]
fn a_failed_ldconfig_undoes_the_whole_configure() {
    let Some(f) = fixture() else { return };
    let Some(cg) = runtime_cgroup() else { return };
    cg.add(f.c.pid()).unwrap();
    let bin = f.rootfs.path().join("sbin/ldconfig");
    if !common::build_static(BAD_LDCONFIG, &bin, &[]) {
        return;
    }
    let container = Container::from_pid(f.c.pid(), f.rootfs.path()).unwrap();
    let plan = f.compute_plan(&container, Vec::new());
    let (tree, mounts) = (f.tree(), f.mounts());
    let list = fs::read_to_string(cg.path().join("devices.list")).unwrap();
    let opts = LdconfigOptions {
        ldconfig: Ldconfig::Image("/sbin/ldconfig".into()),
        no_pivot: false,
        extra_dirs: Vec::new(),
        cuda_compat_dir: None,
        limits: Limits::default(),
    };
    let err = plan.configure(&container, Some(&opts)).unwrap_err();
    let Error::Ldconfig { what, output, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(what, "failed with error code: 3");
    assert_eq!(output, "bad ldconfig: giving up");
    assert_eq!(f.mounts(), mounts, "mounts left behind");
    assert_eq!(f.tree(), tree, "files left behind");
    assert_eq!(
        fs::read_to_string(f.rootfs.path().join("etc/ld.so.cache")).unwrap(),
        "the image's cache"
    );
    assert_eq!(
        fs::read_to_string(cg.path().join("devices.list")).unwrap(),
        list
    );

    // The same plan with the real ldconfig succeeds and grants the nodes.
    fs::copy("/sbin/ldconfig", &bin).unwrap();
    let done = plan.configure(&container, Some(&opts)).unwrap();
    let list = fs::read_to_string(cg.path().join("devices.list")).unwrap();
    for rule in ["c 195:0 rw", "c 195:255 rw"] {
        assert!(list.lines().any(|l| l == rule), "{list}");
    }
    assert_eq!(done.mounted.mounts.len(), f.mounts().len());
    drop(cg);
}

#[test]
fn a_refused_grant_undoes_the_mounts() {
    let Some(f) = fixture() else { return };
    // The parent cgroup allows nothing of the GPU's, so the grant is refused by the kernel.
    let Some(parent) = runtime_cgroup() else {
        return;
    };
    let cg = parent.nested().unwrap();
    fs::write(cg.path().join("devices.deny"), "a").unwrap();
    cg.add(f.c.pid()).unwrap();
    let container = Container::from_pid(f.c.pid(), f.rootfs.path()).unwrap();
    let plan = f.compute_plan(&container, Vec::new());
    let (tree, mounts) = (f.tree(), f.mounts());
    let err = plan.configure(&container, None).unwrap_err();
    assert!(
        matches!(err, Error::Cgroup { .. }) && err.to_string().contains("devices.allow"),
        "{err}"
    );
    assert_eq!(f.mounts(), mounts);
    assert_eq!(f.tree(), tree);
    drop(cg);
}

fn so(soname: &str) -> Vec<u8> {
    write_shared_object(&SharedObject::x86(Class::Elf64, soname.as_bytes()))
}

#[test]
fn cuda_compat_libraries_newer_than_the_driver_win() {
    let Some(f) = fixture() else { return };
    let compat = f.rootfs.path().join("usr/local/cuda-99.0/compat");
    fs::create_dir_all(&compat).unwrap();
    std::os::unix::fs::symlink("cuda-99.0", f.rootfs.path().join("usr/local/cuda")).unwrap();
    fs::write(compat.join("libcuda.so.999.1"), so("libcuda.so.1")).unwrap();
    fs::write(compat.join("libcuda.so.100.1"), so("libcuda.so.1")).unwrap();
    fs::copy("/sbin/ldconfig", f.rootfs.path().join("sbin/ldconfig")).unwrap();
    let container = Container::from_pid(f.c.pid(), f.rootfs.path()).unwrap();
    let libs = compat_libraries(
        f.rootfs.path(),
        &container.dirs.cudart,
        &f.info.nvrm_version,
    )
    .unwrap();
    assert_eq!(
        libs,
        [Path::new("/usr/local/cuda-99.0/compat/libcuda.so.999.1")]
    );
    let plan = f.compute_plan(&container, libs);
    let opts = LdconfigOptions {
        ldconfig: Ldconfig::Image("/sbin/ldconfig".into()),
        no_pivot: false,
        extra_dirs: Vec::new(),
        cuda_compat_dir: None,
        limits: Limits::default(),
    };
    plan.configure(&container, Some(&opts)).unwrap();
    // Mounted next to the driver's libcuda; ldconfig points the SONAME at the newer one.
    let libdir = f.rootfs.path().join("usr/lib/x86_64-linux-gnu");
    assert!(
        f.mounts()
            .iter()
            .any(|m| m.contains("/usr/lib/x86_64-linux-gnu/libcuda.so.999.1 "))
    );
    assert_eq!(
        fs::read_link(libdir.join("libcuda.so.1")).unwrap(),
        Path::new("libcuda.so.999.1")
    );
}

#[test]
fn a_configuration_applies_only_to_the_container_it_was_planned_for() {
    let Some(f) = fixture() else { return };
    let container = f.container();
    let other = tempfile::tempdir().unwrap();
    nvc_testkit::debian_image(other.path(), &[], false).unwrap();
    let config = nvc_mount::Configuration::prepare(
        f.hostdir.path(),
        &f.info,
        other.path(),
        &nvc_mount::detect_dirs(other.path()).unwrap(),
        &nvc_mount::ConfigureOptions::default(),
    )
    .unwrap();
    let before = f.tree();
    let err = config.apply(&container).unwrap_err();
    assert!(matches!(err, Error::Container { .. }), "{err}");
    assert!(err.to_string().contains("planned for"), "{err}");
    assert!(f.mounts().is_empty());
    assert_eq!(f.tree(), before);
}
