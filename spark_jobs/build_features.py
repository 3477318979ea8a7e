"""build-features: raw behaviour logs -> validated, point-in-time-correct DIEN samples (PySpark).

    raw files --structural checks--> Spark readers --row rules--> clean events   (+ rejects with reasons)
    clean events --vocabularies--> dense ids --per-user sequences--> mapInArrow(core sample builder)
    --> OUT/{train,valid,test,requests,vocab,rejects,validation}/ + manifest.json   (atomic rename)

Runs on local Spark by default and on a cluster with `--master`; the per-user sample logic lives in
`dien_batch.data.samples` and is the same everywhere.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dien_batch import schema, ui
from dien_batch.data import samples as builder
from dien_batch.data.formats import find_meta, format_spec, impressions_spec, parse_columns, sniff
from dien_batch.errors import DataValidationError, UsageError
from dien_batch.io import Timer, atomic_output_dir, data_files, hash_inputs, library_versions, read_json, write_json

from . import quality
from .readers import read_table, resolve

MIN_TS_DEFAULT = "1995-01-01"
POSITIVE_RATE_BOUNDS = (0.0005, 0.9995)
SPLIT_DIRS = dict(enumerate(builder.SPLITS))
VOCABS = ("user", "item", "category")


@dataclass(frozen=True)
class BuildConfig:
    events: str
    out: str
    fmt: str = "auto"
    meta: str | None = None
    impressions: str | None = None
    columns: str | None = None
    sep: str | None = None
    behaviors: str = "pv,buy,cart,fav"
    max_len: int = 100
    samples: str = "all-prefixes"
    max_samples_per_user: int = 20
    split: str = "last"
    candidates: int = 20
    aux_neg: str = "popularity"
    vocab: str | None = None
    min_ts: str | None = None
    max_ts: str | None = None
    seed: int = 0
    master: str = "local[2]"


def _epoch(text: str, option: str) -> int:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{option}: '{text}' is not a date (YYYY-MM-DD or ISO timestamp)") from exc
    return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())


def _split_param(split: str) -> str:
    kind, _, value = split.partition(":")
    if kind == "last" and not value:
        return "last"
    if kind == "time" and value:
        return f"time:{_epoch(value, '--split time')}"
    if kind == "users":
        try:
            frac = float(value)
        except ValueError:
            frac = -1
        if 0 < frac < 0.5:
            return f"users:{frac}"
    raise UsageError(f"--split: expected last, time:YYYY-MM-DD or users:FRACTION (0 < f < 0.5), got '{split}'")


def arrow_to_ddl(arrow_schema: pa.Schema) -> str:
    names = {pa.int8(): "tinyint", pa.int32(): "int", pa.int64(): "bigint", pa.float32(): "float",
             pa.float64(): "double", pa.string(): "string"}

    def spark_type(t: pa.DataType) -> str:
        return f"array<{spark_type(t.value_type)}>" if pa.types.is_list(t) else names[t]

    return ", ".join(f"`{f.name}` {spark_type(f.type)}" for f in arrow_schema)


class Inputs:
    """Resolved inputs: the format, its adapter, files per table, the timestamp range."""

    def __init__(self, cfg: BuildConfig):
        fmt, why = (cfg.fmt, "given") if cfg.fmt != "auto" else sniff(cfg.events)
        ui.info(f"format: {fmt} ({why})")
        self.fmt, self.reason = fmt, why
        self.spec = format_spec(fmt, parse_columns(cfg.columns), cfg.sep)
        events, impressions = Path(cfg.events), cfg.impressions
        if fmt == "synth":
            events, impressions = events / "events", impressions or events / "impressions"
        self.paths = {"events": events}
        if self.spec.meta is not None:
            meta = cfg.meta or find_meta(cfg.events, fmt)
            if meta is None:
                raise UsageError(f"--format {fmt} needs --meta (item -> category metadata)")
            self.paths["meta"] = Path(meta)
        if impressions:
            self.paths["impressions"] = Path(impressions)
        low, high = self.spec.default_ts_range or (MIN_TS_DEFAULT, None)
        self.ts_range = (_epoch(cfg.min_ts or low, "--min-ts"),
                         _epoch(cfg.max_ts, "--max-ts") if cfg.max_ts else
                         _epoch(high, "--max-ts") if high else int(time.time()) + 1)
        self.behaviors = [b.strip() for b in cfg.behaviors.split(",") if b.strip()]
        self.tables = {"events": resolve("events", data_files(events), self.spec.events)}
        if "meta" in self.paths:
            self.tables["meta"] = resolve("meta", data_files(self.paths["meta"]), self.spec.meta)
        if "impressions" in self.paths:
            self.tables["impressions"] = resolve("impressions", data_files(self.paths["impressions"]),
                                                 impressions_spec(self.paths["impressions"]))


def _count_by_reason(df) -> tuple[int, int, dict[str, int]]:
    from pyspark.sql import functions as F

    total, filtered, rejected = 0, 0, {}
    for row in df.groupBy("_reason", "_filtered").agg(F.count("*").alias("n")).collect():
        total += row["n"]
        if row["_reason"] is not None:
            rejected[row["_reason"]] = rejected.get(row["_reason"], 0) + row["n"]
        elif row["_filtered"]:
            filtered += row["n"]
    return total, filtered, dict(sorted(rejected.items()))


def _events_frame(spark, inputs: Inputs, review_style: bool):
    """All event rows with `_reason` (reject) and `_filtered` (excluded by --behaviors)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ev = read_table(spark, inputs.tables["events"], inputs.ts_range)
    meta_rows = None
    if "meta" in inputs.tables:
        meta_rows = read_table(spark, inputs.tables["meta"]).withColumn("_filtered", F.lit(False))
        categories = (meta_rows.filter(F.col("_reason").isNull()).groupBy("item")
                      .agg(F.min("category").alias("category")))
        ev = ev.join(categories, "item", "left")
        ev = ev.withColumn("_reason", F.coalesce("_reason", F.when(F.col("category").isNull(),
                                                                     F.lit("missing_category"))))
    if "behavior" in ev.columns:
        ev = ev.withColumn("_filtered", F.col("_reason").isNull() & ~F.col("behavior").isin(*inputs.behaviors))
    else:
        ev = ev.withColumn("_filtered", F.lit(False))
    good = F.col("_reason").isNull() & ~F.col("_filtered")
    dup = F.row_number().over(Window.partitionBy("user", "item", "ts").orderBy(F.col("_reason").asc_nulls_first(),
                                                                               "_filtered", "_source", "category"))
    ev = ev.withColumn("_reason", F.when(good & (dup > 1), F.lit("duplicate_event")).otherwise(F.col("_reason")))
    if review_style:
        good = F.col("_reason").isNull() & ~F.col("_filtered")
        n_good = F.count(F.when(good, 1)).over(Window.partitionBy("user"))
        ev = ev.withColumn("_reason", F.when(good & (n_good < 2), F.lit("too_few_events")).otherwise(F.col("_reason")))
    return ev, meta_rows


def _impressions_frame(spark, inputs: Inputs):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    imp = read_table(spark, inputs.tables["impressions"], inputs.ts_range).withColumn("_filtered", F.lit(False))
    dup = F.row_number().over(Window.partitionBy("request", "item").orderBy(F.col("_reason").asc_nulls_first(),
                                                                            "_source", "user", "ts"))
    return imp.withColumn("_reason", F.when(F.col("_reason").isNull() & (dup > 1), F.lit("duplicate_impression"))
                          .otherwise(F.col("_reason")))


def _vocab_tables(spark, events, impressions, reuse: str | None) -> dict[str, pa.Table]:
    """Vocabularies: reserved 0 = padding, 1 = OOV, then ids by descending count, ties by id."""
    from pyspark.sql import functions as F

    if reuse:
        return {name: pq.read_table(Path(reuse) / f"{name}.parquet") for name in VOCABS}
    user = events.groupBy(F.col("user").alias("id")).agg(F.count("*").alias("count"))
    item = events.groupBy(F.col("item").alias("id")).agg(F.count("*").alias("count"),
                                                          F.max_by("category", "ts").alias("category"))
    category = events.groupBy(F.col("category").alias("id")).agg(F.count("*").alias("count"))
    if impressions is not None:
        user = user.unionByName(impressions.select(F.col("user").alias("id"), F.lit(0).cast("long").alias("count")))
        item = item.unionByName(impressions.select(F.col("item").alias("id"), F.lit(0).cast("long").alias("count"),
                                                   "category"))
        category = category.unionByName(impressions.select(F.col("category").alias("id"),
                                                           F.lit(0).cast("long").alias("count")))
        user = user.groupBy("id").agg(F.sum("count").alias("count"))
        item = item.groupBy("id").agg(F.sum("count").alias("count"), F.max("category").alias("category"))
        category = category.groupBy("id").agg(F.sum("count").alias("count"))
    out = {}
    for name, df in (("category", category), ("user", user), ("item", item)):
        table = df.toArrow().sort_by([("count", "descending"), ("id", "ascending")])
        n = table.num_rows + schema.FIRST_IDX
        ids = pa.concat_arrays([pa.array(["<pad>", "<oov>"]), table["id"].combine_chunks().cast(pa.string())])
        counts = pa.concat_arrays([pa.array([0, 0], pa.int64()), table["count"].combine_chunks().cast(pa.int64())])
        columns = {"id": ids, "idx": pa.array(np.arange(n, dtype=np.int32)), "count": counts}
        if name == "item":
            cat_index = dict(zip(out["category"]["id"].to_pylist(), range(out["category"].num_rows), strict=True))
            cats = [schema.PAD_IDX, schema.OOV_IDX] + [cat_index.get(c, schema.OOV_IDX)
                                                      for c in table["category"].to_pylist()]
            columns["category_idx"] = pa.array(cats, pa.int32())
        out[name] = pa.table(columns, schema=schema.ITEM_VOCAB if name == "item" else schema.VOCAB)
    return out


def _encode(spark, df, vocab: dict[str, pa.Table], roles: dict[str, str]):
    """Join dense ids onto a frame: role column -> `<name>_idx`, OOV for ids not in the vocabulary."""
    from pyspark.sql import functions as F

    for column, name in roles.items():
        lookup = spark.createDataFrame(vocab[name].select(["id", "idx"]).to_pandas()) \
            .withColumnRenamed("id", column).withColumnRenamed("idx", f"{name}_idx")
        df = df.join(F.broadcast(lookup), column, "left").withColumn(
            f"{name}_idx", F.coalesce(F.col(f"{name}_idx"), F.lit(schema.OOV_IDX)).cast("int"))
    return df


def _sampler(vocab: dict[str, pa.Table], uniform: bool) -> builder.ItemSampler:
    items = vocab["item"].slice(schema.FIRST_IDX)
    return builder.ItemSampler(
        items["idx"].to_numpy(), items["count"].to_numpy(), vocab["item"]["category_idx"].to_numpy(),
        np.asarray(vocab["item"]["id"].to_pylist(), dtype=object),
        np.asarray(vocab["category"]["id"].to_pylist(), dtype=object), uniform=uniform)


def _user_frame(clean_events, clean_impressions):
    """One row per user: the behaviour sequence (sorted by ts, item) and, if any, the impressions."""
    from pyspark.sql import functions as F

    seq = (clean_events.groupBy("user").agg(
        F.first("user_idx").alias("user_idx"),
        F.array_sort(F.collect_list(F.struct("ts", "item_idx", "category_idx"))).alias("ev"))
        .select(F.col("user").alias("user_id"), "user_idx", F.col("ev.item_idx").alias("ev_item"),
                F.col("ev.category_idx").alias("ev_cat"), F.col("ev.ts").alias("ev_ts")))
    if clean_impressions is None:
        return seq
    fields = [F.col("ts"), F.col("request").alias("request_id"), F.col("item_idx").alias("item"),
              F.col("category_idx").alias("cat"), F.col("item").alias("item_id"),
              F.col("category").alias("category_id"), F.col("clicked").alias("label"),
              F.col("bid"), F.col("p_true"), F.col("position")]
    imps = (clean_impressions.groupBy("user").agg(
        F.first("user_idx").alias("user_idx"), F.array_sort(F.collect_list(F.struct(*fields))).alias("imp"))
        .select(F.col("user").alias("user_id"), "user_idx",
                *[F.col(f"imp.{n}").alias(f"imp_{n}") for n in builder.UserImpressions.FIELDS]))
    joined = imps.join(seq.drop("user_idx"), "user_id", "left")
    for name, typ in (("ev_item", "array<int>"), ("ev_cat", "array<int>"), ("ev_ts", "array<bigint>")):
        joined = joined.withColumn(name, F.coalesce(F.col(name), F.array().cast(typ)))
    return joined


def _map(frame, fn, params: builder.SampleParams, sampler_bc, out_schema: pa.Schema):
    def run(batches):
        sampler = sampler_bc.value
        for batch in batches:
            if batch.num_rows:
                yield from fn(batch, params, sampler).to_batches()

    return frame.mapInArrow(run, arrow_to_ddl(out_schema))


def _write_splits(samples, tmp: Path) -> None:
    staging = tmp / "_by_split"
    samples.write.partitionBy("split").parquet(str(staging))
    empty = pa.Table.from_batches([], schema.SAMPLES)
    for code, name in SPLIT_DIRS.items():
        src = staging / f"split={code}"
        if src.exists():
            src.rename(tmp / name)
        else:
            (tmp / name).mkdir()
            pq.write_table(empty, tmp / name / "part-empty.parquet")
    shutil.rmtree(staging)


def _write_rejects(frames: dict, tmp: Path) -> None:
    from pyspark.sql import functions as F

    out = None
    for what, df in frames.items():
        if df is None:
            continue
        raw = [c for c in df.columns if c.startswith("raw_")]
        part = df.filter(F.col("_reason").isNotNull()).select(
            F.lit(what).alias("input"), F.col("_source").alias("source"), F.col("_reason").alias("reason"),
            *[F.col(c).alias(c[4:]) for c in raw])
        out = part if out is None else out.unionByName(part, allowMissingColumns=True)
    out.coalesce(1).write.parquet(str(tmp / "rejects"))


def _validate(spark, root: Path, report_dir: Path, sizes: quality.VocabSizes, max_len: int):
    """Run the sample and request suites on a written dataset; returns (rows per split, validator)."""
    from pyspark.sql import functions as F

    samples = None
    for name in builder.SPLITS:
        part = spark.read.schema(arrow_to_ddl(schema.SAMPLES)).parquet(str(root / name))
        part = part.withColumn("split", F.lit(name))
        samples = part if samples is None else samples.unionByName(part)
    counts = {r["split"]: {"rows": r["n"], "positive_rate": r["pos"] and round(r["pos"], 6)} for r in
              samples.groupBy("split").agg(F.count("*").alias("n"), F.avg("label").alias("pos")).collect()}
    validator = quality.Validator(report_dir)
    validator.run("samples", samples, quality.samples_suite(sizes, max_len, POSITIVE_RATE_BOUNDS))
    requests = spark.read.schema(arrow_to_ddl(schema.REQUESTS)).parquet(str(root / "requests"))
    validator.run("requests", requests, quality.requests_suite(sizes, max_len))
    return counts, validator


def run(cfg: BuildConfig, spark=None) -> dict:
    """Build the dataset into cfg.out atomically; returns the manifest."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from .session import spark_session

    timer, started = Timer(), time.perf_counter()
    params = builder.SampleParams(seed=cfg.seed, max_len=cfg.max_len, samples=cfg.samples,
                                  max_samples_per_user=cfg.max_samples_per_user, split=_split_param(cfg.split),
                                  candidates=cfg.candidates)
    if cfg.max_len < 1 or cfg.candidates < 2 or cfg.max_samples_per_user < 1:
        raise UsageError("--max-len and --max-samples-per-user must be >= 1, --candidates >= 2")
    with timer("structural_checks"):
        inputs = Inputs(cfg)
    review_style = "impressions" not in inputs.tables
    spark = spark or spark_session(cfg.master)
    bar = ui.progress(total=6, desc="build-features", unit="step", unit_scale=False)
    with atomic_output_dir(cfg.out) as tmp:
        with timer("read_and_quarantine"):
            events, meta_rows = _events_frame(spark, inputs, review_style)
            events = events.persist(StorageLevel.MEMORY_AND_DISK)
            counts = {"events": _count_by_reason(events)}
            clean = events.filter(F.col("_reason").isNull() & ~F.col("_filtered")).select("user", "item", "category",
                                                                                         "ts")
            impressions = clean_imps = None
            if meta_rows is not None:
                counts["meta"] = _count_by_reason(meta_rows)
            if not review_style:
                impressions = _impressions_frame(spark, inputs).persist(StorageLevel.MEMORY_AND_DISK)
                counts["impressions"] = _count_by_reason(impressions)
                clean_imps = impressions.filter(F.col("_reason").isNull()).drop("_reason", "_filtered")
        bar.update()
        if counts["events"][0] - counts["events"][1] - sum(counts["events"][2].values()) == 0:
            raise DataValidationError(f"events: every row was rejected or filtered: {counts['events'][2]} "
                                      "(expectation expect_table_row_count_to_be_between failed)")
        with timer("vocabulary"):
            vocab = _vocab_tables(spark, clean, clean_imps, cfg.vocab)
            (tmp / "vocab").mkdir()
            for name, table in vocab.items():
                pq.write_table(table, tmp / "vocab" / f"{name}.parquet")
            sizes = quality.VocabSizes(*(vocab[n].num_rows for n in VOCABS))
            clean_enc = _encode(spark, clean, vocab, {"user": "user", "item": "item", "category": "category"})
            imps_enc = None if clean_imps is None else _encode(
                spark, clean_imps, vocab, {"user": "user", "item": "item", "category": "category"})
        bar.update()
        with timer("samples"):
            users = _user_frame(clean_enc, imps_enc).persist(StorageLevel.MEMORY_AND_DISK)
            sampler = spark.sparkContext.broadcast(_sampler(vocab, cfg.aux_neg == "uniform"))
            make_samples = builder.review_samples if review_style else builder.impression_samples
            out_schema = schema.SAMPLES.append(pa.field("split", pa.int8()))
            _write_splits(_map(users, make_samples, params, sampler, out_schema), tmp)
        bar.update()
        with timer("requests"):
            make_requests = builder.review_requests if review_style else builder.impression_requests
            _map(users, make_requests, params, sampler, schema.REQUESTS).write.parquet(str(tmp / "requests"))
        bar.update()
        with timer("rejects"):
            _write_rejects({"events": events, "meta": meta_rows, "impressions": impressions}, tmp)
        bar.update()
        with timer("validation"):
            split_counts, validator = _validate(spark, tmp, tmp / "validation", sizes, cfg.max_len)
        bar.update()
        bar.close()
        n_requests = pq.ParquetDataset(tmp / "requests").read(columns=["hist_len"]).num_rows
        manifest = _manifest(cfg, inputs, counts, split_counts, n_requests, sizes, validator, timer, spark,
                             review_style)
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        write_json(tmp / "manifest.json", manifest)
        for df in (events, impressions, users):
            if df is not None:
                df.unpersist()
        if not all(o.success for o in validator.outcomes):
            _keep_failed_report(tmp, cfg.out)
            failed = "; ".join(f"{o.name}: {o.message()}" for o in validator.outcomes if not o.success)
            raise DataValidationError(f"built data failed validation, nothing published: {failed} "
                                      f"(report kept in {cfg.out}.validation-failed/)")
    return manifest


def _keep_failed_report(tmp: Path, out: str) -> None:
    target = Path(f"{out}.validation-failed")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(tmp / "validation", target)


def _accounting(total: int, filtered: int, rejected: dict[str, int]) -> dict:
    used = total - filtered - sum(rejected.values())
    return {"rows_in": total, "rows_used": used, "rows_filtered": filtered,
            "rows_rejected": sum(rejected.values()), "rejected_by_reason": rejected}


def _manifest(cfg, inputs, counts, split_counts, n_requests, sizes, validator, timer, spark, review_style) -> dict:
    import pyspark

    return {
        "schema_version": schema.SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": "reviews" if review_style else "impressions",
        "format": {"name": inputs.fmt, "chosen_because": inputs.reason},
        "inputs": {what: {"path": str(path), "sha256": hash_inputs([path]),
                          "empty_files": [str(f) for f in inputs.tables[what].empty_files]}
                   for what, path in inputs.paths.items()},
        "params": {**asdict(cfg), "ts_range": list(inputs.ts_range)},
        "rows": {what: _accounting(*c) for what, c in counts.items()},
        "samples": {name: split_counts.get(name, {"rows": 0, "positive_rate": None}) for name in builder.SPLITS},
        "requests": n_requests,
        "vocab": {"users": sizes.users, "items": sizes.items, "categories": sizes.categories,
                  "reused_from": cfg.vocab},
        "validation": validator.summary(),
        "spark": {"version": pyspark.__version__, "master": spark.sparkContext.master},
        "libraries": library_versions("pyarrow", "great-expectations", "numpy"),
        "timings": timer.seconds,
    }


def validate_dataset(features: str, master: str = "local[2]", spark=None) -> dict:
    """Re-run the sample and request suites on a built dataset; replace its validation/ report."""
    from .session import spark_session

    root = Path(features)
    manifest = read_json(root / "manifest.json")
    sizes = quality.VocabSizes(*(pq.read_metadata(root / "vocab" / f"{n}.parquet").num_rows for n in VOCABS))
    spark = spark or spark_session(master)
    with atomic_output_dir(root / "validation") as tmp:
        counts, validator = _validate(spark, root, tmp, sizes, int(manifest["params"]["max_len"]))
    return {"samples": counts, "validation": validator.summary(),
            "success": all(o.success for o in validator.outcomes)}
