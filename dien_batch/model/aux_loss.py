"""The auxiliary loss (paper eq. 7-8): interest state h_t must tell e_{t+1} from a sampled negative.

    L_aux = -mean over valid t of [ log sigma(f(h_t, e_{t+1})) + log(1 - sigma(f(h_t, e^-_{t+1}))) ]

with f an MLP 100-50-1 (sigmoid activations) on [h_t, e]. Valid t: 0 <= t < hist_len - 1 (the next
behaviour exists); the mean is over valid cells only, so padding never contributes.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import InputNorm, mlp


class AuxiliaryLoss(nn.Module):
    def __init__(self, state_dim: int, item_dim: int, hidden: tuple[int, ...] = (100, 50), norm: bool = False):
        super().__init__()
        self.net = mlp([state_dim + item_dim, *hidden], activation="sigmoid")
        if norm:  # the authors' aux net starts with a batch normalisation of its input
            self.net.insert(0, InputNorm(state_dim + item_dim))

    def forward(self, states: torch.Tensor, clicked: torch.Tensor, negative: torch.Tensor,
                lengths: torch.Tensor) -> torch.Tensor:
        """states [B, T, H], clicked/negative item vectors [B, T, D], lengths [B] -> scalar loss."""
        h = states[:, :-1]
        T = states.shape[1]
        valid = torch.arange(T - 1, device=states.device) < (lengths.unsqueeze(1) - 1)
        if not valid.any():
            return states.new_zeros(())
        h = h[valid]  # only the valid cells go through the scorer
        pos = self.net(torch.cat([h, clicked[:, 1:][valid]], dim=-1)).squeeze(-1)
        neg = self.net(torch.cat([h, negative[:, 1:][valid]], dim=-1)).squeeze(-1)
        loss = nn.functional.softplus(-pos) + nn.functional.softplus(neg)  # -log s(pos) - log(1 - s(neg))
        return loss.mean()
