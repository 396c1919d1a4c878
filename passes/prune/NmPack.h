// lathe.sparse_linear's storage (see LatheOps.td): the kept values of an N:M
// pruned weight in column order, f32 or symmetric int4, and each one's
// position inside its M-group (2 bits for 2:4, a nibble for 4:8).
#pragma once

#include "passes/prune/PruneMath.h"

#include <string>
#include <vector>

namespace lathe::prune {

/// "2:4" / "4:8" → the pattern; anything else → 0:0.
Pattern parsePattern(const std::string &text);

/// The keep mask of an N:M pruned weight [out, in]: each group's non-zero
/// weights, completed with zero-valued positions (lowest first) up to N.
/// Empty with `error` when a group has more than N non-zero weights.
std::vector<uint8_t> maskOf(const float *w, int64_t out, int64_t in, Pattern p, std::string &error);

struct NmPacked {
  std::vector<char> values;  // f32 [out, in/2] | int4 codes [out, in/4]
  std::vector<char> indices; // [out, in/8] (2:4) | [out, in/4] (4:8)
  std::vector<char> scales;  // int4: f16 [out, ceil(in/group)] (the last group may be shorter)
  double relativeError = 0;  // ‖W − Ŵ‖ / ‖W‖ against `original` (the unpruned weight when given)
};

/// Packs the kept values (`keep` from maskOf); in a multiple of 32. With
/// `group` > 0 the values become int4 (a symmetric grid per `group` input
/// columns, fitted on that group's kept values only).
NmPacked packNm(const float *w, const std::vector<uint8_t> &keep, int64_t out, int64_t in, Pattern p, int64_t group,
                const float *original = nullptr);

/// Unstructured sparsity (pattern "unstructured"): a bitmap [out, in/8] (bit
/// c % 8 of byte c/8 for column c) and the non-zero values of every row, row
/// after row; in a multiple of 32.
struct BitmapPacked {
  std::vector<char> values, masks;
  int64_t nnz = 0;
};
BitmapPacked packBitmap(const float *w, int64_t out, int64_t in);

/// Bytes of the index array per row.
inline int64_t indexBytesPerRow(int64_t in, Pattern p) { return p.m == 4 ? in / 8 : in / 4; }

} // namespace lathe::prune
