// RUN: lathe-opt %s -split-input-file --lathe-eliminate-noops | FileCheck %s

// CHECK-LABEL: func @noops
// CHECK-NEXT: return %arg0
func.func @noops(%x: tensor<?x?x8xf32>) -> tensor<?x?x8xf32> {
  %0 = lathe.identity %x : (tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  %1 = lathe.cast %0 {to = f32} : (tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  %t = lathe.constant dense<[0, 0, 8]> : tensor<3xi64>
  %2 = lathe.reshape %1, %t : (tensor<?x?x8xf32>, tensor<3xi64>) -> tensor<?x?x8xf32>
  %3 = lathe.transpose %2 {perm = array<i64: 0, 1, 2>} : (tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  %e = lathe.constant dense<[1, 8]> : tensor<2xi64>
  %4 = lathe.expand %3, %e : (tensor<?x?x8xf32>, tensor<2xi64>) -> tensor<?x?x8xf32>
  return %4 : tensor<?x?x8xf32>
}

// -----

// Negative cases: ops that change something stay.
// CHECK-LABEL: func @changes
// CHECK: lathe.cast
// CHECK: lathe.reshape
// CHECK: lathe.transpose
func.func @changes(%x: tensor<?x?x8xf32>) -> tensor<?x4x?x2xf16> {
  %0 = lathe.cast %x {to = f16} : (tensor<?x?x8xf32>) -> tensor<?x?x8xf16>
  %t = lathe.constant dense<[0, 0, 4, 2]> : tensor<4xi64>
  %1 = lathe.reshape %0, %t : (tensor<?x?x8xf16>, tensor<4xi64>) -> tensor<?x?x4x2xf16>
  %2 = lathe.transpose %1 {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x?x4x2xf16>) -> tensor<?x4x?x2xf16>
  return %2 : tensor<?x4x?x2xf16>
}
