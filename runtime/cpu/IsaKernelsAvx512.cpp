#define LATHE_ISA_NAMESPACE avx512
#define LATHE_ISA_NAME "avx512"
#define LATHE_VECTOR_WIDTH 16
#define LATHE_GEMM_MR 12 // 32 vector registers: 24 accumulators
#include "runtime/cpu/IsaKernels.inc"
