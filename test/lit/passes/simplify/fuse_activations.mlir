// RUN: lathe-opt %s -split-input-file --lathe-fuse-activations | FileCheck %s

// GELU, exact: x · (1 + erf(x/√2)) · 0.5 (torch's export order).
// CHECK-LABEL: func @gelu_erf
// CHECK: %[[G:.*]] = lathe.gelu %arg0 : (tensor<?x8xf32>) -> tensor<?x8xf32>
// CHECK: return %[[G]]
func.func @gelu_erf(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %sqrt2 = lathe.constant dense<1.41421354> : tensor<f32>
  %one = lathe.constant dense<1.0> : tensor<f32>
  %half = lathe.constant dense<0.5> : tensor<f32>
  %0 = lathe.div %x, %sqrt2 : (tensor<?x8xf32>, tensor<f32>) -> tensor<?x8xf32>
  %1 = lathe.erf %0 : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %2 = lathe.add %1, %one : (tensor<?x8xf32>, tensor<f32>) -> tensor<?x8xf32>
  %3 = lathe.mul %x, %2 : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %4 = lathe.mul %3, %half : (tensor<?x8xf32>, tensor<f32>) -> tensor<?x8xf32>
  return %4 : tensor<?x8xf32>
}

// -----

// GELU, tanh approximation (GPT-2's gelu_new).
// CHECK-LABEL: func @gelu_tanh
// CHECK: %[[G:.*]] = lathe.gelu %arg0 {approximate = "tanh"}
// CHECK: return %[[G]]
func.func @gelu_tanh(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %half = lathe.constant dense<0.5> : tensor<f32>
  %three = lathe.constant dense<3.0> : tensor<f32>
  %c = lathe.constant dense<0.044715> : tensor<f32>
  %k = lathe.constant dense<0.797884583> : tensor<f32>
  %one = lathe.constant dense<1.0> : tensor<f32>
  %hx = lathe.mul %half, %x : (tensor<f32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %p = lathe.pow %x, %three : (tensor<?x8xf32>, tensor<f32>) -> tensor<?x8xf32>
  %cp = lathe.mul %c, %p : (tensor<f32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %s = lathe.add %x, %cp : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %ks = lathe.mul %k, %s : (tensor<f32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %t = lathe.tanh %ks : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %a = lathe.add %one, %t : (tensor<f32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %y = lathe.mul %hx, %a : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// SiLU: x · sigmoid(x).
// CHECK-LABEL: func @silu
// CHECK: %[[S:.*]] = lathe.silu %arg0
// CHECK: return %[[S]]
func.func @silu(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %0 = lathe.sigmoid %x : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %1 = lathe.mul %x, %0 : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  return %1 : tensor<?x8xf32>
}

// -----

// Negative case: erf of x/2 (not x/√2) is not GELU.
// CHECK-LABEL: func @not_gelu
// CHECK: lathe.erf
// CHECK-NOT: lathe.gelu
func.func @not_gelu(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %two = lathe.constant dense<2.0> : tensor<f32>
  %one = lathe.constant dense<1.0> : tensor<f32>
  %half = lathe.constant dense<0.5> : tensor<f32>
  %0 = lathe.div %x, %two : (tensor<?x8xf32>, tensor<f32>) -> tensor<?x8xf32>
  %1 = lathe.erf %0 : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %2 = lathe.add %1, %one : (tensor<?x8xf32>, tensor<f32>) -> tensor<?x8xf32>
  %3 = lathe.mul %x, %2 : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %4 = lathe.mul %3, %half : (tensor<?x8xf32>, tensor<f32>) -> tensor<?x8xf32>
  return %4 : tensor<?x8xf32>
}
