"""The fused `dien::AUGRU` kernel in Triton (NVIDIA GPUs; also runs under TRITON_INTERPRET=1 on CPU).

Each program owns a tile of BLOCK_B (request, candidate) rows and keeps their hidden state on chip for
all T steps: per step it loads the precomputed input projections (shared by the K candidates of a
request: row r reads gx row r // K), multiplies the state by W_hh^T with `tl.dot` (fp16/bf16 inputs,
fp32 accumulation), applies the gates, the attention scaling of the update gate and the length mask,
and never writes the intermediate states to memory. Hidden sizes that are not powers of two (18, 36,
108) are padded to BLOCK_H with masks.

Attention: either given (att [B, T]) or fused for the bilinear form (paper eq. 9): with the extractor
states S [R, T, H] and each candidate's query q = W e_a [B, H], a first pass over T computes the
softmax's running max and sum of exp(S_t . q) over the row's valid steps (online softmax), and the
recurrence recomputes each a_t on the fly.

Variants: 0 = paper (u' = a u), 1 = official (z' = (1 - a) z). `augru_kernel` takes its arguments in
the order TensorRT's ahead-of-time plugins pass them: inputs, int32 scalars, outputs.
"""

from __future__ import annotations

import re

import triton
import triton.language as tl

VARIANTS = {"paper": 0, "official": 1}


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    return 2.0 * _sigmoid(2.0 * x) - 1.0


@triton.jit
def _augru_body(gx_ptr, w_ptr, b_ptr, att_ptr, len_ptr, states_ptr, q_ptr, out_ptr, n_rows, T, K, H,
                VARIANT: tl.constexpr, FUSED_ATT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                IEEE: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < n_rows
    req = rows // K  # the request whose history (gx, states, length) this row uses
    cols = tl.arange(0, BLOCK_H)
    col_ok = cols < H
    tile_ok = row_ok[:, None] & col_ok[None, :]
    w_ok = col_ok[:, None] & col_ok[None, :]
    # W_hh^T tiles, [in, out] per gate: w_g[j, i] = W_hh[g * H + i, j].
    w_r = tl.load(w_ptr + (cols[None, :]) * H + cols[:, None], mask=w_ok, other=0.0)
    w_z = tl.load(w_ptr + (H + cols[None, :]) * H + cols[:, None], mask=w_ok, other=0.0)
    w_n = tl.load(w_ptr + (2 * H + cols[None, :]) * H + cols[:, None], mask=w_ok, other=0.0)
    b_r = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    b_z = tl.load(b_ptr + H + cols, mask=col_ok, other=0.0).to(tl.float32)
    b_n = tl.load(b_ptr + 2 * H + cols, mask=col_ok, other=0.0).to(tl.float32)
    length = tl.load(len_ptr + req, mask=row_ok, other=0)
    G = 3 * H
    if FUSED_ATT:
        q = tl.load(q_ptr + rows[:, None] * H + cols[None, :], mask=tile_ok, other=0.0).to(tl.float32)
        running_max = tl.full([BLOCK_B], -1e30, tl.float32)
        running_sum = tl.zeros([BLOCK_B], tl.float32)
        for t in range(0, T):
            s_t = tl.load(states_ptr + (req[:, None] * T + t) * H + cols[None, :], mask=tile_ok, other=0.0)
            score = tl.sum(s_t.to(tl.float32) * q, axis=1)
            valid = row_ok & (t < length)
            new_max = tl.where(valid, tl.maximum(running_max, score), running_max)
            running_sum = running_sum * tl.exp(running_max - new_max) + tl.where(valid, tl.exp(score - new_max), 0.0)
            running_max = new_max
    h = tl.zeros([BLOCK_B, BLOCK_H], tl.float32)
    for t in range(0, T):
        base = gx_ptr + (req[:, None] * T + t) * G + cols[None, :]
        x_r = tl.load(base, mask=tile_ok, other=0.0).to(tl.float32)
        x_z = tl.load(base + H, mask=tile_ok, other=0.0).to(tl.float32)
        x_n = tl.load(base + 2 * H, mask=tile_ok, other=0.0).to(tl.float32)
        if FUSED_ATT:
            s_t = tl.load(states_ptr + (req[:, None] * T + t) * H + cols[None, :], mask=tile_ok, other=0.0)
            score = tl.sum(s_t.to(tl.float32) * q, axis=1)
            a = tl.exp(score - running_max) / tl.maximum(running_sum, 1e-30)
        else:
            a = tl.load(att_ptr + rows * T + t, mask=row_ok, other=0.0).to(tl.float32)
        hw = h.to(w_r.dtype)
        if IEEE:
            g_r = tl.dot(hw, w_r, input_precision="ieee") + b_r[None, :]
            g_z = tl.dot(hw, w_z, input_precision="ieee") + b_z[None, :]
            g_n = tl.dot(hw, w_n, input_precision="ieee") + b_n[None, :]
        else:
            g_r = tl.dot(hw, w_r) + b_r[None, :]
            g_z = tl.dot(hw, w_z) + b_z[None, :]
            g_n = tl.dot(hw, w_n) + b_n[None, :]
        r = _sigmoid(x_r + g_r)
        z = _sigmoid(x_z + g_z)
        n = _tanh(x_n + r * g_n)
        if VARIANT == 0:  # noqa: SIM108 - a constexpr branch, resolved at compile time
            mix = a[:, None] * (1.0 - z)
        else:
            mix = 1.0 - (1.0 - a[:, None]) * z
        moved = h + mix * (n - h)
        h = tl.where((t < length)[:, None], moved, h)
    tl.store(out_ptr + rows[:, None] * H + cols[None, :], h, mask=tile_ok)


@triton.jit
def augru_kernel(gx_ptr, w_ptr, b_ptr, att_ptr, len_ptr, n_rows, T, K, H, out_ptr,
                 VARIANT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, IEEE: tl.constexpr):
    """The `dien::AUGRU` contract: attention given. Arguments in TensorRT AOT order: inputs (gx, w_hh,
    b_hh, att, lengths), int32 scalars (rows, T, K, H), output (h)."""
    _augru_body(gx_ptr, w_ptr, b_ptr, att_ptr, len_ptr, att_ptr, att_ptr, out_ptr, n_rows, T, K, H,
                VARIANT, False, BLOCK_B, BLOCK_H, IEEE)


@triton.jit
def augru_bilinear_kernel(gx_ptr, w_ptr, b_ptr, states_ptr, q_ptr, len_ptr, n_rows, T, K, H, out_ptr,
                          VARIANT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, IEEE: tl.constexpr):
    """AUGRU with the bilinear attention softmax fused in (states [R, T, H], queries q [R * K, H])."""
    _augru_body(gx_ptr, w_ptr, b_ptr, q_ptr, len_ptr, states_ptr, q_ptr, out_ptr, n_rows, T, K, H,
                VARIANT, True, BLOCK_B, BLOCK_H, IEEE)


def block_sizes(H: int, rows: int) -> tuple[int, int]:
    """BLOCK_H: H padded to a power of two (at least 16, the smallest tl.dot size); BLOCK_B likewise."""
    block_h = max(16, triton.next_power_of_2(H))
    block_b = max(16, min(64, triton.next_power_of_2(max(rows, 1))))
    return block_b, block_h


def augru(gx, w_hh, b_hh, lengths, att=None, *, K: int = 1, variant: str = "paper", states=None, q=None,
          block_b: int | None = None):
    """Launch the kernel on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1).

    gx [R, T, 3H] (one row per request), lengths [R]; either att [R * K, T], or states [R, T, H] and
    q [R * K, H] for the fused bilinear attention. Returns h [R * K, H] in fp32.
    """
    import torch

    R, T, G = gx.shape
    H = G // 3
    rows = R * K
    fused = att is None
    if fused and (states is None or q is None):
        raise ValueError("give either att, or states and q for the fused bilinear attention")
    bb, bh = block_sizes(H, rows)
    bb = block_b or bb
    out = torch.empty(rows, H, device=gx.device, dtype=torch.float32)
    grid = (triton.cdiv(rows, bb),)
    common = dict(VARIANT=VARIANTS[variant], BLOCK_B=bb, BLOCK_H=bh, IEEE=gx.dtype == torch.float32)
    lengths = lengths.to(torch.int64).contiguous()
    if fused:
        augru_bilinear_kernel[grid](gx.contiguous(), w_hh.contiguous(), b_hh.contiguous(), states.contiguous(),
                                    q.contiguous(), lengths, rows, T, K, H, out, **common)
    else:
        augru_kernel[grid](gx.contiguous(), w_hh.contiguous(), b_hh.contiguous(), att.contiguous(), lengths,
                           rows, T, K, H, out, **common)
    return out


KERNEL_SIGNATURE = ("gx_ptr", "w_ptr", "b_ptr", "att_ptr", "len_ptr", "n_rows", "T", "K", "H", "out_ptr")


def compile_ptx(dtype: str = "fp16", variant: str = "paper", H: int = 36, block_b: int = 64, arch: int = 90,
                lengths: str = "i64", specialize: bool = True, out_dtype: str = "fp32") -> dict:
    """Compile `augru_kernel` for an NVIDIA target without a GPU (Triton ships ptxas): PTX, cubin, metadata.

    With `specialize`, K = 1 and H are compiled in as constants (the `dien::AUGRU` contract), leaving
    the runtime scalars (rows, T) that TensorRT passes between the inputs and the output. PTX ISA 8.6 so
    that drivers older than Triton's default target load it.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    ptr = f"*{dtype}"
    signature = {"gx_ptr": ptr, "w_ptr": ptr, "b_ptr": ptr, "att_ptr": ptr, "len_ptr": f"*{lengths}",
                 "n_rows": "i32", "T": "i32", "K": "i32", "H": "i32",
                 "out_ptr": f"*{out_dtype}", "VARIANT": "constexpr",
                 "BLOCK_B": "constexpr", "BLOCK_H": "constexpr", "IEEE": "constexpr"}
    _, block_h = block_sizes(H, block_b)
    constexprs = {"VARIANT": VARIANTS[variant], "BLOCK_B": block_b, "BLOCK_H": block_h, "IEEE": dtype == "fp32"}
    if specialize:
        constexprs.update(K=1, H=H)
        signature.update(K="constexpr", H="constexpr")
    source = ASTSource(fn=augru_kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"ptx_version": 86})
    return {"ptx": compiled.asm["ptx"], "cubin": compiled.asm.get("cubin"), "metadata": compiled.metadata,
            "name": compiled.metadata.name, "block_b": block_b, "block_h": block_h}


def entry_params(ptx: str, name: str) -> list[str]:
    """The parameter names of a PTX entry, in order."""
    head = ptx[ptx.index(f".entry {name}("):]
    head = head[: head.index(")")]
    return re.findall(r"\.param\s+\.\w+(?:\s+\.ptr\s+\.\w+(?:\s+\.align\s+\d+)?)?\s+(\w+)", head)


def drop_scratch_params(compiled: dict) -> str:
    """Triton appends two scratch pointers (global, profile) to every entry; TensorRT passes only
    inputs, scalars and outputs. With zero-sized scratch the kernel never reads them: drop them."""
    meta, ptx, name = compiled["metadata"], compiled["ptx"], compiled["name"]
    if getattr(meta, "global_scratch_size", 0) or getattr(meta, "profile_scratch_size", 0):
        raise RuntimeError("the AUGRU kernel needs scratch memory; it cannot run as a TensorRT AOT plugin")
    params = entry_params(ptx, name)
    body = ptx[ptx.index(f".entry {name}("):]
    for extra in params[-2:]:
        if body.count(extra) != 1:
            raise RuntimeError(f"the kernel reads its scratch parameter {extra}")
    start = ptx.index(f".entry {name}(")
    end = ptx.index(")", start)
    kept = ",\n".join(line for line in ptx[start + len(f".entry {name}("):end].split(",")[:-2])
    return ptx[:start] + f".entry {name}(" + kept + "\n" + ptx[end:]
