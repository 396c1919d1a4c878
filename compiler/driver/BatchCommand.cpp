// lathe batch: compile many models, each in its own process (a crash in one
// cannot stop the others), -j workers, skipping outputs that are up to date.
#include "compiler/driver/Commands.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
namespace fs = std::filesystem;

namespace lathe::driver {
namespace {

struct Job {
  std::string input, output;
  std::vector<std::string> options;
  std::string status = "pending"; // ok, up to date, failed
  std::string message;
  double seconds = 0;
  pid_t pid = -1;
  std::chrono::steady_clock::time_point start;
  std::string log;
};

/// What the output was made from: input identity, options and compiler.
std::string stampOf(const Job &job, const std::string &self) {
  std::ostringstream os;
  auto describe = [&](const std::string &path) {
    std::error_code ec;
    auto size = fs::file_size(path, ec);
    auto time = fs::last_write_time(path, ec).time_since_epoch().count();
    os << path << ":" << size << ":" << time << "\n";
  };
  describe(job.input);
  describe(self);
  for (const auto &o : job.options) os << o << "\n";
  return os.str();
}

std::string stampPath(const Job &job) {
  fs::path out(job.output);
  return (out.parent_path() / ("." + out.filename().string() + ".stamp")).string();
}

std::string readFile(const std::string &path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string firstErrorLine(const std::string &log) {
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line))
    if (line.find("error") != std::string::npos) return line;
  return log.substr(0, log.find('\n'));
}

bool launch(Job &job, const std::string &self, const std::string &logDir, int index) {
  job.log = logDir + "/" + std::to_string(index) + ".log";
  std::vector<std::string> args{self, "compile", job.input, "-o", job.output};
  args.insert(args.end(), job.options.begin(), job.options.end());
  std::vector<char *> argv;
  for (auto &a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, job.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  job.start = std::chrono::steady_clock::now();
  int rc = posix_spawn(&job.pid, self.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    job.status = "failed";
    job.message = std::string("cannot start a worker: ") + std::strerror(rc);
    return false;
  }
  return true;
}

} // namespace

int runBatch(const BatchOptions &o) {
  nlohmann::json manifest;
  try {
    std::ifstream in(o.manifest);
    if (!in) {
      std::cerr << "error: cannot open manifest " << o.manifest << "\n";
      return 1;
    }
    manifest = nlohmann::json::parse(in);
  } catch (const std::exception &e) {
    std::cerr << "error: " << o.manifest << " is not valid JSON: " << e.what() << "\n";
    return 1;
  }
  const nlohmann::json &entries = manifest.is_object() ? manifest["models"] : manifest;
  if (!entries.is_array()) {
    std::cerr << "error: " << o.manifest << ": expected a JSON array of models or {\"models\": [...]}\n";
    return 1;
  }
  fs::path base = fs::path(o.manifest).parent_path();
  auto resolve = [&](const std::string &p) { return fs::path(p).is_absolute() ? p : (base / p).string(); };
  std::vector<Job> jobs;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto &e = entries[i];
    if (!e.is_object() || !e.contains("input") || !e["input"].is_string() || !e.contains("output") ||
        !e["output"].is_string()) {
      std::cerr << "error: " << o.manifest << ": model " << i << " needs string fields \"input\" and \"output\"\n";
      return 1;
    }
    Job job;
    job.input = resolve(e["input"]);
    job.output = resolve(e["output"]);
    if (e.contains("options")) {
      if (!e["options"].is_array()) {
        std::cerr << "error: " << o.manifest << ": model " << i << ": \"options\" must be an array of strings\n";
        return 1;
      }
      for (const auto &opt : e["options"]) {
        if (!opt.is_string()) {
          std::cerr << "error: " << o.manifest << ": model " << i << ": every option must be a string\n";
          return 1;
        }
        job.options.push_back(opt);
      }
    }
    jobs.push_back(std::move(job));
  }

  std::string self = fs::read_symlink("/proc/self/exe").string();
  std::string logDir = (fs::temp_directory_path() / ("lathe-batch-" + std::to_string(getpid()))).string();
  fs::create_directories(logDir);

  size_t next = 0;
  int running = 0;
  std::map<pid_t, size_t> byPid;
  int workers = std::max(1, o.jobs);
  while (next < jobs.size() || running > 0) {
    while (running < workers && next < jobs.size()) {
      Job &job = jobs[next];
      size_t index = next++;
      if (!o.force && fs::exists(job.output) && fs::exists(stampPath(job)) &&
          readFile(stampPath(job)) == stampOf(job, self)) {
        job.status = "up to date";
        continue;
      }
      if (launch(job, self, logDir, int(index))) {
        byPid[job.pid] = index;
        ++running;
      }
    }
    if (running == 0) continue;
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    auto it = byPid.find(pid);
    if (it == byPid.end()) continue;
    Job &job = jobs[it->second];
    --running;
    job.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - job.start).count();
    std::string log = readFile(job.log);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      job.status = "ok";
      std::ofstream(stampPath(job)) << stampOf(job, self);
    } else {
      job.status = "failed";
      job.message = WIFSIGNALED(status) ? "crashed (signal " + std::to_string(WTERMSIG(status)) + ")"
                                        : firstErrorLine(log);
      fs::remove(stampPath(job));
    }
  }
  fs::remove_all(logDir);

  size_t width = 5;
  for (const auto &j : jobs) width = std::max(width, j.input.size());
  int failed = 0;
  std::cout << std::left << std::setw(int(width)) << "model" << "  " << std::setw(10) << "status" << "  "
            << std::right << std::setw(8) << "seconds" << "  message\n";
  for (const auto &j : jobs) {
    failed += j.status == "failed";
    std::cout << std::left << std::setw(int(width)) << j.input << "  " << std::setw(10) << j.status << "  "
              << std::right << std::setw(8) << std::fixed << std::setprecision(2) << j.seconds << "  " << j.message
              << "\n";
  }
  size_t ok = std::count_if(jobs.begin(), jobs.end(), [](const Job &j) { return j.status == "ok"; });
  size_t fresh = std::count_if(jobs.begin(), jobs.end(), [](const Job &j) { return j.status == "up to date"; });
  std::cout << jobs.size() << " models: " << ok << " compiled, " << fresh << " up to date, " << failed << " failed\n";
  return failed ? 1 : 0;
}

} // namespace lathe::driver
