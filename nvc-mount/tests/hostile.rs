//! Tier c: hostile images, each test written as the attack it stops (issue: no image can
//! hang, trick or reach past nvc). Root only; every test skips with a reason elsewhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_mount::{Error, Ldconfig, LdconfigOptions, Limits, MountApi, MountPlan, PlanOptions};

mod common;

use common::{Sim, first_library};

fn fixture() -> Option<Sim> {
    let sim = common::sim("single")?;
    sim.mkdirs(&["sbin", "usr/lib/x86_64-linux-gnu"]);
    Some(sim)
}

fn plan(sim: &Sim, api: MountApi) -> MountPlan {
    let mut plan = sim.plan(&sim.container(), &gpu0(sim));
    plan.mount_api = api;
    plan
}

/// GPU 0 with compute and utility, no device cgroup: what most of these attacks configure.
fn gpu0(sim: &Sim) -> PlanOptions {
    PlanOptions {
        capabilities: vec![Compute, Utility],
        devices: sim.select("0"),
        no_cgroups: true,
        ..PlanOptions::default()
    }
}

fn ldconfig(which: Ldconfig) -> LdconfigOptions {
    LdconfigOptions {
        ldconfig: which,
        no_pivot: false,
        extra_dirs: Vec::new(),
        cuda_compat_dir: None,
        limits: Limits::default(),
    }
}

/// A container ldconfig that changes the cache and then fails.
const FAILING_LDCONFIG: &str = r#"
#include <stdio.h>
int main(void) {
    FILE *f = fopen("/etc/ld.so.cache~", "w");
    fputs("garbage", f);
    fclose(f);
    rename("/etc/ld.so.cache~", "/etc/ld.so.cache");
    return 3;
}
"#;

/// What the image puts at `/etc/ld.so.cache`.
#[derive(Debug, Clone, Copy)]
enum Cache {
    Fifo,
    LinkToDevZero,
    DeviceNode,
    Sparse2GiB,
}

impl Cache {
    fn plant(self, etc: &Path) {
        let cache = etc.join("ld.so.cache");
        let _ = fs::remove_file(&cache);
        match self {
            Cache::Fifo => {
                nix::unistd::mkfifo(&cache, nix::sys::stat::Mode::from_bits_truncate(0o644))
                    .unwrap()
            }
            Cache::LinkToDevZero => symlink("/dev/zero", &cache).unwrap(),
            Cache::DeviceNode => nix::sys::stat::mknod(
                &cache,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 5),
            )
            .unwrap(),
            Cache::Sparse2GiB => fs::File::create(&cache).unwrap().set_len(2 << 30).unwrap(),
        }
    }

    fn is_planted(self, etc: &Path) -> bool {
        let meta = fs::symlink_metadata(etc.join("ld.so.cache")).unwrap();
        match self {
            Cache::Fifo => meta.file_type().is_fifo(),
            Cache::LinkToDevZero => meta.file_type().is_symlink(),
            Cache::DeviceNode => meta.file_type().is_char_device(),
            Cache::Sparse2GiB => meta.len() == 2 << 30,
        }
    }
}

#[test]
fn a_fifo_device_or_huge_cache_is_never_read_and_ends_within_a_second() {
    let Some(sim) = fixture() else { return };
    let etc = sim.rootfs.path().join("etc");
    let bad = sim.hostdir.path().join("failing-ldconfig");
    if !common::build_static(FAILING_LDCONFIG, &bad, &[]) {
        return;
    }
    let container = sim.container();
    let plan = plan(&sim, MountApi::Auto);
    for cache in [
        Cache::Fifo,
        Cache::LinkToDevZero,
        Cache::DeviceNode,
        Cache::Sparse2GiB,
    ] {
        // A failing ldconfig: everything undone, the image's entry back in place unread.
        cache.plant(&etc);
        fs::copy(&bad, sim.rootfs.path().join("sbin/ldconfig")).unwrap();
        let (tree, mounts) = (sim.tree(), sim.mounts());
        let start = Instant::now();
        let opts = ldconfig(Ldconfig::Image("/sbin/ldconfig".into()));
        let err = plan.configure(&container, Some(&opts)).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{cache:?}: {:?}",
            start.elapsed()
        );
        assert!(matches!(err, Error::Ldconfig { .. }), "{cache:?}: {err}");
        assert!(cache.is_planted(&etc), "{cache:?} not put back");
        assert_eq!(sim.tree(), tree, "{cache:?}: files left behind");
        assert_eq!(sim.mounts(), mounts, "{cache:?}: mounts left behind");

        // The host's ldconfig: configured, the entry replaced by a real cache.
        let start = Instant::now();
        let done = plan
            .configure(
                &container,
                Some(&ldconfig(Ldconfig::Host("/sbin/ldconfig".into()))),
            )
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{cache:?}: {:?}",
            start.elapsed()
        );
        let bytes = fs::read(etc.join("ld.so.cache")).unwrap();
        assert!(nvc_ldcache::LdCache::parse(&bytes).is_ok(), "{cache:?}");
        // No kept link is left in /etc.
        let names: Vec<_> = fs::read_dir(&etc)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !names.iter().any(|n| n.to_string_lossy().contains("nvc")),
            "{names:?}"
        );
        done.mounted.unapply(&container).unwrap();
    }
}

/// An image ldconfig that moves the directory nvc created for the driver's binaries away,
/// puts a link to a volume in its place, and fails: the undo must not follow the link.
const SWAPPING_LDCONFIG: &str = r#"
#include <stdio.h>
#include <unistd.h>
int main(void) {
    if (rename("/usr/bin", "/usr/bin.moved") != 0) { perror("rename"); return 1; }
    if (symlink("/volume", "/usr/bin") != 0) { perror("symlink"); return 1; }
    return 3;
}
"#;

#[test]
fn an_ldconfig_that_swaps_a_created_directory_cannot_steer_the_undo() {
    let Some(sim) = fixture() else { return };
    let root = sim.rootfs.path();
    // The volume: a host directory the container sees, holding a file named as a driver
    // binary that the undo would remove if it followed the link.
    fs::create_dir(root.join("volume")).unwrap();
    fs::write(root.join("volume/nvidia-smi"), "the user's data").unwrap();
    if !common::build_static(SWAPPING_LDCONFIG, &root.join("sbin/ldconfig"), &[]) {
        return;
    }
    let container = sim.container();
    let mounts = sim.mounts();
    let opts = ldconfig(Ldconfig::Image("/sbin/ldconfig".into()));
    let err = plan(&sim, MountApi::Auto)
        .configure(&container, Some(&opts))
        .unwrap_err();
    // The swapped /usr/bin is reported, not followed.
    let Error::UndoIncomplete { error, left } = &err else {
        panic!("{err}")
    };
    assert!(matches!(**error, Error::Ldconfig { .. }), "{err}");
    assert!(
        left.iter().any(|l| l.starts_with("/usr/bin: not removed")),
        "{left:?}"
    );
    assert_eq!(
        fs::read_to_string(root.join("volume/nvidia-smi")).unwrap(),
        "the user's data"
    );
    // Everything nvc mounted is gone, also in the moved directory.
    assert_eq!(sim.mounts(), mounts);
    assert!(!root.join("usr/bin.moved/nvidia-smi").exists());
}

#[test]
fn a_container_proc_mounted_over_cannot_redirect_descriptor_paths() {
    let Some(sim) = fixture() else { return };
    // The container's namespace shows an empty tmpfs at /proc: /proc/self/fd/N is nothing there.
    let covered = Command::new("nsenter")
        .args([
            "-t",
            &sim.c.pid().to_string(),
            "-m",
            "mount",
            "-t",
            "tmpfs",
            "tmpfs",
            "/proc",
        ])
        .status()
        .unwrap();
    assert!(covered.success());
    let container = sim.container();
    for api in [MountApi::Legacy, MountApi::Auto] {
        let done = plan(&sim, api).apply(&container).unwrap();
        assert!(!done.mounts.is_empty());
        assert_eq!(done.unapply(&container).unwrap(), Vec::<String>::new());
        assert!(sim.mounts().is_empty(), "{api:?}: {:?}", sim.mounts());
    }
}

#[test]
fn mountpoints_belong_to_the_owner_from_the_moment_they_exist() {
    let Some(sim) = fixture() else { return };
    let mut container = sim.container();
    container.uid = 4321;
    container.gid = 4322;
    let done = plan(&sim, MountApi::Auto).apply(&container).unwrap();
    // Entries not covered by a mount and not inside one of the container's tmpfs mounts
    // (which the host does not see) are checked from here.
    let mut checked = 0;
    for path in done.created.iter().filter(|p| !done.mounts.contains(p)) {
        let host = sim.rootfs.path().join(path.strip_prefix("/").unwrap());
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        assert_eq!((meta.uid(), meta.gid()), (4321, 4322), "{}", path.display());
        checked += 1;
    }
    assert!(checked > 3, "{:?}", done.created);
    done.unapply(&container).unwrap();
    for path in &done.created {
        assert!(
            !sim.rootfs
                .path()
                .join(path.strip_prefix("/").unwrap())
                .exists()
        );
    }
}

/// An image ldconfig that waits a moment (so the test can see where it lives), then tries
/// to read and write the block device node the image ships at `/tmp/disk`.
const DISK_LDCONFIG: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do clock_gettime(CLOCK_MONOTONIC, &now); while (now.tv_sec - start.tv_sec < 1);
    int fd = open("/tmp/disk", O_RDWR);
    if (fd < 0) { printf("open /tmp/disk: %s\n", strerror(errno)); return 1; }
    char buf[16];
    printf("read: %zd\n", read(fd, buf, sizeof buf));
    lseek(fd, 0, SEEK_SET);
    printf("write: %zd\n", write(fd, "owned", 5));
    fsync(fd);
    return 0;
}
"#;

/// A loop device over a canary file, detached when dropped.
struct Loop {
    dev: String,
    _file: tempfile::NamedTempFile,
}

impl Loop {
    fn over(contents: &[u8]) -> Option<Self> {
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::write(file.path(), contents).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Loop {
                dev: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
                _file: file,
            }),
            _ => {
                nvc_testkit::skip!("cannot set up a loop device (losetup)");
                None
            }
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .args(["--detach", &self.dev])
            .status();
    }
}

#[test]
fn an_image_ldconfig_cannot_reach_a_block_device_the_image_ships() {
    let Some(sim) = fixture() else { return };
    let Some(cg) = nvc_testkit::TestCgroup::v1_devices() else {
        return;
    };
    cg.add(sim.c.pid()).unwrap();
    let canary = vec![b'c'; 1 << 16];
    let Some(disk) = Loop::over(&canary) else {
        return;
    };
    let root = sim.rootfs.path();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::create_dir_all(root.join("opt")).unwrap();
    let rdev = fs::metadata(&disk.dev).unwrap().rdev();
    nix::sys::stat::mknod(
        &root.join("tmp/disk"),
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        rdev,
    )
    .unwrap();
    let prog = sim.hostdir.path().join("disk-ldconfig");
    if !common::build_static(DISK_LDCONFIG, &prog, &[]) {
        return;
    }
    let container = sim.container();
    let plan = plan(&sim, MountApi::Auto);
    // The image's default ldconfig, and one the caller named inside the image.
    for path in ["/sbin/ldconfig", "/opt/ldconfig"] {
        fs::copy(&prog, root.join(path.trim_start_matches('/'))).unwrap();
        let procs = cg.path().join("cgroup.procs");
        let watcher = std::thread::spawn(move || {
            // The sandboxed program shows up in the container's device cgroup. The deadline
            // is generous: on a loaded machine (the whole suite on 2 cores) the configure
            // before the sandbox has taken more than 5 s; the wait ends when it is seen.
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let pids = fs::read_to_string(&procs).unwrap_or_default();
                if pids.lines().any(|pid| {
                    fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "ldconfig")
                }) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        });
        let opts = ldconfig(Ldconfig::Image(path.into()));
        let err = plan.configure(&container, Some(&opts)).unwrap_err();
        assert!(
            watcher.join().unwrap(),
            "{path}: the sandbox was not in the container's cgroup"
        );
        let Error::Ldconfig { output, .. } = &err else {
            panic!("{path}: {err}")
        };
        assert_eq!(output, "open /tmp/disk: Permission denied", "{path}");
        let mut now = vec![0; canary.len()];
        use std::io::Read;
        fs::File::open(&disk.dev)
            .unwrap()
            .read_exact(&mut now)
            .unwrap();
        assert!(now == canary, "{path}: the canary changed");
    }
}

#[test]
fn a_host_ldconfig_that_would_run_image_code_is_refused() {
    let Some(sim) = fixture() else { return };
    let container = sim.container();
    let plan = plan(&sim, MountApi::Auto);
    let script = sim.hostdir.path().join("ldconfig-wrapper");
    fs::write(&script, "#!/bin/sh\nexec /sbin/ldconfig.real \"$@\"\n").unwrap();
    let dynamic = Path::new("/bin/true");
    for (host, why) in [
        (script.as_path(), "is a script"),
        (dynamic, "is dynamically linked"),
    ] {
        let mounts = sim.mounts();
        let err = plan
            .configure(&container, Some(&ldconfig(Ldconfig::Host(host.into()))))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("refused: {why}")), "{err}");
        assert_eq!(sim.mounts(), mounts);
    }
}

/// The per-mount options (`ro`/`rw`, ...) of the container's mount at host path `at`.
fn mount_options(sim: &Sim, at: &Path) -> Option<String> {
    let at = at.display().to_string();
    sim.c.mountinfo().lines().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        (fields.get(4) == Some(&at.as_str())).then(|| fields[5].to_owned())
    })
}

#[test]
fn swapping_the_parent_directory_between_bind_and_remount_leaves_nothing_writable() {
    let Some(sim) = fixture() else { return };
    let container = sim.container();
    for api in [MountApi::Legacy, MountApi::Auto] {
        let plan = plan(&sim, api);
        let lib = first_library(&plan);
        let name = lib.file_name().unwrap().to_owned();
        let libs = sim.rootfs.path().join("usr/lib/x86_64-linux-gnu");
        let moved = sim.rootfs.path().join("usr/lib/moved");
        // Right after the library is bound (and, with the legacy API, before its read-only
        // remount), a container process swaps its directory for a fresh one holding a plain
        // file of the same name: a remount by path string would miss the new mount.
        let swap = {
            let (libs, moved, lib) = (libs.clone(), moved.clone(), lib.clone());
            move |step: &str, at: &Path| {
                if step == "bind: attached" && at == lib && !moved.exists() {
                    fs::rename(&libs, &moved).unwrap();
                    fs::create_dir(&libs).unwrap();
                    fs::write(libs.join(lib.file_name().unwrap()), b"").unwrap();
                }
                None
            }
        };
        let done = nvc_sys::fault::with_hook(swap, || plan.apply(&container)).unwrap();
        assert!(moved.exists(), "{api:?}: the hook did not run");
        assert_eq!(
            mount_options(&sim, &moved.join(&name)).as_deref(),
            Some("ro,nosuid,nodev,relatime"),
            "{api:?}: the driver library must be read-only where it went"
        );
        assert_eq!(done.unapply(&container).unwrap(), Vec::<String>::new());
        assert!(sim.mounts().is_empty(), "{api:?}: {:?}", sim.mounts());
        fs::remove_dir_all(&libs).unwrap();
        fs::rename(&moved, &libs).unwrap();
    }
}

#[test]
fn a_mount_stacked_over_the_new_bind_fails_closed_and_says_what_it_left() {
    let Some(sim) = fixture() else { return };
    let container = sim.container();
    let before = sim.tree();
    for api in [MountApi::Auto, MountApi::Legacy] {
        let plan = plan(&sim, api);
        let lib = first_library(&plan);
        let host = sim.rootfs.path().join(lib.strip_prefix("/").unwrap());
        // A privileged container process covers the fresh bind with its own mount before
        // nvc checks it: nvc must not record (or remount) a mount it did not make.
        let cover = {
            let host = host.clone();
            move |step: &str, at: &Path| {
                if step == "bind: attached" && at == lib {
                    nix::mount::mount(
                        Some("/dev/null"),
                        &host,
                        None::<&str>,
                        nix::mount::MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .unwrap();
                }
                None
            }
        };
        let err = nvc_sys::fault::with_hook(cover, || plan.apply(&container)).unwrap_err();
        let Error::UndoIncomplete { error, left } = &err else {
            panic!("{api:?}: {err}")
        };
        assert!(
            error.to_string().contains("not the mount just made"),
            "{err}"
        );
        // The mountpoint nvc created is covered, so it is not nvc's to remove any more.
        assert!(
            left.iter()
                .any(|l| l.contains("no longer the entry nvc created")),
            "{err}"
        );
        // nvc's bind is under the cover, and said to be: `umount2` would have taken the
        // cover (the container's) instead, whatever descriptor named nvc's.
        assert!(
            left.iter()
                .any(|l| l.contains("hidden under a mount nvc did not make")),
            "{api:?}: {err}"
        );
        let top = || {
            let out = Command::new("nsenter")
                .args(["-t", &sim.c.pid().to_string(), "-m", "cat"])
                .arg(&host)
                .output()
                .unwrap();
            out.stdout
        };
        assert_eq!(
            top(),
            b"",
            "{api:?}: the container's cover (/dev/null) stays on top"
        );
        let umount = || {
            let out = Command::new("nsenter")
                .args(["-t", &sim.c.pid().to_string(), "-m", "umount"])
                .arg(&host)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        umount();
        assert_ne!(
            top(),
            b"",
            "{api:?}: nvc's bind of the library was under it"
        );
        umount();
        assert!(sim.mounts().is_empty(), "{api:?}: {:?}", sim.mounts());
        fs::remove_file(&host).unwrap();
        assert_eq!(sim.tree(), before, "{api:?}");
    }
}

#[test]
fn a_failure_right_after_a_bind_undoes_it_with_the_rest() {
    let Some(sim) = fixture() else { return };
    let container = sim.container();
    let before = sim.tree();
    for api in [MountApi::Auto, MountApi::Legacy] {
        let plan = plan(&sim, api);
        let lib = first_library(&plan);
        let fail = move |step: &str, at: &Path| {
            (step == "bind: attached" && at == lib).then_some(nix::errno::Errno::EIO)
        };
        let err = nvc_sys::fault::with_hook(fail, || plan.apply(&container)).unwrap_err();
        let Error::Apply { error, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(error.raw_os_error(), Some(nix::libc::EIO), "{err}");
        assert!(!matches!(err, Error::UndoIncomplete { .. }), "{err}");
        assert!(sim.mounts().is_empty(), "{api:?}: {:?}", sim.mounts());
        assert_eq!(sim.tree(), before, "{api:?}");
    }
}

/// The container an `unshare ... --fork sleep` started: the first child of the `unshare`
/// process (`unshare()` says which, once known), once it runs `sleep`; `None` after 5 s.
fn container_of(unshare: impl Fn() -> Option<u32>) -> Option<u32> {
    (0..500).find_map(|_| {
        std::thread::sleep(Duration::from_millis(10));
        let unshare = unshare()?;
        let children =
            fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).ok()?;
        let pid: u32 = children.split_whitespace().next()?.parse().ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(pid)
    })
}

/// What the image's `ld.so.conf` holds for the built-in cache update, which reads it in
/// nvc's own process.
#[derive(Debug, Clone, Copy)]
enum Conf {
    /// A glob that backtracked exponentially in a recursive matcher, beside twenty files
    /// whose names it nearly matches.
    BacktrackingGlob,
    /// A million `*`, which overflowed a recursive matcher's stack (an abort).
    MillionStars,
    /// Eight nested files of 20,000 lines, each line including the next file.
    FanOut,
}

impl Conf {
    fn plant(self, etc: &Path) {
        let conf = match self {
            Conf::BacktrackingGlob => format!("include /etc/{}*b\n", "*a".repeat(14)),
            Conf::MillionStars => format!("include /etc/{}b\n", "*".repeat(1_000_000)),
            Conf::FanOut => {
                for n in 1..=8 {
                    let line = format!("include /etc/L{}\n", n + 1);
                    fs::write(etc.join(format!("L{n}")), line.repeat(20_000)).unwrap();
                }
                "include /etc/L1\n".to_owned()
            }
        };
        for i in 0..20 {
            fs::write(etc.join(format!("{}{i}", "a".repeat(60))), "").unwrap();
        }
        fs::write(etc.join("ld.so.conf"), conf).unwrap();
    }
}

#[test]
fn a_hostile_ld_so_conf_ends_the_builtin_update_within_a_second() {
    for conf in [Conf::BacktrackingGlob, Conf::MillionStars, Conf::FanOut] {
        let Some(sim) = fixture() else { return };
        let etc = sim.rootfs.path().join("etc");
        // The image's own cache, as its build left it (else the update falls back at once).
        let status = Command::new("/sbin/ldconfig")
            .arg("-r")
            .arg(sim.rootfs.path())
            .status()
            .unwrap();
        assert!(status.success());
        conf.plant(&etc);
        let container = sim.container();
        let plan = plan(&sim, MountApi::Auto);
        let (tree, mounts) = (sim.tree(), sim.mounts());
        let start = Instant::now();
        let result = plan.configure(&container, Some(&ldconfig(Ldconfig::Builtin)));
        let took = start.elapsed();
        assert!(took < Duration::from_secs(1), "{conf:?}: {took:?}");
        match (conf, result) {
            // A pattern longer than any file name: unsure, glibc's ldconfig in the sandbox
            // (which matches it in time: nothing in /etc ends in b).
            (Conf::MillionStars, Ok(done)) => {
                assert!(
                    matches!(&done.ldconfig, Some(nvc_mount::LdconfigRun::Fallback { reason, .. })
                        if reason == "include /etc/...: a file name pattern of 1000001 bytes (longer than 255)"),
                    "{conf:?}: {:?}",
                    done.ldconfig
                );
                done.mounted.unapply(&container).unwrap();
            }
            // The glob matches nothing: the configuration names no directory, and the
            // update is sure.
            (Conf::BacktrackingGlob, Ok(done)) => {
                assert!(
                    matches!(done.ldconfig, Some(nvc_mount::LdconfigRun::Builtin { .. })),
                    "{conf:?}: {:?}",
                    done.ldconfig
                );
                done.mounted.unapply(&container).unwrap();
            }
            // Past the budget of configuration lines: refused, the container unchanged.
            (Conf::FanOut, Err(err)) => {
                let text = err.to_string();
                assert!(
                    text.contains("refused the image's linker configuration: more than 65536 configuration lines"),
                    "{conf:?}: {text}"
                );
                assert_eq!(sim.tree(), tree, "{conf:?}: files left behind");
                assert_eq!(sim.mounts(), mounts, "{conf:?}: mounts left behind");
            }
            (_, result) => panic!("{conf:?}: {:?}", result.map(|d| d.ldconfig)),
        }
    }
}

/// An image whose `/proc/driver/nvidia` is a link to a directory of its own: the tmpfs was
/// mounted at the link's target, which the journal did not record, and left mounted when
/// the check after the mount failed. Now nothing is mounted through the link: the configure
/// fails naming the path, the container as it was.
#[test]
fn a_linked_proc_driver_nvidia_gets_no_tmpfs_and_nothing_is_left() {
    let Some(sim) = fixture() else { return };
    let root = sim.rootfs.path();
    fs::create_dir_all(root.join("elsewhere")).unwrap();
    fs::remove_dir_all(root.join("proc/driver")).unwrap();
    fs::create_dir_all(root.join("proc/driver")).unwrap();
    symlink("/elsewhere", root.join("proc/driver/nvidia")).unwrap();
    let container = sim.container();
    let plan = plan(&sim, MountApi::Auto);
    let (tree, mounts) = (sim.tree(), sim.mounts());
    let err = plan.configure(&container, None).unwrap_err();
    assert!(err.to_string().contains("/proc/driver/nvidia"), "{err}");
    assert_eq!(sim.mounts(), mounts, "mounts left behind: {err}");
    assert_eq!(sim.tree(), tree, "files left behind");
}

/// A volume the runtime mounted `rshared` (Kubernetes' `Bidirectional`) and an image whose
/// library directory links into it: a bind there would be copied to the host's side of the
/// volume and outlive the container. The target is refused, naming it, and neither the host
/// nor the container gets a mount.
#[test]
fn nothing_is_mounted_where_it_would_propagate_out_of_the_container() {
    let Some(sim) = fixture() else { return };
    let t = tempfile::tempdir().unwrap();
    let (vol, rootfs) = (t.path().join("vol"), t.path().join("rootfs"));
    fs::create_dir_all(&vol).unwrap();
    nvc_testkit::debian_image(&rootfs, &["proc/driver", "data", "usr/lib"], false).unwrap();
    symlink("/data", rootfs.join("usr/lib/x86_64-linux-gnu")).unwrap();
    // "host": a namespace where the volume is shared, its bind into the rootfs a peer; the
    // container: a namespace copied from it (its mounts peers of the host's).
    let pidfile = t.path().join("unshare.pid");
    let script = format!(
        "mount --bind {vol} {vol} && mount --make-shared {vol} && \
         mount --bind {vol} {rootfs}/data && \
         {{ unshare --mount --propagation unchanged --pid --fork --kill-child sleep 600 & \
         echo $! > {pidfile}; wait; }}",
        vol = vol.display(),
        rootfs = rootfs.display(),
        pidfile = pidfile.display(),
    );
    /// Kills the container's unshare (its child dies with it: `--kill-child`), then the
    /// host's sh, also when an assertion fails.
    struct Namespaces(std::process::Child, std::path::PathBuf);
    impl Drop for Namespaces {
        fn drop(&mut self) {
            if let Ok(unshare) = fs::read_to_string(&self.1) {
                let _ = Command::new("kill")
                    .args(["-KILL", unshare.trim()])
                    .status();
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let host = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let host = Namespaces(host, pidfile.clone());
    let container_pid = container_of(|| fs::read_to_string(&pidfile).ok()?.trim().parse().ok())
        .expect("the container process");
    let under_vol = |pid: u32| -> Vec<String> {
        let table = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        table
            .lines()
            .filter(|l| l.contains(&format!("{}/", vol.display())) || l.contains("/data/"))
            .map(str::to_owned)
            .collect()
    };
    let (host_before, container_before) = (under_vol(host.0.id()), under_vol(container_pid));

    // nvc runs in the "host" namespace, as a runtime's hook does: a thread of its own there.
    let host_ns = fs::File::open(format!("/proc/{}/ns/mnt", host.0.id())).unwrap();
    // `table`: as on a kernel without statmount (before 6.8), from the mount tables.
    let configure = |table: bool| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
                    nix::sched::setns(&host_ns, nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
                    let container = nvc_mount::Container::from_pid(container_pid, &rootfs).unwrap();
                    let opts = gpu0(&sim);
                    let hook = move |name: &str, _: &Path| {
                        (table && name == "statmount").then_some(nix::errno::Errno::ENOSYS)
                    };
                    nvc_sys::fault::with_hook(hook, || {
                        sim.plan(&container, &opts)
                            .configure(&container, None)
                            .map(|done| done.mounted.mounts.len())
                    })
                })
                .join()
                .unwrap()
        })
    };
    let root = fs::File::open("/").unwrap();
    if let Err(e) = nvc_sys::statmount::unique_mount_id(std::os::fd::AsFd::as_fd(&root))
        .and_then(|id| nvc_sys::statmount::stat_mount(id, false))
    {
        eprintln!("no statmount here ({e}): both runs read the mount tables");
    }
    let result = configure(false);
    let from_tables = configure(true);
    let (host_after, container_after) = (under_vol(host.0.id()), under_vol(container_pid));
    // The container makes its copy of the volume a peer group of its own (as Docker makes a
    // rootfs `rshared`): shared, but with nothing outside; configured.
    let in_container = |args: &[&str]| {
        Command::new("nsenter")
            .arg(format!("--mount=/proc/{container_pid}/ns/mnt"))
            .args(args)
            .status()
            .unwrap()
            .success()
    };
    let data = rootfs.join("data").display().to_string();
    assert!(in_container(&["mount", "--make-private", &data]));
    assert!(in_container(&["mount", "--make-shared", &data]));
    let own_group = configure(false);
    // Again from the tables: not refused either (the mounts are there: nothing to add).
    let again = configure(true);
    let host_last = under_vol(host.0.id());
    drop(host);
    let err = result.expect_err("configure under a shared mount");
    assert!(
        err.to_string()
            .contains("refuse to mount under a shared mount (it would propagate out of the container) at /usr/lib/x86_64-linux-gnu/"),
        "{err}"
    );
    assert_eq!(host_after, host_before, "a mount reached the host's volume");
    assert_eq!(
        container_after, container_before,
        "mounts left in the container"
    );
    let err_tables = from_tables.expect_err("configure under a shared mount, from the tables");
    assert_eq!(err_tables.to_string(), err.to_string());
    assert!(own_group.as_ref().is_ok_and(|&n| n > 0), "{own_group:?}");
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(host_last, host_before, "a mount reached the host's volume");
}

fn chown(path: &Path, recursive: bool, owner: &str) {
    let mut cmd = Command::new("chown");
    if recursive {
        cmd.arg("-hR");
    }
    assert!(cmd.arg(owner).arg(path).status().unwrap().success());
}

/// A user namespace whose root is host uid 100000, made by that user (as rootless runtimes
/// make theirs: `0 100000 1`), with a mount and pid namespace: the `unshare` process, whose
/// child `sleep` is the container ([`container_of`]). `None`, saying why, where it cannot run.
fn userns_container() -> Option<std::process::Child> {
    let unshare = Command::new("setpriv")
        .args(["--reuid=100000", "--regid=100000", "--clear-groups"])
        .args([
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
        ])
        .args(["--pid", "--fork", "--kill-child", "sleep", "600"])
        .spawn();
    match unshare {
        Ok(child) => Some(child),
        Err(e) => {
            nvc_testkit::skip!("setpriv/unshare --user do not run: {e}");
            None
        }
    }
}

/// The host's `ldconfig` runs in a user-namespaced container's own user namespace: its
/// `CAP_DAC_OVERRIDE` reaches the image's files only. The image's `ld.so.conf` names a
/// directory of the host's root (a volume) holding a library without its soname link; in the
/// host's namespace, the sandboxed `ldconfig` made `libz.so.1` there. Now nothing is made
/// there, and the image's own cache is still written, by the container's root.
#[test]
fn a_user_namespaced_containers_ldconfig_writes_nothing_its_user_could_not() {
    let Some(sim) = fixture() else { return };
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    nvc_testkit::debian_image(&rootfs, &["proc/driver", "usr/lib", "volume", "dev"], false)
        .unwrap();
    fs::create_dir_all(rootfs.join("usr/lib/x86_64-linux-gnu")).unwrap();
    fs::write(rootfs.join("etc/ld.so.conf"), "/volume\n").unwrap();
    let zlib = fs::read_link("/lib/x86_64-linux-gnu/libz.so.1").unwrap();
    fs::copy(
        Path::new("/lib/x86_64-linux-gnu").join(&zlib),
        rootfs.join("volume").join(&zlib),
    )
    .unwrap();
    chown(&rootfs, true, "100000:100000");
    chown(&rootfs.join("volume"), true, "0:0");
    let Some(mut unshare) = userns_container() else {
        return;
    };
    let unshare_pid = unshare.id();
    let done = container_of(|| Some(unshare_pid)).map(|pid| {
        let container = nvc_mount::Container::from_pid(pid, &rootfs).unwrap();
        let opts = gpu0(&sim);
        sim.plan(&container, &opts)
            .configure(
                &container,
                Some(&ldconfig(Ldconfig::Host("/sbin/ldconfig".into()))),
            )
            .map(|_| ())
    });
    let _ = unshare.kill();
    let _ = unshare.wait();
    done.expect("the user-namespaced container").unwrap();
    let volume: Vec<_> = fs::read_dir(rootfs.join("volume"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        volume,
        [zlib.as_os_str()],
        "ldconfig wrote into the host's directory"
    );
    let cache = rootfs.join("etc/ld.so.cache");
    assert_eq!(fs::metadata(&cache).unwrap().uid(), 100000);
    let cache = fs::read(&cache).unwrap();
    let cache = nvc_ldcache::LdCache::parse(&cache).unwrap();
    assert!(
        cache
            .entries()
            .any(|e| e.unwrap().soname() == "libcuda.so.1")
    );
}

/// A user-namespaced container (its root is host uid 100000) whose image links its library
/// directory into a directory of the host's root, as a volume would be: nvc, root with every
/// capability, could create the mountpoints there; the container's own root could not. The
/// configure is refused, nothing is created there; with the image's own directory it works.
#[test]
fn a_user_namespaced_container_gets_nothing_created_where_its_user_could_not() {
    let Some(sim) = fixture() else { return };
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    nvc_testkit::debian_image(&rootfs, &["proc/driver", "usr/lib", "data", "dev"], false).unwrap();
    let libs = rootfs.join("usr/lib/x86_64-linux-gnu");
    symlink("/data", &libs).unwrap();
    chown(&rootfs, true, "100000:100000");
    chown(&rootfs.join("data"), false, "0:0");
    let Some(mut unshare) = userns_container() else {
        return;
    };
    let unshare_pid = unshare.id();
    let pid = container_of(|| Some(unshare_pid));
    let outcome = pid.map(|pid| {
        let container = nvc_mount::Container::from_pid(pid, &rootfs).unwrap();
        assert_eq!((container.uid, container.gid), (100000, 100000));
        let opts = gpu0(&sim);
        let refused = sim
            .plan(&container, &opts)
            .configure(&container, None)
            .map(|_| ());
        let in_volume = fs::read_dir(rootfs.join("data")).unwrap().count();
        // The image's own directory instead: configured.
        fs::remove_file(&libs).unwrap();
        fs::create_dir(&libs).unwrap();
        chown(&libs, false, "100000:100000");
        let container = nvc_mount::Container::from_pid(pid, &rootfs).unwrap();
        // A kernel filesystem in the container's namespace, as the real driver's /proc and
        // /dev binds are: the sandbox must still keep it out of reach.
        let procfs = rootfs.join("opt/p");
        fs::create_dir_all(&procfs).unwrap();
        let mounted = Command::new("nsenter")
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .args(["mount", "-t", "proc", "proc"])
            .arg(&procfs)
            .status()
            .unwrap();
        assert!(mounted.success());
        // With the host's ldconfig in its sandbox, whose copy of the container's mounts is
        // locked (made in a less privileged user namespace).
        let done = sim
            .plan(&container, &opts)
            .configure(
                &container,
                Some(&ldconfig(Ldconfig::Host("/sbin/ldconfig".into()))),
            )
            .map(|done| done.mounted.mounts.len());
        (refused, in_volume, done)
    });
    let _ = unshare.kill();
    let _ = unshare.wait();
    let (refused, in_volume, done) = outcome.expect("the user-namespaced container");
    let err = refused.expect_err("a configure into the host's directory");
    assert!(
        err.to_string().contains(
            "create (the container's user may not write its directory) /usr/lib/x86_64-linux-gnu/"
        ),
        "{err}"
    );
    assert_eq!(in_volume, 0, "entries created in the host's directory");
    assert!(done.as_ref().is_ok_and(|&mounts| mounts > 0), "{done:?}");
}

/// The driver root on a mount that is shared on the host (systemd makes `/` shared): a
/// clone or bind of it joins the host's peer group, so a container that mounts its own file
/// over a library nvc bound would replace that library on the host. nvc's binds are private.
#[test]
fn a_mount_over_a_bound_library_stays_in_the_container() {
    let Some(sim) = fixture() else { return };
    let host = sim.hostdir.path().to_path_buf();
    let lib = "usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14";
    let original = fs::read(host.join(lib)).unwrap();
    // The "host": a thread with a mount namespace of its own, where the driver root is a
    // shared mount (the test process's namespace is left alone).
    let seen_on_host = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
                let none = None::<&str>;
                let private = nix::mount::MsFlags::MS_PRIVATE | nix::mount::MsFlags::MS_REC;
                nix::mount::mount(none, "/", none, private, none).unwrap();
                let bind = nix::mount::MsFlags::MS_BIND;
                nix::mount::mount(Some(&host), &host, none, bind, none).unwrap();
                let shared = nix::mount::MsFlags::MS_SHARED;
                nix::mount::mount(none, &host, none, shared, none).unwrap();
                let container = sim.container();
                for api in [MountApi::Auto, MountApi::Legacy] {
                    let done = plan(&sim, api).configure(&container, None).unwrap();
                    let table = sim.c.mountinfo();
                    let ours: Vec<&str> = table
                        .lines()
                        .filter(|l| l.contains(&sim.rootfs.path().display().to_string()))
                        .collect();
                    assert!(!ours.is_empty());
                    assert!(
                        ours.iter().all(|l| !l.contains(" shared:")),
                        "{api:?}: {ours:#?}"
                    );
                    // The container mounts its own file over the library.
                    let evil = sim.rootfs.path().join("evil");
                    fs::write(&evil, b"EVIL").unwrap();
                    let over = Command::new("nsenter")
                        .arg(format!("--mount=/proc/{}/ns/mnt", sim.c.pid()))
                        .args(["mount", "--bind"])
                        .arg(&evil)
                        .arg(sim.rootfs.path().join(lib))
                        .status()
                        .unwrap();
                    assert!(over.success());
                    let seen = fs::read(host.join(lib)).unwrap();
                    let _ = Command::new("nsenter")
                        .arg(format!("--mount=/proc/{}/ns/mnt", sim.c.pid()))
                        .arg("umount")
                        .arg(sim.rootfs.path().join(lib))
                        .status();
                    done.mounted.unapply(&container).unwrap();
                    if seen != original {
                        return Some(api);
                    }
                }
                None
            })
            .join()
            .unwrap()
    });
    assert_eq!(
        seen_on_host, None,
        "the container's mount reached the host's library"
    );
}
