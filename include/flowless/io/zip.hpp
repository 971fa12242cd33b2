// flowless/io/zip.hpp - the ZIP subset used by .npz files and PyTorch
// checkpoints: stored (uncompressed) entries, ZIP64 included.
//
// ZipReader reads the central directory once (from a file, reading only the
// directory, or from bytes in memory) and each entry on demand:
//   * every offset and size is checked against the archive size before use,
//     so a truncated or hostile archive is an Error naming the archive and
//     the problem, and nothing is ever allocated beyond the archive's size;
//   * ZIP64 end-of-directory records and ZIP64 extra fields are understood;
//   * read() returns the bytes of a stored entry after checking its CRC-32;
//     a compressed (deflate, ...) or encrypted entry is an Error (check
//     ZipEntry::method first to give a more specific hint).
// ZipWriter builds a stored archive in memory (CRC-32 filled in, fixed
// timestamp 1980-01-01 so output is reproducible); archives that would need
// ZIP64 (entries >= 4 GiB or >= 65535 entries) are refused with an Error.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/io/file.hpp"

namespace flowless::io {

inline uint32_t crc32(const void* data, size_t n, uint32_t crc = 0) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflate, ...
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;  // uncompressed
  uint64_t local_header_offset = 0;
};

namespace detail {
inline uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
inline uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | (uint64_t(rd32(p + 4)) << 32); }
inline void wr16(std::string& s, uint32_t v) {
  s.push_back(char(v & 0xff));
  s.push_back(char((v >> 8) & 0xff));
}
inline void wr32(std::string& s, uint32_t v) {
  wr16(s, v & 0xffff);
  wr16(s, v >> 16);
}

// Random access to the archive bytes: a file or a string in memory.
class ZipSource {
 public:
  virtual ~ZipSource() = default;
  virtual uint64_t size() const = 0;
  // Bytes [off, off+n); the caller has checked the range.
  virtual std::string read_at(uint64_t off, uint64_t n) const = 0;
};

class MemorySource : public ZipSource {
 public:
  explicit MemorySource(std::string b) : bytes_(std::move(b)) {}
  uint64_t size() const override { return bytes_.size(); }
  std::string read_at(uint64_t off, uint64_t n) const override {
    return bytes_.substr(static_cast<size_t>(off), static_cast<size_t>(n));
  }

 private:
  std::string bytes_;
};

class FileSource : public ZipSource {
 public:
  explicit FileSource(const std::string& path) : path_((check_not_directory(path), path)), f_(path, std::ios::binary) {
    FLOWLESS_CHECK(f_.good(), path, ": cannot open file (", std::strerror(errno), ")");
    f_.seekg(0, std::ios::end);
    auto s = f_.tellg();
    FLOWLESS_CHECK(s >= 0, path, ": cannot determine file size");
    size_ = static_cast<uint64_t>(s);
  }
  uint64_t size() const override { return size_; }
  std::string read_at(uint64_t off, uint64_t n) const override {
    std::string out(static_cast<size_t>(n), '\0');
    if (n == 0) return out;
    f_.clear();
    f_.seekg(static_cast<std::streamoff>(off));
    f_.read(out.data(), static_cast<std::streamsize>(n));
    FLOWLESS_CHECK(f_.good() && uint64_t(f_.gcount()) == n, path_, ": read error at offset ", off);
    return out;
  }

 private:
  std::string path_;
  mutable std::ifstream f_;
  uint64_t size_ = 0;
};
}  // namespace detail

class ZipReader {
 public:
  /// Opens the archive at path (reads only the directory now).
  explicit ZipReader(const std::string& path)
      : ctx_(path), src_(std::make_shared<detail::FileSource>(path)) {
    parse_directory();
  }
  /// An archive held in memory; context names it in errors.
  static ZipReader from_bytes(std::string bytes, const std::string& context) {
    return ZipReader(std::make_shared<detail::MemorySource>(std::move(bytes)), context);
  }

  const std::string& context() const { return ctx_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  /// nullptr when absent.
  const ZipEntry* find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }

  /// Bytes of a stored entry (CRC checked).
  std::string read(const ZipEntry& e) const {
    const std::string where = ctx_ + ": entry '" + e.name + "'";
    FLOWLESS_CHECK(!(e.flags & 1u), where, " is encrypted");
    FLOWLESS_CHECK(e.method != 8, where,
                   " is deflate-compressed; flowless reads only stored (uncompressed) archives");
    FLOWLESS_CHECK(e.method == 0, where, " uses compression method ", e.method,
                   "; flowless reads only stored (uncompressed) archives");
    FLOWLESS_CHECK(e.compressed_size == e.size, where, " is stored but its sizes differ (", e.compressed_size,
                   " vs ", e.size, ")");
    const uint64_t fsize = src_->size();
    FLOWLESS_CHECK(e.local_header_offset <= fsize && fsize - e.local_header_offset >= 30, where,
                   ": local header at offset ", e.local_header_offset, " is beyond the archive size ", fsize);
    std::string lh = src_->read_at(e.local_header_offset, 30);
    const auto* p = reinterpret_cast<const uint8_t*>(lh.data());
    FLOWLESS_CHECK(detail::rd32(p) == 0x04034b50u, where, ": bad local header signature at offset ",
                   e.local_header_offset);
    const uint64_t nlen = detail::rd16(p + 26), elen = detail::rd16(p + 28);
    const uint64_t data_off = e.local_header_offset + 30 + nlen + elen;
    FLOWLESS_CHECK(data_off <= fsize && fsize - data_off >= e.size, where, ": data (", e.size,
                   " bytes at offset ", data_off, ") extends beyond the archive size ", fsize);
    FLOWLESS_CHECK(src_->read_at(e.local_header_offset + 30, nlen) == e.name, where,
                   ": local header names a different file");
    std::string data = src_->read_at(data_off, e.size);
    FLOWLESS_CHECK(crc32(data.data(), data.size()) == e.crc32, where, ": CRC-32 mismatch (corrupt archive)");
    return data;
  }
  /// Bytes of the named entry; Error if absent.
  std::string read(const std::string& name) const {
    const ZipEntry* e = find(name);
    FLOWLESS_CHECK(e != nullptr, ctx_, ": archive has no entry '", name, "'");
    return read(*e);
  }

 private:
  ZipReader(std::shared_ptr<detail::ZipSource> src, std::string ctx) : ctx_(std::move(ctx)), src_(std::move(src)) {
    parse_directory();
  }

  void parse_directory() {
    using detail::rd16;
    using detail::rd32;
    using detail::rd64;
    const uint64_t fsize = src_->size();
    FLOWLESS_CHECK(fsize >= 22, ctx_, ": not a ZIP archive (", fsize, " bytes is too small)");
    const uint64_t tail_len = std::min<uint64_t>(fsize, 22 + 65535);
    const uint64_t tail_off = fsize - tail_len;
    const std::string tail = src_->read_at(tail_off, tail_len);
    const auto* t = reinterpret_cast<const uint8_t*>(tail.data());
    int64_t eocd = -1;
    for (int64_t i = int64_t(tail_len) - 22; i >= 0; --i) {
      if (rd32(t + i) == 0x06054b50u && uint64_t(i) + 22 + rd16(t + i + 20) <= tail_len) {
        eocd = i;
        break;
      }
    }
    FLOWLESS_CHECK(eocd >= 0, ctx_, ": not a ZIP archive (no end-of-central-directory record; truncated?)");
    const uint8_t* e = t + eocd;
    uint64_t n_entries = rd16(e + 10);
    uint64_t cd_size = rd32(e + 12);
    uint64_t cd_off = rd32(e + 16);
    const uint64_t eocd_abs = tail_off + uint64_t(eocd);
    // ZIP64: a locator sits right before the classic record.
    if (eocd_abs >= 20) {
      std::string loc = src_->read_at(eocd_abs - 20, 20);
      const auto* l = reinterpret_cast<const uint8_t*>(loc.data());
      if (rd32(l) == 0x07064b50u) {
        const uint64_t z64_off = rd64(l + 8);
        FLOWLESS_CHECK(z64_off <= eocd_abs - 20 && eocd_abs - 20 - z64_off >= 56, ctx_,
                       ": ZIP64 end-of-directory offset ", z64_off, " is out of range");
        std::string z = src_->read_at(z64_off, 56);
        const auto* zp = reinterpret_cast<const uint8_t*>(z.data());
        FLOWLESS_CHECK(rd32(zp) == 0x06064b50u, ctx_, ": bad ZIP64 end-of-directory signature");
        n_entries = rd64(zp + 32);
        cd_size = rd64(zp + 40);
        cd_off = rd64(zp + 48);
      }
    }
    FLOWLESS_CHECK(cd_off <= eocd_abs && cd_size <= eocd_abs - cd_off, ctx_, ": central directory (offset ", cd_off,
                   ", ", cd_size, " bytes) lies outside the archive (", fsize, " bytes)");
    FLOWLESS_CHECK(n_entries <= cd_size / 46, ctx_, ": central directory claims ", n_entries,
                   " entries but has only ", cd_size, " bytes");
    const std::string cd = src_->read_at(cd_off, cd_size);
    const auto* c = reinterpret_cast<const uint8_t*>(cd.data());
    uint64_t pos = 0;
    entries_.reserve(static_cast<size_t>(n_entries));
    for (uint64_t k = 0; k < n_entries; ++k) {
      FLOWLESS_CHECK(cd_size - pos >= 46, ctx_, ": central directory truncated at entry ", k);
      const uint8_t* h = c + pos;
      FLOWLESS_CHECK(rd32(h) == 0x02014b50u, ctx_, ": bad central directory signature at entry ", k);
      ZipEntry ze;
      ze.flags = rd16(h + 8);
      ze.method = rd16(h + 10);
      ze.crc32 = rd32(h + 16);
      ze.compressed_size = rd32(h + 20);
      ze.size = rd32(h + 24);
      const uint64_t nlen = rd16(h + 28), elen = rd16(h + 30), clen = rd16(h + 32);
      ze.local_header_offset = rd32(h + 42);
      FLOWLESS_CHECK(cd_size - pos - 46 >= nlen + elen + clen, ctx_, ": central directory truncated at entry ", k);
      ze.name.assign(reinterpret_cast<const char*>(h + 46), static_cast<size_t>(nlen));
      // ZIP64 extra field: 64-bit values for the fields saturated at 0xFFFFFFFF, in order.
      const uint8_t* x = h + 46 + nlen;
      uint64_t xp = 0;
      while (xp + 4 <= elen) {
        const uint16_t id = rd16(x + xp), len = rd16(x + xp + 2);
        FLOWLESS_CHECK(xp + 4 + len <= elen, ctx_, ": entry '", ze.name, "': malformed extra field");
        if (id == 0x0001) {
          uint64_t q = xp + 4;
          const uint64_t qend = q + len;
          auto take = [&](uint64_t& field) {
            if (field != 0xFFFFFFFFu) return;
            FLOWLESS_CHECK(q + 8 <= qend, ctx_, ": entry '", ze.name, "': ZIP64 extra field too short");
            field = rd64(x + q);
            q += 8;
          };
          take(ze.size);
          take(ze.compressed_size);
          take(ze.local_header_offset);
        }
        xp += 4 + len;
      }
      FLOWLESS_CHECK(ze.local_header_offset < cd_off, ctx_, ": entry '", ze.name,
                     "': local header offset ", ze.local_header_offset, " is beyond the entries area");
      FLOWLESS_CHECK(ze.compressed_size <= fsize, ctx_, ": entry '", ze.name, "' claims ", ze.compressed_size,
                     " bytes, more than the archive size ", fsize);
      FLOWLESS_CHECK(index_.find(ze.name) == index_.end(), ctx_, ": duplicate entry '", ze.name, "'");
      index_[ze.name] = entries_.size();
      entries_.push_back(std::move(ze));
      pos += 46 + nlen + elen + clen;
    }
  }

  std::string ctx_;
  std::shared_ptr<detail::ZipSource> src_;
  std::vector<ZipEntry> entries_;
  std::map<std::string, size_t> index_;
};

/// True when the file starts with a ZIP local header signature.
inline bool is_zip_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char m[4] = {0, 0, 0, 0};
  if (!f.read(m, 4)) return false;
  return m[0] == 'P' && m[1] == 'K' && m[2] == 3 && m[3] == 4;
}

class ZipWriter {
 public:
  /// context names the archive in errors.
  explicit ZipWriter(std::string context = "zip") : ctx_(std::move(context)) {}

  void add(const std::string& name, const std::string& data) { add(name, data.data(), data.size()); }
  void add(const std::string& name, const void* data, size_t n) {
    FLOWLESS_CHECK(!finished_, ctx_, ": add('", name, "') after finish()");
    FLOWLESS_CHECK(!name.empty() && name.size() < 0xFFFF, ctx_, ": invalid entry name '", name, "'");
    FLOWLESS_CHECK(names_.insert(name).second, ctx_, ": duplicate entry '", name, "'");
    FLOWLESS_CHECK(uint64_t(n) < 0xFFFFFFFFull && uint64_t(out_.size()) < 0xFFFFFFFFull, ctx_, ": entry '", name,
                   "' would need ZIP64 (4 GiB limit), which this writer does not produce");
    FLOWLESS_CHECK(entries_.size() < 0xFFFF, ctx_, ": too many entries for a non-ZIP64 archive");
    ZipEntry e;
    e.name = name;
    e.crc32 = crc32(data, n);
    e.size = e.compressed_size = n;
    e.local_header_offset = out_.size();
    e.flags = utf8_flag(name);
    using detail::wr16;
    using detail::wr32;
    wr32(out_, 0x04034b50u);
    wr16(out_, 20);  // version needed
    wr16(out_, e.flags);
    wr16(out_, 0);     // stored
    wr16(out_, 0);     // time 00:00
    wr16(out_, 0x21);  // date 1980-01-01
    wr32(out_, e.crc32);
    wr32(out_, uint32_t(n));
    wr32(out_, uint32_t(n));
    wr16(out_, uint32_t(name.size()));
    wr16(out_, 0);
    out_ += name;
    out_.append(static_cast<const char*>(data), n);
    FLOWLESS_CHECK(uint64_t(out_.size()) < 0xFFFFFFFFull, ctx_,
                   ": archive would exceed 4 GiB (needs ZIP64, which this writer does not produce)");
    entries_.push_back(std::move(e));
  }

  /// The complete archive bytes.
  std::string finish() {
    FLOWLESS_CHECK(!finished_, ctx_, ": finish() called twice");
    finished_ = true;
    using detail::wr16;
    using detail::wr32;
    const uint64_t cd_off = out_.size();
    for (const ZipEntry& e : entries_) {
      wr32(out_, 0x02014b50u);
      wr16(out_, 20);  // made by
      wr16(out_, 20);  // needed
      wr16(out_, e.flags);
      wr16(out_, 0);
      wr16(out_, 0);
      wr16(out_, 0x21);
      wr32(out_, e.crc32);
      wr32(out_, uint32_t(e.compressed_size));
      wr32(out_, uint32_t(e.size));
      wr16(out_, uint32_t(e.name.size()));
      wr16(out_, 0);  // extra
      wr16(out_, 0);  // comment
      wr16(out_, 0);  // disk
      wr16(out_, 0);  // internal attrs
      wr32(out_, 0);  // external attrs
      wr32(out_, uint32_t(e.local_header_offset));
      out_ += e.name;
    }
    const uint64_t cd_size = out_.size() - cd_off;
    FLOWLESS_CHECK(uint64_t(out_.size()) < 0xFFFFFFFFull, ctx_,
                   ": archive would exceed 4 GiB (needs ZIP64, which this writer does not produce)");
    wr32(out_, 0x06054b50u);
    wr16(out_, 0);
    wr16(out_, 0);
    wr16(out_, uint32_t(entries_.size()));
    wr16(out_, uint32_t(entries_.size()));
    wr32(out_, uint32_t(cd_size));
    wr32(out_, uint32_t(cd_off));
    wr16(out_, 0);
    return std::move(out_);
  }

 private:
  static uint16_t utf8_flag(const std::string& s) {
    for (unsigned char ch : s)
      if (ch >= 0x80) return 0x0800;
    return 0;
  }
  std::string ctx_;
  std::string out_;
  std::vector<ZipEntry> entries_;
  std::set<std::string> names_;
  bool finished_ = false;
};

}  // namespace flowless::io
