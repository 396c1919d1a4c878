// Generic CPU kernels (baseline ISA; the hot fp32 paths call the per-ISA table).
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/OneDnn.h"
#include "runtime/artifact/Attributes.h"
#include "runtime/core/HalfFloat.h"
#include "runtime/artifact/ArtifactReader.h"
#include "runtime/cpu/SparseNm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

namespace lathe::cpu {

using artifact::AttrValue;
using artifact::dtypeName;
using artifact::dtypeSize;

int64_t View::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// ------------------------------------------------------------------ helpers
std::string where(KernelContext &c) { return "node '" + c.spec->source + "' (" + c.spec->op + ")"; }
std::string fail(KernelContext &c, const std::string &msg) { return where(c) + ": " + msg; }
std::string shapeStr(const std::vector<int64_t> &s) { return shapeString(s); }
std::string desc(const View &v) { return std::string(dtypeName(v.dtype)) + shapeStr(v.shape); }

const AttrValue *attr(KernelContext &c, const char *name) { return artifact::findAttr(*c.spec, name); }
int64_t intAttr(KernelContext &c, const char *name, int64_t def) { return artifact::intAttr(*c.spec, name, def); }
double floatAttr(KernelContext &c, const char *name, double def) { return artifact::floatAttr(*c.spec, name, def); }
std::string stringAttr(KernelContext &c, const char *name, const std::string &def) { return artifact::stringAttr(*c.spec, name, def); }
bool intsAttr(KernelContext &c, const char *name, std::vector<int64_t> &out) { return artifact::intsAttr(*c.spec, name, out); }

bool normAxis(int64_t &axis, int64_t rank) {
  if (axis < 0) axis += rank;
  return axis >= 0 && axis < rank;
}

std::vector<int64_t> stridesOf(const std::vector<int64_t> &shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int64_t i = int64_t(shape.size()) - 2; i >= 0; --i) s[size_t(i)] = s[size_t(i) + 1] * shape[size_t(i) + 1];
  return s;
}

// Reads an integer tensor (any int dtype) as int64 values.
bool readInts(const View *v, std::vector<int64_t> &out) {
  if (!v || !v->data) return false;
  int64_t n = v->numel();
  out.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (v->dtype) {
    case DType::I64: out[size_t(i)] = static_cast<const int64_t *>(v->data)[i]; break;
    case DType::I32: out[size_t(i)] = static_cast<const int32_t *>(v->data)[i]; break;
    case DType::I16: out[size_t(i)] = static_cast<const int16_t *>(v->data)[i]; break;
    case DType::I8: out[size_t(i)] = static_cast<const int8_t *>(v->data)[i]; break;
    case DType::U8: out[size_t(i)] = static_cast<const uint8_t *>(v->data)[i]; break;
    case DType::Bool: out[size_t(i)] = static_cast<const uint8_t *>(v->data)[i]; break;
    default: return false;
    }
  }
  return true;
}
int64_t readIndex(const void *data, DType dtype, int64_t i) {
  switch (dtype) {
  case DType::I64: return static_cast<const int64_t *>(data)[i];
  case DType::I32: return static_cast<const int32_t *>(data)[i];
  case DType::I16: return static_cast<const int16_t *>(data)[i];
  case DType::I8: return static_cast<const int8_t *>(data)[i];
  case DType::U8: return static_cast<const uint8_t *>(data)[i];
  default: return 0;
  }
}

using numeric::bf16ToFloat;
using numeric::floatToBf16;
using numeric::floatToHalf;
using numeric::halfToFloat;

// Calls f(T{}) with the C++ type of a dtype; f16/bf16 are not arithmetic here.
template <class F> bool visitType(DType t, F &&f) {
  switch (t) {
  case DType::F32: f(float{}); return true;
  case DType::F64: f(double{}); return true;
  case DType::I64: f(int64_t{}); return true;
  case DType::I32: f(int32_t{}); return true;
  case DType::I16: f(int16_t{}); return true;
  case DType::I8: f(int8_t{}); return true;
  case DType::U8: f(uint8_t{}); return true;
  case DType::Bool: f(bool{}); return true;
  default: return false;
  }
}

bool isFloatType(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::F16 || t == DType::BF16; }

bool broadcastShapes(const std::vector<std::vector<int64_t>> &shapes, std::vector<int64_t> &out) {
  size_t rank = 0;
  for (auto &s : shapes) rank = std::max(rank, s.size());
  out.assign(rank, 1);
  for (auto &s : shapes)
    for (size_t i = 0; i < s.size(); ++i) {
      int64_t &o = out[rank - s.size() + i];
      int64_t d = s[i];
      if (d == o || d == 1) continue;
      if (o == 1) o = d;
      else return false;
    }
  // A zero-size dim broadcast against 1 stays 0 (handled above: o==1 -> d).
  return true;
}

// Element strides of `shape` broadcast to `out` (0 on broadcast dims).
std::vector<int64_t> broadcastStrides(const std::vector<int64_t> &shape, const std::vector<int64_t> &out) {
  std::vector<int64_t> s(out.size(), 0), own = stridesOf(shape);
  size_t off = out.size() - shape.size();
  for (size_t i = 0; i < shape.size(); ++i) s[off + i] = shape[i] == 1 && out[off + i] != 1 ? 0 : own[i];
  return s;
}

// Iterates all output elements, calling inner(outOffset, inOffsets, count, innerStrides)
// for runs along the last dimension.
template <size_t N, class Inner>
void forEachRun(const std::vector<int64_t> &out, const std::vector<int64_t> (&strides)[N], Inner &&inner) {
  int64_t total = 1;
  for (int64_t d : out) total *= d;
  if (total == 0) return;
  size_t rank = out.size();
  if (rank == 0) {
    int64_t off[N] = {};
    int64_t st[N] = {};
    inner(0, off, 1, st);
    return;
  }
  int64_t last = out[rank - 1];
  int64_t innerStride[N];
  for (size_t k = 0; k < N; ++k) innerStride[k] = strides[k][rank - 1];
  std::vector<int64_t> idx(rank, 0);
  int64_t off[N] = {};
  for (int64_t o = 0; o < total; o += last) {
    inner(o, off, last, innerStride);
    for (int64_t d = int64_t(rank) - 2; d >= 0; --d) {
      ++idx[size_t(d)];
      for (size_t k = 0; k < N; ++k) off[k] += strides[k][size_t(d)];
      if (idx[size_t(d)] < out[size_t(d)]) break;
      for (size_t k = 0; k < N; ++k) off[k] -= strides[k][size_t(d)] * out[size_t(d)];
      idx[size_t(d)] = 0;
    }
  }
}

// ------------------------------------------------------------------ shape fns
std::string sameShape(KernelContext &c) {
  c.outputs[0]->shape = c.inputs[0]->shape;
  return "";
}

std::string needFloat32(KernelContext &c, size_t operand) {
  if (c.inputs[operand] && c.inputs[operand]->dtype != DType::F32)
    return fail(c, "operand " + std::to_string(operand) + " is " + desc(*c.inputs[operand]) +
                       "; this kernel computes in f32 only (insert a cast)");
  return "";
}

// ------------------------------------------------------------------ elementwise
enum class UnaryOp { Identity, Sqrt, Erf, Tanh, Exp, Log, Cos, Sin, Relu, Sigmoid, Silu, Neg, Abs, Reciprocal, Not };
const std::map<std::string, UnaryOp> &unaryOps() {
  static const std::map<std::string, UnaryOp> m = {
      {"identity", UnaryOp::Identity}, {"sqrt", UnaryOp::Sqrt}, {"erf", UnaryOp::Erf}, {"tanh", UnaryOp::Tanh},
      {"exp", UnaryOp::Exp}, {"log", UnaryOp::Log}, {"cos", UnaryOp::Cos}, {"sin", UnaryOp::Sin},
      {"relu", UnaryOp::Relu}, {"sigmoid", UnaryOp::Sigmoid}, {"silu", UnaryOp::Silu}, {"neg", UnaryOp::Neg},
      {"abs", UnaryOp::Abs}, {"reciprocal", UnaryOp::Reciprocal}, {"not", UnaryOp::Not}};
  return m;
}

template <class T> T applyUnary(UnaryOp op, T x) {
  using F = std::conditional_t<std::is_floating_point_v<T>, T, double>;
  switch (op) {
  case UnaryOp::Identity: return x;
  case UnaryOp::Sqrt: return T(std::sqrt(F(x)));
  case UnaryOp::Erf: return T(std::erf(F(x)));
  case UnaryOp::Tanh: return T(std::tanh(F(x)));
  case UnaryOp::Exp: return T(std::exp(F(x)));
  case UnaryOp::Log: return T(std::log(F(x)));
  case UnaryOp::Cos: return T(std::cos(F(x)));
  case UnaryOp::Sin: return T(std::sin(F(x)));
  case UnaryOp::Relu: return x > T(0) ? x : T(0);
  case UnaryOp::Sigmoid: return T(F(1) / (F(1) + std::exp(-F(x))));
  case UnaryOp::Silu: return T(F(x) / (F(1) + std::exp(-F(x))));
  case UnaryOp::Neg: if constexpr (std::is_same_v<T, bool>) return x; else return T(-x);
  case UnaryOp::Abs: if constexpr (std::is_signed_v<T> || std::is_floating_point_v<T>) return x < T(0) ? T(-x) : x; else return x;
  case UnaryOp::Reciprocal: return T(F(1) / F(x));
  case UnaryOp::Not: return T(!x);
  }
  return x;
}

std::string runUnary(KernelContext &c) {
  UnaryOp op = unaryOps().at(c.spec->op);
  const View &x = *c.inputs[0];
  View &y = *c.outputs[0];
  if (x.dtype != y.dtype) return fail(c, "result dtype " + std::string(dtypeName(y.dtype)) + " differs from operand " + desc(x));
  int64_t n = x.numel();
  if (op == UnaryOp::Identity || (x.dtype == DType::Bool && op == UnaryOp::Neg)) {
    if (y.data != x.data) std::memcpy(y.data, x.data, x.bytes());
    return "";
  }
  if (op == UnaryOp::Not && x.dtype != DType::Bool) return fail(c, "'not' needs a bool operand, found " + desc(x));
  if (op == UnaryOp::Exp && x.dtype == DType::F32) {
    c.pool->parallelFor(n, [&](int64_t b, int64_t e) {
      c.isa->expf(static_cast<const float *>(x.data) + b, static_cast<float *>(y.data) + b, e - b);
    }, 4096);
    return "";
  }
  bool ok = visitType(x.dtype, [&](auto t) {
    using T = decltype(t);
    const T *in = static_cast<const T *>(x.data);
    T *out = static_cast<T *>(y.data);
    for (int64_t i = 0; i < n; ++i) out[i] = applyUnary<T>(op, in[i]);
  });
  if (!ok) return fail(c, "unsupported dtype " + desc(x) + " (cast it to f32 first)");
  return "";
}

enum class BinaryOp { Add, Sub, Mul, Div, Pow, Max, Min, And, Or, Equal, Less, LessEqual, Greater, GreaterEqual };
const std::map<std::string, BinaryOp> &binaryOps() {
  static const std::map<std::string, BinaryOp> m = {
      {"add", BinaryOp::Add}, {"sub", BinaryOp::Sub}, {"mul", BinaryOp::Mul}, {"div", BinaryOp::Div},
      {"pow", BinaryOp::Pow}, {"max", BinaryOp::Max}, {"min", BinaryOp::Min}, {"and", BinaryOp::And},
      {"or", BinaryOp::Or}, {"equal", BinaryOp::Equal}, {"less", BinaryOp::Less},
      {"less_equal", BinaryOp::LessEqual}, {"greater", BinaryOp::Greater}, {"greater_equal", BinaryOp::GreaterEqual}};
  return m;
}
bool isCompare(BinaryOp op) { return op >= BinaryOp::Equal; }

std::string shapeBroadcast(KernelContext &c) {
  std::vector<std::vector<int64_t>> shapes;
  for (const View *v : c.inputs) if (v) shapes.push_back(v->shape);
  if (!broadcastShapes(shapes, c.outputs[0]->shape)) {
    std::string s;
    for (auto &sh : shapes) s += (s.empty() ? "" : " and ") + shapeStr(sh);
    return fail(c, "shapes " + s + " do not broadcast");
  }
  return "";
}

template <class T, class R, class Op>
void binaryLoop(const View &a, const View &b, View &y, Op op) {
  std::vector<int64_t> strides[3] = {stridesOf(y.shape), broadcastStrides(a.shape, y.shape), broadcastStrides(b.shape, y.shape)};
  const T *pa = static_cast<const T *>(a.data);
  const T *pb = static_cast<const T *>(b.data);
  R *py = static_cast<R *>(y.data);
  forEachRun<3>(y.shape, strides, [&](int64_t, const int64_t *off, int64_t n, const int64_t *st) {
    R *o = py + off[0];
    const T *x = pa + off[1], *z = pb + off[2];
    if (st[1] == 1 && st[2] == 1) for (int64_t j = 0; j < n; ++j) o[j] = op(x[j], z[j]);
    else if (st[1] == 1 && st[2] == 0) { T v = z[0]; for (int64_t j = 0; j < n; ++j) o[j] = op(x[j], v); }
    else if (st[1] == 0 && st[2] == 1) { T v = x[0]; for (int64_t j = 0; j < n; ++j) o[j] = op(v, z[j]); }
    else for (int64_t j = 0; j < n; ++j) o[j] = op(x[j * st[1]], z[j * st[2]]);
  });
}

std::string runBinary(KernelContext &c) {
  BinaryOp op = binaryOps().at(c.spec->op);
  const View &a = *c.inputs[0], &b = *c.inputs[1];
  View &y = *c.outputs[0];
  if (a.dtype != b.dtype) return fail(c, "operands have different dtypes: " + desc(a) + " and " + desc(b));
  if (isCompare(op) ? y.dtype != DType::Bool : y.dtype != a.dtype)
    return fail(c, "result dtype " + std::string(dtypeName(y.dtype)) + " does not fit operands " + desc(a));
  // Same-shape f32 arithmetic (residual adds): split across the pool.
  if (a.dtype == DType::F32 && a.shape == y.shape && b.shape == y.shape && c.pool && y.numel() >= (1 << 15) &&
      (op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul || op == BinaryOp::Div)) {
    const float *pa = static_cast<const float *>(a.data), *pb = static_cast<const float *>(b.data);
    float *py = static_cast<float *>(y.data);
    c.pool->parallelFor(y.numel(), [&](int64_t lo, int64_t hi) {
      switch (op) {
      case BinaryOp::Add: for (int64_t i = lo; i < hi; ++i) py[i] = pa[i] + pb[i]; break;
      case BinaryOp::Sub: for (int64_t i = lo; i < hi; ++i) py[i] = pa[i] - pb[i]; break;
      case BinaryOp::Mul: for (int64_t i = lo; i < hi; ++i) py[i] = pa[i] * pb[i]; break;
      default: for (int64_t i = lo; i < hi; ++i) py[i] = pa[i] / pb[i]; break;
      }
    }, 4096);
    return "";
  }
  std::string err;
  bool ok = visitType(a.dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (std::is_same_v<T, bool>) {
      switch (op) {
      case BinaryOp::And: binaryLoop<bool, bool>(a, b, y, [](bool x, bool z) { return x && z; }); return;
      case BinaryOp::Or: binaryLoop<bool, bool>(a, b, y, [](bool x, bool z) { return x || z; }); return;
      case BinaryOp::Equal: binaryLoop<bool, bool>(a, b, y, [](bool x, bool z) { return x == z; }); return;
      default: err = fail(c, "not defined on bool operands"); return;
      }
    } else {
      switch (op) {
      case BinaryOp::Add: binaryLoop<T, T>(a, b, y, [](T x, T z) { return T(x + z); }); return;
      case BinaryOp::Sub: binaryLoop<T, T>(a, b, y, [](T x, T z) { return T(x - z); }); return;
      case BinaryOp::Mul: binaryLoop<T, T>(a, b, y, [](T x, T z) { return T(x * z); }); return;
      case BinaryOp::Div:
        if constexpr (std::is_integral_v<T>) {
          int64_t n = b.numel();
          for (int64_t i = 0; i < n; ++i)
            if (static_cast<const T *>(b.data)[i] == 0) { err = fail(c, "integer division by zero"); return; }
        }
        binaryLoop<T, T>(a, b, y, [](T x, T z) { return T(x / z); });
        return;
      case BinaryOp::Pow: binaryLoop<T, T>(a, b, y, [](T x, T z) { return T(std::pow(double(x), double(z))); }); return;
      case BinaryOp::Max: binaryLoop<T, T>(a, b, y, [](T x, T z) { return x > z || x != x ? x : z; }); return;
      case BinaryOp::Min: binaryLoop<T, T>(a, b, y, [](T x, T z) { return x < z || x != x ? x : z; }); return;
      case BinaryOp::Equal: binaryLoop<T, bool>(a, b, y, [](T x, T z) { return x == z; }); return;
      case BinaryOp::Less: binaryLoop<T, bool>(a, b, y, [](T x, T z) { return x < z; }); return;
      case BinaryOp::LessEqual: binaryLoop<T, bool>(a, b, y, [](T x, T z) { return x <= z; }); return;
      case BinaryOp::Greater: binaryLoop<T, bool>(a, b, y, [](T x, T z) { return x > z; }); return;
      case BinaryOp::GreaterEqual: binaryLoop<T, bool>(a, b, y, [](T x, T z) { return x >= z; }); return;
      default: err = fail(c, "logical op needs bool operands, found " + desc(a)); return;
      }
    }
  });
  if (!ok) return fail(c, "unsupported dtype " + desc(a) + " (cast it to f32 first)");
  return err;
}

std::string runWhere(KernelContext &c) {
  const View &cond = *c.inputs[0], &a = *c.inputs[1], &b = *c.inputs[2];
  View &y = *c.outputs[0];
  if (a.dtype != b.dtype || y.dtype != a.dtype) return fail(c, "branches have different dtypes: " + desc(a) + " and " + desc(b));
  size_t es = dtypeSize(a.dtype);
  std::vector<int64_t> strides[4] = {stridesOf(y.shape), broadcastStrides(cond.shape, y.shape),
                                     broadcastStrides(a.shape, y.shape), broadcastStrides(b.shape, y.shape)};
  const uint8_t *pc = static_cast<const uint8_t *>(cond.data);
  const uint8_t *pa = static_cast<const uint8_t *>(a.data), *pb = static_cast<const uint8_t *>(b.data);
  uint8_t *py = static_cast<uint8_t *>(y.data);
  forEachRun<4>(y.shape, strides, [&](int64_t, const int64_t *off, int64_t n, const int64_t *st) {
    for (int64_t j = 0; j < n; ++j) {
      const uint8_t *src = pc[off[1] + j * st[1]] ? pa + (off[2] + j * st[2]) * int64_t(es) : pb + (off[3] + j * st[3]) * int64_t(es);
      std::memcpy(py + (off[0] + j) * int64_t(es), src, es);
    }
  });
  return "";
}

// ------------------------------------------------------------------ cast
double loadAsDouble(const void *p, DType t, int64_t i) {
  switch (t) {
  case DType::F32: return static_cast<const float *>(p)[i];
  case DType::F64: return static_cast<const double *>(p)[i];
  case DType::F16: return halfToFloat(static_cast<const uint16_t *>(p)[i]);
  case DType::BF16: return bf16ToFloat(static_cast<const uint16_t *>(p)[i]);
  case DType::Bool: return static_cast<const uint8_t *>(p)[i] ? 1 : 0;
  default: return double(readIndex(p, t, i));
  }
}
void storeDouble(void *p, DType t, int64_t i, double v) {
  switch (t) {
  case DType::F32: static_cast<float *>(p)[i] = float(v); break;
  case DType::F64: static_cast<double *>(p)[i] = v; break;
  case DType::F16: static_cast<uint16_t *>(p)[i] = floatToHalf(float(v)); break;
  case DType::BF16: static_cast<uint16_t *>(p)[i] = floatToBf16(float(v)); break;
  case DType::Bool: static_cast<uint8_t *>(p)[i] = v != 0; break;
  case DType::I64: static_cast<int64_t *>(p)[i] = std::isfinite(v) ? int64_t(v) : 0; break;
  case DType::I32: static_cast<int32_t *>(p)[i] = std::isfinite(v) ? int32_t(int64_t(v)) : 0; break;
  case DType::I16: static_cast<int16_t *>(p)[i] = std::isfinite(v) ? int16_t(int64_t(v)) : 0; break;
  case DType::I8: static_cast<int8_t *>(p)[i] = std::isfinite(v) ? int8_t(int64_t(v)) : 0; break;
  case DType::U8: static_cast<uint8_t *>(p)[i] = std::isfinite(v) ? uint8_t(int64_t(v)) : 0; break;
  }
}
void storeInt(void *p, DType t, int64_t i, int64_t v) {
  switch (t) {
  case DType::I64: static_cast<int64_t *>(p)[i] = v; break;
  case DType::I32: static_cast<int32_t *>(p)[i] = int32_t(v); break;
  case DType::I16: static_cast<int16_t *>(p)[i] = int16_t(v); break;
  case DType::I8: static_cast<int8_t *>(p)[i] = int8_t(v); break;
  case DType::U8: static_cast<uint8_t *>(p)[i] = uint8_t(v); break;
  case DType::Bool: static_cast<uint8_t *>(p)[i] = v != 0; break;
  default: storeDouble(p, t, i, double(v));
  }
}

std::string shapeCast(KernelContext &c) {
  std::string to = stringAttr(c, "to", "");
  DType t;
  if (!to.empty()) {
    if (!artifact::parseDType(to, t)) return fail(c, "unknown target dtype '" + to + "'");
    if (t != c.outputs[0]->dtype) return fail(c, "attribute to=" + to + " disagrees with the result dtype " + dtypeName(c.outputs[0]->dtype));
  }
  return sameShape(c);
}
std::string runCast(KernelContext &c) {
  const View &x = *c.inputs[0];
  View &y = *c.outputs[0];
  int64_t n = x.numel();
  if (x.dtype == y.dtype) {
    if (x.data != y.data) std::memcpy(y.data, x.data, x.bytes());
  } else if (!isFloatType(x.dtype) && !isFloatType(y.dtype)) {
    for (int64_t i = 0; i < n; ++i) storeInt(y.data, y.dtype, i, x.dtype == DType::Bool ? static_cast<const uint8_t *>(x.data)[i] != 0 : readIndex(x.data, x.dtype, i));
  } else if (x.dtype == DType::F32 && y.dtype == DType::F16) {
    for (int64_t i = 0; i < n; ++i) static_cast<uint16_t *>(y.data)[i] = floatToHalf(static_cast<const float *>(x.data)[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) storeDouble(y.data, y.dtype, i, loadAsDouble(x.data, x.dtype, i));
  }
  return "";
}

// ------------------------------------------------------------------ linear algebra
/// Each pool thread runs oneDNN itself: its OpenMP must not start threads of its own.
void oneDnnOnThisThreadAlone(const Sgemm &s) {
  thread_local bool single = false;
  if (!single && s.setThreads) s.setThreads(1), single = true;
}

/// The fp32 GEMM through oneDNN: each thread a range of columns (multiples of
/// 16, never of rows: oneDNN sums a lone row in another order than a block of
/// rows, while column ranges give the same bits as one call, so the result does
/// not depend on the thread count), C preset to the bias and accumulated into.
void runSgemm(KernelContext &c, const GemmArgs &g) {
  const Sgemm &s = *c.sgemm;
  c.pool->parallelFor(g.n, [&](int64_t n0, int64_t n1) {
    oneDnnOnThisThreadAlone(s);
    float beta = 0.0f;
    if (g.bias) {
      for (int64_t i = 0; i < g.m; ++i) std::memcpy(g.c + i * g.ldc + n0, g.bias + n0, size_t(n1 - n0) * sizeof(float));
      beta = 1.0f;
    }
    const float *b = g.bTransposed ? g.b + n0 * g.ldb : g.b + n0;
    if (s.sgemm('N', g.bTransposed ? 'T' : 'N', g.m, n1 - n0, g.k, 1.0f, g.a, g.lda, b, g.ldb, beta, g.c + n0, g.ldc) != 0) {
      GemmArgs own = g; // oneDNN refused (it never has on our shapes): Lathe's kernel, unpacked
      own.packedB = nullptr;
      c.isa->gemm(&own, n0, n1);
    }
  }, 16);
}

void runGemm(KernelContext &c, GemmArgs g) {
  if (c.sgemm && g.k > 0 && g.m > 0 && !g.packedB) return runSgemm(c, g);
  int64_t panel = c.isa->gemmPanelWidth;
  int64_t panels = (g.n + panel - 1) / panel;
  int threads = c.pool->size();
  if (panels >= 2 * threads || g.m < 2 * 12 * threads) {
    c.pool->parallelFor(g.n, [&](int64_t b, int64_t e) { c.isa->gemm(&g, b, e); }, panel);
  } else {
    // Few columns, many rows: split rows on multiples of the micro-tile height
    // (12 covers the 6- and 12-row tiles; each element is summed in the same
    // order whichever tile computes it, so results match a single thread).
    c.pool->parallelFor(g.m, [&](int64_t b, int64_t e) {
      GemmArgs part = g;
      part.a = g.a + b * g.lda;
      part.c = g.c + b * g.ldc;
      part.m = e - b;
      c.isa->gemm(&part, 0, g.n);
    }, 12);
  }
}

std::string shapeLinear(KernelContext &c) {
  for (size_t i = 0; i < c.inputs.size(); ++i) if (auto e = needFloat32(c, i); !e.empty()) return e;
  const View &x = *c.inputs[0], &w = *c.inputs[1];
  if (w.shape.size() != 2) return fail(c, "weight must be 2-D [out, in], found " + desc(w));
  if (x.shape.empty() || x.shape.back() != w.shape[1])
    return fail(c, "input " + desc(x) + " has " + (x.shape.empty() ? std::string("no") : std::to_string(x.shape.back())) +
                       " features but the weight " + desc(w) + " expects " + std::to_string(w.shape[1]));
  if (c.inputs.size() > 2 && c.inputs[2] && c.inputs[2]->numel() != w.shape[0])
    return fail(c, "bias " + desc(*c.inputs[2]) + " does not match " + std::to_string(w.shape[0]) + " outputs");
  c.outputs[0]->shape = x.shape;
  c.outputs[0]->shape.back() = w.shape[0];
  return "";
}
std::string runLinear(KernelContext &c) {
  const View &x = *c.inputs[0], &w = *c.inputs[1];
  const View *bias = c.inputs.size() > 2 ? c.inputs[2] : nullptr;
  int64_t k = w.shape[1], n = w.shape[0];
  GemmArgs g{static_cast<const float *>(x.data), k, static_cast<const float *>(w.data), k, 1,
             static_cast<float *>(c.outputs[0]->data), n, bias ? static_cast<const float *>(bias->data) : nullptr,
             k ? x.numel() / k : 0, n, k, c.packedWeight};
  if (k == 0) g.m = c.outputs[0]->numel() / (n ? n : 1);
  if (PackedLinear *p = c.packedLinear; p && g.m > 0 && k > 0) {
    // oneDNN's matmul on the packed weight: many rows are split among the
    // threads (each streams the whole weight), few rows (decoding) by column
    // blocks. A fused GELU runs over each block of at most 128 rows right after
    // its product, while it is in cache (Lathe's kernel, the same bits as the
    // separate gelu; oneDNN's GELU post-op measured slower).
    const int parts = p->parts();
    const bool byRows = parts == 1 || g.m >= 32 * parts; // measured: rows win from 64 rows on at 2 threads
    const bool gelu = c.applyGelu;
    const int64_t block = gelu && g.m > 128 ? 128 : g.m; // rows per product
    auto rowBegin = [&](int64_t t) { return g.m * t / parts; };
    bool ready = true;
    if (byRows)
      for (int64_t t = 0; t < parts && ready; ++t) {
        const int64_t rows = rowBegin(t + 1) - rowBegin(t);
        if (rows == 0) continue;
        ready = p->prepare(rows < block ? rows : block, g.bias != nullptr, true) &&
                (rows <= block || rows % block == 0 || p->prepare(rows % block, g.bias != nullptr, true));
      }
    else
      ready = p->prepare(g.m, g.bias != nullptr, false);
    if (ready) {
      c.pool->parallelFor(parts, [&](int64_t t0, int64_t t1) {
        oneDnnOnThisThreadAlone(*c.sgemm);
        for (int64_t t = t0; t < t1; ++t) {
          if (byRows) {
            for (int64_t r0 = rowBegin(t), end = rowBegin(t + 1); r0 < end; r0 += block) {
              const int64_t r1 = end - r0 < block ? end : r0 + block;
              if (!p->runRows(int(t), g.a + r0 * g.lda, r1 - r0, g.bias, g.c + r0 * g.ldc)) {
                GemmArgs part = g; // oneDNN failed (it never has on our shapes): Lathe's kernel on the unpacked weight
                part.packedB = nullptr;
                part.a = g.a + r0 * g.lda;
                part.c = g.c + r0 * g.ldc;
                part.m = r1 - r0;
                c.isa->gemm(&part, 0, g.n);
              }
              if (gelu) c.isa->gelu(g.c + r0 * g.ldc, g.c + r0 * g.ldc, (r1 - r0) * g.n, 0);
            }
          } else {
            const int64_t n0 = p->columnBegin(int(t)), n1 = p->columnEnd(int(t));
            if (!p->runColumns(int(t), g.a, g.m, g.bias, g.c)) {
              GemmArgs part = g;
              part.packedB = nullptr;
              c.isa->gemm(&part, n0, n1);
            }
            if (gelu)
              for (int64_t i = 0; i < g.m; ++i) c.isa->gelu(g.c + i * g.ldc + n0, g.c + i * g.ldc + n0, n1 - n0, 0);
          }
        }
      });
      return "";
    }
  }
  runGemm(c, g);
  if (c.applyGelu) { // no fused form on this path: GELU over the result
    float *y = g.c;
    c.pool->parallelFor(g.m * g.n, [&](int64_t b, int64_t e) { c.isa->gelu(y + b, y + b, e - b, 0); }, 1024);
  }
  return "";
}

// Linear layers with compact weights (weight formats "int8", "int4", "int3", "bf16", "fp16"):
//   int3: (x, q u8 [n, k·3/8], scales, mins?, bias?), 12 bytes per 32 weights (IsaKernels.h)
//   int8: (x, q i8 [n, k], scales f16 [n, k/group], bias?)
//   int4: (x, q u8 [n, k/2], scales f16 [n, k/group], mins f16 [n, k/group]?, bias?)
//   bf16: (x, w bf16 [n, k], bias?)
//   fp16: (x, w f16 [n, k], bias?)
// attribute group_size (int8/int4). Dequantization is fused into the products.
struct QuantOperands {
  QuantFormat format;
  const View *q, *scales, *mins, *bias;
  int64_t n, k, group, actBlock;
};
/// An optional bias of a compact linear: f32 with one value per output.
std::string checkBias(KernelContext &c, const View *bias, int64_t n) {
  if (bias && (bias->dtype != DType::F32 || bias->numel() != n))
    return fail(c, "bias " + desc(*bias) + " does not match " + std::to_string(n) + " outputs");
  return "";
}
std::string quantOperands(KernelContext &c, QuantOperands &o) {
  const std::string &f = c.spec->weightFormat;
  o.format = f == "int8"   ? QuantFormat::Int8
             : f == "int4" ? QuantFormat::Int4
             : f == "int3" ? QuantFormat::Int3
             : f == "fp16" ? QuantFormat::F16
                           : QuantFormat::Bf16;
  const bool packed = o.format == QuantFormat::Int4 || o.format == QuantFormat::Int3; // codes below a byte, 32-weight blocks
  const bool storage = o.format == QuantFormat::Bf16 || o.format == QuantFormat::F16; // 16-bit floats, no scales
  auto at = [&](size_t i) { return i < c.inputs.size() ? c.inputs[i] : nullptr; };
  o.q = at(1);
  o.scales = storage ? nullptr : at(2);
  o.mins = packed ? at(3) : nullptr;
  o.bias = at(packed ? 4 : o.format == QuantFormat::Int8 ? 3 : 2);
  if (auto e = needFloat32(c, 0); !e.empty()) return e;
  if (!o.q || o.q->shape.size() != 2) return fail(c, "the " + f + " weight must be 2-D");
  DType want = o.format == QuantFormat::Int8 ? DType::I8
               : packed                      ? DType::U8
               : o.format == QuantFormat::F16 ? DType::F16
                                             : DType::BF16;
  if (o.q->dtype != want) return fail(c, "the " + f + " weight must be " + dtypeName(want) + ", found " + desc(*o.q));
  o.n = o.q->shape[0];
  if (o.format == QuantFormat::Int3 && o.q->shape[1] % 12)
    return fail(c, "an int3 weight has 12 bytes per 32 weights; " + desc(*o.q) + " is not a whole number of blocks");
  o.k = o.format == QuantFormat::Int4 ? 2 * o.q->shape[1] : o.format == QuantFormat::Int3 ? o.q->shape[1] / 12 * 32 : o.q->shape[1];
  o.group = storage ? o.k : intAttr(c, "group_size", o.k);
  if (o.group <= 0 || (packed && (o.group % 32 || o.k % 32)))
    return fail(c, "group size " + std::to_string(o.group) + " is invalid for " + std::to_string(o.k) + " input features" +
                       (packed ? " (" + f + " needs multiples of 32)" : ""));
  const int64_t groups = (o.k + o.group - 1) / o.group;
  for (const View *s : {o.scales, o.mins}) {
    if (!s) continue;
    if (s->dtype != DType::F16 || s->shape != std::vector<int64_t>{o.n, groups})
      return fail(c, "scales/mins must be f16 [" + std::to_string(o.n) + ", " + std::to_string(groups) + "], found " + desc(*s));
  }
  if (!storage && !o.scales) return fail(c, "the " + f + " weight has no scales");
  // act_block 32: int8 activations (QuantArgs::actBlock), for int8 weights whose
  // groups are whole blocks of 32 (or the whole row) and int4.
  o.actBlock = intAttr(c, "act_block", 0);
  if (o.actBlock != 0 && o.actBlock != 32) return fail(c, "act_block must be 0 (f32 input) or 32, found " + std::to_string(o.actBlock));
  if (o.actBlock && o.format != QuantFormat::Int8 && o.format != QuantFormat::Int4)
    return fail(c, "int8 activations (act_block) apply to int8 and int4 weights, not " + f);
  if (o.actBlock && o.format == QuantFormat::Int8 && o.group % 32 && o.group < o.k)
    return fail(c, "int8 activations need int8 groups that are multiples of 32 (or one per row), found group size " +
                       std::to_string(o.group));
  return checkBias(c, o.bias, o.n);
}
/// A compact linear's result: the input [..., k] becomes [..., n].
std::string compactLinearShape(KernelContext &c, int64_t k, int64_t n) {
  const View &x = *c.inputs[0];
  if (x.shape.empty() || x.shape.back() != k)
    return fail(c, "input " + desc(x) + " does not have the weight's " + std::to_string(k) + " input features");
  c.outputs[0]->shape = x.shape;
  c.outputs[0]->shape.back() = n;
  return "";
}
std::string shapeQuantLinear(KernelContext &c) {
  QuantOperands o;
  if (auto e = quantOperands(c, o); !e.empty()) return e;
  return compactLinearShape(c, o.k, o.n);
}
std::string runQuantLinear(KernelContext &c) {
  QuantOperands o;
  if (auto e = quantOperands(c, o); !e.empty()) return e;
  const View &x = *c.inputs[0];
  QuantArgs a{o.format, o.q->data, o.scales ? static_cast<const uint16_t *>(o.scales->data) : nullptr,
              o.mins ? static_cast<const uint16_t *>(o.mins->data) : nullptr, o.group, static_cast<const float *>(x.data), o.k,
              static_cast<float *>(c.outputs[0]->data), o.n, o.bias ? static_cast<const float *>(o.bias->data) : nullptr,
              o.k ? x.numel() / o.k : 0, o.n, o.k, o.actBlock};
  const int64_t panel = c.isa->gemmPanelWidth;
  if (a.actBlock && a.m > 4) {
    // Int8 activations over many rows: the rows quantized and widened back once,
    // split across the pool, into scratch kept per calling thread (every column
    // range reads all of them), then the float panels.
    thread_local std::vector<float> widened;
    widened.resize(size_t(a.m * a.k));
    float *rows = widened.data();
    c.pool->parallelFor(a.m, [&](int64_t b, int64_t e) { c.isa->widenActRows(a.a + b * a.lda, a.lda, e - b, a.k, rows + b * a.k); });
    a.a = rows, a.lda = a.k, a.actBlock = 0;
  }
  c.pool->parallelFor(o.n, [&](int64_t b, int64_t e) { c.isa->quantGemm(&a, b, e); }, a.m <= 4 ? 16 : panel);
  return "";
}

// W8A8 linear layers (weight format "w8a8", runtime/cpu/Int8Gemm.h):
//   (x f32, q i8 [n, k], scales f16 [n, 1], act_scales f32 [k]?, bias f32 [n]?),
//   attribute act_scale (absent: dynamic per-row activation scales).
// Session::open packs q for the level's int8 table (w8a8PackedBytes: the
// packed weight, then the n scales as f32), so each call quantizes x once,
// then multiplies in int32 with the dequantization fused in the epilogue.
struct W8a8Operands {
  const View *q, *scales, *actScales, *bias;
  int64_t n, k;
  float actScale; // 0: dynamic
};
std::string w8a8Operands(KernelContext &c, W8a8Operands &o) {
  auto at = [&](size_t i) { return i < c.inputs.size() ? c.inputs[i] : nullptr; };
  o.q = at(1), o.scales = at(2), o.actScales = at(3), o.bias = at(4);
  if (auto e = needFloat32(c, 0); !e.empty()) return e;
  if (!o.q || o.q->shape.size() != 2 || o.q->dtype != DType::I8) return fail(c, "the w8a8 weight must be i8 [out, in]");
  o.n = o.q->shape[0], o.k = o.q->shape[1];
  if (!o.scales || o.scales->dtype != DType::F16 || o.scales->shape != std::vector<int64_t>{o.n, 1})
    return fail(c, "the w8a8 scales must be f16 [" + std::to_string(o.n) + ", 1]" + (o.scales ? ", found " + desc(*o.scales) : std::string()));
  const double s = floatAttr(c, "act_scale", 0.0);
  if (!(s >= 0) || !std::isfinite(s)) return fail(c, "act_scale must be a positive number, found " + std::to_string(s));
  o.actScale = float(s);
  if (o.actScales && (o.actScales->dtype != DType::F32 || o.actScales->numel() != o.k || o.actScale == 0))
    return fail(c, "act_scales must be f32 [" + std::to_string(o.k) + "] with a positive act_scale, found " + desc(*o.actScales));
  return checkBias(c, o.bias, o.n);
}
std::string shapeW8a8Linear(KernelContext &c) {
  W8a8Operands o;
  if (auto e = w8a8Operands(c, o); !e.empty()) return e;
  return compactLinearShape(c, o.k, o.n);
}
std::string runW8a8Linear(KernelContext &c) {
  W8a8Operands o;
  if (auto e = w8a8Operands(c, o); !e.empty()) return e;
  const Int8Table *t = c.int8 ? c.int8 : int8TableFor(c.isa->name);
  if (!t) return fail(c, std::string("no int8 kernels for instruction set ") + c.isa->name);
  const View &x = *c.inputs[0];
  const int64_t n = o.n, k = o.k, m = k ? x.numel() / k : 0;
  // The packed weight from Session::open, or (a weight computed at run time) packed here.
  std::vector<float> local;
  const float *packed = c.packedWeight;
  if (!packed) {
    local.resize(size_t(w8a8PackedFloats(t, n, k)));
    w8a8Pack(t, static_cast<const int8_t *>(o.q->data), static_cast<const uint16_t *>(o.scales->data), n, k, local.data());
    packed = local.data();
  }
  // Scratch kept per calling thread (the pool's workers only see the pointers:
  // a thread_local named inside the lambdas would be each worker's own). It
  // also remembers which input it holds: layers reading one tensor with the
  // same activation scales (q/k/v, gate/up) quantize it once per run.
  struct Quantized {
    std::vector<uint8_t> xq;
    std::vector<float> rowScale;
    uint64_t serial = 0;
    int32_t tensor = -1;
    const void *data = nullptr;
    const float *inv = nullptr;
    float actScale = 0;
    int64_t m = -1, k = -1;
    const Int8Table *table = nullptr;
  };
  thread_local Quantized held;
  const float *inv = o.actScales ? static_cast<const float *>(o.actScales->data) : nullptr;
  const int32_t tensor = c.spec->inputs[0];
  const bool reuse = held.serial == c.runSerial && c.runSerial != 0 && held.tensor == tensor && held.data == x.data &&
                     held.inv == inv && held.actScale == o.actScale && held.m == m && held.k == k && held.table == t;
  if (!reuse) {
    held.xq.resize(size_t(t->activationBytes(m, k)));
    held.rowScale.resize(size_t(m));
    held.serial = c.runSerial, held.tensor = tensor, held.data = x.data, held.inv = inv;
    held.actScale = o.actScale, held.m = m, held.k = k, held.table = t;
  }
  uint8_t *xq = held.xq.data();
  float *rowScale = held.rowScale.data();
  const float *xf = static_cast<const float *>(x.data);
  Int8GemmArgs a{xq, reinterpret_cast<const uint8_t *>(packed), rowScale,
                 packed + w8a8ScaleOffsetFloats(t, n, k), o.bias ? static_cast<const float *>(o.bias->data) : nullptr,
                 static_cast<float *>(c.outputs[0]->data), n, m, n, k};
  const int threads = c.pool->size();
  const int64_t tileRows = t->rowTile;
  if (m >= 2 * tileRows * threads) {
    // Enough rows: each thread quantizes its rows and multiplies them by the
    // whole weight (one handoff; the rows stay in its cache).
    c.pool->parallelFor(m, [&](int64_t b, int64_t e) {
      if (!reuse) t->quantizeActivations(xf, k, k, b, e, inv, o.actScale, xq, rowScale);
      t->gemmRows(&a, b, e);
    }, tileRows);
  } else {
    // Few rows (decoding): quantize them here, split the columns.
    if (!reuse) t->quantizeActivations(xf, k, k, 0, m, inv, o.actScale, xq, rowScale);
    c.pool->parallelFor(n, [&](int64_t b, int64_t e) { t->gemm(&a, b, e); }, t->panelWidth);
  }
  return "";
}

// N:M sparse linear layers (weight formats "nm-f32", "nm-int4", runtime/cpu/SparseNm.h):
//   nm-f32:  (x, values f32 [n, k/2], indices u8, bias?)
//   nm-int4: (x, codes u8 [n, k/4], indices u8, scales f16 [n, ceil(k/group)], bias?)
// attributes pattern ("2:4" | "4:8"), in_features (k), group_size (int4).
struct NmOperands {
  NmArgs args{};
  const View *bias = nullptr;
};
std::string nmOperands(KernelContext &c, NmOperands &o, bool scanPositions = true) {
  const bool int4 = c.spec->weightFormat == "nm-int4";
  auto at = [&](size_t i) { return i < c.inputs.size() ? c.inputs[i] : nullptr; };
  const View *values = at(1), *indices = at(2), *scales = int4 ? at(3) : nullptr;
  o.bias = at(int4 ? 4 : 3);
  if (auto e = needFloat32(c, 0); !e.empty()) return e;
  const std::string pattern = stringAttr(c, "pattern", "");
  const int m = pattern == "2:4" ? 4 : pattern == "4:8" ? 8 : 0;
  if (!m) return fail(c, "pattern must be 2:4 or 4:8, found '" + pattern + "'");
  const int64_t k = intAttr(c, "in_features", 0);
  if (k <= 0 || k % 32) return fail(c, "in_features must be a positive multiple of 32, found " + std::to_string(k));
  if (!values || values->shape.size() != 2 || values->dtype != (int4 ? DType::U8 : DType::F32) ||
      values->shape[1] != (int4 ? k / 4 : k / 2))
    return fail(c, std::string("the kept values must be ") + (int4 ? "u8 [n, " + std::to_string(k / 4) : "f32 [n, " + std::to_string(k / 2)) +
                       "]" + (values ? ", found " + desc(*values) : std::string()));
  const int64_t n = values->shape[0];
  if (!indices || indices->dtype != DType::U8 || indices->shape != std::vector<int64_t>{n, nmIndexBytesPerRow(k, m)})
    return fail(c, "the indices must be u8 [" + std::to_string(n) + ", " + std::to_string(nmIndexBytesPerRow(k, m)) + "]" +
                       (indices ? ", found " + desc(*indices) : std::string()));
  // 4:8 positions are nibbles: one of 8..15 (a corrupt file) would point outside its group.
  if (m == 8 && indices->data && scanPositions) {
    const uint8_t *p = static_cast<const uint8_t *>(indices->data);
    for (int64_t i = 0; i < indices->numel(); ++i)
      if ((p[i] & 0x88) != 0) return fail(c, "a 4:8 position is outside its group of 8 (byte " + std::to_string(i) + ")");
  }
  int64_t group = 0;
  if (int4) {
    group = intAttr(c, "group_size", 0);
    if (group <= 0 || group % 32) return fail(c, "group_size " + std::to_string(group) + " is not a positive multiple of 32");
    const int64_t groups = (k + group - 1) / group;
    if (!scales || scales->dtype != DType::F16 || scales->shape != std::vector<int64_t>{n, groups})
      return fail(c, "the scales must be f16 [" + std::to_string(n) + ", " + std::to_string(groups) + "]");
  }
  if (auto e = checkBias(c, o.bias, n); !e.empty()) return e;
  o.args.n = n, o.args.k = k, o.args.pattern = m, o.args.group = group;
  o.args.values = int4 ? nullptr : static_cast<const float *>(values->data);
  o.args.codes = int4 ? static_cast<const uint8_t *>(values->data) : nullptr;
  o.args.scales = scales ? static_cast<const uint16_t *>(scales->data) : nullptr;
  o.args.indices = static_cast<const uint8_t *>(indices->data);
  return "";
}
std::string shapeNmLinear(KernelContext &c) {
  NmOperands o;
  if (auto e = nmOperands(c, o); !e.empty()) return e;
  return compactLinearShape(c, o.args.k, o.args.n);
}
std::string runNmLinear(KernelContext &c) {
  NmOperands o;
  if (auto e = nmOperands(c, o, /*scanPositions=*/false); !e.empty()) return e;
  const NmTable *t = nmTableFor(c.isa->name);
  if (!t) return fail(c, std::string("no N:M kernels for instruction set ") + c.isa->name);
  const View &x = *c.inputs[0];
  NmArgs a = o.args;
  a.m = x.numel() / a.k;
  a.x = static_cast<const float *>(x.data), a.lda = a.k;
  a.c = static_cast<float *>(c.outputs[0]->data), a.ldc = a.n;
  a.bias = o.bias ? static_cast<const float *>(o.bias->data) : nullptr;
  c.pool->parallelFor(a.n, [&](int64_t b, int64_t e) { t->gemm(&a, b, e); }, t->panelWidth);
  return "";
}

// Unstructured sparse linear layers (weight format "bitmap-f32", SparseNm.h):
//   (x, values f32 [nnz], bitmap u8 [n, k/8], bias?), attribute in_features (k).
struct BitmapOperands {
  BitmapArgs args{};
};
std::string bitmapOperands(KernelContext &c, BitmapOperands &o, bool countValues = true) {
  auto at = [&](size_t i) { return i < c.inputs.size() ? c.inputs[i] : nullptr; };
  const View *values = at(1), *masks = at(2), *bias = at(3);
  if (auto e = needFloat32(c, 0); !e.empty()) return e;
  const int64_t k = intAttr(c, "in_features", 0);
  if (k <= 0 || k % 32) return fail(c, "in_features must be a positive multiple of 32, found " + std::to_string(k));
  if (!masks || masks->dtype != DType::U8 || masks->shape.size() != 2 || masks->shape[1] != bitmapMaskBytesPerRow(k))
    return fail(c, "the bitmap must be u8 [n, " + std::to_string(bitmapMaskBytesPerRow(k)) + "]" +
                       (masks ? ", found " + desc(*masks) : std::string()));
  const int64_t n = masks->shape[0];
  if (!values || values->dtype != DType::F32 || values->shape.size() != 1)
    return fail(c, "the kept values must be f32 [nnz]" + (values ? ", found " + desc(*values) : std::string()));
  // The values must be exactly as many as the bitmap's set bits (validated once per shape: the weights are constant).
  if (masks->data && countValues) {
    int64_t bits = 0;
    const uint8_t *m = static_cast<const uint8_t *>(masks->data);
    for (int64_t i = 0; i < masks->numel(); ++i) bits += __builtin_popcount(m[i]);
    if (bits != values->shape[0])
      return fail(c, "the bitmap keeps " + std::to_string(bits) + " weights but there are " + std::to_string(values->shape[0]) + " values");
  }
  if (auto e = checkBias(c, bias, n); !e.empty()) return e;
  o.args.n = n, o.args.k = k;
  o.args.values = static_cast<const float *>(values->data);
  o.args.masks = static_cast<const uint8_t *>(masks->data);
  o.args.bias = bias ? static_cast<const float *>(bias->data) : nullptr;
  return "";
}
std::string shapeBitmapLinear(KernelContext &c) {
  BitmapOperands o;
  if (auto e = bitmapOperands(c, o); !e.empty()) return e;
  return compactLinearShape(c, o.args.k, o.args.n);
}
std::string runBitmapLinear(KernelContext &c) {
  BitmapOperands o;
  if (auto e = bitmapOperands(c, o, /*countValues=*/false); !e.empty()) return e;
  const NmTable *t = nmTableFor(c.isa->name);
  if (!t) return fail(c, std::string("no sparse kernels for instruction set ") + c.isa->name);
  const View &x = *c.inputs[0];
  BitmapArgs a = o.args;
  a.m = x.numel() / a.k;
  a.x = static_cast<const float *>(x.data), a.lda = a.k;
  a.c = static_cast<float *>(c.outputs[0]->data), a.ldc = a.n;
  c.pool->parallelFor(a.n, [&](int64_t b, int64_t e) { t->bitmapGemm(&a, b, e); }, t->panelWidth);
  return "";
}

std::string shapeMatmul(KernelContext &c) {
  for (size_t i = 0; i < 2; ++i) if (auto e = needFloat32(c, i); !e.empty()) return e;
  std::vector<int64_t> a = c.inputs[0]->shape, b = c.inputs[1]->shape;
  bool aVec = a.size() == 1, bVec = b.size() == 1;
  if (aVec) a.insert(a.begin(), 1);
  if (bVec) b.push_back(1);
  if (a.back() != b[b.size() - 2])
    return fail(c, "inner dimensions differ: " + desc(*c.inputs[0]) + " x " + desc(*c.inputs[1]));
  std::vector<int64_t> batch;
  if (!broadcastShapes({std::vector<int64_t>(a.begin(), a.end() - 2), std::vector<int64_t>(b.begin(), b.end() - 2)}, batch))
    return fail(c, "batch dimensions do not broadcast: " + desc(*c.inputs[0]) + " x " + desc(*c.inputs[1]));
  if (!aVec) batch.push_back(a[a.size() - 2]);
  if (!bVec) batch.push_back(b.back());
  c.outputs[0]->shape = batch;
  return "";
}
std::string runMatmul(KernelContext &c) {
  std::vector<int64_t> a = c.inputs[0]->shape, b = c.inputs[1]->shape;
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  int64_t m = a[a.size() - 2], k = a.back(), n = b.back();
  std::vector<int64_t> aBatch(a.begin(), a.end() - 2), bBatch(b.begin(), b.end() - 2), batch;
  broadcastShapes({aBatch, bBatch}, batch);
  std::vector<int64_t> sa = broadcastStrides(aBatch, batch), sb = broadcastStrides(bBatch, batch);
  int64_t batches = 1;
  for (int64_t d : batch) batches *= d;
  const float *pa = static_cast<const float *>(c.inputs[0]->data), *pb = static_cast<const float *>(c.inputs[1]->data);
  float *pc = static_cast<float *>(c.outputs[0]->data);
  int64_t panel = c.isa->gemmPanelWidth, panels = (n + panel - 1) / panel;
  // Work unit = (batch, column panel); each output element belongs to one unit.
  c.pool->parallelFor(batches * panels, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      int64_t bi = u / panels, p = u % panels, rem = bi, offA = 0, offB = 0;
      for (int64_t d = int64_t(batch.size()) - 1; d >= 0; --d) {
        int64_t idx = rem % batch[size_t(d)];
        rem /= batch[size_t(d)];
        offA += idx * sa[size_t(d)];
        offB += idx * sb[size_t(d)];
      }
      GemmArgs g{pa + offA * m * k, k, pb + offB * k * n, n, 0, pc + bi * m * n, n, nullptr, m, n, k};
      c.isa->gemm(&g, p * panel, std::min(n, (p + 1) * panel));
    }
  });
  return "";
}

std::string shapeAttention(KernelContext &c) {
  for (size_t i = 0; i < 3; ++i) if (auto e = needFloat32(c, i); !e.empty()) return e;
  const View &q = *c.inputs[0], &k = *c.inputs[1], &v = *c.inputs[2];
  if (q.shape.size() != 4 || k.shape.size() != 4 || v.shape.size() != 4)
    return fail(c, "query/key/value must be 4-D [batch, heads, seq, head_dim], found " + desc(q) + ", " + desc(k) + ", " + desc(v));
  int64_t heads = intAttr(c, "num_heads", q.shape[1]), kvHeads = intAttr(c, "num_kv_heads", k.shape[1]);
  if (q.shape[1] != heads || k.shape[1] != kvHeads || v.shape[1] != kvHeads || kvHeads <= 0 || heads % kvHeads)
    return fail(c, "head counts do not fit: query " + desc(q) + ", key " + desc(k) + ", value " + desc(v) + ", num_heads " +
                       std::to_string(heads) + ", num_kv_heads " + std::to_string(kvHeads));
  if (k.shape[0] != q.shape[0] || v.shape[0] != q.shape[0] || k.shape[2] != v.shape[2] || k.shape[3] != q.shape[3] || v.shape[3] != q.shape[3])
    return fail(c, "query " + desc(q) + ", key " + desc(k) + ", value " + desc(v) + " do not fit together");
  if (q.shape[3] > 1024) return fail(c, "head_dim " + std::to_string(q.shape[3]) + " exceeds 1024");
  if (c.inputs.size() > 3 && c.inputs[3]) {
    const View &mask = *c.inputs[3];
    if (mask.dtype != DType::F32) return fail(c, "mask must be an additive f32 tensor, found " + desc(mask));
    std::vector<int64_t> full = {q.shape[0], heads, q.shape[2], k.shape[2]}, out;
    if (mask.shape.size() > 4 || !broadcastShapes({full, mask.shape}, out) || out != full)
      return fail(c, "mask " + desc(mask) + " does not broadcast to " + shapeStr(full));
  }
  c.outputs[0]->shape = q.shape;
  return "";
}
std::string runAttention(KernelContext &c) {
  const View &q = *c.inputs[0], &k = *c.inputs[1], &v = *c.inputs[2];
  const View *mask = c.inputs.size() > 3 ? c.inputs[3] : nullptr;
  AttentionArgs a{};
  a.q = static_cast<const float *>(q.data);
  a.k = static_cast<const float *>(k.data);
  a.v = static_cast<const float *>(v.data);
  a.out = static_cast<float *>(c.outputs[0]->data);
  a.batch = q.shape[0]; a.heads = q.shape[1]; a.kvHeads = k.shape[1];
  a.querySeq = q.shape[2]; a.keySeq = k.shape[2]; a.headDim = q.shape[3];
  auto st = [](const View &t, int64_t *s) { auto x = stridesOf(t.shape); s[0] = x[0]; s[1] = x[1]; s[2] = x[2]; };
  st(q, a.qStrides); st(k, a.kStrides); st(v, a.vStrides); st(*c.outputs[0], a.outStrides);
  // Tensors in [batch, seq, heads, head_dim] order (a transpose folded away): the same values, other strides.
  auto bshd = [&](const View *src, const View &logical, int64_t *s) -> std::string {
    const auto &l = logical.shape, &p = src->shape;
    if (p.size() != 4 || p[0] != l[0] || p[1] != l[2] || p[2] != l[1] || p[3] != l[3])
      return fail(c, "the folded transpose's tensor " + desc(*src) + " is not " + desc(logical) + " with heads and sequence swapped");
    s[0] = p[1] * p[2] * p[3];
    s[1] = p[3];
    s[2] = p[2] * p[3];
    return "";
  };
  const float **qkv[3] = {&a.q, &a.k, &a.v};
  int64_t *qkvStrides[3] = {a.qStrides, a.kStrides, a.vStrides};
  for (int i = 0; i < 3; ++i)
    if (const View *src = c.bshdInputs[i]) {
      if (auto e = bshd(src, *c.inputs[size_t(i)], qkvStrides[i]); !e.empty()) return e;
      *qkv[i] = static_cast<const float *>(src->data);
    }
  if (View *dst = c.bshdOutput) {
    if (auto e = bshd(dst, *c.outputs[0], a.outStrides); !e.empty()) return e;
    a.out = static_cast<float *>(dst->data);
  }
  a.scale = float(floatAttr(c, "scale", 1.0 / std::sqrt(double(a.headDim ? a.headDim : 1))));
  a.causal = int(intAttr(c, "causal", 0) != 0);
  if (KvCache *cache = c.cache) {
    // Append this step's keys and values, then attend over everything cached.
    const int64_t n = a.keySeq, D = a.headDim, cap = cache->capacity;
    if (cache->past + n > cap)
      return fail(c, "the KV cache holds " + std::to_string(cap) + " positions; " + std::to_string(cache->past) + " + " +
                         std::to_string(n) + " do not fit");
    if (cache->kHeadFloats > 0) {
      for (int64_t b = 0; b < a.batch; ++b)
        for (int64_t h = 0; h < a.kvHeads; ++h) {
          float *kHead = cache->k + (b * a.kvHeads + h) * cache->kHeadFloats;
          float *vHead = cache->v + (b * a.kvHeads + h) * cache->vHeadFloats;
          for (int64_t j = 0; j < n; ++j)
            c.isa->packKvRow(a.k + b * a.kStrides[0] + h * a.kStrides[1] + j * a.kStrides[2],
                             a.v + b * a.vStrides[0] + h * a.vStrides[1] + j * a.vStrides[2], cache->past + j, D, kHead, vHead);
        }
      a.k = a.kPacked = cache->k;
      a.v = a.vPacked = cache->v;
      a.kPackedHeadFloats = cache->kHeadFloats;
      a.vPackedHeadFloats = cache->vHeadFloats;
      a.keySeq = cache->past + n;
      c.pool->parallelFor(a.batch * a.heads * a.querySeq, [&](int64_t b, int64_t e) { c.isa->attention(&a, b, e); });
      return "";
    }
    for (int64_t b = 0; b < a.batch; ++b)
      for (int64_t h = 0; h < a.kvHeads; ++h) {
        float *kc = cache->k + ((b * a.kvHeads + h) * cap + cache->past) * D;
        float *vc = cache->v + ((b * a.kvHeads + h) * cap + cache->past) * D;
        for (int64_t j = 0; j < n; ++j) {
          std::memcpy(kc + j * D, a.k + b * a.kStrides[0] + h * a.kStrides[1] + j * a.kStrides[2], size_t(D) * sizeof(float));
          std::memcpy(vc + j * D, a.v + b * a.vStrides[0] + h * a.vStrides[1] + j * a.vStrides[2], size_t(D) * sizeof(float));
        }
      }
    a.k = cache->k;
    a.v = cache->v;
    a.kStrides[0] = a.vStrides[0] = a.kvHeads * cap * D;
    a.kStrides[1] = a.vStrides[1] = cap * D;
    a.kStrides[2] = a.vStrides[2] = D;
    a.keySeq = cache->past + n;
    mask = nullptr;
  }
  if (mask) {
    a.mask = static_cast<const float *>(mask->data);
    auto ms = broadcastStrides(mask->shape, {a.batch, a.heads, a.querySeq, a.keySeq});
    for (int i = 0; i < 4; ++i) a.maskStrides[i] = ms[size_t(i)];
  }
  c.pool->parallelFor(a.batch * a.heads * a.querySeq, [&](int64_t b, int64_t e) { c.isa->attention(&a, b, e); });
  return "";
}

// ------------------------------------------------------------------ normalization & activations
std::string shapeNorm(KernelContext &c) {
  for (size_t i = 0; i < c.inputs.size(); ++i) if (auto e = needFloat32(c, i); !e.empty()) return e;
  const View &x = *c.inputs[0];
  int64_t axis = c.spec->op == "rms_norm" ? -1 : intAttr(c, "axis", -1);
  if (!normAxis(axis, int64_t(x.shape.size()))) return fail(c, "axis out of range for " + desc(x));
  int64_t n = 1;
  for (size_t d = size_t(axis); d < x.shape.size(); ++d) n *= x.shape[d];
  for (size_t i = 1; i < c.inputs.size(); ++i)
    if (c.inputs[i] && c.inputs[i]->numel() != n)
      return fail(c, (i == 1 ? "scale " : "bias ") + desc(*c.inputs[i]) + " does not match the " + std::to_string(n) + " normalized elements of " + desc(x));
  return sameShape(c);
}
std::string runNorm(KernelContext &c) {
  const View &x = *c.inputs[0];
  bool rms = c.spec->op == "rms_norm";
  int64_t axis = rms ? -1 : intAttr(c, "axis", -1);
  normAxis(axis, int64_t(x.shape.size()));
  int64_t n = 1;
  for (size_t d = size_t(axis); d < x.shape.size(); ++d) n *= x.shape[d];
  int64_t rows = n ? x.numel() / n : 0;
  float eps = float(floatAttr(c, "epsilon", 1e-5));
  const float *scale = static_cast<const float *>(c.inputs[1]->data);
  const float *bias = c.inputs.size() > 2 && c.inputs[2] ? static_cast<const float *>(c.inputs[2]->data) : nullptr;
  const float *px = static_cast<const float *>(x.data);
  float *py = static_cast<float *>(c.outputs[0]->data);
  c.pool->parallelFor(rows, [&](int64_t b, int64_t e) { c.isa->normRows(px + b * n, scale, bias, py + b * n, e - b, n, eps, rms); });
  return "";
}

// rotary: y = x·cos + rotate_half(x)·sin on the last axis, cos/sin broadcast to x.
// The products and the sum are those of the unfused ops (no FMA in this
// translation unit), so the fusion keeps the bits.
std::string shapeRotary(KernelContext &c) {
  for (size_t i = 0; i < 3; ++i) if (auto e = needFloat32(c, i); !e.empty()) return e;
  const View &x = *c.inputs[0], &cs = *c.inputs[1], &sn = *c.inputs[2];
  if (x.shape.empty() || x.shape.back() % 2) return fail(c, "the rotated (last) dimension of " + desc(x) + " must be even");
  if (cs.shape != sn.shape) return fail(c, "cos " + desc(cs) + " and sin " + desc(sn) + " differ");
  bool fits = !cs.shape.empty() && cs.shape.size() <= x.shape.size() && cs.shape.back() == x.shape.back();
  for (size_t i = 0; fits && i < cs.shape.size(); ++i) {
    const int64_t a = cs.shape[cs.shape.size() - 1 - i], b = x.shape[x.shape.size() - 1 - i];
    fits = a == 1 || a == b;
  }
  if (!fits) return fail(c, "cos/sin " + desc(cs) + " do not broadcast to " + desc(x) + " without growing it");
  return sameShape(c);
}
std::string runRotary(KernelContext &c) {
  const View &x = *c.inputs[0], &cs = *c.inputs[1], &sn = *c.inputs[2];
  const int64_t d = x.shape.back(), half = d / 2, rows = d ? x.numel() / d : 0, rank = int64_t(x.shape.size());
  const std::vector<int64_t> strides = broadcastStrides(cs.shape, x.shape);
  const float *px = static_cast<const float *>(x.data), *pc = static_cast<const float *>(cs.data), *ps = static_cast<const float *>(sn.data);
  float *py = static_cast<float *>(c.outputs[0]->data);
  c.pool->parallelFor(rows, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      int64_t off = 0;
      for (int64_t dim = rank - 2, rest = r; dim >= 0; --dim) {
        off += rest % x.shape[size_t(dim)] * strides[size_t(dim)];
        rest /= x.shape[size_t(dim)];
      }
      const float *xr = px + r * d, *cr = pc + off, *sr = ps + off;
      float *yr = py + r * d; // may be xr: each pair is read before it is written
      for (int64_t j = 0; j < half; ++j) {
        const float a = xr[j], b = xr[j + half];
        yr[j] = a * cr[j] + -b * sr[j];
        yr[j + half] = b * cr[j + half] + a * sr[j + half];
      }
    }
  }, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)));
  return "";
}

std::string shapeSoftmax(KernelContext &c) {
  if (auto e = needFloat32(c, 0); !e.empty()) return e;
  int64_t axis = intAttr(c, "axis", -1);
  if (!normAxis(axis, int64_t(c.inputs[0]->shape.size()))) return fail(c, "axis out of range for " + desc(*c.inputs[0]));
  return sameShape(c);
}
std::string runSoftmax(KernelContext &c) {
  const View &x = *c.inputs[0];
  int64_t axis = intAttr(c, "axis", -1), rank = int64_t(x.shape.size());
  normAxis(axis, rank);
  const float *px = static_cast<const float *>(x.data);
  float *py = static_cast<float *>(c.outputs[0]->data);
  int64_t n = x.shape[size_t(axis)], inner = 1;
  for (int64_t d = axis + 1; d < rank; ++d) inner *= x.shape[size_t(d)];
  int64_t outer = n * inner ? x.numel() / (n * inner) : 0;
  if (inner == 1) {
    c.pool->parallelFor(outer, [&](int64_t b, int64_t e) { c.isa->softmaxRows(px + b * n, py + b * n, e - b, n); });
    return "";
  }
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const float *xr = px + o * n * inner + i;
      float *yr = py + o * n * inner + i;
      float mx = -INFINITY;
      for (int64_t j = 0; j < n; ++j) mx = std::max(mx, xr[j * inner]);
      if (mx == -INFINITY) mx = 0;
      double sum = 0;
      for (int64_t j = 0; j < n; ++j) sum += yr[j * inner] = std::exp(xr[j * inner] - mx);
      for (int64_t j = 0; j < n; ++j) yr[j * inner] = float(yr[j * inner] / sum);
    }
  return "";
}

std::string shapeGelu(KernelContext &c) {
  if (auto e = needFloat32(c, 0); !e.empty()) return e;
  std::string approx = stringAttr(c, "approximate", "none");
  if (approx != "none" && approx != "tanh") return fail(c, "approximate must be 'none' or 'tanh', found '" + approx + "'");
  return sameShape(c);
}
std::string runGelu(KernelContext &c) {
  int tanhApprox = stringAttr(c, "approximate", "none") == "tanh";
  const float *px = static_cast<const float *>(c.inputs[0]->data);
  float *py = static_cast<float *>(c.outputs[0]->data);
  if (c.geluApplied) { // the linear before it applied it
    if (px != py) std::memcpy(py, px, c.inputs[0]->bytes());
    return "";
  }
  c.pool->parallelFor(c.inputs[0]->numel(), [&](int64_t b, int64_t e) { c.isa->gelu(px + b, py + b, e - b, tanhApprox); }, 1024);
  return "";
}

// ------------------------------------------------------------------ embedding, positions, shape_of
std::string shapeEmbedding(KernelContext &c) {
  const View &table = *c.inputs[0], &ids = *c.inputs[1];
  if (table.shape.size() != 2) return fail(c, "table must be 2-D [vocab, dim], found " + desc(table));
  c.outputs[0]->shape = ids.shape;
  c.outputs[0]->shape.push_back(table.shape[1]);
  if (c.outputs[0]->dtype != table.dtype) return fail(c, "result dtype differs from the table's");
  return "";
}
std::string runEmbedding(KernelContext &c) {
  const View &table = *c.inputs[0], &ids = *c.inputs[1];
  int64_t vocab = table.shape[0], row = table.shape[1] * int64_t(dtypeSize(table.dtype)), n = ids.numel();
  for (int64_t i = 0; i < n; ++i) {
    int64_t id = readIndex(ids.data, ids.dtype, i);
    if (id < 0 || id >= vocab)
      return fail(c, "id " + std::to_string(id) + " at position " + std::to_string(i) + " is outside the table's " + std::to_string(vocab) + " rows");
    std::memcpy(static_cast<uint8_t *>(c.outputs[0]->data) + i * row, static_cast<const uint8_t *>(table.data) + id * row, size_t(row));
  }
  return "";
}

// An int8 table (table i8 [rows, dim], ids, scales f16 [rows, ceil(dim/group)]): rows dequantized on lookup.
std::string shapeEmbeddingInt8(KernelContext &c) {
  const View &table = *c.inputs[0], &ids = *c.inputs[1], &scales = *c.inputs[2];
  const int64_t group = intAttr(c, "group_size", table.shape.size() == 2 ? table.shape[1] : 1);
  if (table.shape.size() != 2 || table.dtype != DType::I8) return fail(c, "table must be i8 [rows, dim], found " + desc(table));
  if (group <= 0 || scales.dtype != DType::F16 ||
      scales.shape != std::vector<int64_t>{table.shape[0], (table.shape[1] + group - 1) / group})
    return fail(c, "scales " + desc(scales) + " do not fit the table " + desc(table) + " with group " + std::to_string(group));
  c.outputs[0]->shape = ids.shape;
  c.outputs[0]->shape.push_back(table.shape[1]);
  if (c.outputs[0]->dtype != DType::F32) return fail(c, "the result must be f32");
  return "";
}
std::string runEmbeddingInt8(KernelContext &c) {
  const View &table = *c.inputs[0], &ids = *c.inputs[1], &scales = *c.inputs[2];
  const int64_t rows = table.shape[0], dim = table.shape[1], n = ids.numel();
  const int64_t group = intAttr(c, "group_size", dim), groups = (dim + group - 1) / group;
  const int8_t *q = static_cast<const int8_t *>(table.data);
  float *out = static_cast<float *>(c.outputs[0]->data);
  for (int64_t i = 0; i < n; ++i) {
    int64_t id = readIndex(ids.data, ids.dtype, i);
    if (id < 0 || id >= rows)
      return fail(c, "id " + std::to_string(id) + " at position " + std::to_string(i) + " is outside the table's " + std::to_string(rows) + " rows");
    for (int64_t j = 0; j < dim; ++j) {
      const float d = float(loadAsDouble(scales.data, DType::F16, id * groups + j / group));
      out[i * dim + j] = d * float(q[id * dim + j]);
    }
  }
  return "";
}

std::string shapePositions(KernelContext &c) {
  int64_t axis = intAttr(c, "axis", 0);
  if (!normAxis(axis, int64_t(c.inputs[0]->shape.size()))) return fail(c, "axis out of range for " + desc(*c.inputs[0]));
  c.outputs[0]->shape = {c.inputs[0]->shape[size_t(axis)]};
  return "";
}
std::string runPositions(KernelContext &c) {
  int64_t n = c.outputs[0]->numel();
  for (int64_t i = 0; i < n; ++i) storeInt(c.outputs[0]->data, c.outputs[0]->dtype, i, i + c.positionOffset);
  return "";
}

std::string shapeShapeOf(KernelContext &c) {
  c.outputs[0]->shape = {int64_t(c.inputs[0]->shape.size())};
  return "";
}
std::string runShapeOf(KernelContext &c) {
  for (size_t i = 0; i < c.inputs[0]->shape.size(); ++i) storeInt(c.outputs[0]->data, c.outputs[0]->dtype, int64_t(i), c.inputs[0]->shape[i]);
  return "";
}

// ------------------------------------------------------------------ data movement
std::string runCopy(KernelContext &c) {
  if (c.outputs[0]->data != c.inputs[0]->data) std::memmove(c.outputs[0]->data, c.inputs[0]->data, c.inputs[0]->bytes());
  return "";
}

std::string checkSameDtype(KernelContext &c) {
  if (c.outputs[0]->dtype != c.inputs[0]->dtype)
    return fail(c, "result dtype " + std::string(dtypeName(c.outputs[0]->dtype)) + " differs from operand " + desc(*c.inputs[0]));
  return "";
}

std::string shapeReshape(KernelContext &c) {
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  std::vector<int64_t> target;
  if (!readInts(c.inputs[1], target)) return fail(c, "target shape is not known");
  const View &x = *c.inputs[0];
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0) {
      if (i >= x.shape.size()) return fail(c, "target " + shapeStr(target) + " copies a dimension " + desc(x) + " lacks");
      target[i] = x.shape[i];
    }
    if (target[i] == -1) {
      if (infer >= 0) return fail(c, "target " + shapeStr(target) + " has two -1 entries");
      infer = int64_t(i);
    } else if (target[i] < 0) return fail(c, "target " + shapeStr(target) + " has a negative entry");
    else known *= target[i];
  }
  if (infer >= 0) {
    if (known == 0 || x.numel() % known) return fail(c, "cannot reshape " + desc(x) + " to " + shapeStr(target));
    target[size_t(infer)] = x.numel() / known;
  }
  int64_t n = 1;
  for (int64_t d : target) n *= d;
  if (n != x.numel()) return fail(c, "cannot reshape " + desc(x) + " (" + std::to_string(x.numel()) + " elements) to " + shapeStr(target));
  c.outputs[0]->shape = target;
  return "";
}

std::string shapeSqueeze(KernelContext &c) {
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  const View &x = *c.inputs[0];
  std::vector<int64_t> axes;
  intsAttr(c, "axes", axes);
  int64_t rank = int64_t(x.shape.size());
  std::vector<bool> drop(size_t(rank), false);
  if (axes.empty()) for (int64_t d = 0; d < rank; ++d) drop[size_t(d)] = x.shape[size_t(d)] == 1;
  for (int64_t a : axes) {
    if (!normAxis(a, rank)) return fail(c, "axis out of range for " + desc(x));
    if (x.shape[size_t(a)] != 1) return fail(c, "cannot squeeze dimension " + std::to_string(a) + " of " + desc(x) + ": it is not 1");
    drop[size_t(a)] = true;
  }
  c.outputs[0]->shape.clear();
  for (int64_t d = 0; d < rank; ++d) if (!drop[size_t(d)]) c.outputs[0]->shape.push_back(x.shape[size_t(d)]);
  return "";
}
std::string shapeUnsqueeze(KernelContext &c) {
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  const View &x = *c.inputs[0];
  std::vector<int64_t> axes;
  intsAttr(c, "axes", axes);
  int64_t rank = int64_t(x.shape.size() + axes.size());
  std::vector<bool> ins(size_t(rank), false);
  for (int64_t a : axes) {
    if (!normAxis(a, rank) || ins[size_t(a)]) return fail(c, "bad axes for " + desc(x));
    ins[size_t(a)] = true;
  }
  auto &out = c.outputs[0]->shape;
  out.clear();
  size_t src = 0;
  for (int64_t d = 0; d < rank; ++d) out.push_back(ins[size_t(d)] ? 1 : x.shape[src++]);
  return "";
}

// Strided gather copy: out[i] = in[offset(i)], element size es.
void stridedCopy(const uint8_t *in, uint8_t *out, const std::vector<int64_t> &outShape, const std::vector<int64_t> &inStrides,
                 int64_t base, size_t es) {
  std::vector<int64_t> strides[2] = {stridesOf(outShape), inStrides};
  forEachRun<2>(outShape, strides, [&](int64_t, const int64_t *off, int64_t n, const int64_t *st) {
    uint8_t *o = out + off[0] * int64_t(es);
    const uint8_t *s = in + (base + off[1]) * int64_t(es);
    if (st[1] == 1) std::memcpy(o, s, size_t(n) * es);
    else
      for (int64_t j = 0; j < n; ++j) std::memcpy(o + j * int64_t(es), s + j * st[1] * int64_t(es), es);
  });
}

/// stridedCopy split across the pool by the leading output dimensions (enough
/// of them for a few chunks per thread); each element is still one copy, so the
/// result does not depend on the thread count.
void parallelStridedCopy(core::ThreadPool *pool, const uint8_t *in, uint8_t *out, const std::vector<int64_t> &outShape,
                         const std::vector<int64_t> &inStrides, int64_t base, size_t es) {
  int64_t total = 1;
  for (int64_t d : outShape) total *= d;
  const size_t rank = outShape.size();
  if (!pool || pool->size() < 2 || rank < 2 || total * int64_t(es) < (64 << 10))
    return stridedCopy(in, out, outShape, inStrides, base, es);
  size_t lead = 0;
  int64_t outer = 1;
  while (lead + 1 < rank && outer < 4 * pool->size()) outer *= outShape[lead++];
  const std::vector<int64_t> rest(outShape.begin() + int64_t(lead), outShape.end()),
      restStrides(inStrides.begin() + int64_t(lead), inStrides.end());
  int64_t inner = 1;
  for (int64_t d : rest) inner *= d;
  pool->parallelFor(outer, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int64_t offset = 0;
      for (size_t d = lead, r = size_t(i); d-- > 0;) {
        offset += int64_t(r % size_t(outShape[d])) * inStrides[d];
        r /= size_t(outShape[d]);
      }
      stridedCopy(in, out + i * inner * int64_t(es), rest, restStrides, base + offset, es);
    }
  });
}

std::string shapeTranspose(KernelContext &c) {
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  const View &x = *c.inputs[0];
  std::vector<int64_t> perm;
  size_t rank = x.shape.size();
  if (!intsAttr(c, "perm", perm) || perm.empty()) for (size_t i = 0; i < rank; ++i) perm.push_back(int64_t(rank - 1 - i));
  if (perm.size() != rank) return fail(c, "perm has " + std::to_string(perm.size()) + " entries for " + desc(x));
  std::vector<bool> seen(rank, false);
  c.outputs[0]->shape.clear();
  for (int64_t p : perm) {
    if (!normAxis(p, int64_t(rank)) || seen[size_t(p)]) return fail(c, "perm is not a permutation");
    seen[size_t(p)] = true;
    c.outputs[0]->shape.push_back(x.shape[size_t(p)]);
  }
  return "";
}
std::string runTranspose(KernelContext &c) {
  const View &x = *c.inputs[0];
  std::vector<int64_t> perm;
  size_t rank = x.shape.size();
  if (!intsAttr(c, "perm", perm) || perm.empty()) for (size_t i = 0; i < rank; ++i) perm.push_back(int64_t(rank - 1 - i));
  std::vector<int64_t> own = stridesOf(x.shape), st(rank);
  for (size_t i = 0; i < rank; ++i) { int64_t p = perm[i]; normAxis(p, int64_t(rank)); st[i] = own[size_t(p)]; }
  parallelStridedCopy(c.pool, static_cast<const uint8_t *>(x.data), static_cast<uint8_t *>(c.outputs[0]->data),
                      c.outputs[0]->shape, st, 0, dtypeSize(x.dtype));
  return "";
}

std::string shapeConcat(KernelContext &c) {
  const View &first = *c.inputs[0];
  int64_t axis = intAttr(c, "axis", 0);
  if (!normAxis(axis, int64_t(first.shape.size()))) return fail(c, "axis out of range for " + desc(first));
  std::vector<int64_t> out = first.shape;
  out[size_t(axis)] = 0;
  for (const View *v : c.inputs) {
    if (!v) return fail(c, "absent operand");
    if (v->dtype != first.dtype || v->shape.size() != first.shape.size()) return fail(c, "operands " + desc(first) + " and " + desc(*v) + " cannot be joined");
    for (size_t d = 0; d < out.size(); ++d)
      if (int64_t(d) != axis && v->shape[d] != first.shape[d]) return fail(c, "operands " + desc(first) + " and " + desc(*v) + " differ outside axis " + std::to_string(axis));
    out[size_t(axis)] += v->shape[size_t(axis)];
  }
  c.outputs[0]->shape = out;
  return checkSameDtype(c);
}
std::string runConcat(KernelContext &c) {
  int64_t axis = intAttr(c, "axis", 0);
  const auto &outShape = c.outputs[0]->shape;
  normAxis(axis, int64_t(outShape.size()));
  int64_t outer = 1, inner = int64_t(dtypeSize(c.outputs[0]->dtype));
  for (int64_t d = 0; d < axis; ++d) outer *= outShape[size_t(d)];
  for (size_t d = size_t(axis) + 1; d < outShape.size(); ++d) inner *= outShape[d];
  int64_t outRow = outShape[size_t(axis)] * inner, at = 0;
  uint8_t *out = static_cast<uint8_t *>(c.outputs[0]->data);
  for (const View *v : c.inputs) {
    int64_t row = v->shape[size_t(axis)] * inner;
    for (int64_t o = 0; o < outer; ++o) std::memcpy(out + o * outRow + at, static_cast<const uint8_t *>(v->data) + o * row, size_t(row));
    at += row;
  }
  return "";
}

struct SliceParams { std::vector<int64_t> start, step, shape; };
std::string sliceParams(KernelContext &c, SliceParams &p) {
  const View &x = *c.inputs[0];
  std::vector<int64_t> starts, ends, axes, steps;
  if (!readInts(c.inputs[1], starts) || !readInts(c.inputs[2], ends)) return fail(c, "starts/ends are not known");
  size_t rank = x.shape.size();
  if (c.inputs.size() > 3 && c.inputs[3]) { if (!readInts(c.inputs[3], axes)) return fail(c, "axes are not known"); }
  else for (size_t i = 0; i < starts.size(); ++i) axes.push_back(int64_t(i));
  if (c.inputs.size() > 4 && c.inputs[4]) { if (!readInts(c.inputs[4], steps)) return fail(c, "steps are not known"); }
  else steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    return fail(c, "starts, ends, axes and steps have different lengths");
  p.start.assign(rank, 0);
  p.step.assign(rank, 1);
  p.shape = x.shape;
  std::vector<bool> seen(rank, false);
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t a = axes[i];
    if (!normAxis(a, int64_t(rank)) || seen[size_t(a)]) return fail(c, "slice axis " + std::to_string(axes[i]) + " is invalid for " + desc(x));
    seen[size_t(a)] = true;
    int64_t dim = x.shape[size_t(a)], step = steps[i], s = starts[i], e = ends[i];
    if (step == 0) return fail(c, "slice step is 0");
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) { s = std::clamp<int64_t>(s, 0, dim); e = std::clamp<int64_t>(e, 0, dim); }
    else { s = std::clamp<int64_t>(s, 0, dim - 1); e = std::clamp<int64_t>(e, -1, dim - 1); }
    int64_t len = step > 0 ? (e > s ? (e - s + step - 1) / step : 0) : (s > e ? (s - e + (-step) - 1) / (-step) : 0);
    p.start[size_t(a)] = len ? s : 0;
    p.step[size_t(a)] = step;
    p.shape[size_t(a)] = len;
  }
  return "";
}
std::string shapeSlice(KernelContext &c) {
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  SliceParams p;
  if (auto e = sliceParams(c, p); !e.empty()) return e;
  c.outputs[0]->shape = p.shape;
  return "";
}
std::string runSlice(KernelContext &c) {
  SliceParams p;
  if (auto e = sliceParams(c, p); !e.empty()) return e;
  const View &x = *c.inputs[0];
  std::vector<int64_t> own = stridesOf(x.shape), st(own.size());
  int64_t base = 0;
  for (size_t d = 0; d < own.size(); ++d) { st[d] = own[d] * p.step[d]; base += p.start[d] * own[d]; }
  stridedCopy(static_cast<const uint8_t *>(x.data), static_cast<uint8_t *>(c.outputs[0]->data), p.shape, st, base, dtypeSize(x.dtype));
  return "";
}

std::string splitSizes(KernelContext &c, int64_t &axis, std::vector<int64_t> &sizes) {
  const View &x = *c.inputs[0];
  axis = intAttr(c, "axis", 0);
  if (!normAxis(axis, int64_t(x.shape.size()))) return fail(c, "axis out of range for " + desc(x));
  int64_t dim = x.shape[size_t(axis)], parts = int64_t(c.outputs.size());
  if (!intsAttr(c, "sizes", sizes) || sizes.empty()) {
    int64_t each = (dim + parts - 1) / parts;
    sizes.clear();
    for (int64_t i = 0; i < parts; ++i) sizes.push_back(std::max<int64_t>(0, std::min(each, dim - each * i)));
  }
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  if (int64_t(sizes.size()) != parts || total != dim)
    return fail(c, "sizes " + shapeStr(sizes) + " do not split dimension " + std::to_string(axis) + " of " + desc(x) + " into " + std::to_string(parts) + " results");
  return "";
}
std::string shapeSplit(KernelContext &c) {
  int64_t axis;
  std::vector<int64_t> sizes;
  if (auto e = splitSizes(c, axis, sizes); !e.empty()) return e;
  for (size_t i = 0; i < c.outputs.size(); ++i) {
    if (c.outputs[i]->dtype != c.inputs[0]->dtype) return fail(c, "result dtype differs from the operand's");
    c.outputs[i]->shape = c.inputs[0]->shape;
    c.outputs[i]->shape[size_t(axis)] = sizes[i];
  }
  return "";
}
std::string runSplit(KernelContext &c) {
  int64_t axis;
  std::vector<int64_t> sizes;
  if (auto e = splitSizes(c, axis, sizes); !e.empty()) return e;
  const View &x = *c.inputs[0];
  int64_t outer = 1, inner = int64_t(dtypeSize(x.dtype));
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape[size_t(d)];
  for (size_t d = size_t(axis) + 1; d < x.shape.size(); ++d) inner *= x.shape[d];
  int64_t inRow = x.shape[size_t(axis)] * inner, at = 0;
  for (size_t i = 0; i < c.outputs.size(); ++i) {
    int64_t row = sizes[i] * inner;
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(static_cast<uint8_t *>(c.outputs[i]->data) + o * row, static_cast<const uint8_t *>(x.data) + o * inRow + at, size_t(row));
    at += row;
  }
  return "";
}

std::string shapeExpand(KernelContext &c) {
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  std::vector<int64_t> target;
  if (!readInts(c.inputs[1], target)) return fail(c, "target shape is not known");
  if (!broadcastShapes({c.inputs[0]->shape, target}, c.outputs[0]->shape))
    return fail(c, desc(*c.inputs[0]) + " does not broadcast to " + shapeStr(target));
  return "";
}
std::string runExpand(KernelContext &c) {
  const View &x = *c.inputs[0];
  stridedCopy(static_cast<const uint8_t *>(x.data), static_cast<uint8_t *>(c.outputs[0]->data), c.outputs[0]->shape,
              broadcastStrides(x.shape, c.outputs[0]->shape), 0, dtypeSize(x.dtype));
  return "";
}

std::string shapeFill(KernelContext &c) {
  std::vector<int64_t> target;
  if (!readInts(c.inputs[0], target)) return fail(c, "target shape is not known");
  for (int64_t d : target) if (d < 0) return fail(c, "negative dimension in " + shapeStr(target));
  c.outputs[0]->shape = target;
  return "";
}
std::string runFill(KernelContext &c) {
  View &y = *c.outputs[0];
  double value = floatAttr(c, "value", 0.0);
  int64_t n = y.numel();
  if (n == 0) return "";
  storeDouble(y.data, y.dtype, 0, value);
  size_t es = dtypeSize(y.dtype);
  for (int64_t i = 1; i < n; ++i) std::memcpy(static_cast<uint8_t *>(y.data) + i * int64_t(es), y.data, es);
  return "";
}

std::string rangeParams(KernelContext &c, double &start, double &delta, int64_t &n) {
  for (int i = 0; i < 3; ++i)
    if (!c.inputs[size_t(i)]->data || c.inputs[size_t(i)]->numel() != 1) return fail(c, "start/limit/delta must be known scalars");
  start = loadAsDouble(c.inputs[0]->data, c.inputs[0]->dtype, 0);
  double limit = loadAsDouble(c.inputs[1]->data, c.inputs[1]->dtype, 0);
  delta = loadAsDouble(c.inputs[2]->data, c.inputs[2]->dtype, 0);
  if (delta == 0) return fail(c, "delta is 0");
  double count = std::ceil((limit - start) / delta);
  if (!(count < 1e9)) return fail(c, "range is too long");
  n = count > 0 ? int64_t(count) : 0;
  return "";
}
std::string shapeRange(KernelContext &c) {
  double start, delta;
  int64_t n;
  if (auto e = rangeParams(c, start, delta, n); !e.empty()) return e;
  c.outputs[0]->shape = {n};
  return "";
}
std::string runRange(KernelContext &c) {
  double start, delta;
  int64_t n;
  if (auto e = rangeParams(c, start, delta, n); !e.empty()) return e;
  View &y = *c.outputs[0];
  bool integral = !isFloatType(y.dtype);
  for (int64_t i = 0; i < n; ++i) {
    if (integral) storeInt(y.data, y.dtype, i, int64_t(start) + i * int64_t(delta));
    else storeDouble(y.data, y.dtype, i, start + double(i) * delta);
  }
  return "";
}

std::string shapeTrilu(KernelContext &c) {
  if (c.inputs[0]->shape.size() < 2) return fail(c, "needs rank >= 2, found " + desc(*c.inputs[0]));
  if (c.inputs.size() > 1 && c.inputs[1] && c.inputs[1]->numel() != 1) return fail(c, "k must be a scalar");
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  return sameShape(c);
}
std::string runTrilu(KernelContext &c) {
  const View &x = *c.inputs[0];
  int64_t k = c.inputs.size() > 1 && c.inputs[1] ? readIndex(c.inputs[1]->data, c.inputs[1]->dtype, 0) : 0;
  bool upper = intAttr(c, "upper", 1) != 0;
  size_t rank = x.shape.size(), es = dtypeSize(x.dtype);
  int64_t rows = x.shape[rank - 2], cols = x.shape[rank - 1], mats = rows * cols ? x.numel() / (rows * cols) : 0;
  const uint8_t *in = static_cast<const uint8_t *>(x.data);
  uint8_t *out = static_cast<uint8_t *>(c.outputs[0]->data);
  for (int64_t m = 0; m < mats; ++m)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        int64_t at = ((m * rows + i) * cols + j) * int64_t(es);
        bool keep = upper ? j - i >= k : j - i <= k;
        if (keep) std::memmove(out + at, in + at, es);
        else std::memset(out + at, 0, es);
      }
  return "";
}

std::string shapeGather(KernelContext &c) {
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  const View &x = *c.inputs[0], &idx = *c.inputs[1];
  int64_t axis = intAttr(c, "axis", 0);
  if (!normAxis(axis, int64_t(x.shape.size()))) return fail(c, "axis out of range for " + desc(x));
  auto &out = c.outputs[0]->shape;
  out.assign(x.shape.begin(), x.shape.begin() + axis);
  out.insert(out.end(), idx.shape.begin(), idx.shape.end());
  out.insert(out.end(), x.shape.begin() + axis + 1, x.shape.end());
  return "";
}
std::string runGather(KernelContext &c) {
  const View &x = *c.inputs[0], &idx = *c.inputs[1];
  int64_t axis = intAttr(c, "axis", 0);
  normAxis(axis, int64_t(x.shape.size()));
  int64_t outer = 1, inner = int64_t(dtypeSize(x.dtype)), dim = x.shape[size_t(axis)], n = idx.numel();
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape[size_t(d)];
  for (size_t d = size_t(axis) + 1; d < x.shape.size(); ++d) inner *= x.shape[d];
  const uint8_t *in = static_cast<const uint8_t *>(x.data);
  uint8_t *out = static_cast<uint8_t *>(c.outputs[0]->data);
  for (int64_t i = 0; i < n; ++i) {
    int64_t j = readIndex(idx.data, idx.dtype, i);
    if (j < 0) j += dim;
    if (j < 0 || j >= dim) return fail(c, "index " + std::to_string(readIndex(idx.data, idx.dtype, i)) + " is out of range for dimension " + std::to_string(dim) + " of " + desc(x));
  }
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < n; ++i) {
      int64_t j = readIndex(idx.data, idx.dtype, i);
      if (j < 0) j += dim;
      std::memcpy(out + (o * n + i) * inner, in + (o * dim + j) * inner, size_t(inner));
    }
  return "";
}

std::string shapeScatterNd(KernelContext &c) {
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  const View &data = *c.inputs[0], &idx = *c.inputs[1], &upd = *c.inputs[2];
  if (upd.dtype != data.dtype) return fail(c, "updates " + desc(upd) + " and data " + desc(data) + " differ in dtype");
  int64_t k = idx.shape.back();
  if (k < 0 || k > int64_t(data.shape.size())) return fail(c, "index tuples of length " + std::to_string(k) + " for " + desc(data));
  std::vector<int64_t> expect(idx.shape.begin(), idx.shape.end() - 1);
  expect.insert(expect.end(), data.shape.begin() + k, data.shape.end());
  if (expect != upd.shape) return fail(c, "updates " + desc(upd) + " should be " + shapeStr(expect));
  return sameShape(c);
}
std::string runScatterNd(KernelContext &c) {
  const View &data = *c.inputs[0], &idx = *c.inputs[1], &upd = *c.inputs[2];
  View &y = *c.outputs[0];
  if (y.data != data.data) std::memcpy(y.data, data.data, data.bytes());
  int64_t k = idx.shape.back(), tuples = k ? idx.numel() / k : 0, slice = int64_t(dtypeSize(data.dtype));
  for (size_t d = size_t(k); d < data.shape.size(); ++d) slice *= data.shape[d];
  std::vector<int64_t> st = stridesOf(data.shape);
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t off = 0;
    for (int64_t d = 0; d < k; ++d) {
      int64_t i = readIndex(idx.data, idx.dtype, t * k + d), dim = data.shape[size_t(d)];
      if (i < 0) i += dim;
      if (i < 0 || i >= dim) return fail(c, "index " + std::to_string(i) + " is out of range for dimension " + std::to_string(d) + " of " + desc(data));
      off += i * st[size_t(d)];
    }
    std::memcpy(static_cast<uint8_t *>(y.data) + off * int64_t(dtypeSize(data.dtype)), static_cast<const uint8_t *>(upd.data) + t * slice, size_t(slice));
  }
  return "";
}

// ------------------------------------------------------------------ reductions
std::string reduceAxes(KernelContext &c, std::vector<bool> &reduced) {
  const View &x = *c.inputs[0];
  std::vector<int64_t> axes;
  intsAttr(c, "axes", axes);
  int64_t rank = int64_t(x.shape.size());
  reduced.assign(size_t(rank), axes.empty());
  for (int64_t a : axes) {
    if (!normAxis(a, rank)) return fail(c, "axis out of range for " + desc(x));
    reduced[size_t(a)] = true;
  }
  return "";
}
std::string shapeReduce(KernelContext &c) {
  if (auto e = checkSameDtype(c); !e.empty()) return e;
  std::vector<bool> reduced;
  if (auto e = reduceAxes(c, reduced); !e.empty()) return e;
  bool keep = intAttr(c, "keepdims", 1) != 0;
  auto &out = c.outputs[0]->shape;
  out.clear();
  for (size_t d = 0; d < reduced.size(); ++d) {
    if (!reduced[d]) out.push_back(c.inputs[0]->shape[d]);
    else if (keep) out.push_back(1);
  }
  return "";
}
std::string runReduce(KernelContext &c) {
  const View &x = *c.inputs[0];
  std::vector<bool> reduced;
  reduceAxes(c, reduced);
  std::vector<int64_t> kept(x.shape.size());
  for (size_t d = 0; d < x.shape.size(); ++d) kept[d] = reduced[d] ? 1 : x.shape[d];
  std::vector<int64_t> st = broadcastStrides(kept, x.shape); // input position -> output offset
  int64_t outN = 1, count = 1;
  for (size_t d = 0; d < x.shape.size(); ++d) { outN *= kept[d]; if (reduced[d]) count *= x.shape[d]; }
  const std::string &op = c.spec->op;
  std::string err;
  bool ok = visitType(x.dtype, [&](auto t) {
    using T = decltype(t);
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
    // Max/min of an empty set is the type's lowest/highest value (-inf/+inf for floats), as ONNX defines it.
    auto lowest = std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
    auto highest = std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
    std::vector<Acc> acc(size_t(outN), op == "reduce_max" ? Acc(lowest) : op == "reduce_min" ? Acc(highest) : Acc(0));
    const T *in = static_cast<const T *>(x.data);
    std::vector<int64_t> strides[2] = {stridesOf(x.shape), st};
    forEachRun<2>(x.shape, strides, [&](int64_t, const int64_t *off, int64_t n, const int64_t *s) {
      for (int64_t j = 0; j < n; ++j) {
        Acc v = Acc(in[off[0] + j]);
        Acc &a = acc[size_t(off[1] + j * s[1])];
        if (op == "reduce_max") a = std::max(a, v);
        else if (op == "reduce_min") a = std::min(a, v);
        else a += v;
      }
    });
    T *out = static_cast<T *>(c.outputs[0]->data);
    for (int64_t i = 0; i < outN; ++i) out[i] = T(op == "reduce_mean" ? (count ? acc[size_t(i)] / Acc(count) : Acc(0)) : acc[size_t(i)]);
  });
  if (!ok) return fail(c, "unsupported dtype " + desc(x));
  return err;
}

// ------------------------------------------------------------------ f16 / bf16
bool isHalf(DType t) { return t == DType::F16 || t == DType::BF16; }

/// Runs an elementwise or reduction kernel on f16/bf16 tensors through f32
/// copies (each value widened exactly, the result rounded once).
template <KernelFn Run>
std::string viaFloat32(KernelContext &c) {
  bool any = false;
  for (const View *v : c.inputs) any |= v && isHalf(v->dtype);
  for (const View *v : c.outputs) any |= isHalf(v->dtype);
  if (!any) return Run(c);
  std::vector<std::vector<float>> buffers;
  buffers.reserve(c.inputs.size() + c.outputs.size());
  std::vector<View> inViews(c.inputs.size()), outViews(c.outputs.size());
  KernelContext wide = c;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    if (!c.inputs[i] || !isHalf(c.inputs[i]->dtype)) continue;
    const View &src = *c.inputs[i];
    buffers.emplace_back(size_t(src.numel()));
    for (int64_t k = 0; k < src.numel(); ++k) buffers.back()[size_t(k)] = float(loadAsDouble(src.data, src.dtype, k));
    inViews[i] = View{DType::F32, src.shape, buffers.back().data()};
    wide.inputs[i] = &inViews[i];
  }
  for (size_t i = 0; i < c.outputs.size(); ++i) {
    if (!isHalf(c.outputs[i]->dtype)) continue;
    buffers.emplace_back(size_t(c.outputs[i]->numel()));
    outViews[i] = View{DType::F32, c.outputs[i]->shape, buffers.back().data()};
    wide.outputs[i] = &outViews[i];
  }
  if (std::string err = Run(wide); !err.empty()) return err;
  for (size_t i = 0; i < c.outputs.size(); ++i) {
    if (!isHalf(c.outputs[i]->dtype)) continue;
    for (int64_t k = 0; k < outViews[i].numel(); ++k)
      storeDouble(c.outputs[i]->data, c.outputs[i]->dtype, k, static_cast<const float *>(outViews[i].data)[k]);
  }
  return "";
}

// ------------------------------------------------------------------ registry
struct Registry {
  std::mutex mutex;
  std::map<std::tuple<std::string, std::string, std::string>, KernelEntry> entries;
};
Registry &registry() {
  static Registry *r = [] {
    auto *reg = new Registry;
    auto add = [&](const std::string &op, KernelFn shape, KernelFn run, bool inPlace = false, std::vector<int> values = {}) {
      reg->entries[{op, "f32", "cpu"}] = KernelEntry{shape, run, inPlace, std::move(values)};
    };
    add("linear", shapeLinear, runLinear);
    for (const char *format : {"int8", "int4", "int3", "bf16", "fp16"})
      reg->entries[{"linear", format, "cpu"}] = KernelEntry{shapeQuantLinear, runQuantLinear, false, {}};
    reg->entries[{"linear", "w8a8", "cpu"}] = KernelEntry{shapeW8a8Linear, runW8a8Linear, false, {}};
    for (const char *format : {"nm-f32", "nm-int4"})
      reg->entries[{"linear", format, "cpu"}] = KernelEntry{shapeNmLinear, runNmLinear, false, {}};
    reg->entries[{"linear", "bitmap-f32", "cpu"}] = KernelEntry{shapeBitmapLinear, runBitmapLinear, false, {}};
    reg->entries[{"embedding", "int8", "cpu"}] = KernelEntry{shapeEmbeddingInt8, runEmbeddingInt8, false, {}};
    add("matmul", shapeMatmul, runMatmul);
    add("attention", shapeAttention, runAttention);
    add("layer_norm", shapeNorm, runNorm, true);
    add("rms_norm", shapeNorm, runNorm, true);
    add("gelu", shapeGelu, runGelu, true);
    add("rotary", shapeRotary, runRotary, true);
    add("softmax", shapeSoftmax, runSoftmax, true);
    add("embedding", shapeEmbedding, runEmbedding);
    add("positions", shapePositions, runPositions);
    for (auto &[name, op] : unaryOps()) add(name, sameShape, viaFloat32<runUnary>, true);
    add("cast", shapeCast, runCast);
    for (auto &[name, op] : binaryOps()) add(name, shapeBroadcast, viaFloat32<runBinary>, !isCompare(op));
    add("where", shapeBroadcast, runWhere);
    for (const char *r : {"reduce_mean", "reduce_sum", "reduce_max", "reduce_min"}) add(r, shapeReduce, viaFloat32<runReduce>);
    add("shape_of", shapeShapeOf, runShapeOf);
    add("reshape", shapeReshape, runCopy, true, {1});
    add("squeeze", shapeSqueeze, runCopy, true);
    add("unsqueeze", shapeUnsqueeze, runCopy, true);
    add("transpose", shapeTranspose, runTranspose);
    add("concat", shapeConcat, runConcat);
    add("slice", shapeSlice, runSlice, false, {1, 2, 3, 4});
    add("split", shapeSplit, runSplit);
    add("expand", shapeExpand, runExpand, false, {1});
    add("fill", shapeFill, runFill, false, {0});
    add("range", shapeRange, runRange, false, {0, 1, 2});
    add("trilu", shapeTrilu, runTrilu, true);
    add("gather", shapeGather, runGather);
    add("scatter_nd", shapeScatterNd, runScatterNd, true);
    return reg;
  }();
  return *r;
}

} // namespace

int64_t w8a8ScaleOffsetFloats(const Int8Table *t, int64_t n, int64_t k) { return (t->packedWeightBytes(n, k) + 63) / 64 * 16; }
int64_t w8a8PackedFloats(const Int8Table *t, int64_t n, int64_t k) { return w8a8ScaleOffsetFloats(t, n, k) + n; }
void w8a8Pack(const Int8Table *t, const int8_t *q, const uint16_t *scales, int64_t n, int64_t k, float *packed) {
  t->packWeights(q, n, k, reinterpret_cast<uint8_t *>(packed));
  float *s = packed + w8a8ScaleOffsetFloats(t, n, k);
  for (int64_t j = 0; j < n; ++j) s[j] = halfToFloat(scales[j]);
}

const KernelEntry *findKernel(const std::string &op, const std::string &weightFormat, const std::string &device) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.entries.find({op, weightFormat.empty() ? "f32" : weightFormat, device});
  return it == r.entries.end() ? nullptr : &it->second;
}

void registerKernel(const std::string &op, const std::string &weightFormat, const std::string &device, KernelEntry entry) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.entries[{op, weightFormat, device}] = std::move(entry);
}

} // namespace lathe::cpu
