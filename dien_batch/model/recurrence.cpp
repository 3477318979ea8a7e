// The GRU family's recurrence (GRU, AGRU, AUGRU paper/official) fused on the CPU, forward and BPTT.
//
// Same arithmetic as `dien_batch.model.cells` (PyTorch gate convention, linear_before_reset = 1):
//   gh = h W_hh^T + b_hh;  r = s(gx_r + gh_r);  z = s(gx_z + gh_z);  n = tanh(gx_n + r * gh_n)
//   h' = h + w * (n - h), with w = 1 - z (GRU), a (AGRU), a (1 - z) (AUGRU paper), 1 - (1 - a) z (official).
// Rows are independent through time, so each thread owns blocks of kRows rows and runs all of their
// steps with the states in cache: per step one register-tiled product for the whole block (each
// weight row loaded once for kRows rows), then one fused pass over the block's gates and the attention
// scaling (with AVX-512, its rows' units as one run of vectors); no per-step dispatch. A row stops at its
// length (padding leaves the state unchanged).
// K candidates may share one request's gx row (row r reads gx[r / K]): the scoring layout.
// Each row's sums run in the same order whatever block it lands in: results do not depend on batching.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels.h"

namespace {

using namespace dien_kernels;

// Blocks hold rows longest first, and parallel_for hands each thread a contiguous range of positions:
// position p takes block p / 2 (even p) or blocks - 1 - p / 2 (odd p), so every range mixes long and
// short blocks and the threads finish together.
inline int64_t balanced_block(int64_t p, int64_t blocks) { return p % 2 ? blocks - 1 - p / 2 : p / 2; }

// Row indices 0 .. R-1 longest first (a stable sort by steps(row)), so the rows of a block share most of
// their steps; forward and BPTT take them kRows at a time.
template <typename Steps>
std::vector<int64_t> longest_first(int64_t R, Steps steps) {
  std::vector<int64_t> order(R);
  for (int64_t i = 0; i < R; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return steps(x) > steps(y); });
  return order;
}

template <int MODE>
inline float mix(float a, float z) {  // the weight of the candidate n in h' = h + w (n - h)
  if constexpr (MODE == 0) return 1.0f - z;
  else if constexpr (MODE == 1) return a;
  else if constexpr (MODE == 2) return a * (1.0f - z);
  else return 1.0f - (1.0f - a) * z;
}

#ifdef __AVX512F__
template <int MODE>
inline __m512 mix16(__m512 a, __m512 z) {
  const __m512 one = _mm512_set1_ps(1.0f);
  if constexpr (MODE == 0) return _mm512_sub_ps(one, z);
  else if constexpr (MODE == 1) return a;
  else if constexpr (MODE == 2) return _mm512_mul_ps(a, _mm512_sub_ps(one, z));
  else return _mm512_fnmadd_ps(_mm512_sub_ps(one, a), z, one);
}

template <typename F>
inline F* lanes_before(F* p, int lanes) {  // p - lanes, for a masked access whose first lanes are masked off
  return reinterpret_cast<F*>(reinterpret_cast<uintptr_t>(p) - lanes * sizeof(float));
}

// The gates of a block's first `active` rows as one run of active x H units, kLanes at a time, so no lane is
// padding but the run's last (at H = 36, 36 units a row instead of 48 with each row padded to whole vectors).
// A vector may end one row and start the next: its operands are two masked loads, one per row. kGroup
// vectors go through each stage together (see kernels.h: one vector alone is latency-bound). h is the
// block's [kRows, H] states, updated in place; gx[r], a[r] and saved[r] (if saved is not null) are row r's
// gate inputs, attention and the place for its r, z, n, gh_n, w (5 H floats) for the backward pass.
constexpr int kGroup = 2;

template <int MODE>
inline void gates_block(const float* const* gx, const float* gh, int64_t gp, const float* a, float* h,
                        float* const* saved, int active, int64_t H) {
  const int64_t units = active * H;
  int64_t row = 0, unit = 0;  // where the next vector starts
  for (int64_t f = 0; f < units; f += kGroup * kLanes) {
    int64_t r0[kGroup], r1[kGroup], u0[kGroup], first[kGroup];
    __mmask16 m0[kGroup], m1[kGroup];  // lanes of row r0, of row r0 + 1 (none past the run's end)
    for (int i = 0; i < kGroup; ++i) {
      const int64_t lanes = std::max<int64_t>(0, std::min<int64_t>(kLanes, units - f - i * kLanes));
      r0[i] = std::min<int64_t>(row, active - 1);
      u0[i] = unit;
      first[i] = std::min<int64_t>(lanes, H - unit);
      m0[i] = (1u << first[i]) - 1;
      m1[i] = ((1u << lanes) - 1) & ~m0[i];
      r1[i] = m1[i] ? r0[i] + 1 : r0[i];
      unit += lanes;
      if (unit >= H) {
        unit -= H;
        ++row;
      }
    }
    auto load = [&](int i, const float* p0, const float* p1) {  // p0: row r0's unit 0; p1: row r1's unit 0
      return _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(m0[i], p0 + u0[i]), m1[i], lanes_before(p1, first[i]));
    };
    __m512 rz[2 * kGroup], n[kGroup], ghn[kGroup];
    for (int g = 0; g < 2; ++g)  // r, then z
      for (int i = 0; i < kGroup; ++i)
        rz[g * kGroup + i] = _mm512_add_ps(load(i, gx[r0[i]] + g * H, gx[r1[i]] + g * H),
                                           load(i, gh + r0[i] * gp + g * H, gh + r1[i] * gp + g * H));
    sigmoid16(rz);
    for (int i = 0; i < kGroup; ++i) {
      ghn[i] = load(i, gh + r0[i] * gp + 2 * H, gh + r1[i] * gp + 2 * H);
      n[i] = _mm512_fmadd_ps(rz[i], ghn[i], load(i, gx[r0[i]] + 2 * H, gx[r1[i]] + 2 * H));
    }
    tanh16(n);
    for (int i = 0; i < kGroup; ++i) {
      const __m512 w = mix16<MODE>(_mm512_mask_blend_ps(m1[i], _mm512_set1_ps(a[r0[i]]), _mm512_set1_ps(a[r1[i]])),
                                   rz[kGroup + i]);
      float* hi = h + f + i * kLanes;
      const __m512 h0 = _mm512_maskz_loadu_ps(m0[i] | m1[i], hi);
      _mm512_mask_storeu_ps(hi, m0[i] | m1[i], _mm512_fmadd_ps(w, _mm512_sub_ps(n[i], h0), h0));
      if (saved) {
        const __m512 keep[5] = {rz[i], rz[kGroup + i], n[i], ghn[i], w};
        for (int k = 0; k < 5; ++k) {
          _mm512_mask_storeu_ps(saved[r0[i]] + k * H + u0[i], m0[i], keep[k]);
          _mm512_mask_storeu_ps(lanes_before(saved[r1[i]] + k * H, first[i]), m1[i], keep[k]);
        }
      }
    }
  }
}
#endif

// Gates and new state for units j0 .. j0 + width of one row (width = W when W > 0): reads h[j], writes
// h_new[j] (h_new may be h: each unit reads only its own h[j]) and, if `saved` is not null, r, z, n, gh_n, w
// (5 H floats) for the backward pass. Without AVX-512, or with H below its 16 lanes.
template <int MODE, int W>
inline void gate_units(const float* gx, const float* gh, float a, const float* h, float* h_new, float* saved,
                       int64_t H, int64_t j0, int64_t width) {
  const int64_t count = W ? W : width;
#pragma omp simd
  for (int64_t jj = 0; jj < count; ++jj) {
    const int64_t j = j0 + jj;
    const float r = sigmoid(gx[j] + gh[j]);
    const float z = sigmoid(gx[H + j] + gh[H + j]);
    const float n = fast_tanh(gx[2 * H + j] + r * gh[2 * H + j]);
    const float w = mix<MODE>(a, z);
    h_new[j] = h[j] + w * (n - h[j]);
    if (saved) {
      saved[j] = r;
      saved[H + j] = z;
      saved[2 * H + j] = n;
      saved[3 * H + j] = gh[2 * H + j];
      saved[4 * H + j] = w;
    }
  }
}

// The gates of one row from its gh, updating h. With H known and at least kLanes, in whole vectors: the
// last one ends at H and overlaps the one before (those units computed twice from the same old h, into a
// separate buffer), so no unit is left to a scalar remainder loop.
template <int MODE, int HC>
inline void gates_row(const float* gx, const float* gh, float a, float* h, float* saved, int64_t h_size) {
  if constexpr (HC >= kLanes) {
    float h_new[HC];
    for (int64_t c = 0; c < HC; c += kLanes)
      gate_units<MODE, kLanes>(gx, gh, a, h, h_new, saved, HC, std::min<int64_t>(c, HC - kLanes), kLanes);
    std::copy(h_new, h_new + HC, h);
  } else {
    gate_units<MODE, 0>(gx, gh, a, h, h, saved, h_size, 0, h_size);
  }
}

// Rows are taken longest first (a stable sort by length), kRows at a time, so the rows of a block share
// most of their steps; a row past its length is left alone while the others of its block go on.
template <int MODE, int HC>
void forward_impl(const float* gx, const float* wt, const float* b, const float* att, const int64_t* len,
                  float* final_h, float* states, float* saved, int64_t R, int64_t K, int64_t T, int64_t H,
                  int64_t gp) {
  const int64_t G = 3 * H;  // R = requests x K rows
  auto steps = [&](int64_t row) { return clamped_steps(len[row / K], T); };
  const std::vector<int64_t> order = longest_first(R, steps);
  const int64_t blocks = (R + kRows - 1) / kRows;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    auto buffer = scratch(padded(kRows * H) + kRows * gp);
    float *h = buffer.data_ptr<float>(), *gh = h + padded(kRows * H);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t blk = balanced_block(p, blocks);
      const int n = static_cast<int>(std::min<int64_t>(kRows, R - blk * kRows));
      const int64_t* rows = order.data() + blk * kRows;
      std::fill(h, h + kRows * H, 0.0f);
      const int64_t longest = steps(rows[0]);
      int active = n;  // sorted: rows 0 .. active-1 are still inside their length at t
      for (int64_t t = 0; t < longest; ++t) {
        block_products<HC>(h, wt, b, gh, H, gp);
        while (t >= steps(rows[active - 1])) --active;
        const float* gx_rows[kRows];
        float a[kRows];
        float* keep[kRows];
        for (int r = 0; r < active; ++r) {
          const int64_t row = rows[r];
          gx_rows[r] = gx + ((row / K) * T + t) * G;
          a[r] = att ? att[row * T + t] : 0.0f;
          keep[r] = saved ? saved + (row * T + t) * 5 * H : nullptr;
        }
#ifdef __AVX512F__
        if (H >= kLanes) {
          gates_block<MODE>(gx_rows, gh, gp, a, h, saved ? keep : nullptr, active, H);
        } else
#endif
        {
          for (int r = 0; r < active; ++r) gates_row<MODE, HC>(gx_rows[r], gh + r * gp, a[r], h + r * H, keep[r], H);
        }
        if (states)
          for (int r = 0; r < active; ++r)
            std::copy(h + r * H, h + (r + 1) * H, states + (rows[r] * T + t) * H);
      }
      for (int r = 0; r < n; ++r) {
        const int64_t row = rows[r];
        const float* last = h + r * H;
        if (states)
          for (int64_t t = steps(row); t < T; ++t) std::copy(last, last + H, states + (row * T + t) * H);
        std::copy(last, last + H, final_h + row * H);
      }
    }
  });
}

// dW [G, hp] += dgh^T h_prev and db += dgh over the first `active` rows of a block, in row order; with the
// width known (HP) a row of dW stays in registers while the rows are added.
template <int HP>
inline void outer_accumulate(float* dw, float* db, const float* dgh, const float* hprev, int active, int64_t G,
                             int64_t hp_size) {
  const int64_t hp = HP ? HP : hp_size;
  for (int64_t j = 0; j < G; ++j) {
    float* dwj = dw + j * hp;
    float acc[HP ? HP : 1];
    if constexpr (HP) {
#pragma omp simd
      for (int k = 0; k < HP; ++k) acc[k] = dwj[k];
    }
    float bsum = db[j];
    for (int r = 0; r < active; ++r) {
      const float gj = dgh[r * G + j];
      const float* hpr = hprev + r * hp;
      if constexpr (HP) {
#pragma omp simd
        for (int k = 0; k < HP; ++k) acc[k] += gj * hpr[k];
      } else {
#pragma omp simd
        for (int64_t k = 0; k < hp; ++k) dwj[k] += gj * hpr[k];
      }
      bsum += gj;
    }
    if constexpr (HP) {
#pragma omp simd
      for (int k = 0; k < HP; ++k) dwj[k] = acc[k];
    }
    db[j] = bsum;
  }
}

// BPTT for K = 1. grad_states [R, T, H] (may be null) is the gradient of the state after each step
// (past a row's length the state is its final state); grad_final [R, H]. Blocked like the forward: rows
// longest first, kRows at a time, one register-tiled product per step for dh_prev += dgh W_hh over the
// block (W_hh given zero padded as [G, hp]); dW and db accumulate per block and are summed in block order,
// so the gradients do not depend on the thread count.
template <int MODE, int HC>
void backward_impl(const float* w_pad, const float* att, const int64_t* len, const float* states, const float* saved,
                   const float* grad_final, const float* grad_states, float* dgx, float* datt, float* dw, float* db,
                   int64_t R, int64_t T, int64_t h_size, int64_t hp) {
  const int64_t H = HC ? HC : h_size;
  const int64_t G = 3 * H;
  auto steps = [&](int64_t row) { return clamped_steps(len[row], T); };
  const std::vector<int64_t> order = longest_first(R, steps);
  const int64_t blocks = (R + kRows - 1) / kRows;
  std::vector<float> dw_parts(blocks * G * hp, 0.0f), db_parts(blocks * G, 0.0f), zero_bias(hp, 0.0f);
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> dh(kRows * H), dgh(kRows * G), dh_prev(kRows * hp), hprev(kRows * hp);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t blk = balanced_block(p, blocks);
      const int n = static_cast<int>(std::min<int64_t>(kRows, R - blk * kRows));
      const int64_t* rows = order.data() + blk * kRows;
      float* dwb = dw_parts.data() + blk * G * hp;
      float* dbb = db_parts.data() + blk * G;
      std::fill(dgh.begin(), dgh.end(), 0.0f);
      std::fill(hprev.begin(), hprev.end(), 0.0f);
      for (int r = 0; r < n; ++r) {
        const int64_t row = rows[r], L = steps(row);
        float* d = dh.data() + r * H;
        for (int64_t k = 0; k < H; ++k) d[k] = grad_final[row * H + k];
        if (grad_states && L > 0)  // the states after steps L-1 .. T-1 are all the final state
          for (int64_t t = L - 1; t < T; ++t)
            for (int64_t k = 0; k < H; ++k) d[k] += grad_states[(row * T + t) * H + k];
      }
      const int64_t longest = n ? steps(rows[0]) : 0;
      for (int64_t t = longest - 1; t >= 0; --t) {
        int active = 0;  // sorted: rows 0 .. active-1 are still inside their length at t
        while (active < n && t < steps(rows[active])) ++active;
        for (int r = 0; r < active; ++r) {
          const int64_t row = rows[r];
          const float* s = saved + (row * T + t) * 5 * H;
          const float *rg = s, *z = s + H, *nn = s + 2 * H, *ghn = s + 3 * H, *w = s + 4 * H;
          float* hpr = hprev.data() + r * hp;
          if (t > 0) std::copy(states + (row * T + t - 1) * H, states + (row * T + t) * H, hpr);
          else std::fill(hpr, hpr + H, 0.0f);
          const float a = att ? att[row * T + t] : 0.0f;
          float* dx = dgx + (row * T + t) * G;
          float* g_h = dgh.data() + r * G;
          float* d = dh.data() + r * H;
          float da = 0.0f;
#pragma omp simd reduction(+ : da)
          for (int64_t k = 0; k < H; ++k) {
            const float g = d[k];
            const float dmix = g * (nn[k] - hpr[k]);
            const float dpre_n = g * w[k] * (1.0f - nn[k] * nn[k]);
            float dz = 0.0f;
            if constexpr (MODE == 0) {
              dz = -dmix;
            } else if constexpr (MODE == 1) {
              da += dmix;
            } else if constexpr (MODE == 2) {
              dz = -a * dmix;
              da += (1.0f - z[k]) * dmix;
            } else {
              dz = (a - 1.0f) * dmix;
              da += z[k] * dmix;
            }
            const float dpre_z = dz * z[k] * (1.0f - z[k]);
            const float dpre_r = dpre_n * ghn[k] * rg[k] * (1.0f - rg[k]);
            dx[k] = dpre_r;
            dx[H + k] = dpre_z;
            dx[2 * H + k] = dpre_n;
            g_h[k] = dpre_r;
            g_h[H + k] = dpre_z;
            g_h[2 * H + k] = dpre_n * rg[k];
            d[k] = g * (1.0f - w[k]);  // the direct path to h_{t-1}; the W_hh path is added below
          }
          if (datt) datt[row * T + t] = da;
        }
        for (int r = active; r < kRows; ++r) std::fill(dgh.begin() + r * G, dgh.begin() + (r + 1) * G, 0.0f);
        block_products<HC ? 3 * HC : 0>(dgh.data(), w_pad, zero_bias.data(), dh_prev.data(), G, hp);
        outer_accumulate<HC ? padded(HC) : 0>(dwb, dbb, dgh.data(), hprev.data(), active, G, hp);
        for (int r = 0; r < active; ++r) {
          const int64_t row = rows[r];
          float* d = dh.data() + r * H;
          const float* p = dh_prev.data() + r * hp;
          const float* gs = grad_states && t > 0 ? grad_states + (row * T + t - 1) * H : nullptr;
#pragma omp simd
          for (int64_t k = 0; k < H; ++k) d[k] += p[k] + (gs ? gs[k] : 0.0f);
        }
      }
    }
  });
  std::fill(dw, dw + G * H, 0.0f);
  std::fill(db, db + G, 0.0f);
  for (int64_t b = 0; b < blocks; ++b)  // a fixed order: the same sums whatever the thread count
    for (int64_t j = 0; j < G; ++j) {
      for (int64_t k = 0; k < H; ++k) dw[j * H + k] += dw_parts[(b * G + j) * hp + k];
      db[j] += db_parts[b * G + j];
    }
}

template <typename F>
void dispatch(int64_t mode, F&& f) {
  switch (mode) {
    case 0: f(std::integral_constant<int, 0>{}); break;
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    default: TORCH_CHECK(false, "unknown recurrence mode ", mode);
  }
}

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), name, " must be a contiguous CPU tensor");
}

}  // namespace

// gx [B, T, 3H] float32, w_hh [3H, H], b_hh [3H], att [B * K, T] or empty, lengths [B] int64.
// Returns (final [B * K, H], states [B * K, T, H] or empty, saved [B * K, T, 5H] or empty).
std::vector<torch::Tensor> forward(torch::Tensor gx, torch::Tensor w_hh, torch::Tensor b_hh, torch::Tensor att,
                                   torch::Tensor lengths, int64_t mode, int64_t K, bool want_states, bool want_saved) {
  check(gx, "gx");
  check(w_hh, "w_hh");
  check(b_hh, "b_hh");
  check(lengths, "lengths");
  TORCH_CHECK(gx.scalar_type() == torch::kFloat && lengths.scalar_type() == torch::kLong, "float32 gx, int64 lengths");
  const int64_t B = gx.size(0), T = gx.size(1), H = w_hh.size(1), R = B * K;
  TORCH_CHECK(gx.size(2) == 3 * H && w_hh.size(0) == 3 * H && b_hh.numel() == 3 * H, "shapes of gx, w_hh, b_hh");
  const bool has_att = att.numel() > 0;
  if (has_att) {
    check(att, "att");
    TORCH_CHECK(att.size(0) == R && att.size(1) == T, "att must be [B * K, T]");
  }
  auto opts = gx.options();
  auto final_h = torch::empty({R, H}, opts);
  auto states = want_states ? torch::empty({R, T, H}, opts) : torch::Tensor();
  auto saved = want_saved ? torch::empty({R, T, 5 * H}, opts) : torch::Tensor();
  const int64_t gp = padded(3 * H);  // W^T and b zero padded to the tile width
  auto wt = transposed_padded(w_hh), bp = vector_padded(b_hh);
  dispatch(mode, [&](auto m) {
    constexpr int MODE = decltype(m)::value;
    auto run = H == 36 ? forward_impl<MODE, 36> : forward_impl<MODE, 0>;
    run(gx.data_ptr<float>(), wt.data_ptr<float>(), bp.data_ptr<float>(), has_att ? att.data_ptr<float>() : nullptr,
        lengths.data_ptr<int64_t>(), final_h.data_ptr<float>(), want_states ? states.data_ptr<float>() : nullptr,
        want_saved ? saved.data_ptr<float>() : nullptr, R, K, T, H, gp);
  });
  return {final_h, want_states ? states : torch::empty({0}, opts), want_saved ? saved : torch::empty({0}, opts)};
}

// Gradients of gx [B, T, 3H], w_hh, b_hh and att [B, T] (empty without attention), for K = 1.
std::vector<torch::Tensor> backward(torch::Tensor grad_final, torch::Tensor grad_states, torch::Tensor w_hh,
                                    torch::Tensor att, torch::Tensor lengths, torch::Tensor states,
                                    torch::Tensor saved, int64_t mode) {
  for (auto* t : {&grad_final, &w_hh, &lengths, &states, &saved}) check(*t, "backward input");
  const int64_t R = states.size(0), T = states.size(1), H = states.size(2), G = 3 * H;
  const bool has_att = att.numel() > 0, has_gs = grad_states.numel() > 0;
  if (has_gs) check(grad_states, "grad_states");
  auto opts = states.options();
  auto dgx = torch::zeros({R, T, G}, opts);
  auto datt = has_att ? torch::zeros({R, T}, opts) : torch::empty({0}, opts);
  auto dw = torch::empty({G, H}, opts);
  auto db = torch::empty({G}, opts);
  const int64_t hp = padded(H);  // W_hh [G, H] zero padded to [G, hp]: the layout block_products reads
  auto w_pad = transposed_padded(w_hh.t());
  dispatch(mode, [&](auto m) {
    constexpr int MODE = decltype(m)::value;
    auto run = H == 36 ? backward_impl<MODE, 36> : backward_impl<MODE, 0>;
    run(w_pad.data_ptr<float>(), has_att ? att.data_ptr<float>() : nullptr, lengths.data_ptr<int64_t>(),
        states.data_ptr<float>(), saved.data_ptr<float>(), grad_final.data_ptr<float>(),
        has_gs ? grad_states.data_ptr<float>() : nullptr, dgx.data_ptr<float>(),
        has_att ? datt.data_ptr<float>() : nullptr, dw.data_ptr<float>(), db.data_ptr<float>(), R, T, H, hp);
  });
  return {dgx, dw, db, datt};
}

// attention.cpp
torch::Tensor mlp_attention_scores(torch::Tensor keys, torch::Tensor queries, torch::Tensor key_part,
                                   torch::Tensor query_part, torch::Tensor w_p, torch::Tensor w_2, torch::Tensor b_2,
                                   torch::Tensor w_3, double b_3, torch::Tensor lengths);

// activations.cpp
torch::Tensor dice_inference(torch::Tensor x, torch::Tensor scale, torch::Tensor shift, torch::Tensor alpha);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused GRU-family recurrence, forward");
  m.def("backward", &backward, "fused GRU-family recurrence, BPTT");
  m.def("mlp_attention_scores", &mlp_attention_scores, "the attention MLP's scores, fused (inference)");
  m.def("dice_inference", &dice_inference, "Dice with running statistics, fused (inference)");
}
