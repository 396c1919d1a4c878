// lathe-device-check: runs one artifact on the CPU and on a device (cuda)
// with the same inputs and compares every output, and, for causal decoders,
// every decoding step's logits; also times both. The device half of the GPU
// tests: exits 77 (a skip) when the machine has no usable device.
//
//   lathe-device-check model.lathe [--device cuda] [--shapes 1x7,2x16,3x33]
//                      [--decode N --prompt P] [--rtol R] [--json out.json]
//   lathe-device-check --probe [ARTIFACT]   (0: a device is usable, 77: none, 1: the plugin is missing)
//   lathe-device-check model.lathe --reference DIR
//       DIR/<case>/inputs/*.npy and DIR/<case>/outputs/*.npy, the outputs written
//       by another machine's CPU (scripts/gpu/carry.py): the device, and this
//       machine's CPU, are each compared with them (instead of --shapes).
//   lathe-device-check model-w8a8.lathe --baseline model-fp32.lathe [--slack 0.1]
//       For formats that round activations (w8a8, int8 activations): a 1-ulp
//       difference before a rounding flips a code, so the device and the CPU
//       (and the CPU's own ISA levels) differ by more than rtol. An output then
//       also passes when the device's relative error against the baseline
//       model's CPU output is at most (1 + slack) times the CPU's: the device
//       loses no more accuracy than the CPU does.
#include "lathe/Session.h"
#include "runtime/core/Device.h"
#include "runtime/io/Npy.h"
#include "runtime/tools/Commands.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace lathe;

namespace {

constexpr int kSkip = 77;

bool noDevice(const std::string &error) {
  return error.find("no usable CUDA device") != std::string::npos || error.find("no CUDA device found") != std::string::npos;
}

struct Difference {
  double maxAbs = 0, refMax = 0, cosine = 1;
  bool finite = true;
};

Difference compare(const Tensor &ref, const Tensor &got) {
  Difference d;
  const int64_t n = ref.numel();
  double dot = 0, rr = 0, gg = 0;
  for (int64_t i = 0; i < n; ++i) {
    double r, g;
    if (ref.dtype() == DType::F32) { r = ref.data<float>()[i]; g = got.data<float>()[i]; }
    else if (ref.dtype() == DType::I64) { r = double(ref.data<int64_t>()[i]); g = double(got.data<int64_t>()[i]); }
    else if (ref.dtype() == DType::I32) { r = ref.data<int32_t>()[i]; g = got.data<int32_t>()[i]; }
    else { r = 0; g = 0; }
    if (!std::isfinite(g)) d.finite = false;
    d.maxAbs = std::max(d.maxAbs, std::fabs(r - g));
    d.refMax = std::max(d.refMax, std::fabs(r));
    dot += r * g; rr += r * r; gg += g * g;
  }
  d.cosine = rr > 0 && gg > 0 ? dot / std::sqrt(rr * gg) : (rr == gg ? 1.0 : 0.0);
  return d;
}

/// One output against its reference: the differences, and whether they pass rtol.
struct Verdict {
  Difference d;
  bool same = false, pass = false;
  const char *word() const { return pass ? "yes" : same ? "NO" : "SHAPE"; }
};
Verdict judge(const Tensor &ref, const Tensor &got, double rtol) {
  Verdict v;
  v.same = ref.shape() == got.shape() && ref.dtype() == got.dtype();
  if (v.same) v.d = compare(ref, got);
  v.pass = v.same && v.d.finite && v.d.maxAbs <= rtol * std::max(v.d.refMax, 1e-6);
  return v;
}

/// ‖got − ref‖ / ‖ref‖ (f32 outputs; 0 for others).
double relativeError(const Tensor &ref, const Tensor &got) {
  if (ref.dtype() != DType::F32 || got.dtype() != DType::F32 || ref.shape() != got.shape()) return 0;
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.data<float>()[i], d = double(got.data<float>()[i]) - r;
    num += d * d, den += r * r;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}
/// The device loses no more accuracy against the baseline than the CPU does.
bool asAccurate(double cpuError, double deviceError, double slack) {
  return std::isfinite(deviceError) && deviceError <= cpuError * (1.0 + slack) + 1e-6;
}

template <class F> double medianMs(int reps, F &&f) {
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if (!f()) return -1;
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

/// The cases of a --reference folder, sorted: name, inputs by name, outputs by name.
struct ReferenceCase {
  std::string name;
  std::map<std::string, Tensor> inputs, outputs;
};
Expected<std::vector<ReferenceCase>> readReference(const std::string &dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::error("--reference: " + dir + " is not a folder");
  std::vector<ReferenceCase> cases;
  for (const auto &entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_directory() || !fs::is_directory(entry.path() / "inputs") || !fs::is_directory(entry.path() / "outputs")) continue;
    ReferenceCase c{entry.path().filename().string(), {}, {}};
    for (const char *part : {"inputs", "outputs"})
      for (const auto &f : fs::directory_iterator(entry.path() / part)) {
        if (f.path().extension() != ".npy") continue;
        auto t = io::readNpy(f.path().string());
        if (!t) return Status::error(f.path().string() + ": " + t.error());
        (std::string(part) == "inputs" ? c.inputs : c.outputs)[f.path().stem().string()] = std::move(*t);
      }
    if (c.inputs.empty() || c.outputs.empty()) return Status::error("--reference: case " + c.name + " has no inputs or no outputs");
    cases.push_back(std::move(c));
  }
  if (ec) return Status::error("--reference: " + dir + ": " + ec.message());
  if (cases.empty()) return Status::error("--reference: " + dir + " has no case folders (<case>/inputs, <case>/outputs)");
  std::sort(cases.begin(), cases.end(), [](const ReferenceCase &a, const ReferenceCase &b) { return a.name < b.name; });
  return cases;
}

int usage() {
  std::fprintf(stderr, "usage: lathe-device-check ARTIFACT [--device cuda] [--shapes BxS,...] [--decode N] [--prompt P] "
                       "[--rtol R] [--threads N] [--reps N] [--json PATH] [--reference DIR] [--baseline ARTIFACT [--slack S]]\n       lathe-device-check --probe [--device cuda]\n");
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  std::string artifact, device = "cuda", shapesArg = "1x7,2x16,3x33", jsonPath, referenceDir, baselinePath;
  double slack = 0.1;
  int64_t decode = 0, prompt = 8;
  double rtol = 1e-3;
  int threads = 0, reps = 5;
  bool probe = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--device") device = next();
    else if (a == "--shapes") shapesArg = next();
    else if (a == "--decode") decode = std::atoll(next().c_str());
    else if (a == "--prompt") prompt = std::atoll(next().c_str());
    else if (a == "--rtol") rtol = std::atof(next().c_str());
    else if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--reps") reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--json") jsonPath = next();
    else if (a == "--probe") probe = true;
    else if (a == "--reference") referenceDir = next();
    else if (a == "--baseline") baselinePath = next();
    else if (a == "--slack") slack = std::atof(next().c_str());
    else if (!a.empty() && a[0] == '-') return usage();
    else artifact = a;
  }
  if (probe && artifact.empty()) { // the plugin and the device alone
    std::string error, kind = device.substr(0, device.find(':'));
    const device::PluginApi *api = device::loadPlugin(kind, error);
    if (!api) { std::fprintf(stderr, "error: %s\n", error.c_str()); return 1; }
    auto backend = api->open(0, error);
    if (!backend) {
      if (noDevice(error)) { std::printf("SKIP(no-gpu): %s\n", error.c_str()); return kSkip; }
      std::fprintf(stderr, "error: %s\n", error.c_str());
      return 1;
    }
    std::printf("device   %s; plugin built for %s\n", backend->info().describe().c_str(), api->build);
    return 0;
  }
  if (artifact.empty()) return usage();

  auto cpu = Session::open(artifact, {threads, "", "cpu"});
  if (!cpu) { std::fprintf(stderr, "error: %s\n", cpu.error().c_str()); return 1; }
  auto dev = Session::open(artifact, {threads, "", device});
  if (!dev) {
    if (noDevice(dev.error())) {
      std::printf("SKIP(no-gpu): %s\n", dev.error().c_str());
      return kSkip;
    }
    std::fprintf(stderr, "error: %s\n", dev.error().c_str());
    return 1;
  }
  std::unique_ptr<Session> baseline;
  if (!baselinePath.empty()) {
    if (!referenceDir.empty()) { std::fprintf(stderr, "error: --baseline and --reference do not go together\n"); return 2; }
    auto b = Session::open(baselinePath, {threads, "", "cpu"});
    if (!b) { std::fprintf(stderr, "error: --baseline: %s\n", b.error().c_str()); return 1; }
    baseline = std::move(*b);
  }
  std::printf("device   %s\n", (*dev)->device().c_str());
  size_t total = 0, onDevice = 0;
  std::map<std::string, size_t> hosted;
  for (const auto &p : (*dev)->placement()) {
    if (p.planTime) continue;
    ++total;
    if (p.onDevice) ++onDevice;
    else ++hosted[p.op + " (" + p.weightFormat + "): " + p.reason];
  }
  std::printf("kernels  %zu of %zu on the device\n", onDevice, total);
  for (const auto &[why, n] : hosted) std::printf("         %zu x on the host: %s\n", n, why.c_str());
  if (probe) return 0;

  std::ostringstream json;
  json << "{\n  \"artifact\": \"" << artifact << "\",\n  \"device\": \"" << (*dev)->device() << "\",\n  \"kernels_on_device\": " << onDevice
       << ",\n  \"kernels\": " << total << ",\n  \"runs\": [";
  bool ok = true;
  // The cases: carried inputs with another machine's CPU outputs, or synthesized inputs.
  std::vector<ReferenceCase> cases;
  if (!referenceDir.empty()) {
    auto read = readReference(referenceDir);
    if (!read) { std::fprintf(stderr, "error: %s\n", read.error().c_str()); return 2; }
    cases = std::move(*read);
  }
  std::stringstream shapes(shapesArg);
  std::string item;
  bool firstRun = true;
  std::printf("\n%-14s %-24s %12s %12s %10s %10s %10s %7s\n", "shape", "output", "max|diff|", "max|ref|", "cosine", "cpu ms", "dev ms", "ok");
  if (!cases.empty())
    std::printf("(case: the device against the carried CPU outputs; the cpu row: this machine's CPU against them)\n");
  size_t nextCase = 0;
  while (cases.empty() ? bool(std::getline(shapes, item, ',')) : nextCase < cases.size()) {
    std::map<std::string, Tensor> inputs;
    std::vector<NamedTensor> carried;
    if (!cases.empty()) {
      ReferenceCase &rc = cases[nextCase++];
      item = rc.name;
      inputs = rc.inputs;
      for (auto &[name, t] : rc.outputs) carried.push_back({name, t});
    } else {
      int64_t batch = 0, seq = 0;
      if (std::sscanf(item.c_str(), "%lldx%lld", (long long *)&batch, (long long *)&seq) != 2 || batch < 1 || seq < 1) {
        std::fprintf(stderr, "error: --shapes: '%s' is not BATCHxSEQ\n", item.c_str());
        return 2;
      }
      for (const auto &info : (*cpu)->inputs()) inputs[info.name] = tools::synthesize(info, tools::concreteShape(info, batch, seq));
    }
    auto local = (*cpu)->run(inputs);
    if (!local) { std::fprintf(stderr, "error: cpu, %s: %s\n", item.c_str(), local.error().c_str()); return 1; }
    if (!carried.empty()) { // the carried outputs by the session's output names
      std::vector<NamedTensor> ordered;
      for (const auto &o : *local) {
        auto it = std::find_if(carried.begin(), carried.end(), [&](const NamedTensor &t) { return t.name == o.name; });
        if (it == carried.end()) { std::fprintf(stderr, "error: case %s has no outputs/%s.npy\n", item.c_str(), o.name.c_str()); return 2; }
        ordered.push_back(*it);
      }
      carried = std::move(ordered);
      for (size_t o = 0; o < local->size(); ++o) { // this machine's CPU against the carried outputs
        const Verdict v = judge(carried[o].tensor, (*local)[o].tensor, rtol);
        ok &= v.pass;
        std::printf("%-14s %-24s %12.3g %12.3g %10.7f %10s %10s %7s\n", "cpu", carried[o].name.substr(0, 24).c_str(), v.d.maxAbs, v.d.refMax,
                    v.d.cosine, "", "", v.word());
      }
    }
    auto ref = carried.empty() ? std::move(local) : Expected<std::vector<NamedTensor>>(std::move(carried));
    auto got = (*dev)->run(inputs);
    if (!got) { std::fprintf(stderr, "error: %s, %s: %s\n", device.c_str(), item.c_str(), got.error().c_str()); return 1; }
    Expected<std::vector<NamedTensor>> base = std::vector<NamedTensor>{};
    if (baseline) {
      base = baseline->run(inputs);
      if (!base) { std::fprintf(stderr, "error: --baseline, %s: %s\n", item.c_str(), base.error().c_str()); return 1; }
      if (base->size() != ref->size()) { std::fprintf(stderr, "error: --baseline has %zu outputs, the artifact %zu\n", base->size(), ref->size()); return 2; }
    }
    double cpuMs = medianMs(reps, [&] { return bool((*cpu)->run(inputs)); });
    double devMs = medianMs(reps, [&] { return bool((*dev)->run(inputs)); });
    for (size_t o = 0; o < ref->size(); ++o) {
      Verdict v = judge((*ref)[o].tensor, (*got)[o].tensor, rtol);
      const Difference &d = v.d;
      double cpuErr = 0, devErr = 0;
      if (baseline) {
        cpuErr = relativeError((*base)[o].tensor, (*ref)[o].tensor), devErr = relativeError((*base)[o].tensor, (*got)[o].tensor);
        v.pass = v.pass || (v.same && d.finite && asAccurate(cpuErr, devErr, slack));
      }
      ok &= v.pass;
      std::printf("%-14s %-24s %12.3g %12.3g %10.7f %10.3f %10.3f %7s\n", item.c_str(), (*ref)[o].name.substr(0, 24).c_str(), d.maxAbs,
                  d.refMax, d.cosine, cpuMs, devMs, v.word());
      if (baseline)
        std::printf("%-14s %-24s error against the baseline: cpu %.4g, %s %.4g\n", "", "", cpuErr, device.c_str(), devErr);
      json << (firstRun ? "\n" : ",\n") << "    {\"shape\": \"" << item << "\", \"output\": \"" << (*ref)[o].name << "\", \"max_abs\": " << d.maxAbs
           << ", \"ref_max\": " << d.refMax << ", \"cosine\": " << d.cosine << ", \"cpu_ms\": " << cpuMs << ", \"device_ms\": " << devMs
           << ", \"pass\": " << (v.pass ? "true" : "false");
      if (baseline) json << ", \"baseline_error_cpu\": " << cpuErr << ", \"baseline_error_device\": " << devErr;
      json << "}";
      firstRun = false;
    }
  }
  json << "\n  ]";

  if (decode > 0) {
    if (!(*cpu)->incrementalReason().empty()) {
      std::fprintf(stderr, "error: --decode: %s\n", (*cpu)->incrementalReason().c_str());
      return 1;
    }
    const int64_t context = prompt + decode;
    for (Session *s : {cpu->get(), dev->get(), baseline.get()})
      if (s)
        if (Status st = s->startDecoding(context); !st.ok()) { std::fprintf(stderr, "error: startDecoding: %s\n", st.message().c_str()); return 1; }
    double cpuErrSum = 0, devErrSum = 0;
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < prompt; ++i) ids.push_back(int32_t(1 + (i * 37) % 100));
    double worst = 0, cpuSeconds = 0, devSeconds = 0;
    int64_t agree = 0;
    bool decodeOk = true;
    for (int64_t step = 0; step <= decode; ++step) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = (*cpu)->append(ids);
      auto t1 = std::chrono::steady_clock::now();
      if (!r) { std::fprintf(stderr, "error: cpu decode step %lld: %s\n", (long long)step, r.error().c_str()); return 1; }
      Tensor ref = r->clone();
      auto g = (*dev)->append(ids);
      auto t2 = std::chrono::steady_clock::now();
      if (!g) { std::fprintf(stderr, "error: %s decode step %lld: %s\n", device.c_str(), (long long)step, g.error().c_str()); return 1; }
      if (step > 0) { // the prompt's prefill is not a decode step
        cpuSeconds += std::chrono::duration<double>(t1 - t0).count();
        devSeconds += std::chrono::duration<double>(t2 - t1).count();
      }
      Difference d = compare(ref, *g);
      double rel = d.maxAbs / std::max(d.refMax, 1e-6);
      worst = std::max(worst, rel);
      if (!d.finite || rel > rtol) decodeOk = false;
      if (baseline) {
        auto b = baseline->append(ids);
        if (!b) { std::fprintf(stderr, "error: --baseline decode step %lld: %s\n", (long long)step, b.error().c_str()); return 1; }
        cpuErrSum += relativeError(*b, ref), devErrSum += relativeError(*b, *g);
      }
      const int64_t vocab = ref.shape().back();
      const float *rp = ref.data<float>(), *gp = g->data<float>();
      int32_t rArg = int32_t(std::max_element(rp, rp + vocab) - rp), gArg = int32_t(std::max_element(gp, gp + vocab) - gp);
      agree += rArg == gArg;
      ids = {rArg}; // both follow the CPU's greedy choice
    }
    if (baseline) {
      const double cpuErr = cpuErrSum / double(decode + 1), devErr = devErrSum / double(decode + 1);
      const bool accurate = asAccurate(cpuErr, devErr, slack);
      std::printf("decode   mean error against the baseline: cpu %.4g, %s %.4g (%s)\n", cpuErr, device.c_str(), devErr,
                  accurate ? "as accurate" : "LESS ACCURATE");
      decodeOk = decodeOk || accurate;
    }
    ok &= decodeOk;
    std::printf("\ndecode   prompt %lld + %lld steps: worst max|diff|/max|ref| %.3g, greedy agreement %lld/%lld, cpu %.1f tok/s, %s %.1f tok/s  %s\n",
                (long long)prompt, (long long)decode, worst, (long long)agree, (long long)(decode + 1), double(decode) / cpuSeconds,
                device.c_str(), double(decode) / devSeconds, decodeOk ? "ok" : "MISMATCH");
    json << ",\n  \"decode\": {\"prompt\": " << prompt << ", \"steps\": " << decode << ", \"worst_rel\": " << worst << ", \"greedy_agree\": " << agree
         << ", \"cpu_tokens_per_s\": " << double(decode) / cpuSeconds << ", \"device_tokens_per_s\": " << double(decode) / devSeconds
         << ", \"pass\": " << (decodeOk ? "true" : "false") << "}";
  }
  json << ",\n  \"rtol\": " << rtol << ",\n  \"pass\": " << (ok ? "true" : "false") << "\n}\n";
  if (!jsonPath.empty())
    if (Status st = tools::writeTextFile(jsonPath, json.str()); !st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.message().c_str());
      return 1;
    }
  std::printf("%s\n", ok ? "PASS" : "FAIL: device outputs differ from the CPU beyond the tolerance");
  return ok ? 0 : 1;
}
