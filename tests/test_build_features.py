"""build-features on Spark: layout, row accounting, point-in-time correctness, real datasets."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dien_batch import schema
from dien_batch.cli import cli
from dien_batch.data.synth import SynthSpec, generate
from dien_batch.spark_jobs.build_features import BuildConfig, run

from .conftest import DATA, SMALL_WORLD


def read(path, name):
    return pq.read_table(path / name, schema=schema.SAMPLES if name in ("train", "valid", "test") else None)


def test_layout_manifest_and_row_accounting(built_world, small_world):
    manifest = json.loads((built_world / "manifest.json").read_text())
    for name in ("train", "valid", "test", "requests", "vocab", "rejects", "validation"):
        assert (built_world / name).is_dir(), name
    assert (built_world / "validation" / "data_docs" / "index.html").exists()
    assert manifest["validation"]["samples"]["success"] and manifest["validation"]["requests"]["success"]
    rejects = pq.read_table(built_world / "rejects").to_pandas()
    for what, raw in (("events", "events"), ("impressions", "impressions")):
        rows = manifest["rows"][what]
        assert rows["rows_in"] == pq.read_metadata(small_world / raw / "part-00000.parquet").num_rows
        assert rows["rows_in"] == rows["rows_used"] + rows["rows_rejected"] + rows["rows_filtered"]
        assert (rejects["input"] == what).sum() == rows["rows_rejected"]
    # Every used impression becomes exactly one sample.
    n_samples = sum(read(built_world, s).num_rows for s in ("train", "valid", "test"))
    assert n_samples == manifest["rows"]["impressions"]["rows_used"]
    assert manifest["format"]["name"] == "synth" and manifest["kind"] == "impressions"
    assert set(manifest["inputs"]) == {"events", "impressions"}


def test_vocabulary_reserves_padding_and_oov(built_world):
    for name in ("user", "item", "category"):
        vocab = pq.read_table(built_world / "vocab" / f"{name}.parquet").to_pandas()
        assert vocab["id"].iloc[:2].tolist() == ["<pad>", "<oov>"]
        assert vocab["idx"].tolist() == list(range(len(vocab)))
        assert vocab["count"].iloc[2:].is_monotonic_decreasing
        assert vocab["id"].is_unique


def _raw_histories(world, built):
    table = pq.read_table(world / "events")
    events = table.to_pandas()
    events["t"] = table["ts"].cast(pa.int64()).to_numpy() // 1000  # stored as milliseconds
    item_idx = dict(pq.read_table(built / "vocab" / "item.parquet").select(["id", "idx"]).to_pandas().values)
    events["item_idx"] = events["item_id"].map(item_idx)
    events = events.drop_duplicates(["user_id", "item_id", "t"]).sort_values(["user_id", "t", "item_idx"])
    return {u: (g["t"].to_numpy(), g["item_idx"].to_numpy()) for u, g in events.groupby("user_id")}


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_point_in_time_on_every_split(built_world, small_world, split):
    """Recompute each sample's history from the raw log: the events strictly before the target."""
    histories = _raw_histories(small_world, built_world)
    samples = read(built_world, split).to_pandas()
    assert len(samples)
    for row in samples.sample(min(400, len(samples)), random_state=0).itertuples():
        times, items = histories.get(row.user_id, (np.array([], int), np.array([], int)))
        expected = items[times < row.ts][-30:]
        assert list(row.hist_item_idx) == expected.tolist()
        assert row.hist_len == len(expected)
        if row.hist_len:
            assert row.hist_last_ts < row.ts


def test_splits_follow_request_order(built_world):
    frames = {s: read(built_world, s).to_pandas() for s in ("train", "valid", "test")}
    last = {s: f.groupby("user_id")["ts"].max() for s, f in frames.items()}
    first = {s: f.groupby("user_id")["ts"].min() for s, f in frames.items()}
    both = first["test"].index.intersection(last["train"].index)
    assert (first["test"][both] >= last["train"][both]).all()
    both = first["test"].index.intersection(last["valid"].index)
    assert (first["test"][both] >= last["valid"][both]).all()


def test_requests_match_the_test_split(built_world):
    requests = pq.read_table(built_world / "requests").to_pandas()
    test = read(built_world, "test").to_pandas()
    assert requests["request_id"].is_unique
    assert set(requests["request_id"]) == set(test["request_id"])
    assert requests["cand_item_idx"].map(len).sum() == len(test)
    one = requests.iloc[0]
    rows = test[test["request_id"] == one["request_id"]]
    assert sorted(one["cand_item_idx"]) == sorted(rows["item_idx"])
    assert list(one["hist_item_idx"]) == list(rows.iloc[0]["hist_item_idx"])
    assert len(one["cand_item_id"]) == len(one["cand_p_true"]) == len(one["cand_bid"])


def test_vocabulary_is_reused_on_a_later_night(spark, built_world, tmp_path):
    night = tmp_path / "night"
    night.mkdir()
    generate(SynthSpec(**{**SMALL_WORLD.__dict__, "users": 400, "items": 2_500, "seed": 11}), night)
    out = tmp_path / "features-night"
    manifest = run(BuildConfig(events=str(night), out=str(out), vocab=str(built_world / "vocab"), max_len=30), spark)
    assert manifest["vocab"]["reused_from"] == str(built_world / "vocab")
    for name in ("user", "item", "category"):
        assert pq.read_table(out / "vocab" / f"{name}.parquet").equals(
            pq.read_table(built_world / "vocab" / f"{name}.parquet"))
    requests = pq.read_table(out / "requests").to_pandas()
    item_idx = dict(pq.read_table(built_world / "vocab" / "item.parquet").select(["id", "idx"]).to_pandas().values)
    ids = np.concatenate(requests["cand_item_id"].to_numpy())
    idx = np.concatenate(requests["cand_item_idx"].to_numpy())
    expected = np.array([item_idx.get(i, schema.OOV_IDX) for i in ids])
    assert (idx == expected).all() and (idx == schema.OOV_IDX).any()  # new items map to OOV


@pytest.mark.parametrize("folder, file, fmt, header_lines", [
    ("amazon-musical-instruments-5core", "Musical_Instruments_5.csv", "amazon-csv", 1),
    ("movielens-100k", "ml-100k.inter", "recbole", 1),
    ("taobao-userbehavior-head", "UserBehavior_head.csv", "taobao", 0),
])
def test_real_datasets(spark, tmp_path, folder, file, fmt, header_lines):
    path = DATA / folder / file
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build-features", "--events", str(path), "--out", str(out), "--candidates", "5"])
    assert result.exit_code == 0, result.output
    assert f"format: {fmt}" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    lines = sum(1 for line in path.read_bytes().splitlines() if line.strip()) - header_lines
    rows = manifest["rows"]["events"]
    assert rows["rows_in"] == lines == rows["rows_used"] + rows["rows_rejected"]
    for split in ("train", "valid", "test"):
        assert manifest["samples"][split]["rows"] > 0 and manifest["samples"][split]["positive_rate"] == 0.5
    requests = pq.read_table(out / "requests").to_pandas()
    assert (requests["cand_item_idx"].map(len) == 5).all()
    if fmt == "taobao":  # the one row outside the dataset's documented window
        assert rows["rejected_by_reason"] == {"ts_out_of_range": 1}
        rejects = pq.read_table(out / "rejects").to_pandas()
        assert len(rejects) == 1 and rejects["reason"].tolist() == ["ts_out_of_range"]
    if fmt == "amazon-csv":
        assert manifest["rows"]["meta"]["rows_in"] == 900
        assert manifest["vocab"]["categories"] == 149 + 2


def test_numbered_ranks_equal_a_plain_sort(spark):
    """Ranks numbered across partitions are each row's place in one global sort, from `start`."""
    from pyspark.sql import functions as F

    from dien_batch.spark_jobs.session import Persisted
    from dien_batch.spark_jobs.vocabulary import numbered

    rng = np.random.default_rng()
    ids = rng.choice(10**6, size=5_000, replace=False).astype(str)
    counts = rng.integers(0, 30, size=len(ids))  # many ties: the id breaks them
    rows = [(str(i), int(c)) for i, c in zip(ids, counts, strict=True)]
    df = spark.createDataFrame(rows, "id string, count long").repartition(7)
    keep = Persisted()
    ranked, n = numbered(df, [F.col("count").desc(), F.col("id").asc()], 2, keep)
    got = ranked.toPandas().sort_values("rank")
    keep.release()
    expected = sorted(zip(-counts, ids, strict=True))
    assert n == len(ids) and got["rank"].tolist() == list(range(2, 2 + len(ids)))
    assert list(zip(-got["count"], got["id"], strict=True)) == expected
    empty, n_empty = numbered(df.limit(0), [F.col("id")], 2, keep)
    assert n_empty == 0 and empty.count() == 0


def test_user_vocabulary_matches_a_plain_count(built_world, small_world):
    """The user vocabulary Spark numbers and writes equals one counted in pandas from the raw log:
    events per user, descending, ties by id; a user seen only in impressions counts 0."""
    import pandas as pd

    events = pq.read_table(small_world / "events", columns=["user_id"]).to_pandas()["user_id"].value_counts()
    seen = pq.read_table(small_world / "impressions", columns=["user_id"]).to_pandas()["user_id"].unique()
    counts = events.reindex(pd.Index(seen).union(events.index), fill_value=0)
    expected = sorted(zip(-counts.to_numpy(), counts.index, strict=True))
    vocab = pq.read_table(built_world / "vocab" / "user.parquet")
    assert vocab.schema.equals(schema.VOCAB, check_metadata=False)
    frame = vocab.to_pandas().iloc[schema.FIRST_IDX:]
    assert list(zip(-frame["count"], frame["id"], strict=True)) == expected
