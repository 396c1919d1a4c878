// The CUDA emulator's stand-in for <cublas_v2.h> (see ../CudaEmu.h).
#pragma once
#include "runtime/cuda/emu/CudaEmu.h"
