"""GPU check for the fused AUGRU and the fp16 engine: correctness, then speed against the eager path.

On an NVIDIA GPU (one prepared run):
  1. the kernel against the PyTorch reference on random inputs, fp32 and fp16, attention given and fused;
  2. the card's measured ceilings: copy bandwidth and fp16 matmul throughput;
  3. at T = 100, 50 candidates per request, H = 36, batches of 1k to 256k pairs: the fused kernel alone,
     the whole fp16 engine (user side + kernel + MLP), and PyTorch's cuDNN GRU + an eager AUGRU loop;
  4. a table: pairs/s, achieved bandwidth and FLOP/s against the ceilings, speedup over eager.

    python bench/gpu_check.py                # on the GPU machine
    TRITON_INTERPRET=1 python bench/gpu_check.py --smoke   # tiny shapes on CPU, to try the script
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dien_batch.model.cells import cell_update, recurrence  # noqa: E402
from dien_batch.model.spine import ModelConfig  # noqa: E402
from dien_batch.model.zoo import build_model  # noqa: E402

H, T, K = 36, 100, 50


def timed(fn, device: str, repeat: int = 5) -> float:
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def correctness(device: str, sizes) -> list[tuple[str, float]]:
    from dien_batch.engines.triton_augru import augru

    R, T_, Hs, K_ = sizes
    g = torch.Generator().manual_seed(0)
    gx, w, b = torch.randn(R, T_, 3 * Hs, generator=g), 0.4 * torch.randn(3 * Hs, Hs, generator=g), \
        torch.randn(3 * Hs, generator=g)
    lengths = torch.randint(1, T_ + 1, (R,), generator=g)
    att = torch.rand(R * K_, T_, generator=g)
    states, q = torch.randn(R, T_, Hs, generator=g), 0.3 * torch.randn(R * K_, Hs, generator=g)
    ref, _ = recurrence("augru", gx, w, b, lengths, att.view(R, K_, T_))
    mask = torch.arange(T_) < lengths.view(R, 1, 1)
    scores = torch.einsum("rth,rkh->rkt", states, q.view(R, K_, Hs)).masked_fill(~mask, float("-inf"))
    ref_fused, _ = recurrence("augru", gx, w, b, lengths, torch.softmax(scores, -1))
    out = []
    for dtype in (torch.float32, torch.float16):
        d = {"device": device, "dtype": dtype}
        got = augru(gx.to(**d), w.to(**d), b.to(**d), lengths.to(device), att.to(**d), K=K_)
        err = (got.cpu() - ref.reshape(-1, Hs)).abs().max().item()
        out.append((f"kernel {str(dtype)[6:]} (attention given)", err))
        got = augru(gx.to(**d), w.to(**d), b.to(**d), lengths.to(device), None, K=K_, states=states.to(**d),
                    q=q.to(**d))
        err = (got.cpu() - ref_fused.reshape(-1, Hs)).abs().max().item()
        out.append((f"kernel {str(dtype)[6:]} (fused bilinear)", err))
    return out


def ceilings(device: str) -> dict:
    if device != "cuda":
        return {"bandwidth": float("nan"), "flops": float("nan")}
    x = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    seconds = timed(lambda: y.copy_(x), device, 20)
    a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    mm = timed(lambda: a @ a, device, 20)
    return {"bandwidth": 2 * x.numel() / seconds, "flops": 2 * 8192**3 / mm}


def eager_augru(gx, w, b, lengths, att):
    """What a user writes first: a Python loop over the steps with PyTorch ops, every pair its own row."""
    h = gx.new_zeros(gx.shape[0], w.shape[1])
    for t in range(gx.shape[1]):
        new = cell_update("augru", "paper", gx[:, t], h, w, b, att[:, t:t + 1])
        h = torch.where((t < lengths).unsqueeze(1), new, h)
    return h


def speed(device: str, pair_counts: list[int], steps: int, K_: int) -> list[dict]:
    from dien_batch.engines.cuda_engine import CudaEngine
    from dien_batch.engines.triton_augru import augru

    rows = []
    dtype = torch.float16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    model = build_model(ModelConfig("dien", 10_000, 100_000, 1_000)).eval()
    engine = CudaEngine(model, {}, "fp16" if device == "cuda" else "fp32", device)
    gru = torch.nn.GRU(36, H, batch_first=True).to(device=device, dtype=dtype)
    # AUGRU work per pair: T x (h @ W_hh^T: 2 * H * 3H, gates ~ 30 H) FLOPs; bytes: the pair's share of its
    # request's gx and states (K pairs share them), its query and its output.
    flop_per_pair = steps * (2 * H * 3 * H + 30 * H)
    bytes_per_pair = (steps * 3 * H * 2 + steps * H * 2) / K_ + H * 2 + H * 4
    for pairs in pair_counts:
        R = max(1, pairs // K_)
        n = R * K_
        d = {"device": device, "dtype": dtype}
        gx, states = torch.randn(R, steps, 3 * H, **d), torch.randn(R, steps, H, **d)
        q, w, b = 0.3 * torch.randn(n, H, **d), 0.3 * torch.randn(3 * H, H, **d), torch.randn(3 * H, **d)
        lengths = torch.full((R,), steps, device=device)
        kernel_s = timed(lambda gx=gx, states=states, q=q, w=w, b=b, lengths=lengths: augru(
            gx, w, b, lengths, None, K=K_, states=states, q=q), device)
        inputs = {"user": torch.randint(2, 10_000, (R,)).numpy(),
                  "hist_item": torch.randint(2, 100_000, (R, steps)).numpy(),
                  "hist_cat": torch.randint(2, 1_000, (R, steps)).numpy(), "hist_len": torch.full((R,), steps).numpy(),
                  "cand_item": torch.randint(2, 100_000, (R, K_)).numpy(),
                  "cand_cat": torch.randint(2, 1_000, (R, K_)).numpy()}
        engine_s = timed(lambda inputs=inputs: engine.score(inputs), device, 3)
        x = torch.randn(R, steps, 36, **d)
        att = torch.rand(n, steps, **d)

        def eager(x=x, w=w, b=b, att=att, R=R):
            hs, _ = gru(x)
            g = (hs @ w.T).repeat_interleave(K_, dim=0)
            return eager_augru(g, w, b, torch.full((R * K_,), steps, device=device), att)

        eager_s = timed(eager, device, 2)
        rows.append({"pairs": n, "kernel_pairs_s": n / kernel_s, "engine_pairs_s": n / engine_s,
                     "eager_pairs_s": n / eager_s, "kernel_flops": n * flop_per_pair / kernel_s,
                     "kernel_bandwidth": n * bytes_per_pair / kernel_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (CPU + TRITON_INTERPRET=1)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (Triton interpreter)"
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    checks = correctness(device, (3, 6, 18, 2) if args.smoke else (64, T, H, 8))
    for label, err in checks:
        limit = 1e-5 if "float32" in label else 2e-3
        print(f"{label:38s} max abs error {err:.2e}  ({'ok' if err <= limit else 'FAIL'} <= {limit:g})", flush=True)
    ceiling = ceilings(device)
    counts = [100] if args.smoke else [1_000, 4_000, 16_000, 64_000, 256_000]
    rows = speed(device, counts, 5 if args.smoke else T, 5 if args.smoke else K)
    print(f"\nceilings: copy bandwidth {ceiling['bandwidth'] / 1e9:,.0f} GB/s, fp16 matmul "
          f"{ceiling['flops'] / 1e12:,.0f} TFLOP/s (measured)")
    print("\n| pairs | fused kernel pairs/s | fp16 engine pairs/s | eager GRU+AUGRU pairs/s | kernel vs eager "
          "| kernel GFLOP/s (% peak) | kernel GB/s (% peak) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pairs']:,} | {r['kernel_pairs_s']:,.0f} | {r['engine_pairs_s']:,.0f} | {r['eager_pairs_s']:,.0f} "
              f"| {r['kernel_pairs_s'] / r['eager_pairs_s']:.1f}x | {r['kernel_flops'] / 1e9:,.0f} "
              f"({100 * r['kernel_flops'] / ceiling['flops']:.1f}%) | {r['kernel_bandwidth'] / 1e9:,.0f} "
              f"({100 * r['kernel_bandwidth'] / ceiling['bandwidth']:.1f}%) |")


if __name__ == "__main__":
    main()
