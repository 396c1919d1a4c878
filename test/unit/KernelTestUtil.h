// Catch2 helpers shared by the kernel tests.
#pragma once

#include "TestGraph.h"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

namespace lathe::test {

/// Opens g at an instruction-set level ("" = the best) and runs it once; the
/// test fails with the session's message on any error.
inline std::vector<NamedTensor> runOne(Graph &g, const std::map<std::string, Tensor> &inputs, const std::string &isa = "",
                                       int threads = 1) {
  auto session = g.open(isa, threads);
  INFO(session.error());
  REQUIRE(session.ok());
  auto out = (*session)->run(inputs);
  INFO(out.error());
  REQUIRE(out.ok());
  return std::move(*out);
}

} // namespace lathe::test
