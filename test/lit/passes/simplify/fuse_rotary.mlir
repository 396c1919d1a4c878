// RUN: lathe-opt %s -split-input-file --lathe-fuse-rotary | FileCheck %s

// transformers' apply_rotary_pos_emb: q·cos + rotate_half(q)·sin, cos [1, 1, S, D].
// CHECK-LABEL: func @hf_rotary
// CHECK: %[[R:.*]] = lathe.rotary %arg0, %arg1, %arg2 : (tensor<?x4x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?x8xf32>) -> tensor<?x4x?x8xf32>
// CHECK-NOT: lathe.slice
// CHECK-NOT: lathe.neg
// CHECK: return %[[R]]
func.func @hf_rotary(%x: tensor<?x4x?x8xf32>, %cos: tensor<1x1x?x8xf32>, %sin: tensor<1x1x?x8xf32>) -> tensor<?x4x?x8xf32> {
  %z = lathe.constant dense<[0]> : tensor<1xi64>
  %h = lathe.constant dense<[4]> : tensor<1xi64>
  %e = lathe.constant dense<[9223372036854775807]> : tensor<1xi64>
  %ax = lathe.constant dense<[-1]> : tensor<1xi64>
  %st = lathe.constant dense<[1]> : tensor<1xi64>
  %a = lathe.mul %x, %cos : (tensor<?x4x?x8xf32>, tensor<1x1x?x8xf32>) -> tensor<?x4x?x8xf32>
  %lo = lathe.slice %x, %z, %h, %ax, %st : (tensor<?x4x?x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<?x4x?x4xf32>
  %hi = lathe.slice %x, %h, %e, %ax, %st : (tensor<?x4x?x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<?x4x?x4xf32>
  %n = lathe.neg %hi : (tensor<?x4x?x4xf32>) -> tensor<?x4x?x4xf32>
  %rot = lathe.concat %n, %lo {axis = 3 : i64} : (tensor<?x4x?x4xf32>, tensor<?x4x?x4xf32>) -> tensor<?x4x?x8xf32>
  %b = lathe.mul %sin, %rot : (tensor<1x1x?x8xf32>, tensor<?x4x?x8xf32>) -> tensor<?x4x?x8xf32>
  %y = lathe.add %b, %a : (tensor<?x4x?x8xf32>, tensor<?x4x?x8xf32>) -> tensor<?x4x?x8xf32>
  return %y : tensor<?x4x?x8xf32>
}

// -----

// Negative: the halves are swapped (concat(x_lo, -x_hi) is not rotate_half).
// CHECK-LABEL: func @swapped_halves
// CHECK-NOT: lathe.rotary
// CHECK: lathe.add
func.func @swapped_halves(%x: tensor<2x4x3x8xf32>, %cos: tensor<3x8xf32>, %sin: tensor<3x8xf32>) -> tensor<2x4x3x8xf32> {
  %z = lathe.constant dense<[0]> : tensor<1xi64>
  %h = lathe.constant dense<[4]> : tensor<1xi64>
  %e = lathe.constant dense<[8]> : tensor<1xi64>
  %ax = lathe.constant dense<[3]> : tensor<1xi64>
  %st = lathe.constant dense<[1]> : tensor<1xi64>
  %a = lathe.mul %x, %cos : (tensor<2x4x3x8xf32>, tensor<3x8xf32>) -> tensor<2x4x3x8xf32>
  %lo = lathe.slice %x, %z, %h, %ax, %st : (tensor<2x4x3x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<2x4x3x4xf32>
  %hi = lathe.slice %x, %h, %e, %ax, %st : (tensor<2x4x3x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<2x4x3x4xf32>
  %n = lathe.neg %lo : (tensor<2x4x3x4xf32>) -> tensor<2x4x3x4xf32>
  %rot = lathe.concat %hi, %n {axis = 3 : i64} : (tensor<2x4x3x4xf32>, tensor<2x4x3x4xf32>) -> tensor<2x4x3x8xf32>
  %b = lathe.mul %rot, %sin : (tensor<2x4x3x8xf32>, tensor<3x8xf32>) -> tensor<2x4x3x8xf32>
  %y = lathe.add %a, %b : (tensor<2x4x3x8xf32>, tensor<2x4x3x8xf32>) -> tensor<2x4x3x8xf32>
  return %y : tensor<2x4x3x8xf32>
}

// -----

// Negative: cos [4, 3, 8] would grow x [1, 3, 8] (a broadcast, not a rotary).
// CHECK-LABEL: func @growing_table
// CHECK-NOT: lathe.rotary
func.func @growing_table(%x: tensor<1x3x8xf32>, %cos: tensor<4x3x8xf32>, %sin: tensor<4x3x8xf32>) -> tensor<4x3x8xf32> {
  %z = lathe.constant dense<[0]> : tensor<1xi64>
  %h = lathe.constant dense<[4]> : tensor<1xi64>
  %e = lathe.constant dense<[8]> : tensor<1xi64>
  %ax = lathe.constant dense<[2]> : tensor<1xi64>
  %st = lathe.constant dense<[1]> : tensor<1xi64>
  %a = lathe.mul %x, %cos : (tensor<1x3x8xf32>, tensor<4x3x8xf32>) -> tensor<4x3x8xf32>
  %lo = lathe.slice %x, %z, %h, %ax, %st : (tensor<1x3x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1x3x4xf32>
  %hi = lathe.slice %x, %h, %e, %ax, %st : (tensor<1x3x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1x3x4xf32>
  %n = lathe.neg %hi : (tensor<1x3x4xf32>) -> tensor<1x3x4xf32>
  %rot = lathe.concat %n, %lo {axis = 2 : i64} : (tensor<1x3x4xf32>, tensor<1x3x4xf32>) -> tensor<1x3x8xf32>
  %b = lathe.mul %rot, %sin : (tensor<1x3x8xf32>, tensor<4x3x8xf32>) -> tensor<4x3x8xf32>
  %y = lathe.add %a, %b : (tensor<4x3x8xf32>, tensor<4x3x8xf32>) -> tensor<4x3x8xf32>
  return %y : tensor<4x3x8xf32>
}
