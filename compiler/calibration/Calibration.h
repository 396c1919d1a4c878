// The calibration driver (driver code, not a pass): runs the current model
// through the runtime on calibration inputs with taps on every linear layer's
// input and writes what it saw into the IR, keyed by the layer:
//   lathe.calibration = {positions: N, absmax: dense_resource<[in] f32>, mean_abs: dense_resource<[in] f32>,
//                        abs_hist: dense_resource<[8192] i64>  (counts of |x| by f32 exponent and top mantissa
//                                  bits, for static activation scales at a percentile),
//                        xtx: dense_resource<[in, in] f32>  (only when asked: Σ xᵀx over the positions)}
// on each lathe.linear (per input channel: max |x| and mean |x| over every
// calibration position; layers reading the same tensor share one XᵀX blob). The compression passes read it from there, so
// lathe-opt can run them on a calibrated .mlirbc. It also measures, for the
// compile report, each compressed layer's output error against the
// uncompressed model on the same data.
//
// Deterministic: the same data and options give the same statistics at any
// thread count (kernels are bitwise equal across thread counts, and the sums
// run in a fixed order).
#pragma once

#include "lathe/Session.h"
#include "lathe/Tensor.h"

#include "mlir/IR/BuiltinOps.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lathe::calibration {

struct CalibrationData {
  std::vector<std::map<std::string, Tensor>> batches; // model inputs by name
  std::string description;                            // "8 windows of 256 tokens from FILE"
};

/// Calibration inputs from `path`: a UTF-8 text file (tokenized with the model's
/// tokenizer, cut into `samples` windows of `ctx` tokens), a 1-D .npy of token
/// ids (same windows), or a directory of <input name>.npy files (one batch).
mlir::FailureOr<CalibrationData> loadCalibrationData(mlir::ModuleOp module, const std::string &path, int64_t samples,
                                                     int64_t ctx, std::string &error);

/// Attaches lathe.calibration statistics to every lathe.linear of `module`.
/// Prints a progress line (batches done, time left) to stderr.
/// With `only`, just the layers it accepts get statistics, and each run stops
/// as soon as all of them were observed.
mlir::LogicalResult calibrate(mlir::ModuleOp module, const CalibrationData &data, int threads, std::string &error,
                              bool gram = false, const std::function<bool(mlir::Operation *)> &only = {},
                              const std::string &progressLabel = "");

/// Sequential calibration for methods that must see compressed upstream
/// outputs (GPTQ, SparseGPT): stage by stage (the linears between consecutive
/// attention ops), calibrate that stage's layers on the model whose earlier
/// stages are already compressed, then call `compress` (which must compress
/// the layers that have statistics and leave the rest alone).
mlir::LogicalResult calibrateSequential(mlir::ModuleOp module, const CalibrationData &data, int threads, std::string &error,
                                        const std::function<mlir::LogicalResult(mlir::ModuleOp)> &compress);

/// Relative output error ‖y − y_ref‖/‖y_ref‖ of every linear layer of
/// `compressed` against `reference` (the same model before compression) on
/// the calibration data, by node name: on at most `maxBatches` of its batches,
/// evenly spaced (all when 0); `used` is set to how many.
mlir::FailureOr<std::map<std::string, double>> measureLayerErrors(mlir::ModuleOp reference, mlir::ModuleOp compressed,
                                                                 const CalibrationData &data, int threads,
                                                                 std::string &error, size_t maxBatches, size_t &used);

/// Lowers `module` and opens it as a runtime session (the compiler's way to run
/// the model it holds).
mlir::FailureOr<std::unique_ptr<Session>> openModule(mlir::ModuleOp module, int threads, std::string &error);

struct SensitivityRow {
  std::string layer;
  double error = 0;        // mean KL divergence of next-token distributions (logits), else 1 − mean cosine
  int64_t bytesSaved = 0;  // weight bytes the compression saves on this layer
};

/// Compresses one linear layer at a time (lathe-quantize-weights with `format`,
/// `groupSize`, `symmetric`, `int8Activations`) and measures how much the
/// model's first output moves on the calibration data; most sensitive first.
mlir::FailureOr<std::vector<SensitivityRow>> rankLayers(mlir::ModuleOp module, const CalibrationData &data,
                                                        const std::string &format, int64_t groupSize, bool symmetric,
                                                        bool int8Activations, int threads, std::string &error);

} // namespace lathe::calibration
