//===- Passes.td - every Lathe pass with its options ----------------------===//
#ifndef LATHE_PASSES
#define LATHE_PASSES

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Simplification
//===----------------------------------------------------------------------===//

def FoldConstants : Pass<"lathe-fold-constants", "mlir::func::FuncOp"> {
  let summary = "Fold ops on constants, refine result types, remove dead ops (DCE)";
  let description = [{
    Runs every lathe folder to a fixed point, re-infers result types so that
    folded shapes become static, and erases ops whose results are unused.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
}

def FoldShapes : Pass<"lathe-fold-shapes", "mlir::func::FuncOp"> {
  let summary = "Fold shape-computation chains over partially known shapes";
  let description = [{
    Evaluates Shape→Gather/Slice→Unsqueeze→Concat chains symbolically: each
    element is a constant or a dimension of some tensor (dimensions are traced
    to their source through shape-preserving ops). Reshape and Expand targets
    become constants (0 copies a dimension, -1 is inferred), Range over a
    dimension and slices of position caches by sequence length become
    `lathe.positions`.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
}

def EliminateNoops : Pass<"lathe-eliminate-noops", "mlir::func::FuncOp"> {
  let summary = "Remove Identity/Dropout, and Cast, Reshape, Transpose, Expand that change nothing";
  let dependentDialects = ["::lathe::ir::LatheDialect"];
}

def FoldChains : Pass<"lathe-fold-chains", "mlir::func::FuncOp"> {
  let summary = "Merge reshape→reshape and transpose→transpose chains; gather(embedding(T, positions), I) → embedding(T, I)";
  let dependentDialects = ["::lathe::ir::LatheDialect"];
}

def FuseLinear : Pass<"lathe-fuse-linear", "mlir::func::FuncOp"> {
  let summary = "MatMul/Gemm with a constant weight (+ bias Add) → lathe.linear";
  let description = [{
    Also folds the flatten → Gemm → unflatten form of Hugging Face Conv1D
    layers. Weights are stored [out_features, in_features]: a MatMul weight
    [in, out] is transposed once, here.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
}

def FuseNorms : Pass<"lathe-fuse-norms", "mlir::func::FuncOp"> {
  let summary = "Decomposed LayerNorm and RMSNorm → lathe.layer_norm / lathe.rms_norm";
  let dependentDialects = ["::lathe::ir::LatheDialect"];
}

def FuseActivations : Pass<"lathe-fuse-activations", "mlir::func::FuncOp"> {
  let summary = "GELU (erf and tanh forms) → lathe.gelu; x·sigmoid(x) → lathe.silu";
  let dependentDialects = ["::lathe::ir::LatheDialect"];
}

def FuseRotary : Pass<"lathe-fuse-rotary", "mlir::func::FuncOp"> {
  let summary = "x·cos + rotate_half(x)·sin (slice, neg, concat, two muls, add) → lathe.rotary";
  let dependentDialects = ["::lathe::ir::LatheDialect"];
}

def FuseAttention : Pass<"lathe-fuse-attention", "mlir::func::FuncOp"> {
  let summary = "Scaled dot-product attention → lathe.attention";
  let description = [{
    softmax(Q·Kᵀ·scale + mask)·V with heads in dimension 1 becomes one op.
    Grouped KV heads (repeat_kv) become num_kv_heads; a causal mask from a
    sliced lower-triangular buffer or a Trilu/Range comparison chain becomes
    `causal = true`, and an additive padding mask stays an operand.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
}

def ExplainUnfused : Pass<"lathe-explain-unfused", "mlir::func::FuncOp"> {
  let summary = "Remark on every Softmax, ReduceMean, Erf and Tanh that survived fusion";
  let description = [{
    Each remark names the op's ONNX node (its location) and the first
    condition of the fusion that failed, so a user sees why a layer stayed
    unfused.
  }];
}

//===----------------------------------------------------------------------===//
// Lowering
//===----------------------------------------------------------------------===//

def VerifyLowerable : Pass<"lathe-verify-lowerable", "mlir::func::FuncOp"> {
  let summary = "Check that every op and tensor type has a runtime counterpart";
  let description = [{
    Every op must be a lathe op, every value a ranked tensor of an element
    type the runtime stores (f32, f16, bf16, f64, i64, i32, i16, i8, ui8, i1),
    and every constant must carry its data (a text dump elides weights). Each
    problem is reported at its ONNX node; the pass fails if there is any.
  }];
}


def QuantizeWeights : Pass<"lathe-quantize-weights", "mlir::func::FuncOp"> {
  let summary = "Round-to-nearest weight-only quantization: lathe.linear → lathe.quantized_linear (int8, int4, int3, bf16, fp16)";
  let description = [{
    Compresses the constant weight of every lathe.linear whose node name matches
    `include` (all when empty) and no `exclude` pattern. Scales are f16; each new
    op carries a lathe.compression dictionary (method, bits per weight, bytes
    before/after, relative weight error) for the compile report. Layers it
    cannot compress get a remark saying why.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
  let options = [
    Option<"format", "format", "std::string", "\"int8\"",
           "int8 | int4 | int3 | bf16 | fp16 (weight-only; fp16 refuses a layer with |w| > 65504) | "
           "w8a8 (int8 weights per output channel and int8 activations)">,
    Option<"groupSize", "group-size", "int64_t", "0",
           "weights per scale: 0 = one per output channel (int8) or 32 (int4); int4 needs a multiple of 32">,
    Option<"actMode", "act-mode", "std::string", "\"dynamic\"",
           "w8a8: dynamic (a scale per token at run time) | static (scales from the calibration statistics)">,
    Option<"actGranularity", "act-granularity", "std::string", "\"tensor\"",
           "w8a8 static: tensor (one scale) | channel (a scale per input channel, folded into the weight's columns)">,
    Option<"actCalibration", "act-calibration", "std::string", "\"minmax\"",
           "w8a8 static per tensor: minmax (max |x|) | percentile (of |x|, act-percentile)">,
    Option<"actPercentile", "act-percentile", "double", "99.99", "w8a8 static percentile of |x|, in (0, 100]">,
    Option<"symmetric", "symmetric", "bool", "true", "int4: scale·(q−8) (true) or scale·q + min (false)">,
    ListOption<"include", "include", "std::string", "glob patterns on node names (empty: every linear)">,
    ListOption<"exclude", "exclude", "std::string", "glob patterns on node names to leave alone">,
    Option<"targets", "targets", "std::string", "\"linear\"",
           "linear: lathe.linear layers; embedding: lathe.embedding tables (int8 only)">,
    Option<"method", "method", "std::string", "\"rtn\"",
           "rtn: round to nearest; gptq: Hessian-compensated rounding (needs lathe.calibration xtx); "
           "awq: round to nearest with a clipping ratio per group searched on the calibration XᵀX "
           "(run lathe-awq-scale first for AWQ's channel scales)">,
    Option<"dampening", "dampening", "double", "0.01", "gptq: λ added to H's diagonal, as a fraction of its mean">,
    Option<"activationOrder", "act-order", "bool", "false", "gptq: quantize columns in decreasing order of input energy">,
    Option<"blockSize", "block-size", "int64_t", "128", "gptq: columns per lazily-updated block">,
    Option<"onlyCalibrated", "only-calibrated", "bool", "false",
           "gptq/awq: leave layers without calibration statistics alone (the sequential calibration driver)">,
    Option<"compensationRank", "compensation-rank", "int64_t", "0",
           "int8/int4/int3: add a rank-r correction of the quantization error W − Ŵ (bf16 factors; activation-aware "
           "with the layer's calibration XᵀX, else plain SVD)">,
    Option<"int8Activations", "int8-activations", "bool", "false",
           "int8/int4: the runtime quantizes the input to int8 per block of 32 (act_block = 32) and sums the products "
           "in integers (int8 groups must be multiples of 32 or one per output channel)">,
  ];
}

def Prune : Pass<"lathe-prune", "mlir::func::FuncOp"> {
  let summary = "Unstructured and N:M pruning of lathe.linear weights: magnitude, Wanda, SparseGPT";
  let description = [{
    Zeroes weights of every selected lathe.linear (its weight stays a dense f32
    constant) and records lathe.sparsity = {method, pattern, density,
    weight_error, output_error_xtx?} for the report and for the passes after it:
    lathe-quantize-weights format=int4 stores an N:M layer's kept values as int4
    (lathe.sparse_linear), and lathe-pack-sparse stores the N:M layers left in
    f32. Wanda and SparseGPT need the layer's calibration XᵀX (see
    passes/prune/PruneMath.h for the criteria).
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
  let options = [
    Option<"method", "method", "std::string", "\"magnitude\"", "magnitude | wanda | sparsegpt">,
    Option<"sparsity", "sparsity", "double", "0.5", "unstructured: the fraction of weights removed, in [0, 1)">,
    Option<"pattern", "pattern", "std::string", "\"\"", "empty (unstructured) | 2:4 | 4:8">,
    Option<"dampening", "dampening", "double", "0.01", "sparsegpt: λ added to H's diagonal, as a fraction of its mean">,
    Option<"blockSize", "block-size", "int64_t", "128", "sparsegpt: columns per block (its mask is chosen per block)">,
    ListOption<"include", "include", "std::string", "glob patterns on node names (empty: every linear)">,
    ListOption<"exclude", "exclude", "std::string", "glob patterns on node names to leave alone">,
    Option<"onlyCalibrated", "only-calibrated", "bool", "false", "wanda/sparsegpt: leave layers without statistics alone">,
  ];
}

def StructuredPrune : Pass<"lathe-prune-structured", "mlir::func::FuncOp"> {
  let summary = "Removes whole FFN channels and attention heads, rewriting shapes: a smaller dense model";
  let description = [{
    FFN blocks (up → activation → down, or gate/up → silu·mul → down): the
    `ffn` fraction of the intermediate channels (rounded down to a multiple of
    32) with the lowest score is removed from the producers' rows and the
    down projection's columns. Attention (q/k/v → reshape → transpose →
    lathe.attention → transpose → reshape → o): with as many key/value heads as
    query heads the `heads` fraction of whole heads goes; with grouped KV heads
    the same number of query heads leaves every group, so the grouping stays
    intact. Every shape between the projections is re-inferred and reshape
    targets rewritten. Scores per channel j of the down/o projection's input x:
      importance   ‖x_j‖²·‖W_down[:, j]‖² (from lathe.calibration xtx), summed over a head
      weight-norm  ‖W_up[j, :]‖·‖W_down[:, j]‖ (products of the row and column norms)
      random       a seeded shuffle
    Records lathe.structured = {removed, kept, criterion} on the down/o projection.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
  let options = [
    Option<"ffn", "ffn", "double", "0", "the fraction of each FFN's intermediate channels removed, in [0, 1)">,
    Option<"heads", "heads", "double", "0", "the fraction of each attention's query heads removed, in [0, 1)">,
    Option<"criterion", "criterion", "std::string", "\"importance\"", "importance | weight-norm | random">,
    Option<"seed", "seed", "int64_t", "0", "random: the seed">,
    ListOption<"exclude", "exclude", "std::string", "glob patterns on the down/o projection's node name to leave alone">,
  ];
}

def PackSparse : Pass<"lathe-pack-sparse", "mlir::func::FuncOp"> {
  let summary = "Pruned lathe.linear (lathe.sparsity) → lathe.sparse_linear: N:M always, unstructured below a density";
  let description = [{
    N:M layers store their kept values and positions. Unstructured layers store
    a bitmap and their kept values when their density is at most
    `max-density`, the highest density at which the runtime's bitmap kernel
    was measured faster than the dense one (lathe-sparse-bench's density
    sweep); denser layers stay dense, with lathe.sparse_kept_dense saying why.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
  let options = [
    Option<"maxDensity", "max-density", "double", "0.7",
           "unstructured: the highest density stored as a bitmap (above it the dense kernel is faster)">,
  ];
}

def LowRank : Pass<"lathe-low-rank", "mlir::func::FuncOp"> {
  let summary = "Truncated SVD of lathe.linear weights into two linears (plain or activation-aware, SVD-LLM)";
  let description = [{
    Replaces y = x·Wᵀ + b by y = (x·Aᵀ)·Bᵀ + b with W ≈ B·A of rank r (see
    passes/lowrank/LowRankMath.h). The rank comes from `rank`, else the
    `energy` threshold, else `param-ratio` (the fraction of the layer's
    parameters removed). A rank with r·(m + n) ≥ m·n saves nothing: the layer is
    left alone with a remark and a lathe.lowrank_skipped note for the report.
    The first factor is named "<node>.lr_a", the second keeps the node's name
    and carries lathe.lowrank = {method, rank, energy, bytes_before,
    bytes_after, weight_error, output_error_xtx?}.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
  let options = [
    Option<"method", "method", "std::string", "\"svd\"", "svd (plain) | asvd (activation-aware: needs lathe.calibration xtx)">,
    Option<"rank", "rank", "int64_t", "0", "a fixed rank (0: from energy or param-ratio)">,
    Option<"energy", "energy", "double", "0", "the fraction of σ² the kept rank must hold, in (0, 1]">,
    Option<"paramRatio", "param-ratio", "double", "0.2", "the fraction of the layer's parameters removed, in (0, 1)">,
    Option<"dampening", "dampening", "double", "0.01", "asvd: λ added to XᵀX's diagonal, as a fraction of its mean">,
    ListOption<"include", "include", "std::string", "glob patterns on node names (empty: every linear)">,
    ListOption<"exclude", "exclude", "std::string", "glob patterns on node names to leave alone">,
    Option<"onlyCalibrated", "only-calibrated", "bool", "false", "asvd: leave layers without statistics alone">,
  ];
}

def SmoothQuant : Pass<"lathe-smooth-quant", "mlir::func::FuncOp"> {
  let summary = "SmoothQuant: move activation outliers into the weights before W8A8, s = max|x|^α / max|w|^(1−α)";
  let description = [{
    For each set of selected lathe.linear layers that read one input and carry
    lathe.calibration statistics (absmax), computes per input channel
    s_i = max|x_i|^α / max_j |W_ji|^(1−α) (over all the layers), multiplies the
    weights' columns by s and divides the producer of the input by s — the
    same producers as lathe-awq-scale (rms_norm/layer_norm scale and bias, a
    linear's rows, a SwiGLU up projection, the value projection through
    ungrouped attention) — so nothing is added at run time. Inputs no op can
    absorb get a remark and are left alone. The statistics are rewritten for
    the smoothed input, so static activation scales computed after it are right.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
  let options = [
    Option<"alpha", "alpha", "double", "0.5", "migration strength in [0, 1]: 0 leaves x alone, 1 moves all of its range into W">,
    ListOption<"include", "include", "std::string", "glob patterns on node names (empty: every linear)">,
    ListOption<"exclude", "exclude", "std::string", "glob patterns on node names to leave alone">,
    Option<"onlyCalibrated", "only-calibrated", "bool", "false", "leave layers without statistics alone">,
  ];
}
def AwqScale : Pass<"lathe-awq-scale", "mlir::func::FuncOp"> {
  let summary = "AWQ channel scales: search s per input channel, fold 1/s into the producing op and s into the weights";
  let description = [{
    For each set of selected lathe.linear layers that read one input (q/k/v,
    gate/up, …) and carry lathe.calibration statistics with XᵀX, searches
    s = mean|x|^α / √(max·min) over α on a grid, minimising the layers' output
    error after round-to-nearest in the given format (computed from XᵀX), then
    multiplies the weights' columns by s and divides the producer of the input
    by s — an rms_norm/layer_norm scale (and bias), a linear's rows (directly,
    through a SwiGLU mul, or through attention to the value projection when
    heads are not grouped) — so the function computes the same values and the
    runtime format is unchanged. The statistics are rewritten for the scaled
    input. An input whose producing op cannot absorb the scales (gelu, grouped-
    head attention, …) gets, with unfoldable=mul, an elementwise lathe.mul by
    1/s inserted before the layers (llm-awq's ScaledActivation; the layers'
    format is still unchanged), and with unfoldable=skip a remark and no
    scales; a function argument always gets the remark.
  }];
  let dependentDialects = ["::lathe::ir::LatheDialect"];
  let options = [
    Option<"format", "format", "std::string", "\"int4\"", "int8 | int4 | int3: the format the search quantizes to">,
    Option<"groupSize", "group-size", "int64_t", "128", "weights per scale (0 = one per output channel, int8)">,
    Option<"symmetric", "symmetric", "bool", "true", "int4/int3 grid symmetry">,
    Option<"grid", "grid", "int64_t", "20", "α candidates 0, 1/n, …, (n−1)/n">,
    Option<"unfoldable", "unfoldable", "std::string", "\"mul\"",
           "mul | skip: what to do with inputs whose producer cannot absorb 1/s">,
    ListOption<"include", "include", "std::string", "glob patterns on node names (empty: every linear)">,
    ListOption<"exclude", "exclude", "std::string", "glob patterns on node names to leave alone">,
    Option<"onlyCalibrated", "only-calibrated", "bool", "false", "leave layers without statistics alone">,
  ];
}

#endif // LATHE_PASSES
