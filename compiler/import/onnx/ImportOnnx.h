// ONNX → lathe dialect. Every op keeps its ONNX node name as its location;
// initializers become dense_resource blobs; problems are collected for all
// nodes, so `lathe check` can list every unsupported node at once.
#pragma once

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lathe::importer {

/// One node Lathe cannot import, and why.
struct NodeProblem {
  std::string nodeName;
  std::string opType;
  std::string domain;
  int64_t opset = 0;
  std::string reason;
};

struct OnnxImportResult {
  mlir::OwningOpRef<mlir::ModuleOp> module; // null if any problem was found
  std::vector<NodeProblem> problems;        // per-node problems
  std::string fatalError;                   // file-level problem (unreadable, bad external data...)
  int64_t opset = 0;
  size_t nodeCount = 0;
};

/// Lowest and highest default-domain opsets the importer accepts.
constexpr int64_t kMinOpset = 11;
constexpr int64_t kMaxOpset = 21;

/// Imports the model at `path`. On problems, `module` is null and the problems
/// (or the fatal error) say what is wrong.
OnnxImportResult importOnnxFile(mlir::MLIRContext &context, const std::string &path);

} // namespace lathe::importer
