// The fixed preamble of a .lathe file and its checksum.
//
// Layout (all integers little-endian):
//   offset  size  field
//        0     8  magic "LATHEART"
//        8     2  format major
//       10     2  format minor
//       12     4  preamble size (64)
//       16     8  flatbuffer offset (64)
//       24     8  flatbuffer size
//       32     8  weights region offset (multiple of 64)
//       40     8  weights region size
//       48     8  file size
//       56     8  checksum: checksum64() of the whole file with these 8 bytes zeroed
//   then the flatbuffer (schema lathe_artifact.fbs), zero padding to 64, and the
//   weight blobs, each at a 64-byte aligned offset, padding bytes zero.
//
// checksum64 is FNV-1a (64-bit prime 0x100000001b3) run on four interleaved
// lanes of 8-byte little-endian words (so it streams at memory speed); lane i
// starts at the FNV offset basis xor i. The lanes are folded FNV-1a style,
// the remaining (< 32) tail bytes are hashed one byte at a time, and the
// length is xored in last.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lathe::artifact {

inline constexpr char kMagic[8] = {'L', 'A', 'T', 'H', 'E', 'A', 'R', 'T'};
inline constexpr uint16_t kFormatMajor = 1;
inline constexpr uint16_t kFormatMinor = 1; // 1.1: optional embedded tokenizer vocabulary
inline constexpr uint64_t kPreambleSize = 64;
inline constexpr uint64_t kBlobAlignment = 64;
inline constexpr size_t kChecksumOffset = 56;

/// The versions this runtime reads: major kFormatMajor, any minor <= kFormatMinor.
const char *supportedVersionsSentence();

uint64_t checksum64(const uint8_t *data, size_t size);

} // namespace lathe::artifact
