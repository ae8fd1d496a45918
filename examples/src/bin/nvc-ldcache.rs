//! `nvc-ldcache`: list or query an `ld.so.cache` with nvc-ldcache.
//!
//! ```text
//! nvc-ldcache [--cache FILE] [--arch ARCH] [--resolve PREFIX...]
//! ```
//!
//! Without `--resolve` it prints the cache exactly as `ldconfig -p` does (only the entries of
//! `ARCH` with `--arch`). With `--resolve` it resolves the prefixes as libnvidia-container
//! does (last matching entry in cache order wins) for `ARCH`, or for the native 64-bit and
//! 32-bit architectures, printing each winner as an `ldconfig -p` line and each prefix with
//! no match as `missing library PREFIX (ARCH)` on standard error.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use nvc_ldcache::{Arch, LdCache, Platform, PrefixSet};

const USAGE: &str = "usage: nvc-ldcache [--cache FILE] [--arch ARCH] [--resolve PREFIX...]";

struct Args {
    cache: PathBuf,
    arch: Option<Arch>,
    resolve: Option<Vec<OsString>>,
}

fn parse_args(mut args: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut parsed = Args {
        cache: PathBuf::from(nvc_ldcache::DEFAULT_PATH),
        arch: None,
        resolve: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.to_str() {
            Some("--cache" | "-C") => parsed.cache = value("--cache")?.into(),
            Some("--arch") => {
                let name = value("--arch")?;
                let name = name.to_str().ok_or("--arch: not UTF-8")?;
                parsed.arch = Some(Arch::from_name(name).map_err(|e| e.to_string())?);
            }
            Some("--resolve") => {
                let prefixes: Vec<OsString> = args.by_ref().collect();
                if prefixes.is_empty() {
                    return Err("--resolve needs at least one PREFIX".into());
                }
                parsed.resolve = Some(prefixes);
            }
            Some("--help" | "-h") => return Err(String::new()),
            _ => return Err(format!("unexpected argument {:?}", arg)),
        }
    }
    Ok(parsed)
}

fn run(args: &Args, out: &mut dyn Write) -> Result<(), String> {
    let name = args.cache.display();
    let bytes = nvc_ldcache::read(&args.cache).map_err(|e| nvc_examples::error_chain(&e))?;
    let cache = LdCache::parse(&bytes).map_err(|e| e.in_file(&args.cache).to_string())?;
    let failed = |e: io::Error| match e.into_inner() {
        Some(inner) => format!("{name}: {inner}"),
        None => format!("{name}: write failed"),
    };
    match (&args.resolve, args.arch) {
        (None, None) => cache
            .write_listing(args.cache.as_os_str(), out)
            .map_err(failed),
        (None, Some(arch)) => {
            let mut shown = Vec::new();
            for entry in cache.entries() {
                let entry = entry.map_err(|e| e.in_file(&args.cache).to_string())?;
                if entry.arch() == arch {
                    shown.push(entry);
                }
            }
            let mut write = || -> io::Result<()> {
                writeln!(out, "{} libs found in cache `{name}'", shown.len())?;
                for e in &shown {
                    e.write_ldconfig_line(out)?;
                }
                Ok(())
            };
            write().map_err(failed)
        }
        (Some(prefixes), arch) => {
            let set = PrefixSet::new(prefixes.iter().map(|p| p.as_encoded_bytes()));
            let arches: Vec<Arch> = match arch {
                Some(a) => vec![a],
                None => Platform::host().arches().collect(),
            };
            for arch in arches {
                let found = cache
                    .resolve(&set, arch)
                    .map_err(|e| e.in_file(&args.cache).to_string())?;
                for (prefix, winner) in prefixes.iter().zip(found) {
                    match winner {
                        Some(e) => e.write_ldconfig_line(out).map_err(failed)?,
                        None => eprintln!(
                            "missing library {} ({})",
                            OsStr::new(prefix).display(),
                            arch.name()
                        ),
                    }
                }
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("nvc-ldcache: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 << 10, stdout.lock());
    let result = run(&args, &mut out).and_then(|()| out.flush().map_err(|e| e.to_string()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `nvc-ldcache | head` is not an error.
        Err(msg) if msg.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("nvc-ldcache: {msg}");
            ExitCode::FAILURE
        }
    }
}
