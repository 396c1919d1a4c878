#include "runtime/tools/Generate.h"

#include "lathe/Session.h"
#include "runtime/io/Npy.h"
#include "runtime/text/Tokenizer.h"
#include "runtime/tools/Eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <optional>

namespace lathe::tools {

int32_t sampleToken(const float *logits, int64_t vocab, const SamplingOptions &options, std::mt19937_64 &rng) {
  if (options.temperature <= 0.0f) return int32_t(std::max_element(logits, logits + vocab) - logits);
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  auto byLogit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  size_t keep = options.topK > 0 ? size_t(std::min(options.topK, vocab)) : size_t(vocab);
  std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(keep), order.end(), byLogit);
  order.resize(keep);
  std::vector<double> p(keep);
  const double top = logits[order[0]];
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += p[i] = std::exp((double(logits[order[i]]) - top) / options.temperature);
  size_t cut = keep;
  if (options.topP < 1.0f) {
    double acc = 0;
    for (size_t i = 0; i < keep; ++i) {
      acc += p[i] / sum;
      if (acc >= options.topP) { cut = i + 1; break; }
    }
  }
  double total = std::accumulate(p.begin(), p.begin() + std::ptrdiff_t(cut), 0.0);
  double r = std::uniform_real_distribution<double>(0.0, total)(rng);
  for (size_t i = 0; i < cut; ++i) {
    r -= p[i];
    if (r < 0) return order[i];
  }
  return order[cut - 1];
}

namespace {

/// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t completeUtf8(const std::string &s) {
  size_t n = s.size(), i = n;
  for (int back = 0; back < 4 && i > 0; ++back) {
    uint8_t c = uint8_t(s[i - 1]);
    if ((c & 0xC0) != 0x80) { // a lead (or ASCII) byte at i-1
      size_t need = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
      return (n - (i - 1)) >= need ? n : i - 1;
    }
    --i;
  }
  return n;
}

std::optional<std::vector<int32_t>> parseIds(const std::string &text, std::string &error) {
  std::vector<int32_t> ids;
  size_t at = 0;
  while (at <= text.size()) {
    size_t comma = text.find(',', at);
    std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    char *end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0 || v > INT32_MAX) {
      error = "--prompt-ids: '" + item + "' is not a token id (expected e.g. 1,2,3)";
      return std::nullopt;
    }
    ids.push_back(int32_t(v));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return ids;
}

} // namespace

int generateCommand(const GenerateOptions &o) {
  auto fail = [](const std::string &message) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", message.c_str());
    return 1;
  };
  if (o.prompt.empty() == o.promptIds.empty()) return fail("give exactly one of --prompt TEXT or --prompt-ids 1,2,3");
  if (o.maxNewTokens < 0) return fail("--max-new-tokens must be >= 0");
  if (o.sampling.topP <= 0.0f || o.sampling.topP > 1.0f) return fail("--top-p must be in (0, 1]");
  auto session = Session::open(o.artifact, {o.threads, "", o.device});
  if (!session) return fail(session.error());
  Session &s = **session;
  if (!s.incrementalReason().empty()) return fail("'" + o.artifact + "' cannot generate: " + s.incrementalReason());
  auto logitsIndex = logitsOutput(s);
  if (!logitsIndex) return fail("'" + o.artifact + "' cannot generate: " + logitsIndex.error());
  if (*logitsIndex != 0) return fail("'" + o.artifact + "' cannot generate: its logits are not its first output");

  std::optional<text::Tokenizer> tokenizer;
  if (const artifact::Vocabulary *v = s.vocabulary()) {
    auto t = text::Tokenizer::create(*v);
    if (!t) return fail("the artifact's tokenizer: " + t.error());
    tokenizer = std::move(*t);
  }
  std::vector<int32_t> prompt;
  if (!o.prompt.empty()) {
    if (!tokenizer) return fail("'" + o.artifact + "' has no tokenizer; give --prompt-ids 1,2,3");
    prompt = tokenizer->encode(o.prompt, /*addBos=*/true, /*parseSpecial=*/true);
  } else {
    std::string error;
    auto ids = parseIds(o.promptIds, error);
    if (!ids) return fail(error);
    prompt = std::move(*ids);
  }
  if (prompt.empty()) return fail("the prompt has no tokens");
  const int64_t maxContext = o.maxContext > 0 ? o.maxContext : int64_t(prompt.size()) + o.maxNewTokens;
  if (int64_t(prompt.size()) + o.maxNewTokens > maxContext)
    return fail("the prompt (" + std::to_string(prompt.size()) + " tokens) and --max-new-tokens " + std::to_string(o.maxNewTokens) +
                " exceed --max-context " + std::to_string(maxContext));
  if (Status st = s.startDecoding(maxContext, 1); !st.ok()) return fail(st.message());
  const int64_t eos = tokenizer && !o.ignoreEos ? tokenizer->spec().eosId : -1;

  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> generated;
  std::string streamed; // bytes printed so far (of the generated text)
  auto stream = [&]() {
    if (!tokenizer || o.quiet) return;
    auto text = tokenizer->decode(generated);
    if (!text) return;
    size_t complete = completeUtf8(*text);
    if (complete > streamed.size()) {
      std::fwrite(text->data() + streamed.size(), 1, complete - streamed.size(), stdout);
      std::fflush(stdout);
      streamed.assign(*text, 0, complete);
    }
  };
  using Clock = std::chrono::steady_clock;
  double prefillSeconds = 0, decodeSeconds = 0;
  int64_t decodeSteps = 0;
  if (!o.quiet && tokenizer && !o.prompt.empty()) {
    std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
    std::fflush(stdout);
  }
  auto t0 = Clock::now();
  auto logits = s.append(prompt, 1);
  prefillSeconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!logits) return fail(logits.error());
  if (logits->rank() != 3)
    return fail("output '" + s.outputs()[0].name + "' is not [batch, sequence, vocab] logits (a model without its output head?)");
  const int64_t vocab = logits->shape()[2];
  for (int64_t i = 0; i < o.maxNewTokens; ++i) {
    int32_t next = sampleToken(logits->data<float>(), vocab, o.sampling, rng);
    if (next == eos) break;
    generated.push_back(next);
    stream();
    if (i + 1 == o.maxNewTokens) break;
    auto t1 = Clock::now();
    logits = s.append({next}, 1);
    decodeSeconds += std::chrono::duration<double>(Clock::now() - t1).count();
    ++decodeSteps;
    if (!logits) return fail(logits.error());
  }
  if (!o.quiet && tokenizer) std::printf("\n");
  if (!tokenizer || o.quiet) {
    std::printf("ids");
    for (int32_t id : generated) std::printf(" %d", id);
    std::printf("\n");
  }
  std::fflush(stdout); // the text ends before the timings (stderr) begin
  if (!o.outputIds.empty()) {
    Tensor t = Tensor::zeros(DType::I64, {int64_t(generated.size())});
    for (size_t i = 0; i < generated.size(); ++i) t.data<int64_t>()[i] = generated[i];
    if (Status st = io::writeNpy(o.outputIds, t); !st.ok()) return fail("--output-ids: " + st.message());
  }
  std::fprintf(stderr, "prefill  %zu tokens in %.3f s: %.1f tokens/s\n", prompt.size(), prefillSeconds,
               double(prompt.size()) / prefillSeconds);
  if (decodeSteps > 0)
    std::fprintf(stderr, "decode   %lld tokens in %.3f s: %.1f tokens/s (%.2f ms/token), %d threads\n", (long long)decodeSteps,
                 decodeSeconds, double(decodeSteps) / decodeSeconds, 1000.0 * decodeSeconds / double(decodeSteps), s.threads());
  if (s.device() != "cpu") std::fprintf(stderr, "device   %s\n", s.device().c_str());
  return 0;
}

} // namespace lathe::tools
