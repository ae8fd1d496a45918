//! `nvc-demo`: nvc's main job end to end — driver discovery, then `configure` of a container —
//! on this machine's NVIDIA driver when it has one, otherwise on a simulated host built on the
//! spot.
//!
//! ```text
//! nvc-demo [--scenario NAME] [--keep]
//! ```
//!
//! Without a driver (no `libnvidia-ml.so.1` under `/`), it lays out scenario NAME (default
//! `dgx`; see `nvc-sim list`) in a temporary directory with nvc-testkit — real ELF libraries,
//! a cache written by glibc's `ldconfig`, a fake NVML — and runs the same code paths as
//! `nvidia-container-cli --root DIR info` and `list`. `--keep` leaves the directory.
//!
//! Then it plans `configure --device=all --compute --utility` for an empty image (the dry run)
//! and, as root on the simulated host, carries it out on a paused container (a process in its
//! own mount namespace, as a runtime leaves it before `pivot_root`): mounts, then the host's
//! `ldconfig` in its sandbox writing the image's linker cache. Device cgroups are left alone
//! there, since the demo container lives in the demo's own cgroup.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use nvc_core::Capability::{Compute, Utility};
use nvc_core::{Context, Devices, Driver, ErrorKind, Ldconfig, ListOptions};
use nvc_examples::{error_chain, render};
use nvc_testkit::{BUILTIN, Host, Scenario};

fn run() -> Result<(), String> {
    let mut scenario = "dgx".to_owned();
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scenario" => scenario = args.next().ok_or("--scenario needs a NAME")?,
            "--keep" => keep = true,
            _ => {
                return Err(format!(
                    "usage: nvc-demo [--scenario NAME] [--keep] (scenarios: {})",
                    BUILTIN.join(", ")
                ));
            }
        }
    }
    let chain = |e: nvc_core::Error| error_chain(&e);
    let here = Context::new().map_err(chain)?.driver();
    let real = match &here {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::NoDriver => false,
        Err(e) => return Err(error_chain(e)),
    };
    let (root, _host, _dir): (PathBuf, Option<Host>, Option<tempfile::TempDir>) = if real {
        println!("== this machine's NVIDIA driver ==");
        ("/".into(), None, None)
    } else {
        let s = Scenario::builtin(&scenario).ok_or_else(|| {
            format!(
                "unknown scenario {scenario:?} (built-in: {})",
                BUILTIN.join(", ")
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("nvc-demo-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let host = Host::build(&s, dir.path()).map_err(|e| e.to_string())?;
        println!(
            "== no NVIDIA driver here: simulated host `{scenario}` ({} GPUs) in {} ==",
            s.gpus.len(),
            dir.path().display()
        );
        let root = dir.path().to_path_buf();
        if keep {
            let kept = dir.keep();
            println!("(kept: {})", kept.display());
            (root, Some(host), None)
        } else {
            (root, Some(host), Some(dir))
        }
    };
    let driver = match here {
        Ok(driver) => driver,
        Err(_) => Context::builder()
            .root(&root)
            .build()
            .and_then(Context::driver)
            .map_err(chain)?,
    };
    let info = driver.info();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let w = |e: io::Error| e.to_string();
    writeln!(
        out,
        "\n$ nvidia-container-cli --root {} info",
        root.display()
    )
    .map_err(w)?;
    render::info(info, false, &mut out).map_err(w)?;
    writeln!(
        out,
        "\n$ nvidia-container-cli --root {} list",
        root.display()
    )
    .map_err(w)?;
    let paths = driver.list(&ListOptions::everything()).map_err(chain)?;
    render::list(&paths, &mut out).map_err(w)?;
    for warning in &info.files.warnings {
        eprintln!("warning: {warning}");
    }
    configure(&driver, real, &mut out)
}

/// Plans (and, as root on a simulated host, performs) `configure` for an empty image.
fn configure(driver: &Driver, real: bool, out: &mut dyn Write) -> Result<(), String> {
    let w = |e: io::Error| e.to_string();
    let chain = |e: nvc_core::Error| error_chain(&e);
    let image = tempfile::Builder::new()
        .prefix("nvc-demo-rootfs-")
        .tempdir()
        .map_err(w)?;
    let libs = format!("usr/lib/{}", nvc_ldcache::Platform::host().multiarch);
    nvc_testkit::debian_image(image.path(), &["usr/bin", &libs], false).map_err(w)?;
    let as_root = nix::unistd::geteuid().is_root() && !real;
    fn setup(s: nvc_core::ContainerSetup<'_>, as_root: bool) -> nvc_core::ContainerSetup<'_> {
        s.devices(Devices::all())
            .capabilities(&[Compute, Utility])
            .device_cgroup(!as_root)
            .ldconfig(Ldconfig::Host("/sbin/ldconfig".into()))
    }
    let config = setup(driver.image(image.path()).map_err(chain)?, as_root)
        .plan()
        .map_err(chain)?;
    let root = driver.root();
    writeln!(
        out,
        "\n$ nvidia-container-cli --root {} configure --dry-run --device=all --compute --utility --ldconfig=@/sbin/ldconfig {}",
        root.display(),
        image.path().display()
    )
    .map_err(w)?;
    write!(out, "{config}").map_err(w)?;
    if !as_root {
        writeln!(
            out,
            "\n(configure itself needs root and runs on the simulated host only; run as root to see it)"
        )
        .map_err(w)?;
        return Ok(());
    }
    let Some(paused) = nvc_testkit::PausedContainer::start() else {
        return Ok(());
    };
    let done = setup(
        driver
            .container(paused.pid(), image.path())
            .map_err(chain)?,
        as_root,
    )
    .mount()
    .map_err(chain)?;
    writeln!(
        out,
        "\n== configured container {} (pid {}, device cgroups left alone): {} mounts, {} paths created ==",
        image.path().display(),
        paused.pid(),
        done.mounts().len(),
        done.created().len()
    )
    .map_err(w)?;
    for line in paused
        .mountinfo()
        .lines()
        .filter(|l| l.contains(image.path().to_str().unwrap_or("?")))
        .take(6)
    {
        let f: Vec<&str> = line.split(' ').collect();
        writeln!(
            out,
            "  {} {}",
            f.get(4).unwrap_or(&""),
            f.get(5).unwrap_or(&"")
        )
        .map_err(w)?;
    }
    writeln!(out, "  ...").map_err(w)?;
    if done.ldconfig_output().is_some() {
        let cache = std::fs::read(image.path().join("etc/ld.so.cache")).map_err(w)?;
        let cache = nvc_ldcache::LdCache::parse(&cache).map_err(|e| e.to_string())?;
        let entries: Vec<_> = cache.entries().flatten().collect();
        writeln!(
            out,
            "== the image's ld.so.cache, written by ldconfig in its sandbox: {} entries, among them ==",
            entries.len()
        )
        .map_err(w)?;
        for e in entries.iter().filter(|e| {
            let name = e.soname().to_string_lossy();
            name == "libcuda.so.1" || name == "libnvidia-ml.so.1"
        }) {
            writeln!(
                out,
                "  {} => {}",
                e.soname().to_string_lossy(),
                e.path().display()
            )
            .map_err(w)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("nvc-demo: {msg}");
            ExitCode::FAILURE
        }
    }
}
