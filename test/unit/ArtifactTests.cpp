#include "TestGraph.h"
#include "runtime/artifact/ArtifactFormat.h"
#include "runtime/artifact/ArtifactReader.h"
#include "runtime/artifact/Vocabulary.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>

using namespace lathe;
using namespace lathe::test;

namespace {
Graph sample() {
  Graph g;
  g.spec.compilerVersion = "lathe 0.1.0";
  g.spec.sourceModel = "tiny.onnx";
  g.spec.pipeline = "import,simplify,lower";
  int32_t x = g.input("x", DType::F32, {Dim{-1, "batch"}, Dim{5, ""}});
  int32_t w = g.weight("w", DType::F32, {3, 5}, randomFloats(15, 1));
  int32_t b = g.weight("b", DType::F32, {3}, randomFloats(3, 2));
  int32_t y = g.tensor("y", DType::F32, 2);
  g.kernel("linear", {x, w, b}, {y}, {{"note", std::string("s")}, {"list", std::vector<int64_t>{1, -2}}, {"f", 0.5}}, "/fc/Gemm");
  g.output(y);
  g.spec.manifest.push_back({"/fc/Gemm", "linear", "f32", 72});
  return g;
}
std::vector<uint8_t> readBytes(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void writeBytes(const std::string &p, const std::vector<uint8_t> &b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char *>(b.data()), std::streamsize(b.size()));
}
void putU64(std::vector<uint8_t> &b, size_t at, uint64_t v) { for (int i = 0; i < 8; ++i) b[at + size_t(i)] = uint8_t(v >> (8 * i)); }
uint64_t getU64(const std::vector<uint8_t> &b, size_t at) { uint64_t v = 0; for (int i = 7; i >= 0; --i) v = v << 8 | b[at + size_t(i)]; return v; }
// Re-seals the checksum so that a deliberate edit is caught by the later checks.
void reseal(std::vector<uint8_t> &b) {
  putU64(b, artifact::kChecksumOffset, 0);
  putU64(b, artifact::kChecksumOffset, artifact::checksum64(b.data(), b.size()));
}
std::string loadError(const std::vector<uint8_t> &bytes) {
  std::string p = tempPath("corrupt.lathe");
  writeBytes(p, bytes);
  artifact::LoadedArtifact art;
  return artifact::readArtifact(p, art);
}
} // namespace

TEST_CASE("writer and reader round-trip; output is deterministic", "[artifact]") {
  Graph g = sample();
  std::string a = tempPath("a.lathe"), b = tempPath("b.lathe");
  REQUIRE(artifact::writeArtifact(g.spec, a).empty());
  REQUIRE(artifact::writeArtifact(g.spec, b).empty());
  REQUIRE(readBytes(a) == readBytes(b));
  REQUIRE(!std::filesystem::exists(a + ".tmp." + std::to_string(::getpid())));
  artifact::LoadedArtifact art;
  REQUIRE(artifact::readArtifact(a, art) == "");
  CHECK(art.formatMajor == 1);
  CHECK(art.spec.compilerVersion == "lathe 0.1.0");
  CHECK(art.spec.sourceModel == "tiny.onnx");
  CHECK(art.spec.pipeline == "import,simplify,lower");
  REQUIRE(art.spec.tensors.size() == g.spec.tensors.size());
  CHECK(art.spec.tensors[0].shape[0].symbol == "batch");
  CHECK(art.spec.tensors[0].shape[1].value == 5);
  REQUIRE(art.spec.kernels.size() == 1);
  CHECK(art.spec.kernels[0].source == "/fc/Gemm");
  CHECK(std::get<std::string>(art.spec.kernels[0].attrs.at("note")) == "s");
  CHECK(std::get<std::vector<int64_t>>(art.spec.kernels[0].attrs.at("list")) == std::vector<int64_t>{1, -2});
  CHECK(std::get<double>(art.spec.kernels[0].attrs.at("f")) == 0.5);
  REQUIRE(art.spec.weights.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(reinterpret_cast<uintptr_t>(art.spec.weights[i].data) % 64 == 0);
    CHECK(std::memcmp(art.spec.weights[i].data, g.spec.weights[i].data, g.spec.weights[i].bytes) == 0);
  }
  CHECK(art.spec.manifest.size() == 1);
  CHECK(!art.spec.vocabulary);
}

namespace {
artifact::Vocabulary sampleVocabulary() {
  artifact::Vocabulary v;
  v.model = "gpt2";
  v.preTokenizer = "smollm";
  v.tokens = {"<|endoftext|>", "a", "b", "ab", "\xc4\xa0"};
  v.merges = {"a b"};
  v.tokenTypes = {3, 1, 1, 1, 1};
  v.bosId = 0;
  v.eosId = 0;
  v.addBos = true;
  return v;
}
} // namespace

TEST_CASE("vocabulary encoding round-trips and rejects every truncation", "[artifact]") {
  artifact::Vocabulary v = sampleVocabulary();
  std::string bytes = artifact::encodeVocabulary(v);
  artifact::Vocabulary back;
  REQUIRE(artifact::decodeVocabulary(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size(), back) == "");
  CHECK(back.model == v.model);
  CHECK(back.preTokenizer == v.preTokenizer);
  CHECK(back.tokens == v.tokens);
  CHECK(back.merges == v.merges);
  CHECK(back.tokenTypes == v.tokenTypes);
  CHECK(back.bosId == 0);
  CHECK(back.paddingId == -1);
  CHECK(back.addBos);
  for (size_t n = 0; n < bytes.size(); ++n)
    CHECK(!artifact::decodeVocabulary(reinterpret_cast<const uint8_t *>(bytes.data()), n, back).empty());
  std::string extended = bytes + "x";
  CHECK_THAT(artifact::decodeVocabulary(reinterpret_cast<const uint8_t *>(extended.data()), extended.size(), back),
             Catch::Contains("trailing"));
  v.eosId = 9;
  bytes = artifact::encodeVocabulary(v);
  CHECK_THAT(artifact::decodeVocabulary(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size(), back),
             Catch::Contains("eos id 9 is outside"));
}

TEST_CASE("an embedded vocabulary travels through the artifact", "[artifact]") {
  Graph g = sample();
  g.spec.vocabulary = sampleVocabulary();
  std::string a = tempPath("vocab.lathe");
  REQUIRE(artifact::writeArtifact(g.spec, a).empty());
  artifact::LoadedArtifact art;
  REQUIRE(artifact::readArtifact(a, art) == "");
  REQUIRE(art.spec.vocabulary);
  CHECK(art.spec.vocabulary->tokens == g.spec.vocabulary->tokens);
  CHECK(art.formatMinor == artifact::kFormatMinor);
}

TEST_CASE("corrupt artifacts are rejected with a message", "[artifact]") {
  Graph g = sample();
  std::string p = tempPath("good.lathe");
  REQUIRE(artifact::writeArtifact(g.spec, p).empty());
  auto good = readBytes(p);
  REQUIRE(loadError(good) == "");

  SECTION("truncated") {
    auto b = good;
    b.resize(b.size() - 10);
    CHECK_THAT(loadError(b), Catch::Contains("truncated"));
    b.resize(20);
    CHECK_THAT(loadError(b), Catch::Contains("too short"));
  }
  SECTION("flipped byte -> checksum") {
    for (size_t at : {size_t(100), good.size() - 1, good.size() / 2}) {
      auto b = good;
      b[at] ^= 0x10;
      CHECK_THAT(loadError(b), Catch::Contains("checksum"));
    }
  }
  SECTION("wrong version names the supported ones") {
    auto b = good;
    b[8] = 7;
    CHECK_THAT(loadError(b), Catch::Contains("7.1 is not supported") && Catch::Contains("reads Lathe artifact format version 1.1"));
  }
  SECTION("wrong magic and identifier") {
    auto b = good;
    b[0] = 'X';
    CHECK_THAT(loadError(b), Catch::Contains("bad magic"));
    b = good;
    b[64 + 4] = 'X'; // flatbuffer file identifier follows the root offset
    reseal(b);
    CHECK_THAT(loadError(b), Catch::Contains("identifier"));
  }
  SECTION("out-of-range header offset") {
    auto b = good;
    putU64(b, 24, getU64(b, 24) + 1000000);
    reseal(b);
    CHECK_THAT(loadError(b), Catch::Contains("out of bounds"));
  }
  SECTION("out-of-range weight offset") {
    // Shrink the weights region: the last weight now lies outside it.
    auto b = good;
    b.resize(b.size() - 64);
    putU64(b, 40, getU64(b, 40) - 64);
    putU64(b, 48, b.size());
    reseal(b);
    CHECK_THAT(loadError(b), Catch::Contains("outside the weights region"));
  }
  SECTION("garbage flatbuffer") {
    auto b = good;
    for (size_t i = 64 + 8; i < 64 + 200 && i < b.size(); ++i) b[i] = uint8_t(i * 37);
    reseal(b);
    CHECK(!loadError(b).empty());
  }
}

TEST_CASE("validation rejects inconsistent specs", "[artifact]") {
  Graph g = sample();
  SECTION("tensor index out of range") {
    g.spec.kernels[0].inputs[0] = 99;
    CHECK_THAT(artifact::writeArtifact(g.spec, tempPath("bad.lathe")), Catch::Contains("out of range"));
  }
  SECTION("linear weight must be 2-D") {
    g.spec.tensors[1].shape = {Dim{15, ""}};
    CHECK_THAT(artifact::validateSpec(g.spec), Catch::Contains("/fc/Gemm") && Catch::Contains("rank 2"));
  }
  SECTION("weight sized by dtype x shape") {
    g.spec.weights[0].bytes = 12;
    CHECK_THAT(artifact::validateSpec(g.spec), Catch::Contains("'w'") && Catch::Contains("60 bytes"));
  }
  SECTION("unknown op") {
    g.spec.kernels[0].op = "frobnicate";
    CHECK_THAT(artifact::validateSpec(g.spec), Catch::Contains("unknown op 'frobnicate'"));
  }
  SECTION("attention rank") {
    g.spec.kernels[0].op = "attention";
    g.spec.kernels[0].inputs = {0, 0, 0};
    CHECK_THAT(artifact::validateSpec(g.spec), Catch::Contains("rank 4"));
  }
}
