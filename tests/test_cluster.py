"""build-features and score --spark on a real Spark standalone cluster (master + worker on 127.0.0.1)
give the same outputs as local[2]; the cluster's processes are gone afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dien_batch.spark_jobs import standalone

DATA = Path(__file__).parent / "data"
EVENTS = DATA / "taobao-userbehavior-head" / "UserBehavior_head.csv"
SMALL = ["--spark-conf", "spark.sql.shuffle.partitions=4", "--spark-conf", "spark.executor.memory=1g"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    result = subprocess.run([sys.executable, "-m", "dien_batch", *args], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _rows(directory: Path) -> list[tuple]:
    """Every row of a Parquet dataset as a tuple (lists as tuples), sorted: equal iff same content."""
    table = pq.read_table(directory)
    columns = [[tuple(v) if isinstance(v, list) else v for v in table.column(n).to_pylist()]
               for n in table.column_names]
    return sorted(zip(*columns, strict=True), key=repr)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("spark-cluster")
    with standalone.running(directory, cores=2, memory="2g") as running:
        yield running
    for pid in running.pids:  # stopped: no daemon or executor of ours is left
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_spark_conf_must_be_a_spark_setting(tmp_path):
    from click.testing import CliRunner

    from dien_batch.cli import cli

    result = CliRunner().invoke(cli, ["build-features", "--events", str(EVENTS), "--out", str(tmp_path / "o"),
                                      "--spark-conf", "executor.memory=8g"])
    assert result.exit_code == 2 and "expected spark.KEY=VALUE" in result.output
    assert not (tmp_path / "o").exists()


def test_build_features_and_score_on_a_standalone_cluster_equal_local(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "cluster"
    build = ["build-features", "-q", "--events", str(EVENTS), "--candidates", "5"]
    _cli(*build, "--out", str(local), "--spark-conf", "spark.sql.shuffle.partitions=2")
    _cli(*build, "--out", str(remote), "--master", cluster.master_url, *SMALL)
    manifest = json.loads((remote / "manifest.json").read_text())
    assert manifest["spark"]["master"] == cluster.master_url
    assert manifest["rows"] == json.loads((local / "manifest.json").read_text())["rows"]
    for part in ("train", "valid", "test", "requests", "rejects", "vocab"):
        assert _rows(remote / part) == _rows(local / part), part

    model = tmp_path / "model"
    _cli("train", "-q", "--features", str(local), "--model", "din", "--epochs", "1", "--out", str(model))
    scores = {}
    for name, extra in (("local", []), ("cluster", ["--spark", "--master", cluster.master_url, *SMALL])):
        _cli("score", "-q", "--model", str(model), "--requests", str(local / "requests"),
             "--out", str(tmp_path / f"scores-{name}"), *extra)
        table = pq.read_table(tmp_path / f"scores-{name}").to_pandas().sort_values(["request_id", "item_id"])
        scores[name] = table.reset_index(drop=True)
    assert len(scores["cluster"]) == len(scores["local"]) > 0
    assert (scores["cluster"]["item_id"] == scores["local"]["item_id"]).all()
    np.testing.assert_allclose(scores["cluster"]["pctr"], scores["local"]["pctr"], atol=1e-6)
