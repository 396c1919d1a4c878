#include "runtime/text/Tokenizer.h"

#include <algorithm>
#include <climits>

namespace lathe::text {
namespace {

constexpr uint32_t kReplacementCharacter = 0xFFFD;

void appendUtf8(std::string &out, uint32_t cpt) {
  if (cpt < 0x80) {
    out += char(cpt);
  } else if (cpt < 0x800) {
    out += char(0xC0 | (cpt >> 6));
    out += char(0x80 | (cpt & 0x3F));
  } else if (cpt < 0x10000) {
    out += char(0xE0 | (cpt >> 12));
    out += char(0x80 | ((cpt >> 6) & 0x3F));
    out += char(0x80 | (cpt & 0x3F));
  } else {
    out += char(0xF0 | (cpt >> 18));
    out += char(0x80 | ((cpt >> 12) & 0x3F));
    out += char(0x80 | ((cpt >> 6) & 0x3F));
    out += char(0x80 | (cpt & 0x3F));
  }
}

// Malformed UTF-8 becomes U+FFFD per bad byte, as llama.cpp's unicode_cpts_from_utf8 does.
std::vector<uint32_t> decodeUtf8(const std::string &text) {
  std::vector<uint32_t> cpts;
  cpts.reserve(text.size());
  const auto *bytes = reinterpret_cast<const unsigned char *>(text.data());
  size_t size = text.size();
  for (size_t i = 0; i < size;) {
    unsigned char lead = bytes[i];
    int length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || i + length > size) {
      cpts.push_back(length == 0 && lead < 0x80 ? lead : kReplacementCharacter);
      ++i;
      continue;
    }
    uint32_t cpt = length == 1 ? lead : length == 2 ? (lead & 0x1F) : length == 3 ? (lead & 0x0F) : (lead & 0x07);
    bool valid = true;
    for (int k = 1; k < length; ++k) {
      if ((bytes[i + k] & 0xC0) != 0x80) valid = false;
      cpt = (cpt << 6) | (bytes[i + k] & 0x3F);
    }
    if (!valid) {
      cpts.push_back(kReplacementCharacter);
      ++i;
      continue;
    }
    cpts.push_back(cpt);
    i += length;
  }
  return cpts;
}

struct Range {
  uint32_t first, last;
};

bool inRanges(uint32_t cpt, const Range *ranges, size_t count) {
  for (size_t i = 0; i < count; ++i)
    if (cpt >= ranges[i].first && cpt <= ranges[i].last) return true;
  return false;
}

// White_Space (what both llama.cpp's \s and Rust's char::is_whitespace use).
bool isWhitespace(uint32_t cpt) {
  if (cpt < 0x80) return cpt == ' ' || (cpt >= 0x09 && cpt <= 0x0D);
  static const Range ranges[] = {{0x85, 0x85},     {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
                                 {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}};
  return inRanges(cpt, ranges, std::size(ranges));
}

// \p{N}, approximately: see the limitation in Tokenizer.h.
bool isNumber(uint32_t cpt) {
  if (cpt < 0x80) return cpt >= '0' && cpt <= '9';
  static const Range ranges[] = {
      {0xB2, 0xB3},       {0xB9, 0xB9},       {0xBC, 0xBE},       {0x0660, 0x0669},   {0x06F0, 0x06F9},
      {0x07C0, 0x07C9},   {0x0966, 0x096F},   {0x09E6, 0x09EF},   {0x0A66, 0x0A6F},   {0x0AE6, 0x0AEF},
      {0x0B66, 0x0B6F},   {0x0BE6, 0x0BF2},   {0x0C66, 0x0C6F},   {0x0CE6, 0x0CEF},   {0x0D66, 0x0D6F},
      {0x0E50, 0x0E59},   {0x0ED0, 0x0ED9},   {0x0F20, 0x0F33},   {0x1040, 0x1049},   {0x17E0, 0x17E9},
      {0x1810, 0x1819},   {0x2070, 0x2070},   {0x2074, 0x2079},   {0x2080, 0x2089},   {0x2150, 0x2182},
      {0x2185, 0x2189},   {0x2460, 0x249B},   {0x24EA, 0x24FF},   {0x2776, 0x2793},   {0x3007, 0x3007},
      {0x3021, 0x3029},   {0x3038, 0x303A},   {0x3192, 0x3195},   {0x3220, 0x3229},   {0x3248, 0x324F},
      {0x3251, 0x325F},   {0x3280, 0x3289},   {0x32B1, 0x32BF},   {0xFF10, 0xFF19},   {0x1D7CE, 0x1D7FF},
      {0x1F100, 0x1F10C}};
  return inRanges(cpt, ranges, std::size(ranges));
}

// Neither letter, number nor whitespace: punctuation, symbols, marks, controls.
bool isOther(uint32_t cpt) {
  if (cpt < 0x80) return !isWhitespace(cpt) && !isNumber(cpt) && !((cpt | 0x20) >= 'a' && (cpt | 0x20) <= 'z');
  static const Range ranges[] = {
      {0x80, 0x84},       {0x86, 0x9F},       {0xA1, 0xA9},       {0xAB, 0xB1},       {0xB4, 0xB4},
      {0xB6, 0xB8},       {0xBB, 0xBB},       {0xBF, 0xBF},       {0xD7, 0xD7},       {0xF7, 0xF7},
      {0x02C2, 0x02C5},   {0x02D2, 0x02DF},   {0x0300, 0x036F},   {0x0483, 0x0489},   {0x055A, 0x055F},
      {0x0589, 0x058A},   {0x0591, 0x05BD},   {0x05BE, 0x05C7},   {0x060C, 0x060D},   {0x061B, 0x061F},
      {0x064B, 0x065F},   {0x066A, 0x066D},   {0x06D4, 0x06D4},   {0x0964, 0x0965},   {0x0E3F, 0x0E3F},
      {0x200B, 0x2027},   {0x202A, 0x202E},   {0x2030, 0x205E},   {0x2060, 0x206F},   {0x207A, 0x207E},
      {0x208A, 0x208E},   {0x20A0, 0x20FF},   {0x2100, 0x2101},   {0x2103, 0x2106},   {0x2108, 0x2109},
      {0x2116, 0x2118},   {0x211E, 0x2123},   {0x2125, 0x2125},   {0x2127, 0x2127},   {0x2129, 0x2129},
      {0x212E, 0x212E},   {0x2190, 0x245F},   {0x249C, 0x24E9},   {0x2500, 0x2775},   {0x2794, 0x2BFF},
      {0x2CF9, 0x2CFF},   {0x2E00, 0x2E7F},   {0x2FF0, 0x2FFF},   {0x3001, 0x3004},   {0x3008, 0x3020},
      {0x302A, 0x3030},   {0x3036, 0x3037},   {0x303D, 0x303F},   {0x3099, 0x309C},   {0x30A0, 0x30A0},
      {0x30FB, 0x30FB},   {0xD800, 0xF8FF},   {0xFD3E, 0xFD3F},   {0xFE00, 0xFE19},   {0xFE20, 0xFE6F},
      {0xFEFF, 0xFEFF},   {0xFF01, 0xFF0F},   {0xFF1A, 0xFF20},   {0xFF3B, 0xFF40},   {0xFF5B, 0xFF65},
      {0xFFE0, 0xFFFF},   {0x1F000, 0x1F0FF}, {0x1F10D, 0x1FAFF}, {0xE0000, 0xE01EF}};
  return inRanges(cpt, ranges, std::size(ranges));
}

enum Category : uint8_t { Letter, Number, Whitespace, Other };

Category categorize(uint32_t cpt) {
  if (isWhitespace(cpt)) return Whitespace;
  if (isNumber(cpt)) return Number;
  if (isOther(cpt)) return Other;
  return Letter;
}

// GPT-2's regex 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// on cpts[begin, end), written out by hand as llama.cpp's unicode_regex_split_custom_gpt2 is.
void splitGpt2(const std::vector<uint32_t> &cpts, const std::vector<Category> &cats, size_t begin, size_t end,
               std::vector<std::pair<size_t, size_t>> &pieces) {
  auto cptAt = [&](size_t pos) -> uint32_t { return pos < end ? cpts[pos] : UINT32_MAX; };
  auto inside = [&](size_t pos) { return pos < end; };
  size_t pos = begin;
  while (pos < end) {
    size_t start = pos;
    uint32_t cpt = cpts[pos];
    Category cat = cats[pos];
    if (cpt == '\'' && inside(pos + 1)) {
      uint32_t next = cptAt(pos + 1);
      if (next == 's' || next == 't' || next == 'm' || next == 'd') {
        pieces.emplace_back(start, pos + 2);
        pos += 2;
        continue;
      }
      if (inside(pos + 2)) {
        uint32_t nextNext = cptAt(pos + 2);
        if ((next == 'r' && nextNext == 'e') || (next == 'v' && nextNext == 'e') || (next == 'l' && nextNext == 'l')) {
          pieces.emplace_back(start, pos + 3);
          pos += 3;
          continue;
        }
      }
    }
    // ` ?X+` for X in {letter, number, other}: an optional leading space, then a run.
    bool spaceLed = cpt == ' ' && inside(pos + 1);
    Category runCat = spaceLed ? cats[pos + 1] : cat;
    if (runCat != Whitespace) {
      pos += spaceLed ? 1 : 0;
      while (pos < end && cats[pos] == runCat) ++pos;
      pieces.emplace_back(start, pos);
      continue;
    }
    size_t whitespaceCount = 0;
    while (pos + whitespaceCount < end && cats[pos + whitespaceCount] == Whitespace) ++whitespaceCount;
    // \s+(?!\S): a run followed by non-space leaves its last character to the next piece.
    if (whitespaceCount > 1 && inside(pos + whitespaceCount)) {
      pos += whitespaceCount - 1;
    } else {
      pos += whitespaceCount; // \s+
    }
    pieces.emplace_back(start, pos);
  }
}

} // namespace

Expected<Tokenizer> Tokenizer::create(VocabularySpec spec) {
  if (spec.model != "gpt2")
    return Status::error("tokenizer: unsupported tokenizer.ggml.model '" + spec.model +
                         "' (expected 'gpt2', byte-level BPE)");
  Tokenizer tokenizer;
  if (spec.preTokenizer == "smollm")
    tokenizer.splitDigits_ = true;
  else if (spec.preTokenizer != "gpt2")
    return Status::error("tokenizer: unsupported tokenizer.ggml.pre '" + spec.preTokenizer +
                         "' (supported: 'gpt2', 'smollm')");
  if (spec.tokens.empty()) return Status::error("tokenizer: tokenizer.ggml.tokens is empty");
  if (!spec.tokenTypes.empty() && spec.tokenTypes.size() != spec.tokens.size())
    return Status::error("tokenizer: tokenizer.ggml.token_type has " + std::to_string(spec.tokenTypes.size()) +
                         " entries, expected one per token (" + std::to_string(spec.tokens.size()) + ")");
  for (size_t id = 0; id < spec.tokenTypes.size(); ++id)
    if (spec.tokenTypes[id] < 0 || spec.tokenTypes[id] > int32_t(TokenType::Byte))
      return Status::error("tokenizer: token " + std::to_string(id) + " ('" + spec.tokens[id] +
                           "') has unknown token type " + std::to_string(spec.tokenTypes[id]) + " (expected 0..6)");
  for (int64_t id : {spec.bosId, spec.eosId, spec.paddingId})
    if (id >= int64_t(spec.tokens.size()))
      return Status::error("tokenizer: special token id " + std::to_string(id) + " is outside the vocabulary of " +
                           std::to_string(spec.tokens.size()));

  // bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest for 256, 257, ...
  uint32_t nextExtra = 256;
  for (uint32_t byte = 0; byte < 256; ++byte) {
    bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
    uint32_t cpt = printable ? byte : nextExtra++;
    appendUtf8(tokenizer.byteToChar_[byte], cpt);
    tokenizer.charToByte_[cpt] = uint8_t(byte);
  }

  tokenizer.tokenIds_.reserve(spec.tokens.size());
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    tokenizer.tokenIds_.emplace(spec.tokens[id], int32_t(id)); // first id wins on duplicates
    TokenType type = spec.tokenTypes.empty() ? TokenType::Normal : TokenType(spec.tokenTypes[id]);
    if ((type == TokenType::Control || type == TokenType::UserDefined || type == TokenType::Unknown) &&
        !spec.tokens[id].empty())
      tokenizer.specials_.emplace_back(spec.tokens[id], int32_t(id));
  }
  std::stable_sort(tokenizer.specials_.begin(), tokenizer.specials_.end(),
                   [](const auto &a, const auto &b) { return a.first.size() > b.first.size(); });

  tokenizer.mergeRanks_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const std::string &merge = spec.merges[rank];
    size_t space = merge.find(' ', 1);
    if (space == std::string::npos || space + 1 >= merge.size())
      return Status::error("tokenizer: merge " + std::to_string(rank) + " ('" + merge +
                           "') is not two parts separated by a space");
    std::string key = merge.substr(0, space) + '\x01' + merge.substr(space + 1);
    tokenizer.mergeRanks_.emplace(std::move(key), int32_t(rank));
  }
  tokenizer.spec_ = std::move(spec);
  return tokenizer;
}

std::vector<std::string> Tokenizer::preTokenize(const std::string &text) const {
  std::vector<uint32_t> cpts = decodeUtf8(text);
  std::vector<Category> cats(cpts.size());
  for (size_t i = 0; i < cpts.size(); ++i) cats[i] = categorize(cpts[i]);

  std::vector<std::pair<size_t, size_t>> pieces;
  if (splitDigits_) {
    // First regex \p{N}: every number code point is a piece of its own, and so is each stretch between them.
    size_t start = 0;
    for (size_t i = 0; i <= cpts.size(); ++i) {
      if (i == cpts.size() || cats[i] == Number) {
        if (i > start) splitGpt2(cpts, cats, start, i, pieces);
        if (i < cpts.size()) pieces.emplace_back(i, i + 1);
        start = i + 1;
      }
    }
  } else {
    splitGpt2(cpts, cats, 0, cpts.size(), pieces);
  }

  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (auto [begin, end] : pieces) {
    std::string piece;
    for (size_t i = begin; i < end; ++i) appendUtf8(piece, cpts[i]);
    out.push_back(std::move(piece));
  }
  return out;
}

void Tokenizer::encodePiece(const std::string &piece, std::vector<int32_t> &ids) const {
  // Symbols start as the byte-mapped characters, then the lowest-ranked adjacent
  // pair merges (leftmost on ties) until no pair has a rank.
  std::vector<std::string> symbols;
  symbols.reserve(piece.size());
  for (unsigned char byte : piece) symbols.push_back(byteToChar_[byte]);
  while (symbols.size() > 1) {
    int32_t bestRank = INT32_MAX;
    size_t bestIndex = 0;
    std::string key;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(1, '\x01').append(symbols[i + 1]);
      auto it = mergeRanks_.find(key);
      if (it != mergeRanks_.end() && it->second < bestRank) {
        bestRank = it->second;
        bestIndex = i;
      }
    }
    if (bestRank == INT32_MAX) break;
    symbols[bestIndex] += symbols[bestIndex + 1];
    symbols.erase(symbols.begin() + bestIndex + 1);
  }
  for (const std::string &symbol : symbols) {
    auto it = tokenIds_.find(symbol);
    if (it != tokenIds_.end()) {
      ids.push_back(it->second);
      continue;
    }
    // A merge result missing from the vocabulary: fall back to its characters, as llama.cpp does.
    for (uint32_t cpt : decodeUtf8(symbol)) {
      std::string single;
      appendUtf8(single, cpt);
      auto byteIt = tokenIds_.find(single);
      if (byteIt != tokenIds_.end()) ids.push_back(byteIt->second);
    }
  }
}

std::vector<int32_t> Tokenizer::encode(const std::string &text, bool addBos, bool parseSpecial) const {
  // Special tokens partition the text as llama.cpp's tokenizer_st_partition does:
  // longest token first, every occurrence in what is still raw text.
  struct Fragment {
    bool raw;
    int32_t id;
    size_t begin, end;
  };
  std::vector<Fragment> fragments{{true, -1, 0, text.size()}};
  for (const auto &[special, id] : specials_) {
    // Without parseSpecial, control and unknown tokens are plain text (llama.cpp's
    // parse_special = false); user-defined tokens still match.
    if (!parseSpecial && !spec_.tokenTypes.empty() && TokenType(spec_.tokenTypes[size_t(id)]) != TokenType::UserDefined)
      continue;
    std::vector<Fragment> next;
    for (const Fragment &fragment : fragments) {
      if (!fragment.raw) {
        next.push_back(fragment);
        continue;
      }
      size_t cursor = fragment.begin;
      while (cursor < fragment.end) {
        size_t found = text.find(special, cursor);
        if (found == std::string::npos || found + special.size() > fragment.end) break;
        if (found > cursor) next.push_back({true, -1, cursor, found});
        next.push_back({false, id, found, found + special.size()});
        cursor = found + special.size();
      }
      if (cursor < fragment.end) next.push_back({true, -1, cursor, fragment.end});
    }
    fragments = std::move(next);
  }

  std::vector<int32_t> ids;
  if (addBos && spec_.addBos && spec_.bosId >= 0) ids.push_back(int32_t(spec_.bosId));
  for (const Fragment &fragment : fragments) {
    if (!fragment.raw) {
      ids.push_back(fragment.id);
      continue;
    }
    for (const std::string &piece : preTokenize(text.substr(fragment.begin, fragment.end - fragment.begin)))
      encodePiece(piece, ids);
  }
  return ids;
}

Expected<std::string> Tokenizer::decode(const std::vector<int32_t> &ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= spec_.tokens.size())
      return Status::error("tokenizer: token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                           std::to_string(spec_.tokens.size() - 1) + ")");
    const std::string &token = spec_.tokens[id];
    TokenType type = spec_.tokenTypes.empty() ? TokenType::Normal : TokenType(spec_.tokenTypes[id]);
    if (type == TokenType::Normal || type == TokenType::Undefined) {
      for (uint32_t cpt : decodeUtf8(token)) {
        auto it = charToByte_.find(cpt);
        if (it != charToByte_.end())
          out += char(it->second);
        else
          appendUtf8(out, cpt); // not byte-mapped text; keep it as written
      }
    } else if (type == TokenType::Byte && token.size() == 6 && token.rfind("<0x", 0) == 0) {
      out += char(std::stoi(token.substr(3, 2), nullptr, 16));
    } else {
      out += token; // control, user-defined, unknown, unused: literally
    }
  }
  return out;
}

} // namespace lathe::text
