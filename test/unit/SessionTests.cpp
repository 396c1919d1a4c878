#include "TestGraph.h"
#include "runtime/cpu/CpuFeatures.h"
#include "runtime/cpu/Kernels.h"

#include <catch2/catch.hpp>

using namespace lathe;
using namespace lathe::test;

TEST_CASE("planner reuses dead buffers and works in place", "[session]") {
  Graph g;
  int32_t cur = g.input("x", DType::F32, {Dim{-1, "batch"}, Dim{64, ""}});
  int32_t w = g.weight("w", DType::F32, {64, 64}, randomFloats(64 * 64, 3, -0.1f, 0.1f));
  for (int i = 0; i < 8; ++i) {
    int32_t lin = g.tensor("lin" + std::to_string(i), DType::F32, 2), act = g.tensor("act" + std::to_string(i), DType::F32, 2);
    g.kernel("linear", {cur, w}, {lin});
    g.kernel("relu", {lin}, {act});
    cur = act;
  }
  g.output(cur);
  auto session = g.open();
  REQUIRE(session.ok());
  auto plan = (*session)->plan({{"x", {10, 64}}});
  REQUIRE(plan.ok());
  const uint64_t one = 10 * 64 * 4;
  CHECK(plan->tensors == 16);
  CHECK(plan->inPlace == 8);             // every relu reuses its operand
  CHECK(plan->unplannedBytes == 16 * one);
  CHECK(plan->arenaBytes <= 2 * ((one + 63) / 64 * 64)); // two live buffers at a time
  // Different shapes: a new plan, and the session still gives right answers.
  for (int64_t batch : {1, 7, 3, 7}) {
    auto x = randomFloats(size_t(batch * 64), uint32_t(batch));
    auto out = (*session)->run({{"x", tensorOf(x, {batch, 64})}});
    REQUIRE(out.ok());
    CHECK((*out)[0].tensor.shape() == std::vector<int64_t>{batch, 64});
    CHECK((*session)->plannedActivationBytes() <= uint64_t(2 * batch * 64 * 4 + 128));
  }
}

TEST_CASE("attention plan has no seq² term", "[session]") {
  Graph g;
  int32_t q = g.input("q", DType::F32, {Dim{1, ""}, Dim{2, ""}, Dim{-1, "sequence"}, Dim{16, ""}});
  int32_t k = g.input("k", DType::F32, {Dim{1, ""}, Dim{2, ""}, Dim{-1, "sequence"}, Dim{16, ""}});
  int32_t v = g.input("v", DType::F32, {Dim{1, ""}, Dim{2, ""}, Dim{-1, "sequence"}, Dim{16, ""}});
  int32_t o = g.tensor("o", DType::F32, 4);
  g.kernel("attention", {q, k, v}, {o}, {{"num_heads", int64_t(2)}, {"num_kv_heads", int64_t(2)}, {"scale", 0.25}, {"causal", int64_t(1)}});
  g.output(o);
  auto session = g.open();
  REQUIRE(session.ok());
  const int64_t seq = 4096;
  auto plan = (*session)->plan({{"q", {1, 2, seq, 16}}, {"k", {1, 2, seq, 16}}, {"v", {1, 2, seq, 16}}});
  REQUIRE(plan.ok());
  CHECK(plan->arenaBytes == uint64_t(2 * seq * 16 * 4)); // just the output
  CHECK(plan->arenaBytes < uint64_t(seq * seq * 4));
  // And it runs at that length (causal, ~0.3 GFLOP).
  auto x = randomFloats(size_t(2 * seq * 16), 5);
  Tensor t = tensorOf(x, {1, 2, seq, 16});
  auto out = (*session)->run({{"q", t}, {"k", t}, {"v", t}});
  REQUIRE(out.ok());
}

TEST_CASE("--threads 2 equals --threads 1 bitwise", "[session]") {
  Graph g;
  int32_t x = g.input("x", DType::F32, {Dim{-1, "batch"}, Dim{-1, "sequence"}, Dim{48, ""}});
  int32_t w = g.weight("w", DType::F32, {144, 48}, randomFloats(144 * 48, 1)), b = g.weight("b", DType::F32, {144}, randomFloats(144, 2));
  int32_t qkv = g.tensor("qkv", DType::F32, 3), q = g.tensor("q", DType::F32, 3), k = g.tensor("k", DType::F32, 3), v = g.tensor("v", DType::F32, 3);
  g.kernel("linear", {x, w, b}, {qkv});
  g.kernel("split", {qkv}, {q, k, v}, {{"axis", int64_t(2)}, {"sizes", std::vector<int64_t>{48, 48, 48}}});
  auto heads = [&](int32_t t, const std::string &n) {
    int32_t r = g.tensor(n + "r", DType::F32, 4), tr = g.tensor(n + "t", DType::F32, 4);
    g.kernel("reshape", {t, g.weight(n + "s", DType::I64, {4}, std::vector<int64_t>{0, 0, 4, 12})}, {r});
    g.kernel("transpose", {r}, {tr}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
    return tr;
  };
  int32_t qh = heads(q, "q"), kh = heads(k, "k"), vh = heads(v, "v"), att = g.tensor("att", DType::F32, 4), n = g.tensor("norm", DType::F32, 4);
  g.kernel("attention", {qh, kh, vh}, {att}, {{"num_heads", int64_t(4)}, {"num_kv_heads", int64_t(4)}, {"scale", 0.3}, {"causal", int64_t(0)}});
  g.kernel("layer_norm", {att, g.weight("ln", DType::F32, {12}, randomFloats(12, 4))}, {n}, {{"epsilon", 1e-5}}, "/ln");
  g.output(n);
  auto input = tensorOf(randomFloats(size_t(3 * 37 * 48), 9), {3, 37, 48});
  for (auto isa : cpu::supportedIsas()) {
    auto s1 = g.open(isa, 1), s2 = g.open(isa, 2);
    REQUIRE((s1.ok() && s2.ok()));
    REQUIRE((*s2)->threads() == 2);
    auto o1 = (*s1)->run({{"x", input}}), o2 = (*s2)->run({{"x", input}});
    REQUIRE((o1.ok() && o2.ok()));
    const Tensor &a = (*o1)[0].tensor, &b2 = (*o2)[0].tensor;
    REQUIRE(a.shape() == std::vector<int64_t>{3, 4, 37, 12});
    CHECK(std::memcmp(a.data(), b2.data(), a.bytes()) == 0);
  }
}

TEST_CASE("taps see matching intermediate tensors", "[session]") {
  Graph g;
  int32_t x = g.input("x", DType::F32, 1);
  int32_t a = g.tensor("a", DType::F32, 1), b = g.tensor("b", DType::F32, 1);
  g.kernel("relu", {x}, {a}, {}, "/layer.0/act");
  g.kernel("neg", {a}, {b}, {}, "/layer.1/neg");
  g.output(b);
  auto session = g.open();
  REQUIRE(session.ok());
  std::vector<std::string> seen;
  std::vector<float> values;
  (*session)->addTap("/layer.0/*", [&](const TapEvent &e) {
    seen.push_back(e.source);
    for (int64_t i = 0; i < e.tensor.numel(); ++i) values.push_back(e.tensor.data<float>()[i]);
  });
  auto out = (*session)->run({{"x", tensorOf(std::vector<float>{-1, 2}, {2})}});
  REQUIRE(out.ok());
  CHECK(seen == std::vector<std::string>{"/layer.0/act"});
  CHECK(values == std::vector<float>{0, 2});
  CHECK(globMatch("*attn*", "/encoder/attn/q"));
  CHECK(!globMatch("/a?", "/abc"));
}

TEST_CASE("LATHE_ISA levels", "[session]") {
  auto levels = cpu::supportedIsas();
  REQUIRE(levels.front() == "baseline");
  std::string err;
  CHECK(cpu::selectIsa("sse9", err) == nullptr);
  CHECK_THAT(err, Catch::Contains("sse9"));
  for (const auto &l : levels) CHECK(std::string(cpu::selectIsa(l, err)->name) == l);
}

TEST_CASE("LATHE_ISA_MAX caps the levels (a narrower machine's paths on a wider one)", "[session]") {
  const char *before = std::getenv("LATHE_ISA_MAX");
  const std::string saved = before ? before : "";
  ::setenv("LATHE_ISA_MAX", "baseline", 1);
  CHECK(cpu::supportedIsas() == std::vector<std::string>{"baseline"});
  CHECK_FALSE(cpu::cpuHasAvx512Vnni());
  std::string err;
  CHECK(cpu::selectIsa("avx2", err) == nullptr);
  CHECK_THAT(err, Catch::Contains("LATHE_ISA_MAX=baseline"));
  CHECK(std::string(cpu::selectIsa("", err)->name) == "baseline");
  ::setenv("LATHE_ISA_MAX", "avx9", 1);
  err.clear();
  CHECK(cpu::selectIsa("", err) == nullptr);
  CHECK_THAT(err, Catch::Contains("LATHE_ISA_MAX is 'avx9'"));
  if (before) ::setenv("LATHE_ISA_MAX", saved.c_str(), 1);
  else ::unsetenv("LATHE_ISA_MAX");
  CHECK(cpu::supportedIsas().front() == "baseline");
}

namespace {
// ids [batch, sequence] → embedding → q = k = v [batch, 1 head, sequence, 8] → attention → [batch, sequence, 1, 8].
Graph tinyDecoder(bool causal) {
  Graph g;
  const std::vector<Dim> bs = {Dim{-1, "batch"}, Dim{-1, "sequence"}};
  int32_t ids = g.input("input_ids", DType::I64, bs);
  int32_t table = g.weight("table", DType::F32, {16, 8}, randomFloats(16 * 8, 7));
  int32_t target = g.weight("target", DType::I64, {4}, std::vector<int64_t>{0, 0, 1, 8});
  auto t = [&](const char *name, std::vector<Dim> shape) {
    g.spec.tensors.push_back({name, DType::F32, shape});
    return int32_t(g.spec.tensors.size() - 1);
  };
  int32_t x = t("x", {bs[0], bs[1], Dim{8, ""}});
  int32_t heads = t("heads", {bs[0], bs[1], Dim{1, ""}, Dim{8, ""}});
  int32_t q = t("q", {bs[0], Dim{1, ""}, bs[1], Dim{8, ""}});
  int32_t a = t("a", {bs[0], Dim{1, ""}, bs[1], Dim{8, ""}});
  int32_t y = t("y", {bs[0], bs[1], Dim{1, ""}, Dim{8, ""}});
  g.kernel("embedding", {table, ids}, {x});
  g.kernel("reshape", {x, target}, {heads});
  g.kernel("transpose", {heads}, {q}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
  g.kernel("attention", {q, q, q}, {a}, {{"causal", int64_t(causal)}, {"num_heads", int64_t(1)}, {"num_kv_heads", int64_t(1)}},
           "/attn");
  g.kernel("transpose", {a}, {y}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
  g.output(y);
  return g;
}
} // namespace

TEST_CASE("step API: appended tokens give the full-sequence outputs; the cache has a limit", "[session][decode]") {
  Graph g = tinyDecoder(true);
  auto session = g.open();
  REQUIRE(session);
  Session &s = **session;
  CHECK(s.incrementalReason().empty());
  const std::vector<int64_t> ids = {3, 1, 4, 1, 5, 9, 2};
  Tensor idsT = Tensor::zeros(DType::I64, {1, 7});
  for (size_t i = 0; i < ids.size(); ++i) idsT.data<int64_t>()[i] = ids[i];
  auto full = s.run({{"input_ids", idsT}});
  REQUIRE(full);
  const float *want = (*full)[0].tensor.data<float>();

  CHECK_THAT(s.append({1}).error(), Catch::Contains("startDecoding"));
  REQUIRE(s.startDecoding(7).ok());
  auto first = s.append({3, 1, 4}, 3); // prefill: every position asked for
  INFO(first.error());
  REQUIRE(first);
  for (int64_t i = 0; i < 3 * 8; ++i) CHECK(first->data<float>()[i] == want[i]);
  for (size_t p = 3; p < ids.size(); ++p) {
    auto step = s.append({int32_t(ids[p])});
    REQUIRE(step);
    REQUIRE(step->shape() == std::vector<int64_t>{1, 1, 1, 8});
    for (int64_t d = 0; d < 8; ++d) CHECK(step->data<float>()[d] == want[p * 8 + size_t(d)]);
  }
  CHECK(s.decodedLength() == 7);
  auto over = s.append({2});
  REQUIRE(!over);
  CHECK_THAT(over.error(), Catch::Contains("context is full") && Catch::Contains("maximum of 7"));
  CHECK(s.decodedLength() == 7); // a refused step changes nothing
  s.resetDecoding();
  CHECK(s.decodedLength() == 0);
  auto again = s.append({3, 1, 4, 1}, 1);
  REQUIRE(again);
  for (int64_t d = 0; d < 8; ++d) CHECK(again->data<float>()[d] == want[3 * 8 + size_t(d)]);
  CHECK_THAT(s.append({1, 2}, 3).error(), Catch::Contains("lastPositions"));
}

TEST_CASE("step API: a non-causal model says why it cannot decode", "[session][decode]") {
  Graph g = tinyDecoder(false);
  auto session = g.open();
  REQUIRE(session);
  CHECK_THAT((*session)->incrementalReason(), Catch::Contains("'/attn'") && Catch::Contains("not causal"));
  CHECK_THAT((*session)->startDecoding(8).message(), Catch::Contains("cannot decode incrementally"));
}
