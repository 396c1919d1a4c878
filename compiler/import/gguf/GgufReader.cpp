#include "compiler/import/gguf/GgufReader.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lathe::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747; // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;
// Each decoded metadata element costs ~150 bytes in memory, so a small file
// with a long uint8 array could otherwise ask for many GB. Real vocabularies
// hold a few hundred thousand entries per array.
constexpr uint64_t kMaxMetadataElements = 8u << 20;
constexpr uint64_t kMaxAlignment = 1u << 20;
constexpr size_t kMaxReportedTensorProblems = 8;

/// Thrown inside the parser only; GgufFile::parse turns it into a Status.
struct ParseError {
  std::string message;
};

uint64_t minEncodedSize(ValueType type) {
  switch (type) {
  case ValueType::UInt8:
  case ValueType::Int8:
  case ValueType::Bool:
    return 1;
  case ValueType::UInt16:
  case ValueType::Int16:
    return 2;
  case ValueType::UInt32:
  case ValueType::Int32:
  case ValueType::Float32:
    return 4;
  case ValueType::UInt64:
  case ValueType::Int64:
  case ValueType::Float64:
  case ValueType::String: // the u64 length
    return 8;
  case ValueType::Array: // u32 element type + u64 count
    return 12;
  }
  return 1;
}

bool isKnownValueType(uint32_t type) { return type <= uint32_t(ValueType::Float64); }

std::string quoted(const std::string &text) {
  // Names come from the file; keep control bytes out of the terminal.
  std::string out = "'";
  for (unsigned char c : text.substr(0, 200)) {
    if (c < 0x20 || c == 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", c);
      out += buffer;
    } else {
      out += char(c);
    }
  }
  if (text.size() > 200)
    out += "...";
  return out + "'";
}

} // namespace

class GgufParser {
public:
  explicit GgufParser(GgufFile &file) : file_(file) {}

  void run() {
    readHeader();
    for (uint64_t i = 0; i < metadataCount_; ++i)
      readMetadataEntry(i);
    context_.clear();
    readAlignment();
    for (uint64_t i = 0; i < tensorCount_; ++i)
      readTensorInfo(i);
    context_.clear();
    placeTensors();
  }

private:
  GgufFile &file_;
  uint64_t pos_ = 0;
  std::string context_; // what is being read, e.g. "metadata key 3 'general.name'"
  uint64_t tensorCount_ = 0;
  uint64_t metadataCount_ = 0;
  uint64_t elementsLeft_ = kMaxMetadataElements;

  uint64_t remaining() const { return file_.size_ - pos_; }

  [[noreturn]] void fail(const std::string &message, uint64_t at) {
    std::string text = file_.path_ + ": ";
    if (!context_.empty())
      text += context_ + ": ";
    text += message + " (at byte " + std::to_string(at) + "; the file is " + std::to_string(file_.size_) +
            " bytes)";
    throw ParseError{text};
  }

  void need(uint64_t bytes, const char *field) {
    if (bytes > remaining())
      fail(std::string("truncated: ") + field + " needs " + std::to_string(bytes) + " bytes but only " +
               std::to_string(remaining()) + " remain",
           pos_);
  }

  template <class T> T read(const char *field) {
    need(sizeof(T), field);
    T value;
    std::memcpy(&value, file_.base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string readString(const char *field) {
    uint64_t at = pos_;
    uint64_t length = read<uint64_t>(field);
    if (length > remaining())
      fail(std::string(field) + " has length " + std::to_string(length) + " but only " +
               std::to_string(remaining()) + " bytes remain (truncated or corrupt)",
           at);
    std::string text(reinterpret_cast<const char *>(file_.base_ + pos_), size_t(length));
    pos_ += length;
    return text;
  }

  void readHeader() {
    uint32_t magic = read<uint32_t>("the magic");
    if (magic != kMagic) {
      char shown[5] = {};
      std::memcpy(shown, &magic, 4);
      for (char &c : shown)
        if (c && (c < 0x20 || c > 0x7e))
          c = '?';
      fail(std::string("not a GGUF file: magic is '") + shown + "', expected 'GGUF'", 0);
    }
    uint32_t version = read<uint32_t>("the version");
    if (version != 0 && (version & 0xFFFF) == 0)
      fail("big-endian GGUF files are not supported (version field reads " + std::to_string(version) + ")", 4);
    if (version == 1)
      fail("GGUF version 1 (32-bit counts) is not supported; convert the file to version 3", 4);
    if (version != 2 && version != 3)
      fail("unsupported GGUF version " + std::to_string(version) + "; expected 2 or 3", 4);
    file_.version_ = version;
    tensorCount_ = read<uint64_t>("the tensor count");
    metadataCount_ = read<uint64_t>("the metadata count");
    // Each entry takes at least this many bytes, so larger counts cannot be honest.
    uint64_t minimumMetadata = metadataCount_ > remaining() / 13 ? UINT64_MAX : metadataCount_ * 13;
    if (minimumMetadata > remaining())
      fail("metadata count " + std::to_string(metadataCount_) + " cannot fit in the " +
               std::to_string(remaining()) + " bytes after the header (each entry takes at least 13)",
           16);
    if (tensorCount_ > remaining() / 24)
      fail("tensor count " + std::to_string(tensorCount_) + " cannot fit in the " + std::to_string(remaining()) +
               " bytes after the header (each tensor info takes at least 24)",
           8);
  }

  MetadataValue readValue(ValueType type, int depth) {
    MetadataValue value;
    value.type = type;
    switch (type) {
    case ValueType::UInt8: value.unsignedValue = read<uint8_t>("a uint8 value"); break;
    case ValueType::Int8: value.signedValue = read<int8_t>("an int8 value"); break;
    case ValueType::UInt16: value.unsignedValue = read<uint16_t>("a uint16 value"); break;
    case ValueType::Int16: value.signedValue = read<int16_t>("an int16 value"); break;
    case ValueType::UInt32: value.unsignedValue = read<uint32_t>("a uint32 value"); break;
    case ValueType::Int32: value.signedValue = read<int32_t>("an int32 value"); break;
    case ValueType::UInt64: value.unsignedValue = read<uint64_t>("a uint64 value"); break;
    case ValueType::Int64: value.signedValue = read<int64_t>("an int64 value"); break;
    case ValueType::Float32: value.floatValue = read<float>("a float32 value"); break;
    case ValueType::Float64: value.floatValue = read<double>("a float64 value"); break;
    case ValueType::Bool: {
      uint64_t at = pos_;
      uint8_t byte = read<uint8_t>("a bool value");
      if (byte > 1)
        fail("bool value is " + std::to_string(byte) + ", expected 0 or 1", at);
      value.boolValue = byte != 0;
      break;
    }
    case ValueType::String: value.stringValue = readString("a string value"); break;
    case ValueType::Array: {
      if (depth >= kMaxArrayDepth)
        fail("arrays nest deeper than " + std::to_string(kMaxArrayDepth) + " levels", pos_);
      uint64_t at = pos_;
      uint32_t elementType = read<uint32_t>("an array's element type");
      if (!isKnownValueType(elementType))
        fail("array element type " + std::to_string(elementType) + " is not a GGUF value type (0..12)", at);
      value.elementType = ValueType(elementType);
      uint64_t countAt = pos_;
      uint64_t count = read<uint64_t>("an array's element count");
      if (count > remaining() / minEncodedSize(value.elementType))
        fail("array of " + std::string(valueTypeName(value.elementType)) + " claims " + std::to_string(count) +
                 " elements but only " + std::to_string(remaining()) + " bytes remain (truncated or corrupt)",
             countAt);
      if (count > elementsLeft_)
        fail("metadata arrays hold more than " + std::to_string(kMaxMetadataElements) +
                 " elements in all; refusing to decode more",
             countAt);
      elementsLeft_ -= count;
      value.elements.reserve(size_t(count));
      for (uint64_t i = 0; i < count; ++i)
        value.elements.push_back(readValue(value.elementType, depth + 1));
      break;
    }
    }
    return value;
  }

  void readMetadataEntry(uint64_t index) {
    context_ = "metadata entry " + std::to_string(index);
    std::string key = readString("the key");
    context_ += " " + quoted(key);
    uint64_t at = pos_;
    uint32_t type = read<uint32_t>("the value type");
    if (!isKnownValueType(type))
      fail("value type " + std::to_string(type) + " is not a GGUF value type (0..12)", at);
    MetadataValue value = readValue(ValueType(type), 0);
    if (file_.metadataIndex_.count(key))
      fail("duplicate metadata key", at);
    file_.metadataIndex_[key] = file_.metadata_.size();
    file_.metadata_.emplace_back(std::move(key), std::move(value));
  }

  void readAlignment() {
    const MetadataValue *value = file_.find("general.alignment");
    if (!value)
      return;
    if (!value->isUnsigned())
      fail("general.alignment has type " + value->typeName() + ", expected uint32", pos_);
    uint64_t alignment = value->unsignedValue;
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > kMaxAlignment)
      fail("general.alignment is " + std::to_string(alignment) + ", expected a power of two up to " +
               std::to_string(kMaxAlignment),
           pos_);
    file_.alignment_ = alignment;
  }

  void readTensorInfo(uint64_t index) {
    context_ = "tensor info " + std::to_string(index);
    GgufTensor tensor;
    tensor.name = readString("the tensor name");
    context_ = "tensor " + quoted(tensor.name);
    uint64_t at = pos_;
    uint32_t dims = read<uint32_t>("the dimension count");
    if (dims > kMaxDims)
      fail("has " + std::to_string(dims) + " dimensions; ggml allows at most " + std::to_string(kMaxDims), at);
    for (uint32_t d = 0; d < dims; ++d)
      tensor.ne.push_back(read<uint64_t>("a dimension"));
    tensor.typeId = read<uint32_t>("the ggml type");
    tensor.offset = read<uint64_t>("the data offset");
    if (file_.tensorIndex_.count(tensor.name))
      fail("duplicate tensor name", at);
    file_.tensorIndex_[tensor.name] = file_.tensors_.size();
    file_.tensors_.push_back(std::move(tensor));
  }

  /// Checks every tensor's type, shape and data range; reports all problems found.
  void placeTensors() {
    uint64_t end = pos_;
    uint64_t alignment = file_.alignment_;
    uint64_t dataOffset = (end + alignment - 1) / alignment * alignment;
    file_.dataOffset_ = dataOffset;
    std::vector<std::string> problems;
    for (GgufTensor &tensor : file_.tensors_) {
      std::string where = "tensor " + quoted(tensor.name) + ": ";
      auto traits = ggmlTypeTraits(tensor.typeId);
      if (!traits) {
        problems.push_back(where + ggmlTypeDescription(tensor.typeId) + " is not a type ggml defines");
        continue;
      }
      tensor.traits = *traits;
      uint64_t elements = 1;
      bool overflow = false;
      for (uint64_t extent : tensor.ne) {
        if (extent > uint64_t(std::numeric_limits<int64_t>::max()) ||
            (extent != 0 && elements > uint64_t(std::numeric_limits<int64_t>::max()) / extent))
          overflow = true;
        else
          elements *= extent;
      }
      std::string shapeText = "[";
      for (size_t d = 0; d < tensor.ne.size(); ++d)
        shapeText += (d ? ", " : "") + std::to_string(tensor.ne[d]);
      shapeText += "]";
      if (overflow) {
        problems.push_back(where + "shape ne=" + shapeText + " has more elements than int64 can count");
        continue;
      }
      if (tensor.cols() % traits->blockSize != 0) {
        problems.push_back(where + "row length ne[0]=" + std::to_string(tensor.cols()) + " is not a multiple of the " +
                           traits->name + " block size " + std::to_string(traits->blockSize));
        continue;
      }
      tensor.elementCount = elements;
      if (elements / traits->blockSize > std::numeric_limits<uint64_t>::max() / traits->typeSize) {
        problems.push_back(where + "byte size of shape ne=" + shapeText + " overflows");
        continue;
      }
      tensor.byteSize = elements / traits->blockSize * traits->typeSize;
      if (tensor.offset % alignment != 0) {
        problems.push_back(where + "data offset " + std::to_string(tensor.offset) + " is not a multiple of the alignment " +
                           std::to_string(alignment));
        continue;
      }
      uint64_t fileSize = file_.size_;
      bool inside = dataOffset <= fileSize && tensor.offset <= fileSize - dataOffset &&
                    tensor.byteSize <= fileSize - dataOffset - tensor.offset;
      if (!inside) {
        problems.push_back(where + "data [" + std::to_string(tensor.offset) + ", " +
                           std::to_string(tensor.offset) + "+" + std::to_string(tensor.byteSize) +
                           ") after the data start at byte " + std::to_string(dataOffset) +
                           " lies outside the file (" + std::to_string(fileSize) + " bytes)");
        continue;
      }
      tensor.data = file_.base_ + dataOffset + tensor.offset;
    }
    if (problems.empty())
      return;
    std::string text = file_.path_ + ": " + std::to_string(problems.size()) + " tensor problem" +
                       (problems.size() == 1 ? "" : "s") + ":";
    for (size_t i = 0; i < problems.size() && i < kMaxReportedTensorProblems; ++i)
      text += "\n  " + problems[i];
    if (problems.size() > kMaxReportedTensorProblems)
      text += "\n  ... and " + std::to_string(problems.size() - kMaxReportedTensorProblems) + " more";
    throw ParseError{text};
  }
};

const char *valueTypeName(ValueType type) {
  switch (type) {
  case ValueType::UInt8: return "uint8";
  case ValueType::Int8: return "int8";
  case ValueType::UInt16: return "uint16";
  case ValueType::Int16: return "int16";
  case ValueType::UInt32: return "uint32";
  case ValueType::Int32: return "int32";
  case ValueType::Float32: return "float32";
  case ValueType::Bool: return "bool";
  case ValueType::String: return "string";
  case ValueType::Array: return "array";
  case ValueType::UInt64: return "uint64";
  case ValueType::Int64: return "int64";
  case ValueType::Float64: return "float64";
  }
  return "unknown";
}

bool MetadataValue::isUnsigned() const {
  return type == ValueType::UInt8 || type == ValueType::UInt16 || type == ValueType::UInt32 ||
         type == ValueType::UInt64;
}

bool MetadataValue::isSigned() const {
  return type == ValueType::Int8 || type == ValueType::Int16 || type == ValueType::Int32 || type == ValueType::Int64;
}

std::string MetadataValue::typeName() const {
  if (type != ValueType::Array)
    return valueTypeName(type);
  std::string inner = elements.empty() || elementType != ValueType::Array ? valueTypeName(elementType)
                                                                          : elements.front().typeName();
  return "array[" + inner + "]";
}

std::vector<int64_t> GgufTensor::shape() const { return std::vector<int64_t>(ne.rbegin(), ne.rend()); }

int64_t GgufTensor::rows() const {
  int64_t rows = 1;
  for (size_t d = 1; d < ne.size(); ++d)
    rows *= int64_t(ne[d]);
  return rows;
}

Expected<GgufFile> GgufFile::parse(const uint8_t *bytes, uint64_t size, const std::string &name) {
  GgufFile file;
  file.path_ = name;
  file.base_ = bytes;
  file.size_ = size;
  try {
    GgufParser(file).run();
  } catch (const ParseError &error) {
    return Status::error(error.message);
  } catch (const std::bad_alloc &) {
    return Status::error(name + ": out of memory while reading the metadata");
  }
  return file;
}

Expected<GgufFile> GgufFile::open(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Status::error(path + ": cannot open: " + std::strerror(errno));
  struct stat info {};
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return Status::error(path + ": not a regular file");
  }
  uint64_t size = uint64_t(info.st_size);
  std::shared_ptr<void> mapping;
  const uint8_t *base = nullptr;
  if (size > 0) {
    void *address = mmap(nullptr, size_t(size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (address == MAP_FAILED) {
      std::string reason = std::strerror(errno);
      ::close(fd);
      return Status::error(path + ": cannot map " + std::to_string(size) + " bytes: " + reason);
    }
    mapping = std::shared_ptr<void>(address, [size](void *p) { munmap(p, size_t(size)); });
    base = static_cast<const uint8_t *>(address);
  }
  ::close(fd);
  Expected<GgufFile> file = parse(base, size, path);
  if (file.ok())
    file->mapping_ = std::move(mapping);
  return file;
}

const MetadataValue *GgufFile::find(const std::string &key) const {
  auto it = metadataIndex_.find(key);
  return it == metadataIndex_.end() ? nullptr : &metadata_[it->second].second;
}

std::optional<uint64_t> GgufFile::getUInt(const std::string &key) const {
  const MetadataValue *value = find(key);
  if (!value)
    return std::nullopt;
  if (value->isUnsigned())
    return value->unsignedValue;
  if (value->isSigned() && value->signedValue >= 0)
    return uint64_t(value->signedValue);
  return std::nullopt;
}

std::optional<int64_t> GgufFile::getInt(const std::string &key) const {
  const MetadataValue *value = find(key);
  if (!value)
    return std::nullopt;
  if (value->isSigned())
    return value->signedValue;
  if (value->isUnsigned() && value->unsignedValue <= uint64_t(std::numeric_limits<int64_t>::max()))
    return int64_t(value->unsignedValue);
  return std::nullopt;
}

std::optional<double> GgufFile::getFloat(const std::string &key) const {
  const MetadataValue *value = find(key);
  if (!value || !value->isFloat())
    return std::nullopt;
  return value->floatValue;
}

std::optional<bool> GgufFile::getBool(const std::string &key) const {
  const MetadataValue *value = find(key);
  if (!value || value->type != ValueType::Bool)
    return std::nullopt;
  return value->boolValue;
}

std::optional<std::string> GgufFile::getString(const std::string &key) const {
  const MetadataValue *value = find(key);
  if (!value || value->type != ValueType::String)
    return std::nullopt;
  return value->stringValue;
}

namespace {
Status missingOrMistyped(const GgufFile &file, const std::string &key, const char *expected) {
  const MetadataValue *value = file.find(key);
  if (!value)
    return Status::error(file.path() + ": metadata key '" + key + "' is missing (expected " + expected + ")");
  return Status::error(file.path() + ": metadata key '" + key + "' has type " + value->typeName() + ", expected " +
                       expected);
}
} // namespace

Expected<uint64_t> GgufFile::requireUInt(const std::string &key) const {
  if (auto value = getUInt(key))
    return *value;
  return missingOrMistyped(*this, key, "a non-negative integer");
}

Expected<double> GgufFile::requireFloat(const std::string &key) const {
  if (auto value = getFloat(key))
    return *value;
  return missingOrMistyped(*this, key, "float32");
}

Expected<std::string> GgufFile::requireString(const std::string &key) const {
  if (auto value = getString(key))
    return *value;
  return missingOrMistyped(*this, key, "string");
}

const GgufTensor *GgufFile::findTensor(const std::string &name) const {
  auto it = tensorIndex_.find(name);
  return it == tensorIndex_.end() ? nullptr : &tensors_[it->second];
}

} // namespace lathe::gguf
