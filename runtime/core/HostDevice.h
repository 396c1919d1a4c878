// LATHE_HD marks per-thread math that compiles both for the device (nvcc) and
// for the host (g++), so unit tests run it on machines without a GPU and
// compare it with the CPU kernels.
#pragma once

#if defined(__CUDACC__)
#define LATHE_HD __host__ __device__ __forceinline__
#else
#define LATHE_HD inline
#endif

// The device branches of the per-thread math (`#if defined(LATHE_DEVICE_BRANCH)`):
// compiled by nvcc for the device, and by the CUDA emulator (runtime/cuda/emu,
// which provides the intrinsics they call) so that it runs the device's code.
#if defined(__CUDA_ARCH__) || defined(LATHE_CUDA_EMU)
#define LATHE_DEVICE_BRANCH 1
#endif
