// The `lathe` subcommands. Each returns the process exit code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lathe::driver {

int runCheck(const std::string &model);

struct InspectOptions {
  std::string input;
  int64_t batch = 1;
  int64_t seq = 128;
};
int runInspect(const InspectOptions &options);

struct BatchOptions {
  std::string manifest;
  int jobs = 1;
  bool force = false;
};
int runBatch(const BatchOptions &options);

} // namespace lathe::driver
