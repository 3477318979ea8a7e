"""Great Expectations suites: each row check, run on the narrowed frame, counts exactly the bad rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dien_batch import schema
from dien_batch.spark_jobs import quality
from dien_batch.spark_jobs.build_features import arrow_to_ddl

CHECKS = ("sequence lists have hist_len elements", "history ids within the vocabulary",
          "aux negatives never equal the clicked item", "history strictly before the target (point in time)")


def _corrupt(rows: list[dict], n_items: int, rng) -> None:
    """Break a random few rows per check, in place (a row may be hit by several)."""
    with_history = [r for r in rows if r["hist_len"] > 0]
    for kind in range(4):
        for r in rng.choice(with_history, size=int(rng.integers(1, 8)), replace=False):
            if kind == 0:
                r["neg_category_idx"] = r["neg_category_idx"][:-1]
            elif kind == 1:
                r["hist_item_idx"] = [n_items, *r["hist_item_idx"][1:]]
            elif kind == 2:
                r["neg_item_idx"] = [r["hist_item_idx"][0], *r["neg_item_idx"][1:]]
            else:
                r["hist_last_ts"] = r["ts"] + 5


def _bad_rows(rows: list[dict], sizes: quality.VocabSizes) -> dict[str, int]:
    """The plain reference: each check's failing rows counted in Python."""
    def out_of_vocab(values, size):
        return any(v is None or v < 1 or v >= size for v in values)

    count = dict.fromkeys(CHECKS, 0)
    for r in rows:
        lists = ("hist_item_idx", "hist_category_idx", "neg_item_idx", "neg_category_idx")
        count[CHECKS[0]] += any(len(r[c]) != r["hist_len"] for c in lists)
        count[CHECKS[1]] += any(out_of_vocab(r[c], sizes.items if "item" in c else sizes.categories) for c in lists)
        count[CHECKS[2]] += any(a == b for a, b in zip(r["hist_item_idx"], r["neg_item_idx"], strict=False))
        count[CHECKS[3]] += r["hist_len"] > 0 and (r["hist_last_ts"] is None or r["hist_last_ts"] >= r["ts"])
    return {k: v for k, v in count.items() if v}


def test_row_checks_count_the_bad_rows(spark, built_world, tmp_path):
    sizes = quality.VocabSizes(*(pq.read_metadata(built_world / "vocab" / f"{n}.parquet").num_rows
                                 for n in ("user", "item", "category")))
    rows = pq.read_table(built_world / "train", schema=schema.SAMPLES).to_pylist()
    _corrupt(rows, sizes.items, np.random.default_rng())
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.SAMPLES), tmp_path / "samples.parquet")
    df = spark.read.schema(arrow_to_ddl(schema.SAMPLES)).parquet(str(tmp_path / "samples.parquet"))
    outcome = quality.Validator(tmp_path / "validation").run(
        "samples", df, quality.samples_suite(sizes, 30, (0.0005, 0.9995)))
    assert not outcome.success and outcome.rows == len(rows)
    assert {f["target"]: f["observed"] for f in outcome.failures} == _bad_rows(rows, sizes)
    assert (tmp_path / "validation" / "data_docs" / "index.html").exists()
