#include "compiler/import/gguf/GgufVocabulary.h"

namespace lathe::gguf {
namespace {

Expected<std::vector<std::string>> stringArray(const GgufFile &file, const std::string &key, bool required) {
  const MetadataValue *value = file.find(key);
  if (!value) {
    if (required) return Status::error(file.path() + ": metadata key '" + key + "' is missing");
    return std::vector<std::string>{};
  }
  if (value->type != ValueType::Array || value->elementType != ValueType::String)
    return Status::error(file.path() + ": metadata '" + key + "' is " + value->typeName() +
                         ", expected array[string]");
  std::vector<std::string> out;
  out.reserve(value->elements.size());
  for (const auto &element : value->elements) out.push_back(element.stringValue);
  return out;
}

Expected<std::vector<int32_t>> intArray(const GgufFile &file, const std::string &key) {
  const MetadataValue *value = file.find(key);
  if (!value) return std::vector<int32_t>{};
  bool integers = value->type == ValueType::Array &&
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

} // namespace

bool hasVocabulary(const GgufFile &file) { return file.find("tokenizer.ggml.model") != nullptr; }

Expected<artifact::Vocabulary> readVocabulary(const GgufFile &file) {
  artifact::Vocabulary spec;
  auto model = file.requireString("tokenizer.ggml.model");
  if (!model) return model.status();
  spec.model = *model;
  spec.preTokenizer = file.getString("tokenizer.ggml.pre").value_or("default");
  auto tokens = stringArray(file, "tokenizer.ggml.tokens", true);
  if (!tokens) return tokens.status();
  spec.tokens = std::move(*tokens);
  auto merges = stringArray(file, "tokenizer.ggml.merges", spec.model == "gpt2");
  if (!merges) return merges.status();
  spec.merges = std::move(*merges);
  auto types = intArray(file, "tokenizer.ggml.token_type");
  if (!types) return types.status();
  spec.tokenTypes = std::move(*types);
  auto id = [&](const char *key) { return file.getInt(key).value_or(-1); };
  spec.bosId = id("tokenizer.ggml.bos_token_id");
  spec.eosId = id("tokenizer.ggml.eos_token_id");
  spec.paddingId = id("tokenizer.ggml.padding_token_id");
  spec.addBos = file.getBool("tokenizer.ggml.add_bos_token").value_or(false);
  return spec;
}

} // namespace lathe::gguf
