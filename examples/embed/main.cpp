// Runs a .lathe artifact with inputs synthesized from its declared shapes
// (dynamic dims = 1 for the first, 8 otherwise; ids = 1, floats = 0.5) and
// prints each output's shape and first values.
#include <lathe/Session.h>

#include <cstdio>
#include <map>

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s model.lathe [threads]\n", argv[0]);
    return 2;
  }
  lathe::SessionOptions options;
  if (argc > 2) options.threads = std::atoi(argv[2]);
  auto session = lathe::Session::open(argv[1], options);
  if (!session) {
    std::fprintf(stderr, "error: %s\n", session.error().c_str());
    return 1;
  }
  std::map<std::string, lathe::Tensor> inputs;
  for (const auto &info : (*session)->inputs()) {
    std::vector<int64_t> shape;
    for (size_t d = 0; d < info.shape.size(); ++d) shape.push_back(info.shape[d].isStatic() ? info.shape[d].value : d == 0 ? 1 : 8);
    lathe::Tensor t = lathe::Tensor::zeros(info.dtype, shape);
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (info.dtype == lathe::DType::F32) t.data<float>()[i] = 0.5f;
      else if (info.dtype == lathe::DType::I64) t.data<int64_t>()[i] = 1;
      else if (info.dtype == lathe::DType::I32) t.data<int32_t>()[i] = 1;
    }
    std::printf("input  %s <- %s\n", info.describe().c_str(), t.describe().c_str());
    inputs[info.name] = t;
  }
  auto outputs = (*session)->run(inputs);
  if (!outputs) {
    std::fprintf(stderr, "error: %s\n", outputs.error().c_str());
    return 1;
  }
  for (const auto &out : *outputs) {
    std::printf("output %s %s:", out.name.c_str(), out.tensor.describe().c_str());
    if (out.tensor.dtype() == lathe::DType::F32)
      for (int64_t i = 0; i < out.tensor.numel() && i < 4; ++i) std::printf(" %g", out.tensor.data<float>()[i]);
    std::printf("\n");
  }
  return 0;
}
