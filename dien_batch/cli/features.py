"""`dien-batch build-features` and `validate`: raw logs to validated DIEN samples (Spark + GX)."""

from __future__ import annotations

import click

from . import cli
from .common import command, not_built

TITLE = "build-features and validate: Spark jobs that turn raw logs into DIEN samples"
FORMATS = ["auto", "parquet", "csv", "amazon-json", "amazon-csv", "taobao", "recbole", "synth"]


@command(cli, "build-features", """
dien-batch build-features --events data/synth --format synth --out features
dien-batch build-features --events reviews_Books.json --meta meta_Books.json --format amazon-json \\
    --samples last --split last --out features-books
dien-batch build-features --events day.parquet --format parquet --vocab features/vocab --out day
""")
@click.option("--events", required=True, type=click.Path(exists=True), help="Behaviour log file or dir.")
@click.option("--meta", type=click.Path(exists=True), help="Item metadata (item -> category).")
@click.option("--impressions", type=click.Path(exists=True), help="Logged ad impressions.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--max-len", type=int, default=100, show_default=True)
@click.option("--samples", type=click.Choice(["last", "all-prefixes"]), default="all-prefixes",
              show_default=True)
@click.option("--split", default="last", show_default=True, help="last | time:YYYY-MM-DD | users:FRAC")
@click.option("--candidates", type=int, default=20, show_default=True)
@click.option("--vocab", type=click.Path(exists=True, file_okay=False), help="Reuse this vocabulary.")
@click.option("--master", default="local[2]", show_default=True, help="Spark master URL.")
def build_features(**_kwargs) -> None:
    """Build time-ordered, point-in-time-correct DIEN samples, vocabularies and scoring requests."""
    not_built(TITLE)


@command(cli, "validate", """
dien-batch validate --features features
""")
@click.option("--features", required=True, type=click.Path(exists=True, file_okay=False))
def validate(**_kwargs) -> None:
    """Re-run the Great Expectations suite on a built dataset and write its report."""
    not_built(TITLE)
