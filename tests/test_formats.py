"""Format adapters and structural checks: no Spark needed."""

from __future__ import annotations

import pytest

from dien_batch.data.formats import format_spec, parse_columns, parse_meta_line, sniff
from dien_batch.errors import DataValidationError, UsageError
from dien_batch.io import data_files
from dien_batch.spark_jobs.readers import resolve

from .conftest import DATA

AMAZON = DATA / "amazon-musical-instruments-5core"


@pytest.mark.parametrize("path, expected", [
    (AMAZON / "Musical_Instruments_5.csv", "amazon-csv"),
    (DATA / "movielens-100k" / "ml-100k.inter", "recbole"),
    (DATA / "taobao-userbehavior-head" / "UserBehavior_head.csv", "taobao"),
])
def test_sniff_real_datasets(path, expected):
    assert sniff(path)[0] == expected


def test_sniff_synth_json_and_parquet(tmp_path, small_world):
    assert sniff(small_world)[0] == "synth"
    assert sniff(small_world / "events")[0] == "parquet"
    (tmp_path / "reviews.json").write_text('{"reviewerID": "A", "asin": "B", "unixReviewTime": 1}\n')
    assert sniff(tmp_path / "reviews.json")[0] == "amazon-json"
    (tmp_path / "x.csv").write_text("uid;iid\n1;2\n")
    assert sniff(tmp_path / "x.csv")[0] == "csv"


def test_meta_lines_2014_and_2018():
    line_2014 = "{'asin': '0001', 'categories': [['Books', 'Fiction', 'Mystery &amp; Thrillers']], 'title': 'x'}"
    assert parse_meta_line(line_2014) == ("0001", "Mystery &amp; Thrillers", None)  # the reader unescapes, once
    line_2018 = '{"asin": "0002", "category": ["Electronics", "Cables"], "title": "y"}'
    assert parse_meta_line(line_2018) == ("0002", "Cables", None)
    assert parse_meta_line('{"asin": "0003"}') == ("0003", None, None)
    assert parse_meta_line("{'asin': 'broken")[2] == "malformed metadata line"
    assert parse_meta_line("[1, 2]")[2] == "metadata line is not an object"


def test_columns_option():
    assert parse_columns("user=u, item=i,category=c,ts=t") == {"user": "u", "item": "i", "category": "c", "ts": "t"}
    with pytest.raises(UsageError, match="ROLE=COLUMN"):
        parse_columns("user")
    with pytest.raises(UsageError, match="needs --columns naming category, ts"):
        format_spec("csv", {"user": "u", "item": "i"})


def test_structural_failures_name_file_column_and_expectation(tmp_path):
    spec = format_spec("amazon-csv").events
    missing = tmp_path / "reviews.csv"
    missing.write_text("asin, overall, unixReviewTime\nB1,5.0,1393545600\n")
    with pytest.raises(DataValidationError) as err:
        resolve("events", [missing], spec)
    assert str(missing) in str(err.value) and "'reviewerID'" in str(err.value)
    assert "expect_column_to_exist" in str(err.value)

    zero = tmp_path / "zero.csv"
    zero.write_bytes(b"")
    header_only = tmp_path / "header.csv"
    header_only.write_text("asin, reviewerID, overall, unixReviewTime\n")
    with pytest.raises(DataValidationError, match="input is empty .*expect_table_row_count_to_be_between"):
        resolve("events", [zero, header_only], spec)

    good = tmp_path / "good.csv"
    good.write_text("asin, reviewerID, overall, unixReviewTime\nB1,A1,5.0,1393545600\n")
    other = tmp_path / "other.csv"
    other.write_text("reviewerID, asin, overall, unixReviewTime\nA1,B1,5.0,1393545600\n")
    with pytest.raises(DataValidationError, match="expect_table_columns_to_match_ordered_list"):
        resolve("events", [good, other], spec)
    resolved = resolve("events", [zero, good], spec)
    assert resolved.files == [good] and resolved.empty_files == [zero]

    not_parquet = tmp_path / "bad.parquet"
    not_parquet.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataValidationError, match="not a readable Parquet file"):
        resolve("events", data_files(not_parquet), format_spec("parquet").events)
