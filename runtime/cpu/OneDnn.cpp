#include "runtime/cpu/OneDnn.h"

#include "runtime/cpu/CpuFeatures.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <sys/mman.h>

// The matmul primitive's C API (types and declarations only: every function is
// looked up in the dlopen'ed library). A runtime built without the headers
// (the GPU machine's, which has no Debian packages) keeps dnnl_sgemm alone.
#if __has_include(<oneapi/dnnl/dnnl.h>)
#include <oneapi/dnnl/dnnl.h>
#define LATHE_DNNL_MATMUL 1
#endif

namespace lathe::cpu {

namespace {

// dnnl_version_t and the dnnl_cpu_isa_t values of oneDNN 2.x (dnnl_types.h).
struct DnnlVersion {
  int major, minor, patch;
  const char *hash;
  unsigned cpuRuntime, gpuRuntime;
};
constexpr int kDnnlIsaAvx2 = 0x7;

#ifdef LATHE_DNNL_MATMUL
#define LATHE_DNNL_FUNCTIONS(X)                                                                                        \
  X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_destroy) X(dnnl_memory_desc_init_by_strides)              \
  X(dnnl_matmul_desc_init) X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_query_md)                              \
  X(dnnl_primitive_desc_destroy) X(dnnl_primitive_create) X(dnnl_primitive_destroy) X(dnnl_primitive_execute)          \
  X(dnnl_stream_wait) X(dnnl_memory_create) X(dnnl_memory_destroy) X(dnnl_memory_desc_get_size)                       \
  X(dnnl_memory_desc_equal) X(dnnl_reorder_primitive_desc_create) X(dnnl_primitive_attr_create)                      \
  X(dnnl_primitive_attr_destroy) X(dnnl_primitive_attr_set_scratchpad_mode)
struct Api {
#define LATHE_DNNL_MEMBER(f) decltype(&::f) f = nullptr;
  LATHE_DNNL_FUNCTIONS(LATHE_DNNL_MEMBER)
#undef LATHE_DNNL_MEMBER
  dnnl_engine_t engine = nullptr;
};
#endif

struct Loaded {
  Sgemm sgemm;
  std::string error; // why it is not available
#ifdef LATHE_DNNL_MATMUL
  Api api;
  std::string apiError; // why the matmul primitive is not available
#endif
};

const Loaded &load() {
  static const Loaded loaded = [] {
    Loaded l;
    void *handle = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char *why = dlerror();
      l.error = std::string("libdnnl.so.2 does not load (") + (why ? why : "dlopen failed") + "); Debian: apt-get install libdnnl2";
      return l;
    }
    auto sgemm = reinterpret_cast<decltype(Sgemm::sgemm)>(dlsym(handle, "dnnl_sgemm"));
    auto version = reinterpret_cast<const DnnlVersion *(*)()>(dlsym(handle, "dnnl_version"));
    auto maxIsa = reinterpret_cast<int (*)(int)>(dlsym(handle, "dnnl_set_max_cpu_isa"));
    if (!sgemm || !version) {
      l.error = "libdnnl.so.2 has no dnnl_sgemm/dnnl_version";
      return l;
    }
    const DnnlVersion *v = version();
    if (!v || v->major < 2) {
      l.error = "libdnnl.so.2 is older than oneDNN 2";
      return l;
    }
    // LATHE_ISA_MAX=avx2 caps oneDNN too, before its first primitive (so this
    // machine can pose as one without AVX-512); =baseline never uses it.
    if (!cpuRunsLevel("avx512") && cpuRunsLevel("avx2") && maxIsa) maxIsa(kDnnlIsaAvx2);
    l.sgemm.sgemm = sgemm;
    // oneDNN's OpenMP runtime is loaded with it (libgomp): found through the same handle's dependencies.
    l.sgemm.setThreads = reinterpret_cast<void (*)(int)>(dlsym(handle, "omp_set_num_threads"));
    l.sgemm.name = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
#ifdef LATHE_DNNL_MATMUL
    if (v->major != DNNL_VERSION_MAJOR) {
      l.apiError = "libdnnl.so.2 is oneDNN " + std::to_string(v->major) + ", the headers " + std::to_string(DNNL_VERSION_MAJOR);
      return l;
    }
#define LATHE_DNNL_LOOKUP(f)                                                                                           \
    l.api.f = reinterpret_cast<decltype(&::f)>(dlsym(handle, #f));                                                     \
    if (!l.api.f && l.apiError.empty()) l.apiError = "libdnnl.so.2 has no " #f;
    LATHE_DNNL_FUNCTIONS(LATHE_DNNL_LOOKUP)
#undef LATHE_DNNL_LOOKUP
    if (l.apiError.empty() && l.api.dnnl_engine_create(&l.api.engine, dnnl_cpu, 0) != dnnl_success)
      l.apiError = "oneDNN has no CPU engine";
#endif
    return l;
  }();
  return loaded;
}

/// auto | own | onednn, or "" with `error` for another value.
std::string mode(std::string &error) {
  const char *env = std::getenv("LATHE_GEMM");
  std::string m = env && *env ? env : "auto";
  if (m != "auto" && m != "own" && m != "onednn") {
    error = "LATHE_GEMM is '" + m + "'; expected auto, own or onednn";
    return "";
  }
  return m;
}

} // namespace

const Sgemm *sgemmFor(const char *level, std::string &error) {
  const std::string m = mode(error);
  if (m.empty() || m == "own") return nullptr;
  const bool best = std::strcmp(level, "baseline") != 0 && !(std::strcmp(level, "avx2") == 0 && cpuRunsLevel("avx512"));
  if (!best) {
    if (m == "onednn") error = std::string("LATHE_GEMM=onednn needs the best instruction-set level this CPU runs, not ") + level;
    return nullptr;
  }
  const Loaded &l = load();
  if (!l.error.empty()) {
    if (m == "onednn") error = "LATHE_GEMM=onednn: " + l.error;
    return nullptr;
  }
  return &l.sgemm;
}

#ifdef LATHE_DNNL_MATMUL
namespace {
/// The matmul x [m, k] · B [k, nc] (+ bias [1, nc]) -> y [m, nc] (dense),
/// weights in oneDNN's choice of layout ("any").
bool matmulDesc(const Api &api, int64_t m, int64_t k, int64_t nc, bool bias, dnnl_primitive_desc_t &pd) {
  dnnl_memory_desc_t src, wts, dst, b;
  dnnl_dims_t srcDims = {m, k}, srcStrides = {k, 1}, dstDims = {m, nc}, dstStrides = {nc, 1}, bDims = {1, nc},
              bStrides = {nc, 1};
  if (api.dnnl_memory_desc_init_by_strides(&src, 2, srcDims, dnnl_f32, srcStrides) != dnnl_success ||
      api.dnnl_memory_desc_init_by_strides(&dst, 2, dstDims, dnnl_f32, dstStrides) != dnnl_success ||
      api.dnnl_memory_desc_init_by_strides(&b, 2, bDims, dnnl_f32, bStrides) != dnnl_success)
    return false;
  // format "any" (dnnl_memory_desc_init_by_tag is not looked up: filled by hand).
  std::memset(&wts, 0, sizeof wts);
  wts.ndims = 2;
  wts.dims[0] = wts.padded_dims[0] = k;
  wts.dims[1] = wts.padded_dims[1] = nc;
  wts.data_type = dnnl_f32;
  wts.format_kind = dnnl_format_kind_any;
  dnnl_matmul_desc_t desc;
  if (api.dnnl_matmul_desc_init(&desc, &src, &wts, bias ? &b : nullptr, &dst) != dnnl_success) return false;
  // Scratch memory is ours (per thread, DNNL_ARG_SCRATCHPAD): the library's own
  // is shared by every thread unless oneDNN was built for concurrent execution,
  // and pool threads run primitives at once.
  dnnl_primitive_attr_t attr = nullptr;
  if (api.dnnl_primitive_attr_create(&attr) != dnnl_success) return false;
  bool ok = api.dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
            api.dnnl_primitive_desc_create(&pd, &desc, attr, api.engine, nullptr) == dnnl_success;
  api.dnnl_primitive_attr_destroy(attr);
  return ok;
}

/// oneDNN's layout for W's rows [n0, n0 + nc) as B [k, nc] (in `md`), and
/// those rows reordered into it at `dst` (null: only the layout and its size).
bool packRows(const Api &api, dnnl_stream_t stream, const float *w, int64_t k, int64_t n0, int64_t nc,
              dnnl_memory_desc_t &md, float *dst) {
  dnnl_primitive_desc_t pd = nullptr;
  if (!matmulDesc(api, 128, k, nc, false, pd)) return false;
  md = *api.dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  api.dnnl_primitive_desc_destroy(pd);
  if (!dst) return true;
  dnnl_memory_desc_t plainMd;
  dnnl_dims_t dims = {k, nc}, strides = {1, k}; // W's rows are B's columns
  dnnl_memory_t plain = nullptr, packed = nullptr;
  dnnl_primitive_desc_t rpd = nullptr;
  dnnl_primitive_t reorder = nullptr;
  bool ok = api.dnnl_memory_desc_init_by_strides(&plainMd, 2, dims, dnnl_f32, strides) == dnnl_success &&
            api.dnnl_memory_create(&plain, &plainMd, api.engine, const_cast<float *>(w + n0 * k)) == dnnl_success &&
            api.dnnl_memory_create(&packed, &md, api.engine, dst) == dnnl_success &&
            api.dnnl_reorder_primitive_desc_create(&rpd, &plainMd, api.engine, &md, api.engine, nullptr) == dnnl_success &&
            api.dnnl_primitive_create(&reorder, rpd) == dnnl_success;
  if (ok) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, packed}};
    ok = api.dnnl_primitive_execute(reorder, stream, 2, args) == dnnl_success && api.dnnl_stream_wait(stream) == dnnl_success;
  }
  if (reorder) api.dnnl_primitive_destroy(reorder);
  if (rpd) api.dnnl_primitive_desc_destroy(rpd);
  if (plain) api.dnnl_memory_destroy(plain);
  if (packed) api.dnnl_memory_destroy(packed);
  return ok;
}

float *alignedFloats(size_t bytes) { return static_cast<float *>(std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64)); }
} // namespace
#endif

WeightArena::~WeightArena() {
  for (auto &[p, size] : blocks_) std::free(p);
}

float *WeightArena::take(size_t bytes) {
  constexpr size_t kHuge = size_t(2) << 20, kBlock = size_t(32) << 20;
  bytes = (bytes + 63) / 64 * 64;
  if (blocks_.empty() || used_ + bytes > blocks_.back().second) {
    const size_t size = (std::max(bytes, kBlock) + kHuge - 1) / kHuge * kHuge;
    void *p = std::aligned_alloc(kHuge, size);
    if (!p) return nullptr;
    madvise(p, size, MADV_HUGEPAGE); // a request: without THP the block is ordinary memory
    blocks_.emplace_back(p, size);
    used_ = 0;
  }
  float *out = reinterpret_cast<float *>(static_cast<char *>(blocks_.back().first) + used_);
  used_ += bytes;
  return out;
}

#ifdef LATHE_DNNL_MATMUL

PackedLinear::~PackedLinear() {
  const Api &api = load().api;
  for (auto &[key, prim] : primitives_) if (prim.first) api.dnnl_primitive_destroy(static_cast<dnnl_primitive_t>(prim.first));
  for (Entry &e : entries_) {
    if (e.memory) api.dnnl_memory_destroy(static_cast<dnnl_memory_t>(e.memory));
    delete static_cast<dnnl_memory_desc_t *>(e.md);
    std::free(e.owned);
  }
  for (void *st : streams_) if (st) api.dnnl_stream_destroy(static_cast<dnnl_stream_t>(st));
}

std::unique_ptr<PackedLinear> packLinear(const float *w, int64_t n, int64_t k, int chunks, const std::shared_ptr<WeightArena> &arena,
                                         std::string &error) {
  const Loaded &l = load();
  if (!l.error.empty() || !l.apiError.empty()) {
    error = !l.error.empty() ? l.error : l.apiError;
    return nullptr;
  }
  const Api &api = l.api;
  if (l.sgemm.setThreads) l.sgemm.setThreads(1); // the reorders run on this thread alone
  std::unique_ptr<PackedLinear> p(new PackedLinear);
  const std::string what = "a " + std::to_string(n) + " x " + std::to_string(k) + " weight";
  p->parts_ = chunks < 1 ? 1 : chunks;
  p->n_ = n;
  p->k_ = k;
  for (int t = 0; t < p->parts_; ++t) {
    dnnl_stream_t st = nullptr;
    if (api.dnnl_stream_create(&st, api.engine, dnnl_stream_default_flags) != dnnl_success) {
      error = "oneDNN could not create a stream";
      return nullptr;
    }
    p->streams_.push_back(st);
  }
  dnnl_stream_t stream = static_cast<dnnl_stream_t>(p->streams_[0]);
  // The whole weight (the last entry).
  dnnl_memory_desc_t wholeMd;
  if (!packRows(api, stream, w, k, 0, n, wholeMd, nullptr)) {
    error = "oneDNN has no f32 matmul for " + what;
    return nullptr;
  }
  // A plain layout means oneDNN's matmul is its GEMM driver here (AVX2: gemm:jit,
  // where a row's sum also depends on the number of rows): nothing to gain over
  // dnnl_sgemm by column ranges, which is what the caller then uses.
  if (wholeMd.format_kind != dnnl_blocked || wholeMd.format_desc.blocking.inner_nblks == 0) {
    error = "oneDNN's matmul keeps " + what + " plain at this level";
    return nullptr;
  }
  const size_t wholeBytes = api.dnnl_memory_desc_get_size(&wholeMd);
  p->arena_ = arena ? arena : std::make_shared<WeightArena>();
  p->storage_ = p->arena_->take(wholeBytes);
  if (!p->storage_ || !packRows(api, stream, w, k, 0, n, wholeMd, p->storage_)) {
    error = "oneDNN could not re-lay out " + what;
    return nullptr;
  }
  // Column blocks of whole 64-column panels, when the parts are several.
  if (p->parts_ > 1) {
    size_t offset = 0; // bytes into the whole weight's layout
    for (int t = 0; t < p->parts_; ++t) {
      PackedLinear::Entry e;
      e.n0 = n * t / p->parts_ / 64 * 64;
      e.nc = (t + 1 == p->parts_ ? n : n * (t + 1) / p->parts_ / 64 * 64) - e.n0;
      if (e.nc > 0) {
        dnnl_memory_desc_t md;
        float *own = nullptr;
        bool ok = packRows(api, stream, w, k, e.n0, e.nc, md, nullptr);
        const size_t bytes = ok ? api.dnnl_memory_desc_get_size(&md) : 0;
        // Is the block byte for byte a range of the whole layout (then it is read
        // from there)? Checked by packing it on its own once per shape; later
        // weights of that shape trust the verdict (opening a 540 MB model packs
        // each weight once, not three times).
        static std::mutex verdictMutex;
        static std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, bool> isRange; // (k, n, n0, nc)
        const auto key = std::make_tuple(k, n, e.n0, e.nc);
        int verdict = -1;
        {
          std::lock_guard<std::mutex> lock(verdictMutex);
          auto it = isRange.find(key);
          if (it != isRange.end()) verdict = it->second;
        }
        if (ok && offset + bytes > wholeBytes) verdict = 0;
        if (ok && verdict != 1) {
          ok = (own = alignedFloats(bytes)) != nullptr && packRows(api, stream, w, k, e.n0, e.nc, md, own);
          if (ok && verdict == -1) {
            verdict = std::memcmp(reinterpret_cast<const char *>(p->storage_) + offset, own, bytes) == 0;
            std::lock_guard<std::mutex> lock(verdictMutex);
            isRange[key] = verdict == 1;
          }
          if (ok && verdict == 1) {
            std::free(own);
            own = nullptr;
          }
        }
        if (!ok) {
          std::free(own);
          error = "oneDNN could not re-lay out " + what + " in column blocks";
          return nullptr;
        }
        e.owned = own;
        e.md = new dnnl_memory_desc_t(md);
        void *data = own ? static_cast<void *>(own) : reinterpret_cast<char *>(p->storage_) + offset;
        dnnl_memory_t mem = nullptr;
        if (api.dnnl_memory_create(&mem, &md, api.engine, data) != dnnl_success) {
          p->entries_.push_back(e); // freed by the destructor
          error = "oneDNN could not wrap " + what;
          return nullptr;
        }
        e.memory = mem;
        offset += bytes;
      }
      p->entries_.push_back(e);
    }
  }
  PackedLinear::Entry whole;
  whole.nc = n;
  whole.md = new dnnl_memory_desc_t(wholeMd);
  p->entries_.push_back(whole);
  dnnl_memory_t mem = nullptr;
  if (api.dnnl_memory_create(&mem, &wholeMd, api.engine, p->storage_) != dnnl_success) {
    error = "oneDNN could not wrap " + what;
    return nullptr;
  }
  p->entries_.back().memory = mem;
  return p;
}

bool PackedLinear::prepare(int64_t m, bool bias, bool whole) {
  const Api &api = load().api;
  std::lock_guard<std::mutex> lock(mutex_);
  if (primitives_.size() >= 64) { // many prompt lengths: start over rather than grow without bound
    for (auto &[key, prim] : primitives_) if (prim.first) api.dnnl_primitive_destroy(static_cast<dnnl_primitive_t>(prim.first));
    primitives_.clear();
  }
  const size_t first = whole || parts_ == 1 ? entries_.size() - 1 : 0, last = whole || parts_ == 1 ? entries_.size() : entries_.size() - 1;
  bool ok = true;
  for (size_t e = first; e < last; ++e) {
    const Entry &entry = entries_[e];
    if (entry.nc == 0) continue;
    auto key = std::make_tuple(m, bias, e);
    auto it = primitives_.find(key);
    if (it == primitives_.end()) {
      dnnl_primitive_desc_t pd = nullptr;
      dnnl_primitive_t prim = nullptr;
      // The layout oneDNN wants for these rows must be the one the weight was packed in.
      if (matmulDesc(api, m, k_, entry.nc, bias, pd) &&
          api.dnnl_memory_desc_equal(api.dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                                     static_cast<const dnnl_memory_desc_t *>(entry.md)) &&
          api.dnnl_primitive_create(&prim, pd) != dnnl_success)
        prim = nullptr;
      size_t scratch = 0;
      if (prim) scratch = api.dnnl_memory_desc_get_size(api.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
      if (pd) api.dnnl_primitive_desc_destroy(pd);
      it = primitives_.emplace(key, std::make_pair(prim, scratch)).first;
    }
    ok = ok && it->second.first;
  }
  return ok;
}

bool PackedLinear::runEntry(size_t e, int t, const float *x, int64_t m, const float *bias, float *y, int64_t ldy) const {
  const Entry &entry = entries_[e];
  if (entry.nc == 0 || m == 0) return true;
  const Api &api = load().api;
  dnnl_primitive_t prim;
  size_t scratchBytes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = primitives_.find(std::make_tuple(m, bias != nullptr, e));
    if (it == primitives_.end() || !it->second.first) return false;
    prim = static_cast<dnnl_primitive_t>(it->second.first);
    scratchBytes = it->second.second;
  }
  thread_local std::vector<float> scratchpad;
  if (scratchpad.size() * sizeof(float) < scratchBytes) scratchpad.resize((scratchBytes + 63) / sizeof(float));
  const int64_t nc = entry.nc;
  // A block narrower than y is computed densely and copied: with a row stride
  // wider than its columns, oneDNN sums in another order (1e-5 apart at k
  // 1536), and the result would depend on the thread count.
  thread_local std::vector<float> scratch;
  float *out = y + entry.n0;
  if (ldy != nc) {
    if (scratch.size() < size_t(m * nc)) scratch.resize(size_t(m * nc));
    out = scratch.data();
  }
  dnnl_memory_desc_t srcMd, dstMd, biasMd, padMd;
  dnnl_dims_t srcDims = {m, k_}, srcStrides = {k_, 1}, dstDims = {m, nc}, dstStrides = {nc, 1}, bDims = {1, nc}, bStrides = {nc, 1};
  dnnl_dims_t padDims = {int64_t(scratchBytes)}, padStrides = {1};
  dnnl_memory_t src = nullptr, dst = nullptr, b = nullptr, pad = nullptr;
  bool ok = api.dnnl_memory_desc_init_by_strides(&srcMd, 2, srcDims, dnnl_f32, srcStrides) == dnnl_success &&
            api.dnnl_memory_desc_init_by_strides(&dstMd, 2, dstDims, dnnl_f32, dstStrides) == dnnl_success &&
            api.dnnl_memory_create(&src, &srcMd, api.engine, const_cast<float *>(x)) == dnnl_success &&
            api.dnnl_memory_create(&dst, &dstMd, api.engine, out) == dnnl_success;
  if (ok && bias)
    ok = api.dnnl_memory_desc_init_by_strides(&biasMd, 2, bDims, dnnl_f32, bStrides) == dnnl_success &&
         api.dnnl_memory_create(&b, &biasMd, api.engine, const_cast<float *>(bias + entry.n0)) == dnnl_success;
  if (ok && scratchBytes)
    ok = api.dnnl_memory_desc_init_by_strides(&padMd, 1, padDims, dnnl_u8, padStrides) == dnnl_success &&
         api.dnnl_memory_create(&pad, &padMd, api.engine, scratchpad.data()) == dnnl_success;
  if (ok) {
    dnnl_stream_t stream = static_cast<dnnl_stream_t>(streams_[size_t(t) % streams_.size()]);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, static_cast<dnnl_memory_t>(entry.memory)},
                               {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, pad}, {DNNL_ARG_BIAS, b}};
    // absent operands are left off the end: bias last, then the scratchpad
    dnnl_exec_arg_t *end = args + 3;
    if (pad) *end++ = args[3];
    if (b) *end++ = {DNNL_ARG_BIAS, b};
    ok = api.dnnl_primitive_execute(prim, stream, int(end - args), args) == dnnl_success &&
         api.dnnl_stream_wait(stream) == dnnl_success;
  }
  if (pad) api.dnnl_memory_destroy(pad);
  if (src) api.dnnl_memory_destroy(src);
  if (dst) api.dnnl_memory_destroy(dst);
  if (b) api.dnnl_memory_destroy(b);
  if (ok && out != y + entry.n0)
    for (int64_t i = 0; i < m; ++i) std::memcpy(y + i * ldy + entry.n0, out + i * nc, size_t(nc) * sizeof(float));
  return ok;
}

bool PackedLinear::runRows(int t, const float *x, int64_t m, const float *bias, float *y) const {
  return runEntry(entries_.size() - 1, t, x, m, bias, y, n_);
}
bool PackedLinear::runColumns(int t, const float *x, int64_t m, const float *bias, float *y) const {
  return runEntry(parts_ == 1 ? entries_.size() - 1 : size_t(t), t, x, m, bias, y, n_);
}
#else
PackedLinear::~PackedLinear() = default;
std::unique_ptr<PackedLinear> packLinear(const float *, int64_t, int64_t, int, const std::shared_ptr<WeightArena> &,
                                         std::string &error) {
  error = "this runtime was built without oneDNN's headers (libdnnl-dev)";
  return nullptr;
}
bool PackedLinear::prepare(int64_t, bool, bool) { return false; }
bool PackedLinear::runEntry(size_t, int, const float *, int64_t, const float *, float *, int64_t) const { return false; }
bool PackedLinear::runRows(int, const float *, int64_t, const float *, float *) const { return false; }
bool PackedLinear::runColumns(int, const float *, int64_t, const float *, float *) const { return false; }
#endif

std::string sgemmSummary() {
  std::string error;
  const char *best = cpuRunsLevel("avx512") ? "avx512" : cpuRunsLevel("avx2") ? "avx2" : "baseline";
  const Sgemm *s = sgemmFor(best, error);
  if (s) return s->name + " (libdnnl.so.2)";
  if (!error.empty()) return "Lathe's own (" + error + ")";
  const std::string m = mode(error);
  if (m == "own") return "Lathe's own (LATHE_GEMM=own)";
  if (std::strcmp(best, "baseline") == 0) return "Lathe's own (baseline level)";
  return "Lathe's own (" + load().error + ")";
}

} // namespace lathe::cpu
