// Eigen comparison for lathe-gemm-bench; only this TU includes Eigen.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <chrono>

double eigenLinearSeconds(const float *a, const float *w, float *c, long m, long n, long k, int reps) {
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMat> A(a, m, k), W(w, n, k);
  Eigen::Map<RowMat> C(c, m, n);
  C.noalias() = A * W.transpose();
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) C.noalias() = A * W.transpose();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}
