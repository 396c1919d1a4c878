#include "runtime/tools/Eval.h"

#include "runtime/artifact/Incremental.h"
#include "runtime/io/Npy.h"
#include "runtime/text/Tokenizer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <optional>
#include <sstream>
#include <unistd.h>

namespace lathe::tools {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

bool isInteger(DType t) { return t == DType::I64 || t == DType::I32; }

/// How each model input is filled from a window of ids.
enum class Fill { Ids, Ones, Positions, Zeros };

struct ModelIo {
  std::vector<std::pair<const TensorInfo *, Fill>> inputs;
  size_t logits = 0; // index into session.outputs()
  int64_t vocab = 0;
};

Expected<ModelIo> describeModel(const Session &session) {
  ModelIo io;
  const TensorInfo *ids = nullptr;
  for (const TensorInfo &in : session.inputs()) {
    Fill fill = Fill::Ids;
    switch (artifact::classifyInput(in.name)) {
    case artifact::InputRole::Mask: fill = Fill::Ones; break;
    case artifact::InputRole::Positions: fill = Fill::Positions; break;
    case artifact::InputRole::Zeros: fill = Fill::Zeros; break;
    case artifact::InputRole::Ids: break;
    }
    if (!isInteger(in.dtype) || in.shape.size() != 2)
      return Status::error("input '" + in.describe() + "' is not an integer [batch, sequence] tensor; eval feeds token ids");
    if (fill == Fill::Ids) {
      if (ids) return Status::error("inputs '" + ids->name + "' and '" + in.name + "' both look like token ids");
      ids = &in;
    }
    io.inputs.emplace_back(&in, fill);
  }
  if (!ids) return Status::error("the model has no token-ids input");
  auto logits = logitsOutput(session);
  if (!logits) return logits.status();
  io.logits = *logits;
  io.vocab = session.outputs()[io.logits].shape[2].value;
  return io;
}

} // namespace

Expected<size_t> logitsOutput(const Session &session) {
  const auto &outputs = session.outputs();
  std::vector<size_t> candidates;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const TensorInfo &o = outputs[i];
    if (o.dtype == DType::F32 && o.shape.size() == 3 && o.shape[2].isStatic()) candidates.push_back(i);
  }
  auto named = std::find_if(candidates.begin(), candidates.end(),
                            [&](size_t i) { return lower(outputs[i].name).find("logits") != std::string::npos; });
  if (named != candidates.end()) return *named;
  if (candidates.size() == 1 && session.vocabulary() &&
      outputs[candidates[0]].shape[2].value == int64_t(session.vocabulary()->tokens.size()))
    return candidates[0];
  return Status::error("the model has no logits output (an f32 [batch, sequence, vocab] output named '*logits*'); "
                       "is it a language model with its output head?");
}

namespace {

std::string secondsString(double s) {
  char buffer[32];
  if (s < 60) std::snprintf(buffer, sizeof buffer, "%.0fs", s);
  else std::snprintf(buffer, sizeof buffer, "%dm%02ds", int(s) / 60, int(s) % 60);
  return buffer;
}

} // namespace

Expected<PerplexityResult> evaluatePerplexity(Session &session, const std::vector<int32_t> &tokens,
                                              const PerplexityOptions &options, Session *reference) {
  auto io = describeModel(session);
  if (!io) return io.status();
  std::optional<ModelIo> refIo;
  if (reference) {
    auto r = describeModel(*reference);
    if (!r) return Status::error("the reference: " + r.error());
    if (r->vocab != io->vocab)
      return Status::error("the reference has " + std::to_string(r->vocab) + " logits per position, the model " +
                           std::to_string(io->vocab));
    refIo = std::move(*r);
  }
  const int64_t ctx = options.ctx;
  if (ctx < 2 || (options.protocol == PerplexityProtocol::LlamaCpp && ctx < 4))
    return Status::error("--ctx must be at least 4 (2 for --protocol full), got " + std::to_string(ctx));
  if (options.batch < 1) return Status::error("--batch must be at least 1");
  int64_t available = int64_t(tokens.size()) / ctx;
  if (available == 0)
    return Status::error("the text has " + std::to_string(tokens.size()) + " tokens, fewer than one window of " +
                         std::to_string(ctx) + " (--ctx)");
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= io->vocab)
      return Status::error("token " + std::to_string(i) + " is id " + std::to_string(tokens[i]) + ", outside the model's " +
                           std::to_string(io->vocab) + "-entry vocabulary");
  const int64_t chunks = options.maxChunks > 0 ? std::min(options.maxChunks, available) : available;
  const int64_t first = options.protocol == PerplexityProtocol::LlamaCpp ? ctx / 2 : 0;

  PerplexityResult result;
  result.streamTokens = int64_t(tokens.size());
  double nll = 0, nll2 = 0, refNll = 0, kld = 0;
  int64_t count = 0, agree = 0;
  const bool tty = isatty(2);
  const int64_t V = io->vocab;
  std::vector<double> logp(static_cast<size_t>(V)), refLogp(static_cast<size_t>(V));
  auto logSoftmax = [V](const float *row, std::vector<double> &out) {
    float max = *std::max_element(row, row + V);
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - max);
    const double shift = std::log(sum) + max;
    for (int64_t v = 0; v < V; ++v) out[size_t(v)] = double(row[v]) - shift;
  };
  auto makeFeeds = [&](const ModelIo &model, int64_t c0, int64_t b) {
    std::map<std::string, Tensor> feeds;
    for (auto [info, fill] : model.inputs) {
      Tensor t = Tensor::zeros(info->dtype, {b, ctx});
      for (int64_t r = 0; r < b; ++r)
        for (int64_t j = 0; j < ctx; ++j) {
          int64_t v = 0;
          if (fill == Fill::Ids) {
            v = tokens[size_t((c0 + r) * ctx + j)];
            if (j == 0 && options.bosId >= 0) v = options.bosId;
          } else if (fill == Fill::Ones) {
            v = 1;
          } else if (fill == Fill::Positions) {
            v = j;
          }
          if (info->dtype == DType::I64) t.data<int64_t>()[r * ctx + j] = v;
          else t.data<int32_t>()[r * ctx + j] = int32_t(v);
        }
      feeds.emplace(info->name, std::move(t));
    }
    return feeds;
  };
  for (int64_t c0 = 0; c0 < chunks; c0 += options.batch) {
    const int64_t b = std::min(options.batch, chunks - c0);
    auto t0 = std::chrono::steady_clock::now();
    auto outputs = session.run(makeFeeds(*io, c0, b));
    result.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!outputs) return outputs.status();
    const Tensor &logits = (*outputs)[io->logits].tensor;
    if (logits.shape() != std::vector<int64_t>{b, ctx, V})
      return Status::error("logits have shape " + shapeString(logits.shape()) + ", expected " + shapeString({b, ctx, V}));
    std::optional<std::vector<NamedTensor>> refOutputs;
    if (reference) {
      auto r = reference->run(makeFeeds(*refIo, c0, b));
      if (!r) return Status::error("the reference: " + r.error());
      refOutputs = std::move(*r);
      if ((*refOutputs)[refIo->logits].tensor.shape() != logits.shape())
        return Status::error("the reference's logits have shape " + shapeString((*refOutputs)[refIo->logits].tensor.shape()));
    }
    for (int64_t r = 0; r < b; ++r) {
      const int64_t start = (c0 + r) * ctx;
      for (int64_t j = first; j < ctx - 1; ++j) {
        const float *row = logits.data<float>() + (r * ctx + j) * V;
        const int32_t target = tokens[size_t(start + j + 1)];
        logSoftmax(row, logp);
        double value = -logp[size_t(target)];
        nll += value;
        nll2 += value * value;
        ++count;
        if (refOutputs) {
          const float *refRow = (*refOutputs)[refIo->logits].tensor.data<float>() + (r * ctx + j) * V;
          logSoftmax(refRow, refLogp);
          refNll -= refLogp[size_t(target)];
          double k = 0;
          for (int64_t v = 0; v < V; ++v) k += std::exp(refLogp[size_t(v)]) * (refLogp[size_t(v)] - logp[size_t(v)]);
          kld += k;
          agree += (std::max_element(row, row + V) - row) == (std::max_element(refRow, refRow + V) - refRow);
        }
      }
      result.runningPpl.push_back(std::exp(nll / double(count)));
    }
    result.tokensEvaluated += b * ctx;
    if (options.progress) {
      int64_t done = c0 + b;
      double eta = result.seconds / double(done) * double(chunks - done);
      std::fprintf(stderr, "%schunk %lld/%lld  ppl %.4f  %.0f tokens/s  %s left%s", tty ? "\r" : "",
                   (long long)done, (long long)chunks, result.runningPpl.back(), double(result.tokensEvaluated) / result.seconds,
                   secondsString(eta).c_str(), tty ? "   " : "\n");
      std::fflush(stderr);
    }
  }
  if (options.progress && tty) std::fprintf(stderr, "\n");
  result.chunks = chunks;
  result.tokensScored = count;
  result.meanNll = nll / double(count);
  result.ppl = std::exp(result.meanNll);
  double variance = nll2 / double(count) - result.meanNll * result.meanNll;
  result.pplError = (variance > 0 && count > 1) ? std::sqrt(variance / double(count - 1)) * result.ppl : 0;
  if (reference) {
    result.referencePpl = std::exp(refNll / double(count));
    result.meanKld = kld / double(count);
    result.top1Agreement = double(agree) / double(count);
  }
  return result;
}

Expected<std::vector<LayerError>> compareLayers(Session &model, Session &reference,
                                                const std::vector<std::map<std::string, Tensor>> &batches) {
  std::map<std::string, std::pair<double, double>> sums; // layer → (Σ diff², Σ ref²) over every batch
  std::vector<std::string> order;
  std::map<std::string, std::string> formats;
  std::set<std::string> linears; // the model's linear layers (a compensated one ends in an add of its name)
  for (const auto &l : model.info().manifest) {
    formats[l.source] = l.weightFormat;
    if (l.op == "linear") linears.insert(l.source);
  }
  for (const auto &feeds : batches) {
    std::map<std::string, std::vector<float>> want;
    reference.addTap("*", [&](const TapEvent &e) {
      if (e.op == "linear" && e.tensor.dtype() == DType::F32)
        want[e.source].assign(e.tensor.data<float>(), e.tensor.data<float>() + e.tensor.numel());
    });
    auto r = reference.run(feeds);
    reference.clearTaps();
    if (!r) return Status::error("the reference: " + r.error());
    model.addTap("*", [&](const TapEvent &e) {
      auto it = want.find(e.source);
      // A linear with a low-rank compensation ends in an add of the layer's name, its linear being
      // "<name>.q"; other adds that share a linear's name (residual adds) are not the layer's output.
      const bool layerOutput = e.op == "linear" || (e.op == "add" && !linears.count(e.source));
      if (!layerOutput || it == want.end() || size_t(e.tensor.numel()) != it->second.size()) return;
      auto [entry, inserted] = sums.try_emplace(e.source, 0.0, 0.0);
      if (inserted) order.push_back(e.source);
      for (size_t i = 0; i < it->second.size(); ++i) {
        const double d = double(e.tensor.data<float>()[i]) - it->second[i];
        entry->second.first += d * d;
        entry->second.second += double(it->second[i]) * it->second[i];
      }
    });
    auto m = model.run(feeds);
    model.clearTaps();
    if (!m) return m.status();
  }
  std::vector<LayerError> rows;
  for (const std::string &name : order) {
    auto [diff, norm] = sums[name];
    rows.push_back({name, formats.count(name) ? formats[name] : "f32", norm > 0 ? std::sqrt(diff / norm) : 0.0});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const LayerError &a, const LayerError &b) { return a.relative > b.relative; });
  return rows;
}

namespace {

Expected<std::vector<int32_t>> readIds(const std::string &path) {
  auto tensor = io::readNpy(path);
  if (!tensor) return tensor.status();
  if (!isInteger(tensor->dtype()) || tensor->rank() != 1)
    return Status::error(path + ": expected a 1-D int64 or int32 array of token ids, found " + dtypeName(tensor->dtype()) +
                         shapeString(tensor->shape()));
  std::vector<int32_t> ids(size_t(tensor->numel()));
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = tensor->dtype() == DType::I64 ? int32_t(tensor->data<int64_t>()[i]) : tensor->data<int32_t>()[i];
  return ids;
}

std::string jsonString(const std::string &s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (uint8_t(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", unsigned(uint8_t(c)));
      out += buffer;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

bool writeJson(const std::string &path, const std::string &text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

} // namespace

namespace {

Expected<std::vector<LayerError>> perLayerErrors(Session &model, Session &reference, const std::map<std::string, Tensor> &feeds) {
  return compareLayers(model, reference, {feeds});
}

void printLayerErrors(const std::vector<LayerError> &rows, std::string &json) {
  std::printf("per layer   relative output error ‖y − y_ref‖/‖y_ref‖ of %zu linear layers, worst first:\n", rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i < 15 || i + 3 >= rows.size())
      std::printf("  %-48s %-6s %.3e\n", rows[i].name.c_str(), rows[i].format.c_str(), rows[i].relative);
    else if (i == 15)
      std::printf("  ...\n");
  }
  json = "[";
  for (size_t i = 0; i < rows.size(); ++i) {
    char row[512];
    std::snprintf(row, sizeof row, "%s\n    {\"name\": %s, \"format\": \"%s\", \"relative_error\": %.6g}", i ? "," : "",
                  jsonString(rows[i].name).c_str(), rows[i].format.c_str(), rows[i].relative);
    json += row;
  }
  json += "\n  ]";
}

/// Encoders (and any model): run both artifacts on DIR/<input>.npy and compare
/// every float output vector by vector along its last axis.
int compareOnData(const EvalOptions &options) {
  auto fail = [](const std::string &message) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    return 1;
  };
  if (options.reference.empty()) return fail("--data compares two artifacts: give --reference R.lathe");
  auto model = Session::open(options.artifact, {options.threads, ""});
  if (!model) return fail(model.error());
  auto reference = Session::open(options.reference, {options.threads, ""});
  if (!reference) return fail(reference.error());
  std::map<std::string, Tensor> feeds;
  for (const TensorInfo &in : (*model)->inputs()) {
    std::string path = (std::filesystem::path(options.dataDir) / (in.name + ".npy")).string();
    auto t = io::readNpy(path);
    if (!t) return fail("input '" + in.name + "': " + t.error());
    feeds[in.name] = std::move(*t);
  }
  auto got = (*model)->run(feeds);
  if (!got) return fail(got.error());
  auto want = (*reference)->run(feeds);
  if (!want) return fail("the reference: " + want.error());
  std::string json = "{\n  \"artifact\": " + jsonString(options.artifact) + ",\n  \"reference\": " +
                     jsonString(options.reference) + ",\n  \"outputs\": [";
  for (size_t o = 0; o < got->size(); ++o) {
    const Tensor &a = (*got)[o].tensor, *b = nullptr;
    for (const auto &w : *want)
      if (w.name == (*got)[o].name) b = &w.tensor;
    if (!b || b->shape() != a.shape() || a.dtype() != DType::F32 || a.rank() == 0) continue;
    const int64_t width = a.shape().back(), vectors = width ? a.numel() / width : 0;
    double cosSum = 0, cosMin = 1, maxAbs = 0, sumAbs = 0;
    for (int64_t v = 0; v < vectors; ++v) {
      double dot = 0, na = 0, nb = 0;
      for (int64_t i = 0; i < width; ++i) {
        const double x = a.data<float>()[v * width + i], y = b->data<float>()[v * width + i];
        dot += x * y, na += x * x, nb += y * y;
        maxAbs = std::max(maxAbs, std::fabs(x - y));
        sumAbs += std::fabs(x - y);
      }
      const double c = (na > 0 && nb > 0) ? dot / std::sqrt(na * nb) : (na == nb ? 1.0 : 0.0);
      cosSum += c;
      cosMin = std::min(cosMin, c);
    }
    const double meanCos = vectors ? cosSum / double(vectors) : 1.0, meanAbs = a.numel() ? sumAbs / double(a.numel()) : 0;
    std::printf("%-24s %s: cosine mean %.6f, worst %.6f over %lld vectors; |error| max %.3e, mean %.3e\n",
                (*got)[o].name.c_str(), a.describe().c_str(), meanCos, cosMin, (long long)vectors, maxAbs, meanAbs);
    char row[512];
    std::snprintf(row, sizeof row, "%s\n    {\"name\": %s, \"cosine_mean\": %.9g, \"cosine_worst\": %.9g, \"max_abs\": %.6g, \"mean_abs\": %.6g}",
                  o ? "," : "", jsonString((*got)[o].name).c_str(), meanCos, cosMin, maxAbs, meanAbs);
    json += row;
  }
  json += "\n  ]";
  if (options.perLayer) {
    auto layers = perLayerErrors(**model, **reference, feeds);
    if (!layers) return fail(layers.error());
    std::string rows;
    printLayerErrors(*layers, rows);
    json += ",\n  \"per_layer\": " + rows;
  }
  json += "\n}\n";
  if (!options.jsonPath.empty() && !writeJson(options.jsonPath, json)) return fail("cannot write '" + options.jsonPath + "'");
  return 0;
}

} // namespace

int evalArtifactCommand(const EvalOptions &options) {
  auto fail = [](const std::string &message) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    return 1;
  };
  PerplexityOptions popts;
  if (options.protocol == "llama.cpp") popts.protocol = PerplexityProtocol::LlamaCpp;
  else if (options.protocol == "full") popts.protocol = PerplexityProtocol::Full;
  else return fail("unknown --protocol '" + options.protocol + "' (expected llama.cpp or full)");
  if (!options.dataDir.empty()) return compareOnData(options);
  if (options.textFile.empty() == options.idsFile.empty())
    return fail("give exactly one of --text FILE, --ids FILE.npy or (with --reference) --data DIR");
  popts.ctx = options.ctx;
  popts.maxChunks = options.chunks;
  popts.batch = options.batch;
  auto session = Session::open(options.artifact, {options.threads, ""});
  if (!session) return fail(session.error());
  std::unique_ptr<Session> reference;
  if (!options.reference.empty()) {
    auto r = Session::open(options.reference, {options.threads, ""});
    if (!r) return fail(r.error());
    reference = std::move(*r);
  }

  std::vector<int32_t> tokens;
  std::string bosNote;
  if (!options.textFile.empty()) {
    const artifact::Vocabulary *vocabulary = (*session)->vocabulary();
    if (!vocabulary)
      return fail("'" + options.artifact + "' has no tokenizer (compiled from a source without one); give --ids FILE.npy");
    auto tokenizer = text::Tokenizer::create(*vocabulary);
    if (!tokenizer) return fail("the artifact's tokenizer: " + tokenizer.error());
    std::ifstream in(options.textFile, std::ios::binary);
    if (!in) return fail("cannot read '" + options.textFile + "'");
    std::stringstream buffer;
    buffer << in.rdbuf();
    auto t0 = std::chrono::steady_clock::now();
    // As llama-perplexity: BOS first when the vocabulary asks for it, and each
    // window's first token replaced by BOS.
    tokens = tokenizer->encode(buffer.str(), /*addBos=*/true, /*parseSpecial=*/false);
    double tokenizeSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (vocabulary->addBos && vocabulary->bosId >= 0) {
      popts.bosId = vocabulary->bosId;
      bosNote = "BOS " + std::to_string(vocabulary->bosId) + " first in each window (tokenizer.ggml.add_bos_token)";
    } else {
      bosNote = "no BOS (the vocabulary does not ask for one, as llama-perplexity)";
    }
    std::printf("text        %s: %zu bytes, %zu tokens (tokenized in %.2fs)\n", options.textFile.c_str(), buffer.str().size(),
                tokens.size(), tokenizeSeconds);
  } else {
    auto ids = readIds(options.idsFile);
    if (!ids) return fail(ids.error());
    tokens = std::move(*ids);
    bosNote = "ids as given";
    std::printf("ids         %s: %zu tokens\n", options.idsFile.c_str(), tokens.size());
  }
  auto result = evaluatePerplexity(**session, tokens, popts, reference.get());
  if (!result) return fail(result.error());
  const PerplexityResult &r = *result;
  std::printf("protocol    %s, ctx %lld, %lld windows, %s\n", options.protocol.c_str(), (long long)options.ctx,
              (long long)r.chunks, bosNote.c_str());
  std::printf("scored      %lld tokens (%s)\n", (long long)r.tokensScored,
              popts.protocol == PerplexityProtocol::LlamaCpp ? "second half of each window" : "all but each window's first");
  std::printf("perplexity  %.4f +/- %.5f   (mean NLL %.6f)\n", r.ppl, r.pplError, r.meanNll);
  std::printf("speed       %lld tokens in %.2fs: %.1f tokens/s, %d threads\n", (long long)r.tokensEvaluated, r.seconds,
              double(r.tokensEvaluated) / r.seconds, (*session)->threads());
  if (reference)
    std::printf("reference   %s: perplexity %.4f (%+.3f %%), KL divergence %.6f nats/token, top-1 agreement %.2f %%\n",
                options.reference.c_str(), r.referencePpl, 100.0 * (r.ppl / r.referencePpl - 1.0), r.meanKld,
                100.0 * r.top1Agreement);
  std::string perLayerJson = "null";
  if (options.perLayer) {
    if (!reference) return fail("--per-layer compares with a reference: give --reference R.lathe");
    // The first window, fed as evaluatePerplexity feeds it.
    auto io = describeModel(**session);
    if (!io) return fail(io.error());
    std::map<std::string, Tensor> feeds;
    for (auto [info, fill] : io->inputs) {
      Tensor t = Tensor::zeros(info->dtype, {1, options.ctx});
      for (int64_t j = 0; j < options.ctx; ++j) {
        int64_t v = fill == Fill::Ids ? (j == 0 && popts.bosId >= 0 ? popts.bosId : tokens[size_t(j)])
                    : fill == Fill::Ones ? 1 : fill == Fill::Positions ? j : 0;
        if (info->dtype == DType::I64) t.data<int64_t>()[j] = v;
        else t.data<int32_t>()[j] = int32_t(v);
      }
      feeds.emplace(info->name, std::move(t));
    }
    auto layers = perLayerErrors(**session, *reference, feeds);
    if (!layers) return fail(layers.error());
    printLayerErrors(*layers, perLayerJson);
  }
  if (!options.jsonPath.empty()) {
    std::vector<char> jsonBuffer(16384 + perLayerJson.size());
    char *json = jsonBuffer.data();
    std::snprintf(json, jsonBuffer.size(),
                  "{\n  \"artifact\": %s,\n  \"protocol\": \"%s\",\n  \"ctx\": %lld,\n  \"chunks\": %lld,\n"
                  "  \"stream_tokens\": %lld,\n  \"tokens_scored\": %lld,\n  \"ppl\": %.9g,\n  \"ppl_error\": %.9g,\n"
                  "  \"mean_nll\": %.12g,\n  \"seconds\": %.6g,\n  \"tokens_per_second\": %.6g,\n  \"threads\": %d,\n"
                  "  \"bos_id\": %lld,\n  \"reference\": %s,\n  \"reference_ppl\": %.9g,\n  \"mean_kld\": %.9g,\n"
                  "  \"top1_agreement\": %.9g,\n  \"per_layer\": %s\n}\n",
                  jsonString(options.artifact).c_str(), options.protocol.c_str(), (long long)options.ctx, (long long)r.chunks,
                  (long long)r.streamTokens, (long long)r.tokensScored, r.ppl, r.pplError, r.meanNll, r.seconds,
                  double(r.tokensEvaluated) / r.seconds, (*session)->threads(), (long long)popts.bosId,
                  reference ? jsonString(options.reference).c_str() : "null", r.referencePpl, r.meanKld, r.top1Agreement,
                  perLayerJson.c_str());
    if (!writeJson(options.jsonPath, json)) return fail("cannot write '" + options.jsonPath + "'");
  }
  return 0;
}

} // namespace lathe::tools
