// Whether an artifact is a causal decoder that can run incrementally (a KV
// cache per attention layer, one new token at a time), and what the runtime
// needs to do so. Plain C++ over the ArtifactSpec: the compiler runs it to
// report (and fail `--require-incremental`), the runtime at session open.
//
// The rules: a tensor "carries positions" when one of its dims has the
// sequence symbol of the token-ids input. Causal `attention` is the only
// kernel allowed to mix positions (its query, key and value carry them on
// axis 2); every other kernel must be position-wise along that axis:
// elementwise ops align it, linear/norms/softmax/reductions must not work
// along it, layout ops must keep it as one dim, gathers/slices/concats must
// not index along it. Position-dependent values come from `positions`
// kernels or a position-ids input (both offset by the cache length when
// decoding). The attention masks may depend only on mask inputs (all ones
// when decoding) and constants. Anything else names the kernel and the reason.
#pragma once

#include "runtime/artifact/ArtifactSpec.h"

#include <string>
#include <vector>

namespace lathe::artifact {

/// What a [batch, sequence] integer model input holds, guessed from its name:
/// "*mask*" → Mask (ones), "*position*" → Positions (0..n-1), "*type*" or
/// "*segment*" → Zeros (token types), anything else → Ids.
enum class InputRole { Ids, Mask, Positions, Zeros };
InputRole classifyInput(const std::string &name);

struct IncrementalPlan {
  bool ok = false;
  std::string reason;                 // why not, naming the kernel (ONNX node) or tensor
  int32_t idsInput = -1;              // index into spec.inputs
  std::vector<int32_t> maskInputs;    // indices into spec.inputs: fed ones
  std::vector<int32_t> positionInputs;// indices into spec.inputs: fed cache length + 0..n-1
  std::vector<int32_t> zeroInputs;    // indices into spec.inputs: fed zeros
  std::vector<int32_t> attentionKernels; // kernel indices, each gets a KV cache
  std::vector<int32_t> positionsKernels; // kernel indices whose values shift by the cache length
  std::string sequenceSymbol;
};

IncrementalPlan analyzeIncremental(const ArtifactSpec &spec);

} // namespace lathe::artifact
