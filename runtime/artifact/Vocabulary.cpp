#include "runtime/artifact/Vocabulary.h"

#include <cstring>

namespace lathe::artifact {
namespace {

constexpr char kMagic[4] = {'L', 'V', 'O', 'C'};
constexpr uint32_t kVersion = 1;

void putU32(std::string &out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}
void putI64(std::string &out, int64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(char((uint64_t(v) >> (8 * i)) & 0xff));
}
void putStr(std::string &out, const std::string &s) {
  putU32(out, uint32_t(s.size()));
  out += s;
}

class Cursor {
public:
  Cursor(const uint8_t *data, size_t size) : data_(data), size_(size) {}
  bool u32(uint32_t &v, const char *what) {
    if (!need(4, what)) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(data_[at_ + i]) << (8 * i);
    at_ += 4;
    return true;
  }
  bool i64(int64_t &v, const char *what) {
    if (!need(8, what)) return false;
    uint64_t u = 0;
    for (int i = 0; i < 8; ++i) u |= uint64_t(data_[at_ + i]) << (8 * i);
    v = int64_t(u);
    at_ += 8;
    return true;
  }
  bool str(std::string &s, const char *what) {
    uint32_t n;
    if (!u32(n, what) || !need(n, what)) return false;
    s.assign(reinterpret_cast<const char *>(data_ + at_), n);
    at_ += n;
    return true;
  }
  bool strings(std::vector<std::string> &out, const char *what) {
    uint32_t n;
    if (!u32(n, what)) return false;
    // Each string takes at least its 4-byte length: reject counts the rest cannot hold.
    if (uint64_t(n) * 4 > size_ - at_) return fail(what), false;
    out.resize(n);
    for (auto &s : out)
      if (!str(s, what)) return false;
    return true;
  }
  bool need(uint64_t n, const char *what) {
    if (n > size_ - at_) return fail(what), false;
    return true;
  }
  void fail(const char *what) {
    if (error_.empty()) error_ = std::string("vocabulary is truncated (in ") + what + ")";
  }
  size_t remaining() const { return size_ - at_; }
  const uint8_t *here() const { return data_ + at_; }
  void skip(size_t n) { at_ += n; }
  const std::string &error() const { return error_; }

private:
  const uint8_t *data_;
  size_t size_, at_ = 0;
  std::string error_;
};

} // namespace

std::string encodeVocabulary(const Vocabulary &v) {
  std::string out(kMagic, 4);
  putU32(out, kVersion);
  putStr(out, v.model);
  putStr(out, v.preTokenizer);
  putI64(out, v.bosId);
  putI64(out, v.eosId);
  putI64(out, v.paddingId);
  out.push_back(v.addBos ? 1 : 0);
  putU32(out, uint32_t(v.tokens.size()));
  for (const auto &t : v.tokens) putStr(out, t);
  putU32(out, uint32_t(v.merges.size()));
  for (const auto &m : v.merges) putStr(out, m);
  putU32(out, uint32_t(v.tokenTypes.size()));
  for (int32_t t : v.tokenTypes) putU32(out, uint32_t(t));
  return out;
}

std::string decodeVocabulary(const uint8_t *data, size_t size, Vocabulary &out) {
  out = Vocabulary{};
  if (size < 8 || std::memcmp(data, kMagic, 4) != 0) return "vocabulary has a bad magic (expected 'LVOC')";
  Cursor c(data + 4, size - 4);
  uint32_t version = 0;
  c.u32(version, "version");
  if (version != kVersion) return "vocabulary encoding version " + std::to_string(version) + " is not supported (expected 1)";
  bool ok = c.str(out.model, "model") && c.str(out.preTokenizer, "pre-tokenizer") && c.i64(out.bosId, "bos id") &&
            c.i64(out.eosId, "eos id") && c.i64(out.paddingId, "padding id") && c.need(1, "add_bos");
  if (ok) {
    out.addBos = *c.here() != 0;
    c.skip(1);
    ok = c.strings(out.tokens, "tokens") && c.strings(out.merges, "merges");
  }
  uint32_t types = 0;
  if (ok && c.u32(types, "token types")) {
    if (uint64_t(types) * 4 > c.remaining()) {
      c.fail("token types");
    } else {
      out.tokenTypes.resize(types);
      for (auto &t : out.tokenTypes) {
        uint32_t u;
        c.u32(u, "token types");
        t = int32_t(u);
      }
    }
  }
  if (!c.error().empty()) return c.error();
  if (c.remaining() != 0) return "vocabulary has " + std::to_string(c.remaining()) + " trailing bytes";
  if (!out.tokenTypes.empty() && out.tokenTypes.size() != out.tokens.size())
    return "vocabulary has " + std::to_string(out.tokenTypes.size()) + " token types for " +
           std::to_string(out.tokens.size()) + " tokens";
  const int64_t n = int64_t(out.tokens.size());
  for (auto [id, what] : {std::pair{out.bosId, "bos"}, {out.eosId, "eos"}, {out.paddingId, "padding"}})
    if (id < -1 || id >= n)
      return std::string("vocabulary's ") + what + " id " + std::to_string(id) + " is outside the " +
             std::to_string(n) + " tokens";
  return "";
}

} // namespace lathe::artifact
