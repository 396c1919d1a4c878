// Fusion matchers shared by the fusion passes and by lathe-explain-unfused.
// Each starts at the op a user would ask about (the anchor) and either returns
// the match or the first condition that failed, in words.
#pragma once

#include "dialects/lathe/LatheDialect.h"

#include <string>

namespace lathe::passes {

struct NormMatch {
  mlir::Value input;
  mlir::Value scale; // null: ones
  mlir::Value bias;  // null: none (layer norm only)
  double epsilon = 0;
  mlir::Operation *root = nullptr; // the op whose result the fused op replaces
};

/// mean(x) → x - mean → (·)² → mean → + eps → sqrt → divide [→ · γ [+ β]].
mlir::FailureOr<NormMatch> matchLayerNorm(ir::ReduceMeanOp mean, std::string &why);
/// mean(x²) → + eps → sqrt → reciprocal/divide → · x [→ · γ].
mlir::FailureOr<NormMatch> matchRmsNorm(ir::ReduceMeanOp meanOfSquares, std::string &why);

struct ActivationMatch {
  mlir::Value input;
  mlir::Operation *root = nullptr;
};

/// x · 0.5 · (1 + erf(x / √2)) in its exporter orderings.
mlir::FailureOr<ActivationMatch> matchGeluErf(ir::ErfOp erf, std::string &why);
/// 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))).
mlir::FailureOr<ActivationMatch> matchGeluTanh(ir::TanhOp tanh, std::string &why);
/// x · sigmoid(x).
mlir::FailureOr<ActivationMatch> matchSilu(ir::SigmoidOp sigmoid, std::string &why);

struct AttentionMatch {
  mlir::Value query, key, value; // [B, H, Sq, D], [B, Hkv, Sk, D], [B, Hkv, Sk, Dv]
  bool keyIsTransposed = false;  // `key` is Kᵀ [B, Hkv, D, Sk] and needs a transpose
  mlir::Value mask;              // additive, may be null
  bool causal = false;
  int64_t numHeads = 0, numKvHeads = 0;
  double scale = 1.0;
  mlir::Operation *root = nullptr; // the probs·V matmul
};

/// softmax(scale · Q·Kᵀ [+ mask] [causal where]) · V.
mlir::FailureOr<AttentionMatch> matchAttention(ir::SoftmaxOp softmax, std::string &why);

/// The single user of a value, if it has exactly one.
mlir::Operation *singleUser(mlir::Value value);

} // namespace lathe::passes
