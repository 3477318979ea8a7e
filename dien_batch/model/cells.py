"""The GRU family as one recurrence, in PyTorch's gate convention (the reference implementation).

Gates follow `torch.nn.GRU` (ONNX `linear_before_reset=1`): with gx = x W_ih^T + b_ih precomputed for
all steps and gh = h W_hh^T + b_hh,

    r = sigmoid(gx_r + gh_r),  z = sigmoid(gx_z + gh_z),  n = tanh(gx_n + r * gh_n)
    GRU:            h' = (1 - z) * n + z * h                       (z keeps the old state)

With u = 1 - z the paper's update gate and a_t the attention score of step t:

    AGRU  (eq. 11): h' = (1 - a) * h + a * n                       (attention replaces the update gate)
    AUGRU (eq. 12-13, `paper`):    u' = a * u;  h' = (1 - u') * h + u' * n
                                   at a = 0 the state is kept unchanged.
    AUGRU (`official`, the authors' released TF code): the keep gate is scaled instead,
                                   z' = (1 - a) * z;  h' = z' * h + (1 - z') * n
                                   at a = 0 this is a plain GRU step, at a = 1 the state jumps to n.
    AIGRU (eq. 10): a plain GRU whose input is a_t * i_t (so gx' = a * (i W_ih^T) + b_ih).

All four are h' = h + w * (n - h) with a mixing weight w: 1 - z (GRU), a (AGRU), a * (1 - z)
(AUGRU paper), 1 - (1 - a) * z (AUGRU official).

`recurrence` runs T steps for R sequences with K attention vectors each (K candidate ads sharing one
history): gx is [R, T, 3H] (computed once per request), att is [R, K, T], the state is [R, K, H].
Steps at or past a sequence's length leave its state unchanged, so padding has no effect. Rows are
processed longest first and each step only touches the rows still inside their sequence (what packing
does). Training uses a hand-written backward pass (BPTT over the saved gates) instead of autograd's
per-op graph: the same arithmetic, several times faster on CPU.

The `dien::AUGRU` operator is the K = 1 case: gx [B, T, 3H], att [B, T], lengths [B] -> h [B, H].
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from . import native

KINDS = ("gru", "agru", "augru")
VARIANTS = ("paper", "official")


def cell_update(kind: str, variant: str, gx_t: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor,
                b_hh: torch.Tensor, a_t: torch.Tensor | None) -> torch.Tensor:
    """One step, written plainly (the reference the fast paths are tested against)."""
    gh = torch.nn.functional.linear(h, w_hh, b_hh)
    gx_r, gx_z, gx_n = gx_t.chunk(3, dim=-1)
    gh_r, gh_z, gh_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(gx_r + gh_r)
    z = torch.sigmoid(gx_z + gh_z)
    n = torch.tanh(gx_n + r * gh_n)
    if kind == "gru":
        return (1 - z) * n + z * h
    if kind == "agru":
        return (1 - a_t) * h + a_t * n
    if variant == "paper":
        u = a_t * (1 - z)
        return (1 - u) * h + u * n
    keep = (1 - a_t) * z
    return keep * h + (1 - keep) * n


def _active_rows(lengths: torch.Tensor, steps: int) -> list[int]:
    """For lengths sorted in descending order: how many rows are still inside their sequence at step t."""
    return torch.searchsorted(-lengths.cpu(), -torch.arange(steps)).tolist() if steps else []


MODES = {("gru", "paper"): 0, ("gru", "official"): 0, ("agru", "paper"): 1, ("agru", "official"): 1,
         ("augru", "paper"): 2, ("augru", "official"): 3}


def _forward_steps(gx: Tensor, w_hh: Tensor, b_hh: Tensor, att: Tensor | None, active: list[int], K: int,
                   mode: int, save: bool) -> tuple[Tensor, list[Tensor]]:
    """Forward over time-major, length-sorted inputs: gx [T, R, 3H], att [T, R, K, 1] or None.

    Returns the state buffer S [steps + 1, R, K, H] (S[t + 1, i] is row i's state after step t while t
    is inside its sequence; rows are longest first, so the rows active at step t are a prefix) and,
    when `save`, buffers of r, z, n, gh_n and the mixing weight w for the backward pass.
    """
    R, G = gx.shape[1], gx.shape[2]
    H = G // 3
    steps = len(active)
    S = gx.new_zeros(steps + 1, R, K, H)
    shape = [steps if save else 0, R, K, H]
    buffers = [gx.new_empty(shape) for _ in range(5)]
    w_t = w_hh.t()
    for t in range(steps):
        n_t = active[t]
        hp = S[t, :n_t]
        gh = torch.addmm(b_hh, hp.reshape(-1, H), w_t).view(n_t, K, G)
        gx_t = gx[t, :n_t].unsqueeze(1)
        rz = torch.sigmoid(gx_t[:, :, :2 * H] + gh[:, :, :2 * H])
        r, z, gh_n = rz[:, :, :H], rz[:, :, H:], gh[:, :, 2 * H:]
        n = torch.tanh(torch.addcmul(gx_t[:, :, 2 * H:], r, gh_n))
        if mode == 0:  # GRU
            w = 1 - z
        else:
            assert att is not None
            a = att[t, :n_t]
            if mode == 1:  # AGRU
                w = a.expand(n_t, K, H)
            elif mode == 2:  # AUGRU, paper
                w = a * (1 - z)
            else:  # AUGRU, official
                w = 1 - (1 - a) * z
        torch.lerp(hp, n, w, out=S[t + 1, :n_t])
        if save:
            values = [r, z, n, gh_n, w]
            for k in range(5):
                buffers[k][t, :n_t] = values[k]
    return S, buffers


def _backward_steps(grad_S: Tensor, w_hh: Tensor, S: Tensor, saved: list[Tensor], att: Tensor | None,
                    active: list[int], T: int, mode: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """BPTT over the saved gates (K = 1): gradients for gx [T, R, 3H], W_hh, b_hh and att [T, R, 1, 1]."""
    steps = len(active)
    R, H = S.shape[1], S.shape[3]
    G = 3 * H
    dh = grad_S[steps].clone()
    dgx = grad_S.new_zeros(T, R, 1, G)
    dgh_all = grad_S.new_zeros(steps, R, 1, G)
    datt = grad_S.new_zeros(T, R, 1, 1)
    for i in range(steps):
        t = steps - 1 - i
        n_t = active[t]
        r, z, n = saved[0][t, :n_t], saved[1][t, :n_t], saved[2][t, :n_t]
        gh_n, w = saved[3][t, :n_t], saved[4][t, :n_t]
        g = dh[:n_t]
        dw_mix = g * (n - S[t, :n_t])
        dpre_n = g * w * (1 - n * n)
        dgx_t = dgx[t, :n_t]
        if mode == 1:
            datt[t, :n_t] = dw_mix.sum(-1, keepdim=True)
        else:
            if mode == 0:
                dz = -dw_mix
            elif mode == 2:
                assert att is not None
                dz = -att[t, :n_t] * dw_mix
                datt[t, :n_t] = ((1 - z) * dw_mix).sum(-1, keepdim=True)
            else:
                assert att is not None
                dz = (att[t, :n_t] - 1) * dw_mix
                datt[t, :n_t] = (z * dw_mix).sum(-1, keepdim=True)
            dgx_t[:, :, H:2 * H] = dz * z * (1 - z)
        dgx_t[:, :, :H] = dpre_n * gh_n * r * (1 - r)
        dgx_t[:, :, 2 * H:] = dpre_n
        dgh = dgh_all[t, :n_t]
        dgh[:, :, :2 * H] = dgx_t[:, :, :2 * H]
        dgh[:, :, 2 * H:] = dpre_n * r
        dh_prev = torch.addmm((g - g * w).view(n_t, H), dgh.view(n_t, G), w_hh)
        dh = grad_S[t].clone()  # the state before step t: its direct gradient...
        dh[:n_t] += dh_prev.view(n_t, 1, H)  # ...plus what flows back through step t
    flat = dgh_all.view(-1, G)
    return dgx.squeeze(2), flat.t() @ S[:steps].reshape(-1, H), flat.sum(0), datt


def _scripted(fn):
    """TorchScript the step loops (about 1.7x faster on CPU); where TorchScript is gone or fails, the
    same code runs as plain Python."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(fn)
    except Exception as exc:  # noqa: BLE001 - any scripting failure falls back to eager, said once
        import sys

        print(f"dien-batch: TorchScript could not compile {fn.__name__} ({type(exc).__name__}); the step loops "
              "run as plain Python (about 1.7x slower where the fused recurrence is unavailable)", file=sys.stderr)
        return fn


_forward_steps = _scripted(_forward_steps)
_backward_steps = _scripted(_backward_steps)


class _Recurrence(torch.autograd.Function):
    """The state buffer S of the recurrence, with a hand-written BPTT backward (K = 1, length-sorted).

    Final states and per-step states are gathered from S by ordinary (differentiable) indexing, so
    their gradients arrive here as one gradient buffer over S.
    """

    @staticmethod
    def forward(ctx, gx, w_hh, b_hh, att, active, mode):
        with torch.no_grad():
            S, saved = _forward_steps(gx, w_hh, b_hh, att, active, 1, mode, True)
        ctx.meta = (active, gx.shape[0], mode, att is not None)
        ctx.save_for_backward(w_hh, S, att if att is not None else torch.empty(0), *saved)
        return S

    @staticmethod
    def backward(ctx, grad_S):
        w_hh, S, att, *saved = ctx.saved_tensors
        active, T, mode, has_att = ctx.meta
        dgx, dw, db, datt = _backward_steps(grad_S.contiguous(), w_hh, S, saved, att if has_att else None,
                                            active, T, mode)
        return dgx, dw, db, datt if has_att else None, None, None


class _FusedRecurrence(torch.autograd.Function):
    """The fused C++ recurrence (`native`), K = 1: (final [R, H], states [R, T, H]) with its BPTT."""

    @staticmethod
    def forward(ctx, gx, w_hh, b_hh, att, lengths, mode):
        ext = native.extension()
        final, states, saved = ext.forward(gx, w_hh, b_hh, att, lengths, mode, 1, True, True)
        ctx.mode = mode
        ctx.save_for_backward(w_hh, att, lengths, states, saved)
        return final, states

    @staticmethod
    def backward(ctx, grad_final, grad_states):
        w_hh, att, lengths, states, saved = ctx.saved_tensors
        empty = grad_final.new_empty(0)
        dgx, dw, db, datt = native.extension().backward(
            grad_final.contiguous(), empty if grad_states is None else grad_states.contiguous(), w_hh, att, lengths,
            states, saved, ctx.mode)
        return dgx, dw, db, (datt if att.numel() else None), None, None


def _fused(gx, w_hh, b_hh, lengths, att, mode: int, return_states: bool, needs_grad: bool):
    """The C++ path: final [R, K, H] and states [R, K, T, H] (or None)."""
    R, T, _ = gx.shape
    K = 1 if att is None else att.shape[1]
    gx, w_hh, b_hh = gx.contiguous(), w_hh.contiguous(), b_hh.contiguous()
    att_flat = gx.new_empty(0) if att is None else att.to(gx.dtype).reshape(R * K, T).contiguous()
    if needs_grad:
        if K != 1:
            raise ValueError("gradients through the recurrence need one candidate per row")
        final, states = _FusedRecurrence.apply(gx, w_hh, b_hh, att_flat, lengths, mode)
    else:
        with torch.no_grad():
            final, states, _ = native.extension().forward(gx, w_hh, b_hh, att_flat, lengths, mode, K, return_states,
                                                          False)
    H = w_hh.shape[1]
    return final.view(R, K, H), states.view(R, K, T, H) if return_states else None


def recurrence(kind: str, gx: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, lengths: torch.Tensor,
               att: torch.Tensor | None = None, variant: str = "paper",
               return_states: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Final state [R, K, H] and, if asked, all states [R, K, T, H] (a row's final state past its length).

    Differentiable (through the hand-written backward) for one candidate per row (K = 1). On the CPU in
    fp32 it runs the fused C++ recurrence where it is built (training, evaluation and scoring: see
    docs/benchmarks.md for its speed against the step loops below), else the step loops. The same
    arithmetic either way.
    """
    if kind not in KINDS or variant not in VARIANTS:
        raise ValueError(f"unknown cell {kind}/{variant}")
    R, T, G = gx.shape
    K = 1 if att is None else att.shape[1]
    needs_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (gx, w_hh, b_hh, att))
    if ((K == 1 or not needs_grad) and gx.device.type == "cpu" and gx.dtype == torch.float32 and R and T
            and not torch.jit.is_tracing() and native.extension() is not None):
        return _fused(gx, w_hh, b_hh, lengths.to(torch.long).clamp(0, T).contiguous(), att, MODES[kind, variant],
                      return_states, needs_grad)
    lengths = lengths.to(torch.long).clamp(0, T)
    order = torch.argsort(lengths, descending=True, stable=True)
    len_s = lengths[order]
    active = _active_rows(len_s, int(lengths.max()) if R else 0)
    gx_s = gx[order].transpose(0, 1).contiguous()  # [T, R, 3H]
    att_s = None if att is None else att[order].to(gx.dtype).permute(2, 0, 1).unsqueeze(-1).contiguous()
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(R, device=order.device)
    if needs_grad:
        if K != 1:
            raise ValueError("gradients through the recurrence need one candidate per row")
        S = _Recurrence.apply(gx_s, w_hh, b_hh, att_s, active, MODES[kind, variant])
    else:
        with torch.no_grad():
            S, _ = _forward_steps(gx_s, w_hh, b_hh, att_s, active, K, MODES[kind, variant], False)
    rows = torch.arange(R, device=S.device)
    final = S[len_s, rows][inverse]
    if not return_states:
        return final, None
    # State after step t: S[t + 1] inside the sequence, the final state after it.
    steps = torch.minimum(torch.arange(1, T + 1, device=S.device).unsqueeze(1), len_s.unsqueeze(0))  # [T, R]
    states = S[steps, rows]  # [T, R, K, H]
    return final, states.permute(1, 2, 0, 3)[inverse]


def augru_op(gx: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, att: torch.Tensor, lengths: torch.Tensor,
             variant: str = "paper") -> torch.Tensor:
    """The `dien::AUGRU` operator (PyTorch reference): gx [B,T,3H], att [B,T], lengths [B] -> h [B,H]."""
    final, _ = recurrence("augru", gx, w_hh, b_hh, lengths, att.unsqueeze(1), variant)
    return final[:, 0]
