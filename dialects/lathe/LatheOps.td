//===- LatheOps.td - the lathe dialect ------------------------------------===//
//
// Ops sit at the level where compression decisions are made (linear, attention,
// norms) plus the elementwise and shape ops that ONNX exporters emit. Every op
// carries the ONNX node name as its location. Result types are inferred by the
// shape helpers in ShapeHelpers.cpp, which the importer and the folders share.
//
//===----------------------------------------------------------------------===//

#ifndef LATHE_OPS
#define LATHE_OPS

include "mlir/IR/OpBase.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Lathe_Dialect : Dialect {
  let name = "lathe";
  let cppNamespace = "::lathe::ir";
  let summary = "Lathe's model-compression dialect";
  let description = [{
    Tensor-level ops for transformer models: the layers compression works on
    (linear, attention, norms, embedding) and the elementwise and shape ops
    around them. Weights are `dense_resource` blobs.
  }];
  let hasConstantMaterializer = 1;
}

// Result types that are at least as precise as the inferred ones are accepted,
// so folding can refine dynamic dimensions without rebuilding every user.
class Lathe_Op<string mnemonic, list<Trait> traits = []>
    : Op<Lathe_Dialect, mnemonic, !listconcat(traits, [Pure])>;

class Lathe_InferOp<string mnemonic, list<Trait> traits = []>
    : Lathe_Op<mnemonic, !listconcat(traits, [InferTypeOpAdaptor])> {
  let extraClassDeclaration = [{
    static bool isCompatibleReturnTypes(::mlir::TypeRange inferred, ::mlir::TypeRange actual) {
      return ::lathe::ir::areCompatibleResultTypes(inferred, actual);
    }
  }];
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Constants
//===----------------------------------------------------------------------===//

def Lathe_ConstantOp : Lathe_Op<"constant", [ConstantLike, InferTypeOpAdaptor]> {
  let summary = "a constant tensor (weights are dense_resource blobs)";
  let arguments = (ins ElementsAttr:$value);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "attr-dict $value";
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Layers
//===----------------------------------------------------------------------===//

def Lathe_LinearOp : Lathe_InferOp<"linear"> {
  let summary = "y = x·Wᵀ + b, W stored [out_features, in_features]";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$weight,
                       Optional<AnyRankedTensor>:$bias);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_QuantizedLinearOp : Lathe_InferOp<"quantized_linear", [AttrSizedOperandSegments]> {
  let summary = "y = x·Ŵᵀ + b with Ŵ [out_features, in_features] stored compactly";
  let description = [{
    Weight-only compression of lathe.linear. `format`:
      "int8": weight i8 [out, in], scales f16 [out, in/group_size]; Ŵ = scale·q.
      "int4": weight ui8 [out, in/2] in ggml's nibble order (each 32-weight block
              is 16 bytes: weight t in the low nibble of byte t, weight t+16 in the
              high one), scales f16 [out, in/group_size], optional mins of the same
              shape; Ŵ = scale·q + min, or scale·(q − 8) without mins.
      "int3": weight ui8 [out, in·3/8]: each 32-weight block is 12 bytes, bytes
              0–7 the low two bits (byte j: weights j, j+8, j+16, j+24 at bits 0, 2,
              4, 6), bytes 8–11 the high bits (bit t: weight t); optional mins;
              Ŵ = scale·q + min, or scale·(q − 4) without mins.
      "bf16": weight bf16 [out, in]; no scales.
      "fp16": weight f16 [out, in] (IEEE half); no scales.
      "w8a8": int8 weights and int8 activations: weight i8 [out, in], scales f16
              [out, 1] (group_size = in); the input is quantized to int8 at run
              time and the product summed in int32. Without `act_scale` per row
              (dynamic, per token: scale = max|x|/127); with `act_scale` s
              statically: q = round(x/s), or, with `act_scales` f32 [in] (per-
              channel multipliers, the channel scales already folded into the
              weight), q = round(x·act_scales) and the row scale is s.
    Scales and mins have ceil(in/group_size) columns: groups of group_size weights
    along in_features, the last possibly shorter (int4: multiples of 32;
    group_size = in_features gives one scale per output channel).
    `act_block` = 32 (int8 and int4 only; int8 groups a multiple of 32 or one
    per row): the input is quantized to int8 at run time per block of 32 values
    (d = max|x|/127, q = rint(x/d), ggml's Q8_0 rule) and the products are summed
    in integers, as llama.cpp does: faster decoding for a small extra error.
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$weight,
                       Optional<AnyRankedTensor>:$scales, Optional<AnyRankedTensor>:$mins,
                       Optional<AnyRankedTensor>:$bias, Optional<AnyRankedTensor>:$act_scales,
                       StrAttr:$format, I64Attr:$group_size, OptionalAttr<F32Attr>:$act_scale,
                       OptionalAttr<I64Attr>:$act_block);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
  let assemblyFormat = [{
    $input `,` $weight (`scales` $scales^)? (`mins` $mins^)? (`bias` $bias^)? (`act_scales` $act_scales^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let extraClassDeclaration = [{
    static bool isCompatibleReturnTypes(::mlir::TypeRange inferred, ::mlir::TypeRange actual) {
      return ::lathe::ir::areCompatibleResultTypes(inferred, actual);
    }
    /// in_features (the int4 weight holds two per byte).
    int64_t getInFeatures();
  }];
}

def Lathe_SparseLinearOp : Lathe_InferOp<"sparse_linear", [AttrSizedOperandSegments]> {
  let summary = "y = x·Ŵᵀ + b with Ŵ pruned N:M (2:4 or 4:8) and stored as its kept values";
  let description = [{
    In every group of M consecutive input columns of a row exactly N weights are
    kept (`pattern` "2:4" or "4:8"; both keep half, so a row has in/2 kept
    values, in a multiple of 32). Kept values in column order:
      values_format "f32":  values f32 [out, in/2];
      values_format "int4": values ui8 [out, in/4] (kept value t in byte t/2,
                            the low nibble for even t), scales f16
                            [out, ceil(in/group_size)] (group_size counted in
                            input columns, a multiple of 32; the last group may
                            be shorter); ŵ = scale·(q − 8).
    indices ui8: each kept value's position inside its group: 2:4 two bits
    (kept value t at bits 2·(t % 4) of byte t/4, [out, in/8]); 4:8 a nibble
    (byte t/2, low nibble for even t, [out, in/4]).
    pattern "unstructured" (any number kept per row, f32 only): indices is a
    bitmap ui8 [out, in/8] (bit c % 8 of byte c/8 set when column c is kept)
    and values f32 [nnz] the kept values of every row in order, row after row
    (a row starts at the popcount of the earlier rows' bitmaps).
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$values, AnyRankedTensor:$indices,
                       Optional<AnyRankedTensor>:$scales, Optional<AnyRankedTensor>:$bias,
                       StrAttr:$pattern, StrAttr:$values_format, I64Attr:$in_features, I64Attr:$group_size);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
  let assemblyFormat = [{
    $input `,` $values `,` $indices (`scales` $scales^)? (`bias` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
}

def Lathe_MatMulOp : Lathe_InferOp<"matmul"> {
  let summary = "batched matrix product with numpy broadcasting of batch dims";
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_AttentionOp : Lathe_InferOp<"attention"> {
  let summary = "scaled dot-product attention on [batch, heads, seq, head_dim]";
  let description = [{
    softmax(scale·Q·Kᵀ + mask [+ causal]) · V. Q is [B, num_heads, Sq, D],
    K and V are [B, num_kv_heads, Sk, D]; num_heads is a multiple of
    num_kv_heads (grouped-query attention). The optional mask is additive and
    broadcasts to [B, num_heads, Sq, Sk]. `causal` hides keys after the query
    position (aligned to the end of the key sequence).
  }];
  let arguments = (ins AnyRankedTensor:$query, AnyRankedTensor:$key,
                       AnyRankedTensor:$value, Optional<AnyRankedTensor>:$mask,
                       I64Attr:$num_heads, I64Attr:$num_kv_heads,
                       F64Attr:$scale, BoolAttr:$causal);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_LayerNormOp : Lathe_InferOp<"layer_norm"> {
  let summary = "layer normalization over the dimensions from `axis` on";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$scale,
                       Optional<AnyRankedTensor>:$bias,
                       F64Attr:$epsilon, DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_RmsNormOp : Lathe_InferOp<"rms_norm"> {
  let summary = "x / sqrt(mean(x², last dim) + eps) · scale";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$scale,
                       F64Attr:$epsilon);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_RotaryOp : Lathe_InferOp<"rotary"> {
  let summary = "rotary position embedding: x·cos + rotate_half(x)·sin";
  let description = [{
    rotate_half(x) = concat(-x[..., D/2:], x[..., :D/2]) on the last axis
    (the "half-split" rotary of Llama-family models; GGUF's interleaved pairs
    are un-permuted by the importer). `cos` and `sin` have one shape, last
    dimension D, and broadcast to x without growing it.
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$cos,
                       AnyRankedTensor:$sin);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_GeluOp : Lathe_InferOp<"gelu"> {
  let summary = "GELU, exact (erf) or tanh approximation";
  let arguments = (ins AnyRankedTensor:$input,
                       DefaultValuedStrAttr<StrAttr, "none">:$approximate);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_SoftmaxOp : Lathe_InferOp<"softmax"> {
  let summary = "softmax along one axis";
  let arguments = (ins AnyRankedTensor:$input, DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_EmbeddingOp : Lathe_InferOp<"embedding"> {
  let summary = "rows of a [vocab, dim] table picked by integer ids";
  let arguments = (ins AnyRankedTensor:$table, AnyRankedTensor:$indices);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_QuantizedEmbeddingOp : Lathe_InferOp<"quantized_embedding"> {
  let summary = "rows of an int8 [vocab, dim] table picked by ids, times f16 scales";
  let description = [{
    Row r of the table is scale(r, j / group_size) · q[r, j]; scales are f16
    [vocab, ceil(dim/group_size)]. The result is f32. format is "int8".
  }];
  let arguments = (ins AnyRankedTensor:$table, AnyRankedTensor:$scales, AnyRankedTensor:$indices,
                       StrAttr:$format, I64Attr:$group_size);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Lathe_PositionsOp : Lathe_InferOp<"positions"> {
  let summary = "0, 1, …, n-1 where n is dimension `axis` of the reference tensor";
  let description = [{
    Position indices computed from a sequence length: replaces Range over a
    dynamic dimension and slices of cos/sin caches by sequence length.
  }];
  let arguments = (ins AnyRankedTensor:$reference, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

class Lathe_UnaryOp<string mnemonic> : Lathe_InferOp<mnemonic> {
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
}

def Lathe_IdentityOp : Lathe_UnaryOp<"identity"> { let summary = "x (Identity, Dropout at inference)"; }
def Lathe_SqrtOp : Lathe_UnaryOp<"sqrt"> { let summary = "√x"; }
def Lathe_ErfOp : Lathe_UnaryOp<"erf"> { let summary = "erf(x)"; }
def Lathe_TanhOp : Lathe_UnaryOp<"tanh"> { let summary = "tanh(x)"; }
def Lathe_ExpOp : Lathe_UnaryOp<"exp"> { let summary = "eˣ"; }
def Lathe_LogOp : Lathe_UnaryOp<"log"> { let summary = "ln x"; }
def Lathe_CosOp : Lathe_UnaryOp<"cos"> { let summary = "cos x"; }
def Lathe_SinOp : Lathe_UnaryOp<"sin"> { let summary = "sin x"; }
def Lathe_ReluOp : Lathe_UnaryOp<"relu"> { let summary = "max(x, 0)"; }
def Lathe_SigmoidOp : Lathe_UnaryOp<"sigmoid"> { let summary = "1 / (1 + e⁻ˣ)"; }
def Lathe_SiluOp : Lathe_UnaryOp<"silu"> { let summary = "x · sigmoid(x)"; }
def Lathe_NegOp : Lathe_UnaryOp<"neg"> { let summary = "-x"; }
def Lathe_AbsOp : Lathe_UnaryOp<"abs"> { let summary = "|x|"; }
def Lathe_ReciprocalOp : Lathe_UnaryOp<"reciprocal"> { let summary = "1/x"; }
def Lathe_NotOp : Lathe_UnaryOp<"not"> { let summary = "logical not"; }

def Lathe_CastOp : Lathe_InferOp<"cast"> {
  let summary = "convert to another element type";
  let arguments = (ins AnyRankedTensor:$input, TypeAttr:$to);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
}

class Lathe_BinaryOp<string mnemonic> : Lathe_InferOp<mnemonic> {
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_AddOp : Lathe_BinaryOp<"add"> { let summary = "a + b, broadcasting"; }
def Lathe_SubOp : Lathe_BinaryOp<"sub"> { let summary = "a - b, broadcasting"; }
def Lathe_MulOp : Lathe_BinaryOp<"mul"> { let summary = "a · b, broadcasting"; }
def Lathe_DivOp : Lathe_BinaryOp<"div"> { let summary = "a / b, broadcasting (integer division truncates)"; }
def Lathe_PowOp : Lathe_BinaryOp<"pow"> { let summary = "aᵇ, broadcasting"; }
def Lathe_MaxOp : Lathe_BinaryOp<"max"> { let summary = "max(a, b), broadcasting"; }
def Lathe_MinOp : Lathe_BinaryOp<"min"> { let summary = "min(a, b), broadcasting"; }
def Lathe_AndOp : Lathe_BinaryOp<"and"> { let summary = "logical and"; }
def Lathe_OrOp : Lathe_BinaryOp<"or"> { let summary = "logical or"; }
def Lathe_EqualOp : Lathe_BinaryOp<"equal"> { let summary = "a == b (i1)"; }
def Lathe_LessOp : Lathe_BinaryOp<"less"> { let summary = "a < b (i1)"; }
def Lathe_LessEqualOp : Lathe_BinaryOp<"less_equal"> { let summary = "a <= b (i1)"; }
def Lathe_GreaterOp : Lathe_BinaryOp<"greater"> { let summary = "a > b (i1)"; }
def Lathe_GreaterEqualOp : Lathe_BinaryOp<"greater_equal"> { let summary = "a >= b (i1)"; }

def Lathe_WhereOp : Lathe_InferOp<"where"> {
  let summary = "cond ? a : b, broadcasting";
  let arguments = (ins AnyRankedTensor:$condition, AnyRankedTensor:$lhs, AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

class Lathe_ReduceOp<string mnemonic> : Lathe_InferOp<mnemonic> {
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$axes,
                       DefaultValuedAttr<BoolAttr, "true">:$keepdims);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_ReduceMeanOp : Lathe_ReduceOp<"reduce_mean"> { let summary = "mean over axes"; }
def Lathe_ReduceSumOp : Lathe_ReduceOp<"reduce_sum"> { let summary = "sum over axes"; }
def Lathe_ReduceMaxOp : Lathe_ReduceOp<"reduce_max"> { let summary = "max over axes"; }
def Lathe_ReduceMinOp : Lathe_ReduceOp<"reduce_min"> { let summary = "min over axes"; }

//===----------------------------------------------------------------------===//
// Shapes
//===----------------------------------------------------------------------===//

def Lathe_ShapeOfOp : Lathe_InferOp<"shape_of"> {
  let summary = "the dimensions of a tensor as a 1-D i64 tensor";
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
}

def Lathe_ReshapeOp : Lathe_InferOp<"reshape"> {
  let summary = "reshape to a 1-D i64 target (0 copies the input dim, -1 is inferred)";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$shape);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_TransposeOp : Lathe_InferOp<"transpose"> {
  let summary = "permute dimensions";
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$perm);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_ConcatOp : Lathe_InferOp<"concat"> {
  let summary = "join tensors along an axis";
  let arguments = (ins Variadic<AnyRankedTensor>:$inputs, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_SliceOp : Lathe_InferOp<"slice"> {
  let summary = "strided slice; starts/ends/axes/steps are 1-D i64 tensors (ONNX Slice)";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$starts,
                       AnyRankedTensor:$ends, AnyRankedTensor:$axes,
                       AnyRankedTensor:$steps);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_SplitOp : Lathe_InferOp<"split"> {
  let summary = "split along an axis into pieces of the given sizes";
  let arguments = (ins AnyRankedTensor:$input, I64Attr:$axis, DenseI64ArrayAttr:$sizes);
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let hasVerifier = 1;
}

def Lathe_SqueezeOp : Lathe_InferOp<"squeeze"> {
  let summary = "drop size-1 dimensions";
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$axes);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_UnsqueezeOp : Lathe_InferOp<"unsqueeze"> {
  let summary = "insert size-1 dimensions at the given output positions";
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$axes);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_ExpandOp : Lathe_InferOp<"expand"> {
  let summary = "broadcast to a 1-D i64 target shape (numpy rules, ONNX Expand)";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$shape);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_FillOp : Lathe_InferOp<"fill"> {
  let summary = "a tensor of the given 1-D i64 shape filled with one value (ConstantOfShape)";
  let arguments = (ins AnyRankedTensor:$shape, ElementsAttr:$value);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_RangeOp : Lathe_InferOp<"range"> {
  let summary = "start, start+delta, … below limit (scalar operands)";
  let arguments = (ins AnyRankedTensor:$start, AnyRankedTensor:$limit, AnyRankedTensor:$delta);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_TriluOp : Lathe_InferOp<"trilu"> {
  let summary = "keep the upper or lower triangle of the last two dims, offset by k";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$k, BoolAttr:$upper);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_GatherOp : Lathe_InferOp<"gather"> {
  let summary = "take entries along an axis by integer indices (ONNX Gather)";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$indices, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

def Lathe_ScatterNdOp : Lathe_InferOp<"scatter_nd"> {
  let summary = "copy of data with slices at integer index tuples replaced (ONNX ScatterND)";
  let description = [{
    indices is [..., k]; every index tuple names a slice data[i0, …, ik-1, :]
    that is replaced by the matching slice of updates
    (shape indices.shape[:-1] + data.shape[k:]). Exporters emit it for slice
    assignment, e.g. in attention-mask construction.
  }];
  let arguments = (ins AnyRankedTensor:$data, AnyRankedTensor:$indices, AnyRankedTensor:$updates);
  let results = (outs AnyRankedTensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
}

#endif // LATHE_OPS
