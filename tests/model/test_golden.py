"""The zoo's numbers pinned: every model, fresh from a fixed seed, gives the recorded training logits,
auxiliary loss and inference scores, so a refactor of the spine or a model module that changes an
initialisation order, a layer or a head input fails here (the recording is from the one-class zoo the
modules replaced, bit-identical to them). Tolerance 1e-5: the fused kernels' sums may round differently
on another CPU. Regenerate, only for a deliberate change, with `python -m tests.model.test_golden`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dien_batch.model.spine import ModelConfig
from dien_batch.model.zoo import MODELS, build_model

from .test_fields import FIELDS, with_fields
from .test_model import random_requests

GOLDEN = Path(__file__).parents[1] / "data" / "model_golden.json"
VARIANTS = {**{name: (name, {}) for name in MODELS},
            **{f"{name}+fields": (name, {"fields": FIELDS}) for name in MODELS},
            "dien bilinear paper": ("dien", {"attention": "bilinear", "augru_variant": "paper"}),
            "pnn authors head": ("pnn", {"head": "authors"}),
            "din authors head, no interest product": ("din", {"head": "authors", "interest_product": False})}


def outputs(name: str, kw: dict) -> dict:
    torch.manual_seed(3)
    model = build_model(ModelConfig(name, n_users=20, n_items=50, n_categories=7, embedding_dim=6, hidden=8,
                                    mlp=(16, 8), **kw))
    r = with_fields(random_requests(R=8, seed=9), 9)
    batch = {k: v for k, v in r.items() if not k.startswith("cand_")}
    batch.update(item=r["cand_item"][:, 0], cat=r["cand_cat"][:, 0], i_brand=r["cand_i_brand"][:, 0],
                 i_price=r["cand_i_price"][:, 0], neg_item=r["hist_item"].flip(0), neg_cat=r["hist_cat"].flip(0),
                 neg_i_brand=r["hist_i_brand"].flip(0), neg_i_price=r["hist_i_price"].flip(0))
    model.train()
    with torch.no_grad():
        logits, aux = model(batch)
    model.eval()
    r = with_fields(random_requests(seed=1), 1)
    with torch.inference_mode():
        side = model.user_side(r["user"], r["hist_item"], r["hist_cat"], r["hist_len"], r)
        scores = model.candidates(side, r["cand_item"], r["cand_cat"], r)
    return {"train_logits": logits.tolist(), "aux": float(aux), "scores": scores.tolist()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_zoo_gives_the_recorded_numbers(variant):
    want = json.loads(GOLDEN.read_text())[variant]
    got = outputs(*VARIANTS[variant])
    for key in want:
        assert torch.allclose(torch.tensor(got[key]), torch.tensor(want[key]), atol=1e-5, rtol=0), key


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps({v: outputs(*VARIANTS[v]) for v in VARIANTS}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
