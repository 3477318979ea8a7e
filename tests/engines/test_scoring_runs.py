"""Resumable scoring after kill -9, and Spark scoring equal to the single-process path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from dien_batch.cli import cli


def many_requests(tiny_features, tmp_path, copies=40):
    """The tiny requests repeated under new ids: enough shards to kill a run in the middle."""
    table = pq.read_table(tiny_features / "requests")
    parts = []
    for c in range(copies):
        ids = [f"{r}#{c}" for r in table.column("request_id").to_pylist()]
        parts.append(table.set_column(0, "request_id", pa.array(ids)))
    folder = tmp_path / "features"
    (folder / "requests").mkdir(parents=True)
    pq.write_table(pa.concat_tables(parts), folder / "requests" / "part-0.parquet", row_group_size=500)
    os.symlink(tiny_features / "vocab", folder / "vocab")
    return folder / "requests"


def rows(path):
    return sorted(pq.read_table(path).to_pylist(), key=lambda r: (r["request_id"], r["item_id"]))


def test_kill_9_then_rerun_equals_an_uninterrupted_run(trained_dien, tiny_features, tmp_path):
    requests = many_requests(tiny_features, tmp_path)
    args = ["score", "--model", str(trained_dien), "--requests", str(requests), "--shard-requests", "150",
            "--batch-requests", "32", "--threads", "1"]
    clean = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "clean")])
    assert clean.exit_code == 0, clean.output
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "dien_batch", *args, "--out", str(out), "-q"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = tmp_path / "killed.partial" / "_progress.json"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            if len(json.loads(progress.read_text())["completed"]) >= 3:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.01)
    assert proc.poll() is None, "scoring finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and progress.exists()
    done_before = len(json.loads(progress.read_text())["completed"])
    rerun = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert rerun.exit_code == 0, rerun.output
    assert "resuming" in rerun.output and f"{done_before} shard(s) already done" in rerun.output
    assert rows(out) == rows(tmp_path / "clean")
    assert not (tmp_path / "killed.partial").exists()
    again = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert again.exit_code == 0 and "already complete" in again.output


def test_spark_scoring_equals_single_process(spark, trained_dien, tiny_features, tmp_path):
    from dien_batch.spark_jobs.score import score_on_spark

    single = tmp_path / "single"
    result = CliRunner().invoke(cli, ["score", "--model", str(trained_dien), "--requests",
                                      str(tiny_features / "requests"), "--out", str(single)])
    assert result.exit_code == 0, result.output
    summary = score_on_spark(str(trained_dien), "torch", str(tiny_features / "requests"), str(tmp_path / "spark"),
                             None, spark=spark)
    assert summary["pairs"] == summary["rows_written"] == pq.read_metadata(next(single.glob("part-*.parquet"))).num_rows
    a, b = rows(single), rows(tmp_path / "spark")
    assert [{k: v for k, v in r.items() if k != "pctr"} for r in a] == \
        [{k: v for k, v in r.items() if k != "pctr"} for r in b]
    assert max(abs(x["pctr"] - y["pctr"]) for x, y in zip(a, b, strict=True)) <= 1e-6
