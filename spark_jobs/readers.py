"""Read raw inputs with Spark's native readers, as the core's format adapters describe them.

`resolve` runs the structural checks in plain Python before Spark starts reading (file readable, not
empty, required columns present): a failure names the file, the column and the expectation.
`read_table` returns one row per input row with canonical columns (`user, item, category` strings, `ts`
epoch seconds, ...), the raw values for the rejects output, the source file, and `_reason`: null for a
good row, else why it is rejected. Nothing is dropped here.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dien_batch.data.formats import HTML_ENTITIES, TableSpec, parse_meta_line
from dien_batch.errors import DataValidationError

ID_ROLES = ("request", "user", "item", "category")


@dataclass(frozen=True)
class ResolvedTable:
    """A table spec bound to real files: column names in the files and the column of each role."""

    what: str
    spec: TableSpec
    files: list[Path]
    names: list[str]
    roles: dict[str, str]
    empty_files: list[Path]


def _fail(what: str, path: Path, column: str | None, expectation: str, detail: str) -> DataValidationError:
    where = f"{what} file {path}" + (f", column '{column}'" if column else "")
    return DataValidationError(f"{where}: {detail} (expectation {expectation} failed)")


def _open_text(path: Path):
    """A data file as text, through gzip for `.gz` (Spark's readers decompress those by their suffix)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")  # utf-8-sig: a BOM is not a name


def _csv_header(path: Path, spec: TableSpec) -> list[str]:
    with _open_text(path) as fh:
        line = fh.readline()
    quote = spec.options.get("quote", '"')
    if quote == "\u0000":
        cells = line.rstrip("\r\n").split(spec.options.get("sep", ","))
    else:
        cells = next(csv.reader([line], delimiter=spec.options.get("sep", ","), quotechar=quote), [])
    if spec.options.get("header") == "false":
        return [f"_c{i}" for i in range(len(cells))]
    names = [c.strip() for c in cells]
    return [n.split(":")[0] for n in names] if spec.strip_type_suffix else names


def _json_keys(path: Path) -> list[str]:
    with _open_text(path) as fh:
        for _, line in zip(range(100), fh, strict=False):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                return sorted(record)
    return []


def _has_data_rows(path: Path, spec: TableSpec) -> bool:
    skip = 1 if spec.reader == "csv" and spec.options.get("header") != "false" else 0
    with _open_text(path) as fh:
        return any(i >= skip and line.strip() for i, line in enumerate(fh))


def _file_columns(what: str, path: Path, spec: TableSpec) -> list[str] | None:
    """Column names of one file, or None when the file holds no data rows."""
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise _fail(what, path, None, "file_is_readable", f"cannot read it ({exc.strerror})") from exc
    if spec.reader == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.read_metadata(path)
            arrow = meta.schema.to_arrow_schema()
        except Exception as exc:  # noqa: BLE001 - any pyarrow failure means "not Parquet"
            raise _fail(what, path, None, "file_is_readable", f"not a readable Parquet file ({exc})") from exc
        nested = [f.name for f in arrow if pa.types.is_nested(f.type) and f.name in _role_columns(spec)]
        if nested:
            raise _fail(what, path, nested[0], "expect_column_values_to_be_of_type",
                        f"holds {arrow.field(nested[0]).type}, not a scalar (string, number or timestamp)")
        return arrow.names if meta.num_rows else None
    if size == 0 or not _has_data_rows(path, spec):
        return None
    if spec.reader == "csv":
        names = _csv_header(path, spec)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise _fail(what, path, repeated[0], "expect_table_columns_to_be_unique",
                        f"the header names '{repeated[0]}' more than once")
        return names
    if spec.reader == "json":
        return _json_keys(path)
    return []  # pyliteral lines: fields are checked per row


def resolve(what: str, files: list[Path], spec: TableSpec) -> ResolvedTable:
    """Structural checks and role resolution; raises DataValidationError naming file, column, expectation."""
    names: list[str] | None = None
    usable, empty = [], []
    roles: dict[str, str] = {}
    for path in files:
        file_names = _file_columns(what, path, spec)
        if file_names is None:
            empty.append(path)
            continue
        if spec.reader == "csv" and names is not None and file_names != names:
            raise _fail(what, path, None, "expect_table_columns_to_match_ordered_list",
                        f"header {file_names} differs from {names} in {usable[0].name}")
        names = names if names is not None else file_names
        usable.append(path)
        for role, options in spec.columns.items():
            found = next((c for c in options.split("|") if spec.reader == "pyliteral" or c in file_names), None)
            if found is None and role not in spec.optional:
                hint = ""
                if spec.reader == "csv" and len(file_names) == 1:
                    other = next((c for c in (";", "\t", "|", ",") if c in file_names[0]), None)
                    hint = f"; the header looks {'tab' if other == chr(9) else repr(other)}-separated: pass --sep" \
                        if other else ""
                raise _fail(what, path, options.split("|")[0], "expect_column_to_exist",
                            f"the '{role}' column is missing (columns: {', '.join(file_names) or 'none'}){hint}")
            if found is not None:
                roles[role] = found
    if not usable:
        listed = ", ".join(str(f) for f in files) or "no files"
        raise DataValidationError(f"{what} input is empty ({listed}: no data rows) "
                                  "(expectation expect_table_row_count_to_be_between failed)")
    return ResolvedTable(what, spec, usable, names or [], roles, empty)


def _role_columns(spec: TableSpec) -> set[str]:
    return {c for options in spec.columns.values() for c in options.split("|")}


def _ts_seconds(name: str, dtype):
    """Epoch seconds from a timestamp, a number (seconds; milliseconds when > 1e11) or an ISO string."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(dtype, T.TimestampType | T.TimestampNTZType):
        return F.col(name).cast("long")
    if isinstance(dtype, T.DateType):
        return F.unix_timestamp(F.col(name)).cast("long")
    num = F.col(name).cast("double") if isinstance(dtype, T.NumericType) else F.expr(f"try_cast(`{name}` AS DOUBLE)")
    num = F.when(F.isnan(num) | (F.abs(num) > 1e15), None).otherwise(num)
    secs = F.when(num > 1e11, num / 1000).otherwise(num)
    if isinstance(dtype, T.StringType):
        secs = F.coalesce(secs, F.unix_timestamp(F.expr(f"try_to_timestamp(`{name}`)")).cast("double"))
    return F.floor(secs).cast("long")


def _source_frame(spark, t: ResolvedTable):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spec, paths = t.spec, [str(p) for p in t.files]
    corrupt = T.StructField("_corrupt", T.StringType())
    if spec.reader == "parquet":
        return spark.read.parquet(*paths).withColumn("_corrupt", F.lit(None).cast("string"))
    if spec.reader == "csv":
        schema = T.StructType([T.StructField(n, T.StringType()) for n in t.names] + [corrupt])
        return (spark.read.options(**spec.options, mode="PERMISSIVE", columnNameOfCorruptRecord="_corrupt",
                                   encoding="UTF-8").schema(schema).csv(paths))
    if spec.reader == "json":
        schema = T.StructType([T.StructField(c, T.StringType()) for c in t.roles.values()] + [corrupt])
        return (spark.read.options(mode="PERMISSIVE", columnNameOfCorruptRecord="_corrupt")
                .schema(schema).json(paths))
    if spec.reader == "pyliteral":
        parsed = F.udf(lambda line: parse_meta_line(line), "item string, category string, error string")
        return (spark.read.text(paths).withColumn("_p", parsed("value"))
                .select(F.col("_p.item").alias("item"), F.col("_p.category").alias("category"),
                        F.col("_p.error").alias("_corrupt"), F.col("_metadata.file_path").alias("_source")))
    raise ValueError(spec.reader)


def read_table(spark, t: ResolvedTable, ts_range: tuple[int, int] | None = None, with_source: bool = False):
    """Canonical columns, raw text of each role (`raw_<role>`), the reject `_reason`, and with
    `with_source` the file each row came from (a per-row string: only for the rejects output)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    df = _source_frame(spark, t)
    roles = t.roles if t.spec.reader != "pyliteral" else {"item": "item", "category": "category"}
    dtypes = dict((f.name, f.dataType) for f in df.schema.fields)
    source = F.col("_source") if "_source" in df.columns else F.col("_metadata.file_path")
    cols = [(source if with_source else F.lit(None).cast("string")).alias("_source"), F.col("_corrupt")]
    for role, column in roles.items():
        cols.append(F.col(column).cast("string").alias(f"raw_{role}"))
    df = df.select(*cols, *[F.col(c).alias(f"_in_{role}") for role, c in roles.items()])
    out = [F.col("_source"), F.col("_corrupt")] + [F.col(f"raw_{r}") for r in roles]
    for role in roles:
        src = F.col(f"_in_{role}")
        if role in ID_ROLES:
            if isinstance(dtypes[roles[role]], T.FloatType | T.DoubleType):  # a NaN id is a missing id
                src = F.when(F.isnan(src), None).otherwise(src)
            value = F.trim(src.cast("string"))
            if role == "category" and t.spec.category_rule == "first_token":
                value = F.split(value, r"\s+").getItem(0)
            if role == "category" and t.spec.category_sep:
                value = F.trim(F.split(value, re.escape(t.spec.category_sep)).getItem(0))
            if role == "category":
                value = F.when(value.contains("&"), _unescape_html(value)).otherwise(value)
            out.append(F.when(value == "", None).otherwise(value).alias(role))
        elif role == "ts":
            out.append(_ts_seconds(f"_in_{role}", dtypes[roles["ts"]]).alias("ts"))
        elif role in ("clicked", "position"):
            out.append(F.expr(f"try_cast(`_in_{role}` AS INT)").alias(role))
        elif role in ("bid", "p_true"):
            out.append(F.expr(f"try_cast(`_in_{role}` AS DOUBLE)").alias(role))
        else:
            out.append(src.cast("string").alias(role))
    df = df.select(*out)
    return df.withColumn("_reason", _reason(df.columns, ts_range))


def _unescape_html(col):
    """Category names arrive HTML-escaped in some dumps: `&amp;` and `&` must be one category."""
    from pyspark.sql import functions as F

    for entity, char in HTML_ENTITIES:
        col = F.regexp_replace(col, entity, char)
    return col


def _rules(columns: list[str], ts_range: tuple[int, int] | None) -> list:
    """(condition that marks a row bad, reason code) in priority order, for the columns a frame has."""
    from pyspark.sql import functions as F

    rules = [(F.col("_corrupt").isNotNull(), "malformed_record")] if "_corrupt" in columns else []
    ids = [r for r in ID_ROLES if r in columns]
    bad_bytes = [F.coalesce(F.col(r).contains("\ufffd"), F.lit(False)) for r in ids]
    rules.append((functools.reduce(operator.or_, bad_bytes), "invalid_utf8"))
    rules += [(F.col(r).isNull(), f"missing_{r}") for r in ids]
    if "ts" in columns:
        rules.append((F.col("ts").isNull(), "bad_timestamp"))
        if ts_range:
            rules.append(((F.col("ts") < ts_range[0]) | (F.col("ts") >= ts_range[1]), "ts_out_of_range"))
    if "clicked" in columns:
        rules.append((~F.coalesce(F.col("clicked").isin(0, 1), F.lit(False)), "bad_label"))
    if "bid" in columns:
        rules.append((F.col("bid").isNotNull() & ~(F.col("bid") >= 0), "bad_bid"))
    return rules


def _reason(columns: list[str], ts_range: tuple[int, int] | None):
    """The first rule a row breaks, as a short reason code; null for a good row."""
    from pyspark.sql import functions as F

    rules = _rules(columns, ts_range)
    expr = F.when(rules[0][0], rules[0][1])
    for cond, code in rules[1:]:
        expr = expr.when(cond, code)
    return expr


def good_rows(df, ts_range: tuple[int, int] | None):
    """The rows no rule rejects. The same rules as `_reason`, as a conjunction: Spark evaluates that
    far faster in a filter than `_reason IS NULL` (which it would inline as nested CASEs)."""
    from pyspark.sql import functions as F

    conds = [~F.coalesce(cond, F.lit(False)) for cond, _ in _rules(df.columns, ts_range)]
    return df.filter(functools.reduce(operator.and_, conds))
