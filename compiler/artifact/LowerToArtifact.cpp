#include "compiler/artifact/LowerToArtifact.h"
#include "compiler/Version.h"

#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"
#include "passes/simplify/SimplifyUtils.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/DialectResourceBlobManager.h"

#include <cstring>

using namespace mlir;

namespace lathe::compiler {
namespace {

using artifact::DType;

std::optional<DType> dtypeOf(Type t) {
  if (t.isF32()) return DType::F32;
  if (t.isF16()) return DType::F16;
  if (t.isBF16()) return DType::BF16;
  if (t.isF64()) return DType::F64;
  if (t.isInteger(1)) return DType::Bool;
  if (auto it = dyn_cast<IntegerType>(t)) {
    if (it.isUnsigned() && it.getWidth() == 8) return DType::U8;
    if (it.isUnsigned()) return std::nullopt;
    switch (it.getWidth()) {
    case 8: return DType::I8;
    case 16: return DType::I16;
    case 32: return DType::I32;
    case 64: return DType::I64;
    default: return std::nullopt;
    }
  }
  return std::nullopt;
}

std::string nodeName(Location loc) {
  if (auto name = dyn_cast<NameLoc>(loc)) return name.getName().str();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations())
      if (auto name = dyn_cast<NameLoc>(inner)) return name.getName().str();
  return "";
}

/// Operand arity of ops with optional operands, so absent ones become -1.
size_t fixedArity(StringRef op) {
  if (op == "linear" || op == "layer_norm") return 3;
  if (op == "attention") return 4;
  return 0;
}

class Lowering {
public:
  Lowering(func::FuncOp func, LoweredArtifact &out) : func_(func), out_(out) {}

  LogicalResult run(std::string &error);

private:
  int32_t tensorFor(Value v, const std::string &name, std::string &error);
  std::vector<artifact::Dim> dimsOf(Value v);
  LogicalResult addWeight(int32_t tensor, ElementsAttr value, std::string &error);

  func::FuncOp func_;
  LoweredArtifact &out_;
  llvm::DenseMap<Value, int32_t> index_;
  int unnamed_ = 0;
};

std::vector<artifact::Dim> Lowering::dimsOf(Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  std::vector<artifact::Dim> dims;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    artifact::Dim dim;
    if (!type.isDynamicDim(d)) {
      dim.value = type.getDimSize(d);
    } else {
      passes::DimRef ref = passes::canonicalDim(v, d);
      std::string symbol;
      if (auto arg = dyn_cast_or_null<BlockArgument>(ref.value)) {
        auto names = func_.getArgAttrOfType<ArrayAttr>(arg.getArgNumber(), "lathe.dims");
        if (names && ref.dim < int64_t(names.size())) symbol = cast<StringAttr>(names[ref.dim]).str();
        if (symbol.empty()) symbol = "input" + std::to_string(arg.getArgNumber()) + "." + std::to_string(ref.dim);
      } else {
        auto it = index_.find(ref.value);
        symbol = "t" + std::to_string(it == index_.end() ? index_.size() : size_t(it->second)) + "." +
                 std::to_string(ref.dim);
      }
      dim.symbol = symbol;
    }
    dims.push_back(dim);
  }
  return dims;
}

int32_t Lowering::tensorFor(Value v, const std::string &name, std::string &error) {
  if (auto it = index_.find(v); it != index_.end()) return it->second;
  auto type = dyn_cast<RankedTensorType>(v.getType());
  auto dtype = type ? dtypeOf(type.getElementType()) : std::nullopt;
  if (!dtype) {
    std::string s;
    llvm::raw_string_ostream os(s);
    v.getType().print(os);
    error = "tensor '" + name + "' has type " + s + ", which the runtime does not support";
    return -1;
  }
  artifact::TensorSpec spec;
  spec.name = name.empty() ? "t" + std::to_string(unnamed_++) : name;
  spec.dtype = *dtype;
  spec.shape = dimsOf(v);
  int32_t id = int32_t(out_.spec.tensors.size());
  out_.spec.tensors.push_back(std::move(spec));
  index_[v] = id;
  return id;
}

LogicalResult Lowering::addWeight(int32_t tensor, ElementsAttr value, std::string &error) {
  artifact::WeightSpec w;
  w.tensor = tensor;
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(value)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob) {
      error = "weight '" + out_.spec.tensors[tensor].name +
              "' has no data (was the model read from a .mlir text dump, which elides weights? use .mlirbc)";
      return failure();
    }
    w.data = blob->getData().data();
    w.bytes = blob->getData().size();
  } else {
    auto host = ir::readHostTensor(value, int64_t(1) << 30);
    if (!host) {
      error = "constant '" + out_.spec.tensors[tensor].name + "' cannot be encoded";
      return failure();
    }
    // Re-encode through a resource attribute's byte layout (1 byte per bool).
    auto type = cast<RankedTensorType>(value.getType());
    std::vector<char> bytes;
    size_t width = artifact::dtypeSize(*dtypeOf(type.getElementType()));
    bytes.resize(size_t(host->numElements()) * width);
    for (int64_t i = 0; i < host->numElements(); ++i) {
      char *p = bytes.data() + i * width;
      Type et = type.getElementType();
      if (et.isF32()) { float f = float(host->getDouble(i)); std::memcpy(p, &f, 4); }
      else if (et.isF64()) { double d = host->getDouble(i); std::memcpy(p, &d, 8); }
      else if (et.isF16() || et.isBF16()) {
        APFloat f(host->getDouble(i));
        bool lost = false;
        f.convert(et.isF16() ? APFloat::IEEEhalf() : APFloat::BFloat(), APFloat::rmNearestTiesToEven, &lost);
        uint16_t raw = uint16_t(f.bitcastToAPInt().getZExtValue());
        std::memcpy(p, &raw, 2);
      } else {
        int64_t v = host->getInt(i);
        if (et.isInteger(1)) v = v != 0;
        std::memcpy(p, &v, width);
      }
    }
    out_.storage.push_back(std::move(bytes));
    w.data = out_.storage.back().data();
    w.bytes = out_.storage.back().size();
  }
  out_.spec.weights.push_back(w);
  return success();
}

artifact::AttrValue convertAttr(Attribute a, bool &ok) {
  ok = true;
  if (auto b = dyn_cast<BoolAttr>(a)) return int64_t(b.getValue());
  if (auto i = dyn_cast<IntegerAttr>(a)) return i.getInt();
  if (auto f = dyn_cast<FloatAttr>(a)) return f.getValueAsDouble();
  if (auto s = dyn_cast<StringAttr>(a)) return s.str();
  if (auto arr = dyn_cast<DenseI64ArrayAttr>(a)) return std::vector<int64_t>(arr.asArrayRef().begin(), arr.asArrayRef().end());
  if (auto t = dyn_cast<TypeAttr>(a)) {
    if (auto d = dtypeOf(t.getValue())) return std::string(artifact::dtypeName(*d));
  }
  ok = false;
  return int64_t(0);
}

LogicalResult Lowering::run(std::string &error) {
  auto &spec = out_.spec;
  for (BlockArgument arg : func_.getArguments()) {
    auto name = func_.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "lathe.name");
    int32_t id = tensorFor(arg, name ? name.str() : "input" + std::to_string(arg.getArgNumber()), error);
    if (id < 0) return failure();
    spec.inputs.push_back(id);
  }
  for (Operation &op : func_.getBody().front()) {
    if (isa<func::ReturnOp>(op)) continue;
    std::string source = nodeName(op.getLoc());
    if (!isa<ir::LatheDialect>(op.getDialect())) {
      error = "op " + op.getName().getStringRef().str() + " (node '" + source + "') has no runtime kernel";
      return failure();
    }
    if (auto c = dyn_cast<ir::ConstantOp>(op)) {
      int32_t id = tensorFor(c.getResult(), source.empty() ? "const" + std::to_string(index_.size()) : source, error);
      if (id < 0 || failed(addWeight(id, c.getValue(), error))) return failure();
      continue;
    }
    artifact::KernelSpec kernel;
    kernel.op = op.getName().stripDialect().str();
    kernel.source = source;
    kernel.weightFormat = "f32";
    SmallVector<Value> operands(op.getOperands());
    if (auto q = dyn_cast<ir::QuantizedLinearOp>(op)) {
      // The compact formats are the `linear` kernel with another weight format;
      // operands in the kernel's fixed order, absent ones as null (-1).
      kernel.op = "linear";
      kernel.weightFormat = q.getFormat().str();
      operands = {q.getInput(), q.getWeight()};
      if (kernel.weightFormat != "bf16" && kernel.weightFormat != "fp16") operands.push_back(q.getScales());
      if (kernel.weightFormat == "int4" || kernel.weightFormat == "int3") operands.push_back(q.getMins());
      if (kernel.weightFormat == "w8a8") operands.push_back(q.getActScales());
      operands.push_back(q.getBias());
    } else if (auto s = dyn_cast<ir::SparseLinearOp>(op)) {
      // N:M: (x, values, indices, scales (int4 only), bias?); unstructured: (x, values, bitmap, bias?).
      kernel.op = "linear";
      kernel.weightFormat = (s.getPattern() == "unstructured" ? "bitmap-" : "nm-") + s.getValuesFormat().str();
      operands = {s.getInput(), s.getValues(), s.getIndices()};
      if (s.getValuesFormat() == "int4") operands.push_back(s.getScales());
      operands.push_back(s.getBias());
    } else if (auto e = dyn_cast<ir::QuantizedEmbeddingOp>(op)) {
      kernel.op = "embedding";
      kernel.weightFormat = e.getFormat().str();
      operands = {e.getTable(), e.getIndices(), e.getScales()};
    }
    for (Value operand : operands) {
      if (!operand) {
        kernel.inputs.push_back(-1);
        continue;
      }
      auto it = index_.find(operand);
      if (it == index_.end()) {
        error = "operand of node '" + source + "' is defined after its use";
        return failure();
      }
      kernel.inputs.push_back(it->second);
    }
    size_t arity = kernel.weightFormat == "f32" ? fixedArity(kernel.op) : 0;
    while (kernel.inputs.size() < arity) kernel.inputs.push_back(-1);
    while (!kernel.inputs.empty() && kernel.inputs.back() == -1 && kernel.weightFormat != "f32") kernel.inputs.pop_back();
    for (auto [i, result] : llvm::enumerate(op.getResults())) {
      std::string name = source.empty() ? kernel.op : source;
      if (op.getNumResults() > 1) name += "#" + std::to_string(i);
      int32_t id = tensorFor(result, name, error);
      if (id < 0) return failure();
      kernel.outputs.push_back(id);
    }
    for (NamedAttribute attr : op.getAttrDictionary()) {
      // Compiler-side annotations (lathe.compression, ...) and the format, which
      // became the kernel's weight format, are not kernel attributes.
      if (attr.getName().strref().starts_with("lathe.") || attr.getName() == "operandSegmentSizes" ||
          (kernel.weightFormat != "f32" && (attr.getName() == "format" || attr.getName() == "values_format" ||
                                            (kernel.weightFormat == "bitmap-f32" && attr.getName() != "in_features"))))
        continue;
      if (auto elements = dyn_cast<ElementsAttr>(attr.getValue())) { // fill's value
        auto host = ir::readHostTensor(elements, 1);
        auto dtype = dtypeOf(cast<ShapedType>(elements.getType()).getElementType());
        if (!host || !dtype) {
          error = "node '" + source + "': attribute '" + attr.getName().str() + "' cannot be encoded";
          return failure();
        }
        kernel.attrs["value"] = host->getDouble(0);
        kernel.attrs["dtype"] = std::string(artifact::dtypeName(*dtype));
        continue;
      }
      bool ok = false;
      artifact::AttrValue value = convertAttr(attr.getValue(), ok);
      if (!ok) {
        error = "node '" + source + "': attribute '" + attr.getName().str() + "' cannot be encoded";
        return failure();
      }
      kernel.attrs[attr.getName().str()] = value;
    }
    // Per-layer manifest: ops that own weights (every constant operand of a
    // compact-weight layer: codes, scales, mins, bias).
    uint64_t weightBytes = 0;
    const bool compact = kernel.weightFormat != "f32";
    for (Value operand : op.getOperands())
      if (auto c = operand.getDefiningOp<ir::ConstantOp>();
          c && (compact || isa<FloatType>(cast<RankedTensorType>(c.getType()).getElementType())) &&
          cast<RankedTensorType>(c.getType()).getNumElements() > 1)
        weightBytes += cast<RankedTensorType>(c.getType()).getNumElements() *
                       artifact::dtypeSize(*dtypeOf(cast<RankedTensorType>(c.getType()).getElementType()));
    // The manifest's format says "+a8" for a layer with int8 activations (act_block).
    const auto block = kernel.attrs.find("act_block");
    const bool a8 = block != kernel.attrs.end() && std::holds_alternative<int64_t>(block->second) && std::get<int64_t>(block->second);
    if (weightBytes) spec.manifest.push_back({source, kernel.op, kernel.weightFormat + (a8 ? "+a8" : ""), weightBytes});
    spec.kernels.push_back(std::move(kernel));
  }
  // Outputs carry their ONNX names; an output that is an input, a constant or
  // another output gets its own copy so every output is a distinct tensor.
  auto ret = cast<func::ReturnOp>(func_.getBody().front().getTerminator());
  std::set<int32_t> used(spec.inputs.begin(), spec.inputs.end());
  for (auto [i, value] : llvm::enumerate(ret.getOperands())) {
    auto nameAttr = func_.getResultAttrOfType<StringAttr>(i, "lathe.name");
    std::string name = nameAttr ? nameAttr.str() : "output" + std::to_string(i);
    int32_t id = index_.lookup(value);
    bool isConstant = value.getDefiningOp<ir::ConstantOp>() != nullptr;
    if (used.count(id) || isConstant) {
      artifact::TensorSpec copy = spec.tensors[id];
      copy.name = name;
      int32_t copyId = int32_t(spec.tensors.size());
      spec.tensors.push_back(copy);
      artifact::KernelSpec identity;
      identity.op = "identity";
      identity.inputs = {id};
      identity.outputs = {copyId};
      identity.source = name;
      spec.kernels.push_back(identity);
      id = copyId;
    } else {
      spec.tensors[id].name = name;
    }
    used.insert(id);
    spec.outputs.push_back(id);
  }
  return success();
}

} // namespace

std::unique_ptr<LoweredArtifact> lowerToArtifact(ModuleOp module, const std::string &pipeline, std::string &error) {
  auto funcs = module.getOps<func::FuncOp>();
  if (std::distance(funcs.begin(), funcs.end()) != 1) {
    error = "the module must hold exactly one function";
    return nullptr;
  }
  func::FuncOp func = *funcs.begin();
  auto out = std::make_unique<LoweredArtifact>();
  out->spec.compilerVersion = LATHE_COMPILER_VERSION;
  if (auto source = module->getAttrOfType<StringAttr>("lathe.source")) out->spec.sourceModel = source.str();
  out->spec.pipeline = pipeline;
  out->spec.isa = "baseline";
  // The tokenizer an importer attached (lathe.tokenizer, see ImportGguf.h).
  if (auto tokenizer = module->getAttrOfType<DenseResourceElementsAttr>("lathe.tokenizer")) {
    AsmResourceBlob *blob = tokenizer.getRawHandle().getBlob();
    if (!blob) {
      error = "the module's tokenizer blob is missing (elided when the IR was printed?)";
      return nullptr;
    }
    artifact::Vocabulary vocabulary;
    auto bytes = blob->getData();
    if (std::string err = artifact::decodeVocabulary(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size(), vocabulary);
        !err.empty()) {
      error = "the module's tokenizer: " + err;
      return nullptr;
    }
    out->spec.vocabulary = std::move(vocabulary);
  }
  Lowering lowering(func, *out);
  if (failed(lowering.run(error))) return nullptr;
  return out;
}

} // namespace lathe::compiler
