// flowless/core/error.hpp - the one error type of the library.
//
// Every failure the library reports is a flowless::Error whose what() reads
//   "<context>: <message> [<file>:<line>]"
// where <context> names the thing being processed (usually a file path) when
// one is known. Bad input is always an Error, never a crash or a silent
// wrong answer.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace flowless {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline std::string error_location(const char* file, int line) {
  std::string f(file);
  auto pos = f.rfind("include/");
  if (pos != std::string::npos) f = f.substr(pos + 8);
  return " [" + f + ":" + std::to_string(line) + "]";
}

template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

}  // namespace flowless

/// Throws flowless::Error with the streamed message and the call site.
#define FLOWLESS_FAIL(...)                                                      \
  throw ::flowless::Error(::flowless::detail::concat(__VA_ARGS__) +             \
                          ::flowless::detail::error_location(__FILE__, __LINE__))

/// Checks a precondition; on failure throws with the streamed message.
#define FLOWLESS_CHECK(cond, ...)                                               \
  do {                                                                          \
    if (!(cond)) FLOWLESS_FAIL(__VA_ARGS__);                                    \
  } while (0)
