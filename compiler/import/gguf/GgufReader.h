// A bounds-checked reader for GGUF files (versions 2 and 3, little-endian).
//
// Layout (gguf.md in ggml): header {u32 magic "GGUF", u32 version, u64 tensor
// count, u64 metadata count}; metadata {string key, u32 value type, value}*;
// tensor infos {string name, u32 n_dims, u64 ne[n_dims], u32 ggml type,
// u64 offset}*; padding to `general.alignment` (default 32); tensor data, each
// tensor at data start + offset. Strings are {u64 length, bytes}; arrays are
// {u32 element type, u64 count, elements} and may nest.
//
// Every count, length and offset is checked against the bytes that remain
// before it is used, so a truncated or malformed file ends in an error that
// names the field and the byte position, never in a crash or a huge allocation.
#pragma once

#include "compiler/import/gguf/GgmlType.h"
#include "lathe/Status.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace lathe::gguf {

enum class ValueType : uint32_t {
  UInt8 = 0,
  Int8 = 1,
  UInt16 = 2,
  Int16 = 3,
  UInt32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  UInt64 = 10,
  Int64 = 11,
  Float64 = 12,
};

/// "uint32", "string", "array"...
const char *valueTypeName(ValueType type);

/// One metadata value. Scalars keep their declared type; integers are held
/// widened (unsigned in `unsignedValue`, signed in `signedValue`).
struct MetadataValue {
  ValueType type = ValueType::UInt8;
  uint64_t unsignedValue = 0;
  int64_t signedValue = 0;
  double floatValue = 0;
  bool boolValue = false;
  std::string stringValue;
  ValueType elementType = ValueType::UInt8; // for arrays
  std::vector<MetadataValue> elements;      // for arrays

  bool isUnsigned() const;
  bool isSigned() const;
  bool isFloat() const { return type == ValueType::Float32 || type == ValueType::Float64; }
  /// "uint32", or "array[string]" for arrays.
  std::string typeName() const;
};

struct GgufTensor {
  std::string name;
  std::vector<uint64_t> ne; // ggml order: ne[0] is the innermost (contiguous) dimension
  uint32_t typeId = 0;
  GgmlTypeTraits traits{};
  uint64_t offset = 0;   // from the start of the data section
  uint64_t elementCount = 0;
  uint64_t byteSize = 0;
  const uint8_t *data = nullptr; // points into the mapped file

  GgmlType type() const { return GgmlType(typeId); }
  /// The row-major shape torch/numpy use: ne reversed.
  std::vector<int64_t> shape() const;
  /// The 2-D [rows, cols] view: cols = ne[0], rows = product of the rest.
  int64_t rows() const;
  int64_t cols() const { return ne.empty() ? 1 : int64_t(ne[0]); }
  std::span<const uint8_t> bytes() const { return {data, size_t(byteSize)}; }
};

class GgufFile {
public:
  /// Maps the file and parses it; the error names the file, the field and the byte offset.
  static Expected<GgufFile> open(const std::string &path);
  /// Parses bytes the caller keeps alive as long as the GgufFile (tests, embedded data).
  static Expected<GgufFile> parse(const uint8_t *bytes, uint64_t size, const std::string &name);

  const std::string &path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t fileSize() const { return size_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t dataOffset() const { return dataOffset_; }

  /// Keys in file order, and their values.
  const std::vector<std::pair<std::string, MetadataValue>> &metadata() const { return metadata_; }
  const MetadataValue *find(const std::string &key) const;

  // Typed lookups: nullopt when the key is absent or holds another type.
  // Integer getters accept any integer type whose value fits.
  std::optional<uint64_t> getUInt(const std::string &key) const;
  std::optional<int64_t> getInt(const std::string &key) const;
  std::optional<double> getFloat(const std::string &key) const; // float32/float64
  std::optional<bool> getBool(const std::string &key) const;
  std::optional<std::string> getString(const std::string &key) const;

  // The same, but the error names the key and what was expected and found.
  Expected<uint64_t> requireUInt(const std::string &key) const;
  Expected<double> requireFloat(const std::string &key) const;
  Expected<std::string> requireString(const std::string &key) const;

  const std::vector<GgufTensor> &tensors() const { return tensors_; }
  const GgufTensor *findTensor(const std::string &name) const;

private:
  std::string path_;
  std::shared_ptr<void> mapping_; // unmaps the file when the last copy goes
  const uint8_t *base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t dataOffset_ = 0;
  std::vector<std::pair<std::string, MetadataValue>> metadata_;
  std::map<std::string, size_t> metadataIndex_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensorIndex_;

  friend class GgufParser;
};

} // namespace lathe::gguf
