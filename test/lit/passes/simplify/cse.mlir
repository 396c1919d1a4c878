// RUN: lathe-opt %s --cse | FileCheck %s
// CSE (MLIR's pass, part of lathe-simplify) merges the duplicate Shape/Gather
// chains exporters emit per layer; lathe ops are pure.

// CHECK-LABEL: func @duplicates
// CHECK-COUNT-1: lathe.shape_of
// CHECK-NOT: lathe.shape_of
func.func @duplicates(%x: tensor<?x8xf32>) -> (tensor<2xi64>, tensor<2xi64>) {
  %0 = lathe.shape_of %x : (tensor<?x8xf32>) -> tensor<2xi64>
  %1 = lathe.shape_of %x : (tensor<?x8xf32>) -> tensor<2xi64>
  return %0, %1 : tensor<2xi64>, tensor<2xi64>
}
