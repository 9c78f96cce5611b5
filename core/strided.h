// Small helpers for walking strided tensors in logical (row-major) order and converting element
// values, shared by the CPU kernels and by Tensor's value accessors.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/tensor.h"

namespace shardlab {

template <typename T>
inline double to_double(T v) {
  if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>) return static_cast<double>(static_cast<float>(v));
  else return static_cast<double>(v);
}

template <typename T>
inline T from_double(double v) {
  if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>) return T(static_cast<float>(v));
  else return static_cast<T>(v);
}

// Converts between element types through the arithmetic type (f32 for 16-bit floats).
template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) return v;
  else if constexpr (std::is_same_v<From, bf16_t> || std::is_same_v<From, f16_t>) return convert<To>(static_cast<float>(v));
  else if constexpr (std::is_same_v<To, bf16_t> || std::is_same_v<To, f16_t>) return To(static_cast<float>(v));
  else return static_cast<To>(v);
}

// Calls f(element_offset) for every element of (shape, strides) in row-major logical order.
template <typename F>
void for_each_offset(const Shape& shape, const Shape& strides, int64_t base, F&& f) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (nd == 0) { f(base); return; }
  for (int64_t s : shape) if (s == 0) return;
  Shape idx(nd, 0);
  const int64_t inner = shape[nd - 1], inner_stride = strides[nd - 1];
  int64_t off = base;
  while (true) {
    for (int64_t i = 0; i < inner; ++i) f(off + i * inner_stride);
    int64_t d = nd - 2;
    for (; d >= 0; --d) {
      off += strides[d];
      if (++idx[d] < shape[d]) break;
      off -= strides[d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

// Element offset of the logical row-major index `linear` in (shape, strides).
inline int64_t offset_of(int64_t linear, const Shape& shape, const Shape& strides) {
  int64_t off = 0;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    off += (linear % shape[d]) * strides[d];
    linear /= shape[d];
  }
  return off;
}

}  // namespace shardlab
