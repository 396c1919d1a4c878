// RUN: lathe-opt %s -split-input-file --lathe-fold-shapes | FileCheck %s

// Shape → Gather → Unsqueeze → Concat → Reshape over a dynamic [batch, seq]
// becomes a static target that copies batch and seq (0).
// CHECK-LABEL: func @split_heads
// CHECK: %[[T:.*]] = lathe.constant dense<[0, 0, 4, 16]> : tensor<4xi64>
// CHECK: lathe.reshape %arg0, %[[T]] : (tensor<?x?x64xf32>, tensor<4xi64>) -> tensor<?x?x4x16xf32>
// CHECK-NOT: lathe.shape_of
func.func @split_heads(%x: tensor<?x?x64xf32>) -> tensor<?x?x?x?xf32> {
  %s = lathe.shape_of %x : (tensor<?x?x64xf32>) -> tensor<3xi64>
  %i0 = lathe.constant dense<0> : tensor<i64>
  %i1 = lathe.constant dense<1> : tensor<i64>
  %b = lathe.gather %s, %i0 {axis = 0 : i64} : (tensor<3xi64>, tensor<i64>) -> tensor<i64>
  %q = lathe.gather %s, %i1 {axis = 0 : i64} : (tensor<3xi64>, tensor<i64>) -> tensor<i64>
  %bu = lathe.unsqueeze %b {axes = array<i64: 0>} : (tensor<i64>) -> tensor<1xi64>
  %qu = lathe.unsqueeze %q {axes = array<i64: 0>} : (tensor<i64>) -> tensor<1xi64>
  %h = lathe.constant dense<[4, 16]> : tensor<2xi64>
  %t = lathe.concat %bu, %qu, %h {axis = 0 : i64} : (tensor<1xi64>, tensor<1xi64>, tensor<2xi64>) -> tensor<4xi64>
  %r = lathe.reshape %x, %t : (tensor<?x?x64xf32>, tensor<4xi64>) -> tensor<?x?x?x?xf32>
  return %r : tensor<?x?x?x?xf32>
}

// -----

// Dims of two inputs that share an ONNX dim_param name are the same size.
// CHECK-LABEL: func @named_dims
// CHECK: lathe.constant dense<[0, -1]>
func.func @named_dims(%ids: tensor<?x?xi64> {lathe.dims = ["batch", "sequence"]}, %mask: tensor<?x?xi64> {lathe.dims = ["batch", "sequence"]}) -> tensor<?x?xi64> {
  %s = lathe.shape_of %ids : (tensor<?x?xi64>) -> tensor<2xi64>
  %i0 = lathe.constant dense<[0]> : tensor<1xi64>
  %b = lathe.gather %s, %i0 {axis = 0 : i64} : (tensor<2xi64>, tensor<1xi64>) -> tensor<1xi64>
  %m = lathe.constant dense<[-1]> : tensor<1xi64>
  %t = lathe.concat %b, %m {axis = 0 : i64} : (tensor<1xi64>, tensor<1xi64>) -> tensor<2xi64>
  %r = lathe.reshape %mask, %t : (tensor<?x?xi64>, tensor<2xi64>) -> tensor<?x?xi64>
  return %r : tensor<?x?xi64>
}

// -----

// Range(0, seq, 1) is the positions op.
// CHECK-LABEL: func @range_positions
// CHECK: %[[P:.*]] = lathe.positions %arg0 {axis = 1 : i64} : (tensor<?x?xi64>) -> tensor<?xi64>
// CHECK: return %[[P]]
func.func @range_positions(%ids: tensor<?x?xi64>) -> tensor<?xi64> {
  %s = lathe.shape_of %ids : (tensor<?x?xi64>) -> tensor<2xi64>
  %i1 = lathe.constant dense<1> : tensor<i64>
  %n = lathe.gather %s, %i1 {axis = 0 : i64} : (tensor<2xi64>, tensor<i64>) -> tensor<i64>
  %zero = lathe.constant dense<0> : tensor<i64>
  %one = lathe.constant dense<1> : tensor<i64>
  %r = lathe.range %zero, %n, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  return %r : tensor<?xi64>
}

// -----

// A position_ids buffer sliced by the sequence length is positions itself.
// CHECK-LABEL: func @position_buffer
// CHECK: %[[P:.*]] = lathe.positions %arg0 {axis = 1 : i64}
// CHECK: lathe.unsqueeze %[[P]] {axes = array<i64: 0>} : (tensor<?xi64>) -> tensor<1x?xi64>
// CHECK-NOT: lathe.slice
func.func @position_buffer(%ids: tensor<?x?xi64>) -> tensor<1x?xi64> {
  %buf = lathe.constant dense<[[0, 1, 2, 3, 4, 5, 6, 7]]> : tensor<1x8xi64>
  %s = lathe.shape_of %ids : (tensor<?x?xi64>) -> tensor<2xi64>
  %i1 = lathe.constant dense<[1]> : tensor<1xi64>
  %n = lathe.gather %s, %i1 {axis = 0 : i64} : (tensor<2xi64>, tensor<1xi64>) -> tensor<1xi64>
  %z = lathe.constant dense<[0]> : tensor<1xi64>
  %ax = lathe.constant dense<[1]> : tensor<1xi64>
  %st = lathe.constant dense<[1]> : tensor<1xi64>
  %r = lathe.slice %buf, %z, %n, %ax, %st : (tensor<1x8xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1x?xi64>
  return %r : tensor<1x?xi64>
}

// -----

// A rotary cos cache sliced by the sequence length (older Llama exports)
// becomes a lookup of rows 0..S-1.
// CHECK-LABEL: func @cos_cache
// CHECK: %[[P:.*]] = lathe.positions %arg0 {axis = 1 : i64}
// CHECK: lathe.embedding %{{.*}}, %[[P]] : (tensor<8x4xf32>, tensor<?xi64>) -> tensor<?x4xf32>
func.func @cos_cache(%ids: tensor<?x?xi64>) -> tensor<?x4xf32> {
  %cache = lathe.constant dense<0.5> : tensor<8x4xf32>
  %s = lathe.shape_of %ids : (tensor<?x?xi64>) -> tensor<2xi64>
  %i1 = lathe.constant dense<[1]> : tensor<1xi64>
  %n = lathe.gather %s, %i1 {axis = 0 : i64} : (tensor<2xi64>, tensor<1xi64>) -> tensor<1xi64>
  %z = lathe.constant dense<[0]> : tensor<1xi64>
  %st = lathe.constant dense<[1]> : tensor<1xi64>
  %r = lathe.slice %cache, %z, %n, %z, %st : (tensor<8x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<?x4xf32>
  return %r : tensor<?x4xf32>
}

// -----

// Negative case: a target built from another tensor's two unrelated dynamic
// dims cannot be made static; the reshape keeps its computed target.
// CHECK-LABEL: func @unknown_dims
// CHECK: lathe.shape_of %arg1
// CHECK: lathe.reshape %arg0, %{{.*}} : (tensor<?xf32>, tensor<2xi64>)
func.func @unknown_dims(%x: tensor<?xf32>, %y: tensor<?x?xf32>) -> tensor<?x?xf32> {
  %s = lathe.shape_of %y : (tensor<?x?xf32>) -> tensor<2xi64>
  %r = lathe.reshape %x, %s : (tensor<?xf32>, tensor<2xi64>) -> tensor<?x?xf32>
  return %r : tensor<?x?xf32>
}
