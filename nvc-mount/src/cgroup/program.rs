//! The cgroup v2 device program: a pure generator from rules to eBPF instructions, in the
//! layout runc, crun, youki and upstream share.
//!
//! The prologue loads the access request from `struct bpf_cgroup_dev_ctx` (at `r1`):
//! `r2` = device type (low 16 bits of `access_type`), `r3` = access bits (high 16 bits),
//! `r4` = major, `r5` = minor. Each rule is one block that jumps to the next block on the
//! first mismatch and otherwise returns its verdict. Rules are checked last to first (a
//! later rule overrides an earlier one, as in the OCI spec). After the last block comes the
//! tail: a runtime's existing program (which starts by reading `r1` again, which no block
//! touches) or a default verdict.
//!
//! Unlike upstream, which splices one rule per device into a new program each time, all of a
//! container's rules go into one program (one load and one swap), so the access check uses
//! `r6` as scratch instead of upstream's `r2`, which later blocks still need.

use nvc_sys::bpf::Insn;

/// `BPF_DEVCG_DEV_BLOCK`.
const DEV_BLOCK: i32 = 1;
/// `BPF_DEVCG_DEV_CHAR`.
const DEV_CHAR: i32 = 2;

/// Which devices a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// Every type (`a`).
    All,
    /// Character devices (`c`).
    Char,
    /// Block devices (`b`).
    Block,
}

/// Access bits, as in `bpf_cgroup_dev_ctx` (`BPF_DEVCG_ACC_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access(pub u32);

impl Access {
    /// `m`: mknod.
    pub const MKNOD: Access = Access(1);
    /// `r`: read.
    pub const READ: Access = Access(2);
    /// `w`: write.
    pub const WRITE: Access = Access(4);
    /// `rw`, what upstream grants for every NVIDIA node.
    pub const RW: Access = Access(6);
    /// `rwm`.
    pub const ALL: Access = Access(7);
}

/// One device rule, as in an OCI `linux.resources.devices` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRule {
    /// Allow (`true`) or deny.
    pub allow: bool,
    /// Device type.
    pub kind: DeviceType,
    /// Major number, `None` for any.
    pub major: Option<u32>,
    /// Minor number, `None` for any.
    pub minor: Option<u32>,
    /// Access the rule is about; a request matches when it asks for a subset of it.
    pub access: Access,
}

impl DeviceRule {
    /// Upstream's rule for one NVIDIA node: allow `c <major>:<minor> rw`.
    pub fn allow_char_rw(major: u32, minor: u32) -> Self {
        DeviceRule {
            allow: true,
            kind: DeviceType::Char,
            major: Some(major),
            minor: Some(minor),
            access: Access::RW,
        }
    }
}

// Opcodes (class | op | source).
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const RSH32_K: u8 = 0x74;
const MOV32_X: u8 = 0xbc;
const AND32_K: u8 = 0x54;
const MOV32_K: u8 = 0xb4;
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

fn prologue() -> [Insn; 5] {
    [
        insn(LDX_H, 2, 1, 0, 0),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ]
}

/// Immediates are sign-extended by the kernel; every real device number fits in 31 bits
/// (majors 12, minors 20), larger ones can never match a request.
fn imm(n: u32) -> Option<i32> {
    i32::try_from(n).ok()
}

/// One rule's block; a mismatch jumps past its end. `None` when the rule cannot match.
fn block(rule: &DeviceRule) -> Option<Vec<Insn>> {
    // The comparisons; their jump offsets are filled in once the block's length is known.
    let mut checks: Vec<Insn> = Vec::new();
    match rule.kind {
        DeviceType::All => {}
        DeviceType::Char => checks.push(insn(JNE_K, 2, 0, 0, DEV_CHAR)),
        DeviceType::Block => checks.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK)),
    }
    if rule.access.0 & Access::ALL.0 != Access::ALL.0 {
        // Request bits outside the rule's access: no match. The scratch register is r6:
        // r1-r5 must survive for the following blocks and the tail, and a tail never reads
        // r6 before writing it (the verifier refuses reads of unset registers).
        checks.push(insn(MOV32_X, 6, 3, 0, 0));
        checks.push(insn(AND32_K, 6, 0, 0, imm(rule.access.0 & Access::ALL.0)?));
        checks.push(insn(JNE_X, 6, 3, 0, 0));
    }
    if let Some(major) = rule.major {
        checks.push(insn(JNE_K, 4, 0, 0, imm(major)?));
    }
    if let Some(minor) = rule.minor {
        checks.push(insn(JNE_K, 5, 0, 0, imm(minor)?));
    }
    checks.push(insn(MOV32_K, 0, 0, 0, i32::from(rule.allow)));
    checks.push(insn(EXIT, 0, 0, 0, 0));
    let len = checks.len();
    for (i, ins) in checks.iter_mut().enumerate() {
        if ins.code == JNE_K || ins.code == JNE_X {
            ins.off = i16::try_from(len - i - 1).ok()?;
        }
    }
    Some(checks)
}

/// The instructions that check `rules`, and whether they decide every request (a rule
/// matching everything makes all that follows it unreachable, which the verifier refuses).
fn checks(rules: &[DeviceRule]) -> (Vec<Insn>, bool) {
    let mut out = prologue().to_vec();
    for rule in rules.iter().rev() {
        if let Some(b) = block(rule) {
            let decides_all = b.len() == 2;
            out.extend(b);
            if decides_all {
                return (out, true);
            }
        }
    }
    (out, false)
}

/// The instructions that check `rules` and fall through to whatever follows them: a program
/// that already starts with them already grants the rules (a second `configure`).
pub fn prefix(rules: &[DeviceRule]) -> Vec<Insn> {
    checks(rules).0
}

/// Upstream's splice: `rules` checked first, then the runtime's program `existing`
/// unchanged, so everything the rules do not match is still decided by the runtime.
pub fn prepend(rules: &[DeviceRule], existing: &[Insn]) -> Vec<Insn> {
    let (mut out, decides_all) = checks(rules);
    if !decides_all {
        out.extend_from_slice(existing);
    }
    out
}

/// A whole program: `rules`, then `default` (allow or deny) for everything else.
pub fn program(rules: &[DeviceRule], default: bool) -> Vec<Insn> {
    prepend(
        rules,
        &[
            insn(MOV32_K, 0, 0, 0, i32::from(default)),
            insn(EXIT, 0, 0, 0, 0),
        ],
    )
}
