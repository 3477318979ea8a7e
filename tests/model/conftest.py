"""A small features directory built without Spark (the same schema build-features writes)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dien_batch import schema
from dien_batch.data import samples as S


def write_features(out, n_users=120, n_items=60, n_cats=8, seed=0, max_len=12):
    """Users whose next item follows their last category: a sequence signal a model can learn."""
    rng = np.random.default_rng(seed)
    item_cat = np.r_[0, 1, 2 + rng.integers(0, n_cats, n_items)].astype(np.int32)
    users = []
    for u in range(n_users):
        n = int(rng.integers(4, 20))
        cat = rng.integers(2, n_cats + 2)
        items = []
        for _ in range(n):
            cat = cat if rng.random() < 0.7 else rng.integers(2, n_cats + 2)
            choices = np.flatnonzero(item_cat == cat)
            items.append(int(rng.choice(choices)) if len(choices) else int(rng.integers(2, n_items + 2)))
        users.append({"user_id": f"u{u}", "user_idx": u + 2, "ev_item": items,
                      "ev_cat": [int(item_cat[i]) for i in items], "ev_ts": sorted(rng.integers(0, 10**6, n).tolist())})
    batch = pa.RecordBatch.from_pylist(users, schema=pa.schema([
        ("user_id", pa.string()), ("user_idx", pa.int32()), ("ev_item", pa.list_(pa.int32())),
        ("ev_cat", pa.list_(pa.int32())), ("ev_ts", pa.list_(pa.int64()))]))
    idx = np.arange(2, n_items + 2)
    sampler = S.ItemSampler(idx, np.ones(n_items), item_cat, np.array([f"i{i}" for i in range(n_items + 2)], object),
                            np.array([f"c{i}" for i in range(n_cats + 2)], object))
    params = S.SampleParams(seed=seed, max_len=max_len, max_samples_per_user=8, candidates=5)
    table = S.review_samples(batch, params, sampler)
    for code, name in enumerate(S.SPLITS):
        (out / name).mkdir(parents=True)
        part = table.filter(pa.compute.equal(table["split"], code)).drop(["split"])
        pq.write_table(part, out / name / "part-0.parquet", row_group_size=64)
    (out / "requests").mkdir()
    pq.write_table(S.review_requests(batch, params, sampler), out / "requests" / "part-0.parquet")
    (out / "vocab").mkdir()
    for name, n in (("user", n_users + 2), ("item", n_items + 2), ("category", n_cats + 2)):
        cols = {"id": [f"{name}{i}" for i in range(n)], "idx": np.arange(n, dtype=np.int32),
                "count": np.ones(n, np.int64)}
        if name == "item":
            cols["category_idx"] = item_cat
        pq.write_table(pa.table(cols, schema=schema.ITEM_VOCAB if name == "item" else schema.VOCAB),
                       out / "vocab" / f"{name}.parquet")
    (out / "manifest.json").write_text(json.dumps({"schema_version": schema.SCHEMA_VERSION,
                                                   "params": {"max_len": max_len}, "kind": "reviews"}))
    return out


@pytest.fixture(scope="session")
def tiny_features(tmp_path_factory):
    return write_features(tmp_path_factory.mktemp("tiny") / "features")
