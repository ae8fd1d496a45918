//! Command-line parsing with lexopt, in argp's style and wording: `--name=value`,
//! `--name value`, `-x value`, `-xvalue`, `-cu`; upstream's messages, exit status 1.

use std::ffi::OsString;
use std::time::Duration;

use nvc_core::{Capability, CompatMode, Devices, Ldconfig, ListOptions, Requirement};

/// Global options (before the command).
#[derive(Debug, Clone)]
pub struct Global {
    pub root: OsString,
    pub ldcache: Option<OsString>,
    pub nvml_timeout: Option<Duration>,
    /// `--user`: who the NVML helper runs as.
    pub user: Option<(u32, u32)>,
    /// `--load-kmods`: load the NVIDIA kernel modules and create their device nodes first.
    pub load_kmods: bool,
    /// `--no-create-imex-channels`: with `--load-kmods`, make no IMEX channel nodes.
    pub no_create_imex_channels: bool,
    /// `--no-pivot` given before the command (upstream's global spelling).
    pub no_pivot: bool,
    /// `--no-nvml`: the GPUs from `/proc/driver/nvidia`, no NVML helper (nvc's own).
    pub no_nvml: bool,
}

/// `configure` options.
#[derive(Debug, Clone, Default)]
pub struct Configure {
    pub pid: Option<u32>,
    pub rootfs: Option<OsString>,
    pub devices: Devices,
    pub requires: Vec<Requirement>,
    pub capabilities: Vec<Capability>,
    pub compat32: bool,
    pub no_devbind: bool,
    pub no_cgroups: bool,
    pub imex_channels: Vec<u32>,
    pub mig_config: Option<String>,
    pub mig_monitor: Option<String>,
    pub dry_run: bool,
    /// `--ldconfig`: `None` for upstream's default, the image's own.
    pub ldconfig: Option<Ldconfig>,
    pub no_pivot: bool,
    pub no_ldconfig: bool,
    pub compat_mode: CompatMode,
}

/// `list` options.
#[derive(Debug, Clone, Default)]
pub struct List {
    pub options: ListOptions,
    pub no_persistenced: bool,
    pub no_fabricmanager: bool,
}

fn imex(list: &str, into: &mut Vec<u32>) -> Result<(), String> {
    for id in list.split(',').filter(|t| !t.is_empty()) {
        into.push(
            id.parse()
                .map_err(|_| format!("error parsing IMEX info: invalid channel {id:?}"))?,
        );
    }
    Ok(())
}

/// Adds a `--device` list.
fn devices(p: &mut lexopt::Parser, into: &mut Devices) -> Result<(), String> {
    into.add(&text(p, "--device")?).map_err(|e| e.to_string())
}

/// The command to run.
#[derive(Debug, Clone)]
pub enum Command {
    Info {
        csv: bool,
    },
    List(List),
    Configure(Configure),
    /// `attach`: `configure` of a running container (`--pid`, no ROOTFS).
    Attach(Configure),
    /// `detach`: GPUs taken back from a running container (`--pid`, `--device`).
    Detach(Configure),
    Version,
    Help,
}

/// Upstream's (argp's) wording for what lexopt reports.
fn usage(e: lexopt::Error) -> String {
    match e {
        lexopt::Error::MissingValue { option: Some(o) } => {
            format!("option '{o}' requires an argument")
        }
        lexopt::Error::UnexpectedOption(o) => format!("unrecognized option '{o}'"),
        lexopt::Error::UnexpectedValue { option, .. } => {
            format!("option '{option}' doesn't allow an argument")
        }
        lexopt::Error::UnexpectedArgument(a) => {
            format!("unexpected argument '{}'", a.to_string_lossy())
        }
        other => other.to_string(),
    }
}

/// The current option's value, which must be text (a path option takes
/// [`lexopt::Parser::value`] as it is).
fn text(p: &mut lexopt::Parser, name: &str) -> Result<String, String> {
    p.value().map_err(usage)?.into_string().map_err(|v| {
        format!(
            "option '{name}': invalid argument '{}' (not UTF-8)",
            v.to_string_lossy()
        )
    })
}

fn seconds(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("invalid NVML timeout: {v:?} (seconds, > 0)"))
}

/// `UID[:GID]`, numbers or names; GID defaults to the user's primary group; no argument
/// means the caller's effective ids.
fn user(spec: Option<&str>) -> Result<(u32, u32), String> {
    use nix::unistd::{Group, User, getegid, geteuid};
    let Some(spec) = spec else {
        return Ok((geteuid().as_raw(), getegid().as_raw()));
    };
    let bad = || format!("invalid user: {spec}");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => User::from_name(u)
            .ok()
            .flatten()
            .ok_or_else(bad)?
            .uid
            .as_raw(),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(bad)?
                .gid
                .as_raw(),
        },
        None => match User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
        {
            Some(user) => user.gid.as_raw(),
            None => uid,
        },
    };
    Ok((uid, gid))
}

/// Parses the whole command line (without the program name): global options, the command,
/// its options (argp's `ARGP_IN_ORDER`: the command ends the global options).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<(Global, Command), String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut global = Global {
        root: "/".into(),
        ldcache: None,
        user: None,
        load_kmods: false,
        no_create_imex_channels: false,
        no_pivot: false,
        no_nvml: false,
        nvml_timeout: match std::env::var(nvc_core::NVML_TIMEOUT_ENV) {
            Ok(v) => Some(seconds(&v)?),
            Err(_) => None,
        },
    };
    let command = loop {
        let Some(arg) = p.next().map_err(usage)? else {
            return Err("missing command: info, list, configure, attach or detach".into());
        };
        match arg {
            Short('r') | Long("root") => global.root = p.value().map_err(usage)?,
            Short('l') | Long("ldcache") => global.ldcache = Some(p.value().map_err(usage)?),
            Long("nvml-timeout") => {
                global.nvml_timeout = Some(seconds(&text(&mut p, "--nvml-timeout")?)?)
            }
            // Accepted for compatibility; nvc's errors already name what failed.
            Short('d') | Long("debug") => {
                p.value().map_err(usage)?;
            }
            // The argument is optional and so only attached (`--user=1000:1000`, `-u1000`).
            Short('u') | Long("user") => {
                let spec = p.optional_value().map(|v| {
                    v.into_string()
                        .map_err(|v| format!("invalid user: {}", v.to_string_lossy()))
                });
                global.user = Some(user(spec.transpose()?.as_deref())?);
            }
            Short('k') | Long("load-kmods") => global.load_kmods = true,
            Long("no-create-imex-channels") => global.no_create_imex_channels = true,
            Short('n') | Long("no-pivot") => global.no_pivot = true,
            Long("no-nvml") => global.no_nvml = true,
            Short('V') | Long("version") => break Command::Version,
            Short('h' | '?') | Long("help") => break Command::Help,
            Value(v) => match v.to_str() {
                Some("info") => break Command::Info { csv: false },
                Some("list") => break Command::List(List::default()),
                Some("configure") => break Command::Configure(Configure::default()),
                Some("attach") => break Command::Attach(Configure::default()),
                Some("detach") => break Command::Detach(Configure::default()),
                _ => {
                    return Err(format!(
                        "unrecognized option or command '{}'",
                        v.to_string_lossy()
                    ));
                }
            },
            other => {
                let name = match other {
                    Short(c) => format!("-{c}"),
                    Long(l) => format!("--{l}"),
                    Value(_) => String::new(),
                };
                return Err(format!("unrecognized option or command '{name}'"));
            }
        }
    };
    let command = match command {
        Command::Info { .. } => {
            let mut csv = false;
            while let Some(arg) = p.next().map_err(usage)? {
                match arg {
                    Long("csv") => csv = true,
                    other => return Err(usage(other.unexpected())),
                }
            }
            Command::Info { csv }
        }
        Command::List(mut l) => {
            while let Some(arg) = p.next().map_err(usage)? {
                match arg {
                    Short('d') | Long("device") => {
                        devices(&mut p, l.options.devices.get_or_insert_default())?
                    }
                    Short('l') | Long("libraries") => l.options.libraries = true,
                    Short('b') | Long("binaries") => l.options.binaries = true,
                    Short('i') | Long("ipcs") => l.options.ipcs = true,
                    Short('f') | Long("firmwares") => l.options.firmwares = true,
                    Long("compat32") => l.options.compat32 = true,
                    Long("no-persistenced") => l.no_persistenced = true,
                    Long("no-fabricmanager") => l.no_fabricmanager = true,
                    Long("mig-config") => {
                        l.options.mig_config = Some(text(&mut p, "--mig-config")?)
                    }
                    Long("mig-monitor") => {
                        l.options.mig_monitor = Some(text(&mut p, "--mig-monitor")?)
                    }
                    Long("imex-channel") => imex(
                        &text(&mut p, "--imex-channel")?,
                        &mut l.options.imex_channels,
                    )?,
                    other => return Err(usage(other.unexpected())),
                }
            }
            // No selection at all (IMEX channels aside): list everything, for every device.
            let o = &l.options;
            let nothing = o.devices.is_none()
                && o.mig_config.is_none()
                && o.mig_monitor.is_none()
                && !(o.libraries || o.binaries || o.ipcs || o.firmwares || o.compat32);
            if nothing {
                l.options = ListOptions {
                    imex_channels: std::mem::take(&mut l.options.imex_channels),
                    ..ListOptions::everything()
                };
            }
            Command::List(l)
        }
        Command::Configure(c) => Command::Configure(configure(&mut p, c, "configure")?),
        Command::Attach(c) => Command::Attach(running(configure(&mut p, c, "attach")?, "attach")?),
        Command::Detach(c) => Command::Detach(running(configure(&mut p, c, "detach")?, "detach")?),
        other => other,
    };
    Ok((global, command))
}

/// The options of `configure` (and of `attach`, which takes them without ROOTFS, and
/// `detach`, which takes `--pid`, `--device`, `--no-cgroups` and `--no-devbind` only).
fn configure(p: &mut lexopt::Parser, mut c: Configure, command: &str) -> Result<Configure, String> {
    use Capability::{Compute, Display, Graphics, Ngx, Utility, Video};
    use lexopt::prelude::*;
    while let Some(arg) = p.next().map_err(usage)? {
        let detach_option = matches!(
            arg,
            Short('p' | 'd') | Long("pid" | "device" | "no-cgroups" | "no-devbind")
        );
        if command == "detach" && !detach_option {
            return Err(usage(arg.unexpected()));
        }
        match arg {
            Short('p') | Long("pid") => {
                let v = text(p, "--pid")?;
                c.pid = Some(v.parse().map_err(|_| format!("invalid pid: {v}"))?);
            }
            Short('d') | Long("device") => devices(p, &mut c.devices)?,
            Short('r') | Long("require") => c.requires.push(
                text(p, "--require")?
                    .parse()
                    .map_err(|e: nvc_core::Error| e.to_string())?,
            ),
            Short('c') | Long("compute") => c.capabilities.push(Compute),
            Short('u') | Long("utility") => c.capabilities.push(Utility),
            Short('v') | Long("video") => c.capabilities.push(Video),
            Short('g') | Long("graphics") => c.capabilities.push(Graphics),
            Short('D') | Long("display") => c.capabilities.push(Display),
            Short('n') | Long("ngx") => c.capabilities.push(Ngx),
            Long("compat32") => c.compat32 = true,
            Long("no-devbind") => c.no_devbind = true,
            Long("no-cgroups") => c.no_cgroups = true,
            Long("imex-channel") => imex(&text(p, "--imex-channel")?, &mut c.imex_channels)?,
            Long("mig-config") => c.mig_config = Some(text(p, "--mig-config")?),
            Long("mig-monitor") => c.mig_monitor = Some(text(p, "--mig-monitor")?),
            Long("dry-run") => c.dry_run = true,
            Short('l') | Long("ldconfig") => {
                c.ldconfig = Some(Ldconfig::parse(&p.value().map_err(usage)?))
            }
            Long("no-pivot") => c.no_pivot = true,
            Long("no-ldconfig") => c.no_ldconfig = true,
            Long("no-cntlibs") => c.compat_mode = CompatMode::Disabled,
            Long("cuda-compat-mode") => {
                c.compat_mode = text(p, "--cuda-compat-mode")?
                    .parse()
                    .map_err(|e| format!("input error: {e}"))?;
            }
            Value(rootfs) if command == "configure" && c.rootfs.is_none() => {
                c.rootfs = Some(rootfs)
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok(c)
}

/// `attach` and `detach` act on a running container: `--pid` it must have.
fn running(c: Configure, command: &str) -> Result<Configure, String> {
    if c.pid.is_none() {
        return Err(format!(
            "input error: {command} needs the container's --pid=PID"
        ));
    }
    Ok(c)
}
