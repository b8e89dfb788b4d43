// Iteration over N-d strided index spaces: calls f with one element offset per operand.
// The innermost dimension runs as a plain loop, so contiguous operands vectorise.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace heed {

// f(off_0, ..., off_{N-1}) for every index of `shape`, offsets from strides[k].
template <size_t N, class F>
void for_each_strided(std::span<const int64_t> shape, const std::array<const int64_t*, N>& strides, F&& f) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  for (int64_t d : shape)
    if (d == 0) return;
  if (rank == 0) {
    [&]<size_t... I>(std::index_sequence<I...>) { f((static_cast<void>(I), int64_t{0})...); }
    (std::make_index_sequence<N>{});
    return;
  }
  const int64_t inner = shape[rank - 1];
  std::array<int64_t, N> inner_stride;
  for (size_t k = 0; k < N; ++k) inner_stride[k] = strides[k][rank - 1];
  std::vector<int64_t> idx(rank, 0);
  std::array<int64_t, N> base{};
  while (true) {
    [&]<size_t... I>(std::index_sequence<I...>) {
      for (int64_t i = 0; i < inner; ++i) f((base[I] + i * inner_stride[I])...);
    }(std::make_index_sequence<N>{});
    // Advance the outer index (all dims but the last), odometer style.
    int64_t d = rank - 2;
    for (; d >= 0; --d) {
      ++idx[d];
      for (size_t k = 0; k < N; ++k) base[k] += strides[k][d];
      if (idx[d] < shape[d]) break;
      for (size_t k = 0; k < N; ++k) base[k] -= strides[k][d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

template <class F>
void for_each_strided2(std::span<const int64_t> shape, std::span<const int64_t> s0,
                       std::span<const int64_t> s1, F&& f) {
  for_each_strided<2>(shape, {s0.data(), s1.data()}, std::forward<F>(f));
}

template <class F>
void for_each_strided3(std::span<const int64_t> shape, std::span<const int64_t> s0,
                       std::span<const int64_t> s1, std::span<const int64_t> s2, F&& f) {
  for_each_strided<3>(shape, {s0.data(), s1.data(), s2.data()}, std::forward<F>(f));
}

}  // namespace heed
