// RUN: lathe-opt %s -split-input-file --lathe-explain-unfused -verify-diagnostics
// The reasons come from the fusion matchers (passes/simplify/Matchers.cpp) that the fuse passes use.

func.func @unfused(%x: tensor<1x2x3x3xf32>, %y: tensor<2x4xf32>) -> (tensor<1x2x3x3xf32>, tensor<2x1xf32>, tensor<2x4xf32>, tensor<2x4xf32>) {
  // expected-remark @below {{softmax not fused into attention: the softmax output is not multiplied by V (probs·V)}}
  %0 = lathe.softmax %x {axis = 3 : i64} : (tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32>
  // expected-remark @below {{reduce_mean not fused into layer_norm: the mean is not subtracted from its own input (x - mean(x))}}
  %1 = lathe.reduce_mean %y {axes = array<i64: 1>} : (tensor<2x4xf32>) -> tensor<2x1xf32>
  // expected-remark @below {{erf not fused into gelu: the erf input is not x/√2}}
  %2 = lathe.erf %y : (tensor<2x4xf32>) -> tensor<2x4xf32>
  // expected-remark @below {{tanh not fused into gelu: the tanh input is not √(2/π)·(…)}}
  %3 = lathe.tanh %y : (tensor<2x4xf32>) -> tensor<2x4xf32>
  return %0, %1, %2, %3 : tensor<1x2x3x3xf32>, tensor<2x1xf32>, tensor<2x4xf32>, tensor<2x4xf32>
}

// -----

// The variance mean of a layer norm with no epsilon explains from the first mean.
func.func @layer_norm_without_epsilon(%x: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %two = lathe.constant dense<2.0> : tensor<f32>
  // expected-remark @below {{reduce_mean not fused into layer_norm: no constant epsilon is added to the variance}}
  %m = lathe.reduce_mean %x {axes = array<i64: 1>} : (tensor<2x4xf32>) -> tensor<2x1xf32>
  %d = lathe.sub %x, %m : (tensor<2x4xf32>, tensor<2x1xf32>) -> tensor<2x4xf32>
  %p = lathe.pow %d, %two : (tensor<2x4xf32>, tensor<f32>) -> tensor<2x4xf32>
  // expected-remark @below {{reduce_mean not fused into layer_norm: no constant epsilon is added to the variance}}
  %v = lathe.reduce_mean %p {axes = array<i64: 1>} : (tensor<2x4xf32>) -> tensor<2x1xf32>
  %s = lathe.sqrt %v : (tensor<2x1xf32>) -> tensor<2x1xf32>
  %n = lathe.div %d, %s : (tensor<2x4xf32>, tensor<2x1xf32>) -> tensor<2x4xf32>
  return %n : tensor<2x4xf32>
}
