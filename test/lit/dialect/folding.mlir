// RUN: lathe-opt %s -split-input-file --lathe-fold-constants | FileCheck %s

// Shape arithmetic on constants folds away.
// CHECK-LABEL: func @shape_arith
// CHECK-NEXT: %[[C:.*]] = lathe.constant dense<[2, 12, 64]> : tensor<3xi64>
// CHECK-NEXT: return %[[C]]
func.func @shape_arith() -> tensor<3xi64> {
  %a = lathe.constant dense<[2, 768]> : tensor<2xi64>
  %i = lathe.constant dense<0> : tensor<i64>
  %b = lathe.gather %a, %i {axis = 0 : i64} : (tensor<2xi64>, tensor<i64>) -> tensor<i64>
  %u = lathe.unsqueeze %b {axes = array<i64: 0>} : (tensor<i64>) -> tensor<1xi64>
  %c = lathe.constant dense<[12, 64]> : tensor<2xi64>
  %d = lathe.concat %u, %c {axis = 0 : i64} : (tensor<1xi64>, tensor<2xi64>) -> tensor<3xi64>
  return %d : tensor<3xi64>
}

// -----

// Static shape_of folds; the shape then makes the reshape's result static.
// CHECK-LABEL: func @static_shape
// CHECK: lathe.reshape {{.*}} -> tensor<4x6xf32>
func.func @static_shape(%x: tensor<2x3x4xf32>) -> tensor<?x?xf32> {
  %s = lathe.shape_of %x : (tensor<2x3x4xf32>) -> tensor<3xi64>
  %i = lathe.constant dense<[2]> : tensor<1xi64>
  %d = lathe.gather %s, %i {axis = 0 : i64} : (tensor<3xi64>, tensor<1xi64>) -> tensor<1xi64>
  %m = lathe.constant dense<[-1]> : tensor<1xi64>
  %t = lathe.concat %d, %m {axis = 0 : i64} : (tensor<1xi64>, tensor<1xi64>) -> tensor<2xi64>
  %r = lathe.reshape %x, %t : (tensor<2x3x4xf32>, tensor<2xi64>) -> tensor<?x?xf32>
  return %r : tensor<?x?xf32>
}

// -----

// Float math, comparisons and where on constants (the pieces of mask chains).
// CHECK-LABEL: func @mask_math
// CHECK-NEXT: lathe.constant dense<{{\[}}[0.000000e+00, -1.000000e+04], [0.000000e+00, 0.000000e+00]]> : tensor<2x2xf32>
func.func @mask_math() -> tensor<2x2xf32> {
  %r = lathe.constant dense<[0, 1]> : tensor<2xi64>
  %c = lathe.constant dense<[[0], [1]]> : tensor<2x1xi64>
  %lt = lathe.less_equal %r, %c : (tensor<2xi64>, tensor<2x1xi64>) -> tensor<2x2xi1>
  %z = lathe.constant dense<0.0> : tensor<f32>
  %n = lathe.constant dense<-1.0e4> : tensor<f32>
  %w = lathe.where %lt, %z, %n : (tensor<2x2xi1>, tensor<f32>, tensor<f32>) -> tensor<2x2xf32>
  return %w : tensor<2x2xf32>
}

// -----

// Dead ops go (DCE), live ops on non-constants stay.
// CHECK-LABEL: func @dce
// CHECK-NOT: lathe.exp
// CHECK: lathe.relu
func.func @dce(%x: tensor<4xf32>) -> tensor<4xf32> {
  %dead = lathe.exp %x : (tensor<4xf32>) -> tensor<4xf32>
  %live = lathe.relu %x : (tensor<4xf32>) -> tensor<4xf32>
  return %live : tensor<4xf32>
}

// -----

// Negative case: nothing folds over a function argument.
// CHECK-LABEL: func @no_fold
// CHECK: lathe.add
func.func @no_fold(%x: tensor<4xf32>) -> tensor<4xf32> {
  %c = lathe.constant dense<1.0> : tensor<4xf32>
  %0 = lathe.add %x, %c : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}
