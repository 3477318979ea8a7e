"""Distributed scoring: the requests dataset scored on Spark with `mapInArrow`, same output schema.

The model (or engine file) travels once, as a broadcast of its bytes; each executor process writes it
to a temporary directory and loads the engine once, then scores every partition it is given with the
same `score_table` the single-process scorer uses. Output is written atomically to OUT.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from dien_batch import schema
from dien_batch.errors import UsageError
from dien_batch.io import atomic_output_dir, write_json

from .build_features import arrow_to_ddl

_ENGINES: dict[str, object] = {}  # per executor process: engine key -> loaded engine


def _payload(model: str, kind: str) -> dict:
    path = Path(model)
    if kind == "torch":
        files = {name: (path / name).read_bytes() for name in ("model.safetensors", "config.json")}
        return {"kind": kind, "files": files, "entry": ""}
    if kind == "onnx":
        from dien_batch.engines.manifest import manifest_path

        return {"kind": kind, "files": {path.name: path.read_bytes(),
                                        manifest_path(path).name: manifest_path(path).read_bytes()},
                "entry": path.name}
    raise UsageError(f"--spark scores with the CPU engines (torch, onnx), not '{kind}'")


def _engine(payload: dict, key: str):
    """The engine of this executor process, loaded from the broadcast bytes on first use."""
    if key not in _ENGINES:
        from dien_batch.engines.base import open_engine

        folder = Path(tempfile.mkdtemp(prefix="dien-batch-model-"))
        try:  # engines hold the model in memory once loaded: the copy is not needed afterwards
            for name, data in payload["files"].items():
                (folder / name).write_bytes(data)
            _ENGINES[key] = open_engine(folder / payload["entry"] if payload["entry"] else folder, payload["kind"], 1)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return _ENGINES[key]


def score_on_spark(model: str, kind: str, requests: str, out: str, vocab: str | None, master: str = "local[2]",
                   spark=None, batch_requests: int = 512, top_k: int | None = None,
                   spark_conf: tuple[str, ...] = ()) -> dict:
    from pyspark.sql import functions as F

    from dien_batch.engines.base import open_engine
    from dien_batch.engines.manifest import check_vocabulary
    from dien_batch.engines.requests import REQUEST_COLUMNS
    from dien_batch.engines.scoring import score_table

    from .session import parse_conf, spark_session

    local = open_engine(model, kind)
    vocab_dir = Path(vocab) if vocab else Path(requests).parent / "vocab"
    check_vocabulary(local.identity, vocab_dir if vocab_dir.is_dir() else None, model)
    spark = spark or spark_session(master, conf=parse_conf(spark_conf))
    payload = spark.sparkContext.broadcast(_payload(model, kind))
    key = local.identity["config_hash"] + kind

    def score_partition(batches):
        engine = _engine(payload.value, key)
        for batch in batches:
            if batch.num_rows:
                yield from score_table(engine, pa.Table.from_batches([batch]), batch_requests, top_k).to_batches()

    started = time.perf_counter()
    frame = spark.read.parquet(str(requests)).select(*REQUEST_COLUMNS)
    scored = frame.mapInArrow(score_partition, arrow_to_ddl(schema.SCORES))
    with atomic_output_dir(out) as tmp:
        scored.write.parquet(str(tmp / "scores"))
        for part in (tmp / "scores").iterdir():
            part.rename(tmp / part.name)
        (tmp / "scores").rmdir()
        rows = spark.read.parquet(str(tmp)).count()
        seconds = time.perf_counter() - started
        pairs, n_requests = frame.agg(F.sum(F.size("cand_item_idx")), F.count("*")).first()
        summary = {"engine": kind, "requests": n_requests, "pairs": int(pairs or 0), "rows_written": rows,
                   "seconds_this_run": round(seconds, 2), "pairs_per_s_this_run": round((pairs or 0) / seconds, 1),
                   "spark_master": spark.sparkContext.master, "model": local.identity}
        write_json(tmp / "_manifest.json", summary)
    return summary
