// fuzz/fuzz_common.hpp - the one rule every flowless fuzz target checks:
// any input either parses or throws flowless::Error. Any other exception
// (std::out_of_range, std::bad_alloc, ...) aborts, so libFuzzer reports it
// as a crash; crashes, leaks, undefined behaviour and huge allocations are
// caught by the sanitizers and by -rss_limit_mb / -malloc_limit_mb.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

#include "flowless/core/error.hpp"

namespace flowless::fuzz {

template <class F>
void guarded(F&& f) {
  try {
    f();
  } catch (const flowless::Error& e) {
    // Expected for bad input. Errors must name the input (the context).
    if (std::string(e.what()).find("fuzz") == std::string::npos) {
      std::fprintf(stderr, "flowless::Error that does not name the input: %s\n", e.what());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "non-flowless exception %s: %s\n", typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "non-std exception\n");
    std::abort();
  }
}

/// Property check inside a target: aborts with a message.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
  }
}

inline std::string as_string(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace flowless::fuzz
