//! `nvidia-container-cli`: a drop-in for libnvidia-container's CLI, built on nvc.
//!
//! ```text
//! nvidia-container-cli [--root=PATH] [--ldcache=FILE] [--nvml-timeout=SECONDS] info [--csv]
//! nvidia-container-cli [...] list [--device=ID]... [--libraries] [--binaries] [--ipcs]
//!                                 [--firmwares] [--compat32] [--no-persistenced] [--no-fabricmanager]
//! ```
//!
//! Output and exit codes follow upstream's. Neither command needs root. NVML runs in a helper
//! process, chrooted into the root and running as `--user` (65534:65534 by default) when
//! started as root. `configure`
//! mounts the driver into a container (`--pid=PID ROOTFS`, with `--no-cgroups` until device
//! cgroups land) or prints the plan (`--dry-run`); `--load-kmods` and the container's ldconfig
//! are not done yet and say so. NVML gets `--nvml-timeout` (or `NVC_NVML_TIMEOUT`) seconds,
//! 10 by default; upstream waits 10 s per call and cannot be told otherwise.

mod args;

use std::io::{self, Write};
use std::process::ExitCode;

use args::{Command, Global};
use nvc_driver::{DriverInfo, DriverOptions, Error, probe_driver};
use nvc_examples::render::{self, List};

const USAGE: &str = "Usage: nvidia-container-cli [OPTION...] COMMAND [ARG...]

Commands:
  info        Report information about the driver and devices
  list        List driver components
  configure   Mount the driver into a container (or print the plan, --dry-run)

Options:
  -l, --ldcache=FILE           Path to the system's DSO cache
  -r, --root=PATH              Path to the driver root directory
  -u, --user[=UID[:GID]]       User and group to use for privilege separation
      --nvml-timeout=SECONDS   How long NVML may take (default 10, or NVC_NVML_TIMEOUT)
  -V, --version                Print program version

Configure options (configure [OPTION...] ROOTFS):
  -p, --pid=PID                Container process (absent: standalone, the parent)
  -d, --device=ID              Devices to expose (all, none, indices, UUIDs, bus ids)
  -r, --require=EXPR           Requirement to check (NVIDIA_REQUIRE_* syntax)
  -c -u -v -g -D -n            --compute --utility --video --graphics --display --ngx
      --compat32 --no-devbind --no-cgroups --imex-channel=LIST
  -l, --ldconfig=PATH          The container's ldconfig, or @PATH for the host's
      --no-pivot               Move the rootfs instead of pivot_root for ldconfig
      --no-ldconfig            Do not refresh the container's linker cache
      --cuda-compat-mode=MODE  mount (default), ldconfig or disabled (--no-cntlibs)
      --dry-run                Print the plan, change nothing
";

fn probe(global: &Global, list: Option<&List>) -> Result<DriverInfo, String> {
    let mut opts = DriverOptions::new(&global.root);
    if let Some(ldcache) = &global.ldcache {
        opts.discover.ldcache = ldcache.into();
    }
    if let Some(t) = global.nvml_timeout {
        opts.nvml_timeout = t;
    }
    opts.nvml_identity = global
        .user
        .map(|(uid, gid)| nvc_driver::nvml::Identity { uid, gid });
    if let Some(path) = std::env::var_os("PATH") {
        opts.discover.path = path;
    }
    opts.discover.mps_pipe_dir = std::env::var_os("CUDA_MPS_PIPE_DIRECTORY").map(Into::into);
    if let Some(l) = list {
        opts.discover.persistenced = !l.no_persistenced;
        opts.discover.fabricmanager = !l.no_fabricmanager;
    }
    probe_driver(&opts).map_err(|e| match e {
        Error::Nvml { .. } | Error::NvmlTimeout { .. } => format!("initialization error: {e}"),
        other => format!("detection error: {}", nvc_examples::error_chain(&other)),
    })
}

/// `configure`: builds the plan and prints it (`--dry-run`), or configures the container:
/// mounts, device cgroup, sandboxed ldconfig, undone as a whole when a step fails.
fn configure(global: &Global, c: &args::Configure, out: &mut dyn Write) -> Result<(), String> {
    use nvc_mount::{Configuration, ConfigureOptions, Container, Ldconfig, PlanOptions};
    let rootfs = c.rootfs.as_deref().ok_or("input error: missing ROOTFS")?;
    let rootfs = std::path::Path::new(rootfs);
    if !rootfs.is_absolute() || rootfs == std::path::Path::new("/") {
        return Err(format!(
            "input error: invalid rootfs directory: {}",
            rootfs.display()
        ));
    }
    let info = probe(global, None)?;
    let selection = render::select(&info, &c.devices)?;
    for expr in &c.requires {
        nvc_driver::Requirement::parse(expr)
            .and_then(|req| info.check_requirement(&req, &selection))
            .map_err(|e| format!("requirement error: {e}"))?;
    }
    let opts = ConfigureOptions {
        plan: PlanOptions {
            capabilities: c.capabilities.clone(),
            gpus: selection.gpus,
            migs: selection.migs,
            compat32: c.compat32,
            no_devbind: c.no_devbind,
            no_cgroups: c.no_cgroups,
            imex_channels: c.imex_channels.clone(),
            compat_libs: Vec::new(),
        },
        cuda_compat: c.compat_mode,
        ldconfig: c.ldconfig.as_deref().map(Ldconfig::parse),
        no_ldconfig: c.no_ldconfig,
        no_pivot: c.no_pivot,
    };
    let container_err = |e: nvc_mount::Error| match e {
        nvc_mount::Error::Container { .. } => e.to_string(),
        other => format!("container error: {}", nvc_examples::error_chain(&other)),
    };
    let config = Configuration::prepare(std::path::Path::new(&global.root), &info, rootfs, &opts)
        .map_err(|e| match e {
        nvc_mount::Error::Device { .. } => e.to_string(),
        other => container_err(other),
    })?;
    if c.dry_run {
        return write!(out, "{config}").map_err(|e| e.to_string());
    }
    let container = match c.pid {
        Some(pid) => Container::from_pid(pid, rootfs),
        None => Container::standalone(rootfs),
    }
    .map_err(container_err)?;
    let done = config.apply(&container).map_err(|e| match e {
        nvc_mount::Error::NoProcess { .. } | nvc_mount::Error::Namespace { .. } => container_err(e),
        other => other.to_string(),
    })?;
    for note in done.notes() {
        eprintln!("nvidia-container-cli: warning: {note}");
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let (global, command) = args::parse(std::env::args_os().skip(1))
        .map_err(|e| format!("{e}\nTry `nvidia-container-cli --help' for more information."))?;
    if global.load_kmods {
        return Err("--load-kmods is not supported yet".into());
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match &command {
        Command::Help => write!(out, "{USAGE}").map_err(|e| e.to_string())?,
        Command::Version => writeln!(
            out,
            "cli-version: {}\nlib-version: {} (nvc)",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_VERSION")
        )
        .map_err(|e| e.to_string())?,
        Command::Info { csv } => {
            render::info(&probe(&global, None)?, *csv, &mut out).map_err(|e| e.to_string())?
        }
        Command::List(l) => render::list(&probe(&global, Some(l))?, l, &mut out)?,
        Command::Configure(c) => configure(&global, c, &mut out)?,
    }
    out.flush().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("nvidia-container-cli: {msg}");
            ExitCode::FAILURE
        }
    }
}
