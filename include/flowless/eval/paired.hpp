// flowless/eval/paired.hpp - paired comparison of two variants over seeds.
//
// Two detector variants trained with the same training seeds on the same
// data are compared seed by seed: d_i = a_i - b_i. Pairing removes what the
// two runs of one seed share (the data order and the trunk's initialisation,
// identical for every variant of flowless's `experiment`), so the spread of
// the differences is the noise that decides whether a is better than b,
// not the spread of either variant alone.
//
// paired_difference(a, b), a and b of equal length n >= 1 (a[i] and b[i] are
// the same seed):
//   mean      = mean of d
//   std       = sample standard deviation of d (n - 1 in the denominator;
//               0 when n == 1)
//   std_error = std / sqrt(n)  (0 when n == 1)
//   positive  = how many d_i > 0;  n = the number of pairs
// Throws flowless::Error when the sizes differ or are 0, or a value is not
// finite.
//
// mean_and_std(x): {mean, sample standard deviation (0 when x has one value)}
// of n >= 1 values; the statistic of each variant's column in the tables.
#pragma once

#include <cmath>
#include <cstddef>
#include <tuple>
#include <utility>
#include <vector>

#include "flowless/core/error.hpp"

namespace flowless::eval {

struct PairedDifference {
  double mean = 0;
  double std = 0;
  double std_error = 0;
  size_t positive = 0;
  size_t n = 0;
};

inline std::pair<double, double> mean_and_std(const std::vector<double>& x) {
  FLOWLESS_CHECK(!x.empty(), "mean_and_std: no values");
  double m = 0;
  for (double a : x) m += a;
  m /= double(x.size());
  if (x.size() < 2) return {m, 0.0};
  double ss = 0;
  for (double a : x) ss += (a - m) * (a - m);
  return {m, std::sqrt(ss / double(x.size() - 1))};
}

inline PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b) {
  FLOWLESS_CHECK(a.size() == b.size(), "paired_difference: ", a.size(), " values against ", b.size(),
                 " (one value per seed on each side)");
  FLOWLESS_CHECK(!a.empty(), "paired_difference: no pairs");
  PairedDifference r;
  r.n = a.size();
  std::vector<double> d(r.n);
  for (size_t i = 0; i < r.n; ++i) {
    FLOWLESS_CHECK(std::isfinite(a[i]) && std::isfinite(b[i]), "paired_difference: pair ", i,
                   " is not finite (", a[i], ", ", b[i], ")");
    d[i] = a[i] - b[i];
    if (d[i] > 0) ++r.positive;
  }
  std::tie(r.mean, r.std) = mean_and_std(d);
  r.std_error = r.std / std::sqrt(double(r.n));
  return r;
}

}  // namespace flowless::eval
