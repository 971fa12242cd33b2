// Tests of flowless/io: arrays, .npy/.npz, ZIP, safetensors, PyTorch checkpoints.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <string>
#include <unistd.h>
#include <vector>

#include "flowless/io/array.hpp"
#include "flowless/io/npy.hpp"
#include "flowless/io/pth.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/io/zip.hpp"
#include "test_util.hpp"

namespace fio = flowless::io;
using fio::Array;
using fio::DType;

namespace {

std::string io_data(const std::string& rel) { return std::string(FLOWLESS_TEST_DATA) + "/" + rel; }

std::string io_tmp(const std::string& name) {
  static const flowless::test::ScratchDir dir("io");
  return dir.path + "/" + name;
}

template <class T>
std::vector<T> io_values(const Array& a) {
  REQUIRE(a.data.size() % sizeof(T) == 0);
  std::vector<T> v(a.data.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), a.data.data(), a.data.size());
  return v;
}

template <class T>
Array io_make(DType t, std::vector<int64_t> shape, const std::vector<T>& vals) {
  Array a;
  a.dtype = t;
  a.shape = std::move(shape);
  a.data.resize(vals.size() * sizeof(T));
  if (!vals.empty()) std::memcpy(a.data.data(), vals.data(), a.data.size());
  REQUIRE(a.data.size() == size_t(a.numel()) * fio::dtype_size(t));
  return a;
}

std::string le32(uint32_t v) {
  std::string s;
  for (int k = 0; k < 4; ++k) s.push_back(char((v >> (8 * k)) & 0xff));
  return s;
}
std::string le64(uint64_t v) { return le32(uint32_t(v)) + le32(uint32_t(v >> 32)); }

// Writes pickle opcodes by hand (protocol 2, as torch.save does).
struct PickleBuilder {
  std::string b = std::string("\x80\x02", 2);
  PickleBuilder& op(char c) {
    b += c;
    return *this;
  }
  PickleBuilder& str(const std::string& s) {
    b += 'X';
    b += le32(uint32_t(s.size()));
    b += s;
    return *this;
  }
  PickleBuilder& int32(int32_t v) {
    b += 'J';
    b += le32(uint32_t(v));
    return *this;
  }
  PickleBuilder& global(const std::string& module, const std::string& name) {
    b += 'c';
    b += module + "\n" + name + "\n";
    return *this;
  }
  PickleBuilder& int_tuple(const std::vector<int32_t>& v) {
    op('(');
    for (int32_t x : v) int32(x);
    return op('t');
  }
  // torch._utils._rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
  PickleBuilder& tensor(const std::string& storage_type, const std::string& key, int32_t numel, int32_t offset,
                        const std::vector<int32_t>& size, const std::vector<int32_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').str("storage").global("torch", storage_type).str(key).str("cpu").int32(numel).op('t').op('Q');
    int32(offset).int_tuple(size).int_tuple(stride).op('\x89');
    global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  std::string done() { return b + "."; }
};

// A torch.save-style zip: archive/data.pkl, archive/data/<key>, archive/version.
std::string make_pth(const std::string& name, const std::string& pickle,
                     const std::map<std::string, std::string>& storages, const std::string& byteorder = "") {
  fio::ZipWriter zw(name);
  zw.add("archive/data.pkl", pickle);
  if (!byteorder.empty()) zw.add("archive/byteorder", byteorder);
  for (const auto& [k, v] : storages) zw.add("archive/data/" + k, v);
  zw.add("archive/version", std::string("3\n"));
  const std::string path = io_tmp(name);
  fio::write_file_atomic(path, zw.finish());
  return path;
}

std::string floats_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

std::string write_tmp(const std::string& name, const std::string& bytes) {
  const std::string path = io_tmp(name);
  fio::write_file_atomic(path, bytes);
  return path;
}

}  // namespace

// ---------------------------------------------------------------- Array ----

TEST_CASE("io array: dtype sizes, names, checked shapes and float conversion") {
  CHECK(fio::dtype_size(DType::f16) == 2);
  CHECK(fio::dtype_size(DType::bf16) == 2);
  CHECK(fio::dtype_size(DType::f64) == 8);
  CHECK(fio::dtype_size(DType::boolean) == 1);
  CHECK(std::string(fio::dtype_name(DType::f32)) == "float32");
  CHECK(std::string(fio::dtype_name(DType::u16)) == "uint16");
  CHECK(std::string(fio::dtype_name(DType::boolean)) == "bool");

  Array scalar;
  CHECK(scalar.numel() == 1);
  Array empty;
  empty.shape = {3, 0, 5};
  CHECK(empty.numel() == 0);
  FLOWLESS_CHECK_ERROR(fio::shape_numel({1 << 30, 1 << 30, 1 << 30}, "ctx.bin"), "ctx.bin", "too many elements");
  FLOWLESS_CHECK_ERROR(fio::shape_numel({4, -1}, "neg.bin"), "neg.bin", "negative dimension");

  const float src[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
  Array f = Array::from_float32(src, {2, 3});
  CHECK(f.shape == std::vector<int64_t>{2, 3});
  CHECK(f.to_float32("f") == std::vector<float>(src, src + 6));

  // bf16: top 16 bits of the float; 0x3FC0 = 1.5, 0xC040 = -3.
  Array bf = io_make<uint16_t>(DType::bf16, {2}, {0x3FC0, 0xC040});
  CHECK(bf.to_float32("bf") == std::vector<float>{1.5f, -3.0f});
  Array i8 = io_make<int8_t>(DType::i8, {3}, {-128, 0, 127});
  CHECK(i8.to_float32("i8") == std::vector<float>{-128, 0, 127});
  Array u64 = io_make<uint64_t>(DType::u64, {1}, {uint64_t(1) << 40});
  CHECK(u64.to_float32("u64")[0] == std::ldexp(1.0f, 40));
  Array b = io_make<uint8_t>(DType::boolean, {3}, {1, 0, 1});
  CHECK(b.to_float32("b") == std::vector<float>{1, 0, 1});

  Array bad = f;
  bad.data.pop_back();
  FLOWLESS_CHECK_ERROR(bad.to_float32("weights.bin: 'w'"), "weights.bin: 'w'", "needs 24 bytes");
}

// ------------------------------------------------------------------ npy ----

TEST_CASE("io npy: reference features load as (T, 32) float32") {
  const std::string path = io_data("actionformer_small/vid00.npy");
  Array a = fio::load_npy(path);
  CHECK(a.dtype == DType::f32);
  CHECK(a.shape == std::vector<int64_t>{300, 32});
  // The fixture is stored fortran_order (time-major on disk as the released
  // THUMOS features are): element (t, c) is float number c*300 + t of the file's data.
  const std::string raw = fio::read_file(path);
  REQUIRE(a.data.size() == 300 * 32 * 4);
  const char* disk = raw.data() + raw.size() - a.data.size();
  bool same = true;
  for (int t = 0; t < 300; ++t)
    for (int c = 0; c < 32; ++c) same = same && std::memcmp(a.data.data() + (t * 32 + c) * 4, disk + (c * 300 + t) * 4, 4) == 0;
  CHECK(same);
  CHECK(std::memcmp(a.data.data(), disk, a.data.size()) != 0);
  for (float v : a.to_float32(path)) REQUIRE(std::isfinite(v));
  Array b = fio::load_npy(io_data("actionformer_small/vid02.npy"));
  CHECK(b.shape == std::vector<int64_t>{1400, 32});
}

TEST_CASE("io npy: write/read round trip over dtypes and shapes") {
  std::vector<Array> arrays = {
      io_make<float>(DType::f32, {2, 3}, {1, 2, 3, 4, 5, -6.25f}),
      io_make<double>(DType::f64, {}, {3.141592653589793}),
      io_make<int64_t>(DType::i64, {0, 4}, {}),
      io_make<uint8_t>(DType::u8, {5}, {0, 1, 2, 254, 255}),
      io_make<uint8_t>(DType::boolean, {2, 2}, {1, 0, 0, 1}),
      io_make<uint16_t>(DType::f16, {3}, {0x3C00, 0xC000, 0x7BFF}),
      io_make<int16_t>(DType::i16, {2, 1, 2}, {-32768, 5, 0, 32767}),
      io_make<uint32_t>(DType::u32, {1, 1}, {4000000000u}),
      io_make<int32_t>(DType::i32, {4}, {-1, 2, -3, 4}),
  };
  int k = 0;
  for (const Array& a : arrays) {
    CAPTURE(k);
    const std::string bytes = fio::npy_bytes(a);
    // Header padded so the data starts 64-byte aligned, as numpy writes it.
    CHECK((bytes.size() - a.data.size()) % 64 == 0);
    const std::string path = io_tmp("rt" + std::to_string(k++) + ".npy");
    fio::save_npy(path, a);
    Array b = fio::load_npy(path);
    CHECK(b.dtype == a.dtype);
    CHECK(b.shape == a.shape);
    CHECK(b.data == a.data);
  }
  // f16 0x3C00 = 1, 0xC000 = -2, 0x7BFF = 65504.
  CHECK(arrays[5].to_float32("h") == std::vector<float>{1, -2, 65504});

  Array bf = io_make<uint16_t>(DType::bf16, {1}, {0x3F80});
  FLOWLESS_CHECK_ERROR(fio::save_npy(io_tmp("bf16.npy"), bf), "bf16.npy", "bfloat16");
  Array wrong = io_make<float>(DType::f32, {2}, {1, 2});
  wrong.shape = {3};
  FLOWLESS_CHECK_ERROR(fio::save_npy(io_tmp("wrong.npy"), wrong), "wrong.npy", "needs 12 bytes");
}

TEST_CASE("io npy: big-endian, fortran order, versions 2/3, float16, bool") {
  Array be = fio::load_npy(io_data("io/be_f4.npy"));  // arange(6).reshape(2,3)*1.5-2 as '>f4'
  CHECK(be.dtype == DType::f32);
  CHECK(be.shape == std::vector<int64_t>{2, 3});
  CHECK(be.to_float32("be") == std::vector<float>{-2, -0.5f, 1, 2.5f, 4, 5.5f});
  Array bi = fio::load_npy(io_data("io/be_i8.npy"));
  CHECK(io_values<int64_t>(bi) == std::vector<int64_t>{1, -2, int64_t(3) << 40, -(int64_t(5) << 50)});

  Array f = fio::load_npy(io_data("io/fortran_f8.npy"));  // (2,3,4) = arange(24)/7, fortran-ordered on disk
  CHECK(f.dtype == DType::f64);
  REQUIRE(f.shape == std::vector<int64_t>{2, 3, 4});
  std::vector<double> fv = io_values<double>(f);
  for (int i = 0; i < 24; ++i) CHECK(fv[size_t(i)] == double(i) / 7);

  Array v2 = fio::load_npy(io_data("io/v2_i16.npy"));
  CHECK(io_values<int16_t>(v2) == std::vector<int16_t>{-3, 0, 7});
  Array v3 = fio::load_npy(io_data("io/v3_u8.npy"));
  CHECK(v3.shape == std::vector<int64_t>{2, 2});
  CHECK(io_values<uint8_t>(v3) == std::vector<uint8_t>{1, 2, 3, 255});
  Array bo = fio::load_npy(io_data("io/bool.npy"));
  CHECK(bo.dtype == DType::boolean);
  CHECK(bo.to_float32("b") == std::vector<float>{1, 0, 0, 1});

  // [0, 1, -2.5, 65504, 2^-24 (smallest subnormal), 1e-5 (subnormal), inf, -inf, nan, -0]
  Array h = fio::load_npy(io_data("io/f16.npy"));
  CHECK(h.dtype == DType::f16);
  std::vector<float> hv = h.to_float32("f16");
  REQUIRE(hv.size() == 10);
  CHECK(hv[0] == 0.0f);
  CHECK(hv[1] == 1.0f);
  CHECK(hv[2] == -2.5f);
  CHECK(hv[3] == 65504.0f);
  CHECK(hv[4] == std::ldexp(1.0f, -24));
  CHECK(hv[5] == std::ldexp(168.0f, -24));  // float16(1e-5) = 168 * 2^-24
  CHECK(hv[6] == std::numeric_limits<float>::infinity());
  CHECK(hv[7] == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(hv[8]));
  CHECK((hv[9] == 0.0f && std::signbit(hv[9])));
}

TEST_CASE("io npy: refuses object, string, complex and structured dtypes") {
  const std::string obj = io_data("io/object.npy");
  FLOWLESS_CHECK_ERROR(fio::load_npy(obj), obj.c_str(), "Python objects");
  const std::string uni = io_data("io/unicode.npy");
  FLOWLESS_CHECK_ERROR(fio::load_npy(uni), uni.c_str(), "strings");
  const std::string cpx = io_data("io/complex.npy");
  FLOWLESS_CHECK_ERROR(fio::load_npy(cpx), cpx.c_str(), "complex");
  const std::string st = io_data("io/structured.npy");
  FLOWLESS_CHECK_ERROR(fio::load_npy(st), st.c_str(), "structured");
}

TEST_CASE("io npy: malformed files are errors naming the file") {
  const std::string good = fio::npy_bytes(io_make<float>(DType::f32, {2, 2}, {1, 2, 3, 4}));
  const auto header = [](const std::string& dict) {
    std::string h = "\x93NUMPY";
    h += char(1);
    h += char(0);
    h += char(dict.size() & 0xff);
    h += char(dict.size() >> 8);
    return h + dict;
  };

  std::string p = write_tmp("magic.npy", "\x93NUMPX" + good.substr(6));
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "bad magic");
  p = write_tmp("short.npy", good.substr(0, 7));
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "too short");
  p = write_tmp("truncated.npy", good.substr(0, good.size() - 3));
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "truncated");
  p = write_tmp("trailing.npy", good + "xyz");
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "needs 16");
  std::string v9 = good;
  v9[6] = 9;
  p = write_tmp("version.npy", v9);
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "version 9.0");
  std::string longhdr = good;
  longhdr[8] = char(0xff);
  longhdr[9] = char(0xff);
  p = write_tmp("hdrlen.npy", longhdr);
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "header length 65535 exceeds file size");
  // 2^40 elements claimed by a tiny file: refused before any allocation.
  p = write_tmp("absurd.npy",
                header("{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576), }\n") + "abcd");
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "(1048576, 1048576)");
  p = write_tmp("overflow.npy",
                header("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n"));
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "too many elements");
  p = write_tmp("nodescr.npy", header("{'fortran_order': False, 'shape': (1,), }\n") + "abcd");
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "malformed .npy header");
  p = write_tmp("f128.npy", header("{'descr': '<f16', 'fortran_order': False, 'shape': (1,), }\n") +
                                std::string(16, '\0'));
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "unsupported .npy dtype '<f16'");
  p = write_tmp("garbage.npy", header("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }\n") + "abcd");
  FLOWLESS_CHECK_ERROR(fio::load_npy(p), p.c_str(), "True or False");
  FLOWLESS_CHECK_ERROR(fio::load_npy(io_tmp("does_not_exist.npy")), "does_not_exist.npy", "cannot open");
}

// ------------------------------------------------------------------ npz ----

TEST_CASE("io npz: np.savez archives, ZIP64, round trip, compressed refused") {
  auto z = fio::load_npz(io_data("io/stored.npz"));
  REQUIRE(z.size() == 3);
  CHECK(io_values<int32_t>(z.at("a")) == std::vector<int32_t>{0, 1, 2, 3, 4});
  CHECK(z.at("b").shape == std::vector<int64_t>{2, 2});
  CHECK(z.at("b").to_float32("b") == std::vector<float>{1.5f, -2, 3, 4.25f});
  CHECK(z.at("c").shape.empty());
  CHECK(io_values<double>(z.at("c")) == std::vector<double>{2.5});

  auto z64 = fio::load_npz(io_data("io/zip64.npz"));
  REQUIRE(z64.size() == 2);
  CHECK(z64.at("w").to_float32("w") == std::vector<float>{1, 2, 3});
  CHECK(io_values<int64_t>(z64.at("note")) == std::vector<int64_t>{0, 1, 2, 3});

  std::map<std::string, Array> m;
  m["feats"] = io_make<float>(DType::f32, {2, 2}, {1, 2, 3, 4});
  m["labels"] = io_make<int64_t>(DType::i64, {3}, {7, 8, 9});
  m["empty"] = io_make<float>(DType::f32, {0}, {});
  const std::string path = io_tmp("round.npz");
  fio::save_npz(path, m);
  auto back = fio::load_npz(path);
  REQUIRE(back.size() == 3);
  for (const auto& [k, a] : m) {
    CAPTURE(k);
    CHECK(back.at(k).dtype == a.dtype);
    CHECK(back.at(k).shape == a.shape);
    CHECK(back.at(k).data == a.data);
  }
  // The written archive is a plain stored zip with "<key>.npy" entries.
  fio::ZipReader zr(path);
  REQUIRE(zr.find("feats.npy") != nullptr);
  CHECK(zr.find("feats.npy")->method == 0);

  const std::string comp = io_data("io/compressed.npz");
  FLOWLESS_CHECK_ERROR(fio::load_npz(comp), comp.c_str(), "entry 'x.npy' is deflate-compressed",
                 "np.savez, not np.savez_compressed");
}

// ------------------------------------------------------------------ zip ----

TEST_CASE("io zip: writer/reader agree, CRC and bounds are checked") {
  CHECK(fio::crc32("123456789", 9) == 0xCBF43926u);
  fio::ZipWriter w("mem.zip");
  w.add("a.txt", std::string("hello"));
  w.add("dir/b.bin", std::string("\0\1\2", 3));
  w.add("empty", std::string());
  const std::string zip = w.finish();
  auto r = fio::ZipReader::from_bytes(zip, "mem.zip");
  REQUIRE(r.entries().size() == 3);
  CHECK(r.read("a.txt") == "hello");
  CHECK(r.read("dir/b.bin") == std::string("\0\1\2", 3));
  CHECK(r.read("empty").empty());
  FLOWLESS_CHECK_ERROR(r.read("nope"), "mem.zip", "no entry 'nope'");

  // Flip a data byte: the CRC catches it.
  std::string corrupt = zip;
  corrupt[corrupt.find("hello")] = 'j';
  FLOWLESS_CHECK_ERROR(fio::ZipReader::from_bytes(corrupt, "crc.zip").read("a.txt"), "crc.zip", "CRC-32 mismatch");
  // Truncated: the end record is gone.
  FLOWLESS_CHECK_ERROR(fio::ZipReader::from_bytes(zip.substr(0, zip.size() - 10), "cut.zip"), "cut.zip",
                 "end-of-central-directory");
  FLOWLESS_CHECK_ERROR(fio::ZipReader::from_bytes("PK", "tiny.zip"), "tiny.zip", "too small");
  // Central directory offset pointing beyond the file.
  std::string badcd = zip;
  const size_t eocd = badcd.rfind(std::string("PK\5\6", 4));
  REQUIRE(eocd != std::string::npos);
  badcd.replace(eocd + 16, 4, le32(0x7fffffff));
  FLOWLESS_CHECK_ERROR(fio::ZipReader::from_bytes(badcd, "cdoff.zip"), "cdoff.zip", "outside the archive");
  // An entry claiming 3 GB of data in a tiny archive.
  std::string big = zip;
  const size_t cd0 = big.find(std::string("PK\1\2", 4));
  REQUIRE(cd0 != std::string::npos);
  big.replace(cd0 + 20, 4, le32(3000000000u));
  big.replace(cd0 + 24, 4, le32(3000000000u));
  FLOWLESS_CHECK_ERROR(fio::ZipReader::from_bytes(big, "huge.zip"), "huge.zip", "more than the archive size");
  // Too many entries claimed.
  std::string many = zip;
  many.replace(eocd + 8, 2, std::string("\xff\xff", 2));
  many.replace(eocd + 10, 2, std::string("\xff\xff", 2));
  FLOWLESS_CHECK_ERROR(fio::ZipReader::from_bytes(many, "many.zip"), "many.zip", "entries but has only");
  fio::ZipWriter dup("dup.zip");
  dup.add("x", std::string("1"));
  FLOWLESS_CHECK_ERROR(dup.add("x", std::string("2")), "dup.zip", "duplicate entry 'x'");
}

// ---------------------------------------------------------- safetensors ----

TEST_CASE("io safetensors: reference weights load") {
  const std::string path = io_data("actionformer_small/weights.safetensors");
  fio::SafeTensors st = fio::load_safetensors(path);
  CHECK(st.tensors.size() == 229);
  CHECK(st.metadata.at("source") == "actionformer LocPointTransformer");
  const Array& w = st.tensors.at("backbone.embd.0.conv.weight");
  CHECK(w.dtype == DType::f32);
  CHECK(w.shape == std::vector<int64_t>{64, 32, 3});
  CHECK(st.tensors.count("cls_head.cls_head.conv.bias") == 1);
}

TEST_CASE("io safetensors: write/read round trip with metadata") {
  fio::SafeTensors st;
  st.metadata["format"] = "pt";
  st.metadata["quote\"back\\slash"] = "line1\nline2\ttab \x01 caf\xc3\xa9";
  st.tensors["a.weight"] = io_make<float>(DType::f32, {2, 3}, {1, 2, 3, 4, 5, 6});
  st.tensors["b"] = io_make<uint16_t>(DType::bf16, {2}, {0x3F80, 0xBF80});
  st.tensors["c"] = io_make<int64_t>(DType::i64, {}, {-5});
  st.tensors["d"] = io_make<float>(DType::f32, {0, 4}, {});
  st.tensors["e"] = io_make<uint8_t>(DType::boolean, {3}, {1, 0, 1});
  st.tensors["f"] = io_make<double>(DType::f64, {1}, {0.1});
  const std::string path = io_tmp("rt.safetensors");
  fio::save_safetensors(path, st);
  const std::string raw = fio::read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  CHECK(n % 8 == 0);
  fio::SafeTensors back = fio::load_safetensors(path);
  CHECK(back.metadata == st.metadata);
  REQUIRE(back.tensors.size() == st.tensors.size());
  for (const auto& [k, a] : st.tensors) {
    CAPTURE(k);
    CHECK(back.tensors.at(k).dtype == a.dtype);
    CHECK(back.tensors.at(k).shape == a.shape);
    CHECK(back.tensors.at(k).data == a.data);
  }
  // Escapes written by other writers (\u with a surrogate pair, \/) decode.
  const std::string hdr = "{\"__metadata__\":{\"k\":\"\\u00e9\\ud83d\\ude00\\/\"},\"t\":{\"dtype\":\"U8\",\"shape\":[1],"
                          "\"data_offsets\":[0,1]}}";
  fio::SafeTensors esc = fio::parse_safetensors(le64(hdr.size()) + hdr + "\x07", "esc.safetensors");
  CHECK(esc.metadata.at("k") == "\xc3\xa9\xf0\x9f\x98\x80/");
  CHECK(io_values<uint8_t>(esc.tensors.at("t")) == std::vector<uint8_t>{7});

  fio::SafeTensors bad;
  bad.tensors["x"] = io_make<float>(DType::f32, {2}, {1, 2});
  bad.tensors["x"].shape = {3};
  FLOWLESS_CHECK_ERROR(fio::save_safetensors(io_tmp("bad.safetensors"), bad), "bad.safetensors", "'x'", "needs 12 bytes");
}

TEST_CASE("io safetensors: malformed files are errors naming the file") {
  const auto file = [](const std::string& header, const std::string& data) {
    return le64(header.size()) + header + data;
  };
  const auto t1 = [](const std::string& dtype, const std::string& shape, const std::string& offs) {
    return "{\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offs + "}}";
  };
  const std::string data8(8, '\x01');
  struct Case {
    const char* name;
    std::string bytes;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"short.safetensors", std::string("\x10\0\0", 3), "too short"},
      {"hdrlen.safetensors", le64(999999) + "{}" + std::string(190, ' '), "header length 999999 exceeds file size 200"},
      {"hdrhuge.safetensors", le64(uint64_t(1) << 62) + "{}", "exceeds file size"},
      {"notjson.safetensors", file("[1,2]", ""), "not a JSON object"},
      {"badjson.safetensors", file("{\"w\":{\"dtype\":\"F32\",", data8), "malformed safetensors header"},
      {"absurd.safetensors", file(t1("F32", "[1048576,1048576]", "[0,8]"), data8 + std::string(160, '\0')),
       "needs 4398046511104 bytes"},
      {"overflow.safetensors", file(t1("F64", "[4294967296,4294967296,4]", "[0,8]"), data8), "too many elements"},
      {"range.safetensors", file(t1("F32", "[2]", "[0,80]"), data8), "exceed the data buffer"},
      {"reversed.safetensors", file(t1("F32", "[2]", "[8,0]"), data8), "reversed"},
      {"dtype.safetensors", file(t1("F8_E4M3", "[8]", "[0,8]"), data8), "unsupported dtype \"F8_E4M3\""},
      {"negshape.safetensors", file(t1("F32", "[-2]", "[0,8]"), data8), "negative number"},
      {"floatshape.safetensors", file(t1("F32", "[2.0]", "[0,8]"), data8), "fraction"},
      {"offs.safetensors", file(t1("F32", "[2]", "[0]"), data8), "data_offsets must be [begin, end]"},
      {"overlap.safetensors",
       file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            data8),
       "overlaps"},
      {"hole.safetensors", file(t1("F32", "[1]", "[4,8]"), data8), "hole in the data buffer"},
      {"trailing.safetensors", file(t1("F32", "[1]", "[0,4]"), data8), "trailing bytes"},
      {"dupkey.safetensors",
       file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            data8),
       "duplicate key"},
      {"escape.safetensors", file("{\"w\\q\":{}}", ""), "bad escape"},
      {"meta.safetensors", file("{\"__metadata__\":{\"k\":3}}", ""), "not a string"},
      {"deep.safetensors", file("{\"w\":[[[[[[[[[[[[1]]]]]]]]]]]]}", ""), "nesting too deep"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string path = write_tmp(c.name, c.bytes);
    FLOWLESS_CHECK_ERROR(fio::load_safetensors(path), path.c_str(), c.expect);
  }
  // Truncating the real weights file breaks the data buffer; cutting into the header breaks the header.
  const std::string raw = fio::read_file(io_data("actionformer_small/weights.safetensors"));
  std::string p = write_tmp("cut_data.safetensors", raw.substr(0, raw.size() - 100));
  FLOWLESS_CHECK_ERROR(fio::load_safetensors(p), p.c_str(), "exceed the data buffer");
  p = write_tmp("cut_header.safetensors", raw.substr(0, 200));
  FLOWLESS_CHECK_ERROR(fio::load_safetensors(p), p.c_str(), "exceeds file size 200");
}

// ------------------------------------------------------------------ pth ----

TEST_CASE("io pth: checkpoint state dicts equal the reference safetensors bit for bit") {
  const std::string ckpt = io_data("actionformer_small/checkpoint.pth.tar");
  CHECK(fio::is_pth_file(ckpt));
  CHECK_FALSE(fio::is_pth_file(io_data("actionformer_small/weights.safetensors")));
  CHECK(fio::pth_top_level_keys(ckpt) ==
        std::vector<std::string>{"epoch", "state_dict", "state_dict_ema", "optimizer", "scheduler"});
  const fio::SafeTensors ref = fio::load_safetensors(io_data("actionformer_small/weights.safetensors"));
  for (const char* key : {"state_dict_ema", "state_dict"}) {
    CAPTURE(key);
    auto sd = fio::load_pth_state_dict(ckpt, key);
    REQUIRE(sd.size() == ref.tensors.size());
    int scalar_vs_one = 0;
    for (const auto& [name, r] : ref.tensors) {
      CAPTURE(name);
      auto it = sd.find(name);  // "module." stripped
      REQUIRE(it != sd.end());
      const Array& a = it->second;
      CHECK(a.dtype == r.dtype);
      if (a.shape != r.shape) {
        // The reference's Scale parameters are 0-d tensors; the safetensors
        // fixture stores them as shape (1,). Same single value either way.
        CHECK(a.shape.empty());
        CHECK(r.shape == std::vector<int64_t>{1});
        ++scalar_vs_one;
      }
      CHECK(a.data == r.data);
    }
    CHECK(scalar_vs_one == 6);
  }
  auto def = fio::load_pth_state_dict(ckpt);  // default key: state_dict_ema
  CHECK(def.at("backbone.embd.0.conv.weight").shape == std::vector<int64_t>{64, 32, 3});
  CHECK(def.at("backbone.embd.0.conv.weight").data == ref.tensors.at("backbone.embd.0.conv.weight").data);

  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(ckpt, "model"), ckpt.c_str(), "no entry 'model'",
                 "'epoch', 'state_dict', 'state_dict_ema', 'optimizer', 'scheduler'");
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(ckpt, "epoch"), ckpt.c_str(), "entry 'epoch' is the int 7",
                 "not a state dict");
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(ckpt, "optimizer"), ckpt.c_str(), "'optimizer'", "'state'",
                 "not a plain tensor");
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(ckpt, ""), ckpt.c_str(), "'epoch'", "not a plain tensor");
}

TEST_CASE("io pth: views, storage sharing, dtypes, parameters, protocol 4") {
  for (const char* file : {"io/views.pth", "io/views_p4.pth"}) {
    CAPTURE(file);
    auto sd = fio::load_pth_state_dict(io_data(file), "");  // the top-level object is the state dict
    REQUIRE(sd.size() == 14);
    const Array& base = sd.at("base");
    REQUIRE(base.shape == std::vector<int64_t>{4, 6});
    const std::vector<float> b = base.to_float32("base");
    const Array& t = sd.at("t");  // base.t(): stride (1, 6)
    REQUIRE(t.shape == std::vector<int64_t>{6, 4});
    const std::vector<float> tv = t.to_float32("t");
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 4; ++j) CHECK(tv[size_t(i * 4 + j)] == b[size_t(j * 6 + i)]);
    const Array& s = sd.at("slice");  // base[1:3, 2:5]: offset 8, stride (6, 1)
    REQUIRE(s.shape == std::vector<int64_t>{2, 3});
    const std::vector<float> sv = s.to_float32("slice");
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) CHECK(sv[size_t(i * 3 + j)] == b[size_t((i + 1) * 6 + j + 2)]);
    CHECK(sd.at("half").dtype == DType::f16);
    CHECK(sd.at("half").to_float32("half") == std::vector<float>{1, -0.5f, 65504});
    CHECK(sd.at("bf16").dtype == DType::bf16);
    CHECK(sd.at("bf16").to_float32("bf16") == std::vector<float>{1, -3, 0.125f});
    CHECK(io_values<double>(sd.at("f64")) == std::vector<double>{1.0 / 3});
    CHECK(sd.at("f64").shape == std::vector<int64_t>{1, 1});
    CHECK(io_values<int64_t>(sd.at("long")) == std::vector<int64_t>{1, -2, int64_t(1) << 40});
    CHECK(io_values<int32_t>(sd.at("int")) == std::vector<int32_t>{7, -9});
    CHECK(sd.at("bool").dtype == DType::boolean);
    CHECK(io_values<uint8_t>(sd.at("bool")) == std::vector<uint8_t>{1, 0, 1});
    CHECK(io_values<uint8_t>(sd.at("u8")) == std::vector<uint8_t>{0, 200, 255});
    CHECK(sd.at("scalar").shape.empty());
    CHECK(sd.at("scalar").to_float32("s") == std::vector<float>{3.5f});
    CHECK(sd.at("empty").shape == std::vector<int64_t>{0, 3});
    CHECK(sd.at("empty").data.empty());
    CHECK(sd.at("param").to_float32("p") == std::vector<float>{0.25f, 0.5f});  // nn.Parameter
    CHECK(sd.at("expanded_row").shape == std::vector<int64_t>{1, 5});          // stride (0, 1)
    CHECK(sd.at("expanded_row").to_float32("e") == std::vector<float>{0, 1, 2, 3, 4});
  }
  // A module's state_dict() carries _metadata, pickled with BUILD.
  auto lin = fio::load_pth_state_dict(io_data("io/linear.pth"), "state_dict");
  REQUIRE(lin.size() == 2);
  CHECK(lin.at("weight").shape == std::vector<int64_t>{3, 2});
  CHECK(lin.at("weight").to_float32("w") == std::vector<float>{-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f});
  CHECK(lin.at("bias").to_float32("b") == std::vector<float>{0.5f, -1, 2});
}

TEST_CASE("io pth: pickle code is never executed, only the chosen state dict must be tensors") {
  // evil.pth = {'good': {'module.w': t}, 'bad': {'module.w': t, 'evil': os.system(...)}, 'meta': os.system(...), 'n': 3}
  const std::string evil = io_data("io/evil.pth");
  auto good = fio::load_pth_state_dict(evil, "good");
  REQUIRE(good.size() == 1);
  CHECK(good.at("w").to_float32("w") == std::vector<float>{1, 2});
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(evil, "bad"), evil.c_str(), "tensor 'evil'", "posix.system",
                 "not executed", "not a plain tensor");
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(evil, "meta"), evil.c_str(), "'meta'", "unsupported object",
                 "not a state dict");
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(evil, "state_dict_ema"), evil.c_str(),
                 "available keys: 'good', 'bad', 'meta', 'n'");

  // Built from bytes: a non-whitelisted global inside the chosen state dict.
  PickleBuilder pb;
  pb.op('}').op('(').str("state_dict_ema").op('}').op('(');
  pb.str("module.w").tensor("FloatStorage", "0", 2, 0, {2}, {1});
  pb.str("module.hook").global("builtins", "eval").str("__import__('os')").op('\x85').op('R');
  pb.op('u').op('u');
  const std::string p = make_pth("evil_bytes.pth", pb.done(), {{"0", floats_bytes({1, 2})}});
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(p), p.c_str(), "'module.hook'", "builtins.eval", "not a plain tensor");
}

TEST_CASE("io pth: hand-built checkpoints: byte order, bounds, malformed pickles") {
  const auto sd_pickle = [](const std::function<void(PickleBuilder&)>& body) {
    PickleBuilder pb;
    pb.op('}').op('(');
    body(pb);
    pb.op('u');
    return pb.done();
  };
  // Big-endian archive (torch writes "byteorder" = "big" there): converted.
  {
    std::string be;
    for (uint32_t bits : {0x3F800000u, 0xC0200000u}) {  // 1.0, -2.5
      for (int k = 3; k >= 0; --k) be.push_back(char((bits >> (8 * k)) & 0xff));
    }
    const std::string pk = sd_pickle([](PickleBuilder& pb) { pb.str("x").tensor("FloatStorage", "0", 2, 0, {2}, {1}); });
    const std::string p = make_pth("be.pth", pk, {{"0", be}}, "big");
    CHECK(fio::load_pth_state_dict(p, "").at("x").to_float32("x") == std::vector<float>{1, -2.5f});
  }
  // A strided column view gathered from a (3, 2) storage; a negative BININT value.
  {
    const std::string pk = sd_pickle([](PickleBuilder& pb) {
      pb.str("col").tensor("FloatStorage", "0", 6, 1, {3}, {2});
      pb.str("neg").tensor("LongStorage", "1", 1, 0, {}, {});
    });
    const std::string p = make_pth("col.pth", pk, {{"0", floats_bytes({0, 1, 2, 3, 4, 5})}, {"1", le64(uint64_t(-42))}});
    auto sd = fio::load_pth_state_dict(p, "");
    CHECK(sd.at("col").to_float32("col") == std::vector<float>{1, 3, 5});
    CHECK(io_values<int64_t>(sd.at("neg")) == std::vector<int64_t>{-42});
  }
  struct Case {
    const char* name;
    std::string pickle;
    std::map<std::string, std::string> storages;
    const char* expect;
  };
  const std::string two = floats_bytes({1, 2});
  std::vector<Case> cases = {
      {"beyond.pth", sd_pickle([](PickleBuilder& pb) { pb.str("w").tensor("FloatStorage", "0", 2, 1, {2}, {1}); }),
       {{"0", two}}, "reaches element 2 of a storage with 2 elements"},
      {"offset.pth", sd_pickle([](PickleBuilder& pb) { pb.str("w").tensor("FloatStorage", "0", 2, 9, {0}, {1}); }),
       {{"0", two}}, "storage offset 9"},
      {"absurd.pth",
       sd_pickle([](PickleBuilder& pb) { pb.str("w").tensor("FloatStorage", "0", 2, 0, {1 << 20, 1 << 20}, {0, 0}); }),
       {{"0", two}}, "more elements than its storage"},
      {"negstride.pth", sd_pickle([](PickleBuilder& pb) { pb.str("w").tensor("FloatStorage", "0", 2, 1, {2}, {-1}); }),
       {{"0", two}}, "negative stride"},
      {"size.pth", sd_pickle([](PickleBuilder& pb) { pb.str("w").tensor("FloatStorage", "0", 3, 0, {2}, {1}); }),
       {{"0", two}}, "has 8 bytes but 3 elements"},
      {"nostorage.pth", sd_pickle([](PickleBuilder& pb) { pb.str("w").tensor("FloatStorage", "7", 2, 0, {2}, {1}); }),
       {{"0", two}}, "storage entry 'archive/data/7' is missing"},
      {"complex.pth",
       sd_pickle([](PickleBuilder& pb) { pb.str("w").tensor("ComplexFloatStorage", "0", 1, 0, {1}, {1}); }),
       {{"0", two}}, "torch.ComplexFloatStorage"},
      {"intkey.pth", sd_pickle([](PickleBuilder& pb) { pb.int32(5).tensor("FloatStorage", "0", 2, 0, {2}, {1}); }),
       {{"0", two}}, "key of type int"},
      {"none.pth", sd_pickle([](PickleBuilder& pb) { pb.str("w").op('N'); }), {}, "'w' is a None"},
      {"opcode.pth", sd_pickle([](PickleBuilder& pb) { pb.str("w").op('i'); }), {}, "unsupported pickle opcode 0x69"},
      {"truncated.pth", std::string("\x80\x02}(X\xff\0\0\0abc", 12), {}, "pickle truncated"},
      {"nostop.pth", std::string("\x80\x02}", 3), {}, "without STOP"},
      {"underflow.pth", std::string("\x80\x02s.", 4), {}, "stack underflow"},
      {"memo.pth", std::string("\x80\x02h\x05.", 5), {}, "memo key 5 is missing"},
      {"nomark.pth", std::string("\x80\x02}u.", 5), {}, "needs a MARK"},
      {"toplist.pth", std::string("\x80\x02].", 4), {}, "top-level object is a list"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string p = make_pth(c.name, c.pickle, c.storages);
    FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(p, ""), p.c_str(), c.expect);
  }
  const std::string tl = make_pth("toplevel.pth", std::string("\x80\x02].", 4), {});
  FLOWLESS_CHECK_ERROR(fio::pth_top_level_keys(tl), tl.c_str(), "not a dict");
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(tl), tl.c_str(), "no entry 'state_dict_ema'");
}

TEST_CASE("io pth: damaged and foreign files are errors naming the file") {
  const std::string raw = fio::read_file(io_data("actionformer_small/checkpoint.pth.tar"));
  std::string p = write_tmp("half.pth.tar", raw.substr(0, raw.size() / 2));
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(p), p.c_str(), "end-of-central-directory");
  p = write_tmp("legacy.pth", std::string("\x80\x02\x8a\x0a", 4) + std::string(100, 'x'));
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(p), p.c_str(), "legacy");
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(io_tmp("missing.pth")), "missing.pth", "no such file");
  // A valid zip that is not a checkpoint.
  p = io_tmp("plain.zip");
  fio::save_npz(p, {{"a", io_make<float>(DType::f32, {1}, {1})}});
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(p), p.c_str(), "data.pkl");
  CHECK_FALSE(fio::is_pth_file(p));
  // Corrupt a storage byte inside the real checkpoint: the CRC check names the entry.
  fio::ZipReader zr(io_data("actionformer_small/checkpoint.pth.tar"));
  const fio::ZipEntry* e = zr.find("checkpoint.pth/data/0");
  REQUIRE(e != nullptr);
  std::string bad = raw;
  const size_t lho = size_t(e->local_header_offset);
  const size_t data_off = lho + 30 + fio::detail::rd16(reinterpret_cast<const uint8_t*>(raw.data()) + lho + 26) +
                          fio::detail::rd16(reinterpret_cast<const uint8_t*>(raw.data()) + lho + 28);
  bad[data_off + 5] = char(bad[data_off + 5] ^ 0x40);
  p = write_tmp("flipped.pth.tar", bad);
  FLOWLESS_CHECK_ERROR(fio::load_pth_state_dict(p, "state_dict"), p.c_str(), "checkpoint.pth/data/0", "CRC-32 mismatch");
}
