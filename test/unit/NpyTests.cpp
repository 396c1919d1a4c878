#include "TestGraph.h"
#include "runtime/io/Npy.h"

#include <catch2/catch.hpp>
#include <fstream>

using namespace lathe;
using namespace lathe::test;

TEST_CASE("npy round trip", "[npy]") {
  for (DType t : {DType::F32, DType::F16, DType::F64, DType::I64, DType::I32, DType::I8, DType::U8, DType::Bool}) {
    Tensor x = Tensor::zeros(t, {2, 3, 5});
    auto *bytes = static_cast<uint8_t *>(x.data());
    for (size_t i = 0; i < x.bytes(); ++i) bytes[i] = t == DType::Bool ? uint8_t(i % 2) : uint8_t(i * 7 + 1);
    std::string p = tempPath(std::string("rt_") + dtypeName(t) + ".npy");
    REQUIRE(io::writeNpy(p, x).ok());
    auto y = io::readNpy(p);
    INFO(y.error());
    REQUIRE(y.ok());
    CHECK(y->dtype() == t);
    CHECK(y->shape() == x.shape());
    CHECK(std::memcmp(y->data(), x.data(), x.bytes()) == 0);
  }
  Tensor scalar = Tensor::zeros(DType::F32, {});
  REQUIRE(io::writeNpy(tempPath("s.npy"), scalar).ok());
  auto s = io::readNpy(tempPath("s.npy"));
  REQUIRE(s.ok());
  CHECK(s->shape().empty());
}

TEST_CASE("bad npy files", "[npy]") {
  auto write = [](const std::string &name, const std::string &content) {
    std::string p = tempPath(name);
    std::ofstream(p, std::ios::binary) << content;
    return p;
  };
  auto header = [](const std::string &dict) {
    std::string h = dict;
    while ((10 + h.size() + 1) % 64) h += ' ';
    h += '\n';
    return std::string("\x93NUMPY\x01\x00", 8) + char(h.size() & 0xff) + char(h.size() >> 8) + h;
  };
  CHECK_THAT(io::readNpy(write("magic.npy", "hello world, not numpy")).error(), Catch::Contains("bad magic"));
  CHECK_THAT(io::readNpy(tempPath("missing.npy")).error(), Catch::Contains("cannot open"));
  CHECK_THAT(io::readNpy(write("dtype.npy", header("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }") + std::string(16, '\0'))).error(),
             Catch::Contains("unsupported dtype '<c8'"));
  CHECK_THAT(io::readNpy(write("fortran.npy", header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }") + std::string(16, '\0'))).error(),
             Catch::Contains("Fortran"));
  CHECK_THAT(io::readNpy(write("trunc.npy", header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }") + std::string(10, '\0'))).error(),
             Catch::Contains("truncated data"));
  CHECK_THAT(io::readNpy(write("hdr.npy", std::string("\x93NUMPY\x01\x00\xff\x00{'descr'", 17))).error(), Catch::Contains("truncated header"));
  CHECK_THAT(io::readNpy(write("bigendian.npy", header("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }") + std::string(4, '\0'))).error(),
             Catch::Contains("unsupported dtype"));
}
