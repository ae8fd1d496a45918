//! The NVIDIA container toolkit's configuration file, `config.toml`, as far as nvc's
//! drop-ins honour it: `nvc-hook` installed as `nvidia-container-runtime-hook`, and
//! `nvc-runtime` in place of `nvidia-container-runtime`. A host moving from the toolkit keeps
//! its file; keys nvc has no use for are read and ignored (see each field).
//!
//! The file is `$XDG_CONFIG_HOME/nvidia-container-runtime/config.toml` where that variable is
//! set (the runtime's environment; runtimes run hooks with the hook entry's `env` only), else
//! `/etc/nvidia-container-runtime/config.toml`, as the toolkit finds it. A missing file is the
//! toolkit's defaults.

use std::path::{Path, PathBuf};

use nvc_core::oci::HookOptions;
use nvc_core::{Capability, Ldconfig};
use serde::Deserialize;

/// The name of the toolkit's hook: what Docker's `--gpus` runs from its `PATH` and the
/// runtime's legacy mode adds.
pub const HOOK: &str = "nvidia-container-runtime-hook";

/// The most bytes of `config.toml` read.
const LIMIT: u64 = 1 << 20;

/// The toolkit's `config.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Config {
    /// Ignore the image's `NVIDIA_REQUIRE_*`.
    pub disable_require: bool,
    /// The capabilities given at most (comma-separated; empty: all).
    pub supported_driver_capabilities: String,
    /// Honour `NVIDIA_VISIBLE_DEVICES` of unprivileged containers.
    pub accept_nvidia_visible_devices_envvar_when_unprivileged: bool,
    /// `[nvidia-container-cli]`: what the toolkit's hook passes to `nvidia-container-cli`.
    pub nvidia_container_cli: Cli,
    /// `[nvidia-container-runtime]`.
    pub nvidia_container_runtime: Runtime,
    /// `[nvidia-container-runtime-hook]`.
    pub nvidia_container_runtime_hook: RuntimeHook,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            disable_require: false,
            supported_driver_capabilities: String::new(),
            accept_nvidia_visible_devices_envvar_when_unprivileged: true,
            nvidia_container_cli: Cli::default(),
            nvidia_container_runtime: Runtime::default(),
            nvidia_container_runtime_hook: RuntimeHook::default(),
        }
    }
}

/// `[nvidia-container-cli]`. nvc configures in process: `path` (the CLI's binary),
/// `environment` (its environment), `user` (the user it runs as) and `debug` (its log file)
/// have nothing to apply to and are ignored; `ldcache` is ignored as nvc-hook always reads
/// the host's cache at the driver root.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Cli {
    /// The driver's root (`--root`): `/run/nvidia/driver` for a driver container.
    pub root: Option<PathBuf>,
    /// Which `ldconfig` to run (`@/sbin/ldconfig`: the host's; a path without `@`: the
    /// image's).
    pub ldconfig: Option<String>,
    /// Leave the device cgroup alone.
    pub no_cgroups: bool,
    /// Load the kernel modules first.
    pub load_kmods: bool,
}

impl Cli {
    /// The driver root: `root`, `/` where it is unset or empty (as the toolkit reads it).
    #[must_use]
    pub fn driver_root(&self) -> PathBuf {
        self.root
            .clone()
            .filter(|r| !r.as_os_str().is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

/// `[nvidia-container-runtime]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Runtime {
    /// The OCI runtimes tried in order, names searched in `PATH` or absolute paths.
    pub runtimes: Vec<String>,
    /// `auto`, `cdi` or `legacy` (`csv`, Tegra's, is not supported).
    pub mode: String,
    /// `[nvidia-container-runtime.modes]`.
    pub modes: Modes,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            runtimes: vec!["docker-runc".into(), "runc".into(), "crun".into()],
            mode: "auto".into(),
            modes: Modes::default(),
        }
    }
}

/// `[nvidia-container-runtime-hook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct RuntimeHook {
    /// The hook `nvc-runtime`'s legacy mode adds: a name searched in `PATH`, or a path.
    pub path: PathBuf,
    /// Run as the hook whatever the mode says.
    pub skip_mode_detection: bool,
}

impl Default for RuntimeHook {
    fn default() -> Self {
        RuntimeHook {
            path: HOOK.into(),
            skip_mode_detection: false,
        }
    }
}

/// `[nvidia-container-runtime.modes]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Modes {
    /// `[nvidia-container-runtime.modes.cdi]`.
    pub cdi: CdiMode,
    /// `[nvidia-container-runtime.modes.legacy]`.
    pub legacy: LegacyMode,
}

/// `[nvidia-container-runtime.modes.cdi]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct CdiMode {
    /// The kind of an unqualified `NVIDIA_VISIBLE_DEVICES` entry.
    pub default_kind: String,
    /// The annotations that list CDI devices.
    pub annotation_prefixes: Vec<String>,
    /// Where the CDI specs are, lowest priority first.
    pub spec_dirs: Vec<PathBuf>,
}

impl Default for CdiMode {
    fn default() -> Self {
        CdiMode {
            default_kind: "nvidia.com/gpu".into(),
            annotation_prefixes: vec!["cdi.k8s.io/".into()],
            spec_dirs: nvc_core::cdi::SPEC_DIRS.iter().map(PathBuf::from).collect(),
        }
    }
}

/// `[nvidia-container-runtime.modes.legacy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct LegacyMode {
    /// `ldconfig`, `mount`, `disabled` or `hook` (nvc-hook does what the toolkit's hook mode
    /// does, as `ldconfig`).
    pub cuda_compat_mode: String,
}

impl Default for LegacyMode {
    fn default() -> Self {
        LegacyMode {
            cuda_compat_mode: "ldconfig".into(),
        }
    }
}

/// Where the toolkit looks for its file: `$XDG_CONFIG_HOME/nvidia-container-runtime/config.toml`,
/// else `/etc/nvidia-container-runtime/config.toml`.
#[must_use]
pub fn default_path() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/etc"), PathBuf::from)
        .join("nvidia-container-runtime/config.toml")
}

impl Config {
    /// Reads `path`; a missing file is the defaults.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, is larger than 1 MiB or is not valid TOML of the
    /// toolkit's keys, named.
    pub fn load(path: &Path) -> Result<Config, String> {
        use std::io::Read;
        let what = path.display();
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(format!("cannot read {what}: {e}")),
        };
        let mut text = String::new();
        file.take(LIMIT + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read {what}: {e}"))?;
        if text.len() as u64 > LIMIT {
            return Err(format!("{what} is larger than {LIMIT} bytes"));
        }
        toml::from_str(&text).map_err(|e| format!("invalid {what}: {e}"))
    }

    /// The hook's options as this file sets them.
    ///
    /// # Errors
    ///
    /// An unknown capability in `supported-driver-capabilities` or an unknown
    /// `cuda-compat-mode`, named.
    pub fn hook_options(&self) -> Result<HookOptions, String> {
        let cli = &self.nvidia_container_cli;
        let mut opts = HookOptions {
            no_cgroups: cli.no_cgroups,
            envvar_when_unprivileged: self.accept_nvidia_visible_devices_envvar_when_unprivileged,
            disable_require: self.disable_require,
            ..HookOptions::default()
        };
        if let Some(ldconfig) = cli.ldconfig.as_deref().filter(|l| !l.is_empty()) {
            opts.ldconfig = Ldconfig::parse(ldconfig);
        }
        let supported = self.supported_driver_capabilities.trim();
        if !supported.is_empty() && supported != "all" {
            let names: Vec<&str> = supported.split(',').map(str::trim).collect();
            opts.compat32 = names.contains(&"compat32");
            opts.supported_capabilities = names
                .into_iter()
                .filter(|&c| !c.is_empty() && c != "compat32")
                .map(|c| {
                    Capability::from_name(c).ok_or_else(|| {
                        format!("supported-driver-capabilities: unknown capability {c:?}")
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        opts.cuda_compat = match self
            .nvidia_container_runtime
            .modes
            .legacy
            .cuda_compat_mode
            .as_str()
        {
            "" | "ldconfig" | "hook" => nvc_core::CompatMode::Ldconfig,
            other => other
                .parse()
                .map_err(|e| format!("nvidia-container-runtime.modes.legacy: {e}"))?,
        };
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_toolkits_shipped_file_reads_with_its_defaults() {
        // The file nvidia-ctk 1.17.8 writes (`nvidia-ctk config default`), trimmed of comments.
        let text = r#"
disable-require = false
supported-driver-capabilities = "compat32,compute,display,graphics,ngx,utility,video"

[nvidia-container-cli]
environment = []
ldconfig = "@/sbin/ldconfig"
load-kmods = true

[nvidia-container-runtime]
log-level = "info"
mode = "auto"
runtimes = ["docker-runc", "runc", "crun"]

[nvidia-container-runtime.modes.cdi]
annotation-prefixes = ["cdi.k8s.io/"]
default-kind = "nvidia.com/gpu"
spec-dirs = ["/etc/cdi", "/var/run/cdi"]

[nvidia-container-runtime.modes.csv]
mount-spec-path = "/etc/nvidia-container-runtime/host-files-for-container.d"

[nvidia-container-runtime.modes.legacy]
cuda-compat-mode = "ldconfig"

[nvidia-container-runtime-hook]
path = "nvidia-container-runtime-hook"
skip-mode-detection = false

[nvidia-ctk]
path = "nvidia-ctk"
"#;
        let c: Config = toml::from_str(text).unwrap();
        assert!(c.nvidia_container_cli.load_kmods);
        assert_eq!(c.nvidia_container_runtime.mode, "auto");
        assert_eq!(
            c.nvidia_container_runtime.modes.cdi.spec_dirs,
            [PathBuf::from("/etc/cdi"), "/var/run/cdi".into()]
        );
        let opts = c.hook_options().unwrap();
        assert_eq!(opts.ldconfig, Ldconfig::parse("@/sbin/ldconfig"));
        assert_eq!(opts.supported_capabilities.len(), Capability::ALL.len());
        assert!(opts.compat32);
        assert_eq!(opts.cuda_compat, nvc_core::CompatMode::Ldconfig);
        assert!(opts.envvar_when_unprivileged && !opts.disable_require);
    }

    #[test]
    fn keys_that_change_behaviour_reach_the_hooks_options() {
        let c: Config = toml::from_str(
            r#"
disable-require = true
supported-driver-capabilities = "utility"
accept-nvidia-visible-devices-envvar-when-unprivileged = false
[nvidia-container-cli]
no-cgroups = true
root = "/run/nvidia/driver"
[nvidia-container-runtime.modes.legacy]
cuda-compat-mode = "disabled"
"#,
        )
        .unwrap();
        assert_eq!(
            c.nvidia_container_cli.driver_root(),
            Path::new("/run/nvidia/driver")
        );
        let empty: Config = toml::from_str("[nvidia-container-cli]\nroot = \"\"").unwrap();
        assert_eq!(empty.nvidia_container_cli.driver_root(), Path::new("/"));
        let opts = c.hook_options().unwrap();
        assert!(opts.disable_require && opts.no_cgroups && !opts.envvar_when_unprivileged);
        assert_eq!(opts.supported_capabilities, [Capability::Utility]);
        assert!(!opts.compat32);
        assert_eq!(opts.cuda_compat, nvc_core::CompatMode::Disabled);
    }

    #[test]
    fn bad_values_are_named() {
        let c: Config = toml::from_str(r#"supported-driver-capabilities = "compute,gpu""#).unwrap();
        assert!(c.hook_options().unwrap_err().contains(r#""gpu""#));
        let e = toml::from_str::<Config>("disable-require = 3").unwrap_err();
        assert!(e.to_string().contains("disable-require"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let missing = Config::load(&dir.path().join("config.toml")).unwrap();
        assert_eq!(
            missing.nvidia_container_runtime.runtimes,
            ["docker-runc", "runc", "crun"]
        );
        std::fs::write(dir.path().join("bad.toml"), "[x").unwrap();
        let e = Config::load(&dir.path().join("bad.toml")).unwrap_err();
        assert!(e.contains("bad.toml"), "{e}");
    }
}
