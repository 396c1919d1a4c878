// lathe-tokenize: a GGUF file's tokenizer from the command line.
//   lathe-tokenize MODEL.gguf "text"            ids, one per line
//   lathe-tokenize MODEL.gguf --file TEXT.txt   ids of the file's contents (no BOS added)
//   lathe-tokenize MODEL.gguf --decode ID ...   the text those ids stand for
// The GGUF reading lives here, so the LatheText library needs no compiler code.
#include "compiler/import/gguf/GgufVocabulary.h"
#include "runtime/text/Tokenizer.h"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace lathe;

namespace {

int usage() {
  std::fprintf(stderr, "usage: lathe-tokenize MODEL.gguf \"text\"\n"
                       "       lathe-tokenize MODEL.gguf --file TEXT.txt\n"
                       "       lathe-tokenize MODEL.gguf --decode ID [ID ...]\n");
  return 2;
}

Expected<text::Tokenizer> loadTokenizer(const std::string &path) {
  auto file = gguf::GgufFile::open(path);
  if (!file) return file.status();
  auto spec = gguf::readVocabulary(*file);
  if (!spec) return spec.status();
  auto tokenizer = text::Tokenizer::create(std::move(*spec));
  if (!tokenizer) return Status::error(path + ": " + tokenizer.error());
  return tokenizer;
}

bool readFile(const std::string &path, std::string &out) {
  FILE *f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) out.append(buffer, n);
  bool ok = !std::ferror(f);
  std::fclose(f);
  return ok;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  auto tokenizer = loadTokenizer(argv[1]);
  if (!tokenizer) {
    std::fprintf(stderr, "error: %s\n", tokenizer.error().c_str());
    return 1;
  }
  if (std::string(argv[2]) == "--decode") {
    std::vector<int32_t> ids;
    for (int i = 3; i < argc; ++i) {
      char *end = nullptr;
      long value = std::strtol(argv[i], &end, 10);
      if (end == argv[i] || *end != '\0' || value < INT32_MIN || value > INT32_MAX) {
        std::fprintf(stderr, "error: '%s' is not a token id\n", argv[i]);
        return 1;
      }
      ids.push_back(int32_t(value));
    }
    auto decoded = tokenizer->decode(ids);
    if (!decoded) {
      std::fprintf(stderr, "error: %s\n", decoded.error().c_str());
      return 1;
    }
    std::fwrite(decoded->data(), 1, decoded->size(), stdout);
    return 0;
  }
  std::string text;
  if (std::string(argv[2]) == "--file") {
    if (argc != 4) return usage();
    if (!readFile(argv[3], text)) {
      std::fprintf(stderr, "error: cannot read '%s'\n", argv[3]);
      return 1;
    }
  } else {
    if (argc != 3) return usage();
    text = argv[2];
  }
  for (int32_t id : tokenizer->encode(text)) std::printf("%d\n", id);
  return 0;
}
