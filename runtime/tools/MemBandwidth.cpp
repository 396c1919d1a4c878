// lathe-membw: this machine's memory read bandwidth, for the decode benchmark's
// "fraction of the bandwidth" figure (decoding streams every weight once per token).
//   lathe-membw [threads] [MiB]      prints GB/s, best of 5 passes
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

int main(int argc, char **argv) {
  const int threads = argc > 1 ? std::max(1, std::atoi(argv[1])) : 1;
  const size_t mib = argc > 2 ? size_t(std::max(64, std::atoi(argv[2]))) : 1024;
  const size_t n = mib * (1u << 20) / sizeof(float);
  auto *data = static_cast<float *>(std::aligned_alloc(64, n * sizeof(float)));
  if (!data) { std::fprintf(stderr, "cannot allocate %zu MiB\n", mib); return 1; }
  std::memset(data, 0, n * sizeof(float));
  std::vector<float> sums(size_t(threads) * 16);
  double best = 1e30;
  for (int pass = 0; pass < 5; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const size_t begin = n / size_t(threads) * size_t(t), end = t + 1 == threads ? n : begin + n / size_t(threads);
        float acc[16] = {};
        for (size_t i = begin; i + 16 <= end; i += 16)
          for (int l = 0; l < 16; ++l) acc[l] += data[i + size_t(l)];
        for (int l = 0; l < 16; ++l) sums[size_t(t) * 16 + size_t(l)] = acc[l];
      });
    for (auto &th : pool) th.join();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("%.2f GB/s read (%d threads, %zu MiB)\n", double(n * sizeof(float)) / best / 1e9, threads, mib);
  std::free(data);
  return sums[0] == 12345.0f ? 2 : 0;
}
