"""`dien-batch nightly` end to end on the small world: later rows filtered (not rejected), report and
index written, a rerun of the same date replaces it, and a tripped gate exits 4 naming the gate."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc
import pyarrow.parquet as pq
from click.testing import CliRunner

from dien_batch.cli import cli
from dien_batch.training import TrainConfig, train


def _night(world) -> str:
    """A date three days before the last impression: there are rows after it to leave out."""
    last = pc.max(pq.read_table(world / "impressions", columns=["ts"])["ts"]).as_py()
    return (last.replace(tzinfo=UTC) - timedelta(days=3)).date().isoformat()


def _config(path, world, built, models, tmp, min_auc):
    path.write_text(f"""
[nightly]
events = "{world}"
format = "synth"
vocab = "{built / 'vocab'}"
model = "{models['model']}"
baseline = "{models['baseline']}"
reports = "{tmp / 'reports'}"
work = "{tmp / 'work'}"
max_len = 30
candidates = 10

[nightly.gates]
min_auc = {min_auc}
max_rejected_fraction = 0.0
""")
    return path


def test_nightly_end_to_end(built_world, small_world, tmp_path):
    models = {}
    for arm, seed in (("model", 1), ("baseline", 2)):
        models[arm] = tmp_path / arm
        train(TrainConfig(features=str(built_world), out=str(models[arm]), model="base", epochs=1, batch_size=256,
                          seed=seed))
    day = _night(small_world)
    runner = CliRunner()
    config = _config(tmp_path / "ok.toml", small_world, built_world, models, tmp_path, min_auc=0.0)
    result = runner.invoke(cli, ["nightly", "--config", str(config), "--date", day])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "work" / day / "features" / "manifest.json").read_text())["rows"]
    for what in ("events", "impressions"):
        assert rows[what]["rows_rejected"] == 0 and rows[what]["rows_filtered"] > 0, rows
    test_ts = pq.read_table(tmp_path / "work" / day / "features" / "test", columns=["ts"])["ts"]
    end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    assert pc.max(test_ts).as_py() < end.timestamp()  # epoch seconds
    report = tmp_path / "reports" / day / "report.html"
    assert report.exists() and (tmp_path / "reports" / "index.html").exists()

    config = _config(tmp_path / "strict.toml", small_world, built_world, models, tmp_path, min_auc=0.999)
    result = runner.invoke(cli, ["nightly", "--config", str(config), "--date", day])
    assert result.exit_code == 4, result.output
    assert "min_auc" in result.output
    assert sorted(p.name for p in (tmp_path / "reports").iterdir() if p.is_dir()) == [day]
    assert json.loads((tmp_path / "reports" / day / "nightly.json").read_text())["failed"]
