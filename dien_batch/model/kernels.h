// Shared pieces of the CPU kernels: vectorisable exp, sigmoid and tanh (recurrence.cpp, attention.cpp) and
// the vector width kLanes; for recurrence.cpp the register-tiled product of a block of kRows rows with a
// weight matrix and the zero padding of weights to its tile width.
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX2__)
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
// The same functions on 16 lanes with AVX-512, in fewer operations than the scalar ones (sigmoid 15, tanh
// 16, where a first AVX-512 version took 19 and 20): exp(S x) for a constant S (-1 for sigmoid, 2 for tanh)
// with S folded into the constants; the argument reduced by one FMA with ln 2 rounded to float (the
// product is exact inside the FMA; for |n| <= 126 the error stays below 2.5e-7 relative, below 3e-8 for
// |S x| < 10); a degree-5 minimax polynomial with p(0) = 1 (9.1e-8 relative on [-ln2/2, ln2/2]), so
// sigmoid(0) = 1/2 and tanh(0) = 0 exactly; 2^n by vscalefps; the reciprocal as vrcp14ps plus one Newton
// step. Max abs error against float64 over |x| <= 1000: sigmoid 9.2e-8, tanh 1.8e-7 (the scalar
// versions: 1.0e-7, 2.0e-7). The clamps keep the constant first, so a NaN input stays NaN.
// Each function takes N independent vectors and runs every stage across all of them before the next:
// one vector's operations form a dependency chain that the core overlaps poorly with the next vector's,
// so the recurrence's gates, two vectors at a time, take 281 instead of 417 ns per block step.
constexpr float kExp5[6] = {8.290315047e-03f, 4.189793020e-02f, 1.666763574e-01f, 4.999915063e-01f,
                            9.999997020e-01f, 1.0f};  // c5 .. c0
constexpr float kLn2 = 0.693147182464599609375f;

template <int S, int N>  // x[i] = exp(S x[i]), |S x| clamped to 87
inline void exp16(__m512 (&x)[N]) {
  constexpr float limit = 87.0f / (S < 0 ? -S : S);
  __m512 n[N], g[N], p[N];
  for (int i = 0; i < N; ++i) x[i] = _mm512_min_ps(_mm512_set1_ps(limit), _mm512_max_ps(_mm512_set1_ps(-limit), x[i]));
  for (int i = 0; i < N; ++i)
    n[i] = _mm512_roundscale_ps(_mm512_mul_ps(x[i], _mm512_set1_ps(S * kLog2e)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  for (int i = 0; i < N; ++i) g[i] = _mm512_fnmadd_ps(n[i], _mm512_set1_ps(kLn2 / S), x[i]);  // exp(S x) = 2^n exp(S g)
  float scale = S;  // p(S g): the coefficient of g^k is c_k S^k (exact: S is -1 or a power of two)
  for (int k = 1; k < 5; ++k) scale *= S;
  for (int i = 0; i < N; ++i) p[i] = _mm512_set1_ps(kExp5[0] * scale);
  for (int k = 1; k < 6; ++k) {
    scale /= S;
    for (int i = 0; i < N; ++i) p[i] = _mm512_fmadd_ps(p[i], g[i], _mm512_set1_ps(kExp5[k] * scale));
  }
  for (int i = 0; i < N; ++i) x[i] = _mm512_scalef_ps(p[i], n[i]);
}

template <int N>  // x[i] = 1 / x[i] for x >= 1
inline void reciprocal16(__m512 (&x)[N]) {
  __m512 r[N];
  for (int i = 0; i < N; ++i) r[i] = _mm512_rcp14_ps(x[i]);
  for (int i = 0; i < N; ++i) x[i] = _mm512_fmadd_ps(r[i], _mm512_fnmadd_ps(x[i], r[i], _mm512_set1_ps(1.0f)), r[i]);
}

template <int N>
inline void sigmoid16(__m512 (&x)[N]) {
  exp16<-1>(x);
  for (int i = 0; i < N; ++i) x[i] = _mm512_add_ps(_mm512_set1_ps(1.0f), x[i]);
  reciprocal16(x);
}

template <int N>
inline void tanh16(__m512 (&x)[N]) {  // 1 - 2 / (exp(2x) + 1)
  exp16<2>(x);
  for (int i = 0; i < N; ++i) x[i] = _mm512_add_ps(x[i], _mm512_set1_ps(1.0f));
  reciprocal16(x);
  for (int i = 0; i < N; ++i) x[i] = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), x[i], _mm512_set1_ps(1.0f));
}
#endif

// Floats per vector register: the width of block_products' tiles, of the gate vectors and of the
// attention kernel's vectors of (candidate, step) lanes (the padded gate width is a multiple of it). On
// AVX2, H = 36 gates in 16-wide vectors compute 48 units, 8-wide 40 (scoring-shape recurrence 45 -> 36 ms).
// Rows stepped together (block_products' tile: kRows x kLanes accumulators in registers): each weight row
// loaded once per step serves all of them. 16 with AVX-512's 32 registers (the scoring-shape recurrence
// -4% against 8, bit-identical); 8 with AVX2's 16.
#ifdef __AVX512F__
constexpr int kLanes = 16, kRows = 16;
#else
constexpr int kLanes = 8, kRows = 8;
#endif

constexpr int64_t padded(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Scratch for one thread's working set: PyTorch's CPU allocator aligns it to 64 bytes, so that the kernels'
// whole-vector loads and stores do not straddle cache lines (the attention kernel: 30.3 -> 29.3 ms on the
// bench's shapes, with std::vector's 16-byte alignment before).
inline torch::Tensor scratch(int64_t floats) { return torch::empty({floats}, torch::kFloat); }

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
