// Picks the int8 GEMM table for an ISA level (compiled with default flags, so
// it runs on any x86-64 CPU before anything wider is known to exist).
#include "runtime/cpu/Int8Gemm.h"

#include <cstring>

namespace lathe::cpu {

// AVX-512 VNNI plus the AVX-512 subsets that -march=x86-64-v4 assumes (the
// same checks as Dispatch.cpp's "avx512" level).
static bool cpuHasVnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2") &&
         __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni");
}

const Int8Table *int8TableFor(const char *isaLevel) {
  if (!isaLevel) return nullptr;
  if (!std::strcmp(isaLevel, "avx512")) return cpuHasVnni() ? int8vnni::table() : int8avx2::table();
  if (!std::strcmp(isaLevel, "avx2")) return int8avx2::table();
  if (!std::strcmp(isaLevel, "baseline")) return int8baseline::table();
  return nullptr;
}

} // namespace lathe::cpu
