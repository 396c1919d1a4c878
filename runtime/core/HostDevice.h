// LATHE_HD marks per-thread math that compiles both for the device (nvcc) and
// for the host (g++), so unit tests run it on machines without a GPU and
// compare it with the CPU kernels.
#pragma once

#if defined(__CUDACC__)
#define LATHE_HD __host__ __device__ __forceinline__
#else
#define LATHE_HD inline
#endif
