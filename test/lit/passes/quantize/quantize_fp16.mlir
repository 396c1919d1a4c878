// RUN: lathe-opt %s --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=fp16}))' | FileCheck %s

// fp16 storage: each weight rounded to the nearest IEEE half, ties to even
// (1 + 2^-11 → 1.0, 1 + 3·2^-11 → 1 + 2^-9); ±65504 (half's largest finite value)
// is kept, 6e-8 becomes the smallest subnormal. No scales; group_size = in.
// Blob bytes (little-endian halves, after the 4-byte alignment word, 64):
//   row 0: 0.1 → 2E66, -2 → C000, 65504 → 7BFF, 6e-8 → 0001
//   row 1: 1.00048828125 → 3C00, 1.00146484375 → 3C02, -65504 → FBFF, 3.14159 → 4248
// CHECK-LABEL: func @values
// CHECK: %[[W:.*]] = lathe.constant dense_resource<[[BLOB:.*]]> : tensor<2x4xf16>
// CHECK: lathe.quantized_linear %arg0, %[[W]] bias %{{.*}} {format = "fp16", group_size = 4 : i64, lathe.compression = {bits_per_weight = 1.6{{0*}}e+01 : f64, bytes_after = 16 : i64, bytes_before = 32 : i64, method = "fp16", weight_error = {{.*}}}} : (tensor<?x4xf32>, tensor<2x4xf16>, tensor<2xf32>) -> tensor<?x2xf32>
// CHECK-NOT: lathe.linear
// CHECK: [[BLOB]]: "0x40000000662E00C0FF7B0100003C023CFFFB4842"
func.func @values(%x: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %w = lathe.constant dense<[[0.1, -2.0, 65504.0, 6.0e-08], [1.00048828125, 1.00146484375, -65504.0, 3.14159]]> : tensor<2x4xf32> loc("fc")
  %b = lathe.constant dense<[0.5, -0.5]> : tensor<2xf32> loc("fc")
  %y = lathe.linear %x, %w, %b : (tensor<?x4xf32>, tensor<2x4xf32>, tensor<2xf32>) -> tensor<?x2xf32> loc("fc")
  return %y : tensor<?x2xf32>
}
