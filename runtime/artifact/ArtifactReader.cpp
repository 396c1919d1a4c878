#include "runtime/artifact/ArtifactReader.h"
#include "runtime/artifact/ArtifactFormat.h"
#include "runtime/artifact/lathe_artifact_generated.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lathe::artifact {
namespace {

bool isFloat(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }
bool isInt(DType t) { return t == DType::I64 || t == DType::I32 || t == DType::I16 || t == DType::I8 || t == DType::U8; }

// Operand constraint: kind 'F' float, 'I' integer, 'B' bool, 'A' any;
// rank -1 any, -2 at least 1, -3 at least 2, otherwise exact.
struct Operand { char kind; int rank; bool optional; };
struct OpRule { std::vector<Operand> inputs; bool variadic = false; int minOutputs = 1, maxOutputs = 1; char outKind = 'A'; };

const std::map<std::string, OpRule> &opRules() {
  static const std::map<std::string, OpRule> rules = [] {
    std::map<std::string, OpRule> r;
    Operand anyT{'A', -1, false};
    r["linear"] = {{{'F', -2, false}, {'F', 2, false}, {'F', 1, true}}, false, 1, 1, 'F'};
    // Compact weight formats: the rule is keyed "op:format" (see the kernel table's formats).
    r["linear:int8"] = {{{'F', -2, false}, {'I', 2, false}, {'F', 2, false}, {'F', 1, true}}, false, 1, 1, 'F'};
    r["linear:int4"] = {{{'F', -2, false}, {'I', 2, false}, {'F', 2, false}, {'F', 2, true}, {'F', 1, true}}, false, 1, 1, 'F'};
    r["linear:int3"] = r["linear:int4"];
    r["linear:bf16"] = {{{'F', -2, false}, {'F', 2, false}, {'F', 1, true}}, false, 1, 1, 'F'};
    r["linear:fp16"] = r["linear:bf16"];
    // (x, q, scales, act_scales?, bias?)
    r["linear:w8a8"] = {{{'F', -2, false}, {'I', 2, false}, {'F', 2, false}, {'F', 1, true}, {'F', 1, true}}, false, 1, 1, 'F'};
    // N:M sparse: (x, values f32, indices u8, bias?) and (x, codes u8, indices u8, scales f16, bias?)
    r["linear:nm-f32"] = {{{'F', -2, false}, {'F', 2, false}, {'I', 2, false}, {'F', 1, true}}, false, 1, 1, 'F'};
    r["linear:nm-int4"] = {{{'F', -2, false}, {'I', 2, false}, {'I', 2, false}, {'F', 2, false}, {'F', 1, true}}, false, 1, 1, 'F'};
    // Unstructured bitmap: (x, values f32 [nnz], bitmap u8 [n, k/8], bias?)
    r["linear:bitmap-f32"] = {{{'F', -2, false}, {'F', 1, false}, {'I', 2, false}, {'F', 1, true}}, false, 1, 1, 'F'};
    r["embedding:int8"] = {{{'I', 2, false}, {'I', -1, false}, {'F', 2, false}}, false, 1, 1, 'F'};
    r["matmul"] = {{{'F', -2, false}, {'F', -2, false}}, false, 1, 1, 'F'};
    r["attention"] = {{{'F', 4, false}, {'F', 4, false}, {'F', 4, false}, {'A', -1, true}}, false, 1, 1, 'F'};
    r["layer_norm"] = {{{'F', -2, false}, {'F', -1, false}, {'F', -1, true}}, false, 1, 1, 'F'};
    r["rms_norm"] = {{{'F', -2, false}, {'F', -1, false}}, false, 1, 1, 'F'};
    r["gelu"] = {{{'F', -1, false}}, false, 1, 1, 'F'};
    r["rotary"] = {{{'F', -2, false}, {'F', -2, false}, {'F', -2, false}}, false, 1, 1, 'F'};
    r["softmax"] = {{{'F', -2, false}}, false, 1, 1, 'F'};
    r["embedding"] = {{{'A', 2, false}, {'I', -1, false}}};
    r["positions"] = {{{'A', -2, false}}, false, 1, 1, 'I'};
    for (const char *u : {"identity", "sqrt", "erf", "tanh", "exp", "log", "cos", "sin", "relu", "sigmoid", "silu",
                          "neg", "abs", "reciprocal", "not"})
      r[u] = {{anyT}};
    r["cast"] = {{anyT}};
    for (const char *b : {"add", "sub", "mul", "div", "pow", "max", "min", "and", "or"}) r[b] = {{anyT, anyT}};
    for (const char *b : {"equal", "less", "less_equal", "greater", "greater_equal"}) r[b] = {{anyT, anyT}, false, 1, 1, 'B'};
    r["where"] = {{{'B', -1, false}, anyT, anyT}};
    for (const char *b : {"reduce_mean", "reduce_sum", "reduce_max", "reduce_min"}) r[b] = {{anyT}};
    r["shape_of"] = {{anyT}, false, 1, 1, 'I'};
    r["reshape"] = {{anyT, {'I', 1, false}}};
    r["transpose"] = {{anyT}};
    r["concat"] = {{anyT}, true};
    r["slice"] = {{anyT, {'I', 1, false}, {'I', 1, false}, {'I', 1, true}, {'I', 1, true}}};
    r["split"] = {{anyT}, false, 1, 1 << 20};
    r["squeeze"] = {{anyT}};
    r["unsqueeze"] = {{anyT}};
    r["expand"] = {{anyT, {'I', 1, false}}};
    r["fill"] = {{{'I', 1, false}}};
    r["range"] = {{anyT, anyT, anyT}};
    r["trilu"] = {{{'A', -3, false}, {'I', -1, true}}};
    r["gather"] = {{anyT, {'I', -1, false}}};
    r["scatter_nd"] = {{anyT, {'I', -2, false}, anyT}};
    return r;
  }();
  return rules;
}

std::string shapeString(const TensorSpec &t) {
  std::string s = std::string(dtypeName(t.dtype)) + "[";
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (i) s += ",";
    s += t.shape[i].isStatic() ? std::to_string(t.shape[i].value) : (t.shape[i].symbol.empty() ? "?" : t.shape[i].symbol);
  }
  return s + "]";
}

std::string checkOperand(const Operand &rule, const TensorSpec &t) {
  bool kindOk = rule.kind == 'A' || (rule.kind == 'F' && isFloat(t.dtype)) || (rule.kind == 'I' && isInt(t.dtype)) ||
                (rule.kind == 'B' && t.dtype == DType::Bool);
  if (!kindOk)
    return std::string("expected a ") + (rule.kind == 'F' ? "floating-point" : rule.kind == 'I' ? "integer" : "bool") +
           " tensor, found " + shapeString(t);
  int rank = int(t.shape.size());
  if ((rule.rank >= 0 && rank != rule.rank) || (rule.rank == -2 && rank < 1) || (rule.rank == -3 && rank < 2))
    return "expected rank " + (rule.rank >= 0 ? std::to_string(rule.rank) : rule.rank == -2 ? ">= 1" : ">= 2") +
           ", found " + shapeString(t);
  return "";
}

} // namespace

std::string validateSpec(const ArtifactSpec &spec) {
  const int32_t numTensors = int32_t(spec.tensors.size());
  auto inRange = [&](int32_t t) { return t >= 0 && t < numTensors; };
  std::vector<int> definedBy(size_t(numTensors), 0); // 0 undefined, 1 input, 2 weight, 3 kernel
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    const TensorSpec &t = spec.tensors[i];
    if (uint8_t(t.dtype) > uint8_t(DType::Bool)) return "tensor '" + t.name + "' has an unknown dtype";
    for (const Dim &d : t.shape)
      if (!d.isStatic() && d.value != -1) return "tensor '" + t.name + "' has a negative dimension";
  }
  for (int32_t in : spec.inputs) {
    if (!inRange(in)) return "graph input index " + std::to_string(in) + " is out of range (" + std::to_string(numTensors) + " tensors)";
    if (definedBy[size_t(in)]) return "tensor '" + spec.tensors[size_t(in)].name + "' is listed twice as a graph input";
    definedBy[size_t(in)] = 1;
  }
  for (size_t w = 0; w < spec.weights.size(); ++w) {
    const WeightSpec &weight = spec.weights[w];
    if (!inRange(weight.tensor)) return "weight " + std::to_string(w) + " names tensor index " + std::to_string(weight.tensor) + ", out of range";
    const TensorSpec &t = spec.tensors[size_t(weight.tensor)];
    if (definedBy[size_t(weight.tensor)]) return "tensor '" + t.name + "' has a weight but is also a graph input or another weight";
    definedBy[size_t(weight.tensor)] = 2;
    unsigned __int128 bytes = dtypeSize(t.dtype);
    for (const Dim &d : t.shape) {
      if (!d.isStatic()) return "weight tensor '" + t.name + "' has a dynamic dimension";
      bytes *= uint64_t(d.value);
      if (bytes > (unsigned __int128)(1) << 62) return "weight tensor '" + t.name + "' is impossibly large";
    }
    if (uint64_t(bytes) != weight.bytes)
      return "weight tensor '" + t.name + "' " + shapeString(t) + " needs " + std::to_string(uint64_t(bytes)) +
             " bytes, found " + std::to_string(weight.bytes);
    if (weight.bytes && !weight.data) return "weight tensor '" + t.name + "' has no data";
  }
  const auto &rules = opRules();
  for (size_t k = 0; k < spec.kernels.size(); ++k) {
    const KernelSpec &kernel = spec.kernels[k];
    std::string where = "kernel " + std::to_string(k) + " (" + kernel.op + ", node '" + kernel.source + "')";
    const bool dense = kernel.weightFormat.empty() || kernel.weightFormat == "f32";
    auto rule = rules.find(dense ? kernel.op : kernel.op + ":" + kernel.weightFormat);
    if (rule == rules.end())
      return where + ": unknown op '" + kernel.op + "'" + (dense ? "" : " with weight format '" + kernel.weightFormat + "'");
    const OpRule &r = rule->second;
    size_t maxIn = r.variadic ? size_t(1) << 20 : r.inputs.size();
    size_t minIn = 0;
    for (size_t i = 0; i < r.inputs.size(); ++i) if (!r.inputs[i].optional) minIn = i + 1;
    if (kernel.inputs.size() < minIn || kernel.inputs.size() > maxIn)
      return where + ": expected " + std::to_string(minIn) + (maxIn == minIn ? "" : "+") + " operands, found " + std::to_string(kernel.inputs.size());
    for (size_t i = 0; i < kernel.inputs.size(); ++i) {
      const Operand &rule = r.inputs[std::min(i, r.inputs.size() - 1)];
      int32_t t = kernel.inputs[i];
      if (t == -1) {
        if (!rule.optional) return where + ": operand " + std::to_string(i) + " is required but absent";
        continue;
      }
      if (!inRange(t)) return where + ": operand " + std::to_string(i) + " names tensor index " + std::to_string(t) + ", out of range";
      if (!definedBy[size_t(t)]) return where + ": operand " + std::to_string(i) + " ('" + spec.tensors[size_t(t)].name + "') is used before it is defined";
      if (std::string e = checkOperand(rule, spec.tensors[size_t(t)]); !e.empty())
        return where + ": operand " + std::to_string(i) + " ('" + spec.tensors[size_t(t)].name + "'): " + e;
    }
    if (int(kernel.outputs.size()) < r.minOutputs || int(kernel.outputs.size()) > r.maxOutputs)
      return where + ": wrong number of results (" + std::to_string(kernel.outputs.size()) + ")";
    for (int32_t t : kernel.outputs) {
      if (!inRange(t)) return where + ": result names tensor index " + std::to_string(t) + ", out of range";
      if (definedBy[size_t(t)]) return where + ": result '" + spec.tensors[size_t(t)].name + "' is defined twice";
      definedBy[size_t(t)] = 3;
      const TensorSpec &out = spec.tensors[size_t(t)];
      if (std::string e = checkOperand({r.outKind, -1, false}, out); !e.empty()) return where + ": result '" + out.name + "': " + e;
    }
    // Op-specific consistency of static dims.
    auto dimOf = [&](int32_t t, int d) -> int64_t {
      const auto &s = spec.tensors[size_t(t)].shape;
      int rank = int(s.size());
      if (d < 0) d += rank;
      return d >= 0 && d < rank ? s[size_t(d)].value : -1;
    };
    if (kernel.op == "linear" && dense) {
      int64_t in = dimOf(kernel.inputs[0], -1), w = dimOf(kernel.inputs[1], 1);
      if (in >= 0 && w >= 0 && in != w)
        return where + ": input has " + std::to_string(in) + " features but the weight expects " + std::to_string(w);
      if (kernel.inputs.size() > 2 && kernel.inputs[2] >= 0) {
        int64_t b = dimOf(kernel.inputs[2], 0), o = dimOf(kernel.inputs[1], 0);
        if (b >= 0 && o >= 0 && b != o) return where + ": bias has " + std::to_string(b) + " entries, weight has " + std::to_string(o) + " outputs";
      }
    }
    if (kernel.op == "attention" && dimOf(kernel.inputs[0], 3) >= 0 && dimOf(kernel.inputs[1], 3) >= 0 &&
        dimOf(kernel.inputs[0], 3) != dimOf(kernel.inputs[1], 3))
      return where + ": query and key head dims differ";
  }
  for (int32_t out : spec.outputs) {
    if (!inRange(out)) return "graph output index " + std::to_string(out) + " is out of range";
    if (!definedBy[size_t(out)]) return "graph output '" + spec.tensors[size_t(out)].name + "' is never computed";
  }
  return "";
}

namespace {

uint64_t getU64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; --i) v = (v << 8) | p[i]; return v; }
uint32_t getU32(const uint8_t *p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
uint16_t getU16(const uint8_t *p) { return uint16_t(p[0] | p[1] << 8); }
std::string str(const flatbuffers::String *s) { return s ? s->str() : std::string(); }

std::string decode(const fb::Artifact &a, const uint8_t *weights, uint64_t weightsSize, LoadedArtifact &out) {
  ArtifactSpec &spec = out.spec;
  spec.compilerVersion = str(a.compiler_version());
  spec.sourceModel = str(a.source_model());
  spec.pipeline = str(a.pipeline());
  if (a.target()) {
    spec.isa = str(a.target()->isa());
    if (a.target()->cuda_archs()) spec.cudaArchs.assign(a.target()->cuda_archs()->begin(), a.target()->cuda_archs()->end());
  }
  if (a.tensors())
    for (const fb::Tensor *t : *a.tensors()) {
      if (!t) return "a tensor entry is missing";
      TensorSpec ts;
      ts.name = str(t->name());
      if (uint8_t(t->dtype()) > uint8_t(DType::Bool)) return "tensor '" + ts.name + "' has an unknown dtype " + std::to_string(int(t->dtype()));
      ts.dtype = DType(t->dtype());
      if (t->shape())
        for (const fb::Dim *d : *t->shape()) {
          if (!d) return "tensor '" + ts.name + "' has a missing dimension";
          Dim dim;
          dim.value = d->value() < 0 ? -1 : d->value();
          dim.symbol = str(d->symbol());
          ts.shape.push_back(dim);
        }
      spec.tensors.push_back(std::move(ts));
    }
  if (a.inputs()) spec.inputs.assign(a.inputs()->begin(), a.inputs()->end());
  if (a.outputs()) spec.outputs.assign(a.outputs()->begin(), a.outputs()->end());
  if (a.kernels())
    for (const fb::Kernel *k : *a.kernels()) {
      if (!k) return "a kernel entry is missing";
      KernelSpec ks;
      ks.op = str(k->op());
      ks.source = str(k->source());
      ks.weightFormat = str(k->weight_format());
      if (k->inputs()) ks.inputs.assign(k->inputs()->begin(), k->inputs()->end());
      if (k->outputs()) ks.outputs.assign(k->outputs()->begin(), k->outputs()->end());
      if (k->attrs())
        for (const fb::Attr *attr : *k->attrs()) {
          if (!attr) return "kernel '" + ks.source + "' has a missing attribute";
          std::string name = str(attr->name());
          switch (attr->kind()) {
          case fb::AttrKind::Int: ks.attrs[name] = int64_t(attr->int_value()); break;
          case fb::AttrKind::Float: ks.attrs[name] = attr->float_value(); break;
          case fb::AttrKind::String: ks.attrs[name] = str(attr->string_value()); break;
          case fb::AttrKind::Ints:
            ks.attrs[name] = attr->ints_value() ? std::vector<int64_t>(attr->ints_value()->begin(), attr->ints_value()->end())
                                                : std::vector<int64_t>{};
            break;
          default: return "kernel '" + ks.source + "' attribute '" + name + "' has an unknown kind";
          }
        }
      spec.kernels.push_back(std::move(ks));
    }
  out.weightOfTensor.assign(spec.tensors.size(), -1);
  if (a.weights())
    for (const fb::Weight *w : *a.weights()) {
      if (!w) return "a weight entry is missing";
      int32_t t = w->tensor();
      if (t < 0 || size_t(t) >= spec.tensors.size()) return "weight names tensor index " + std::to_string(t) + ", out of range";
      const TensorSpec &ts = spec.tensors[size_t(t)];
      if (w->offset() % kBlobAlignment) return "weight of '" + ts.name + "' is not 64-byte aligned";
      if (w->offset() > weightsSize || w->size() > weightsSize - w->offset())
        return "weight of '" + ts.name + "' (offset " + std::to_string(w->offset()) + ", " + std::to_string(w->size()) +
               " bytes) lies outside the weights region (" + std::to_string(weightsSize) + " bytes)";
      if (uint8_t(w->dtype()) != uint8_t(ts.dtype)) return "weight of '" + ts.name + "' has a dtype different from its tensor";
      size_t rank = w->shape() ? w->shape()->size() : 0;
      if (rank != ts.shape.size()) return "weight of '" + ts.name + "' has a rank different from its tensor";
      for (size_t d = 0; d < rank; ++d)
        if (w->shape()->Get(flatbuffers::uoffset_t(d)) != ts.shape[d].value)
          return "weight of '" + ts.name + "' has a shape different from its tensor";
      if (out.weightOfTensor[size_t(t)] >= 0) return "tensor '" + ts.name + "' has two weights";
      out.weightOfTensor[size_t(t)] = int32_t(spec.weights.size());
      spec.weights.push_back({t, weights + w->offset(), w->size()});
    }
  if (a.manifest())
    for (const fb::Layer *l : *a.manifest()) {
      if (!l) return "a manifest entry is missing";
      spec.manifest.push_back({str(l->source()), str(l->op()), str(l->weight_format()), l->weight_bytes()});
    }
  if (a.tokenizer()) {
    Vocabulary vocabulary;
    if (std::string err = decodeVocabulary(a.tokenizer()->data(), a.tokenizer()->size(), vocabulary); !err.empty())
      return "embedded tokenizer: " + err;
    spec.vocabulary = std::move(vocabulary);
  }
  return validateSpec(spec);
}

} // namespace

std::string readArtifact(const std::string &path, LoadedArtifact &out) {
  out = LoadedArtifact{};
  auto fail = [&](const std::string &msg) { return "artifact '" + path + "': " + msg; };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail("not a regular file");
  }
  uint64_t size = uint64_t(st.st_size);
  if (size < kPreambleSize) {
    ::close(fd);
    return fail("file is " + std::to_string(size) + " bytes, too short for a Lathe artifact (truncated?)");
  }
  void *map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return fail(std::string("cannot map: ") + std::strerror(errno));
  std::shared_ptr<const void> mapping(map, [size](const void *p) { ::munmap(const_cast<void *>(p), size); });
  const uint8_t *bytes = static_cast<const uint8_t *>(map);
  if (std::memcmp(bytes, kMagic, 8) != 0) return fail("not a Lathe artifact (bad magic)");
  uint16_t major = getU16(bytes + 8), minor = getU16(bytes + 10);
  if (major != kFormatMajor || minor > kFormatMinor)
    return fail("format version " + std::to_string(major) + "." + std::to_string(minor) + " is not supported. " +
                supportedVersionsSentence());
  if (getU32(bytes + 12) != kPreambleSize) return fail("bad preamble size");
  uint64_t fbOffset = getU64(bytes + 16), fbSize = getU64(bytes + 24), wOffset = getU64(bytes + 32),
           wSize = getU64(bytes + 40), fileSize = getU64(bytes + 48);
  if (fileSize != size)
    return fail("file is " + std::to_string(size) + " bytes but its header says " + std::to_string(fileSize) + " (truncated or extended)");
  if (fbOffset != kPreambleSize || fbSize > size || fbOffset + fbSize > size || wOffset % kBlobAlignment || wOffset < fbOffset + fbSize ||
      wOffset > size || wSize != size - wOffset)
    return fail("header offsets/sizes are out of bounds");
  // Checksum with its own field zeroed: hash the pieces around it.
  std::vector<uint8_t> head(bytes, bytes + kPreambleSize);
  std::memset(head.data() + kChecksumOffset, 0, 8);
  uint64_t stored = getU64(bytes + kChecksumOffset);
  // Two-part computation identical to checksum64 over the contiguous file.
  {
    constexpr uint64_t basis = 0xcbf29ce484222325ull, prime = 0x100000001b3ull;
    uint64_t lane[4] = {basis, basis ^ 1, basis ^ 2, basis ^ 3};
    auto block = [&](const uint8_t *p) {
      for (int l = 0; l < 4; ++l) {
        uint64_t word;
        std::memcpy(&word, p + 8 * l, 8);
        lane[l] = (lane[l] ^ word) * prime;
      }
    };
    for (size_t i = 0; i < kPreambleSize; i += 32) block(head.data() + i);
    size_t i = kPreambleSize;
    for (; i + 32 <= size; i += 32) block(bytes + i);
    uint64_t hash = basis;
    for (int l = 0; l < 4; ++l) hash = (hash ^ lane[l]) * prime;
    for (; i < size; ++i) hash = (hash ^ bytes[i]) * prime;
    hash ^= uint64_t(size);
    if (hash != stored) return fail("checksum mismatch: the file is corrupt");
  }
  flatbuffers::Verifier verifier(bytes + fbOffset, fbSize, 64, 10'000'000);
  if (!fb::ArtifactBufferHasIdentifier(bytes + fbOffset)) return fail("wrong file identifier (expected 'LATH')");
  if (!fb::VerifyArtifactBuffer(verifier)) return fail("the header does not verify (corrupt flatbuffer)");
  const fb::Artifact *root = fb::GetArtifact(bytes + fbOffset);
  if (root->format_major() != major || root->format_minor() != minor) return fail("preamble and header disagree on the format version");
  out.formatMajor = major;
  out.formatMinor = minor;
  out.fileBytes = size;
  out.mapping = mapping;
  if (std::string err = decode(*root, bytes + wOffset, wSize, out); !err.empty()) {
    out = LoadedArtifact{};
    return fail(err);
  }
  return "";
}

} // namespace lathe::artifact
