// tests/test_util.hpp - helpers shared by the test files.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "flowless/core/error.hpp"

namespace flowless::test {

/// The message of the flowless::Error that f() throws, or a marker that
/// none was thrown (which no expected substring matches).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const flowless::Error& e) {
    return e.what();
  }
  return "<no flowless::Error thrown>";
}

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

// Checks that expr throws flowless::Error whose message holds every listed substring.
#define FLOWLESS_CHECK_ERROR(expr, ...)                                                    \
  do {                                                                                     \
    const std::string fl_msg_ = ::flowless::test::error_of([&] { (void)(expr); });         \
    INFO("error message: " << fl_msg_);                                                    \
    for (const char* fl_s_ : {__VA_ARGS__}) CHECK(fl_msg_.find(fl_s_) != std::string::npos); \
  } while (0)
