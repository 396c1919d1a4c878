// What this CPU can run, in one place for every kernel table (fp32, int8,
// N:M). Compiled with default flags, so it runs on any x86-64 CPU.
#pragma once

namespace lathe::cpu {

/// Whether this CPU runs code built for `level`: "baseline" (x86-64), "avx2"
/// (everything -march=x86-64-v3 assumes: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE)
/// or "avx512" (x86-64-v4: AVX-512 F/BW/CD/DQ/VL on top). The environment
/// variable LATHE_ISA_MAX=baseline|avx2 caps the answer, so the paths of a
/// narrower machine (CI's, without AVX-512) can be run and tested on a wider one.
bool cpuRunsLevel(const char *level);

/// AVX-512 VNNI on top of the "avx512" level (the int8 GEMM table), under the same cap.
bool cpuHasAvx512Vnni();

/// AMX-TILE and AMX-INT8 on top of the "avx512" level, with the tile state
/// granted by the kernel (arch_prctl ARCH_REQ_XCOMP_PERM, asked once), under the
/// same cap; LATHE_AMX=0 turns it off (the VNNI table then runs).
bool cpuHasAmxInt8();

} // namespace lathe::cpu
