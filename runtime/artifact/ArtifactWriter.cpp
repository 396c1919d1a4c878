#include "runtime/artifact/ArtifactFormat.h"
#include "runtime/artifact/ArtifactReader.h"
#include "runtime/artifact/ArtifactSpec.h"
#include "runtime/artifact/lathe_artifact_generated.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>
#include <vector>

namespace lathe::artifact {

size_t dtypeSize(DType dtype) {
  switch (dtype) {
  case DType::F32: case DType::I32: return 4;
  case DType::F16: case DType::BF16: case DType::I16: return 2;
  case DType::F64: case DType::I64: return 8;
  case DType::I8: case DType::U8: case DType::Bool: return 1;
  }
  return 0;
}

const char *dtypeName(DType dtype) {
  switch (dtype) {
  case DType::F32: return "f32";
  case DType::F16: return "f16";
  case DType::BF16: return "bf16";
  case DType::F64: return "f64";
  case DType::I64: return "i64";
  case DType::I32: return "i32";
  case DType::I16: return "i16";
  case DType::I8: return "i8";
  case DType::U8: return "u8";
  case DType::Bool: return "bool";
  }
  return "?";
}

bool parseDType(const std::string &name, DType &out) {
  for (int i = 0; i <= int(DType::Bool); ++i)
    if (name == dtypeName(DType(i))) { out = DType(i); return true; }
  return false;
}

const char *supportedVersionsSentence() {
  return "This runtime reads Lathe artifact format version 1.1 (major 1, minor 1 or lower).";
}

uint64_t checksum64(const uint8_t *data, size_t size) {
  constexpr uint64_t basis = 0xcbf29ce484222325ull, prime = 0x100000001b3ull;
  uint64_t lane[4] = {basis, basis ^ 1, basis ^ 2, basis ^ 3};
  size_t i = 0;
  for (; i + 32 <= size; i += 32)
    for (int l = 0; l < 4; ++l) {
      uint64_t word;
      std::memcpy(&word, data + i + 8 * l, 8); // little-endian hosts only (x86-64)
      lane[l] = (lane[l] ^ word) * prime;
    }
  uint64_t hash = basis;
  for (int l = 0; l < 4; ++l) hash = (hash ^ lane[l]) * prime;
  for (; i < size; ++i) hash = (hash ^ data[i]) * prime;
  return hash ^ uint64_t(size);
}

namespace {

void putU16(std::vector<uint8_t> &b, size_t at, uint16_t v) { for (int i = 0; i < 2; ++i) b[at + i] = uint8_t(v >> (8 * i)); }
void putU32(std::vector<uint8_t> &b, size_t at, uint32_t v) { for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (8 * i)); }
void putU64(std::vector<uint8_t> &b, size_t at, uint64_t v) { for (int i = 0; i < 8; ++i) b[at + i] = uint8_t(v >> (8 * i)); }
uint64_t alignUp(uint64_t v) { return (v + kBlobAlignment - 1) / kBlobAlignment * kBlobAlignment; }

std::string writeAll(int fd, const uint8_t *data, size_t size) {
  while (size) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::strerror(errno);
    }
    data += n;
    size -= size_t(n);
  }
  return "";
}

} // namespace

std::string writeArtifact(const ArtifactSpec &spec, const std::string &path) {
  if (std::string err = validateSpec(spec); !err.empty()) return "cannot write artifact '" + path + "': " + err;

  flatbuffers::FlatBufferBuilder fbb(1 << 16);
  auto str = [&](const std::string &s) { return fbb.CreateString(s); };

  std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
  for (const TensorSpec &t : spec.tensors) {
    std::vector<flatbuffers::Offset<fb::Dim>> dims;
    for (const Dim &d : t.shape) dims.push_back(fb::CreateDim(fbb, d.isStatic() ? d.value : -1, d.isStatic() ? 0 : str(d.symbol)));
    tensors.push_back(fb::CreateTensor(fbb, str(t.name), fb::DType(t.dtype), fbb.CreateVector(dims)));
  }
  std::vector<flatbuffers::Offset<fb::Kernel>> kernels;
  for (const KernelSpec &k : spec.kernels) {
    std::vector<flatbuffers::Offset<fb::Attr>> attrs;
    for (const auto &[name, value] : k.attrs) { // std::map: sorted, deterministic
      auto n = str(name);
      if (auto *i = std::get_if<int64_t>(&value)) attrs.push_back(fb::CreateAttr(fbb, n, fb::AttrKind::Int, *i));
      else if (auto *f = std::get_if<double>(&value)) attrs.push_back(fb::CreateAttr(fbb, n, fb::AttrKind::Float, 0, *f));
      else if (auto *s = std::get_if<std::string>(&value)) attrs.push_back(fb::CreateAttr(fbb, n, fb::AttrKind::String, 0, 0, str(*s)));
      else attrs.push_back(fb::CreateAttr(fbb, n, fb::AttrKind::Ints, 0, 0, 0, fbb.CreateVector(std::get<std::vector<int64_t>>(value))));
    }
    kernels.push_back(fb::CreateKernel(fbb, str(k.op), fbb.CreateVector(k.inputs), fbb.CreateVector(k.outputs),
                                       fbb.CreateVector(attrs), str(k.source), str(k.weightFormat)));
  }
  std::vector<flatbuffers::Offset<fb::Weight>> weights;
  uint64_t weightsSize = 0;
  for (const WeightSpec &w : spec.weights) {
    const TensorSpec &t = spec.tensors[size_t(w.tensor)];
    std::vector<int64_t> shape;
    for (const Dim &d : t.shape) shape.push_back(d.value);
    weights.push_back(fb::CreateWeight(fbb, w.tensor, weightsSize, w.bytes, fb::DType(t.dtype), fbb.CreateVector(shape)));
    weightsSize = alignUp(weightsSize + w.bytes);
  }
  std::vector<flatbuffers::Offset<fb::Layer>> layers;
  for (const LayerEntry &l : spec.manifest)
    layers.push_back(fb::CreateLayer(fbb, str(l.source), str(l.op), str(l.weightFormat), l.weightBytes));
  flatbuffers::Offset<flatbuffers::Vector<uint8_t>> tokenizer;
  if (spec.vocabulary) {
    std::string bytes = encodeVocabulary(*spec.vocabulary);
    tokenizer = fbb.CreateVector(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
  }
  auto target = fb::CreateTarget(fbb, str(spec.isa), fbb.CreateVector(spec.cudaArchs));
  auto root = fb::CreateArtifact(fbb, kFormatMajor, kFormatMinor, str(spec.compilerVersion), str(spec.sourceModel),
                                 str(spec.pipeline), target, fbb.CreateVector(tensors), fbb.CreateVector(spec.inputs),
                                 fbb.CreateVector(spec.outputs), fbb.CreateVector(kernels), fbb.CreateVector(weights),
                                 fbb.CreateVector(layers), tokenizer);
  fbb.Finish(root, fb::ArtifactIdentifier());

  const uint64_t fbOffset = kPreambleSize, fbSize = fbb.GetSize();
  const uint64_t weightsOffset = alignUp(fbOffset + fbSize);
  const uint64_t fileSize = weightsOffset + weightsSize;
  // The header part is built in memory; weights are streamed (they may be large)
  // but the checksum needs them too, so hash in one pass over the pieces.
  std::vector<uint8_t> head(weightsOffset, 0);
  std::memcpy(head.data(), kMagic, 8);
  putU16(head, 8, kFormatMajor);
  putU16(head, 10, kFormatMinor);
  putU32(head, 12, uint32_t(kPreambleSize));
  putU64(head, 16, fbOffset);
  putU64(head, 24, fbSize);
  putU64(head, 32, weightsOffset);
  putU64(head, 40, weightsSize);
  putU64(head, 48, fileSize);
  std::memcpy(head.data() + fbOffset, fbb.GetBufferPointer(), fbSize);

  // The checksum is defined over the contiguous file; assemble it. Artifacts
  // are bounded by available memory here, which the compiler already holds.
  std::vector<uint8_t> file(fileSize, 0);
  std::memcpy(file.data(), head.data(), head.size());
  uint64_t at = weightsOffset;
  for (const WeightSpec &w : spec.weights) {
    if (w.bytes) std::memcpy(file.data() + at, w.data, w.bytes);
    at = alignUp(at + w.bytes);
  }
  putU64(file, kChecksumOffset, checksum64(file.data(), file.size()));

  // An unnamed file in the target's folder (O_TMPFILE) gets a name only once it
  // is complete, so a compile killed while writing leaves nothing behind; the
  // name is then renamed over `path`, so readers see the old file or the new one.
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
  bool anonymous = true;
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) { // file systems without O_TMPFILE: a named temporary file
    anonymous = false;
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  }
  if (fd < 0) return "cannot write artifact '" + path + "': cannot create '" + tmp + "': " + std::strerror(errno);
  std::string err = writeAll(fd, file.data(), file.size());
  if (err.empty() && ::fsync(fd) != 0) err = std::strerror(errno);
  if (err.empty() && anonymous) {
    ::unlink(tmp.c_str()); // a stale name from an earlier process with this pid
    const std::string self = "/proc/self/fd/" + std::to_string(fd);
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, tmp.c_str(), AT_SYMLINK_FOLLOW) != 0) err = std::strerror(errno);
  }
  if (::close(fd) != 0 && err.empty()) err = std::strerror(errno);
  if (err.empty() && std::rename(tmp.c_str(), path.c_str()) != 0) err = std::strerror(errno);
  if (!err.empty()) {
    ::unlink(tmp.c_str());
    return "cannot write artifact '" + path + "': " + err;
  }
  return "";
}

} // namespace lathe::artifact
