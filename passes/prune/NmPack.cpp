#include "passes/prune/NmPack.h"

#include "passes/quantize/Grid.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lathe::prune {

Pattern parsePattern(const std::string &text) {
  if (text == "2:4") return {2, 4};
  if (text == "4:8") return {4, 8};
  return {};
}

std::vector<uint8_t> maskOf(const float *w, int64_t out, int64_t in, Pattern p, std::string &error) {
  std::vector<uint8_t> keep(static_cast<size_t>(out * in), 0);
  for (int64_t r = 0; r < out; ++r)
    for (int64_t g = 0; g + p.m <= in; g += p.m) {
      const int64_t base = r * in + g;
      int kept = 0;
      for (int j = 0; j < p.m; ++j)
        if (w[base + j] != 0.f) keep[size_t(base + j)] = 1, ++kept;
      if (kept > p.n) {
        error = "row " + std::to_string(r) + ", columns " + std::to_string(g) + ".." + std::to_string(g + p.m - 1) + " have " +
                std::to_string(kept) + " non-zero weights; " + std::to_string(p.n) + ":" + std::to_string(p.m) +
                " allows " + std::to_string(p.n);
        return {};
      }
      for (int j = 0; j < p.m && kept < p.n; ++j)
        if (!keep[size_t(base + j)]) keep[size_t(base + j)] = 1, ++kept;
    }
  return keep;
}

BitmapPacked packBitmap(const float *w, int64_t out, int64_t in) {
  BitmapPacked r;
  r.masks.assign(size_t(out * (in / 8)), 0);
  std::vector<float> values;
  for (int64_t row = 0; row < out; ++row)
    for (int64_t c = 0; c < in; ++c)
      if (w[row * in + c] != 0.f) {
        r.masks[size_t(row * (in / 8) + c / 8)] |= char(1 << (c % 8));
        values.push_back(w[row * in + c]);
      }
  r.nnz = int64_t(values.size());
  r.values.resize(values.size() * 4);
  if (!values.empty()) std::memcpy(r.values.data(), values.data(), r.values.size());
  return r;
}

NmPacked packNm(const float *w, const std::vector<uint8_t> &keep, int64_t out, int64_t in, Pattern p, int64_t group,
                const float *original) {
  NmPacked r;
  const int64_t half = in / 2, indexBytes = indexBytesPerRow(in, p);
  const bool int4 = group > 0;
  r.values.assign(size_t(out * (int4 ? in / 4 : half * 4)), 0);
  r.indices.assign(size_t(out * indexBytes), 0);
  const quantize::GridSpec spec{"int4", group / 2, true};
  const int64_t groups = int4 ? (in + group - 1) / group : 0; // the last group may be shorter
  if (int4) r.scales.assign(size_t(out * groups * 2), 0);
  std::vector<float> kept(static_cast<size_t>(half)), hat(static_cast<size_t>(half));
  std::vector<int> position(static_cast<size_t>(half));
  double err = 0, norm = 0;
  for (int64_t row = 0; row < out; ++row) {
    const float *wr = w + row * in;
    int64_t t = 0;
    for (int64_t c = 0; c < in; ++c)
      if (keep[size_t(row * in + c)]) {
        kept[size_t(t)] = wr[c];
        position[size_t(t)] = int(c % p.m);
        ++t;
      }
    uint8_t *idx = reinterpret_cast<uint8_t *>(r.indices.data()) + row * indexBytes;
    for (int64_t k = 0; k < half; ++k) {
      if (p.m == 4) idx[k / 4] |= uint8_t(position[size_t(k)] << (2 * (k % 4)));
      else idx[k / 2] |= uint8_t(position[size_t(k)] << (4 * (k % 2)));
    }
    if (int4) {
      uint8_t *codes = reinterpret_cast<uint8_t *>(r.values.data()) + row * (in / 4);
      uint16_t *scales = reinterpret_cast<uint16_t *>(r.scales.data()) + row * groups;
      const int64_t per = group / 2;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t count = std::min(per, half - g * per);
        const quantize::Grid grid = quantize::fitGrid(spec, kept.data() + g * per, count);
        scales[g] = grid.scaleHalf;
        for (int64_t k = g * per; k < g * per + count; ++k) {
          const int code = grid.code(kept[size_t(k)]);
          codes[k / 2] |= uint8_t(code << (4 * (k % 2)));
          hat[size_t(k)] = grid.value(code);
        }
      }
    } else {
      std::memcpy(r.values.data() + row * half * 4, kept.data(), size_t(half) * 4);
      hat = kept;
    }
    // Error against the original (unpruned) weight, Ŵ zero where pruned.
    const float *ref = original ? original + row * in : wr;
    int64_t k = 0;
    for (int64_t c = 0; c < in; ++c) {
      const double v = keep[size_t(row * in + c)] ? hat[size_t(k++)] : 0.0;
      err += (ref[c] - v) * (ref[c] - v);
      norm += double(ref[c]) * ref[c];
    }
  }
  r.relativeError = norm > 0 ? std::sqrt(err / norm) : 0.0;
  return r;
}

} // namespace lathe::prune
