//! A stand-in for NVIDIA's `libnvidia-ml.so.1`, answering the NVML calls nvc makes from a
//! simulated host's description, with NVML's own return codes.
//!
//! nvc-testkit's build script compiles this one file with `rustc --crate-type cdylib` (no
//! dependencies, SONAME `libnvidia-ml.so.1`) and `Host::build` installs it where the driver's
//! library lives. It reads `nvc-fake-nvml.conf` from the directory it was loaded from, at
//! every `nvmlInit`, so a chrooted helper finds the file of its own root.
//!
//! Being a C library, every export takes raw pointers: this is the one place in the test kit
//! with `unsafe` code; each block says why it is sound given NVML's calling contract.
#![allow(non_snake_case, non_camel_case_types)]

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::Mutex;

type nvmlReturn_t = c_uint;
type nvmlDevice_t = *mut c_void;

const SUCCESS: nvmlReturn_t = 0;
const UNINITIALIZED: nvmlReturn_t = 1;
const INVALID_ARGUMENT: nvmlReturn_t = 2;
const NOT_SUPPORTED: nvmlReturn_t = 3;
const NOT_FOUND: nvmlReturn_t = 6;
const INSUFFICIENT_SIZE: nvmlReturn_t = 7;
const UNKNOWN: nvmlReturn_t = 999;

struct Mig {
    gi: u32,
    ci: u32,
    uuid: String,
}

struct Gpu {
    uuid: String,
    name: String,
    domain: u32,
    bus: u32,
    device: u32,
    minor: u32,
    brand: u32,
    arch: u32,
    cc: (i32, i32),
    mig: Option<(u32, u32)>,
    migs: Vec<Mig>,
}

struct Config {
    driver_version: String,
    cuda_version: i32,
    gpus: Vec<Gpu>,
    init_result: nvmlReturn_t,
    init_delay_ms: u64,
    /// A call that never returns (`hang`) or aborts the process (`crash`).
    misbehave: Option<(String, String)>,
    /// `nvmlDeviceGetName` answers bytes that are not UTF-8.
    garbage_names: bool,
    /// What `nvmlDeviceGetMaxMigDeviceCount` answers.
    max_mig_devices: u32,
}

struct State {
    refs: u32,
    config: Option<Config>,
}

static STATE: Mutex<State> = Mutex::new(State { refs: 0, config: None });

/// Handles are small tagged integers, never dereferenced: GPU `i` is `0x1000 + i`, MIG device
/// `j` of GPU `i` is `0x10_0000 + i * 0x100 + j`.
fn gpu_handle(i: usize) -> nvmlDevice_t {
    (0x1000 + i) as nvmlDevice_t
}

fn mig_handle(i: usize, j: usize) -> nvmlDevice_t {
    (0x10_0000 + i * 0x100 + j) as nvmlDevice_t
}

enum Handle {
    Gpu(usize),
    Mig(usize, usize),
}

fn decode(h: nvmlDevice_t) -> Option<Handle> {
    let v = h as usize;
    if (0x1000..0x2000).contains(&v) {
        Some(Handle::Gpu(v - 0x1000))
    } else if v >= 0x10_0000 && v < 0x10_0000 + 0x100 * 0x100 {
        let v = v - 0x10_0000;
        Some(Handle::Mig(v / 0x100, v % 0x100))
    } else {
        None
    }
}

fn parse_config(text: &str) -> Option<Config> {
    let mut c = Config {
        driver_version: String::new(),
        cuda_version: 0,
        gpus: Vec::new(),
        init_result: SUCCESS,
        init_delay_ms: 0,
        misbehave: None,
        garbage_names: false,
        max_mig_devices: 7,
    };
    for line in text.lines() {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        let field = |key: &str| -> Option<&str> {
            let start = rest.find(&format!("{key}="))? + key.len() + 1;
            let tail = &rest[start..];
            // `name=` is last and runs to the end of the line.
            Some(if key == "name" { tail } else { tail.split(' ').next()? })
        };
        let num = |key: &str| -> Option<u32> { field(key)?.parse().ok() };
        match kind {
            "driver_version" => c.driver_version = rest.to_owned(),
            "cuda_version" => c.cuda_version = rest.parse().ok()?,
            "init_result" => c.init_result = rest.parse().ok()?,
            "init_delay_ms" => c.init_delay_ms = rest.parse().ok()?,
            "misbehave" => {
                let (call, how) = rest.split_once(' ')?;
                c.misbehave = Some((call.to_owned(), how.to_owned()));
            }
            "garbage_names" => c.garbage_names = rest == "1",
            "max_mig_devices" => c.max_mig_devices = rest.parse().ok()?,
            "gpu" => {
                let (cc_major, cc_minor) = field("cc")?.split_once('.')?;
                let mig = match field("mig")? {
                    "none" => None,
                    m => {
                        let (cur, pend) = m.split_once(',')?;
                        Some((cur.parse().ok()?, pend.parse().ok()?))
                    }
                };
                c.gpus.push(Gpu {
                    uuid: field("uuid")?.to_owned(),
                    name: field("name")?.to_owned(),
                    domain: num("domain")?,
                    bus: num("bus")?,
                    device: num("device")?,
                    minor: num("minor")?,
                    brand: num("brand")?,
                    arch: num("arch")?,
                    cc: (cc_major.parse().ok()?, cc_minor.parse().ok()?),
                    mig,
                    migs: Vec::new(),
                });
            }
            "mig" => {
                let m = Mig {
                    gi: num("gi")?,
                    ci: num("ci")?,
                    uuid: field("uuid")?.to_owned(),
                };
                c.gpus.last_mut()?.migs.push(m);
            }
            _ => {}
        }
    }
    Some(c)
}

unsafe extern "C" {
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
}

#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

/// The configuration next to this library, wherever it was loaded from.
fn load_config() -> Option<Config> {
    let mut info = DlInfo {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: `info` is a valid, writable Dl_info; the address is a function of this object.
    let found = unsafe { dladdr(nvmlInit_v2 as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated path that lives as long as the mapping.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_str().ok()?;
    // The name it was loaded by may be a link elsewhere (Debian's
    // /lib/x86_64-linux-gnu/libnvidia-ml.so.1 -> /etc/alternatives/... ->
    // nvidia/current/...): the configuration is beside the file itself.
    let path = std::fs::canonicalize(path).ok()?;
    let dir = path.parent()?;
    parse_config(&std::fs::read_to_string(dir.join("nvc-fake-nvml.conf")).ok()?)
}

/// Hangs or crashes in `call` when the configuration says so.
fn misbehave(call: &str) {
    let how = match STATE.lock() {
        Ok(state) => state
            .config
            .as_ref()
            .and_then(|c| c.misbehave.clone())
            .filter(|(c, _)| c == call)
            .map(|(_, how)| how),
        Err(_) => None,
    };
    match how.as_deref() {
        Some("hang") => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        Some("crash") => std::process::abort(),
        _ => {}
    }
}

fn with<T>(f: impl FnOnce(&Config) -> Result<T, nvmlReturn_t>) -> Result<T, nvmlReturn_t> {
    let state = STATE.lock().map_err(|_| UNKNOWN)?;
    match (&state.config, state.refs) {
        (Some(c), 1..) => f(c),
        _ => Err(UNINITIALIZED),
    }
}

fn code(r: Result<(), nvmlReturn_t>) -> nvmlReturn_t {
    r.err().unwrap_or(SUCCESS)
}

/// Writes `value` through an out pointer.
fn put<T>(out: *mut T, value: T) -> Result<(), nvmlReturn_t> {
    if out.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    // SAFETY: NVML's contract: a non-null out pointer points to a writable `T`.
    unsafe { out.write(value) };
    Ok(())
}

/// Copies `s` with its NUL into a caller buffer of `len` bytes.
fn put_str(buf: *mut c_char, len: c_uint, s: &str) -> Result<(), nvmlReturn_t> {
    put_bytes(buf, len, s.as_bytes())
}

/// Copies `s` with a NUL into a caller buffer of `len` bytes.
fn put_bytes(buf: *mut c_char, len: c_uint, s: &[u8]) -> Result<(), nvmlReturn_t> {
    if buf.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    if s.len() + 1 > len as usize {
        return Err(INSUFFICIENT_SIZE);
    }
    // SAFETY: the caller's buffer holds `len` bytes and `s.len() + 1 <= len`.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        buf.add(s.len()).write(0);
    }
    Ok(())
}

fn get_str<'a>(s: *const c_char) -> Result<&'a str, nvmlReturn_t> {
    if s.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    // SAFETY: NVML's contract: a non-null string argument is NUL-terminated.
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|_| INVALID_ARGUMENT)
}

fn gpu_of(c: &Config, h: nvmlDevice_t) -> Result<(usize, &Gpu), nvmlReturn_t> {
    match decode(h) {
        Some(Handle::Gpu(i)) => c.gpus.get(i).map(|g| (i, g)).ok_or(INVALID_ARGUMENT),
        _ => Err(INVALID_ARGUMENT),
    }
}

fn mig_of(c: &Config, h: nvmlDevice_t) -> Result<(usize, &Mig), nvmlReturn_t> {
    match decode(h) {
        Some(Handle::Mig(i, j)) => c
            .gpus
            .get(i)
            .and_then(|g| g.migs.get(j))
            .map(|m| (i, m))
            .ok_or(INVALID_ARGUMENT),
        _ => Err(INVALID_ARGUMENT),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    let Ok(mut state) = STATE.lock() else {
        return UNKNOWN;
    };
    if state.refs == 0 {
        let Some(config) = load_config() else {
            return UNKNOWN;
        };
        if config.init_delay_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(config.init_delay_ms));
        }
        if config.init_result != SUCCESS {
            return config.init_result;
        }
        state.config = Some(config);
    }
    state.refs += 1;
    drop(state);
    misbehave("nvmlInit");
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    nvmlInit_v2()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit() -> nvmlReturn_t {
    nvmlInit_v2()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    let Ok(mut state) = STATE.lock() else {
        return UNKNOWN;
    };
    if state.refs == 0 {
        return UNINITIALIZED;
    }
    state.refs -= 1;
    if state.refs == 0 {
        state.config = None;
    }
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    let s: &'static CStr = match result {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        4 => c"Insufficient Permissions",
        6 => c"Not Found",
        7 => c"Insufficient Size",
        9 => c"Driver Not Loaded",
        10 => c"Timeout",
        12 => c"NVML Shared Library Not Found",
        13 => c"Function Not Found",
        15 => c"GPU is lost",
        _ => c"Unknown Error",
    };
    s.as_ptr()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlSystemGetDriverVersion(buf: *mut c_char, len: c_uint) -> nvmlReturn_t {
    misbehave("nvmlSystemGetDriverVersion");
    code(with(|c| put_str(buf, len, &c.driver_version)))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlSystemGetNVMLVersion(buf: *mut c_char, len: c_uint) -> nvmlReturn_t {
    code(with(|c| put_str(buf, len, &format!("12.{}", c.driver_version))))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlSystemGetCudaDriverVersion(out: *mut c_int) -> nvmlReturn_t {
    misbehave("nvmlSystemGetCudaDriverVersion");
    code(with(|c| put(out, c.cuda_version)))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlSystemGetCudaDriverVersion_v2(out: *mut c_int) -> nvmlReturn_t {
    misbehave("nvmlSystemGetCudaDriverVersion");
    nvmlSystemGetCudaDriverVersion(out)
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetCount_v2(out: *mut c_uint) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetCount");
    code(with(|c| put(out, c.gpus.len() as c_uint)))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, out: *mut nvmlDevice_t) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetHandleByIndex");
    code(with(|c| {
        let i = index as usize;
        if i >= c.gpus.len() {
            return Err(INVALID_ARGUMENT);
        }
        put(out, gpu_handle(i))
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetHandleByUUID(uuid: *const c_char, out: *mut nvmlDevice_t) -> nvmlReturn_t {
    code(with(|c| {
        let uuid = get_str(uuid)?;
        for (i, g) in c.gpus.iter().enumerate() {
            if g.uuid == uuid {
                return put(out, gpu_handle(i));
            }
            if let Some(j) = g.migs.iter().position(|m| m.uuid == uuid) {
                return put(out, mig_handle(i, j));
            }
        }
        Err(NOT_FOUND)
    }))
}

fn bus_id(g: &Gpu) -> String {
    format!("{:08X}:{:02X}:{:02X}.0", g.domain, g.bus, g.device)
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetHandleByPciBusId_v2(bus: *const c_char, out: *mut nvmlDevice_t) -> nvmlReturn_t {
    code(with(|c| {
        let wanted = get_str(bus)?.to_ascii_uppercase();
        let i = c.gpus.iter().position(|g| bus_id(g) == wanted || bus_id(g)[4..] == wanted);
        put(out, gpu_handle(i.ok_or(NOT_FOUND)?))
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetIndex(dev: nvmlDevice_t, out: *mut c_uint) -> nvmlReturn_t {
    code(with(|c| put(out, gpu_of(c, dev)?.0 as c_uint)))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetUUID(dev: nvmlDevice_t, buf: *mut c_char, len: c_uint) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetUUID");
    code(with(|c| match decode(dev) {
        Some(Handle::Mig(..)) => put_str(buf, len, &mig_of(c, dev)?.1.uuid),
        _ => put_str(buf, len, &gpu_of(c, dev)?.1.uuid),
    }))
}

#[repr(C)]
pub struct nvmlPciInfo_t {
    bus_id_legacy: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
    bus_id: [c_char; 32],
}

fn fixed<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    for (o, b) in out.iter_mut().zip(s.bytes().take(N - 1)) {
        *o = b as c_char;
    }
    out
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetPciInfo_v3(dev: nvmlDevice_t, out: *mut nvmlPciInfo_t) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetPciInfo");
    code(with(|c| {
        let g = gpu_of(c, dev)?.1;
        let id = bus_id(g);
        put(
            out,
            nvmlPciInfo_t {
                bus_id_legacy: fixed(&id[4..]),
                domain: g.domain,
                bus: g.bus,
                device: g.device,
                pci_device_id: 0x20b0_10de,
                pci_sub_system_id: 0x134f_10de,
                bus_id: fixed(&id),
            },
        )
    }))
}

/// `nvmlDeviceGetPciInfo`'s original structure: [`nvmlPciInfo_t`] without `busId`.
#[repr(C)]
pub struct nvmlPciInfoV1_t {
    bus_id: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
}

/// The unversioned entry point, which upstream's libnvidia-container looks up by that name
/// (its `call_nvml` stringifies the unexpanded macro) and reads domain, bus and device from.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetPciInfo(dev: nvmlDevice_t, out: *mut nvmlPciInfoV1_t) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetPciInfo");
    code(with(|c| {
        let g = gpu_of(c, dev)?.1;
        put(
            out,
            nvmlPciInfoV1_t {
                bus_id: fixed(&bus_id(g)[4..]),
                domain: g.domain,
                bus: g.bus,
                device: g.device,
                pci_device_id: 0x20b0_10de,
                pci_sub_system_id: 0x134f_10de,
            },
        )
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetPciInfo_v2(dev: nvmlDevice_t, out: *mut nvmlPciInfo_t) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetPciInfo");
    nvmlDeviceGetPciInfo_v3(dev, out)
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetMinorNumber(dev: nvmlDevice_t, out: *mut c_uint) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetMinorNumber");
    code(with(|c| put(out, gpu_of(c, dev)?.1.minor)))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetName(dev: nvmlDevice_t, buf: *mut c_char, len: c_uint) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetName");
    code(with(|c| match decode(dev) {
        Some(Handle::Mig(i, _)) => {
            let name = format!("{} MIG", c.gpus.get(i).ok_or(INVALID_ARGUMENT)?.name);
            mig_of(c, dev)?;
            put_str(buf, len, &name)
        }
        _ if c.garbage_names => {
            gpu_of(c, dev)?;
            put_bytes(buf, len, b"\xff\xfeA100")
        }
        _ => put_str(buf, len, &gpu_of(c, dev)?.1.name),
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetBrand(dev: nvmlDevice_t, out: *mut c_uint) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetBrand");
    code(with(|c| put(out, gpu_of(c, dev)?.1.brand)))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetArchitecture(dev: nvmlDevice_t, out: *mut c_uint) -> nvmlReturn_t {
    code(with(|c| put(out, gpu_of(c, dev)?.1.arch)))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetCudaComputeCapability(
    dev: nvmlDevice_t,
    major: *mut c_int,
    minor: *mut c_int,
) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetCudaComputeCapability");
    code(with(|c| {
        let g = gpu_of(c, dev)?.1;
        put(major, g.cc.0)?;
        put(minor, g.cc.1)
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetMigMode(dev: nvmlDevice_t, current: *mut c_uint, pending: *mut c_uint) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetMigMode");
    code(with(|c| {
        let (cur, pend) = gpu_of(c, dev)?.1.mig.ok_or(NOT_SUPPORTED)?;
        put(current, cur)?;
        put(pending, pend)
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetMaxMigDeviceCount(dev: nvmlDevice_t, out: *mut c_uint) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetMaxMigDeviceCount");
    code(with(|c| {
        gpu_of(c, dev)?.1.mig.ok_or(NOT_SUPPORTED)?;
        put(out, c.max_mig_devices)
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    dev: nvmlDevice_t,
    index: c_uint,
    out: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetMigDeviceHandleByIndex");
    code(with(|c| {
        let (i, g) = gpu_of(c, dev)?;
        match g.mig {
            None => Err(NOT_SUPPORTED),
            Some((0, _)) => Err(INVALID_ARGUMENT),
            Some(_) if index as usize >= g.migs.len() => Err(NOT_FOUND),
            Some(_) => put(out, mig_handle(i, index as usize)),
        }
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceIsMigDeviceHandle(dev: nvmlDevice_t, out: *mut c_uint) -> nvmlReturn_t {
    code(with(|c| match decode(dev) {
        Some(Handle::Mig(..)) => mig_of(c, dev).and_then(|_| put(out, 1)),
        _ => gpu_of(c, dev).and_then(|_| put(out, 0)),
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    dev: nvmlDevice_t,
    out: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    code(with(|c| put(out, gpu_handle(mig_of(c, dev)?.0))))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetGpuInstanceId(dev: nvmlDevice_t, out: *mut c_uint) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetGpuInstanceId");
    code(with(|c| match decode(dev) {
        Some(Handle::Gpu(_)) => gpu_of(c, dev).and(Err(NOT_SUPPORTED)),
        _ => put(out, mig_of(c, dev)?.1.gi),
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetComputeInstanceId(dev: nvmlDevice_t, out: *mut c_uint) -> nvmlReturn_t {
    misbehave("nvmlDeviceGetComputeInstanceId");
    code(with(|c| match decode(dev) {
        Some(Handle::Gpu(_)) => gpu_of(c, dev).and(Err(NOT_SUPPORTED)),
        _ => put(out, mig_of(c, dev)?.1.ci),
    }))
}
