// The runtime half of `lathe run`, `lathe bench` and `lathe inspect`: the CLI
// parses options and calls these. Each prints its own errors to stderr and
// returns a process exit code (0 on success).
#pragma once

#include "lathe/Session.h"

#include <string>
#include <utility>
#include <vector>

namespace lathe::tools {

struct RunOptions {
  std::string artifact;
  std::vector<std::pair<std::string, std::string>> inputs; // name -> .npy path
  std::string outputDir = ".";                              // writes <output name>.npy
  int threads = 0;                                          // 0: one per physical core
  std::string dumpPattern;                                  // glob on ONNX node / tensor names; empty: none
  int64_t incremental = 0; // > 0: run through the KV cache this many tokens at a time (first output only)
  std::string device;       // "", "cpu", "cuda", "cuda:N"
};

struct BenchOptions {
  std::string artifact;
  int64_t batch = 1;
  int64_t seq = 128;
  int threads = 0;
  int warmup = 3;
  int iterations = 20;
  std::string device;
  /// After the timed runs, as many again with a tap on every kernel: time per
  /// op kind and the slowest nodes (the taps' overhead stays out of the latency).
  bool profile = false;
};

/// Writes `text` to `path` through a temporary file renamed into place, so a
/// failed write never leaves a partial file (reports, JSON summaries).
Status writeTextFile(const std::string &path, const std::string &text);

/// A concrete shape for a declared input: dims whose symbol names a batch
/// get `batch`, other dynamic dims `seq`.
std::vector<int64_t> concreteShape(const TensorInfo &info, int64_t batch, int64_t seq);
/// Deterministic inputs (see benchArtifactCommand).
Tensor synthesize(const TensorInfo &info, const std::vector<int64_t> &shape);

int runArtifactCommand(const RunOptions &options);
/// Inputs are synthesized from the declared dtypes and shapes: dims whose symbol
/// names a batch get `batch`, other dynamic dims get `seq`. Integer inputs whose
/// name contains "mask" are all ones, "type"/"segment" (token types) all zeros; other integer inputs (ids) cycle through
/// 1..100 (a heuristic: safe for any vocabulary of at least 101 entries); floats are
/// a fixed pseudo-random pattern in [-1, 1); bools are true.
int benchArtifactCommand(const BenchOptions &options);
/// Header, memory plan at batch 1 / sequence 128, where the kernels would run
/// on CUDA (from the plugin, no GPU needed) and the per-layer manifest.
int inspectArtifactCommand(const std::string &path);
/// One line for --version: the CPU instruction-set levels this runtime can use
/// here (after LATHE_ISA_MAX), the one it picks, and the int8 GEMM table.
std::string cpuSummary();

} // namespace lathe::tools
