"""build-features: raw behaviour logs -> validated, point-in-time-correct DIEN samples (PySpark).

    raw files --structural checks--> Spark readers --row rules--> clean events   (+ rejects with reasons)
    clean events --vocabularies--> dense ids --one shuffle by user--> Spark SQL sample builder
    --> OUT/{train,valid,test,requests,vocab,rejects,validation}/ + manifest.json   (atomic rename)

Runs on local Spark by default and on a cluster with `--master`; the sample rules are those of
`dien_batch.data.samples`, built in Spark SQL by `spark_jobs.samples`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dien_batch import feature_spec, schema, ui
from dien_batch.data import samples as builder
from dien_batch.data.formats import find_meta, format_spec, impressions_spec, item_table_spec, parse_columns, sniff
from dien_batch.errors import DataValidationError, UsageError
from dien_batch.io import Timer, atomic_output_dir, data_files, hash_inputs, library_versions, read_json, write_json

from . import quality
from .fields import FIELDS_JSON, SideFields, numeric_stats
from .readers import good_rows, read_table, resolve
from .samples import SampleBuilder
from .vocabulary import NAMES as VOCABS
from .vocabulary import Vocabulary

MIN_TS_DEFAULT = "1995-01-01"
POSITIVE_RATE_BOUNDS = (0.0005, 0.9995)
SPLIT_DIRS = dict(enumerate(builder.SPLITS))
UNKNOWN_CATEGORY = "<unknown>"  # the category of an item the item table does not know
MIN_KNOWN_SHARE = 0.01  # a reused vocabulary that knows fewer of the users and of the items is from elsewhere
ROW_GROUP_BYTES = 16 * 1024 * 1024  # small row groups: training shuffles by row group


@dataclass(frozen=True)
class BuildConfig:
    events: str
    out: str
    fmt: str = "auto"
    meta: str | None = None
    impressions: str | None = None
    columns: str | None = None
    sep: str | None = None
    meta_columns: str | None = None
    category_sep: str | None = None
    behaviors: str = "pv,buy,cart,fav"
    max_len: int = 100
    samples: str = "all-prefixes"
    max_samples_per_user: int = 20
    split: str = "last"
    valid_fraction: float = 0.1
    candidates: int = 20
    aux_neg: str = "popularity"
    vocab: str | None = None
    min_ts: str | None = None
    max_ts: str | None = None
    until: str | None = None
    candidate_table: str | None = None
    feature_spec: str | None = None
    seed: int = 0
    master: str = "local[2]"
    driver_memory: str = "4g"
    spark_conf: tuple[str, ...] = ()  # spark.KEY=VALUE settings for the session


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


def _with_validation_window(params: builder.SampleParams, targets, fraction: float) -> str:
    """`time:CUT:FROM`: the latest `fraction` of the targets before the cut (by time) validate."""
    from pyspark.sql import functions as F

    cut = int(params.split_value)
    quantile = targets.filter(F.col("ts") < cut).approxQuantile("ts", [1.0 - fraction], 1e-4)
    return f"time:{cut}:{int(quantile[0]) if quantile else cut}"


SPARK_TYPES = {pa.int8(): "tinyint", pa.int32(): "int", pa.int64(): "bigint", pa.float32(): "float",
               pa.float64(): "double", pa.string(): "string"}


def spark_type(t: pa.DataType) -> str:
    """The Spark SQL type name of an Arrow type (scalars and lists of them)."""
    return f"array<{spark_type(t.value_type)}>" if pa.types.is_list(t) else SPARK_TYPES[t]


def arrow_to_ddl(arrow_schema: pa.Schema) -> str:
    return ", ".join(f"`{f.name}` {spark_type(f.type)}" for f in arrow_schema)


class Inputs:
    """Resolved inputs: the format, its adapter, files per table, the timestamp range."""

    def __init__(self, cfg: BuildConfig, context: list[feature_spec.Field] = ()):
        """context: the spec's context fields, columns of the table the samples come from (impressions
        where there are any, else events), read as the roles c_<name>."""
        fmt, why = (cfg.fmt, "given") if cfg.fmt != "auto" else sniff(cfg.events)
        ui.info(f"format: {fmt} ({why})")
        self.fmt, self.reason = fmt, why
        item_table = None
        if fmt in ("csv", "parquet") and cfg.meta:
            item_table = item_table_spec(cfg.meta, parse_columns(cfg.meta_columns), cfg.category_sep)
        elif cfg.meta_columns:
            raise UsageError("--meta-columns needs --meta ITEM_TABLE and --format csv or parquet")
        self.spec = format_spec(fmt, parse_columns(cfg.columns), cfg.sep, item_table, cfg.category_sep)
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
        self.until = _epoch(cfg.until, "--until") if cfg.until else None
        self.behaviors = [b.strip() for b in cfg.behaviors.split(",") if b.strip()]
        self.context = [f.column for f in context]
        specs = {"events": self.spec.events}
        if "impressions" in self.paths:
            specs["impressions"] = impressions_spec(self.paths["impressions"])
        holder = "impressions" if "impressions" in specs else "events"
        if context and specs[holder].reader == "pyliteral":
            raise UsageError(f"--feature-spec [context]: the {fmt} format's {holder} have no columns to read")
        specs[holder] = replace(specs[holder], columns={**specs[holder].columns, **{f.column: f.name for f in context}})
        self.tables = {"events": resolve("events", data_files(events), specs["events"])}
        if "meta" in self.paths:
            self.tables["meta"] = resolve("meta", data_files(self.paths["meta"]), self.spec.meta)
        if "impressions" in self.paths:
            self.tables["impressions"] = resolve("impressions", data_files(self.paths["impressions"]),
                                                 specs["impressions"])


def _count_by_reason(df) -> tuple[int, int, dict[str, int], int]:
    """(rows, filtered, {reason: rows}, used rows whose item had no category) in one aggregation pass."""
    from pyspark.sql import functions as F

    unknown = F.col("_unknown_category") if "_unknown_category" in df.columns else F.lit(False)
    total, filtered, rejected, without_category = 0, 0, {}, 0
    for row in df.groupBy("_reason", "_filtered", unknown.alias("_u")).agg(F.count("*").alias("n")).collect():
        total += row["n"]
        if row["_reason"] is not None:
            rejected[row["_reason"]] = rejected.get(row["_reason"], 0) + row["n"]
        elif row["_filtered"]:
            filtered += row["n"]
        elif row["_u"]:
            without_category += row["n"]
    return total, filtered, rejected, without_category


def _not_yet(inputs: Inputs):
    """True for a row at or after --until: not bad, just later than the data being built (filtered)."""
    from pyspark.sql import functions as F

    return F.lit(False) if inputs.until is None else F.coalesce(F.col("ts") >= inputs.until, F.lit(False))


def item_categories(spark, inputs: Inputs, name: str = "category"):
    """(item, `name`): each item's category in the item table (`--meta`), one per item."""
    from pyspark.sql import functions as F

    meta = read_table(spark, inputs.tables["meta"])
    return meta.filter(F.col("_reason").isNull()).groupBy("item").agg(F.min("category").alias(name))


def _event_rows(spark, inputs: Inputs, with_source: bool = False):
    """Every event row with `_reason` (row rules) and `_filtered` (excluded by --behaviors or --until)."""
    from pyspark.sql import functions as F

    ev = read_table(spark, inputs.tables["events"], inputs.ts_range, with_source)
    if "meta" in inputs.tables:  # an item absent from the item table (or without a category there): <unknown>
        ev = (ev.drop("category").join(item_categories(spark, inputs), "item", "left")
              .withColumn("_unknown_category", F.col("category").isNull())
              .withColumn("category", F.coalesce("category", F.lit(UNKNOWN_CATEGORY))))
    selected = F.col("behavior").isin(*inputs.behaviors) if "behavior" in ev.columns else F.lit(True)
    return ev.withColumn("_filtered", ~F.coalesce(selected, F.lit(False)) | _not_yet(inputs))


def _impression_rows(spark, inputs: Inputs, with_source: bool = False):

    rows = read_table(spark, inputs.tables["impressions"], inputs.ts_range, with_source)
    return rows.withColumn("_filtered", _not_yet(inputs))


def _good(df, inputs: Inputs, *columns):
    from pyspark.sql import functions as F

    good = good_rows(df.drop("_reason"), inputs.ts_range).filter(~F.col("_filtered"))
    # Optional columns (an impressions table without bid, position or p_true) come out as nulls.
    optional = {"bid": "double", "p_true": "double", "position": "int"}
    return good.select(*[c if c in good.columns else F.lit(None).cast(optional[c]).alias(c) for c in columns])


def _attach_keys(df, vocab: Vocabulary, roles: dict[str, str]):
    """Join `<role>_key` and `<role>_idx` onto a frame by its raw id columns (small tables are broadcast)."""
    for role, name in roles.items():
        df = df.join(vocab.lookup(name, role), role, "left")
    return df


def _sampler(vocab: dict[str, pa.Table], uniform: bool) -> builder.ItemSampler:
    items = vocab["item"].slice(schema.FIRST_IDX)
    return builder.ItemSampler(
        items["idx"].to_numpy(), items["count"].to_numpy(), vocab["item"]["category_idx"].to_numpy(),
        np.asarray(vocab["item"]["id"].to_pylist(), dtype=object),
        np.asarray(vocab["category"]["id"].to_pylist(), dtype=object), uniform=uniform)


def _distinct_events(good_events, vocab: Vocabulary, fields: list[str]):
    """Encoded events (with the item fields and the events' own context fields), one row per (user, item,
    ts): duplicates folded into a count `n`."""
    from pyspark.sql import functions as F

    item_fields = [c for c in fields if c not in good_events.columns]
    enc = _attach_keys(good_events, vocab, {"user": "user"}).join(
        vocab.lookup("item", "item", "category_idx", *item_fields), "item", "left")
    # Partitioned by user once: the de-duplication and every per-user window after it reuse this shuffle.
    return enc.repartition("user_key").groupBy("user_key", "item_key", "ts").agg(
        F.count("*").alias("n"), *[F.first(c).alias(c) for c in ("item_idx", "category_idx", *fields)])


def _distinct_impressions(good_impressions, vocab: Vocabulary, fields: list[str]):
    """Encoded impressions (with the item fields and their own context fields), one row per (request,
    item): repeats folded into a count `n`."""
    from pyspark.sql import functions as F

    item_fields = [c for c in fields if c not in good_impressions.columns]
    enc = _attach_keys(good_impressions, vocab, {"user": "user", "category": "category"}).join(
        vocab.lookup("item", "item", *item_fields), "item", "left")
    fields = ["user_key", "ts", "item_idx", "category_idx", "item", "category", "clicked", "bid", "p_true",
              "position", *fields]
    agg = enc.groupBy("request", "item_key").agg(F.count("*").alias("n"), F.min(F.struct(*fields)).alias("s"))
    return agg.select("request", "n", *[F.col(f"s.{c}").alias(c) for c in fields])


def _item_fields(spark, vocab: dict[str, pa.Table], fields: dict[str, pa.Array]):
    """(item_idx, cat, item_id, category_id, the spec's item fields) of every vocabulary item: what a
    candidate list shows."""
    item = vocab["item"]
    table = pa.table({"item_idx": item["idx"], "cat": item["category_idx"], "item_id": item["id"],
                      "category_id": pc.take(vocab["category"]["id"], item["category_idx"]), **fields})
    return spark.createDataFrame(table.to_pandas())


def _with_side_fields(frame, side: SideFields | None, group: str, on: str):
    """frame with the side table's `group` fields joined on its raw id column `on` (missing: 0 or NaN)."""
    from pyspark.sql import functions as F

    if side is None or group not in side.frames:
        return frame
    joined = frame.join(side.frames[group].withColumnRenamed(group, on), on, "left")
    for f in side.spec.of(group):
        fill = F.lit(float("nan")) if f.kind == "numeric" else F.lit(schema.PAD_IDX)
        joined = joined.withColumn(f.column, F.coalesce(f.column, fill).cast(spark_type(schema.field_type(f))))
    return joined


def _write_splits(samples, tmp: Path, samples_schema: pa.Schema) -> None:
    staging = tmp / "_by_split"
    samples.write.option("parquet.block.size", ROW_GROUP_BYTES).partitionBy("split").parquet(str(staging))
    written = sorted(staging.glob("split=*/*.parquet"))
    # An empty split gets one empty file with the schema Spark wrote (its nullability included): splits concatenate.
    empty = (pq.read_schema(written[0]) if written else samples_schema).empty_table()
    for code, name in SPLIT_DIRS.items():
        src = staging / f"split={code}"
        if src.exists():
            src.rename(tmp / name)
        else:
            (tmp / name).mkdir()
            pq.write_table(empty, tmp / name / "part-empty.parquet")
    shutil.rmtree(staging)


def _rejects(spark, inputs: Inputs, vocab: Vocabulary, distinct_events, distinct_imps, too_few_users):
    """Every rejected row: row-rule failures as read (with their file), duplicates, too-short users."""
    from pyspark.sql import functions as F

    def rule_rejects(what, df):
        raw = [c for c in df.columns if c.startswith("raw_")]
        return df.filter(F.col("_reason").isNotNull()).select(
            F.lit(what).alias("input"), F.col("_source").alias("source"), F.col("_reason").alias("reason"),
            *[F.col(c).alias(c[4:]) for c in raw], F.col("_corrupt").alias("record"))

    def ids(role):
        return vocab.lookup(role, role).drop(f"{role}_idx")

    parts = [rule_rejects("events", _event_rows(spark, inputs, with_source=True))]
    if "meta" in inputs.tables:
        parts.append(rule_rejects("meta", read_table(spark, inputs.tables["meta"], with_source=True)))
    dup_events = (distinct_events.filter(F.col("n") > 1)
                  .withColumn("copy", F.explode(F.sequence(F.lit(2), F.col("n"))))
                  .join(ids("user"), "user_key").join(ids("item"), "item_key")
                  .select(F.lit("events").alias("input"), F.lit("duplicate_event").alias("reason"), "user", "item",
                          F.col("ts").cast("string").alias("ts")))
    parts.append(dup_events)
    if too_few_users is not None:
        parts.append(distinct_events.join(too_few_users, "user_key").join(ids("user"), "user_key")
                     .join(ids("item"), "item_key").select(
                         F.lit("events").alias("input"), F.lit("too_few_events").alias("reason"), "user", "item",
                         F.col("ts").cast("string").alias("ts")))
    if distinct_imps is not None:
        parts.append(rule_rejects("impressions", _impression_rows(spark, inputs, with_source=True)))
        parts.append(distinct_imps.filter(F.col("n") > 1)
                     .withColumn("copy", F.explode(F.sequence(F.lit(2), F.col("n"))))
                     .select(F.lit("impressions").alias("input"), F.lit("duplicate_impression").alias("reason"),
                             "request", "item"))
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part, allowMissingColumns=True)
    return out


def field_sizes(root: Path) -> tuple:
    """A built dataset's feature-spec fields, each with its vocabulary size (None for a numeric one)."""
    path = root / "vocab" / FIELDS_JSON
    if not path.exists():
        return ()
    data = read_json(path)
    return tuple((f, data["sizes"].get(f.key)) for f in feature_spec.from_dicts(data["fields"]).fields)


def _validate(spark, root: Path, validator: quality.Validator, sizes: quality.VocabSizes, max_len: int):
    """Run the sample and request suites on a written dataset; returns (rows per split, validator)."""
    from pyspark.sql import functions as F

    fields = [f for f, _ in sizes.fields]
    samples = None
    for name in builder.SPLITS:
        part = spark.read.schema(arrow_to_ddl(schema.with_fields(schema.SAMPLES, fields, "samples"))).parquet(
            str(root / name))
        part = part.withColumn("split", F.lit(name))
        samples = part if samples is None else samples.unionByName(part)
    counts = {r["split"]: {"rows": r["n"], "positive_rate": r["pos"] and round(r["pos"], 6)} for r in
              samples.groupBy("split").agg(F.count("*").alias("n"), F.avg("label").alias("pos")).collect()}
    validator.run("samples", samples, quality.samples_suite(sizes, max_len, POSITIVE_RATE_BOUNDS))
    requests = spark.read.schema(arrow_to_ddl(schema.with_fields(schema.REQUESTS, fields, "requests"))).parquet(
        str(root / "requests"))
    validator.run("requests", requests, quality.requests_suite(sizes, max_len))
    return counts, validator


def _add(counts: dict, what: str, reason: str, n: int) -> None:
    if n:
        counts[what][2][reason] = counts[what][2].get(reason, 0) + n


def run(cfg: BuildConfig, spark=None) -> dict:
    """Build the dataset into cfg.out atomically; returns the manifest."""
    if cfg.candidate_table:
        from .candidates import run as build_candidates

        return build_candidates(cfg, spark)
    from pyspark.sql import functions as F

    from .session import Persisted, parse_conf, spark_session

    timer, started = Timer(), time.perf_counter()
    params = builder.SampleParams(seed=cfg.seed, max_len=cfg.max_len, samples=cfg.samples,
                                  max_samples_per_user=cfg.max_samples_per_user, split=_split_param(cfg.split),
                                  candidates=cfg.candidates)
    if cfg.max_len < 1 or cfg.candidates < 2 or cfg.max_samples_per_user < 1:
        raise UsageError("--max-len and --max-samples-per-user must be >= 1, --candidates >= 2")
    if not 0 < cfg.valid_fraction < 1:
        raise UsageError(f"--valid-fraction must be between 0 and 1, got {cfg.valid_fraction}")
    with timer("structural_checks"):
        spec = _feature_spec(cfg)
        inputs = Inputs(cfg, spec.of("context"))
    review_style = "impressions" not in inputs.tables
    spark = spark or spark_session(cfg.master, driver_memory=cfg.driver_memory, conf=parse_conf(cfg.spark_conf))
    side = SideFields(spark, spec, cfg.vocab) if spec else None  # side tables checked before any long work
    bar = ui.progress(total=6, desc="build-features", unit="step", unit_scale=False)
    keep = Persisted()

    with atomic_output_dir(cfg.out) as tmp:
        with timer("read_and_quarantine"):
            events = _event_rows(spark, inputs)
            counts = {"events": list(_count_by_reason(events))}
            if "meta" in inputs.tables:
                counts["meta"] = list(_count_by_reason(read_table(spark, inputs.tables["meta"])
                                                       .withColumn("_filtered", F.lit(False))))
            # One scan applies the row rules; the vocabulary and encoding passes then read the cache.
            context = inputs.context if review_style else []
            good_events = keep(_good(events, inputs, "user", "item", "category", "ts", *context))
            good_imps = None
            if not review_style:
                impressions = _impression_rows(spark, inputs)
                counts["impressions"] = list(_count_by_reason(impressions))
                good_imps = keep(_good(impressions, inputs, "request", "user", "ts", "item", "category", "clicked",
                                       "bid", "p_true", "position", *inputs.context))
        if params.split_kind == "time":
            params = replace(params, split=_with_validation_window(params, good_imps if good_imps is not None
                                                                   else good_events, cfg.valid_fraction))
        bar.update()
        if counts["events"][0] - counts["events"][1] - sum(counts["events"][2].values()) == 0:
            raise DataValidationError(f"events: every row was rejected or filtered: {counts['events'][2]} "
                                      "(expectation expect_table_row_count_to_be_between failed)")
        with timer("vocabulary"):
            vocab = Vocabulary(spark, good_events, good_imps, cfg.vocab, keep)
            known = vocab.known_share()
            if cfg.vocab and max(known["user"], known["item"]) < MIN_KNOWN_SHARE:
                raise DataValidationError(
                    f"--vocab {cfg.vocab} knows {known['user']:.1%} of this input's users and {known['item']:.1%} "
                    "of its items: a vocabulary from another dataset? (expectation "
                    "expect_column_values_to_be_in_set(vocabulary) failed)")
            vocab.write(tmp / "vocab")
            item_fields = [f.column for f in spec.of("item")]
            if inputs.context:  # encoded in place: ids from the field vocabularies, numbers as doubles
                if review_style:
                    good_events = keep(side.context(good_events))
                else:
                    good_imps = keep(side.context(good_imps))
            if item_fields:
                vocab.keys["item"] = _with_side_fields(vocab.keys["item"], side, "item", "id")
            sizes = replace(vocab.sizes, fields=tuple((f, side.sizes().get(f.key)) for f in spec.fields))
            event_fields = item_fields + (inputs.context if review_style else [])
            distinct_events = keep(_distinct_events(good_events, vocab, event_fields))
            distinct_imps = None if good_imps is None else keep(_distinct_impressions(good_imps, vocab,
                                                                                      item_fields + inputs.context))
        bar.update()
        with timer("samples"):
            too_few = None
            dups = distinct_events.agg(F.sum(F.col("n") - 1)).first()[0] or 0
            _add(counts, "events", "duplicate_event", dups)
            if review_style:
                too_few = distinct_events.groupBy("user_key").agg(F.count("*").alias("e")).filter("e < 2") \
                    .select("user_key")
                _add(counts, "events", "too_few_events", too_few.count())
            else:
                _add(counts, "impressions", "duplicate_impression",
                     distinct_imps.agg(F.sum(F.col("n") - 1)).first()[0] or 0)
            users = _with_side_fields(vocab.keys["user"].toDF("user_id", "user_key", "user_idx"), side, "user",
                                      "user_id")
            by_idx = side.item_columns(vocab.tables["item"]["id"]) if item_fields else {}
            build = SampleBuilder(spark, params, _sampler(vocab.tables, cfg.aux_neg == "uniform"), users,
                                  vocab.rows["user"], distinct_events, _item_fields(spark, vocab.tables, by_idx),
                                  spec, {c: a.to_numpy(zero_copy_only=False) for c, a in by_idx.items()})
            if review_style:
                targets = build.review_targets()
                samples, requests = build.review_samples(targets), build.review_requests(targets)
            else:
                imps = build.impressions(distinct_imps)
                samples, requests = build.impression_samples(imps), build.impression_requests(imps)
            _write_splits(samples, tmp, build.schemas["samples"])
            if side is not None:
                side.write(tmp / "vocab", numeric_stats(tmp / "train", spec, cfg.vocab))
                field_rows = side.counts(vocab.keys["user"], vocab.keys["item"])
        bar.update()
        with timer("requests"):
            requests.write.parquet(str(tmp / "requests"))
            build.unpersist()
        bar.update()
        with timer("rejects"):
            _rejects(spark, inputs, vocab, distinct_events, distinct_imps, too_few).coalesce(1).write.parquet(
                str(tmp / "rejects"))
        bar.update()
        with timer("validation"):
            validator = quality.Validator(tmp / "validation")  # GX drops Spark's cache: run it last
            validator.run("events", good_events, quality.events_suite(inputs.ts_range))  # still cached: no re-read
            keep.release()
            split_counts, validator = _validate(spark, tmp, validator, sizes, cfg.max_len)
        bar.update()
        bar.close()
        n_requests = pq.ParquetDataset(tmp / "requests").read(columns=["hist_len"]).num_rows
        counts = {what: (c[0], c[1], dict(sorted(c[2].items())), c[3]) for what, c in counts.items()}
        manifest = _manifest(cfg, inputs, counts, split_counts, n_requests, sizes, validator, timer, spark,
                             review_style)
        manifest["vocab"]["known_share"] = known  # distinct ids of this input found in the vocabulary
        if side is not None:
            manifest["fields"] = {"spec": cfg.feature_spec, "fields": [f.to_dict() for f in spec.fields],
                                  "vocabulary_sizes": side.sizes(), "side_tables": field_rows}
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        write_json(tmp / "manifest.json", manifest)
        if not all(o.success for o in validator.outcomes):
            _keep_failed_report(tmp, cfg.out)
            failed = "; ".join(f"{o.name}: {o.message()}" for o in validator.outcomes if not o.success)
            raise DataValidationError(f"built data failed validation, nothing published: {failed} "
                                      f"(report kept in {cfg.out}.validation-failed/)")
    return manifest


def _feature_spec(cfg: BuildConfig) -> feature_spec.FeatureSpec:
    """The --feature-spec fields, checked against a reused vocabulary (the same fields, or exit 2)."""
    if not cfg.feature_spec:
        if cfg.vocab and (Path(cfg.vocab) / FIELDS_JSON).exists():
            raise UsageError(f"--vocab {cfg.vocab} was built with a feature spec: pass the same --feature-spec")
        return feature_spec.FeatureSpec()
    spec = feature_spec.load(cfg.feature_spec)
    if cfg.vocab:
        path = Path(cfg.vocab) / FIELDS_JSON
        reused = [feature_spec.Field(**d) for d in read_json(path)["fields"]] if path.exists() else []
        if reused != list(spec.fields):
            raise UsageError(f"--vocab {cfg.vocab} has fields {[f.key for f in reused] or 'none'}, the spec "
                             f"{[f.key for f in spec.fields]}: reuse a vocabulary built with the same spec")
    return spec


def _keep_failed_report(tmp: Path, out: str) -> None:
    target = Path(f"{out}.validation-failed")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(tmp / "validation", target)


def _accounting(total: int, filtered: int, rejected: dict[str, int], without_category: int = 0) -> dict:
    used = total - filtered - sum(rejected.values())
    out = {"rows_in": total, "rows_used": used, "rows_filtered": filtered,
           "rows_rejected": sum(rejected.values()), "rejected_by_reason": rejected}
    if without_category:  # used rows whose item the item table lacks: category <unknown>
        out["rows_used_with_unknown_category"] = without_category
    return out


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


def validate_dataset(features: str, master: str = "local[2]", spark=None, spark_conf: tuple[str, ...] = ()) -> dict:
    """Re-run the sample and request suites on a built dataset; replace its validation/ report."""
    from .session import parse_conf, spark_session

    root = Path(features)
    manifest = read_json(root / "manifest.json")
    sizes = quality.VocabSizes(*(pq.read_metadata(root / "vocab" / f"{n}.parquet").num_rows for n in VOCABS),
                               fields=field_sizes(root))
    spark = spark or spark_session(master, conf=parse_conf(spark_conf))
    with atomic_output_dir(root / "validation") as tmp:
        counts, validator = _validate(spark, root, quality.Validator(tmp), sizes, int(manifest["params"]["max_len"]))
    return {"samples": counts, "validation": validator.summary(),
            "success": all(o.success for o in validator.outcomes)}
