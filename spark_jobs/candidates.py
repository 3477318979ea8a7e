"""build-features for the candidates a user brings: `--candidate-table FILE` -> scoring requests.

    candidate table (request_id, user_id, ts, item_id[, category_id, bid, position, clicked])
    + behaviour log (as for training) + the trained vocabulary
    --> OUT/{requests,vocab,rejects,validation}/ + manifest.json      (atomic rename)

Each request's history is the user's behaviour strictly before the request's `ts`, the last `--max-len`
events, built exactly as the training samples' histories are (the same de-duplication, the same one
category per item, ties in time by item): a candidate table made from a labeled test log gives the
labeled path's requests. Everything happens in Spark: events are grouped per user and joined to the
requests on the executors; no history passes through the driver.

Candidates: a category missing from the table comes from the item table (`--meta`), else from the
vocabulary, else `<unknown>`; users and items the vocabulary lacks are scored as out-of-vocabulary and
counted by reason in the manifest; a repeated (request_id, item_id) is a reject. With `--feature-spec`
(the training features' own), the user and item side tables are joined as for training, history steps
and candidates get their item fields, and a request's context is its candidate rows' (the first row's).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from dataclasses import replace as with_changes
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from dien_batch import schema, ui
from dien_batch.data.formats import candidates_spec
from dien_batch.errors import DataValidationError, UsageError
from dien_batch.io import Timer, atomic_output_dir, data_files, hash_inputs, library_versions, write_json

from . import quality
from .build_features import (
    UNKNOWN_CATEGORY,
    BuildConfig,
    Inputs,
    _accounting,
    _count_by_reason,
    _distinct_events,
    _event_rows,
    _feature_spec,
    _good,
    _with_side_fields,
    arrow_to_ddl,
    item_categories,
    spark_type,
)
from .fields import SideFields, numeric_stats
from .readers import read_table, resolve
from .samples import broadcast_small
from .vocabulary import Vocabulary


def _lookup(spark, table, names: list[str]):

    return broadcast_small(spark.createDataFrame(table.to_pandas()).toDF(*names), table.num_rows)


def run(cfg: BuildConfig, spark=None) -> dict:
    """Build scoring requests for cfg.candidate_table into cfg.out atomically; returns the manifest."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from .session import Persisted, parse_conf, spark_session

    if not cfg.vocab:
        raise UsageError("--candidate-table needs --vocab TRAINED_FEATURES/vocab: candidates are scored with the "
                         "trained model's ids")
    timer, started = Timer(), time.perf_counter()
    with timer("structural_checks"):
        spec = _feature_spec(cfg)
        inputs = Inputs(with_changes(cfg, impressions=None, split="last"))
        inputs.tables.pop("impressions", None)  # a synth directory's own impressions are not the candidates
        inputs.paths.pop("impressions", None)
        table_path = Path(cfg.candidate_table)
        table_spec = candidates_spec(table_path)
        context = {f.column: f.name for f in spec.of("context")}  # columns of the candidate table
        table_spec = with_changes(table_spec, columns={**table_spec.columns, **context})
        cand_table = resolve("candidates", data_files(table_path), table_spec)
    spark = spark or spark_session(cfg.master, driver_memory=cfg.driver_memory, conf=parse_conf(cfg.spark_conf))
    side = SideFields(spark, spec, cfg.vocab) if spec else None
    bar = ui.progress(total=4, desc="build-features (candidates)", unit="step", unit_scale=False)
    keep = Persisted()
    with atomic_output_dir(cfg.out) as tmp:
        with timer("read_and_quarantine"):
            events = _event_rows(spark, inputs)
            counts = {"events": list(_count_by_reason(events))}
            good_events = keep(_good(events, inputs, "user", "item", "category", "ts"))
            raw = read_table(spark, cand_table, inputs.ts_range).withColumn("_filtered", F.lit(False))
            optional = [c for c in ("given_category", "bid", "position", "clicked") if c in raw.columns]
            rows = _good(raw, inputs, "request", "user", "ts", "item", *optional, *context).withColumn(
                "_order", F.monotonically_increasing_id())
            if context:
                rows = side.context(rows)
            # A repeated (request, item): the first row is kept, the others are rejects.
            first = Window.partitionBy("request", "item").orderBy("_order")
            rows = keep(rows.withColumn("_copy", F.row_number().over(first)))
            counts["candidates"] = list(_count_by_reason(raw))
            duplicates = rows.filter(F.col("_copy") > 1)
            n_duplicates = duplicates.count()
            if n_duplicates:
                counts["candidates"][2]["duplicate_candidate"] = n_duplicates
            rows = rows.filter(F.col("_copy") == 1)
        bar.update()
        with timer("vocabulary"):
            vocab = Vocabulary(spark, good_events, None, cfg.vocab, keep)
            vocab.write(tmp / "vocab")
            item_fields = [f.column for f in spec.of("item")]
            if item_fields:
                vocab.keys["item"] = _with_side_fields(vocab.keys["item"], side, "item", "id")
            if side is not None:
                side.write(tmp / "vocab", numeric_stats(None, spec, cfg.vocab))
            sizes = with_changes(vocab.sizes, fields=tuple((f, side.sizes().get(f.key)) for f in spec.fields))
            distinct = _distinct_events(good_events, vocab, item_fields)
        bar.update()
        with timer("requests"):
            requests, oov = _requests(spark, cfg, rows, optional, distinct, vocab, inputs, side)
            requests.write.parquet(str(tmp / "requests"))
        bar.update()
        with timer("rejects"):
            rejects = raw.filter(F.col("_reason").isNotNull()).select(
                F.lit("candidates").alias("input"), F.col("_reason").alias("reason"),
                *[F.col(c).alias(c[4:]) for c in raw.columns if c.startswith("raw_")],
                F.col("_corrupt").alias("record"))
            rejects = rejects.unionByName(duplicates.select(
                F.lit("candidates").alias("input"), F.lit("duplicate_candidate").alias("reason"),
                F.col("request").alias("request"), F.col("user").alias("user"), F.col("item").alias("item")),
                allowMissingColumns=True)
            rejects.coalesce(1).write.parquet(str(tmp / "rejects"))
        keep.release()
        with timer("validation"):
            validator = quality.Validator(tmp / "validation")
            layout = schema.with_fields(schema.REQUESTS, spec.fields, "requests")
            written = spark.read.schema(arrow_to_ddl(layout)).parquet(str(tmp / "requests"))
            validator.run("requests", written, quality.requests_suite(sizes, cfg.max_len))
        bar.update()
        bar.close()
        n_requests = pq.ParquetDataset(tmp / "requests").read(columns=["hist_len"]).num_rows
        manifest = {
            "schema_version": schema.SCHEMA_VERSION, "kind": "candidates",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "format": {"name": inputs.fmt, "chosen_because": inputs.reason},
            "inputs": {"events": {"path": str(cfg.events), "sha256": hash_inputs([cfg.events])},
                       "candidates": {"path": str(table_path), "sha256": hash_inputs([table_path])}},
            "params": {**asdict(cfg), "ts_range": list(inputs.ts_range)},
            "rows": {what: _accounting(*c) for what, c in counts.items()},
            "requests": n_requests, "out_of_vocabulary": oov,
            "vocab": {"users": sizes.users, "items": sizes.items, "categories": sizes.categories,
                      "reused_from": cfg.vocab},
            "validation": validator.summary(), "libraries": library_versions("pyarrow", "great-expectations"),
            "timings": timer.seconds, "seconds": round(time.perf_counter() - started, 2),
        }
        write_json(tmp / "manifest.json", manifest)
        if not all(o.success for o in validator.outcomes):
            failed = "; ".join(f"{o.name}: {o.message()}" for o in validator.outcomes if not o.success)
            raise DataValidationError(f"built requests failed validation, nothing published: {failed}")
    return manifest


def _requests(spark, cfg: BuildConfig, rows, optional: list[str], distinct, vocab: Vocabulary, inputs,
              side: SideFields | None):
    """One row per request in the REQUESTS schema (with the feature spec's columns), and the
    out-of-vocabulary counts."""
    from pyspark.sql import functions as F

    spec = side.spec if side is not None else None
    item_fields = [f.column for f in spec.of("item")] if spec else []
    request_fields = [f.column for f in spec.fields if f.group != "item"] if spec else []
    context = [f.column for f in spec.of("context")] if spec else []

    users = vocab.reused("user").select(F.col("id").alias("user"), F.col("idx").alias("user_idx"))
    user_keys = vocab.lookup("user", "user").drop("user_idx")  # whose events we hold
    tables = vocab.tables
    items = _lookup(spark, tables["item"].select(["id", "idx", "category_idx"]), ["item", "item_idx", "vocab_cat"])
    categories = _lookup(spark, tables["category"].select(["id", "idx"]), ["category_id", "cat_idx"])
    cand = rows.join(users, "user", "left").join(user_keys, "user", "left").join(items, "item", "left")
    if "meta" in inputs.tables:  # the item table's category for candidates the file gives none
        cand = cand.join(item_categories(spark, inputs, "meta_category"), "item", "left")
    vocab_names = _lookup(spark, tables["category"].select(["idx", "id"]), ["vocab_cat", "vocab_category"])
    cand = cand.join(vocab_names, "vocab_cat", "left")
    given = F.col("given_category") if "given_category" in optional else F.lit(None).cast("string")
    given = F.when(F.trim(given) != "", F.trim(given))
    from_meta = F.col("meta_category") if "meta" in inputs.tables else F.lit(None).cast("string")
    in_vocab = F.when(F.col("vocab_cat") > schema.OOV_IDX, F.col("vocab_category"))
    cand = cand.withColumn("category_id", F.coalesce(given, from_meta, in_vocab, F.lit(UNKNOWN_CATEGORY)))
    cand = cand.join(categories, "category_id", "left")
    cand = cand.select(
        "request", "user", "ts", "_order", F.coalesce("user_key", F.lit(-1)).alias("user_key"),
        F.coalesce("user_idx", F.lit(schema.OOV_IDX)).alias("user_idx"), F.col("item").alias("item_id"),
        F.coalesce("item_idx", F.lit(schema.OOV_IDX)).alias("item_idx"), "category_id",
        F.coalesce("cat_idx", F.lit(schema.OOV_IDX)).alias("category_idx"),
        (F.col("bid") if "bid" in optional else F.lit(None)).cast("double").alias("bid"),
        (F.col("position") if "position" in optional else F.lit(None)).cast("int").alias("position"),
        (F.col("clicked") if "clicked" in optional else F.lit(None)).cast("int").alias("label"), *context)
    cand = _with_side_fields(_with_side_fields(cand, side, "user", "user"), side, "item", "item_id").persist()
    oov = cand.agg(
        F.countDistinct(F.when(F.col("user_idx") == schema.OOV_IDX, F.col("user"))).alias("users"),
        F.sum((F.col("item_idx") == schema.OOV_IDX).cast("int")).alias("candidates_with_unknown_item"),
        F.sum((F.col("category_idx") == schema.OOV_IDX).cast("int")).alias("candidates_with_unknown_category"),
        F.countDistinct(F.when(F.col("user_idx") == schema.OOV_IDX, F.col("request"))).alias(
            "requests_with_unknown_user")).first().asDict()
    oov = {"unknown_users": oov["users"], **{k: v for k, v in oov.items() if k != "users"}}
    fields = ["_order", "item_id", "item_idx", "category_id", "category_idx", "bid", "position", "label",
              *item_fields]
    per_request = cand.groupBy("request", "user", "ts", "user_key", "user_idx").agg(
        F.array_sort(F.collect_list(F.struct(*fields))).alias("c"),
        *[F.min_by(c, "_order").alias(c) for c in request_fields])  # the request's first row's
    # The user's de-duplicated events (one category per item), ordered by (time, item) as for training.
    history = distinct.groupBy("user_key").agg(F.array_sort(F.collect_list(
        F.struct("ts", "item_idx", "category_idx", *item_fields))).alias("ev"))
    req = per_request.join(history, "user_key", "left").withColumn(
        "before", F.filter(F.coalesce("ev", F.array()), lambda e: e["ts"] < F.col("ts")))
    n = F.size("before")
    req = req.withColumn("h", F.when(n > cfg.max_len, F.slice("before", n - cfg.max_len + 1, cfg.max_len))
                         .otherwise(F.col("before")))
    labels = F.when(F.exists("c", lambda x: x["label"].isNotNull()), F.col("c.label"))
    out = req.select(
        F.col("request").alias("request_id"), F.col("user").alias("user_id"), F.col("user_idx").cast("int"),
        F.col("ts").cast("long"), F.col("h.item_idx").cast("array<int>").alias("hist_item_idx"),
        F.col("h.category_idx").cast("array<int>").alias("hist_category_idx"),
        F.size("h").cast("int").alias("hist_len"),
        F.when(F.size("h") > 0, F.element_at("h", -1)["ts"]).cast("long").alias("hist_last_ts"),
        F.col("c.item_id").alias("cand_item_id"), F.col("c.category_id").alias("cand_category_id"),
        F.col("c.item_idx").cast("array<int>").alias("cand_item_idx"),
        F.col("c.category_idx").cast("array<int>").alias("cand_category_idx"),
        labels.cast("array<int>").alias("cand_label"),
        F.when(F.exists("c", lambda x: x["bid"].isNotNull()), F.col("c.bid")).alias("cand_bid"),
        F.lit(None).cast("array<double>").alias("cand_p_true"),
        F.when(F.exists("c", lambda x: x["position"].isNotNull()), F.col("c.position")).alias("cand_position"),
        *request_fields, *[F.col("h")[c].alias(f"hist_{c}") for c in item_fields],
        *[F.col("c")[c].alias(f"cand_{c}") for c in item_fields])
    layout = schema.with_fields(schema.REQUESTS, spec.fields if spec else (), "requests")
    return out.select(*[F.col(f.name).cast(spark_type(f.type)) for f in layout]), oov
