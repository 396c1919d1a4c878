// `lathe generate`: text (or ids) in, tokens out, through the session's KV
// cache: one prefill of the prompt, then one append per new token.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace lathe::tools {

struct SamplingOptions {
  float temperature = 0.0f; // 0: greedy (argmax, lowest id on ties)
  int64_t topK = 0;         // 0: no limit
  float topP = 1.0f;        // nucleus: smallest set whose probability reaches topP
};

/// Picks the next token from one row of logits.
int32_t sampleToken(const float *logits, int64_t vocab, const SamplingOptions &options, std::mt19937_64 &rng);

struct GenerateOptions {
  std::string artifact;
  std::string prompt;        // text, tokenized with the artifact's tokenizer
  std::string promptIds;     // or "1,2,3"
  std::string outputIds;     // write the generated ids (prompt excluded) as int64 .npy
  int64_t maxNewTokens = 64;
  int64_t maxContext = 0;    // 0: prompt + max-new-tokens
  SamplingOptions sampling;
  uint64_t seed = 0;
  bool ignoreEos = false;
  bool quiet = false;        // no streamed text (ids and timings only)
  int threads = 0;
  std::string device;        // "", "cpu", "cuda", "cuda:N"
};

int generateCommand(const GenerateOptions &options);

} // namespace lathe::tools
