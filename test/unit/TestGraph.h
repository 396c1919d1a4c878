// Builds small artifacts for tests: a spec, written to a temp file, opened as a Session.
#pragma once

#include "lathe/Session.h"
#include "runtime/artifact/ArtifactSpec.h"

#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <random>
#include <string>
#include <vector>
#include <unistd.h>

namespace lathe::test {

using artifact::ArtifactSpec;
using artifact::Dim;

inline std::string tempPath(const std::string &name) {
  auto dir = std::filesystem::temp_directory_path() / ("lathe-unit-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

struct Graph {
  ArtifactSpec spec;
  std::deque<std::vector<uint8_t>> blobs;

  int32_t tensor(const std::string &name, DType dtype, size_t rank) {
    artifact::TensorSpec t{name, dtype, {}};
    for (size_t d = 0; d < rank; ++d) t.shape.push_back(Dim{-1, name + "." + std::to_string(d)});
    spec.tensors.push_back(t);
    return int32_t(spec.tensors.size() - 1);
  }
  int32_t input(const std::string &name, DType dtype, std::vector<Dim> shape) {
    spec.tensors.push_back({name, dtype, shape});
    spec.inputs.push_back(int32_t(spec.tensors.size() - 1));
    return spec.inputs.back();
  }
  int32_t input(const std::string &name, DType dtype, size_t rank) {
    int32_t t = tensor(name, dtype, rank);
    spec.inputs.push_back(t);
    return t;
  }
  template <class T> int32_t weight(const std::string &name, DType dtype, std::vector<int64_t> shape, const std::vector<T> &values) {
    artifact::TensorSpec t{name, dtype, {}};
    for (int64_t d : shape) t.shape.push_back(Dim{d, ""});
    spec.tensors.push_back(t);
    int32_t id = int32_t(spec.tensors.size() - 1);
    blobs.emplace_back(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(blobs.back().data(), values.data(), blobs.back().size());
    spec.weights.push_back({id, blobs.back().data(), blobs.back().size()});
    return id;
  }
  void kernel(const std::string &op, std::vector<int32_t> in, std::vector<int32_t> out,
              std::map<std::string, artifact::AttrValue> attrs = {}, const std::string &source = "") {
    spec.kernels.push_back({op, in, out, attrs, source.empty() ? op + std::to_string(spec.kernels.size()) : source, "f32"});
  }
  void output(int32_t t) { spec.outputs.push_back(t); }

  Expected<std::unique_ptr<Session>> open(const std::string &isa = "", int threads = 1) {
    std::string path = tempPath("graph.lathe");
    std::string err = artifact::writeArtifact(spec, path);
    if (!err.empty()) return Status::error(err);
    return Session::open(path, {threads, isa});
  }
};

inline std::vector<float> randomFloats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto &x : v) x = dist(rng);
  return v;
}

inline Tensor tensorOf(const std::vector<float> &v, std::vector<int64_t> shape) {
  Tensor t = Tensor::zeros(DType::F32, shape);
  std::memcpy(t.data(), v.data(), v.size() * 4);
  return t;
}
inline Tensor tensorOf(const std::vector<int64_t> &v, std::vector<int64_t> shape) {
  Tensor t = Tensor::zeros(DType::I64, shape);
  std::memcpy(t.data(), v.data(), v.size() * 8);
  return t;
}

} // namespace lathe::test
