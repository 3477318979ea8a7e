"""DIEN: GRU + AUGRU trained with the auxiliary next-behaviour loss on the extractor states (eq. 7-8)."""

from __future__ import annotations

import torch

from ..aux_loss import AuxiliaryLoss
from ..spine import UserSide
from . import gru_augru


class Model(gru_augru.Model):
    auxiliary = True

    def build(self, c) -> tuple[int, int]:
        dims = super().build(c)
        if self.uses_aux:
            self.aux = AuxiliaryLoss(c.hidden, self.item_dim, c.aux_mlp, norm=c.aux_norm)
        return dims

    def auxiliary_loss(self, side: UserSide, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        negatives = self.item_vectors(batch["neg_item"], batch["neg_cat"], batch, "neg_")
        return self.aux(side.states, side.hist, negatives, batch["hist_len"])
