// Errors as values: every failure a caller can cause comes back as a message
// naming the thing (file, input, ONNX node), never as an abort.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace lathe {

class Status {
public:
  Status() = default;
  static Status error(std::string message) { Status s; s.message_ = std::move(message); s.failed_ = true; return s; }
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string &message() const { return message_; }

private:
  std::string message_;
  bool failed_ = false;
};

/// A value or the error that prevented it.
template <class T> class Expected {
public:
  Expected(T value) : storage_(std::move(value)) {}
  Expected(Status status) : storage_(std::move(status)) {}
  bool ok() const { return storage_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T &value() { return std::get<0>(storage_); }
  const T &value() const { return std::get<0>(storage_); }
  T &operator*() { return value(); }
  T *operator->() { return &value(); }
  const std::string &error() const {
    static const std::string none;
    return ok() ? none : std::get<1>(storage_).message();
  }
  Status status() const { return ok() ? Status() : std::get<1>(storage_); }

private:
  std::variant<T, Status> storage_;
};

} // namespace lathe
