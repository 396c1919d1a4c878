// IEEE half and bfloat16 conversions (round to nearest even, NaN kept quiet),
// one definition for the CPU kernels, the CUDA kernels and the tools: the
// device path must round exactly like the host path.
#pragma once

#include "runtime/core/HostDevice.h"

#include <cstdint>

namespace lathe::numeric {

LATHE_HD uint32_t floatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  return u;
#endif
}
LATHE_HD float bitsFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
#endif
}

/// Exact for every pattern (NaN payloads kept).
LATHE_HD float halfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
  if (exponent == 0) { // zero or subnormal: mantissa · 2^-24, exact in float
    const float f = float(mantissa) * 5.9604644775390625e-8f;
    return sign ? -f : f;
  }
  return bitsFloat(exponent == 31 ? (sign | 0x7F800000u | mantissa << 13) : (sign | (exponent + 112) << 23 | mantissa << 13));
}

LATHE_HD uint16_t floatToHalf(float f) {
  const uint32_t x = floatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exp = int32_t((x >> 23) & 0xffu) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xffu) == 0xffu) return uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0u));
  if (exp >= 31) return uint16_t(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return uint16_t(sign);
    mant |= 0x800000u;
    const uint32_t shift = uint32_t(14 - exp);
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = sign | (uint32_t(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) ++half; // a carry into the exponent is the right rounding
  return uint16_t(half);
}

LATHE_HD float bf16ToFloat(uint16_t h) { return bitsFloat(uint32_t(h) << 16); }
LATHE_HD uint16_t floatToBf16(float f) {
  const uint32_t x = floatBits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

} // namespace lathe::numeric
