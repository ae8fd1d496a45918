//! The whole probe on every simulated host, and NVML's failure modes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use nvc_driver::{DriverOptions, Error, probe_driver};
use nvc_testkit::{BUILTIN, Host, Misbehaviour, NvmlFaults, Scenario};

fn build(s: &Scenario) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::build(s, dir.path()).unwrap();
    (dir, host)
}

#[test]
fn every_scenario_probes_to_its_description() {
    // The built-in scenarios and the scaled dgx hosts of the scaling benchmark.
    for name in BUILTIN.iter().copied().chain(["dgx1", "dgx64"]) {
        let s = Scenario::builtin(name).unwrap();
        let (_dir, host) = build(&s);
        let info = probe_driver(&DriverOptions::new(host.root()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(info.nvrm_version, "550.54.14");
        assert_eq!(info.cuda_version.as_deref(), Some("12.4"));
        assert_eq!(
            info.nvml_library.to_str().unwrap(),
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14"
        );
        assert_eq!(info.gpus.len(), s.gpus.len(), "{name}");
        for (got, want) in info.gpus.iter().zip(&s.gpus) {
            assert_eq!(got.index, want.index);
            assert_eq!(got.minor, want.minor);
            assert_eq!(got.uuid, want.uuid);
            assert_eq!(got.bus_id.to_string(), want.pci.bus_id());
            assert_eq!(got.model, want.name);
            assert_eq!(got.brand.as_deref(), Some(want.upstream_brand()));
            let (major, minor) = want.compute_capability;
            assert_eq!(got.architecture, Some(format!("{major}.{minor}")));
            assert_eq!(got.mig_capable, want.mig_mode.is_some());
            let migs: Vec<(u32, u32, &str)> = got
                .mig_devices
                .iter()
                .map(|m| (m.gi, m.ci, m.uuid.as_str()))
                .collect();
            let expect: Vec<(u32, u32, &str)> = if want.mig_mode == Some((true, true)) {
                want.mig_devices
                    .iter()
                    .map(|m| (m.gi, m.ci, m.uuid.as_str()))
                    .collect()
            } else {
                Vec::new()
            };
            assert_eq!(migs, expect, "{name}");
        }
        assert!(
            info.files
                .libraries
                .iter()
                .any(|l| l.ends_with("libcuda.so.550.54.14"))
        );
    }
}

#[test]
fn nvml_missing_failing_and_hanging() {
    let mut s = Scenario::builtin("single").unwrap();
    s.files.nvml = false;
    let (_dir, host) = build(&s);
    let err = probe_driver(&DriverOptions::new(host.root())).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Nvml {
                call: "nvmlInit",
                ..
            }
        ),
        "{err}"
    );

    s.files.nvml = true;
    s.nvml_faults = NvmlFaults {
        init_result: 9,
        init_delay_ms: 0,
        ..NvmlFaults::default()
    };
    let (_dir, host) = build(&s);
    let err = probe_driver(&DriverOptions::new(host.root())).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Nvml {
                call: "nvmlInit",
                ..
            }
        ),
        "{err}"
    );

    s.nvml_faults = NvmlFaults {
        init_result: 0,
        init_delay_ms: 5_000,
        ..NvmlFaults::default()
    };
    let (_dir, host) = build(&s);
    let mut opts = DriverOptions::new(host.root());
    opts.nvml_timeout = Duration::from_millis(200);
    let start = Instant::now();
    let err = probe_driver(&opts).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(
        err.to_string(),
        "NVML timed out in nvmlInit after 0.2s; raise the limit with --nvml-timeout=SECONDS or NVC_NVML_TIMEOUT"
    );
}

/// Children of this process that are zombies.
fn zombies() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...
            let after = stat.rsplit_once(") ").map(|(_, a)| a).unwrap_or_default();
            let mut f = after.split(' ');
            let state = f.next();
            let ppid = f.next();
            state == Some("Z") && ppid == Some(me.as_str())
        })
        .count()
}

#[test]
fn nvml_runs_in_a_helper_that_is_reaped_even_when_killed() {
    let s = Scenario::builtin("mig").unwrap();
    let (_dir, host) = build(&s);
    let info = probe_driver(&DriverOptions::new(host.root())).unwrap();
    assert_eq!(info.gpus.len(), 2);
    // The driver root's NVML never loaded into this process.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        !maps.contains(host.root().to_str().unwrap()),
        "the root's NVML is mapped here"
    );

    let mut hang = Scenario::builtin("single").unwrap();
    hang.nvml_faults.init_delay_ms = 60_000;
    let (_dir, host) = build(&hang);
    let mut opts = DriverOptions::new(host.root());
    opts.nvml_timeout = Duration::from_millis(300);
    let before = zombies();
    let start = Instant::now();
    let err = probe_driver(&opts).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NvmlTimeout {
                call: "nvmlInit",
                ..
            }
        ),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    // Other tests' children may be zombies for an instant; ours must not stay one.
    let reaped = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        zombies() <= before
    });
    assert!(reaped, "the killed helper was not reaped");
}

#[test]
fn helper_reports_round_trip() {
    use nvc_driver::nvml::{NvmlInfo, decode, encode};
    use nvc_driver::{Gpu, MigDevice, PciBusId};
    let mut mig = MigDevice::default();
    (mig.index, mig.gi, mig.ci, mig.uuid) = (0, 1, 2, "MIG-1".into());
    let mut gpu = Gpu::default();
    (gpu.index, gpu.minor, gpu.uuid) = (0, 3, "GPU-1".into());
    gpu.bus_id = PciBusId {
        domain: 1,
        bus: 0x3b,
        device: 2,
    };
    gpu.model = "Tesla\tT4 with a tab".into();
    (gpu.brand, gpu.architecture) = (Some("Tesla".into()), None);
    (gpu.mig_capable, gpu.mig_devices) = (true, vec![mig]);
    let info = NvmlInfo {
        nvrm_version: "550.54.14".into(),
        cuda_version: Some("12.4".into()),
        gpus: vec![gpu],
    };
    let back = decode(&encode(&info)).unwrap();
    // What NVML did not give stays unknown, not an empty string.
    assert_eq!(back.cuda_version.as_deref(), Some("12.4"));
    assert_eq!(back.gpus[0].brand.as_deref(), Some("Tesla"));
    assert_eq!(back.gpus[0].architecture, None);
    assert_eq!(back.gpus[0].model, "Tesla T4 with a tab");
    assert_eq!(back.gpus[0].mig_devices, info.gpus[0].mig_devices);
    assert_eq!(back.gpus[0].bus_id, info.gpus[0].bus_id);
    assert!(back.gpus[0].mig_capable);
    // A helper that died mid-report is an error, not a short GPU list.
    let text = encode(&info);
    let cut = &text[..text.len() - 4];
    assert!(decode(cut).unwrap_err().to_string().contains("cut short"));
    let err = decode("call\tnvmlInit\nerror\tnvmlInit\tDriver Not Loaded\n").unwrap_err();
    assert_eq!(err.to_string(), "NVML error: nvmlInit: Driver Not Loaded");
}

#[test]
fn every_nvml_brand_reads_as_upstream_names_it() {
    let mut s = Scenario::builtin("single").unwrap();
    let mut seen = Vec::new();
    // nvmlBrandType_t: 0 unknown ... 16 TitanRTX, and a value newer than any table.
    for brand in 0..=17 {
        s.gpus[0].brand = brand;
        let (_dir, host) = build(&s);
        let info = probe_driver(&DriverOptions::new(host.root())).unwrap();
        let got = info.gpus[0].brand.clone().unwrap_or_default();
        assert_eq!(got, s.gpus[0].upstream_brand(), "{brand}");
        seen.push(got);
    }
    // The names CUDA images' NVIDIA_REQUIRE_CUDA lists, literally.
    assert_eq!(seen[2], "Tesla");
    assert_eq!(seen[13], "NvidiaRTX");
    assert_eq!(seen[14], "Nvidia");
    assert_eq!(seen[0], "Unknown");
    assert_eq!(seen[17], "Unknown");
}

/// Waits until no child of this process is a zombie any more (other tests' children may
/// be one for an instant).
fn no_zombie_stays(before: usize) -> bool {
    (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        zombies() <= before
    })
}

#[test]
fn every_nvml_call_hanging_or_crashing_is_an_error_naming_it() {
    for &call in nvc_driver::nvml::CALLS {
        for how in [Misbehaviour::Hang, Misbehaviour::Crash] {
            let mut s = Scenario::builtin("mig").unwrap();
            s.nvml_faults.misbehave = Some((call, how));
            let (_dir, host) = build(&s);
            let mut opts = DriverOptions::new(host.root());
            opts.nvml_timeout = Duration::from_millis(300);
            let before = zombies();
            let start = Instant::now();
            let err = probe_driver(&opts).unwrap_err();
            // nvml-wrapper's initialisation asks the driver version: nvc's nvmlInit step.
            let step = match call {
                "nvmlSystemGetDriverVersion" => "nvmlInit",
                other => other,
            };
            match how {
                Misbehaviour::Hang => assert!(
                    matches!(err, Error::NvmlTimeout { call: c, .. } if c == step),
                    "{call}: {err}"
                ),
                Misbehaviour::Crash => {
                    assert!(
                        matches!(err, Error::Nvml { call: c, .. } if c == step),
                        "{call}: {err}"
                    );
                    assert!(err.to_string().contains("killed by SIGABRT"), "{err}");
                }
            }
            assert!(start.elapsed() < Duration::from_secs(3), "{call}: {how:?}");
            assert!(
                no_zombie_stays(before),
                "{call} {how:?}: the helper was not reaped"
            );
        }
    }
}

#[test]
fn garbage_answers_are_errors_naming_the_call() {
    let probe = |s: &Scenario| {
        let (_dir, host) = build(s);
        probe_driver(&DriverOptions::new(host.root())).unwrap_err()
    };
    let call_of = |e: &Error| match e {
        Error::Nvml { call, .. } => *call,
        other => panic!("{other}"),
    };

    let mut s = Scenario::builtin("single").unwrap();
    s.nvml_faults.garbage_names = true;
    let err = probe(&s);
    assert_eq!(call_of(&err), "nvmlDeviceGetName", "{err}");

    let mut s = Scenario::builtin("dgx").unwrap();
    s.gpus[3].minor = 300;
    let err = probe(&s);
    assert_eq!(call_of(&err), "nvmlDeviceGetMinorNumber", "{err}");
    assert!(
        err.to_string()
            .contains("minor 300 of GPU 3 is out of range"),
        "{err}"
    );

    let mut s = Scenario::builtin("dgx").unwrap();
    s.gpus[5].uuid = s.gpus[2].uuid.to_lowercase();
    let err = probe(&s);
    assert_eq!(call_of(&err), "nvmlDeviceGetUUID", "{err}");
    assert!(err.to_string().contains("the UUID of two devices"), "{err}");

    let mut s = Scenario::builtin("mig").unwrap();
    let migs = &mut s.gpus[0].mig_devices;
    migs[1].uuid = migs[0].uuid.clone();
    let err = probe(&s);
    assert_eq!(call_of(&err), "nvmlDeviceGetUUID", "{err}");

    let mut s = Scenario::builtin("mig").unwrap();
    s.nvml_faults.max_mig_devices = Some(1_000_000);
    let err = probe(&s);
    assert_eq!(call_of(&err), "nvmlDeviceGetMaxMigDeviceCount", "{err}");
    assert!(
        err.to_string().contains("more than a GPU can hold"),
        "{err}"
    );
}

/// Discovery runs while the NVML helper works, for the version `/proc/driver/nvidia/version`
/// names; NVML's answer decides: where the file names another version, or is missing, the
/// files found are still those of NVML's version.
#[test]
fn discovery_follows_nvmls_version_whatever_proc_says() {
    let s = Scenario::builtin("dgx").unwrap();
    let (_dir, host) = build(&s);
    let want = probe_driver(&DriverOptions::new(host.root())).unwrap();
    assert!(!want.files.libraries.is_empty());
    let version = host.root().join("proc/driver/nvidia/version");
    let text = std::fs::read_to_string(&version).unwrap();
    for replaced in [Some(text.replace("550.54.14", "999.99.99")), None] {
        std::fs::remove_file(&version).unwrap();
        if let Some(text) = &replaced {
            std::fs::write(&version, text).unwrap();
        }
        let got = probe_driver(&DriverOptions::new(host.root())).unwrap();
        assert_eq!(got.nvrm_version, "550.54.14");
        // Everything found for the driver's version (the copied /proc files aside).
        let found = |f: &nvc_driver::DriverFiles| {
            (
                f.libraries.clone(),
                f.libraries32.clone(),
                f.firmwares.clone(),
                f.warnings.clone(),
            )
        };
        assert_eq!(found(&got.files), found(&want.files), "/proc: {replaced:?}");
    }
}

/// `--nvml-timeout=1e19` (or `NVC_NVML_TIMEOUT`, or a C caller's value) is a duration the
/// clock cannot add: it panicked computing the deadline; it means "no practical limit".
#[test]
fn a_timeout_beyond_the_clock_is_no_limit_not_a_panic() {
    let s = Scenario::builtin("single").unwrap();
    let (_dir, host) = build(&s);
    for timeout in [Duration::from_secs_f64(1e19), Duration::MAX] {
        let mut opts = DriverOptions::new(host.root());
        opts.nvml_timeout = timeout;
        let info = probe_driver(&opts).unwrap();
        assert_eq!(info.gpus.len(), 1);
    }
}

/// `files: false` (`info`'s probe): the same versions and GPUs as the whole probe, with and
/// without NVML, and nothing of the driver's files.
#[test]
fn a_probe_without_files_gives_the_same_versions_and_gpus() {
    for name in BUILTIN {
        let s = Scenario::builtin(name).unwrap();
        let (_dir, host) = build(&s);
        for nvml in [true, false] {
            let mut opts = DriverOptions::new(host.root());
            opts.nvml = nvml;
            let Ok(whole) = probe_driver(&opts) else {
                // --no-nvml refuses MIG hosts; so must the probe without files.
                opts.files = false;
                assert!(probe_driver(&opts).is_err(), "{name}");
                continue;
            };
            opts.files = false;
            let facts = probe_driver(&opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(facts.nvrm_version, whole.nvrm_version, "{name}");
            assert_eq!(facts.cuda_version, whole.cuda_version, "{name}");
            assert_eq!(facts.nvml_library, whole.nvml_library, "{name}");
            assert_eq!(facts.from_nvml, whole.from_nvml, "{name}");
            assert_eq!(facts.files, nvc_driver::DriverFiles::default(), "{name}");
            let strip = |g: &nvc_driver::Gpu| {
                let mut g = g.clone();
                g.proc_dir = Default::default();
                for m in &mut g.mig_devices {
                    m.access_minors = (None, None);
                }
                g
            };
            let want: Vec<_> = whole.gpus.iter().map(strip).collect();
            assert_eq!(facts.gpus, want, "{name}");
        }
    }
}
