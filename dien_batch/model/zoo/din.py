"""DIN: the attention-weighted sum of the history's item vectors, the target as the query."""

from __future__ import annotations

import torch

from ..attention import MLPAttention
from ..spine import CTRModel, UserSide


class Model(CTRModel):
    attends = True

    def build(self, c) -> tuple[int, int]:
        self.attention = MLPAttention(self.item_dim, self.item_dim, c.attention_mlp, project_query=False,
                                      norm=c.attention_norm)
        return self.item_dim, 0

    def attention_weights(self, side: UserSide, target: torch.Tensor) -> torch.Tensor:
        return self.attention(side.hist, target, side.mask)

    def interest(self, side: UserSide, target: torch.Tensor, return_states: bool = False):
        return torch.einsum("rkt,rtd->rkd", self.attention_weights(side, target), side.hist), None
