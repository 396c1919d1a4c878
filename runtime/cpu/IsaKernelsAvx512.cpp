#define LATHE_ISA_NAMESPACE avx512
#define LATHE_ISA_NAME "avx512"
#define LATHE_VECTOR_WIDTH 16
#include "runtime/cpu/IsaKernels.inc"
