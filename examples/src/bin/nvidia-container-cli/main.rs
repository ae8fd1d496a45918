//! `nvidia-container-cli`: a drop-in for libnvidia-container's CLI, built on nvc-core.
//!
//! ```text
//! nvidia-container-cli [--root=PATH] [--ldcache=FILE] [--user[=UID[:GID]]]
//!                      [--nvml-timeout=SECONDS] [--no-nvml] COMMAND
//!   info [--csv]
//!   list [--device=ID]... [--libraries] [--binaries] [--ipcs] [--firmwares] [--compat32]
//!        [--mig-config=all] [--mig-monitor=all] [--imex-channel=LIST]
//!        [--no-persistenced] [--no-fabricmanager]
//!   configure [--pid=PID] [--device=ID]... [--require=EXPR]... [-c -u -v -g -D -n]
//!             [--mig-config=all] [--mig-monitor=all] [--imex-channel=LIST]
//!             [--ldconfig=[@]PATH|builtin] [--no-ldconfig] [--no-cgroups] [--no-devbind]
//!             [--cuda-compat-mode=MODE] [--dry-run] ROOTFS
//!   attach --pid=PID [configure's options] (no ROOTFS)
//!   detach --pid=PID [--device=ID]... [--no-cgroups] [--no-devbind]
//! ```
//!
//! Output, messages and exit codes follow upstream's. `info` and `list` need no root. NVML
//! runs in a helper process, chrooted into the root and running as `--user` (65534:65534 by
//! default) when started as root, for at most `--nvml-timeout` (or `NVC_NVML_TIMEOUT`)
//! seconds, 10 by default (upstream waits 10 s per call and cannot be told otherwise).
//! `configure` mounts the driver into a container (`--pid`; without it, upstream's
//! standalone mode), grants its device cgroup and runs the container's `ldconfig` in a
//! sandbox, or prints the plan (`--dry-run`). `--load-kmods` loads the kernel modules with
//! the root's `modprobe` and makes missing device nodes first, as nvidia-modprobe does.
//! `--no-nvml` (nvc's own) skips NVML: the GPUs come from `/proc/driver/nvidia`, enough to
//! configure by index, UUID or bus id; `cuda`/`arch`/`brand` requirements and MIG devices
//! then fail, saying they need NVML.
//!
//! `attach` and `detach` (nvc's own) give GPUs to a running container and take them back:
//! its root is its process's (`/proc/PID/root`), no rootfs path is needed. `attach` does what
//! `configure` does where the container lacks it (a second attach adds nothing); `detach`
//! denies the GPUs' device rules, then unmounts their nodes (with the last GPU, the
//! driver-wide nodes too); the driver's files stay.

mod args;

use std::io::{self, Write};
use std::process::ExitCode;

use args::{Command, Global};
use nvc_core::{Context, Driver, Ldconfig};
use nvc_examples::render;

const USAGE: &str = "Usage: nvidia-container-cli [OPTION...] COMMAND [ARG...]

Commands:
  info        Report information about the driver and devices
  list        List driver components
  configure   Mount the driver into a container (or print the plan, --dry-run)
  attach      Give GPUs to a running container (configure --pid=PID, no ROOTFS)
  detach      Take GPUs back from a running container (--pid=PID --device=ID)

Options:
  -l, --ldcache=FILE           Path to the system's DSO cache
  -r, --root=PATH              Path to the driver root directory
  -u, --user[=UID[:GID]]       User and group to use for privilege separation
  -k, --load-kmods             Load kernel modules and make missing device nodes
      --no-create-imex-channels  With --load-kmods, make no IMEX channel nodes
      --nvml-timeout=SECONDS   How long NVML may take (default 10, or NVC_NVML_TIMEOUT)
      --no-nvml                GPUs from /proc/driver/nvidia: no NVML start-up cost
  -n, --no-pivot               Move the rootfs instead of pivot_root for ldconfig
  -d, --debug=FILE             Accepted for compatibility (errors name what failed)
  -V, --version                Print program version

Configure options (configure [OPTION...] ROOTFS, attach --pid=PID [OPTION...]):
  -p, --pid=PID                Container process (configure without it: standalone, the parent)
  -d, --device=ID              Devices to expose (all, none, indices, UUIDs, bus ids)
  -r, --require=EXPR           Requirement to check (NVIDIA_REQUIRE_* syntax)
  -c -u -v -g -D -n            --compute --utility --video --graphics --display --ngx
      --compat32 --no-devbind --no-cgroups --imex-channel=LIST
      --mig-config=all --mig-monitor=all  MIG configuration / monitoring capabilities
  -l, --ldconfig=PATH          The container's ldconfig, @PATH for the host's, builtin
                               (default: what the container's writes, in process where proven)
      --no-pivot               Move the rootfs instead of pivot_root for ldconfig
      --no-ldconfig            Do not refresh the container's linker cache
      --cuda-compat-mode=MODE  mount (default), ldconfig or disabled (--no-cntlibs)
      --dry-run                Print the plan, change nothing
";

/// The driver, probed with the global options and the environment (`PATH`,
/// `CUDA_MPS_PIPE_DIRECTORY`); `sockets` = (persistenced, fabric manager); `imex` the IMEX
/// channels whose nodes `--load-kmods` makes.
fn probe(global: &Global, sockets: (bool, bool), imex: &[u32]) -> Result<Driver, nvc_core::Error> {
    context(global, sockets, imex)?.driver()
}

/// The context of [`probe`], before its probe.
fn context(
    global: &Global,
    sockets: (bool, bool),
    imex: &[u32],
) -> Result<Context, nvc_core::Error> {
    let mut b = Context::builder()
        .root(&global.root)
        .persistenced(sockets.0)
        .fabricmanager(sockets.1);
    if let Some(ldcache) = &global.ldcache {
        b = b.ldcache(ldcache);
    }
    if let Some(t) = global.nvml_timeout {
        b = b.nvml_timeout(t);
    }
    if let Some((uid, gid)) = global.user {
        b = b.nvml_user(uid, gid);
    }
    if let Some(path) = std::env::var_os("PATH") {
        b = b.search_path(path);
    }
    if let Some(dir) = std::env::var_os("CUDA_MPS_PIPE_DIRECTORY") {
        b = b.mps_pipe_dir(dir);
    }
    if global.load_kmods {
        b = b.load_kmods(imex, !global.no_create_imex_channels);
    }
    b.nvml(!global.no_nvml).build()
}

/// `configure` (and `attach`, of a running container): prints the plan (`--dry-run`), or
/// configures the container: mounts, device cgroup, sandboxed ldconfig, undone as a whole
/// when a step fails.
fn configure(
    global: &Global,
    c: &args::Configure,
    attach: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let chain = |e: nvc_core::Error| nvc_examples::error_chain(&e);
    let driver = probe(global, (true, true), &c.imex_channels).map_err(chain)?;
    let setup = match (c.pid, &c.rootfs) {
        // attach (its parser requires --pid): the running container's own root.
        (Some(pid), _) if attach => driver.running(pid),
        (_, None) => return Err("input error: missing ROOTFS".into()),
        (_, Some(rootfs)) if c.dry_run => driver.image(rootfs),
        (Some(pid), Some(rootfs)) => driver.container(pid, rootfs),
        (None, Some(rootfs)) => driver.standalone(rootfs),
    }
    .map_err(chain)?;
    let mut setup = c
        .requires
        .iter()
        .fold(setup, |s, r| s.require(r.clone()))
        .devices(c.devices.clone())
        .capabilities(&c.capabilities)
        .compat32(c.compat32)
        .no_devbind(c.no_devbind)
        .device_cgroup(!c.no_cgroups)
        .imex_channels(&c.imex_channels)
        .mig_config(c.mig_config.as_deref())
        .mig_monitor(c.mig_monitor.as_deref())
        .no_pivot(c.no_pivot || global.no_pivot)
        .cuda_compat(c.compat_mode);
    // Upstream's default is the image's own ldconfig (sandboxed, see SECURITY.md).
    setup = match (&c.ldconfig, c.no_ldconfig) {
        (_, true) => setup.ldconfig(Ldconfig::Skip),
        (Some(l), false) => setup.ldconfig(l.clone()),
        (None, false) => setup.image_ldconfig(),
    };
    if c.dry_run {
        let plan = setup.plan().map_err(chain)?;
        return write!(out, "{plan}").map_err(|e| e.to_string());
    }
    let done = setup.mount().map_err(chain)?;
    nvc_examples::warn("nvidia-container-cli", &done);
    Ok(())
}

fn run() -> Result<(), String> {
    let (global, command) = args::parse(std::env::args_os().skip(1))
        .map_err(|e| format!("{e}\nTry `nvidia-container-cli --help' for more information."))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let chain = |e: nvc_core::Error| nvc_examples::error_chain(&e);
    let write = |e: io::Error| e.to_string();
    match &command {
        Command::Help => write!(out, "{USAGE}").map_err(write)?,
        Command::Version => writeln!(
            out,
            "cli-version: {}\nlib-version: {} (nvc)",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_VERSION")
        )
        .map_err(write)?,
        Command::Info { csv } => {
            // The versions and GPUs alone: info prints nothing of the driver's files.
            let info = context(&global, (true, true), &[])
                .and_then(Context::driver_info)
                .map_err(chain)?;
            render::info(&info, *csv, &mut out).map_err(write)?;
        }
        Command::List(l) => {
            let sockets = (!l.no_persistenced, !l.no_fabricmanager);
            let driver = probe(&global, sockets, &l.options.imex_channels).map_err(chain)?;
            let paths = driver.list(&l.options).map_err(chain)?;
            render::list(&paths, &mut out).map_err(write)?;
        }
        Command::Configure(c) => configure(&global, c, false, &mut out)?,
        Command::Attach(c) => configure(&global, c, true, &mut out)?,
        Command::Detach(c) => {
            let driver = probe(&global, (true, true), &[]).map_err(chain)?;
            let pid = c
                .pid
                .ok_or("input error: detach needs the container's --pid=PID")?;
            driver
                .running(pid)
                .map(|s| {
                    s.devices(c.devices.clone())
                        .device_cgroup(!c.no_cgroups)
                        .no_devbind(c.no_devbind)
                })
                .and_then(nvc_core::ContainerSetup::detach)
                .map_err(chain)?;
        }
    }
    out.flush().map_err(write)
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
