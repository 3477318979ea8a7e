"""A corpus of bad inputs: each gets a clear message or a counted reject, never a silent drop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dien_batch.cli import cli
from dien_batch.spark_jobs import build_features

MESSY_CSV = b"""uid,iid,cat,time
u1,i1,c1,1600000000
u1,i2,c1,1600000100
u1,i2,c1,1600000100
u1,i3,c2,not-a-time
u1,i4,c2,99999999999999
u1,,c1,1600000200
 ,i5,c1,1600000300
u1,i6,,1600000400
u1,i7,c1
u2,i8,c3,1600000500,extra
u3,i\xff9,c1,1600000600
u4,i1,c1,1600000700
u1,i9,c3,2021-06-01T00:00:00Z
u1,i10,c3,1600000100.5
u1,i11,c3,700000000
"""
EXPECTED_CSV_REJECTS = {"duplicate_event": 1, "bad_timestamp": 1, "ts_out_of_range": 2, "missing_item": 1,
                        "missing_user": 1, "missing_category": 1, "malformed_record": 2, "invalid_utf8": 1,
                        "too_few_events": 1}

REVIEWS = """{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1400000000}
{"reviewerID": "A1", "asin": "B2", "unixReviewTime": 1400000100}
{"reviewerID": "A1", "asin": "B3", "unixReviewTime": 1400000200}
{bad json
{"reviewerID": "A1", "asin": "B4", "unixReviewTime": 1400000300}
{"reviewerID": "A2", "asin": "B1", "unixReviewTime": "yesterday"}
{"reviewerID": "A2", "asin": "B2", "unixReviewTime": 1400000400}
{"reviewerID": "A3", "asin": "B2", "unixReviewTime": 1400000500}
{"reviewerID": "A3", "asin": "B3", "unixReviewTime": 1400000600}
"""
META_2014 = """{'asin': 'B1', 'categories': [['Books', 'Fiction']]}
{'asin': 'B2', 'categories': [['Books', 'Science &amp; Math']]}
{'asin': 'B3', 'categories': [['Books', 'Fiction']]}
{'asin': 'B4', 'title': 'a product without categories'}
{'asin': broken
"""


CSV_OPTIONS = ["--format", "csv", "--columns", "user=uid,item=iid,category=cat,ts=time"]


def build(args, out):
    return CliRunner().invoke(cli, ["build-features", *args, "--out", str(out)])


def test_messy_csv_rows_are_rejected_with_reasons(spark, tmp_path):
    src = tmp_path / "events.csv"
    src.write_bytes(MESSY_CSV)
    out = tmp_path / "out"
    result = build(["--events", str(src), *CSV_OPTIONS], out)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "manifest.json").read_text())["rows"]["events"]
    assert rows["rejected_by_reason"] == EXPECTED_CSV_REJECTS
    assert rows["rows_in"] == 15 and rows["rows_used"] == 4
    rejects = pq.read_table(out / "rejects").to_pandas()
    assert len(rejects) == sum(EXPECTED_CSV_REJECTS.values())
    by_item = dict(zip(rejects["item"], rejects["reason"], strict=False))
    assert by_item["i3"] == "bad_timestamp" and by_item["i11"] == "ts_out_of_range"
    assert rejects.loc[rejects["user"] == "u4", "reason"].tolist() == ["too_few_events"]
    assert "1,502 used" not in result.output and "4 used + 11 rejected" in result.output


def test_amazon_json_with_malformed_lines_and_items_without_category(spark, tmp_path):
    (tmp_path / "reviews_Books.json").write_text(REVIEWS)
    (tmp_path / "meta_Books.json").write_text(META_2014)
    out = tmp_path / "out"
    result = build(["--events", str(tmp_path / "reviews_Books.json"), "--candidates", "2"], out)
    assert result.exit_code == 0, result.output
    assert "format: amazon-json" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["meta"]["path"].endswith("meta_Books.json")  # found beside the reviews
    assert manifest["rows"]["events"]["rejected_by_reason"] == {
        "malformed_record": 1, "bad_timestamp": 1, "too_few_events": 1}
    assert manifest["rows"]["events"]["rows_used_with_unknown_category"] == 1  # B4: kept, category <unknown>
    assert manifest["rows"]["meta"]["rejected_by_reason"] == {"malformed_record": 1, "missing_category": 1}
    categories = pq.read_table(out / "vocab" / "category.parquet")["id"].to_pylist()
    assert "Science & Math" in categories and "Fiction" in categories


@pytest.mark.parametrize("content, message", [
    (b"", "input is empty"),
    (b"uid,iid,cat,time\n", "input is empty"),
    (b"uid,iid,time\nu1,i1,1\n", "column 'cat': the 'category' column is missing"),
])
def test_structural_failures_exit_3_before_spark(tmp_path, content, message):
    src = tmp_path / "events.csv"
    src.write_bytes(content)
    out = tmp_path / "out"
    result = build(["--events", str(src), *CSV_OPTIONS], out)
    assert result.exit_code == 3, result.output
    assert message in result.output and "expectation expect_" in result.output
    assert not out.exists()


def test_failed_validation_publishes_nothing(spark, tmp_path, monkeypatch):
    src = tmp_path / "events.csv"
    src.write_bytes(MESSY_CSV)
    out = tmp_path / "out"
    monkeypatch.setattr(build_features, "POSITIVE_RATE_BOUNDS", (0.6, 1.0))  # review data is exactly 0.5
    result = build(["--events", str(src), *CSV_OPTIONS], out)
    assert result.exit_code == 3, result.output
    assert "expect_column_mean_to_be_between(label)" in result.output
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
    assert (tmp_path / "out.validation-failed" / "samples.json").exists()


def test_validate_command_catches_a_corrupted_dataset(spark, built_world, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc

    copy = tmp_path / "copy"
    shutil.copytree(built_world, copy)
    ok = CliRunner().invoke(cli, ["validate", "--features", str(copy)])
    assert ok.exit_code == 0, ok.output
    test_files = sorted((copy / "test").glob("*.parquet"))
    table = pq.read_table(test_files[0])
    shifted = pc.add(table["hist_last_ts"], pa.scalar(10**9, pa.int64()))  # history after the target
    pq.write_table(table.set_column(table.schema.get_field_index("hist_last_ts"), "hist_last_ts", shifted),
                   test_files[0])
    bad = CliRunner().invoke(cli, ["validate", "--features", str(copy)])
    assert bad.exit_code == 3
    assert "point in time" in bad.output


def test_killed_build_leaves_no_output(spark, tmp_path):
    """kill -9 in the middle: no OUT appears; the re-run starts clean and succeeds."""
    src = tmp_path / "events.csv"
    src.write_bytes(MESSY_CSV)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dien_batch", "build-features", "--events", str(src), "--out", str(out),
           *CSV_OPTIONS, "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.tmp-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the build finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert list(tmp_path.glob(".out.tmp-*"))  # the half-written temp dir of the killed run
    rerun = CliRunner().invoke(cli, cmd[3:])  # the same command, in this process's Spark session
    assert rerun.exit_code == 0, rerun.output
    assert (out / "manifest.json").exists() and not list(tmp_path.glob(".out.tmp-*"))
