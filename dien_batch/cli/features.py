"""`dien-batch build-features` and `validate`: raw logs to validated DIEN samples (Spark + GX)."""

from __future__ import annotations

import click

from . import cli
from .common import command

FORMATS = ["auto", "parquet", "csv", "amazon-json", "amazon-csv", "taobao", "recbole", "synth"]


def _rows_line(acc: dict) -> str:
    top = ", ".join(f"{k} {v:,}" for k, v in sorted(acc["rejected_by_reason"].items(), key=lambda kv: -kv[1])[:4])
    text = f"{acc['rows_in']:,} in = {acc['rows_used']:,} used + {acc['rows_rejected']:,} rejected"
    if acc["rows_filtered"]:
        text += f" + {acc['rows_filtered']:,} filtered"
    return text + (f" ({top})" if top else "")


@command(cli, "build-features", """
dien-batch build-features --events data/synth --out features
dien-batch build-features --events reviews_Books.json --meta meta_Books.json --format amazon-json \\
    --samples last --split last --out features-books
dien-batch build-features --events UserBehavior.csv --format taobao --behaviors buy,cart,fav --out tb
dien-batch build-features --events day2 --format synth --vocab features/vocab --split time:2025-03-01 --out day2
dien-batch build-features --events logs/ --candidate-table tomorrow.parquet --vocab features/vocab --out serve
dien-batch build-features --events ratings.csv --format csv --columns user=userId,item=movieId,ts=timestamp \
    --meta movies.csv --meta-columns item=movieId,category=genres --category-sep '|' --out movielens
dien-batch build-features --events ml-100k.inter --format recbole --feature-spec fields.toml --out ml-fields
""")
@click.option("--events", required=True, type=click.Path(exists=True), help="Behaviour log: a file or a directory.")
@click.option("--meta", type=click.Path(exists=True),
              help="Item metadata (item -> category): the format's own (Amazon, RecBole) or, for csv/parquet "
                   "logs, any item table (see --meta-columns).")
@click.option("--impressions", type=click.Path(exists=True),
              help="Logged ad impressions (request_id, user_id, ts, item_id, category_id, clicked[, bid, position, "
                   "p_true]): impression-style samples and scoring requests.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--columns", help="csv/parquet: user=COL,item=COL,category=COL,ts=COL")
@click.option("--sep", help="csv: field separator (default ',').")
@click.option("--meta-columns", help="csv/parquet with --meta ITEM_TABLE: the item table's own columns, "
                                     "item=COL,category=COL (default item_id, category_id). Items missing from "
                                     "the table get the category <unknown> (counted in the manifest).")
@click.option("--category-sep", help="Multi-valued categories such as 'Adventure|Animation': split on SEP and "
                                     "take the first listed.")
@click.option("--behaviors", default="pv,buy,cart,fav", show_default=True,
              help="taobao: which behaviour types count as behaviour.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--max-len", type=int, default=100, show_default=True, help="History length kept per sample.")
@click.option("--samples", type=click.Choice(["last", "all-prefixes"]), default="all-prefixes", show_default=True,
              help="Review data: one training target per user (the paper) or every prefix.")
@click.option("--max-samples-per-user", type=int, default=20, show_default=True,
              help="all-prefixes: the most recent targets kept per user and split.")
@click.option("--split", default="last", show_default=True,
              help="last (each user's last target to test, the one before to validation) | time:YYYY-MM-DD "
                   "(targets from the date on to test) | users:FRACTION (held-out users to test and validation).")
@click.option("--valid-fraction", type=float, default=0.1, show_default=True,
              help="time split: the latest fraction of the targets before the date (by time) is the validation set.")
@click.option("--candidates", type=int, default=20, show_default=True,
              help="Review data: candidates per scoring request (the test target + K-1 sampled).")
@click.option("--aux-neg", type=click.Choice(["popularity", "uniform"]), default="popularity", show_default=True,
              help="How negatives (targets and auxiliary loss) are drawn from the items.")
@click.option("--vocab", type=click.Path(exists=True, file_okay=False),
              help="Reuse this vocabulary (a previous OUT/vocab) so ids stay stable across nights.")
@click.option("--min-ts", help="Reject events before this date (default 1995-01-01).")
@click.option("--max-ts", help="Reject events at or after this date (default now).")
@click.option("--until", help="Build as of this date: rows at or after it are left out (counted as filtered).")
@click.option("--candidate-table", type=click.Path(exists=True),
              help="Score these candidates instead of building training data: Parquet or CSV with request_id, "
                   "user_id, ts, item_id[, category_id, bid, position, clicked]. Needs --vocab; writes only "
                   "requests/, vocab/, rejects/, validation/ (histories from --events before each request's ts).")
@click.option("--feature-spec", type=click.Path(exists=True, dir_okay=False),
              help="A TOML file declaring user-profile and item (ad) fields from side tables: "
                   "[user] table, key, categorical, numeric; [item] likewise (see the README).")
@click.option("--master", default="local[2]", show_default=True, help="Spark master URL.")
@click.option("--driver-memory", default="4g", show_default=True, help="Spark driver memory.")
@click.option("--spark-conf", multiple=True, metavar="KEY=VALUE",
              help="A Spark setting for the session, e.g. spark.executor.memory=8g (repeatable).")
def build_features(seed: int, **options) -> None:
    """Build time-ordered, point-in-time-correct DIEN samples, vocabularies and scoring requests.

    Writes OUT/{train,valid,test,requests,vocab,rejects,validation}/ and OUT/manifest.json,
    atomically: a failed or killed run leaves no OUT. Input rows = used + rejected (+ filtered).
    """
    from dien_batch.spark_jobs.build_features import BuildConfig, run

    from .. import ui

    manifest = run(BuildConfig(seed=seed, **options))
    rows = [("format", manifest["format"]["name"])]
    rows += [(f"{what} rows", _rows_line(acc)) for what, acc in manifest["rows"].items()]
    rows += [(f"{split} samples", f"{c['rows']:,} (positive rate {c['positive_rate']})")
             for split, c in manifest.get("samples", {}).items()]
    if "out_of_vocabulary" in manifest:
        rows.append(("out of vocabulary", ", ".join(f"{k.replace('_', ' ')} {v:,}"
                                                     for k, v in manifest["out_of_vocabulary"].items())))
    rows += [("scoring requests", manifest["requests"]),
             ("vocabulary", "{users:,} users, {items:,} items, {categories:,} categories".format(**manifest["vocab"])),
             ("validation", "passed (" + ", ".join(manifest["validation"]) + ")"),
             ("seconds", manifest["seconds"])]
    ui.summary(f"build-features: wrote {options['out']}", rows)


@command(cli, "validate", """
dien-batch validate --features features
""")
@click.option("--features", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--master", default="local[2]", show_default=True, help="Spark master URL.")
@click.option("--spark-conf", multiple=True, metavar="KEY=VALUE",
              help="A Spark setting for the session, e.g. spark.executor.memory=8g (repeatable).")
def validate(seed: int, features: str, master: str, spark_conf: tuple[str, ...]) -> None:
    """Re-run the Great Expectations suite on a built dataset and write its report.

    Writes FEATURES/validation/ (result JSON per suite and Data Docs HTML); exit 3 on any failure.
    """
    from dien_batch.spark_jobs.build_features import validate_dataset

    from .. import ui
    from ..errors import DataValidationError

    result = validate_dataset(features, master, spark_conf=spark_conf)
    rows = [(name, "passed" if r["success"] else f"FAILED: {r['failures']}") for name, r in
            result["validation"].items()]
    ui.summary(f"validate: {features}", rows + [("report", f"{features}/validation/data_docs/index.html")])
    if not result["success"]:
        raise DataValidationError(f"{features} failed validation")
