#include "compiler/import/gguf/ImportGguf.h"

#include "compiler/import/BuildInferred.h"

#include "compiler/import/gguf/GgmlDequant.h"
#include "compiler/import/gguf/GgufReader.h"
#include "compiler/import/gguf/GgufVocabulary.h"
#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

using namespace mlir;

namespace lathe::importer {
namespace {

using gguf::GgufFile;
using gguf::GgufTensor;

/// A failure while building the graph, with the reason a user will read.
struct BuildError {
  std::string reason;
};

//===----------------------------------------------------------------------===//
// Hyperparameters and the tensor table, checked before any IR is built
//===----------------------------------------------------------------------===//

struct LlamaConfig {
  int64_t blockCount = 0;
  int64_t embeddingLength = 0;
  int64_t feedForwardLength = 0;
  int64_t headCount = 0;
  int64_t headCountKv = 0;
  int64_t headDim = 0;
  int64_t vocabSize = 0;
  double rmsEpsilon = 0;
  double ropeFreqBase = 0;
  double ropeLinearScale = 1; // llama.rope.scaling.type "linear": positions divided by llama.rope.scaling.factor
  bool ropeFactors = false;   // rope_freqs.weight: per-frequency divisors (Llama 3.1 style)
  bool tiedOutput = false;
  std::string modelName;
};

/// The layout of a Q or K weight's rows as stored in the file.
enum class RowLayout {
  AsStored,
  /// llama.cpp's converter interleaves each head's rows (pairs for its rope); undo it.
  UnpermuteRopeHeads,
};

struct Preflight {
  const GgufFile &file;
  LlamaConfig config;
  std::vector<std::string> problems;
  std::set<std::string> used; // tensors the graph consumes

  int64_t requirePositive(const std::string &key) {
    auto value = file.requireUInt(key);
    if (!value) { problems.push_back(value.error()); return 0; }
    if (*value == 0 || *value > (uint64_t(1) << 31)) {
      problems.push_back(cat("metadata ", key, " = ", *value, " is out of range"));
      return 0;
    }
    return int64_t(*value);
  }
  double requireFloat(const std::string &key) {
    auto value = file.requireFloat(key);
    if (!value) { problems.push_back(value.error()); return 0; }
    return *value;
  }

  /// Records a problem unless `name` exists with the expected row-major shape and a type we can dequantize.
  void expectTensor(const std::string &name, std::vector<int64_t> shape) {
    used.insert(name);
    const GgufTensor *t = file.findTensor(name);
    if (!t) { problems.push_back(cat("tensor '", name, "' is missing")); return; }
    if (t->shape() != shape) {
      auto str = [](const std::vector<int64_t> &s) {
        std::string out = "[";
        for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
        return out + "]";
      };
      problems.push_back(cat("tensor '", name, "' has shape ", str(t->shape()), ", expected ", str(shape)));
    }
    if (!gguf::canDequantize(t->typeId))
      problems.push_back(cat("tensor '", name, "' has ggml type ", gguf::ggmlTypeDescription(t->typeId),
                             ", which the importer cannot dequantize"));
  }

  void run() {
    auto arch = file.requireString("general.architecture");
    if (!arch) { problems.push_back(arch.error()); return; }
    if (*arch != "llama") {
      problems.push_back(cat("architecture '", *arch, "' is not supported (only 'llama' is)"));
      return;
    }
    config.modelName = file.getString("general.name").value_or("");
    LlamaConfig &c = config;
    c.blockCount = requirePositive("llama.block_count");
    c.embeddingLength = requirePositive("llama.embedding_length");
    c.feedForwardLength = requirePositive("llama.feed_forward_length");
    c.headCount = requirePositive("llama.attention.head_count");
    // llama.cpp's default when the key is absent: as many KV heads as query heads.
    c.headCountKv = file.find("llama.attention.head_count_kv") ? requirePositive("llama.attention.head_count_kv")
                                                                 : c.headCount;
    c.rmsEpsilon = requireFloat("llama.attention.layer_norm_rms_epsilon");
    c.ropeFreqBase = requireFloat("llama.rope.freq_base");
    if (auto experts = file.getUInt("llama.expert_count"); experts && *experts > 0)
      problems.push_back(cat("llama.expert_count = ", *experts, ": mixture-of-experts models are not supported"));
    // As llama.cpp reads them: an absent scaling type counts as "linear", the
    // factor comes from llama.rope.scaling.factor (or the older
    // llama.rope.scale_linear), and an absent or zero factor means no scaling;
    // freq_scale = 1 / factor then multiplies every angle.
    const std::string scaling = file.getString("llama.rope.scaling.type").value_or("linear");
    if (scaling == "linear") {
      std::optional<double> factor = file.getFloat("llama.rope.scaling.factor");
      if (!factor) factor = file.getFloat("llama.rope.scale_linear");
      if (factor && *factor < 0)
        problems.push_back(cat("llama.rope.scaling.factor = ", *factor, " is negative"));
      else if (factor && *factor > 0)
        c.ropeLinearScale = *factor;
    } else if (scaling != "none" && !scaling.empty()) {
      problems.push_back(cat("llama.rope.scaling.type = '", scaling,
                             "' is not supported (unscaled and 'linear' rope are; YaRN is not)"));
    }
    if (c.headCount && c.embeddingLength) {
      if (c.embeddingLength % c.headCount)
        problems.push_back(cat("llama.embedding_length ", c.embeddingLength, " is not a multiple of head_count ",
                               c.headCount));
      c.headDim = c.embeddingLength / c.headCount;
      if (c.headDim % 2) problems.push_back(cat("head dimension ", c.headDim, " is odd; rope needs pairs"));
    }
    if (c.headCount && c.headCountKv && c.headCount % c.headCountKv)
      problems.push_back(cat("head_count ", c.headCount, " is not a multiple of head_count_kv ", c.headCountKv));
    if (auto ropeDim = file.getUInt("llama.rope.dimension_count"); ropeDim && c.headDim && int64_t(*ropeDim) != c.headDim)
      problems.push_back(cat("llama.rope.dimension_count = ", *ropeDim, " differs from the head dimension ", c.headDim,
                             ": partial rotary embeddings are not supported"));
    if (!problems.empty()) return;

    const GgufTensor *embedding = file.findTensor("token_embd.weight");
    if (!embedding || embedding->ne.size() != 2) {
      problems.push_back(embedding ? "tensor 'token_embd.weight' is not 2-D" : "tensor 'token_embd.weight' is missing");
      return;
    }
    c.vocabSize = embedding->shape()[0];
    if (auto vocab = file.getUInt("llama.vocab_size"); vocab && int64_t(*vocab) != c.vocabSize)
      problems.push_back(cat("llama.vocab_size = ", *vocab, " but token_embd.weight has ", c.vocabSize, " rows"));
    c.tiedOutput = file.findTensor("output.weight") == nullptr;

    int64_t dim = c.embeddingLength, ff = c.feedForwardLength, d = c.headDim;
    expectTensor("token_embd.weight", {c.vocabSize, dim});
    expectTensor("output_norm.weight", {dim});
    if (!c.tiedOutput) expectTensor("output.weight", {c.vocabSize, dim});
    for (int64_t i = 0; i < c.blockCount; ++i) {
      std::string blk = cat("blk.", i, ".");
      expectTensor(blk + "attn_norm.weight", {dim});
      expectTensor(blk + "attn_q.weight", {c.headCount * d, dim});
      expectTensor(blk + "attn_k.weight", {c.headCountKv * d, dim});
      expectTensor(blk + "attn_v.weight", {c.headCountKv * d, dim});
      expectTensor(blk + "attn_output.weight", {dim, c.headCount * d});
      expectTensor(blk + "ffn_norm.weight", {dim});
      expectTensor(blk + "ffn_gate.weight", {ff, dim});
      expectTensor(blk + "ffn_up.weight", {ff, dim});
      expectTensor(blk + "ffn_down.weight", {dim, ff});
    }
    if (file.findTensor("rope_freqs.weight")) {
      expectTensor("rope_freqs.weight", {c.headDim / 2});
      c.ropeFactors = true;
    }
    // A tensor the graph would ignore (biases, extra blocks) means a variant we do not model.
    for (const auto &t : file.tensors())
      if (!used.count(t.name))
        problems.push_back(cat("tensor '", t.name, "' is not part of the supported llama graph"));
  }

  std::string summary() const {
    std::map<std::string, int> types;
    for (const auto &t : file.tensors()) types[gguf::ggmlTypeDescription(t.typeId)]++;
    std::string typeList;
    for (const auto &[name, count] : types) typeList += (typeList.empty() ? "" : ", ") + cat(count, " ", name);
    return cat("llama", config.modelName.empty() ? "" : " '" + config.modelName + "'", ": ", config.blockCount,
               " blocks, dim ", config.embeddingLength, ", ffn ", config.feedForwardLength, ", heads ",
               config.headCount, "/", config.headCountKv, " (q/kv), head dim ", config.headDim, ", vocab ",
               config.vocabSize, ", rope base ", config.ropeFreqBase,
               config.ropeLinearScale != 1 ? cat(" (linear scaling ", config.ropeLinearScale, ")") : std::string(),
               config.ropeFactors ? " with rope_freqs" : "", ", ", config.tiedOutput ? "tied" : "untied",
               " output; ", file.tensors().size(), " tensors (", typeList, ")");
  }
};

//===----------------------------------------------------------------------===//
// The graph builder
//===----------------------------------------------------------------------===//

/// A blob name that the MLIR printer and parser accept as a bare key.
std::string blobKey(const std::string &name) {
  std::string key;
  for (char c : name) key += (std::isalnum((unsigned char)c) || c == '_' || c == '.') ? c : '_';
  if (key.empty() || std::isdigit((unsigned char)key[0])) key = "w_" + key;
  return key;
}

class Builder {
public:
  Builder(MLIRContext &ctx, const GgufFile &file, const LlamaConfig &config, const GgufImportOptions &options)
      : ctx_(ctx), file_(file), config_(config), options_(options), builder_(&ctx) {}

  OwningOpRef<ModuleOp> build();

private:
  template <typename OpTy> Value make(ValueRange operands, ArrayRef<NamedAttribute> attrs = {});
  NamedAttribute attr(StringRef name, Attribute value) { return builder_.getNamedAttr(name, value); }
  void at(const std::string &name) { loc_ = NameLoc::get(builder_.getStringAttr(name)); }
  Value constI64(ArrayRef<int64_t> values);
  Value constF32(ArrayRef<float> values, ArrayRef<int64_t> shape);
  Value weight(const std::string &tensorName, RowLayout layout = RowLayout::AsStored, int64_t heads = 0);
  Value linear(Value x, const std::string &tensorName, RowLayout layout = RowLayout::AsStored, int64_t heads = 0);
  /// Q8_0 / Q4_0 / Q4_1 blocks as a lathe.quantized_linear (int8 / int4 sym /
  /// int4 asym, group 32) with the file's codes and scales; null for other types.
  Value nativeLinear(Value x, const std::string &tensorName, RowLayout layout, int64_t heads);
  Value rmsNorm(Value x, const std::string &tensorName);
  Value splitHeads(Value x, int64_t headDim);
  Value rotate(Value x, Value cos, Value sin);

  MLIRContext &ctx_;
  const GgufFile &file_;
  const LlamaConfig &config_;
  const GgufImportOptions &options_;
  OpBuilder builder_;
  Location loc_ = UnknownLoc::get(&ctx_);
  std::map<std::string, Value> weights_;
};

template <typename OpTy> Value Builder::make(ValueRange operands, ArrayRef<NamedAttribute> attrs) {
  std::string error;
  Operation *op = buildInferred<OpTy>(builder_, loc_, operands, attrs, 1, error);
  if (!op) throw BuildError{cat(OpTy::getOperationName().str(), ": ", error)};
  return op->getResult(0);
}

Value Builder::constI64(ArrayRef<int64_t> values) {
  auto type = RankedTensorType::get({int64_t(values.size())}, builder_.getI64Type());
  return builder_.create<ir::ConstantOp>(loc_, DenseElementsAttr::get(type, values));
}

Value Builder::constF32(ArrayRef<float> values, ArrayRef<int64_t> shape) {
  auto type = RankedTensorType::get(shape, builder_.getF32Type());
  return builder_.create<ir::ConstantOp>(loc_, DenseElementsAttr::get(type, values));
}

/// The f32 values of a weight, row-major in its shape(). This is the one place
/// that decides a weight's representation: issue #6 will keep Q8_0/Q4_1 blocks
/// here instead of dequantizing.
Value Builder::weight(const std::string &tensorName, RowLayout layout, int64_t heads) {
  auto cached = weights_.find(tensorName);
  if (cached != weights_.end()) return cached->second;
  const GgufTensor *tensor = file_.findTensor(tensorName);
  if (!tensor) throw BuildError{cat("tensor '", tensorName, "' is missing")};
  auto values = gguf::dequantizeTensor(*tensor);
  if (!values) throw BuildError{values.error()};
  std::vector<int64_t> shape = tensor->shape();
  std::vector<float> data = std::move(*values);
  if (layout == RowLayout::UnpermuteRopeHeads) {
    // Stored row h·D + 2i + j holds what transformers keeps at row h·D + j·D/2 + i
    // (the inverse of llama.cpp convert's permute()).
    int64_t rows = shape[0], cols = shape[1], headDim = rows / heads, half = headDim / 2;
    std::vector<float> unpermuted(data.size());
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i)
        for (int64_t j = 0; j < 2; ++j) {
          int64_t from = h * headDim + 2 * i + j, to = h * headDim + j * half + i;
          std::memcpy(&unpermuted[size_t(to * cols)], &data[size_t(from * cols)], size_t(cols) * sizeof(float));
        }
    data = std::move(unpermuted);
  }
  auto type = RankedTensorType::get(shape, builder_.getF32Type());
  ArrayRef<char> bytes(reinterpret_cast<const char *>(data.data()), data.size() * sizeof(float));
  Location saved = loc_;
  loc_ = NameLoc::get(builder_.getStringAttr(tensorName));
  Value value = builder_.create<ir::ConstantOp>(loc_, ir::makeResourceAttr(type, blobKey(tensorName), bytes));
  loc_ = saved;
  weights_[tensorName] = value;
  return value;
}

/// The stored row that holds row `to` of the transformers layout (see weight()).
static int64_t storedRow(int64_t to, RowLayout layout, int64_t rows, int64_t heads) {
  if (layout != RowLayout::UnpermuteRopeHeads) return to;
  const int64_t headDim = rows / heads, half = headDim / 2, h = to / headDim, r = to % headDim;
  const int64_t j = r / half, i = r % half;
  return h * headDim + 2 * i + j;
}

Value Builder::nativeLinear(Value x, const std::string &tensorName, RowLayout layout, int64_t heads) {
  const GgufTensor *tensor = file_.findTensor(tensorName);
  if (!tensor || tensor->ne.size() != 2) return nullptr;
  const gguf::GgmlType type = tensor->type();
  const bool q8 = type == gguf::GgmlType::Q8_0, q40 = type == gguf::GgmlType::Q4_0, q41 = type == gguf::GgmlType::Q4_1;
  if (!q8 && !q40 && !q41) return nullptr;
  const int64_t rows = tensor->rows(), cols = tensor->cols(), blocks = cols / 32;
  const size_t blockBytes = q8 ? 34 : q40 ? 18 : 20;
  std::vector<char> codes(size_t(rows * (q8 ? cols : cols / 2))), scales(size_t(rows * blocks * 2)), mins;
  if (q41) mins.resize(scales.size());
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *row = tensor->data + size_t(storedRow(r, layout, rows, heads)) * size_t(blocks) * blockBytes;
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t *block = row + size_t(b) * blockBytes;
      std::memcpy(&scales[size_t((r * blocks + b) * 2)], block, 2); // f16 d
      if (q41) std::memcpy(&mins[size_t((r * blocks + b) * 2)], block + 2, 2); // f16 m
      const uint8_t *qs = block + (q41 ? 4 : 2);
      if (q8) std::memcpy(&codes[size_t(r * cols + b * 32)], qs, 32);
      else std::memcpy(&codes[size_t(r * (cols / 2) + b * 16)], qs, 16); // ggml's nibble order is Lathe's
    }
  }
  Location saved = loc_;
  loc_ = NameLoc::get(builder_.getStringAttr(tensorName));
  auto constant = [&](Type element, ArrayRef<int64_t> shape, const std::vector<char> &bytes, const char *suffix) -> Value {
    auto t = RankedTensorType::get(shape, element);
    return builder_.create<ir::ConstantOp>(loc_, ir::makeResourceAttr(t, blobKey(tensorName + suffix), bytes));
  };
  Value w = constant(q8 ? Type(builder_.getIntegerType(8)) : Type(IntegerType::get(&ctx_, 8, IntegerType::Unsigned)),
                     {rows, q8 ? cols : cols / 2}, codes, ".q");
  Value s = constant(builder_.getF16Type(), {rows, blocks}, scales, ".scales");
  Value m = q41 ? constant(builder_.getF16Type(), {rows, blocks}, mins, ".mins") : Value();
  loc_ = saved;
  SmallVector<int64_t> outShape(cast<RankedTensorType>(x.getType()).getShape());
  outShape.back() = rows;
  auto resultType = RankedTensorType::get(outShape, builder_.getF32Type());
  auto op = builder_.create<ir::QuantizedLinearOp>(loc_, resultType, x, w, s, m, Value(), Value(),
                                                   builder_.getStringAttr(q8 ? "int8" : "int4"), builder_.getI64IntegerAttr(32), FloatAttr(),
                                                   options_.int8Activations ? builder_.getI64IntegerAttr(32) : IntegerAttr());
  const double after = double(codes.size() + scales.size() + mins.size());
  op->setAttr("lathe.compression",
              builder_.getDictionaryAttr(
                  {builder_.getNamedAttr("method", builder_.getStringAttr(std::string(q8 ? "gguf-q8_0" : q40 ? "gguf-q4_0" : "gguf-q4_1") +
                                                                        (options_.int8Activations ? "+a8" : ""))),
                   builder_.getNamedAttr("bits_per_weight", builder_.getF64FloatAttr(8.0 * after / double(rows * cols))),
                   builder_.getNamedAttr("bytes_before", builder_.getI64IntegerAttr(rows * cols * 4)),
                   builder_.getNamedAttr("bytes_after", builder_.getI64IntegerAttr(int64_t(after))),
                   builder_.getNamedAttr("weight_error", builder_.getF64FloatAttr(0.0))}));
  return op.getResult();
}

Value Builder::linear(Value x, const std::string &tensorName, RowLayout layout, int64_t heads) {
  if (options_.keepQuantized)
    if (Value native = nativeLinear(x, tensorName, layout, heads)) return native;
  return make<ir::LinearOp>({x, weight(tensorName, layout, heads)});
}

Value Builder::rmsNorm(Value x, const std::string &tensorName) {
  return make<ir::RmsNormOp>({x, weight(tensorName)}, {attr("epsilon", builder_.getF64FloatAttr(config_.rmsEpsilon))});
}

/// [B, S, H·D] → [B, H, S, D]
Value Builder::splitHeads(Value x, int64_t headDim) {
  Value split = make<ir::ReshapeOp>({x, constI64({0, 0, -1, headDim})});
  return make<ir::TransposeOp>({split}, {attr("perm", builder_.getDenseI64ArrayAttr({0, 2, 1, 3}))});
}

/// x·cos + rotate_half(x)·sin, rotate_half(x) = concat(-x[..., D/2:], x[..., :D/2]): one lathe.rotary.
Value Builder::rotate(Value x, Value cos, Value sin) { return make<ir::RotaryOp>({x, cos, sin}); }

OwningOpRef<ModuleOp> Builder::build() {
  const LlamaConfig &c = config_;
  std::filesystem::path path(file_.path());
  OwningOpRef<ModuleOp> module = ModuleOp::create(FileLineColLoc::get(&ctx_, file_.path(), 0, 0));
  (*module)->setAttr("lathe.source", builder_.getStringAttr(path.filename().string()));
  (*module)->setAttr("lathe.producer", builder_.getStringAttr(cat("gguf v", file_.version(), " llama")));

  auto ids = RankedTensorType::get({ir::kDynamic, ir::kDynamic}, builder_.getI64Type());
  builder_.setInsertionPointToEnd(module->getBody());
  auto func = builder_.create<func::FuncOp>(module->getLoc(), "main", builder_.getFunctionType({ids, ids}, {}));
  Block *body = func.addEntryBlock();
  Attribute dims = builder_.getStrArrayAttr({"batch", "sequence"});
  const char *inputNames[] = {"input_ids", "attention_mask"};
  for (unsigned i = 0; i < 2; ++i) {
    func.setArgAttr(i, "lathe.name", builder_.getStringAttr(inputNames[i]));
    func.setArgAttr(i, "lathe.dims", dims);
  }
  builder_.setInsertionPointToEnd(body);
  Value inputIds = body->getArgument(0), attentionMask = body->getArgument(1);

  at("token_embd");
  Value hidden = make<ir::EmbeddingOp>({weight("token_embd.weight"), inputIds});

  // cos/sin [S, D] of positions·inv_freq, inv_freq = base^(-2i/D) as transformers computes it in f32,
  // divided by the linear scaling factor and by rope_freqs[i] where the file has them (as ggml's rope).
  at("rope");
  std::vector<float> inverseFrequency;
  for (int64_t i = 0; i < c.headDim; i += 2)
    inverseFrequency.push_back(1.0f / std::pow(float(c.ropeFreqBase), float(i) / float(c.headDim)));
  if (c.ropeLinearScale != 1)
    for (float &f : inverseFrequency) f = float(f / c.ropeLinearScale);
  if (c.ropeFactors) {
    auto factors = gguf::dequantizeTensor(*file_.findTensor("rope_freqs.weight"));
    if (!factors) throw BuildError{factors.error()};
    for (size_t i = 0; i < inverseFrequency.size(); ++i) {
      if (!((*factors)[i] > 0)) throw BuildError{cat("rope_freqs.weight[", i, "] = ", (*factors)[i], " is not positive")};
      inverseFrequency[i] /= (*factors)[i];
    }
  }
  Value positions = make<ir::PositionsOp>({inputIds}, {attr("axis", builder_.getI64IntegerAttr(1))});
  Value positionsF = make<ir::CastOp>({positions}, {attr("to", TypeAttr::get(builder_.getF32Type()))});
  Value column = make<ir::UnsqueezeOp>({positionsF}, {attr("axes", builder_.getDenseI64ArrayAttr({1}))});
  Value angles = make<ir::MulOp>({column, constF32(inverseFrequency, {int64_t(inverseFrequency.size())})});
  Value bothHalves = make<ir::ConcatOp>({angles, angles}, {attr("axis", builder_.getI64IntegerAttr(1))});
  Value cos = make<ir::CosOp>({bothHalves});
  Value sin = make<ir::SinOp>({bothHalves});

  // Additive padding mask [B, 1, 1, S]: 0 where attended, the lowest f32 where padded.
  at("attention_mask");
  Value mask = make<ir::UnsqueezeOp>({attentionMask}, {attr("axes", builder_.getDenseI64ArrayAttr({1, 2}))});
  mask = make<ir::CastOp>({mask}, {attr("to", TypeAttr::get(builder_.getF32Type()))});
  mask = make<ir::SubOp>({constF32({1.0f}, {}), mask});
  mask = make<ir::MulOp>({mask, constF32({std::numeric_limits<float>::lowest()}, {})});

  double scale = 1.0 / std::sqrt(double(c.headDim));
  for (int64_t i = 0; i < c.blockCount; ++i) {
    std::string blk = cat("blk.", i, ".");
    at(blk + "attn_norm");
    Value normed = rmsNorm(hidden, blk + "attn_norm.weight");
    at(blk + "attn_q");
    Value q = splitHeads(linear(normed, blk + "attn_q.weight", RowLayout::UnpermuteRopeHeads, c.headCount), c.headDim);
    at(blk + "attn_k");
    Value k = splitHeads(linear(normed, blk + "attn_k.weight", RowLayout::UnpermuteRopeHeads, c.headCountKv), c.headDim);
    at(blk + "attn_v");
    Value v = splitHeads(linear(normed, blk + "attn_v.weight"), c.headDim);
    at(blk + "rope_q");
    q = rotate(q, cos, sin);
    at(blk + "rope_k");
    k = rotate(k, cos, sin);
    at(blk + "attention");
    Value attended = make<ir::AttentionOp>(
        {q, k, v, mask}, {attr("num_heads", builder_.getI64IntegerAttr(c.headCount)),
                          attr("num_kv_heads", builder_.getI64IntegerAttr(c.headCountKv)),
                          attr("scale", builder_.getF64FloatAttr(scale)), attr("causal", builder_.getBoolAttr(true))});
    attended = make<ir::TransposeOp>({attended}, {attr("perm", builder_.getDenseI64ArrayAttr({0, 2, 1, 3}))});
    attended = make<ir::ReshapeOp>({attended, constI64({0, 0, -1})});
    at(blk + "attn_output");
    hidden = make<ir::AddOp>({hidden, linear(attended, blk + "attn_output.weight")});

    at(blk + "ffn_norm");
    normed = rmsNorm(hidden, blk + "ffn_norm.weight");
    at(blk + "ffn_gate");
    Value gate = make<ir::SiluOp>({linear(normed, blk + "ffn_gate.weight")});
    at(blk + "ffn_up");
    Value up = make<ir::MulOp>({gate, linear(normed, blk + "ffn_up.weight")});
    at(blk + "ffn_down");
    hidden = make<ir::AddOp>({hidden, linear(up, blk + "ffn_down.weight")});
  }
  at("output_norm");
  hidden = rmsNorm(hidden, "output_norm.weight");
  at("output");
  Value logits = linear(hidden, c.tiedOutput ? "token_embd.weight" : "output.weight");

  builder_.create<func::ReturnOp>(module->getLoc(), ValueRange{logits});
  func.setType(builder_.getFunctionType({ids, ids}, {logits.getType()}));
  func.setResultAttr(0, "lathe.name", builder_.getStringAttr("logits"));
  return module;
}

} // namespace

/// The reader names the file in its messages; callers name it once themselves.
static std::string withoutPath(const std::string &message, const std::string &path) {
  std::string prefix = path + ": ";
  return message.compare(0, prefix.size(), prefix) == 0 ? message.substr(prefix.size()) : message;
}

static GgufImportResult preflight(const std::string &path, std::optional<GgufFile> &file, LlamaConfig &config) {
  GgufImportResult result;
  auto opened = GgufFile::open(path);
  if (!opened) {
    result.fatalError = withoutPath(opened.error(), path);
    return result;
  }
  file.emplace(std::move(*opened));
  Preflight check{*file, {}, {}, {}};
  check.run();
  for (const auto &problem : check.problems) result.problems.push_back(withoutPath(problem, path));
  config = check.config;
  if (result.problems.empty()) result.summary = check.summary();
  return result;
}

GgufImportResult checkGgufFile(const std::string &path) {
  std::optional<GgufFile> file;
  LlamaConfig config;
  return preflight(path, file, config);
}

GgufImportResult importGgufFile(MLIRContext &context, const std::string &path, const GgufImportOptions &options) {
  std::optional<GgufFile> file;
  LlamaConfig config;
  GgufImportResult result = preflight(path, file, config);
  if (!result.fatalError.empty() || !result.problems.empty()) return result;
  context.loadDialect<ir::LatheDialect, func::FuncDialect>();
  try {
    Builder builder(context, *file, config, options);
    result.module = builder.build();
  } catch (const BuildError &e) {
    result.fatalError = e.reason;
    return result;
  }
  // The tokenizer travels with the model (module attribute lathe.tokenizer, a
  // byte blob in runtime/artifact/Vocabulary.h's encoding) into the artifact.
  if (gguf::hasVocabulary(*file)) {
    auto vocabulary = gguf::readVocabulary(*file);
    if (!vocabulary) {
      result.module = nullptr;
      result.fatalError = vocabulary.error();
      return result;
    }
    std::string bytes = artifact::encodeVocabulary(*vocabulary);
    auto type = RankedTensorType::get({int64_t(bytes.size())}, IntegerType::get(&context, 8));
    (*result.module)->setAttr(kTokenizerAttr, ir::makeResourceAttr(type, "tokenizer", {bytes.data(), bytes.size()}));
  }
  return result;
}

} // namespace lathe::importer
