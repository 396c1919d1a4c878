// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-low-rank{method=svd rank=2}))' 2>&1 | FileCheck %s --check-prefix=SVD
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-low-rank{method=asvd param-ratio=0.5}))' 2>&1 | FileCheck %s --check-prefix=ASVD
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-low-rank{method=svd rank=4}))' 2>&1 | FileCheck %s --check-prefix=SKIP
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-low-rank{method=svd rank=2},lathe-quantize-weights{format=int8}))' 2>&1 | FileCheck %s --check-prefix=INT8
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=int8 compensation-rank=1}))' 2>&1 | FileCheck %s --check-prefix=COMP

// (lathe-opt prints the remarks of every split before the output.)
// A rank with r·(m+n) ≥ m·n saves nothing: 4·(6+8) = 56 ≥ 48.
// SKIP: remark: {{.*}}not factorized: rank 4 saves nothing: r*(m+n) = 56 >= m*n = 48
// SKIP-LABEL: func @fc
// SKIP: lathe.linear {{.*}}lathe.lowrank_skipped = "rank 4 saves nothing: r*(m+n) = 56 >= m*n = 48"

// W [6, 8] ≈ B [6, 2] · A [2, 8]: the first factor is "<node>.lr_a", the second keeps the node's name and bias.
// SVD-LABEL: func @fc
// SVD: %[[A:.*]] = lathe.constant dense_resource<fc.lr_a> : tensor<2x8xf32>
// SVD: %[[B:.*]] = lathe.constant dense_resource<fc.lr_b> : tensor<6x2xf32>
// SVD: %[[T:.*]] = lathe.linear %arg0, %[[A]] {{.*}}lathe.lowrank_factor = "fc"} : (tensor<?x8xf32>, tensor<2x8xf32>) -> tensor<?x2xf32>
// SVD: lathe.linear %[[T]], %[[B]], %{{.*}} {lathe.lowrank = {bytes_after = 112 : i64, bytes_before = 192 : i64, energy = {{.*}}, method = "svd-r2", rank = 2 : i64, weight_error = {{.*}}}} : (tensor<?x2xf32>, tensor<6x2xf32>, tensor<6xf32>) -> tensor<?x6xf32>
// Activation-aware with 50 % of the parameters: the largest r with r·14 ≤ 24 is 1; the output error from XᵀX.
// ASVD-LABEL: func @fc
// ASVD: lathe.linear {{.*}} : (tensor<?x8xf32>, tensor<1x8xf32>) -> tensor<?x1xf32>
// ASVD: lathe.lowrank = {{.*}}method = "asvd-r1", output_error_xtx = {{.*}}, rank = 1 : i64
// The factors are quantized like any linear; the layer's row carries the original bytes, the first factor none.
// INT8-LABEL: func @fc
// INT8: lathe.quantized_linear {{.*}}bytes_before = 0 : i64, method = "factor of fc: int8-rtn-g8"
// INT8: lathe.quantized_linear {{.*}}bytes_before = 192 : i64, method = "svd-r2+int8-rtn-g2"
// Compensation: y = Q(x) + (x·Aᵀ)·Bᵀ with bf16 factors; the report row is named after the layer.
// COMP-LABEL: func @fc
// COMP: %[[Q:.*]] = lathe.quantized_linear %arg0, {{.*}}layer = "fc", method = "int8-rtn-g8+lowrank-comp-r1"
// COMP: %[[CA:.*]] = lathe.quantized_linear %arg0, {{.*}}format = "bf16"{{.*}} : (tensor<?x8xf32>, tensor<1x8xbf16>) -> tensor<?x1xf32>
// COMP: %[[CB:.*]] = lathe.quantized_linear %[[CA]], {{.*}}format = "bf16"{{.*}} : (tensor<?x1xf32>, tensor<6x1xbf16>) -> tensor<?x6xf32>
// COMP: lathe.add %[[Q]], %[[CB]]
func.func @fc(%x: tensor<?x8xf32>) -> tensor<?x6xf32> {
  %w = lathe.constant dense<[[ 0.35,  0.82,  0.33, -1.3 ,  0.91,  0.45, -0.54,  0.58], [ 0.36,  0.29,  0.03,  0.55, -0.74, -0.16, -0.48,  0.6 ], [ 0.04, -0.29, -0.78, -0.26,  0.01, -0.28,  1.29,  1.01], [-2.71, -1.89, -0.17, -0.42,  0.21,  0.22,  2.12, -1.11], [-0.38,  2.04,  0.65,  0.66, -0.51, -1.65,  0.17,  0.11], [-1.23, -0.68, -0.07, -0.94, -0.1 ,  0.1 ,  0.04, -0.51]]> : tensor<6x8xf32> loc("fc")
  %b = lathe.constant dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]> : tensor<6xf32> loc("fc.bias")
  %y = lathe.linear %x, %w, %b {lathe.calibration = {positions = 64 : i64, xtx = dense<[[ 47.77 ,  -1.111,  -9.383,  -9.39 ,  11.493,   0.24 ,   3.825,  -1.256], [ -1.111,  78.442,   6.505,  -3.295,   9.458,  -3.999,  -4.25 ,   6.046], [ -9.383,   6.505,  59.944,  -6.923,  -1.246,   1.555,  10.056,  -7.649], [ -9.39 ,  -3.295,  -6.923,  45.758,  -4.382,  -3.668,   7.678,  17.618], [ 11.493,   9.458,  -1.246,  -4.382,  63.073, -15.361,  10.078,  10.188], [  0.24 ,  -3.999,   1.555,  -3.668, -15.361,  35.877,  -8.027,  -5.675], [  3.825,  -4.25 ,  10.056,   7.678,  10.078,  -8.027,  60.251, -10.317], [ -1.256,   6.046,  -7.649,  17.618,  10.188,  -5.675, -10.317,  57.364]]> : tensor<8x8xf32>}} : (tensor<?x8xf32>, tensor<6x8xf32>, tensor<6xf32>) -> tensor<?x6xf32> loc("fc")
  return %y : tensor<?x6xf32>
}
