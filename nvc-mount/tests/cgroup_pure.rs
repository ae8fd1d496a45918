//! The pure halves of the cgroup step, without privileges: the v2 device program, executed
//! with rbpf over every request corner and against a reference model of the rules, and the
//! cgroup discovery parser on arbitrary input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use nvc_mount::cgroup::program::{self, Access, DeviceRule, DeviceType};
use nvc_sys::bpf::Insn;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Request {
    block: bool,
    access: u32,
    major: u32,
    minor: u32,
}

fn run(insns: &[Insn], req: Request) -> bool {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let vm = rbpf::EbpfVmRaw::new(Some(&code)).unwrap();
    let kind = if req.block { 1 } else { 2 };
    let mut ctx = Vec::new();
    ctx.extend_from_slice(&((req.access << 16) | kind).to_le_bytes());
    ctx.extend_from_slice(&req.major.to_le_bytes());
    ctx.extend_from_slice(&req.minor.to_le_bytes());
    match vm.execute_program(&mut ctx).unwrap() {
        0 => false,
        1 => true,
        other => panic!("program returned {other}"),
    }
}

/// What the OCI spec says: the last matching rule decides, else the default.
fn model(rules: &[DeviceRule], default: bool, req: Request) -> bool {
    rules
        .iter()
        .rev()
        .find(|r| {
            let kind = match r.kind {
                DeviceType::All => true,
                DeviceType::Char => !req.block,
                DeviceType::Block => req.block,
            };
            kind && req.access & !r.access.0 == 0
                && r.major.is_none_or(|m| m == req.major)
                && r.minor.is_none_or(|m| m == req.minor)
        })
        .map_or(default, |r| r.allow)
}

const MAJORS: [u32; 4] = [0, 1, 195, 4095];
const MINORS: [u32; 4] = [0, 3, 255, 1_048_575];

fn corners() -> impl Iterator<Item = Request> {
    [false, true].into_iter().flat_map(|block| {
        (1..=7).flat_map(move |access| {
            MAJORS.into_iter().flat_map(move |major| {
                MINORS.into_iter().map(move |minor| Request {
                    block,
                    access,
                    major,
                    minor,
                })
            })
        })
    })
}

/// A runc-like default policy: deny all, then the usual /dev nodes.
fn runtime_rules() -> Vec<DeviceRule> {
    let rule = |kind, major, minor, access| DeviceRule {
        allow: true,
        kind,
        major,
        minor,
        access,
    };
    vec![
        DeviceRule {
            allow: false,
            kind: DeviceType::All,
            major: None,
            minor: None,
            access: Access::ALL,
        },
        rule(DeviceType::Char, Some(1), Some(3), Access::ALL),
        rule(DeviceType::Char, Some(1), Some(5), Access::ALL),
        rule(DeviceType::Char, None, None, Access::MKNOD),
        rule(DeviceType::Block, None, None, Access::MKNOD),
        rule(DeviceType::Char, Some(136), None, Access::RW),
    ]
}

#[test]
fn nvidia_rules_allow_exactly_rw_on_their_char_nodes() {
    let ours = [
        DeviceRule::allow_char_rw(195, 255),
        DeviceRule::allow_char_rw(195, 0),
    ];
    let prog = program::program(&ours, false);
    for req in corners() {
        let expected = !req.block
            && req.major == 195
            && (req.minor == 255 || req.minor == 0)
            && req.access & Access::MKNOD.0 == 0;
        assert_eq!(run(&prog, req), expected, "{req:?}");
    }
}

#[test]
fn prepended_rules_keep_the_runtime_policy_for_everything_else() {
    let runtime = runtime_rules();
    let existing = program::program(&runtime, false);
    let ours = [DeviceRule::allow_char_rw(195, 255)];
    let spliced = program::prepend(&ours, &existing);
    let mut combined = runtime.clone();
    combined.extend_from_slice(&ours);
    for req in corners() {
        assert_eq!(run(&spliced, req), model(&combined, false, req), "{req:?}");
    }
    // The runtime's own program is the unchanged tail; the prefix identifies a second run.
    assert!(spliced.ends_with(&existing));
    assert!(spliced.starts_with(&program::prefix(&ours)));
}

#[test]
fn a_rule_matching_everything_ends_the_program() {
    let all = DeviceRule {
        allow: true,
        kind: DeviceType::All,
        major: None,
        minor: None,
        access: Access::ALL,
    };
    let deny_tail = program::program(&[], false);
    let prog = program::prepend(&[all], &deny_tail);
    // Nothing unreachable is left for the verifier to refuse.
    assert_eq!(prog.len(), 5 + 2);
    assert!(corners().all(|req| run(&prog, req)));
}

fn rule_strategy() -> impl Strategy<Value = DeviceRule> {
    (
        any::<bool>(),
        prop_oneof![
            Just(DeviceType::All),
            Just(DeviceType::Char),
            Just(DeviceType::Block)
        ],
        proptest::option::of(prop::sample::select(MAJORS.to_vec())),
        proptest::option::of(prop::sample::select(MINORS.to_vec())),
        1u32..=7,
    )
        .prop_map(|(allow, kind, major, minor, access)| DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: Access(access),
        })
}

proptest! {
    #[test]
    fn any_rule_list_behaves_as_the_oci_model(
        rules in proptest::collection::vec(rule_strategy(), 0..8),
        default in any::<bool>(),
    ) {
        let prog = program::program(&rules, default);
        for req in corners() {
            prop_assert_eq!(run(&prog, req), model(&rules, default, req), "{:?}", req);
        }
    }
}

proptest! {
    /// The cgroup discovery parser takes any bytes the files could hold without panicking,
    /// and whatever it accepts lies below the proc root without `..`.
    #[test]
    fn cgroup_discovery_never_panics(
        cgroup in proptest::collection::vec(any::<u8>(), 0..256),
        mountinfo in proptest::collection::vec(any::<u8>(), 0..512),
        lines in proptest::collection::vec("[0-9]{1,2}:[a-z,=]{0,12}:/[a-z/.]{0,16}", 0..6),
    ) {
        let root = std::path::Path::new("/rootfs");
        let _ = nvc_mount::cgroup::DeviceCgroup::parse(&cgroup, &mountinfo, root);
        let shaped = lines.join("\n");
        let mounts = "1 0 0:1 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n2 0 0:2 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        if let Ok(cg) = nvc_mount::cgroup::DeviceCgroup::parse(shaped.as_bytes(), mounts.as_bytes(), root) {
            prop_assert!(cg.path.starts_with("/rootfs/sys/fs/cgroup"));
            prop_assert!(!cg.path.components().any(|c| c == std::path::Component::ParentDir));
        }
    }
}
