// lathe-tokenize: a GGUF file's tokenizer from the command line.
//   lathe-tokenize MODEL.gguf "text"            ids, one per line
//   lathe-tokenize MODEL.gguf --decode ID ...   the text those ids stand for
// The GGUF reading lives here, so the LatheText library needs no compiler code.
#include "compiler/import/gguf/GgufReader.h"
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
                       "       lathe-tokenize MODEL.gguf --decode ID [ID ...]\n");
  return 2;
}

Expected<std::vector<std::string>> stringArray(const gguf::GgufFile &file, const std::string &key, bool required) {
  const gguf::MetadataValue *value = file.find(key);
  if (!value) {
    if (required) return Status::error(file.path() + ": metadata key '" + key + "' is missing");
    return std::vector<std::string>{};
  }
  if (value->type != gguf::ValueType::Array || value->elementType != gguf::ValueType::String)
    return Status::error(file.path() + ": metadata '" + key + "' is " + value->typeName() +
                         ", expected array[string]");
  std::vector<std::string> out;
  out.reserve(value->elements.size());
  for (const auto &element : value->elements) out.push_back(element.stringValue);
  return out;
}

Expected<std::vector<int32_t>> intArray(const gguf::GgufFile &file, const std::string &key) {
  const gguf::MetadataValue *value = file.find(key);
  if (!value) return std::vector<int32_t>{};
  bool integers = value->type == gguf::ValueType::Array &&
                  (value->elements.empty() || value->elements[0].isSigned() || value->elements[0].isUnsigned());
  if (!integers)
    return Status::error(file.path() + ": metadata '" + key + "' is " + value->typeName() +
                         ", expected an integer array");
  std::vector<int32_t> out;
  out.reserve(value->elements.size());
  for (const auto &element : value->elements)
    out.push_back(element.isSigned() ? int32_t(element.signedValue) : int32_t(element.unsignedValue));
  return out;
}

Expected<text::Tokenizer> loadTokenizer(const std::string &path) {
  auto file = gguf::GgufFile::open(path);
  if (!file) return file.status();
  text::VocabularySpec spec;
  auto model = file->requireString("tokenizer.ggml.model");
  if (!model) return model.status();
  spec.model = *model;
  spec.preTokenizer = file->getString("tokenizer.ggml.pre").value_or("default");
  auto tokens = stringArray(*file, "tokenizer.ggml.tokens", true);
  if (!tokens) return tokens.status();
  spec.tokens = std::move(*tokens);
  auto merges = stringArray(*file, "tokenizer.ggml.merges", spec.model == "gpt2");
  if (!merges) return merges.status();
  spec.merges = std::move(*merges);
  auto types = intArray(*file, "tokenizer.ggml.token_type");
  if (!types) return types.status();
  spec.tokenTypes = std::move(*types);
  auto id = [&](const char *key) { return file->getInt(key).value_or(-1); };
  spec.bosId = id("tokenizer.ggml.bos_token_id");
  spec.eosId = id("tokenizer.ggml.eos_token_id");
  spec.paddingId = id("tokenizer.ggml.padding_token_id");
  spec.addBos = file->getBool("tokenizer.ggml.add_bos_token").value_or(false);
  auto tokenizer = text::Tokenizer::create(std::move(spec));
  if (!tokenizer) return Status::error(path + ": " + tokenizer.error());
  return tokenizer;
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
  if (argc != 3) return usage();
  for (int32_t id : tokenizer->encode(argv[2])) std::printf("%d\n", id);
  return 0;
}
