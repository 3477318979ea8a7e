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

[nightly.serve]
candidates = "{tmp / 'candidates.parquet'}"
out = "{tmp / f'serve-{min_auc}'}"
""")
    return path


def test_nightly_end_to_end(built_world, small_world, tmp_path):
    models = {}
    for arm, seed in (("model", 1), ("baseline", 2)):
        models[arm] = tmp_path / arm
        train(TrainConfig(features=str(built_world), out=str(models[arm]), model="base", epochs=1, batch_size=256,
                          seed=seed))
    day = _night(small_world)
    from .test_candidates import explode_requests

    candidates = explode_requests(pq.read_table(built_world / "requests")).drop_columns(["clicked"])
    pq.write_table(candidates, tmp_path / "candidates.parquet")  # unlabeled: what retrieval hands over
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
    served = pq.read_table(tmp_path / "serve-0.0" / day).to_pandas()  # the serving leg ran: gates passed
    assert len(served) == candidates.num_rows and served["ecpm_rank"].min() == 1

    config = _config(tmp_path / "strict.toml", small_world, built_world, models, tmp_path, min_auc=0.999)
    result = runner.invoke(cli, ["nightly", "--config", str(config), "--date", day])
    assert result.exit_code == 4, result.output
    assert "min_auc" in result.output
    assert sorted(p.name for p in (tmp_path / "reports").iterdir() if p.is_dir()) == [day]
    status = json.loads((tmp_path / "reports" / day / "nightly.json").read_text())
    assert status["failed"] and status["served"] is None
    assert not (tmp_path / "serve-0.999").exists()  # a night that fails a gate hands nothing on
    assert "not scored" in result.output


def test_min_auc_gain_gate_catches_a_model_that_loses_to_the_baseline():
    from dien_batch.cli.nightly import _gate_failures

    metrics = {"model": {"auc": 0.61, "pcoc": 1.0}, "baseline": {"auc": 0.63}}
    failed = _gate_failures({"min_auc_gain": 0.0}, metrics, {}, None)
    assert len(failed) == 1 and "min_auc_gain" in failed[0] and "-0.0200" in failed[0]
    assert _gate_failures({"min_auc_gain": 0.0}, {"model": {"auc": 0.64}, "baseline": {"auc": 0.63}}, {}, None) == []
    assert _gate_failures({"min_auc_gain": 0.0}, {"model": {"auc": 0.64}}, {}, None)  # no baseline: cannot pass


def test_a_night_that_fails_validation_appears_in_the_index_in_red(tmp_path, monkeypatch):
    """No nightly.json used to be written, so the index skipped the night and the returned report path did
    not exist."""
    from dien_batch.cli.nightly import run_night
    from dien_batch.errors import DataValidationError
    from dien_batch.spark_jobs import build_features

    def failing_build(cfg, spark=None):
        raise DataValidationError("built data failed validation: samples: expect_column_mean_to_be_between(label) "
                                  "<script>")

    monkeypatch.setattr(build_features, "run", failing_build)
    cfg = {"events": "e", "vocab": "v", "model": "m", "baseline": "b", "reports": str(tmp_path / "reports"),
           "work": str(tmp_path / "work")}
    report, failures = run_night(cfg, "2025-02-25")
    assert report.exists() and failures and "validation" in failures[0]
    assert json.loads((tmp_path / "reports" / "2025-02-25" / "nightly.json").read_text())["failed"] == failures
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "2025-02-25" in index and 'class="bad"' in index and "<script>" not in index
    assert "&lt;script&gt;" in report.read_text()
