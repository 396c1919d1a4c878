// Byte-level BPE as GGUF files of the Llama family carry it (tokenizer.ggml.model
// "gpt2"): a vocabulary, ranked merges, token types and a named pre-tokenizer
// (tokenizer.ggml.pre). The tokenizer takes these as plain vectors so the runtime
// stays free of the compiler's GGUF reader; lathe-tokenize reads them from a file.
//
// Encoding, as llama.cpp does it: control and user-defined tokens are matched
// literally first (longest first); the text between them is split by the
// pre-tokenizer, each piece is mapped byte by byte to GPT-2's printable
// characters and merged by rank, lowest first, leftmost on ties.
//
// Pre-tokenizers: "gpt2" and "smollm" (the latter is gpt2's regex after a split
// that isolates every \p{N} code point, LLAMA_VOCAB_PRE_TYPE_SMOLLM). Others are
// refused by name.
//
// Limitation: Unicode categories are approximate outside ASCII. Whitespace is the
// full White_Space set; numbers are the decimal digit blocks of the common scripts,
// superscripts/subscripts and vulgar fractions; punctuation and symbols are the
// Latin-1 signs, General Punctuation through Miscellaneous Symbols and Arrows,
// CJK symbols, full-width signs and the emoji blocks; every other non-ASCII code
// point counts as a letter. Text in scripts whose punctuation or digits fall
// outside those blocks may split differently from llama.cpp.
#pragma once

#include "lathe/Status.h"
#include "runtime/artifact/Vocabulary.h"

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lathe::text {

/// llama.cpp's llama_token_type values, as tokenizer.ggml.token_type stores them.
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

/// What a GGUF file says about its tokenizer (the tokenizer.ggml.* keys); the
/// same struct an artifact embeds (runtime/artifact/Vocabulary.h).
using VocabularySpec = artifact::Vocabulary;

class Tokenizer {
public:
  /// Checks the spec; the error names the unsupported model, pre-tokenizer,
  /// token type or malformed merge.
  static Expected<Tokenizer> create(VocabularySpec spec);

  /// Ids for UTF-8 text. With `parseSpecial`, control tokens written literally
  /// (e.g. "<|im_start|>") become their ids; without it only user-defined tokens
  /// do (llama.cpp's parse_special; llama-perplexity passes false). Prepends BOS
  /// when the file asks for it and `addBos`.
  std::vector<int32_t> encode(const std::string &text, bool addBos = false, bool parseSpecial = true) const;
  /// UTF-8 text for ids; control tokens are written literally. The error names
  /// an id outside the vocabulary.
  Expected<std::string> decode(const std::vector<int32_t> &ids) const;

  size_t vocabularySize() const { return spec_.tokens.size(); }
  const VocabularySpec &spec() const { return spec_; }

  /// The pre-tokenizer's pieces (UTF-8), without special-token handling; for tests.
  std::vector<std::string> preTokenize(const std::string &text) const;

private:
  void encodePiece(const std::string &piece, std::vector<int32_t> &ids) const;

  VocabularySpec spec_;
  bool splitDigits_ = false;
  std::unordered_map<std::string, int32_t> tokenIds_;
  // Merge rank keyed by "left\x01right" (neither side contains \x01: both are
  // byte-mapped text, whose characters are all printable).
  std::unordered_map<std::string, int32_t> mergeRanks_;
  std::vector<std::pair<std::string, int32_t>> specials_; // longest first
  std::string byteToChar_[256];                             // GPT-2 bytes_to_unicode, UTF-8
  std::unordered_map<uint32_t, uint8_t> charToByte_;
};

} // namespace lathe::text
