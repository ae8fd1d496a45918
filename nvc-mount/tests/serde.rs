//! Mount plans and the driver facts they are built from survive a JSON round trip (feature
//! `serde`); planning needs nothing else.
#![cfg(feature = "serde")]
#![allow(clippy::unwrap_used)]

use nvc_driver::tables::Capability::{Compute, Utility};
use nvc_driver::{DeviceRequest, DriverOptions, probe_driver};
use nvc_mount::{MountPlan, Op, PlanOptions};
use nvc_testkit::{Host, Scenario};

#[test]
fn a_plan_round_trips_through_json() {
    let dir = tempfile::tempdir().unwrap();
    let _host = Host::build(&Scenario::builtin("mig").unwrap(), dir.path()).unwrap();
    let mut opts = DriverOptions::new(dir.path());
    opts.discover.proc_devices = dir.path().join("proc/devices");
    let info = probe_driver(&opts).unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    let dirs = nvc_mount::detect_dirs(rootfs.path()).unwrap();
    let plan = MountPlan::build(
        dir.path(),
        &info,
        &dirs,
        &PlanOptions {
            capabilities: vec![Compute, Utility],
            devices: DeviceRequest::parse("0,1,0:2")
                .unwrap()
                .select(&info.gpus)
                .unwrap(),
            ..PlanOptions::default()
        },
    )
    .unwrap();
    // The plan is data: the same plan comes from the probe's facts serialised and read back
    // after the host is gone (planning on another machine).
    let facts = serde_json::to_string(&info).unwrap();
    let root = dir.path().to_path_buf();
    drop(_host);
    drop(dir);
    assert!(!root.exists());
    let elsewhere: nvc_driver::DriverInfo = serde_json::from_str(&facts).unwrap();
    let again = MountPlan::build(
        &root,
        &elsewhere,
        &dirs,
        &PlanOptions {
            capabilities: vec![Compute, Utility],
            devices: DeviceRequest::parse("0,1,0:2")
                .unwrap()
                .select(&elsewhere.gpus)
                .unwrap(),
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert_eq!(again, plan);
    assert!(
        plan.ops
            .iter()
            .any(|op| matches!(op, Op::WriteFile { target, .. }
            if target.ends_with("params"))),
        "{plan}"
    );
    assert!(
        plan.ops
            .iter()
            .any(|op| matches!(op, Op::AllowDevice { major, .. } if *major != 195)),
        "the MIG access minors make device rules: {plan}"
    );
    let json = serde_json::to_string(&plan).unwrap();
    assert!(
        json.contains(r#"{"Tmpfs":{"target":"/proc/driver/nvidia","mode":365}}"#),
        "{json}"
    );
    let back: MountPlan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
    assert!(
        back.ops
            .iter()
            .any(|op| matches!(op, Op::AllowDevice { major: 195, .. }))
    );
}
