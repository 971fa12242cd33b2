// flowless/io/pth.hpp - state dicts from PyTorch checkpoints (.pth, .pth.tar),
// read without executing any pickle code.
//
// Supported: the zip format of torch.save (torch >= 1.6): entries
// "<prefix>/data.pkl" (the pickled object), "<prefix>/data/<key>" (raw
// storage bytes), "<prefix>/version" and optionally "<prefix>/byteorder".
// The legacy (pre-1.6, non-zip) format is refused with an Error.
//
// data.pkl is run on a small pickle virtual machine that implements only the
// data opcodes of protocols 2-5 (no INST/OBJ, no text opcodes, no buffers).
// GLOBAL/STACK_GLOBAL only name things; REDUCE/NEWOBJ are interpreted for a
// whitelist and never call anything:
//   collections.OrderedDict              -> a dict
//   torch._utils._rebuild_tensor_v2      -> a tensor view of a storage
//   torch._utils._rebuild_parameter(...) -> the tensor it wraps
// Storages arrive via BINPERSID ('storage', torch.<T>Storage, key, location,
// numel) for T in Float Double Half BFloat16 Long Int Short Char Byte Bool.
// Any other call becomes an opaque "unsupported object" value; it is an Error
// only if the caller asks for it (e.g. it sits inside the chosen state dict).
// BUILD state is discarded (OrderedDict._metadata and the like).
//
// parse_pth_state_dict(bytes, context, key) does the same on a checkpoint held
// in memory (context names it in errors).
//
// Tensors are materialised as C-order Arrays: storage offset, sizes and
// strides are bounds-checked against the storage, non-contiguous views are
// gathered, big-endian archives are converted.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/io/array.hpp"
#include "flowless/io/file.hpp"
#include "flowless/io/zip.hpp"

namespace flowless::io {

namespace detail {

struct PyObj {
  enum Kind : uint8_t { None, Bool, Int, BigInt, Float, Str, Bytes, Tuple, List, Set, Dict, Global, Storage, Tensor,
                        Unsupported };
  struct StorageInfo {
    bool known = false;  // dtype recognised
    DType dtype = DType::f32;
    std::string type_name;  // "torch.FloatStorage"
    std::string key, location;
    int64_t numel = 0;
  };
  struct TensorInfo {
    PyObj* storage = nullptr;
    int64_t offset = 0;
    std::vector<int64_t> size, stride;
  };

  Kind kind = None;
  int64_t i = 0;  // Bool, Int
  double f = 0;   // Float
  std::string s;  // Str, Bytes; Global "module.name"; Unsupported: description
  std::vector<PyObj*> items;  // Tuple, List, Set; Dict: key0, value0, key1, value1, ...
  std::unique_ptr<std::unordered_map<std::string, size_t>> dict_index;  // Dict: str/int key -> pair index
  std::unique_ptr<StorageInfo> storage;
  std::unique_ptr<TensorInfo> tensor;

  size_t dict_size() const { return items.size() / 2; }
};

inline const char* py_kind_name(PyObj::Kind k) {
  switch (k) {
    case PyObj::None: return "None";
    case PyObj::Bool: return "bool";
    case PyObj::Int: return "int";
    case PyObj::BigInt: return "int (wider than 64 bits)";
    case PyObj::Float: return "float";
    case PyObj::Str: return "str";
    case PyObj::Bytes: return "bytes";
    case PyObj::Tuple: return "tuple";
    case PyObj::List: return "list";
    case PyObj::Set: return "set";
    case PyObj::Dict: return "dict";
    case PyObj::Global: return "global reference";
    case PyObj::Storage: return "storage";
    case PyObj::Tensor: return "tensor";
    case PyObj::Unsupported: return "unsupported object";
  }
  return "?";
}

/// One-line description for error messages (not recursive).
inline std::string py_describe(const PyObj* o) {
  switch (o->kind) {
    case PyObj::Int: return "the int " + std::to_string(o->i);
    case PyObj::Str: return "the str '" + o->s.substr(0, 80) + "'";
    case PyObj::Global: return "a reference to the global " + o->s;
    case PyObj::Unsupported: return "an unsupported object (" + o->s + "; not executed)";
    case PyObj::Tensor:
      return o->tensor->storage->storage->known ? "a tensor"
                                                : "a tensor of unsupported storage type " +
                                                      o->tensor->storage->storage->type_name;
    default: return std::string("a ") + py_kind_name(o->kind);
  }
}

// Key used for dict lookup / replacement: only str and int keys are indexed.
inline bool py_dict_key(const PyObj* k, std::string& out) {
  if (k->kind == PyObj::Str) {
    out = "s" + k->s;
    return true;
  }
  if (k->kind == PyObj::Int || k->kind == PyObj::Bool) {
    out = "i" + std::to_string(k->i);
    return true;
  }
  return false;
}

inline void py_dict_set(PyObj* d, PyObj* k, PyObj* v) {
  std::string key;
  if (py_dict_key(k, key)) {
    if (!d->dict_index) d->dict_index = std::make_unique<std::unordered_map<std::string, size_t>>();
    auto it = d->dict_index->find(key);
    if (it != d->dict_index->end()) {
      d->items[2 * it->second + 1] = v;
      return;
    }
    (*d->dict_index)[key] = d->dict_size();
  }
  d->items.push_back(k);
  d->items.push_back(v);
}

inline const PyObj* py_dict_get(const PyObj* d, const std::string& str_key) {
  if (!d->dict_index) return nullptr;
  auto it = d->dict_index->find("s" + str_key);
  return it == d->dict_index->end() ? nullptr : d->items[2 * it->second + 1];
}

struct Pickle {
  std::deque<PyObj> arena;  // owns every object; stable addresses, no cycles to leak
  PyObj* root = nullptr;
};

inline bool storage_dtype(const std::string& type_name, DType& t) {
  static const std::pair<const char*, DType> table[] = {
      {"torch.FloatStorage", DType::f32},   {"torch.DoubleStorage", DType::f64}, {"torch.HalfStorage", DType::f16},
      {"torch.BFloat16Storage", DType::bf16}, {"torch.LongStorage", DType::i64},   {"torch.IntStorage", DType::i32},
      {"torch.ShortStorage", DType::i16},   {"torch.CharStorage", DType::i8},    {"torch.ByteStorage", DType::u8},
      {"torch.BoolStorage", DType::boolean}};
  for (const auto& [name, dt] : table)
    if (type_name == name) {
      t = dt;
      return true;
    }
  return false;
}

class Unpickler {
 public:
  Unpickler(const std::string& bytes, const std::string& ctx, Pickle& out) : b_(bytes), ctx_(ctx), out_(out) {}

  void run() {
    while (true) {
      FLOWLESS_CHECK(pos_ < b_.size(), ctx_, ": pickle ends without STOP (truncated?)");
      op_pos_ = pos_;
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;          // PROTO
        case 0x95: take(8); break;       // FRAME (length is advisory)
        case '.': {                      // STOP
          FLOWLESS_CHECK(!stack_.empty() && marks_.empty(), ctx_, ": pickle STOP with a malformed stack at byte ",
                         op_pos_);
          out_.root = stack_.back();
          return;
        }
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '0': pop(); break;                              // POP
        case '1': pop_mark(); break;                         // POP_MARK
        case '2': push(top()); break;                        // DUP
        case 'N': push(make(PyObj::None)); break;
        case 0x88: push_bool(true); break;   // NEWTRUE
        case 0x89: push_bool(false); break;  // NEWFALSE
        case 'J': {                          // BININT
          const uint8_t* p = take(4);
          push_int(int32_t(rd32(p)));
          break;
        }
        case 'K': push_int(u8()); break;              // BININT1
        case 'M': push_int(rd16(take(2))); break;     // BININT2
        case 0x8a: push_long(u8()); break;            // LONG1
        case 0x8b: push_long(len32_signed()); break;  // LONG4
        case 'G': {                                   // BINFLOAT (big-endian)
          const uint8_t* p = take(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
          PyObj* o = make(PyObj::Float);
          std::memcpy(&o->f, &bits, 8);
          push(o);
          break;
        }
        case 'X': push_str(PyObj::Str, rd32(take(4))); break;        // BINUNICODE
        case 0x8c: push_str(PyObj::Str, u8()); break;                // SHORT_BINUNICODE
        case 0x8d: push_str(PyObj::Str, rd64(take(8))); break;       // BINUNICODE8
        case 'T': push_str(PyObj::Str, len32_signed()); break;       // BINSTRING (py2 str)
        case 'U': push_str(PyObj::Str, u8()); break;                 // SHORT_BINSTRING
        case 'B': push_str(PyObj::Bytes, rd32(take(4))); break;      // BINBYTES
        case 'C': push_str(PyObj::Bytes, u8()); break;               // SHORT_BINBYTES
        case 0x8e: push_str(PyObj::Bytes, rd64(take(8))); break;     // BINBYTES8
        case '}': push(make(PyObj::Dict)); break;                    // EMPTY_DICT
        case ']': push(make(PyObj::List)); break;                    // EMPTY_LIST
        case ')': push(make(PyObj::Tuple)); break;                   // EMPTY_TUPLE
        case 0x8f: push(make(PyObj::Set)); break;                    // EMPTY_SET
        case 't': {                                                  // TUPLE
          PyObj* t = make(PyObj::Tuple);
          t->items = pop_mark();
          push(t);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = size_t(op - 0x84);
          PyObj* t = make(PyObj::Tuple);
          t->items.resize(n);
          for (size_t k = n; k-- > 0;) t->items[k] = pop();
          push(t);
          break;
        }
        case 'l': {  // LIST
          PyObj* l = make(PyObj::List);
          l->items = pop_mark();
          push(l);
          break;
        }
        case 0x91: {  // FROZENSET
          PyObj* l = make(PyObj::Set);
          l->items = pop_mark();
          push(l);
          break;
        }
        case 'd': {  // DICT
          std::vector<PyObj*> kv = pop_mark();
          FLOWLESS_CHECK(kv.size() % 2 == 0, ctx_, ": pickle DICT with an odd number of items at byte ", op_pos_);
          PyObj* d = make(PyObj::Dict);
          for (size_t k = 0; k < kv.size(); k += 2) py_dict_set(d, kv[k], kv[k + 1]);
          push(d);
          break;
        }
        case 'a': {  // APPEND
          PyObj* v = pop();
          append_to(top(), {v});
          break;
        }
        case 'e': {  // APPENDS
          std::vector<PyObj*> vs = pop_mark();
          append_to(top(), vs);
          break;
        }
        case 0x90: {  // ADDITEMS
          std::vector<PyObj*> vs = pop_mark();
          append_to(top(), vs);
          break;
        }
        case 's': {  // SETITEM
          PyObj* v = pop();
          PyObj* k = pop();
          set_items(top(), {k, v});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<PyObj*> kv = pop_mark();
          FLOWLESS_CHECK(kv.size() % 2 == 0, ctx_, ": pickle SETITEMS with an odd number of items at byte ",
                         op_pos_);
          set_items(top(), kv);
          break;
        }
        case 'q': memo_[u8()] = top(); break;             // BINPUT
        case 'r': memo_[rd32(take(4))] = top(); break;    // LONG_BINPUT
        case 0x94: {                                      // MEMOIZE
          const uint32_t idx = uint32_t(memo_.size());
          memo_[idx] = top();
          break;
        }
        case 'h': push(memo_get(u8())); break;            // BINGET
        case 'j': push(memo_get(rd32(take(4)))); break;   // LONG_BINGET
        case 'c': {                                       // GLOBAL "module\nname\n"
          std::string module = line();
          std::string name = line();
          push_global(module + "." + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          PyObj* name = pop();
          PyObj* module = pop();
          FLOWLESS_CHECK(name->kind == PyObj::Str && module->kind == PyObj::Str, ctx_,
                         ": pickle STACK_GLOBAL needs two strings at byte ", op_pos_);
          push_global(module->s + "." + name->s);
          break;
        }
        case 'R': {  // REDUCE
          PyObj* args = pop();
          PyObj* callable = pop();
          push(reduce(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ
          PyObj* args = pop();
          PyObj* cls = pop();
          push(newobj(cls, args));
          break;
        }
        case 0x92: {  // NEWOBJ_EX
          pop();      // kwargs
          PyObj* args = pop();
          PyObj* cls = pop();
          push(newobj(cls, args));
          break;
        }
        case 'b': pop(); top(); break;  // BUILD: state discarded, object kept
        case 'Q': push(persistent_load(pop())); break;  // BINPERSID
        default: {
          std::string shown = (op >= 0x20 && op < 0x7f) ? std::string(" ('") + char(op) + "')" : "";
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          FLOWLESS_FAIL(ctx_, ": unsupported pickle opcode ", hex, shown, " at byte ", op_pos_,
                        " (flowless reads only the data opcodes of pickle protocols 2-5)");
        }
      }
    }
  }

 private:
  PyObj* make(PyObj::Kind k) {
    out_.arena.emplace_back();
    out_.arena.back().kind = k;
    return &out_.arena.back();
  }
  const uint8_t* take(uint64_t n) {
    FLOWLESS_CHECK(n <= b_.size() - pos_, ctx_, ": pickle truncated at byte ", op_pos_, " (needs ", n,
                   " more bytes, has ", b_.size() - pos_, ")");
    const uint8_t* p = reinterpret_cast<const uint8_t*>(b_.data()) + pos_;
    pos_ += size_t(n);
    return p;
  }
  uint8_t u8() { return *take(1); }
  uint64_t len32_signed() {
    int32_t n = int32_t(rd32(take(4)));
    FLOWLESS_CHECK(n >= 0, ctx_, ": pickle negative length at byte ", op_pos_);
    return uint64_t(n);
  }
  std::string line() {
    size_t e = b_.find('\n', pos_);
    FLOWLESS_CHECK(e != std::string::npos && e - pos_ <= 1024, ctx_, ": pickle GLOBAL without a line end at byte ",
                   op_pos_);
    std::string s = b_.substr(pos_, e - pos_);
    pos_ = e + 1;
    return s;
  }
  void push(PyObj* o) { stack_.push_back(o); }
  size_t mark_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  PyObj* pop() {
    FLOWLESS_CHECK(stack_.size() > mark_floor(), ctx_, ": pickle stack underflow at byte ", op_pos_);
    PyObj* o = stack_.back();
    stack_.pop_back();
    return o;
  }
  PyObj* top() {
    FLOWLESS_CHECK(stack_.size() > mark_floor(), ctx_, ": pickle stack underflow at byte ", op_pos_);
    return stack_.back();
  }
  std::vector<PyObj*> pop_mark() {
    FLOWLESS_CHECK(!marks_.empty(), ctx_, ": pickle opcode needs a MARK at byte ", op_pos_);
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PyObj*> out(stack_.begin() + std::ptrdiff_t(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  PyObj* memo_get(uint32_t idx) {
    auto it = memo_.find(idx);
    FLOWLESS_CHECK(it != memo_.end(), ctx_, ": pickle memo key ", idx, " is missing at byte ", op_pos_);
    return it->second;
  }
  void push_bool(bool v) {
    PyObj* o = make(PyObj::Bool);
    o->i = v;
    push(o);
  }
  void push_int(int64_t v) {
    PyObj* o = make(PyObj::Int);
    o->i = v;
    push(o);
  }
  void push_long(uint64_t n) {
    const uint8_t* p = take(n);
    if (n > 8) {
      push(make(PyObj::BigInt));
      return;
    }
    uint64_t v = 0;
    for (uint64_t k = n; k-- > 0;) v = (v << 8) | p[k];
    if (n > 0 && n < 8 && (p[n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    push_int(int64_t(v));
  }
  void push_str(PyObj::Kind k, uint64_t n) {
    const uint8_t* p = take(n);
    PyObj* o = make(k);
    o->s.assign(reinterpret_cast<const char*>(p), size_t(n));
    push(o);
  }
  void push_global(std::string name) {
    PyObj* o = make(PyObj::Global);
    o->s = std::move(name);
    push(o);
  }
  void append_to(PyObj* target, const std::vector<PyObj*>& vs) {
    if (target->kind == PyObj::Unsupported) return;  // would call its methods: ignored
    FLOWLESS_CHECK(target->kind == PyObj::List || target->kind == PyObj::Set, ctx_, ": pickle appends to a ",
                   py_kind_name(target->kind), " at byte ", op_pos_);
    target->items.insert(target->items.end(), vs.begin(), vs.end());
  }
  void set_items(PyObj* target, const std::vector<PyObj*>& kv) {
    if (target->kind == PyObj::Unsupported) return;  // would call __setitem__: ignored
    FLOWLESS_CHECK(target->kind == PyObj::Dict, ctx_, ": pickle sets items on a ", py_kind_name(target->kind),
                   " at byte ", op_pos_);
    for (size_t k = 0; k + 1 < kv.size(); k += 2) py_dict_set(target, kv[k], kv[k + 1]);
  }
  PyObj* unsupported(const std::string& what) {
    PyObj* o = make(PyObj::Unsupported);
    o->s = what;
    return o;
  }
  static bool is_int_tuple(const PyObj* o) {
    if (o->kind != PyObj::Tuple && o->kind != PyObj::List) return false;
    for (const PyObj* x : o->items)
      if (x->kind != PyObj::Int) return false;
    return true;
  }

  PyObj* reduce(PyObj* callable, PyObj* args) {
    if (callable->kind != PyObj::Global) return unsupported("call of a " + std::string(py_kind_name(callable->kind)));
    const std::string& fn = callable->s;
    if (args->kind != PyObj::Tuple) return unsupported(fn + " called with non-tuple arguments");
    const auto& a = args->items;
    if (fn == "collections.OrderedDict" || fn == "builtins.dict") {
      PyObj* d = make(PyObj::Dict);
      if (a.empty()) return d;
      if (a.size() == 1 && (a[0]->kind == PyObj::List || a[0]->kind == PyObj::Tuple)) {
        for (PyObj* kv : a[0]->items) {
          if (kv->kind != PyObj::Tuple || kv->items.size() != 2) return unsupported(fn + " with malformed items");
          py_dict_set(d, kv->items[0], kv->items[1]);
        }
        return d;
      }
      return unsupported(fn + " with unsupported arguments");
    }
    if (fn == "torch._utils._rebuild_tensor_v2" || fn == "torch._utils._rebuild_tensor") {
      if (a.size() < 4 || a[0]->kind != PyObj::Storage || a[1]->kind != PyObj::Int || !is_int_tuple(a[2]) ||
          !is_int_tuple(a[3]) || a[2]->items.size() != a[3]->items.size())
        return unsupported(fn + " with malformed arguments");
      PyObj* t = make(PyObj::Tensor);
      t->tensor = std::make_unique<PyObj::TensorInfo>();
      t->tensor->storage = a[0];
      t->tensor->offset = a[1]->i;
      for (const PyObj* x : a[2]->items) t->tensor->size.push_back(x->i);
      for (const PyObj* x : a[3]->items) t->tensor->stride.push_back(x->i);
      return t;
    }
    if (fn == "torch._utils._rebuild_parameter" || fn == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || a[0]->kind != PyObj::Tensor) return unsupported(fn + " with malformed arguments");
      return a[0];
    }
    return unsupported(fn + "(...)");
  }

  PyObj* newobj(PyObj* cls, PyObj* /*args*/) {
    if (cls->kind == PyObj::Global && cls->s == "collections.OrderedDict") return make(PyObj::Dict);
    return unsupported((cls->kind == PyObj::Global ? cls->s : std::string(py_kind_name(cls->kind))) +
                       ".__new__(...)");
  }

  PyObj* persistent_load(PyObj* pid) {
    if (pid->kind != PyObj::Tuple || pid->items.size() != 5 || pid->items[0]->kind != PyObj::Str ||
        pid->items[0]->s != "storage")
      return unsupported("persistent id other than a torch storage");
    const auto& a = pid->items;
    if (a[1]->kind != PyObj::Global || a[2]->kind != PyObj::Str || a[3]->kind != PyObj::Str ||
        a[4]->kind != PyObj::Int || a[4]->i < 0)
      return unsupported("malformed torch storage reference");
    PyObj* s = make(PyObj::Storage);
    s->storage = std::make_unique<PyObj::StorageInfo>();
    s->storage->type_name = a[1]->s;
    s->storage->known = storage_dtype(a[1]->s, s->storage->dtype);
    s->storage->key = a[2]->s;
    s->storage->location = a[3]->s;
    s->storage->numel = a[4]->i;
    return s;
  }

  const std::string& b_;
  const std::string& ctx_;
  Pickle& out_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<PyObj*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, PyObj*> memo_;
};

/// Runs the pickle VM over bytes; context names the pickle in errors.
inline std::unique_ptr<Pickle> unpickle(const std::string& bytes, const std::string& context) {
  auto p = std::make_unique<Pickle>();
  Unpickler(bytes, context, *p).run();
  return p;
}

struct PthArchive {
  std::string path;
  std::unique_ptr<ZipReader> zip;
  std::string prefix;  // "checkpoint.pth" in "checkpoint.pth/data.pkl"
  bool big_endian = false;
  std::unique_ptr<Pickle> pickle;
  std::map<std::string, std::string> storage_cache;
};

inline std::string find_pth_prefix(const ZipReader& zip) {
  std::string found;
  for (const ZipEntry& e : zip.entries()) {
    const auto slash = e.name.find('/');
    if (slash != std::string::npos && slash > 0 && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      FLOWLESS_CHECK(found.empty(), zip.context(), ": more than one '<prefix>/data.pkl' entry ('", found,
                     "/data.pkl', '", e.name, "')");
      found = e.name.substr(0, slash);
    }
  }
  return found;
}

// Opens an archive already read into a ZipReader; ctx (a path) names it in errors.
inline std::unique_ptr<PthArchive> open_pth_zip(std::unique_ptr<ZipReader> zip, const std::string& ctx) {
  auto a = std::make_unique<PthArchive>();
  a->path = ctx;
  a->zip = std::move(zip);
  a->prefix = find_pth_prefix(*a->zip);
  FLOWLESS_CHECK(!a->prefix.empty(), ctx, ": zip archive without a '<prefix>/data.pkl' entry: not a PyTorch checkpoint");
  if (const ZipEntry* bo = a->zip->find(a->prefix + "/byteorder")) {
    std::string order = a->zip->read(*bo);
    while (!order.empty() && (order.back() == '\n' || order.back() == ' ')) order.pop_back();
    FLOWLESS_CHECK(order == "little" || order == "big", ctx, ": unknown byteorder '", order.substr(0, 40), "'");
    a->big_endian = order == "big";
  }
  const std::string pkl = a->prefix + "/data.pkl";
  a->pickle = unpickle(a->zip->read(pkl), ctx + ": " + pkl);
  return a;
}

inline std::unique_ptr<PthArchive> open_pth(const std::string& path) {
  FLOWLESS_CHECK(file_exists(path), path, ": no such file");
  FLOWLESS_CHECK(is_zip_file(path), path,
                 ": not a PyTorch zip checkpoint (the legacy torch.save format of torch < 1.6 is not supported; "
                 "re-save it with a newer torch)");
  return open_pth_zip(std::make_unique<ZipReader>(path), path);
}

// Materialises a tensor value as a C-order Array; where names it in errors.
inline Array pth_tensor_to_array(PthArchive& ar, const PyObj* t, const std::string& where) {
  const PyObj::TensorInfo& ti = *t->tensor;
  const PyObj::StorageInfo& si = *ti.storage->storage;
  FLOWLESS_CHECK(si.known, where, ": storage type ", si.type_name, " is not supported");
  const size_t w = dtype_size(si.dtype);
  const std::string entry = ar.prefix + "/data/" + si.key;
  auto it = ar.storage_cache.find(si.key);
  if (it == ar.storage_cache.end()) {
    const ZipEntry* ze = ar.zip->find(entry);
    FLOWLESS_CHECK(ze != nullptr, where, ": storage entry '", entry, "' is missing from the archive");
    const uint64_t need = shape_nbytes({si.numel}, si.dtype, where);
    FLOWLESS_CHECK(ze->size == need, where, ": storage '", entry, "' has ", ze->size, " bytes but ", si.numel,
                   " elements of ", dtype_name(si.dtype), " need ", need);
    it = ar.storage_cache.emplace(si.key, ar.zip->read(*ze)).first;
  }
  const std::string& sb = it->second;
  Array out;
  out.dtype = si.dtype;
  out.shape = ti.size;
  const int64_t n = shape_numel(ti.size, where);
  FLOWLESS_CHECK(ti.offset >= 0 && ti.offset <= si.numel, where, ": storage offset ", ti.offset,
                 " outside the storage of ", si.numel, " elements");
  const size_t rank = ti.size.size();
  bool contiguous = true;
  int64_t expect = 1;
  int64_t last = ti.offset;  // largest element index touched
  for (size_t k = rank; k-- > 0;) {
    FLOWLESS_CHECK(ti.stride[k] >= 0, where, ": negative stride ", ti.stride[k]);
    if (ti.size[k] != 1 && ti.stride[k] != expect) contiguous = false;
    expect *= ti.size[k] == 0 ? 1 : ti.size[k];
    if (n > 0) {
      const int64_t span = ti.size[k] - 1;
      FLOWLESS_CHECK(ti.stride[k] == 0 || span <= (INT64_MAX - last) / ti.stride[k], where,
                     ": strides reach beyond any storage");
      last += span * ti.stride[k];
    }
  }
  FLOWLESS_CHECK(n <= si.numel, where, ": tensor of shape ", shape_str(ti.size), " has more elements than its storage (",
                 si.numel, "); expanded or overlapping views are not supported");
  if (n > 0) {
    FLOWLESS_CHECK(last < si.numel, where, ": tensor of shape ", shape_str(ti.size), " (offset ", ti.offset,
                   ") reaches element ", last, " of a storage with ", si.numel, " elements");
  }
  out.data.resize(size_t(n) * w);
  const uint8_t* src = reinterpret_cast<const uint8_t*>(sb.data());
  if (n == 0) {
  } else if (contiguous) {
    std::memcpy(out.data.data(), src + size_t(ti.offset) * w, size_t(n) * w);
  } else {
    std::vector<int64_t> idx(rank, 0);
    int64_t off = ti.offset;
    for (int64_t c = 0; c < n; ++c) {
      std::memcpy(out.data.data() + size_t(c) * w, src + size_t(off) * w, w);
      for (size_t k = rank; k-- > 0;) {
        ++idx[k];
        off += ti.stride[k];
        if (idx[k] < ti.size[k]) break;
        off -= ti.stride[k] * ti.size[k];
        idx[k] = 0;
      }
    }
  }
  if (ar.big_endian && w > 1) {
    for (int64_t c = 0; c < n; ++c) {
      uint8_t* e = out.data.data() + size_t(c) * w;
      for (size_t x = 0, y = w - 1; x < y; ++x, --y) std::swap(e[x], e[y]);
    }
  }
  return out;
}

}  // namespace detail

/// True when path is a zip archive holding "<prefix>/data.pkl" (a torch.save file).
inline bool is_pth_file(const std::string& path) {
  if (!file_exists(path) || !is_zip_file(path)) return false;
  try {
    ZipReader zip(path);
    return !detail::find_pth_prefix(zip).empty();
  } catch (const Error&) {
    return false;
  }
}

/// Keys of the checkpoint's top-level dict (str keys as is, int keys in
/// decimal). Error if the top-level object is not a dict.
inline std::vector<std::string> pth_top_level_keys(const std::string& path) {
  auto ar = detail::open_pth(path);
  const detail::PyObj* root = ar->pickle->root;
  FLOWLESS_CHECK(root->kind == detail::PyObj::Dict, path, ": top-level object is ", detail::py_describe(root),
                 ", not a dict");
  std::vector<std::string> keys;
  for (size_t k = 0; k < root->dict_size(); ++k) {
    const detail::PyObj* key = root->items[2 * k];
    if (key->kind == detail::PyObj::Str) keys.push_back(key->s);
    else if (key->kind == detail::PyObj::Int) keys.push_back(std::to_string(key->i));
    else keys.push_back(std::string("<") + detail::py_kind_name(key->kind) + ">");
  }
  return keys;
}

namespace detail {
// The state dict under `key` of an opened archive (see load_pth_state_dict).
inline std::map<std::string, Array> pth_state_dict(PthArchive* ar, const std::string& key) {
  const std::string& path = ar->path;
  const PyObj* root = ar->pickle->root;
  const PyObj* sd = root;
  std::string what = "top-level object";
  if (!key.empty()) {
    FLOWLESS_CHECK(root->kind == PyObj::Dict, path, ": top-level object is ", py_describe(root),
                   ", not a dict, so it has no entry '", key, "'");
    sd = py_dict_get(root, key);
    if (sd == nullptr) {
      std::string avail;
      for (size_t k = 0; k < root->dict_size(); ++k) {
        const PyObj* kk = root->items[2 * k];
        if (!avail.empty()) avail += ", ";
        avail += kk->kind == PyObj::Str ? "'" + kk->s + "'" : std::string("<") + py_kind_name(kk->kind) + ">";
      }
      FLOWLESS_FAIL(path, ": checkpoint has no entry '", key, "' (available keys: ", avail.empty() ? "none" : avail,
                    ")");
    }
    what = "entry '" + key + "'";
  }
  FLOWLESS_CHECK(sd->kind == PyObj::Dict, path, ": ", what, " is ", py_describe(sd), ", not a state dict");
  std::map<std::string, Array> out;
  for (size_t k = 0; k < sd->dict_size(); ++k) {
    const PyObj* kk = sd->items[2 * k];
    const PyObj* v = sd->items[2 * k + 1];
    FLOWLESS_CHECK(kk->kind == PyObj::Str, path, ": ", what, " has a key of type ", py_kind_name(kk->kind),
                   "; state dict keys must be strings");
    const std::string where = path + ": " + what + ", tensor '" + kk->s + "'";
    FLOWLESS_CHECK(v->kind == PyObj::Tensor, where, " is ", py_describe(v), ", not a plain tensor");
    std::string name = kk->s;
    if (name.compare(0, 7, "module.") == 0) name = name.substr(7);
    FLOWLESS_CHECK(out.find(name) == out.end(), where, ": the name '", name,
                   "' occurs twice after stripping 'module.'");
    out.emplace(name, pth_tensor_to_array(*ar, v, where));
  }
  return out;
}

}  // namespace detail

/// Loads a state dict from a .pth/.pth.tar checkpoint.
/// key: which entry of the top-level dict holds the state dict
/// ("state_dict_ema" by default); key = "" means the top-level object is
/// itself the state dict. A missing key is an Error listing the available
/// keys. A leading "module." is stripped from names. Any value that is not a
/// plain tensor of a supported dtype is an Error naming the file and entry.
inline std::map<std::string, Array> load_pth_state_dict(const std::string& path,
                                                        const std::string& key = "state_dict_ema") {
  auto ar = detail::open_pth(path);
  return detail::pth_state_dict(ar.get(), key);
}

/// load_pth_state_dict on the bytes of a checkpoint held in memory; context
/// names it in errors.
inline std::map<std::string, Array> parse_pth_state_dict(std::string bytes, const std::string& context,
                                                         const std::string& key = "state_dict_ema") {
  FLOWLESS_CHECK(bytes.size() >= 4 && bytes.compare(0, 4, "PK\x03\x04") == 0, context,
                 ": not a PyTorch zip checkpoint (the legacy torch.save format of torch < 1.6 is not supported; "
                 "re-save it with a newer torch)");
  auto zip = std::make_unique<ZipReader>(ZipReader::from_bytes(std::move(bytes), context));
  auto ar = detail::open_pth_zip(std::move(zip), context);
  return detail::pth_state_dict(ar.get(), key);
}

}  // namespace flowless::io
