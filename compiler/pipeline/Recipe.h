// Compression recipes: what to compress and how, with per-layer overrides by
// node-name pattern (ONNX node names, GGUF tensor names such as "blk.3.attn_q").
//
//   name: int4-rtn-g128
//   quantize:               # the default for every linear layer
//     format: int4          # int8 | int4 | int3 | bf16 | fp16 (weight-only) | w8a8 (int8 weights and activations)
//     group_size: 128       # int8: 0 = one scale per output channel; int4: a multiple of 32
//     symmetric: true       # int4/int3: scale·(q−8) (q−4 for int3) or scale·q + min
//     method: rtn           # rtn (round to nearest) | gptq | awq | awq+gptq (these need --calibration)
//     dampening: 0.01       # gptq: λ·mean(diag H) added to H's diagonal
//     act_order: false      # gptq: columns in decreasing input energy
//     activations:          # w8a8 only: how the input is quantized to int8
//       mode: dynamic       # dynamic (a scale per token at run time) | static (from --calibration)
//       granularity: tensor # static: tensor | channel (folded into the weight's columns)
//       calibration: minmax # static per tensor: minmax | percentile
//       percentile: 99.99   # with calibration: percentile
//     smoothquant:          # w8a8 only: SmoothQuant's scales first (needs --calibration)
//       alpha: 0.5
//     compensation:         # int8/int4/int3: a rank-r correction of the quantization error (bf16 factors;
//       rank: 8             #   activation-aware with --calibration)
//     int8_activations: true # int8/int4: the input quantized to int8 per block of 32 at run time and the
//                           #   products summed in integers (llama.cpp's Q8_0 activations): faster decode

//   prune:                  # optional, before quantize (N:M then int4 stores the kept values as int4)
//     method: wanda         # magnitude | wanda | sparsegpt (these two need --calibration)
//     sparsity: 0.5         # unstructured: the fraction removed (zeros in a dense f32 weight), or
//     pattern: "2:4"        # 2:4 | 4:8: semi-structured, stored compressed (lathe.sparse_linear)
//     dampening: 0.01       # sparsegpt
//     block_size: 128       # sparsegpt
//   lowrank:                # optional: W ≈ B·A, two linears (quantize then compresses both factors)
//     method: asvd          # svd (plain) | asvd (activation-aware, needs --calibration)
//     param_ratio: 0.2      # the fraction of each layer's parameters removed; or energy: 0.95; or rank: 64
//   structured:             # optional, first: whole FFN channels / attention heads removed (a smaller dense model)
//     ffn: 0.25             # the fraction of each FFN's channels removed
//     heads: 0.25           # the fraction of each attention's heads (KV groups with their query heads) removed
//     criterion: importance # importance (calibrated, needs --calibration) | weight-norm | random
//     seed: 0               # random
//   embeddings:             # optional: embedding tables to int8 (group_size 0 = one scale per row)
//     format: int8
//   overrides:              # first match wins; before the default
//     - match: "output"     # glob: * any run, ? one character
//       quantize: {format: int8}
//     - match: "blk.0.*"
//       skip: true          # leave these layers in f32
//     - match: "*.ffn_down"
//       lowrank: {rank: 96} # an override may set prune, lowrank and/or quantize
//
// YAML (Debian's yaml-cpp; JSON is YAML too). Unknown keys, impossible
// combinations and patterns that match no linear layer are errors naming the
// file and line.
#pragma once

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"

#include <optional>
#include <string>
#include <vector>

namespace lathe::pipeline {

struct QuantizeSettings {
  std::string format = "int8";
  int64_t groupSize = 0;
  bool symmetric = true;
  std::string method = "rtn"; // rtn | gptq | awq | awq+gptq
  double dampening = 0.01;
  bool activationOrder = false;
  // w8a8: activation quantization (see lathe-quantize-weights) and SmoothQuant.
  std::string actMode = "dynamic", actGranularity = "tensor", actCalibration = "minmax";
  double actPercentile = 99.99;
  std::optional<double> smoothAlpha;
  int64_t compensationRank = 0;
  bool int8Activations = false; // int8/int4: the runtime quantizes the input per block of 32 (act_block)
  /// Whether the method needs XᵀX (gptq, awq).
  bool calibrated() const { return method != "rtn"; }
  /// Whether XᵀX is used when calibration data is given (also by a compensation, which works without).
  bool usesGram() const { return calibrated() || compensationRank > 0; }
  /// Whether it needs calibration statistics at all (also SmoothQuant and static activation scales).
  bool needsData() const { return calibrated() || smoothAlpha || (format == "w8a8" && actMode == "static"); }
  std::string describe() const; // "int4 g128 sym rtn"
};

struct PruneSettings {
  std::string method = "magnitude"; // magnitude | wanda | sparsegpt
  double sparsity = 0.5;            // unstructured
  std::string pattern;              // "" | 2:4 | 4:8
  double dampening = 0.01;
  int64_t blockSize = 128;
  bool needsGram() const { return method != "magnitude"; }
};

struct LowRankSettings {
  std::string method = "svd"; // svd | asvd
  int64_t rank = 0;
  double energy = 0, paramRatio = 0.2;
  bool needsGram() const { return method == "asvd"; }
};

struct StructuredSettings {
  double ffn = 0, heads = 0;
  std::string criterion = "importance"; // importance | weight-norm | random
  int64_t seed = 0;
  bool needsGram() const { return criterion == "importance"; }
};

struct RecipeRule {
  std::string match;
  bool skip = false;
  std::optional<QuantizeSettings> quantize;
  std::optional<PruneSettings> prune;
  std::optional<LowRankSettings> lowrank;
  int line = 0; // 1-based line in the recipe file
};

struct Recipe {
  std::string path, name;
  std::optional<QuantizeSettings> defaults;
  std::optional<QuantizeSettings> embeddings; // int8 tables, when asked for
  std::optional<PruneSettings> prune;
  std::optional<LowRankSettings> lowrank;
  std::optional<StructuredSettings> structured;
  std::vector<RecipeRule> overrides;
  /// Whether any rule's method needs calibration statistics with XᵀX.
  bool needsGram() const;
  /// Whether any rule needs calibration data (XᵀX or only per-channel statistics).
  bool needsCalibrationData() const;
};

/// Parses and checks a recipe file. Errors name the file and line.
std::optional<Recipe> loadRecipe(const std::string &path, std::string &error);

/// Every override pattern must match at least one linear layer of the module.
mlir::LogicalResult checkRecipeMatches(mlir::ModuleOp module, const Recipe &recipe, std::string &error);

/// The compress phase: one lathe-quantize-weights pass per override (skips
/// excluded from everything after them), then the default.
/// With `onlyCalibrated`, calibrated methods leave layers without statistics
/// alone (the sequential calibration driver compresses block by block).
void buildCompressPipeline(mlir::OpPassManager &pm, const Recipe &recipe, bool onlyCalibrated = false);

} // namespace lathe::pipeline
