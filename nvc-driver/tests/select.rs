//! The `--device` grammar against a host with plain GPUs and MIG devices.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nvc_driver::{
    DeviceRequest, DeviceSpec, Gpu, MigDevice, PciBusId, Selection, select_mig_access,
};
use proptest::prelude::*;

fn gpus() -> Vec<Gpu> {
    let gpu = |index: u32, bus: u8, migs: Vec<MigDevice>| {
        let mut g = Gpu::default();
        (g.index, g.minor) = (index, index);
        g.uuid = format!("GPU-{index}{index}{index}{index}aaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
        g.bus_id = PciBusId {
            domain: 0,
            bus,
            device: 0,
        };
        g.model = "NVIDIA A100-SXM4-40GB".into();
        (g.brand, g.architecture) = (Some("Nvidia".into()), Some("8.0".into()));
        (g.mig_capable, g.mig_devices) = (index == 0, migs);
        g
    };
    let mig = |index: u32, gi: u32, ci: u32| {
        let mut m = MigDevice::default();
        (m.index, m.gi, m.ci) = (index, gi, ci);
        m.uuid = format!("MIG-{gi}{ci}{gi}{ci}ffff-bbbb-cccc-dddd-eeeeeeeeeeee");
        m
    };
    vec![
        gpu(0, 0x07, vec![mig(0, 1, 0), mig(1, 1, 1), mig(2, 2, 0)]),
        gpu(1, 0x0f, vec![]),
        gpu(2, 0x47, vec![]),
    ]
}

/// GPUs and MIG devices of a selection by NVML index.
fn indices(sel: &Selection) -> (Vec<u32>, Vec<(u32, u32)>) {
    (
        sel.gpus.iter().map(|g| g.index).collect(),
        sel.migs().map(|(g, m)| (g.index, m.index)).collect(),
    )
}

fn select(list: &str) -> (Vec<u32>, Vec<(u32, u32)>) {
    indices(&DeviceRequest::parse(list).unwrap().select(&gpus()).unwrap())
}

#[test]
fn every_spelling_selects_its_device() {
    let g = gpus();
    assert_eq!(select("1"), (vec![1], vec![]));
    assert_eq!(select(&g[2].uuid), (vec![2], vec![]));
    assert_eq!(select(&g[2].uuid.to_lowercase()), (vec![2], vec![]));
    for bus in ["00000000:0f:00.0", "0000:0F:00.0", "0f:00.0", "0:f:0.0"] {
        assert_eq!(select(bus), (vec![1], vec![]), "{bus}");
    }
    // MIG devices select their parent too.
    assert_eq!(select(&g[0].mig_devices[1].uuid), (vec![0], vec![(0, 1)]));
    assert_eq!(select("0:2"), (vec![0], vec![(0, 2)]));
    let legacy = format!("MIG-{}/2/0", g[0].uuid);
    assert_eq!(select(&legacy), (vec![0], vec![(0, 2)]));
    // The selection carries the devices as discovered: planning looks nothing up again.
    let sel = DeviceRequest::parse("2,0:1").unwrap().select(&g).unwrap();
    assert_eq!(sel.gpus[1], g[2]);
    let (parent, device) = sel.migs().next().unwrap();
    assert_eq!(
        (parent.uuid.as_str(), device),
        (g[0].uuid.as_str(), &g[0].mig_devices[1])
    );
    assert!(sel.contains(0) && sel.contains(2) && !sel.contains(1));
    assert_eq!(indices(&sel.without_migs()), (vec![0, 2], vec![]));
}

#[test]
fn lists_add_up_collapse_duplicates_and_skip_empty_tokens() {
    assert_eq!(select("2,,0,2,0:0"), (vec![0, 2], vec![(0, 0)]));
    let mut req = DeviceRequest::parse("1").unwrap();
    req.add("0:1").unwrap();
    let sel = req.select(&gpus()).unwrap();
    assert_eq!(indices(&sel), (vec![0, 1], vec![(0, 1)]));
}

#[test]
fn all_none_and_void() {
    let sel = DeviceRequest::parse("1,ALL")
        .unwrap()
        .select(&gpus())
        .unwrap();
    assert!(sel.all);
    assert_eq!(indices(&sel), (vec![0, 1, 2], vec![(0, 0), (0, 1), (0, 2)]));
    assert_eq!(select("none"), (vec![], vec![]));
    assert_eq!(select("void"), (vec![], vec![]));
    assert_eq!(select(""), (vec![], vec![]));
}

#[test]
fn unknown_devices_are_named() {
    let g = gpus();
    for (list, token) in [
        ("3", "3"),
        ("0,7", "7"),
        (
            "GPU-00000000-0000-0000-0000-000000000000",
            "GPU-00000000-0000-0000-0000-000000000000",
        ),
        ("0000:99:00.0", "0000:99:00.0"),
        ("1:0", "1:0"),
        ("0:3", "0:3"),
        ("MIG-nope", "MIG-nope"),
    ] {
        let err = DeviceRequest::parse(list).unwrap().select(&g).unwrap_err();
        assert_eq!(err.to_string(), format!("{token}: unknown device"));
    }
    for bad in [
        "gpu0",
        "0x1",
        "0000:07:00.1",
        "GPU-",
        "MIG-GPU-x/1",
        "1:",
        ":1",
        "-1",
    ] {
        let err = DeviceRequest::parse(bad).unwrap_err();
        assert_eq!(err.to_string(), format!("{bad}: unknown device"));
    }
}

#[test]
fn token_forms_do_not_overlap() {
    assert_eq!(
        DeviceSpec::parse("1:0").unwrap(),
        DeviceSpec::MigIndex { gpu: 1, mig: 0 }
    );
    assert!(matches!(
        DeviceSpec::parse("1:0.0").unwrap(),
        DeviceSpec::BusId(_)
    ));
    assert!(matches!(
        DeviceSpec::parse("0:1:0").unwrap(),
        DeviceSpec::BusId(_)
    ));
    assert_eq!(DeviceSpec::parse("10").unwrap(), DeviceSpec::Index(10));
}

#[test]
fn mig_config_and_monitor_take_only_all_and_no_specific_mig_devices() {
    let g = gpus();
    let all = DeviceRequest::parse("all").unwrap().select(&g).unwrap();
    let config = select_mig_access("mig-config", "all", &all).unwrap();
    assert_eq!(
        config
            .iter()
            .map(|g| (g.index, g.mig_devices.len()))
            .collect::<Vec<_>>(),
        [(0, 0)]
    );
    let plain = DeviceRequest::parse("1,2").unwrap().select(&g).unwrap();
    assert!(
        select_mig_access("mig-monitor", "ALL", &plain)
            .unwrap()
            .is_empty()
    );
    let err = select_mig_access("mig-config", "0", &all).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid mig-config value \"0\": only 'all' is supported"
    );
    let specific = DeviceRequest::parse("0:1").unwrap().select(&g).unwrap();
    let err = select_mig_access("mig-config", "all", &specific).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot enable mig-config with specific MIG devices selected"
    );
    // Caps paths follow the GPU's minor.
    assert_eq!(
        g[0].ci_caps_path(&g[0].mig_devices[1]),
        "/proc/driver/nvidia/capabilities/gpu0/mig/gi1/ci1"
    );
}

proptest! {
    #[test]
    fn any_text_parses_or_names_its_token(list in "[0-9a-fA-Z:.,/ -]{0,24}") {
        match DeviceRequest::parse(&list) {
            Ok(req) => { let _ = req.select(&gpus()); }
            Err(e) => prop_assert!(e.to_string().ends_with(": unknown device")),
        }
    }

    #[test]
    fn selections_are_sorted_unique_and_include_mig_parents(picks in prop::collection::vec(0u32..6, 0..8)) {
        let tokens: Vec<String> = picks.iter().map(|&p| if p < 3 { p.to_string() } else { format!("0:{}", p - 3) }).collect();
        let sel = DeviceRequest::parse(&tokens.join(",")).unwrap().select(&gpus()).unwrap();
        let (gpu_indices, migs) = indices(&sel);
        prop_assert!(gpu_indices.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(migs.windows(2).all(|w| w[0] < w[1]));
        let host = gpus();
        for (g, m) in sel.migs() {
            prop_assert_eq!(&host[g.index as usize].mig_devices[m.index as usize], m);
        }
    }
}
