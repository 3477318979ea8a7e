"""Small building blocks: Dice, PReLU MLPs, masked softmax, masked sums."""

from __future__ import annotations

import torch
from torch import nn

from . import native


class Dice(nn.Module):
    """Dice activation (DIN): p = sigmoid(BN(x)); out = p*x + (1-p)*alpha*x.

    The normalisation keeps running statistics: in eval mode it uses them, never batch statistics, so
    a score does not depend on the other rows of its batch.
    """

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, eps=eps, affine=False, momentum=0.01)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            flat = x.reshape(-1, x.shape[-1])
            normed = self.bn(flat).reshape(x.shape)
            p = torch.sigmoid(normed)
            return p * x + (1 - p) * self.alpha * x
        # running statistics only: p = sigmoid(x * scale + shift), out = x * (alpha + p * (1 - alpha)), in one
        # pass (the fused CPU kernel) or written out so that it exports as plain arithmetic
        scale = torch.rsqrt(self.bn.running_var + self.bn.eps)
        shift = -self.bn.running_mean * scale
        kernel = native.inference_kernel("dice_inference", x, self.alpha)
        if kernel is not None:
            return kernel(x.contiguous(), scale.contiguous(), shift.contiguous(), self.alpha.contiguous())
        p = torch.sigmoid(torch.addcmul(shift, x, scale))
        return x * torch.addcmul(self.alpha, p, 1 - self.alpha)


class InputNorm(nn.Module):
    """Batch normalisation of the final MLP's input (the authors' `bn1`): batch statistics while
    training, running statistics at inference (written out, so it exports as plain arithmetic)."""

    def __init__(self, dim: int, eps: float = 1e-3):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, eps=eps, momentum=0.01)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) of the running statistics: at inference the layer is x * scale + shift."""
        bn = self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps) * bn.weight
        return scale, bn.bias - bn.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        scale, shift = self.affine()
        return torch.addcmul(shift, x, scale)  # one pass over x


class PReLU(nn.Module):
    """PReLU over the last dimension (torch's PReLU treats dim 1 as the channels, so it runs on the 2-D view)."""

    def __init__(self, dim: int, init: float = 0.25):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.prelu(x.reshape(-1, x.shape[-1]), self.alpha).reshape(x.shape)


def mlp(dims: list[int], activation: str = "prelu", out: int | None = 1) -> nn.Sequential:
    """Linear layers through `dims`, each followed by the activation, then an optional output layer."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        layers.append({"dice": lambda d: Dice(d), "prelu": lambda d: PReLU(d),
                       "sigmoid": lambda d: nn.Sigmoid()}[activation](dims[i + 1]))
    if out is not None:
        layers.append(nn.Linear(dims[-1], out))
    return nn.Sequential(*layers)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim where mask is True; padding gets exactly 0, an empty row all zeros."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over the time dim (-2) of values [..., T, D] where mask [..., T] is True."""
    return (values * mask.unsqueeze(-1).to(values.dtype)).sum(dim=-2)
