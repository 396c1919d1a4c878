// The calibration driver (driver code, not a pass): runs the current model
// through the runtime on calibration inputs with taps on every linear layer's
// input and writes what it saw into the IR, keyed by the layer:
//   lathe.calibration = {positions: N, absmax: dense_resource<[in] f32>, mean_abs: dense_resource<[in] f32>}
// on each lathe.linear (per input channel: max |x| and mean |x| over every
// calibration position). The compression passes read it from there, so
// lathe-opt can run them on a calibrated .mlirbc. It also measures, for the
// compile report, each compressed layer's output error against the
// uncompressed model on the same data.
//
// Deterministic: the same data and options give the same statistics at any
// thread count (kernels are bitwise equal across thread counts, and the sums
// run in a fixed order).
#pragma once

#include "lathe/Tensor.h"

#include "mlir/IR/BuiltinOps.h"

#include <map>
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
mlir::LogicalResult calibrate(mlir::ModuleOp module, const CalibrationData &data, int threads, std::string &error);

/// Relative output error ‖y − y_ref‖/‖y_ref‖ of every linear layer of
/// `compressed` against `reference` (the same model before compression) on
/// the calibration data, by node name.
mlir::FailureOr<std::map<std::string, double>> measureLayerErrors(mlir::ModuleOp reference, mlir::ModuleOp compressed,
                                                                 const CalibrationData &data, int threads,
                                                                 std::string &error);

} // namespace lathe::calibration
