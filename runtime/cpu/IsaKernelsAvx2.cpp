#define LATHE_ISA_NAMESPACE avx2
#define LATHE_ISA_NAME "avx2"
#define LATHE_VECTOR_WIDTH 8
#include "runtime/cpu/IsaKernels.inc"
