// llamacpp-logits: llama.cpp's logits for a list of token ids, as a float32 .npy, so that Lathe's
// logits can be checked against the reference implementation of the GGUF format (issue #4).
//
//   llamacpp-logits -m MODEL.gguf (--ids 1,2,3 | --ids-file FILE) [-o logits.npy] [-t THREADS]
//                   [--greedy N] [--kv-type f32|f16] [--verbose]
//
// All ids are evaluated in one llama_decode call (one batch, one micro-batch) with logits for every
// position; the .npy is float32 [n_tokens, n_vocab] in C order. The ids are used as given: no BOS is
// added. Ids are separated by commas, whitespace or JSON list brackets, in --ids and in a file.
// --greedy N then decodes N more tokens one at a time through the KV cache, each the argmax of the
// previous logits (the lowest id on ties, like numpy.argmax), and prints them on stdout as
// `greedy [id, id, ...]`, then `greedy_margin [...]`: each choice's lead over the runner-up.
// It does not stop at end-of-generation tokens: exactly N ids come out.
// The KV cache is f32 by default (llama.cpp's default is f16, which rounds K and V and so is not an
// fp32 reference); --kv-type f16 gives llama.cpp's default.
// Built by scripts/models/build_llamacpp.sh against the static libllama of the pinned sdist.
#include "llama.h"

#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifndef LATHE_LLAMACPP_COMMIT
#define LATHE_LLAMACPP_COMMIT "unknown"
#endif
#ifndef LATHE_LLAMACPP_SDIST
#define LATHE_LLAMACPP_SDIST "unknown"
#endif

namespace {

struct Options {
  std::string model;
  std::string ids;
  std::string idsFile;
  std::string output;
  int threads = 1;
  int greedyTokens = 0;
  bool kvF16 = false;
  bool verbose = false;
};

int usage(const char *why) {
  if (why) std::fprintf(stderr, "error: %s\n", why);
  std::fprintf(stderr,
               "usage: llamacpp-logits -m MODEL.gguf (--ids 1,2,3 | --ids-file FILE) [-o logits.npy] [-t THREADS]\n"
               "                       [--greedy N] [--kv-type f32|f16] [--verbose]\n"
               "  llama.cpp %s (%s)\n",
               LATHE_LLAMACPP_COMMIT, LATHE_LLAMACPP_SDIST);
  return 2;
}

bool parseInt(const std::string &text, long min, long max, long &value) {
  char *end = nullptr;
  errno = 0;
  value = std::strtol(text.c_str(), &end, 10);
  return !text.empty() && end && *end == '\0' && errno == 0 && value >= min && value <= max;
}

// Integers separated by runs of commas, whitespace and brackets; anything else is an error.
bool parseIds(const std::string &text, std::vector<llama_token> &ids, std::string &error) {
  std::string token;
  auto flush = [&]() {
    if (token.empty()) return true;
    long value = 0;
    if (!parseInt(token, 0, INT32_MAX, value)) {
      error = "'" + token + "' is not a token id";
      return false;
    }
    ids.push_back(llama_token(value));
    token.clear();
    return true;
  };
  for (char c : text) {
    if (c == ',' || c == '[' || c == ']' || std::isspace(static_cast<unsigned char>(c))) {
      if (!flush()) return false;
    } else {
      token += c;
    }
  }
  return flush();
}

// NumPy format 1.0: magic, header length, a Python dict literal padded with spaces to a multiple
// of 64 bytes and ended by '\n', then the data.
bool writeNpy(const std::string &path, const std::vector<float> &data, size_t rows, size_t columns) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(columns) + "), }";
  size_t prefix = 10;  // magic (6) + version (2) + header length (2)
  size_t total = prefix + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::FILE *file = std::fopen(path.c_str(), "wb");
  if (!file) return false;
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  uint16_t length = uint16_t(header.size());
  const unsigned char lengthBytes[2] = {uint8_t(length & 0xff), uint8_t(length >> 8)};
  bool ok = std::fwrite(magic, 1, 8, file) == 8 && std::fwrite(lengthBytes, 1, 2, file) == 2 &&
            std::fwrite(header.data(), 1, header.size(), file) == header.size() &&
            std::fwrite(data.data(), sizeof(float), data.size(), file) == data.size();
  return std::fclose(file) == 0 && ok;
}

// The argmax (lowest id on ties) and its lead over the runner-up.
llama_token argmax(const float *logits, int vocabSize, float &margin) {
  llama_token best = 0;
  for (int i = 1; i < vocabSize; ++i)
    if (logits[i] > logits[best]) best = i;
  float second = -INFINITY;
  for (int i = 0; i < vocabSize; ++i)
    if (i != best && logits[i] > second) second = logits[i];
  margin = logits[best] - second;
  return best;
}

void quietLog(ggml_log_level level, const char *text, void *) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

}  // namespace

int main(int argc, char **argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char *what) -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "error: %s needs %s\n", arg.c_str(), what);
        std::exit(2);
      }
      return argv[++i];
    };
    long number = 0;
    if (arg == "-m" || arg == "--model") {
      options.model = value("a GGUF path");
    } else if (arg == "--ids") {
      options.ids = value("comma-separated token ids");
    } else if (arg == "--ids-file") {
      options.idsFile = value("a file of token ids");
    } else if (arg == "-o" || arg == "--output") {
      options.output = value("an .npy path");
    } else if (arg == "-t" || arg == "--threads") {
      if (!parseInt(value("a thread count"), 1, 1024, number)) return usage("-t needs a thread count in [1, 1024]");
      options.threads = int(number);
    } else if (arg == "--greedy") {
      if (!parseInt(value("a token count"), 0, 1 << 20, number)) return usage("--greedy needs a count >= 0");
      options.greedyTokens = int(number);
    } else if (arg == "--kv-type") {
      std::string type = value("f32 or f16");
      if (type != "f32" && type != "f16") return usage("--kv-type is f32 or f16");
      options.kvF16 = type == "f16";
    } else if (arg == "--verbose") {
      options.verbose = true;
    } else if (arg == "-h" || arg == "--help") {
      usage(nullptr);
      return 0;
    } else {
      return usage(("unknown argument '" + arg + "'").c_str());
    }
  }
  if (options.model.empty()) return usage("-m MODEL.gguf is required");
  if (options.ids.empty() == options.idsFile.empty()) return usage("give exactly one of --ids and --ids-file");
  if (options.output.empty() && options.greedyTokens == 0) return usage("nothing to do: give -o and/or --greedy");

  std::string idsText = options.ids;
  if (!options.idsFile.empty()) {
    std::ifstream file(options.idsFile);
    if (!file) {
      std::fprintf(stderr, "error: cannot read ids file '%s'\n", options.idsFile.c_str());
      return 1;
    }
    std::stringstream buffer;
    buffer << file.rdbuf();
    idsText = buffer.str();
  }
  std::vector<llama_token> ids;
  std::string error;
  if (!parseIds(idsText, ids, error)) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 1;
  }
  if (ids.empty()) {
    std::fprintf(stderr, "error: no token ids given\n");
    return 1;
  }

  if (!options.verbose) llama_log_set(quietLog, nullptr);
  llama_backend_init();
  llama_model_params modelParams = llama_model_default_params();
  modelParams.n_gpu_layers = 0;
  llama_model *model = llama_model_load_from_file(options.model.c_str(), modelParams);
  if (!model) {
    std::fprintf(stderr, "error: llama.cpp could not load '%s'\n", options.model.c_str());
    return 1;
  }
  const llama_vocab *vocab = llama_model_get_vocab(model);
  const int vocabSize = llama_vocab_n_tokens(vocab);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= vocabSize) {
      std::fprintf(stderr, "error: token id %d (position %zu) is outside the vocabulary of %d\n", ids[i], i,
                   vocabSize);
      return 1;
    }
  }

  const uint32_t tokens = uint32_t(ids.size());
  llama_context_params contextParams = llama_context_default_params();
  contextParams.n_ctx = tokens + uint32_t(options.greedyTokens);
  contextParams.n_batch = tokens;  // one llama_decode call ...
  contextParams.n_ubatch = tokens; // ... computed as one graph
  contextParams.n_seq_max = 1;
  contextParams.n_threads = options.threads;
  contextParams.n_threads_batch = options.threads;
  contextParams.type_k = options.kvF16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
  contextParams.type_v = options.kvF16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
  contextParams.no_perf = true;
  llama_context *context = llama_init_from_model(model, contextParams);
  if (!context) {
    std::fprintf(stderr, "error: llama.cpp could not create a context for %u tokens\n", tokens);
    return 1;
  }

  llama_batch batch = llama_batch_init(int32_t(tokens), 0, 1);
  for (uint32_t i = 0; i < tokens; ++i) {
    batch.token[i] = ids[i];
    batch.pos[i] = llama_pos(i);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = int32_t(tokens);
  auto start = std::chrono::steady_clock::now();
  if (llama_decode(context, batch) != 0) {
    std::fprintf(stderr, "error: llama_decode failed on %u tokens\n", tokens);
    return 1;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::vector<float> logits(size_t(tokens) * size_t(vocabSize));
  for (uint32_t i = 0; i < tokens; ++i) {
    const float *row = llama_get_logits_ith(context, int32_t(i));
    if (!row) {
      std::fprintf(stderr, "error: llama.cpp returned no logits for position %u\n", i);
      return 1;
    }
    std::memcpy(&logits[size_t(i) * vocabSize], row, sizeof(float) * size_t(vocabSize));
  }
  std::fprintf(stderr, "llamacpp-logits: %u tokens x %d vocab, %d thread(s), kv %s, one decode in %.3f s (llama.cpp %s)\n",
               tokens, vocabSize, options.threads, options.kvF16 ? "f16" : "f32", seconds, LATHE_LLAMACPP_COMMIT);
  if (!options.output.empty() && !writeNpy(options.output, logits, tokens, size_t(vocabSize))) {
    std::fprintf(stderr, "error: cannot write '%s'\n", options.output.c_str());
    return 1;
  }
  llama_batch_free(batch);

  if (options.greedyTokens > 0) {
    std::vector<llama_token> generated;
    std::vector<float> margins;
    float margin = 0;
    llama_token next = argmax(&logits[size_t(tokens - 1) * vocabSize], vocabSize, margin);
    for (int step = 0; step < options.greedyTokens; ++step) {
      generated.push_back(next);
      margins.push_back(margin);
      if (step + 1 == options.greedyTokens) break;
      llama_batch single = llama_batch_init(1, 0, 1);
      single.token[0] = next;
      single.pos[0] = llama_pos(tokens + uint32_t(step));
      single.n_seq_id[0] = 1;
      single.seq_id[0][0] = 0;
      single.logits[0] = 1;
      single.n_tokens = 1;
      if (llama_decode(context, single) != 0) {
        std::fprintf(stderr, "error: llama_decode failed at generated token %d\n", step + 1);
        return 1;
      }
      next = argmax(llama_get_logits_ith(context, 0), vocabSize, margin);
      llama_batch_free(single);
    }
    std::printf("greedy [");
    for (size_t i = 0; i < generated.size(); ++i) std::printf(i ? ", %d" : "%d", generated[i]);
    std::printf("]\n");
    // How close each choice was: a later comparison of greedy ids is only robust where this is
    // well above its tolerance.
    std::printf("greedy_margin [");
    for (size_t i = 0; i < margins.size(); ++i) std::printf(i ? ", %.9g" : "%.9g", double(margins[i]));
    std::printf("]\n");
  }

  llama_free(context);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
