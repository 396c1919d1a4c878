// Picks the int8 GEMM table for an ISA level (compiled with default flags, so
// it runs on any x86-64 CPU before anything wider is known to exist).
#include "runtime/cpu/CpuFeatures.h"
#include "runtime/cpu/Int8Gemm.h"

#include <cstring>

namespace lathe::cpu {

const Int8Table *int8TableFor(const char *isaLevel) {
  if (!isaLevel) return nullptr;
  if (!std::strcmp(isaLevel, "avx512"))
    return cpuHasAmxInt8() ? int8amx::table() : cpuHasAvx512Vnni() ? int8vnni::table() : int8avx2::table();
  if (!std::strcmp(isaLevel, "avx2")) return int8avx2::table();
  if (!std::strcmp(isaLevel, "baseline")) return int8baseline::table();
  return nullptr;
}

} // namespace lathe::cpu
