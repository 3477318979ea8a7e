"""`dien-batch compile` and `score`: engines and batch scoring of candidate ads."""

from __future__ import annotations

import click

from . import cli
from .common import command

ENGINES = ["torch", "onnx", "fp16", "fp32"]


@command(cli, "compile", """
dien-batch compile --model models/dien --engine onnx --out engines/dien.onnx
dien-batch compile --model models/dien --engine fp16 --out engines/dien.plan    # NVIDIA GPU + TensorRT
""")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False), help="A model directory.")
@click.option("--engine", type=click.Choice(["onnx", "fp16", "fp32"]), default="onnx", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Engine file to write.")
@click.option("--requests", type=click.Path(exists=True),
              help="Requests for the accuracy gate (default: the training features' requests).")
@click.option("--threads", type=int, default=0, help="CPU threads (0 = library default).")
def compile_(seed: int, model: str, engine: str, out: str, requests: str | None, threads: int) -> None:
    """Export a trained model to an engine file with a manifest, gated on accuracy.

    The engine is rejected (exit 4) when its max abs pCTR error against the PyTorch fp32 model
    exceeds 1e-3 or its AUC differs by more than 1e-4 on sample requests.
    """
    from dien_batch.engines.compile import compile_engine

    from .. import ui

    manifest = compile_engine(model, engine, out, requests, threads)
    acc = manifest["accuracy"]
    rows = [("engine", f"{manifest['engine']} ({manifest['precision']})"),
            ("accuracy gate", f"max abs error {acc['max_abs_error']:.2e} on {acc['pairs']:,} pairs"
             + (f", AUC diff {acc['auc_diff']:.1e}" if "auc_diff" in acc else "")),
            ("manifest", f"{out}.manifest.json")]
    ui.summary(f"compile: wrote {out}", rows)


@command(cli, "score", """
dien-batch score --model models/dien --engine torch --requests features/requests --out scores/dien
dien-batch score --model engines/dien.onnx --engine onnx --requests features/requests --out scores/dien
dien-batch score --model models/dien --spark --master spark://host:7077 --requests hdfs/requests --out scores/dien
""")
@click.option("--model", required=True, type=click.Path(exists=True), help="Model dir (torch) or engine file.")
@click.option("--engine", type=click.Choice(ENGINES), default="torch", show_default=True)
@click.option("--requests", required=True, type=click.Path(exists=True), help="Requests from build-features.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--vocab", type=click.Path(exists=True, file_okay=False),
              help="The vocabulary the requests were built with (default: beside the requests).")
@click.option("--batch-requests", type=int, default=512, show_default=True)
@click.option("--shard-requests", type=int, default=20_000, show_default=True,
              help="Requests per output shard (the unit of resumption).")
@click.option("--threads", type=int, default=0, help="CPU threads (0 = library default).")
@click.option("--overwrite", is_flag=True, help="Replace a finished OUT.")
@click.option("--top-k", type=int, help="Keep the K best candidates of each request (by bid x pCTR, or pCTR "
                                        "where the candidates have no bids).")
@click.option("--spark", "use_spark", is_flag=True, help="Score on Spark (mapInArrow) instead of one process.")
@click.option("--master", default="local[2]", show_default=True, help="Spark master URL (with --spark).")
@click.option("--spark-conf", multiple=True, metavar="KEY=VALUE",
              help="With --spark: a Spark setting for the session, e.g. spark.executor.memory=8g (repeatable).")
def score(seed: int, use_spark: bool, master: str, spark_conf: tuple[str, ...], **options) -> None:
    """Score every candidate ad of every request; resumable after a kill.

    Writes OUT/part-*.parquet (request_id, user_id, item_id, category_id, hist_len, pctr, and label,
    bid, p_true, position where the requests carry them) and OUT/_manifest.json. A killed run leaves
    OUT.partial/; running the same command again finishes it without duplicates or gaps.
    """
    from .. import ui

    if use_spark:
        from dien_batch.spark_jobs.score import score_on_spark

        summary = score_on_spark(options["model"], options["engine"], options["requests"], options["out"],
                                 options["vocab"], master, top_k=options["top_k"], spark_conf=spark_conf)
    else:
        from dien_batch.engines.scoring import ScoreConfig
        from dien_batch.engines.scoring import score as run

        summary = run(ScoreConfig(**options))
    rate = summary.get("pairs_per_s_this_run")
    ui.summary(f"score: wrote {options['out']}", [
        ("engine", summary["engine"]), ("requests", summary["requests"]), ("scored pairs", summary["pairs"]),
        *([("rows written", f"{summary['rows_written']:,} (top {options['top_k']} per request)")]
          if options.get("top_k") else []),
        ("pairs/s", f"{rate:,.0f}" if rate else "-"), ("seconds", summary["seconds_this_run"])])
