// The int8 GEMM tables (Int8Gemm.h) against a naive reference: the quantization
// definition, int64 sums of the same integers and the same float epilogue, so
// every output must match bit for bit, at every level this CPU supports.
//
// The reference's float expressions rely on this TU being compiled without FMA
// (the default -march), so nothing here can be contracted.
#include "runtime/cpu/CpuFeatures.h"
#include "runtime/cpu/Int8Gemm.h"
#include "runtime/cpu/Kernels.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

using namespace lathe;
using cpu::Int8GemmArgs;
using cpu::Int8Table;

namespace {

// The tables this CPU can run; a warning names each one it cannot.
std::vector<const Int8Table *> tables() {
  std::vector<const Int8Table *> out{cpu::int8baseline::table()};
  auto isas = cpu::supportedIsas();
  if (std::find(isas.begin(), isas.end(), "avx2") != isas.end()) out.push_back(cpu::int8avx2::table());
  else WARN("skipping the int8 table avx2: this CPU has no AVX2");
  if (cpu::cpuHasAvx512Vnni()) out.push_back(cpu::int8vnni::table());
  else WARN("skipping the int8 table avx512-vnni: this CPU has no AVX-512 VNNI");
  if (cpu::cpuHasAmxInt8()) out.push_back(cpu::int8amx::table());
  else WARN("skipping the int8 table amx: this CPU (or its kernel) has no AMX-INT8");
  return out;
}

enum class Mode { Dynamic, PerTensor, PerChannel };
const char *modeName(Mode m) { return m == Mode::Dynamic ? "dynamic" : m == Mode::PerTensor ? "per-tensor" : "per-channel"; }

struct Problem {
  int64_t m = 0, n = 0, k = 0;
  std::vector<float> x;     // [m, k]
  std::vector<int8_t> w;    // [n, k], in [−127, 127]
  std::vector<float> wScale, bias;
  bool hasBias = false;
  Mode mode = Mode::Dynamic;
  std::vector<float> invScale; // [k], per channel
  float tensorScale = 0;       // static modes
};

// Int8Gemm.h's quantization, written out.
void refQuantize(const Problem &p, std::vector<int32_t> &q, std::vector<float> &rowScale) {
  q.assign(size_t(p.m * p.k), 0);
  rowScale.assign(size_t(p.m), 0.0f);
  for (int64_t r = 0; r < p.m; ++r) {
    const float *x = p.x.data() + r * p.k;
    float inv = 0;
    if (p.mode == Mode::Dynamic) {
      float mx = 0;
      for (int64_t i = 0; i < p.k; ++i) mx = std::max(mx, std::fabs(x[i]));
      if (mx == 0) continue; // a zero row: q = 0, rowScale = 0
      rowScale[size_t(r)] = mx / 127.0f;
      inv = 127.0f / mx;
    } else {
      rowScale[size_t(r)] = p.tensorScale;
      inv = 1.0f / p.tensorScale;
    }
    for (int64_t i = 0; i < p.k; ++i) {
      float v = std::nearbyint(x[i] * (p.mode == Mode::PerChannel ? p.invScale[size_t(i)] : inv));
      q[size_t(r * p.k + i)] = int32_t(std::clamp(v, -127.0f, 127.0f));
    }
  }
}

std::vector<float> reference(const Problem &p) {
  std::vector<int32_t> q;
  std::vector<float> rowScale;
  refQuantize(p, q, rowScale);
  std::vector<float> y(size_t(p.m * p.n));
  bool fits = true; // every sum within int32 (the kernels' accumulators)
  for (int64_t r = 0; r < p.m; ++r)
    for (int64_t j = 0; j < p.n; ++j) {
      int64_t sum = 0;
      for (int64_t i = 0; i < p.k; ++i) sum += int64_t(q[size_t(r * p.k + i)]) * p.w[size_t(j * p.k + i)];
      fits = fits && sum == int64_t(int32_t(sum));
      float v = float(int32_t(sum)) * rowScale[size_t(r)] * p.wScale[size_t(j)];
      if (p.hasBias) v += p.bias[size_t(j)];
      y[size_t(r * p.n + j)] = v;
    }
  REQUIRE(fits);
  return y;
}

// 64-byte aligned bytes, filled with garbage so nothing relies on zeroed memory.
struct Buffer {
  std::vector<uint8_t> storage;
  uint8_t *data;
  explicit Buffer(int64_t bytes) : storage(size_t(bytes) + 64, 0xA5) {
    data = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
  }
};

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
const float kSentinel = [] {
  const uint32_t u = 0x7FC0BEEF; // a NaN no kernel produces
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}();

// A table's packed weights and quantized activations for a problem.
struct Prepared {
  Buffer packed, xq;
  std::vector<float> rowScale;
  Prepared(const Int8Table &t, const Problem &p)
      : packed(t.packedWeightBytes(p.n, p.k)), xq(t.activationBytes(p.m, p.k)), rowScale(size_t(p.m), -1.0f) {
    t.packWeights(p.w.data(), p.n, p.k, packed.data);
    const float *inv = p.mode == Mode::PerChannel ? p.invScale.data() : nullptr;
    const float s = p.mode == Mode::Dynamic ? 0.0f : p.tensorScale;
    // Two row ranges, as two threads would quantize them.
    t.quantizeActivations(p.x.data(), p.k, p.k, 0, p.m / 2, inv, s, xq.data, rowScale.data());
    t.quantizeActivations(p.x.data(), p.k, p.k, p.m / 2, p.m, inv, s, xq.data, rowScale.data());
  }
  Int8GemmArgs args(const Problem &p, float *c, int64_t ldc) const {
    return {xq.data, packed.data, rowScale.data(), p.wScale.data(), p.hasBias ? p.bias.data() : nullptr, c, ldc, p.m, p.n, p.k};
  }
};

// Index of the first element whose bits differ, or −1.
int64_t firstMismatch(const std::vector<float> &a, const std::vector<float> &b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (bitsOf(a[i]) != bitsOf(b[i])) return int64_t(i);
  return -1;
}

void requireBitEqual(const std::vector<float> &got, const std::vector<float> &want, int64_t cols) {
  const int64_t i = firstMismatch(got, want);
  if (i >= 0 && size_t(i) < got.size() && size_t(i) < want.size())
    INFO("first mismatch at row " << i / cols << " column " << i % cols << ": got " << got[size_t(i)] << " (0x" << std::hex
                                  << bitsOf(got[size_t(i)]) << "), expected " << want[size_t(i)] << " (0x" << bitsOf(want[size_t(i)]) << ")");
  REQUIRE(i == -1);
}

// C over the whole output, written into [m, ldc] with ldc > n: returns the [m, n]
// part and requires every other element untouched.
std::vector<float> runWhole(const Int8Table &t, const Problem &p, const Prepared &prep) {
  const int64_t ldc = p.n + 3;
  std::vector<float> c(size_t(p.m * ldc), kSentinel);
  const Int8GemmArgs a = prep.args(p, c.data(), ldc);
  t.gemm(&a, 0, p.n);
  std::vector<float> y(size_t(p.m * p.n));
  bool fits = true; // every sum within int32 (the kernels' accumulators)
  for (int64_t r = 0; r < p.m; ++r)
    for (int64_t j = 0; j < ldc; ++j) {
      if (j < p.n) y[size_t(r * p.n + j)] = c[size_t(r * ldc + j)];
      else REQUIRE(bitsOf(c[size_t(r * ldc + j)]) == bitsOf(kSentinel));
    }
  return y;
}

// The same output assembled from gemm on one panel at a time (any panel-aligned
// split) and from gemmRows on uneven row pieces.
void requireSplitsMatch(const Int8Table &t, const Problem &p, const Prepared &prep, const std::vector<float> &whole) {
  std::vector<float> c(size_t(p.m * p.n), kSentinel);
  Int8GemmArgs a = prep.args(p, c.data(), p.n);
  for (int64_t n0 = 0; n0 < p.n; n0 += t.panelWidth) t.gemm(&a, n0, std::min(p.n, n0 + t.panelWidth));
  INFO("gemm panel by panel");
  requireBitEqual(c, whole, p.n);
  std::fill(c.begin(), c.end(), kSentinel);
  const int64_t cuts[] = {0, std::min<int64_t>(1, p.m), p.m / 2, p.m - std::min<int64_t>(5, p.m / 2), p.m};
  for (size_t i = 0; i + 1 < std::size(cuts); ++i) t.gemmRows(&a, cuts[i], cuts[i + 1]);
  INFO("gemmRows in pieces");
  requireBitEqual(c, whole, p.n);
}

std::vector<float> uniform(std::mt19937 &rng, size_t count, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(count);
  for (auto &x : v) x = d(rng);
  return v;
}

Problem randomProblem(int64_t m, int64_t n, int64_t k, Mode mode, bool hasBias, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p;
  p.m = m, p.n = n, p.k = k, p.mode = mode, p.hasBias = hasBias;
  p.x = uniform(rng, size_t(m * k), -2.0f, 2.0f);
  if (m >= 3) std::fill(p.x.begin() + (m - 1) * k, p.x.end(), 0.0f); // a zero activation row
  std::uniform_int_distribution<int> wd(-127, 127);
  p.w.resize(size_t(n * k));
  for (auto &v : p.w) v = int8_t(wd(rng));
  p.wScale = uniform(rng, size_t(n), -0.02f, 0.02f); // both signs: products of −0 must keep their sign
  p.bias = uniform(rng, size_t(n), -1.0f, 1.0f);
  // Static scales that clamp some values (|x| up to 2 maps beyond 127).
  p.tensorScale = 1.5f / 127.0f;
  p.invScale = uniform(rng, size_t(k), 40.0f, 90.0f);
  return p;
}

} // namespace

TEST_CASE("int8TableFor maps ISA levels to tables", "[int8]") {
  CHECK(std::string(cpu::int8TableFor("baseline")->name) == "baseline");
  CHECK(std::string(cpu::int8TableFor("avx2")->name) == "avx2");
  const Int8Table *wide = cpu::int8TableFor("avx512");
  REQUIRE(wide);
  CHECK((wide == cpu::int8amx::table() || wide == cpu::int8vnni::table() || wide == cpu::int8avx2::table()));
  CHECK(cpu::int8TableFor("sse9") == nullptr);
  CHECK(cpu::int8TableFor(nullptr) == nullptr);
}

TEST_CASE("int8 gemm matches the reference bit for bit on every shape and mode", "[int8]") {
  const auto ts = tables();
  uint32_t seed = 1;
  for (int64_t m : {1, 3, 7, 64, 130})
    for (int64_t n : {1, 17, 64, 192, 200})
      for (int64_t k : {1, 5, 64, 384, 1000})
        for (Mode mode : {Mode::Dynamic, Mode::PerTensor, Mode::PerChannel}) {
          // Bias on and off in turn: every shape and mode sees both across the k loop.
          const bool hasBias = (seed++ % 2) == 0;
          const Problem p = randomProblem(m, n, k, mode, hasBias, seed);
          const std::vector<float> want = reference(p);
          INFO("m=" << m << " n=" << n << " k=" << k << " " << modeName(mode) << (hasBias ? " with bias" : " no bias"));
          for (const Int8Table *t : ts) {
            INFO("table " << t->name);
            const Prepared prep(*t, p);
            const std::vector<float> got = runWhole(*t, p, prep);
            requireBitEqual(got, want, n);
            requireSplitsMatch(*t, p, prep, got);
          }
        }
}

TEST_CASE("int8 gemm with both bias settings on the same problem", "[int8]") {
  const auto ts = tables();
  for (bool hasBias : {false, true}) {
    const Problem p = randomProblem(13, 70, 100, Mode::Dynamic, hasBias, 99);
    const std::vector<float> want = reference(p);
    std::vector<float> first;
    for (const Int8Table *t : ts) {
      INFO("table " << t->name << (hasBias ? " with bias" : " no bias"));
      const Prepared prep(*t, p);
      const std::vector<float> got = runWhole(*t, p, prep);
      requireBitEqual(got, want, p.n);
      if (first.empty()) first = got;
      requireBitEqual(got, first, p.n); // identical across levels
    }
  }
}

TEST_CASE("int8 gemm sums extreme values at k=1536 without overflow", "[int8]") {
  // q = x exactly (static scale 1) and unit weight scales, so y = float(Σ q·w),
  // with |Σ| up to 127²·1536 (above 2^24 but even, so exactly representable).
  const int64_t m = 8, n = 80, k = 1536;
  Problem p;
  p.m = m, p.n = n, p.k = k, p.mode = Mode::PerTensor, p.tensorScale = 1.0f;
  p.x.resize(size_t(m * k));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t i = 0; i < k; ++i)
      p.x[size_t(r * k + i)] = r % 4 == 0 ? 127.0f : r % 4 == 1 ? -127.0f : r % 4 == 2 ? (i % 2 ? 127.0f : -127.0f) : (i < k / 3 ? -127.0f : 127.0f);
  p.w.resize(size_t(n * k));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < k; ++i)
      p.w[size_t(j * k + i)] = int8_t(j % 3 == 0 ? 127 : j % 3 == 1 ? -127 : (i % 2 ? 127 : -127));
  p.wScale.assign(size_t(n), 1.0f);
  const std::vector<float> want = reference(p);
  CHECK(want[0] == 127.0f * 127.0f * 1536.0f);
  CHECK(want[size_t(1 * n + 0)] == -127.0f * 127.0f * 1536.0f);
  for (Mode mode : {Mode::PerTensor, Mode::Dynamic}) { // dynamic: max 127 gives the same q and scale 1
    p.mode = mode;
    for (const Int8Table *t : tables()) {
      INFO("table " << t->name << " " << modeName(mode));
      const Prepared prep(*t, p);
      requireBitEqual(runWhole(*t, p, prep), want, n);
    }
  }
}

TEST_CASE("int8 gemm on a zero activation row gives the bias", "[int8]") {
  Problem p = randomProblem(4, 33, 50, Mode::Dynamic, true, 7);
  std::fill(p.x.begin(), p.x.begin() + p.k, 0.0f);
  for (const Int8Table *t : tables()) {
    INFO("table " << t->name);
    const Prepared prep(*t, p);
    CHECK(prep.rowScale[0] == 0.0f);
    const std::vector<float> got = runWhole(*t, p, prep);
    for (int64_t j = 0; j < p.n; ++j) REQUIRE(bitsOf(got[size_t(j)]) == bitsOf(0.0f * p.wScale[size_t(j)] + p.bias[size_t(j)]));
    requireBitEqual(got, reference(p), p.n);
  }
}

TEST_CASE("int8 quantizeActivations follows the definition, ties to even", "[int8]") {
  // Read the integers back through gemm with an identity weight (n = k, unit
  // weight scales) and unit row scales: y[r, j] = float(xq[r, j]) exactly.
  const float ties[] = {0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 3.5f, 126.5f, -126.5f, 127.5f, -127.5f, 125.5f, 0.0f, -0.0f};
  for (int64_t k : {37, 70}) {
    std::mt19937 rng{uint32_t(k)};
    Problem p;
    p.m = 6, p.n = k, p.k = k;
    p.x = uniform(rng, size_t(p.m * k), -3.0f, 3.0f);
    p.invScale.resize(size_t(k));
    for (int64_t i = 0; i < k; ++i) p.invScale[size_t(i)] = i % 4 == 0 ? 1.0f : i % 4 == 1 ? 2.0f : i % 4 == 2 ? 0.5f : 4.0f;
    for (int64_t i = 0; i < k; ++i) {
      const float tie = ties[size_t(i) % std::size(ties)];
      p.x[size_t(0 * k + i)] = tie;                                    // dynamic: max 127.5 → inv = 127/127.5
      p.x[size_t(1 * k + i)] = i == 3 ? 127.0f : std::fmod(tie, 100.0f); // dynamic with max 127: inv = 1, exact ties
      p.x[size_t(2 * k + i)] = i == 5 ? 63.5f : std::fmod(tie, 60.0f) / 2.0f; // max 63.5: inv = 2, ties again
      p.x[size_t(3 * k + i)] = tie / p.invScale[size_t(i)];                  // per channel: x · invScale is the tie
      p.x[size_t(4 * k + i)] = i % 7 == 0 ? 1e30f * (i % 2 ? 1.0f : -1.0f) : tie; // clamped in the static modes
    }
    p.w.assign(size_t(k * k), 0);
    for (int64_t j = 0; j < k; ++j) p.w[size_t(j * k + j)] = 1;
    p.wScale.assign(size_t(k), 1.0f);
    for (Mode mode : {Mode::Dynamic, Mode::PerTensor, Mode::PerChannel}) {
      p.mode = mode;
      p.tensorScale = mode == Mode::PerChannel ? 0.75f : 1.0f; // per tensor: inv = 1, ties stay ties
      std::vector<int32_t> q;
      std::vector<float> rowScale;
      refQuantize(p, q, rowScale);
      std::vector<float> want(q.begin(), q.end());
      for (const Int8Table *t : tables()) {
        INFO("k=" << k << " " << modeName(mode) << " table " << t->name);
        const Prepared prep(*t, p);
        for (int64_t r = 0; r < p.m; ++r) REQUIRE(bitsOf(prep.rowScale[size_t(r)]) == bitsOf(rowScale[size_t(r)]));
        std::vector<float> ones(size_t(p.m), 1.0f), c(size_t(p.m * k));
        Int8GemmArgs a = prep.args(p, c.data(), k);
        a.rowScale = ones.data();
        t->gemm(&a, 0, k);
        requireBitEqual(c, want, k);
      }
    }
  }
}
