// RUN: lathe-opt %s | lathe-opt | FileCheck %s
// RUN: lathe-opt %s --emit-bytecode | lathe-opt | FileCheck %s

// CHECK-LABEL: func @layers
func.func @layers(%x: tensor<?x?x8xf32>, %ids: tensor<?x?xi64>, %q: tensor<?x4x?x2xf32>, %kv: tensor<?x2x?x2xf32>, %mask: tensor<?x1x1x?xf32>) -> (tensor<?x?x4xf32>, tensor<?x?x8xf32>, tensor<?x4x?x2xf32>) {
  %w = lathe.constant dense<1.0> : tensor<4x8xf32>
  %b = lathe.constant dense<0.5> : tensor<4xf32>
  %g = lathe.constant dense<1.0> : tensor<8xf32>
  %table = lathe.constant dense<2.0> : tensor<10x8xf32>
  // CHECK: lathe.linear %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<?x?x4xf32>
  %0 = lathe.linear %x, %w, %b : (tensor<?x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<?x?x4xf32>
  // CHECK: lathe.embedding
  %1 = lathe.embedding %table, %ids : (tensor<10x8xf32>, tensor<?x?xi64>) -> tensor<?x?x8xf32>
  // CHECK: lathe.layer_norm {{.*}} {epsilon = 1.000000e-05 : f64}
  %2 = lathe.layer_norm %1, %g, %g {epsilon = 1.0e-5 : f64, axis = -1 : i64} : (tensor<?x?x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<?x?x8xf32>
  // CHECK: lathe.rms_norm
  %3 = lathe.rms_norm %2, %g {epsilon = 1.0e-6 : f64} : (tensor<?x?x8xf32>, tensor<8xf32>) -> tensor<?x?x8xf32>
  // CHECK: lathe.gelu {{.*}} {approximate = "tanh"}
  %4 = lathe.gelu %3 {approximate = "tanh"} : (tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  // CHECK: lathe.attention {{.*}} {causal = true, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 5.000000e-01 : f64}
  %5 = lathe.attention %q, %kv, %kv, %mask {num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 0.5 : f64, causal = true} : (tensor<?x4x?x2xf32>, tensor<?x2x?x2xf32>, tensor<?x2x?x2xf32>, tensor<?x1x1x?xf32>) -> tensor<?x4x?x2xf32>
  return %0, %4, %5 : tensor<?x?x4xf32>, tensor<?x?x8xf32>, tensor<?x4x?x2xf32>
}

// CHECK-LABEL: func @shapes
func.func @shapes(%x: tensor<?x?x8xf32>) -> (tensor<?x?x2x4xf32>, tensor<?xi64>, tensor<?x8x?xf32>) {
  %shape = lathe.constant dense<[0, 0, 2, 4]> : tensor<4xi64>
  // CHECK: lathe.reshape
  %0 = lathe.reshape %x, %shape : (tensor<?x?x8xf32>, tensor<4xi64>) -> tensor<?x?x2x4xf32>
  // CHECK: lathe.positions {{.*}} {axis = 1 : i64}
  %1 = lathe.positions %x {axis = 1 : i64} : (tensor<?x?x8xf32>) -> tensor<?xi64>
  // CHECK: lathe.transpose {{.*}} {perm = array<i64: 0, 2, 1>}
  %2 = lathe.transpose %x {perm = array<i64: 0, 2, 1>} : (tensor<?x?x8xf32>) -> tensor<?x8x?xf32>
  return %0, %1, %2 : tensor<?x?x2x4xf32>, tensor<?xi64>, tensor<?x8x?xf32>
}

// Weights are dense_resource blobs; they survive the bytecode round trip.
// CHECK-LABEL: func @weights
func.func @weights() -> tensor<2xf32> {
  // CHECK: lathe.constant dense_resource<blob1> : tensor<2xf32>
  %0 = lathe.constant dense_resource<blob1> : tensor<2xf32>
  return %0 : tensor<2xf32>
}

{-#
  dialect_resources: {
    builtin: {
      blob1: "0x040000000000803F00000040"
    }
  }
#-}
