"""Feature-spec fields in the model: every model takes them, they change the score where they should,
the user side (profile included) is shared exactly, batching changes nothing, ONNX equals torch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from dien_batch.engines.onnx_export import export
from dien_batch.engines.requests import input_names, numeric_inputs, request_inputs
from dien_batch.model import batches
from dien_batch.model.spine import CTRModel, ModelConfig
from dien_batch.model.zoo import MODELS, build_model

from .test_model import random_requests

FIELDS = ({"group": "user", "name": "segment", "kind": "categorical", "size": 6},
          {"group": "user", "name": "age", "kind": "numeric", "mean": 40.0, "std": 12.0},
          {"group": "item", "name": "brand", "kind": "categorical", "size": 9},
          {"group": "item", "name": "price", "kind": "numeric", "mean": 20.0, "std": 5.0})


def with_fields(r: dict, seed: int = 0) -> dict:
    """random_requests plus random field inputs (a NaN price and a missing segment among them)."""
    g = torch.Generator().manual_seed(100 + seed)
    R, T = r["hist_item"].shape
    K = r["cand_item"].shape[1]
    out = dict(r, u_segment=torch.randint(0, 6, (R,), generator=g), u_age=torch.rand(R, generator=g) * 50 + 18,
               hist_i_brand=torch.randint(0, 9, (R, T), generator=g),
               cand_i_brand=torch.randint(0, 9, (R, K), generator=g),
               hist_i_price=torch.rand(R, T, generator=g) * 40, cand_i_price=torch.rand(R, K, generator=g) * 40)
    out["u_segment"][0] = 0
    out["cand_i_price"][0, 0] = float("nan")
    return out


def field_model(name: str, **kw) -> CTRModel:
    torch.manual_seed(2)
    model = build_model(ModelConfig(name, n_users=20, n_items=50, n_categories=7, embedding_dim=6, hidden=8,
                                 mlp=(16, 8), fields=FIELDS, **kw))
    model.train()
    r = with_fields(random_requests(R=32, seed=9), 9)
    batch = {k: v for k, v in r.items() if not k.startswith("cand_")}
    batch.update(item=r["cand_item"][:, 0], cat=r["cand_cat"][:, 0], i_brand=r["cand_i_brand"][:, 0],
                 i_price=r["cand_i_price"][:, 0], label=torch.zeros(32), neg_item=r["hist_item"].flip(0),
                 neg_cat=r["hist_cat"].flip(0), neg_i_brand=r["hist_i_brand"].flip(0),
                 neg_i_price=r["hist_i_price"].flip(0))
    with torch.no_grad():
        logits, aux = model(batch)
    assert torch.isfinite(logits).all() and torch.isfinite(aux)
    return model.eval()


def scores(model: CTRModel, r: dict) -> torch.Tensor:
    with torch.inference_mode():
        side = model.user_side(r["user"], r["hist_item"], r["hist_cat"], r["hist_len"], r)
        return model.candidates(side, r["cand_item"], r["cand_cat"], r)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_takes_fields_and_they_change_the_score(name):
    model = field_model(name)
    r = with_fields(random_requests(seed=1), 1)
    base = scores(model, r)
    assert torch.isfinite(base).all()
    for key, other in (("u_segment", (r["u_segment"] + 1) % 6), ("u_age", r["u_age"] + 20),
                       ("cand_i_brand", (r["cand_i_brand"] + 1) % 9), ("cand_i_price", r["cand_i_price"] + 10)):
        changed = scores(model, dict(r, **{key: other}))
        assert (changed - base).abs().max() > 1e-6, key
    changed = scores(model, dict(r, hist_i_brand=(r["hist_i_brand"] + 1) % 9))  # the history sum, at least
    assert (changed - base).abs().max() > 1e-6


@pytest.mark.parametrize("name", ["dien", "din", "base"])
def test_fields_score_alone_as_in_any_batch(name):
    """A request scored alone equals its row of a batch: the profile and item fields add no batch effects."""
    model = field_model(name)
    r = with_fields(random_requests(R=7, T=6, K=3, seed=4), 4)
    together = scores(model, r)
    for i in range(7):
        alone = scores(model, {k: v[i:i + 1] for k, v in r.items()})
        assert torch.allclose(alone[0], together[i], atol=1e-5)


def test_shared_user_side_equals_per_pair_with_fields():
    model = field_model("dien")
    r = with_fields(random_requests(R=5, T=8, K=4, seed=3), 3)
    shared = scores(model, r)
    for k in range(4):
        one = {key: (v[:, k:k + 1] if key.startswith("cand_") else v) for key, v in r.items()}
        assert torch.allclose(scores(model, one)[:, 0], shared[:, k], atol=1e-5)


def test_missing_values_are_the_padding_row_and_the_mean():
    model = field_model("dien")
    r = with_fields(random_requests(R=4, seed=5), 5)
    nan = scores(model, dict(r, cand_i_price=torch.full_like(r["cand_i_price"], float("nan"))))
    mean = scores(model, dict(r, cand_i_price=torch.full_like(r["cand_i_price"], 20.0)))
    assert torch.allclose(nan, mean, atol=1e-6)
    assert model.fields.tables["u_segment"].weight[0].abs().max() == 0


@pytest.mark.parametrize("name", ["dien", "din", "pnn"])
def test_onnx_export_with_fields_matches_torch(name):
    import onnxruntime as ort

    model = field_model(name)
    om = export(model)
    names = [i.name for i in om.graph.input]
    assert names == input_names(model.config.fields)
    session = ort.InferenceSession(om.SerializeToString(), providers=["CPUExecutionProvider"])
    for seed, (R, T, K) in enumerate(((6, 9, 4), (3, 2, 1))):
        r = with_fields(random_requests(R=R, T=T, K=K, seed=seed), seed)
        got = session.run(None, {n: r[n].numpy() for n in names})[0]
        assert np.abs(got - torch.sigmoid(scores(model, r)).numpy()).max() <= 1e-5


def test_request_and_sample_columns_become_the_model_inputs():
    table = pa.table({
        "user_idx": pa.array([2, 3], pa.int32()), "hist_item_idx": [[2, 3], [4]], "hist_category_idx": [[2, 2], [3]],
        "hist_len": pa.array([2, 1], pa.int32()), "cand_item_idx": [[5, 6, 7], [8]],
        "cand_category_idx": [[2, 3, 4], [5]],
        "u_segment": pa.array([1, 4], pa.int32()), "u_age": pa.array([30.0, float("nan")], pa.float32()),
        "hist_i_brand": [[3, 4], [5]], "cand_i_brand": [[1, 2, 3], [4]],
        "hist_i_price": pa.array([[1.5, 2.5], [3.5]], pa.list_(pa.float32())),
        "cand_i_price": pa.array([[1.0, 2.0, 3.0], [4.0]], pa.list_(pa.float32())),
    })
    inputs = request_inputs(table, FIELDS)
    assert inputs["cand_i_brand"].tolist() == [[1, 2, 3], [4, 0, 0]] and inputs["cand_i_brand"].dtype == np.int64
    assert inputs["hist_i_price"].dtype == np.float32 and inputs["hist_i_price"].tolist() == [[1.5, 2.5], [3.5, 0.0]]
    assert np.isnan(inputs["u_age"][1]) and set(input_names(FIELDS)) <= set(inputs)
    assert numeric_inputs(FIELDS) == {"u_age", "hist_i_price", "cand_i_price"}  # float32; every other input int64
    assert batches.field_columns(FIELDS, ("", "hist_", "neg_")) == [
        "u_segment", "u_age", "i_brand", "hist_i_brand", "neg_i_brand", "i_price", "hist_i_price", "neg_i_price"]
