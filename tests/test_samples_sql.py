"""The Spark SQL sample builder gives the NumPy reference builder's outputs, row for row, random draws included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dien_batch import schema
from dien_batch.data import samples as S
from dien_batch.spark_jobs.samples import SampleBuilder

from .test_samples import N_ITEMS, make_sampler, random_users, to_batch


def with_ties_of_one_idx(users):
    """Two out-of-vocabulary items (idx 1, different categories) at one second: ordered by category."""
    u = users[0]
    t = int(u["ts"][-1]) + 100
    u["ts"], u["item"], u["cat"] = (np.r_[u["ts"], t, t, t + 1], np.r_[u["item"], 1, 1, 7], np.r_[u["cat"], 6, 3, 2])
    return users


def random_impressions(rng, users, no_events=("z1", "z2")):
    """Per user a few requests (some sharing a second), 1-5 distinct items each; two users with no events."""
    out = {}
    for u in [*[x["user_id"] for x in users], *no_events]:
        rows = []
        for r in range(int(rng.integers(1, 5))):
            ts = int(rng.integers(0, 50)) * 100
            for pos, item in enumerate(rng.choice(np.arange(2, N_ITEMS), int(rng.integers(1, 6)), replace=False)):
                rows.append({"request": f"{u}-r{r}", "ts": ts, "item_idx": int(item), "category_idx": 2 + int(item) % 7,
                             "item": f"i{item}", "category": f"c{item % 7}", "clicked": int(rng.random() < 0.3),
                             "bid": float(rng.random()), "p_true": None if pos == 0 else 0.1, "position": pos})
        out[u] = rows
    return out


def imp_batch(users, imps):
    all_users = [*users, *[{"user_id": u, "user_idx": 900 + i, "ts": np.zeros(0, np.int64), "item": np.zeros(0, int),
                            "cat": np.zeros(0, int)} for i, u in enumerate(imps) if u.startswith("z")]]
    batch = to_batch(all_users)
    names = {"request_id": ("request", pa.string()), "ts": ("ts", pa.int64()), "item": ("item_idx", pa.int32()),
             "cat": ("category_idx", pa.int32()), "item_id": ("item", pa.string()),
             "category_id": ("category", pa.string()), "label": ("clicked", pa.int32()),
             "bid": ("bid", pa.float64()), "p_true": ("p_true", pa.float64()), "position": ("position", pa.int32())}
    for name, (src, typ) in names.items():
        values = [[r[src] for r in imps[u["user_id"]]] for u in all_users]
        batch = batch.append_column(f"imp_{name}", pa.array(values, pa.list_(typ)))
    return batch, all_users


def spark_builder(spark, users, params, sampler):
    user_rows = [(u["user_id"], i, u["user_idx"]) for i, u in enumerate(users)]
    user_df = spark.createDataFrame(user_rows, "user_id string, user_key int, user_idx int")
    events = [(i, int(item), int(cat), int(ts)) for i, u in enumerate(users)
              for item, cat, ts in zip(u["item"], u["cat"], u["ts"], strict=True)]
    events = spark.createDataFrame(events, "user_key int, item_idx int, category_idx int, ts long")
    item_rows = [(int(i), int(sampler.item_category[i]), str(sampler.item_keys[i]),
                  str(sampler.category_keys[sampler.item_category[i]])) for i in range(len(sampler.item_category))]
    items = spark.createDataFrame(item_rows, "item_idx int, cat int, item_id string, category_id string")
    return SampleBuilder(spark, params, sampler, user_df, len(users), events.repartition(3, "user_key"), items)


def rows(table_or_df, target: pa.Schema, split: bool):
    table = table_or_df if isinstance(table_or_df, pa.Table) else table_or_df.toArrow()
    names = [f.name for f in target] + (["split"] if split else [])
    return sorted((tuple(tuple(v) if isinstance(v, list) else v for v in row.values())
                  for row in table.select(names).to_pylist()), key=repr)


SPLITS = ["last", "time:2500:2100", "users:0.25"]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("uniform", [False, True])
def test_review_samples_and_requests_equal_the_reference(spark, split, uniform):
    users = with_ties_of_one_idx(random_users(np.random.default_rng(21), 60))
    params = S.SampleParams(seed=9, max_len=6, max_samples_per_user=4, split=split, candidates=8)
    sampler = make_sampler(uniform=uniform)
    build = spark_builder(spark, users, params, sampler)
    targets = build.review_targets()
    got_samples = rows(build.review_samples(targets), schema.SAMPLES, split=True)
    got_requests = rows(build.review_requests(targets), schema.REQUESTS, split=False)
    build.unpersist()
    batch = to_batch(users)
    assert got_samples == rows(S.review_samples(batch, params, sampler), schema.SAMPLES, split=True)
    assert got_requests == rows(S.review_requests(batch, params, sampler), schema.REQUESTS, split=False)
    assert {r[-1] for r in got_samples} == {0, 1, 2}


def test_candidates_fall_back_in_vocabulary_order_when_the_catalogue_runs_out(spark):
    """A tiny catalogue (6 items) and 8 candidates: the draws run short, the rest come in id order."""
    idx = np.arange(2, 8, dtype=np.int32)
    item_cat = np.r_[0, 1, 2 + idx % 3].astype(np.int32)
    sampler = S.ItemSampler(idx, np.array([50, 20, 9, 5, 2, 1]), item_cat,
                            np.array(["<pad>", "<oov>"] + [f"i{i}" for i in idx], object),
                            np.array([f"c{c}" for c in range(5)], object))
    users = [{"user_idx": 2 + u, "user_id": f"u{u}", "ts": np.array([10, 20, 30]), "item": np.array([2, 3, 4 + u % 3]),
              "cat": np.array([4, 2, 3])} for u in range(12)]
    params = S.SampleParams(seed=3, candidates=8)
    build = spark_builder(spark, users, params, sampler)
    got = build.review_requests(build.review_targets()).toArrow()
    build.unpersist()
    assert rows(got, schema.REQUESTS, False) == rows(S.review_requests(to_batch(users), params, sampler),
                                                     schema.REQUESTS, False)
    for cands in got["cand_item_idx"].to_pylist():  # 6 items, 2 of them earlier behaviour: 4 candidates
        assert len(cands) == len(set(cands)) == 4


@pytest.mark.parametrize("split", SPLITS)
def test_impression_samples_and_requests_equal_the_reference(spark, split):
    rng = np.random.default_rng(22)
    users = random_users(rng, 30)
    imps = random_impressions(rng, users)
    batch, all_users = imp_batch(users, imps)
    params = S.SampleParams(seed=4, max_len=5, split=split)
    sampler = make_sampler()
    build = spark_builder(spark, all_users, params, sampler)
    key = {u["user_id"]: i for i, u in enumerate(all_users)}
    imp_df = spark.createDataFrame([{**r, "user_key": key[u]} for u, rs in imps.items() for r in rs], (
        "request string, ts long, item_idx int, category_idx int, item string, category string, clicked int, "
        "bid double, p_true double, position int, user_key int"))
    frame = build.impressions(imp_df)
    got_samples = rows(build.impression_samples(frame), schema.SAMPLES, split=True)
    got_requests = rows(build.impression_requests(frame), schema.REQUESTS, split=False)
    build.unpersist()
    assert got_samples == rows(S.impression_samples(batch, params, sampler), schema.SAMPLES, split=True)
    assert got_requests == rows(S.impression_requests(batch, params, sampler), schema.REQUESTS, split=False)
    assert len(got_samples) == sum(len(r) for r in imps.values())
