"""A corpus of the inputs a real user has: each gets a clear one-line error (exit 2 or 3) or is used or
counted as a reject with a reason; never a traceback, never a silent drop (rows in = used + rejected
+ filtered for every input that reaches Spark)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dien_batch.cli import cli

COLUMNS = ["--format", "csv", "--columns", "user=uid,item=iid,category=cat,ts=time", "--candidates", "3"]


def good_rows(n_users=4, n=6, user=lambda u: f"u{u}", t0=1600000000):
    return [f"{user(u)},i{i + u},c{i % 3},{t0 + 100 * i}" for u in range(n_users) for i in range(n)]


def csv_bytes(rows, header="uid,iid,cat,time", newline="\n"):
    return (newline.join([header, *rows]) + newline).encode()


def build(tmp_path, path, extra=()):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build-features", "--events", str(path), *COLUMNS, *extra, "--out", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result, out


def manifest_rows(out):
    rows = json.loads((out / "manifest.json").read_text())["rows"]["events"]
    assert rows["rows_in"] == rows["rows_used"] + rows["rows_rejected"] + rows["rows_filtered"]
    return rows


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- structural: exit 3 (or 2) before Spark starts, naming file, column and expectation -----------------

@pytest.mark.parametrize("name, data, code, message", [
    ("header_only.csv", b"uid,iid,cat,time\n", 3, "input is empty"),
    ("empty.csv", b"", 3, "input is empty"),
    ("blank_lines.csv", b"uid,iid,cat,time\n\n  \n\n", 3, "input is empty"),
    ("duplicate_header.csv", csv_bytes(good_rows(), header="uid,iid,uid,time"), 3,
     "the header names 'uid' more than once"),
    ("semicolons.csv", csv_bytes([r.replace(",", ";") for r in good_rows()], header="uid;iid;cat;time"), 3,
     "pass --sep"),
    ("missing_column.csv", csv_bytes(["u1,i1,1"], header="uid,iid,time"), 3, "the 'category' column is missing"),
    ("truncated.parquet", None, 3, "not a readable Parquet file"),
    ("nested.parquet", None, 3, "not a scalar"),
])
def test_structural_problems_are_one_line_errors(tmp_path, name, data, code, message):
    if name == "truncated.parquet":
        good = tmp_path / "good.parquet"
        pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"], "category_id": ["c"], "ts": [1]}), good)
        data = good.read_bytes()[:-20]
    if name == "nested.parquet":
        pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"], "category_id": ["c"], "ts": [[1, 2]]}),
                       tmp_path / name)
    path = tmp_path / name if data is None else write(tmp_path, name, data)
    extra = ["--format", "parquet"] if name.endswith(".parquet") else []
    args = ["build-features", "--events", str(path), *(extra or COLUMNS), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_empty_directory_and_a_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["build-features", "--events", str(tmp_path / "empty"), *COLUMNS,
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code in (2, 3) and "empty" in result.output
    result = CliRunner().invoke(cli, ["build-features", "--events", str(tmp_path / "nope.csv"), *COLUMNS,
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "does not exist" in result.output


# --- rows: used, or counted as rejects with a reason -----------------------------------------------------

def test_bom_and_crlf(spark, tmp_path):
    path = write(tmp_path, "bom_crlf.csv", b"\xef\xbb\xbf" + csv_bytes(good_rows(), newline="\r\n"))
    result, out = build(tmp_path, path)
    assert result.exit_code == 0, result.output
    rows = manifest_rows(out)
    assert rows["rows_used"] == 24 and rows["rows_rejected"] == 0
    users = pq.read_table(out / "vocab" / "user.parquet")["id"].to_pylist()
    assert "u0" in users and not any("\r" in u or "\ufeff" in u for u in users)


def test_gzip_csv(spark, tmp_path):
    path = write(tmp_path, "events.csv.gz", gzip.compress(csv_bytes(good_rows())))
    result, out = build(tmp_path, path)
    assert result.exit_code == 0, result.output
    assert manifest_rows(out)["rows_used"] == 24


def test_quoted_separators_and_embedded_newlines(spark, tmp_path):
    rows = good_rows() + ['"u,comma",i1,c1,1600000000', '"u,comma",i2,c1,1600000100', '"u,comma",i3,c2,1600000200',
                          '"u\nbroken",i1,c1,1600000300']
    result, out = build(tmp_path, write(tmp_path, "quoted.csv", csv_bytes(rows)))
    assert result.exit_code == 0, result.output
    rows_ = manifest_rows(out)
    assert "u,comma" in pq.read_table(out / "vocab" / "user.parquet")["id"].to_pylist()
    assert rows_["rejected_by_reason"].get("malformed_record", 0) >= 1  # the record a newline split


def test_mixed_timestamp_units_and_time_zones(spark, tmp_path):
    """Seconds, milliseconds and ISO strings (with and without an offset) in one column: the same instant
    each way gives the same epoch second."""
    rows = ["tz,i1,c1,1600000000", "tz,i2,c1,1600000100000", "tz,i3,c1,2020-09-13T12:28:20Z",
            "tz,i4,c1,2020-09-13T14:30:00+02:00", "tz,i5,c1,1600000500.7"]
    result, out = build(tmp_path, write(tmp_path, "ts.csv", csv_bytes(rows + good_rows(2))))
    assert result.exit_code == 0, result.output
    assert manifest_rows(out)["rows_rejected"] == 0
    samples = pa.concat_tables([pq.read_table(out / s) for s in ("train", "valid", "test")]).to_pandas()
    targets = samples[(samples["user_id"] == "tz") & (samples["label"] == 1)]
    # 2020-09-13T12:28:20Z is 1600000100 (as the milliseconds are), 14:30+02:00 is 1600000200.
    assert set(targets["ts"]) == {1600000100, 1600000200, 1600000500}


def test_ids_stay_strings_empty_ids_are_missing(spark, tmp_path):
    rows = [f"007,i{i},c1,{1600000000 + i}" for i in range(4)] + [f"7,i{i},c1,{1600000000 + i}" for i in range(4)]
    rows += ["   ,i9,c1,1600000500", "u8,,c1,1600000600"]
    result, out = build(tmp_path, write(tmp_path, "ids.csv", csv_bytes(rows + good_rows(2))))
    assert result.exit_code == 0, result.output
    users = pq.read_table(out / "vocab" / "user.parquet")["id"].to_pylist()
    assert "007" in users and "7" in users  # leading zeros are part of the id
    rejected = manifest_rows(out)["rejected_by_reason"]
    assert rejected["missing_user"] == 1 and rejected["missing_item"] == 1


def test_long_ids_and_non_utf8_bytes(spark, tmp_path):
    long_user = "x" * 10_000
    data = csv_bytes([f"{long_user},i{i},c1,{1600000000 + i}" for i in range(4)] + good_rows(2))
    data += b"u9,i\xff\xfe,c1,1600000700\n"
    result, out = build(tmp_path, write(tmp_path, "long.csv", data))
    assert result.exit_code == 0, result.output
    assert long_user in pq.read_table(out / "vocab" / "user.parquet")["id"].to_pylist()
    assert manifest_rows(out)["rejected_by_reason"]["invalid_utf8"] == 1


def test_parquet_with_numeric_ids_nan_and_string_timestamps(spark, tmp_path):
    n = 12
    table = pa.table({"user_id": pa.array([1.0, 1, 1, 2, 2, 2, float("nan"), 3, 3, 3, 3, 3]),
                      "item_id": pa.array(np.arange(n) % 5, pa.int64()), "category_id": ["c"] * n,
                      "ts": [str(1600000000 + 10 * i) for i in range(n - 1)] + ["not a time"]})
    pq.write_table(table, tmp_path / "events.parquet")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build-features", "--events", str(tmp_path / "events.parquet"), "--format",
                                      "parquet", "--candidates", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rejected = manifest_rows(out)["rejected_by_reason"]
    assert rejected["missing_user"] == 1 and rejected["bad_timestamp"] == 1
    assert "nan" not in [u.lower() for u in pq.read_table(out / "vocab" / "user.parquet")["id"].to_pylist()]


def test_a_vocabulary_from_another_dataset_is_refused(spark, tmp_path):
    first, out = build(tmp_path, write(tmp_path, "a.csv", csv_bytes(good_rows())))
    assert first.exit_code == 0, first.output
    rows = [r.replace(",i", ",other-item-") for r in good_rows(user=lambda u: f"someone-else-{u}", t0=1610000000)]
    other = write(tmp_path, "b.csv", csv_bytes(rows))
    result = CliRunner().invoke(cli, ["build-features", "--events", str(other), *COLUMNS, "--vocab", str(out / "vocab"),
                                      "--out", str(tmp_path / "out2")])
    assert result.exit_code == 3, result.output
    assert "a vocabulary from another dataset" in result.output and not (tmp_path / "out2").exists()


def test_impressions_whose_user_has_no_history(spark, tmp_path):
    events = write(tmp_path, "events.csv", csv_bytes(good_rows(2)))
    imps = ["request_id,user_id,ts,item_id,category_id,clicked",
            "r1,u0,1600000900,i1,c1,1", "r1,u0,1600000900,i2,c2,0",
            "r2,newcomer,1600000900,i1,c1,0", "r2,newcomer,1600000900,i3,c0,1"]
    (tmp_path / "imps.csv").write_text("\n".join(imps) + "\n")
    result, out = build(tmp_path, events, ["--impressions", str(tmp_path / "imps.csv")])
    assert result.exit_code == 0, result.output
    samples = pa.concat_tables([pq.read_table(out / s) for s in ("train", "valid", "test")]).to_pandas()
    assert len(samples) == 4  # every impression is a sample, the newcomer's with an empty history
    assert samples.loc[samples["user_id"] == "newcomer", "hist_len"].tolist() == [0, 0]
