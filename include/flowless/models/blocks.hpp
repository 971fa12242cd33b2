// flowless/models/blocks.hpp - the ActionFormer transformer pieces.
//
// LocalMaskedMHCA<T>   (reference: LocalMaskedMHCA / MaskedMHCA)
//   forward(x: (B, T, C), lengths) -> (B, T / stride, C), out lengths
//   Q, K, V: depthwise k3 masked conv (stride = block stride, no bias) ->
//   LayerNorm -> 1x1 conv; local attention over `window` keys (global when
//   window <= 1); 1x1 output projection; multiplied by the query mask.
// TransformerBlock<T>  (reference: TransformerBlock, pre-LN)
//   y = attn(LN1(x));  x' = skip(x) * mask + DropPath_attn(y)
//   out = x' + DropPath_mlp(MLP(LN2(x')) * mask)
//   skip = identity, or MaxPool1d(k3, s2, p1) over the whole padded buffer
//   when downsampling; MLP = 1x1 conv (C -> 4C) -> GELU -> 1x1 conv (4C -> C).
// Parameter names match the reference checkpoints.
#pragma once

#include <cmath>
#include <memory>
#include <vector>

#include "flowless/nn/layers.hpp"
#include "flowless/ops/activations.hpp"
#include "flowless/ops/elementwise.hpp"
#include "flowless/ops/local_attention.hpp"
#include "flowless/ops/pooling.hpp"

namespace flowless::models {

template <class T>
class LocalMaskedMHCA : public nn::Module<T> {
 public:
  LocalMaskedMHCA(int n_embd, int n_head, int window, int stride, Rng& rng)
      : n_head_(n_head), window_(window), stride_(stride),
        query_conv(n_embd, n_embd, 3, stride, 1, n_embd, false, &rng),
        key_conv(n_embd, n_embd, 3, stride, 1, n_embd, false, &rng),
        value_conv(n_embd, n_embd, 3, stride, 1, n_embd, false, &rng),
        query_norm(n_embd), key_norm(n_embd), value_norm(n_embd),
        key(n_embd, n_embd, 1, 1, 0, 1, true, &rng), query(n_embd, n_embd, 1, 1, 0, 1, true, &rng),
        value(n_embd, n_embd, 1, 1, 0, 1, true, &rng), proj(n_embd, n_embd, 1, 1, 0, 1, true, &rng) {
    FLOWLESS_CHECK(n_embd % n_head == 0, "LocalMaskedMHCA: ", n_embd, " channels for ", n_head, " heads");
    this->register_module("key", key);
    this->register_module("query", query);
    this->register_module("value", value);
    this->register_module("query_conv", query_conv);
    this->register_module("key_conv", key_conv);
    this->register_module("value_conv", value_conv);
    this->register_module("query_norm", query_norm);
    this->register_module("key_norm", key_norm);
    this->register_module("value_norm", value_norm);
    this->register_module("proj", proj);
    // The reference zeroes every nn.Conv1d bias at init.
    for (auto* c : {&key, &query, &value, &proj}) c->bias().value().zero_();
  }

  std::pair<Var<T>, std::vector<int>> forward(const Var<T>& x, const std::vector<int>& lengths) {
    Var<T> q = query_norm.forward(query_conv.forward(x, lengths));
    Var<T> k = key_norm.forward(key_conv.forward(x, lengths));
    Var<T> v = value_norm.forward(value_conv.forward(x, lengths));
    std::vector<int> out_len = query_conv.out_lengths(lengths);
    q = query.forward(q);
    k = key.forward(k);
    v = value.forward(v);
    Var<T> a = local_attention(q, k, v, n_head_, window_, out_len);
    return {mask_time(proj.forward(a), out_len), out_len};
  }

  int stride() const { return stride_; }

 private:
  int n_head_, window_, stride_;

 public:
  nn::MaskedConv1d<T> query_conv, key_conv, value_conv;
  nn::LayerNorm<T> query_norm, key_norm, value_norm;
  nn::Conv1d<T> key, query, value, proj;
};

template <class T>
class TransformerBlock : public nn::Module<T> {
 public:
  TransformerBlock(int n_embd, int n_head, int stride, int window, double path_pdrop, Rng& rng)
      : stride_(stride), ln1(n_embd), ln2(n_embd), attn(n_embd, n_head, window, stride, rng),
        mlp0(n_embd, 4 * n_embd, 1, 1, 0, 1, true, &rng), mlp3(4 * n_embd, n_embd, 1, 1, 0, 1, true, &rng),
        drop_path_attn(n_embd, path_pdrop), drop_path_mlp(n_embd, path_pdrop), has_drop_path_(path_pdrop > 0) {
    this->register_module("ln1", ln1);
    this->register_module("ln2", ln2);
    this->register_module("attn", attn);
    this->register_module("mlp.0", mlp0);
    this->register_module("mlp.3", mlp3);
    if (has_drop_path_) {
      this->register_module("drop_path_attn", drop_path_attn);
      this->register_module("drop_path_mlp", drop_path_mlp);
    }
    mlp0.bias().value().zero_();
    mlp3.bias().value().zero_();
  }

  std::pair<Var<T>, std::vector<int>> forward(const Var<T>& x, const std::vector<int>& lengths, Rng& rng) {
    auto [y, out_len] = attn.forward(ln1.forward(x), lengths);
    Var<T> skip = stride_ > 1 ? max_pool1d(x, stride_ + 1, stride_, (stride_ + 1) / 2) : x;
    Var<T> out = add(mask_time(skip, out_len), has_drop_path_ ? drop_path_attn.forward(y, rng) : y);
    Var<T> m = mask_time(mlp3.forward(gelu(mlp0.forward(ln2.forward(out)))), out_len);
    out = add(out, has_drop_path_ ? drop_path_mlp.forward(m, rng) : m);
    return {out, out_len};
  }

 private:
  int stride_;

 public:
  nn::LayerNorm<T> ln1, ln2;
  LocalMaskedMHCA<T> attn;
  nn::Conv1d<T> mlp0, mlp3;
  nn::AffineDropPath<T> drop_path_attn, drop_path_mlp;

 private:
  bool has_drop_path_;
};

}  // namespace flowless::models
