// tests/test_util.hpp - helpers shared by the test files.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace flowless::test {

/// A scratch folder "/tmp/flowless_test_<name>_<pid>", created on construction
/// and removed with everything in it on destruction. Each test file keeps one
/// as a function-local static: `static const ScratchDir d("io"); return d.path;`.
struct ScratchDir {
  std::string path;
  explicit ScratchDir(const std::string& name)
      : path("/tmp/flowless_test_" + name + "_" + std::to_string(::getpid())) {
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

}  // namespace flowless::test
