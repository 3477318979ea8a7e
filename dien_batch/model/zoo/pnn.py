"""PNN: BaseModel with target * history sum always in the head and, with the extended head, the inner
products between the user, target item, target category and history-sum embeddings (5 fields, 10 pairs)."""

from __future__ import annotations

import torch

from ..layers import masked_sum
from ..spine import CTRModel, UserSide

PAIRS = 10  # 5 fields of size E


class Model(CTRModel):
    default_activation = "prelu"
    always_product = True

    def build(self, c) -> tuple[int, int]:
        return 0, PAIRS if c.head == "extended" else 0

    def encode(self, side: UserSide, hist_item: torch.Tensor, hist_cat: torch.Tensor) -> None:
        side.extras["hist_item_sum"] = masked_sum(self.item_emb(hist_item), side.mask)
        side.extras["hist_cat_sum"] = masked_sum(self.cat_emb(hist_cat), side.mask)

    def head_extras(self, side: UserSide, item: torch.Tensor, cat: torch.Tensor) -> list[torch.Tensor]:
        if self.config.head != "extended":
            return []
        R, K = item.shape
        fields = [side.user.unsqueeze(1).expand(R, K, -1), self.item_emb(item), self.cat_emb(cat),
                  side.extras["hist_item_sum"].unsqueeze(1).expand(R, K, -1),
                  side.extras["hist_cat_sum"].unsqueeze(1).expand(R, K, -1)]
        stacked = torch.stack(fields, dim=2)  # [R, K, 5, E]
        gram = stacked @ stacked.transpose(-1, -2)
        iu = torch.triu_indices(5, 5, offset=1, device=item.device)
        return [gram[..., iu[0], iu[1]]]
