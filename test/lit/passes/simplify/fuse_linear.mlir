// RUN: lathe-opt %s -split-input-file --lathe-fuse-linear | FileCheck %s

// MatMul with a constant [in, out] weight + bias Add → linear with the
// weight transposed once to [out, in].
// CHECK-LABEL: func @matmul_bias
// CHECK: %[[W:.*]] = lathe.constant dense_resource<{{.*}}> : tensor<3x2xf32>
// CHECK: lathe.linear %arg0, %[[W]], %{{.*}} : (tensor<?x?x2xf32>, tensor<3x2xf32>, tensor<3xf32>) -> tensor<?x?x3xf32>
// CHECK-NOT: lathe.matmul
// CHECK-NOT: lathe.add
func.func @matmul_bias(%x: tensor<?x?x2xf32>) -> tensor<?x?x3xf32> {
  %w = lathe.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %b = lathe.constant dense<[0.5, 0.25, 0.125]> : tensor<3xf32>
  %0 = lathe.matmul %x, %w : (tensor<?x?x2xf32>, tensor<2x3xf32>) -> tensor<?x?x3xf32>
  %1 = lathe.add %b, %0 : (tensor<3xf32>, tensor<?x?x3xf32>) -> tensor<?x?x3xf32>
  return %1 : tensor<?x?x3xf32>
}

{-#
  dialect_resources: {
    builtin: {
      placeholder: "0x04000000"
    }
  }
#-}

// -----

// Gemm(transB=1) imports as matmul(x, transpose(W)): W is already [out, in].
// CHECK-LABEL: func @gemm_transposed
// CHECK: %[[W:.*]] = lathe.constant dense<{{.*}}> : tensor<3x2xf32>
// CHECK: lathe.linear %arg0, %[[W]] : (tensor<?x2xf32>, tensor<3x2xf32>) -> tensor<?x3xf32>
func.func @gemm_transposed(%x: tensor<?x2xf32>) -> tensor<?x3xf32> {
  %w = lathe.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]> : tensor<3x2xf32>
  %t = lathe.transpose %w {perm = array<i64: 1, 0>} : (tensor<3x2xf32>) -> tensor<2x3xf32>
  %0 = lathe.matmul %x, %t : (tensor<?x2xf32>, tensor<2x3xf32>) -> tensor<?x3xf32>
  return %0 : tensor<?x3xf32>
}

// -----

// Hugging Face Conv1D: flatten → addmm → unflatten to x's leading dims.
// CHECK-LABEL: func @conv1d
// CHECK: %[[L:.*]] = lathe.linear %arg0, %{{.*}}, %{{.*}} : (tensor<?x?x2xf32>, tensor<3x2xf32>, tensor<3xf32>) -> tensor<?x?x3xf32>
// CHECK: return %[[L]]
func.func @conv1d(%x: tensor<?x?x2xf32>) -> tensor<?x?x3xf32> {
  %w = lathe.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %b = lathe.constant dense<[0.5, 0.25, 0.125]> : tensor<3xf32>
  %flat = lathe.constant dense<[-1, 2]> : tensor<2xi64>
  %0 = lathe.reshape %x, %flat : (tensor<?x?x2xf32>, tensor<2xi64>) -> tensor<?x2xf32>
  %1 = lathe.matmul %0, %w : (tensor<?x2xf32>, tensor<2x3xf32>) -> tensor<?x3xf32>
  %2 = lathe.add %1, %b : (tensor<?x3xf32>, tensor<3xf32>) -> tensor<?x3xf32>
  %s = lathe.shape_of %x : (tensor<?x?x2xf32>) -> tensor<3xi64>
  %idx = lathe.constant dense<[0, 1]> : tensor<2xi64>
  %lead = lathe.gather %s, %idx {axis = 0 : i64} : (tensor<3xi64>, tensor<2xi64>) -> tensor<2xi64>
  %n = lathe.constant dense<[3]> : tensor<1xi64>
  %t = lathe.concat %lead, %n {axis = 0 : i64} : (tensor<2xi64>, tensor<1xi64>) -> tensor<3xi64>
  %3 = lathe.reshape %2, %t : (tensor<?x3xf32>, tensor<3xi64>) -> tensor<?x?x3xf32>
  return %3 : tensor<?x?x3xf32>
}

// -----

// GPT-2's fused QKV projection split along features: one linear per piece.
// CHECK-LABEL: func @split_qkv
// CHECK-COUNT-3: lathe.linear %arg0, %{{.*}}, %{{.*}} : (tensor<?x2xf32>, tensor<1x2xf32>, tensor<1xf32>) -> tensor<?x1xf32>
// CHECK-NOT: lathe.split
func.func @split_qkv(%x: tensor<?x2xf32>) -> (tensor<?x1xf32>, tensor<?x1xf32>, tensor<?x1xf32>) {
  %w = lathe.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]> : tensor<3x2xf32>
  %b = lathe.constant dense<[0.5, 0.25, 0.125]> : tensor<3xf32>
  %0 = lathe.linear %x, %w, %b : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<3xf32>) -> tensor<?x3xf32>
  %1:3 = lathe.split %0 {axis = 1 : i64, sizes = array<i64: 1, 1, 1>} : (tensor<?x3xf32>) -> (tensor<?x1xf32>, tensor<?x1xf32>, tensor<?x1xf32>)
  return %1#0, %1#1, %1#2 : tensor<?x1xf32>, tensor<?x1xf32>, tensor<?x1xf32>
}

// -----

// Negative case: a matmul of two activations (Q·Kᵀ) is not a linear.
// CHECK-LABEL: func @activations
// CHECK: lathe.matmul
// CHECK-NOT: lathe.linear
func.func @activations(%a: tensor<?x4x8xf32>, %b: tensor<?x8x4xf32>) -> tensor<?x4x4xf32> {
  %0 = lathe.matmul %a, %b : (tensor<?x4x8xf32>, tensor<?x8x4xf32>) -> tensor<?x4x4xf32>
  return %0 : tensor<?x4x4xf32>
}
