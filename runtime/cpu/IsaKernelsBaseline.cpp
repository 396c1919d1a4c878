#define LATHE_ISA_NAMESPACE baseline
#define LATHE_ISA_NAME "baseline"
#define LATHE_VECTOR_WIDTH 4
#include "runtime/cpu/IsaKernels.inc"
