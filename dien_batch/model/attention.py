"""Target attention over a behaviour sequence, softmax over valid steps only (padding gets 0).

* `BilinearAttention` (paper eq. 9): a_t = softmax_t(h_t W e_a); W is an `nn.Linear` at PyTorch's
  default (Kaiming-uniform) init, so the scores start small but not uniform.
* `MLPAttention` (the authors' code): q = PReLU(Dense(e_a)) (or e_a itself, as in DIN); scores from
  an MLP 80-40 (sigmoid) -> 1 on [q, h, q - h, q * h]. Its first layer is computed as
  q (W_q + W_d)^T + h (W_h - W_d)^T + (q * h) W_p^T, the same linear map without materialising the
  4H-wide input, so the h part runs once per request and only the q * h part per candidate. For
  inference on the CPU the per-(candidate, step) part runs in a fused C++ kernel (`attention.cpp`).

Both take keys [R, T, D] (one history per request) and queries [R, K, Dq] (K candidates) and return
weights [R, K, T].
"""

from __future__ import annotations

import torch
from torch import nn

from . import native
from .layers import PReLU, masked_softmax


def normalise(scores: torch.Tensor, mask: torch.Tensor, norm: str) -> torch.Tensor:
    """Attention weights from scores [R, K, T]: softmax over the valid steps, or each step's own sigmoid."""
    if norm == "softmax":
        return masked_softmax(scores, mask.unsqueeze(1))
    return torch.sigmoid(scores) * mask.unsqueeze(1)


class BilinearAttention(nn.Module):
    def __init__(self, key_dim: int, query_dim: int, norm: str = "softmax"):
        super().__init__()
        self.w = nn.Linear(query_dim, key_dim, bias=False)
        self.norm = norm

    def scores(self, keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        return torch.einsum("rtd,rkd->rkt", keys, self.w(queries))

    def forward(self, keys: torch.Tensor, queries: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return normalise(self.scores(keys, queries), mask, self.norm)


class MLPAttention(nn.Module):
    def __init__(self, key_dim: int, query_dim: int, hidden: tuple[int, ...] = (80, 40), project_query: bool = True,
                 norm: str = "softmax"):
        super().__init__()
        self.norm = norm
        self.query = nn.Sequential(nn.Linear(query_dim, key_dim), PReLU(key_dim)) if project_query else None
        if not project_query and query_dim != key_dim:
            raise ValueError("without a query projection the query and key sizes must match")
        self.first = nn.Linear(4 * key_dim, hidden[0])
        rest: list[nn.Module] = [nn.Sigmoid()]
        for a, b in zip(hidden[:-1], hidden[1:], strict=False):
            rest += [nn.Linear(a, b), nn.Sigmoid()]
        self.rest = nn.Sequential(*rest, nn.Linear(hidden[-1], 1))

    def key_part(self, keys: torch.Tensor) -> torch.Tensor:
        """The request-side part of the first layer: h (W_h - W_d)^T + b, [R, T, hidden]."""
        w_q, w_h, w_d, w_p = self.first.weight.chunk(4, dim=1)
        return torch.nn.functional.linear(keys, w_h - w_d, self.first.bias)

    def scores(self, keys: torch.Tensor, queries: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Scores [R, K, T]; given each request's history length [R], the fused kernel skips (and zeroes) the
        padded steps, which the weights mask out anyway."""
        q = self.query(queries) if self.query is not None else queries  # [R, K, D]
        w_q, w_h, w_d, w_p = self.first.weight.chunk(4, dim=1)
        key_part, query_part = self.key_part(keys), q @ (w_q + w_d).T  # [R, T, hidden], [R, K, hidden]
        kernel = (native.inference_kernel("mlp_attention_scores", keys, self.first.weight)
                  if len(self.rest) == 4 else None)  # the kernel has the default two hidden layers
        if kernel is not None:  # inference on the CPU: the C++ kernel, no [R, K, T, hidden] tensor
            second, last = self.rest[1], self.rest[3]
            steps = torch.full((keys.shape[0],), keys.shape[1]) if lengths is None else lengths.to(torch.long)
            return kernel(keys.contiguous(), q.contiguous(), key_part.contiguous(), query_part.contiguous(),
                          w_p.contiguous(), second.weight.contiguous(), second.bias.contiguous(),
                          last.weight.reshape(-1).contiguous(), float(last.bias), steps.contiguous())
        first = (key_part.unsqueeze(1) + query_part.unsqueeze(2)  # [R, 1, T, hidden] + [R, K, 1, hidden]
                 + (q.unsqueeze(2) * keys.unsqueeze(1)) @ w_p.T)  # [R, K, T, hidden]
        return self.rest(first).squeeze(-1)

    def forward(self, keys: torch.Tensor, queries: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return normalise(self.scores(keys, queries, mask.sum(-1)), mask, self.norm)
