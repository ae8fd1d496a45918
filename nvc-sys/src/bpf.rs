//! The `bpf(2)` calls behind cgroup v2 device control: load, query, fetch by id, read the
//! instructions back, attach (optionally replacing a program atomically), detach.
//!
//! Each `bpf_attr` variant is its own `#[repr(C)]` struct with the kernel's field layout; the
//! kernel accepts a shorter `attr` than its own and zero-fills the rest.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use crate::Error;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs may be attached to one cgroup; all must allow an access.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// Replace one attached program by another in one step (Linux 5.6).
const BPF_F_REPLACE: u32 = 1 << 2;
/// Size of the verifier log kept when a load fails.
const LOG_SIZE: usize = 64 * 1024;

/// One eBPF instruction, as the kernel stores it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Signed offset (jumps, memory access).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    /// Encodes the instruction as the kernel's 8 little-endian bytes (what `rbpf` executes).
    pub fn to_bytes(self) -> [u8; 8] {
        let [o0, o1] = self.off.to_le_bytes();
        let [i0, i1, i2, i3] = self.imm.to_le_bytes();
        [self.code, self.regs, o0, o1, i0, i1, i2, i3]
    }

    /// Decodes 8 bytes in the kernel's layout.
    pub fn from_bytes(b: [u8; 8]) -> Self {
        let [code, regs, o0, o1, i0, i1, i2, i3] = b;
        Insn {
            code,
            regs,
            off: i16::from_le_bytes([o0, o1]),
            imm: i32::from_le_bytes([i0, i1, i2, i3]),
        }
    }
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_prog_info`, up to the fields read here.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
}

#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

/// Calls `bpf(cmd, attr, sizeof attr)`.
///
/// # Safety
///
/// `attr` must be the struct the kernel expects for `cmd`, and every pointer in it must be
/// valid for the kernel's reads and writes for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a live, exclusive `T` of the given size; the caller vouches for the
    // pointers inside it.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>()) };
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

fn owned(ret: libc::c_long, call: &'static str) -> Result<OwnedFd, Error> {
    let raw = i32::try_from(ret).map_err(|_| Error::Syscall {
        call,
        errno: Errno::EBADF,
    })?;
    // SAFETY: the kernel just returned `raw` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
///
/// # Errors
///
/// [`Error::Verifier`] with the kernel's verifier log when the program is refused (`EACCES`,
/// `EINVAL`), [`Error::Syscall`] otherwise (`EPERM`: needs `CAP_BPF` + `CAP_NET_ADMIN` or
/// `CAP_SYS_ADMIN`).
pub fn prog_load_cgroup_device(insns: &[Insn], license: &CStr) -> Result<OwnedFd, Error> {
    let mut log = vec![0u8; LOG_SIZE];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Error::Syscall {
            call: "bpf(BPF_PROG_LOAD)",
            errno: Errno::E2BIG,
        })?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: u32::try_from(log.len()).unwrap_or(u32::MAX),
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
    };
    // SAFETY: `insns`, `license` and `log` outlive the call; sizes are theirs.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(ret) => owned(ret, "bpf(BPF_PROG_LOAD)"),
        Err(errno @ (Errno::EACCES | Errno::EINVAL)) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            log.truncate(end);
            Err(Error::Verifier {
                errno,
                log: String::from_utf8_lossy(&log).trim_end().to_owned(),
            })
        }
        Err(errno) => Err(Error::Syscall {
            call: "bpf(BPF_PROG_LOAD)",
            errno,
        }),
    }
}

/// Ids of the device programs attached directly to the cgroup `cgroup` (an open cgroup
/// directory). The id buffer grows when the kernel says it is too small (`ENOSPC`).
///
/// # Errors
///
/// [`Error::Syscall`] (`EPERM`: needs `CAP_NET_ADMIN`).
pub fn prog_query_cgroup_device(cgroup: BorrowedFd<'_>) -> Result<Vec<u32>, Error> {
    let mut ids = vec![0u32; 64];
    for _ in 0..10 {
        let mut attr = QueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type: BPF_CGROUP_DEVICE,
            query_flags: 0,
            attach_flags: 0,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: u32::try_from(ids.len()).unwrap_or(u32::MAX),
        };
        // SAFETY: `ids` holds `prog_cnt` u32s for the kernel to fill.
        match unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(Errno::ENOSPC) => ids.resize(attr.prog_cnt as usize, 0),
            Err(errno) => {
                return Err(Error::Syscall {
                    call: "bpf(BPF_PROG_QUERY)",
                    errno,
                });
            }
        }
    }
    Err(Error::Syscall {
        call: "bpf(BPF_PROG_QUERY)",
        errno: Errno::ENOSPC,
    })
}

/// Opens the program with id `id`.
///
/// # Errors
///
/// [`Error::Syscall`]; `EPERM`/`EACCES` when an LSM label (systemd's programs under SELinux)
/// hides the program, `ENOENT` when it is gone.
pub fn prog_get_fd_by_id(id: u32) -> Result<OwnedFd, Error> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: plain integers only.
    let ret = unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }.map_err(|errno| Error::Syscall {
        call: "bpf(BPF_PROG_GET_FD_BY_ID)",
        errno,
    })?;
    owned(ret, "bpf(BPF_PROG_GET_FD_BY_ID)")
}

/// Reads a loaded program's instructions back, as the kernel keeps them ("xlated").
///
/// # Errors
///
/// [`Error::Syscall`] (`EPERM`: needs `CAP_SYS_ADMIN` / `CAP_BPF` to see instructions).
pub fn prog_instructions(prog: BorrowedFd<'_>) -> Result<Vec<Insn>, Error> {
    let fail = |errno| Error::Syscall {
        call: "bpf(BPF_OBJ_GET_INFO_BY_FD)",
        errno,
    };
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(prog),
        info_len: u32::try_from(size_of::<ProgInfo>()).unwrap_or(0),
        info: std::ptr::from_mut(&mut info) as u64,
    };
    // SAFETY: `info` is a live `ProgInfo` of `info_len` bytes.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }.map_err(fail)?;
    let count = info.xlated_prog_len as usize / size_of::<Insn>();
    let mut insns = vec![Insn::default(); count];
    let mut info = ProgInfo {
        xlated_prog_len: info.xlated_prog_len,
        xlated_prog_insns: insns.as_mut_ptr() as u64,
        ..ProgInfo::default()
    };
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(prog),
        info_len: u32::try_from(size_of::<ProgInfo>()).unwrap_or(0),
        info: std::ptr::from_mut(&mut info) as u64,
    };
    // SAFETY: `insns` has room for `xlated_prog_len` bytes; `info` is live.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }.map_err(fail)?;
    if info.xlated_prog_len == 0 {
        // Instructions hidden (kernel.kptr_restrict / missing CAP_SYS_ADMIN).
        return Err(fail(Errno::EPERM));
    }
    insns.truncate(info.xlated_prog_len as usize / size_of::<Insn>());
    Ok(insns)
}

/// Attaches `prog` to `cgroup` as a device program with `BPF_F_ALLOW_MULTI`; with `replace`,
/// atomically in place of that attached program (`BPF_F_REPLACE`, Linux 5.6).
///
/// # Errors
///
/// [`Error::Syscall`] (`EPERM`: needs `CAP_NET_ADMIN`; `ENOENT`: `replace` not attached).
pub fn prog_attach_cgroup_device(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    replace: Option<BorrowedFd<'_>>,
) -> Result<(), Error> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI | replace.map_or(0, |_| BPF_F_REPLACE),
        replace_bpf_fd: replace.map_or(0, fd_u32),
    };
    // SAFETY: plain integers only.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }
        .map(drop)
        .map_err(|errno| Error::Syscall {
            call: "bpf(BPF_PROG_ATTACH)",
            errno,
        })
}

/// Detaches the device program `prog` from `cgroup`.
///
/// # Errors
///
/// [`Error::Syscall`] (`ENOENT`: not attached there).
pub fn prog_detach_cgroup_device(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
) -> Result<(), Error> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
    };
    // SAFETY: plain integers only.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }
        .map(drop)
        .map_err(|errno| Error::Syscall {
            call: "bpf(BPF_PROG_DETACH)",
            errno,
        })
}
