// RUN: lathe-opt %s -split-input-file --lathe-fuse-attention | FileCheck %s

// BERT: softmax(Q·Kᵀ / √d + padding mask) · V with Kᵀ from a transpose.
// CHECK-LABEL: func @bert
// CHECK: %[[A:.*]] = lathe.attention %arg0, %arg1, %arg2, %arg3 {causal = false, num_heads = 4 : i64, num_kv_heads = 4 : i64, scale = 2.500000e-01 : f64}
// CHECK: return %[[A]]
func.func @bert(%q: tensor<?x4x?x16xf32>, %k: tensor<?x4x?x16xf32>, %v: tensor<?x4x?x16xf32>, %mask: tensor<?x1x1x?xf32>) -> tensor<?x4x?x16xf32> {
  %kt = lathe.transpose %k {perm = array<i64: 0, 1, 3, 2>} : (tensor<?x4x?x16xf32>) -> tensor<?x4x16x?xf32>
  %s = lathe.matmul %q, %kt : (tensor<?x4x?x16xf32>, tensor<?x4x16x?xf32>) -> tensor<?x4x?x?xf32>
  %c = lathe.constant dense<4.0> : tensor<f32>
  %d = lathe.div %s, %c : (tensor<?x4x?x?xf32>, tensor<f32>) -> tensor<?x4x?x?xf32>
  %m = lathe.add %d, %mask : (tensor<?x4x?x?xf32>, tensor<?x1x1x?xf32>) -> tensor<?x4x?x?xf32>
  %p = lathe.softmax %m {axis = 3 : i64} : (tensor<?x4x?x?xf32>) -> tensor<?x4x?x?xf32>
  %o = lathe.matmul %p, %v : (tensor<?x4x?x?xf32>, tensor<?x4x?x16xf32>) -> tensor<?x4x?x16xf32>
  return %o : tensor<?x4x?x16xf32>
}

// -----

// GPT-2: the causal mask is a slice of a lower-triangular bias buffer in a where.
// CHECK-LABEL: func @gpt2_causal
// CHECK: lathe.attention %arg0, %arg1, %arg2 {causal = true, num_heads = 2 : i64, num_kv_heads = 2 : i64, scale = 1.000000e+00 : f64}
func.func @gpt2_causal(%q: tensor<1x2x3x4xf32>, %k: tensor<1x2x3x4xf32>, %v: tensor<1x2x3x4xf32>) -> tensor<1x2x3x4xf32> {
  %bias = lathe.constant dense<[[[[true, false, false, false], [true, true, false, false], [true, true, true, false], [true, true, true, true]]]]> : tensor<1x1x4x4xi1>
  %z = lathe.constant dense<[0, 0]> : tensor<2xi64>
  %e = lathe.constant dense<[3, 3]> : tensor<2xi64>
  %ax = lathe.constant dense<[2, 3]> : tensor<2xi64>
  %st = lathe.constant dense<[1, 1]> : tensor<2xi64>
  %cm = lathe.slice %bias, %z, %e, %ax, %st : (tensor<1x1x4x4xi1>, tensor<2xi64>, tensor<2xi64>, tensor<2xi64>, tensor<2xi64>) -> tensor<1x1x3x3xi1>
  %kt = lathe.transpose %k {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x3x4xf32>) -> tensor<1x2x4x3xf32>
  %s = lathe.matmul %q, %kt : (tensor<1x2x3x4xf32>, tensor<1x2x4x3xf32>) -> tensor<1x2x3x3xf32>
  %min = lathe.constant dense<-3.40282347E+38> : tensor<f32>
  %w = lathe.where %cm, %s, %min : (tensor<1x1x3x3xi1>, tensor<1x2x3x3xf32>, tensor<f32>) -> tensor<1x2x3x3xf32>
  %p = lathe.softmax %w {axis = 3 : i64} : (tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32>
  %o = lathe.matmul %p, %v : (tensor<1x2x3x3xf32>, tensor<1x2x3x4xf32>) -> tensor<1x2x3x4xf32>
  return %o : tensor<1x2x3x4xf32>
}

// -----

// Llama: repeat_kv (unsqueeze → expand → reshape) becomes num_kv_heads.
// CHECK-LABEL: func @gqa
// CHECK: lathe.attention %arg0, %arg1, %arg2 {causal = false, num_heads = 4 : i64, num_kv_heads = 2 : i64
func.func @gqa(%q: tensor<1x4x3x8xf32>, %k: tensor<1x2x3x8xf32>, %v: tensor<1x2x3x8xf32>) -> tensor<1x4x3x8xf32> {
  %ek = lathe.constant dense<[1, 2, 2, 3, 8]> : tensor<5xi64>
  %rk = lathe.constant dense<[1, 4, 3, 8]> : tensor<4xi64>
  %ku = lathe.unsqueeze %k {axes = array<i64: 2>} : (tensor<1x2x3x8xf32>) -> tensor<1x2x1x3x8xf32>
  %kx = lathe.expand %ku, %ek : (tensor<1x2x1x3x8xf32>, tensor<5xi64>) -> tensor<1x2x2x3x8xf32>
  %kr = lathe.reshape %kx, %rk : (tensor<1x2x2x3x8xf32>, tensor<4xi64>) -> tensor<1x4x3x8xf32>
  %vu = lathe.unsqueeze %v {axes = array<i64: 2>} : (tensor<1x2x3x8xf32>) -> tensor<1x2x1x3x8xf32>
  %vx = lathe.expand %vu, %ek : (tensor<1x2x1x3x8xf32>, tensor<5xi64>) -> tensor<1x2x2x3x8xf32>
  %vr = lathe.reshape %vx, %rk : (tensor<1x2x2x3x8xf32>, tensor<4xi64>) -> tensor<1x4x3x8xf32>
  %kt = lathe.transpose %kr {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x4x3x8xf32>) -> tensor<1x4x8x3xf32>
  %s = lathe.matmul %q, %kt : (tensor<1x4x3x8xf32>, tensor<1x4x8x3xf32>) -> tensor<1x4x3x3xf32>
  %c = lathe.constant dense<0.353553385> : tensor<f32>
  %d = lathe.mul %s, %c : (tensor<1x4x3x3xf32>, tensor<f32>) -> tensor<1x4x3x3xf32>
  %p = lathe.softmax %d {axis = 3 : i64} : (tensor<1x4x3x3xf32>) -> tensor<1x4x3x3xf32>
  %o = lathe.matmul %p, %vr : (tensor<1x4x3x3xf32>, tensor<1x4x3x8xf32>) -> tensor<1x4x3x8xf32>
  return %o : tensor<1x4x3x8xf32>
}

// -----

// An additive mask built from shapes (Trilu over a filled S×S matrix) plus
// the padding mask is recognised by evaluating it: causal = true and the
// mask becomes [B,1,1,S] built from the attention mask.
// CHECK-LABEL: func @computed_causal
// CHECK: %[[U:.*]] = lathe.unsqueeze %arg3 {axes = array<i64: 1, 2>}
// CHECK: lathe.attention %arg0, %arg1, %arg2, %{{.*}} {causal = true
// CHECK-SAME: tensor<?x1x1x?xf32>
func.func @computed_causal(%q: tensor<?x2x?x4xf32> {lathe.dims = ["batch", "", "sequence", ""]},
                           %k: tensor<?x2x?x4xf32> {lathe.dims = ["batch", "", "sequence", ""]},
                           %v: tensor<?x2x?x4xf32> {lathe.dims = ["batch", "", "sequence", ""]},
                           %am: tensor<?x?xi64> {lathe.dims = ["batch", "sequence"]}) -> tensor<?x2x?x4xf32> {
  %shape = lathe.shape_of %am : (tensor<?x?xi64>) -> tensor<2xi64>
  %i1 = lathe.constant dense<[1]> : tensor<1xi64>
  %n = lathe.gather %shape, %i1 {axis = 0 : i64} : (tensor<2xi64>, tensor<1xi64>) -> tensor<1xi64>
  %nn = lathe.concat %n, %n {axis = 0 : i64} : (tensor<1xi64>, tensor<1xi64>) -> tensor<2xi64>
  %full = lathe.fill %nn {value = dense<-3.40282347E+38> : tensor<1xf32>} : (tensor<2xi64>) -> tensor<?x?xf32>
  %one = lathe.constant dense<1> : tensor<i64>
  %causal = lathe.trilu %full, %one {upper = true} : (tensor<?x?xf32>, tensor<i64>) -> tensor<?x?xf32>
  %c4 = lathe.unsqueeze %causal {axes = array<i64: 0, 1>} : (tensor<?x?xf32>) -> tensor<1x1x?x?xf32>
  %amu = lathe.unsqueeze %am {axes = array<i64: 1, 2>} : (tensor<?x?xi64>) -> tensor<?x1x1x?xi64>
  %amf = lathe.cast %amu {to = f32} : (tensor<?x1x1x?xi64>) -> tensor<?x1x1x?xf32>
  %onef = lathe.constant dense<1.0> : tensor<f32>
  %inv = lathe.sub %onef, %amf : (tensor<f32>, tensor<?x1x1x?xf32>) -> tensor<?x1x1x?xf32>
  %minf = lathe.constant dense<-3.40282347E+38> : tensor<f32>
  %pad = lathe.mul %inv, %minf : (tensor<?x1x1x?xf32>, tensor<f32>) -> tensor<?x1x1x?xf32>
  %mask = lathe.min %c4, %pad : (tensor<1x1x?x?xf32>, tensor<?x1x1x?xf32>) -> tensor<?x1x?x?xf32>
  %kt = lathe.transpose %k {perm = array<i64: 0, 1, 3, 2>} : (tensor<?x2x?x4xf32>) -> tensor<?x2x4x?xf32>
  %s = lathe.matmul %q, %kt : (tensor<?x2x?x4xf32>, tensor<?x2x4x?xf32>) -> tensor<?x2x?x?xf32>
  %m = lathe.add %s, %mask : (tensor<?x2x?x?xf32>, tensor<?x1x?x?xf32>) -> tensor<?x2x?x?xf32>
  %p = lathe.softmax %m {axis = 3 : i64} : (tensor<?x2x?x?xf32>) -> tensor<?x2x?x?xf32>
  %o = lathe.matmul %p, %v : (tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32>) -> tensor<?x2x?x4xf32>
  return %o : tensor<?x2x?x4xf32>
}

// -----

// Negative case: softmax over the query axis is not attention.
// CHECK-LABEL: func @wrong_axis
// CHECK: lathe.softmax
// CHECK-NOT: lathe.attention
func.func @wrong_axis(%q: tensor<1x2x3x4xf32>, %k: tensor<1x2x3x4xf32>, %v: tensor<1x2x3x4xf32>) -> tensor<1x2x3x4xf32> {
  %kt = lathe.transpose %k {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x3x4xf32>) -> tensor<1x2x4x3xf32>
  %s = lathe.matmul %q, %kt : (tensor<1x2x3x4xf32>, tensor<1x2x4x3xf32>) -> tensor<1x2x3x3xf32>
  %p = lathe.softmax %s {axis = 2 : i64} : (tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32>
  %o = lathe.matmul %p, %v : (tensor<1x2x3x3xf32>, tensor<1x2x3x4xf32>) -> tensor<1x2x3x4xf32>
  return %o : tensor<1x2x3x4xf32>
}
