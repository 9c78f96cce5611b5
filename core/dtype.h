// Element types: one constexpr traits table generated from dtypes.def, the C++ type behind each
// dtype on the CPU (Eigen's bfloat16/half for the 16-bit floats), and dtype dispatch helpers.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace shardlab {

enum class DType : uint8_t {
#define SL_DTYPE(e, name, bits, block, is_float, is_quant) e,
#include "core/dtypes.def"
#undef SL_DTYPE
};

struct DTypeTraits {
  const char* name;
  int bits;        // bits per element
  int block_size;  // elements that share one quantization constant (1 for plain types)
  bool is_float;
  bool is_quantized;
};

inline constexpr DTypeTraits kDTypeTraits[] = {
#define SL_DTYPE(e, name, bits, block, is_float, is_quant) {name, bits, block, is_float, is_quant},
#include "core/dtypes.def"
#undef SL_DTYPE
};
inline constexpr int kNumDTypes = sizeof(kDTypeTraits) / sizeof(kDTypeTraits[0]);
static_assert(kNumDTypes == 9, "dtypes.def and the DType enum drifted apart");

constexpr const DTypeTraits& traits(DType t) { return kDTypeTraits[static_cast<int>(t)]; }
constexpr const char* dtype_name(DType t) { return traits(t).name; }
constexpr bool is_floating(DType t) { return traits(t).is_float; }
// Bytes for n elements (quantized types pack several elements per byte).
constexpr int64_t dtype_bytes(DType t, int64_t n) { return (n * traits(t).bits + 7) / 8; }
// Bytes of one element; only meaningful for non-quantized types.
constexpr int64_t dtype_size(DType t) { return traits(t).bits / 8; }

DType parse_dtype(std::string_view name);  // "f32", "bf16", "float32", "bfloat16", ...

using bf16_t = Eigen::bfloat16;
using f16_t = Eigen::half;

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<bf16_t> { static constexpr DType value = DType::bf16; };
template <> struct DTypeOf<f16_t> { static constexpr DType value = DType::f16; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::i32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::i64; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct DTypeOf<int8_t> { static constexpr DType value = DType::i8; };
template <typename T> inline constexpr DType dtype_of = DTypeOf<T>::value;

// The type arithmetic is done in: f32 for every float narrower than f64 (bf16/f16 accumulate in
// f32), f64 for f64, the type itself for integers.
template <typename T> struct AccType { using type = T; };
template <> struct AccType<bf16_t> { using type = float; };
template <> struct AccType<f16_t> { using type = float; };
template <typename T> using acc_t = typename AccType<T>::type;

// Calls fn.template operator()<T>() with T the C++ type of `t`, for floating dtypes only.
// `op` names the caller in the error for anything else.
template <typename Fn>
decltype(auto) dispatch_float(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::bf16: return fn.template operator()<bf16_t>();
    case DType::f16: return fn.template operator()<f16_t>();
    default: SL_FAIL(op, ": dtype ", dtype_name(t), " is not supported (needs f32, f64, bf16 or f16)");
  }
}

// Same for every numeric (non-quantized) dtype.
template <typename Fn>
decltype(auto) dispatch_numeric(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::bf16: return fn.template operator()<bf16_t>();
    case DType::f16: return fn.template operator()<f16_t>();
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
    case DType::u8: return fn.template operator()<uint8_t>();
    case DType::i8: return fn.template operator()<int8_t>();
    default: SL_FAIL(op, ": dtype ", dtype_name(t), " has no element-wise kernels");
  }
}

// Same for the integer index dtypes (i32, i64).
template <typename Fn>
decltype(auto) dispatch_index(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
    default: SL_FAIL(op, ": index dtype ", dtype_name(t), " is not supported (needs i32 or i64)");
  }
}

}  // namespace shardlab
