// The CUDA graph kernels' per-thread math (runtime/cuda/GraphMath.h), run on
// the host in the device kernels' iteration and reduction orders, against the
// CPU kernels (the reference semantics). No GPU needed: GraphKernels.cu calls
// exactly these functions, so a mismatch here is a wrong device kernel.
#include "runtime/cpu/Kernels.h"
#include "runtime/cuda/GraphMath.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace lathe;
namespace gm = lathe::cuda::math;
using artifact::AttrValue;
using cpu::View;

namespace {

std::vector<float> randomFloats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto &x : v) x = dist(rng);
  return v;
}

int64_t count(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

/// A tensor for a CPU kernel: a View over owned bytes.
struct Buf {
  View view;
  std::vector<uint8_t> bytes;
  Buf() = default;
  Buf(DType t, std::vector<int64_t> shape) { reset(t, std::move(shape)); }
  template <class T> Buf(DType t, std::vector<int64_t> shape, const std::vector<T> &values) {
    reset(t, std::move(shape));
    REQUIRE(values.size() * sizeof(T) == bytes.size());
    if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  }
  void reset(DType t, std::vector<int64_t> shape) {
    view.dtype = t;
    view.shape = std::move(shape);
    bytes.assign(size_t(count(view.shape)) * artifact::dtypeSize(t) + 1, 0); // +1: never a null pointer
    bytes.resize(bytes.size() - 1);
    view.data = bytes.data();
  }
  template <class T> T *as() { return reinterpret_cast<T *>(bytes.data()); }
  template <class T> const T *as() const { return reinterpret_cast<const T *>(bytes.data()); }
  const int64_t *shape() const { return view.shape.data(); }
  int rank() const { return int(view.shape.size()); }
};

/// Runs a CPU kernel (shape function, then run) on `inputs`, allocating each result.
void runCpu(const std::string &op, std::vector<Buf *> inputs, std::vector<Buf *> outputs, std::map<std::string, AttrValue> attrs = {},
            cpu::KvCache *cache = nullptr, const std::string &format = "f32") {
  static core::ThreadPool pool(1);
  artifact::KernelSpec spec{op, {}, {}, std::move(attrs), "test", format};
  cpu::KernelContext c;
  c.spec = &spec;
  for (size_t i = 0; i < inputs.size(); ++i) {
    spec.inputs.push_back(inputs[i] ? int32_t(i) : -1);
    c.inputs.push_back(inputs[i] ? &inputs[i]->view : nullptr);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    spec.outputs.push_back(int32_t(inputs.size() + i));
    c.outputs.push_back(&outputs[i]->view);
  }
  c.pool = &pool;
  c.isa = cpu::isaByName("baseline");
  c.cache = cache;
  REQUIRE(c.isa);
  const cpu::KernelEntry *entry = cpu::findKernel(op, format, "cpu");
  REQUIRE(entry);
  std::string err = entry->shape(c);
  INFO(err);
  REQUIRE(err.empty());
  for (Buf *o : outputs) o->reset(o->view.dtype, o->view.shape);
  err = entry->run(c);
  INFO(err);
  REQUIRE(err.empty());
}

void requireClose(const float *got, const float *want, size_t n, float tol) {
  for (size_t i = 0; i < n; ++i) {
    if ((std::isnan(got[i]) && std::isnan(want[i])) || got[i] == want[i]) continue;
    INFO("element " << i << ": device math " << got[i] << ", CPU " << want[i]);
    REQUIRE(std::fabs(got[i] - want[i]) <= tol + tol * std::fabs(want[i]));
  }
}
template <class T> void requireEqual(const T *got, const T *want, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    INFO("element " << i);
    REQUIRE(std::memcmp(&got[i], &want[i], sizeof(T)) == 0);
  }
}

/// The device's map of an elementwise op (GraphKernels.cu's broadcastMap).
gm::IndexMap elementwiseMap(const Buf &y, std::vector<const Buf *> operands) {
  gm::IndexMap m{};
  const int64_t *shapes[3] = {};
  int ranks[3] = {};
  for (size_t k = 0; k < operands.size(); ++k) shapes[k] = operands[k]->shape(), ranks[k] = operands[k]->rank();
  REQUIRE(gm::broadcastMap(y.shape(), y.rank(), shapes, ranks, int(operands.size()), m));
  return m;
}

} // namespace

// ------------------------------------------------------------------ elementwise
TEST_CASE("cuda math: binary ops broadcast like the CPU kernels", "[cuda-math]") {
  using Shapes = std::pair<std::vector<int64_t>, std::vector<int64_t>>;
  const std::vector<Shapes> pairs = {{{2, 3, 4}, {4}},         {{2, 3, 4}, {}},           {{}, {2, 3, 4}},
                                     {{2, 1, 4}, {3, 1}},      {{2, 3, 4}, {1, 3, 1}},    {{7, 5}, {7, 5}},
                                     {{2, 3, 1, 5}, {3, 4, 1}}, {{1, 6, 1, 3}, {2, 1, 5, 3}}, {{3, 1, 1}, {1, 1, 1}}};
  for (const char *op : {"add", "sub", "mul", "div", "pow", "max", "min", "less", "greater_equal", "equal"}) {
    const int code = int(std::find_if(std::begin(gm::kBinaryNames), std::end(gm::kBinaryNames),
                                      [&](const char *n) { return std::string(n) == op; }) - std::begin(gm::kBinaryNames));
    REQUIRE(code < gm::kBinaryCount);
    for (size_t p = 0; p < pairs.size(); ++p) {
      DYNAMIC_SECTION(op << " pair " << p) {
        auto &[sa, sb] = pairs[p];
        const bool positive = std::string(op) == "pow";
        auto va = randomFloats(size_t(count(sa)), 11 + uint32_t(p), positive ? 0.1f : -2.0f, 2.0f);
        auto vb = randomFloats(size_t(count(sb)), 23 + uint32_t(p), -2.0f, 2.0f);
        if (std::string(op) == "equal") for (size_t i = 0; i < vb.size(); ++i) vb[i] = i % 2 ? va[i % va.size()] : vb[i];
        Buf a(DType::F32, sa, va), b(DType::F32, sb, vb);
        Buf y(gm::isCompare(code) ? DType::Bool : DType::F32, {});
        runCpu(op, {&a, &b}, {&y});
        const gm::IndexMap m = elementwiseMap(y, {&a, &b});
        REQUIRE(m.rank <= y.rank());
        const int64_t n = count(y.view.shape);
        if (gm::isCompare(code)) {
          std::vector<uint8_t> dev(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i) {
            int64_t off[3];
            gm::mapOffsets(m, i, off);
            dev[size_t(i)] = gm::binaryCompare(code, a.as<float>()[off[0]], b.as<float>()[off[1]]);
          }
          requireEqual(dev.data(), y.as<uint8_t>(), size_t(n));
        } else {
          std::vector<float> dev(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i) {
            int64_t off[3];
            gm::mapOffsets(m, i, off);
            dev[size_t(i)] = gm::binaryArith(code, a.as<float>()[off[0]], b.as<float>()[off[1]]);
          }
          requireClose(dev.data(), y.as<float>(), size_t(n), 0.0f); // the same float operations: exact
        }
      }
    }
  }
}

TEST_CASE("cuda math: f16/bf16 and integer binary ops match viaFloat32 and the integer kernels", "[cuda-math]") {
  auto va = randomFloats(24, 5, -3, 3), vb = randomFloats(4, 6, -3, 3);
  for (DType t : {DType::F16, DType::BF16}) {
    std::vector<uint16_t> ha(va.size()), hb(vb.size());
    for (size_t i = 0; i < va.size(); ++i) ha[i] = t == DType::F16 ? gm::floatToHalf(va[i]) : gm::floatToBf16(va[i]);
    for (size_t i = 0; i < vb.size(); ++i) hb[i] = t == DType::F16 ? gm::floatToHalf(vb[i]) : gm::floatToBf16(vb[i]);
    Buf a(t, {2, 3, 4}, ha), b(t, {4}, hb), y(t, {});
    runCpu("mul", {&a, &b}, {&y});
    const gm::IndexMap m = elementwiseMap(y, {&a, &b});
    auto widen = [&](uint16_t h) { return t == DType::F16 ? gm::halfToFloat(h) : gm::bf16ToFloat(h); };
    std::vector<uint16_t> dev(24);
    for (int64_t i = 0; i < 24; ++i) {
      int64_t off[3];
      gm::mapOffsets(m, i, off);
      const float r = gm::binaryArith(gm::BMul, widen(ha[size_t(off[0])]), widen(hb[size_t(off[1])]));
      dev[size_t(i)] = t == DType::F16 ? gm::floatToHalf(r) : gm::floatToBf16(r);
    }
    requireEqual(dev.data(), y.as<uint16_t>(), 24);
  }
  std::vector<int64_t> ia = {5, -3, 7, 0, 12, -8}, ib = {2, -4};
  Buf a(DType::I64, {3, 2}, ia), b(DType::I64, {2}, ib);
  for (int op : {gm::BAdd, gm::BSub, gm::BMul, gm::BMax, gm::BMin, gm::BPow}) {
    Buf y(DType::I64, {});
    runCpu(gm::kBinaryNames[op], {&a, &b}, {&y});
    const gm::IndexMap m = elementwiseMap(y, {&a, &b});
    std::vector<int64_t> dev(6);
    for (int64_t i = 0; i < 6; ++i) {
      int64_t off[3];
      gm::mapOffsets(m, i, off);
      dev[size_t(i)] = gm::binaryArith(op, ia[size_t(off[0])], ib[size_t(off[1])]);
    }
    INFO(gm::kBinaryNames[op]);
    requireEqual(dev.data(), y.as<int64_t>(), 6);
  }
}

TEST_CASE("cuda math: rotary pairs and table offsets match the CPU kernel bit for bit", "[cuda-math]") {
  struct Case { std::vector<int64_t> x, table; };
  for (const Case &k : {Case{{2, 3, 5, 64}, {5, 64}}, Case{{2, 3, 5, 16}, {1, 1, 5, 16}}, Case{{3, 7, 6}, {7, 6}},
                        Case{{4, 2, 5, 8}, {4, 1, 5, 8}}}) {
    DYNAMIC_SECTION("x " << k.x.size() << "-D, D=" << k.x.back() << ", table " << k.table.size() << "-D") {
      auto xv = randomFloats(size_t(count(k.x)), 31, -4.0f, 4.0f), cv = randomFloats(size_t(count(k.table)), 32),
           sv = randomFloats(size_t(count(k.table)), 33);
      Buf x(DType::F32, k.x, xv), c(DType::F32, k.table, cv), s(DType::F32, k.table, sv), y(DType::F32, {});
      runCpu("rotary", {&x, &c, &s}, {&y});
      // The device kernel's steps: strides of the table against x, one thread per pair.
      const int rank = x.rank();
      int64_t strides[gm::kMaxDims];
      gm::broadcastStrides(c.shape(), c.rank(), x.shape(), rank, strides);
      const int64_t half = k.x.back() / 2, rows = count(k.x) / (2 * half);
      std::vector<float> dev(xv.size());
      for (int64_t i = 0; i < rows * half; ++i) {
        const int64_t row = i / half, j = i % half, base = row * 2 * half;
        const int64_t off = gm::rotaryTableOffset(x.shape(), strides, rank - 1, row);
        gm::rotaryPair(xv[size_t(base + j)], xv[size_t(base + j + half)], cv[size_t(off + j)], cv[size_t(off + j + half)],
                       sv[size_t(off + j)], sv[size_t(off + j + half)], dev[size_t(base + j)], dev[size_t(base + j + half)]);
      }
      requireEqual(dev.data(), y.as<float>(), dev.size());
    }
  }
}

TEST_CASE("cuda math: unary ops, gelu and cast match the CPU kernels", "[cuda-math]") {
  auto v = randomFloats(1000, 7, -6.0f, 6.0f);
  v[0] = 0.0f, v[1] = -0.0f, v[2] = 30.0f, v[3] = -30.0f;
  for (int op = 0; op < gm::kUnaryCount; ++op) {
    if (op == gm::UNot) continue;
    DYNAMIC_SECTION(gm::kUnaryNames[op]) {
      std::vector<float> in = v;
      if (op == gm::USqrt || op == gm::ULog)
        for (auto &x : in) x = std::fabs(x) + 1e-3f;
      Buf x(DType::F32, {10, 100}, in), y(DType::F32, {});
      runCpu(gm::kUnaryNames[op], {&x}, {&y});
      std::vector<float> dev(in.size());
      for (size_t i = 0; i < in.size(); ++i) dev[i] = gm::unaryFloat(op, in[i]);
      requireClose(dev.data(), y.as<float>(), in.size(), 1e-6f);
    }
  }
  SECTION("integer unary") {
    std::vector<int64_t> in = {-5, 3, 0, 16, -1};
    for (int op : {gm::UNeg, gm::UAbs, gm::URelu, gm::USqrt}) {
      std::vector<int64_t> pos = in;
      if (op == gm::USqrt) for (auto &i : pos) i = i < 0 ? -i : i;
      Buf x(DType::I64, {5}, pos), y(DType::I64, {});
      runCpu(gm::kUnaryNames[op], {&x}, {&y});
      std::vector<int64_t> dev(5);
      for (size_t i = 0; i < 5; ++i) dev[i] = gm::unaryInt<int64_t>(op, pos[i]);
      requireEqual(dev.data(), y.as<int64_t>(), 5);
    }
  }
  SECTION("gelu") {
    for (const char *approx : {"none", "tanh"}) {
      Buf x(DType::F32, {1000}, v), y(DType::F32, {});
      runCpu("gelu", {&x}, {&y}, {{"approximate", std::string(approx)}});
      std::vector<float> dev(v.size());
      for (size_t i = 0; i < v.size(); ++i) dev[i] = std::string(approx) == "tanh" ? gm::geluTanh(v[i]) : gm::geluErf(v[i]);
      requireClose(dev.data(), y.as<float>(), v.size(), 1e-6f);
    }
  }
  SECTION("cast") {
    std::vector<float> f = {0.0f, -1.5f, 3.75f, 65504.0f, 1e-6f, -2.5f, 100000.0f, 7.9f, -7.9f, 0.333333f};
    Buf src(DType::F32, {10}, f);
    for (DType to : {DType::F16, DType::BF16, DType::I64, DType::I32, DType::Bool, DType::I8, DType::U8}) {
      Buf y(to, {});
      runCpu("cast", {&src}, {&y}, {});
      Buf dev(to, {10});
      for (int64_t i = 0; i < 10; ++i) gm::castElement(src.bytes.data(), gm::F32, dev.bytes.data(), int(to), i);
      INFO("f32 -> " << artifact::dtypeName(to));
      requireEqual(dev.bytes.data(), y.bytes.data(), y.bytes.size());
      // ... and back to f32 (and integer <-> integer)
      for (DType back : {DType::F32, DType::I64}) {
        if (back == to) continue;
        Buf z(back, {});
        runCpu("cast", {&y}, {&z}, {});
        Buf dz(back, {10});
        for (int64_t i = 0; i < 10; ++i) gm::castElement(y.bytes.data(), int(to), dz.bytes.data(), int(back), i);
        INFO(artifact::dtypeName(to) << " -> " << artifact::dtypeName(back));
        requireEqual(dz.bytes.data(), z.bytes.data(), z.bytes.size());
      }
    }
  }
}

// ------------------------------------------------------------------ index maps
TEST_CASE("cuda math: transpose, slice, expand, concat, split, gather and trilu index maps", "[cuda-math]") {
  std::vector<float> v(2 * 3 * 4 * 5);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  Buf x(DType::F32, {2, 3, 4, 5}, v);
  auto gatherAll = [&](const Buf &src, gm::IndexMap m, int64_t base, int64_t n, bool coalesce) {
    if (coalesce) gm::coalesce(m);
    std::vector<float> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = src.as<float>()[base + gm::mapOffset(m, i)];
    return out;
  };
  SECTION("transpose") {
    for (std::vector<int64_t> perm : {std::vector<int64_t>{0, 2, 1, 3}, {3, 1, 0, 2}, {0, 1, 2, 3}, {1, 0, 2, -1}}) {
      Buf y(DType::F32, {});
      runCpu("transpose", {&x}, {&y}, {{"perm", perm}});
      gm::IndexMap m{};
      gm::transposeMap(x.shape(), 4, perm.data(), m);
      for (int d = 0; d < 4; ++d) REQUIRE(m.shape[d] == y.view.shape[size_t(d)]);
      for (bool co : {false, true}) {
        auto dev = gatherAll(x, m, 0, count(y.view.shape), co);
        requireEqual(dev.data(), y.as<float>(), dev.size());
      }
    }
  }
  SECTION("slice") {
    struct Case { std::vector<int64_t> starts, ends, axes, steps; };
    for (const Case &cs : {Case{{1, 0}, {3, -1}, {1, 3}, {1, 2}}, Case{{-1}, {-100}, {2}, {-1}}, Case{{0, 1, 0, 4}, {2, 3, 4, 0}, {}, {1, 1, 2, -2}},
                           Case{{1}, {1000}, {0}, {}}}) {
      Buf starts(DType::I64, {int64_t(cs.starts.size())}, cs.starts), ends(DType::I64, {int64_t(cs.ends.size())}, cs.ends);
      Buf axes(DType::I64, {int64_t(cs.axes.size())}, cs.axes), steps(DType::I64, {int64_t(cs.steps.size())}, cs.steps);
      Buf y(DType::F32, {});
      runCpu("slice", {&x, &starts, &ends, cs.axes.empty() ? nullptr : &axes, cs.steps.empty() ? nullptr : &steps}, {&y});
      gm::SliceArgs a{};
      a.rank = 4;
      a.count = int(cs.starts.size());
      for (int d = 0; d < 4; ++d) a.inShape[d] = x.view.shape[size_t(d)];
      a.starts = starts.bytes.data(), a.ends = ends.bytes.data();
      a.axes = cs.axes.empty() ? nullptr : axes.bytes.data();
      a.steps = cs.steps.empty() ? nullptr : steps.bytes.data();
      a.startsType = a.endsType = a.axesType = a.stepsType = gm::I64;
      int64_t start[8], step[8], base;
      REQUIRE(gm::sliceStartsSteps(a, start, step));
      gm::IndexMap m{};
      gm::sliceMap(a, start, step, y.shape(), m, base);
      auto dev = gatherAll(x, m, base, count(y.view.shape), true);
      requireEqual(dev.data(), y.as<float>(), dev.size());
    }
  }
  SECTION("expand") {
    Buf small(DType::F32, {3, 1, 5}, std::vector<float>(v.begin(), v.begin() + 15));
    Buf target(DType::I64, {4}, std::vector<int64_t>{2, 3, 4, 1});
    Buf y(DType::F32, {});
    runCpu("expand", {&small, &target}, {&y});
    const gm::IndexMap m = elementwiseMap(y, {&small});
    auto dev = gatherAll(small, m, 0, count(y.view.shape), false);
    requireEqual(dev.data(), y.as<float>(), dev.size());
  }
  SECTION("concat and split") {
    for (int64_t axis : {0, 1, 3, -2}) {
      int64_t ax = axis < 0 ? axis + 4 : axis;
      std::vector<Buf> parts;
      std::vector<int64_t> lens = {2, 1, 3};
      for (size_t p = 0; p < 3; ++p) {
        std::vector<int64_t> shape = {2, 3, 4, 5};
        shape[size_t(ax)] = lens[p];
        parts.emplace_back(DType::F32, shape, randomFloats(size_t(count(shape)), 40 + uint32_t(p)));
      }
      Buf y(DType::F32, {});
      runCpu("concat", {&parts[0], &parts[1], &parts[2]}, {&y}, {{"axis", axis}});
      int64_t inner = 1;
      for (int d = int(ax) + 1; d < 4; ++d) inner *= y.view.shape[size_t(d)];
      const int64_t wholeRow = y.view.shape[size_t(ax)] * inner;
      std::vector<float> dev(size_t(count(y.view.shape)), NAN);
      int64_t at = 0;
      for (auto &p : parts) {
        const int64_t partRow = p.view.shape[size_t(ax)] * inner;
        for (int64_t e = 0; e < count(p.view.shape); ++e) dev[size_t(gm::joinOffset(e, partRow, wholeRow, at))] = p.as<float>()[e];
        at += partRow;
      }
      requireEqual(dev.data(), y.as<float>(), dev.size());
      // split the result back
      Buf s0(DType::F32, {}), s1(DType::F32, {}), s2(DType::F32, {});
      runCpu("split", {&y}, {&s0, &s1, &s2}, {{"axis", axis}, {"sizes", lens}});
      at = 0;
      for (Buf *s : {&s0, &s1, &s2}) {
        const int64_t partRow = s->view.shape[size_t(ax)] * inner, n = count(s->view.shape);
        std::vector<float> part(static_cast<size_t>(n));
        for (int64_t e = 0; e < n; ++e) part[size_t(e)] = y.as<float>()[gm::joinOffset(e, partRow, wholeRow, at)];
        requireEqual(part.data(), s->as<float>(), size_t(n));
        at += partRow;
      }
    }
  }
  SECTION("gather") {
    std::vector<int32_t> idx = {2, -1, 0, 1, 1, -4};
    Buf ids(DType::I32, {2, 3}, idx);
    for (int64_t axis : {0, 1, 2}) {
      if (axis == 0) { idx = {1, -1, 0, 1, 0, -2}; ids = Buf(DType::I32, {2, 3}, idx); }
      if (axis == 1) { idx = {2, -1, 0, 1, 1, -3}; ids = Buf(DType::I32, {2, 3}, idx); }
      if (axis == 2) { idx = {2, -1, 0, 3, 1, -4}; ids = Buf(DType::I32, {2, 3}, idx); }
      Buf y(DType::F32, {});
      runCpu("gather", {&x, &ids}, {&y}, {{"axis", axis}});
      int64_t inner = 1;
      for (int d = int(axis) + 1; d < 4; ++d) inner *= x.view.shape[size_t(d)];
      const int64_t n = count(y.view.shape);
      std::vector<float> dev(static_cast<size_t>(n));
      for (int64_t e = 0; e < n; ++e) {
        const int64_t off = gm::gatherOffset(e, 6, inner, x.view.shape[size_t(axis)], ids.bytes.data(), gm::I32);
        REQUIRE(off >= 0);
        dev[size_t(e)] = x.as<float>()[off];
      }
      requireEqual(dev.data(), y.as<float>(), size_t(n));
    }
    REQUIRE(gm::gatherOffset(0, 1, 1, 3, std::vector<int64_t>{3}.data(), gm::I64) == -1);
  }
  SECTION("trilu") {
    for (int64_t k : {0, 1, -2})
      for (int64_t upper : {0, 1}) {
        Buf kk(DType::I64, {1}, std::vector<int64_t>{k}), y(DType::F32, {});
        runCpu("trilu", {&x, &kk}, {&y}, {{"upper", upper}});
        std::vector<float> dev(v.size());
        for (size_t e = 0; e < v.size(); ++e) dev[e] = gm::triluKeep(int64_t(e), 5, 4, k, upper != 0) ? v[e] : 0.0f;
        requireEqual(dev.data(), y.as<float>(), v.size());
      }
  }
}

// ------------------------------------------------------------------ rows
TEST_CASE("cuda math: layer_norm and rms_norm in the block-reduction order", "[cuda-math]") {
  constexpr int kThreads = 256; // GraphKernels.cu's normKernel block
  for (bool rms : {false, true})
    for (int64_t n : {7, 100, 256, 384, 1000, 2304}) {
      DYNAMIC_SECTION((rms ? "rms_norm" : "layer_norm") << " n=" << n) {
        const int64_t rows = 3;
        auto xv = randomFloats(size_t(rows * n), 60 + uint32_t(n), -3.0f, 5.0f); // non-zero mean
        auto sv = randomFloats(size_t(n), 61, 0.5f, 1.5f), bv = randomFloats(size_t(n), 62);
        Buf x(DType::F32, {rows, n}, xv), s(DType::F32, {n}, sv), b(DType::F32, {n}, bv), y(DType::F32, {});
        const float eps = rms ? 1e-6f : 1e-12f;
        std::map<std::string, AttrValue> attrs = {{"epsilon", double(eps)}};
        if (rms) runCpu("rms_norm", {&x, &s}, {&y}, attrs);
        else runCpu("layer_norm", {&x, &s, &b}, {&y}, attrs);
        std::vector<float> dev(xv.size());
        for (int64_t r = 0; r < rows; ++r) {
          const float *row = xv.data() + r * n;
          float partials[kThreads];
          float mean = 0.0f;
          if (!rms) {
            for (int t = 0; t < kThreads; ++t) partials[t] = gm::normPartialSum(row, n, t, kThreads);
            mean = gm::emulateBlockReduce(partials, kThreads, 0.0f, gm::SumOp{}) / float(n);
          }
          for (int t = 0; t < kThreads; ++t) partials[t] = gm::normPartialSquares(row, n, t, kThreads, mean);
          const float inv = gm::normInvStd(gm::emulateBlockReduce(partials, kThreads, 0.0f, gm::SumOp{}), n, eps);
          for (int64_t j = 0; j < n; ++j) dev[size_t(r * n + j)] = gm::normApply(row[j], mean, inv, sv[size_t(j)], rms ? nullptr : bv.data(), j);
        }
        requireClose(dev.data(), y.as<float>(), dev.size(), 2e-5f);
      }
    }
}

TEST_CASE("cuda math: softmax rows with the online (max, sum) combine", "[cuda-math]") {
  constexpr int kThreads = 256; // softmaxRowKernel's block
  for (int64_t n : {1, 10, 300, 1000, 4099}) {
    DYNAMIC_SECTION("n=" << n) {
      const int64_t rows = 4;
      auto xv = randomFloats(size_t(rows * n), 70 + uint32_t(n), -20.0f, 20.0f);
      for (int64_t j = 0; j < n; j += 3) xv[size_t(j)] = -INFINITY;      // row 0: masked entries
      for (int64_t j = 0; j < n; ++j) xv[size_t(n + j)] = -INFINITY;     // row 1: nothing visible
      xv[size_t(2 * n)] = 80.0f;                                         // row 2: one dominant entry
      Buf x(DType::F32, {rows, n}, xv), y(DType::F32, {});
      runCpu("softmax", {&x}, {&y}, {{"axis", int64_t(-1)}});
      std::vector<float> dev(xv.size());
      for (int64_t r = 0; r < rows; ++r) {
        const float *row = xv.data() + r * n;
        gm::MaxSum partials[kThreads];
        for (int t = 0; t < kThreads; ++t) {
          gm::MaxSum a = gm::softmaxIdentity();
          for (int64_t j = t; j < n; j += kThreads) a = gm::softmaxAccumulate(a, row[j]);
          partials[t] = a;
        }
        const gm::MaxSum total = gm::emulateBlockReduce(partials, kThreads, gm::softmaxIdentity(), gm::SoftmaxCombineOp{});
        const float inv = gm::softmaxInv(total.sum);
        for (int64_t j = 0; j < n; ++j) dev[size_t(r * n + j)] = gm::softmaxOutput(row[j], total, inv);
      }
      requireClose(dev.data(), y.as<float>(), dev.size(), 2e-6f);
    }
  }
}

// ------------------------------------------------------------------ attention
namespace {

/// GraphKernels.cu's attentionKernel, block by block and thread step by thread step, on the host.
void emulateAttention(const gm::AttentionParams &p) {
  using namespace gm;
  const int64_t D = p.headDim, group = p.heads / p.kvHeads, rowsTotal = group * p.querySeq;
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t hk = 0; hk < p.kvHeads; ++hk)
      for (int64_t rho0 = 0; rho0 < rowsTotal; rho0 += kAttnRows) {
        const int rows = int(std::min<int64_t>(kAttnRows, rowsTotal - rho0));
        int64_t head[kAttnRows], query[kAttnRows], limit[kAttnRows], keys = 0;
        float runMax[kAttnRows], runSum[kAttnRows];
        std::vector<float> acc(size_t(rows * D), 0.0f), qTile(size_t(rows * D));
        for (int r = 0; r < rows; ++r) {
          attentionRow(p, hk, rho0 + r, head[r], query[r]);
          limit[r] = attentionKeyLimit(p, query[r]);
          keys = std::max(keys, limit[r]);
          runMax[r] = kNegInf, runSum[r] = 0.0f;
          for (int64_t d = 0; d < D; ++d) qTile[size_t(r * D + d)] = p.q[b * p.qStrides[0] + head[r] * p.qStrides[1] + query[r] * p.qStrides[2] + d];
        }
        const float *kBase = p.k + b * p.kStrides[0] + hk * p.kStrides[1], *vBase = p.v + b * p.vStrides[0] + hk * p.vStrides[1];
        std::vector<float> kTile(size_t(kAttnKeys * D)), vTile(size_t(kAttnKeys * D));
        for (int64_t j0 = 0; j0 < keys; j0 += kAttnKeys) {
          const int nb = int(std::min<int64_t>(kAttnKeys, keys - j0));
          for (int j = 0; j < nb; ++j)
            for (int64_t d = 0; d < D; ++d) {
              kTile[size_t(j * D + d)] = kBase[(j0 + j) * p.kStrides[2] + d];
              vTile[size_t(j * D + d)] = vBase[(j0 + j) * p.vStrides[2] + d];
            }
          for (int r = 0; r < rows; ++r) {
            float s[kWarp], w[kWarp];
            for (int j = 0; j < kWarp; ++j) {
              s[j] = kNegInf;
              if (j < nb && j0 + j < limit[r]) {
                const float dot = dotSequential(qTile.data() + r * D, kTile.data() + j * D, D);
                s[j] = attentionScore(dot, p.scale, p.mask, p.mask ? attentionMaskOffset(p, b, head[r], query[r], j0 + j) : 0);
              }
            }
            float lanes[kWarp];
            std::copy(s, s + kWarp, lanes);
            const float newMax = onlineNewMax(runMax[r], emulateWarpButterfly(lanes, MaxOp{}));
            const float corr = onlineCorrection(runMax[r], newMax);
            for (int j = 0; j < kWarp; ++j) lanes[j] = w[j] = onlineWeight(s[j], newMax);
            runSum[r] = onlineSum(runSum[r], corr, emulateWarpButterfly(lanes, SumOp{}));
            runMax[r] = newMax;
            for (int64_t d = 0; d < D; ++d)
              acc[size_t(r * D + d)] = onlineAccumulate(acc[size_t(r * D + d)], corr, weightedValues(w, vTile.data() + d, D, nb));
          }
        }
        for (int r = 0; r < rows; ++r)
          for (int64_t d = 0; d < D; ++d)
            p.out[b * p.outStrides[0] + head[r] * p.outStrides[1] + query[r] * p.outStrides[2] + d] =
                acc[size_t(r * D + d)] * attentionFinalInv(runSum[r]);
      }
}

void strides3(const std::vector<int64_t> &shape, int64_t *s) {
  int64_t st[8];
  gm::contiguousStrides(shape.data(), int(shape.size()), st);
  s[0] = st[0], s[1] = st[1], s[2] = st[2];
}

/// The device's parameters for q/k/v/out (GraphKernels.cu's runAttention without a cache).
gm::AttentionParams attentionParams(const Buf &q, const Buf &k, const Buf &v, float *out, const Buf *mask, bool causal) {
  gm::AttentionParams p{};
  p.q = q.as<float>(), p.k = k.as<float>(), p.v = v.as<float>(), p.out = out;
  p.batch = q.view.shape[0], p.heads = q.view.shape[1], p.kvHeads = k.view.shape[1];
  p.querySeq = q.view.shape[2], p.keySeq = k.view.shape[2], p.headDim = q.view.shape[3];
  strides3(q.view.shape, p.qStrides), strides3(k.view.shape, p.kStrides), strides3(v.view.shape, p.vStrides), strides3(q.view.shape, p.outStrides);
  p.scale = float(1.0 / std::sqrt(double(p.headDim)));
  p.causal = causal;
  if (mask) {
    const int64_t full[4] = {p.batch, p.heads, p.querySeq, p.keySeq};
    p.mask = mask->as<float>();
    gm::broadcastStrides(mask->shape(), mask->rank(), full, 4, p.maskStrides);
  }
  return p;
}

} // namespace

TEST_CASE("cuda math: attention prefill (mask, causal, GQA) matches the CPU kernel", "[cuda-math]") {
  struct Case { int64_t B, H, Hkv, Sq, Sk, D; bool causal; int mask; const char *name; };
  // mask: 0 none, 1 [B,1,1,Sk] padding (-inf and finfo.min), 2 [1,1,Sq,Sk] additive
  for (const Case &cs : {Case{2, 4, 4, 37, 37, 32, false, 1, "mask"}, Case{1, 9, 3, 70, 70, 64, true, 0, "causal GQA 9/3 d64"},
                         Case{2, 9, 3, 33, 33, 64, true, 1, "causal GQA with padding mask"}, Case{1, 2, 1, 5, 40, 80, true, 2, "causal Sk > Sq, d80"},
                         Case{1, 2, 2, 17, 17, 256, false, 2, "d256"}, Case{1, 12, 12, 1, 1, 32, false, 0, "one token"}}) {
    DYNAMIC_SECTION(cs.name) {
      Buf q(DType::F32, {cs.B, cs.H, cs.Sq, cs.D}, randomFloats(size_t(cs.B * cs.H * cs.Sq * cs.D), 80, -2, 2));
      Buf k(DType::F32, {cs.B, cs.Hkv, cs.Sk, cs.D}, randomFloats(size_t(cs.B * cs.Hkv * cs.Sk * cs.D), 81, -2, 2));
      Buf v(DType::F32, {cs.B, cs.Hkv, cs.Sk, cs.D}, randomFloats(size_t(cs.B * cs.Hkv * cs.Sk * cs.D), 82));
      Buf mask;
      if (cs.mask == 1) {
        std::vector<float> m(size_t(cs.B * cs.Sk), 0.0f);
        for (int64_t j = cs.Sk - 5; j < cs.Sk; ++j) m[size_t(j)] = -INFINITY;                              // batch 0: padded end
        if (cs.B > 1) for (int64_t j = cs.Sk - 9; j < cs.Sk; ++j) m[size_t(cs.Sk + j)] = -3.4028234663852886e38f; // finfo.min
        mask = Buf(DType::F32, {cs.B, 1, 1, cs.Sk}, m);
      } else if (cs.mask == 2) {
        mask = Buf(DType::F32, {1, 1, cs.Sq, cs.Sk}, randomFloats(size_t(cs.Sq * cs.Sk), 83, -3, 1));
      }
      const Buf *mp = cs.mask ? &mask : nullptr;
      Buf y(DType::F32, {});
      runCpu("attention", {&q, &k, &v, cs.mask ? &mask : nullptr}, {&y}, {{"causal", int64_t(cs.causal)}});
      std::vector<float> dev(size_t(count(q.view.shape)), NAN);
      emulateAttention(attentionParams(q, k, v, dev.data(), mp, cs.causal));
      requireClose(dev.data(), y.as<float>(), dev.size(), 2e-5f);
    }
  }
}

TEST_CASE("cuda math: attention decoding against a plain-layout KV cache matches the CPU kernel", "[cuda-math]") {
  const int64_t B = 1, H = 9, Hkv = 3, D = 64, cap = 128;
  for (int64_t past : {45, 1, 96})
    for (int64_t n : {1, 3}) {
      DYNAMIC_SECTION("past=" << past << " n=" << n) {
        auto cacheK = randomFloats(size_t(B * Hkv * cap * D), 90, -2, 2), cacheV = randomFloats(size_t(B * Hkv * cap * D), 91);
        Buf q(DType::F32, {B, H, n, D}, randomFloats(size_t(B * H * n * D), 92, -2, 2));
        Buf k(DType::F32, {B, Hkv, n, D}, randomFloats(size_t(B * Hkv * n * D), 93, -2, 2));
        Buf v(DType::F32, {B, Hkv, n, D}, randomFloats(size_t(B * Hkv * n * D), 94));
        // CPU: its own cache copy, plain layout
        std::vector<float> cpuK = cacheK, cpuV = cacheV;
        cpu::KvCache cache{cpuK.data(), cpuV.data(), cap, past, 0, 0};
        Buf y(DType::F32, {});
        runCpu("attention", {&q, &k, &v}, {&y}, {{"causal", int64_t(1)}}, &cache);
        // device: kvAppendKernel's copy, then the attention over [0, past + n)
        std::vector<float> devK = cacheK, devV = cacheV;
        int64_t ks[3], vs[3];
        strides3(k.view.shape, ks), strides3(v.view.shape, vs);
        for (int64_t e = 0; e < B * Hkv * n * D; ++e) {
          const int64_t d = e % D, j = (e / D) % n, bh = e / (D * n), h = bh % Hkv, b = bh / Hkv;
          devK[size_t((bh * cap + past + j) * D + d)] = k.as<float>()[b * ks[0] + h * ks[1] + j * ks[2] + d];
          devV[size_t((bh * cap + past + j) * D + d)] = v.as<float>()[b * vs[0] + h * vs[1] + j * vs[2] + d];
        }
        requireEqual(devK.data(), cpuK.data(), devK.size());
        requireEqual(devV.data(), cpuV.data(), devV.size());
        std::vector<float> dev(size_t(count(q.view.shape)), NAN);
        gm::AttentionParams p = attentionParams(q, k, v, dev.data(), nullptr, true);
        p.k = devK.data(), p.v = devV.data();
        p.kStrides[0] = p.vStrides[0] = Hkv * cap * D;
        p.kStrides[1] = p.vStrides[1] = cap * D;
        p.kStrides[2] = p.vStrides[2] = D;
        p.keySeq = past + n;
        emulateAttention(p);
        requireClose(dev.data(), y.as<float>(), dev.size(), 2e-5f);
      }
    }
}

TEST_CASE("cuda math: the index-map helpers coalesce without changing offsets", "[cuda-math]") {
  // Every operand offset of every element, before and after coalescing.
  const int64_t out[5] = {2, 1, 3, 4, 5};
  const int64_t sa[5] = {2, 1, 3, 4, 5}, sb[3] = {3, 1, 5}, sc[1] = {1};
  const int64_t *shapes[3] = {sa, sb, sc};
  const int ranks[3] = {5, 3, 1};
  gm::IndexMap full{}, merged{};
  full.rank = 5, full.operands = 3;
  for (int d = 0; d < 5; ++d) full.shape[d] = out[d];
  for (int k = 0; k < 3; ++k) gm::broadcastStrides(shapes[k], ranks[k], out, 5, full.strides[k]);
  REQUIRE(gm::broadcastMap(out, 5, shapes, ranks, 3, merged));
  REQUIRE(merged.rank < full.rank);
  for (int64_t i = 0; i < 120; ++i) {
    int64_t a[3], b[3];
    gm::mapOffsets(full, i, a);
    gm::mapOffsets(merged, i, b);
    INFO("element " << i);
    REQUIRE((a[0] == b[0] && a[1] == b[1] && a[2] == b[2]));
  }
  // fastExp is exactly 1 at 0 (the attention correction of an unchanged max).
  REQUIRE(gm::fastExp(0.0f) == 1.0f);
  REQUIRE(gm::rescale(-100.0f) == 0.0f);
}
