"""Slices by feature-spec fields: each scored candidate gets its own request's and item's decoded values."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dien_batch.evaluation.evaluate import score_block
from dien_batch.evaluation.field_slices import field_values


def features_dir(tmp_path):
    root = tmp_path / "features"
    (root / "requests").mkdir(parents=True)
    (root / "vocab" / "fields").mkdir(parents=True)
    fields = [{"group": "user", "name": "gender", "kind": "categorical"},
              {"group": "user", "name": "age", "kind": "numeric"},
              {"group": "item", "name": "brand", "kind": "categorical"}]
    (root / "vocab" / "fields.json").write_text(json.dumps({"fields": fields, "sizes": {}, "numeric": {}}))
    for key, values in (("user.gender", ["F", "M"]), ("item.brand", ["acme", "zeta", "oak"])):
        ids = ["<pad>", "<oov>", *values]
        vocab = pa.table({"id": ids, "idx": pa.array(range(len(ids)), pa.int32()),
                          "count": pa.array([0] * len(ids), pa.int64())})
        pq.write_table(vocab, root / "vocab" / "fields" / f"{key}.parquet")
    pq.write_table(pa.table({
        "request_id": ["r1", "r2"], "cand_item_id": [["a", "b", "c"], ["a", "d"]],
        "u_gender": pa.array([3, 0], pa.int32()), "u_age": pa.array([30.0, 40.0], pa.float32()),
        "cand_i_brand": [[2, 4, 1], [2, 3]]}), root / "requests" / "part-0.parquet")
    return root


def test_each_candidate_gets_its_request_and_item_values(tmp_path):
    root = features_dir(tmp_path)
    scores = pa.table({"request_id": ["r2", "r1", "r1", "r2", "r1", "r9"], "item_id": ["d", "c", "a", "a", "b", "x"]})
    values = field_values(scores, root)
    assert set(values) == {"user.gender", "item.brand"}  # numeric fields are not slices
    assert values["user.gender"].tolist() == ["<missing>", "M", "M", "<missing>", "M", "<not in the requests>"]
    assert values["item.brand"].tolist() == ["zeta", "<new value>", "acme", "acme", "oak", "<not in the requests>"]


def test_field_slices_reach_the_metrics(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    table = pa.table({"request_id": [f"r{i}" for i in range(n)], "item_id": ["a"] * n})
    y, p = rng.integers(0, 2, n), rng.random(n)
    gender = np.where(np.arange(n) < 300, "F", "M")
    block = score_block(y, p, np.arange(n), table, {"user.gender": gender})
    rows = {r["slice"]: r for r in block["slices"]["field user.gender"]}
    assert rows["F"]["rows"] == 300 and rows["M"]["rows"] == 100
    assert np.isclose(rows["M"]["ctr"], y[300:].mean()) and np.isclose(rows["F"]["mean_pctr"], p[:300].mean())
    assert field_values(table, tmp_path / "nowhere") == {}
