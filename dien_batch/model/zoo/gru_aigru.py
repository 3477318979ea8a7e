"""GRU + AIGRU (ablation): a plain GRU over the attention-scaled extractor states, final state."""

from __future__ import annotations

import torch

from ..cells import recurrence
from ..spine import UserSide
from ._sequence import EvolvingModel


class Model(EvolvingModel):
    cell = "gru"
    input_bias = False  # the bias is added after the attention scaling
    exportable = False

    def interest(self, side: UserSide, target: torch.Tensor, return_states: bool = False):
        att = self.attention_weights(side, target)  # [R, K, T]
        ev = self.evolve
        gx = att.unsqueeze(-1) * side.gx.unsqueeze(1) + ev.bias_ih  # a * (h W_ih^T) + b_ih, per candidate
        R, K = att.shape[:2]
        final, states = recurrence("gru", gx.flatten(0, 1), ev.weight_hh, ev.bias_hh,
                                   side.lengths.repeat_interleave(K), None, self.config.augru_variant, return_states)
        return final.view(R, K, -1), None if states is None else states.view(R, K, *states.shape[2:])
