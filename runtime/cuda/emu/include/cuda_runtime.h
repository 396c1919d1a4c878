// The CUDA emulator's stand-in for <cuda_runtime.h> (see ../CudaEmu.h).
#pragma once
#include "runtime/cuda/emu/CudaEmu.h"
