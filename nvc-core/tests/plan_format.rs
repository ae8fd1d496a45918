//! The serialised form of a `Plan` is nvc-core's own, versioned format: a plan stored by
//! this release reads back whole, writes back byte for byte, and still applies; a newer
//! format is refused. `tests/data/plan-v1.json` is a plan of the simulated single-GPU host
//! for a Debian image (`NVC_BLESS_PLAN=1 cargo test -p nvc-core --test plan_format` writes
//! it again, at the fixed paths below — only for a deliberate format change).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use nvc_core::{Capability, Context, Devices, Ldconfig, Operation, Plan};

const STORED: &str = include_str!("data/plan-v1.json");

#[test]
fn a_stored_plan_reads_back_and_writes_back_the_same() {
    if std::env::var_os("NVC_BLESS_PLAN").is_some() {
        bless();
    }
    let plan: Plan = serde_json::from_str(STORED).unwrap();
    assert_eq!(serde_json::to_string_pretty(&plan).unwrap() + "\n", STORED);
    assert_eq!(plan.rootfs(), Path::new("/tmp/nvc-plan-v1/rootfs"));
    assert!(plan.device_rules().contains(&(195, 0)));
    assert_eq!(plan.ldconfig(), &Ldconfig::Host("/sbin/ldconfig".into()));
    assert!(plan.operations().iter().any(|op| matches!(
        op,
        Operation::Bind { target, .. } if target == Path::new("/dev/nvidia0")
    )));
    assert_eq!(plan.selection().gpus.len(), 1);

    let newer = STORED.replacen("\"version\": 1", "\"version\": 2", 1);
    let err = serde_json::from_str::<Plan>(&newer).unwrap_err();
    assert!(err.to_string().contains("format 2"), "{err}");
}

/// Writes the stored plan again from the simulated host (fixed paths, so the file does not
/// change with the temporary directory).
fn bless() {
    let base = Path::new("/tmp/nvc-plan-v1");
    let _ = std::fs::remove_dir_all(base);
    let scenario = nvc_testkit::Scenario::builtin("single").unwrap();
    let host = nvc_testkit::Host::build(&scenario, &base.join("host")).unwrap();
    let rootfs = base.join("rootfs");
    nvc_testkit::debian_image(&rootfs, &[], true).unwrap();
    let driver = Context::builder()
        .root(host.root())
        .build()
        .unwrap()
        .driver()
        .unwrap();
    let plan = driver
        .image(&rootfs)
        .unwrap()
        .devices(Devices::all())
        .capabilities(&[Capability::Compute, Capability::Utility])
        .ldconfig(Ldconfig::Host("/sbin/ldconfig".into()))
        .plan()
        .unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/plan-v1.json");
    std::fs::write(path, serde_json::to_string_pretty(&plan).unwrap() + "\n").unwrap();
    std::fs::remove_dir_all(base).unwrap();
    panic!("tests/data/plan-v1.json written: run again without NVC_BLESS_PLAN");
}
