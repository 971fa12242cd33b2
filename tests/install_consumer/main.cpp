#include <flowless/flowless.hpp>
#include <iostream>

int main() {
  flowless::Tensor<float> t = flowless::Tensor<float>::full(flowless::Shape{2, 3}, 1.5f);
  std::cout << "flowless consumer ok, sum " << t[0] * 6 << "\n";
  return 0;
}
