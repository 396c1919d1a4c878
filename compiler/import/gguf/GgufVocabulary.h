// The tokenizer.ggml.* metadata of a GGUF file as an artifact::Vocabulary.
// Plain C++ (part of LatheGgufReader): used by the importer, which embeds the
// vocabulary in the IR and the artifact, and by lathe-tokenize.
#pragma once

#include "compiler/import/gguf/GgufReader.h"
#include "runtime/artifact/Vocabulary.h"

#include <optional>

namespace lathe::gguf {

/// Whether the file has tokenizer metadata at all (tokenizer.ggml.model).
bool hasVocabulary(const GgufFile &file);

/// Reads the vocabulary. The error names the missing or mistyped key.
Expected<artifact::Vocabulary> readVocabulary(const GgufFile &file);

} // namespace lathe::gguf
