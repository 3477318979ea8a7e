"""Vocabularies and this build's id keys (reserved 0 = padding, 1 = out of vocabulary, then ids by
descending count, ties by id).

Users, the ids that grow with the data, stay distributed: they are counted, numbered in parallel
(`numbered`) and written by one executor. Items and categories pass through the driver, which needs the
items' counts anyway for the negative sampler's broadcast tables (`samples.ItemDraws`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dien_batch import schema

from .quality import VocabSizes
from .samples import broadcast_small

NAMES = ("user", "item", "category")
LOW_BITS = 33  # monotonically_increasing_id(): partition index above bit 33, row within the partition below


def numbered(df, order: list, start: int, keep):
    """(df with `rank`, a LONG: each row's place in `order` counted from `start`; the row count). Rows are
    range-partitioned by `order` and sorted within their partition, so a row's rank is its place in its
    partition plus the sizes of the partitions before it: only those sizes (one number per partition)
    reach the driver. `order` must be total (end with a unique column): ranks are then deterministic."""
    from pyspark.sql import functions as F

    ordered = keep(df.repartitionByRange(*order).sortWithinPartitions(*order)
                   .withColumn("_row", F.monotonically_increasing_id()))
    part = F.shiftright("_row", LOW_BITS)
    sizes = dict(ordered.groupBy(part.alias("p")).count().collect())
    offsets = np.concatenate([[0], np.cumsum([sizes.get(p, 0) for p in range(max(sizes, default=0) + 1)])])
    offset = F.element_at(F.array(*[F.lit(int(start + o)) for o in offsets]), (part + 1).cast("int"))
    rank = offset + F.col("_row").bitwiseAND(F.lit((1 << LOW_BITS) - 1))
    return ordered.withColumn("rank", rank).drop("_row"), int(offsets[-1])


class Vocabulary:
    """One build's vocabularies and keys, from its clean events (and impressions).

    tables: the item and category vocabularies (Arrow); users: the user vocabulary's rows as a frame, or
    None for a reused vocabulary (`reuse`, a vocab directory); keys[name]: every distinct raw id of this
    build, (id, key, idx[, category_idx]), key dense and local (it groups and de-duplicates rows on
    integers and keeps ids new to a reused vocabulary apart), idx OOV where a reused vocabulary lacks
    the id; rows[name]: the number of keys; sizes: the vocabularies' row counts."""

    def __init__(self, spark, events, impressions, reuse: str | None, keep):
        self.spark, self.reuse = spark, reuse
        self.tables, item_keys = _driver_vocabularies(events, impressions, reuse)
        self.keys = {name: spark.createDataFrame(table.to_pandas()) for name, table in item_keys.items()}
        self.rows = {name: table.num_rows for name, table in item_keys.items()}
        self.keys["user"], self.rows["user"], self.users = self._user_keys(events, impressions, keep)
        n_users = (pq.read_metadata(Path(reuse) / "user.parquet").num_rows if reuse
                   else self.rows["user"] + schema.FIRST_IDX)
        self.sizes = VocabSizes(n_users, self.tables["item"].num_rows, self.tables["category"].num_rows)

    def _user_keys(self, events, impressions, keep):
        from pyspark.sql import functions as F

        counts = events.groupBy(F.col("user").alias("id")).agg(F.count("*").alias("count"))
        if impressions is not None:  # users seen only in impressions join the vocabulary with count 0
            only = impressions.select(F.col("user").alias("id"), F.lit(0).cast("long").alias("count"))
            counts = counts.unionByName(only).groupBy("id").agg(F.sum("count").alias("count"))
        ranked, n = numbered(counts, [F.col("count").desc(), F.col("id").asc()], schema.FIRST_IDX, keep)
        key = F.col("rank").cast("int")
        if not self.reuse:
            return ranked.select("id", key.alias("key"), key.alias("idx")), n, ranked.select(
                "id", key.alias("idx"), "count")
        known = self.reused("user").select("id", F.col("idx").alias("_idx"))
        keys = ranked.join(known, "id", "left").select(
            "id", key.alias("key"), F.coalesce("_idx", F.lit(schema.OOV_IDX)).cast("int").alias("idx"))
        return keep(keys), n, None

    def reused(self, name: str):
        """The reused vocabulary `name` as a frame (id, idx, ...), its reserved rows left out."""
        from pyspark.sql import functions as F

        path = Path(self.reuse) / f"{name}.parquet"
        frame = self.spark.read.parquet(str(path)).filter(F.col("idx") >= schema.FIRST_IDX)
        return broadcast_small(frame, pq.read_metadata(path).num_rows)

    def lookup(self, name: str, role: str, *extra: str):
        """keys[name] as (role, role_key, role_idx, *extra), to join on the raw id column `role`."""
        frame = self.keys[name].select("id", "key", "idx", *extra).toDF(role, f"{role}_key", f"{role}_idx", *extra)
        return broadcast_small(frame, self.rows[name])

    def known_share(self) -> dict[str, float]:
        """Per vocabulary: the share of this build's distinct ids that it knows."""
        from pyspark.sql import functions as F

        return {name: round(float(self.keys[name].agg(F.avg((F.col("idx") != schema.OOV_IDX).cast("double")))
                                  .first()[0] or 0), 4) for name in NAMES}

    def write(self, out: Path) -> None:
        """The vocabularies into out/ (a new directory): a reused one copied byte for byte (its
        fingerprint is over content either way), else written, users by one executor."""
        out.mkdir()
        if self.reuse:
            for name in NAMES:
                shutil.copyfile(Path(self.reuse) / f"{name}.parquet", out / f"{name}.parquet")
            return
        for name, table in self.tables.items():
            pq.write_table(table, out / f"{name}.parquet")
        reserved = self.spark.createDataFrame([("<pad>", schema.PAD_IDX, 0), ("<oov>", schema.OOV_IDX, 0)],
                                              "id string, idx int, count long")
        staging = out / "_user"
        self.users.unionByName(reserved).repartition(1).sortWithinPartitions("idx").write.parquet(str(staging))
        (written,) = staging.glob("part-*.parquet")
        written.rename(out / "user.parquet")
        shutil.rmtree(staging)


def _driver_vocabularies(events, impressions, reuse: str | None) -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
    """The item and category vocabularies and their keys (id, key, idx[, category_idx]), on the driver."""
    from pyspark.sql import functions as F

    stats = {
        "item": events.groupBy(F.col("item").alias("id")).agg(  # category: the latest event's (ties: largest)
            F.count("*").alias("count"), F.max(F.struct("ts", "category")).getField("category").alias("category")),
        "category": events.groupBy(F.col("category").alias("id")).agg(F.count("*").alias("count")),
    }
    stats = {k: v.toArrow() for k, v in stats.items()}
    if impressions is not None:  # ids seen only in impressions join the vocabulary with count 0
        seen = impressions.groupBy("item").agg(F.min("category").alias("category")).toArrow()
        categories = impressions.select("category").distinct().toArrow()["category"]
        seen_ids = {"item": seen["item"], "category": categories}
        for name, ids in seen_ids.items():
            new = ids.filter(pc.invert(pc.is_in(ids, stats[name]["id"])))
            extra = {"id": new, "count": pa.array(np.zeros(len(new), np.int64))}
            if name == "item":
                extra["category"] = pc.take(seen["category"], pc.index_in(new, seen["item"]))
            stats[name] = pa.concat_tables([stats[name], pa.table(extra).select(stats[name].column_names)],
                                           promote_options="permissive")
    if reuse:
        vocab = {name: pq.read_table(Path(reuse) / f"{name}.parquet") for name in ("category", "item")}
    else:
        vocab = {}
        for name in ("category", "item"):
            table = stats[name].sort_by([("count", "descending"), ("id", "ascending")])
            n = table.num_rows + schema.FIRST_IDX
            columns = {"id": pa.concat_arrays([pa.array(["<pad>", "<oov>"]), table["id"].combine_chunks()]),
                       "idx": pa.array(np.arange(n, dtype=np.int32)),
                       "count": pa.concat_arrays([pa.array([0, 0], pa.int64()),
                                                  table["count"].combine_chunks().cast(pa.int64())])}
            if name == "item":
                cat_idx = pc.index_in(table["category"], vocab["category"]["id"])
                columns["category_idx"] = pa.concat_arrays(
                    [pa.array([schema.PAD_IDX, schema.OOV_IDX], pa.int32()),
                     pc.fill_null(cat_idx, schema.OOV_IDX).combine_chunks().cast(pa.int32())])
            vocab[name] = pa.table(columns, schema=schema.ITEM_VOCAB if name == "item" else schema.VOCAB)
    keys = {}
    for name in ("item", "category"):
        ids = stats[name]["id"].combine_chunks().sort()
        known = vocab[name].filter(pc.greater_equal(vocab[name]["idx"], schema.FIRST_IDX))
        idx = pc.fill_null(pc.take(known["idx"], pc.index_in(ids, known["id"])), schema.OOV_IDX).cast(pa.int32())
        keys[name] = pa.table({"id": ids, "key": pa.array(np.arange(len(ids), dtype=np.int32)), "idx": idx})
    # One category per item everywhere (its latest event's, as in the vocabulary): histories and targets agree.
    item_stats = stats["item"].sort_by("id")
    item_category = pc.index_in(item_stats["category"], vocab["category"]["id"])
    keys["item"] = keys["item"].append_column(
        "category_idx", pc.fill_null(item_category, schema.OOV_IDX).cast(pa.int32()).combine_chunks())
    return vocab, keys
