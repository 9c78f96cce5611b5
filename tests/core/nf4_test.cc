// NF4 quantization against bitsandbytes' own output (tests/golden/nf4_bnb.safetensors, made by
// tools/make_nf4_goldens.py), plus hand-computed packing, a brute-force nearest-code search, the
// bytes per parameter, and the errors for bad weights.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/ops.h"
#include "core/ops/nf4.h"
#include "core/safetensors.h"

namespace shardlab::ops {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

SafetensorsFile golden() {
  return SafetensorsFile::open(std::string(SHARDLAB_SOURCE_DIR) + "/tests/golden/nf4_bnb.safetensors");
}

// Every element equal; reports the first five differences by index.
void expect_same_codes(const std::vector<int64_t>& got, const std::vector<int64_t>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i] && bad++ < 5) ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << ", want " << want[i];
  EXPECT_EQ(bad, 0) << what;
}

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<int64_t>(ia) - ib);
}

TEST(Nf4Golden, CodeTablesAreBitsandbytes) {
  const SafetensorsFile g = golden();
  const std::vector<double> qmap = g.get("quant_map").to_double_vector();
  ASSERT_EQ(qmap.size(), 16u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(static_cast<float>(qmap[i]), kNf4Code[i]) << "NF4 code " << i;
  // The nested map is bnb's signed dynamic map bit for bit, and within an ulp of the exactly
  // computed one the 8-bit optimizers use.
  const std::vector<double> dmap = g.get("nested_quant_map").to_double_vector();
  ASSERT_EQ(dmap.size(), 256u);
  int off_by_one_ulp = 0;
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(static_cast<float>(dmap[i]), nf4_nested_map()[i]) << "code " << i;
    EXPECT_LE(ulps(nf4_nested_map()[i], dynamic_map(true)[i]), 1) << "code " << i;
    off_by_one_ulp += nf4_nested_map()[i] != dynamic_map(true)[i];
  }
  EXPECT_EQ(off_by_one_ulp, 72);
}

// The index of the map entry nearest to x, by brute force.
int nearest_entry(const std::array<float, 256>& map, float x) {
  int best = 0;
  for (int i = 1; i < 256; ++i)
    if (std::abs(x - map[i]) < std::abs(x - map[best])) best = i;
  return best;
}

TEST(Nf4Golden, QuantizeGivesBitsandbytesBytesAndConstants) {
  const SafetensorsFile g = golden();
  const Tensor w = g.get("weight");
  ASSERT_EQ(w.shape(), (Shape{97, 199}));
  const Nf4Tensor q = nf4_quantize(w);
  EXPECT_EQ(q.shape, w.shape());
  EXPECT_EQ(q.dtype, DType::f32);
  expect_same_codes(q.packed.to_int_vector(), g.get("packed").to_int_vector(), "packed");
  // The offset is the mean of the 302 block absmax values: ours is the exact mean rounded once,
  // torch's f32 sum rounds along the way, so the two may be an ulp apart (they are here).
  const float offset = static_cast<float>(q.offset.item());
  const float bnb_offset = static_cast<float>(g.get("nested_offset").item());
  EXPECT_LE(ulps(offset, bnb_offset), 1);
  const std::vector<double> nested = q.nested_absmax.to_double_vector();
  const std::vector<double> bnb_nested = g.get("nested_absmax").to_double_vector();
  ASSERT_EQ(nested.size(), 2u);
  for (int c = 0; c < 2; ++c) EXPECT_LE(ulps(static_cast<float>(nested[c]), static_cast<float>(bnb_nested[c])), 1);
  // Every absmax code is the nearest map entry to (absmax - offset) / nested absmax (as bnb's CUDA
  // kQuantizeBlockwise picks it), and equals bnb's except next to a midpoint between two entries:
  // there the offset's ulp, or bnb's CPU binary search (BinSearch "Direct2", which is not always
  // nearest), may land on the neighbour.
  const std::vector<double> x = w.to_double_vector();
  const std::vector<int64_t> codes = q.absmax_codes.to_int_vector(), bnb_codes = g.get("absmax").to_int_vector();
  ASSERT_EQ(codes.size(), 302u);
  const auto& map = nf4_nested_map();
  int differ = 0;
  for (size_t b = 0; b < codes.size(); ++b) {
    float amax = 0.0f;
    for (size_t i = b * 64; i < std::min(x.size(), b * 64 + 64); ++i) amax = std::max(amax, std::fabs(static_cast<float>(x[i])));
    const float v = (amax - offset) * (1.0f / static_cast<float>(nested[b / 256]));
    EXPECT_EQ(codes[b], nearest_entry(map, v)) << "block " << b;
    if (codes[b] == bnb_codes[b]) continue;
    ++differ;
    ASSERT_EQ(std::abs(codes[b] - bnb_codes[b]), 1) << "block " << b;
    const float lo = map[std::min(codes[b], bnb_codes[b])], hi = map[std::max(codes[b], bnb_codes[b])];
    EXPECT_LT(std::abs(v - 0.5f * (lo + hi)), 0.01f * (hi - lo)) << "block " << b << " is not near a midpoint";
  }
  EXPECT_LE(differ, 3) << "absmax codes that differ from bnb's";
}

TEST(Nf4Golden, DequantizeGivesBitsandbytesValues) {
  const SafetensorsFile g = golden();
  // bnb's own quant state, dequantized by us: independent of our quantizer.
  Nf4Tensor q;
  q.packed = g.get("packed");
  q.absmax_codes = g.get("absmax");
  q.nested_absmax = g.get("nested_absmax");
  q.offset = g.get("nested_offset");
  q.shape = {97, 199};
  q.dtype = DType::f32;
  const std::vector<double> absmax = nf4_absmax(q).to_double_vector();
  const std::vector<double> want_absmax = g.get("absmax_dequant").to_double_vector();
  ASSERT_EQ(absmax.size(), want_absmax.size());
  for (size_t b = 0; b < absmax.size(); ++b)
    EXPECT_EQ(static_cast<float>(absmax[b]), static_cast<float>(want_absmax[b])) << "block " << b;
  const std::vector<double> got = nf4_dequantize(q, DType::f32).to_double_vector();
  const std::vector<double> want = g.get("dequantized").to_double_vector();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i], want[i]) << "element " << i;
}

TEST(Nf4Golden, RoundTripErrorIsWithinHalfACodeGap) {
  const SafetensorsFile g = golden();
  const Tensor w = g.get("weight");
  const Nf4Tensor q = nf4_quantize(w);
  const std::vector<double> x = w.to_double_vector();
  const std::vector<double> y = nf4_dequantize(q, DType::f32).to_double_vector();
  const std::vector<double> absmax = nf4_absmax(q).to_double_vector();
  // x = s * A with |s| <= 1 and y = c * A' with c the nearest code to s: |x - y| <= |s - c| A +
  // |c| |A - A'|, where |s - c| is at most half the widest code gap (-0.6961928 - -1) / 2 and A' is
  // the double-quantized absmax (coarse for small blocks: the 8-bit map spans the widest spread).
  for (size_t b = 0; b < absmax.size(); ++b) {
    double amax = 0.0;
    for (size_t i = b * 64; i < std::min(x.size(), b * 64 + 64); ++i) amax = std::max(amax, std::abs(x[i]));
    const double bound = amax * (1.0 - 0.6961928) / 2 + std::abs(amax - absmax[b]) + 1e-9;
    for (size_t i = b * 64; i < std::min(x.size(), b * 64 + 64); ++i)
      ASSERT_LE(std::abs(x[i] - y[i]), bound) << "element " << i;
  }
}

TEST(Nf4, PacksTheFirstElementInTheHighNibble) {
  // absmax 2: the values are exactly codes 0, 15, 7, 8, 3, ... of the NF4 table.
  std::vector<double> v(64, 0.0);
  const int codes[] = {0, 15, 7, 8, 3, 12};
  for (int i = 0; i < 6; ++i) v[i] = 2.0 * kNf4Code[codes[i]];
  for (int i = 6; i < 64; ++i) v[i] = 2.0 * kNf4Code[i % 16];
  const Nf4Tensor q = nf4_quantize(Tensor::from_vector(v, {64}));
  const std::vector<int64_t> bytes = q.packed.to_int_vector();
  ASSERT_EQ(bytes.size(), 32u);
  EXPECT_EQ(bytes[0], 0x0F);
  EXPECT_EQ(bytes[1], 0x78);
  EXPECT_EQ(bytes[2], 0x3C);
  // One block: its absmax minus the mean is 0, which the dynamic map stores exactly.
  EXPECT_EQ(nf4_absmax(q).item(), 2.0);
  const std::vector<double> back = nf4_dequantize(q, DType::f64).to_double_vector();
  for (int i = 0; i < 64; ++i) EXPECT_EQ(back[i], static_cast<double>(static_cast<float>(v[i]))) << i;
}

TEST(Nf4, CodesAreTheNearestTableEntry) {
  const Tensor w = Tensor::randn({40, 96}, 7);
  const Nf4Tensor q = nf4_quantize(w);
  const std::vector<double> x = w.to_double_vector();
  const std::vector<int64_t> bytes = q.packed.to_int_vector();
  for (size_t b = 0; b < x.size() / 64; ++b) {
    double amax = 0.0;
    for (size_t i = b * 64; i < b * 64 + 64; ++i) amax = std::max(amax, std::abs(x[i]));
    for (size_t i = b * 64; i < b * 64 + 64; ++i) {
      int best = 0;
      for (int c = 1; c < 16; ++c)
        if (std::abs(x[i] / amax - kNf4Code[c]) < std::abs(x[i] / amax - kNf4Code[best])) best = c;
      const int got = i % 2 == 0 ? bytes[i / 2] >> 4 : bytes[i / 2] & 0xF;
      ASSERT_EQ(got, best) << "element " << i << " = " << x[i] << ", block absmax " << amax;
    }
  }
}

TEST(Nf4, AllZeroBlockDequantizesToZeros) {
  std::vector<double> v(192, 0.0);
  for (int i = 0; i < 64; ++i) v[i] = 0.01 * (i - 32);
  for (int i = 128; i < 192; ++i) v[i] = -0.02 * (i - 150);
  const Nf4Tensor q = nf4_quantize(Tensor::from_vector(v, {3, 64}));
  const std::vector<double> back = nf4_dequantize(q, DType::f32).to_double_vector();
  for (int i = 64; i < 128; ++i) EXPECT_EQ(back[i], 0.0) << i;
}

TEST(Nf4, OddTailIsPaddedWithTheCodeOfZero) {
  const Nf4Tensor q = nf4_quantize(Tensor::from_vector({1.0, -1.0, 1.0}, {3}));
  EXPECT_EQ(q.packed.to_int_vector(), (std::vector<int64_t>{0xF0, 0xF7}));  // pad nibble: code of 0.0
  EXPECT_EQ(q.num_blocks(), 1);
}

TEST(Nf4, BytesPerParameterIsHalfPlusConstants) {
  // 256 x 1024 = 2^18 elements: 2^12 blocks of 64, 16 nested blocks of 256, one f32 offset.
  const int64_t n = 256 * 1024;
  const Nf4Tensor q = nf4_quantize(Tensor::randn({256, 1024}, 3, DType::bf16));
  EXPECT_EQ(q.nbytes(), n / 2 + n / 64 + 4 * (n / 64 / 256) + 4);
  const double per_param = static_cast<double>(q.nbytes()) / n;
  EXPECT_NEAR(per_param, 0.5 + 1.0 / 64 + 4.0 / (64 * 256), 1e-4);  // 0.516
}

TEST(Nf4, Bf16WeightQuantizesLikeItsF32Values) {
  const Tensor w16 = Tensor::randn({8, 64}, 5, DType::bf16);
  const Nf4Tensor a = nf4_quantize(w16), b = nf4_quantize(to_dtype(w16, DType::f32));
  EXPECT_EQ(a.dtype, DType::bf16);
  EXPECT_EQ(a.packed.to_int_vector(), b.packed.to_int_vector());
  EXPECT_EQ(a.absmax_codes.to_int_vector(), b.absmax_codes.to_int_vector());
  EXPECT_EQ(a.nested_absmax.to_double_vector(), b.nested_absmax.to_double_vector());
}

TEST(Nf4, NonContiguousWeightQuantizesItsLogicalOrder) {
  const Tensor w = Tensor::randn({64, 32}, 9);
  const Tensor wt = transpose(w, 0, 1);
  ASSERT_FALSE(wt.is_contiguous());
  EXPECT_EQ(nf4_quantize(wt).packed.to_int_vector(), nf4_quantize(contiguous(wt)).packed.to_int_vector());
}

TEST(Nf4Errors, BadWeightsNameTheOpAndShape) {
  try {
    nf4_quantize(Tensor::zeros({2, 3}, DType::i64));
    FAIL() << "integer weight accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("nf4_quantize"), HasSubstr("i64"), HasSubstr("(2, 3)")));
  }
  try {
    nf4_quantize(Tensor::zeros({0, 3}));
    FAIL() << "empty weight accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("nf4_quantize"), HasSubstr("(0, 3)")));
  }
  Nf4Tensor q = nf4_quantize(Tensor::randn({4, 64}, 1));
  q.shape = {4, 65};  // 260 elements need 130 packed bytes and 5 blocks, not 128 and 4
  try {
    nf4_dequantize(q, DType::f32);
    FAIL() << "inconsistent NF4 weight accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("nf4_dequantize"), HasSubstr("(4, 65)"), HasSubstr("130")));
  }
  q = nf4_quantize(Tensor::randn({4, 64}, 1));
  q.nested_absmax = to_dtype(q.nested_absmax, DType::bf16);
  EXPECT_THROW(nf4_dequantize(q, DType::f32), Error);
  q = nf4_quantize(Tensor::randn({4, 64}, 1));
  EXPECT_THROW(nf4_dequantize(q, DType::i32), Error);
}

}  // namespace
}  // namespace shardlab::ops
