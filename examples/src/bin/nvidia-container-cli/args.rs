//! Command-line parsing in argp's style: `--name=value`, `--name value`, `-x value`, `-xvalue`.

use std::ffi::OsString;
use std::time::Duration;

use nvc_examples::render::List;

/// Global options (before the command).
#[derive(Debug, Clone)]
pub struct Global {
    pub root: OsString,
    pub ldcache: Option<OsString>,
    pub nvml_timeout: Option<Duration>,
    /// `--user`: who the NVML helper runs as.
    pub user: Option<(u32, u32)>,
}

/// `configure` options.
#[derive(Debug, Clone, Default)]
pub struct Configure {
    pub pid: Option<u32>,
    pub rootfs: Option<OsString>,
    pub devices: Vec<String>,
    pub requires: Vec<String>,
    pub capabilities: Vec<nvc_driver::tables::Capability>,
    pub compat32: bool,
    pub no_devbind: bool,
    pub no_cgroups: bool,
    pub imex_channels: Vec<u32>,
    pub dry_run: bool,
    /// `--ldconfig`: a container path, or `@` + a host path.
    pub ldconfig: Option<String>,
    pub no_pivot: bool,
    pub no_ldconfig: bool,
    pub compat_mode: nvc_mount::CompatMode,
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

/// The command to run.
#[derive(Debug, Clone)]
pub enum Command {
    Info { csv: bool },
    List(List),
    Configure(Configure),
    Version,
    Help,
}

/// Splits `--name=value` / `-xvalue` and fetches a separate value when needed.
struct Args<I: Iterator<Item = OsString>> {
    rest: std::iter::Peekable<I>,
}

impl<I: Iterator<Item = OsString>> Args<I> {
    /// The option's value as given (a path: any bytes).
    fn os_value(&mut self, inline: Option<String>, name: &str) -> Result<OsString, String> {
        match inline {
            Some(v) => Ok(v.into()),
            None => self
                .rest
                .next()
                .ok_or_else(|| format!("option '{name}' requires an argument")),
        }
    }

    /// The option's value, which must be text.
    fn value(&mut self, inline: Option<String>, name: &str) -> Result<String, String> {
        self.os_value(inline, name)?.into_string().map_err(|v| {
            format!(
                "option '{name}': invalid argument '{}' (not UTF-8)",
                v.to_string_lossy()
            )
        })
    }
}

/// (`--name` or `-x`, inline value). An attached value (`--name=value`, `-xvalue`) must be
/// text; a separate one is fetched by [`Args::os_value`].
fn split(arg: &str) -> (String, Option<String>) {
    if let Some(long) = arg.strip_prefix("--") {
        match long.split_once('=') {
            Some((n, v)) => (format!("--{n}"), Some(v.to_owned())),
            None => (arg.to_owned(), None),
        }
    } else if let Some(short) = arg.strip_prefix('-')
        && let Some(letter) = short.chars().next()
        && short.len() > letter.len_utf8()
    {
        let rest = short.get(letter.len_utf8()..).unwrap_or_default();
        (format!("-{letter}"), Some(rest.to_owned()))
    } else {
        (arg.to_owned(), None)
    }
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

/// Parses the whole command line (without the program name).
pub fn parse(args: impl Iterator<Item = OsString>) -> Result<(Global, Command), String> {
    let mut a = Args {
        rest: args.peekable(),
    };
    let mut global = Global {
        root: "/".into(),
        ldcache: None,
        user: None,
        nvml_timeout: match std::env::var(nvc_driver::nvml::TIMEOUT_ENV) {
            Ok(v) => Some(seconds(&v)?),
            Err(_) => None,
        },
    };
    let command = loop {
        let Some(arg) = a.rest.next() else {
            return Err("missing command: info, list or configure".into());
        };
        let text = arg.to_string_lossy().into_owned();
        let (name, inline) = split(&text);
        match name.as_str() {
            "-r" | "--root" => global.root = a.os_value(inline, "--root")?,
            "-l" | "--ldcache" => global.ldcache = Some(a.os_value(inline, "--ldcache")?),
            "--nvml-timeout" => {
                global.nvml_timeout = Some(seconds(&a.value(inline, "--nvml-timeout")?)?)
            }
            // Accepted for compatibility; it changes nothing that `info` and `list` do.
            "-d" | "--debug" => {
                a.value(inline, &name)?;
            }
            // The argument is optional and so only attached (`--user=1000:1000`, `-u1000`).
            "-u" | "--user" => global.user = Some(user(inline.as_deref())?),
            "-k" | "--load-kmods" => return Err("--load-kmods is not supported yet".into()),
            "-n" | "--no-pivot" | "--no-create-imex-channels" => {}
            "-V" | "--version" => break Command::Version,
            "-h" | "--help" | "-?" => break Command::Help,
            "info" => break Command::Info { csv: false },
            "list" => break Command::List(List::default()),
            "configure" => break Command::Configure(Configure::default()),
            _ => return Err(format!("unrecognized option or command '{text}'")),
        }
    };
    let command = match command {
        Command::Info { .. } => {
            let mut csv = false;
            for arg in a.rest.by_ref() {
                match arg.to_str() {
                    Some("--csv") => csv = true,
                    _ => return Err(format!("unrecognized option '{}'", arg.to_string_lossy())),
                }
            }
            Command::Info { csv }
        }
        Command::List(mut l) => {
            while let Some(arg) = a.rest.next() {
                let text = arg.to_string_lossy().into_owned();
                let (name, inline) = split(&text);
                match name.as_str() {
                    "-d" | "--device" => l.devices.push(a.value(inline, "--device")?),
                    "-l" | "--libraries" => l.libraries = true,
                    "-b" | "--binaries" => l.binaries = true,
                    "-i" | "--ipcs" => l.ipcs = true,
                    "-f" | "--firmwares" => l.firmwares = true,
                    "--compat32" => l.compat32 = true,
                    "--no-persistenced" => l.no_persistenced = true,
                    "--no-fabricmanager" => l.no_fabricmanager = true,
                    "--mig-config" => l.mig_config = Some(a.value(inline, "--mig-config")?),
                    "--mig-monitor" => l.mig_monitor = Some(a.value(inline, "--mig-monitor")?),
                    "--imex-channel" => {
                        let list = a.value(inline, "--imex-channel")?;
                        for id in list.split(',').filter(|t| !t.is_empty()) {
                            let n = id.parse().map_err(|_| {
                                format!("error parsing IMEX info: invalid channel {id:?}")
                            })?;
                            l.imex_channels.push(n);
                        }
                    }
                    _ => return Err(format!("unrecognized option '{text}'")),
                }
            }
            // No selection at all (IMEX channels aside): list everything, for every device.
            let nothing = l.devices.is_empty()
                && l.mig_config.is_none()
                && l.mig_monitor.is_none()
                && !(l.libraries || l.binaries || l.ipcs || l.firmwares || l.compat32);
            if nothing {
                l.devices.push("all".into());
                (l.libraries, l.binaries, l.ipcs, l.firmwares, l.compat32) =
                    (true, true, true, true, true);
            }
            Command::List(l)
        }
        Command::Configure(mut c) => {
            use nvc_driver::tables::Capability::{Compute, Display, Graphics, Ngx, Utility, Video};
            while let Some(arg) = a.rest.next() {
                let text = arg.to_string_lossy().into_owned();
                let (name, inline) = split(&text);
                match name.as_str() {
                    "-p" | "--pid" => {
                        let v = a.value(inline, "--pid")?;
                        c.pid = Some(v.parse().map_err(|_| format!("invalid pid: {v}"))?);
                    }
                    "-d" | "--device" => c.devices.push(a.value(inline, "--device")?),
                    "-r" | "--require" => c.requires.push(a.value(inline, "--require")?),
                    "-c" | "--compute" => c.capabilities.push(Compute),
                    "-u" | "--utility" => c.capabilities.push(Utility),
                    "-v" | "--video" => c.capabilities.push(Video),
                    "-g" | "--graphics" => c.capabilities.push(Graphics),
                    "-D" | "--display" => c.capabilities.push(Display),
                    "-n" | "--ngx" => c.capabilities.push(Ngx),
                    "--compat32" => c.compat32 = true,
                    "--no-devbind" => c.no_devbind = true,
                    "--no-cgroups" => c.no_cgroups = true,
                    "--imex-channel" => {
                        imex(&a.value(inline, "--imex-channel")?, &mut c.imex_channels)?
                    }
                    "--dry-run" => c.dry_run = true,
                    "-l" | "--ldconfig" => c.ldconfig = Some(a.value(inline, "--ldconfig")?),
                    "--no-pivot" => c.no_pivot = true,
                    "--no-ldconfig" => c.no_ldconfig = true,
                    "--no-cntlibs" => c.compat_mode = nvc_mount::CompatMode::Disabled,
                    "--cuda-compat-mode" => {
                        c.compat_mode = a
                            .value(inline, "--cuda-compat-mode")?
                            .parse()
                            .map_err(|e| format!("input error: {e}"))?;
                    }
                    _ if !text.starts_with('-') && c.rootfs.is_none() => c.rootfs = Some(arg),
                    _ => return Err(format!("unrecognized option '{text}'")),
                }
            }
            Command::Configure(c)
        }
        other => other,
    };
    Ok((global, command))
}
