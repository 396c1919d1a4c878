// RUN: not lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=fp16}))' 2>&1 | FileCheck %s
// RUN: not lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=fp16 method=gptq}))' 2>&1 | FileCheck %s --check-prefix=GPTQ

// A weight beyond half's range is not saturated: the layer is refused, named,
// with the first offending weight (65505 > 65504; infinity and NaN too).
// CHECK: error: {{.*}}layer 'big': weight [0, 1] = 65505 is outside fp16's range (|w| <= 65504); store this layer as bf16 or int8
// GPTQ: error: {{.*}}method gptq applies to int8/int4/int3, not fp16
func.func @too_large(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %w = lathe.constant dense<[[1.0, 65505.0], [-65504.0, 0.5]]> : tensor<2x2xf32> loc("big")
  %y = lathe.linear %x, %w : (tensor<?x2xf32>, tensor<2x2xf32>) -> tensor<?x2xf32> loc("big")
  return %y : tensor<?x2xf32>
}

// -----

// CHECK: error: {{.*}}layer 'inf': weight [1, 0] = -inf is outside fp16's range
func.func @infinite(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %w = lathe.constant dense<[[1.0, 2.0], [0xFF800000, 0.5]]> : tensor<2x2xf32> loc("inf")
  %y = lathe.linear %x, %w : (tensor<?x2xf32>, tensor<2x2xf32>) -> tensor<?x2xf32> loc("inf")
  return %y : tensor<?x2xf32>
}
