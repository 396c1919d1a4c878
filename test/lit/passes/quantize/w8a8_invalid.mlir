// RUN: lathe-opt %s -split-input-file -verify-diagnostics --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=w8a8 act-mode=static}))'
// RUN: lathe-opt %s -split-input-file -verify-diagnostics --pass-pipeline='builtin.module(func.func(lathe-smooth-quant))'
// RUN: not lathe-opt %s --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=w8a8 act-mode=static act-granularity=channel act-calibration=percentile}))' 2>&1 | FileCheck %s --check-prefix=CHANPCT
// RUN: not lathe-opt %s --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=w8a8 method=awq}))' 2>&1 | FileCheck %s --check-prefix=AWQ
// RUN: not lathe-opt %s --pass-pipeline='builtin.module(func.func(lathe-smooth-quant{alpha=1.5}))' 2>&1 | FileCheck %s --check-prefix=ALPHA
// CHANPCT: w8a8: per-channel activation scales are min-max (the histogram is per tensor)
// AWQ: w8a8 takes method rtn or gptq
// ALPHA: lathe-smooth-quant: alpha must be in [0, 1], got 1.5

// Static scales and SmoothQuant need calibration statistics; without them the
// error names the layer and what to do.
func.func @uncalibrated(%x: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %w = lathe.constant dense<[[1.0, 0.5, 2.0, 1.0], [-0.5, 1.0, 1.0, 0.25]]> : tensor<2x4xf32> loc("fc")
  // expected-error @+1 {{max |x| of 4 channels): compile with --calibration}}
  %y = lathe.linear %x, %w : (tensor<?x4xf32>, tensor<2x4xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
