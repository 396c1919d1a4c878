// The compile report of a compression recipe: one row per linear layer (method,
// bits per weight including scales and mins, bytes before and after, relative
// weight error ‖W − Ŵ‖/‖W‖), totals, and time and peak memory per phase.
// Printed as a table and written as JSON.
#pragma once

#include "compiler/pipeline/Pipeline.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace lathe::pipeline {

struct LayerReport {
  std::string name, method;
  double bitsPerWeight = 32;
  int64_t bytesBefore = 0, bytesAfter = 0;
  double weightError = 0;
  double outputError = -1; // on the calibration data; -1: not measured (no --calibration)
  std::string note;         // why a layer got the format it got, when that needs saying
};

struct CompressionReport {
  std::string recipe, source;
  std::vector<LayerReport> layers;
  std::vector<PhaseStat> phases;
  uint64_t artifactBytes = 0;
  std::string calibration; // what the output errors were measured on; empty: no calibration data
};

/// Rows for every linear layer after the compress phase (compressed or kept).
std::vector<LayerReport> collectLayers(mlir::ModuleOp module);

void printReport(const CompressionReport &report, llvm::raw_ostream &os);

/// Writes through a temporary file renamed into place; error on failure.
bool writeReportJson(const CompressionReport &report, const std::string &path, std::string &error);

} // namespace lathe::pipeline
