// lathe-gguf-dump FILE                          header, metadata, tensor table
// lathe-gguf-dump FILE --dequant NAME --out X.npy  one tensor as float32 .npy
//
// Exit codes: 0 success, 1 a bad or unsupported file/tensor, 2 bad usage.
#include "compiler/import/gguf/GgmlDequant.h"
#include "compiler/import/gguf/GgufReader.h"
#include "lathe/Tensor.h"
#include "runtime/io/Npy.h"

#include <cstdio>
#include <cstring>
#include <string>

using namespace lathe;
using namespace lathe::gguf;

namespace {

std::string printable(const std::string &text, size_t limit = 60) {
  std::string out;
  for (unsigned char c : text.substr(0, limit)) {
    if (c == '\n')
      out += "\\n";
    else if (c < 0x20 || c == 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", c);
      out += buffer;
    } else
      out += char(c);
  }
  if (text.size() > limit)
    out += "...";
  return out;
}

std::string scalarText(const MetadataValue &value) {
  char buffer[64];
  switch (value.type) {
  case ValueType::String: return "\"" + printable(value.stringValue) + "\"";
  case ValueType::Bool: return value.boolValue ? "true" : "false";
  case ValueType::Float32:
  case ValueType::Float64:
    std::snprintf(buffer, sizeof buffer, "%.9g", value.floatValue);
    return buffer;
  default:
    return value.isUnsigned() ? std::to_string(value.unsignedValue) : std::to_string(value.signedValue);
  }
}

std::string valueText(const MetadataValue &value) {
  if (value.type != ValueType::Array)
    return scalarText(value);
  // Arrays are summarized: the count and the first few elements.
  std::string text = "[" + std::to_string(value.elements.size()) + " x " +
                     (value.elements.empty() ? std::string(valueTypeName(value.elementType))
                                             : value.elements.front().typeName()) +
                     "]";
  if (value.elements.empty())
    return text;
  text += " {";
  size_t shown = value.elements.size() < 5 ? value.elements.size() : 5;
  for (size_t i = 0; i < shown; ++i)
    text += (i ? ", " : "") + valueText(value.elements[i]);
  return text + (shown < value.elements.size() ? ", ...}" : "}");
}

void printFile(const GgufFile &file) {
  std::printf("file: %s\n", file.path().c_str());
  std::printf("version: %u\n", file.version());
  std::printf("size: %llu bytes\n", (unsigned long long)file.fileSize());
  std::printf("alignment: %llu\n", (unsigned long long)file.alignment());
  std::printf("data offset: %llu\n", (unsigned long long)file.dataOffset());
  std::printf("metadata: %zu entries\n", file.metadata().size());
  for (const auto &[key, value] : file.metadata())
    std::printf("  %-40s %-14s %s\n", key.c_str(), value.typeName().c_str(), valueText(value).c_str());
  std::printf("tensors: %zu\n", file.tensors().size());
  std::printf("  %-40s %-8s %-22s %-16s %-14s %s\n", "name", "type", "shape (row-major)", "ne", "offset", "bytes");
  for (const GgufTensor &tensor : file.tensors()) {
    std::string shape = shapeString(tensor.shape());
    std::string ne = "[";
    for (size_t d = 0; d < tensor.ne.size(); ++d)
      ne += (d ? "," : "") + std::to_string(tensor.ne[d]);
    ne += "]";
    std::printf("  %-40s %-8s %-22s %-16s %-14llu %llu\n", printable(tensor.name, 40).c_str(), tensor.traits.name,
                shape.c_str(), ne.c_str(), (unsigned long long)tensor.offset, (unsigned long long)tensor.byteSize);
  }
}

int usage() {
  std::fprintf(stderr, "usage: lathe-gguf-dump FILE [--dequant NAME --out OUT.npy]\n");
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  std::string path, tensorName, outPath;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--dequant" && i + 1 < argc)
      tensorName = argv[++i];
    else if (arg == "--out" && i + 1 < argc)
      outPath = argv[++i];
    else if (arg == "-h" || arg == "--help") {
      usage();
      return 0;
    } else if (!arg.empty() && arg[0] != '-' && path.empty())
      path = arg;
    else
      return usage();
  }
  if (path.empty() || tensorName.empty() != outPath.empty())
    return usage();

  Expected<GgufFile> file = GgufFile::open(path);
  if (!file.ok()) {
    std::fprintf(stderr, "error: %s\n", file.error().c_str());
    return 1;
  }
  if (tensorName.empty()) {
    printFile(*file);
    return 0;
  }
  const GgufTensor *tensor = file->findTensor(tensorName);
  if (!tensor) {
    std::fprintf(stderr, "error: %s: no tensor named '%s' (the file has %zu tensors)\n", path.c_str(),
                 tensorName.c_str(), file->tensors().size());
    return 1;
  }
  Expected<std::vector<float>> values = dequantizeTensor(*tensor);
  if (!values.ok()) {
    std::fprintf(stderr, "error: %s: %s\n", path.c_str(), values.error().c_str());
    return 1;
  }
  Tensor output = Tensor::borrow(DType::F32, tensor->shape(), values->data());
  Status written = io::writeNpy(outPath, output);
  if (!written.ok()) {
    std::fprintf(stderr, "error: %s\n", written.message().c_str());
    return 1;
  }
  return 0;
}
