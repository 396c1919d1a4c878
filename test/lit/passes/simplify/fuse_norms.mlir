// RUN: lathe-opt %s -split-input-file --lathe-fuse-norms | FileCheck %s

// Decomposed LayerNorm (torch opset 14 export).
// CHECK-LABEL: func @layer_norm
// CHECK: %[[N:.*]] = lathe.layer_norm %arg0, %{{.*}}, %{{.*}} {epsilon = 9.99999974{{.*}}E-6 : f64}
// CHECK: return %[[N]]
// CHECK-NOT: lathe.reduce_mean
func.func @layer_norm(%x: tensor<?x?x4xf32>) -> tensor<?x?x4xf32> {
  %g = lathe.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %b = lathe.constant dense<[0.1, 0.2, 0.3, 0.4]> : tensor<4xf32>
  %two = lathe.constant dense<2.0> : tensor<f32>
  %eps = lathe.constant dense<1.0e-5> : tensor<f32>
  %m = lathe.reduce_mean %x {axes = array<i64: -1>} : (tensor<?x?x4xf32>) -> tensor<?x?x1xf32>
  %d = lathe.sub %x, %m : (tensor<?x?x4xf32>, tensor<?x?x1xf32>) -> tensor<?x?x4xf32>
  %p = lathe.pow %d, %two : (tensor<?x?x4xf32>, tensor<f32>) -> tensor<?x?x4xf32>
  %v = lathe.reduce_mean %p {axes = array<i64: -1>} : (tensor<?x?x4xf32>) -> tensor<?x?x1xf32>
  %ve = lathe.add %v, %eps : (tensor<?x?x1xf32>, tensor<f32>) -> tensor<?x?x1xf32>
  %s = lathe.sqrt %ve : (tensor<?x?x1xf32>) -> tensor<?x?x1xf32>
  %n = lathe.div %d, %s : (tensor<?x?x4xf32>, tensor<?x?x1xf32>) -> tensor<?x?x4xf32>
  %y = lathe.mul %n, %g : (tensor<?x?x4xf32>, tensor<4xf32>) -> tensor<?x?x4xf32>
  %z = lathe.add %y, %b : (tensor<?x?x4xf32>, tensor<4xf32>) -> tensor<?x?x4xf32>
  return %z : tensor<?x?x4xf32>
}

// -----

// Llama RMSNorm: x · 1/sqrt(mean(x²) + eps) · γ.
// CHECK-LABEL: func @rms_norm
// CHECK: %[[N:.*]] = lathe.rms_norm %arg0, %{{.*}} {epsilon = 9.99999997{{.*}}E-7 : f64}
// CHECK: return %[[N]]
func.func @rms_norm(%x: tensor<?x?x4xf32>) -> tensor<?x?x4xf32> {
  %g = lathe.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %two = lathe.constant dense<2.0> : tensor<f32>
  %eps = lathe.constant dense<1.0e-6> : tensor<f32>
  %p = lathe.pow %x, %two : (tensor<?x?x4xf32>, tensor<f32>) -> tensor<?x?x4xf32>
  %v = lathe.reduce_mean %p {axes = array<i64: -1>} : (tensor<?x?x4xf32>) -> tensor<?x?x1xf32>
  %ve = lathe.add %v, %eps : (tensor<?x?x1xf32>, tensor<f32>) -> tensor<?x?x1xf32>
  %s = lathe.sqrt %ve : (tensor<?x?x1xf32>) -> tensor<?x?x1xf32>
  %r = lathe.reciprocal %s : (tensor<?x?x1xf32>) -> tensor<?x?x1xf32>
  %n = lathe.mul %x, %r : (tensor<?x?x4xf32>, tensor<?x?x1xf32>) -> tensor<?x?x4xf32>
  %y = lathe.mul %g, %n : (tensor<4xf32>, tensor<?x?x4xf32>) -> tensor<?x?x4xf32>
  return %y : tensor<?x?x4xf32>
}

// -----

// Negative case: no epsilon is added, so this is not a norm.
// CHECK-LABEL: func @no_epsilon
// CHECK: lathe.reduce_mean
// CHECK-NOT: lathe.layer_norm
// CHECK-NOT: lathe.rms_norm
func.func @no_epsilon(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %two = lathe.constant dense<2.0> : tensor<f32>
  %m = lathe.reduce_mean %x {axes = array<i64: -1>} : (tensor<?x4xf32>) -> tensor<?x1xf32>
  %d = lathe.sub %x, %m : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
  %p = lathe.pow %d, %two : (tensor<?x4xf32>, tensor<f32>) -> tensor<?x4xf32>
  %v = lathe.reduce_mean %p {axes = array<i64: -1>} : (tensor<?x4xf32>) -> tensor<?x1xf32>
  %s = lathe.sqrt %v : (tensor<?x1xf32>) -> tensor<?x1xf32>
  %n = lathe.div %d, %s : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
  return %n : tensor<?x4xf32>
}
