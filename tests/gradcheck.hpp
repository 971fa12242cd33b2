// tests/gradcheck.hpp - finite-difference gradient checks (double precision).
//
// check_gradients(f, inputs): f maps the inputs to one output Var of any
// shape. The scalar probed is L = sum(f(inputs) * R) for a fixed random R; for
// every input that requires grad, each element's analytic dL/dx (from
// backward) is compared with the central difference (L(x+h) - L(x-h)) / 2h.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "flowless/autograd/variable.hpp"
#include "flowless/core/random.hpp"

namespace flowless::test {

inline Tensor<double> random_tensor(const Shape& s, Rng& rng, double scale = 1.0) {
  Tensor<double> t(s);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = scale * rng.normal();
  return t;
}

struct GradcheckResult {
  double max_abs_err = 0, max_rel_err = 0;
};

inline GradcheckResult check_gradients(const std::function<Var<double>(std::vector<Var<double>>&)>& f,
                                       std::vector<Var<double>> inputs, double h = 1e-6, double tol = 1e-5,
                                       uint64_t seed = 7) {
  Rng rng(seed);
  for (auto& v : inputs)
    if (v.defined() && v.requires_grad()) v.zero_grad();
  Var<double> out = f(inputs);
  Tensor<double> R = random_tensor(out.shape(), rng);
  backward(out, R);
  auto probe = [&]() {
    NoGradGuard ng;
    Var<double> o = f(inputs);
    double acc = 0;
    for (int64_t i = 0; i < o.value().numel(); ++i) acc += o.value()[i] * R[i];
    return acc;
  };
  GradcheckResult res;
  for (size_t n = 0; n < inputs.size(); ++n) {
    Var<double>& v = inputs[n];
    if (!v.defined() || !v.requires_grad()) continue;
    REQUIRE_MESSAGE(v.grad().defined(), "input ", n, " received no gradient");
    Tensor<double>& x = v.value();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + h;
      const double lp = probe();
      x[i] = x0 - h;
      const double lm = probe();
      x[i] = x0;
      const double num = (lp - lm) / (2 * h);
      const double ana = v.grad()[i];
      const double err = std::abs(num - ana);
      const double rel = err / std::max(1.0, std::max(std::abs(num), std::abs(ana)));
      res.max_abs_err = std::max(res.max_abs_err, err);
      res.max_rel_err = std::max(res.max_rel_err, rel);
      if (rel > tol) {
        FAIL_CHECK("input ", n, " element ", i, ": analytic ", ana, " vs numeric ", num);
        return res;
      }
    }
  }
  return res;
}

}  // namespace flowless::test
