// RUN: lathe-opt %s -split-input-file --lathe-verify-lowerable -verify-diagnostics | FileCheck %s

// A simplified module lowers: nothing to report.
// CHECK-LABEL: func @ok
func.func @ok(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %0 = lathe.relu %x : (tensor<?x4xf32>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

// A weight whose data was elided (read from a text dump) cannot be packaged.
func.func @elided() -> tensor<2xf32> {
  // expected-error @below {{weight 'missing_blob' has no data}}
  %0 = lathe.constant dense_resource<missing_blob> : tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

// Complex numbers have no runtime storage.
// expected-error @below {{graph input 0 has type 'tensor<4xcomplex<f32>>', which the runtime does not store}}
func.func @complex(%x: tensor<4xcomplex<f32>>) -> tensor<4xcomplex<f32>> {
  // expected-error @below {{result type 'tensor<4xcomplex<f32>>' is not one the runtime stores}}
  %0 = lathe.identity %x : (tensor<4xcomplex<f32>>) -> tensor<4xcomplex<f32>>
  return %0 : tensor<4xcomplex<f32>>
}

// -----

// A reshape target read from input data cannot be planned ahead of a run.
func.func @data_dependent_shape(%x: tensor<?xf32>, %shape: tensor<2xi64>) -> tensor<?x?xf32> {
  // expected-error @below {{the shape operand decides the result shape but is computed from input data}}
  %0 = lathe.reshape %x, %shape : (tensor<?xf32>, tensor<2xi64>) -> tensor<?x?xf32>
  return %0 : tensor<?x?xf32>
}

// -----

// Shapes of inputs are fine: only their values are not known ahead.
// CHECK-LABEL: func @shape_of_input
func.func @shape_of_input(%x: tensor<?x4xf32>) -> tensor<?xf32> {
  %s = lathe.shape_of %x : (tensor<?x4xf32>) -> tensor<2xi64>
  %m = lathe.constant dense<[-1]> : tensor<1xi64>
  %0 = lathe.reshape %x, %m : (tensor<?x4xf32>, tensor<1xi64>) -> tensor<?xf32>
  return %0 : tensor<?xf32>
}
