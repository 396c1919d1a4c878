// RUN: lathe-opt %s -split-input-file --lathe-fold-chains | FileCheck %s

// CHECK-LABEL: func @transposes
// CHECK: lathe.transpose %arg0 {perm = array<i64: 0, 2, 1, 3>}
// CHECK-NOT: lathe.transpose
func.func @transposes(%x: tensor<2x3x4x5xf32>) -> tensor<2x4x3x5xf32> {
  %0 = lathe.transpose %x {perm = array<i64: 0, 2, 3, 1>} : (tensor<2x3x4x5xf32>) -> tensor<2x4x5x3xf32>
  %1 = lathe.transpose %0 {perm = array<i64: 0, 1, 3, 2>} : (tensor<2x4x5x3xf32>) -> tensor<2x4x3x5xf32>
  return %1 : tensor<2x4x3x5xf32>
}

// -----

// CHECK-LABEL: func @reshapes
// CHECK: lathe.reshape %arg0, %{{.*}} : (tensor<?x?x8xf32>, tensor<2xi64>) -> tensor<?x8xf32>
// CHECK-NOT: lathe.reshape
func.func @reshapes(%x: tensor<?x?x8xf32>) -> tensor<?x8xf32> {
  %a = lathe.constant dense<[0, 0, 2, 4]> : tensor<4xi64>
  %0 = lathe.reshape %x, %a : (tensor<?x?x8xf32>, tensor<4xi64>) -> tensor<?x?x2x4xf32>
  %b = lathe.constant dense<[-1, 8]> : tensor<2xi64>
  %1 = lathe.reshape %0, %b : (tensor<?x?x2x4xf32>, tensor<2xi64>) -> tensor<?x8xf32>
  return %1 : tensor<?x8xf32>
}

// -----

// Negative case: the outer target copies dim 1 of the intermediate shape,
// which the source does not have at that position.
// CHECK-LABEL: func @copy_blocks
// CHECK: lathe.reshape %arg0
// CHECK: lathe.reshape %{{[0-9]+}}
func.func @copy_blocks(%x: tensor<?x8xf32>) -> tensor<?x4x2xf32> {
  %a = lathe.constant dense<[-1, 4, 2]> : tensor<3xi64>
  %0 = lathe.reshape %x, %a : (tensor<?x8xf32>, tensor<3xi64>) -> tensor<?x4x2xf32>
  %b = lathe.constant dense<[0, 0, 2]> : tensor<3xi64>
  %1 = lathe.reshape %0, %b : (tensor<?x4x2xf32>, tensor<3xi64>) -> tensor<?x4x2xf32>
  return %1 : tensor<?x4x2xf32>
}

// -----

// cos_cached[:seq_len][position_ids]: the lookup goes straight to the table.
// CHECK-LABEL: func @lookup_through_positions
// CHECK: %[[T:.*]] = lathe.constant
// CHECK: %[[P:.*]] = lathe.positions
// CHECK: %[[I:.*]] = lathe.unsqueeze %[[P]]
// CHECK: lathe.embedding %[[T]], %[[I]] : (tensor<128x16xf32>, tensor<1x?xi64>) -> tensor<1x?x16xf32>
// CHECK-NOT: lathe.gather
func.func @lookup_through_positions(%ids: tensor<?x?xi64>) -> tensor<1x?x16xf32> {
  %t = lathe.constant dense<0.5> : tensor<128x16xf32>
  %p = lathe.positions %ids {axis = 1 : i64} : (tensor<?x?xi64>) -> tensor<?xi64>
  %rows = lathe.embedding %t, %p : (tensor<128x16xf32>, tensor<?xi64>) -> tensor<?x16xf32>
  %i = lathe.unsqueeze %p {axes = array<i64: 0>} : (tensor<?xi64>) -> tensor<1x?xi64>
  %g = lathe.gather %rows, %i {axis = 0 : i64} : (tensor<?x16xf32>, tensor<1x?xi64>) -> tensor<1x?x16xf32>
  return %g : tensor<1x?x16xf32>
}

// -----

// Negative case: rows looked up by token ids, not positions, stay as they are.
// CHECK-LABEL: func @lookup_by_ids
// CHECK: lathe.gather
func.func @lookup_by_ids(%ids: tensor<?xi64>, %i: tensor<1x?xi64>) -> tensor<1x?x16xf32> {
  %t = lathe.constant dense<0.5> : tensor<128x16xf32>
  %rows = lathe.embedding %t, %ids : (tensor<128x16xf32>, tensor<?xi64>) -> tensor<?x16xf32>
  %g = lathe.gather %rows, %i {axis = 0 : i64} : (tensor<?x16xf32>, tensor<1x?xi64>) -> tensor<1x?x16xf32>
  return %g : tensor<1x?x16xf32>
}
