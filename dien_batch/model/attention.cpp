// The scores of DIEN's attention MLP (the authors' code: 80-40 sigmoid layers on [q, h, q - h, q * h])
// for every (candidate, step), fused on the CPU for inference.
//
// The first layer is split as in `dien_batch.model.attention.MLPAttention`: key_part = h (W_h - W_d)^T + b_1
// per request and step, query_part = q (W_q + W_d)^T per candidate, and only (q * h) W_p^T per
// (candidate, step), computed as h (W_p diag(q))^T with W_p diag(q) formed once per candidate.
// Steps sit in the vector lanes: each request's keys and key_part are laid out once as blocks of kSteps
// steps, [feature][step]; per candidate and block, both layers are register tiles of kUnits outputs x
// kSteps steps (one broadcast weight, one FMA per vector), the sigmoids run over whole vectors and the
// last layer's dot product is a vertical sum, so no unit width is padded and no horizontal sum is taken.
// Nothing of size [R, K, T, 80] is ever written. Each score's sums run in a fixed order: results do not
// depend on batching.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <vector>

#include "kernels.h"

using namespace dien_kernels;

namespace {

constexpr int kSteps = kLanes;  // steps per block: one vector register of lanes
constexpr int kUnits = 8;  // outputs per register tile: kUnits vectors of accumulators

constexpr int64_t units_padded(int64_t n) { return (n + kUnits - 1) / kUnits * kUnits; }

// acc[u][s] += sum_k w[u * ld + k] * x[k * kSteps + s] for the kUnits rows of w (leading dimension ld).
inline void tile_products(const float* w, int64_t ld, const float* x, int64_t depth, float (&acc)[kUnits][kSteps]) {
  for (int64_t k = 0; k < depth; ++k) {
    const float* xk = x + k * kSteps;
    for (int u = 0; u < kUnits; ++u) {
      const float wk = w[u * ld + k];
#pragma omp simd
      for (int s = 0; s < kSteps; ++s) acc[u][s] += wk * xk[s];
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
  const int64_t NB = (T + kSteps - 1) / kSteps;  // blocks per request
  // Padded units: zero weights in and out (the padded first-layer units reach no second-layer unit, the
  // padded second-layer units have w_3 = 0), so they add nothing.
  auto wp = padded_to(w_p, A1p, D), w2 = padded_to(w_2, A2p, A1p);
  auto b2 = padded_to(b_2.reshape({1, A2}), 1, A2p), w3 = padded_to(w_3.reshape({1, A2}), 1, A2p);
  auto blocked_keys = torch::zeros({R, NB, D, kSteps}, opts), blocked_kp = torch::zeros({R, NB, A1p, kSteps}, opts);
  const float *h = keys.data_ptr<float>(), *q = queries.data_ptr<float>(), *kp = key_part.data_ptr<float>(),
              *qp = query_part.data_ptr<float>(), *wpp = wp.data_ptr<float>(), *w2p = w2.data_ptr<float>(),
              *b2p = b2.data_ptr<float>(), *w3p = w3.data_ptr<float>();
  float *hb = blocked_keys.data_ptr<float>(), *kb = blocked_kp.data_ptr<float>(), *out = scores.data_ptr<float>();
  const float bias3 = static_cast<float>(b_3);
  const int64_t* len = lengths.data_ptr<int64_t>();
  at::parallel_for(0, R, 1, [&](int64_t begin, int64_t end) {  // the per-request layout, once
    for (int64_t r = begin; r < end; ++r)
      for (int64_t t = 0; t < clamped_steps(len[r], T); ++t) {
        float* hbt = hb + (r * NB + t / kSteps) * D * kSteps + t % kSteps;
        float* kbt = kb + (r * NB + t / kSteps) * A1p * kSteps + t % kSteps;
        for (int64_t d = 0; d < D; ++d) hbt[d * kSteps] = h[(r * T + t) * D + d];
        for (int64_t j = 0; j < A1; ++j) kbt[j * kSteps] = kp[(r * T + t) * A1 + j];
      }
  });
  at::parallel_for(0, R * K, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> wq(A1p * D), act(A1p * kSteps), qpk(A1p, 0.0f);
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t r = pair / K;
      const float* qk = q + pair * D;
      for (int64_t j = 0; j < A1p; ++j)
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) wq[j * D + d] = wpp[j * D + d] * qk[d];  // W_p diag(q)
      std::copy(qp + pair * A1, qp + (pair + 1) * A1, qpk.begin());
      const int64_t steps = clamped_steps(len[r], T);
      std::fill(out + pair * T + steps, out + (pair + 1) * T, 0.0f);
      for (int64_t blk = 0; blk * kSteps < steps; ++blk) {
        const float* hblk = hb + (r * NB + blk) * D * kSteps;
        const float* kblk = kb + (r * NB + blk) * A1p * kSteps;
        for (int64_t j0 = 0; j0 < A1p; j0 += kUnits) {  // first layer: sigmoid(key_part + query_part + h W_q^T)
          float acc[kUnits][kSteps];
          for (int u = 0; u < kUnits; ++u)
#pragma omp simd
            for (int s = 0; s < kSteps; ++s) acc[u][s] = kblk[(j0 + u) * kSteps + s] + qpk[j0 + u];
          tile_products(wq.data() + j0 * D, D, hblk, D, acc);
#ifdef __AVX512F__
          __m512 v[kUnits];
          for (int u = 0; u < kUnits; ++u) v[u] = _mm512_loadu_ps(acc[u]);
          sigmoid16(v);
          for (int u = 0; u < kUnits; ++u) _mm512_storeu_ps(act.data() + (j0 + u) * kSteps, v[u]);
#else
          for (int u = 0; u < kUnits; ++u)
#pragma omp simd
            for (int s = 0; s < kSteps; ++s) act[(j0 + u) * kSteps + s] = sigmoid(acc[u][s]);
#endif
        }
        float total[kSteps] = {};
        for (int64_t o0 = 0; o0 < A2p; o0 += kUnits) {  // second layer and the last dot product
          float acc[kUnits][kSteps];
          for (int u = 0; u < kUnits; ++u)
#pragma omp simd
            for (int s = 0; s < kSteps; ++s) acc[u][s] = b2p[o0 + u];
          tile_products(w2p + o0 * A1p, A1p, act.data(), A1p, acc);
#ifdef __AVX512F__
          __m512 v[kUnits];
          for (int u = 0; u < kUnits; ++u) v[u] = _mm512_loadu_ps(acc[u]);
          sigmoid16(v);
          __m512 sum = _mm512_loadu_ps(total);
          for (int u = 0; u < kUnits; ++u) sum = _mm512_fmadd_ps(v[u], _mm512_set1_ps(w3p[o0 + u]), sum);
          _mm512_storeu_ps(total, sum);
#else
          for (int u = 0; u < kUnits; ++u)
#pragma omp simd
            for (int s = 0; s < kSteps; ++s) total[s] += sigmoid(acc[u][s]) * w3p[o0 + u];
#endif
        }
        const int64_t n = std::min<int64_t>(kSteps, steps - blk * kSteps);
        for (int64_t s = 0; s < n; ++s) out[pair * T + blk * kSteps + s] = total[s] + bias3;
      }
    }
  });
  return scores;
}
