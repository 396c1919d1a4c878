#include "runtime/core/ThreadPool.h"

#include <fstream>
#include <string>

namespace lathe::core {

int ThreadPool::physicalCores() {
  unsigned logical = std::thread::hardware_concurrency();
  if (logical == 0) logical = 1;
  // thread_siblings_list is "0" or "0,8" / "0-1": count the siblings of cpu0.
  std::ifstream in("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list");
  std::string list;
  int siblings = 1;
  if (in >> list) {
    siblings = 0;
    size_t pos = 0;
    while (pos <= list.size()) {
      size_t comma = list.find(',', pos);
      std::string part = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      size_t dash = part.find('-');
      if (dash != std::string::npos) siblings += std::stoi(part.substr(dash + 1)) - std::stoi(part.substr(0, dash)) + 1;
      else if (!part.empty()) siblings += 1;
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    if (siblings < 1) siblings = 1;
  }
  int cores = int(logical) / siblings;
  return cores < 1 ? 1 : cores;
}

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

namespace {
constexpr int kSpinIterations = 20000; // ≈ 50–100 µs of pause instructions

void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
} // namespace

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto &t : workers_) t.join();
}

static void chunkRange(int64_t n, int64_t grain, int chunks, int index, int64_t &begin, int64_t &end) {
  int64_t units = (n + grain - 1) / grain;
  begin = units * index / chunks * grain;
  end = units * (index + 1) / chunks * grain;
  if (end > n) end = n;
  if (begin > n) begin = n;
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    for (int spin = 0; spin < kSpinIterations && !stop_.load(std::memory_order_acquire) &&
                       generation_.load(std::memory_order_acquire) == seen;
         ++spin)
      cpuRelax();
    const std::function<void(int64_t, int64_t)> *job;
    int64_t n, grain;
    int chunks;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      if (stop_) return;
      seen = generation_.load();
      job = job_;
      n = jobN_;
      grain = jobGrain_;
      chunks = chunks_;
    }
    if (index < chunks) {
      int64_t begin, end;
      chunkRange(n, grain, chunks, index, begin, end);
      if (begin < end) (*job)(begin, end);
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_one();
    }
  }
}

void ThreadPool::parallelFor(int64_t n, const std::function<void(int64_t, int64_t)> &fn, int64_t grain) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t units = (n + grain - 1) / grain;
  int chunks = int(units < threads_ ? units : threads_);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    jobN_ = n;
    jobGrain_ = grain;
    chunks_ = chunks;
    pending_.store(int(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  int64_t begin, end;
  chunkRange(n, grain, chunks, 0, begin, end);
  if (begin < end) fn(begin, end);
  for (int spin = 0; spin < kSpinIterations && pending_.load(std::memory_order_acquire) != 0; ++spin) cpuRelax();
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_.load() == 0; });
  }
}

} // namespace lathe::core
