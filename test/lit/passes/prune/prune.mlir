// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-prune{method=magnitude sparsity=0.5}))' 2>&1 | FileCheck %s --check-prefix=UNSTR
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-prune{method=magnitude sparsity=0.5},lathe-pack-sparse))' 2>&1 | FileCheck %s --check-prefix=BITMAP
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-prune{method=magnitude sparsity=0.2},lathe-pack-sparse{max-density=0.7}))' 2>&1 | FileCheck %s --check-prefix=DENSE
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-prune{method=wanda pattern=2:4},lathe-pack-sparse))' 2>&1 | FileCheck %s --check-prefix=NM24
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-prune{method=sparsegpt pattern=4:8},lathe-pack-sparse))' 2>&1 | FileCheck %s --check-prefix=NM48
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-prune{method=magnitude pattern=2:4},lathe-quantize-weights{format=int4 group-size=32}))' 2>&1 | FileCheck %s --check-prefix=INT4
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-prune{method=magnitude pattern=2:4},lathe-quantize-weights{format=int8}))' 2>&1 | FileCheck %s --check-prefix=INT8

// (lathe-opt prints the remarks of every split before the output.)
// NM24: remark: {{.*}}not pruned: 18 input features are not a multiple of 4
// INT8: remark: {{.*}}the 2:4 sparsity is not kept: N:M layers store f32 or symmetric int4

// Unstructured: half of the weights become 0, the weight stays a dense f32 constant.
// UNSTR-LABEL: func @fc
// UNSTR: %[[W:.*]] = lathe.constant dense_resource<fc.pruned> : tensor<4x32xf32>
// UNSTR: lathe.linear %arg0, %[[W]] {{.*}}lathe.sparsity = {density = 5.000000e-01 : f64, method = "magnitude", norm_ratio = {{.*}}, pattern = "unstructured", weight_error = {{.*}}}}
// Packed as a bitmap [4, 4] bytes and the 64 kept values (density 0.5 ≤ max-density).
// BITMAP-LABEL: func @fc
// BITMAP: %[[V:.*]] = lathe.constant dense_resource<fc.sparse_values> : tensor<64xf32>
// BITMAP: %[[M:.*]] = lathe.constant dense_resource<fc.sparse_bitmap> : tensor<4x4xui8>
// BITMAP: lathe.sparse_linear %arg0, %[[V]], %[[M]] {{.*}}method = "magnitude-unstructured 50% bitmap-f32"{{.*}}pattern = "unstructured"
// BITMAP-SAME: (tensor<?x32xf32>, tensor<64xf32>, tensor<4x4xui8>) -> tensor<?x4xf32>
// Density 0.8 is above max-density: kept dense, with the reason.
// DENSE-LABEL: func @fc
// DENSE: lathe.linear {{.*}}lathe.sparse_kept_dense = "kept dense: density 0.80 is above 0.70
// 2:4: the kept values f32 [4, 16], 2-bit positions [4, 4] bytes.
// NM24-LABEL: func @fc
// NM24: %[[V:.*]] = lathe.constant dense_resource<fc.nm_values> : tensor<4x16xf32>
// NM24: %[[I:.*]] = lathe.constant dense_resource<fc.nm_indices> : tensor<4x4xui8>
// NM24: lathe.sparse_linear %arg0, %[[V]], %[[I]] {{.*}}in_features = 32 : i64, {{.*}}method = "wanda-2:4 f32"{{.*}}pattern = "2:4", values_format = "f32"}
// NM24-SAME: (tensor<?x32xf32>, tensor<4x16xf32>, tensor<4x4xui8>) -> tensor<?x4xf32>
// 4:8: nibble positions [4, 8] bytes.
// NM48-LABEL: func @fc
// NM48: lathe.sparse_linear {{.*}}method = "sparsegpt-4:8 f32"{{.*}}pattern = "4:8"
// NM48-SAME: (tensor<?x32xf32>, tensor<4x16xf32>, tensor<4x8xui8>) -> tensor<?x4xf32>
// Stacked: the kept values as int4 codes [4, 8] bytes with an f16 scale per 32 input columns.
// INT4-LABEL: func @fc
// INT4: lathe.sparse_linear {{.*}}scales {{.*}}group_size = 32 : i64{{.*}}method = "magnitude-2:4 int4-g32 sym-rtn"{{.*}}values_format = "int4"
// INT4-SAME: (tensor<?x32xf32>, tensor<4x8xui8>, tensor<4x4xui8>, tensor<4x1xf16>) -> tensor<?x4xf32>
// int8 cannot hold the sparsity: the layer is quantized dense.
// INT8-LABEL: func @fc
// INT8: lathe.quantized_linear {{.*}}format = "int8"
// INT8-NOT: lathe.sparsity
func.func @fc(%x: tensor<?x32xf32>) -> tensor<?x4xf32> {
  %w = lathe.constant dense<[[ 0.13, -0.13,  0.64,  0.1 , -0.54,  0.36,  1.3 ,  0.95, -0.7 , -1.27, -0.62,  0.04, -2.33, -0.22, -1.25, -0.73, -0.54, -0.32,  0.41,  1.04, -0.13,  1.37, -0.67,  0.35,  0.9 ,  0.09, -0.74, -0.92, -0.46,  0.22, -1.01, -0.21], [-0.16,  0.54,  0.21,  0.36, -0.65, -0.13,  0.78,  1.49, -1.26,  1.51,  1.35,  0.78,  0.26, -0.31,  1.46,  1.96,  1.8 ,  1.32,  0.36, -1.21, -0.  ,  0.66, -1.29,  0.4 ,  0.43,  0.7 , -1.18, -0.66, -0.44, -1.17,  1.74, -0.5 ], [ 0.33, -0.26,  1.58,  1.32,  0.63, -2.2 ,  0.05,  0.68,  1.  , -0.62,  1.82, -1.32, -0.66,  0.94,  0.05,  2.  ,  0.19, -0.63, -0.38, -1.09, -1.28,  0.63,  0.58,  1.29, -0.75,  1.69, -0.29,  1.57, -0.43, -0.74,  0.25,  1.03], [ 0.16, -0.59, -1.34, -1.4 ,  0.5 ,  0.99, -0.16, -1.07,  0.87, -1.28, -0.71,  0.62, -2.25,  0.39, -0.58,  0.11, -0.08,  0.2 ,  0.69, -0.76,  1.42,  0.73,  0.84,  1.16,  0.79,  0.84,  0.08, -1.43, -0.14, -0.77, -1.42,  0.26]]> : tensor<4x32xf32> loc("fc")
  %y = lathe.linear %x, %w {lathe.calibration = {positions = 8 : i64, xtx = dense<[[1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0.], [0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1.]]> : tensor<32x32xf32>}} : (tensor<?x32xf32>, tensor<4x32xf32>) -> tensor<?x4xf32> loc("fc")
  return %y : tensor<?x4xf32>
}

// -----

// 18 input features are not whole 2:4 groups: left alone (the remark is checked above).
func.func @odd(%x: tensor<?x18xf32>) -> tensor<?x2xf32> {
  %c = lathe.constant dense<1.0> : tensor<2x18xf32> loc("odd")
  %y = lathe.linear %x, %c : (tensor<?x18xf32>, tensor<2x18xf32>) -> tensor<?x2xf32> loc("odd")
  return %y : tensor<?x2xf32>
}
