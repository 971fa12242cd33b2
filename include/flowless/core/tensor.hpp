// flowless/core/tensor.hpp - the minimal tensor.
//
// Tensor<T, Backend>: a contiguous, row-major array of up to 4 dimensions
// whose storage is owned (shared, reference counted) through the backend's
// allocator. Views (reshape, narrow along dim 0, select along dim 0) share the
// storage and cost nothing. Copies are explicit (clone, to<OtherBackend>).
// T is the scalar type: float for real use, double for gradient checks;
// storage-only types (bf16/fp16) can be added without touching the ops.
//
// Layout convention of the whole library: sequences are time-major,
//   x: (B, T, C)   batch, time, channels
// and masks are prefix masks given as valid lengths per batch element.
#pragma once

#include <memory>
#include <type_traits>
#include <vector>

#include "flowless/backend/cpu.hpp"
#include "flowless/core/shape.hpp"

namespace flowless {

template <class Backend>
struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit Storage(size_t n) : ptr(Backend::allocate(n)), bytes(n) {}
  ~Storage() { Backend::deallocate(ptr); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

template <class T, class Backend = Cpu>
class Tensor {
 public:
  using scalar_type = T;
  using backend_type = Backend;

  Tensor() = default;
  /// Uninitialised tensor of the given shape.
  explicit Tensor(const Shape& s) : shape_(s) {
    storage_ = std::make_shared<Storage<Backend>>(sizeof(T) * static_cast<size_t>(s.numel()));
  }
  static Tensor empty(const Shape& s) { return Tensor(s); }
  static Tensor zeros(const Shape& s) { return full(s, T(0)); }
  static Tensor full(const Shape& s, T v) {
    Tensor t(s);
    Backend::fill(t.data(), t.numel(), v);
    return t;
  }
  /// Copies host data (row-major) into a new tensor.
  static Tensor from_host(const T* p, const Shape& s) {
    Tensor t(s);
    Backend::copy_from_host(t.data(), p, sizeof(T) * s.numel());
    return t;
  }
  static Tensor from_vector(const std::vector<T>& v, const Shape& s) {
    FLOWLESS_CHECK(static_cast<int64_t>(v.size()) == s.numel(), "Tensor::from_vector: ", v.size(),
                   " values for shape ", s.str());
    return from_host(v.data(), s);
  }

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int dim() const { return shape_.nd; }
  int64_t size(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }

  T* data() { return storage_ ? reinterpret_cast<T*>(storage_->ptr) + offset_ : nullptr; }
  const T* data() const { return storage_ ? reinterpret_cast<const T*>(storage_->ptr) + offset_ : nullptr; }

  /// Host-side element access (CPU backend only).
  T& operator[](int64_t i) {
    static_assert(Backend::is_host, "element access needs a host backend");
    return data()[i];
  }
  const T& operator[](int64_t i) const {
    static_assert(Backend::is_host, "element access needs a host backend");
    return data()[i];
  }

  /// Same storage, new shape with the same number of elements.
  Tensor reshape(const Shape& s) const {
    FLOWLESS_CHECK(s.numel() == numel(), "Tensor::reshape: ", shape_.str(), " -> ", s.str());
    Tensor t = *this;
    t.shape_ = s;
    return t;
  }
  /// View of rows [start, start+len) along dimension 0.
  Tensor narrow0(int64_t start, int64_t len) const {
    FLOWLESS_CHECK(dim() >= 1 && start >= 0 && len >= 0 && start + len <= shape_[0], "Tensor::narrow0: [", start,
                   ", ", start + len, ") of ", shape_.str());
    Tensor t = *this;
    t.offset_ += start * (numel() / std::max<int64_t>(shape_[0], 1));
    t.shape_[0] = len;
    return t;
  }
  /// View of index i along dimension 0 (one dimension less).
  Tensor select0(int64_t i) const {
    Tensor t = narrow0(i, 1);
    Shape s;
    s.nd = dim() - 1;
    for (int k = 1; k < dim(); ++k) s.d[k - 1] = shape_.d[k];
    t.shape_ = s;
    return t;
  }

  Tensor clone() const {
    Tensor t(shape_);
    Backend::copy(t.data(), data(), sizeof(T) * numel());
    return t;
  }
  void fill_(T v) { Backend::fill(data(), numel(), v); }
  void zero_() { fill_(T(0)); }
  /// Copies the values of src (same number of elements) into this tensor.
  void copy_(const Tensor& src) {
    FLOWLESS_CHECK(src.numel() == numel(), "Tensor::copy_: ", src.shape().str(), " into ", shape_.str());
    Backend::copy(data(), src.data(), sizeof(T) * numel());
  }
  std::vector<T> to_vector() const {
    std::vector<T> v(static_cast<size_t>(numel()));
    Backend::copy_to_host(v.data(), data(), sizeof(T) * numel());
    return v;
  }
  /// True when both tensors view the same storage.
  bool shares_storage(const Tensor& o) const { return storage_ == o.storage_; }

 private:
  std::shared_ptr<Storage<Backend>> storage_;
  int64_t offset_ = 0;
  Shape shape_;
};

/// Element type conversion on the host (e.g. float weights -> double for gradient checks).
template <class To, class From, class B>
Tensor<To, B> cast(const Tensor<From, B>& t) {
  static_assert(B::is_host, "cast needs a host backend");
  Tensor<To, B> out(t.shape());
  const From* s = t.data();
  To* d = out.data();
  for (int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<To>(s[i]);
  return out;
}

}  // namespace flowless
