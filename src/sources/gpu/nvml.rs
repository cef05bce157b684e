//! NVIDIA GPUs through NVML, the library the driver ships (`libnvidia-ml.so.1`), opened at run time.
//!
//! Why not `nvidia-smi`: other agents run it every cycle, which forks a process that itself loads
//! NVML and costs tens of milliseconds of CPU each time (docs/gpus.md#sources). Calling NVML in
//! process is microseconds per value. Why `dlopen` rather than linking: the agent runs on every
//! node of a fleet and most have no NVIDIA driver; a link-time dependency would stop it starting.
//!
//! The library stays loaded and initialised, and device handles with their static facts (name,
//! UUID, PCI bus id) are cached between samples. Only the changing values (memory, utilization,
//! temperature, power) are read each cycle. A call that is not supported by a GPU is quietly
//! left out; any other failure is returned as an error (the caller reports it once). A GPU that is
//! lost is dropped from the cache and looked for again on the next cycle; a failure of the driver
//! itself (unloaded, upgraded under us) unloads the library so a later cycle starts afresh.

use super::{Gpu, GpuInfo, GpuReading};
use libloading::Library;
use std::ffi::{CStr, c_char, c_int, c_uint, c_ulonglong, c_void};

type Ret = c_int;
/// `nvmlDevice_t`: an opaque pointer owned by the library.
type Device = *mut c_void;

pub(crate) const SUCCESS: Ret = 0;
pub(crate) const ERROR_UNINITIALIZED: Ret = 1;
pub(crate) const ERROR_NOT_SUPPORTED: Ret = 3;
pub(crate) const ERROR_DRIVER_NOT_LOADED: Ret = 9;
pub(crate) const ERROR_FUNCTION_NOT_FOUND: Ret = 13;
pub(crate) const ERROR_GPU_IS_LOST: Ret = 15;
pub(crate) const ERROR_LIB_RM_VERSION_MISMATCH: Ret = 18;
pub(crate) const ERROR_ARGUMENT_VERSION_MISMATCH: Ret = 25;
pub(crate) const ERROR_GPU_NOT_FOUND: Ret = 28;

/// `NVML_TEMPERATURE_GPU`: the GPU die sensor (what `nvidia-smi` shows as `temperature.gpu`).
const TEMPERATURE_GPU: c_int = 0;
/// Buffer sizes from nvml.h (`NVML_DEVICE_NAME_V2_BUFFER_SIZE`, `NVML_DEVICE_UUID_V2_BUFFER_SIZE`,
/// `NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE`).
const NAME_LEN: usize = 96;
const UUID_LEN: usize = 96;
const DRIVER_LEN: usize = 80;

/// `nvmlPciInfo_t` (v3 layout; v2 is the same).
#[repr(C)]
struct PciInfo {
    bus_id_legacy: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
    bus_id: [c_char; 32],
}

/// `nvmlMemory_t`: `used` includes the memory the driver reserves.
#[repr(C)]
#[derive(Default)]
struct MemoryV1 {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlMemory_v2_t` (R510+): reports the driver's reservation apart, as `nvidia-smi` does.
#[repr(C)]
#[derive(Default)]
struct MemoryV2 {
    version: c_uint,
    total: c_ulonglong,
    reserved: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `NVML_STRUCT_VERSION(Memory, 2)`.
const MEMORY_V2_VERSION: c_uint = (std::mem::size_of::<MemoryV2>() as c_uint) | (2 << 24);

#[repr(C)]
#[derive(Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// An NVML failure: the call and the library's own words for it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("NVML {call}: {message} (code {code})")]
pub(crate) struct NvmlError {
    pub(crate) call: &'static str,
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl NvmlError {
    /// The GPU itself is gone (fell off the bus, was removed or reset).
    pub(crate) fn gpu_lost(&self) -> bool {
        matches!(self.code, ERROR_GPU_IS_LOST | ERROR_GPU_NOT_FOUND)
    }

    /// The driver under the library is gone or changed: unload and start again later.
    pub(crate) fn driver_gone(&self) -> bool {
        matches!(
            self.code,
            ERROR_UNINITIALIZED | ERROR_DRIVER_NOT_LOADED | ERROR_LIB_RM_VERSION_MISMATCH
        )
    }
}

/// What the sampler needs from NVML; [`Nvml`] is the real library, tests use a scripted one.
pub(crate) trait Backend {
    fn device_count(&self) -> Result<u32, NvmlError>;
    /// An opaque handle (stable while the library stays initialised).
    fn handle(&self, index: u32) -> Result<usize, NvmlError>;
    /// Name, UUID and PCI bus id.
    fn identity(
        &self,
        handle: usize,
    ) -> Result<(String, String, Option<String>, Option<u64>), NvmlError>;
    fn driver_version(&self) -> Option<String>;
    /// The changing values; calls that fail are listed, the reading holds what succeeded.
    fn reading(&self, handle: usize) -> (GpuReading, Vec<NvmlError>);
}

type FnVoid = unsafe extern "C" fn() -> Ret;
type FnErrStr = unsafe extern "C" fn(Ret) -> *const c_char;
type FnCount = unsafe extern "C" fn(*mut c_uint) -> Ret;
type FnHandle = unsafe extern "C" fn(c_uint, *mut Device) -> Ret;
type FnStr = unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret;
type FnPci = unsafe extern "C" fn(Device, *mut PciInfo) -> Ret;
type FnMemV1 = unsafe extern "C" fn(Device, *mut MemoryV1) -> Ret;
type FnMemV2 = unsafe extern "C" fn(Device, *mut MemoryV2) -> Ret;
type FnUtil = unsafe extern "C" fn(Device, *mut Utilization) -> Ret;
type FnTemp = unsafe extern "C" fn(Device, c_int, *mut c_uint) -> Ret;
type FnUint = unsafe extern "C" fn(Device, *mut c_uint) -> Ret;
type FnDriver = unsafe extern "C" fn(*mut c_char, c_uint) -> Ret;

/// The loaded and initialised library. Function pointers stay valid while `_lib` lives.
pub(crate) struct Nvml {
    shutdown: FnVoid,
    error_string: Option<FnErrStr>,
    count: FnCount,
    handle_by_index: FnHandle,
    name: FnStr,
    uuid: Option<FnStr>,
    pci: Option<FnPci>,
    mem_v2: Option<FnMemV2>,
    mem_v1: Option<FnMemV1>,
    util: Option<FnUtil>,
    temp: Option<FnTemp>,
    power: Option<FnUint>,
    driver: Option<FnDriver>,
    /// Whether `nvmlInit_v2` succeeded (and `nvmlShutdown` is owed on drop).
    initialized: bool,
    _lib: Library,
}

// SAFETY: NVML is documented thread-safe; the struct only holds function pointers into a library
// that lives as long as it does.
unsafe impl Send for Nvml {}

/// Why NVML could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum LoadError {
    /// No driver library on this host: the normal case on nodes without NVIDIA GPUs.
    #[error("{0}: not found ({1})")]
    NotFound(String, String),
    #[error("{lib}: {symbol} missing")]
    Symbol { lib: String, symbol: &'static str },
    #[error(transparent)]
    Init(NvmlError),
}

/// Library names tried in order: the versioned soname the driver installs, then the dev link.
pub(crate) const LIBRARY_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

fn c_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

impl Nvml {
    /// Opens the library (`path` when given, else [`LIBRARY_NAMES`]) and calls `nvmlInit_v2`.
    pub(crate) fn load(path: Option<&str>) -> Result<Nvml, LoadError> {
        let names: Vec<&str> = match path {
            Some(p) => vec![p],
            None => LIBRARY_NAMES.to_vec(),
        };
        let mut last = String::new();
        let mut found = None;
        for name in &names {
            // SAFETY: loading NVML runs its initialisers, which only set up the library.
            match unsafe { Library::new(name) } {
                Ok(lib) => {
                    found = Some((name.to_string(), lib));
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let Some((name, lib)) = found else {
            return Err(LoadError::NotFound(names.join(", "), last));
        };
        // SAFETY (all `sym` calls): the types are those nvml.h declares for these symbols.
        unsafe fn sym<T: Copy>(lib: &Library, symbol: &[u8]) -> Option<T> {
            unsafe { lib.get::<T>(symbol).ok().map(|s| *s) }
        }
        let need = |symbol: &'static str| LoadError::Symbol {
            lib: name.clone(),
            symbol,
        };
        unsafe {
            let init: FnVoid = sym(&lib, b"nvmlInit_v2\0").ok_or_else(|| need("nvmlInit_v2"))?;
            let mut nvml = Nvml {
                shutdown: sym(&lib, b"nvmlShutdown\0").ok_or_else(|| need("nvmlShutdown"))?,
                error_string: sym(&lib, b"nvmlErrorString\0"),
                count: sym(&lib, b"nvmlDeviceGetCount_v2\0")
                    .ok_or_else(|| need("nvmlDeviceGetCount_v2"))?,
                handle_by_index: sym(&lib, b"nvmlDeviceGetHandleByIndex_v2\0")
                    .ok_or_else(|| need("nvmlDeviceGetHandleByIndex_v2"))?,
                name: sym(&lib, b"nvmlDeviceGetName\0").ok_or_else(|| need("nvmlDeviceGetName"))?,
                uuid: sym(&lib, b"nvmlDeviceGetUUID\0"),
                pci: sym(&lib, b"nvmlDeviceGetPciInfo_v3\0")
                    .or_else(|| sym(&lib, b"nvmlDeviceGetPciInfo_v2\0")),
                mem_v2: sym(&lib, b"nvmlDeviceGetMemoryInfo_v2\0"),
                mem_v1: sym(&lib, b"nvmlDeviceGetMemoryInfo\0"),
                util: sym(&lib, b"nvmlDeviceGetUtilizationRates\0"),
                temp: sym(&lib, b"nvmlDeviceGetTemperature\0"),
                power: sym(&lib, b"nvmlDeviceGetPowerUsage\0"),
                driver: sym(&lib, b"nvmlSystemGetDriverVersion\0"),
                initialized: false,
                _lib: lib,
            };
            let rc = init();
            if rc != SUCCESS {
                return Err(LoadError::Init(nvml.error("nvmlInit_v2", rc)));
            }
            nvml.initialized = true;
            Ok(nvml)
        }
    }

    fn error(&self, call: &'static str, code: Ret) -> NvmlError {
        let message = self
            .error_string
            // SAFETY: nvmlErrorString returns a static NUL-terminated string (or NULL).
            .map(|f| unsafe { f(code) })
            .filter(|p| !p.is_null())
            .map(|p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .unwrap_or_else(|| "error".into());
        NvmlError {
            call,
            code,
            message,
        }
    }

    fn check(&self, call: &'static str, rc: Ret) -> Result<(), NvmlError> {
        if rc == SUCCESS {
            Ok(())
        } else {
            Err(self.error(call, rc))
        }
    }

    fn device(handle: usize) -> Device {
        handle as Device
    }

    fn string(
        &self,
        call: &'static str,
        f: FnStr,
        handle: usize,
        len: usize,
    ) -> Result<String, NvmlError> {
        let mut buf = vec![0 as c_char; len];
        // SAFETY: the buffer is `len` bytes, as the call is told.
        let rc = unsafe { f(Self::device(handle), buf.as_mut_ptr(), len as c_uint) };
        self.check(call, rc)?;
        Ok(c_string(&buf))
    }

    /// Total, used: `_v2` when the driver has it (matches `nvidia-smi`), else v1.
    fn memory(&self, handle: usize) -> Result<Option<(u64, u64)>, NvmlError> {
        if let Some(f) = self.mem_v2 {
            let mut m = MemoryV2 {
                version: MEMORY_V2_VERSION,
                ..Default::default()
            };
            // SAFETY: `m` is an nvmlMemory_v2_t with its version set.
            let rc = unsafe { f(Self::device(handle), &mut m) };
            match rc {
                SUCCESS => return Ok(Some((m.total, m.used))),
                ERROR_FUNCTION_NOT_FOUND
                | ERROR_ARGUMENT_VERSION_MISMATCH
                | ERROR_NOT_SUPPORTED => {}
                _ => return Err(self.error("nvmlDeviceGetMemoryInfo_v2", rc)),
            }
        }
        let Some(f) = self.mem_v1 else {
            return Ok(None);
        };
        let mut m = MemoryV1::default();
        // SAFETY: `m` is an nvmlMemory_t.
        let rc = unsafe { f(Self::device(handle), &mut m) };
        match rc {
            SUCCESS => Ok(Some((m.total, m.used))),
            ERROR_NOT_SUPPORTED => Ok(None),
            _ => Err(self.error("nvmlDeviceGetMemoryInfo", rc)),
        }
    }
}

/// Maps "not supported" to `None`, keeps other failures.
fn optional<T>(r: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code == ERROR_NOT_SUPPORTED || e.code == ERROR_FUNCTION_NOT_FOUND => Ok(None),
        Err(e) => Err(e),
    }
}

/// Values as NVML returns them, before conversion.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RawReading {
    /// Total and used device memory, bytes (`nvmlMemory_v2_t`, used without the driver's reservation).
    pub(crate) memory: Option<(u64, u64)>,
    /// `nvmlUtilization_t.gpu`, percent of the last sample period a kernel ran.
    pub(crate) utilization_gpu: Option<u32>,
    /// Degrees Celsius.
    pub(crate) temperature: Option<u32>,
    /// Milliwatts.
    pub(crate) power_mw: Option<u32>,
}

/// NVML units to the metric units: bytes stay bytes, percent to a 0–1 share, mW to W.
pub(crate) fn map_reading(raw: RawReading) -> GpuReading {
    GpuReading {
        utilization: raw.utilization_gpu.map(|u| f64::from(u.min(100)) / 100.0),
        memory_total: raw.memory.map(|(t, _)| t),
        memory_used: raw.memory.map(|(_, u)| u),
        temperature_c: raw.temperature.map(f64::from),
        power_w: raw.power_mw.map(|mw| f64::from(mw) / 1000.0),
    }
}

impl Backend for Nvml {
    fn device_count(&self) -> Result<u32, NvmlError> {
        let mut n: c_uint = 0;
        // SAFETY: out-pointer to a c_uint.
        let rc = unsafe { (self.count)(&mut n) };
        self.check("nvmlDeviceGetCount_v2", rc)?;
        Ok(n)
    }

    fn handle(&self, index: u32) -> Result<usize, NvmlError> {
        let mut d: Device = std::ptr::null_mut();
        // SAFETY: out-pointer to an nvmlDevice_t.
        let rc = unsafe { (self.handle_by_index)(index, &mut d) };
        self.check("nvmlDeviceGetHandleByIndex_v2", rc)?;
        Ok(d as usize)
    }

    fn identity(
        &self,
        handle: usize,
    ) -> Result<(String, String, Option<String>, Option<u64>), NvmlError> {
        let name = self.string("nvmlDeviceGetName", self.name, handle, NAME_LEN)?;
        let uuid = match self.uuid {
            Some(f) => optional(self.string("nvmlDeviceGetUUID", f, handle, UUID_LEN))?,
            None => None,
        };
        let bus_id = match self.pci {
            Some(f) => {
                // SAFETY: PciInfo is plain data; all-zero is a valid value.
                let mut p: PciInfo = unsafe { std::mem::zeroed() };
                let rc = unsafe { f(Self::device(handle), &mut p) };
                optional(
                    self.check("nvmlDeviceGetPciInfo", rc)
                        .map(|_| c_string(&p.bus_id)),
                )?
                .filter(|s| !s.is_empty())
            }
            None => None,
        };
        // The size is also read every cycle; a failure here must not hide the GPU.
        let total = self.memory(handle).ok().flatten().map(|(t, _)| t);
        Ok((name, uuid.unwrap_or_default(), bus_id, total))
    }

    fn driver_version(&self) -> Option<String> {
        let f = self.driver?;
        let mut buf = vec![0 as c_char; DRIVER_LEN];
        // SAFETY: the buffer is DRIVER_LEN bytes.
        let rc = unsafe { f(buf.as_mut_ptr(), DRIVER_LEN as c_uint) };
        (rc == SUCCESS)
            .then(|| c_string(&buf))
            .filter(|s| !s.is_empty())
    }

    fn reading(&self, handle: usize) -> (GpuReading, Vec<NvmlError>) {
        let mut raw = RawReading::default();
        let mut errors = Vec::new();
        let d = Self::device(handle);
        match optional(self.memory(handle)) {
            Ok(m) => raw.memory = m.flatten(),
            Err(e) => errors.push(e),
        }
        if let Some(f) = self.util {
            let mut u = Utilization::default();
            // SAFETY: out-pointer to an nvmlUtilization_t.
            let rc = unsafe { f(d, &mut u) };
            match optional(self.check("nvmlDeviceGetUtilizationRates", rc)) {
                Ok(ok) => raw.utilization_gpu = ok.map(|_| u.gpu),
                Err(e) => errors.push(e),
            }
        }
        if let Some(f) = self.temp {
            let mut t: c_uint = 0;
            // SAFETY: out-pointer to a c_uint.
            let rc = unsafe { f(d, TEMPERATURE_GPU, &mut t) };
            match optional(self.check("nvmlDeviceGetTemperature", rc)) {
                Ok(ok) => raw.temperature = ok.map(|_| t),
                Err(e) => errors.push(e),
            }
        }
        if let Some(f) = self.power {
            let mut mw: c_uint = 0;
            // SAFETY: out-pointer to a c_uint.
            let rc = unsafe { f(d, &mut mw) };
            match optional(self.check("nvmlDeviceGetPowerUsage", rc)) {
                Ok(ok) => raw.power_mw = ok.map(|_| mw),
                Err(e) => errors.push(e),
            }
        }
        (map_reading(raw), errors)
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        if self.initialized {
            // SAFETY: the library was initialised by `load`.
            unsafe {
                (self.shutdown)();
            }
        }
    }
}

/// One cached GPU.
struct Cached {
    index: u32,
    handle: usize,
    info: GpuInfo,
}

/// The NVIDIA part of the GPU sampler: the device cache over a [`Backend`].
pub(crate) struct NvidiaSampler<B: Backend> {
    pub(crate) backend: B,
    devices: Vec<Cached>,
    /// Set when the cache must be rebuilt (first use, a GPU lost, a GPU that failed to open).
    rescan: bool,
    driver_version: Option<String>,
}

/// What one NVIDIA pass gives: the GPUs measured, the errors (keyed for once-only reporting), and
/// whether the driver itself failed (the caller then unloads the library).
pub(crate) struct NvidiaPass {
    pub(crate) gpus: Vec<Gpu>,
    pub(crate) errors: Vec<(String, String)>,
    pub(crate) driver_gone: bool,
}

impl<B: Backend> NvidiaSampler<B> {
    pub(crate) fn new(backend: B) -> Self {
        NvidiaSampler {
            backend,
            devices: Vec::new(),
            rescan: true,
            driver_version: None,
        }
    }

    pub(crate) fn sample(&mut self) -> NvidiaPass {
        let mut pass = NvidiaPass {
            gpus: Vec::new(),
            errors: Vec::new(),
            driver_gone: false,
        };
        let count = match self.backend.device_count() {
            Ok(n) => n,
            Err(e) => {
                pass.driver_gone = e.driver_gone();
                pass.errors.push(("nvml".into(), e.to_string()));
                self.devices.clear();
                self.rescan = true;
                return pass;
            }
        };
        if self.rescan || count as usize != self.devices.len() {
            self.scan(count, &mut pass);
        }
        let mut lost = false;
        for dev in &self.devices {
            let (reading, errors) = self.backend.reading(dev.handle);
            let mut gone = false;
            for e in errors {
                gone |= e.gpu_lost();
                pass.driver_gone |= e.driver_gone();
                // A lost GPU keeps one key ("nvml gpu<index>") from the failed read through the
                // failed re-opens that follow, so it is reported once and cleared once.
                let key = if e.gpu_lost() {
                    format!("nvml gpu{}", dev.index)
                } else {
                    format!("nvml gpu{} {}", dev.index, e.call)
                };
                pass.errors
                    .push((key, format!("{} ({}): {e}", dev.info.name, dev.info.id)));
            }
            if gone {
                lost = true;
                continue;
            }
            let mut info = dev.info.clone();
            if reading.memory_total.is_some() {
                info.memory_total = reading.memory_total;
            }
            pass.gpus.push(Gpu { info, reading });
        }
        if lost {
            self.rescan = true;
            self.devices.clear();
        }
        pass
    }

    fn scan(&mut self, count: u32, pass: &mut NvidiaPass) {
        self.devices.clear();
        self.rescan = false;
        self.driver_version = self.backend.driver_version();
        for index in 0..count {
            let opened = self
                .backend
                .handle(index)
                .and_then(|h| self.backend.identity(h).map(|id| (h, id)));
            match opened {
                Ok((handle, (model, uuid, bus_id, total))) => {
                    let id = if !uuid.is_empty() {
                        uuid
                    } else {
                        bus_id.clone().unwrap_or_else(|| format!("nvidia{index}"))
                    };
                    self.devices.push(Cached {
                        index,
                        handle,
                        info: GpuInfo {
                            id,
                            name: format!("nvidia{index}"),
                            vendor: "NVIDIA".into(),
                            model,
                            bus_id: bus_id.map(|b| super::normalize_bus_id(&b)),
                            driver: "nvidia".into(),
                            driver_version: self.driver_version.clone(),
                            memory_total: total,
                            source: "nvml",
                        },
                    });
                }
                Err(e) => {
                    self.rescan = true;
                    pass.driver_gone |= e.driver_gone();
                    pass.errors.push((
                        format!("nvml gpu{index}"),
                        format!("GPU index {index}: {e}"),
                    ));
                }
            }
        }
        self.devices.sort_by_key(|d| d.index);
    }
}
