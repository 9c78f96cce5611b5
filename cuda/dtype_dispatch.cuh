// DType -> CUDA element type for kernel templates: dispatch_cuda_float / dispatch_cuda_numeric call
// fn.template operator()<T>() with float, double, __nv_bfloat16, __half (and the integer types),
// and acc_t<T> / to_acc / from_acc give the arithmetic type (f32 for 16-bit floats) and conversions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"

namespace shardlab::cuda {

template <typename T>
struct AccType { using type = T; };
template <> struct AccType<__nv_bfloat16> { using type = float; };
template <> struct AccType<__half> { using type = float; };
template <> struct AccType<int32_t> { using type = int64_t; };
template <> struct AccType<uint8_t> { using type = int64_t; };
template <> struct AccType<int8_t> { using type = int64_t; };
// The type arithmetic on T happens in: f32 for 16-bit floats, i64 for small integers.
template <typename T>
using acc_t = typename AccType<T>::type;

template <typename T>
__host__ __device__ inline acc_t<T> to_acc(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(x);
  else if constexpr (std::is_same_v<T, __half>) return __half2float(x);
  else return static_cast<acc_t<T>>(x);
}

// Rounds an arithmetic value to T once (round-to-nearest-even for the 16-bit floats).
template <typename T, typename A>
__host__ __device__ inline T from_acc(A x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(static_cast<float>(x));
  else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(static_cast<float>(x));
  else return static_cast<T>(x);
}

template <typename T>
inline constexpr bool is_cuda_float_v = std::is_floating_point_v<T> || std::is_same_v<T, __nv_bfloat16> ||
                                        std::is_same_v<T, __half>;

// fn.template operator()<T>() for the floating dtypes; an error naming `op` for any other.
template <typename Fn>
decltype(auto) dispatch_cuda_float(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::bf16: return fn.template operator()<__nv_bfloat16>();
    case DType::f16: return fn.template operator()<__half>();
    default: SL_FAIL(op, ": the CUDA kernel takes f32, f64, bf16 or f16, not ", dtype_name(t));
  }
}

// As dispatch_cuda_float, plus i32, i64, u8 and i8.
template <typename Fn>
decltype(auto) dispatch_cuda_numeric(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
    case DType::u8: return fn.template operator()<uint8_t>();
    case DType::i8: return fn.template operator()<int8_t>();
    default: return dispatch_cuda_float(t, op, std::forward<Fn>(fn));
  }
}

}  // namespace shardlab::cuda
