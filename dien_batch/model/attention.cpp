// The scores of DIEN's attention MLP (the authors' code: 80-40 sigmoid layers on [q, h, q - h, q * h])
// for every (candidate, step), fused on the CPU for inference.
//
// The first layer is split as in `dien_batch.model.attention.MLPAttention`: key_part = h (W_h - W_d)^T + b_1
// per request and step, query_part = q (W_q + W_d)^T per candidate, and only (q * h) W_p^T per
// (candidate, step). The vector lanes hold a request's (candidate, step) pairs in order, candidate by
// candidate over its valid steps only, so a lane is padding only at the end of a request (at 50 candidates
// x 75 steps, 0.2% of lanes instead of 10% with each candidate's steps padded to whole vectors; with 5
// steps, none instead of 69%). Per request, the keys and key_part are laid out [feature][step], wrapped
// around past the history's end, so a vector's steps are one contiguous load; queries and query_part
// [feature][candidate], so a vector's candidates (at most one per lane) are one load and a lane
// permutation. Both layers are register tiles of kUnits outputs x kLanes pairs (one broadcast weight, one
// FMA per vector), the sigmoids run over whole vectors and the last layer's dot product is a vertical
// sum. Nothing of size [R, K, T, 80] is ever written. Each score's sums run in a fixed order whatever
// lane it lands in: results do not depend on batching.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <vector>

#include "kernels.h"

using namespace dien_kernels;

namespace {

constexpr int kUnits = 8;  // outputs per register tile: kUnits vectors of accumulators

constexpr int64_t units_padded(int64_t n) { return (n + kUnits - 1) / kUnits * kUnits; }

// out[s] = row[pick[s]] for the kLanes lanes (pick[s] < kLanes): one load and a lane permutation.
inline void lane_pick(const float* row, const int32_t (&pick)[kLanes], float (&out)[kLanes]) {
#ifdef __AVX512F__
  _mm512_storeu_ps(out, _mm512_permutexvar_ps(_mm512_loadu_si512(pick), _mm512_loadu_ps(row)));
#elif defined(__AVX2__)
  _mm256_storeu_ps(out, _mm256_permutevar8x32_ps(_mm256_loadu_ps(row),
                                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pick))));
#else
  for (int s = 0; s < kLanes; ++s) out[s] = row[pick[s]];
#endif
}

// acc[u][s] += sum_k w[u * ld + k] * x[k * kLanes + s] for the kUnits rows of w (leading dimension ld).
inline void tile_products(const float* w, int64_t ld, const float* x, int64_t depth, float (&acc)[kUnits][kLanes]) {
  for (int64_t k = 0; k < depth; ++k) {
    const float* xk = x + k * kLanes;
    for (int u = 0; u < kUnits; ++u) {
      const float wk = w[u * ld + k];
#pragma omp simd
      for (int s = 0; s < kLanes; ++s) acc[u][s] += wk * xk[s];
    }
  }
}

// [rows, cols] -> [rows_to, cols_to], zero padded.
torch::Tensor padded_to(const torch::Tensor& w, int64_t rows_to, int64_t cols_to) {
  auto out = torch::zeros({rows_to, cols_to}, w.options());
  out.narrow(0, 0, w.size(0)).narrow(1, 0, w.size(1)).copy_(w);
  return out;
}

}  // namespace

// keys [R, T, D], queries [R, K, D], key_part [R, T, A1], query_part [R, K, A1], w_p [A1, D], w_2 [A2, A1],
// b_2 [A2], w_3 [A2] (float32, contiguous), lengths [R] (int64) -> scores [R, K, T]; 0 past a row's length
// (those steps are masked out afterwards), so the padding costs nothing.
torch::Tensor mlp_attention_scores(torch::Tensor keys, torch::Tensor queries, torch::Tensor key_part,
                                   torch::Tensor query_part, torch::Tensor w_p, torch::Tensor w_2, torch::Tensor b_2,
                                   torch::Tensor w_3, double b_3, torch::Tensor lengths) {
  for (auto* t : {&keys, &queries, &key_part, &query_part, &w_p, &w_2, &b_2, &w_3})
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous() && t->scalar_type() == torch::kFloat,
                "attention inputs must be contiguous float32 CPU tensors");
  TORCH_CHECK(lengths.is_cpu() && lengths.is_contiguous() && lengths.scalar_type() == torch::kLong &&
                  lengths.numel() == keys.size(0), "lengths must be a contiguous int64 CPU tensor [R]");
  const int64_t R = keys.size(0), T = keys.size(1), D = keys.size(2), K = queries.size(1);
  const int64_t A1 = w_p.size(0), A2 = w_2.size(0), A1p = units_padded(A1), A2p = units_padded(A2);
  TORCH_CHECK(queries.size(0) == R && queries.size(2) == D && w_p.size(1) == D && w_2.size(1) == A1 &&
                  key_part.size(2) == A1 && query_part.size(2) == A1 && b_2.numel() == A2 && w_3.numel() == A2,
              "attention shapes do not match");
  auto opts = keys.options();
  auto scores = torch::empty({R, K, T}, opts);
  // Padded units: zero weights in and out (the padded first-layer units reach no second-layer unit, the
  // padded second-layer units have w_3 = 0), so they add nothing.
  auto wp = padded_to(w_p, A1p, D), w2 = padded_to(w_2, A2p, A1p);
  auto b2 = padded_to(b_2.reshape({1, A2}), 1, A2p), w3 = padded_to(w_3.reshape({1, A2}), 1, A2p);
  const int64_t TW = T + kLanes, KW = K + kLanes;  // wrapped steps, padded candidates
  auto steps_of = torch::empty({R}, lengths.options()), first_block = torch::empty({R + 1}, lengths.options());
  int64_t *steps = steps_of.data_ptr<int64_t>(), *first = first_block.data_ptr<int64_t>();
  const int64_t* len = lengths.data_ptr<int64_t>();
  first[0] = 0;  // request r's vectors of (candidate, step) lanes are first[r] .. first[r + 1] - 1
  for (int64_t r = 0; r < R; ++r) {
    steps[r] = clamped_steps(len[r], T);
    first[r + 1] = first[r] + (K * steps[r] + kLanes - 1) / kLanes;
  }
  // Only what is read is written: L + kLanes wrapped steps, K candidates and kLanes of zeros after them;
  // the padded units' rows are zero.
  auto keys_w = torch::empty({R, D, TW}, opts), kp_w = torch::empty({R, A1p, TW}, opts);
  auto q_t = torch::empty({R, D, KW}, opts), qp_t = torch::empty({R, A1p, KW}, opts);
  kp_w.narrow(1, A1, A1p - A1).zero_();
  qp_t.narrow(1, A1, A1p - A1).zero_();
  q_t.narrow(2, K, kLanes).zero_();
  qp_t.narrow(2, K, kLanes).zero_();
  const float *h = keys.data_ptr<float>(), *q = queries.data_ptr<float>(), *kp = key_part.data_ptr<float>(),
              *qp = query_part.data_ptr<float>(), *wpp = wp.data_ptr<float>(), *w2p = w2.data_ptr<float>(),
              *b2p = b2.data_ptr<float>(), *w3p = w3.data_ptr<float>();
  float *hw = keys_w.data_ptr<float>(), *kw = kp_w.data_ptr<float>(), *qt = q_t.data_ptr<float>(),
        *qpt = qp_t.data_ptr<float>(), *out = scores.data_ptr<float>();
  const float bias3 = static_cast<float>(b_3);
  at::parallel_for(0, R, 1, [&](int64_t begin, int64_t end) {  // the per-request layouts, once
    for (int64_t r = begin; r < end; ++r) {
      const int64_t L = steps[r];
      for (int64_t i = 0; L && i < L + kLanes; ++i) {  // step i % L at position i
        const int64_t t = i % L;
        for (int64_t d = 0; d < D; ++d) hw[(r * D + d) * TW + i] = h[(r * T + t) * D + d];
        for (int64_t j = 0; j < A1; ++j) kw[(r * A1p + j) * TW + i] = kp[(r * T + t) * A1 + j];
      }
      for (int64_t c = 0; c < K; ++c) {
        for (int64_t d = 0; d < D; ++d) qt[(r * D + d) * KW + c] = q[(r * K + c) * D + d];
        for (int64_t j = 0; j < A1; ++j) qpt[(r * A1p + j) * KW + c] = qp[(r * K + c) * A1 + j];
        std::fill(out + (r * K + c) * T + L, out + (r * K + c + 1) * T, 0.0f);
      }
    }
  });
  at::parallel_for(0, first[R], 1, [&](int64_t begin, int64_t end) {
    auto buffer = scratch((D + A1p) * kLanes);
    float *x = buffer.data_ptr<float>(), *act = x + D * kLanes;
    int64_t r = std::upper_bound(first, first + R + 1, begin) - first - 1;
    for (int64_t v = begin; v < end; ++v) {
      while (v >= first[r + 1]) ++r;
      const int64_t L = steps[r], lane0 = (v - first[r]) * kLanes, c0 = lane0 / L, t0 = lane0 % L;
      int32_t cand[kLanes];  // lane s holds candidate c0 + cand[s], step step[s]
      int64_t step[kLanes];
      for (int s = 0, c = 0, t = static_cast<int>(t0); s < kLanes; ++s) {
        cand[s] = c;
        step[s] = t;
        if (++t == L) t = 0, ++c;
      }
      const float *hv = hw + r * D * TW + t0, *kv = kw + r * A1p * TW + t0;  // a vector's steps, contiguous
      const float *qv = qt + r * D * KW + c0, *qpv = qpt + r * A1p * KW + c0;  // its candidates, from c0
      // The first layer's inputs: x = q * h, and key_part + query_part into acc. With one candidate in the
      // vector its values are broadcast; with several, picked per lane.
      float picked[kLanes];
      auto first_layer = [&](auto mixed) {
        constexpr bool kMixed = decltype(mixed)::value;
        for (int64_t d = 0; d < D; ++d) {
          if constexpr (kMixed) lane_pick(qv + d * KW, cand, picked);
          const float qd = qv[d * KW];
#pragma omp simd
          for (int s = 0; s < kLanes; ++s) x[d * kLanes + s] = (kMixed ? picked[s] : qd) * hv[d * TW + s];
        }
        for (int64_t j0 = 0; j0 < A1p; j0 += kUnits) {  // sigmoid(key_part + query_part + x W_p^T)
          float acc[kUnits][kLanes];
          for (int u = 0; u < kUnits; ++u) {
            if constexpr (kMixed) lane_pick(qpv + (j0 + u) * KW, cand, picked);
            const float qpj = qpv[(j0 + u) * KW];
#pragma omp simd
            for (int s = 0; s < kLanes; ++s) acc[u][s] = kv[(j0 + u) * TW + s] + (kMixed ? picked[s] : qpj);
          }
          tile_products(wpp + j0 * D, D, x, D, acc);
#ifdef __AVX512F__
          __m512 a[kUnits];
          for (int u = 0; u < kUnits; ++u) a[u] = _mm512_loadu_ps(acc[u]);
          sigmoid16(a);
          for (int u = 0; u < kUnits; ++u) _mm512_storeu_ps(act + (j0 + u) * kLanes, a[u]);
#else
          for (int u = 0; u < kUnits; ++u)
#pragma omp simd
            for (int s = 0; s < kLanes; ++s) act[(j0 + u) * kLanes + s] = sigmoid(acc[u][s]);
#endif
        }
      };
      if (t0 + kLanes <= L)
        first_layer(std::false_type{});
      else
        first_layer(std::true_type{});
      float total[kLanes] = {};
      for (int64_t o0 = 0; o0 < A2p; o0 += kUnits) {  // second layer and the last dot product
        float acc[kUnits][kLanes];
        for (int u = 0; u < kUnits; ++u)
#pragma omp simd
          for (int s = 0; s < kLanes; ++s) acc[u][s] = b2p[o0 + u];
        tile_products(w2p + o0 * A1p, A1p, act, A1p, acc);
#ifdef __AVX512F__
        __m512 a[kUnits];
        for (int u = 0; u < kUnits; ++u) a[u] = _mm512_loadu_ps(acc[u]);
        sigmoid16(a);
        __m512 sum = _mm512_loadu_ps(total);
        for (int u = 0; u < kUnits; ++u) sum = _mm512_fmadd_ps(a[u], _mm512_set1_ps(w3p[o0 + u]), sum);
        _mm512_storeu_ps(total, sum);
#else
        for (int u = 0; u < kUnits; ++u)
#pragma omp simd
          for (int s = 0; s < kLanes; ++s) total[s] += sigmoid(acc[u][s]) * w3p[o0 + u];
#endif
      }
      const int64_t n = std::min<int64_t>(kLanes, K * L - lane0);
      for (int64_t s = 0; s < n; ++s) out[((r * K + c0 + cand[s]) * T + step[s])] = total[s] + bias3;
    }
  });
  return scores;
}
