#include "lathe/Session.h"

#include <sys/mman.h>
#include <unistd.h>

#include "runtime/artifact/ArtifactReader.h"
#include "runtime/artifact/Incremental.h"
#include "runtime/core/Device.h"
#include "runtime/core/Glob.h"
#include "runtime/core/ThreadPool.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/artifact/Attributes.h"
#include "runtime/cpu/OneDnn.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace lathe {

using artifact::Dim;
using artifact::DType;

bool globMatch(const std::string &pattern, const std::string &text) { return core::glob(pattern, text); }

Expected<std::string> selectedIsa() {
  std::string err;
  const cpu::IsaTable *t = cpu::selectIsa("", err);
  if (!t) return Status::error(err);
  return std::string(t->name);
}

std::string TensorInfo::describe() const {
  std::string s = name + ": " + dtypeName(dtype) + "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? "," : "") + (shape[i].isStatic() ? std::to_string(shape[i].value) : (shape[i].symbol.empty() ? std::string("?") : shape[i].symbol));
  return s + "]";
}

namespace {

struct AlignedFree { void operator()(uint8_t *p) const { std::free(p); } };
using Buffer = std::unique_ptr<uint8_t, AlignedFree>;
Buffer allocate(uint64_t bytes) {
  size_t size = size_t((bytes + 63) / 64 * 64);
  auto *p = static_cast<uint8_t *>(std::aligned_alloc(64, size ? size : 64));
  return Buffer(p);
}

/// Device memory owned by the session; released through its backend.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  DeviceBuffer(device::Backend *backend, void *pointer) : backend_(backend), pointer_(pointer) {}
  DeviceBuffer(DeviceBuffer &&o) noexcept : backend_(o.backend_), pointer_(o.pointer_) { o.pointer_ = nullptr; }
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept {
    if (this != &o) { reset(); backend_ = o.backend_; pointer_ = o.pointer_; o.pointer_ = nullptr; }
    return *this;
  }
  ~DeviceBuffer() { reset(); }
  void reset() {
    if (backend_ && pointer_) backend_->release(pointer_);
    pointer_ = nullptr;
  }
  void *get() const { return pointer_; }
  explicit operator bool() const { return pointer_ != nullptr; }

private:
  device::Backend *backend_ = nullptr;
  void *pointer_ = nullptr;
};

struct Plan {
  std::vector<cpu::View> views;     // per tensor (host pointers; arena tensors are on the device in a device session)
  std::vector<int64_t> offsets;     // arena offset, -1 when not in the arena
  std::vector<Buffer> hostValues;   // values computed at plan time (shape arithmetic)
  Buffer arena;
  MemoryPlanSummary summary;
  // Device sessions: the same tensors with device pointers (arena, inputs,
  // weights, and device copies of plan-time values a device kernel reads).
  std::vector<cpu::View> deviceViews;
  DeviceBuffer deviceArena;
  std::vector<DeviceBuffer> deviceInputs; // per graph input
  std::vector<DeviceBuffer> deviceValues;
  std::vector<int32_t> uploadedValues; // tensors in deviceValues order
};

} // namespace

struct Session::Impl {
  artifact::LoadedArtifact art;
  // Device sessions (null for the CPU). Declared before everything holding
  // device memory, so it is destroyed after all of it.
  std::unique_ptr<device::Backend> backend;
  std::string deviceName = "cpu";
  std::vector<char> onDevice;                  // per kernel: runs on the device
  std::vector<std::string> hostReason;         // per kernel: why it runs on the host
  std::vector<DeviceBuffer> deviceWeights;     // per tensor: the weight's device copy
  std::vector<char> deviceReads;               // per tensor: read by a device kernel
  // Device embedding lookups whose ids are a graph input: checked on the host
  // before the upload, so a bad id is an error as on the CPU (the device kernel cannot report one).
  struct IdsCheck { size_t input, kernel; int64_t rows; };
  std::vector<IdsCheck> idsChecks;
  std::vector<const cpu::KernelEntry *> entries;
  std::vector<char> planTime;        // per kernel: runs once while planning (shape-only values)
  std::vector<char> hostKnown;       // per tensor: value known at plan time
  std::unique_ptr<core::ThreadPool> pool;
  const cpu::IsaTable *isa = nullptr;
  const cpu::Int8Table *int8 = nullptr; // W8A8 weights are packed for this table
  const cpu::Sgemm *sgemm = nullptr;    // oneDNN's fp32 GEMM (fp32 weights then stay unpacked), or null
  std::vector<TensorInfo> inputs, outputs;
  ArtifactInfo info;
  std::vector<std::pair<std::string, TapCallback>> taps;
  bool stopRequested = false, stopped = false; // a tap ended the run early (requestStop)
  std::map<std::vector<std::vector<int64_t>>, std::unique_ptr<Plan>> plans;
  uint64_t lastPlannedBytes = 0;
  // Linear weights re-laid out once for this ISA's GEMM panels (per kernel,
  // empty when the weight is not a constant f32 [n, k] tensor).
  std::vector<std::vector<float>> packedWeights;
  // The same for oneDNN's matmul (when the session uses oneDNN): per kernel, or null.
  std::vector<std::unique_ptr<cpu::PackedLinear>> packedLinears;
  std::shared_ptr<cpu::WeightArena> weightArena; // their storage
  // Per kernel: for a linear with a packed weight, the erf GELU kernel that is
  // the only reader of its result (fused into the matmul), else -1.
  std::vector<int32_t> geluOf;
  // This run: per kernel, the linear applies GELU / the gelu finds it applied
  // (not while a tap watches the linear's result, which must be the product).
  std::vector<char> fusedGelu;
  // Transposes (perm 0,2,1,3) folded into attention: per attention kernel, the
  // transpose feeding query/key/value and the one reading its result, or -1;
  // the memory plan keeps both ends alive across the attention either way.
  std::vector<std::array<int32_t, 4>> attentionTransposes;
  std::vector<char> skipped;         // this run: a transpose folded into its attention
  std::vector<std::array<char, 4>> folded; // this run, per attention kernel: which of the four are folded
  void decideFusion();
  uint64_t runSerial = 0; // this execution's KernelContext::runSerial

  // Incremental decoding.
  artifact::IncrementalPlan incremental;
  struct Decoder {
    int64_t maxContext = 0, batch = 0, past = 0;
    std::vector<Buffer> storage;                 // per attention layer: K then V
    std::vector<DeviceBuffer> deviceStorage;     // the same on the device (device sessions)
    std::vector<cpu::KvCache> caches;            // per kernel index in `cacheOf`
    std::vector<int32_t> cacheOf;                // kernel -> index into caches, or -1
    std::vector<char> offsetKernels;             // plan-time kernels whose values depend on positions
    std::map<std::string, Tensor> feeds;         // reused input buffers
    int64_t feedLength = -1;
    std::vector<float> lastLogits;
    // The linear producing the first output ([batch, n, vocab] from [batch, n, hidden]):
    // while appending, only the rows of the positions asked for are computed.
    int32_t logitsKernel = -1;
    int64_t stepLength = 0, lastPositions = 0;
  };
  std::unique_ptr<Decoder> decoder;
  const Decoder *activeDecoder = nullptr;        // set while append() runs the graph

  /// The logits linear on the last rows of each sequence only: results packed
  /// as [batch, lastPositions, vocab] at the start of its output buffer.
  std::string runLastRows(size_t k, Plan &plan);
  /// Plans (or reuses the plan for) these inputs and runs every kernel.
  Expected<Plan *> execute(const std::map<std::string, Tensor> &feeds, bool decoding);

  std::string checkInputs(const std::map<std::string, std::vector<int64_t>> &shapes, const std::map<std::string, DType> *dtypes,
                          std::vector<std::vector<int64_t>> &key) const;
  std::string buildPlan(const std::vector<std::vector<int64_t>> &inputShapes, Plan &plan);
  std::string runKernel(size_t k, Plan &plan);
  /// Kernel k's context without operands (spec, pool, ISA, packed weight, decode offset).
  cpu::KernelContext contextOf(size_t k) const;
  /// A device session's kernel without a device kernel: operands copied to
  /// the host, the CPU kernel, results copied back.
  std::string runOnHost(size_t k, Plan &plan);
  std::string prepareDevicePlan(Plan &plan);
  std::string openDevice(const std::string &device, const std::string &path);
  std::vector<cpu::View> &activeViews(Plan &plan) { return backend ? plan.deviceViews : plan.views; }
  void fireTaps(size_t k, Plan &plan);
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;
const std::vector<TensorInfo> &Session::inputs() const { return impl_->inputs; }
const std::vector<TensorInfo> &Session::outputs() const { return impl_->outputs; }
const ArtifactInfo &Session::info() const { return impl_->info; }
const artifact::Vocabulary *Session::vocabulary() const {
  return impl_->art.spec.vocabulary ? &*impl_->art.spec.vocabulary : nullptr;
}
int Session::threads() const { return impl_->pool->size(); }
const char *Session::isa() const { return impl_->isa->name; }
const std::string &Session::device() const { return impl_->deviceName; }
std::vector<KernelPlacement> Session::placement() const {
  std::vector<KernelPlacement> out;
  const auto &kernels = impl_->art.spec.kernels;
  for (size_t k = 0; k < kernels.size(); ++k) {
    KernelPlacement p{kernels[k].source, kernels[k].op, kernels[k].weightFormat};
    p.planTime = impl_->planTime[k];
    p.onDevice = impl_->backend && impl_->onDevice[k];
    if (impl_->backend && !p.onDevice) p.reason = p.planTime ? "shape arithmetic, computed while planning" : impl_->hostReason[k];
    out.push_back(std::move(p));
  }
  return out;
}
uint64_t Session::plannedActivationBytes() const { return impl_->lastPlannedBytes; }
void Session::addTap(const std::string &pattern, TapCallback callback) { impl_->taps.emplace_back(pattern, std::move(callback)); }
void Session::clearTaps() { impl_->taps.clear(); }
void Session::requestStop() { impl_->stopRequested = true; }

Expected<std::vector<KernelPlacement>> Session::placementOn(const std::string &device) const {
  std::string err, kind = device.substr(0, device.find(':'));
  const device::PluginApi *api = device::loadPlugin(kind, err);
  if (!api) return Status::error(err);
  std::vector<KernelPlacement> out = placement();
  for (size_t k = 0; k < out.size(); ++k) {
    out[k].reason = out[k].planTime ? "shape arithmetic, computed while planning" : api->unsupported(impl_->art.spec, k);
    out[k].onDevice = out[k].reason.empty();
  }
  return out;
}

Expected<std::unique_ptr<Session>> Session::open(const std::string &path, const SessionOptions &options) {
  auto impl = std::make_unique<Impl>();
  if (std::string err = artifact::readArtifact(path, impl->art); !err.empty()) return Status::error(err);
  const artifact::ArtifactSpec &spec = impl->art.spec;
  if (options.threads < 0) return Status::error("threads must be >= 0 (0 = one per physical core), got " + std::to_string(options.threads));
  std::string err;
  impl->isa = cpu::selectIsa(options.isa, err);
  if (!impl->isa) return Status::error(err);
  impl->int8 = cpu::int8TableFor(impl->isa->name);
  impl->sgemm = cpu::sgemmFor(impl->isa->name, err);
  if (!err.empty()) return Status::error(err);
  const bool wantDevice = !options.device.empty() && options.device != "cpu";
  if (!spec.cudaArchs.empty() && !wantDevice)
    return Status::error("artifact '" + path + "' was compiled for CUDA only; open it with device 'cuda'");
  if (!spec.isa.empty() && spec.isa != "baseline") {
    auto levels = cpu::supportedIsas();
    if (std::find(levels.begin(), levels.end(), spec.isa) == levels.end())
      return Status::error("artifact '" + path + "' requires the '" + spec.isa + "' instruction set, which this CPU lacks");
  }
  // Kernel lookup and which kernels only compute shape arithmetic.
  impl->hostKnown.assign(spec.tensors.size(), 0);
  for (const auto &w : spec.weights) impl->hostKnown[size_t(w.tensor)] = 1;
  for (const auto &k : spec.kernels) {
    const cpu::KernelEntry *entry = cpu::findKernel(k.op, k.weightFormat, "cpu");
    if (!entry)
      return Status::error("artifact '" + path + "': node '" + k.source + "': no CPU kernel for op '" + k.op + "' with weight format '" + k.weightFormat + "'");
    impl->entries.push_back(entry);
    bool shapeOnly = k.op == "shape_of" || k.op == "positions";
    bool allKnown = true;
    for (int32_t in : k.inputs) if (in >= 0 && !impl->hostKnown[size_t(in)]) allKnown = false;
    bool intResults = true;
    for (int32_t out : k.outputs) {
      DType t = spec.tensors[size_t(out)].dtype;
      if (t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64) intResults = false;
    }
    bool planTime = intResults && (shapeOnly || allKnown);
    impl->planTime.push_back(planTime);
    if (planTime) for (int32_t out : k.outputs) impl->hostKnown[size_t(out)] = 1;
  }
  int threads = options.threads > 0 ? options.threads : core::ThreadPool::physicalCores();
  impl->pool = std::make_unique<core::ThreadPool>(threads);
  impl->incremental = artifact::analyzeIncremental(spec);
  if (wantDevice)
    if (std::string err = impl->openDevice(options.device, path); !err.empty()) return Status::error(err);
  // Pre-pack every linear layer's constant f32 weight for the chosen ISA.
  {
    std::vector<const void *> weightData(spec.tensors.size(), nullptr);
    for (const auto &w : spec.weights) weightData[size_t(w.tensor)] = w.data;
    impl->packedWeights.resize(spec.kernels.size());
    impl->packedLinears.resize(spec.kernels.size());
    for (size_t k = 0; k < spec.kernels.size(); ++k) {
      const auto &kernel = spec.kernels[k];
      if (kernel.op != "linear" || kernel.inputs.size() < 2 || kernel.inputs[1] < 0) continue;
      if (impl->backend && impl->onDevice[k]) continue; // the device reads its own copy
      const auto &w = spec.tensors[size_t(kernel.inputs[1])];
      const void *data = weightData[size_t(kernel.inputs[1])];
      if (kernel.weightFormat == "w8a8") {
        // int8 weights for the level's int8 GEMM, with their scales as f32.
        const void *scales = kernel.inputs.size() > 2 && kernel.inputs[2] >= 0 ? weightData[size_t(kernel.inputs[2])] : nullptr;
        const cpu::Int8Table *t = impl->int8;
        if (!data || !scales || !t || w.dtype != DType::I8 || w.shape.size() != 2 || !w.shape[0].isStatic() || !w.shape[1].isStatic())
          continue; // the kernel's shape check reports what is wrong
        const int64_t n = w.shape[0].value, kk = w.shape[1].value;
        const auto &st = spec.tensors[size_t(kernel.inputs[2])];
        if (st.dtype != DType::F16 || st.shape.size() != 2 || !st.shape[0].isStatic() || st.shape[0].value != n ||
            !st.shape[1].isStatic() || st.shape[1].value != 1)
          continue;
        auto &packed = impl->packedWeights[k];
        packed.resize(size_t(cpu::w8a8PackedFloats(t, n, kk)));
        cpu::w8a8Pack(t, static_cast<const int8_t *>(data), static_cast<const uint16_t *>(scales), n, kk, packed.data());
        continue;
      }
      if (!data || w.dtype != DType::F32 || w.shape.size() != 2 || !w.shape[0].isStatic() || !w.shape[1].isStatic()) continue;
      int64_t n = w.shape[0].value, kk = w.shape[1].value;
      if (n == 0 || kk == 0) continue;
      if (impl->sgemm && kernel.weightFormat == "f32") { // the dense fp32 kernel (not 2:4 and others with f32 values)
        // oneDNN's matmul layout, one block per thread; without it (no headers
        // at build time) dnnl_sgemm reads the mapped weight as it is.
        std::string why;
        if (!impl->weightArena) impl->weightArena = std::make_shared<cpu::WeightArena>();
        impl->packedLinears[k] = cpu::packLinear(static_cast<const float *>(data), n, kk, impl->pool->size(), impl->weightArena, why);
        if (!impl->packedLinears[k]) continue;
      } else {
        auto &packed = impl->packedWeights[k];
        packed.resize(size_t(impl->isa->packedWeightSize(n, kk)));
        impl->isa->packWeights(static_cast<const float *>(data), n, kk, packed.data());
      }
      // The kernel now reads only the packed copy: drop the mapped pages the
      // packing touched so the weight is not resident twice (the file mapping
      // is read-only and private, so a later access simply reads them back).
      uintptr_t begin = reinterpret_cast<uintptr_t>(data), end = begin + uintptr_t(n * kk) * sizeof(float);
      uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
      uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
      if (last > first) madvise(reinterpret_cast<void *>(first), last - first, MADV_DONTNEED);
    }
  }
  // Linear + erf GELU pairs the matmul can fuse.
  {
    std::vector<int32_t> readers(spec.tensors.size(), 0), reader(spec.tensors.size(), -1);
    for (size_t k = 0; k < spec.kernels.size(); ++k)
      for (int32_t in : spec.kernels[k].inputs)
        if (in >= 0) ++readers[size_t(in)], reader[size_t(in)] = int32_t(k);
    for (int32_t out : spec.outputs) ++readers[size_t(out)];
    impl->geluOf.assign(spec.kernels.size(), -1);
    impl->fusedGelu.assign(spec.kernels.size(), 0);
    for (size_t k = 0; k < spec.kernels.size(); ++k) {
      if (!impl->packedLinears[k] || spec.kernels[k].outputs.empty()) continue;
      const int32_t out = spec.kernels[k].outputs[0];
      const int32_t g = readers[size_t(out)] == 1 ? reader[size_t(out)] : -1;
      if (g < 0) continue;
      const auto &gk = spec.kernels[size_t(g)];
      if (gk.op == "gelu" && gk.weightFormat == "f32" && artifact::stringAttr(gk, "approximate", "none") == "none" &&
          !gk.inputs.empty() && gk.inputs[0] == out && !(impl->backend && impl->onDevice[size_t(g)]))
        impl->geluOf[k] = g;
    }
    // Transposes between [batch, seq, heads, dim] and attention's [batch, heads, seq, dim].
    auto swapsHeads = [&](int32_t t) {
      if (t < 0) return false;
      const auto &tk = spec.kernels[size_t(t)];
      std::vector<int64_t> perm;
      return tk.op == "transpose" && artifact::intsAttr(tk, "perm", perm) && perm == std::vector<int64_t>{0, 2, 1, 3} &&
             !impl->planTime[size_t(t)] && spec.tensors[size_t(tk.outputs[0])].dtype == DType::F32;
    };
    std::vector<int32_t> producer(spec.tensors.size(), -1);
    for (size_t k = 0; k < spec.kernels.size(); ++k)
      for (int32_t out : spec.kernels[k].outputs) producer[size_t(out)] = int32_t(k);
    impl->attentionTransposes.assign(spec.kernels.size(), {-1, -1, -1, -1});
    impl->skipped.assign(spec.kernels.size(), 0);
    impl->folded.assign(spec.kernels.size(), {0, 0, 0, 0});
    for (size_t k = 0; k < spec.kernels.size() && !impl->backend; ++k) {
      const auto &ak = spec.kernels[k];
      if (ak.op != "attention" || ak.inputs.size() < 3 || ak.outputs.empty()) continue;
      for (int i = 0; i < 3; ++i) { // an operand the attention alone reads, once
        const int32_t in = ak.inputs[size_t(i)];
        if (in >= 0 && readers[size_t(in)] == 1 && swapsHeads(producer[size_t(in)])) impl->attentionTransposes[k][size_t(i)] = producer[size_t(in)];
      }
      const int32_t out = ak.outputs[0];
      if (readers[size_t(out)] == 1 && swapsHeads(reader[size_t(out)]) && spec.kernels[size_t(reader[size_t(out)])].inputs[0] == out)
        impl->attentionTransposes[k][3] = reader[size_t(out)];
    }
  }
  for (int32_t t : spec.inputs) impl->inputs.push_back({spec.tensors[size_t(t)].name, spec.tensors[size_t(t)].dtype, spec.tensors[size_t(t)].shape});
  for (int32_t t : spec.outputs) impl->outputs.push_back({spec.tensors[size_t(t)].name, spec.tensors[size_t(t)].dtype, spec.tensors[size_t(t)].shape});
  ArtifactInfo &info = impl->info;
  info.formatMajor = impl->art.formatMajor;
  info.formatMinor = impl->art.formatMinor;
  info.compilerVersion = spec.compilerVersion;
  info.sourceModel = spec.sourceModel;
  info.pipeline = spec.pipeline;
  info.isa = spec.isa;
  info.cudaArchs = spec.cudaArchs;
  info.fileBytes = impl->art.fileBytes;
  for (const auto &w : spec.weights) info.weightBytes += w.bytes;
  info.numKernels = spec.kernels.size();
  info.numTensors = spec.tensors.size();
  info.manifest = spec.manifest;
  return std::unique_ptr<Session>(new Session(std::move(impl)));
}

std::string Session::Impl::checkInputs(const std::map<std::string, std::vector<int64_t>> &shapes,
                                       const std::map<std::string, DType> *dtypes,
                                       std::vector<std::vector<int64_t>> &key) const {
  std::map<std::string, std::pair<int64_t, std::string>> symbols; // symbol -> (value, where seen)
  for (const auto &[name, shape] : shapes) {
    bool known = std::any_of(inputs.begin(), inputs.end(), [&](const TensorInfo &i) { return i.name == name; });
    if (!known) {
      std::string list;
      for (const auto &i : inputs) list += (list.empty() ? "" : ", ") + i.name;
      return "unknown input '" + name + "' (the model's inputs are: " + list + ")";
    }
  }
  key.clear();
  for (const TensorInfo &in : inputs) {
    auto it = shapes.find(in.name);
    if (it == shapes.end()) return "input '" + in.name + "' is missing (expected " + in.describe() + ")";
    const auto &shape = it->second;
    std::string found = shapeString(shape);
    if (dtypes) {
      DType given = dtypes->at(in.name);
      if (given != in.dtype) return "input '" + in.name + "': expected dtype " + dtypeName(in.dtype) + ", found " + dtypeName(given) + found;
    }
    bool ok = shape.size() == in.shape.size();
    std::string why;
    for (size_t d = 0; ok && d < shape.size(); ++d) {
      if (shape[d] < 0) { ok = false; break; }
      const Dim &dim = in.shape[d];
      if (dim.isStatic()) { if (dim.value != shape[d]) ok = false; }
      else if (!dim.symbol.empty()) {
        auto [pos, inserted] = symbols.emplace(dim.symbol, std::make_pair(shape[d], in.name));
        if (!inserted && pos->second.first != shape[d]) {
          ok = false;
          why = " ('" + dim.symbol + "' is " + std::to_string(pos->second.first) + " in input '" + pos->second.second + "')";
        }
      }
    }
    if (!ok) return "input '" + in.name + "': expected shape " + in.describe().substr(in.name.size() + 2) + ", found " + found + why;
    key.push_back(shape);
  }
  return "";
}

std::string Session::Impl::openDevice(const std::string &device, const std::string &path) {
  std::string kind = device;
  int ordinal = 0;
  if (size_t colon = device.find(':'); colon != std::string::npos) {
    kind = device.substr(0, colon);
    std::string number = device.substr(colon + 1);
    if (number.empty() || number.size() > 3 || number.find_first_not_of("0123456789") != std::string::npos)
      return "device '" + device + "': expected cuda or cuda:N with N a device number";
    ordinal = std::stoi(number);
  }
  if (kind != "cuda") return "unknown device '" + device + "' (devices: cpu, cuda, cuda:N)";
  std::string err;
  const device::PluginApi *api = device::loadPlugin(kind, err);
  if (!api) return "device '" + device + "': " + err;
  backend = api->open(ordinal, err);
  if (!backend) return "device '" + device + "': " + err;
  deviceName = kind + ":" + std::to_string(ordinal) + " " + backend->info().describe();
  const auto &spec = art.spec;
  onDevice.assign(spec.kernels.size(), 0);
  hostReason.assign(spec.kernels.size(), "");
  deviceReads.assign(spec.tensors.size(), 0);
  for (size_t k = 0; k < spec.kernels.size(); ++k) {
    if (planTime[k]) continue;
    std::string why = api->unsupported(spec, k);
    if (!why.empty()) {
      hostReason[k] = why;
      continue;
    }
    onDevice[k] = 1;
    const auto &kernel = spec.kernels[k];
    for (int32_t in : kernel.inputs) if (in >= 0) deviceReads[size_t(in)] = 1;
    if (kernel.op == "embedding" && kernel.inputs.size() > 1 && kernel.inputs[0] >= 0) {
      const auto &table = spec.tensors[size_t(kernel.inputs[0])];
      auto it = std::find(spec.inputs.begin(), spec.inputs.end(), kernel.inputs[1]);
      if (it != spec.inputs.end() && !table.shape.empty() && table.shape[0].isStatic())
        idsChecks.push_back({size_t(it - spec.inputs.begin()), k, table.shape[0].value});
    }
  }
  // Weights a device kernel reads are uploaded once, for the session's life.
  deviceWeights.resize(spec.tensors.size());
  for (const auto &w : spec.weights) {
    if (!deviceReads[size_t(w.tensor)]) continue;
    void *p = backend->allocate(w.bytes, err);
    if (!p) return "device '" + device + "': weight '" + spec.tensors[size_t(w.tensor)].name + "' of '" + path + "': " + err;
    deviceWeights[size_t(w.tensor)] = DeviceBuffer(backend.get(), p);
    if (std::string e = backend->upload(p, w.data, w.bytes); !e.empty()) return "device '" + device + "': " + e;
  }
  return "";
}

std::string Session::Impl::prepareDevicePlan(Plan &plan) {
  const auto &spec = art.spec;
  std::string err;
  plan.deviceViews = plan.views;
  for (auto &v : plan.deviceViews) v.data = nullptr;
  void *arena = backend->allocate(plan.summary.arenaBytes, err);
  if (!arena) return "the activation arena: " + err;
  plan.deviceArena = DeviceBuffer(backend.get(), arena);
  for (size_t t = 0; t < spec.tensors.size(); ++t)
    if (plan.offsets[t] >= 0) plan.deviceViews[t].data = static_cast<uint8_t *>(arena) + plan.offsets[t];
  std::vector<char> isWeight(spec.tensors.size(), 0);
  for (const auto &w : spec.weights) {
    isWeight[size_t(w.tensor)] = 1;
    plan.deviceViews[size_t(w.tensor)].data = deviceWeights[size_t(w.tensor)].get();
  }
  // Shape arithmetic computed on the host that a device kernel reads.
  for (size_t t = 0; t < spec.tensors.size(); ++t) {
    if (isWeight[t] || !hostKnown[t] || !deviceReads[t] || !plan.views[t].data) continue;
    void *p = backend->allocate(plan.views[t].bytes(), err);
    if (!p) return "value '" + spec.tensors[t].name + "': " + err;
    plan.deviceValues.emplace_back(backend.get(), p);
    plan.uploadedValues.push_back(int32_t(t));
    plan.deviceViews[t].data = p;
    if (std::string e = backend->upload(p, plan.views[t].data, plan.views[t].bytes()); !e.empty()) return e;
  }
  for (int32_t in : spec.inputs) {
    void *p = backend->allocate(plan.views[size_t(in)].bytes(), err);
    if (!p) return "input '" + spec.tensors[size_t(in)].name + "': " + err;
    plan.deviceInputs.emplace_back(backend.get(), p);
    plan.deviceViews[size_t(in)].data = p;
  }
  return "";
}

cpu::KernelContext Session::Impl::contextOf(size_t k) const {
  cpu::KernelContext ctx;
  ctx.spec = &art.spec.kernels[k];
  ctx.pool = pool.get();
  ctx.isa = isa;
  ctx.int8 = int8;
  ctx.sgemm = sgemm;
  ctx.runSerial = runSerial;
  if (k < packedWeights.size() && !packedWeights[k].empty()) ctx.packedWeight = packedWeights[k].data();
  if (k < packedLinears.size()) ctx.packedLinear = packedLinears[k].get();
  if (k < fusedGelu.size() && fusedGelu[k]) (art.spec.kernels[k].op == "linear" ? ctx.applyGelu : ctx.geluApplied) = true;
  if (activeDecoder) ctx.positionOffset = activeDecoder->past;
  return ctx;
}

std::string Session::Impl::runOnHost(size_t k, Plan &plan) {
  const auto &kernel = art.spec.kernels[k];
  auto fail = [&](const std::string &what) { return "node '" + kernel.source + "' (" + kernel.op + ", on the host): " + what; };
  if (activeDecoder && activeDecoder->cacheOf[k] >= 0) return fail("its KV cache is on the device but it has no device kernel");
  cpu::KernelContext ctx = contextOf(k);
  std::vector<Buffer> temps;
  std::vector<cpu::View> ins(kernel.inputs.size()), outs(kernel.outputs.size());
  for (size_t i = 0; i < kernel.inputs.size(); ++i) {
    int32_t in = kernel.inputs[i];
    if (in < 0) { ctx.inputs.push_back(nullptr); continue; }
    ins[i] = plan.deviceViews[size_t(in)];
    if (hostKnown[size_t(in)] && plan.views[size_t(in)].data) {
      ins[i].data = plan.views[size_t(in)].data;
    } else {
      temps.push_back(allocate(ins[i].bytes()));
      if (std::string e = backend->download(temps.back().get(), plan.deviceViews[size_t(in)].data, ins[i].bytes()); !e.empty()) return fail(e);
      ins[i].data = temps.back().get();
    }
    ctx.inputs.push_back(&ins[i]);
  }
  for (size_t o = 0; o < kernel.outputs.size(); ++o) {
    int32_t out = kernel.outputs[o];
    outs[o] = plan.deviceViews[size_t(out)];
    if (hostKnown[size_t(out)] && plan.views[size_t(out)].data) {
      outs[o].data = plan.views[size_t(out)].data;
    } else {
      temps.push_back(allocate(outs[o].bytes()));
      outs[o].data = temps.back().get();
    }
    ctx.outputs.push_back(&outs[o]);
  }
  if (std::string err = entries[k]->run(ctx); !err.empty()) return err;
  for (size_t o = 0; o < kernel.outputs.size(); ++o) {
    void *target = plan.deviceViews[size_t(kernel.outputs[o])].data;
    if (target)
      if (std::string e = backend->upload(target, outs[o].data, outs[o].bytes()); !e.empty()) return fail(e);
  }
  return "";
}

std::string Session::Impl::runKernel(size_t k, Plan &plan) {
  const auto &kernel = art.spec.kernels[k];
  if (backend && !onDevice[k]) return runOnHost(k, plan);
  std::vector<cpu::View> &views = activeViews(plan);
  cpu::KernelContext ctx = contextOf(k);
  for (int32_t in : kernel.inputs) ctx.inputs.push_back(in >= 0 ? &views[size_t(in)] : nullptr);
  for (int32_t out : kernel.outputs) ctx.outputs.push_back(&views[size_t(out)]);
  if (k < folded.size())
    for (int i = 0; i < 4; ++i) {
      if (!folded[k][size_t(i)]) continue;
      const auto &t = art.spec.kernels[size_t(attentionTransposes[k][size_t(i)])];
      if (i < 3) ctx.bshdInputs[i] = &views[size_t(t.inputs[0])];
      else ctx.bshdOutput = &views[size_t(t.outputs[0])];
    }
  if (activeDecoder) {
    int32_t c = activeDecoder->cacheOf[k];
    if (c >= 0) ctx.cache = const_cast<cpu::KvCache *>(&activeDecoder->caches[size_t(c)]);
  }
  return backend ? backend->run(ctx) : entries[k]->run(ctx);
}

std::string Session::Impl::buildPlan(const std::vector<std::vector<int64_t>> &inputShapes, Plan &plan) {
  const auto &spec = art.spec;
  const size_t numTensors = spec.tensors.size(), numKernels = spec.kernels.size();
  plan.views.assign(numTensors, {});
  plan.offsets.assign(numTensors, -1);
  for (size_t t = 0; t < numTensors; ++t) plan.views[t].dtype = spec.tensors[t].dtype;
  for (const auto &w : spec.weights) {
    auto &v = plan.views[size_t(w.tensor)];
    for (const Dim &d : spec.tensors[size_t(w.tensor)].shape) v.shape.push_back(d.value);
    v.data = const_cast<void *>(w.data);
  }
  for (size_t i = 0; i < spec.inputs.size(); ++i) plan.views[size_t(spec.inputs[i])].shape = inputShapes[i];

  std::vector<int64_t> def(numTensors, -1), lastUse(numTensors, -1);
  for (size_t k = 0; k < numKernels; ++k) {
    const auto &kernel = spec.kernels[k];
    const cpu::KernelEntry *entry = entries[k];
    cpu::KernelContext ctx;
    ctx.spec = &kernel;
    ctx.pool = pool.get();
    ctx.isa = isa;
    ctx.int8 = int8;
    ctx.sgemm = sgemm;
    for (int32_t in : kernel.inputs) {
      ctx.inputs.push_back(in >= 0 ? &plan.views[size_t(in)] : nullptr);
      if (in >= 0) lastUse[size_t(in)] = int64_t(k);
    }
    for (int32_t out : kernel.outputs) {
      ctx.outputs.push_back(&plan.views[size_t(out)]);
      def[size_t(out)] = int64_t(k);
    }
    for (int operand : entry->valueOperands)
      if (size_t(operand) < kernel.inputs.size() && kernel.inputs[size_t(operand)] >= 0 && !hostKnown[size_t(kernel.inputs[size_t(operand)])])
        return "node '" + kernel.source + "' (" + kernel.op + "): operand '" + spec.tensors[size_t(kernel.inputs[size_t(operand)])].name +
               "' decides a result shape but depends on input data; data-dependent shapes are not supported";
    if (std::string err = entry->shape(ctx); !err.empty()) return err;
    for (int32_t out : kernel.outputs) {
      const auto &declared = spec.tensors[size_t(out)];
      const auto &got = plan.views[size_t(out)].shape;
      bool ok = declared.shape.size() == got.size();
      for (size_t d = 0; ok && d < got.size(); ++d)
        if (declared.shape[d].isStatic() && declared.shape[d].value != got[d]) ok = false;
      if (!ok) {
        TensorInfo info{declared.name, declared.dtype, declared.shape};
        return "node '" + kernel.source + "' (" + kernel.op + "): computed result shape " + shapeString(got) +
               " contradicts the artifact's declaration " + info.describe() + " (are the input shapes consistent?)";
      }
    }
    if (planTime[k]) {
      for (int32_t out : kernel.outputs) {
        plan.hostValues.push_back(allocate(plan.views[size_t(out)].bytes()));
        plan.views[size_t(out)].data = plan.hostValues.back().get();
      }
      if (std::string err = entry->run(ctx); !err.empty()) return err;
    }
  }
  for (int32_t out : spec.outputs) lastUse[size_t(out)] = int64_t(numKernels);
  // A transpose folded into its attention (when no tap watches it): the
  // attention reads the transpose's operand, or writes the transpose's result,
  // so those buffers must be alive while it runs.
  for (size_t k = 0; k < attentionTransposes.size(); ++k)
    for (int i = 0; i < 4; ++i) {
      const int32_t t = attentionTransposes[k][size_t(i)];
      if (t < 0) continue;
      const auto &tk = spec.kernels[size_t(t)];
      if (i < 3) lastUse[size_t(tk.inputs[0])] = std::max(lastUse[size_t(tk.inputs[0])], int64_t(k));
      else def[size_t(tk.outputs[0])] = std::min(def[size_t(tk.outputs[0])], int64_t(k));
    }

  // Buffer groups: a result computed in place joins its operand's group.
  auto inArena = [&](int32_t t) { return def[size_t(t)] >= 0 && !plan.views[size_t(t)].data; };
  std::vector<int32_t> group(numTensors);
  for (size_t t = 0; t < numTensors; ++t) group[t] = int32_t(t);
  std::vector<char> isOutput(numTensors, 0);
  for (int32_t out : spec.outputs) isOutput[size_t(out)] = 1;
  for (size_t k = 0; k < numKernels; ++k) {
    const auto &kernel = spec.kernels[k];
    if (planTime[k] || !entries[k]->inPlace || kernel.inputs.empty() || kernel.inputs[0] < 0) continue;
    int32_t in = kernel.inputs[0], out = kernel.outputs[0];
    if (!inArena(in) || !inArena(out) || isOutput[size_t(in)] || lastUse[size_t(in)] != int64_t(k)) continue;
    if (plan.views[size_t(in)].bytes() != plan.views[size_t(out)].bytes()) continue;
    group[size_t(out)] = group[size_t(in)];
    ++plan.summary.inPlace;
  }
  struct Region { int64_t start, end; uint64_t size; int64_t offset = -1; };
  std::map<int32_t, Region> regions;
  for (size_t t = 0; t < numTensors; ++t) {
    if (!inArena(int32_t(t))) continue;
    uint64_t bytes = (plan.views[t].bytes() + 63) / 64 * 64;
    ++plan.summary.tensors;
    plan.summary.unplannedBytes += bytes;
    int64_t end = std::max(lastUse[t], def[t]);
    auto [it, inserted] = regions.try_emplace(group[t], Region{def[t], end, bytes});
    if (!inserted) {
      it->second.start = std::min(it->second.start, def[t]);
      it->second.end = std::max(it->second.end, end);
      it->second.size = std::max(it->second.size, bytes);
    }
  }
  std::vector<Region *> order;
  for (auto &[g, r] : regions) order.push_back(&r);
  std::stable_sort(order.begin(), order.end(), [](const Region *a, const Region *b) { return a->size > b->size; });
  uint64_t arenaBytes = 0;
  std::vector<Region *> placed;
  for (Region *r : order) {
    std::vector<std::pair<int64_t, uint64_t>> busy;
    for (Region *p : placed)
      if (p->start <= r->end && r->start <= p->end) busy.emplace_back(p->offset, p->size);
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (auto &[o, s] : busy) {
      if (offset + int64_t(r->size) <= o) break;
      offset = std::max(offset, o + int64_t(s));
    }
    r->offset = offset;
    placed.push_back(r);
    arenaBytes = std::max(arenaBytes, uint64_t(offset) + r->size);
  }
  plan.summary.buffers = regions.size();
  plan.summary.arenaBytes = arenaBytes;
  for (size_t t = 0; t < numTensors; ++t)
    if (inArena(int32_t(t))) plan.offsets[t] = regions.at(group[t]).offset;
  if (backend) return prepareDevicePlan(plan); // the arena lives on the device
  plan.arena = allocate(arenaBytes);
  for (size_t t = 0; t < numTensors; ++t)
    if (plan.offsets[t] >= 0) plan.views[t].data = plan.arena.get() + plan.offsets[t];
  return "";
}

Expected<MemoryPlanSummary> Session::plan(const std::map<std::string, std::vector<int64_t>> &inputShapes) {
  std::vector<std::vector<int64_t>> key;
  if (std::string err = impl_->checkInputs(inputShapes, nullptr, key); !err.empty()) return Status::error(err);
  auto it = impl_->plans.find(key);
  if (it == impl_->plans.end()) {
    auto plan = std::make_unique<Plan>();
    if (std::string err = impl_->buildPlan(key, *plan); !err.empty()) return Status::error(err);
    it = impl_->plans.emplace(key, std::move(plan)).first;
  }
  return it->second->summary;
}

void Session::Impl::decideFusion() {
  const auto &spec = art.spec;
  auto watched = [&](size_t k) { // a tap on kernel k or its result
    for (auto &[pattern, callback] : taps)
      if (globMatch(pattern, spec.kernels[k].source) || globMatch(pattern, spec.tensors[size_t(spec.kernels[k].outputs[0])].name))
        return true;
    return false;
  };
  for (size_t k = 0; k < geluOf.size(); ++k)
    if (geluOf[k] >= 0) fusedGelu[k] = fusedGelu[size_t(geluOf[k])] = !watched(k);
  for (size_t k = 0; k < attentionTransposes.size(); ++k)
    for (int i = 0; i < 4; ++i) {
      const int32_t t = attentionTransposes[k][size_t(i)];
      if (t < 0) continue;
      // Input side: the transpose's result is never written; output side: the attention's.
      const bool fold = !watched(i < 3 ? size_t(t) : k);
      folded[k][size_t(i)] = fold;
      skipped[size_t(t)] = fold;
    }
}

void Session::Impl::fireTaps(size_t k, Plan &plan) {
  if (taps.empty()) return;
  const auto &kernel = art.spec.kernels[k];
  for (int32_t out : kernel.outputs) {
    const auto &name = art.spec.tensors[size_t(out)].name;
    for (auto &[pattern, callback] : taps)
      if (globMatch(pattern, kernel.source) || globMatch(pattern, name)) {
        const cpu::View &v = activeViews(plan)[size_t(out)];
        Tensor t = Tensor::borrow(v.dtype, v.shape, v.data);
        if (backend) { // a host copy of the device tensor
          t = Tensor::zeros(v.dtype, v.shape);
          if (std::string e = backend->download(t.data(), v.data, v.bytes()); !e.empty()) {
            std::fprintf(stderr, "lathe: tap on '%s': %s\n", name.c_str(), e.c_str());
            continue;
          }
        }
        callback(TapEvent{kernel.source, name, kernel.op, t, out, int32_t(k)});
      }
  }
}

Expected<Plan *> Session::Impl::execute(const std::map<std::string, Tensor> &feeds, bool decoding) {
  static std::atomic<uint64_t> serials{0};
  runSerial = ++serials;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, DType> dtypes;
  for (const auto &[name, t] : feeds) {
    if (!t.data() && t.numel() != 0) return Status::error("input '" + name + "' has no data");
    shapes[name] = t.shape();
    dtypes[name] = t.dtype();
  }
  std::vector<std::vector<int64_t>> key;
  if (std::string err = checkInputs(shapes, &dtypes, key); !err.empty()) return Status::error(err);
  // Decoding plans are kept apart: their position values are recomputed per step.
  if (decoding) key.push_back({-1});
  auto it = plans.find(key);
  if (it == plans.end()) {
    if (plans.size() >= 16) plans.clear(); // bound the cache for ever-changing shapes
    auto plan = std::make_unique<Plan>();
    std::vector<std::vector<int64_t>> shapesOnly(key.begin(), key.begin() + std::ptrdiff_t(inputs.size()));
    if (std::string err = buildPlan(shapesOnly, *plan); !err.empty()) return Status::error(err);
    it = plans.emplace(key, std::move(plan)).first;
  }
  Plan &plan = *it->second;
  lastPlannedBytes = plan.summary.arenaBytes;
  const auto &spec = art.spec;
  decideFusion();
  for (const auto &check : idsChecks) {
    const Tensor &ids = feeds.at(inputs[check.input].name);
    for (int64_t p = 0; p < ids.numel(); ++p) {
      int64_t id = ids.dtype() == DType::I64 ? ids.data<int64_t>()[p] : ids.dtype() == DType::I32 ? ids.data<int32_t>()[p] : 0;
      if (id < 0 || id >= check.rows)
        return Status::error("node '" + spec.kernels[check.kernel].source + "' (embedding): id " + std::to_string(id) + " at position " +
                             std::to_string(p) + " is outside the table's " + std::to_string(check.rows) + " rows");
    }
  }
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const Tensor &feed = feeds.at(inputs[i].name);
    if (!backend) {
      plan.views[size_t(spec.inputs[i])].data = const_cast<void *>(feed.data());
    } else if (std::string e = backend->upload(plan.deviceInputs[i].get(), feed.data(), plan.deviceViews[size_t(spec.inputs[i])].bytes());
               !e.empty()) {
      return Status::error("input '" + inputs[i].name + "': " + e);
    }
  }
  for (size_t k = 0; k < spec.kernels.size(); ++k) {
    bool rerun = activeDecoder && activeDecoder->offsetKernels[k];
    if (activeDecoder && int32_t(k) == activeDecoder->logitsKernel && activeDecoder->lastPositions < activeDecoder->stepLength) {
      if (std::string err = runLastRows(k, plan); !err.empty()) {
        for (int32_t t : spec.inputs) plan.views[size_t(t)].data = nullptr;
        return Status::error(err);
      }
      continue;
    }
    if ((!planTime[k] || rerun) && !(k < skipped.size() && skipped[k]))
      if (std::string err = runKernel(k, plan); !err.empty()) {
        for (int32_t t : spec.inputs) plan.views[size_t(t)].data = nullptr;
        return Status::error(err);
      }
    fireTaps(k, plan);
    if (stopRequested) {
      stopRequested = false;
      stopped = true;
      break;
    }
  }
  if (backend)
    if (std::string e = backend->synchronize(); !e.empty()) return Status::error("running on " + deviceName + ": " + e);
  return &plan;
}

std::string Session::Impl::runLastRows(size_t k, Plan &plan) {
  const auto &kernel = art.spec.kernels[k];
  std::vector<cpu::View> &views = activeViews(plan);
  const cpu::View in = views[size_t(kernel.inputs[0])], out = views[size_t(kernel.outputs[0])];
  const int64_t n = activeDecoder->stepLength, last = activeDecoder->lastPositions;
  const int64_t hidden = in.shape[2], width = out.shape[2];
  for (int64_t b = 0; b < in.shape[0]; ++b) {
    cpu::View rows = in, result = out;
    rows.shape = {1, last, hidden};
    rows.data = static_cast<float *>(in.data) + (b * n + n - last) * hidden;
    result.shape = {1, last, width};
    result.data = static_cast<float *>(out.data) + b * last * width;
    views[size_t(kernel.inputs[0])] = rows;
    views[size_t(kernel.outputs[0])] = result;
    std::string err = runKernel(k, plan);
    views[size_t(kernel.inputs[0])] = in;
    views[size_t(kernel.outputs[0])] = out;
    if (!err.empty()) return err;
  }
  return "";
}

Expected<std::vector<NamedTensor>> Session::run(const std::map<std::string, Tensor> &inputs) {
  impl_->stopped = false;
  auto planned = impl_->execute(inputs, false);
  if (!planned) return planned.status();
  Plan &plan = **planned;
  const auto &spec = impl_->art.spec;
  std::vector<NamedTensor> outputs;
  if (impl_->stopped) { // a tap asked to stop: the outputs were not computed
    for (int32_t t : spec.inputs) plan.views[size_t(t)].data = nullptr;
    return outputs;
  }
  for (size_t i = 0; i < spec.outputs.size(); ++i) {
    const cpu::View &v = impl_->activeViews(plan)[size_t(spec.outputs[i])];
    if (impl_->backend && !(impl_->hostKnown[size_t(spec.outputs[i])] && plan.views[size_t(spec.outputs[i])].data)) {
      Tensor t = Tensor::zeros(v.dtype, v.shape);
      if (std::string e = impl_->backend->download(t.data(), v.data, v.bytes()); !e.empty())
        return Status::error("output '" + impl_->outputs[i].name + "': " + e);
      outputs.push_back({impl_->outputs[i].name, std::move(t)});
      continue;
    }
    const cpu::View &h = plan.views[size_t(spec.outputs[i])];
    outputs.push_back({impl_->outputs[i].name, Tensor::borrow(h.dtype, h.shape, h.data).clone()});
  }
  for (int32_t t : spec.inputs) plan.views[size_t(t)].data = nullptr;
  return outputs;
}

// ------------------------------------------------------------------ incremental decoding

const std::string &Session::incrementalReason() const { return impl_->incremental.reason; }
int64_t Session::decodedLength() const { return impl_->decoder ? impl_->decoder->past : 0; }
void Session::resetDecoding() {
  if (impl_->decoder) impl_->decoder->past = 0;
}

Status Session::startDecoding(int64_t maxContext, int64_t batch) {
  Impl &im = *impl_;
  if (!im.incremental.ok) return Status::error("this model cannot decode incrementally: " + im.incremental.reason);
  if (maxContext < 1) return Status::error("the maximum context must be at least 1, got " + std::to_string(maxContext));
  if (batch < 1) return Status::error("the batch must be at least 1, got " + std::to_string(batch));
  const auto &spec = im.art.spec;
  auto d = std::make_unique<Impl::Decoder>();
  d->maxContext = maxContext;
  d->batch = batch;
  d->cacheOf.assign(spec.kernels.size(), -1);
  for (int32_t k : im.incremental.attentionKernels) {
    const auto &kernel = spec.kernels[size_t(k)];
    const auto &key = spec.tensors[size_t(kernel.inputs[1])];
    if (key.shape.size() != 4 || !key.shape[1].isStatic() || !key.shape[3].isStatic())
      return Status::error("node '" + kernel.source + "': the key's head count and head size must be static to size its cache");
    // Kept in the attention kernel's packed block layout when it has one for
    // this head size, so no step re-packs the cached keys and values.
    const uint64_t heads = uint64_t(batch) * uint64_t(key.shape[1].value);
    int64_t kHead = 0, vHead = 0;
    if (im.backend) { // on the device, in the plain layout
      if (!im.onDevice[size_t(k)])
        return Status::error("node '" + kernel.source + "' (attention) cannot decode on " + im.deviceName + ": " + im.hostReason[size_t(k)]);
      const uint64_t floats = heads * uint64_t(maxContext) * uint64_t(key.shape[3].value);
      std::string err;
      void *p = im.backend->allocate(2 * floats * sizeof(float), err);
      if (!p) return Status::error("the KV cache of '" + kernel.source + "': " + err);
      d->deviceStorage.emplace_back(im.backend.get(), p);
      if (std::string e = im.backend->zero(p, 2 * floats * sizeof(float)); !e.empty()) return Status::error(e);
      cpu::KvCache cache;
      cache.k = static_cast<float *>(p);
      cache.v = cache.k + floats;
      cache.capacity = maxContext;
      d->cacheOf[size_t(k)] = int32_t(d->caches.size());
      d->caches.push_back(cache);
      continue;
    }
    im.isa->packedKvSize(maxContext, key.shape[3].value, &kHead, &vHead);
    uint64_t kFloats = kHead > 0 ? heads * uint64_t(kHead) : heads * uint64_t(maxContext) * uint64_t(key.shape[3].value);
    uint64_t vFloats = vHead > 0 ? heads * uint64_t(vHead) : kFloats;
    Buffer storage = allocate((kFloats + vFloats) * sizeof(float));
    if (!storage) return Status::error("cannot allocate the KV cache (" + std::to_string((kFloats + vFloats) * 4 >> 20) + " MiB per layer)");
    std::memset(storage.get(), 0, (kFloats + vFloats) * sizeof(float));
    cpu::KvCache cache;
    cache.k = reinterpret_cast<float *>(storage.get());
    cache.v = cache.k + kFloats;
    cache.capacity = maxContext;
    cache.kHeadFloats = kHead;
    cache.vHeadFloats = vHead;
    d->cacheOf[size_t(k)] = int32_t(d->caches.size());
    d->caches.push_back(cache);
    d->storage.push_back(std::move(storage));
  }
  // Plan-time kernels downstream of `positions` are recomputed every step.
  std::vector<char> shifted(spec.tensors.size(), 0);
  d->offsetKernels.assign(spec.kernels.size(), 0);
  for (int32_t k : im.incremental.positionsKernels) {
    d->offsetKernels[size_t(k)] = 1;
    for (int32_t out : spec.kernels[size_t(k)].outputs) shifted[size_t(out)] = 1;
  }
  for (size_t k = 0; k < spec.kernels.size(); ++k) {
    if (!im.planTime[k]) continue;
    bool depends = false;
    for (int32_t in : spec.kernels[k].inputs) depends |= in >= 0 && shifted[size_t(in)];
    if (!depends) continue;
    d->offsetKernels[k] = 1;
    for (int32_t out : spec.kernels[k].outputs) shifted[size_t(out)] = 1;
  }
  for (size_t k = 0; k < spec.kernels.size(); ++k) {
    const auto &kernel = spec.kernels[k];
    if (kernel.op != "linear" || kernel.outputs.empty() || kernel.outputs[0] != spec.outputs[0] || kernel.inputs.empty()) continue;
    const auto &x = spec.tensors[size_t(kernel.inputs[0])];
    const auto &y = spec.tensors[size_t(kernel.outputs[0])];
    if (x.dtype == DType::F32 && y.dtype == DType::F32 && x.shape.size() == 3 && y.shape.size() == 3 && x.shape[2].isStatic())
      d->logitsKernel = int32_t(k);
  }
  im.decoder = std::move(d);
  return Status();
}

Expected<Tensor> Session::append(const std::vector<int32_t> &ids, int64_t lastPositions) {
  Impl &im = *impl_;
  if (!im.decoder) return Status::error("call startDecoding() before append()");
  Impl::Decoder &d = *im.decoder;
  const auto &spec = im.art.spec;
  if (ids.empty() || ids.size() % size_t(d.batch))
    return Status::error("append() takes batch x n ids (batch " + std::to_string(d.batch) + "), got " + std::to_string(ids.size()));
  const int64_t n = int64_t(ids.size()) / d.batch;
  if (d.past + n > d.maxContext)
    return Status::error("the context is full: " + std::to_string(d.past) + " cached + " + std::to_string(n) + " new positions exceed the maximum of " +
                         std::to_string(d.maxContext) + " (raise the maximum context)");
  if (lastPositions < 1 || lastPositions > n)
    return Status::error("lastPositions must be in 1.." + std::to_string(n) + ", got " + std::to_string(lastPositions));
  // Inputs, in buffers reused while the step length stays the same.
  if (d.feedLength != n) {
    d.feeds.clear();
    for (size_t i = 0; i < spec.inputs.size(); ++i)
      d.feeds.emplace(im.inputs[i].name, Tensor::zeros(im.inputs[i].dtype, {d.batch, n}));
    d.feedLength = n;
  }
  auto put = [](Tensor &t, int64_t i, int64_t v) {
    if (t.dtype() == DType::I64) t.data<int64_t>()[i] = v;
    else t.data<int32_t>()[i] = int32_t(v);
  };
  const auto &plan = im.incremental;
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    Tensor &t = d.feeds.at(im.inputs[i].name);
    bool isMask = std::find(plan.maskInputs.begin(), plan.maskInputs.end(), int32_t(i)) != plan.maskInputs.end();
    bool isPos = std::find(plan.positionInputs.begin(), plan.positionInputs.end(), int32_t(i)) != plan.positionInputs.end();
    for (int64_t b = 0; b < d.batch; ++b)
      for (int64_t j = 0; j < n; ++j) {
        int64_t v = 0;
        if (int32_t(i) == plan.idsInput) v = ids[size_t(b * n + j)];
        else if (isMask) v = 1;
        else if (isPos) v = d.past + j;
        put(t, b * n + j, v);
      }
  }
  for (auto &cache : d.caches) cache.past = d.past;
  d.stepLength = n;
  d.lastPositions = lastPositions;
  im.activeDecoder = &d;
  auto planned = im.execute(d.feeds, true);
  im.activeDecoder = nullptr;
  if (!planned) return planned.status();
  Plan &p = **planned;
  for (int32_t t : spec.inputs) p.views[size_t(t)].data = nullptr;
  d.past += n;
  // The logits: the first output (the analysis checked every output is [batch, sequence, ...]).
  const cpu::View &out = im.activeViews(p)[size_t(spec.outputs[0])];
  if (out.dtype != DType::F32 || out.shape.size() < 2)
    return Status::error("output '" + im.outputs[0].name + "' is not f32 [batch, sequence, ...]");
  int64_t vocab = 1; // everything after the sequence axis, per position
  for (size_t d = 2; d < out.shape.size(); ++d) vocab *= out.shape[d];
  d.lastLogits.resize(size_t(d.batch * lastPositions * vocab));
  const float *src = static_cast<const float *>(out.data);
  const bool packed = d.logitsKernel >= 0 && lastPositions < n; // runLastRows wrote [batch, last, vocab]
  for (int64_t b = 0; b < d.batch; ++b) {
    float *dst = d.lastLogits.data() + b * lastPositions * vocab;
    const float *from = src + (packed ? b * lastPositions : b * n + n - lastPositions) * vocab;
    const size_t bytes = size_t(lastPositions * vocab) * sizeof(float);
    if (!im.backend) std::memcpy(dst, from, bytes);
    else if (std::string e = im.backend->download(dst, from, bytes); !e.empty()) return Status::error("logits: " + e);
  }
  std::vector<int64_t> shape = out.shape;
  shape[1] = lastPositions;
  return Tensor::borrow(DType::F32, shape, d.lastLogits.data());
}

} // namespace lathe
