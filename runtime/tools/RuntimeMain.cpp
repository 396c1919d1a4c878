// lathe-rt: the runtime half of the `lathe` CLI (run, bench, inspect, generate)
// without the compiler, for machines that build only the runtime (the GPU
// machine). Same options as `lathe <command>`; a plain parser (no CLI11).
#include "runtime/tools/Commands.h"
#include "runtime/tools/Generate.h"

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace lathe::tools;

namespace {

[[noreturn]] void die(const std::string &message) {
  std::fprintf(stderr, "lathe-rt: %s\n", message.c_str());
  std::exit(2);
}

/// Sets o.device when the options have one (headers from before the device work lack it).
template <class O> void setDevice(O &o, const std::string &v) {
  if constexpr (requires { o.device = v; }) o.device = v;
  else die("this build has no --device");
}

} // namespace

int main(int argc, char **argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "--version") {
    std::printf("lathe-rt\n%s\n", cpuSummary().c_str());
    return 0;
  }
  if (cmd != "run" && cmd != "bench" && cmd != "inspect" && cmd != "generate") {
    std::fprintf(cmd == "-h" || cmd == "--help" ? stdout : stderr,
                 "Usage: lathe-rt run ARTIFACT --input NAME=x.npy ... [--output-dir D] [--dump GLOB] [--incremental N]\n"
                 "       lathe-rt bench ARTIFACT [--batch B] [--seq S] [--warmup W] [--iterations I] [--profile]\n"
                 "       lathe-rt inspect ARTIFACT\n"
                 "       lathe-rt generate ARTIFACT (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N] [--max-context C]\n"
                 "                [--temperature T] [--top-k K] [--top-p P] [--seed S] [--ignore-eos] [--quiet] [--output-ids F]\n"
                 "Common: [--threads N] [--device cpu|cuda|cuda:N] (not inspect)\n"
                 "       lathe-rt --version (the CPU instruction sets it can use here)\n");
    return cmd == "-h" || cmd == "--help" ? 0 : 2;
  }
  RunOptions run;
  BenchOptions bench;
  GenerateOptions gen;
  std::string artifact;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { if (i + 1 >= argc) die(a + " needs a value"); return argv[++i]; };
    auto number = [&]() -> double {
      std::string v = value();
      char *end = nullptr;
      double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end) die(a + " takes a number, got '" + v + "'");
      return d;
    };
    if (a.empty() || a[0] != '-') { if (!artifact.empty()) die("unexpected argument '" + a + "'"); artifact = a; }
    else if (a == "--threads") run.threads = bench.threads = gen.threads = int(number());
    else if (a == "--device") { std::string v = value(); setDevice(run, v); setDevice(bench, v); setDevice(gen, v); }
    else if (cmd == "run" && a == "--input") {
      std::string v = value();
      size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0) die("--input takes NAME=path.npy, got '" + v + "'");
      run.inputs.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    }
    else if (cmd == "run" && a == "--output-dir") run.outputDir = value();
    else if (cmd == "run" && a == "--dump") run.dumpPattern = value();
    else if (cmd == "run" && a == "--incremental") run.incremental = int64_t(number());
    else if (cmd == "bench" && a == "--batch") bench.batch = int64_t(number());
    else if (cmd == "bench" && a == "--seq") bench.seq = int64_t(number());
    else if (cmd == "bench" && a == "--warmup") bench.warmup = int(number());
    else if (cmd == "bench" && a == "--iterations") bench.iterations = int(number());
    else if (cmd == "bench" && a == "--profile") bench.profile = true;
    else if (cmd == "generate" && a == "--prompt") gen.prompt = value();
    else if (cmd == "generate" && a == "--prompt-ids") gen.promptIds = value();
    else if (cmd == "generate" && a == "--max-new-tokens") gen.maxNewTokens = int64_t(number());
    else if (cmd == "generate" && a == "--max-context") gen.maxContext = int64_t(number());
    else if (cmd == "generate" && a == "--temperature") gen.sampling.temperature = float(number());
    else if (cmd == "generate" && a == "--top-k") gen.sampling.topK = int64_t(number());
    else if (cmd == "generate" && a == "--top-p") gen.sampling.topP = float(number());
    else if (cmd == "generate" && a == "--seed") gen.seed = uint64_t(number());
    else if (cmd == "generate" && a == "--ignore-eos") gen.ignoreEos = true;
    else if (cmd == "generate" && a == "--quiet") gen.quiet = true;
    else if (cmd == "generate" && a == "--output-ids") gen.outputIds = value();
    else die("unknown option '" + a + "' for " + cmd);
  }
  if (artifact.empty()) die(cmd + " needs an artifact");
  if (cmd == "inspect") return inspectArtifactCommand(artifact);
  if (cmd == "run") { run.artifact = artifact; return runArtifactCommand(run); }
  if (cmd == "bench") {
    if (bench.batch <= 0 || bench.seq <= 0) die("--batch and --seq must be positive");
    bench.artifact = artifact;
    return benchArtifactCommand(bench);
  }
  if (!gen.prompt.empty() && !gen.promptIds.empty()) die("--prompt and --prompt-ids exclude each other");
  gen.artifact = artifact;
  return generateCommand(gen);
}
