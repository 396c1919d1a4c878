#define LATHE_ISA_NAMESPACE avx512
#define LATHE_ISA_NAME "avx512"
#define LATHE_VECTOR_WIDTH 16
#define LATHE_GEMM_MR 6 // 32 vector registers: 6 rows x 4 vectors = 24 accumulators
#define LATHE_GEMM_NV 4
#include "runtime/cpu/IsaKernels.inc"
