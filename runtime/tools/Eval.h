// Perplexity of a causal language model artifact over a token stream, with an
// explicit protocol, and the `lathe eval` command around it.
//
// Protocols:
//  - llama.cpp: llama-perplexity's. The stream is the text's tokens (BOS first
//    when the vocabulary asks for one, tokenizer.ggml.add_bos_token); it is cut
//    into floor(n / ctx) non-overlapping windows of `ctx` tokens; when BOS is
//    added, each window's first token is replaced by BOS; only the second half
//    of each window is scored: the logits at positions ctx/2 .. ctx-2 predict
//    the tokens at ctx/2+1 .. ctx-1. PPL = exp(mean NLL), and the ± figure is
//    llama.cpp's: PPL · sqrt(var(NLL) / (count - 1)).
//  - full: the same windows; every token after each window's first is scored.
#pragma once

#include "lathe/Session.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lathe::tools {

enum class PerplexityProtocol { LlamaCpp, Full };

struct PerplexityOptions {
  PerplexityProtocol protocol = PerplexityProtocol::LlamaCpp;
  int64_t ctx = 512;
  int64_t maxChunks = 0; // 0: every whole window
  int64_t batch = 1;     // windows per run
  int64_t bosId = -1;    // >= 0: replace each window's first token with it (llama.cpp protocol)
  bool progress = true;  // a progress line on stderr
};

struct PerplexityResult {
  double ppl = 0, pplError = 0, meanNll = 0;
  int64_t chunks = 0, tokensScored = 0, tokensEvaluated = 0, streamTokens = 0;
  double seconds = 0;                     // model time only (the evaluated model)
  // With a reference model (same tokens, same windows): its perplexity, the mean
  // KL divergence KL(reference ‖ model) of the next-token distributions over the
  // scored positions (nats), and how often both predict the same top-1 token.
  double referencePpl = 0, meanKld = 0, top1Agreement = 0;
  std::vector<double> runningPpl;         // after each chunk, as llama-perplexity prints it
};

/// Runs the model over `tokens`. The artifact needs an integer ids input
/// (other inputs: names with "mask" get ones, "position" 0..S-1, "type" zeros)
/// and a float logits output [batch, sequence, vocab].
Expected<PerplexityResult> evaluatePerplexity(Session &session, const std::vector<int32_t> &tokens,
                                              const PerplexityOptions &options, Session *reference = nullptr);

/// The output holding next-token logits: f32 [batch, sequence, vocab] named
/// "*logits*", or the only such output when its width is the vocabulary's size.
Expected<size_t> logitsOutput(const Session &session);

/// Each linear layer's output in `model` against the same-named layer of
/// `reference` on the same inputs, ‖y − y_ref‖ / ‖y_ref‖, worst first (taps;
/// errors include what upstream layers passed on).
struct LayerError {
  std::string name, format;
  double relative = 0;
};
Expected<std::vector<LayerError>> compareLayers(Session &model, Session &reference,
                                                const std::vector<std::map<std::string, Tensor>> &batches);

struct EvalOptions {
  std::string artifact;
  std::string textFile;  // tokenized with the artifact's tokenizer
  std::string idsFile;   // or token ids (.npy, 1-D integer)
  std::string protocol = "llama.cpp";
  int64_t ctx = 512;
  int64_t chunks = 0;
  int64_t batch = 1;
  int threads = 0;
  std::string jsonPath;  // also write the result as JSON
  std::string reference; // compare with this artifact (e.g. the fp32 original)
  std::string dataDir;   // encoders: <input name>.npy files, outputs compared with --reference
  bool perLayer = false; // with --reference: each linear layer's relative output error (first window / the data)
};

int evalArtifactCommand(const EvalOptions &options);

} // namespace lathe::tools
