// A model's tokenizer as data: what GGUF files carry under tokenizer.ggml.*
// and what a .lathe artifact embeds so `lathe eval --text` and generation can
// turn text into ids without the source model. Plain C++, no MLIR.
//
// One byte encoding serves both places it is stored (an MLIR resource blob in
// the compiler's IR and a byte vector in the artifact), so they cannot drift:
//   "LVOC" u32 version(=1) | str model | str pre | i64 bos eos padding | u8 addBos
//   | u32 n, n × str tokens | u32 n, n × str merges | u32 n, n × i32 token types
// where str = u32 length + bytes; all integers little-endian.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lathe::artifact {

struct Vocabulary {
  std::string model;        // tokenizer.ggml.model; the tokenizer supports "gpt2"
  std::string preTokenizer; // tokenizer.ggml.pre ("gpt2", "smollm", ...)
  std::vector<std::string> tokens;
  std::vector<std::string> merges; // "left right", highest priority first
  std::vector<int32_t> tokenTypes; // empty: every token Normal
  int64_t bosId = -1, eosId = -1, paddingId = -1;
  bool addBos = false; // tokenizer.ggml.add_bos_token
};

std::string encodeVocabulary(const Vocabulary &vocabulary);

/// Bounds-checked decoding. Returns an empty string on success, otherwise what
/// is wrong (truncated, bad magic, an id outside the vocabulary, ...).
std::string decodeVocabulary(const uint8_t *data, size_t size, Vocabulary &out);

} // namespace lathe::artifact
