#include "compiler/import/onnx/ImportOnnx.h"

#include "compiler/import/BuildInferred.h"

#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"

#include <onnx/onnx_pb.h>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

using namespace mlir;
namespace fs = std::filesystem;

namespace lathe::importer {
namespace {

using lathe::ir::HostTensor;

/// A failure to import one node, with the reason a user will read.
struct NodeError {
  std::string reason;
};

//===----------------------------------------------------------------------===//
// Tensors
//===----------------------------------------------------------------------===//

std::optional<Type> elementTypeFor(MLIRContext *ctx, int32_t dataType) {
  switch (dataType) {
  case onnx::TensorProto::FLOAT: return Float32Type::get(ctx);
  case onnx::TensorProto::FLOAT16: return Float16Type::get(ctx);
  case onnx::TensorProto::BFLOAT16: return BFloat16Type::get(ctx);
  case onnx::TensorProto::DOUBLE: return Float64Type::get(ctx);
  case onnx::TensorProto::INT64: return IntegerType::get(ctx, 64);
  case onnx::TensorProto::INT32: return IntegerType::get(ctx, 32);
  case onnx::TensorProto::INT16: return IntegerType::get(ctx, 16);
  case onnx::TensorProto::INT8: return IntegerType::get(ctx, 8);
  case onnx::TensorProto::UINT8: return IntegerType::get(ctx, 8, IntegerType::Unsigned);
  case onnx::TensorProto::BOOL: return IntegerType::get(ctx, 1);
  default: return std::nullopt;
  }
}

std::string dataTypeName(int32_t dataType) {
  if (onnx::TensorProto::DataType_IsValid(dataType))
    return onnx::TensorProto::DataType_Name(onnx::TensorProto::DataType(dataType));
  return cat("data type ", dataType);
}

size_t byteWidth(int32_t dataType) {
  switch (dataType) {
  case onnx::TensorProto::DOUBLE: case onnx::TensorProto::INT64: return 8;
  case onnx::TensorProto::FLOAT: case onnx::TensorProto::INT32: return 4;
  case onnx::TensorProto::FLOAT16: case onnx::TensorProto::BFLOAT16: case onnx::TensorProto::INT16: return 2;
  default: return 1;
  }
}

/// A blob name that the MLIR printer and parser accept as a bare key.
std::string blobKey(const std::string &name) {
  std::string key;
  for (char c : name) key += (std::isalnum((unsigned char)c) || c == '_' || c == '.') ? c : '_';
  if (key.empty() || std::isdigit((unsigned char)key[0])) key = "w_" + key;
  return key;
}

class TensorReader {
public:
  explicit TensorReader(fs::path modelDir) : modelDir_(std::move(modelDir)) {}

  /// Raw little-endian bytes of the tensor, one element per `byteWidth`.
  std::optional<std::vector<char>> bytes(const onnx::TensorProto &t, int64_t count, std::string &why) {
    size_t width = byteWidth(t.data_type());
    size_t expected = size_t(count) * width;
    std::vector<char> out;
    if (t.data_location() == onnx::TensorProto::EXTERNAL) {
      if (!readExternal(t, expected, out, why)) return std::nullopt;
      return out;
    }
    if (t.has_raw_data()) {
      if (t.raw_data().size() != expected) {
        why = cat("raw_data has ", t.raw_data().size(), " bytes, expected ", expected);
        return std::nullopt;
      }
      out.assign(t.raw_data().begin(), t.raw_data().end());
      return out;
    }
    out.resize(expected);
    auto fromField = [&](auto &field, auto convert) -> bool {
      if (int64_t(field.size()) != count) {
        why = cat("holds ", field.size(), " values, expected ", count);
        return false;
      }
      for (int64_t i = 0; i < count; ++i) convert(field.Get(i), out.data() + i * width);
      return true;
    };
    bool ok = false;
    switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      ok = fromField(t.float_data(), [](float v, char *p) { std::memcpy(p, &v, 4); });
      break;
    case onnx::TensorProto::DOUBLE:
      ok = fromField(t.double_data(), [](double v, char *p) { std::memcpy(p, &v, 8); });
      break;
    case onnx::TensorProto::INT64:
      ok = fromField(t.int64_data(), [](int64_t v, char *p) { std::memcpy(p, &v, 8); });
      break;
    case onnx::TensorProto::INT32:
      ok = fromField(t.int32_data(), [](int32_t v, char *p) { std::memcpy(p, &v, 4); });
      break;
    case onnx::TensorProto::FLOAT16: case onnx::TensorProto::BFLOAT16: case onnx::TensorProto::INT16:
      ok = fromField(t.int32_data(), [](int32_t v, char *p) { uint16_t b = uint16_t(v); std::memcpy(p, &b, 2); });
      break;
    case onnx::TensorProto::INT8: case onnx::TensorProto::UINT8: case onnx::TensorProto::BOOL:
      ok = fromField(t.int32_data(), [](int32_t v, char *p) { *p = char(v); });
      break;
    default:
      why = cat("data type ", dataTypeName(t.data_type()), " is not supported");
      return std::nullopt;
    }
    if (!ok) return std::nullopt;
    return out;
  }

private:
  bool readExternal(const onnx::TensorProto &t, size_t expected, std::vector<char> &out, std::string &why) {
    std::string location;
    int64_t offset = 0, length = -1;
    for (const auto &entry : t.external_data()) {
      try {
        if (entry.key() == "location") location = entry.value();
        else if (entry.key() == "offset") offset = std::stoll(entry.value());
        else if (entry.key() == "length") length = std::stoll(entry.value());
      } catch (...) {
        why = cat("external data field '", entry.key(), "' is not a number: '", entry.value(), "'");
        return false;
      }
    }
    if (location.empty()) { why = "external data has no location"; return false; }
    fs::path rel(location);
    if (rel.is_absolute()) { why = cat("external data location '", location, "' is absolute; it must be relative to the model's folder"); return false; }
    std::error_code ec;
    fs::path base = fs::weakly_canonical(modelDir_, ec);
    fs::path full = fs::weakly_canonical(modelDir_ / rel, ec);
    auto [baseEnd, fullIt] = std::mismatch(base.begin(), base.end(), full.begin(), full.end());
    if (baseEnd != base.end()) {
      why = cat("external data location '", location, "' escapes the model's folder ", base.string());
      return false;
    }
    std::ifstream in(full, std::ios::binary);
    if (!in) { why = cat("cannot open external data file ", full.string()); return false; }
    in.seekg(0, std::ios::end);
    int64_t fileSize = int64_t(in.tellg());
    if (length < 0) length = int64_t(expected);
    if (offset < 0 || length < 0 || offset > fileSize || length > fileSize - offset) {
      why = cat("external data [offset ", offset, ", length ", length, ") lies outside ", full.string(), " (", fileSize, " bytes)");
      return false;
    }
    if (size_t(length) != expected) {
      why = cat("external data length ", length, " differs from the ", expected, " bytes the tensor's shape needs");
      return false;
    }
    out.resize(expected);
    in.seekg(std::streamoff(offset), std::ios::beg);
    in.read(out.data(), std::streamsize(expected));
    if (!in) { why = cat("short read from external data file ", full.string()); return false; }
    return true;
  }

  fs::path modelDir_;
};

//===----------------------------------------------------------------------===//
// The importer
//===----------------------------------------------------------------------===//

class Importer {
public:
  Importer(MLIRContext &ctx, const onnx::ModelProto &model, fs::path modelPath)
      : ctx_(ctx), model_(model), builder_(&ctx), reader_(modelPath.parent_path()),
        modelPath_(std::move(modelPath)) {}

  OnnxImportResult run();

private:
  using Handler = std::function<std::vector<Value>(const onnx::NodeProto &)>;

  // --- helpers used by node handlers (they throw NodeError on problems)
  Value input(const onnx::NodeProto &node, int i, bool required = true);
  bool hasInput(const onnx::NodeProto &node, int i) { return i < node.input_size() && !node.input(i).empty(); }
  SmallVector<int64_t> constInts(const onnx::NodeProto &node, int i, const char *what);
  Value constI64(ArrayRef<int64_t> values, bool scalar = false);
  Value constScalar(double value, Type elementType);
  Value constFromTensor(const onnx::TensorProto &t, const std::string &name);

  template <typename OpTy>
  Operation *make(ValueRange operands, ArrayRef<NamedAttribute> attrs = {}, unsigned results = 1);
  template <typename OpTy> Value make1(ValueRange operands, ArrayRef<NamedAttribute> attrs = {}) {
    return make<OpTy>(operands, attrs)->getResult(0);
  }

  NamedAttribute attr(StringRef name, Attribute value) { return builder_.getNamedAttr(name, value); }
  const onnx::AttributeProto *findAttr(const onnx::NodeProto &node, const std::string &name);
  int64_t intAttr(const onnx::NodeProto &node, const std::string &name, int64_t dflt);
  float floatAttr(const onnx::NodeProto &node, const std::string &name, float dflt);
  std::string stringAttr(const onnx::NodeProto &node, const std::string &name, const std::string &dflt);
  std::optional<std::vector<int64_t>> intsAttr(const onnx::NodeProto &node, const std::string &name);

  void registerHandlers();
  std::optional<std::string> staticCheck(const onnx::NodeProto &node);
  RankedTensorType rankedOf(Value v) { return cast<RankedTensorType>(v.getType()); }

  MLIRContext &ctx_;
  const onnx::ModelProto &model_;
  OpBuilder builder_;
  TensorReader reader_;
  fs::path modelPath_;
  int64_t opset_ = 0;
  Location loc_ = UnknownLoc::get(&ctx_);
  std::unordered_map<std::string, Value> values_;
  std::map<std::string, Handler> handlers_;
  std::map<std::string, std::string> deprecated_;
};

template <typename OpTy>
Operation *Importer::make(ValueRange operands, ArrayRef<NamedAttribute> attrs, unsigned results) {
  std::string error;
  Operation *op = buildInferred<OpTy>(builder_, loc_, operands, attrs, results, error);
  if (!op) throw NodeError{error};
  return op;
}

Value Importer::input(const onnx::NodeProto &node, int i, bool required) {
  if (!hasInput(node, i)) {
    if (required) throw NodeError{cat("input ", i, " is missing")};
    return {};
  }
  auto it = values_.find(node.input(i));
  if (it == values_.end()) throw NodeError{cat("input '", node.input(i), "' is not produced by any earlier node, initializer or graph input")};
  return it->second;
}

SmallVector<int64_t> Importer::constInts(const onnx::NodeProto &node, int i, const char *what) {
  Value v = input(node, i);
  auto ints = lathe::ir::getConstantInts(v);
  if (!ints) throw NodeError{cat(what, " (input ", i, " '", node.input(i), "') must be a constant (initializer or Constant node)")};
  return *ints;
}

Value Importer::constI64(ArrayRef<int64_t> values, bool scalar) {
  auto type = RankedTensorType::get(scalar ? ArrayRef<int64_t>{} : ArrayRef<int64_t>{int64_t(values.size())},
                                    builder_.getI64Type());
  return builder_.create<ir::ConstantOp>(loc_, DenseElementsAttr::get(type, values));
}

Value Importer::constScalar(double value, Type elementType) {
  HostTensor t;
  t.elementType = elementType;
  if (t.isFloat()) t.floats = {value};
  else t.ints = {int64_t(value)};
  auto type = RankedTensorType::get({}, elementType);
  return builder_.create<ir::ConstantOp>(loc_, lathe::ir::makeElementsAttr(type, t));
}

Value Importer::constFromTensor(const onnx::TensorProto &t, const std::string &name) {
  auto elementType = elementTypeFor(&ctx_, t.data_type());
  if (!elementType) throw NodeError{cat("tensor '", name, "' has unsupported data type ", dataTypeName(t.data_type()))};
  SmallVector<int64_t> shape(t.dims().begin(), t.dims().end());
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) throw NodeError{cat("tensor '", name, "' has a negative dimension")};
    if (d > 0 && count > (int64_t(1) << 42) / d) throw NodeError{cat("tensor '", name, "' is implausibly large")};
    count *= d;
  }
  std::string why;
  auto bytes = reader_.bytes(t, count, why);
  if (!bytes) throw NodeError{cat("tensor '", name, "': ", why)};
  auto type = RankedTensorType::get(shape, *elementType);
  ElementsAttr value;
  if (count <= 16) {
    auto host = lathe::ir::readHostTensor(lathe::ir::makeResourceAttr(type, "tmp", *bytes));
    value = lathe::ir::makeElementsAttr(type, *host);
  } else {
    value = lathe::ir::makeResourceAttr(type, blobKey(name), *bytes);
  }
  return builder_.create<ir::ConstantOp>(loc_, value);
}

const onnx::AttributeProto *Importer::findAttr(const onnx::NodeProto &node, const std::string &name) {
  for (const auto &a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

int64_t Importer::intAttr(const onnx::NodeProto &node, const std::string &name, int64_t dflt) {
  auto *a = findAttr(node, name);
  return a ? a->i() : dflt;
}

float Importer::floatAttr(const onnx::NodeProto &node, const std::string &name, float dflt) {
  auto *a = findAttr(node, name);
  return a ? a->f() : dflt;
}

std::string Importer::stringAttr(const onnx::NodeProto &node, const std::string &name, const std::string &dflt) {
  auto *a = findAttr(node, name);
  return a ? a->s() : dflt;
}

std::optional<std::vector<int64_t>> Importer::intsAttr(const onnx::NodeProto &node, const std::string &name) {
  auto *a = findAttr(node, name);
  if (!a) return std::nullopt;
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

void Importer::registerHandlers() {
  using N = const onnx::NodeProto &;
  auto unary = [this](auto tag) {
    using OpTy = decltype(tag);
    return [this](N node) -> std::vector<Value> { return {make1<OpTy>({input(node, 0)})}; };
  };
  auto binary = [this](auto tag) {
    using OpTy = decltype(tag);
    return [this](N node) -> std::vector<Value> { return {make1<OpTy>({input(node, 0), input(node, 1)})}; };
  };
  auto variadic = [this](auto tag) {
    using OpTy = decltype(tag);
    return [this](N node) -> std::vector<Value> {
      Value acc = input(node, 0);
      for (int i = 1; i < node.input_size(); ++i) acc = make1<OpTy>({acc, input(node, i)});
      return {acc};
    };
  };
  handlers_["Identity"] = unary(ir::IdentityOp());
  handlers_["Sqrt"] = unary(ir::SqrtOp());
  handlers_["Erf"] = unary(ir::ErfOp());
  handlers_["Tanh"] = unary(ir::TanhOp());
  handlers_["Exp"] = unary(ir::ExpOp());
  handlers_["Log"] = unary(ir::LogOp());
  handlers_["Cos"] = unary(ir::CosOp());
  handlers_["Sin"] = unary(ir::SinOp());
  handlers_["Relu"] = unary(ir::ReluOp());
  handlers_["Sigmoid"] = unary(ir::SigmoidOp());
  handlers_["Neg"] = unary(ir::NegOp());
  handlers_["Abs"] = unary(ir::AbsOp());
  handlers_["Reciprocal"] = unary(ir::ReciprocalOp());
  handlers_["Not"] = unary(ir::NotOp());
  handlers_["Add"] = binary(ir::AddOp());
  handlers_["Sub"] = binary(ir::SubOp());
  handlers_["Mul"] = binary(ir::MulOp());
  handlers_["Div"] = binary(ir::DivOp());
  handlers_["Pow"] = [this](N node) -> std::vector<Value> {
    // Pow lets base and exponent types differ; the result has the base's type.
    Value base = input(node, 0), exponent = input(node, 1);
    Type baseType = rankedOf(base).getElementType(), expType = rankedOf(exponent).getElementType();
    auto castTo = [&](Value v, Type t) { return make1<ir::CastOp>({v}, {attr("to", TypeAttr::get(t))}); };
    if (baseType == expType) return {make1<ir::PowOp>({base, exponent})};
    if (isa<FloatType>(baseType)) return {make1<ir::PowOp>({base, castTo(exponent, baseType)})};
    Type work = isa<FloatType>(expType) ? expType : builder_.getF64Type();
    return {castTo(make1<ir::PowOp>({castTo(base, work), castTo(exponent, work)}), baseType)};
  };
  handlers_["And"] = binary(ir::AndOp());
  handlers_["Or"] = binary(ir::OrOp());
  handlers_["Equal"] = binary(ir::EqualOp());
  handlers_["Less"] = binary(ir::LessOp());
  handlers_["LessOrEqual"] = binary(ir::LessEqualOp());
  handlers_["Greater"] = binary(ir::GreaterOp());
  handlers_["GreaterOrEqual"] = binary(ir::GreaterEqualOp());
  handlers_["Max"] = variadic(ir::MaxOp());
  handlers_["Min"] = variadic(ir::MinOp());
  handlers_["Sum"] = variadic(ir::AddOp());
  handlers_["MatMul"] = binary(ir::MatMulOp());

  handlers_["Where"] = [this](N node) -> std::vector<Value> {
    return {make1<ir::WhereOp>({input(node, 0), input(node, 1), input(node, 2)})};
  };
  handlers_["Dropout"] = [this](N node) -> std::vector<Value> {
    if (node.output_size() > 1 && !node.output(1).empty()) throw NodeError{"the Dropout mask output is used; only inference (pass-through) Dropout is supported"};
    if (hasInput(node, 2)) {
      auto training = lathe::ir::getConstantScalar(input(node, 2));
      if (!training || *training != 0) throw NodeError{"training_mode must be a constant false"};
    }
    return {make1<ir::IdentityOp>({input(node, 0)})};
  };
  handlers_["Constant"] = [this](N node) -> std::vector<Value> {
    if (node.attribute_size() != 1) throw NodeError{"Constant must have exactly one value attribute"};
    const auto &a = node.attribute(0);
    if (a.name() == "value") return {constFromTensor(a.t(), node.output(0))};
    if (a.name() == "value_float") return {constScalar(a.f(), builder_.getF32Type())};
    if (a.name() == "value_int") return {constI64({a.i()}, true)};
    if (a.name() == "value_ints") return {constI64(SmallVector<int64_t>(a.ints().begin(), a.ints().end()))};
    if (a.name() == "value_floats") {
      auto type = RankedTensorType::get({a.floats_size()}, builder_.getF32Type());
      SmallVector<float> v(a.floats().begin(), a.floats().end());
      return {builder_.create<ir::ConstantOp>(loc_, DenseElementsAttr::get(type, ArrayRef<float>(v)))};
    }
    throw NodeError{cat("Constant attribute '", a.name(), "' is not supported (sparse and string constants are not)")};
  };
  handlers_["Cast"] = [this](N node) -> std::vector<Value> {
    int64_t to = intAttr(node, "to", 0);
    auto type = elementTypeFor(&ctx_, int32_t(to));
    if (!type) throw NodeError{cat("cast to ", dataTypeName(int32_t(to)), " is not supported")};
    return {make1<ir::CastOp>({input(node, 0)}, {attr("to", TypeAttr::get(*type))})};
  };
  handlers_["CastLike"] = [this](N node) -> std::vector<Value> {
    Type to = rankedOf(input(node, 1)).getElementType();
    return {make1<ir::CastOp>({input(node, 0)}, {attr("to", TypeAttr::get(to))})};
  };
  handlers_["Softmax"] = [this](N node) -> std::vector<Value> {
    Value x = input(node, 0);
    int64_t rank = rankedOf(x).getRank();
    int64_t axis = intAttr(node, "axis", opset_ < 13 ? 1 : -1);
    auto norm = lathe::ir::normalizeAxis(axis, rank);
    if (!norm) throw NodeError{cat("axis ", axis, " is out of range for rank ", rank)};
    if (opset_ < 13 && *norm != rank - 1)
      throw NodeError{cat("Softmax before opset 13 with axis ", axis, " (not the last dimension) flattens to 2-D; not supported")};
    return {make1<ir::SoftmaxOp>({x}, {attr("axis", builder_.getI64IntegerAttr(*norm))})};
  };
  auto reduce = [this](auto tag, int64_t axesInputSince) {
    using OpTy = decltype(tag);
    return [this, axesInputSince](N node) -> std::vector<Value> {
      Value x = input(node, 0);
      SmallVector<int64_t> axes;
      if (opset_ >= axesInputSince) {
        if (hasInput(node, 1)) axes = constInts(node, 1, "axes");
      } else if (auto a = intsAttr(node, "axes")) {
        axes.assign(a->begin(), a->end());
      }
      bool keep = intAttr(node, "keepdims", 1) != 0;
      if (axes.empty() && intAttr(node, "noop_with_empty_axes", 0)) return {make1<ir::IdentityOp>({x})};
      if (axes.empty())
        for (int64_t i = 0; i < rankedOf(x).getRank(); ++i) axes.push_back(i);
      for (int64_t &a : axes) {
        auto norm = lathe::ir::normalizeAxis(a, rankedOf(x).getRank());
        if (!norm) throw NodeError{cat("axis ", a, " is out of range")};
        a = *norm;
      }
      return {make1<OpTy>({x}, {attr("axes", builder_.getDenseI64ArrayAttr(axes)),
                                attr("keepdims", builder_.getBoolAttr(keep))})};
    };
  };
  handlers_["ReduceMean"] = reduce(ir::ReduceMeanOp(), 18);
  handlers_["ReduceSum"] = reduce(ir::ReduceSumOp(), 13);
  handlers_["ReduceMax"] = reduce(ir::ReduceMaxOp(), 18);
  handlers_["ReduceMin"] = reduce(ir::ReduceMinOp(), 18);

  handlers_["Shape"] = [this](N node) -> std::vector<Value> {
    Value x = input(node, 0);
    Value shape = make1<ir::ShapeOfOp>({x});
    int64_t rank = rankedOf(x).getRank();
    int64_t start = intAttr(node, "start", 0), end = intAttr(node, "end", rank);
    if (start == 0 && end >= rank) return {shape};
    return {make1<ir::SliceOp>({shape, constI64({start}), constI64({end}), constI64({0}), constI64({1})})};
  };
  handlers_["Reshape"] = [this](N node) -> std::vector<Value> {
    Value x = input(node, 0), shape = input(node, 1);
    if (intAttr(node, "allowzero", 0)) {
      auto target = lathe::ir::getConstantInts(shape);
      if (!target || llvm::is_contained(*target, 0))
        throw NodeError{"allowzero=1 with a zero (or non-constant) target dimension is not supported"};
    }
    return {make1<ir::ReshapeOp>({x, shape})};
  };
  handlers_["Flatten"] = [this](N node) -> std::vector<Value> {
    Value x = input(node, 0);
    auto shape = rankedOf(x).getShape();
    // Flatten's axis lies in [-r, r]: a negative axis counts from the rank.
    int64_t rank = shape.size(), requested = intAttr(node, "axis", 1);
    std::optional<int64_t> axis = requested < 0 ? requested + rank : requested;
    if (*axis < 0 || *axis > rank) throw NodeError{cat("axis ", requested, " is out of range [-", rank, ", ", rank, "]")};
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < int64_t(shape.size()); ++i) {
      int64_t &acc = i < *axis ? outer : inner;
      if (shape[i] == lathe::ir::kDynamic) {
        if (i >= *axis) throw NodeError{"Flatten of a dynamic inner dimension is not supported"};
        acc = -1;
      } else if (acc != -1) acc *= shape[i];
    }
    return {make1<ir::ReshapeOp>({x, constI64({outer, inner})})};
  };
  handlers_["Transpose"] = [this](N node) -> std::vector<Value> {
    Value x = input(node, 0);
    SmallVector<int64_t> perm;
    if (auto p = intsAttr(node, "perm")) perm.assign(p->begin(), p->end());
    else for (int64_t i = rankedOf(x).getRank() - 1; i >= 0; --i) perm.push_back(i);
    return {make1<ir::TransposeOp>({x}, {attr("perm", builder_.getDenseI64ArrayAttr(perm))})};
  };
  handlers_["Concat"] = [this](N node) -> std::vector<Value> {
    SmallVector<Value> ins;
    for (int i = 0; i < node.input_size(); ++i) ins.push_back(input(node, i));
    if (ins.empty()) throw NodeError{"Concat has no inputs"};
    auto axis = lathe::ir::normalizeAxis(intAttr(node, "axis", 0), rankedOf(ins[0]).getRank());
    if (!axis) throw NodeError{"axis is out of range"};
    return {make1<ir::ConcatOp>(ins, {attr("axis", builder_.getI64IntegerAttr(*axis))})};
  };
  handlers_["Slice"] = [this](N node) -> std::vector<Value> {
    Value x = input(node, 0), starts = input(node, 1), ends = input(node, 2);
    int64_t count = rankedOf(starts).getRank() == 1 ? rankedOf(starts).getDimSize(0) : 1;
    Value axes = hasInput(node, 3) ? input(node, 3) : Value();
    Value steps = hasInput(node, 4) ? input(node, 4) : Value();
    if ((!axes || !steps) && count == lathe::ir::kDynamic) throw NodeError{"starts must have a static length when axes or steps are omitted"};
    if (!axes) { SmallVector<int64_t> a; for (int64_t i = 0; i < count; ++i) a.push_back(i); axes = constI64(a); }
    if (!steps) steps = constI64(SmallVector<int64_t>(count, 1));
    auto toI64 = [&](Value v) {
      return rankedOf(v).getElementType().isInteger(64) ? v
             : make1<ir::CastOp>({v}, {attr("to", TypeAttr::get(builder_.getI64Type()))});
    };
    return {make1<ir::SliceOp>({x, toI64(starts), toI64(ends), toI64(axes), toI64(steps)})};
  };
  handlers_["Split"] = [this](N node) -> std::vector<Value> {
    Value x = input(node, 0);
    auto shape = rankedOf(x).getShape();
    auto axis = lathe::ir::normalizeAxis(intAttr(node, "axis", 0), shape.size());
    if (!axis) throw NodeError{"axis is out of range"};
    SmallVector<int64_t> sizes;
    if (opset_ >= 13 && hasInput(node, 1)) sizes = constInts(node, 1, "split");
    else if (opset_ < 13) if (auto s = intsAttr(node, "split")) sizes.assign(s->begin(), s->end());
    int64_t outputs = node.output_size();
    if (sizes.empty()) {
      int64_t dim = shape[*axis];
      if (dim == lathe::ir::kDynamic) throw NodeError{"an even Split of a dynamic dimension is not supported"};
      int64_t n = opset_ >= 18 ? intAttr(node, "num_outputs", outputs) : outputs;
      int64_t chunk = (dim + n - 1) / n;
      for (int64_t i = 0; i < n; ++i) sizes.push_back(std::min(chunk, dim - chunk * i));
    }
    if (int64_t(sizes.size()) != outputs) throw NodeError{cat("split has ", sizes.size(), " sizes for ", outputs, " outputs")};
    Operation *op = make<ir::SplitOp>({x}, {attr("axis", builder_.getI64IntegerAttr(*axis)),
                                            attr("sizes", builder_.getDenseI64ArrayAttr(sizes))}, outputs);
    return std::vector<Value>(op->getResults().begin(), op->getResults().end());
  };
  auto squeezeLike = [this](bool squeeze) {
    return [this, squeeze](N node) -> std::vector<Value> {
      Value x = input(node, 0);
      SmallVector<int64_t> axes;
      if (opset_ >= 13) { if (hasInput(node, 1)) axes = constInts(node, 1, "axes"); }
      else if (auto a = intsAttr(node, "axes")) axes.assign(a->begin(), a->end());
      if (squeeze && axes.empty()) {
        for (int64_t i = 0; i < rankedOf(x).getRank(); ++i) {
          int64_t d = rankedOf(x).getDimSize(i);
          if (d == lathe::ir::kDynamic) throw NodeError{"Squeeze without axes on a dynamic dimension is not supported"};
          if (d == 1) axes.push_back(i);
        }
      }
      if (!squeeze && axes.empty()) throw NodeError{"Unsqueeze needs axes"};
      auto a = attr("axes", builder_.getDenseI64ArrayAttr(axes));
      return {squeeze ? make1<ir::SqueezeOp>({x}, {a}) : make1<ir::UnsqueezeOp>({x}, {a})};
    };
  };
  handlers_["Squeeze"] = squeezeLike(true);
  handlers_["Unsqueeze"] = squeezeLike(false);
  handlers_["Expand"] = [this](N node) -> std::vector<Value> {
    return {make1<ir::ExpandOp>({input(node, 0), input(node, 1)})};
  };
  handlers_["ConstantOfShape"] = [this](N node) -> std::vector<Value> {
    ElementsAttr value;
    if (auto *a = findAttr(node, "value")) {
      Value c = constFromTensor(a->t(), node.name() + "_value");
      value = cast<ElementsAttr>(c.getDefiningOp<ir::ConstantOp>().getValue());
      c.getDefiningOp()->erase();
    } else {
      value = DenseElementsAttr::get(RankedTensorType::get({1}, builder_.getF32Type()), 0.0f);
    }
    return {make1<ir::FillOp>({input(node, 0)}, {attr("value", value)})};
  };
  handlers_["Range"] = [this](N node) -> std::vector<Value> {
    return {make1<ir::RangeOp>({input(node, 0), input(node, 1), input(node, 2)})};
  };
  handlers_["Trilu"] = [this](N node) -> std::vector<Value> {
    Value k = hasInput(node, 1) ? input(node, 1) : constI64({0}, true);
    return {make1<ir::TriluOp>({input(node, 0), k}, {attr("upper", builder_.getBoolAttr(intAttr(node, "upper", 1) != 0))})};
  };
  handlers_["Gather"] = [this](N node) -> std::vector<Value> {
    Value data = input(node, 0), indices = input(node, 1);
    int64_t rank = rankedOf(data).getRank();
    auto axis = lathe::ir::normalizeAxis(intAttr(node, "axis", 0), rank);
    if (!axis) throw NodeError{"axis is out of range"};
    bool weightTable = rank == 2 && *axis == 0 && data.getDefiningOp<ir::ConstantOp>() &&
                       isa<FloatType>(rankedOf(data).getElementType());
    if (weightTable) return {make1<ir::EmbeddingOp>({data, indices})};
    return {make1<ir::GatherOp>({data, indices}, {attr("axis", builder_.getI64IntegerAttr(*axis))})};
  };
  handlers_["ScatterND"] = [this](N node) -> std::vector<Value> {
    std::string reduction = stringAttr(node, "reduction", "none");
    if (reduction != "none") throw NodeError{cat("reduction='", reduction, "' is not supported")};
    return {make1<ir::ScatterNdOp>({input(node, 0), input(node, 1), input(node, 2)})};
  };
  handlers_["Gemm"] = [this](N node) -> std::vector<Value> {
    Value a = input(node, 0), b = input(node, 1), c = input(node, 2, false);
    if (intAttr(node, "transA", 0)) a = make1<ir::TransposeOp>({a}, {attr("perm", builder_.getDenseI64ArrayAttr({1, 0}))});
    if (intAttr(node, "transB", 0)) b = make1<ir::TransposeOp>({b}, {attr("perm", builder_.getDenseI64ArrayAttr({1, 0}))});
    Value y = make1<ir::MatMulOp>({a, b});
    Type et = rankedOf(y).getElementType();
    float alpha = floatAttr(node, "alpha", 1.0f), beta = floatAttr(node, "beta", 1.0f);
    if (alpha != 1.0f) y = make1<ir::MulOp>({y, constScalar(alpha, et)});
    if (c && beta != 0.0f) {
      if (beta != 1.0f) c = make1<ir::MulOp>({c, constScalar(beta, et)});
      y = make1<ir::AddOp>({y, c});
    }
    return {y};
  };
  handlers_["LayerNormalization"] = [this](N node) -> std::vector<Value> {
    for (int i = 1; i < node.output_size(); ++i)
      if (!node.output(i).empty()) throw NodeError{"the Mean/InvStdDev outputs are used; only the normalized output is supported"};
    Value x = input(node, 0), scale = input(node, 1), bias = input(node, 2, false);
    int64_t rank = rankedOf(x).getRank();
    auto axis = lathe::ir::normalizeAxis(intAttr(node, "axis", -1), rank);
    if (!axis || *axis != rank - 1) throw NodeError{"only normalization over the last axis is supported"};
    SmallVector<Value> operands{x, scale};
    if (bias) operands.push_back(bias);
    return {make1<ir::LayerNormOp>(operands, {attr("epsilon", builder_.getF64FloatAttr(floatAttr(node, "epsilon", 1e-5f))),
                                              attr("axis", builder_.getI64IntegerAttr(-1))})};
  };
  handlers_["Gelu"] = [this](N node) -> std::vector<Value> {
    std::string approximate = stringAttr(node, "approximate", "none");
    if (approximate != "none" && approximate != "tanh") throw NodeError{cat("approximate='", approximate, "' is not supported")};
    return {make1<ir::GeluOp>({input(node, 0)}, {attr("approximate", builder_.getStringAttr(approximate))})};
  };
}

/// Checks that need no input values: op known, attributes in range. Run for
/// nodes whose inputs could not be built, so `check` still lists them.
std::optional<std::string> Importer::staticCheck(const onnx::NodeProto &node) {
  if (!node.domain().empty() && node.domain() != "ai.onnx")
    return cat("op domain '", node.domain(), "' is not supported (only the default ONNX domain is)");
  if (!handlers_.count(node.op_type())) return cat("op ", node.op_type(), " is not supported");
  if (node.op_type() == "Cast") {
    int64_t to = intAttr(node, "to", 0);
    if (!elementTypeFor(&ctx_, int32_t(to))) return cat("cast to ", dataTypeName(int32_t(to)), " is not supported");
  }
  return std::nullopt;
}

OnnxImportResult Importer::run() {
  OnnxImportResult result;
  for (const auto &op : model_.opset_import())
    if (op.domain().empty() || op.domain() == "ai.onnx") opset_ = op.version();
  result.opset = opset_;
  if (opset_ == 0) { result.fatalError = "the model declares no default-domain opset"; return result; }
  if (opset_ < kMinOpset || opset_ > kMaxOpset) {
    result.fatalError = cat("the model uses opset ", opset_, "; Lathe imports opsets ", kMinOpset, " to ", kMaxOpset);
    return result;
  }
  registerHandlers();
  ctx_.loadDialect<ir::LatheDialect, func::FuncDialect>();
  const onnx::GraphProto &graph = model_.graph();
  result.nodeCount = graph.node_size();

  auto module = ModuleOp::create(FileLineColLoc::get(&ctx_, modelPath_.string(), 0, 0));
  module->setAttr("lathe.source", builder_.getStringAttr(modelPath_.filename().string()));
  module->setAttr("lathe.opset", builder_.getI64IntegerAttr(opset_));
  if (!model_.producer_name().empty())
    module->setAttr("lathe.producer", builder_.getStringAttr(model_.producer_name() + " " + model_.producer_version()));

  // Graph inputs (initializers listed as inputs are weights, not inputs).
  std::set<std::string> initializerNames;
  for (const auto &t : graph.initializer()) initializerNames.insert(t.name());
  SmallVector<Type> argTypes;
  SmallVector<std::string> argNames;
  SmallVector<Attribute> argDims; // ONNX dim_param names: equal names are equal sizes
  for (const auto &in : graph.input()) {
    if (initializerNames.count(in.name())) continue;
    if (!in.type().has_tensor_type()) { result.fatalError = cat("graph input '", in.name(), "' is not a tensor"); return result; }
    const auto &tt = in.type().tensor_type();
    auto et = elementTypeFor(&ctx_, tt.elem_type());
    if (!et) { result.fatalError = cat("graph input '", in.name(), "' has unsupported type ", dataTypeName(tt.elem_type())); return result; }
    if (!tt.has_shape()) { result.fatalError = cat("graph input '", in.name(), "' has no shape (its rank must be known)"); return result; }
    SmallVector<int64_t> shape;
    SmallVector<Attribute> dimNames;
    for (const auto &d : tt.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() < 0) {
        result.fatalError = cat("graph input '", in.name(), "' has a negative dimension ", d.dim_value());
        return result;
      }
      shape.push_back(d.has_dim_value() ? d.dim_value() : lathe::ir::kDynamic);
      dimNames.push_back(builder_.getStringAttr(d.has_dim_value() ? "" : d.dim_param()));
    }
    argTypes.push_back(RankedTensorType::get(shape, *et));
    argNames.push_back(in.name());
    argDims.push_back(builder_.getArrayAttr(dimNames));
  }
  builder_.setInsertionPointToEnd(module.getBody());
  auto func = builder_.create<func::FuncOp>(module.getLoc(), "main", builder_.getFunctionType(argTypes, {}));
  Block *body = func.addEntryBlock();
  for (size_t i = 0; i < argNames.size(); ++i) {
    func.setArgAttr(i, "lathe.name", builder_.getStringAttr(argNames[i]));
    func.setArgAttr(i, "lathe.dims", argDims[i]);
    values_[argNames[i]] = body->getArgument(i);
  }
  builder_.setInsertionPointToEnd(body);

  for (const auto &t : graph.initializer()) {
    loc_ = NameLoc::get(builder_.getStringAttr(t.name()));
    try {
      values_[t.name()] = constFromTensor(t, t.name());
    } catch (const NodeError &e) {
      result.fatalError = e.reason;
      module->erase();
      return result;
    }
  }

  std::set<std::string> poisoned; // outputs of nodes that failed
  int index = 0;
  for (const auto &node : graph.node()) {
    std::string name = node.name().empty() ? cat(node.op_type(), "_", index) : node.name();
    ++index;
    loc_ = NameLoc::get(builder_.getStringAttr(name));
    auto fail = [&](const std::string &reason) {
      result.problems.push_back({name, node.op_type(), node.domain(), opset_, reason});
      for (const auto &o : node.output()) poisoned.insert(o);
    };
    bool inputsPoisoned = false;
    for (const auto &i : node.input()) inputsPoisoned |= poisoned.count(i) > 0;
    if (auto problem = staticCheck(node)) { fail(*problem); continue; }
    if (inputsPoisoned) {
      for (const auto &o : node.output()) poisoned.insert(o);
      continue;
    }
    try {
      std::vector<Value> outs = handlers_.at(node.op_type())(node);
      for (int i = 0; i < node.output_size() && i < int(outs.size()); ++i)
        if (!node.output(i).empty()) values_[node.output(i)] = outs[i];
      for (int i = int(outs.size()); i < node.output_size(); ++i)
        if (!node.output(i).empty()) throw NodeError{cat("output ", i, " is not supported")};
    } catch (const NodeError &e) {
      fail(e.reason);
    }
  }

  SmallVector<Value> results;
  SmallVector<Type> resultTypes;
  SmallVector<std::string> resultNames;
  for (const auto &out : graph.output()) {
    if (poisoned.count(out.name())) continue;
    auto it = values_.find(out.name());
    if (it == values_.end()) {
      result.fatalError = cat("graph output '", out.name(), "' is not produced by any node");
      module->erase();
      return result;
    }
    results.push_back(it->second);
    resultTypes.push_back(it->second.getType());
    resultNames.push_back(out.name());
  }
  if (!result.problems.empty()) {
    module->erase();
    return result;
  }
  loc_ = module.getLoc();
  builder_.create<func::ReturnOp>(loc_, results);
  func.setType(builder_.getFunctionType(argTypes, resultTypes));
  for (size_t i = 0; i < resultNames.size(); ++i)
    func.setResultAttr(i, "lathe.name", builder_.getStringAttr(resultNames[i]));
  result.module = module;
  return result;
}

} // namespace

OnnxImportResult importOnnxFile(MLIRContext &context, const std::string &path) {
  OnnxImportResult result;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    result.fatalError = cat("cannot open ", path);
    return result;
  }
  google::protobuf::io::IstreamInputStream raw(&in);
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(std::numeric_limits<int>::max());
  onnx::ModelProto model;
  if (!model.ParseFromCodedStream(&coded) || !model.has_graph()) {
    result.fatalError = cat(path, " is not a valid ONNX model (protobuf parse failed or no graph)");
    return result;
  }
  Importer importer(context, model, fs::path(path));
  return importer.run();
}

} // namespace lathe::importer
