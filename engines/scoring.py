"""Batch scoring of candidate ads: stream requests, score with any engine, write resumable shards.

Work happens in `OUT.partial/`: the requests are cut into fixed row ranges (shards); each shard's
scores are written to a temporary file and renamed into place, then recorded in `_progress.json`
(also written atomically). After a kill at any point, the same command skips the recorded shards and
recomputes the rest; a shard file that exists but was not recorded is simply rewritten with the same
content, so the result has no duplicates and no gaps. When every shard is done, `OUT.partial/` is
renamed to `OUT` with a `_manifest.json`.

Within a shard, requests are scored in batches of similar history length (sorted, then put back in
input order): less padding, the same scores. A batch holds at most `batch_requests` requests and at
most the engine's `pair_steps` (candidates x history steps; PAIR_STEPS unless the engine says) of
work, which bounds every engine's intermediates (attention over T steps for K candidates) whatever K
and T are.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dien_batch import ui
from dien_batch.errors import UsageError
from dien_batch.io import read_json, stable_hash, write_json

from .base import open_engine
from .manifest import check_vocabulary
from .reading import RowRanges
from .requests import flat_scores, model_fields, request_columns, request_inputs

PROGRESS, MANIFEST = "_progress.json", "_manifest.json"
PAIR_STEPS = 1 << 18  # per batch: about 1 KB of intermediates each, so ~0.25 GB at most


def pair_steps(engine) -> int:
    """The most candidates x history steps one `engine.score` call takes."""
    return getattr(engine, "pair_steps", PAIR_STEPS)


@dataclass(frozen=True)
class ScoreConfig:
    model: str
    engine: str
    requests: str
    out: str
    vocab: str | None = None
    batch_requests: int = 512
    shard_requests: int = 20_000
    threads: int = 0
    overwrite: bool = False
    top_k: int | None = None


def _vocab_dir(cfg: ScoreConfig) -> Path | None:
    if cfg.vocab:
        return Path(cfg.vocab)
    sibling = Path(cfg.requests).parent / "vocab"
    if sibling.is_dir():
        return sibling
    raise UsageError(f"cannot find the vocabulary the requests in {cfg.requests} were built with: pass --vocab DIR")


def score_table(engine, table: pa.Table, batch_requests: int, top_k: int | None = None) -> pa.Table:
    """Scores for every candidate of every request in `table`, in input order."""
    counts = np.diff(table.column("cand_item_idx").combine_chunks().offsets.to_numpy())
    k_max = int(counts.max()) if len(counts) else 0
    pctr = np.zeros((table.num_rows, k_max), dtype=np.float32)
    lengths = table.column("hist_len").to_numpy()
    order = np.argsort(lengths, kind="stable")
    start, work = 0, pair_steps(engine)
    while start < len(order):
        longest = max(int(lengths[order[min(start + batch_requests, len(order)) - 1]]), 1)
        rows = order[start:start + max(1, min(batch_requests, work // max(k_max * longest, 1)))]
        start += len(rows)
        scores = engine.score(request_inputs(table.take(pa.array(rows)), model_fields(engine.identity)))
        pctr[rows, :scores.shape[1]] = scores
    return flat_scores(table, pctr, counts, top_k)


def score(cfg: ScoreConfig) -> dict:
    """Score every candidate of every request into cfg.out (resumable); returns the run's summary."""
    engine = open_engine(cfg.model, cfg.engine, cfg.threads)
    vocab = _vocab_dir(cfg)
    check_vocabulary(engine.identity, vocab, str(cfg.model))
    data = RowRanges(cfg.requests)
    out = Path(cfg.out).absolute()
    partial = out.with_name(out.name + ".partial")
    plan = {"input": data.fingerprint(), "model": engine.identity["config_hash"], "engine": cfg.engine,
            "shard_requests": cfg.shard_requests, "top_k": cfg.top_k}
    plan_hash = stable_hash(plan)
    if out.exists():
        done = out / MANIFEST
        if done.exists() and read_json(done).get("plan_hash") == plan_hash and not cfg.overwrite:
            ui.info(f"{out} is already complete for these requests and this model")
            return read_json(done)
        if not cfg.overwrite:
            raise UsageError(f"{out} exists (from other inputs or an older run); pass --overwrite to replace it")
    progress = {"plan_hash": plan_hash, "plan": plan, "completed": []}
    if partial.exists():
        previous = read_json(partial / PROGRESS) if (partial / PROGRESS).exists() else {}
        if previous.get("plan_hash") == plan_hash:
            progress = previous
            ui.info(f"resuming: {len(progress['completed'])} shard(s) already done in {partial}")
        else:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    write_json(partial / PROGRESS, progress)
    done = set(progress["completed"])
    columns = request_columns(model_fields(engine.identity), data.columns)
    started, pairs = time.perf_counter(), 0
    bar = ui.progress(total=data.total, desc=f"score ({cfg.engine})", unit="req")
    for shard, start, stop in data.ranges(cfg.shard_requests):
        if shard in done:
            bar.update(stop - start)
            continue
        table = data.read(start, stop, columns)
        scores = score_table(engine, table, cfg.batch_requests, cfg.top_k)
        scored = int(pc.sum(pc.list_value_length(table.column("cand_item_idx"))).as_py() or 0)
        target = partial / f"part-{shard:05d}.parquet"
        tmp = partial / f".part-{shard:05d}.parquet.tmp"
        pq.write_table(scores, tmp, compression="zstd")
        os.replace(tmp, target)
        progress["completed"].append(shard)
        progress["pairs"] = progress.get("pairs", 0) + scored
        write_json(partial / PROGRESS, progress)
        pairs += scored
        bar.update(stop - start)
        bar.set_postfix(pairs_per_s=f"{pairs / (time.perf_counter() - started):,.0f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - started
    rows = sum(pq.read_metadata(p).num_rows for p in sorted(partial.glob("part-*.parquet")))
    manifest = {"plan_hash": plan_hash, "config": asdict(cfg), "engine": cfg.engine, "model": engine.identity,
                "requests": data.total, "pairs": progress.get("pairs", 0), "rows_written": rows,
                "shards": len(progress["completed"]),
                "seconds_this_run": round(seconds, 2),
                "pairs_per_s_this_run": round(pairs / seconds, 1) if seconds and pairs else None}
    write_json(partial / MANIFEST, manifest)
    (partial / PROGRESS).unlink()
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return manifest
