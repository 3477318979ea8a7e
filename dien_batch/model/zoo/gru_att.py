"""GRU + attention: two GRU layers over the history, then the attention-weighted sum of the second's states."""

from __future__ import annotations

import torch
from torch import nn

from ..spine import UserSide
from ._sequence import SequenceModel


class Model(SequenceModel):
    def build(self, c) -> tuple[int, int]:
        dims = super().build(c)
        self.second = nn.GRU(c.hidden, c.hidden, batch_first=True)
        return dims

    def encode(self, side: UserSide, hist_item: torch.Tensor, hist_cat: torch.Tensor) -> None:
        super().encode(side, hist_item, hist_cat)
        side.states = self.gru_states(self.second, side.states, side.lengths, side.mask)

    def interest(self, side: UserSide, target: torch.Tensor, return_states: bool = False):
        return torch.einsum("rkt,rtd->rkd", self.attention_weights(side, target), side.states), None
