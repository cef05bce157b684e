# Loads the GPU through the CUDA driver API (ctypes, no toolkit needed): allocates GiB of device
# memory and runs a PTX spin kernel (JIT-compiled by the driver) for SECONDS.
import ctypes, sys, time
GIB, SECONDS = int(sys.argv[1]), float(sys.argv[2])
cu = ctypes.CDLL("libcuda.so.1")
def ck(rc, what):
    if rc != 0:
        raise SystemExit(f"{what} failed: {rc}")
ck(cu.cuInit(0), "cuInit")
dev = ctypes.c_int(); ck(cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
ctx = ctypes.c_void_p(); ck(cu.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev), "cuCtxCreate")
mem = ctypes.c_uint64(); ck(cu.cuMemAlloc_v2(ctypes.byref(mem), ctypes.c_size_t(GIB << 30)), "cuMemAlloc")
ck(cu.cuMemsetD8_v2(mem, ctypes.c_ubyte(1), ctypes.c_size_t(GIB << 30)), "cuMemset")
ptx = b"""
.version 7.0
.target sm_70
.address_size 64
.visible .entry spin(.param .u64 n, .param .u64 out) {
  .reg .u64 %rd<6>;
  .reg .pred %p;
  ld.param.u64 %rd1, [n];
  ld.param.u64 %rd4, [out];
  mov.u64 %rd2, 0;
  mov.u64 %rd3, 7;
LOOP:
  mul.lo.u64 %rd3, %rd3, 6364136223846793005;
  add.u64 %rd3, %rd3, 1442695040888963407;
  add.u64 %rd2, %rd2, 1;
  setp.lt.u64 %p, %rd2, %rd1;
  @%p bra LOOP;
  st.global.u64 [%rd4], %rd3;
  ret;
}
\0"""
mod = ctypes.c_void_p(); ck(cu.cuModuleLoadData(ctypes.byref(mod), ctypes.c_char_p(ptx)), "cuModuleLoadData")
fn = ctypes.c_void_p(); ck(cu.cuModuleGetFunction(ctypes.byref(fn), mod, b"spin"), "cuModuleGetFunction")
n = ctypes.c_uint64(20_000_000); out = ctypes.c_uint64(mem.value)
params = (ctypes.c_void_p * 2)(ctypes.cast(ctypes.byref(n), ctypes.c_void_p), ctypes.cast(ctypes.byref(out), ctypes.c_void_p))
print("load: allocated", GIB, "GiB; spinning", SECONDS, "s", flush=True)
end = time.time() + SECONDS; launches = 0
while time.time() < end:
    ck(cu.cuLaunchKernel(fn, 528, 1, 1, 256, 1, 1, 0, None, params, None), "cuLaunchKernel")
    ck(cu.cuCtxSynchronize(), "cuCtxSynchronize"); launches += 1
print("load: done,", launches, "launches", flush=True)
