// Dice at inference (running statistics), fused on the CPU: out = x * (alpha + (1 - alpha) * s(x * scale + shift))
// in one pass over x instead of four tensor operations, the sigmoid vectorised (kernels.h).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include "kernels.h"

using namespace dien_kernels;

// x [..., C] contiguous float32; scale, shift, alpha [C] -> out like x.
torch::Tensor dice_inference(torch::Tensor x, torch::Tensor scale, torch::Tensor shift, torch::Tensor alpha) {
  for (auto* t : {&x, &scale, &shift, &alpha})
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous() && t->scalar_type() == torch::kFloat,
                "dice inputs must be contiguous float32 CPU tensors");
  const int64_t C = x.size(-1), rows = x.numel() / std::max<int64_t>(C, 1);
  TORCH_CHECK(scale.numel() == C && shift.numel() == C && alpha.numel() == C, "dice parameters must have C values");
  auto out = torch::empty_like(x);
  const float *in = x.data_ptr<float>(), *sc = scale.data_ptr<float>(), *sh = shift.data_ptr<float>(),
              *al = alpha.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = in + r * C;
      float* orow = o + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float p = sigmoid(xr[c] * sc[c] + sh[c]);
        orow[c] = xr[c] * (al[c] + p * (1.0f - al[c]));
      }
    }
  });
  return out;
}
