// RUN: lathe-opt %s -split-input-file -verify-diagnostics

func.func @pattern(%x: tensor<?x32xf32>, %v: tensor<4x16xf32>, %i: tensor<4x4xui8>) -> tensor<?x4xf32> {
  // expected-error @+1 {{pattern must be 2:4, 4:8 or unstructured, got '1:4'}}
  %0 = lathe.sparse_linear %x, %v, %i {pattern = "1:4", values_format = "f32", in_features = 32 : i64, group_size = 0 : i64} : (tensor<?x32xf32>, tensor<4x16xf32>, tensor<4x4xui8>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @width(%x: tensor<?x48xf32>, %v: tensor<4x24xf32>, %i: tensor<4x6xui8>) -> tensor<?x4xf32> {
  // expected-error @+1 {{in_features must be a positive multiple of 32, got 48}}
  %0 = lathe.sparse_linear %x, %v, %i {pattern = "2:4", values_format = "f32", in_features = 48 : i64, group_size = 0 : i64} : (tensor<?x48xf32>, tensor<4x24xf32>, tensor<4x6xui8>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @values(%x: tensor<?x32xf32>, %v: tensor<4x32xf32>, %i: tensor<4x4xui8>) -> tensor<?x4xf32> {
  // expected-error @+1 {{values must be [4, 16] for 32 input features}}
  %0 = lathe.sparse_linear %x, %v, %i {pattern = "2:4", values_format = "f32", in_features = 32 : i64, group_size = 0 : i64} : (tensor<?x32xf32>, tensor<4x32xf32>, tensor<4x4xui8>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @indices(%x: tensor<?x32xf32>, %v: tensor<4x16xf32>, %i: tensor<4x4xui8>) -> tensor<?x4xf32> {
  // expected-error @+1 {{indices must be ui8 [4, 8]}}
  %0 = lathe.sparse_linear %x, %v, %i {pattern = "4:8", values_format = "f32", in_features = 32 : i64, group_size = 0 : i64} : (tensor<?x32xf32>, tensor<4x16xf32>, tensor<4x4xui8>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @int4_scales(%x: tensor<?x64xf32>, %v: tensor<4x16xui8>, %i: tensor<4x8xui8>) -> tensor<?x4xf32> {
  // expected-error @+1 {{int4 values need f16 scales [4, 2]}}
  %0 = lathe.sparse_linear %x, %v, %i {pattern = "2:4", values_format = "int4", in_features = 64 : i64, group_size = 32 : i64} : (tensor<?x64xf32>, tensor<4x16xui8>, tensor<4x8xui8>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @input(%x: tensor<?x64xf32>, %v: tensor<4x16xf32>, %i: tensor<4x4xui8>) -> tensor<?x4xf32> {
  // expected-error @+1 {{input has 64 features but the layer expects 32}}
  %0 = lathe.sparse_linear %x, %v, %i {pattern = "2:4", values_format = "f32", in_features = 32 : i64, group_size = 0 : i64} : (tensor<?x64xf32>, tensor<4x16xf32>, tensor<4x4xui8>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}
