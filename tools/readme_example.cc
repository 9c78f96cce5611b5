// The README's "A first taste of autograd" program. The lines between the readme markers are
// the README's code block byte for byte (test readme_in_sync); readme_example_gradients checks
// the gradients it prints against an independent reference (tools/check_readme_example.py).
// [readme-begin]
#include <iostream>

#include "autograd/functions.h"

using namespace shardlab;

int main() {
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64).set_requires_grad(true);
  Tensor w = Tensor::from_vector({0.5, -1, 0.25, 0.75, -0.5, 1}, {3, 2}, DType::f64).set_requires_grad(true);
  Tensor loss = sum(silu(matmul(x, w)));  // a scalar: sum over the (2, 2) product
  backward(loss);                         // fills x.grad() and w.grad()
  std::cout << "x = " << x << "\nw = " << w << "\nloss = " << loss.item() << "\n";
  std::cout << "x.grad = " << x.grad() << "\nw.grad = " << w.grad() << "\n";
}
// [readme-end]
