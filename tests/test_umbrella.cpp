// A second translation unit that includes the umbrella header: together with
// test_core.cpp this proves the header-only library links into one program
// (no duplicate definitions of non-inline functions or variables).
#include <doctest/doctest.h>

#include <flowless/flowless.hpp>

namespace umbrella_second_tu {
float relu_sum(const flowless::Tensor<float>& t) {
  flowless::NoGradGuard ng;
  auto y = flowless::sum(flowless::relu(flowless::Var<float>(t)));
  return y.value()[0];
}
}  // namespace umbrella_second_tu

TEST_CASE("umbrella header: usable from a second translation unit") {
  auto t = flowless::Tensor<float>::from_vector({-1.f, 2.f, -3.f, 4.f}, flowless::Shape{1, 2, 2});
  CHECK(umbrella_second_tu::relu_sum(t) == 6.f);
  flowless::set_num_threads(2);
  CHECK(flowless::num_threads() == 2);
  flowless::set_num_threads(1);
}
