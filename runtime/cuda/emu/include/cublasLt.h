// The CUDA emulator's stand-in for <cublasLt.h> (see ../CudaEmu.h).
#pragma once
#include "runtime/cuda/emu/CudaEmu.h"
