// Every kernel against a naive reference, at every instruction-set level this
// CPU supports, with sizes that are not multiples of any vector width.
#include "KernelTestUtil.h"
#include "TestGraph.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/OneDnn.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <limits>

using namespace lathe;
using namespace lathe::test;

namespace {

std::vector<std::string> isas() { return cpu::supportedIsas(); }

void requireClose(const Tensor &t, const std::vector<float> &ref, float tol = 1e-4f) {
  REQUIRE(t.dtype() == DType::F32);
  REQUIRE(size_t(t.numel()) == ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    float got = t.data<float>()[i];
    if (std::isnan(got) && std::isnan(ref[i])) continue;
    INFO("element " << i << ": got " << got << ", expected " << ref[i]);
    REQUIRE(std::fabs(got - ref[i]) <= tol + tol * std::fabs(ref[i]));
  }
}


} // namespace

TEST_CASE("linear matches a naive x·Wᵀ+b", "[kernels]") {
  for (auto isa : isas()) {
    for (auto [m, k, n] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{7, 37, 45}, {13, 300, 70}, {1, 5, 3}, {20, 1, 33}}) {
      DYNAMIC_SECTION(isa << " m=" << m << " k=" << k << " n=" << n) {
        auto x = randomFloats(size_t(m * k), 1), w = randomFloats(size_t(n * k), 2), b = randomFloats(size_t(n), 3);
        Graph g;
        int32_t in = g.input("x", DType::F32, 3);
        int32_t wt = g.weight("w", DType::F32, {n, k}, w), bt = g.weight("b", DType::F32, {n}, b);
        int32_t out = g.tensor("y", DType::F32, 3);
        g.kernel("linear", {in, wt, bt}, {out});
        g.output(out);
        auto res = runOne(g, {{"x", tensorOf(x, {1, m, k})}}, isa);
        std::vector<float> ref(size_t(m * n));
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double s = b[size_t(j)];
            for (int64_t p = 0; p < k; ++p) s += double(x[size_t(i * k + p)]) * w[size_t(j * k + p)];
            ref[size_t(i * n + j)] = float(s);
          }
        REQUIRE(res[0].tensor.shape() == std::vector<int64_t>{1, m, n});
        requireClose(res[0].tensor, ref);
      }
    }
  }
}

namespace {
/// Sets LATHE_GEMM for one scope (sessions choose their GEMM at open).
struct GemmMode {
  std::string saved;
  bool had;
  explicit GemmMode(const char *mode) : had(std::getenv("LATHE_GEMM") != nullptr) {
    if (had) saved = std::getenv("LATHE_GEMM");
    ::setenv("LATHE_GEMM", mode, 1);
  }
  ~GemmMode() {
    if (had) ::setenv("LATHE_GEMM", saved.c_str(), 1);
    else ::unsetenv("LATHE_GEMM");
  }
};
} // namespace

TEST_CASE("fp32 GEMM: oneDNN (LATHE_GEMM) and Lathe's own match x·Wᵀ+b at the best level, at any thread count", "[kernels]") {
  const std::string best = isas().back();
  std::string why;
  const bool oneDnn = cpu::sgemmFor(best.c_str(), why) != nullptr;
  if (!oneDnn) {
    INFO("oneDNN: " << cpu::sgemmSummary());
    // CI installs libdnnl (scripts/lib/common.sh): it must be in use there.
    const char *ci = std::getenv("CI");
    REQUIRE_FALSE((ci && std::string(ci) == "true" && best != "baseline"));
  }
  if (oneDnn && best == "avx512") { // brgemm kernels: the weight is packed for oneDNN's matmul
    std::string packWhy;
    auto w = randomFloats(size_t(384 * 128), 4);
    auto packed = cpu::packLinear(w.data(), 384, 128, 2, nullptr, packWhy);
    INFO(packWhy);
    REQUIRE(packed);
  }
  for (const char *mode : {"own", "onednn"}) {
    if (std::string(mode) == "onednn" && !oneDnn) continue;
    GemmMode scoped(mode);
    for (auto [m, k, n] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {7, 37, 45}, {1, 64, 33}, {13, 300, 70}, {128, 384, 1536}, {17, 1536, 40}, {3, 1, 5}, {17, 1536, 200}, {128, 1536, 384}, {1, 1536, 384}, {5, 2048, 130}}) {
      INFO(mode << " m=" << m << " k=" << k << " n=" << n);
      auto x = randomFloats(size_t(m * k), 1), w = randomFloats(size_t(n * k), 2), b = randomFloats(size_t(n), 3);
      for (bool bias : {false, true}) {
        Graph g;
        int32_t in = g.input("x", DType::F32, 2);
        std::vector<int32_t> operands = {in, g.weight("w", DType::F32, {n, k}, w)};
        if (bias) operands.push_back(g.weight("b", DType::F32, {n}, b));
        int32_t out = g.tensor("y", DType::F32, 2);
        g.kernel("linear", operands, {out});
        g.output(out);
        std::vector<float> ref(size_t(m * n));
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double s = bias ? b[size_t(j)] : 0.0;
            for (int64_t p = 0; p < k; ++p) s += double(x[size_t(i * k + p)]) * w[size_t(j * k + p)];
            ref[size_t(i * n + j)] = float(s);
          }
        auto one = runOne(g, {{"x", tensorOf(x, {m, k})}}, best, 1);
        requireClose(one[0].tensor, ref, 2e-5f * float(k) / 64.0f + 1e-5f);
        auto two = runOne(g, {{"x", tensorOf(x, {m, k})}}, best, 2);
        REQUIRE(std::memcmp(one[0].tensor.data<float>(), two[0].tensor.data<float>(), size_t(m * n) * 4) == 0);
      }
    }
  }
  { // an unknown mode is an error at open, naming the variable
    GemmMode scoped("blas");
    Graph g;
    int32_t in = g.input("x", DType::F32, 2);
    int32_t out = g.tensor("y", DType::F32, 2);
    g.kernel("linear", {in, g.weight("w", DType::F32, {2, 3}, randomFloats(6, 1))}, {out});
    g.output(out);
    auto session = g.open(best);
    REQUIRE(!session);
    CHECK_THAT(session.error(), Catch::Contains("LATHE_GEMM is 'blas'; expected auto, own or onednn"));
  }
}

TEST_CASE("linear then erf GELU: fused after oneDNN's matmul, and not while a tap watches the product", "[kernels]") {
  const std::string best = isas().back();
  const int64_t k = 96, n = 200;
  auto w = randomFloats(size_t(n * k), 2), b = randomFloats(size_t(n), 3);
  for (int64_t m : {1, 70, 300}) { // one row (column blocks), rows split, blocks of 128 rows
    auto x = randomFloats(size_t(m * k), 1, -2, 2);
    std::vector<float> product(size_t(m * n)), activated(product.size());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = b[size_t(j)];
        for (int64_t p = 0; p < k; ++p) s += double(x[size_t(i * k + p)]) * w[size_t(j * k + p)];
        product[size_t(i * n + j)] = float(s);
        activated[size_t(i * n + j)] = float(0.5 * s * (1 + std::erf(s / std::sqrt(2.0))));
      }
    for (bool alsoOutput : {false, true}) // a second reader of the product: no fusion
      for (int threads : {1, 2}) {
        INFO("m=" << m << " threads=" << threads << (alsoOutput ? " (product also an output)" : ""));
        Graph g;
        int32_t in = g.input("x", DType::F32, 2);
        int32_t y = g.tensor("y", DType::F32, 2), z = g.tensor("z", DType::F32, 2);
        g.kernel("linear", {in, g.weight("w", DType::F32, {n, k}, w), g.weight("b", DType::F32, {n}, b)}, {y}, {}, "fc");
        g.kernel("gelu", {y}, {z}, {{"approximate", std::string("none")}}, "act");
        g.output(z);
        if (alsoOutput) g.output(y);
        auto session = g.open(best, threads);
        REQUIRE(session.ok());
        auto out = (*session)->run({{"x", tensorOf(x, {m, k})}});
        REQUIRE(out.ok());
        requireClose((*out)[0].tensor, activated, 2e-5f);
        if (alsoOutput) requireClose((*out)[1].tensor, product, 2e-5f);
        // A tap on the linear sees the product itself, and the result is unchanged.
        std::vector<float> seen;
        (*session)->addTap("fc", [&](const TapEvent &e) { seen.assign(e.tensor.data<float>(), e.tensor.data<float>() + e.tensor.numel()); });
        auto tapped = (*session)->run({{"x", tensorOf(x, {m, k})}});
        REQUIRE(tapped.ok());
        REQUIRE(seen.size() == product.size());
        for (size_t i = 0; i < seen.size(); ++i) REQUIRE(std::fabs(seen[i] - product[i]) <= 2e-5f + 2e-5f * std::fabs(product[i]));
        requireClose((*tapped)[0].tensor, activated, 2e-5f);
        // Fused (GELU over each block of rows right after its product) or not, the same bits.
        REQUIRE(std::memcmp((*tapped)[0].tensor.data<float>(), (*out)[0].tensor.data<float>(), activated.size() * sizeof(float)) == 0);
      }
  }
}

TEST_CASE("matmul broadcasts batch dims", "[kernels]") {
  for (auto isa : isas()) {
    DYNAMIC_SECTION(isa) {
      int64_t m = 5, k = 19, n = 33;
      auto a = randomFloats(size_t(2 * m * k), 4), b = randomFloats(size_t(3 * k * n), 5);
      Graph g;
      int32_t ta = g.input("a", DType::F32, 4), tb = g.input("b", DType::F32, 3), out = g.tensor("y", DType::F32, 4);
      g.kernel("matmul", {ta, tb}, {out});
      g.output(out);
      auto res = runOne(g, {{"a", tensorOf(a, {2, 1, m, k})}, {"b", tensorOf(b, {3, k, n})}}, isa);
      REQUIRE(res[0].tensor.shape() == std::vector<int64_t>{2, 3, m, n});
      std::vector<float> ref;
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
          for (int64_t r = 0; r < m; ++r)
            for (int64_t c = 0; c < n; ++c) {
              double s = 0;
              for (int64_t p = 0; p < k; ++p) s += double(a[size_t((i * m + r) * k + p)]) * b[size_t((j * k + p) * n + c)];
              ref.push_back(float(s));
            }
      requireClose(res[0].tensor, ref);
    }
  }
}

namespace {
// Naive softmax(scale·QKᵀ + mask + causal)·V.
std::vector<float> naiveAttention(const std::vector<float> &q, const std::vector<float> &k, const std::vector<float> &v,
                                  const std::vector<float> *mask, int64_t B, int64_t H, int64_t Hkv, int64_t Sq, int64_t Sk,
                                  int64_t D, float scale, bool causal) {
  std::vector<float> out(size_t(B * H * Sq * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        int64_t hk = h / (H / Hkv);
        std::vector<double> s(static_cast<size_t>(Sk));
        double mx = -INFINITY;
        for (int64_t j = 0; j < Sk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += double(q[size_t(((b * H + h) * Sq + i) * D + d)]) * k[size_t(((b * Hkv + hk) * Sk + j) * D + d)];
          dot *= scale;
          if (mask) dot += (*mask)[size_t(b * Sk + j)]; // mask shaped [B,1,1,Sk]
          if (causal && j > i + (Sk - Sq)) dot = -INFINITY;
          s[size_t(j)] = dot;
          mx = std::max(mx, dot);
        }
        double sum = 0;
        for (auto &x : s) { x = std::isinf(x) ? 0 : std::exp(x - mx); sum += x; }
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < Sk; ++j) acc += s[size_t(j)] * v[size_t(((b * Hkv + hk) * Sk + j) * D + d)];
          out[size_t(((b * H + h) * Sq + i) * D + d)] = float(acc / sum);
        }
      }
  return out;
}
} // namespace

TEST_CASE("fused attention matches naive softmax(QKᵀ)V", "[kernels]") {
  struct Case { int64_t B, H, Hkv, Sq, Sk, D; bool causal, mask; };
  std::vector<Case> cases = {{2, 4, 2, 5, 9, 20, false, true}, {1, 2, 2, 70, 70, 17, true, false},
                             {2, 3, 1, 3, 131, 8, true, true}, {1, 2, 1, 1, 1, 33, false, false},
                             // head dims of one or two vectors (narrow P·V at some level): tiles of 12/24, 4 and 1 rows
                             {1, 3, 3, 100, 100, 32, true, true}, {2, 2, 1, 37, 150, 16, false, true}, {1, 1, 1, 29, 9, 4, false, false}};
  for (auto isa : isas())
    for (const Case &c : cases) {
      DYNAMIC_SECTION(isa << " B" << c.B << " H" << c.H << "/" << c.Hkv << " Sq" << c.Sq << " Sk" << c.Sk << " D" << c.D << (c.causal ? " causal" : "") << (c.mask ? " mask" : "")) {
        auto q = randomFloats(size_t(c.B * c.H * c.Sq * c.D), 7, -2, 2), k = randomFloats(size_t(c.B * c.Hkv * c.Sk * c.D), 8, -2, 2),
             v = randomFloats(size_t(c.B * c.Hkv * c.Sk * c.D), 9);
        std::vector<float> mask(size_t(c.B * c.Sk), 0.0f);
        for (size_t j = 0; j < mask.size(); j += 3) mask[j] = j % 2 ? -INFINITY : -3.0f;
        mask[size_t(c.Sk - 1)] = 0.0f; // every row keeps a visible key
        Graph g;
        int32_t tq = g.input("q", DType::F32, 4), tk = g.input("k", DType::F32, 4), tv = g.input("v", DType::F32, 4);
        int32_t tm = c.mask ? g.input("mask", DType::F32, 4) : -1;
        int32_t out = g.tensor("o", DType::F32, 4);
        float scale = 1.0f / std::sqrt(float(c.D));
        g.kernel("attention", {tq, tk, tv, tm}, {out},
                 {{"num_heads", c.H}, {"num_kv_heads", c.Hkv}, {"scale", double(scale)}, {"causal", int64_t(c.causal)}});
        g.output(out);
        std::map<std::string, Tensor> inputs = {{"q", tensorOf(q, {c.B, c.H, c.Sq, c.D})}, {"k", tensorOf(k, {c.B, c.Hkv, c.Sk, c.D})},
                                                {"v", tensorOf(v, {c.B, c.Hkv, c.Sk, c.D})}};
        if (c.mask) inputs["mask"] = tensorOf(mask, {c.B, 1, 1, c.Sk});
        auto res = runOne(g, inputs, isa);
        requireClose(res[0].tensor, naiveAttention(q, k, v, c.mask ? &mask : nullptr, c.B, c.H, c.Hkv, c.Sq, c.Sk, c.D, scale, c.causal));
      }
    }
}

TEST_CASE("transposes around attention are folded into its strides, bit for bit, and kept while tapped", "[kernels]") {
  const int64_t B = 2, S = 37, H = 3, D = 32;
  auto q = randomFloats(size_t(B * S * H * D), 7, -2, 2), k = randomFloats(q.size(), 8, -2, 2), v = randomFloats(q.size(), 9);
  auto toBhsd = [&](const std::vector<float> &x) { // [B, S, H, D] -> [B, H, S, D]
    std::vector<float> y(x.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t d = 0; d < D; ++d) y[size_t(((b * H + h) * S + s) * D + d)] = x[size_t(((b * S + s) * H + h) * D + d)];
    return y;
  };
  std::vector<float> ref = naiveAttention(toBhsd(q), toBhsd(k), toBhsd(v), nullptr, B, H, H, S, S, D, 0.2f, true), expect(ref.size());
  for (int64_t b = 0; b < B; ++b) // back to [B, S, H, D]
    for (int64_t h = 0; h < H; ++h)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t d = 0; d < D; ++d) expect[size_t(((b * S + s) * H + h) * D + d)] = ref[size_t(((b * H + h) * S + s) * D + d)];
  for (auto isa : isas())
    for (bool keyAlsoOutput : {false, true}) // a second reader of the transposed key: that one stays
      for (int threads : {1, 2}) {
        INFO(isa << " threads " << threads << (keyAlsoOutput ? " (transposed key also an output)" : ""));
        Graph g;
        int32_t in[3], t[3];
        const char *names[3] = {"q", "k", "v"};
        for (int i = 0; i < 3; ++i) {
          in[i] = g.input(names[i], DType::F32, 4);
          t[i] = g.tensor(std::string(names[i]) + "_t", DType::F32, 4);
          g.kernel("transpose", {in[i]}, {t[i]}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}}, std::string("T_") + names[i]);
        }
        int32_t o = g.tensor("o", DType::F32, 4), y = g.tensor("y", DType::F32, 4);
        g.kernel("attention", {t[0], t[1], t[2]}, {o}, {{"num_heads", H}, {"num_kv_heads", H}, {"scale", 0.2}, {"causal", int64_t(1)}}, "attn");
        g.kernel("transpose", {o}, {y}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}}, "T_out");
        g.output(y);
        if (keyAlsoOutput) g.output(t[1]);
        auto session = g.open(isa, threads);
        REQUIRE(session.ok());
        std::map<std::string, Tensor> feeds = {{"q", tensorOf(q, {B, S, H, D})}, {"k", tensorOf(k, {B, S, H, D})}, {"v", tensorOf(v, {B, S, H, D})}};
        auto folded = (*session)->run(feeds);
        REQUIRE(folded.ok());
        REQUIRE((*folded)[0].tensor.shape() == std::vector<int64_t>{B, S, H, D});
        requireClose((*folded)[0].tensor, expect);
        if (keyAlsoOutput) requireClose((*folded)[1].tensor, toBhsd(k), 0.0f);
        // Taps on every kernel keep every transpose: the same bits, and the taps see real values.
        size_t events = 0;
        bool attnSeen = false;
        (*session)->addTap("*", [&](const TapEvent &e) {
          ++events;
          if (e.source == "attn") {
            attnSeen = true;
            auto bhsd = toBhsd(expect); // attention's own result, [B, H, S, D]
            for (size_t i = 0; i < bhsd.size(); ++i) REQUIRE(std::fabs(e.tensor.data<float>()[i] - bhsd[i]) <= 1e-4f + 1e-4f * std::fabs(bhsd[i]));
          }
        });
        auto kept = (*session)->run(feeds);
        REQUIRE(kept.ok());
        REQUIRE(attnSeen);
        REQUIRE(events == 5);
        REQUIRE(std::memcmp((*kept)[0].tensor.data<float>(), (*folded)[0].tensor.data<float>(), expect.size() * sizeof(float)) == 0);
      }
}

TEST_CASE("layer_norm, rms_norm, softmax, gelu, exp", "[kernels]") {
  for (auto isa : isas()) {
    DYNAMIC_SECTION(isa) {
      int64_t rows = 6, n = 37;
      auto x = randomFloats(size_t(rows * n), 11, -3, 3), scale = randomFloats(size_t(n), 12), bias = randomFloats(size_t(n), 13);
      Graph g;
      int32_t in = g.input("x", DType::F32, 2);
      int32_t ts = g.weight("s", DType::F32, {n}, scale), tb = g.weight("b", DType::F32, {n}, bias);
      int32_t ln = g.tensor("ln", DType::F32, 2), rms = g.tensor("rms", DType::F32, 2), sm = g.tensor("sm", DType::F32, 2),
              sm0 = g.tensor("sm0", DType::F32, 2), ge = g.tensor("ge", DType::F32, 2), gt = g.tensor("gt", DType::F32, 2),
              ex = g.tensor("ex", DType::F32, 2);
      g.kernel("layer_norm", {in, ts, tb}, {ln}, {{"epsilon", 1e-5}});
      g.kernel("rms_norm", {in, ts}, {rms}, {{"epsilon", 1e-6}});
      g.kernel("softmax", {in}, {sm}, {{"axis", int64_t(-1)}});
      g.kernel("softmax", {in}, {sm0}, {{"axis", int64_t(0)}});
      g.kernel("gelu", {in}, {ge}, {{"approximate", std::string("none")}});
      g.kernel("gelu", {in}, {gt}, {{"approximate", std::string("tanh")}});
      g.kernel("exp", {in}, {ex});
      for (int32_t t : {ln, rms, sm, sm0, ge, gt, ex}) g.output(t);
      auto res = runOne(g, {{"x", tensorOf(x, {rows, n})}}, isa);
      std::vector<float> rLn, rRms, rSm, rSm0(x.size()), rGe, rGt, rEx;
      for (int64_t r = 0; r < rows; ++r) {
        double mean = 0, var = 0, ms = 0, mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; ++j) { mean += x[size_t(r * n + j)]; mx = std::max<double>(mx, x[size_t(r * n + j)]); }
        mean /= double(n);
        for (int64_t j = 0; j < n; ++j) { double d = x[size_t(r * n + j)] - mean; var += d * d; ms += double(x[size_t(r * n + j)]) * x[size_t(r * n + j)]; sum += std::exp(x[size_t(r * n + j)] - mx); }
        var /= double(n); ms /= double(n);
        for (int64_t j = 0; j < n; ++j) {
          double v = x[size_t(r * n + j)];
          rLn.push_back(float((v - mean) / std::sqrt(var + 1e-5) * scale[size_t(j)] + bias[size_t(j)]));
          rRms.push_back(float(v / std::sqrt(ms + 1e-6) * scale[size_t(j)]));
          rSm.push_back(float(std::exp(v - mx) / sum));
          rGe.push_back(float(0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))));
          rGt.push_back(float(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))));
          rEx.push_back(float(std::exp(v)));
        }
      }
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (int64_t r = 0; r < rows; ++r) sum += std::exp(double(x[size_t(r * n + j)]));
        for (int64_t r = 0; r < rows; ++r) rSm0[size_t(r * n + j)] = float(std::exp(double(x[size_t(r * n + j)])) / sum);
      }
      requireClose(res[0].tensor, rLn);
      requireClose(res[1].tensor, rRms);
      requireClose(res[2].tensor, rSm);
      requireClose(res[3].tensor, rSm0);
      requireClose(res[4].tensor, rGe);
      requireClose(res[5].tensor, rGt);
      requireClose(res[6].tensor, rEx);
    }
  }
}

TEST_CASE("rotary equals slice/neg/concat/mul/mul/add bit for bit, with cos/sin broadcast", "[kernels]") {
  // x [B, H, S, D]; cos/sin as GGUF builds them ([S, D]) and as transformers exports them ([1, 1, S, D]).
  const int64_t B = 2, H = 3, S = 5;
  for (int64_t D : {64, 16, 6}) {
    for (bool rank4 : {false, true}) {
      DYNAMIC_SECTION("D=" << D << (rank4 ? " cos [1,1,S,D]" : " cos [S,D]")) {
        auto x = randomFloats(size_t(B * H * S * D), 11), cs = randomFloats(size_t(S * D), 12), sn = randomFloats(size_t(S * D), 13);
        std::vector<int64_t> tableShape = rank4 ? std::vector<int64_t>{1, 1, S, D} : std::vector<int64_t>{S, D};
        Graph g;
        int32_t tx = g.input("x", DType::F32, 4);
        int32_t tc = g.weight("cos", DType::F32, tableShape, cs), ts = g.weight("sin", DType::F32, tableShape, sn);
        auto i64 = [&](const std::string &n, std::vector<int64_t> v) { return g.weight(n, DType::I64, {int64_t(v.size())}, v); };
        int32_t fused = g.tensor("fused", DType::F32, 4), lo = g.tensor("lo", DType::F32, 4), hi = g.tensor("hi", DType::F32, 4),
                nh = g.tensor("nh", DType::F32, 4), rot = g.tensor("rot", DType::F32, 4), a = g.tensor("a", DType::F32, 4),
                b = g.tensor("b", DType::F32, 4), ref = g.tensor("ref", DType::F32, 4);
        g.kernel("rotary", {tx, tc, ts}, {fused});
        g.kernel("slice", {tx, i64("z", {0}), i64("h", {D / 2}), i64("ax", {3}), i64("st", {1})}, {lo});
        g.kernel("slice", {tx, i64("h2", {D / 2}), i64("e", {D}), i64("ax2", {3}), i64("st2", {1})}, {hi});
        g.kernel("neg", {hi}, {nh});
        g.kernel("concat", {nh, lo}, {rot}, {{"axis", int64_t(3)}});
        g.kernel("mul", {tx, tc}, {a});
        g.kernel("mul", {rot, ts}, {b});
        g.kernel("add", {a, b}, {ref});
        g.output(fused);
        g.output(ref);
        auto res = runOne(g, {{"x", tensorOf(x, {B, H, S, D})}}, isas().back());
        REQUIRE(res[0].tensor.shape() == std::vector<int64_t>{B, H, S, D});
        REQUIRE(std::memcmp(res[0].tensor.data<float>(), res[1].tensor.data<float>(), size_t(B * H * S * D) * 4) == 0);
        // And against the formula in double (rounding of two products and a sum).
        std::vector<float> expect(x.size());
        for (int64_t r = 0; r < B * H * S; ++r)
          for (int64_t j = 0; j < D; ++j) {
            const int64_t t = (r % S) * D + j, half = D / 2;
            const double rotated = j < half ? -double(x[size_t(r * D + j + half)]) : double(x[size_t(r * D + j - half)]);
            expect[size_t(r * D + j)] = float(double(x[size_t(r * D + j)]) * cs[size_t(t)] + rotated * sn[size_t(t)]);
          }
        requireClose(res[0].tensor, expect, 1e-6f);
      }
    }
  }
  SECTION("cos/sin that would grow x, differ, or an odd D are errors naming the node") {
    auto bad = [](std::vector<int64_t> xs, std::vector<int64_t> cshape, std::vector<int64_t> sshape) {
      Graph g;
      int32_t tx = g.input("x", DType::F32, int(xs.size()));
      int64_t cn = 1, sn = 1;
      for (int64_t d : cshape) cn *= d;
      for (int64_t d : sshape) sn *= d;
      int32_t tc = g.weight("cos", DType::F32, cshape, std::vector<float>(size_t(cn), 0.5f));
      int32_t ts = g.weight("sin", DType::F32, sshape, std::vector<float>(size_t(sn), 0.5f));
      int32_t y = g.tensor("y", DType::F32, int(xs.size()));
      g.kernel("rotary", {tx, tc, ts}, {y});
      g.output(y);
      int64_t n = 1;
      for (int64_t d : xs) n *= d;
      auto session = g.open();
      REQUIRE(session.ok());
      auto r = (*session)->run({{"x", tensorOf(std::vector<float>(size_t(n), 1.0f), xs)}});
      REQUIRE_FALSE(r.ok());
      return r.error();
    };
    CHECK_THAT(bad({1, 2, 3, 8}, {4, 8}, {4, 8}), Catch::Contains("do not broadcast") && Catch::Contains("rotary"));
    CHECK_THAT(bad({1, 2, 3, 8}, {3, 8}, {3, 4}), Catch::Contains("differ"));
    CHECK_THAT(bad({1, 2, 3, 7}, {3, 7}, {3, 7}), Catch::Contains("must be even"));
  }
}

TEST_CASE("elementwise, compare, where, cast, reduce", "[kernels]") {
  auto a = randomFloats(2 * 3 * 5, 21, -2, 2), b = randomFloats(5, 22, 0.5f, 2);
  Graph g;
  int32_t ta = g.input("a", DType::F32, 3);
  int32_t tb = g.weight("b", DType::F32, {5}, b);
  std::map<std::string, int32_t> outs;
  for (const char *op : {"add", "sub", "mul", "div", "max", "min", "pow"}) {
    outs[op] = g.tensor(op, DType::F32, 3);
    g.kernel(op, {ta, tb}, {outs[op]});
  }
  int32_t less = g.tensor("less", DType::Bool, 3), sel = g.tensor("sel", DType::F32, 3), half = g.tensor("half", DType::F16, 3),
          back = g.tensor("back", DType::F32, 3), mean = g.tensor("mean", DType::F32, 3), mx = g.tensor("rmax", DType::F32, 1),
          relu = g.tensor("relu", DType::F32, 3), sig = g.tensor("sig", DType::F32, 3), ints = g.tensor("ints", DType::I64, 3);
  g.kernel("less", {ta, tb}, {less});
  g.kernel("where", {less, ta, tb}, {sel});
  g.kernel("cast", {ta}, {half}, {{"to", std::string("f16")}});
  g.kernel("cast", {half}, {back}, {{"to", std::string("f32")}});
  g.kernel("reduce_mean", {ta}, {mean}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t(1)}});
  g.kernel("reduce_max", {ta}, {mx}, {{"axes", std::vector<int64_t>{0, -1}}, {"keepdims", int64_t(0)}});
  g.kernel("relu", {ta}, {relu});
  g.kernel("sigmoid", {ta}, {sig});
  g.kernel("cast", {ta}, {ints}, {{"to", std::string("i64")}});
  for (const char *op : {"add", "sub", "mul", "div", "max", "min", "pow"}) g.output(outs[op]);
  for (int32_t t : {less, sel, back, mean, mx, relu, sig, ints}) g.output(t);
  for (auto isa : isas()) {
    DYNAMIC_SECTION(isa) {
      auto res = runOne(g, {{"a", tensorOf(a, {2, 3, 5})}}, isa);
      std::vector<float> r[7], rSel, rBack, rMean, rMax(3, -INFINITY), rRelu, rSig;
      std::vector<uint8_t> rLess;
      for (size_t i = 0; i < a.size(); ++i) {
        float x = a[i], y = b[i % 5];
        r[0].push_back(x + y); r[1].push_back(x - y); r[2].push_back(x * y); r[3].push_back(x / y);
        r[4].push_back(std::max(x, y)); r[5].push_back(std::min(x, y)); r[6].push_back(std::pow(x, y));
        rLess.push_back(x < y); rSel.push_back(x < y ? x : y); rRelu.push_back(std::max(x, 0.0f)); rSig.push_back(1 / (1 + std::exp(-x)));
        rMax[i / 5 % 3] = std::max(rMax[i / 5 % 3], x);
      }
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 5; ++j) {
          double s = 0;
          for (int k = 0; k < 3; ++k) s += a[size_t((i * 3 + k) * 5 + j)];
          rMean.push_back(float(s / 3));
        }
      for (int i = 0; i < 7; ++i) { INFO("binary op " << i); requireClose(res[size_t(i)].tensor, r[i], 1e-5f); }
      const Tensor &tl = res[7].tensor;
      REQUIRE(tl.dtype() == DType::Bool);
      for (size_t i = 0; i < rLess.size(); ++i) REQUIRE(tl.data<uint8_t>()[i] == rLess[i]);
      requireClose(res[8].tensor, rSel, 0);
      requireClose(res[9].tensor, a, 1e-3f); // f16 round trip
      REQUIRE(res[10].tensor.shape() == std::vector<int64_t>{2, 1, 5});
      requireClose(res[10].tensor, rMean, 1e-5f);
      REQUIRE(res[11].tensor.shape() == std::vector<int64_t>{3});
      requireClose(res[11].tensor, rMax, 0);
      requireClose(res[12].tensor, rRelu, 0);
      requireClose(res[13].tensor, rSig, 1e-6f);
      for (size_t i = 0; i < a.size(); ++i) REQUIRE(res[14].tensor.data<int64_t>()[i] == int64_t(a[i]));
    }
  }
}

TEST_CASE("shape and data-movement ops", "[kernels]") {
  // x: [2, 3, 4] = 0..23
  std::vector<float> x(24);
  for (int i = 0; i < 24; ++i) x[size_t(i)] = float(i);
  Graph g;
  int32_t tx = g.input("x", DType::F32, {Dim{-1, "batch"}, Dim{3, ""}, Dim{4, ""}});
  auto i64 = [&](const std::string &n, std::vector<int64_t> v) { return g.weight(n, DType::I64, {int64_t(v.size())}, v); };
  int32_t shp = g.tensor("shape", DType::I64, 1), tr = g.tensor("tr", DType::F32, 3), cat = g.tensor("cat", DType::F32, 3),
          sl = g.tensor("sl", DType::F32, 3), sp0 = g.tensor("sp0", DType::F32, 3), sp1 = g.tensor("sp1", DType::F32, 3),
          rs = g.tensor("rs", DType::F32, 2), sq = g.tensor("sq", DType::F32, 2), usq = g.tensor("usq", DType::F32, 4),
          ex = g.tensor("ex", DType::F32, 4), ga = g.tensor("ga", DType::F32, 3), tri = g.tensor("tri", DType::F32, 3),
          pos = g.tensor("pos", DType::I64, 1), fill = g.tensor("fill", DType::F32, 2), rng = g.tensor("rng", DType::I64, 1),
          sc = g.tensor("sc", DType::F32, 3), emb = g.tensor("emb", DType::F32, 2), first = g.tensor("first", DType::I64, 1),
          rsShape = g.tensor("rsShape", DType::I64, 1);
  g.kernel("shape_of", {tx}, {shp});
  g.kernel("transpose", {tx}, {tr}, {{"perm", std::vector<int64_t>{2, 0, 1}}});
  g.kernel("concat", {tx, tx}, {cat}, {{"axis", int64_t(-1)}});
  g.kernel("slice", {tx, i64("st", {-1, 3}), i64("en", {-100, 0}), i64("ax", {2, 1}), i64("sp", {-2, -1})}, {sl});
  g.kernel("split", {tx}, {sp0, sp1}, {{"axis", int64_t(2)}, {"sizes", std::vector<int64_t>{1, 3}}});
  // reshape to [0, -1] computed from shape_of: gather(shape, [0]) concat [-1]
  g.kernel("gather", {shp, i64("zero", {0})}, {first}, {{"axis", int64_t(0)}});
  g.kernel("concat", {first, i64("minus1", {-1})}, {rsShape}, {{"axis", int64_t(0)}});
  g.kernel("reshape", {tx, rsShape}, {rs});
  g.kernel("slice", {rs, i64("s0", {0}), i64("e0", {1}), i64("a0", {0}), i64("p0", {1})}, {sq});
  g.kernel("unsqueeze", {tx}, {usq}, {{"axes", std::vector<int64_t>{1}}});
  g.kernel("expand", {usq, i64("exs", {2, 2, 1, 1})}, {ex});
  g.kernel("gather", {tx, i64("gi", {-1, 0})}, {ga}, {{"axis", int64_t(1)}});
  g.kernel("trilu", {tx, i64("k", {1})}, {tri}, {{"upper", int64_t(0)}});
  g.kernel("positions", {tx}, {pos}, {{"axis", int64_t(2)}});
  g.kernel("fill", {i64("fs", {2, 3})}, {fill}, {{"value", 2.5}, {"dtype", std::string("f32")}});
  g.kernel("range", {g.weight("r0", DType::I64, {}, std::vector<int64_t>{1}), g.weight("r1", DType::I64, {}, std::vector<int64_t>{10}),
                     g.weight("r2", DType::I64, {}, std::vector<int64_t>{3})}, {rng});
  g.kernel("scatter_nd", {tx, g.weight("si", DType::I64, {1, 2}, std::vector<int64_t>{1, 2}),
                          g.weight("su", DType::F32, {1, 4}, std::vector<float>{-1, -2, -3, -4})}, {sc});
  g.kernel("embedding", {g.weight("table", DType::F32, {4, 2}, std::vector<float>{0, 1, 10, 11, 20, 21, 30, 31}), pos}, {emb});
  for (int32_t t : {shp, tr, cat, sl, sp0, sp1, rs, ex, ga, tri, pos, fill, rng, sc, emb}) g.output(t);
  auto session = g.open();
  INFO(session.error());
  REQUIRE(session.ok());
  auto res = (*session)->run({{"x", tensorOf(x, {2, 3, 4})}});
  INFO(res.error());
  REQUIRE(res.ok());
  auto &r = *res;
  auto at = [&](size_t o, std::vector<int64_t> idx) {
    const Tensor &t = r[o].tensor;
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) off = off * t.shape()[d] + idx[d];
    return t.dtype() == DType::I64 ? double(t.data<int64_t>()[off]) : double(t.data<float>()[off]);
  };
  auto X = [&](int64_t i, int64_t j, int64_t k) { return double(i * 12 + j * 4 + k); };
  REQUIRE(r[0].tensor.shape() == std::vector<int64_t>{3});
  REQUIRE((at(0, {0}) == 2 && at(0, {1}) == 3 && at(0, {2}) == 4));
  REQUIRE(r[1].tensor.shape() == std::vector<int64_t>{4, 2, 3});
  REQUIRE(at(1, {3, 1, 2}) == X(1, 2, 3));
  REQUIRE(r[2].tensor.shape() == std::vector<int64_t>{2, 3, 8});
  REQUIRE(at(2, {1, 2, 6}) == X(1, 2, 2));
  // slice axis 2 from -1 to -100 step -2 -> k = 3, 1; axis 1 from 3 (clamped to 2) down to 0 exclusive -> j = 2, 1
  REQUIRE(r[3].tensor.shape() == std::vector<int64_t>{2, 2, 2});
  REQUIRE((at(3, {0, 0, 0}) == X(0, 2, 3) && at(3, {1, 1, 1}) == X(1, 1, 1)));
  REQUIRE((r[4].tensor.shape() == std::vector<int64_t>{2, 3, 1} && r[5].tensor.shape() == std::vector<int64_t>{2, 3, 3}));
  REQUIRE(at(5, {1, 0, 2}) == X(1, 0, 3));
  REQUIRE(r[6].tensor.shape() == std::vector<int64_t>{2, 12});
  REQUIRE(r[7].tensor.shape() == std::vector<int64_t>{2, 2, 3, 4});
  REQUIRE(at(7, {1, 0, 2, 3}) == X(1, 2, 3));
  REQUIRE(r[8].tensor.shape() == std::vector<int64_t>{2, 2, 4});
  REQUIRE((at(8, {0, 0, 1}) == X(0, 2, 1) && at(8, {1, 1, 3}) == X(1, 0, 3)));
  REQUIRE((at(9, {0, 0, 1}) == X(0, 0, 1) && at(9, {0, 0, 2}) == 0 && at(9, {1, 2, 3}) == X(1, 2, 3)));
  REQUIRE((r[10].tensor.shape() == std::vector<int64_t>{4} && at(10, {3}) == 3));
  REQUIRE((r[11].tensor.shape() == std::vector<int64_t>{2, 3} && at(11, {1, 2}) == 2.5));
  REQUIRE((r[12].tensor.shape() == std::vector<int64_t>{3} && at(12, {2}) == 7));
  REQUIRE((at(13, {1, 2, 1}) == -2 && at(13, {1, 1, 1}) == X(1, 1, 1)));
  REQUIRE((r[14].tensor.shape() == std::vector<int64_t>{4, 2} && at(14, {3, 1}) == 31));
}

TEST_CASE("user errors name the thing", "[kernels]") {
  Graph g;
  int32_t ids = g.input("ids", DType::I64, {Dim{-1, "batch"}, Dim{-1, "sequence"}});
  int32_t mask = g.input("mask", DType::I64, {Dim{-1, "batch"}, Dim{-1, "sequence"}});
  int32_t emb = g.tensor("emb", DType::F32, 3), sum = g.tensor("sum", DType::I64, 2);
  g.kernel("embedding", {g.weight("table", DType::F32, {3, 2}, std::vector<float>(6, 1.0f)), ids}, {emb}, {}, "/embeddings/Gather");
  g.kernel("add", {ids, mask}, {sum});
  g.output(emb);
  g.output(sum);
  auto session = g.open();
  REQUIRE(session.ok());
  auto bad = (*session)->run({{"ids", tensorOf(std::vector<int64_t>{0, 1, 7}, {1, 3})}, {"mask", tensorOf(std::vector<int64_t>{1, 1, 1}, {1, 3})}});
  REQUIRE(!bad.ok());
  CHECK_THAT(bad.error(), Catch::Contains("/embeddings/Gather") && Catch::Contains("7"));
  auto shape = (*session)->run({{"ids", tensorOf(std::vector<int64_t>{0, 1, 2}, {1, 3})}, {"mask", tensorOf(std::vector<int64_t>{1, 1}, {1, 2})}});
  REQUIRE(!shape.ok());
  CHECK_THAT(shape.error(), Catch::Contains("mask") && Catch::Contains("[1,2]") && Catch::Contains("sequence"));
  auto dtype = (*session)->run({{"ids", tensorOf(std::vector<float>{0, 1, 2}, {1, 3})}, {"mask", tensorOf(std::vector<int64_t>{1, 1, 1}, {1, 3})}});
  REQUIRE(!dtype.ok());
  CHECK_THAT(dtype.error(), Catch::Contains("ids") && Catch::Contains("i64"));
  auto missing = (*session)->run({{"ids", tensorOf(std::vector<int64_t>{0, 1, 2}, {1, 3})}});
  REQUIRE(!missing.ok());
  CHECK_THAT(missing.error(), Catch::Contains("mask"));
  auto good = (*session)->run({{"ids", tensorOf(std::vector<int64_t>{0, 1, 2}, {1, 3})}, {"mask", tensorOf(std::vector<int64_t>{1, 1, 1}, {1, 3})}});
  REQUIRE(good.ok());
}

namespace {
uint16_t floatToHalf(float f) { // round to nearest even; normal range only (test values)
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exponent = int32_t((x >> 23) & 0xFF) - 127 + 15;
  uint32_t mantissa = x & 0x7FFFFFu;
  if (exponent <= 0) return uint16_t(sign);
  uint32_t h = sign | uint32_t(exponent) << 10 | mantissa >> 13;
  uint32_t rest = mantissa & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) ++h;
  return uint16_t(h);
}
float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  if (exponent == 0) return (sign ? -1.0f : 1.0f) * float(mantissa) * 5.9604644775390625e-8f;
  uint32_t bits = sign | (exponent + 112) << 23 | mantissa << 13;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// A compact weight and the floats it stands for (the naive reference multiplies by these).
struct CompactWeight {
  std::string format;
  std::vector<uint8_t> q;
  std::vector<uint16_t> scales, mins;
  std::vector<float> dequantized;
  int64_t group = 0;
};

CompactWeight makeCompact(const std::string &format, int64_t n, int64_t k, int64_t group, bool asym, uint32_t seed) {
  CompactWeight w;
  w.format = format;
  w.group = group;
  std::vector<float> raw = randomFloats(size_t(n * k), seed);
  w.dequantized.resize(raw.size());
  if (format == "bf16") {
    w.q.resize(raw.size() * 2);
    for (size_t i = 0; i < raw.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &raw[i], 4);
      uint16_t h = uint16_t(bits >> 16);
      std::memcpy(&w.q[2 * i], &h, 2);
      uint32_t back = uint32_t(h) << 16;
      std::memcpy(&w.dequantized[i], &back, 4);
    }
    return w;
  }
  if (format == "fp16") { // IEEE half, round to nearest even (the test's own conversion)
    w.q.resize(raw.size() * 2);
    for (size_t i = 0; i < raw.size(); ++i) {
      const uint16_t h = floatToHalf(raw[i]);
      std::memcpy(&w.q[2 * i], &h, 2);
      w.dequantized[i] = halfToFloat(h);
    }
    return w;
  }
  const int64_t groups = (k + group - 1) / group; // the last group may be shorter
  w.q.assign(format == "int8" ? size_t(n * k) : format == "int3" ? size_t(n * k / 32 * 12) : size_t(n * k / 2), 0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t size = std::min(group, k - g * group);
      float lo = 1e30f, hi = -1e30f, amax = 0;
      for (int64_t i = 0; i < size; ++i) {
        float v = raw[size_t(r * k + g * group + i)];
        lo = std::min(lo, v), hi = std::max(hi, v), amax = std::max(amax, std::fabs(v));
      }
      float d, mn = 0;
      const float levels = format == "int3" ? 7.0f : 15.0f, middle = format == "int3" ? 4.0f : 8.0f;
      if (format == "int8") d = amax / 127.0f;
      else if (asym) d = (hi - lo) / levels, mn = lo;
      else d = amax / (middle - 1.0f);
      uint16_t dh = floatToHalf(d), mh = floatToHalf(mn);
      w.scales.push_back(dh);
      if (asym) w.mins.push_back(mh);
      const float df = halfToFloat(dh), mf = asym ? halfToFloat(mh) : -middle * df;
      for (int64_t i = 0; i < size; ++i) {
        const int64_t col = g * group + i;
        float v = raw[size_t(r * k + col)];
        float value;
        if (format == "int8") {
          int q = int(std::lround(v / df));
          q = std::clamp(q, -127, 127);
          w.q[size_t(r * k + col)] = uint8_t(int8_t(q));
          value = df * float(q);
        } else if (format == "int3") {
          int q = asym ? int(std::lround((v - mf) / df)) : int(std::lround(v / df)) + 4;
          q = std::clamp(q, 0, 7);
          // 12 bytes per 32 weights: low two bits in bytes 0–7 (byte t%8, bits 2·(t/8)), high bit t in bytes 8–11.
          const int64_t block = col / 32, t = col % 32;
          uint8_t *b = &w.q[size_t(r * (k / 32 * 12) + block * 12)];
          b[t % 8] = uint8_t(b[t % 8] | ((q & 3) << (2 * (t / 8))));
          b[8 + t / 8] = uint8_t(b[8 + t / 8] | (((q >> 2) & 1) << (t % 8)));
          value = df * float(q) + mf;
        } else {
          int q = asym ? int(std::lround((v - mf) / df)) : int(std::lround(v / df)) + 8;
          q = std::clamp(q, 0, 15);
          // ggml order: in each 32-block, weight t in the low nibble of byte t, t+16 in the high nibble.
          const int64_t block = col / 32, t = col % 32;
          uint8_t &byte = w.q[size_t(r * (k / 2) + block * 16 + (t % 16))];
          byte = uint8_t(t < 16 ? (byte & 0xF0) | q : (byte & 0x0F) | (q << 4));
          value = df * float(q) + mf;
        }
        w.dequantized[size_t(r * k + col)] = value;
      }
    }
  return w;
}
} // namespace

TEST_CASE("compact-weight linear (int8, int4 and int3 sym/asym, bf16, fp16) matches x·W_deqᵀ+b", "[kernels][quant]") {
  struct Case { std::string format; int64_t group; bool asym; };
  const std::vector<Case> cases = {{"int8", 0, false}, {"int8", 32, false}, {"int8", 100, false}, {"int4", 32, true},
                                   {"int4", 32, false}, {"int4", 64, false}, {"int4", 128, true}, {"int3", 32, false},
                                   {"int3", 64, true}, {"int3", 128, false}, {"bf16", 0, false}, {"fp16", 0, false}};
  for (auto isa : isas())
    for (const Case &cs : cases)
      for (auto [m, k, n] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 128, 67}, {2, 64, 5}, {3, 192, 130}, {4, 256, 9},
                                                                                {5, 128, 70}, {13, 320, 33}, {70, 64, 129}}) {
        const int64_t group = cs.group ? cs.group : k; // groups need not divide k: the last one is shorter
        INFO(isa << " " << cs.format << " group " << group << (cs.asym ? " asym" : "") << " m " << m << " k " << k << " n " << n);
        CompactWeight w = makeCompact(cs.format, n, k, group, cs.asym, uint32_t(m * 1000 + k + n));
        for (bool withBias : {false, true}) {
          Graph g;
          int32_t x = g.input("x", DType::F32, {Dim{-1, "batch"}, Dim{k, ""}});
          const bool storage = cs.format == "bf16" || cs.format == "fp16"; // 16-bit floats, no scales
          int32_t q = storage ? g.weight("w", cs.format == "bf16" ? DType::BF16 : DType::F16, {n, k}, w.q)
                              : g.weight("q", cs.format == "int8" ? DType::I8 : DType::U8,
                                         {n, cs.format == "int8" ? k : cs.format == "int3" ? k / 32 * 12 : k / 2}, w.q);
          std::vector<int32_t> in = {x, q};
          const int64_t groups = (k + group - 1) / group;
          if (!storage) in.push_back(g.weight("scales", DType::F16, {n, groups}, w.scales));
          if (cs.format == "int4" || cs.format == "int3")
            in.push_back(cs.asym ? g.weight("mins", DType::F16, {n, groups}, w.mins) : -1);
          std::vector<float> bias = randomFloats(size_t(n), 3);
          if (withBias) in.push_back(g.weight("b", DType::F32, {n}, bias));
          int32_t y = g.tensor("y", DType::F32, 2);
          g.kernel("linear", in, {y}, {{"group_size", group}});
          g.spec.kernels.back().weightFormat = cs.format;
          g.output(y);
          std::vector<float> xs = randomFloats(size_t(m * k), 9), ref(size_t(m * n));
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              double s = withBias ? bias[size_t(j)] : 0.0;
              for (int64_t t = 0; t < k; ++t) s += double(xs[size_t(i * k + t)]) * w.dequantized[size_t(j * k + t)];
              ref[size_t(i * n + j)] = float(s);
            }
          for (int threads : {1, 2}) {
            auto out = runOne(g, {{"x", tensorOf(xs, {m, k})}}, isa, threads);
            requireClose(out[0].tensor, ref, 2e-5f * float(k) / 64.0f + 1e-5f);
          }
        }
      }
}

/// The runtime's int8 activation rule (QuantArgs::actBlock), written out here:
/// per 32 values d = max|x|/127, q = rint(x·(1/d)); x becomes d·q.
static std::vector<float> int8BlockRoundTrip(const std::vector<float> &x, int64_t rows, int64_t k) {
  std::vector<float> out(x.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < k; b += 32) {
      const int64_t size = std::min<int64_t>(32, k - b);
      float amax = 0;
      for (int64_t i = 0; i < size; ++i) amax = std::max(amax, std::fabs(x[size_t(r * k + b + i)]));
      const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
      for (int64_t i = 0; i < size; ++i) {
        const float q = std::clamp(std::nearbyint(x[size_t(r * k + b + i)] * id), -127.0f, 127.0f);
        out[size_t(r * k + b + i)] = d * q;
      }
    }
  return out;
}

TEST_CASE("int8 activations (act_block 32): int8 and int4 linear match x_q·W_deqᵀ+b", "[kernels][quant]") {
  struct Case { std::string format; int64_t group; bool asym; };
  // int8: per row, g32, g64, g96 (multiples of 32); int4 sym/asym g32, g64, g128.
  const std::vector<Case> cases = {{"int8", 0, false},  {"int8", 32, false}, {"int8", 64, false}, {"int8", 96, false},
                                   {"int4", 32, false}, {"int4", 32, true},  {"int4", 64, true},  {"int4", 128, false}};
  for (auto isa : isas())
    for (const Case &cs : cases)
      for (auto [m, k, n] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
               {1, 128, 67}, {1, 96, 9}, {2, 224, 5}, {3, 192, 130}, {4, 544, 9}, {5, 128, 70}, {13, 320, 33}, {1, 1536, 12}}) {
        const int64_t group = cs.group ? std::min(cs.group, k) : k;
        for (int64_t kk : {k, k + 13}) { // int8 rows that are not whole blocks (per-row scale only)
          if (kk != k && (cs.format != "int8" || cs.group)) continue;
          const int64_t g = cs.group ? group : kk;
          INFO(isa << " " << cs.format << " group " << g << (cs.asym ? " asym" : "") << " m " << m << " k " << kk << " n " << n);
          CompactWeight w = makeCompact(cs.format, n, kk, g, cs.asym, uint32_t(m * 1000 + kk + n));
          Graph gr;
          int32_t x = gr.input("x", DType::F32, {Dim{-1, "batch"}, Dim{kk, ""}});
          std::vector<int32_t> in = {x, gr.weight("q", cs.format == "int8" ? DType::I8 : DType::U8, {n, cs.format == "int8" ? kk : kk / 2}, w.q)};
          const int64_t groups = (kk + g - 1) / g;
          in.push_back(gr.weight("scales", DType::F16, {n, groups}, w.scales));
          if (cs.format == "int4") in.push_back(cs.asym ? gr.weight("mins", DType::F16, {n, groups}, w.mins) : -1);
          std::vector<float> bias = randomFloats(size_t(n), 3);
          in.push_back(gr.weight("b", DType::F32, {n}, bias));
          int32_t y = gr.tensor("y", DType::F32, 2);
          gr.kernel("linear", in, {y}, {{"group_size", g}, {"act_block", int64_t(32)}});
          gr.spec.kernels.back().weightFormat = cs.format;
          gr.output(y);
          std::vector<float> xs = randomFloats(size_t(m * kk), 9);
          xs[0] = 7.5f; // one block with a large value: its other values round coarsely
          const std::vector<float> xq = int8BlockRoundTrip(xs, m, kk);
          std::vector<float> ref(size_t(m * n)), refF32(size_t(m * n));
          double refScale = 0;
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              double s = bias[size_t(j)], sf = bias[size_t(j)];
              for (int64_t t = 0; t < kk; ++t) {
                s += double(xq[size_t(i * kk + t)]) * w.dequantized[size_t(j * kk + t)];
                sf += double(xs[size_t(i * kk + t)]) * w.dequantized[size_t(j * kk + t)];
              }
              ref[size_t(i * n + j)] = float(s), refF32[size_t(i * n + j)] = float(sf);
              refScale = std::max(refScale, std::fabs(sf));
            }
          for (int threads : {1, 2}) {
            auto out = runOne(gr, {{"x", tensorOf(xs, {m, kk})}}, isa, threads);
            requireClose(out[0].tensor, ref, 2e-5f * float(kk) / 64.0f + 1e-5f);
            // And the activation rounding itself is small: within 2 % of the largest output of the f32 input.
            const float *got = out[0].tensor.data<float>();
            for (size_t i = 0; i < refF32.size(); ++i) REQUIRE(std::fabs(got[i] - refF32[i]) <= 0.02 * refScale);
          }
        }
      }
}

TEST_CASE("int8 activations: a non-finite input stays non-finite; bad act_block is refused", "[kernels][quant]") {
  const int64_t n = 6, k = 64;
  CompactWeight w = makeCompact("int4", n, k, 32, false, 5);
  for (auto isa : isas())
    for (int64_t m : {1, 6}) {
      Graph g;
      int32_t x = g.input("x", DType::F32, {Dim{-1, "batch"}, Dim{k, ""}});
      int32_t q = g.weight("q", DType::U8, {n, k / 2}, w.q), s = g.weight("scales", DType::F16, {n, 2}, w.scales);
      int32_t y = g.tensor("y", DType::F32, 2);
      g.kernel("linear", {x, q, s}, {y}, {{"group_size", int64_t(32)}, {"act_block", int64_t(32)}});
      g.spec.kernels.back().weightFormat = "int4";
      g.output(y);
      std::vector<float> xs = randomFloats(size_t(m * k), 4);
      xs[3] = std::numeric_limits<float>::infinity();
      auto out = runOne(g, {{"x", tensorOf(xs, {m, k})}}, isa);
      INFO(isa << " m " << m);
      for (int64_t j = 0; j < n; ++j) CHECK(!std::isfinite(out[0].tensor.data<float>()[j]));
      for (int64_t j = n; j < m * n; ++j) CHECK(std::isfinite(out[0].tensor.data<float>()[j]));
    }
  for (auto [format, group, block, message] :
       std::vector<std::tuple<std::string, int64_t, int64_t, std::string>>{
           {"int4", 32, 16, "act_block must be 0 (f32 input) or 32, found 16"},
           {"int8", 48, 32, "int8 activations need int8 groups that are multiples of 32 (or one per row), found group size 48"}}) {
    Graph g;
    int32_t x = g.input("x", DType::F32, {Dim{-1, "batch"}, Dim{k, ""}});
    const bool int8 = format == "int8";
    const int64_t groups = (k + group - 1) / group;
    int32_t q = g.weight("q", int8 ? DType::I8 : DType::U8, {n, int8 ? k : k / 2}, std::vector<uint8_t>(size_t(n * (int8 ? k : k / 2)), 0));
    int32_t s = g.weight("scales", DType::F16, {n, groups}, std::vector<uint16_t>(size_t(n * groups), 0));
    int32_t y = g.tensor("y", DType::F32, 2);
    g.kernel("linear", {x, q, s}, {y}, {{"group_size", group}, {"act_block", block}}, "/fc");
    g.spec.kernels.back().weightFormat = format;
    g.output(y);
    auto session = g.open();
    std::string error = session ? "" : session.error();
    if (session) {
      auto out = (*session)->run({{"x", tensorOf(randomFloats(size_t(k), 1), {1, k})}});
      REQUIRE(!out);
      error = out.error();
    }
    CHECK_THAT(error, Catch::Contains("/fc") && Catch::Contains(message));
  }
}

TEST_CASE("fp16 and bf16 linear: k not a multiple of any vector width, values at half's limits", "[kernels][quant]") {
  // Half patterns at the range limits: ±65504 (the largest finite) and its neighbour, the smallest
  // normal, the largest and smallest subnormals, ±0. Every third weight is one of them, the others
  // are random finite halves of every exponent; bf16 weights are those values' top 16 bits.
  const uint16_t limits[] = {0x7BFF, 0xFBFF, 0x7BFE, 0x0400, 0x8400, 0x03FF, 0x0001, 0x8001, 0x0000, 0x8000};
  for (auto isa : isas())
    for (std::string format : {"fp16", "bf16"})
      for (auto [m, k, n] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
               {1, 1, 3}, {1, 7, 17}, {2, 15, 5}, {3, 17, 9}, {4, 33, 20}, {5, 31, 11}, {9, 100, 35}, {1, 129, 6}, {7, 1, 4}}) {
        INFO(isa << " " << format << " m " << m << " k " << k << " n " << n);
        std::mt19937 rng(uint32_t(m * 131 + k * 7 + n));
        std::vector<uint16_t> q(size_t(n * k));
        std::vector<float> deq(q.size());
        for (size_t i = 0; i < q.size(); ++i) {
          uint16_t h = i % 3 == 0 ? limits[rng() % (sizeof limits / sizeof limits[0])] : uint16_t(rng());
          if (((h >> 10) & 0x1F) == 0x1F) h = uint16_t(h & ~0x4000u); // no infinities or NaNs: exponent 31 → 15
          const float value = halfToFloat(h);
          if (format == "fp16") {
            q[i] = h, deq[i] = value;
          } else {
            uint32_t bits;
            std::memcpy(&bits, &value, 4);
            q[i] = uint16_t(bits >> 16);
            bits &= 0xFFFF0000u;
            std::memcpy(&deq[i], &bits, 4);
          }
        }
        const std::vector<float> xs = randomFloats(size_t(m * k), 11), bias = randomFloats(size_t(n), 12);
        for (bool withBias : {false, true}) {
          Graph g;
          int32_t x = g.input("x", DType::F32, {Dim{-1, "batch"}, Dim{k, ""}});
          std::vector<int32_t> in = {x, g.weight("w", format == "fp16" ? DType::F16 : DType::BF16, {n, k}, q)};
          if (withBias) in.push_back(g.weight("b", DType::F32, {n}, bias));
          int32_t y = g.tensor("y", DType::F32, 2);
          g.kernel("linear", in, {y});
          g.spec.kernels.back().weightFormat = format;
          g.output(y);
          for (int threads : {1, 2}) {
            auto out = runOne(g, {{"x", tensorOf(xs, {m, k})}}, isa, threads);
            REQUIRE(out[0].tensor.shape() == std::vector<int64_t>{m, n});
            const float *got = out[0].tensor.data<float>();
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j) {
                // f32 accumulation of terms up to 65504: tolerance relative to Σ|x·w|, not to the sum.
                double want = withBias ? bias[size_t(j)] : 0.0, scale = withBias ? std::fabs(bias[size_t(j)]) : 0.0;
                for (int64_t t = 0; t < k; ++t) {
                  const double p = double(xs[size_t(i * k + t)]) * deq[size_t(j * k + t)];
                  want += p, scale += std::fabs(p);
                }
                INFO("row " << i << " output " << j << ": got " << got[i * n + j] << ", expected " << want);
                REQUIRE(std::fabs(double(got[i * n + j]) - want) <= 1e-5 * scale + 1e-6);
              }
          }
        }
      }
}

TEST_CASE("compact-weight linear rejects inconsistent operands", "[kernels][quant]") {
  Graph g;
  int32_t x = g.input("x", DType::F32, {Dim{-1, "batch"}, Dim{64, ""}});
  int32_t q = g.weight("q", DType::U8, {4, 32}, std::vector<uint8_t>(128, 0));
  int32_t scales = g.weight("scales", DType::F16, {4, 3}, std::vector<uint16_t>(12, 0));
  int32_t y = g.tensor("y", DType::F32, 2);
  g.kernel("linear", {x, q, scales}, {y}, {{"group_size", int64_t(32)}}, "/fc");
  g.spec.kernels.back().weightFormat = "int4";
  g.output(y);
  auto session = g.open();
  REQUIRE(session);
  auto out = (*session)->run({{"x", tensorOf(randomFloats(64, 1), {1, 64})}});
  REQUIRE(!out);
  CHECK_THAT(out.error(), Catch::Contains("/fc") && Catch::Contains("scales/mins must be f16 [4, 2]"));
}
