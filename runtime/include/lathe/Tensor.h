// A dense row-major tensor: dtype, shape, and data that is either owned
// (shared, reference-counted) or borrowed (the caller keeps it alive).
#pragma once

#include "runtime/artifact/ArtifactSpec.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

using DType = artifact::DType;
using artifact::dtypeName;
using artifact::dtypeSize;

class Tensor {
public:
  Tensor() = default;
  /// Zero-filled, owned, 64-byte aligned.
  static Tensor zeros(DType dtype, std::vector<int64_t> shape);
  /// Wraps memory the caller owns and keeps alive while the tensor is used.
  static Tensor borrow(DType dtype, std::vector<int64_t> shape, void *data);
  static Tensor borrow(DType dtype, std::vector<int64_t> shape, const void *data) {
    return borrow(dtype, std::move(shape), const_cast<void *>(data));
  }

  DType dtype() const { return dtype_; }
  const std::vector<int64_t> &shape() const { return shape_; }
  int64_t rank() const { return int64_t(shape_.size()); }
  int64_t numel() const;
  size_t bytes() const { return size_t(numel()) * dtypeSize(dtype_); }
  bool empty() const { return data_ == nullptr && numel() != 0; }
  void *data() { return data_; }
  const void *data() const { return data_; }
  template <class T> T *data() { return static_cast<T *>(data_); }
  template <class T> const T *data() const { return static_cast<const T *>(data_); }
  bool owned() const { return owner_ != nullptr; }
  /// An owned deep copy.
  Tensor clone() const;
  /// "f32[2,3]"
  std::string describe() const;

private:
  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  void *data_ = nullptr;
  std::shared_ptr<void> owner_;
};

std::string shapeString(const std::vector<int64_t> &shape);

} // namespace lathe
