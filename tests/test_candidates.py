"""Scoring the candidates a user brings: an unlabeled candidate table -> requests -> ranked scores, with
the user's own ids, unknown users and items counted and still scored; the labeled path's scores back
when the table is made from a labeled test log."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dien_batch.cli import cli
from dien_batch.engines.scoring import MANIFEST


def explode_requests(requests: pa.Table) -> pa.Table:
    """One row per candidate of built requests: the candidate table a retrieval stage would hand over."""
    counts = pc.list_value_length(requests["cand_item_id"]).to_numpy()
    owner = pa.array(np.repeat(np.arange(requests.num_rows), counts))
    return pa.table({
        "request_id": requests["request_id"].take(owner), "user_id": requests["user_id"].take(owner),
        "ts": pc.cast(requests["ts"], pa.int64()).take(owner),
        "item_id": pc.list_flatten(requests["cand_item_id"]),
        "category_id": pc.list_flatten(requests["cand_category_id"]),
        "bid": pc.list_flatten(requests["cand_bid"]), "clicked": pc.list_flatten(requests["cand_label"])})


@pytest.fixture(scope="module")
def model_dir(built_world, tmp_path_factory):
    from dien_batch.training import TrainConfig, train

    out = tmp_path_factory.mktemp("cand-model") / "dien"
    train(TrainConfig(features=str(built_world), out=str(out), model="dien", epochs=1, batch_size=256,
                      embedding_dim=6, hidden=8, threads=1))
    return out


def build(small_world, built_world, table: pa.Table, out, name="candidates.parquet"):
    path = out.parent / name
    pq.write_table(table, path)
    return CliRunner().invoke(cli, ["build-features", "--events", str(small_world / "events"), "--format", "parquet",
                                    "--candidate-table", str(path), "--vocab", str(built_world / "vocab"),
                                    "--max-len", "30", "--out", str(out)])


def score(model_dir, requests, out, *extra):
    result = CliRunner().invoke(cli, ["score", "--model", str(model_dir), "--engine", "torch", "--requests",
                                      str(requests), "--out", str(out), "--vocab",
                                      str(requests.parent / "vocab"), *extra])
    assert result.exit_code == 0, result.output
    return pq.read_table(out).to_pandas()


def test_a_labeled_test_log_as_candidates_gives_the_labeled_paths_scores(spark, small_world, built_world, model_dir,
                                                                          tmp_path):
    labeled = pq.read_table(built_world / "requests")
    out = tmp_path / "cand"
    result = build(small_world, built_world, explode_requests(labeled), out)
    assert result.exit_code == 0, result.output
    got = pq.read_table(out / "requests").to_pandas().set_index("request_id").sort_index()
    want = labeled.to_pandas().set_index("request_id").sort_index()
    assert list(got.index) == list(want.index)
    for column in ("user_idx", "hist_len", "hist_item_idx", "hist_category_idx", "cand_item_idx",
                   "cand_category_idx", "cand_label", "hist_last_ts"):
        assert [np.asarray(v).tolist() if v is not None else None for v in got[column]] == \
            [np.asarray(v).tolist() if v is not None else None for v in want[column]], column
    a = score(model_dir, built_world / "requests", tmp_path / "s-labeled")
    b = score(model_dir, out / "requests", tmp_path / "s-cand")
    merged = a.merge(b, on=["request_id", "item_id"], suffixes=("_l", "_c"))
    assert len(merged) == len(a) == len(b)
    assert np.abs(merged["pctr_l"] - merged["pctr_c"]).max() <= 1e-6


def test_unlabeled_candidates_with_new_users_and_items_come_out_ranked(spark, small_world, built_world, model_dir,
                                                                        tmp_path):
    known = explode_requests(pq.read_table(built_world / "requests")).slice(0, 40)
    rows = known.drop_columns(["clicked", "category_id"]).to_pylist()
    vocab_items = pq.read_table(built_world / "vocab" / "item.parquet")["id"].to_pylist()[2:4]
    rows += [{"request_id": "new-user-req", "user_id": "brand-new-user", "ts": rows[0]["ts"], "item_id": item,
              "bid": 1.0} for item in (*vocab_items, "never-seen-ad")]
    rows.append(dict(rows[0]))  # a repeated (request_id, item_id): a reject
    table = pa.Table.from_pylist(rows, schema=pa.schema([("request_id", pa.string()), ("user_id", pa.string()),
                                                         ("ts", pa.int64()), ("item_id", pa.string()),
                                                         ("bid", pa.float64())]))
    out = tmp_path / "cand"
    result = build(small_world, built_world, table, out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "rejects", "requests", "validation", "vocab"]
    assert manifest["rows"]["candidates"]["rejected_by_reason"] == {"duplicate_candidate": 1}
    assert manifest["rows"]["candidates"]["rows_in"] == len(rows)
    oov = manifest["out_of_vocabulary"]
    assert oov["unknown_users"] == 1 and oov["candidates_with_unknown_item"] == 1
    requests = pq.read_table(out / "requests").to_pandas()
    assert requests["cand_label"].isna().all()  # no labels were given
    new = requests[requests["request_id"] == "new-user-req"].iloc[0]
    assert new["hist_len"] == 0 and new["user_idx"] == 1  # out of vocabulary, still scored
    cats = dict(zip(new["cand_item_id"], new["cand_category_id"], strict=True))
    assert cats["never-seen-ad"] == "<unknown>" and cats[vocab_items[0]].startswith("c")  # from the vocabulary
    scores = score(model_dir, out / "requests", tmp_path / "s")
    assert set(scores["item_id"]) >= {"never-seen-ad", *vocab_items} and scores["pctr"].between(0, 1).all()
    for _, group in scores.groupby("request_id"):
        ranked = group.sort_values("ecpm_rank")
        assert ranked["ecpm_rank"].tolist() == list(range(1, len(group) + 1))
        value = (ranked["bid"] * ranked["pctr"]).to_numpy()
        assert (np.diff(value) <= 1e-12).all()
    top = score(model_dir, out / "requests", tmp_path / "top", "--top-k", "2")
    assert top.groupby("request_id").size().max() == 2 and (top["ecpm_rank"] <= 2).all()
    summary = json.loads((tmp_path / "top" / MANIFEST).read_text())
    assert summary["pairs"] == len(scores) and summary["rows_written"] == len(top)  # all scored, the best kept
