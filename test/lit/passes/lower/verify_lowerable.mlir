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
