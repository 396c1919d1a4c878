// RUN: lathe-opt %s -split-input-file -verify-diagnostics

func.func @linear_feature_mismatch(%x: tensor<?x8xf32>, %w: tensor<4x6xf32>) -> tensor<?x4xf32> {
  // expected-error @+1 {{input has 8 features but the weight expects 6}}
  %0 = lathe.linear %x, %w : (tensor<?x8xf32>, tensor<4x6xf32>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @linear_weight_rank(%x: tensor<?x8xf32>, %w: tensor<8xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{weight must be 2-D [out_features, in_features]}}
  %0 = lathe.linear %x, %w : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

func.func @attention_heads(%q: tensor<1x6x4x2xf32>, %k: tensor<1x4x4x2xf32>) -> tensor<1x6x4x2xf32> {
  // expected-error @+1 {{num_heads (6) must be a positive multiple of num_kv_heads (4)}}
  %0 = lathe.attention %q, %k, %k {num_heads = 6 : i64, num_kv_heads = 4 : i64, scale = 1.0 : f64, causal = false} : (tensor<1x6x4x2xf32>, tensor<1x4x4x2xf32>, tensor<1x4x4x2xf32>) -> tensor<1x6x4x2xf32>
  return %0 : tensor<1x6x4x2xf32>
}

// -----

func.func @broadcast(%a: tensor<3x4xf32>, %b: tensor<5xf32>) -> tensor<3x4xf32> {
  // expected-error @+1 {{operand shapes do not broadcast}}
  %0 = lathe.add %a, %b : (tensor<3x4xf32>, tensor<5xf32>) -> tensor<3x4xf32>
  return %0 : tensor<3x4xf32>
}

// -----

func.func @gelu_kind(%a: tensor<3xf32>) -> tensor<3xf32> {
  // expected-error @+1 {{approximate must be "none" or "tanh", got "fast"}}
  %0 = lathe.gelu %a {approximate = "fast"} : (tensor<3xf32>) -> tensor<3xf32>
  return %0 : tensor<3xf32>
}

// -----

func.func @result_type(%a: tensor<3x4xf32>) -> tensor<3x5xf32> {
  // expected-error @+2 {{inferred type(s) 'tensor<3x4xf32>' are incompatible with return type(s) of operation 'tensor<3x5xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = lathe.relu %a : (tensor<3x4xf32>) -> tensor<3x5xf32>
  return %0 : tensor<3x5xf32>
}

// -----

func.func @norm_scale(%x: tensor<2x8xf32>, %g: tensor<4xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{scale must be [8], got [4]}}
  %0 = lathe.rms_norm %x, %g {epsilon = 1.0e-6 : f64} : (tensor<2x8xf32>, tensor<4xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

func.func @transpose_perm(%x: tensor<2x8xf32>) -> tensor<8x2xf32> {
  // expected-error @+1 {{permutation length 3 differs from rank 2}}
  %0 = lathe.transpose %x {perm = array<i64: 0, 1, 2>} : (tensor<2x8xf32>) -> tensor<8x2xf32>
  return %0 : tensor<8x2xf32>
}

// -----

func.func @rotary_odd(%x: tensor<2x3x7xf32>, %c: tensor<3x7xf32>) -> tensor<2x3x7xf32> {
  // expected-error @+1 {{the rotated dimension must be even, got 7}}
  %0 = lathe.rotary %x, %c, %c : (tensor<2x3x7xf32>, tensor<3x7xf32>, tensor<3x7xf32>) -> tensor<2x3x7xf32>
  return %0 : tensor<2x3x7xf32>
}

// -----

func.func @rotary_table(%x: tensor<2x3x8xf32>, %c: tensor<5x8xf32>) -> tensor<2x3x8xf32> {
  // expected-error @+1 {{cos/sin [5, 8] do not broadcast to the input [2, 3, 8]}}
  %0 = lathe.rotary %x, %c, %c : (tensor<2x3x8xf32>, tensor<5x8xf32>, tensor<5x8xf32>) -> tensor<2x3x8xf32>
  return %0 : tensor<2x3x8xf32>
}
