// RUN: lathe-opt %s --pass-pipeline='builtin.module(func.func(lathe-awq-scale{format=int4 group-size=32}))' 2>&1 | FileCheck %s
// RUN: lathe-opt %s --pass-pipeline='builtin.module(func.func(lathe-awq-scale{format=int4 group-size=32 unfoldable=skip}))' 2>&1 | FileCheck %s --check-prefix=SKIP

// A linear fed by gelu (MiniLM's FFN down projection): gelu cannot absorb 1/s,
// so AWQ inserts an elementwise mul by 1/s before the layer (llm-awq's
// ScaledActivation); with unfoldable=skip it leaves the layer alone.
// CHECK: remark: {{.*}}AWQ scales of down applied through an inserted mul by 1/s: its producer 'lathe.gelu' cannot absorb the scales
// CHECK-LABEL: func @gelu_fed
// CHECK: %[[G:.*]] = lathe.gelu %arg0
// CHECK: %[[S:.*]] = lathe.constant dense_resource<down.awq_inverse> : tensor<32xf32>
// CHECK: %[[M:.*]] = lathe.mul %[[G]], %[[S]]
// CHECK: lathe.linear %[[M]], {{.*}}lathe.awq = {alpha = {{.*}}, duo = {{.*}}, folded_into = "mul (inserted: its producer 'lathe.gelu' cannot absorb the scales)"
// SKIP: remark: {{.*}}AWQ scales not applied to down: its producer 'lathe.gelu' cannot absorb the scales (clipping still applies)
// SKIP-LABEL: func @gelu_fed
// SKIP-NOT: lathe.mul
// SKIP: lathe.linear %[[G:.*]], %{{.*}} {lathe.calibration
// SKIP-NOT: lathe.awq
func.func @gelu_fed(%x: tensor<?x32xf32>) -> tensor<?x2xf32> {
  %g = lathe.gelu %x : (tensor<?x32xf32>) -> tensor<?x32xf32> loc("act")
  %w = lathe.constant dense<[[0.5, -0.25, 1.0, 0.75, -1.5, 0.125, 0.3, -0.6, 0.9, -1.1, 0.2, 0.4, -0.8, 1.3, -0.05, 0.7, 0.6, -0.3, 1.2, -0.9, 0.15, 0.45, -1.25, 0.35, 0.85, -0.65, 1.05, -0.15, 0.55, -0.45, 0.95, -1.35], [1.5, 0.25, -1.0, -0.75, 0.5, -0.125, -0.3, 0.6, -0.9, 1.1, -0.2, -0.4, 0.8, -1.3, 0.05, -0.7, -0.6, 0.3, -1.2, 0.9, -0.15, -0.45, 1.25, -0.35, -0.85, 0.65, -1.05, 0.15, -0.55, 0.45, -0.95, 1.35]]> : tensor<2x32xf32> loc("down")
  %y = lathe.linear %g, %w {lathe.calibration = {positions = 16 : i64, mean_abs = dense<[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0, 3.1, 8.0]> : tensor<32xf32>, absmax = dense<4.0> : tensor<32xf32>, xtx = dense<1.0> : tensor<32x32xf32>}} : (tensor<?x32xf32>, tensor<2x32xf32>) -> tensor<?x2xf32> loc("down")
  return %y : tensor<?x2xf32>
}
