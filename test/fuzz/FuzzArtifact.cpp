// Fuzzes the artifact reader and the session behind the checksum: random
// byte mutations of a valid .lathe (in the preamble, the flatbuffer and the
// weights) with the checksum recomputed, so validation — not the checksum —
// must reject or survive them. Each mutant is opened and, if it opens, run on
// small synthesized inputs. A crash fails the test; errors are expected.
//   lathe-artifact-fuzz MODEL.lathe [iterations] [seed]
#include "lathe/Session.h"
#include "runtime/artifact/ArtifactFormat.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.lathe [iterations] [seed]\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::vector<uint8_t> original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (original.size() < 128) {
    std::fprintf(stderr, "error: %s is not an artifact\n", argv[1]);
    return 2;
  }
  int iterations = argc > 2 ? std::atoi(argv[2]) : 300;
  std::mt19937_64 rng(argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1);
  uint64_t flatbufferSize;
  std::memcpy(&flatbufferSize, original.data() + 24, 8);
  std::string path = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/lathe-fuzz-" +
                     std::to_string(::getpid()) + ".lathe";
  int opened = 0, ran = 0;
  for (int it = 0; it < iterations; ++it) {
    std::vector<uint8_t> bytes = original;
    int mutations = 1 + int(rng() % 4);
    for (int m = 0; m < mutations; ++m) {
      // Mostly the flatbuffer (structure), sometimes the preamble or anywhere.
      uint64_t region = rng() % 10;
      size_t pos = region < 7 ? 64 + rng() % std::max<uint64_t>(1, flatbufferSize)
                   : region < 8 ? rng() % 56
                                : rng() % bytes.size();
      if (pos >= bytes.size() || (pos >= 56 && pos < 64)) continue;
      bytes[pos] = uint8_t(rng() % 3 == 0 ? 0xFF : rng());
    }
    std::memset(bytes.data() + lathe::artifact::kChecksumOffset, 0, 8);
    uint64_t sum = lathe::artifact::checksum64(bytes.data(), bytes.size());
    std::memcpy(bytes.data() + lathe::artifact::kChecksumOffset, &sum, 8);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
    auto session = lathe::Session::open(path, {1, ""});
    if (!session) continue;
    ++opened;
    std::map<std::string, lathe::Tensor> inputs;
    for (const auto &info : (*session)->inputs()) {
      std::vector<int64_t> shape;
      for (const auto &d : info.shape) shape.push_back(d.isStatic() ? std::min<int64_t>(d.value, 64) : 3);
      inputs.emplace(info.name, lathe::Tensor::zeros(info.dtype, shape));
    }
    if ((*session)->run(inputs)) ++ran;
  }
  std::remove(path.c_str());
  std::printf("%d mutants: %d opened, %d ran, 0 crashes\n", iterations, opened, ran);
  return 0;
}
