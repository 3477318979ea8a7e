"""The feature spec's side tables in Spark: read, checked, and encoded with a vocabulary per field.

    users.csv / items.parquet --columns and unique keys checked--> one row per key
    --categorical fields: dense ids by count (0 missing, 1 out of vocabulary)--> (key, u_*/i_* columns)

A field vocabulary is OUT/vocab/fields/<group>.<name>.parquet (the id vocabulary's layout), reused with
`--vocab` like the others, so a field's ids stay stable across nights. Numeric fields keep their raw
float; their standardisation statistics come from the train split (`numeric_stats`) and are written,
with the field list, to OUT/vocab/fields.json.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dien_batch import schema
from dien_batch.errors import DataValidationError
from dien_batch.feature_spec import FeatureSpec, Field, SideTable
from dien_batch.io import data_files, read_json, write_json

from .samples import broadcast_small

FIELDS_JSON = "fields.json"


def _header(path: Path, sep: str) -> list[str]:
    """A csv header's column names; RecBole's `name:type` headers give `name`."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        names = fh.readline().rstrip("\r\n").split(sep)
    return [n.strip().split(":")[0] if ":" in n else n.strip() for n in names]


def read_side_table(spark, table: SideTable, fields: list[Field]):
    """The side table as (key, field columns as strings or doubles); exit 3 on a missing column, an
    unparseable number or a duplicate key, naming the file and the column."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    files = data_files(table.path)
    first = files[0]
    if first.suffix == ".parquet":
        df = spark.read.parquet(*[str(f) for f in files])
        names = df.columns
    else:
        sep = table.sep or ("\t" if first.suffix in (".user", ".item") else ",")
        names = _header(first, sep)
        df = spark.read.options(header=True, sep=sep, encoding="UTF-8").schema(
            T.StructType([T.StructField(n, T.StringType()) for n in names])).csv([str(f) for f in files])
    for column in [table.key] + [f.name for f in fields]:
        if column not in names:
            raise DataValidationError(f"{table.group} table {table.path}: column '{column}' is missing "
                                      f"(it has {', '.join(names)})")
    out = [F.trim(F.col(table.key).cast("string")).alias("_key")]
    for f in fields:
        raw = F.trim(F.col(f.name).cast("string"))
        raw = F.when(raw == "", None).otherwise(raw)
        number = F.expr(f"try_cast(trim(`{f.name}`) AS DOUBLE)")  # Spark's ANSI cast would fail the job
        out.append(number.alias(f.column) if f.kind == "numeric" else raw.alias(f.column))
        if f.kind == "numeric":
            out.append(raw.alias(f"_raw_{f.column}"))
    df = df.select(*out).filter(F.col("_key").isNotNull())
    checks = [F.count("*").alias("rows"), F.countDistinct("_key").alias("keys")]
    checks += [F.sum((F.col(f"_raw_{f.column}").isNotNull() & F.col(f.column).isNull()).cast("long")).alias(f.column)
               for f in fields if f.kind == "numeric"]
    counts = df.agg(*checks).first()
    if counts["rows"] != counts["keys"]:
        dup = df.groupBy("_key").count().filter("count > 1").orderBy("_key").first()
        raise DataValidationError(f"{table.group} table {table.path}: column '{table.key}' has duplicate keys "
                                  f"({counts['rows'] - counts['keys']:,} extra rows; '{dup['_key']}' appears "
                                  f"{dup['count']} times): one row per {table.group} expected")
    for f in fields:
        if f.kind == "numeric" and counts[f.column]:
            bad = df.filter(F.col(f"_raw_{f.column}").isNotNull() & F.col(f.column).isNull()).first()
            raise DataValidationError(f"{table.group} table {table.path}: column '{f.name}' has "
                                      f"{counts[f.column]:,} values that are not numbers (e.g. "
                                      f"'{bad[f'_raw_{f.column}']}')")
    return df.drop(*[c for c in df.columns if c.startswith("_raw_")]), int(counts["rows"])


def _vocabulary(df, f: Field) -> pa.Table:
    """Values by descending count, ties by value, after the reserved <pad> and <oov> rows."""
    from pyspark.sql import functions as F

    stats = df.filter(F.col(f.column).isNotNull()).groupBy(F.col(f.column).alias("id")).agg(
        F.count("*").alias("count")).toArrow().sort_by([("count", "descending"), ("id", "ascending")])
    n = stats.num_rows + schema.FIRST_IDX
    return pa.table({"id": pa.concat_arrays([pa.array(["<pad>", "<oov>"]), stats["id"].combine_chunks()]),
                     "idx": pa.array(np.arange(n, dtype=np.int32)),
                     "count": pa.concat_arrays([pa.array([0, 0], pa.int64()),
                                                stats["count"].combine_chunks().cast(pa.int64())])},
                    schema=schema.VOCAB)


class SideFields:
    """The spec's user and item side tables, encoded: `frames[group]` is a frame (user | item, then the
    field columns), `items_arrow` the items' on the driver (the negative sampler's tables need them);
    `context` encodes the context columns of the events or impressions with the same vocabularies."""

    def __init__(self, spark, spec: FeatureSpec, reuse: str | None):
        from pyspark.sql import functions as F

        self.spark, self.reuse = spark, reuse
        self.spec, self.vocabs, self.rows = spec, {}, {}
        self.frames = {}
        for group in ("user", "item"):
            fields = spec.of(group)
            if not fields:
                continue
            df, self.rows[group] = read_side_table(spark, spec.tables[group], fields)
            df = self._encoded(df, fields)
            self.frames[group] = df.select(F.col("_key").alias(group), *[f.column for f in fields])
        self.items_arrow = self.frames["item"].toArrow() if "item" in self.frames else None
        if "item" in self.frames:
            self.frames["item"] = broadcast_small(spark.createDataFrame(self.items_arrow.to_pandas()),
                                                  self.items_arrow.num_rows)

    def _encoded(self, df, fields: list[Field]):
        """df with each categorical field's values replaced by their ids (vocabularies built from df's
        values, or reused); numeric fields as they are."""
        from pyspark.sql import functions as F

        for f in fields:
            if f.kind == "numeric":
                continue
            vocab = (pq.read_table(Path(self.reuse) / "fields" / f"{f.key}.parquet") if self.reuse
                     else _vocabulary(df, f))
            self.vocabs[f.key] = vocab
            known = self.spark.createDataFrame(vocab.slice(schema.FIRST_IDX).select(["id", "idx"]).to_pandas())
            df = df.join(broadcast_small(known.toDF(f.column, f"_idx_{f.column}"), vocab.num_rows), f.column, "left")
            missing = F.col(f.column).isNull()
            df = df.withColumn(f.column, F.when(missing, schema.PAD_IDX).otherwise(
                F.coalesce(f"_idx_{f.column}", F.lit(schema.OOV_IDX))).cast("int")).drop(f"_idx_{f.column}")
        return df

    def context(self, frame):
        """The events' or impressions' context columns (strings as read) encoded: categorical ones by
        vocabularies counted over the clean rows, numeric ones parsed (NaN where they are not numbers)."""
        from pyspark.sql import functions as F

        fields = self.spec.of("context")
        for f in fields:
            if f.kind == "numeric":
                value = F.coalesce(F.expr(f"try_cast(trim(`{f.column}`) AS DOUBLE)"), F.lit(float("nan")))
            else:
                value = F.when(F.trim(f.column) == "", None).otherwise(F.trim(f.column))
            frame = frame.withColumn(f.column, value)
        return self._encoded(frame, fields)

    def sizes(self) -> dict[str, int]:
        """Rows of each categorical field's vocabulary (the embedding table size)."""
        return {key: v.num_rows for key, v in self.vocabs.items()}

    def item_columns(self, ids: pa.Array) -> dict[str, pa.Array]:
        """The item field columns for raw item ids (missing: 0 or NaN)."""
        out = {}
        at = pa.compute.index_in(ids, self.items_arrow["item"])
        for f in self.spec.of("item"):
            values = pa.compute.take(self.items_arrow[f.column], at)
            fill = math.nan if f.kind == "numeric" else schema.PAD_IDX
            out[f.column] = pa.compute.fill_null(values, fill).combine_chunks().cast(schema.field_type(f))
        return out

    def write(self, out: Path, stats: dict) -> None:
        (out / "fields").mkdir()
        for key, vocab in self.vocabs.items():
            pq.write_table(vocab, out / "fields" / f"{key}.parquet")
        write_json(out / FIELDS_JSON, {"fields": [f.to_dict() for f in self.spec.fields],
                                       "sizes": self.sizes(), "numeric": stats})

    def counts(self, users, items) -> dict:
        """Side-table rows, and those of their keys that this build's users / items lack."""
        out = {}
        for group, ids in (("user", users), ("item", items)):
            if group in self.frames:
                matched = self.frames[group].join(ids.select(ids.columns[0]).toDF(group), group).count()
                out[group] = {"rows": self.rows[group], "without_match": self.rows[group] - matched}
        return out


def numeric_stats(train_dir: Path | None, spec: FeatureSpec, reuse: str | None) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each numeric field over the train split's samples (NaN skipped);
    a reused vocabulary's statistics, so that a field's scale stays the same across nights (a build
    without a train split of its own, such as a candidate table's, always reuses)."""
    numeric = [f for f in spec.fields if f.kind == "numeric"]
    if reuse:
        return read_json(Path(reuse) / FIELDS_JSON)["numeric"]
    table = pq.ParquetDataset(train_dir).read(columns=[f.column for f in numeric]) if numeric else None
    stats = {}
    for f in numeric:
        values = table[f.column].to_numpy(zero_copy_only=False).astype(np.float64)
        values = values[~np.isnan(values)]
        mean = float(values.mean()) if len(values) else 0.0
        std = float(values.std()) if len(values) else 1.0
        stats[f.column] = {"mean": mean, "std": std if std > 0 else 1.0}
    return stats
