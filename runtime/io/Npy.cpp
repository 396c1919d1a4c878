#include "runtime/io/Npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <unistd.h>

namespace lathe::io {
namespace {

struct DescrEntry { const char *descr; DType dtype; };
const DescrEntry kDescrs[] = {{"<f4", DType::F32}, {"<f2", DType::F16}, {"<f8", DType::F64}, {"<i8", DType::I64},
                              {"<i4", DType::I32}, {"<i2", DType::I16}, {"|i1", DType::I8},  {"|u1", DType::U8},
                              {"|b1", DType::Bool}};

// Finds the value of 'key' in the header dict text: returns the raw text after "'key':".
bool findValue(const std::string &header, const std::string &key, std::string &value) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) return false;
  at = header.find(':', at);
  if (at == std::string::npos) return false;
  value = header.substr(at + 1);
  size_t b = value.find_first_not_of(" ");
  value = b == std::string::npos ? "" : value.substr(b);
  return true;
}

} // namespace

Expected<Tensor> readNpy(const std::string &path) {
  auto fail = [&](const std::string &m) { return Status::error("'" + path + "': " + m); };
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot open");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) return fail("not a .npy file (bad magic)");
  int major = uint8_t(bytes[6]);
  size_t headerLen, headerStart;
  if (major == 1) { headerLen = uint8_t(bytes[8]) | size_t(uint8_t(bytes[9])) << 8; headerStart = 10; }
  else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return fail("truncated header");
    headerLen = uint8_t(bytes[8]) | size_t(uint8_t(bytes[9])) << 8 | size_t(uint8_t(bytes[10])) << 16 | size_t(uint8_t(bytes[11])) << 24;
    headerStart = 12;
  } else return fail("unsupported .npy version " + std::to_string(major));
  if (headerStart + headerLen > bytes.size()) return fail("truncated header");
  std::string header = bytes.substr(headerStart, headerLen);
  std::string descr, order, shapeText;
  if (!findValue(header, "descr", descr) || !findValue(header, "fortran_order", order) || !findValue(header, "shape", shapeText))
    return fail("malformed header: " + header);
  if (descr.size() < 5 || (descr[0] != '\'' && descr[0] != '"')) return fail("malformed descr in header");
  descr = descr.substr(1, descr.find(descr[0], 1) - 1);
  if (descr == "=f4" || descr == "=f8" || descr == "=i8" || descr == "=i4" || descr == "=f2" || descr == "=i2") descr[0] = '<';
  if (descr == "<i1" || descr == "<u1") descr[0] = '|';
  if (descr == "<b1") descr[0] = '|';
  DType dtype{};
  bool found = false;
  for (const auto &d : kDescrs) if (descr == d.descr) { dtype = d.dtype; found = true; }
  if (!found) return fail("unsupported dtype '" + descr + "' (supported: <f4 <f2 <f8 <i8 <i4 <i2 |i1 |u1 |b1, little-endian)");
  if (order.rfind("True", 0) == 0) return fail("Fortran-order arrays are not supported; save with np.ascontiguousarray");
  if (order.rfind("False", 0) != 0) return fail("malformed fortran_order in header");
  if (shapeText.empty() || shapeText[0] != '(') return fail("malformed shape in header");
  std::vector<int64_t> shape;
  size_t i = 1;
  while (i < shapeText.size() && shapeText[i] != ')') {
    if (shapeText[i] == ' ' || shapeText[i] == ',') { ++i; continue; }
    if (shapeText[i] < '0' || shapeText[i] > '9') return fail("malformed shape in header");
    int64_t v = 0;
    while (i < shapeText.size() && shapeText[i] >= '0' && shapeText[i] <= '9') {
      v = v * 10 + (shapeText[i++] - '0');
      if (v > (int64_t(1) << 40)) return fail("dimension too large in header");
    }
    shape.push_back(v);
  }
  if (i >= shapeText.size()) return fail("malformed shape in header");
  Tensor t = Tensor::zeros(dtype, shape);
  size_t dataStart = headerStart + headerLen;
  if (bytes.size() - dataStart < t.bytes())
    return fail("truncated data: expected " + std::to_string(t.bytes()) + " bytes for " + t.describe() + ", found " + std::to_string(bytes.size() - dataStart));
  if (t.bytes()) std::memcpy(t.data(), bytes.data() + dataStart, t.bytes());
  return t;
}

Status writeNpy(const std::string &path, const Tensor &tensor) {
  const char *descr = nullptr;
  for (const auto &d : kDescrs) if (d.dtype == tensor.dtype()) descr = d.descr;
  if (!descr) return Status::error("'" + path + "': dtype " + std::string(dtypeName(tensor.dtype())) + " has no .npy equivalent");
  std::string shape = "(";
  for (size_t i = 0; i < tensor.shape().size(); ++i) shape += std::to_string(tensor.shape()[i]) + (tensor.shape().size() == 1 ? "," : i + 1 < tensor.shape().size() ? ", " : "");
  shape += ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  out += char(header.size() & 0xff);
  out += char(header.size() >> 8);
  out += header;
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) return Status::error("'" + path + "': cannot create");
  f.write(out.data(), std::streamsize(out.size()));
  if (tensor.bytes()) f.write(static_cast<const char *>(tensor.data()), std::streamsize(tensor.bytes()));
  f.close();
  if (!f || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::error("'" + path + "': write failed");
  }
  return Status();
}

} // namespace lathe::io
