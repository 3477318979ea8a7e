"""Wide & Deep: BaseModel plus a wide linear part on the target item, its category and the crosses of
the target category with each history category (hashed, averaged over the valid steps)."""

from __future__ import annotations

import torch
from torch import nn

from ..spine import CTRModel, UserSide

WIDE_BUCKETS = 1 << 18


class Model(CTRModel):
    default_activation = "prelu"

    def build(self, c) -> tuple[int, int]:
        self.wide_item = nn.Embedding(c.n_items, 1)
        self.wide_cat = nn.Embedding(c.n_categories, 1)
        self.wide_cross = nn.Embedding(WIDE_BUCKETS, 1)
        for emb in (self.wide_item, self.wide_cat, self.wide_cross):
            nn.init.zeros_(emb.weight)
        return 0, 0

    def encode(self, side: UserSide, hist_item: torch.Tensor, hist_cat: torch.Tensor) -> None:
        side.extras["hist_cat"] = hist_cat

    def head_logits(self, side: UserSide, item: torch.Tensor, cat: torch.Tensor, target: torch.Tensor,
                    interest: torch.Tensor | None) -> torch.Tensor:
        return super().head_logits(side, item, cat, target, interest) + self.wide(side, item, cat)

    def wide(self, side: UserSide, item: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        hist_cat = side.extras["hist_cat"]  # [R, T]
        cross = (cat.unsqueeze(-1).to(torch.int64) * 1_000_003 + hist_cat.unsqueeze(1)) % WIDE_BUCKETS
        mask = side.mask.unsqueeze(1).to(torch.float32)
        crossed = (self.wide_cross(cross).squeeze(-1) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return self.wide_item(item).squeeze(-1) + self.wide_cat(cat).squeeze(-1) + crossed
