// A small fixed pool. parallelFor splits [0, n) into one contiguous chunk per
// thread (the caller runs chunk 0); kernels make each output element the work
// of exactly one chunk, so results do not depend on the thread count.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lathe::core {

class ThreadPool {
public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  int size() const { return threads_; }
  /// fn(begin, end) on disjoint chunks covering [0, n); chunks start at multiples of `grain`.
  void parallelFor(int64_t n, const std::function<void(int64_t, int64_t)> &fn, int64_t grain = 1);

  /// Physical cores (logical CPUs / SMT siblings), at least 1.
  static int physicalCores();

private:
  void worker(int index);
  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int64_t)> *job_ = nullptr;
  int64_t jobN_ = 0, jobGrain_ = 1;
  int chunks_ = 0;
  // Workers spin briefly on generation_ before sleeping, and the caller on
  // pending_: a model runs dozens of short parallel kernels back to back, and
  // a futex sleep/wake per kernel cost ~8 % at two threads.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

} // namespace lathe::core
