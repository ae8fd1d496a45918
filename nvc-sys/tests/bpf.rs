//! The cgroup device BPF calls on a cgroup v2 directory this test creates and removes:
//! a loaded program's instructions read back equal to what was loaded; the verifier's
//! refusal carries its log; attach, query, fetch by id, atomic replace and detach do what
//! they say (and a deny-all program attached really refuses a member process `/dev/null`);
//! failures name the `bpf` command and the errno.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nvc_sys::bpf::{
    Insn, prog_attach_cgroup_device, prog_detach_cgroup_device, prog_get_fd_by_id,
    prog_instructions, prog_load_cgroup_device, prog_query_cgroup_device,
};
use nvc_sys::{Ended, Error};

/// `r0 = verdict; exit`: a device program allowing (1) or denying (0) every access.
fn verdict(allow: bool) -> [Insn; 2] {
    [
        Insn {
            code: 0xb7, // BPF_ALU64 | BPF_MOV | BPF_K
            regs: 0,
            off: 0,
            imm: i32::from(allow),
        },
        Insn {
            code: 0x95, // BPF_JMP | BPF_EXIT
            ..Insn::default()
        },
    ]
}

/// Loads a program, or `None` (skip reported) without the privilege to.
fn load(insns: &[Insn]) -> Option<OwnedFd> {
    if !common::root_or_skip("loading a BPF program") {
        return None;
    }
    match prog_load_cgroup_device(insns, c"GPL") {
        Ok(fd) => Some(fd),
        Err(
            e @ Error::Syscall {
                errno: Errno::EPERM | Errno::ENOSYS,
                ..
            },
        ) => {
            common::skip(format!("cannot load BPF programs here: {e}"));
            None
        }
        Err(e) => panic!("load: {e}"),
    }
}

/// A cgroup v2 directory of this test, removed on drop.
struct Cgroup {
    path: PathBuf,
    dir: OwnedFd,
}

impl Cgroup {
    /// A new empty cgroup under the cgroup2 mount, or `None` (skip reported).
    fn new() -> Option<Cgroup> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(root) = mountinfo.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.get(dash + 1) == Some(&"cgroup2")).then(|| PathBuf::from(f[4]))
        }) else {
            common::skip("no cgroup2 hierarchy mounted");
            return None;
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("nvc-sys-test-{}-{n}", std::process::id()));
        if let Err(e) = fs::create_dir(&path) {
            common::skip(format!("cannot create {}: {e}", path.display()));
            return None;
        }
        let dir = fs::File::open(&path).unwrap().into();
        Some(Cgroup { path, dir })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Removing the cgroup also detaches whatever is still attached to it. A member that
        // was just reaped may keep it busy for a moment.
        for _ in 0..100 {
            match fs::remove_dir(&self.path) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => return,
            }
        }
    }
}

#[test]
fn loaded_instructions_read_back_unchanged() {
    for allow in [true, false] {
        let Some(prog) = load(&verdict(allow)) else {
            return;
        };
        assert_eq!(prog_instructions(prog.as_fd()).unwrap(), verdict(allow));
    }
}

#[test]
fn the_verifiers_refusal_carries_its_log() {
    if !common::root_or_skip("loading a BPF program") {
        return;
    }
    // `exit` with r0 never written.
    let bad = [verdict(true)[1]];
    let err = prog_load_cgroup_device(&bad, c"GPL").expect_err("verifier accepted it");
    let Error::Verifier { errno, log } = &err else {
        panic!("not a verifier error: {err}");
    };
    assert!(matches!(*errno, Errno::EACCES | Errno::EINVAL), "{err}");
    assert!(
        log.contains("R0"),
        "log does not name the register: {log:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("BPF_PROG_LOAD") && shown.contains("verifier log"),
        "{shown}"
    );
    assert!(shown.contains(log.as_str()));
}

#[test]
fn attach_query_replace_detach_on_a_fresh_cgroup() {
    let (Some(allow), Some(deny)) = (load(&verdict(true)), load(&verdict(false))) else {
        return;
    };
    let Some(cg) = Cgroup::new() else { return };
    let cgroup = cg.dir.as_fd();
    assert_eq!(prog_query_cgroup_device(cgroup).unwrap(), Vec::<u32>::new());

    prog_attach_cgroup_device(allow.as_fd(), cgroup, None).unwrap();
    let ids = prog_query_cgroup_device(cgroup).unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let by_id = prog_get_fd_by_id(ids[0]).unwrap();
    assert_eq!(prog_instructions(by_id.as_fd()).unwrap(), verdict(true));

    // Replacing: still one program, now the deny-all one, under another id.
    prog_attach_cgroup_device(deny.as_fd(), cgroup, Some(allow.as_fd())).unwrap();
    let replaced = prog_query_cgroup_device(cgroup).unwrap();
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_ne!(replaced, ids);
    let by_id = prog_get_fd_by_id(replaced[0]).unwrap();
    assert_eq!(prog_instructions(by_id.as_fd()).unwrap(), verdict(false));

    // The allow-all program is no longer attached: replacing it again is ENOENT.
    let err = prog_attach_cgroup_device(allow.as_fd(), cgroup, Some(allow.as_fd())).unwrap_err();
    assert_eq!(err.errno(), Errno::ENOENT, "{err}");
    assert!(err.to_string().contains("bpf(BPF_PROG_ATTACH)"), "{err}");

    prog_detach_cgroup_device(deny.as_fd(), cgroup).unwrap();
    assert_eq!(prog_query_cgroup_device(cgroup).unwrap(), Vec::<u32>::new());
    let err = prog_detach_cgroup_device(deny.as_fd(), cgroup).unwrap_err();
    assert_eq!(err.errno(), Errno::ENOENT, "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("bpf(BPF_PROG_DETACH)") && shown.contains("ENOENT"),
        "{shown}"
    );
}

#[test]
fn several_programs_attach_side_by_side() {
    let (Some(a), Some(b)) = (load(&verdict(true)), load(&verdict(true))) else {
        return;
    };
    let Some(cg) = Cgroup::new() else { return };
    prog_attach_cgroup_device(a.as_fd(), cg.dir.as_fd(), None).unwrap();
    prog_attach_cgroup_device(b.as_fd(), cg.dir.as_fd(), None).unwrap();
    let ids = prog_query_cgroup_device(cg.dir.as_fd()).unwrap();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0], ids[1]);
}

/// Whether a process that joins `cg` can open `/dev/null`: `Ok(errno or 0)`, or `None`
/// when the process could not join (skip reported).
fn open_dev_null_in(cg: &Cgroup) -> Option<i32> {
    let procs = cg.path.join("cgroup.procs");
    let (bytes, ended) = common::fork_and_collect(|out| {
        use std::io::Write;
        if let Err(e) = fs::write(&procs, b"0") {
            let _ = write!(out, "join {}: {e}", procs.display());
            return common::SKIP_CODE;
        }
        let code = match fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            Ok(_) => 0,
            Err(e) => e.raw_os_error().unwrap_or(-1),
        };
        let _ = out.write_all(&code.to_le_bytes());
        0
    });
    match ended {
        Some(Ended::Exited(0)) => Some(i32::from_le_bytes(bytes.try_into().unwrap())),
        Some(Ended::Exited(common::SKIP_CODE)) => {
            common::skip(String::from_utf8_lossy(&bytes));
            None
        }
        other => panic!("child: {other:?}: {}", String::from_utf8_lossy(&bytes)),
    }
}

#[test]
fn an_attached_program_decides_device_access_of_members() {
    let (Some(allow), Some(deny)) = (load(&verdict(true)), load(&verdict(false))) else {
        return;
    };
    let Some(cg) = Cgroup::new() else { return };
    prog_attach_cgroup_device(allow.as_fd(), cg.dir.as_fd(), None).unwrap();
    let Some(allowed) = open_dev_null_in(&cg) else {
        return;
    };
    assert_eq!(allowed, 0, "allow-all refused /dev/null: errno {allowed}");
    prog_attach_cgroup_device(deny.as_fd(), cg.dir.as_fd(), Some(allow.as_fd())).unwrap();
    assert_eq!(open_dev_null_in(&cg), Some(libc::EPERM));
}

#[test]
fn fetching_an_id_nobody_has_is_enoent() {
    if !common::root_or_skip("BPF_PROG_GET_FD_BY_ID") {
        return;
    }
    let err = prog_get_fd_by_id(u32::MAX).unwrap_err();
    assert_eq!(err.errno(), Errno::ENOENT, "{err}");
    assert!(
        err.to_string().contains("bpf(BPF_PROG_GET_FD_BY_ID)"),
        "{err}"
    );
}
