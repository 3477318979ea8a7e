"""What a first real dataset hits: MovieLens as GroupLens publishes it (a ratings log and a separate
movie table with multi-valued genres) through build-features, train, score and `evaluate --baseline`;
non-ASCII ids; items the item table lacks."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dien_batch.cli import cli

from .conftest import DATA

ML_FLAGS = ["--format", "csv", "--columns", "user=userId,item=movieId,ts=timestamp", "--meta-columns",
            "item=movieId,category=genres", "--category-sep", "|"]


def published_movielens(folder, users=120):
    """ratings.csv (userId,movieId,rating,timestamp) and movies.csv (movieId,title,genres 'A|B|C', titles
    quoted where they hold commas), written from the MovieLens-100K copy in tests/data."""
    lines = (DATA / "movielens-100k" / "ml-100k.inter").read_text().splitlines()[1:]
    rows = [line.split("\t") for line in lines if int(line.split("\t")[0]) <= users]
    with open(folder / "ratings.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        w.writerows([u, i, r, str(int(float(t)))] for u, i, r, t in rows)
    movies = [line.split("\t") for line in (DATA / "movielens-100k" / "ml-100k.item").read_text().splitlines()[1:]]
    with open(folder / "movies.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["movieId", "title", "genres"])
        for n, (item, title, year, genres) in enumerate(movies):
            if n % 15:  # every 15th movie is missing from the table
                w.writerow([item, f"{title}, The ({year})", "|".join(genres.split())])
    return folder / "ratings.csv", folder / "movies.csv"


def run(*args):
    result = CliRunner().invoke(cli, [*args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_movielens_as_published_to_an_evaluation_against_a_baseline(spark, tmp_path):
    ratings, movies = published_movielens(tmp_path)
    out = tmp_path / "features"
    run("build-features", "--events", str(ratings), "--meta", str(movies), *ML_FLAGS, "--max-len", "30",
        "--candidates", "20", "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    events = manifest["rows"]["events"]
    assert events["rows_in"] == events["rows_used"] + events["rows_rejected"] + events["rows_filtered"]
    assert events["rows_used_with_unknown_category"] > 0  # ratings of the movies the table lacks
    categories = set(pq.read_table(out / "vocab" / "category.parquet")["id"].to_pylist())
    assert {"Action", "Comedy", "<unknown>"} <= categories and not any("|" in c for c in categories)
    requests = pq.read_table(out / "requests")
    ids = requests["request_id"].to_pylist()
    assert len(ids) == len(set(ids))
    for cands in requests["cand_item_idx"].to_pylist():
        assert len(cands) == len(set(cands))
    for name, model in (("model", "din"), ("baseline", "base")):
        run("train", "--features", str(out), "--model", model, "--epochs", "1", "--embedding-dim", "4",
            "--hidden", "6", "--threads", "1", "--out", str(tmp_path / name))
        run("score", "--model", str(tmp_path / name), "--engine", "torch", "--requests", str(out / "requests"),
            "--out", str(tmp_path / f"scores-{name}"))
    run("evaluate", "--scores", str(tmp_path / "scores-model"), "--baseline", str(tmp_path / "scores-baseline"),
        "--out", str(tmp_path / "eval"))
    text = (tmp_path / "eval" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))
    assert metrics["baseline"]["rows"] == metrics["model"]["rows"] == sum(len(c) for c in
                                                                           requests["cand_item_idx"].to_pylist())


def test_non_ascii_ids_build(spark, tmp_path):
    """Users `müller` and `用户二`, items `品12`: the id hash used to raise UnicodeEncodeError (exit 1)."""
    src = tmp_path / "events.csv"
    rows = ["uid,iid,cat,time"]
    for u, user in enumerate(["müller", "用户二", "user\u00a0nbsp", "plain"]):
        rows += [f"{user},品{i + u},类{i % 3},{1600000000 + 100 * i}" for i in range(6)]
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build-features", "--events", str(src), "--format", "csv", "--columns",
                                      "user=uid,item=iid,category=cat,ts=time", "--candidates", "3",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    users = set(pq.read_table(out / "requests")["user_id"].to_pylist())
    assert {"müller", "用户二"} <= users
