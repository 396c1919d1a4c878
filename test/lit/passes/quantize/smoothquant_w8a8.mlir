// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-smooth-quant{alpha=0.5}))' 2>&1 | FileCheck %s --check-prefix=SQ
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-smooth-quant{alpha=0.5},lathe-quantize-weights{format=w8a8 act-mode=static}))' 2>&1 | FileCheck %s --check-prefix=STATIC
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=w8a8}))' 2>&1 | FileCheck %s --check-prefix=DYN
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=w8a8 act-mode=static act-granularity=channel}))' 2>&1 | FileCheck %s --check-prefix=CHAN

// (lathe-opt prints the remarks of every split before the output.)
// SQ: remark: {{.*}}SmoothQuant not applied to down: its producer 'lathe.gelu' cannot absorb the scales (nothing is added at run time)

// q and k read one layer_norm. Column maxima of |W| over both: [1, 2, 2, 4];
// max |x| per channel: [4, 1, 0.25, 1]; s = sqrt(x / w) = [2, 0.7071, 0.3536, 0.5].
// SQ-LABEL: func @qk
// SQ: %[[G:.*]] = lathe.constant dense_resource<norm.smoothquant> : tensor<4xf32>
// SQ: %[[B:.*]] = lathe.constant dense_resource<norm.smoothquant{{.*}}> : tensor<4xf32>
// SQ: %[[N:.*]] = lathe.layer_norm %arg0, %[[G]], %[[B]]
// SQ: lathe.linear %[[N]], {{.*}}lathe.smoothquant = {alpha = 5.000000e-01 : f64, folded_into = "layer_norm", max_scale = 2.000000e+00 : f64, min_scale = 0.3535{{[0-9]*}} : f64}
// SQ: lathe.linear %[[N]], {{.*}}lathe.smoothquant
// After smoothing, max |x| is [2, 1.414, 0.707, 2]: the static per-tensor scale is 2 / 127.
// STATIC-LABEL: func @qk
// STATIC: lathe.quantized_linear {{.*}} {act_scale = 0.015748{{[0-9]*}} : f32, format = "w8a8", group_size = 4 : i64, lathe.compression = {{{.*}}method = "sq+w8a8-static-tensor-minmax-rtn"
// Dynamic: no activation scale in the IR (one per token at run time).
// DYN-LABEL: func @qk
// DYN: lathe.quantized_linear {{.*}} scales {{.*}} {format = "w8a8", group_size = 4 : i64, lathe.compression = {{{.*}}method = "w8a8-dynamic-rtn"
// DYN-SAME: (tensor<?x4xf32>, tensor<2x4xi8>, tensor<2x1xf16>) -> tensor<?x2xf32>
// Per channel: 1 / (max |x_i| / 127) as act_scales, the row scale 1.
// CHAN-LABEL: func @qk
// CHAN: %[[A:.*]] = lathe.constant dense_resource<q.act_scales> : tensor<4xf32>
// CHAN: lathe.quantized_linear {{.*}} act_scales %[[A]] {act_scale = 1.000000e+00 : f32, format = "w8a8"{{.*}}method = "w8a8-static-channel-rtn"
func.func @qk(%x: tensor<?x4xf32>) -> (tensor<?x2xf32>, tensor<?x2xf32>) {
  %g = lathe.constant dense<[1.0, 1.0, 1.0, 1.0]> : tensor<4xf32> loc("norm.g")
  %b = lathe.constant dense<[0.0, 0.0, 0.0, 0.0]> : tensor<4xf32> loc("norm.b")
  %n = lathe.layer_norm %x, %g, %b {axis = -1 : i64, epsilon = 1.0e-5 : f64} : (tensor<?x4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<?x4xf32> loc("norm")
  %wq = lathe.constant dense<[[1.0, 0.5, 2.0, 1.0], [-0.5, 1.0, 1.0, 0.25]]> : tensor<2x4xf32> loc("q")
  %wk = lathe.constant dense<[[0.25, -2.0, 1.0, 1.0], [1.0, 1.0, 0.5, -4.0]]> : tensor<2x4xf32> loc("k")
  %q = lathe.linear %n, %wq {lathe.calibration = {positions = 8 : i64, absmax = dense<[4.0, 1.0, 0.25, 1.0]> : tensor<4xf32>, mean_abs = dense<[1.0, 0.5, 0.1, 0.5]> : tensor<4xf32>}} : (tensor<?x4xf32>, tensor<2x4xf32>) -> tensor<?x2xf32> loc("q")
  %k = lathe.linear %n, %wk {lathe.calibration = {positions = 8 : i64, absmax = dense<[4.0, 1.0, 0.25, 1.0]> : tensor<4xf32>, mean_abs = dense<[1.0, 0.5, 0.1, 0.5]> : tensor<4xf32>}} : (tensor<?x4xf32>, tensor<2x4xf32>) -> tensor<?x2xf32> loc("k")
  return %q, %k : tensor<?x2xf32>, tensor<?x2xf32>
}

// -----

// gelu cannot absorb 1/s and SmoothQuant adds nothing at run time: left alone.
// SQ-LABEL: func @gelu_fed
// SQ-NOT: lathe.mul
// SQ-NOT: lathe.smoothquant
func.func @gelu_fed(%x: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %a = lathe.gelu %x : (tensor<?x4xf32>) -> tensor<?x4xf32> loc("act")
  %w = lathe.constant dense<[[1.0, 0.5, 2.0, 1.0], [-0.5, 1.0, 1.0, 0.25]]> : tensor<2x4xf32> loc("down")
  %y = lathe.linear %a, %w {lathe.calibration = {positions = 8 : i64, absmax = dense<[4.0, 1.0, 0.25, 1.0]> : tensor<4xf32>, mean_abs = dense<[1.0, 0.5, 0.1, 0.5]> : tensor<4xf32>}} : (tensor<?x4xf32>, tensor<2x4xf32>) -> tensor<?x2xf32> loc("down")
  return %y : tensor<?x2xf32>
}
