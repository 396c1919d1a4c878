// GGUF (Llama architecture family) → lathe dialect.
//
// The graph is the one an ONNX export of transformers' LlamaForCausalLM gives
// after `simplify`: embedding, per block rms_norm → q/k/v linear → rotary
// (rotate_half) → grouped-query lathe.attention → o linear → residual →
// rms_norm → silu(gate)·up → down → residual, then output_norm and the output
// linear (tied to token_embd when `output.weight` is absent). Every op's
// location names the GGUF tensor or block it comes from ("blk.3.attn_q").
//
// Weights are dequantized to f32 at import. llama.cpp's converter permutes the
// rows of attn_q/attn_k for its interleaved rope; the importer undoes that so
// the graph can use the rotate_half form the rest of Lathe already knows.
#pragma once

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lathe::importer {

/// Module attribute holding the model's tokenizer: a dense_resource i8 blob in
/// runtime/artifact/Vocabulary.h's encoding, carried into the artifact.
inline constexpr const char *kTokenizerAttr = "lathe.tokenizer";

struct GgufImportResult {
  mlir::OwningOpRef<mlir::ModuleOp> module; // null if any problem was found
  std::vector<std::string> problems;        // every missing key / tensor, bad shape, unsupported type
  std::string fatalError;                   // file-level problem (unreadable, malformed, wrong architecture)
  std::string summary;                      // one line: architecture, sizes, tensor count
};

/// Checks the file (metadata, tensor names, shapes and types) without building IR.
GgufImportResult checkGgufFile(const std::string &path);

struct GgufImportOptions {
  /// Keep Q8_0 / Q4_0 / Q4_1 linear weights in Lathe's int8 / int4 formats
  /// (group 32, the file's own codes and f16 scales: no dequantize-requantize
  /// round trip) instead of dequantizing them to f32.
  bool keepQuantized = false;
  /// With keepQuantized: those layers also quantize their input to int8 per
  /// block of 32 at run time (act_block = 32), as llama.cpp's CPU backend does.
  bool int8Activations = false;
};

/// Imports the model at `path`. On problems, `module` is null and the problems
/// (or the fatal error) say what is wrong.
GgufImportResult importGgufFile(mlir::MLIRContext &context, const std::string &path,
                                const GgufImportOptions &options = {});

} // namespace lathe::importer
