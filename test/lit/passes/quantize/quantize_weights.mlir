// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=int8}))' | FileCheck %s --check-prefix=INT8
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=int4 group-size=32 symmetric=false}))' | FileCheck %s --check-prefix=INT4
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=bf16}))' | FileCheck %s --check-prefix=BF16
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=int3 group-size=64}))' | FileCheck %s --check-prefix=INT3
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=int8 exclude=head*}))' | FileCheck %s --check-prefix=EXCL
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=int8 targets=embedding}))' | FileCheck %s --check-prefix=EMB
// RUN: lathe-opt %s -split-input-file --pass-pipeline='builtin.module(func.func(lathe-quantize-weights{format=int4 group-size=32 int8-activations=true}))' | FileCheck %s --check-prefix=A8

// Two linears named by their ONNX nodes; the second has a bias. 64 input features.
// INT8-LABEL: func @two_layers
// INT8: %[[Q:.*]] = lathe.constant dense_resource<{{.*}}> : tensor<16x64xi8>
// INT8: %[[S:.*]] = lathe.constant dense_resource<{{.*}}> : tensor<16x1xf16>
// INT8: lathe.quantized_linear %arg0, %[[Q]] scales %[[S]] {format = "int8", group_size = 64 : i64, lathe.compression = {bits_per_weight = 8.25{{.*}}, bytes_after = 1056 : i64, bytes_before = 4096 : i64, method = "int8-rtn-g64", weight_error = {{.*}}}}
// INT8: lathe.quantized_linear {{.*}} bias %{{.*}} {format = "int8"
// INT8-NOT: lathe.linear
// INT4-LABEL: func @two_layers
// INT4: tensor<16x32xui8>
// INT4: %[[S:.*]] = lathe.constant dense_resource<{{.*}}> : tensor<16x2xf16>
// INT4: %[[M:.*]] = lathe.constant dense_resource<{{.*}}> : tensor<16x2xf16>
// INT4: lathe.quantized_linear %arg0, %{{.*}} scales %[[S]] mins %[[M]] {format = "int4", group_size = 32 : i64, lathe.compression = {bits_per_weight = 5.0{{.*}}, method = "int4-asym-rtn-g32"
// INT3-LABEL: func @two_layers
// INT3: tensor<16x24xui8>
// INT3: lathe.quantized_linear %arg0, %{{.*}} scales %{{.*}} {format = "int3", group_size = 64 : i64, lathe.compression = {bits_per_weight = 3.25{{.*}}, method = "int3-sym-rtn-g64"
// A8-LABEL: func @two_layers
// A8: lathe.quantized_linear %arg0, %{{.*}} scales %{{.*}} {act_block = 32 : i64, format = "int4", group_size = 32 : i64
// BF16-LABEL: func @two_layers
// BF16: tensor<16x64xbf16>
// BF16: lathe.quantized_linear %arg0, %{{.*}} {format = "bf16", group_size = 64 : i64, lathe.compression = {bits_per_weight = 1.6{{.*}}e+01
// EXCL-LABEL: func @two_layers
// EXCL: lathe.quantized_linear
// EXCL: lathe.linear %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x16xf32>, tensor<8x16xf32>, tensor<8xf32>)
func.func @two_layers(%x: tensor<?x64xf32>) -> tensor<?x8xf32> {
  %w1 = lathe.constant dense<0.25> : tensor<16x64xf32> loc("fc1")
  %h = lathe.linear %x, %w1 : (tensor<?x64xf32>, tensor<16x64xf32>) -> tensor<?x16xf32> loc("fc1")
  %w2 = lathe.constant dense<-0.5> : tensor<8x16xf32> loc("head")
  %b2 = lathe.constant dense<0.1> : tensor<8xf32> loc("head")
  %y = lathe.linear %h, %w2, %b2 : (tensor<?x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<?x8xf32> loc("head")
  return %y : tensor<?x8xf32>
}

// -----

// A weight that is not a constant is left alone (with a remark saying why).
// INT8-LABEL: func @runtime_weight
// INT8: lathe.linear
func.func @runtime_weight(%x: tensor<?x64xf32>, %w: tensor<16x64xf32>) -> tensor<?x16xf32> {
  // expected-remark @+1 {{not quantized: its weight is not a constant f32 tensor}}
  %y = lathe.linear %x, %w : (tensor<?x64xf32>, tensor<16x64xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Embedding tables only with targets=embedding (int8, one scale per row); linears are left alone.
// EMB-LABEL: func @table
// EMB: %[[T:.*]] = lathe.constant dense_resource<{{.*}}> : tensor<32x16xi8>
// EMB: %[[S:.*]] = lathe.constant dense_resource<{{.*}}> : tensor<32x1xf16>
// EMB: lathe.quantized_embedding %[[T]], %[[S]], %arg0 {format = "int8", group_size = 16 : i64, lathe.compression = {{{.*}}method = "embedding-int8-g16"
// EMB: lathe.linear
func.func @table(%ids: tensor<?x?xi64>) -> tensor<?x?x4xf32> {
  %t = lathe.constant dense<0.75> : tensor<32x16xf32> loc("token_embd")
  %e = lathe.embedding %t, %ids : (tensor<32x16xf32>, tensor<?x?xi64>) -> tensor<?x?x16xf32> loc("token_embd")
  %w = lathe.constant dense<0.5> : tensor<4x16xf32> loc("proj")
  %y = lathe.linear %e, %w : (tensor<?x?x16xf32>, tensor<4x16xf32>) -> tensor<?x?x4xf32> loc("proj")
  return %y : tensor<?x?x4xf32>
}
