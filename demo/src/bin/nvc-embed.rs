//! `nvc-embed`: nvc-core embedded in a multithreaded async program, as an orchestrator would
//! use it — one driver probe shared by every task, several containers configured at once.
//!
//! ```text
//! nvc-embed [--root DIR] PID:ROOTFS...
//! ```
//!
//! Probes the driver under `DIR` (`/` by default) once, then configures every container
//! (`--device=all --compute --utility`, the host's `ldconfig`) concurrently on tokio's
//! blocking pool: nvc-core's calls block (namespace thread, sandbox process), so an async
//! program runs them with `spawn_blocking`. Afterwards it checks what nvc promises about the
//! calling process: the working directory and mount namespace are unchanged, and no thread
//! or child process of nvc's is left. Prints one line per container, then `process
//! untouched`; exits 1 if any container failed or the process was touched.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use nvc_core::Capability::{Compute, Utility};
use nvc_core::{Context, Devices};

/// What nvc must leave as it found it in its caller.
#[derive(Debug, PartialEq, Eq)]
struct ProcessView {
    cwd: PathBuf,
    mount_ns: PathBuf,
    nvc_threads: usize,
    children: usize,
}

impl ProcessView {
    fn now() -> Result<Self, String> {
        let io = |e: std::io::Error| e.to_string();
        let mut nvc_threads = 0;
        let mut children = 0;
        for task in std::fs::read_dir("/proc/self/task").map_err(io)? {
            let task = task.map_err(io)?.path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            // The thread nvc-mount enters namespaces on.
            if comm.trim_end() == "nvc-mount-ns" {
                nvc_threads += 1;
            }
            children += std::fs::read_to_string(task.join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .count();
        }
        Ok(ProcessView {
            cwd: std::env::current_dir().map_err(io)?,
            mount_ns: std::fs::read_link("/proc/self/ns/mnt").map_err(io)?,
            nvc_threads,
            children,
        })
    }
}

fn parse() -> Result<(PathBuf, Vec<(u32, PathBuf)>), String> {
    let mut root = PathBuf::from("/");
    let mut containers = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--root" {
            root = args.next().ok_or("--root needs a DIR")?.into();
            continue;
        }
        let text = arg.to_string_lossy();
        let (pid, rootfs) = text
            .split_once(':')
            .ok_or_else(|| format!("expected PID:ROOTFS, got {text:?}"))?;
        let pid = pid
            .parse()
            .map_err(|_| format!("invalid pid in {text:?}"))?;
        containers.push((pid, PathBuf::from(rootfs)));
    }
    if containers.is_empty() {
        return Err("usage: nvc-embed [--root DIR] PID:ROOTFS...".into());
    }
    Ok((root, containers))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(msg) => {
            eprintln!("nvc-embed: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, String> {
    let (root, containers) = parse()?;
    let before = ProcessView::now()?;
    let chain = |e: nvc_core::Error| nvc_examples::error_chain(&e);
    let driver = tokio::task::spawn_blocking(move || {
        Context::builder()
            .root(root)
            .build()
            .and_then(Context::driver)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(chain)?;
    let driver = Arc::new(driver);
    let tasks: Vec<_> = containers
        .into_iter()
        .map(|(pid, rootfs)| {
            let driver = Arc::clone(&driver);
            tokio::task::spawn_blocking(move || {
                let done = driver
                    .container(pid, &rootfs)?
                    .devices(Devices::all())
                    .capabilities(&[Compute, Utility])
                    .mount()?;
                Ok::<_, nvc_core::Error>((pid, done.mounts().len(), done.created().len()))
            })
        })
        .collect();
    let mut ok = true;
    for task in tasks {
        match task.await.map_err(|e| e.to_string())? {
            Ok((pid, mounts, created)) => {
                println!("container {pid}: {mounts} mounts, {created} paths created");
            }
            Err(e) => {
                println!("container failed: {}", chain(e));
                ok = false;
            }
        }
    }
    let after = ProcessView::now()?;
    if after == before {
        println!("process untouched: cwd, mount namespace, no nvc thread or child left");
    } else {
        println!("process touched: before {before:?}, after {after:?}");
        ok = false;
    }
    Ok(ok)
}
