// Uses the installed library: a small matmul with a gradient.
#include <heed/heed.h>

#include <cstdio>

int main() {
  heed::Tensor a = heed::Tensor::ones({2, 3}, heed::DType::kF64);
  a.requires_grad_();
  heed::Tensor b = heed::Tensor::ones({3, 4}, heed::DType::kF64);
  heed::Tensor y = heed::sum(heed::matmul(a, b));
  y.backward();
  std::printf("sum=%g grad=%g\n", y.item(), a.grad().to_vector<double>()[0]);
  return (y.item() == 24.0 && a.grad().to_vector<double>()[0] == 4.0) ? 0 : 1;
}
