// flowless/io/file.hpp - whole-file reads and crash-safe writes.
//
// read_file: the bytes of a file; Error naming the path if it cannot be read
// (missing, unreadable, a directory).
// write_file_atomic: writes to "<path>.tmp.<pid>" in the same folder, flushes,
// then renames over <path>, so a crash never leaves a half-written file and
// the previous version survives until the new one is complete.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "flowless/core/error.hpp"

namespace flowless::io {

inline bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

inline bool dir_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// Error naming the path when it exists but is a directory (an ifstream opens
/// a directory on Linux and reports an absurd size for it).
inline void check_not_directory(const std::string& path) {
  FLOWLESS_CHECK(!dir_exists(path), path, ": is a directory, not a file");
}

inline std::string read_file(const std::string& path) {
  check_not_directory(path);
  std::ifstream f(path, std::ios::binary);
  FLOWLESS_CHECK(f.good(), path, ": cannot open file (", std::strerror(errno), ")");
  std::string data;
  f.seekg(0, std::ios::end);
  auto size = f.tellg();
  FLOWLESS_CHECK(size >= 0, path, ": cannot determine file size");
  data.resize(static_cast<size_t>(size));
  f.seekg(0, std::ios::beg);
  if (size > 0) f.read(data.data(), size);
  FLOWLESS_CHECK(f.good() || f.eof(), path, ": read error");
  return data;
}

inline void write_file_atomic(const std::string& path, const void* data, size_t size) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  FLOWLESS_CHECK(f != nullptr, path, ": cannot open for writing (", std::strerror(errno), ")");
  bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  ok = (std::fflush(f) == 0) && ok;
  ok = (::fsync(::fileno(f)) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    FLOWLESS_FAIL(path, ": write failed (", std::strerror(errno), ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    FLOWLESS_FAIL(path, ": cannot rename temporary file into place (", std::strerror(e), ")");
  }
}

inline void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

/// mkdir -p
inline void make_dirs(const std::string& path) {
  if (path.empty() || dir_exists(path)) return;
  auto pos = path.find_last_of('/');
  if (pos != std::string::npos && pos > 0) make_dirs(path.substr(0, pos));
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    FLOWLESS_FAIL(path, ": cannot create directory (", std::strerror(errno), ")");
}

}  // namespace flowless::io
