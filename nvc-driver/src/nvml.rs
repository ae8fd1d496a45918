//! GPU facts from NVML (through `nvml-wrapper`), snapshot into owned data; no NVML type
//! leaves this module.
//!
//! Every probe runs in a helper process, as upstream's `nvc:[driver]` service: forked,
//! chrooted into the driver root (when the caller is root and the root is not `/`), with
//! its privileges dropped (to 65534:65534 by default for root callers, as upstream), so that a
//! driver root's libraries never load into the caller. The caller waits at most the
//! configured timeout — NVML can block for a long time (many GPUs without persistence mode,
//! a wedged GPU) — then kills and reaps the helper; the error names the NVML call it was in.
//! The helper reports over a pipe in a line format ([`encode`], [`decode`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use crate::{Error, Gpu, MigDevice, PciBusId, host_path};

/// The default NVML timeout (upstream's per-call RPC timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that overrides the NVML timeout, in seconds.
pub const TIMEOUT_ENV: &str = "NVC_NVML_TIMEOUT";

/// What NVML says about the driver and its GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlInfo {
    /// `nvmlSystemGetDriverVersion`.
    pub nvrm_version: String,
    /// `nvmlSystemGetCudaDriverVersion` as `major.minor`.
    pub cuda_version: Option<String>,
    /// The GPUs, in NVML index order.
    pub gpus: Vec<Gpu>,
}

/// Reports the NVML call a probe is about to make.
type Progress<'a> = dyn FnMut(&'static str) + 'a;

/// Every NVML call the probe makes, in the order it first makes them on a host with MIG
/// devices (errors name one of these; names read back from the helper stay `'static`).
pub const CALLS: &[&str] = &[
    "nvmlInit",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetMinorNumber",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetName",
    "nvmlDeviceGetBrand",
    "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount",
    "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetComputeInstanceId",
];

fn static_call(name: &str) -> &'static str {
    CALLS
        .iter()
        .find(|c| **c == name)
        .copied()
        .unwrap_or("NVML")
}

fn nvml_err(call: &'static str) -> impl Fn(NvmlError) -> Error {
    move |e| {
        let mut message = e.to_string();
        if matches!(e, NvmlError::DriverNotLoaded) {
            // NVIDIA's own library on a host whose kernel module is not loaded (a driver
            // root prepared before the module, a host without a GPU): what still works.
            message.push_str(NOT_LOADED_HINT);
        }
        Error::Nvml { call, message }
    }
}

/// Added to NVML's "driver is not loaded": probing without NVML reads the GPUs from the
/// driver's `/proc` files instead, and finds the driver's files without it.
const NOT_LOADED_HINT: &str = " (the NVIDIA kernel module is not loaded here; \
     probing without NVML (the CLI's --no-nvml) needs no module for the driver's files)";

/// Upstream's brand names, by `nvmlBrandType_t` value (libnvidia-container 1.17
/// `nvc_info.c`); what `brand=...` requirements compare with.
fn brand_name(brand: u32) -> &'static str {
    match brand {
        1 => "Quadro",
        2 => "Tesla",
        3 => "NVS",
        4 => "GRID",
        5 => "GeForce",
        6 => "TITAN",
        7 => "VApps",
        8 => "VPC",
        9 => "VCS",
        10 => "VWS",
        11 => "CloudGaming",
        12 => "QuadroRTX",
        13 => "NvidiaRTX",
        14 => "Nvidia",
        15 => "GeForceRTX",
        16 => "TitanRTX",
        _ => "Unknown",
    }
}

/// Who the helper runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Upstream's default identity of the NVML service for root callers (the overflow ids).
pub const OVERFLOW: Identity = Identity {
    uid: 65534,
    gid: 65534,
};

/// Reads versions and GPUs from `library` (root-relative) of the driver at `root` in a helper
/// process, giving up after `timeout`: [`start`], then [`Pending::wait`].
///
/// As root, the helper chroots into `root` (unless it is `/`) and drops to `identity`
/// ([`OVERFLOW`] when `None`); otherwise it keeps the caller's identity and loads the library
/// through the root's path.
///
/// # Errors
///
/// [`Error::Nvml`] naming the failed call and NVML's message (a library that cannot be
/// loaded or a helper that cannot confine itself fails `nvmlInit`), or
/// [`Error::NvmlTimeout`] naming the call that did not return in time.
pub fn probe(
    root: &Path,
    library: &Path,
    identity: Option<Identity>,
    launch: Launch<'_>,
    timeout: Duration,
) -> Result<NvmlInfo, Error> {
    start(root, library, identity, launch, timeout)?.wait()
}

/// How [`start`] makes the helper process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch<'a> {
    /// Fork the caller (the default): the child runs the probe, no program is executed.
    Fork,
    /// Execute this program — a build of [`helper_main`], such as the workspace's `nvc-nvml`
    /// — with an empty environment, `/` as its working directory and standard input from
    /// `/dev/null`. For callers that cannot load NVML's shared library themselves: a
    /// statically linked program (the release build of `nvc-hook`) has no dynamic loader.
    Exec(&'a Path),
}

/// The NVML helper of [`probe`], started: the caller can do other work (discovery) while it
/// runs. Dropped before [`Pending::wait`], the helper is killed and reaped.
///
/// No thread reads the helper's pipe meanwhile: its progress lines wait in the pipe (one
/// line per NVML call, a few KiB for a large host) until [`Pending::wait`] reads them, so
/// the helper's writes wake nobody while the caller works.
#[derive(Debug)]
pub struct Pending {
    child: nvc_sys::Forked,
    /// The read end of the helper's pipe.
    output: std::fs::File,
    deadline: Instant,
    timeout: Duration,
}

/// Starts [`probe`]'s helper; `timeout` counts from now.
///
/// # Errors
///
/// [`Error::Nvml`] (call `nvmlInit`) when the helper cannot be started.
#[allow(unsafe_code)]
pub fn start(
    root: &Path,
    library: &Path,
    identity: Option<Identity>,
    launch: Launch<'_>,
    timeout: Duration,
) -> Result<Pending, Error> {
    let spawn_err = |e: nvc_sys::Error| Error::Nvml {
        call: "nvmlInit",
        message: match launch {
            Launch::Fork => format!("cannot start the NVML helper: {e}"),
            Launch::Exec(program) => {
                format!("cannot start the NVML helper {}: {e}", program.display())
            }
        },
    };
    let deadline = nvc_sys::deadline(timeout);
    let mut child = match launch {
        // SAFETY: the child only chroots, changes its ids, loads NVML and writes to its
        // pipe: system calls, allocation, `dlopen` and file I/O, which glibc keeps usable
        // after fork.
        Launch::Fork => unsafe {
            nvc_sys::fork_with_pipe(|out| helper(root, library, identity, out))
        },
        Launch::Exec(program) => {
            let identity =
                identity.map_or_else(|| "-".to_owned(), |i| format!("{}:{}", i.uid, i.gid));
            nvc_sys::Forked::spawn(
                std::process::Command::new(program)
                    .arg(root)
                    .arg(library)
                    .arg(identity)
                    .env_clear()
                    .current_dir("/")
                    .stdin(std::process::Stdio::null()),
            )
        }
    }
    .map_err(spawn_err)?;
    let Some(output) = child.take_output() else {
        return Err(spawn_err(nvc_sys::Error::Syscall {
            call: "pipe2",
            errno: nix::errno::Errno::EBADF,
        }));
    };
    Ok(Pending {
        child,
        output,
        deadline,
        timeout,
    })
}

/// How reading the helper's pipe ended.
enum Drained {
    /// The write end was closed: the report is whole.
    Eof,
    /// Nothing more came before the time given.
    Idle,
}

/// Reads what `pipe` holds into `report` until its write end is closed, or until nothing
/// comes for `until` (`None`: nothing is waited for, only what the pipe holds now is read).
fn drain(pipe: &mut std::fs::File, report: &mut Vec<u8>, until: Option<Instant>) -> Drained {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut chunk = [0u8; 4096];
    loop {
        let left = until.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        });
        // Whole milliseconds, rounded up: a deadline is never polled as "now" too early.
        let ms = left.as_micros().div_ceil(1000);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(0) => return Drained::Idle,
            Err(_) => return Drained::Eof,
            Ok(_) => {}
        }
        match pipe.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => return Drained::Eof,
            Ok(n) => report.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    }
}

impl Pending {
    /// Waits for the helper (until the deadline [`start`] set) and decodes its report.
    ///
    /// # Errors
    ///
    /// As [`probe`].
    pub fn wait(mut self) -> Result<NvmlInfo, Error> {
        let mut report = Vec::new();
        let text = |r: &[u8]| String::from_utf8_lossy(r).into_owned();
        match drain(&mut self.output, &mut report, Some(self.deadline)) {
            Drained::Eof => match self.child.wait() {
                // A crash inside the library (or the helper): named by the call it was in.
                Some(nvc_sys::Ended::Signaled(signal)) => Err(Error::Nvml {
                    call: last_call(&text(&report)),
                    message: format!("the NVML helper was killed by {signal}"),
                }),
                _ => decode(&text(&report)),
            },
            Drained::Idle => {
                self.child.kill();
                // What the helper wrote before it was killed is in the pipe, even where the
                // pipe stays open (a child forked meanwhile by another thread of the caller
                // holds its write end until it exits or execs): it names the call the
                // helper was stuck in.
                drain(&mut self.output, &mut report, None);
                Err(Error::NvmlTimeout {
                    call: last_call(&text(&report)),
                    timeout: self.timeout,
                })
            }
        }
    }
}

/// The call the helper entered last, from its report so far.
fn last_call(report: &str) -> &'static str {
    report
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("call\t"))
        .map_or("nvmlInit", static_call)
}

/// The highest minor a GPU can have: 254 and 255 are `nvidia-modeset` and `nvidiactl`.
const MAX_GPU_MINOR: u32 = 253;

/// More MIG devices than a GPU can hold (7 on every part so far): a library that answers
/// more is broken, and would have the helper ask for that many handles.
const MAX_MIG_DEVICES: u32 = 64;

/// The NVML helper as a program of its own: `PROGRAM ROOT LIBRARY UID:GID|-`, what
/// [`Launch::Exec`] runs. Confines itself as the forked helper does (as root: chroot into
/// `ROOT` unless it is `/`, then drop to `UID:GID`, or [`OVERFLOW`] for `-`), loads
/// `LIBRARY` (root-relative), and writes its report to standard output. Returns the exit
/// code: 0 once a report (a failure included) is written, 2 for bad arguments.
///
/// A `main` of two lines makes the program; it must be dynamically linked, and is meant to be
/// executed by [`start`] only — with an empty environment, from a trusted host path.
pub fn helper_main(args: &[std::ffi::OsString]) -> i32 {
    let usage = || {
        eprintln!("usage: nvc-nvml ROOT LIBRARY UID:GID|-");
        2
    };
    let [root, library, identity] = args else {
        return usage();
    };
    // `-`: the default identity; `UID:GID`: that one; anything else: a usage error.
    let identity = match identity.to_str() {
        Some("-") => Some(None),
        Some(text) => text.split_once(':').and_then(|(u, g)| {
            Some(Some(Identity {
                uid: u.parse().ok()?,
                gid: g.parse().ok()?,
            }))
        }),
        None => None,
    };
    let Some(identity) = identity else {
        return usage();
    };
    let (root, library) = (Path::new(root), Path::new(library));
    if !root.is_absolute() || !library.is_absolute() {
        return usage();
    }
    helper(root, library, identity, &mut std::io::stdout().lock())
}

/// The helper's side: confine itself, probe, report. Returns the exit code.
fn helper(root: &Path, library: &Path, identity: Option<Identity>, out: &mut dyn Write) -> i32 {
    let result = confine(root, library, identity).and_then(|lib| {
        probe_now(&lib, &mut |call| {
            // One write(2) per call (`writeln!` on the unbuffered pipe makes three).
            let _ = out.write_all(format!("call\t{call}\n").as_bytes());
        })
    });
    let text = match result {
        Ok(info) => encode(&info),
        Err(Error::Nvml { call, message }) => format!("error\t{call}\t{}\n", clean(&message)),
        Err(e) => format!("error\tnvmlInit\t{}\n", clean(&e.to_string())),
    };
    let _ = out.write_all(text.as_bytes());
    0
}

/// Chroots and drops privileges where the process may; returns the library path to load.
fn confine(root: &Path, library: &Path, identity: Option<Identity>) -> Result<PathBuf, Error> {
    use nix::unistd::{Gid, Uid, chdir, chroot, geteuid, setgid, setgroups, setuid};
    let fail = |what: &str, e: nix::errno::Errno| Error::Nvml {
        call: "nvmlInit",
        message: format!("NVML helper: {what}: {e}"),
    };
    if !geteuid().is_root() {
        return Ok(host_path(root, library));
    }
    let lib = if root == Path::new("/") {
        library.to_path_buf()
    } else {
        chroot(root).map_err(|e| fail("chroot", e))?;
        chdir("/").map_err(|e| fail("chdir", e))?;
        library.to_path_buf()
    };
    let id = identity.unwrap_or(OVERFLOW);
    setgroups(&[]).map_err(|e| fail("setgroups", e))?;
    setgid(Gid::from_raw(id.gid)).map_err(|e| fail("setgid", e))?;
    setuid(Uid::from_raw(id.uid)).map_err(|e| fail("setuid", e))?;
    Ok(lib)
}

/// Keeps a field on its line.
fn clean(s: &str) -> String {
    s.replace(['\t', '\n'], " ")
}

/// The helper's report: `version`, `gpu` and `mig` lines, tab-separated.
#[must_use]
pub fn encode(info: &NvmlInfo) -> String {
    let mut out = format!(
        "version\t{}\t{}\n",
        clean(&info.nvrm_version),
        clean(info.cuda_version.as_deref().unwrap_or_default())
    );
    for g in &info.gpus {
        out.push_str(&format!(
            "gpu\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            g.index,
            g.minor,
            g.bus_id.domain,
            g.bus_id.bus,
            g.bus_id.device,
            clean(&g.uuid),
            clean(g.brand.as_deref().unwrap_or_default()),
            clean(g.architecture.as_deref().unwrap_or_default()),
            u8::from(g.mig_capable),
            clean(&g.model)
        ));
        for m in &g.mig_devices {
            out.push_str(&format!(
                "mig\t{}\t{}\t{}\t{}\n",
                m.index,
                m.gi,
                m.ci,
                clean(&m.uuid)
            ));
        }
    }
    out.push_str("end\n");
    out
}

/// Reads a helper's report back.
///
/// # Errors
///
/// The [`Error::Nvml`] the helper reported, or one saying the report is cut short or
/// malformed (a helper that crashed).
pub fn decode(text: &str) -> Result<NvmlInfo, Error> {
    let bad = |why: &str| Error::Nvml {
        call: "nvmlInit",
        message: format!("the NVML helper's report is {why}"),
    };
    let mut info = NvmlInfo {
        nvrm_version: String::new(),
        cuda_version: None,
        gpus: Vec::new(),
    };
    let mut ended = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let num = |i: usize| {
            f.get(i)
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| bad("malformed"))
        };
        let text_at = |i: usize| {
            f.get(i)
                .map(|s| (*s).to_owned())
                .ok_or_else(|| bad("malformed"))
        };
        // An empty field is a fact NVML did not give.
        let known_at = |i: usize| text_at(i).map(|s| Some(s).filter(|s| !s.is_empty()));
        match f.first().copied() {
            Some("call") => {}
            Some("error") => {
                return Err(Error::Nvml {
                    call: static_call(f.get(1).copied().unwrap_or_default()),
                    message: text_at(2)?,
                });
            }
            Some("version") => (info.nvrm_version, info.cuda_version) = (text_at(1)?, known_at(2)?),
            Some("gpu") => info.gpus.push(Gpu {
                index: num(1)?,
                minor: num(2)?,
                bus_id: PciBusId {
                    domain: num(3)?,
                    bus: u8::try_from(num(4)?).map_err(|_| bad("malformed"))?,
                    device: u8::try_from(num(5)?).map_err(|_| bad("malformed"))?,
                },
                uuid: text_at(6)?,
                brand: known_at(7)?,
                architecture: known_at(8)?,
                mig_capable: num(9)? == 1,
                model: text_at(10)?,
                mig_devices: Vec::new(),
                proc_dir: PathBuf::new(),
            }),
            Some("mig") => {
                let m = MigDevice {
                    index: num(1)?,
                    gi: num(2)?,
                    ci: num(3)?,
                    uuid: text_at(4)?,
                    access_minors: (None, None),
                };
                info.gpus
                    .last_mut()
                    .ok_or_else(|| bad("malformed"))?
                    .mig_devices
                    .push(m);
            }
            Some("end") => ended = true,
            _ => return Err(bad("malformed")),
        }
    }
    if ended {
        Ok(info)
    } else {
        Err(bad("cut short (did the helper crash?)"))
    }
}

fn probe_now(library: &Path, enter: &mut Progress<'_>) -> Result<NvmlInfo, Error> {
    enter("nvmlInit");
    let nvml = Nvml::builder()
        .lib_path(library.as_os_str())
        .init()
        .map_err(nvml_err("nvmlInit"))?;
    enter("nvmlSystemGetDriverVersion");
    let nvrm_version = nvml
        .sys_driver_version()
        .map_err(nvml_err("nvmlSystemGetDriverVersion"))?;
    enter("nvmlSystemGetCudaDriverVersion");
    let cuda = nvml
        .sys_cuda_driver_version()
        .map_err(nvml_err("nvmlSystemGetCudaDriverVersion"))?;
    let cuda_version = format!("{}.{}", cuda / 1000, (cuda % 100) / 10);
    enter("nvmlDeviceGetCount");
    let count = nvml
        .device_count()
        .map_err(nvml_err("nvmlDeviceGetCount"))?;
    let mut gpus = Vec::new();
    for index in 0..count {
        gpus.push(gpu(&nvml, index, enter)?);
    }
    // Devices are selected by UUID: two with the same one would make a selection ambiguous.
    let mut seen = std::collections::HashSet::new();
    for uuid in gpus
        .iter()
        .flat_map(|g| std::iter::once(&g.uuid).chain(g.mig_devices.iter().map(|m| &m.uuid)))
    {
        if !seen.insert(uuid.to_ascii_lowercase()) {
            return Err(Error::Nvml {
                call: "nvmlDeviceGetUUID",
                message: format!("{uuid} is the UUID of two devices"),
            });
        }
    }
    Ok(NvmlInfo {
        nvrm_version,
        cuda_version: Some(cuda_version),
        gpus,
    })
}

fn gpu(nvml: &Nvml, index: u32, enter: &mut Progress<'_>) -> Result<Gpu, Error> {
    enter("nvmlDeviceGetHandleByIndex");
    let d = nvml
        .device_by_index(index)
        .map_err(nvml_err("nvmlDeviceGetHandleByIndex"))?;
    enter("nvmlDeviceGetMinorNumber");
    let minor = d
        .minor_number()
        .map_err(nvml_err("nvmlDeviceGetMinorNumber"))?;
    if minor > MAX_GPU_MINOR {
        return Err(Error::Nvml {
            call: "nvmlDeviceGetMinorNumber",
            message: format!("minor {minor} of GPU {index} is out of range (0-{MAX_GPU_MINOR})"),
        });
    }
    enter("nvmlDeviceGetPciInfo");
    let pci = d.pci_info().map_err(nvml_err("nvmlDeviceGetPciInfo"))?;
    let byte = |v: u32, what: &'static str| {
        u8::try_from(v).map_err(|_| Error::Nvml {
            call: "nvmlDeviceGetPciInfo",
            message: format!("{what} {v} is out of range"),
        })
    };
    let bus_id = PciBusId {
        domain: pci.domain,
        bus: byte(pci.bus, "bus")?,
        device: byte(pci.device, "device")?,
    };
    enter("nvmlDeviceGetUUID");
    let uuid = d.uuid().map_err(nvml_err("nvmlDeviceGetUUID"))?;
    enter("nvmlDeviceGetName");
    let model = d.name().map_err(nvml_err("nvmlDeviceGetName"))?;
    enter("nvmlDeviceGetBrand");
    // A value newer than nvml-wrapper's enum is a brand too: upstream prints it "Unknown".
    let brand = match d.brand() {
        Ok(b) => brand_name(b.as_c()),
        Err(NvmlError::UnexpectedVariant(v)) => brand_name(v),
        Err(e) => return Err(nvml_err("nvmlDeviceGetBrand")(e)),
    }
    .to_owned();
    enter("nvmlDeviceGetCudaComputeCapability");
    let cc = d
        .cuda_compute_capability()
        .map_err(nvml_err("nvmlDeviceGetCudaComputeCapability"))?;
    enter("nvmlDeviceGetMigMode");
    let (mig_capable, mig_enabled) = match d.mig_mode() {
        Ok(m) => (true, m.current == 1 && m.pending == 1),
        Err(
            NvmlError::NotSupported
            | NvmlError::FunctionNotFound
            | NvmlError::FailedToLoadSymbol(_),
        ) => (false, false),
        Err(e) => return Err(nvml_err("nvmlDeviceGetMigMode")(e)),
    };
    let mut mig_devices = Vec::new();
    if mig_enabled {
        enter("nvmlDeviceGetMaxMigDeviceCount");
        let max = d
            .mig_device_count()
            .map_err(nvml_err("nvmlDeviceGetMaxMigDeviceCount"))?;
        if max > MAX_MIG_DEVICES {
            return Err(Error::Nvml {
                call: "nvmlDeviceGetMaxMigDeviceCount",
                message: format!(
                    "{max} MIG devices on GPU {index} is more than a GPU can hold ({MAX_MIG_DEVICES})"
                ),
            });
        }
        for mig_index in 0..max {
            enter("nvmlDeviceGetMigDeviceHandleByIndex");
            let m = match d.mig_device_by_index(mig_index) {
                Ok(m) => m,
                // The first gap ends the list, as upstream.
                Err(NvmlError::NotFound) => break,
                Err(e) => return Err(nvml_err("nvmlDeviceGetMigDeviceHandleByIndex")(e)),
            };
            let (gi, ci) = instance_ids(nvml, &m, enter)?;
            enter("nvmlDeviceGetUUID");
            mig_devices.push(MigDevice {
                index: mig_index,
                gi,
                ci,
                uuid: m.uuid().map_err(nvml_err("nvmlDeviceGetUUID"))?,
                access_minors: (None, None),
            });
        }
    }
    Ok(Gpu {
        index,
        minor,
        uuid,
        bus_id,
        model,
        brand: Some(brand),
        architecture: Some(format!("{}.{}", cc.major, cc.minor)),
        mig_capable,
        mig_devices,
        proc_dir: PathBuf::new(),
    })
}

/// GPU and compute instance ids of a MIG device, which nvml-wrapper does not wrap: the one
/// raw NVML call of nvc.
#[allow(unsafe_code)]
fn instance_ids(
    nvml: &Nvml,
    mig: &nvml_wrapper::Device<'_>,
    enter: &mut Progress<'_>,
) -> Result<(u32, u32), Error> {
    let (mut gi, mut ci) = (0u32, 0u32);
    let lib = nvml.lib();
    let (Ok(gi_fn), Ok(ci_fn)) = (
        lib.nvmlDeviceGetGpuInstanceId.as_ref(),
        lib.nvmlDeviceGetComputeInstanceId.as_ref(),
    ) else {
        return Err(Error::Nvml {
            call: "nvmlDeviceGetGpuInstanceId",
            message: "the NVML library lacks the MIG instance calls".into(),
        });
    };
    let check = |call: &'static str, code: u32| match code {
        0 => Ok(()),
        code => Err(Error::Nvml {
            call,
            message: NvmlError::from(code).to_string(),
        }),
    };
    enter("nvmlDeviceGetGpuInstanceId");
    // SAFETY: `mig` is a live handle of `nvml` (it borrows it), the symbol was resolved from
    // the same library, and the out pointer is a valid, writable u32.
    check("nvmlDeviceGetGpuInstanceId", unsafe {
        gi_fn(mig.handle(), &mut gi)
    })?;
    enter("nvmlDeviceGetComputeInstanceId");
    // SAFETY: as above.
    check("nvmlDeviceGetComputeInstanceId", unsafe {
        ci_fn(mig.handle(), &mut ci)
    })?;
    Ok((gi, ci))
}
