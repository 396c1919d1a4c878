// lathe-cuda-bench: the linear kernels of the CUDA plugin at 7B layer shapes,
// one activation row (decoding), against the GPU's memory bandwidth.
//
//   lathe-cuda-bench [--rows M] [--iterations N] [--formats f32,bf16,...] [--json PATH]
//
// For each weight format and shape it builds a random weight in the artifact's
// layout, uploads enough copies to overflow the L2 cache (each timed call reads
// a cold copy, as a decoding step reads each layer once), calls the plugin's own
// kernel entry (findDeviceKernel("linear", format)), and reports:
//   bytes      weight + scales (+ mins) + activations + outputs read/written per call
//   GB/s       bytes / median call time (CUDA events around a batch of calls)
//   %copy      of the device-to-device cudaMemcpy bandwidth measured in the same run
//   %peak      of the memory clock x bus width the device reports (when it does)
// and checks each output against a host reference of the same dequantization
// (LinearMath.h's dequantOne, in double): max |diff| / max |ref| <= 1e-4.
// Exit 0 when every output matched, 1 when one did not, 77 with no usable device.
#include "runtime/cuda/CudaBackend.h"
#include "runtime/cuda/LinearMath.h"
#include "runtime/tools/Commands.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace lathe;
using lathe::cuda::CudaEnv;

namespace {

constexpr int kSkip = 77;

struct FormatCase {
  std::string name;   // as printed
  std::string format; // the kernel table's weight format
  int64_t group;      // int8/int4 group size (0: per output channel)
  bool asymmetric;    // int4 with mins
};

struct Shape { int64_t n, k; const char *what; };

uint16_t toHalf(float f) { return numeric::floatToHalf(f); }

/// One weight in the artifact layout (host), and what the host reference needs.
struct HostWeight {
  std::vector<uint8_t> q;       // weight bytes (f32, 16-bit floats, int8 or packed int4)
  std::vector<uint16_t> scales; // f16 [n, groups]
  std::vector<uint16_t> mins;   // f16 [n, groups] (asymmetric int4)
  artifact::DType qType = artifact::DType::F32;
  std::vector<int64_t> qShape;
  int64_t groups = 1, group = 1;
};

HostWeight makeWeight(const FormatCase &f, int64_t n, int64_t k, std::mt19937 &rng) {
  HostWeight w;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> byte(0, 255);
  w.group = f.group > 0 ? f.group : k;
  w.groups = (k + w.group - 1) / w.group;
  if (f.format == "f32") {
    w.q.resize(size_t(n * k) * 4);
    for (int64_t i = 0; i < n * k; ++i) {
      const float v = u(rng) * 0.05f;
      std::memcpy(&w.q[size_t(i) * 4], &v, 4);
    }
    w.qType = artifact::DType::F32, w.qShape = {n, k};
  } else if (f.format == "bf16" || f.format == "fp16") {
    w.q.resize(size_t(n * k) * 2);
    for (int64_t i = 0; i < n * k; ++i) {
      const float v = u(rng) * 0.05f;
      const uint16_t b = f.format == "bf16" ? numeric::floatToBf16(v) : toHalf(v);
      std::memcpy(&w.q[size_t(i) * 2], &b, 2);
    }
    w.qType = f.format == "bf16" ? artifact::DType::BF16 : artifact::DType::F16, w.qShape = {n, k};
  } else {
    const bool int4 = f.format == "int4";
    w.q.resize(size_t(n * (int4 ? k / 2 : k)));
    for (auto &b : w.q) b = uint8_t(byte(rng));
    w.qType = int4 ? artifact::DType::U8 : artifact::DType::I8, w.qShape = {n, int4 ? k / 2 : k};
    w.scales.resize(size_t(n * w.groups));
    for (auto &s : w.scales) s = toHalf(0.002f + 0.001f * std::fabs(u(rng)));
    if (f.asymmetric) {
      w.mins.resize(size_t(n * w.groups));
      for (auto &m : w.mins) m = toHalf(-0.01f * std::fabs(u(rng)));
    }
  }
  return w;
}

/// y = x·Ŵᵀ on the host, in double: Ŵ through the device kernels' per-weight decoding
/// (dequantOne: int8, bf16, fp16) or, for int4, decoded here from the format itself.
std::vector<double> hostReference(const FormatCase &f, const HostWeight &w, const std::vector<float> &x, int64_t m, int64_t n, int64_t k) {
  using namespace lathe::cuda::math;
  LinearArgs a;
  a.q = w.q.data();
  a.scales = w.scales.empty() ? nullptr : w.scales.data();
  a.mins = w.mins.empty() ? nullptr : w.mins.data();
  a.n = n, a.k = k, a.group = w.group, a.groups = w.groups;
  a.rowBytes = int64_t(w.q.size()) / n;
  std::vector<double> y(size_t(m * n), 0.0);
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t c = 0; c < k; ++c) {
      if (f.format == "f32") std::memcpy(&row[size_t(c)], &w.q[size_t(j * k + c) * 4], 4);
      else if (f.format == "bf16") row[size_t(c)] = dequantOne<kBf16>(a, j, c);
      else if (f.format == "fp16") row[size_t(c)] = dequantOne<kF16>(a, j, c);
      else if (f.format == "int8") row[size_t(c)] = dequantOne<kInt8>(a, j, c);
      else { // int4, written out from the format (ggml blocks of 32: byte t holds weights t and t + 16)
        const int64_t g = c / w.group, t = c % 32;
        const uint8_t byte = w.q[size_t(j * (k / 2) + c / 32 * 16 + t % 16)];
        const float d = halfToFloat(w.scales[size_t(j * w.groups + g)]);
        const float mn = w.mins.empty() ? -8.0f * d : halfToFloat(w.mins[size_t(j * w.groups + g)]);
        row[size_t(c)] = d * float(t < 16 ? byte & 0x0F : byte >> 4) + mn;
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      double s = 0;
      for (int64_t c = 0; c < k; ++c) s += double(x[size_t(i * k + c)]) * row[size_t(c)];
      y[size_t(i * n + j)] = s;
    }
  }
  return y;
}

template <class T> T *upload(const std::vector<T> &v, std::vector<void *> &owned) {
  if (v.empty()) return nullptr;
  void *p = nullptr;
  if (cudaMalloc(&p, v.size() * sizeof(T)) != cudaSuccess) return nullptr;
  owned.push_back(p);
  cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return static_cast<T *>(p);
}

int usage() {
  std::fprintf(stderr, "usage: lathe-cuda-bench [--rows M] [--iterations N] [--formats f32,bf16,fp16,int8,int8-g32,int4-g32,int4-g128] [--json PATH]\n");
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  int64_t rows = 1;
  int iterations = 100;
  std::string formatsArg = "f32,bf16,fp16,int8,int8-g32,int4-g32,int4-g128", jsonPath;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--rows") rows = std::atoll(next().c_str());
    else if (a == "--iterations") iterations = std::atoi(next().c_str());
    else if (a == "--formats") formatsArg = next();
    else if (a == "--json") jsonPath = next();
    else return usage();
  }
  if (rows < 1 || rows > 8 || iterations < 1) {
    std::fprintf(stderr, "error: --rows must be 1..8 (the GEMV's range) and --iterations positive\n");
    return 2;
  }
  const std::vector<FormatCase> known = {{"f32", "f32", 0, false},          {"bf16", "bf16", 0, false},
                                         {"fp16", "fp16", 0, false},        {"int8", "int8", 0, false},
                                         {"int8-g32", "int8", 32, false},   {"int4-g32", "int4", 32, true},
                                         {"int4-g128", "int4", 128, false}};
  std::vector<FormatCase> formats;
  std::stringstream fs(formatsArg);
  for (std::string item; std::getline(fs, item, ',');) {
    auto it = std::find_if(known.begin(), known.end(), [&](const FormatCase &f) { return f.name == item; });
    if (it == known.end()) { std::fprintf(stderr, "error: --formats: unknown format '%s'\n", item.c_str()); return 2; }
    formats.push_back(*it);
  }

  int count = 0;
  if (cudaError_t s = cudaGetDeviceCount(&count); s != cudaSuccess || count == 0) {
    std::printf("SKIP(no-gpu): %s\n", s != cudaSuccess ? cudaGetErrorString(s) : "no CUDA device found");
    return kSkip;
  }
  CudaEnv env;
  cudaGetDeviceProperties(&env.properties, 0);
  if (cudaStreamCreate(&env.stream) != cudaSuccess || cublasCreate(&env.blas) != CUBLAS_STATUS_SUCCESS ||
      cublasLtCreate(&env.blasLt) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "error: cannot create a stream and cuBLAS handles\n");
    return 1;
  }
  const cudaDeviceProp &p = env.properties;
  int clockKhz = 0, busBits = 0;
  double peak = 0;
  if (cudaDeviceGetAttribute(&clockKhz, cudaDevAttrMemoryClockRate, 0) == cudaSuccess &&
      cudaDeviceGetAttribute(&busBits, cudaDevAttrGlobalMemoryBusWidth, 0) == cudaSuccess && clockKhz > 0 && busBits > 0)
    peak = 2.0 * double(clockKhz) * 1e3 * double(busBits) / 8.0 / 1e9; // double data rate
  cudaGetLastError();

  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  auto timeMs = [&](auto &&call, int reps) {
    call(); // warm-up
    cudaEventRecord(e0, env.stream);
    for (int r = 0; r < reps; ++r) call();
    cudaEventRecord(e1, env.stream);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    return double(ms) / reps;
  };

  // The bandwidth a plain copy reaches (read + write), 1 GiB each way.
  double copyGBps = 0;
  {
    const size_t bytes = size_t(1) << 30;
    void *a = nullptr, *b = nullptr;
    if (cudaMalloc(&a, bytes) == cudaSuccess && cudaMalloc(&b, bytes) == cudaSuccess) {
      cudaMemset(a, 1, bytes);
      const double ms = timeMs([&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, env.stream); }, 10);
      copyGBps = 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
    }
    if (a) cudaFree(a);
    if (b) cudaFree(b);
    cudaGetLastError();
  }
  std::printf("device   %s (sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MiB)\n", p.name, p.major, p.minor, p.multiProcessorCount,
              double(p.totalGlobalMem) / double(1 << 30), double(p.l2CacheSize) / double(1 << 20));
  std::printf("memory   device-to-device copy %.0f GB/s; reported peak %s\n", copyGBps,
              peak > 0 ? (std::to_string(int(peak)) + " GB/s").c_str() : "n/a");
  std::printf("rows     %lld (activation rows per call), %d calls per timing\n\n", (long long)rows, iterations);
  std::printf("%-10s %-22s %10s %10s %9s %7s %7s %11s %4s\n", "format", "shape n x k", "MiB/call", "us/call", "GB/s", "%copy", "%peak",
              "max rel err", "ok");

  const std::vector<Shape> shapes = {{4096, 4096, "q/k/v/o"}, {11008, 4096, "gate/up"}, {4096, 11008, "down"}};
  std::mt19937 rng(1234);
  std::ostringstream json;
  json << "{\n  \"device\": \"" << p.name << "\",\n  \"copy_GBps\": " << copyGBps << ",\n  \"peak_GBps\": " << peak << ",\n  \"rows\": " << rows
       << ",\n  \"cases\": [";
  bool ok = true, first = true;
  for (const FormatCase &f : formats) {
    const cuda::DeviceKernel *kernel = cuda::findDeviceKernel("linear", f.format);
    if (!kernel) { std::fprintf(stderr, "error: the plugin has no linear kernel for %s\n", f.format.c_str()); return 1; }
    for (const Shape &s : shapes) {
      HostWeight w = makeWeight(f, s.n, s.k, rng);
      std::vector<float> x(size_t(rows * s.k));
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      for (auto &v : x) v = u(rng);
      const size_t weightBytes = w.q.size() + 2 * (w.scales.size() + w.mins.size());
      // Copies enough to overflow L2 four times over: every timed call reads a cold weight.
      const int copies = int(std::max<int64_t>(2, (4 * int64_t(p.l2CacheSize) + int64_t(weightBytes) - 1) / int64_t(weightBytes)));
      std::vector<void *> owned;
      std::vector<const uint8_t *> qs;
      std::vector<const uint16_t *> scales, mins;
      bool allocated = true;
      for (int c = 0; c < copies && allocated; ++c) {
        qs.push_back(upload(w.q, owned));
        scales.push_back(upload(w.scales, owned));
        mins.push_back(upload(w.mins, owned));
        allocated = qs.back() && (w.scales.empty() || scales.back()) && (w.mins.empty() || mins.back());
      }
      float *dx = upload(x, owned), *dy = nullptr;
      if (cudaMalloc(reinterpret_cast<void **>(&dy), size_t(rows * s.n) * 4) == cudaSuccess) owned.push_back(dy);
      if (!allocated || !dx || !dy) {
        std::fprintf(stderr, "error: out of device memory for %s %lldx%lld\n", f.name.c_str(), (long long)s.n, (long long)s.k);
        return 1;
      }
      artifact::KernelSpec spec{"linear", {0, 1, 2, 3}, {4}, {}, "bench/" + f.name, f.format};
      if (f.group > 0) spec.attrs["group_size"] = artifact::AttrValue(int64_t(f.group));
      cpu::View vx{artifact::DType::F32, {rows, s.k}, dx}, vq{w.qType, w.qShape, nullptr},
          vs{artifact::DType::F16, {s.n, w.groups}, nullptr}, vm{artifact::DType::F16, {s.n, w.groups}, nullptr},
          vy{artifact::DType::F32, {rows, s.n}, dy};
      cpu::KernelContext c;
      c.spec = &spec;
      c.inputs = {&vx, &vq};
      if (!w.scales.empty()) c.inputs.push_back(&vs);
      if (!w.mins.empty()) c.inputs.push_back(&vm);
      else if (f.format == "int4") c.inputs.push_back(nullptr);
      c.outputs = {&vy};
      std::string error;
      int next = 0;
      auto call = [&] {
        vq.data = const_cast<uint8_t *>(qs[size_t(next)]);
        vs.data = const_cast<uint16_t *>(scales[size_t(next)]);
        vm.data = const_cast<uint16_t *>(mins[size_t(next)]);
        next = (next + 1) % copies;
        if (std::string e = kernel->run(c, env); !e.empty() && error.empty()) error = e;
      };
      const double ms = timeMs(call, iterations);
      // Correctness on copy 0.
      next = 0;
      call();
      std::vector<float> y(size_t(rows * s.n));
      cudaStreamSynchronize(env.stream);
      cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost);
      if (cudaError_t st = cudaGetLastError(); st != cudaSuccess && error.empty()) error = cudaGetErrorString(st);
      std::vector<double> ref = hostReference(f, w, x, rows, s.n, s.k);
      double maxDiff = 0, maxRef = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        maxDiff = std::max(maxDiff, std::fabs(double(y[i]) - ref[i]));
        maxRef = std::max(maxRef, std::fabs(ref[i]));
        if (!std::isfinite(y[i])) maxDiff = INFINITY;
      }
      const double rel = maxDiff / std::max(maxRef, 1e-30);
      const bool pass = error.empty() && rel <= 1e-4;
      ok &= pass;
      const double bytes = double(weightBytes) + double(rows * (s.k + s.n)) * 4;
      const double gbps = bytes / (ms * 1e-3) / 1e9;
      char shape[64];
      std::snprintf(shape, sizeof shape, "%lldx%lld %s", (long long)s.n, (long long)s.k, s.what);
      std::printf("%-10s %-22s %10.2f %10.1f %9.0f %6.0f%% %6s %11.2e %4s\n", f.name.c_str(), shape, bytes / double(1 << 20), ms * 1e3, gbps,
                  copyGBps > 0 ? 100 * gbps / copyGBps : 0.0, peak > 0 ? (std::to_string(int(100 * gbps / peak)) + "%").c_str() : "n/a", rel,
                  pass ? "yes" : "NO");
      if (!error.empty()) std::printf("           error: %s\n", error.c_str());
      json << (first ? "\n" : ",\n") << "    {\"format\": \"" << f.name << "\", \"n\": " << s.n << ", \"k\": " << s.k << ", \"bytes\": " << bytes
           << ", \"us\": " << ms * 1e3 << ", \"GBps\": " << gbps << ", \"fraction_of_copy\": " << (copyGBps > 0 ? gbps / copyGBps : 0)
           << ", \"fraction_of_peak\": " << (peak > 0 ? gbps / peak : 0) << ", \"max_rel_err\": " << rel << ", \"pass\": " << (pass ? "true" : "false")
           << "}";
      first = false;
      for (void *q : owned) cudaFree(q);
    }
  }
  json << "\n  ],\n  \"pass\": " << (ok ? "true" : "false") << "\n}\n";
  if (!jsonPath.empty())
    if (Status st = tools::writeTextFile(jsonPath, json.str()); !st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.message().c_str());
      return 1;
    }
  std::printf("\n%s\n", ok ? "PASS" : "FAIL: an output differs from the host reference beyond 1e-4");
  return ok ? 0 : 1;
}
