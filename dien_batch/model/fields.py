"""The feature spec's fields as model inputs: an embedding per categorical field, numeric fields
standardised with the train split's statistics (a missing value, NaN, becomes the mean).

Item fields widen the item vector (history steps, auxiliary negatives, target, candidates); user-profile
and context fields form the profile vector the final MLP sees once per request. Inputs arrive as a dict
of tensors keyed by column (`u_age`; items' with a role prefix: `hist_i_brand`, `cand_i_brand`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..feature_spec import PREFIX


def column(f: dict) -> str:
    return PREFIX[f["group"]] + f["name"]


class FieldInputs(nn.Module):
    """fields: the model config's list of {group, name, kind, size (categorical) | mean, std (numeric)}."""

    def __init__(self, fields: list[dict], dim: int, std: float):
        super().__init__()
        self.fields = [dict(f) for f in fields]
        self.dim = dim
        self.tables = nn.ModuleDict()
        for f in self.fields:
            if f["kind"] == "categorical":
                emb = self.tables[column(f)] = nn.Embedding(int(f["size"]), dim, padding_idx=0)
                nn.init.normal_(emb.weight, std=std)
                with torch.no_grad():
                    emb.weight[0].zero_()
            else:
                self.register_buffer(f"mean_{column(f)}", torch.tensor(float(f["mean"])))
                self.register_buffer(f"std_{column(f)}", torch.tensor(float(f["std"])))

    def of(self, *groups: str) -> list[dict]:
        return [f for f in self.fields if f["group"] in groups]

    def width(self, *groups: str) -> int:
        return sum(self.dim if f["kind"] == "categorical" else 1 for f in self.of(*groups))

    def input_names(self, *groups: str, role: str = "") -> list[str]:
        return [role + column(f) for f in self.of(*groups)]

    def vectors(self, inputs: dict[str, torch.Tensor], *groups: str, role: str = "") -> list[torch.Tensor]:
        """The fields of `groups` as [..., dim] embeddings or [..., 1] standardised values."""
        out = []
        for f in self.of(*groups):
            name = column(f)
            x = inputs[role + name]
            if f["kind"] == "categorical":
                out.append(self.tables[name](x))
                continue
            scaled = (x.to(torch.float32) - getattr(self, f"mean_{name}")) / getattr(self, f"std_{name}")
            out.append(torch.where(torch.isnan(scaled), torch.zeros_like(scaled), scaled).unsqueeze(-1))
        return out
