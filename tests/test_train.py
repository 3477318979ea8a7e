"""Training: outputs, model choice on validation, determinism, refusal of foreign data."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from dien_batch.cli import cli
from dien_batch.training import TrainConfig, train

from .model.conftest import tiny_features  # noqa: F401  (fixture)


def run(features, out, **kw):
    cfg = dict(features=str(features), out=str(out), epochs=2, batch_size=64, embedding_dim=6, hidden=8, threads=1)
    cfg.update(kw)
    return train(TrainConfig(**cfg))


def test_train_writes_model_and_metrics(tiny_features, tmp_path):  # noqa: F811
    result = CliRunner().invoke(cli, ["train", "--features", str(tiny_features), "--model", "dien", "--epochs", "2",
                                      "--batch-size", "64", "--embedding-dim", "6", "--hidden", "8",
                                      "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "chosen" in result.output and "test" in result.output
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["chosen_by"] == "valid.auc"
    assert {"auc", "gauc", "logloss"} <= set(metrics["test"])
    best = max(metrics["epochs"], key=lambda e: e["valid"]["auc"])
    assert metrics["chosen_epoch"] == best["epoch"]
    assert all("test" not in e for e in metrics["epochs"])  # test is looked at once, at the end
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architecture"]["model"] == "dien" and config["vocab_hash"] and config["data_manifest_hash"]
    assert metrics["test"]["auc"] > 0.6  # the tiny world has a learnable sequence signal


def test_deterministic_for_a_seed(tiny_features, tmp_path):  # noqa: F811
    run(tiny_features, tmp_path / "a", model="gru_augru", epochs=1, seed=3)
    run(tiny_features, tmp_path / "b", model="gru_augru", epochs=1, seed=3)
    run(tiny_features, tmp_path / "c", model="gru_augru", epochs=1, seed=4)
    a, b, c = ((tmp_path / x / "model.safetensors").read_bytes() for x in "abc")
    assert a == b and a != c


def test_length_bucketed_batches_train_and_change_the_order(tiny_features, tmp_path):  # noqa: F811
    plain = run(tiny_features, tmp_path / "plain", model="dien", epochs=1, seed=3)
    bucketed = run(tiny_features, tmp_path / "bucketed", model="dien", epochs=1, seed=3, length_buckets=4)
    assert bucketed["epochs"][0]["train_samples"] == plain["epochs"][0]["train_samples"]  # every row, once
    assert bucketed["test"]["auc"] > 0.55, bucketed["test"]
    assert (tmp_path / "plain" / "model.safetensors").read_bytes() != (
        tmp_path / "bucketed" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("model", ["base", "wide_deep", "pnn", "din", "gru_att", "gru_aigru", "gru_agru"])
def test_every_baseline_trains(tiny_features, tmp_path, model):  # noqa: F811
    metrics = run(tiny_features, tmp_path / model, model=model, epochs=2)
    # The tiny world's next item follows the last category: every model learns something from it.
    assert metrics["test"]["rows"] > 0 and metrics["test"]["auc"] > 0.55, metrics["test"]


def test_refuses_foreign_features(tiny_features, tmp_path):  # noqa: F811
    copy = tmp_path / "features"
    shutil.copytree(tiny_features, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = "0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["train", "--features", str(copy), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "rebuild the features" in result.output


def test_command_line_defaults_are_the_training_defaults():
    """One set of defaults: what `dien-batch train` passes equals TrainConfig's own (no silent drift)."""
    import dataclasses

    command = cli.commands["train"]
    cli_defaults = {p.name: p.default for p in command.params if p.name in {f.name for f in
                                                                           dataclasses.fields(TrainConfig)}}
    config_defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                       if f.name in cli_defaults and f.default is not dataclasses.MISSING}
    assert {k: cli_defaults[k] for k in config_defaults} == config_defaults
    assert {"attention", "augru_variant", "embedding_l2", "epochs", "patience", "input_bn"} <= set(config_defaults)
