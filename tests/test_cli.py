"""The command line: fast --help, config files, exit codes, the synth command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pyarrow.parquet as pq
from click.testing import CliRunner

from dien_batch.cli import cli

COMMANDS = ["synth", "build-features", "validate", "train", "compile", "score", "evaluate", "report",
            "nightly"]


def test_help_is_fast_and_lists_every_command():
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "dien_batch", "--help"], capture_output=True, text=True,
                            check=True)
    assert time.perf_counter() - start < 1.0
    for name in COMMANDS:
        assert name in result.stdout
    assert "Exit codes" in result.stdout
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys, dien_batch.cli; "
         "print(sorted(m for m in ('torch','pyspark','great_expectations','triton','tensorrt','onnx') "
         "if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert heavy.stdout.strip() == "[]"


def test_every_command_has_examples_and_exit_codes():
    runner = CliRunner()
    for name in COMMANDS:
        out = runner.invoke(cli, [name, "--help"]).output
        assert "Examples:" in out and "Exit codes:" in out and "--config" in out, name


def test_synth_end_to_end_with_config(tmp_path):
    config = tmp_path / "synth.toml"
    config.write_text('[synth]\nusers = 50\nitems = 300\ncategories = 10\nrequests = 40\n'
                      'candidates-per-request = 5\nseed = 3\n')
    out = tmp_path / "world"
    args = ["synth", "--config", str(config), "--requests", "30", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "impressions" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["users"] == 50 and manifest["spec"]["seed"] == 3
    assert manifest["spec"]["requests"] == 30  # the command line wins over the file
    assert pq.read_metadata(out / "impressions" / "part-00000.parquet").num_rows == 150
    assert not list(tmp_path.glob(".world.tmp-*"))


def test_config_errors_exit_2(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("userz = 5\n")
    result = CliRunner().invoke(cli, ["synth", "--config", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown option(s) for 'synth': userz" in result.output
    config.write_text("users = [")
    result = CliRunner().invoke(cli, ["synth", "--config", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not valid TOML" in result.output
    result = CliRunner().invoke(cli, ["synth", "--items", "5", "--categories", "9", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--items" in result.output
