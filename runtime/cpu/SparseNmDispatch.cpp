// Picks the N:M sparse table for an ISA level, and packs dense masked weights
// into the N:M layout (SparseNm.h). Compiled with default flags, so it runs on
// any x86-64 CPU before anything wider is known to exist.
#include "runtime/cpu/CpuFeatures.h"
#include "runtime/cpu/SparseNm.h"

#include <cstring>

namespace lathe::cpu {

const NmTable *nmTableFor(const char *isaLevel) {
  if (!isaLevel) return nullptr;
  if (!std::strcmp(isaLevel, "avx512")) return cpuRunsLevel("avx512") ? nmavx512::table() : nullptr;
  if (!std::strcmp(isaLevel, "avx2")) return cpuRunsLevel("avx2") ? nmavx2::table() : nullptr;
  if (!std::strcmp(isaLevel, "baseline")) return nmbaseline::table();
  return nullptr;
}

int64_t nmIndexBytesPerRow(int64_t k, int pattern) { return pattern == 4 ? k / 8 : k / 4; }

namespace {

// Checks the shape and the mask, and calls kept(row, t, column, index) for
// every kept weight in row/column order.
template <class Kept>
std::string walkMask(const uint8_t *keep, int64_t n, int64_t k, int pattern, Kept kept) {
  if (pattern != 4 && pattern != 8)
    return "N:M pattern " + std::to_string(pattern) + " is not supported; expected 4 (2:4) or 8 (4:8)";
  if (n < 0 || k <= 0 || k % 32 != 0)
    return "an N:M weight needs k a positive multiple of 32 input columns, found k = " + std::to_string(k);
  const int64_t perGroup = pattern / 2;
  const char *name = pattern == 4 ? "2:4" : "4:8";
  for (int64_t r = 0; r < n; ++r) {
    int64_t t = 0;
    for (int64_t g = 0; g < k / pattern; ++g) {
      int64_t count = 0;
      for (int i = 0; i < pattern; ++i) count += keep[r * k + g * pattern + i] != 0;
      if (count != perGroup)
        return std::string("the ") + name + " mask keeps " + std::to_string(count) + " weights in group " +
               std::to_string(g) + " (columns " + std::to_string(g * pattern) + ".." +
               std::to_string(g * pattern + pattern - 1) + ") of row " + std::to_string(r) + ", expected " +
               std::to_string(perGroup);
      for (int i = 0; i < pattern; ++i)
        if (keep[r * k + g * pattern + i]) kept(r, t++, g * pattern + i, i);
    }
  }
  return "";
}

// Writes kept value t's index into its row's index bytes.
void putIndex(uint8_t *rowIndices, int64_t t, int index, int pattern) {
  if (pattern == 4) rowIndices[t / 4] = uint8_t(rowIndices[t / 4] | index << (2 * (t % 4)));
  else rowIndices[t / 2] = uint8_t(rowIndices[t / 2] | index << (4 * (t % 2)));
}

} // namespace

std::string nmPackF32(const float *w, const uint8_t *keep, int64_t n, int64_t k, int pattern, float *values,
                      uint8_t *indices) {
  // Validate everything before writing anything.
  if (auto e = walkMask(keep, n, k, pattern, [](int64_t, int64_t, int64_t, int) {}); !e.empty()) return e;
  const int64_t indexBytes = nmIndexBytesPerRow(k, pattern);
  std::memset(indices, 0, size_t(n * indexBytes));
  return walkMask(keep, n, k, pattern, [&](int64_t r, int64_t t, int64_t column, int index) {
    values[r * (k / 2) + t] = w[r * k + column];
    putIndex(indices + r * indexBytes, t, index, pattern);
  });
}

std::string nmPackInt4(const int32_t *keptCodes, const uint8_t *keep, int64_t n, int64_t k, int pattern,
                       uint8_t *codes, uint8_t *indices) {
  if (auto e = walkMask(keep, n, k, pattern, [](int64_t, int64_t, int64_t, int) {}); !e.empty()) return e;
  for (int64_t i = 0; i < n * (k / 2); ++i)
    if (keptCodes[i] < 0 || keptCodes[i] > 15)
      return "int4 code " + std::to_string(keptCodes[i]) + " of kept value " + std::to_string(i % (k / 2)) +
             " in row " + std::to_string(i / (k / 2)) + " is outside 0..15";
  const int64_t indexBytes = nmIndexBytesPerRow(k, pattern);
  std::memset(indices, 0, size_t(n * indexBytes));
  std::memset(codes, 0, size_t(n * (k / 4)));
  return walkMask(keep, n, k, pattern, [&](int64_t r, int64_t t, int64_t, int index) {
    const int32_t q = keptCodes[r * (k / 2) + t];
    uint8_t &byte = codes[r * (k / 4) + t / 2];
    byte = uint8_t(byte | q << (4 * (t % 2)));
    putIndex(indices + r * indexBytes, t, index, pattern);
  });
}

int64_t bitmapMaskBytesPerRow(int64_t k) { return k / 8; }

std::string bitmapPack(const float *w, const uint8_t *keep, int64_t n, int64_t k, float *values, uint8_t *masks,
                       int64_t *nnz) {
  if (n < 0 || k <= 0 || k % 32 != 0)
    return "a bitmap sparse weight needs k a positive multiple of 32 input columns, found k = " + std::to_string(k) +
           (n < 0 ? " and n = " + std::to_string(n) : std::string());
  int64_t count = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t b = 0; b < k / 8; ++b) {
      uint8_t bits = 0;
      for (int i = 0; i < 8; ++i) {
        const int64_t at = r * k + 8 * b + i;
        if (keep ? keep[at] != 0 : w[at] != 0.0f) {
          bits = uint8_t(bits | 1 << i);
          if (values) values[count] = w[at];
          ++count;
        }
      }
      if (masks) masks[r * (k / 8) + b] = bits;
    }
  if (nnz) *nnz = count;
  return "";
}

} // namespace lathe::cpu
