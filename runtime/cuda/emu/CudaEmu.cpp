// The CUDA emulator (see CudaEmu.h): kernels run one block at a time on the
// calling host thread, each CUDA thread a fiber with its own stack; a fiber
// runs until it reaches __syncthreads, a warp operation or its end, and the
// scheduler then runs the next lane of the same warp (warp-greedy, runBlock). Device memory is host memory between guard
// pages; cuBLAS is a plain reference GEMM with cuBLAS's argument checks.
#include "runtime/cuda/emu/CudaEmu.h"

#include "runtime/core/HalfFloat.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

// ------------------------------------------------------------------ fiber switch (x86-64 System V)
// emu_switch(from, to): saves the callee-saved registers, MXCSR and the x87 control word
// on the current stack, stores the stack pointer in *from, and resumes the stack `to`.
// A new fiber's stack is laid out so that the first switch "returns" into
// emu_fiber_start, which calls emu_fiber_main (and never returns).
extern "C" {
__attribute__((visibility("hidden"))) void emu_switch(void **from, void *to);
__attribute__((visibility("hidden"))) void emu_fiber_start();
__attribute__((visibility("hidden"))) void emu_fiber_main();
}
asm(R"(
  .text
  .globl emu_switch
  .hidden emu_switch
  .type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr 8(%rsp)
  fnstcw (%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr 8(%rsp)
  fldcw (%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch,.-emu_switch

  .globl emu_fiber_start
  .hidden emu_fiber_start
  .type emu_fiber_start,@function
emu_fiber_start:
  call emu_fiber_main
  ud2
  .size emu_fiber_start,.-emu_fiber_start
)");

namespace emu {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kStackBytes = 128 * 1024; // per CUDA thread; a guard page below each
constexpr int kMaxThreads = 1024;
constexpr size_t kDefaultShared = 48 * 1024, kOptinShared = 227 * 1024;
constexpr uint64_t kDeviceBytes = 16ull << 30;

enum State : int { kReady, kAtBarrier, kAtWarp, kDone };

struct Fiber {
  void *sp = nullptr;
  State state = kReady;
  uint3 index;
  int lane = 0, warp = 0;
};

struct Warp {
  uint64_t slots[2][32];
  unsigned generation = 0, arrived = 0, mask = 0, done = 0; // done: lanes that returned
  int kind = 0;
};

struct Allocation {
  char *map = nullptr;
  size_t mapBytes = 0, bytes = 0;
};

std::recursive_mutex &apiMutex() {
  static std::recursive_mutex *m = new std::recursive_mutex;
  return *m;
}

/// Everything about the launch in progress and the emulated device (guarded by apiMutex).
struct Emulator {
  // device memory: user start -> allocation
  std::map<uintptr_t, Allocation> allocations;
  uint64_t allocatedBytes = 0;
  std::set<CUstream_st *> streams;
  std::map<const void *, int> dynamicSharedLimit;
  // errors
  cudaError_t lastError = cudaSuccess;
  cudaError_t sticky = cudaSuccess;
  std::string detail; // of the latest error that has one
  cudaError_t detailFor = cudaSuccess;
  // the launch in progress
  bool inKernel = false;
  const char *kernel = "";
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  int current = -1, live = 0, atBarrier = 0, exited = 0, threads = 0;
  void *schedulerSp = nullptr;
  void (*invoke)(void *) = nullptr;
  void *context = nullptr;
  bool failed = false;
  std::vector<unsigned char> dynamicShared;
  std::vector<const void *> declaredShared; // static __shared__ variables poisoned in this block
  char *stacks = nullptr;
  bool reverse = false;
};
Emulator &E() {
  static Emulator *e = new Emulator;
  return *e;
}

cudaError_t fail(cudaError_t code, const std::string &detail) {
  Emulator &e = E();
  e.lastError = code;
  e.detail = detail;
  e.detailFor = code;
  return code;
}

std::string coords(const uint3 &v) { return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")"; }

// ------------------------------------------------------------------ device memory

/// The allocation holding [p, p + bytes), or null.
/// The allocation starting at or below p (start address and allocation), or null.
const std::pair<const uintptr_t, Allocation> *allocationBelow(uintptr_t a) {
  Emulator &e = E();
  auto it = e.allocations.upper_bound(a);
  return it == e.allocations.begin() ? nullptr : &*std::prev(it);
}
const Allocation *findAllocation(const void *p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const auto *below = allocationBelow(a);
  if (!below || a + bytes > below->first + below->second.bytes || a + bytes < a) return nullptr;
  return &below->second;
}
bool isDevice(const void *p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const auto *below = allocationBelow(a);
  return below && a < below->first + std::max<size_t>(below->second.bytes, 1);
}
std::string describe(const void *p) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%p", p);
  return buffer;
}
/// "" when [p, p + bytes) lies in one device allocation, else why not.
std::string checkDeviceRange(const void *p, size_t bytes, const char *what) {
  if (bytes == 0) return "";
  if (findAllocation(p, bytes)) return "";
  if (isDevice(p)) return std::string(what) + " " + describe(p) + " + " + std::to_string(bytes) + " bytes runs past the end of its device allocation";
  return std::string(what) + " " + describe(p) + " is not device memory";
}

// ------------------------------------------------------------------ faults
struct sigaction previousSegv, previousBus;

void onFault(int signal, siginfo_t *info, void *) {
  Emulator &e = E();
  if (e.inKernel && e.current >= 0) {
    const void *address = info->si_addr;
    const char *kind = "outside every device allocation";
    const uintptr_t a = reinterpret_cast<uintptr_t>(address);
    if (e.stacks && a >= reinterpret_cast<uintptr_t>(e.stacks) &&
        a < reinterpret_cast<uintptr_t>(e.stacks) + kMaxThreads * (kStackBytes + kPage))
      kind = "a thread's stack overflowed";
    else
      for (const auto &[start, alloc] : e.allocations)
        if (a >= reinterpret_cast<uintptr_t>(alloc.map) && a < reinterpret_cast<uintptr_t>(alloc.map) + alloc.mapBytes) {
          kind = a < start ? "before the start of a device allocation" : "past the end of a device allocation";
          break;
        }
    char message[512];
    const Fiber &f = e.fibers[size_t(e.current)];
    const int n = std::snprintf(message, sizeof message,
                                "CUDA emulator: kernel '%s' block (%u,%u,%u) thread (%u,%u,%u): invalid memory access at %p (%s)\n",
                                e.kernel, blockIdx.x, blockIdx.y, blockIdx.z, f.index.x, f.index.y, f.index.z, address, kind);
    if (n > 0) (void)!write(2, message, size_t(std::min(n, int(sizeof message) - 1)));
  }
  // Let the previous handler (or the default action) take the re-raised fault.
  sigaction(signal, signal == SIGSEGV ? &previousSegv : &previousBus, nullptr);
}

void installFaultHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_sigaction = onFault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previousSegv);
    sigaction(SIGBUS, &action, &previousBus);
  });
  // The handler runs on an alternate stack (a fiber's stack may be the one that overflowed).
  thread_local bool haveAltStack = false;
  if (!haveAltStack) {
    stack_t s{};
    s.ss_size = 64 * 1024;
    s.ss_sp = std::malloc(s.ss_size);
    if (s.ss_sp && sigaltstack(&s, nullptr) == 0) haveAltStack = true;
  }
}

// ------------------------------------------------------------------ scheduling

Fiber &me() { return E().fibers[size_t(E().current)]; }

void yieldToScheduler() {
  Emulator &e = E();
  emu_switch(&me().sp, e.schedulerSp);
}

/// Stops the kernel: records why (naming the kernel, block and thread) and leaves the fiber for good.
[[noreturn]] void abandon(const std::string &why) {
  Emulator &e = E();
  const Fiber &f = me();
  fail(cudaErrorLaunchFailure, "kernel '" + std::string(e.kernel) + "' block " + coords(blockIdx) + " thread " + coords(f.index) + ": " + why);
  e.failed = true;
  yieldToScheduler();
  std::abort(); // never resumed
}

char *stackOf(int t) { return E().stacks + size_t(t) * (kStackBytes + kPage) + kPage; }

void prepareFiber(int t) {
  Emulator &e = E();
  Fiber &f = e.fibers[size_t(t)];
  char *top = stackOf(t) + kStackBytes;
  auto *sp = reinterpret_cast<uint64_t *>(top - 88); // see emu_switch: 16 bytes of control words, 6 registers, return address
  std::memset(sp, 0, 88);
  *reinterpret_cast<uint16_t *>(sp) = 0x037F;            // x87 control word: default
  *reinterpret_cast<uint32_t *>(sp + 1) = 0x1F80;        // MXCSR: round to nearest, no flush to zero (as the GPU's fp32)
  sp[8] = reinterpret_cast<uint64_t>(&emu_fiber_start);
  f.sp = sp;
  f.state = kReady;
  const unsigned bx = blockDim.x, by = blockDim.y;
  f.index = uint3{unsigned(t) % bx, unsigned(t) / bx % by, unsigned(t) / (bx * by)};
  f.lane = t % 32;
  f.warp = t / 32;
}

bool runBlock() {
  Emulator &e = E();
  const int n = e.threads;
  e.declaredShared.clear();
  if (!e.dynamicShared.empty()) std::memset(e.dynamicShared.data(), 0xFF, e.dynamicShared.size());
  for (int t = 0; t < n; ++t) prepareFiber(t);
  for (Warp &w : e.warps) w.generation = 0, w.arrived = 0, w.mask = 0, w.done = 0, w.kind = 0;
  e.live = n, e.atBarrier = 0, e.exited = 0;
  // Warp-greedy: the first warp with a ready lane runs until none of its lanes can go on
  // (all at __syncthreads or returned), then the scheduler starts again from the first
  // warp. A warp thus races ahead of the others as far as the barriers allow, which
  // exposes shared memory overwritten before slower warps read it.
  const int warps = int(e.warps.size());
  while (e.live > 0) {
    bool ran = false;
    for (int wi = 0; wi < warps && !ran; ++wi) {
      const int w = e.reverse ? warps - 1 - wi : wi, lanes = std::min(32, n - w * 32);
      for (bool any = true; any;) {
        any = false;
        for (int li = 0; li < lanes; ++li) {
          const int t = w * 32 + (e.reverse ? lanes - 1 - li : li);
          Fiber &f = e.fibers[size_t(t)];
          if (f.state != kReady) continue;
          any = ran = true;
          e.current = t;
          threadIdx = f.index;
          emu_switch(&e.schedulerSp, f.sp);
          if (e.failed) return false;
        }
      }
    }
    if (!ran && e.live > 0) {
      int barrier = 0, warp = 0;
      for (int t = 0; t < n; ++t) barrier += e.fibers[size_t(t)].state == kAtBarrier, warp += e.fibers[size_t(t)].state == kAtWarp;
      e.current = -1;
      fail(cudaErrorLaunchFailure, "kernel '" + std::string(e.kernel) + "' block " + coords(blockIdx) + ": deadlock: " +
                                       std::to_string(barrier) + " threads wait at __syncthreads, " + std::to_string(warp) +
                                       " lanes wait at warp operations, " + std::to_string(e.exited) + " returned");
      return false;
    }
  }
  e.current = -1;
  return true;
}

} // namespace

// ------------------------------------------------------------------ device intrinsics

void syncThreads() {
  Emulator &e = E();
  if (e.exited > 0)
    abandon("__syncthreads after " + std::to_string(e.exited) + " of the block's " + std::to_string(e.threads) +
            " threads returned (every thread of the block must reach it)");
  me().state = kAtBarrier;
  if (++e.atBarrier == e.live) {
    for (Fiber &f : e.fibers)
      if (f.state == kAtBarrier) f.state = kReady;
    e.atBarrier = 0;
    return;
  }
  yieldToScheduler();
}

namespace {
[[noreturn]] void warpError(ShuffleKind kind, unsigned mask, const std::string &what) {
  static const char *names[] = {"", "__shfl_xor_sync", "__shfl_up_sync", "__shfl_sync", "__syncwarp"};
  char maskText[16];
  std::snprintf(maskText, sizeof maskText, "0x%08x", mask);
  abandon(std::string(names[kind]) + " with mask " + maskText + " " + what);
}
} // namespace

uint64_t shuffle(ShuffleKind kind, unsigned mask, uint64_t bits, int operand, int width) {
  Emulator &e = E();
  Fiber &self = me();
  Warp &w = e.warps[size_t(self.warp)];
  const int lanes = std::min(32, e.threads - self.warp * 32);
  const unsigned present = lanes == 32 ? 0xFFFFFFFFu : (1u << lanes) - 1;
  if (mask & ~present)
    warpError(kind, mask, "names lanes this warp does not have (the block has " + std::to_string(e.threads) + " threads)");
  if (!(mask >> self.lane & 1)) warpError(kind, mask, "leaves out the calling lane " + std::to_string(self.lane));
  if (width < 1 || width > 32 || (width & (width - 1))) warpError(kind, mask, "and width " + std::to_string(width));
  if (mask & w.done) warpError(kind, mask, "after lanes of the mask returned");
  if (w.arrived == 0) {
    w.mask = mask, w.kind = kind;
  } else if (w.mask != mask || w.kind != kind) {
    warpError(kind, mask, "in warp " + std::to_string(self.warp) + " while other lanes wait at a different warp operation");
  }
  const int slot = int(w.generation & 1);
  w.slots[slot][self.lane] = bits;
  w.arrived |= 1u << self.lane;
  if (w.arrived == mask) {
    ++w.generation;
    w.arrived = 0;
    for (int l = 0; l < lanes; ++l)
      if (Fiber &f = e.fibers[size_t(self.warp * 32 + l)]; (mask >> l & 1) && f.state == kAtWarp) f.state = kReady;
  } else {
    self.state = kAtWarp;
    yieldToScheduler();
  }
  if (kind == kSyncWarp) return 0;
  const int base = self.lane & ~(width - 1);
  int source = self.lane;
  if (kind == kShflXor) {
    source = self.lane ^ (operand & 31);
    if (source >= base + width) source = self.lane; // a later group: own value
  } else if (kind == kShflUp) {
    source = self.lane - operand;
    if (source < base) source = self.lane;
  } else {
    source = base + (operand & (width - 1));
  }
  if (!(mask >> source & 1)) warpError(kind, mask, "reads lane " + std::to_string(source) + ", which is not in the mask");
  return w.slots[slot][source];
}

void syncWarp(unsigned mask) { shuffle(kSyncWarp, mask, 0, 0, 32); }

void misaligned(const void *p, unsigned bytes, const char *what) {
  abandon(std::string(what) + " of " + describe(p) + ", which is not " + std::to_string(bytes) + "-byte aligned");
}

void *dynamicShared() {
  Emulator &e = E();
  return e.dynamicShared.empty() ? nullptr : e.dynamicShared.data();
}

void sharedDeclared(void *address, size_t bytes) {
  Emulator &e = E();
  for (const void *p : e.declaredShared)
    if (p == address) return;
  e.declaredShared.push_back(address);
  std::memset(address, 0xFF, bytes);
}

cudaError_t setFunctionAttribute(const void *kernel, cudaFuncAttribute attribute, int value) {
  std::lock_guard<std::recursive_mutex> lock(apiMutex());
  if (E().sticky != cudaSuccess) return E().sticky;
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize) return fail(cudaErrorInvalidValue, "unsupported function attribute");
  if (value < 0 || size_t(value) > kOptinShared)
    return fail(cudaErrorInvalidValue, "dynamic shared memory of " + std::to_string(value) + " bytes (the device allows " +
                                           std::to_string(kOptinShared) + ")");
  E().dynamicSharedLimit[kernel] = value;
  return cudaSuccess;
}

void runKernel(const char *name, const void *address, const LaunchConfig &config, void (*invoke)(void *), void *context) {
  std::lock_guard<std::recursive_mutex> lock(apiMutex());
  Emulator &e = E();
  if (e.sticky != cudaSuccess) {
    e.lastError = e.sticky;
    return;
  }
  const dim3 g = config.grid, b = config.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (threads == 0 || threads > uint64_t(kMaxThreads) || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7FFFFFFFu ||
      g.y > 65535 || g.z > 65535) {
    fail(cudaErrorInvalidConfiguration, std::string("kernel '") + name + "' launched with grid " + coords(uint3{g.x, g.y, g.z}) +
                                            " and block " + coords(uint3{b.x, b.y, b.z}));
    return;
  }
  if (config.sharedBytes > kDefaultShared) {
    auto it = address ? e.dynamicSharedLimit.find(address) : e.dynamicSharedLimit.end();
    if (it == e.dynamicSharedLimit.end() || size_t(it->second) < config.sharedBytes) {
      fail(cudaErrorInvalidValue, std::string("kernel '") + name + "' asks for " + std::to_string(config.sharedBytes) +
                                      " bytes of dynamic shared memory without cudaFuncSetAttribute allowing them");
      return;
    }
  }
  if (config.stream && !e.streams.count(config.stream)) {
    fail(cudaErrorInvalidResourceHandle, std::string("kernel '") + name + "' launched on a stream that does not exist");
    return;
  }
  installFaultHandler();
  if (!e.stacks) {
    const size_t bytes = size_t(kMaxThreads) * (kStackBytes + kPage);
    void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      fail(cudaErrorMemoryAllocation, "no memory for the emulator's thread stacks");
      return;
    }
    e.stacks = static_cast<char *>(p);
    for (int t = 0; t < kMaxThreads; ++t) mprotect(e.stacks + size_t(t) * (kStackBytes + kPage), kPage, PROT_NONE);
    const char *order = std::getenv("LATHE_CUDA_EMU_ORDER");
    e.reverse = order && std::string(order) == "reverse";
  }
  e.kernel = name;
  e.invoke = invoke;
  e.context = context;
  e.threads = int(threads);
  e.fibers.resize(size_t(threads)); // every field is set by prepareFiber, every warp reset by runBlock
  e.warps.resize(size_t((threads + 31) / 32));
  e.dynamicShared.resize(config.sharedBytes); // filled with 0xFF per block
  e.failed = false;
  gridDim = g, blockDim = b;
  e.inKernel = true;
  const uint64_t blocks = uint64_t(g.x) * g.y * g.z;
  for (uint64_t i = 0; i < blocks; ++i) {
    const uint64_t l = e.reverse ? blocks - 1 - i : i;
    blockIdx = uint3{unsigned(l % g.x), unsigned(l / g.x % g.y), unsigned(l / (uint64_t(g.x) * g.y))};
    if (!runBlock()) {
      e.sticky = cudaErrorLaunchFailure;
      std::fprintf(stderr, "CUDA emulator: %s\n", e.detail.c_str());
      break;
    }
  }
  e.inKernel = false;
  e.kernel = "";
}

} // namespace emu

extern "C" void emu_fiber_main() {
  using namespace emu;
  Emulator &e = E();
  e.invoke(e.context);
  Fiber &self = me();
  self.state = kDone;
  --e.live;
  ++e.exited;
  e.warps[size_t(self.warp)].done |= 1u << self.lane;
  if (e.atBarrier > 0)
    abandon("returned while " + std::to_string(e.atBarrier) + " threads of the block wait at __syncthreads");
  const Warp &w = e.warps[size_t(self.warp)];
  if (w.arrived && (w.mask >> self.lane & 1))
    abandon("returned while lanes of its warp wait for it at a warp operation");
  yieldToScheduler();
  std::abort(); // a finished fiber is never resumed
}

// ------------------------------------------------------------------ runtime API
using emu::E;
using emu::apiMutex;
using Lock = std::lock_guard<std::recursive_mutex>;

namespace {
cudaError_t ok() { return cudaSuccess; }
/// The sticky error of a failed kernel, as every later call reports it on a real device.
bool broken(cudaError_t &status) {
  status = E().sticky;
  if (status != cudaSuccess) E().lastError = status;
  return status != cudaSuccess;
}
} // namespace

const char *cudaGetErrorString(cudaError_t status) {
  Lock lock(apiMutex());
  const char *name = "unknown error";
  switch (status) {
  case cudaSuccess: name = "no error"; break;
  case cudaErrorInvalidValue: name = "invalid argument"; break;
  case cudaErrorMemoryAllocation: name = "out of memory"; break;
  case cudaErrorInvalidConfiguration: name = "invalid configuration argument"; break;
  case cudaErrorInvalidDevicePointer: name = "invalid device pointer"; break;
  case cudaErrorInvalidMemcpyDirection: name = "invalid copy direction for memcpy"; break;
  case cudaErrorInvalidDevice: name = "invalid device ordinal"; break;
  case cudaErrorInvalidResourceHandle: name = "invalid resource handle"; break;
  case cudaErrorLaunchFailure: name = "unspecified launch failure"; break;
  }
  if (status == cudaSuccess || status != E().detailFor || E().detail.empty()) return name;
  static std::string text;
  text = std::string(name) + " (CUDA emulator: " + E().detail + ")";
  return text.c_str();
}
cudaError_t cudaGetLastError() {
  Lock lock(apiMutex());
  const cudaError_t s = E().lastError;
  E().lastError = E().sticky;
  return s;
}
cudaError_t cudaPeekAtLastError() {
  Lock lock(apiMutex());
  return E().lastError;
}
cudaError_t cudaGetDeviceCount(int *count) {
  *count = 1;
  return ok();
}
cudaError_t cudaSetDevice(int ordinal) { return ordinal == 0 ? ok() : emu::fail(cudaErrorInvalidDevice, "device " + std::to_string(ordinal)); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int ordinal) {
  if (ordinal != 0) return emu::fail(cudaErrorInvalidDevice, "device " + std::to_string(ordinal));
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "CUDA emulator (host CPU, not a GPU)");
  p->major = 9, p->minor = 0;
  p->totalGlobalMem = emu::kDeviceBytes;
  p->sharedMemPerBlock = emu::kDefaultShared, p->sharedMemPerBlockOptin = emu::kOptinShared;
  p->multiProcessorCount = 2; // small, so grid-stride loops take several turns
  p->maxThreadsPerBlock = emu::kMaxThreads, p->warpSize = 32, p->l2CacheSize = 1 << 20;
  return ok();
}
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attribute, int ordinal) {
  if (ordinal != 0) return emu::fail(cudaErrorInvalidDevice, "device " + std::to_string(ordinal));
  *value = attribute == cudaDevAttrMemoryClockRate ? 1000000 : attribute == cudaDevAttrGlobalMemoryBusWidth ? 64 : 0;
  return ok();
}
cudaError_t cudaDeviceSynchronize() {
  Lock lock(apiMutex());
  cudaError_t s;
  return broken(s) ? s : ok();
}
cudaError_t cudaMalloc(void **pointer, size_t bytes) {
  Lock lock(apiMutex());
  *pointer = nullptr;
  cudaError_t s;
  if (broken(s)) return s;
  if (bytes == 0) return ok();
  emu::Emulator &e = E();
  if (bytes > emu::kDeviceBytes - e.allocatedBytes)
    return emu::fail(cudaErrorMemoryAllocation, std::to_string(bytes) + " bytes with " + std::to_string(e.allocatedBytes) + " of " +
                                                    std::to_string(emu::kDeviceBytes) + " in use");
  // [guard page][slack][bytes rounded up to 256][guard page]: the end abuts a guard page.
  const size_t rounded = (bytes + 255) / 256 * 256, body = (rounded + emu::kPage - 1) / emu::kPage * emu::kPage;
  const size_t mapBytes = body + 2 * emu::kPage;
  void *m = mmap(nullptr, mapBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return emu::fail(cudaErrorMemoryAllocation, std::to_string(bytes) + " bytes: the host has no room");
  char *map = static_cast<char *>(m);
  mprotect(map + emu::kPage, body, PROT_READ | PROT_WRITE);
  char *user = map + emu::kPage + (body - rounded);
  std::memset(user, 0xFF, rounded); // fresh device memory is garbage; 0xFF reads as NaN or -1
  e.allocations[reinterpret_cast<uintptr_t>(user)] = emu::Allocation{map, mapBytes, bytes};
  e.allocatedBytes += bytes;
  *pointer = user;
  return ok();
}
cudaError_t cudaFree(void *pointer) {
  Lock lock(apiMutex());
  if (!pointer) return ok();
  emu::Emulator &e = E();
  auto it = e.allocations.find(reinterpret_cast<uintptr_t>(pointer));
  if (it == e.allocations.end())
    return emu::fail(cudaErrorInvalidDevicePointer, "cudaFree of " + emu::describe(pointer) + ", which cudaMalloc did not return");
  munmap(it->second.map, it->second.mapBytes);
  e.allocatedBytes -= it->second.bytes;
  e.allocations.erase(it);
  return ok();
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  Lock lock(apiMutex());
  cudaError_t s;
  if (broken(s)) return s;
  if (stream && !E().streams.count(stream)) return emu::fail(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync on a stream that does not exist");
  if (bytes == 0) return ok();
  if (kind == cudaMemcpyDefault)
    kind = emu::isDevice(src) ? (emu::isDevice(dst) ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                              : (emu::isDevice(dst) ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
  const bool srcDevice = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  const bool dstDevice = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice) return emu::fail(cudaErrorInvalidMemcpyDirection, "cudaMemcpy kind");
  for (int side = 0; side < 2; ++side) {
    const void *p = side ? dst : src;
    const bool device = side ? dstDevice : srcDevice;
    const char *what = side ? "cudaMemcpy destination" : "cudaMemcpy source";
    if (device) {
      if (std::string why = emu::checkDeviceRange(p, bytes, what); !why.empty()) return emu::fail(cudaErrorInvalidValue, why);
    } else if (emu::isDevice(p)) {
      return emu::fail(cudaErrorInvalidValue, std::string(what) + " " + emu::describe(p) + " is device memory, but the copy's kind says host");
    }
  }
  std::memmove(dst, src, bytes);
  return ok();
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) { return cudaMemcpyAsync(dst, src, bytes, kind, nullptr); }
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream) {
  Lock lock(apiMutex());
  cudaError_t s;
  if (broken(s)) return s;
  if (stream && !E().streams.count(stream)) return emu::fail(cudaErrorInvalidResourceHandle, "cudaMemsetAsync on a stream that does not exist");
  if (std::string why = emu::checkDeviceRange(dst, bytes, "cudaMemset destination"); !why.empty()) return emu::fail(cudaErrorInvalidValue, why);
  if (bytes) std::memset(dst, value, bytes);
  return ok();
}
cudaError_t cudaMemset(void *dst, int value, size_t bytes) { return cudaMemsetAsync(dst, value, bytes, nullptr); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned) {
  Lock lock(apiMutex());
  cudaError_t s;
  if (broken(s)) return s;
  *stream = reinterpret_cast<cudaStream_t>(new char[1]);
  E().streams.insert(*stream);
  return ok();
}
cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  Lock lock(apiMutex());
  if (!E().streams.erase(stream)) return emu::fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy of a stream that does not exist");
  delete[] reinterpret_cast<char *>(stream);
  return ok();
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  Lock lock(apiMutex());
  cudaError_t s;
  if (broken(s)) return s;
  if (stream && !E().streams.count(stream)) return emu::fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize of a stream that does not exist");
  return ok(); // work runs when it is queued
}
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
};
cudaError_t cudaEventCreate(cudaEvent_t *event) {
  *event = new CUevent_st{};
  return ok();
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return ok();
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  event->at = std::chrono::steady_clock::now();
  return ok();
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return ok(); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return ok();
}

// ------------------------------------------------------------------ cuBLAS
struct cublasContext {
  cudaStream_t stream = nullptr;
};
struct cublasLtContext {};

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t) { return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED; }
cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
  *handle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
  case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
  case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
  case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
  case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

namespace {

size_t elementBytes(cudaDataType_t t) {
  return t == CUDA_R_32F || t == CUDA_R_32I ? 4 : t == CUDA_R_16F || t == CUDA_R_16BF ? 2 : 1;
}
double loadElement(const void *p, cudaDataType_t t, int64_t i, bool tf32) {
  switch (t) {
  case CUDA_R_32F: {
    float v = static_cast<const float *>(p)[i];
    if (tf32 && std::isfinite(v)) { // cvt.rna.tf32.f32: 10 mantissa bits, ties away from zero
      uint32_t b = lathe::numeric::floatBits(v);
      v = lathe::numeric::bitsFloat((b + 0x1000u) & 0xFFFFE000u);
    }
    return v;
  }
  case CUDA_R_16F: return lathe::numeric::halfToFloat(static_cast<const uint16_t *>(p)[i]);
  case CUDA_R_16BF: return lathe::numeric::bf16ToFloat(static_cast<const uint16_t *>(p)[i]);
  case CUDA_R_8I: return static_cast<const int8_t *>(p)[i];
  case CUDA_R_32I: return static_cast<const int32_t *>(p)[i];
  }
  return 0;
}

/// Checks one operand of a GEMM: its leading dimension and that all of it lies in device memory.
cublasStatus_t checkOperand(const char *name, const void *p, cudaDataType_t t, int rows, int cols, int ld, std::string &why) {
  if (ld < std::max(1, rows)) {
    why = std::string("ld") + name + " = " + std::to_string(ld) + " below the " + std::to_string(rows) + " rows of " + name;
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (rows == 0 || cols == 0) return CUBLAS_STATUS_SUCCESS;
  const size_t bytes = (size_t(cols - 1) * size_t(ld) + size_t(rows)) * elementBytes(t);
  std::lock_guard<std::recursive_mutex> lock(apiMutex());
  if (std::string bad = emu::checkDeviceRange(p, bytes, name); !bad.empty()) {
    why = bad;
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t gemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *alpha,
                    const void *A, cudaDataType_t at, int lda, long long strideA, const void *B, cudaDataType_t bt, int ldb,
                    long long strideB, const void *beta, void *C, cudaDataType_t ct, int ldc, long long strideC, int batches,
                    cublasComputeType_t compute, const char *api) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  {
    Lock lock(apiMutex());
    if (E().sticky != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  auto reject = [&](cublasStatus_t s, const std::string &why) {
    std::fprintf(stderr, "CUDA emulator: %s: %s (%s)\n", api, why.c_str(), cublasGetStatusString(s));
    if (s == CUBLAS_STATUS_EXECUTION_FAILED) {
      Lock lock(apiMutex());
      E().sticky = cudaErrorLaunchFailure;
      emu::fail(cudaErrorLaunchFailure, std::string(api) + ": " + why);
    }
    return s;
  };
  if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T) || m < 0 || n < 0 || k < 0 || batches < 0)
    return reject(CUBLAS_STATUS_INVALID_VALUE, "bad operation or negative size");
  const bool real = compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  bool supported = false;
  if (real && at == CUDA_R_32F && bt == CUDA_R_32F && ct == CUDA_R_32F) supported = true;
  if (compute == CUBLAS_COMPUTE_32F && at == bt && (at == CUDA_R_16F || at == CUDA_R_16BF) && (ct == at || ct == CUDA_R_32F)) supported = true;
  if (compute == CUBLAS_COMPUTE_32I && at == CUDA_R_8I && bt == CUDA_R_8I && ct == CUDA_R_32I) supported = true;
  if (!supported) return reject(CUBLAS_STATUS_NOT_SUPPORTED, "this combination of operand and compute types");
  std::string why;
  const int aRows = ta == CUBLAS_OP_N ? m : k, aCols = ta == CUBLAS_OP_N ? k : m;
  const int bRows = tb == CUBLAS_OP_N ? k : n, bCols = tb == CUBLAS_OP_N ? n : k;
  // Batch b's operands.
  auto batchOf = [&](int b, const char *&pa, const char *&pb, char *&pc) {
    pa = static_cast<const char *>(A) + b * strideA * static_cast<long long>(elementBytes(at));
    pb = static_cast<const char *>(B) + b * strideB * static_cast<long long>(elementBytes(bt));
    pc = static_cast<char *>(C) + b * strideC * static_cast<long long>(elementBytes(ct));
  };
  for (int b = 0; b < batches; ++b) {
    const char *pa, *pb;
    char *pc;
    batchOf(b, pa, pb, pc);
    if (auto s = checkOperand("A", pa, at, aRows, k ? aCols : 0, lda, why); s != CUBLAS_STATUS_SUCCESS) return reject(s, why);
    if (auto s = checkOperand("B", pb, bt, bRows, k ? bCols : 0, ldb, why); s != CUBLAS_STATUS_SUCCESS) return reject(s, why);
    if (auto s = checkOperand("C", pc, ct, m, n, ldc, why); s != CUBLAS_STATUS_SUCCESS) return reject(s, why);
  }
  if (m == 0 || n == 0 || batches == 0) return CUBLAS_STATUS_SUCCESS;
  const bool integer = compute == CUBLAS_COMPUTE_32I, tf32 = compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  const double al = integer ? double(*static_cast<const int32_t *>(alpha)) : double(*static_cast<const float *>(alpha));
  const double be = integer ? double(*static_cast<const int32_t *>(beta)) : double(*static_cast<const float *>(beta));
  std::vector<double> a(size_t(m) * size_t(k)), bT(size_t(n) * size_t(k)); // op(A) rows, op(B) columns, each contiguous in k
  for (int batch = 0; batch < batches; ++batch) {
    const char *pa, *pb;
    char *pc;
    batchOf(batch, pa, pb, pc);
    for (int i = 0; i < m; ++i)
      for (int p = 0; p < k; ++p)
        a[size_t(i) * k + p] = loadElement(pa, at, ta == CUBLAS_OP_N ? int64_t(i) + int64_t(p) * lda : int64_t(p) + int64_t(i) * lda, tf32);
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p)
        bT[size_t(j) * k + p] = loadElement(pb, bt, tb == CUBLAS_OP_N ? int64_t(p) + int64_t(j) * ldb : int64_t(j) + int64_t(p) * ldb, tf32);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const double *x = &a[size_t(i) * k], *y = &bT[size_t(j) * k];
        double s[4] = {0, 0, 0, 0};
        int p = 0;
        for (; p + 4 <= k; p += 4) s[0] += x[p] * y[p], s[1] += x[p + 1] * y[p + 1], s[2] += x[p + 2] * y[p + 2], s[3] += x[p + 3] * y[p + 3];
        for (; p < k; ++p) s[0] += x[p] * y[p];
        double v = al * ((s[0] + s[1]) + (s[2] + s[3]));
        const int64_t at_ = int64_t(i) + int64_t(j) * ldc;
        if (be != 0.0) v += be * loadElement(pc, ct, at_, false); // beta == 0: C is not read (it may hold NaN)
        switch (ct) {
        case CUDA_R_32F: reinterpret_cast<float *>(pc)[at_] = float(v); break;
        case CUDA_R_16F: reinterpret_cast<uint16_t *>(pc)[at_] = lathe::numeric::floatToHalf(float(v)); break;
        case CUDA_R_16BF: reinterpret_cast<uint16_t *>(pc)[at_] = lathe::numeric::floatToBf16(float(v)); break;
        case CUDA_R_32I: reinterpret_cast<int32_t *>(pc)[at_] = int32_t(int64_t(v)); break;
        default: break;
        }
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}

} // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B, cudaDataType_t Btype,
                            int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t) {
  return gemm(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta, C, Ctype, ldc, 0, 1, computeType,
              "cublasGemmEx");
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda, long long strideA,
                                          const void *B, cudaDataType_t Btype, int ldb, long long strideB, const void *beta, void *C,
                                          cudaDataType_t Ctype, int ldc, long long strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t) {
  return gemm(handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB, beta, C, Ctype, ldc, strideC,
              batchCount, computeType, "cublasGemmStridedBatchedEx");
}
