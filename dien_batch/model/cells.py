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

import torch

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


def _mix(kind: str, variant: str, a: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
    if kind == "gru":
        return 1 - z
    if kind == "agru":
        return a
    return a * (1 - z) if variant == "paper" else 1 - (1 - a) * z


def _active_rows(lengths: torch.Tensor, steps: int) -> list[int]:
    """For lengths sorted in descending order: how many rows are still inside their sequence at step t."""
    return torch.searchsorted(-lengths.cpu(), -torch.arange(steps)).tolist() if steps else []


def _run(kind, variant, gx, w_hh, b_hh, att, active, K):
    """Forward over time-major, length-sorted inputs: gx [T, R, 3H], att [T, R, K, 1] or None.

    Returns the state buffer S [T + 1, R, K, H] (S[t + 1, i] is row i's state after step t while t is
    inside its sequence; rows are longest first, so the rows active at step t are a prefix) and the
    gates saved for the backward pass.
    """
    T, R, G = gx.shape
    H = G // 3
    S = gx.new_zeros(len(active) + 1, R, K, H)
    saved = []
    w_t = w_hh.t()
    for t, n_t in enumerate(active):
        hp = S[t, :n_t]
        gh = torch.addmm(b_hh, hp.reshape(-1, H), w_t).view(n_t, K, G)
        gx_t = gx[t, :n_t].unsqueeze(1)
        rz = torch.sigmoid(gx_t[..., :2 * H] + gh[..., :2 * H])
        r, z = rz[..., :H], rz[..., H:]
        gh_n = gh[..., 2 * H:]
        n = torch.tanh(torch.addcmul(gx_t[..., 2 * H:], r, gh_n))
        a = None if att is None else att[t, :n_t]
        w = _mix(kind, variant, a, z)
        torch.lerp(hp, n, w, out=S[t + 1, :n_t]) if w.shape == hp.shape else S[t + 1, :n_t].copy_(hp + w * (n - hp))
        saved.append((r, z, n, gh_n, w, a))
    return S, saved


def _final(S: torch.Tensor, lengths_sorted: torch.Tensor) -> torch.Tensor:
    """Each row's state after its last step, [R, K, H]."""
    return S[lengths_sorted, torch.arange(S.shape[1], device=S.device)]


class _Recurrence(torch.autograd.Function):
    """Final state of the recurrence with a hand-written BPTT backward (K = 1, inputs length-sorted)."""

    @staticmethod
    def forward(ctx, gx, w_hh, b_hh, att, lengths_sorted, active, kind, variant):
        with torch.no_grad():
            S, saved = _run(kind, variant, gx, w_hh, b_hh, att, active, 1)
        ctx.saved = saved
        ctx.meta = (kind, variant, active, gx.shape, att is not None)
        ctx.save_for_backward(w_hh, S, lengths_sorted)
        return _final(S, lengths_sorted)

    @staticmethod
    def backward(ctx, grad_h):
        w_hh, S, lengths_sorted = ctx.saved_tensors
        kind, variant, active, (T, R, G), has_att = ctx.meta
        H = G // 3
        steps = len(active)
        # Gradient wrt each row's state enters at its last step: place it in a per-step buffer.
        inject = grad_h.new_zeros(steps + 1, R, 1, H)
        inject[lengths_sorted, torch.arange(R)] = grad_h
        dh = inject[steps].clone()
        dgx = grad_h.new_zeros(T, R, 1, G)
        dgh_all = grad_h.new_zeros(steps, R, 1, G)
        datt = grad_h.new_zeros(T, R, 1, 1) if has_att else None
        for t in range(steps - 1, -1, -1):
            n_t = active[t]
            r, z, n, gh_n, w, a = ctx.saved[t]
            hp = S[t, :n_t]
            g = dh[:n_t]
            dw_mix = g * (n - hp)
            dpre_n = g * w * (1 - n * n)
            if kind == "agru":
                datt[t, :n_t] = dw_mix.sum(-1, keepdim=True)
                dpre_z = torch.zeros_like(z)
            else:
                if kind == "gru":
                    dz = -dw_mix
                elif variant == "paper":
                    dz = -a * dw_mix
                    datt[t, :n_t] = ((1 - z) * dw_mix).sum(-1, keepdim=True)
                else:
                    dz = (a - 1) * dw_mix
                    datt[t, :n_t] = (z * dw_mix).sum(-1, keepdim=True)
                dpre_z = dz * z * (1 - z)
            dpre_r = dpre_n * gh_n * r * (1 - r)
            dgx_t = dgx[t, :n_t]
            dgx_t[..., :H] = dpre_r
            dgx_t[..., H:2 * H] = dpre_z
            dgx_t[..., 2 * H:] = dpre_n
            dgh = dgh_all[t, :n_t]
            dgh.copy_(dgx_t)
            dgh[..., 2 * H:] *= r
            dh_prev = torch.addmm(g.view(n_t, H) - (g * w).view(n_t, H), dgh.view(n_t, G), w_hh)
            dh[:n_t] = dh_prev.view(n_t, 1, H)
            dh += inject[t]  # rows whose sequence ends at step t start receiving gradient here
        flat = dgh_all.view(-1, G)
        dw = flat.t() @ S[:steps].reshape(-1, H)
        return dgx.squeeze(2), dw, flat.sum(0), datt, None, None, None, None


def recurrence(kind: str, gx: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, lengths: torch.Tensor,
               att: torch.Tensor | None = None, variant: str = "paper",
               return_states: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Final state [R, K, H] and, if asked, all states [R, K, T, H] (never past a row's length)."""
    if kind not in KINDS or variant not in VARIANTS:
        raise ValueError(f"unknown cell {kind}/{variant}")
    R, T, G = gx.shape
    K = 1 if att is None else att.shape[1]
    lengths = lengths.to(torch.long).clamp(0, T)
    order = torch.argsort(lengths, descending=True, stable=True)
    active = _active_rows(lengths[order], int(lengths.max()) if R else 0)
    gx_s = gx[order].transpose(0, 1).contiguous()  # [T, R, 3H]
    att_s = None if att is None else att[order].permute(2, 0, 1).unsqueeze(-1).contiguous()  # [T, R, K, 1]
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(R, device=order.device)
    needs_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (gx, w_hh, b_hh, att))
    len_s = lengths[order]
    if needs_grad and not return_states and K == 1:
        final = _Recurrence.apply(gx_s, w_hh, b_hh, att_s, len_s, active, kind, variant)
        return final[inverse], None
    if needs_grad:
        raise ValueError("gradients through the recurrence are supported for one candidate per row, final state")
    with torch.no_grad():
        S, _ = _run(kind, variant, gx_s, w_hh, b_hh, att_s, active, K)
    final = _final(S, len_s)[inverse]
    if not return_states:
        return final, None
    # State after step t: S[t + 1] inside the sequence, the final state after it.
    steps = torch.minimum(torch.arange(1, T + 1).unsqueeze(1), len_s.cpu().unsqueeze(0))  # [T, R]
    states = S[steps.to(S.device), torch.arange(R, device=S.device)]  # [T, R, K, H]
    return final, states.permute(1, 2, 0, 3)[inverse]


def augru_op(gx: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, att: torch.Tensor, lengths: torch.Tensor,
             variant: str = "paper") -> torch.Tensor:
    """The `dien::AUGRU` operator (PyTorch reference): gx [B,T,3H], att [B,T], lengths [B] -> h [B,H]."""
    final, _ = recurrence("augru", gx, w_hh, b_hh, lengths, att.unsqueeze(1), variant)
    return final[:, 0]
