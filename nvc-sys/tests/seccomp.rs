//! The seccomp allow-list: `allow_list_program` evaluated by a small classic-BPF interpreter
//! (listed syscalls return ALLOW, others ERRNO(EPERM), a foreign architecture or an x32
//! syscall number KILL_PROCESS), and `install_allow_list` in a forked child (an allowed
//! syscall works, a disallowed one fails with EPERM, and without no-new-privs or
//! `CAP_SYS_ADMIN` the install fails naming `prctl(PR_SET_SECCOMP)` and `EACCES`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;

use nix::errno::Errno;
use nvc_sys::Ended;
use nvc_sys::seccomp::{allow_list_program, install_allow_list};

use common::fork_and_collect;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7;
/// `AUDIT_ARCH_I386`: the 32-bit compat ABI.
const I386: u32 = 0x4000_0003;

/// Runs a classic-BPF seccomp program on `struct seccomp_data { nr, arch, .. }`: the
/// opcodes the allow-list uses (absolute word loads, `jeq`/`jge` with a constant, return
/// a constant); any other opcode, a load outside the data or a jump out of the program
/// panics.
fn run(prog: &[libc::sock_filter], nr: i64, arch: u32) -> u32 {
    let nr = u32::try_from(nr).expect("a syscall number");
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let insn = prog
            .get(pc)
            .unwrap_or_else(|| panic!("ran off the end at {pc}"));
        pc += 1;
        match insn.code {
            0x20 => {
                let at = insn.k as usize;
                let word = data.get(at..at + 4).expect("load outside seccomp_data");
                acc = u32::from_ne_bytes(word.try_into().unwrap());
            }
            0x15 | 0x35 => {
                let taken = if insn.code == 0x15 {
                    acc == insn.k
                } else {
                    acc >= insn.k
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            0x06 => return insn.k,
            code => panic!("unexpected opcode {code:#x} at {}", pc - 1),
        }
    }
}

#[test]
fn listed_syscalls_are_allowed_and_others_fail_with_eperm() {
    let listed = [libc::SYS_read, libc::SYS_write, libc::SYS_exit_group];
    let prog = allow_list_program(&listed);
    for nr in listed {
        assert_eq!(run(&prog, nr, NATIVE_ARCH), RET_ALLOW, "syscall {nr}");
    }
    for nr in [
        libc::SYS_getppid,
        libc::SYS_mount,
        libc::SYS_ptrace,
        0x3fff_ffff,
    ] {
        assert_eq!(run(&prog, nr, NATIVE_ARCH), RET_ERRNO_EPERM, "syscall {nr}");
    }
}

#[test]
fn an_empty_list_allows_nothing() {
    let prog = allow_list_program(&[]);
    for nr in [libc::SYS_read, libc::SYS_exit_group, 0] {
        assert_eq!(run(&prog, nr, NATIVE_ARCH), RET_ERRNO_EPERM);
    }
}

#[test]
fn negative_numbers_are_ignored_not_wrapped() {
    // -1 as u32 is 0xffff_ffff: listing it must not allow that number (nor anything else).
    let prog = allow_list_program(&[-1, libc::SYS_read]);
    assert_eq!(run(&prog, libc::SYS_read, NATIVE_ARCH), RET_ALLOW);
    assert_eq!(run(&prog, libc::SYS_write, NATIVE_ARCH), RET_ERRNO_EPERM);
    assert_ne!(run(&prog, u32::MAX.into(), NATIVE_ARCH), RET_ALLOW);
}

#[test]
fn a_foreign_abi_kills_the_process() {
    let prog = allow_list_program(&[libc::SYS_read]);
    // The 32-bit ABI, even for a number the native list allows.
    assert_eq!(run(&prog, libc::SYS_read, I386), RET_KILL_PROCESS);
    // The x32 ABI: native arch, syscall number with bit 30 set.
    assert_eq!(
        run(&prog, libc::SYS_read | 0x4000_0000, NATIVE_ARCH),
        RET_KILL_PROCESS
    );
}

/// `syscall(nr)` with no arguments: its result, or `-errno`.
fn raw(nr: libc::c_long) -> i64 {
    // SAFETY: getpid/getppid take no arguments and touch no memory.
    let ret = unsafe { libc::syscall(nr) };
    if ret < 0 {
        -(Errno::last() as i64)
    } else {
        ret
    }
}

#[test]
fn an_installed_filter_refuses_unlisted_syscalls_with_eperm() {
    let (bytes, ended) = fork_and_collect(|out| {
        let before = raw(libc::SYS_getppid);
        if let Err(e) = nix::sys::prctl::set_no_new_privs() {
            let _ = write!(out, "no_new_privs: {e}");
            return 2;
        }
        // What the child needs to report and exit, and getpid; not getppid.
        let allowed = [
            libc::SYS_write,
            libc::SYS_exit_group,
            libc::SYS_exit,
            libc::SYS_rt_sigreturn,
            libc::SYS_getpid,
        ];
        if let Err(e) = install_allow_list(&allowed) {
            let _ = write!(out, "install: {e}");
            return 2;
        }
        let (pid, ppid) = (raw(libc::SYS_getpid), raw(libc::SYS_getppid));
        let mut report = [0u8; 24];
        report[..8].copy_from_slice(&before.to_le_bytes());
        report[8..16].copy_from_slice(&pid.to_le_bytes());
        report[16..].copy_from_slice(&ppid.to_le_bytes());
        let _ = out.write_all(&report);
        0
    });
    assert_eq!(
        ended,
        Some(Ended::Exited(0)),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(bytes.len(), 24);
    let field = |i: usize| i64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(
        field(0),
        i64::from(std::process::id()),
        "getppid before the filter"
    );
    assert!(field(1) > 0, "allowed getpid failed: {}", field(1));
    assert_eq!(field(2), -(libc::EPERM as i64), "unlisted getppid");
}

#[test]
fn install_without_no_new_privs_or_cap_sys_admin_is_eacces() {
    if !common::root_or_skip("dropping CAP_SYS_ADMIN to see the refusal") {
        return;
    }
    let (bytes, ended) = fork_and_collect(|out| {
        if let Err(e) = caps::drop(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_ADMIN,
        ) {
            let _ = write!(out, "drop CAP_SYS_ADMIN: {e}");
            return 2;
        }
        match install_allow_list(&[libc::SYS_write, libc::SYS_exit_group]) {
            Ok(()) => {
                let _ = out.write_all(b"installed");
                1
            }
            Err(e) => {
                let _ = write!(out, "{}|{e}", e.errno() as i32);
                0
            }
        }
    });
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(ended, Some(Ended::Exited(0)), "{text}");
    let (errno, shown) = text.split_once('|').unwrap();
    assert_eq!(errno, (libc::EACCES).to_string(), "{shown}");
    assert!(shown.contains("prctl(PR_SET_SECCOMP)"), "{shown}");
    assert!(shown.contains("EACCES"), "{shown}");
}
