// Shared pieces of the CPU kernels: vectorisable exp, sigmoid and tanh (recurrence.cpp, attention.cpp) and
// the vector width kLanes; for recurrence.cpp the register-tiled product of a block of kRows rows with a
// weight matrix and the zero padding of weights to its tile width.
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace dien_kernels {

// exp, sigmoid and tanh written so that the compiler vectorises the gate loops (the libm calls do not):
// exp(x) = 2^n * p(f), n = round(x log2 e), p a degree-6 polynomial on [-ln2/2, ln2/2]; relative error
// below 2e-7 (float rounding) over the range the gates use. sigmoid and tanh follow from exp.
// The constants both versions (this one and the AVX-512 one below) use: the clamp, log2 e, ln 2 in two
// parts (the high one exact in few bits, so n * kLn2Hi is exact) and the polynomial's coefficients of
// f^6 .. f^2 (p = 1 + f + f^2 (c2 + f (c3 + ...))).
constexpr float kExpLow = -87.0f, kExpHigh = 88.0f, kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.428606765330187e-06f;
constexpr float kExpPoly[5] = {1.3981999507e-03f, 8.3334519073e-03f, 4.1665795894e-02f, 1.6666665459e-01f,
                               5.0000001201e-01f};

#pragma omp declare simd
inline float fast_exp(float x) {
  x = std::min(std::max(x, kExpLow), kExpHigh);
  const float n = std::nearbyint(x * kLog2e);
  const float f = x - n * kLn2Hi - n * kLn2Lo;
  float p = kExpPoly[0];
  for (int i = 1; i < 5; ++i) p = p * f + kExpPoly[i];
  p = p * f * f + f + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &p, 4);
  bits += static_cast<int32_t>(n) << 23;
  std::memcpy(&p, &bits, 4);
  return p;
}

#pragma omp declare simd
inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

#pragma omp declare simd
inline float fast_tanh(float x) {  // tanh(x) = 1 - 2 / (exp(2x) + 1), exact to float rounding at both ends
  return 1.0f - 2.0f / (fast_exp(2.0f * x) + 1.0f);
}

#ifdef __AVX512F__
// The same functions on 16 lanes with AVX-512: exp scaled by 2^n with vscalefps (no integer ops), and the
// reciprocals of sigmoid and tanh as vrcp14ps plus one Newton step instead of a division (the divider,
// one vdivps per 16 units, is what bounds the gates otherwise); within 2 ulp of the divisions. The
// clamps keep the constant first, so a NaN input stays NaN.
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(kExpHigh), _mm512_max_ps(_mm512_set1_ps(kExpLow), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  f = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), f);
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 5; ++i) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExpPoly[i]));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, f), f, _mm512_add_ps(f, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __m512 reciprocal16(__m512 d) {  // 1 / d for d >= 1
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

inline __m512 sigmoid16(__m512 x) {
  return reciprocal16(_mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

inline __m512 tanh16(__m512 x) {
  const __m512 r = reciprocal16(_mm512_add_ps(exp16(_mm512_add_ps(x, x)), _mm512_set1_ps(1.0f)));
  return _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), r, _mm512_set1_ps(1.0f));
}
#endif

constexpr int kRows = 8;   // rows stepped together: each weight row loaded once per step serves all of them
// Floats per vector register: the width of block_products' tiles, of the gate vectors and of the
// attention kernel's step blocks (the padded gate width is a multiple of it). On AVX2, H = 36 gates in
// 16-wide vectors compute 48 units, 8-wide 40 (scoring-shape recurrence 45 -> 36 ms, min of 4 runs).
#ifdef __AVX512F__
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif

constexpr int64_t padded(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// A row's history length as a step count in [0, T].
inline int64_t clamped_steps(int64_t length, int64_t T) { return std::min<int64_t>(std::max<int64_t>(length, 0), T); }

// w [out, in] -> w^T [in, padded(out)], zero padded: the layout block_products reads.
inline torch::Tensor transposed_padded(const torch::Tensor& w) {
  auto out = torch::zeros({w.size(1), padded(w.size(0))}, w.options());
  out.narrow(1, 0, w.size(0)).copy_(w.t());
  return out;
}

// v [n] -> [padded(n)], zero padded.
inline torch::Tensor vector_padded(const torch::Tensor& v) {
  auto out = torch::zeros({padded(v.numel())}, v.options());
  out.narrow(0, 0, v.numel()).copy_(v.reshape(-1));
  return out;
}

// gh[r] = h[r] W^T + b for the kRows rows of a block: W^T given as [H, gp] (transposed_padded), b as [gp],
// h as [kRows, H]. A kRows x kLanes tile of accumulators stays in registers over the sum.
template <int HC>
inline void block_products(const float* h, const float* wt, const float* b, float* gh, int64_t h_size,
                           int64_t gp) {
  const int64_t H = HC ? HC : h_size;
  for (int64_t j0 = 0; j0 < gp; j0 += kLanes) {
    float acc[kRows][kLanes];
    for (int r = 0; r < kRows; ++r)
#pragma omp simd
      for (int jj = 0; jj < kLanes; ++jj) acc[r][jj] = b[j0 + jj];
    for (int64_t k = 0; k < H; ++k) {
      const float* w = wt + k * gp + j0;
      for (int r = 0; r < kRows; ++r) {
        const float hk = h[r * H + k];
#pragma omp simd
        for (int jj = 0; jj < kLanes; ++jj) acc[r][jj] += hk * w[jj];
      }
    }
    for (int r = 0; r < kRows; ++r)
#pragma omp simd
      for (int jj = 0; jj < kLanes; ++jj) gh[r * gp + j0 + jj] = acc[r][jj];
  }
}

}  // namespace dien_kernels
