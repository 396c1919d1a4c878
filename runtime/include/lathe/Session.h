// lathe::Session: open a .lathe artifact, list its inputs and outputs, run it.
//
//   auto session = lathe::Session::open("model.lathe", {.threads = 2});
//   if (!session) { std::cerr << session.error(); return 1; }
//   auto outputs = (*session)->run({{"input_ids", ids}, {"attention_mask", mask}});
//
// A session is reusable with different batch and sequence sizes: shapes are
// resolved at run time and the memory plan for each distinct set of input
// shapes is computed once and cached. run() is not reentrant: one call at a
// time per session.
#pragma once

#include "lathe/Status.h"
#include "lathe/Tensor.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

struct SessionOptions {
  int threads = 0; // 0: one per physical core
  std::string isa;  // "", "baseline", "avx2", "avx512"; empty: env LATHE_ISA, else the best this CPU has
  // "cpu" (or empty) or "cuda" / "cuda:N" (device N). The CUDA backend is a
  // plugin (liblathe-cuda.so) loaded on first use; without it, or without a
  // GPU, open() fails with a one-line reason. Kernels the device has no
  // kernel for run on the host (placement() says which and why).
  std::string device;
};

/// Where one kernel runs in a session (see Session::placement).
struct KernelPlacement {
  std::string source, op, weightFormat;
  bool onDevice = false; // false: on the host CPU
  bool planTime = false; // shape arithmetic computed once on the host while planning
  std::string reason;    // why a kernel of a device session runs on the host
};

/// A graph input or output as declared by the artifact.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<artifact::Dim> shape; // static values or symbols ("batch", "sequence")
  std::string describe() const;     // "input_ids: i64[batch,sequence]"
};

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

/// What a tap sees: the tensor produced by a kernel whose ONNX node (source)
/// or tensor name matches the tap's pattern. The tensor borrows the session's
/// memory and is valid only during the callback.
struct TapEvent {
  const std::string &source;     // ONNX node name of the producing kernel
  const std::string &tensorName; // the tensor's name
  const std::string &op;
  const Tensor &tensor;
  int32_t tensorIndex;           // the tensor's index in the artifact (names need not be unique)
  int32_t kernelIndex;           // the producing kernel's position in the program (one event per output)
};
using TapCallback = std::function<void(const TapEvent &)>;

/// Header information for `lathe inspect`.
struct ArtifactInfo {
  int formatMajor = 0, formatMinor = 0;
  std::string compilerVersion, sourceModel, pipeline, isa;
  std::vector<int32_t> cudaArchs;
  uint64_t fileBytes = 0, weightBytes = 0;
  size_t numKernels = 0, numTensors = 0;
  std::vector<artifact::LayerEntry> manifest;
};

/// One planned memory region (for `lathe inspect`).
struct MemoryPlanSummary {
  uint64_t arenaBytes = 0;         // activation bytes, liveness-planned with reuse
  uint64_t unplannedBytes = 0;     // sum of all activation sizes without reuse
  size_t buffers = 0, tensors = 0, inPlace = 0;
};

class Session {
public:
  static Expected<std::unique_ptr<Session>> open(const std::string &path, const SessionOptions &options = {});
  ~Session();

  const std::vector<TensorInfo> &inputs() const;
  const std::vector<TensorInfo> &outputs() const;
  const ArtifactInfo &info() const;
  /// The tokenizer vocabulary the artifact embeds (GGUF sources carry one), or
  /// null. Build a tokenizer from it with lathe::text::Tokenizer::create.
  const artifact::Vocabulary *vocabulary() const;
  int threads() const;
  /// The instruction-set level the CPU kernels run at ("baseline", "avx2", "avx512").
  const char *isa() const;
  /// "cpu", or the device this session runs on ("cuda:0 NVIDIA H200 (sm_90, 139.8 GiB, 132 SMs)").
  const std::string &device() const;
  /// Per kernel, in execution order: host or device, and why not the device.
  std::vector<KernelPlacement> placement() const;
  /// The placement a session on `device` ("cuda") would get, from the
  /// device's plugin alone: needs no device (`lathe inspect` on any machine).
  Expected<std::vector<KernelPlacement>> placementOn(const std::string &device) const;

  /// Runs the graph. Every declared input must be given, with its dtype and a
  /// shape matching its declaration (static dims equal, equal symbols equal).
  Expected<std::vector<NamedTensor>> run(const std::map<std::string, Tensor> &inputs);

  // ---- Incremental decoding (causal decoders; rules in runtime/artifact/Incremental.h)
  //
  //   session->startDecoding(2048);                 // KV caches for 2048 positions
  //   auto logits = session->append(promptIds);     // prefill: logits of the last position
  //   logits = session->append({nextId});           // one decode step
  //
  /// Empty when the artifact can run incrementally; otherwise why not (naming the node).
  const std::string &incrementalReason() const;
  /// Allocates a KV cache per attention layer for `maxContext` positions of
  /// `batch` sequences (all the same length) and starts empty. Planned memory is
  /// reused by every later append of the same length: no per-token allocation.
  Status startDecoding(int64_t maxContext, int64_t batch = 1);
  /// Appends n = ids.size() / batch tokens to every sequence (row-major
  /// [batch, n]) and returns the logits of the last `lastPositions` of them,
  /// [batch, lastPositions, vocab] (the first output's shape with the sequence
  /// cut to lastPositions). The tensor borrows session memory that the
  /// next append overwrites. Fails, changing nothing, when the cache would overflow.
  Expected<Tensor> append(const std::vector<int32_t> &ids, int64_t lastPositions = 1);
  /// Positions cached so far (0 after startDecoding/resetDecoding).
  int64_t decodedLength() const;
  /// Forgets the cached positions, keeping the memory.
  void resetDecoding();

  /// Calls `callback` after every kernel whose ONNX node name or output tensor
  /// name matches `pattern` (glob: `*` any run, `?` one character).
  void addTap(const std::string &pattern, TapCallback callback);
  void clearTaps();
  /// From a tap callback: end the current run() after this kernel. That run()
  /// then returns no outputs (the calibration driver stops once it has seen
  /// the layers it needs).
  void requestStop();

  /// Plans (or fetches the cached plan) for these input shapes without running.
  Expected<MemoryPlanSummary> plan(const std::map<std::string, std::vector<int64_t>> &inputShapes);
  /// Arena bytes of the plan used by the last run() (0 before any run).
  uint64_t plannedActivationBytes() const;

  struct Impl;

private:
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Glob match used by taps: `*` matches any run, `?` one character.
bool globMatch(const std::string &pattern, const std::string &text);

/// The instruction-set level chosen by CPUID (or forced by LATHE_ISA).
/// Returns an error if LATHE_ISA names a level this CPU lacks or an unknown one.
Expected<std::string> selectedIsa();

} // namespace lathe
