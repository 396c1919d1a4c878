// The CPU kernels that KernelTests.cpp does not reach one by one: every unary
// op, the logical and remaining comparison ops, reduce_sum/reduce_min and
// squeeze, each against a double-precision std:: reference at every
// instruction-set level this CPU supports. Rows of 37 elements: not a multiple
// of any vector width (4, 8 or 16 floats).
#include "KernelTestUtil.h"
#include "TestGraph.h"
#include "runtime/cpu/Kernels.h"

#include <catch2/catch.hpp>

#include <functional>
#include <map>

using namespace lathe;
using namespace lathe::test;

namespace {

Tensor boolsOf(const std::vector<uint8_t> &v, std::vector<int64_t> shape) {
  Tensor t = Tensor::zeros(DType::Bool, shape);
  std::memcpy(t.data(), v.data(), v.size());
  return t;
}

void requireNear(const Tensor &t, const std::vector<double> &ref, double tol) {
  REQUIRE(t.dtype() == DType::F32);
  REQUIRE(size_t(t.numel()) == ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const double got = t.data<float>()[i];
    INFO("element " << i << ": got " << got << ", expected " << ref[i]);
    REQUIRE(std::fabs(got - ref[i]) <= tol + tol * std::fabs(ref[i]));
  }
}

} // namespace

TEST_CASE("every unary op matches std:: math in double precision", "[kernels]") {
  const std::map<std::string, std::function<double(double)>> ops = {
      {"identity", [](double x) { return x; }},
      {"sqrt", [](double x) { return std::sqrt(x); }},
      {"erf", [](double x) { return std::erf(x); }},
      {"tanh", [](double x) { return std::tanh(x); }},
      {"exp", [](double x) { return std::exp(x); }},
      {"log", [](double x) { return std::log(x); }},
      {"cos", [](double x) { return std::cos(x); }},
      {"sin", [](double x) { return std::sin(x); }},
      {"relu", [](double x) { return x > 0 ? x : 0; }},
      {"sigmoid", [](double x) { return 1 / (1 + std::exp(-x)); }},
      {"silu", [](double x) { return x / (1 + std::exp(-x)); }},
      {"neg", [](double x) { return -x; }},
      {"abs", [](double x) { return std::fabs(x); }},
      {"reciprocal", [](double x) { return 1 / x; }}};
  // Positive operands for sqrt/log/reciprocal, signed ones for the rest.
  const auto positive = randomFloats(3 * 37, 31, 0.05f, 4.0f), signedValues = randomFloats(3 * 37, 32, -4.0f, 4.0f);
  Graph g;
  int32_t pos = g.input("pos", DType::F32, 2), sgn = g.input("sgn", DType::F32, 2);
  std::vector<std::string> order;
  for (const auto &[name, fn] : ops) {
    const bool needsPositive = name == "sqrt" || name == "log" || name == "reciprocal";
    int32_t y = g.tensor(name, DType::F32, 2);
    g.kernel(name, {needsPositive ? pos : sgn}, {y});
    g.output(y);
    order.push_back(name);
  }
  // f16 operands run through f32 and round back.
  int32_t half = g.input("half", DType::F16, 2), halfSilu = g.tensor("half_silu", DType::F16, 2),
          halfWide = g.tensor("half_silu_f32", DType::F32, 2);
  g.kernel("silu", {half}, {halfSilu});
  g.kernel("cast", {halfSilu}, {halfWide}, {{"to", std::string("f32")}});
  g.output(halfWide);
  int32_t flags = g.input("flags", DType::Bool, 2), notFlags = g.tensor("not", DType::Bool, 2);
  g.kernel("not", {flags}, {notFlags});
  g.output(notFlags);

  Tensor halfIn = Tensor::zeros(DType::F16, {3, 37});
  Tensor wide = tensorOf(signedValues, {3, 37});
  {
    // The f16 input: the signed values cast to f16 by the runtime's own cast on a one-kernel graph.
    Graph cast;
    int32_t x = cast.input("x", DType::F32, 2), h = cast.tensor("h", DType::F16, 2);
    cast.kernel("cast", {x}, {h}, {{"to", std::string("f16")}});
    cast.output(h);
    halfIn = std::move(runOne(cast, {{"x", wide}}, "")[0].tensor);
  }
  std::vector<uint8_t> bits(3 * 37);
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = uint8_t((i * 7 + 3) % 5 < 2);

  for (const auto &isa : cpu::supportedIsas()) {
    DYNAMIC_SECTION(isa) {
      auto res = runOne(g, {{"pos", tensorOf(positive, {3, 37})}, {"sgn", wide}, {"half", halfIn}, {"flags", boolsOf(bits, {3, 37})}},
                          isa);
      for (size_t o = 0; o < order.size(); ++o) {
        const bool needsPositive = order[o] == "sqrt" || order[o] == "log" || order[o] == "reciprocal";
        const auto &in = needsPositive ? positive : signedValues;
        std::vector<double> ref;
        for (float x : in) ref.push_back(ops.at(order[o])(double(x)));
        INFO("op " << order[o]);
        requireNear(res[o].tensor, ref, 2e-6);
      }
      // silu on f16: the f16 operand widened exactly, the result rounded to f16 (relative 2^-11).
      std::vector<double> ref;
      const Tensor &h = res[order.size()].tensor;
      Graph back;
      int32_t x = back.input("x", DType::F16, 2), f = back.tensor("f", DType::F32, 2);
      back.kernel("cast", {x}, {f}, {{"to", std::string("f32")}});
      back.output(f);
      const Tensor exactIn = std::move(runOne(back, {{"x", halfIn}}, isa)[0].tensor);
      for (int64_t i = 0; i < exactIn.numel(); ++i) {
        const double v = exactIn.data<float>()[i];
        ref.push_back(v / (1 + std::exp(-v)));
      }
      requireNear(h, ref, 1.0 / 2048);
      const Tensor &n = res[order.size() + 1].tensor;
      REQUIRE(n.dtype() == DType::Bool);
      for (size_t i = 0; i < bits.size(); ++i) REQUIRE(n.data<uint8_t>()[i] == uint8_t(!bits[i]));
    }
  }
}

TEST_CASE("logical and comparison ops broadcast like numpy", "[kernels]") {
  // a [2, 3, 37] against b [37] (trailing) and against c [3, 1] (middle).
  auto a = randomFloats(2 * 3 * 37, 41, -1, 1), b = randomFloats(37, 42, -1, 1), cv = randomFloats(3, 43, -1, 1);
  for (size_t i = 0; i < a.size(); i += 5) a[i] = b[i % 37]; // some exact ties for the _equal ops
  Graph g;
  int32_t ta = g.input("a", DType::F32, 3);
  int32_t tb = g.weight("b", DType::F32, {37}, b);
  int32_t tc = g.weight("c", DType::F32, {3, 1}, cv);
  const std::vector<std::string> compares = {"equal", "less", "less_equal", "greater", "greater_equal"};
  for (const auto &op : compares) {
    int32_t y = g.tensor(op, DType::Bool, 3);
    g.kernel(op, {ta, tb}, {y});
    g.output(y);
  }
  int32_t lb = g.tensor("lb", DType::Bool, 3), lc = g.tensor("lc", DType::Bool, 3), andY = g.tensor("and", DType::Bool, 3),
          orY = g.tensor("or", DType::Bool, 3);
  g.kernel("less", {ta, tb}, {lb});
  g.kernel("greater", {ta, tc}, {lc});
  g.kernel("and", {lb, lc}, {andY});
  g.kernel("or", {lb, lc}, {orY});
  g.output(andY);
  g.output(orY);
  for (const auto &isa : cpu::supportedIsas()) {
    DYNAMIC_SECTION(isa) {
      auto res = runOne(g, {{"a", tensorOf(a, {2, 3, 37})}}, isa);
      for (size_t i = 0; i < a.size(); ++i) {
        const float x = a[i], y = b[i % 37], z = cv[i / 37 % 3];
        const bool want[] = {x == y, x < y, x <= y, x > y, x >= y, x < y && x > z, x < y || x > z};
        for (size_t o = 0; o < 7; ++o) {
          INFO((o < 5 ? compares[o] : o == 5 ? "and" : "or") << " element " << i);
          REQUIRE(res[o].tensor.dtype() == DType::Bool);
          REQUIRE(res[o].tensor.data<uint8_t>()[i] == uint8_t(want[o]));
        }
      }
    }
  }
}

TEST_CASE("reduce_sum, reduce_min and squeeze", "[kernels]") {
  auto a = randomFloats(2 * 1 * 37 * 3, 51, -3, 3);
  Graph g;
  int32_t ta = g.input("a", DType::F32, 4); // [2, 1, 37, 3]
  int32_t sum = g.tensor("sum", DType::F32, 4), mn = g.tensor("min", DType::F32, 2), sq = g.tensor("sq", DType::F32, 3),
          sqAll = g.tensor("sq_all", DType::F32, 3);
  g.kernel("reduce_sum", {ta}, {sum}, {{"axes", std::vector<int64_t>{-2}}, {"keepdims", int64_t(1)}});
  g.kernel("reduce_min", {ta}, {mn}, {{"axes", std::vector<int64_t>{1, 3}}, {"keepdims", int64_t(0)}});
  g.kernel("squeeze", {ta}, {sq}, {{"axes", std::vector<int64_t>{1}}});
  g.kernel("squeeze", {ta}, {sqAll});
  for (int32_t t : {sum, mn, sq, sqAll}) g.output(t);
  auto at = [&](int i, int j, int k) { return double(a[size_t((i * 37 + j) * 3 + k)]); };
  for (const auto &isa : cpu::supportedIsas()) {
    DYNAMIC_SECTION(isa) {
      auto res = runOne(g, {{"a", tensorOf(a, {2, 1, 37, 3})}}, isa);
      REQUIRE(res[0].tensor.shape() == std::vector<int64_t>{2, 1, 1, 3});
      std::vector<double> rSum, rMin;
      for (int i = 0; i < 2; ++i)
        for (int k = 0; k < 3; ++k) {
          double s = 0;
          for (int j = 0; j < 37; ++j) s += at(i, j, k);
          rSum.push_back(s);
        }
      requireNear(res[0].tensor, rSum, 1e-5);
      REQUIRE(res[1].tensor.shape() == std::vector<int64_t>{2, 37});
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 37; ++j) rMin.push_back(std::min({at(i, j, 0), at(i, j, 1), at(i, j, 2)}));
      requireNear(res[1].tensor, rMin, 0);
      std::vector<double> same(a.begin(), a.end());
      REQUIRE(res[2].tensor.shape() == std::vector<int64_t>{2, 37, 3});
      requireNear(res[2].tensor, same, 0);
      REQUIRE(res[3].tensor.shape() == std::vector<int64_t>{2, 37, 3});
      requireNear(res[3].tensor, same, 0);
    }
  }
  SECTION("squeezing a dimension that is not 1 is an error naming it") {
    Graph bad;
    int32_t x = bad.input("x", DType::F32, 2), y = bad.tensor("y", DType::F32, 1);
    bad.kernel("squeeze", {x}, {y}, {{"axes", std::vector<int64_t>{0}}}, "/model/Squeeze_7");
    bad.output(y);
    auto session = bad.open("", 1);
    REQUIRE(session.ok());
    auto out = (*session)->run({{"x", tensorOf(std::vector<float>(6, 1.0f), {2, 3})}});
    REQUIRE_FALSE(out.ok());
    CHECK_THAT(out.error(), Catch::Contains("/model/Squeeze_7") && Catch::Contains("cannot squeeze dimension 0"));
  }
}

TEST_CASE("transpose and same-shape arithmetic split across threads match one thread", "[kernels]") {
  // Large enough (over 64 KiB) for the pool's split; leading dims 1 and 3 exercise how many are flattened.
  for (const std::vector<int64_t> &shape : {std::vector<int64_t>{3, 40, 12, 32}, std::vector<int64_t>{1, 12, 70, 32}}) {
    int64_t total = 1;
    for (int64_t d : shape) total *= d;
    const auto a = randomFloats(size_t(total), 61), b = randomFloats(size_t(total), 62);
    for (const std::vector<int64_t> &perm : {std::vector<int64_t>{0, 2, 1, 3}, std::vector<int64_t>{2, 0, 3, 1}}) {
      Graph g;
      int32_t ta = g.input("a", DType::F32, 4), tb = g.input("b", DType::F32, 4);
      int32_t t = g.tensor("t", DType::F32, 4), s = g.tensor("s", DType::F32, 4), d = g.tensor("d", DType::F32, 4);
      g.kernel("transpose", {ta}, {t}, {{"perm", perm}});
      g.kernel("add", {ta, tb}, {s});
      g.kernel("div", {ta, tb}, {d});
      for (int32_t o : {t, s, d}) g.output(o);
      const std::map<std::string, Tensor> inputs = {{"a", tensorOf(a, shape)}, {"b", tensorOf(b, shape)}};
      auto res = runOne(g, inputs, "", 2);
      std::vector<int64_t> outShape;
      for (int64_t p : perm) outShape.push_back(shape[size_t(p)]);
      REQUIRE(res[0].tensor.shape() == outShape);
      // The naive transpose: out[i0, i1, i2, i3] = a[index with in[perm[k]] = i_k].
      std::vector<double> want;
      int64_t in[4];
      for (int64_t i0 = 0; i0 < outShape[0]; ++i0)
        for (int64_t i1 = 0; i1 < outShape[1]; ++i1)
          for (int64_t i2 = 0; i2 < outShape[2]; ++i2)
            for (int64_t i3 = 0; i3 < outShape[3]; ++i3) {
              const int64_t out[4] = {i0, i1, i2, i3};
              for (int k = 0; k < 4; ++k) in[perm[size_t(k)]] = out[k];
              want.push_back(a[size_t(((in[0] * shape[1] + in[1]) * shape[2] + in[2]) * shape[3] + in[3])]);
            }
      requireNear(res[0].tensor, want, 0);
      std::vector<double> sum, quotient;
      for (size_t i = 0; i < a.size(); ++i) sum.push_back(a[i] + b[i]), quotient.push_back(a[i] / b[i]);
      requireNear(res[1].tensor, sum, 0);
      requireNear(res[2].tensor, quotient, 0);
      auto one = runOne(g, inputs, "", 1);
      for (size_t o = 0; o < 3; ++o)
        REQUIRE(std::memcmp(one[o].tensor.data(), res[o].tensor.data(), size_t(total) * 4) == 0);
    }
  }
}
