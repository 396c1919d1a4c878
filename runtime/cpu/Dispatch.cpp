#include "runtime/cpu/Kernels.h"

#include "runtime/cpu/CpuFeatures.h"

#include <cstdlib>
#include <cstring>
#include <sys/syscall.h>
#include <unistd.h>

namespace lathe::cpu {

namespace {

int levelRank(const char *level) {
  if (!std::strcmp(level, "baseline")) return 0;
  if (!std::strcmp(level, "avx2")) return 1;
  if (!std::strcmp(level, "avx512")) return 2;
  return -1;
}

// The highest level LATHE_ISA_MAX allows (2 when unset; an unknown value
// allows nothing above baseline and is reported by selectIsa).
int levelCap() {
  const char *cap = std::getenv("LATHE_ISA_MAX");
  if (!cap || !*cap) return 2;
  int r = levelRank(cap);
  return r < 0 ? 0 : r;
}

bool hardwareRuns(int rank) {
  __builtin_cpu_init();
  if (rank <= 0) return true;
  // Exactly what the -march levels the kernel files are built with assume.
  return rank == 1 ? __builtin_cpu_supports("x86-64-v3") != 0 : __builtin_cpu_supports("x86-64-v4") != 0;
}

} // namespace

bool cpuRunsLevel(const char *level) {
  const int rank = levelRank(level);
  return rank >= 0 && rank <= levelCap() && hardwareRuns(rank);
}

bool cpuHasAvx512Vnni() {
  __builtin_cpu_init();
  return cpuRunsLevel("avx512") && __builtin_cpu_supports("avx512vnni");
}

bool cpuHasAmxInt8() {
  // Linux hands out the 8 KB tile state only on request (once per process).
  static const bool granted = [] {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-int8")) return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return ::syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  const char *off = std::getenv("LATHE_AMX");
  return granted && cpuHasAvx512Vnni() && !(off && std::strcmp(off, "0") == 0);
}

std::vector<std::string> supportedIsas() {
  std::vector<std::string> out;
  for (const char *l : {"baseline", "avx2", "avx512"})
    if (cpuRunsLevel(l)) out.push_back(l);
  return out;
}

const IsaTable *isaByName(const std::string &name) {
  if (name == "baseline") return baseline::table();
  if (name == "avx2") return avx2::table();
  if (name == "avx512") return avx512::table();
  return nullptr;
}

const IsaTable *selectIsa(const std::string &forced, std::string &error) {
  std::string level = forced;
  std::string origin = "the session options";
  if (level.empty()) {
    if (const char *env = std::getenv("LATHE_ISA"); env && *env) {
      level = env;
      origin = "LATHE_ISA";
    }
  }
  const char *cap = std::getenv("LATHE_ISA_MAX");
  const std::string capped = cap && *cap ? std::string(" (LATHE_ISA_MAX=") + cap + ")" : std::string();
  if (!capped.empty() && levelRank(cap) < 0) {
    error = std::string("LATHE_ISA_MAX is '") + cap + "'; known levels are baseline, avx2, avx512";
    return nullptr;
  }
  if (level.empty()) return isaByName(supportedIsas().back());
  if (!isaByName(level)) {
    error = origin + " asks for instruction set '" + level + "'; known levels are baseline, avx2, avx512";
    return nullptr;
  }
  if (!cpuRunsLevel(level.c_str())) {
    error = origin + " asks for instruction set '" + level + "' but this CPU does not support it" + capped;
    return nullptr;
  }
  return isaByName(level);
}

} // namespace lathe::cpu
