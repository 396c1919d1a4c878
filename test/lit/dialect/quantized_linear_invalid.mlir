// RUN: lathe-opt %s -split-input-file -verify-diagnostics

func.func @unknown_format(%x: tensor<?x64xf32>, %w: tensor<4x64xi8>, %s: tensor<4x1xf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{unknown format 'int2'}}
  %0 = lathe.quantized_linear %x, %w scales %s {format = "int2", group_size = 64 : i64} : (tensor<?x64xf32>, tensor<4x64xi8>, tensor<4x1xf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @int4_needs_ui8(%x: tensor<?x64xf32>, %w: tensor<4x32xi8>, %s: tensor<4x2xf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{a int4 weight must be ui8}}
  %0 = lathe.quantized_linear %x, %w scales %s {format = "int4", group_size = 32 : i64} : (tensor<?x64xf32>, tensor<4x32xi8>, tensor<4x2xf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @scales_shape(%x: tensor<?x64xf32>, %w: tensor<4x32xui8>, %s: tensor<4x3xf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{scales and mins must be f16 [4, 2]}}
  %0 = lathe.quantized_linear %x, %w scales %s {format = "int4", group_size = 32 : i64} : (tensor<?x64xf32>, tensor<4x32xui8>, tensor<4x3xf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @int4_group(%x: tensor<?x64xf32>, %w: tensor<4x32xui8>, %s: tensor<4x2xf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{group_size 40 is invalid for 64 input features (int4 needs multiples of 32)}}
  %0 = lathe.quantized_linear %x, %w scales %s {format = "int4", group_size = 40 : i64} : (tensor<?x64xf32>, tensor<4x32xui8>, tensor<4x2xf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @features(%x: tensor<?x60xf32>, %w: tensor<4x64xi8>, %s: tensor<4x1xf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{input has 60 features but the weight expects 64}}
  %0 = lathe.quantized_linear %x, %w scales %s {format = "int8", group_size = 64 : i64} : (tensor<?x60xf32>, tensor<4x64xi8>, tensor<4x1xf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @int3_blocks(%x: tensor<?x64xf32>, %w: tensor<4x20xui8>, %s: tensor<4x2xf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{an int3 weight stores 12 bytes per 32 weights; 20 bytes per row is not whole blocks}}
  %0 = lathe.quantized_linear %x, %w scales %s {format = "int3", group_size = 32 : i64} : (tensor<?x64xf32>, tensor<4x20xui8>, tensor<4x2xf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @fp16_needs_f16(%x: tensor<?x64xf32>, %w: tensor<4x64xbf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{a fp16 weight must be f16}}
  %0 = lathe.quantized_linear %x, %w {format = "fp16", group_size = 64 : i64} : (tensor<?x64xf32>, tensor<4x64xbf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @fp16_no_scales(%x: tensor<?x64xf32>, %w: tensor<4x64xf16>, %s: tensor<4x1xf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{a fp16 weight has no scales or mins}}
  %0 = lathe.quantized_linear %x, %w scales %s {format = "fp16", group_size = 64 : i64} : (tensor<?x64xf32>, tensor<4x64xf16>, tensor<4x1xf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @act_block_format(%x: tensor<?x64xf32>, %w: tensor<4x64xbf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{int8 activations (act_block) apply to int8 and int4 weights, not bf16}}
  %0 = lathe.quantized_linear %x, %w {format = "bf16", group_size = 64 : i64, act_block = 32 : i64} : (tensor<?x64xf32>, tensor<4x64xbf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @act_block_value(%x: tensor<?x64xf32>, %w: tensor<4x32xui8>, %s: tensor<4x2xf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{act_block must be 32 (int8 activations per block of 32), got 16}}
  %0 = lathe.quantized_linear %x, %w scales %s {format = "int4", group_size = 32 : i64, act_block = 16 : i64} : (tensor<?x64xf32>, tensor<4x32xui8>, tensor<4x2xf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

func.func @act_block_int8_group(%x: tensor<?x96xf32>, %w: tensor<4x96xi8>, %s: tensor<4x2xf16>) -> tensor<?x4xf32> {
  // expected-error @+1 {{int8 activations need int8 groups that are multiples of 32 (or one per row), got group_size 48}}
  %0 = lathe.quantized_linear %x, %w scales %s {format = "int8", group_size = 48 : i64, act_block = 32 : i64} : (tensor<?x96xf32>, tensor<4x96xi8>, tensor<4x2xf16>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}
