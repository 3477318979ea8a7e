// The scores of DIEN's attention MLP (the authors' code: 80-40 sigmoid layers on [q, h, q - h, q * h])
// for every (candidate, step), fused on the CPU for inference.
//
// The first layer is split as in `dien_batch.model.attention.MLPAttention`: key_part = h (W_h - W_d)^T + b_1
// per request and step, query_part = q (W_q + W_d)^T per candidate, and only (q * h) W_p^T per
// (candidate, step). Per candidate, kRows steps at a time: q * h, the register-tiled products of both
// layers, the sigmoids and the last dot product all stay in cache; nothing of size [R, K, T, 80] is
// ever written. Each score's sums run in a fixed order: results do not depend on batching.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <vector>

#include "kernels.h"

using namespace dien_kernels;

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
  const int64_t A1 = w_p.size(0), A2 = w_2.size(0), A1p = padded(A1), A2p = padded(A2);
  TORCH_CHECK(queries.size(0) == R && queries.size(2) == D && w_p.size(1) == D && w_2.size(1) == A1 &&
                  key_part.size(2) == A1 && query_part.size(2) == A1 && b_2.numel() == A2 && w_3.numel() == A2,
              "attention shapes do not match");
  auto opts = keys.options();
  auto scores = torch::empty({R, K, T}, opts);
  auto wpt = transposed_padded(w_p), w2t = transposed_padded(w_2), zero = torch::zeros({A1p}, opts);
  auto b2 = vector_padded(b_2), w3 = vector_padded(w_3);  // padded lanes: sigmoid(0) * 0, no contribution
  const float *h = keys.data_ptr<float>(), *q = queries.data_ptr<float>(), *kp = key_part.data_ptr<float>(),
              *qp = query_part.data_ptr<float>(), *wp_t = wpt.data_ptr<float>(), *w2_t = w2t.data_ptr<float>(),
              *b2p = b2.data_ptr<float>(), *w3p = w3.data_ptr<float>(), *none = zero.data_ptr<float>();
  float* out = scores.data_ptr<float>();
  const float bias3 = static_cast<float>(b_3);
  const int64_t* len = lengths.data_ptr<int64_t>();
  at::parallel_for(0, R * K, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> x(kRows * D), first(kRows * A1p), act(kRows * A1), second(kRows * A2p);
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t r = pair / K;
      const float* qk = q + pair * D;
      const float* qpk = qp + pair * A1;
      const int64_t steps = clamped_steps(len[r], T);
      std::fill(out + pair * T + steps, out + (pair + 1) * T, 0.0f);
      for (int64_t t0 = 0; t0 < steps; t0 += kRows) {
        const int n = static_cast<int>(std::min<int64_t>(kRows, steps - t0));
        for (int i = 0; i < kRows; ++i) {
          const float* ht = h + (r * T + t0 + std::min(i, n - 1)) * D;  // rows past the length repeat the last step
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) x[i * D + d] = qk[d] * ht[d];
        }
        block_products<0>(x.data(), wp_t, none, first.data(), D, A1p);
        for (int i = 0; i < kRows; ++i) {
          const float* kpt = kp + (r * T + t0 + std::min(i, n - 1)) * A1;
          float* f = first.data() + i * A1p;
          float* a = act.data() + i * A1;
#pragma omp simd
          for (int64_t j = 0; j < A1; ++j) a[j] = sigmoid(f[j] + kpt[j] + qpk[j]);
        }
        block_products<0>(act.data(), w2_t, b2p, second.data(), A1, A2p);
        for (int i = 0; i < n; ++i) {
          const float* s = second.data() + i * A2p;
          float total = 0.0f;
#pragma omp simd reduction(+ : total)
          for (int64_t j = 0; j < A2p; ++j) total += sigmoid(s[j]) * w3p[j];
          out[pair * T + t0 + i] = total + bias3;
        }
      }
    }
  });
  return scores;
}
