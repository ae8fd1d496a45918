//! Tier c: granting device access in real cgroups (v1 `devices` and cgroup2 eBPF) to a real
//! process, with `/dev/null` (1:3) standing in for a GPU node and `/dev/urandom` (1:9) for a
//! device nobody granted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use nvc_mount::cgroup::program::{self, Access, DeviceRule, DeviceType};
use nvc_mount::cgroup::{CgroupVersion, DeviceCgroup};
use nvc_sys::bpf;
use nvc_testkit::TestCgroup;

const NULL: (u32, u32) = (1, 3);

/// A shell that answers "ok" or "denied" for each device path it is sent, by opening it.
struct Prober {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Prober {
    fn start() -> Self {
        let mut child = Command::new("/bin/sh")
            .args([
                "-c",
                r#"while read p; do if (exec 3<>"$p") 2>&-; then echo ok; else echo denied; fi; done"#,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Prober {
            child,
            stdin,
            stdout,
        }
    }

    fn opens(&mut self, path: &str) -> bool {
        writeln!(self.stdin, "{path}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        match line.trim() {
            "ok" => true,
            "denied" => false,
            other => panic!("prober said {other:?}"),
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// runc's default shape: deny everything, allow a few nodes (here /dev/zero, 1:5).
fn runtime_rules() -> Vec<DeviceRule> {
    vec![
        DeviceRule {
            allow: false,
            kind: DeviceType::All,
            major: None,
            minor: None,
            access: Access::ALL,
        },
        DeviceRule {
            allow: true,
            kind: DeviceType::Char,
            major: Some(1),
            minor: Some(5),
            access: Access::ALL,
        },
    ]
}

fn attached(cg: &TestCgroup) -> Vec<Vec<bpf::Insn>> {
    let dir = std::fs::File::open(cg.path()).unwrap();
    bpf::prog_query_cgroup_device(dir.as_fd())
        .unwrap()
        .into_iter()
        .map(|id| bpf::prog_instructions(bpf::prog_get_fd_by_id(id).unwrap().as_fd()).unwrap())
        .collect()
}

#[test]
fn v2_grant_splices_into_the_runtime_program_and_revokes() {
    let Some(cg) = TestCgroup::v2() else { return };
    let dir = std::fs::File::open(cg.path()).unwrap();
    let runtime = program::program(&runtime_rules(), false);
    let runtime_fd = match bpf::prog_load_cgroup_device(&runtime, c"Apache") {
        Ok(fd) => fd,
        Err(e) => {
            nvc_testkit::skip!("cannot load a device program: {e}");
            return;
        }
    };
    bpf::prog_attach_cgroup_device(runtime_fd.as_fd(), dir.as_fd(), None).unwrap();
    let mut probe = Prober::start();
    cg.add(probe.child.id()).unwrap();
    assert!(!probe.opens("/dev/null"), "the runtime denies 1:3");
    assert!(probe.opens("/dev/zero"), "the runtime allows 1:5");

    let target = DeviceCgroup::new(CgroupVersion::V2, cg.path().to_path_buf());
    let memlock = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK);
    let grant = target.allow(&[NULL]).unwrap();
    // The embedding process keeps its own RLIMIT_MEMLOCK (it was left unlimited).
    assert_eq!(
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK),
        memlock
    );
    assert_eq!(grant.added, [NULL]);
    assert!(probe.opens("/dev/null"), "granted");
    assert!(probe.opens("/dev/zero"), "the runtime's rule still applies");
    assert!(!probe.opens("/dev/urandom"), "not granted, still denied");
    // One program, ours: the rule in front of the runtime's program, unchanged.
    let progs = attached(&cg);
    assert_eq!(progs.len(), 1);
    assert!(progs[0].ends_with(&runtime));

    // A second configure adds nothing.
    let again = target.allow(&[NULL]).unwrap();
    assert_eq!(
        (again.added.len(), again.already.as_slice()),
        (0, &[NULL][..])
    );
    assert_eq!(attached(&cg), progs);

    grant.revoke().unwrap();
    assert!(!probe.opens("/dev/null"), "revoked");
    assert_eq!(attached(&cg), [runtime]);
}

#[test]
fn v2_without_a_program_changes_nothing_and_says_so() {
    let Some(cg) = TestCgroup::v2() else { return };
    let target = DeviceCgroup::new(CgroupVersion::V2, cg.path().to_path_buf());
    let grant = match target.allow(&[NULL]) {
        Ok(g) => g,
        Err(e) => {
            nvc_testkit::skip!("{e}");
            return;
        }
    };
    assert_eq!(grant.already, [NULL]);
    assert!(
        matches!(
            grant.notes[0],
            nvc_mount::cgroup::Note::NoDeviceProgram { .. }
        ),
        "{:?}",
        grant.notes
    );
    assert!(attached(&cg).is_empty());
}

#[test]
fn v1_grant_writes_devices_allow_and_revokes() {
    let Some(cg) = TestCgroup::v1_devices() else {
        return;
    };
    std::fs::write(cg.path().join("devices.deny"), "a").unwrap();
    std::fs::write(cg.path().join("devices.allow"), "c 1:5 rwm").unwrap();
    let mut probe = Prober::start();
    cg.add(probe.child.id()).unwrap();
    assert!(!probe.opens("/dev/null"));

    // Found from the process, as configure does (a v1 devices line wins on hybrid hosts).
    let found = DeviceCgroup::of_process(probe.child.id(), std::path::Path::new("/")).unwrap();
    assert_eq!(found.version, CgroupVersion::V1);
    assert_eq!(found.path, cg.path());

    let grant = found.allow(&[NULL]).unwrap();
    assert_eq!(grant.added, [NULL]);
    assert!(probe.opens("/dev/null"));
    assert!(probe.opens("/dev/zero"));
    assert!(!probe.opens("/dev/urandom"));
    let list = std::fs::read_to_string(cg.path().join("devices.list")).unwrap();
    assert!(list.lines().any(|l| l == "c 1:3 rw"), "{list}");

    let again = found.allow(&[NULL]).unwrap();
    assert_eq!(again.already, [NULL]);

    grant.revoke().unwrap();
    assert!(!probe.opens("/dev/null"));
}

#[test]
fn a_failed_grant_leaves_the_cgroup_as_it_was() {
    let Some(parent) = TestCgroup::v1_devices() else {
        return;
    };
    std::fs::write(parent.path().join("devices.deny"), "a").unwrap();
    std::fs::write(parent.path().join("devices.allow"), "c 1:3 rw").unwrap();
    let cg = parent.nested().unwrap();
    let list = || std::fs::read_to_string(cg.path().join("devices.list")).unwrap();
    std::fs::write(cg.path().join("devices.deny"), "a").unwrap();
    let before = list();
    let target = DeviceCgroup::new(CgroupVersion::V1, cg.path().to_path_buf());
    // 1:3 is granted, then the kernel refuses 1:9 (the parent does not allow it): 1:3 is
    // taken back.
    let err = target.allow(&[NULL, (1, 9)]).unwrap_err().to_string();
    assert!(
        err.contains("c 1:9 rw") && err.contains("devices.allow"),
        "{err}"
    );
    assert_eq!(list(), before);
    // Device numbers the kernel would read as wildcards are refused before any write.
    let err = target.allow(&[(u32::MAX, 0)]).unwrap_err().to_string();
    assert!(err.contains("4294967295:0"), "{err}");
    assert_eq!(list(), before);
    drop(cg);
}

#[test]
fn a_refused_program_comes_with_the_verifier_log() {
    if !nix::unistd::geteuid().is_root() {
        nvc_testkit::skip!("loading BPF programs needs root");
        return;
    }
    // Reads r6 before writing it, and never sets r0.
    let bad = [
        bpf::Insn {
            code: 0xbf,
            regs: 0x60,
            off: 0,
            imm: 0,
        },
        bpf::Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let err = bpf::prog_load_cgroup_device(&bad, c"Apache").unwrap_err();
    let nvc_sys::Error::Verifier { log, .. } = &err else {
        panic!("{err}")
    };
    assert!(log.contains("R6 !read_ok"), "{log}");
}

/// Detaching a device: a grant taken back by a denial spliced in front (v2), whatever
/// granted it; a second denial adds nothing; granting again works; a cgroup without a
/// program gets one that denies the device alone.
#[test]
fn v2_deny_splices_a_denial_in_front_and_a_new_grant_wins_over_it() {
    let Some(cg) = TestCgroup::v2() else { return };
    let dir = std::fs::File::open(cg.path()).unwrap();
    let target = DeviceCgroup::new(CgroupVersion::V2, cg.path().to_path_buf());
    let mut probe = Prober::start();
    cg.add(probe.child.id()).unwrap();

    // No program: nothing filters; the denial brings a program of its own.
    let denied = match target.deny(&[NULL]) {
        Ok(d) => d,
        Err(e) => {
            nvc_testkit::skip!("cannot load a device program: {e}");
            return;
        }
    };
    assert_eq!(denied.added, [NULL]);
    assert!(!probe.opens("/dev/null"), "denied");
    assert!(probe.opens("/dev/zero"), "everything else still allowed");
    denied.revoke().unwrap();
    assert!(probe.opens("/dev/null"), "the denial taken back");
    assert!(attached(&cg).is_empty());

    // The runtime's program, and nvc's grant in front of it (an attach).
    let runtime = program::program(&runtime_rules(), false);
    let runtime_fd = bpf::prog_load_cgroup_device(&runtime, c"Apache").unwrap();
    bpf::prog_attach_cgroup_device(runtime_fd.as_fd(), dir.as_fd(), None).unwrap();
    let _grant = target.allow(&[NULL]).unwrap();
    assert!(probe.opens("/dev/null"));

    let denied = target.deny(&[NULL]).unwrap();
    assert_eq!(denied.added, [NULL]);
    assert!(!probe.opens("/dev/null"), "detached");
    assert!(probe.opens("/dev/zero"), "the runtime's rule still applies");
    let again = target.deny(&[NULL]).unwrap();
    assert_eq!(
        (again.added.len(), again.already.as_slice()),
        (0, &[NULL][..])
    );
    // Attached again: the new grant is checked before the denial.
    let _regrant = target.allow(&[NULL]).unwrap();
    assert!(probe.opens("/dev/null"), "attached again");
    assert_eq!(attached(&cg).len(), 1, "one program, swapped each time");
    assert!(attached(&cg)[0].ends_with(&runtime));
}

/// v1: a device the runtime allowed is denied through `devices.deny`; one allowed only by a
/// wider rule cannot be narrowed, and the denial fails leaving the cgroup as it was.
#[test]
fn v1_deny_takes_a_device_back_and_refuses_to_narrow_a_wider_rule() {
    let Some(cg) = TestCgroup::v1_devices() else {
        return;
    };
    let list = || std::fs::read_to_string(cg.path().join("devices.list")).unwrap();
    std::fs::write(cg.path().join("devices.deny"), "a").unwrap();
    // As runc writes them: mknod of any node, then the nodes it gives.
    std::fs::write(cg.path().join("devices.allow"), "c *:* m").unwrap();
    std::fs::write(cg.path().join("devices.allow"), "c 1:5 rwm").unwrap();
    let mut probe = Prober::start();
    cg.add(probe.child.id()).unwrap();
    let target = DeviceCgroup::new(CgroupVersion::V1, cg.path().to_path_buf());
    target.allow(&[NULL]).unwrap();
    assert!(probe.opens("/dev/null"));

    let denied = target.deny(&[NULL, (1, 9)]).unwrap();
    assert_eq!(denied.added, [NULL], "1:3 taken back");
    assert_eq!(
        denied.already,
        [(1, 9)],
        "1:9 was never allowed ('c *:* m' opens nothing)"
    );
    assert!(!probe.opens("/dev/null"));
    assert!(probe.opens("/dev/zero"));
    denied.revoke().unwrap();
    assert!(probe.opens("/dev/null"), "the denial taken back");

    // A denial taken back gives a device exactly the access it had (runc's `rwm`).
    std::fs::write(cg.path().join("devices.allow"), "c 1:3 rwm").unwrap();
    let before = list();
    target.deny(&[NULL]).unwrap().revoke().unwrap();
    assert_eq!(list(), before);

    // A denial taken back gives a device exactly the access it had (runc's `rwm`).
    std::fs::write(cg.path().join("devices.allow"), "c 1:3 rwm").unwrap();
    let before = list();
    target.deny(&[NULL]).unwrap().revoke().unwrap();
    assert_eq!(list(), before);

    // A wider rule: v1 cannot take one device out of it.
    std::fs::write(cg.path().join("devices.allow"), "c 1:* rw").unwrap();
    let before = list();
    let err = target.deny(&[(1, 9)]).unwrap_err().to_string();
    assert!(
        err.contains("c 1:9 is still allowed by a wider rule"),
        "{err}"
    );
    assert_eq!(list(), before, "left as it was");
}

/// A process's device cgroup is the one its mount table says, whether the kernel names the
/// hierarchy's mount by its id (Linux 6.8) or the table is read.
#[test]
fn a_process_cgroup_is_the_one_the_mount_table_says() {
    let Some(cg) = TestCgroup::v1_devices() else {
        return;
    };
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    cg.add(child.id()).unwrap();
    let root = std::path::Path::new("/");
    let found = DeviceCgroup::of_process(child.id(), root);
    let cgroup = std::fs::read(format!("/proc/{}/cgroup", child.id())).unwrap();
    let table = std::fs::read("/proc/self/mountinfo").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let want = DeviceCgroup::parse(&cgroup, &table, root).unwrap();
    assert_eq!(want.path, cg.path());
    assert_eq!(found.unwrap(), want);
}
