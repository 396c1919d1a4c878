// The CPU kernel table, keyed by (op, weight format, device). Each entry has a
// shape function (computes result shapes from operand shapes, and from the
// values of the operands listed in valueOperands, validating everything) and
// a run function. Later formats (int8, int4, sparse) and devices (cuda) are
// new entries, not new branches.
#pragma once

#include "lathe/Tensor.h"
#include "runtime/artifact/ArtifactSpec.h"
#include "runtime/core/ThreadPool.h"
#include "runtime/cpu/Int8Gemm.h"
#include "runtime/cpu/IsaKernels.h"

#include <string>
#include <vector>

namespace lathe::cpu {

/// A tensor as a kernel sees it: dtype, resolved shape, data (null while planning
/// unless the value is known then: weights and shape-only values).
struct View {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  void *data = nullptr;
  int64_t numel() const;
  size_t bytes() const { return size_t(numel()) * artifact::dtypeSize(dtype); }
};

/// One attention layer's key/value cache while decoding incrementally:
/// [batch, kv_heads, capacity, head_dim] each; positions [0, past) are filled.
struct KvCache {
  float *k = nullptr, *v = nullptr;
  int64_t capacity = 0, past = 0;
  // > 0: k and v hold IsaTable::packKvRow's packed layout, this many floats per
  // (batch, kv head); 0: plain [batch, kv_heads, capacity, head_dim].
  int64_t kHeadFloats = 0, vHeadFloats = 0;
};

struct KernelContext {
  const artifact::KernelSpec *spec = nullptr;
  std::vector<const View *> inputs; // null for absent optional operands
  std::vector<View *> outputs;      // dtype preset from the artifact; shape set by the shape function
  core::ThreadPool *pool = nullptr;
  const IsaTable *isa = nullptr;
  // The int8 GEMM table the session packed W8A8 weights for (fixed at open, so
  // LATHE_AMX or LATHE_ISA_MAX changing later cannot mismatch the layout); null:
  // int8TableFor(isa->name).
  const Int8Table *int8 = nullptr;
  const float *packedWeight = nullptr; // linear: operand 1 pre-packed for isa->gemm (w8a8: w8a8Pack), or null
  // oneDNN's fp32 GEMM (OneDnn.h), chosen at open; null: isa->gemm.
  const struct Sgemm *sgemm = nullptr;
  // linear: operand 1 packed for oneDNN's matmul primitive, one block per pool thread (OneDnn.h), or null.
  class PackedLinear *packedLinear = nullptr;
  // A linear whose result only an erf GELU reads, fused with it (the session
  // decides per run: never while a tap watches the linear's result).
  // linear: write GELU of the product; gelu: its input already holds those values.
  bool applyGelu = false, geluApplied = false;
  // attention: operand i (query, key, value) read from / the result written to
  // the [batch, seq, heads, head_dim] tensor that a transpose (perm 0,2,1,3),
  // skipped this run, would have read / written; null: as given.
  const View *bshdInputs[3] = {nullptr, nullptr, nullptr};
  View *bshdOutput = nullptr;
  // Incremental decoding: `positions` counts from positionOffset; `attention`
  // appends its key/value rows to `cache` at `past` and attends over the whole
  // cache (its mask operand, from all-ones attention masks, is not read).
  int64_t positionOffset = 0;
  KvCache *cache = nullptr;
  // Unique per Session::run (from a process-wide counter): within one run a
  // tensor index names one value, so kernels may reuse work derived from an
  // input (W8A8's quantized activations, shared by q/k/v) keyed by it.
  uint64_t runSerial = 0;
};

using KernelFn = std::string (*)(KernelContext &);

struct KernelEntry {
  KernelFn shape = nullptr;
  KernelFn run = nullptr;
  bool inPlace = false;            // result 0 may share operand 0's buffer (same size)
  std::vector<int> valueOperands;  // operands whose values the shape function reads
};

/// Null if no kernel exists for the key.
const KernelEntry *findKernel(const std::string &op, const std::string &weightFormat, const std::string &device);
void registerKernel(const std::string &op, const std::string &weightFormat, const std::string &device, KernelEntry entry);

/// Selects the ISA table: `forced` ("baseline", "avx2", "avx512"), else env
/// LATHE_ISA, else the best the CPU supports. Null and `error` set when a
/// forced level is unknown or unsupported by this CPU.
const IsaTable *selectIsa(const std::string &forced, std::string &error);
/// The levels this CPU can run, lowest first.
std::vector<std::string> supportedIsas();
const IsaTable *isaByName(const std::string &name);

/// W8A8 weights as Session::open keeps them (in a float buffer, for
/// KernelContext::packedWeight): t's packed layout padded to 64 bytes, then
/// the n per-channel scales as f32.
int64_t w8a8PackedFloats(const Int8Table *t, int64_t n, int64_t k);
int64_t w8a8ScaleOffsetFloats(const Int8Table *t, int64_t n, int64_t k);
void w8a8Pack(const Int8Table *t, const int8_t *q, const uint16_t *scales, int64_t n, int64_t k, float *packed);

} // namespace lathe::cpu
