//! A seccomp allow-list filter: listed syscalls run, every other one fails with `EPERM`,
//! syscalls of a foreign ABI (x32, 32-bit compat) kill the process.

use nix::errno::Errno;

use crate::Error;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// Syscall numbers from here up belong to the x32 ABI.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The classic-BPF program of [`install_allow_list`], for inspection and tests.
pub fn allow_list_program(allowed: &[libc::c_long]) -> Vec<libc::sock_filter> {
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, ARCH_OFFSET),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, NR_OFFSET),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
    ];
    for &nr in allowed {
        let Ok(nr) = u32::try_from(nr) else { continue };
        prog.push(jump(BPF_JMP_JEQ_K, nr, 0, 1));
        prog.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    }
    prog.push(stmt(
        BPF_RET_K,
        SECCOMP_RET_ERRNO | Errno::EPERM as u32 & 0xffff,
    ));
    prog
}

/// Installs, for the calling thread and everything it executes, a filter that allows only
/// the syscalls numbered in `allowed` and fails every other one with `EPERM`.
/// `PR_SET_NO_NEW_PRIVS` must be set first unless the caller has `CAP_SYS_ADMIN`.
///
/// # Errors
///
/// [`Error::Syscall`] naming `prctl(PR_SET_SECCOMP)` (`EACCES` without no-new-privs,
/// `EINVAL` on a kernel without seccomp filters).
///
/// # Kernel requirements
///
/// `CONFIG_SECCOMP_FILTER` (Linux 3.5); `SECCOMP_RET_KILL_PROCESS` needs 4.14.
pub fn install_allow_list(allowed: &[libc::c_long]) -> Result<(), Error> {
    let prog = allow_list_program(allowed);
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| Error::Syscall {
            call: "prctl(PR_SET_SECCOMP)",
            errno: Errno::E2BIG,
        })?,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel copies the program.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            std::ptr::from_ref(&fprog),
        )
    };
    if ret != 0 {
        return Err(Error::Syscall {
            call: "prctl(PR_SET_SECCOMP)",
            errno: Errno::last(),
        });
    }
    Ok(())
}
