#include "compiler/pipeline/Report.h"

#include "dialects/lathe/LatheDialect.h"
#include "passes/quantize/QuantizeUtils.h"

#include "llvm/Support/raw_ostream.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace lathe::pipeline {

std::vector<LayerReport> collectLayers(mlir::ModuleOp module) {
  std::vector<LayerReport> rows;
  auto number = [](mlir::DictionaryAttr d, const char *key, double fallback) {
    auto a = d.getAs<mlir::FloatAttr>(key);
    return a ? a.getValueAsDouble() : fallback;
  };
  module.walk([&](mlir::Operation *op) {
    if (auto linear = mlir::dyn_cast<ir::LinearOp>(op)) {
      auto w = mlir::cast<mlir::RankedTensorType>(linear.getWeight().getType());
      if (!w.hasStaticShape() || op->hasAttr("lathe.lowrank_factor")) return; // a factor: counted on its layer's row
      LayerReport row;
      row.name = quantize::opName(op);
      row.method = "f32 (kept)";
      row.bytesBefore = row.bytesAfter = w.getNumElements() * 4;
      row.bitsPerWeight = 32;
      if (auto b = op->getAttrOfType<mlir::IntegerAttr>("lathe.structured_bytes_before")) {
        row.bytesBefore = b.getInt();
        row.bitsPerWeight = 32.0 * double(row.bytesAfter) / double(row.bytesBefore);
        row.method = "structured f32";
        if (auto s = op->getAttrOfType<mlir::DictionaryAttr>("lathe.structured")) {
          row.method = "structured";
          for (const char *what : {"ffn", "heads"})
            if (auto k = s.getAs<mlir::IntegerAttr>(std::string(what) + "_kept"))
              row.method += std::string(" ") + what + " " + std::to_string(k.getInt()) + "/" +
                            std::to_string(k.getInt() + s.getAs<mlir::IntegerAttr>(std::string(what) + "_removed").getInt());
          row.method += " " + s.getAs<mlir::StringAttr>("criterion").str();
        }
      }
      if (auto s = op->getAttrOfType<mlir::DictionaryAttr>("lathe.sparsity")) {
        // Unstructured (or N:M left dense): zeros in a dense f32 weight.
        row.method = s.getAs<mlir::StringAttr>("method").str() + "-" + s.getAs<mlir::StringAttr>("pattern").str() + " " +
                     std::to_string(int(std::lround(100 * (1 - number(s, "density", 1))))) + "% (dense f32)";
        row.weightError = number(s, "weight_error", 0);
        if (auto why = op->getAttrOfType<mlir::StringAttr>("lathe.sparse_kept_dense")) row.note = why.str();
        else row.note = "zeros in the dense f32 format (no lathe-pack-sparse ran)";
      } else if (auto l = op->getAttrOfType<mlir::DictionaryAttr>("lathe.lowrank")) {
        row.method = l.getAs<mlir::StringAttr>("method").str() + " f32";
        row.bytesBefore = l.getAs<mlir::IntegerAttr>("bytes_before").getInt();
        row.bytesAfter = l.getAs<mlir::IntegerAttr>("bytes_after").getInt();
        row.bitsPerWeight = 32.0 * double(row.bytesAfter) / double(row.bytesBefore);
        row.weightError = number(l, "weight_error", 0);
      } else if (auto why = op->getAttrOfType<mlir::StringAttr>("lathe.lowrank_skipped")) {
        row.method = "f32 (low-rank skipped)";
        row.note = why.str();
      }
      rows.push_back(row);
    } else if (mlir::isa<ir::QuantizedLinearOp, ir::QuantizedEmbeddingOp, ir::SparseLinearOp>(op)) {
      LayerReport row;
      row.name = quantize::opName(op);
      auto info = op->getAttrOfType<mlir::DictionaryAttr>("lathe.compression");
      if (!info) return;
      if (auto m = info.getAs<mlir::StringAttr>("method")) row.method = m.str();
      if (auto n = info.getAs<mlir::StringAttr>("layer")) row.name = n.str();
      if (auto b = info.getAs<mlir::FloatAttr>("bits_per_weight")) row.bitsPerWeight = b.getValueAsDouble();
      if (auto b = info.getAs<mlir::IntegerAttr>("bytes_before")) row.bytesBefore = b.getInt();
      if (auto b = info.getAs<mlir::IntegerAttr>("bytes_after")) row.bytesAfter = b.getInt();
      if (auto e = info.getAs<mlir::FloatAttr>("weight_error")) row.weightError = e.getValueAsDouble();
      rows.push_back(row);
    }
  });
  return rows;
}

namespace {
template <class... Args> std::string line(const char *format, Args... args) {
  char buffer[512];
  std::snprintf(buffer, sizeof buffer, format, args...);
  return buffer;
}
std::string mib(int64_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f MiB", double(bytes) / double(1 << 20));
  return buffer;
}
} // namespace

void printReport(const CompressionReport &r, llvm::raw_ostream &os) {
  os << "compression report: recipe " << r.recipe << ", " << r.source << "\n";
  os << line("%-32s %-22s %8s %12s %12s %10s %10s\n", "layer", "method", "bits/w", "before", "after", "w error", "out error");
  int64_t before = 0, after = 0, weights = 0;
  double weightedBits = 0;
  for (const LayerReport &l : r.layers) {
    os << line("%-32s %-22s %8.3f %12s %12s %10.2e %10s\n", l.name.c_str(), l.method.c_str(), l.bitsPerWeight,
               mib(l.bytesBefore).c_str(), mib(l.bytesAfter).c_str(), l.weightError,
               l.outputError >= 0 ? line("%.2e", l.outputError).c_str() : "-");
    before += l.bytesBefore;
    after += l.bytesAfter;
    weights += l.bytesBefore / 4;
    weightedBits += l.bitsPerWeight * double(l.bytesBefore / 4);
  }
  os << line("%-32s %-22s %8.3f %12s %12s %9.2fx\n", "total (compressible layers)", "", weights ? weightedBits / double(weights) : 0.0,
                     mib(before).c_str(), mib(after).c_str(), after ? double(before) / double(after) : 0.0);
  std::map<std::string, int> notes; // each distinct note once, with how many layers it concerns
  for (const LayerReport &l : r.layers)
    if (!l.note.empty()) ++notes[l.note];
  for (const auto &[note, count] : notes) os << "note (" << count << (count == 1 ? " layer" : " layers") << "): " << note << "\n";
  if (r.artifactBytes) os << "artifact " << mib(int64_t(r.artifactBytes)) << "\n";
  for (const PhaseStat &p : r.phases)
    os << line("phase %-9s %8.2f s, peak RSS %s\n", p.label ? p.label : phaseName(p.phase), p.seconds,
               mib(int64_t(p.peakRssBytes)).c_str());
  if (r.calibration.empty())
    os << "(w error = ‖W−Ŵ‖/‖W‖; give --calibration DATA for each layer's output error ‖y−ŷ‖/‖y‖ against the uncompressed model)\n";
  else
    os << "(w error = ‖W−Ŵ‖/‖W‖; out error = ‖y−ŷ‖/‖y‖ against the uncompressed model on " << r.calibration << ")\n";
}

bool writeReportJson(const CompressionReport &r, const std::string &path, std::string &error) {
  nlohmann::json j;
  j["recipe"] = r.recipe;
  j["source"] = r.source;
  j["artifact_bytes"] = r.artifactBytes;
  j["calibration"] = r.calibration.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.calibration);
  int64_t before = 0, after = 0;
  for (const LayerReport &l : r.layers) {
    j["layers"].push_back({{"name", l.name}, {"method", l.method}, {"bits_per_weight", l.bitsPerWeight},
                           {"bytes_before", l.bytesBefore}, {"bytes_after", l.bytesAfter}, {"weight_error", l.weightError},
                           {"note", l.note.empty() ? nlohmann::json(nullptr) : nlohmann::json(l.note)},
                           {"output_error", l.outputError >= 0 ? nlohmann::json(l.outputError) : nlohmann::json(nullptr)}});
    before += l.bytesBefore;
    after += l.bytesAfter;
  }
  j["totals"] = {{"linear_bytes_before", before}, {"linear_bytes_after", after}};
  for (const PhaseStat &p : r.phases)
    j["phases"].push_back({{"phase", p.label ? p.label : phaseName(p.phase)}, {"seconds", p.seconds}, {"peak_rss_bytes", p.peakRssBytes}});
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) {
      error = "cannot write '" + tmp + "'";
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    error = "cannot rename '" + tmp + "' to '" + path + "': " + ec.message();
    return false;
  }
  return true;
}

} // namespace lathe::pipeline
