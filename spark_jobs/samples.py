"""The sample builder in Spark SQL: windows per user, histories as array slices, hash-seeded draws.

    distinct events --window by user, (ts, item) order--> positions and aux negatives
    --> one sorted array per user (its sequence) --> targets and splits (array positions), the history
    strictly before each (a slice) --> samples (each target and its negative, or the logged
    impressions) and scoring requests (hash-seeded candidate draws)

No row leaves the JVM and no Python runs per user. Every random draw is Spark's xxhash64 of (seed, user
id, position, salt[, j]) mapped to an integer point of the items' weight intervals, and the item that
holds the point is found by an equi-join on a broadcast table of buckets, so the outputs equal those of
the NumPy reference builder (`dien_batch.data.samples`, which states the rules) for the same input and
seed, whatever the partitioning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dien_batch import schema
from dien_batch.data import samples as rules
from dien_batch.feature_spec import FeatureSpec

from .session import Persisted

BROADCAST_ROWS = 2_000_000  # lookup tables up to this size are broadcast


def _F():
    from pyspark.sql import functions as F

    return F


def uniform(seed: int, *keys):
    """Uniform [0, 1) doubles from (seed, *keys) as LONGs: `dien_batch.data.samples.hash_uniform` in SQL."""
    F = _F()
    h = F.xxhash64(*[F.lit(k).cast("long") if isinstance(k, int) else k.cast("long") for k in (seed, *keys)])
    return F.shiftrightunsigned(h, 11).cast("double") * F.lit(2.0**-53)


def broadcast_small(df, rows: int):
    return _F().broadcast(df) if rows <= BROADCAST_ROWS else df


class ItemDraws:
    """`ItemSampler`'s draws as joins: a weight table (lo, w by item) and a bucket table that lists, for
    each bucket of `width` points, the items whose interval [lo, hi) meets it."""

    def __init__(self, spark, sampler: rules.ItemSampler, fields: dict[str, np.ndarray] | None = None):
        """fields: item field columns (a feature spec's i_*) indexed by item idx; a draw returns them too."""
        F = _F()
        self.fields = list(fields or {})
        self.total, self.first, self.count = sampler.total, int(sampler.items[0]), len(sampler.items)
        self.width = -(-self.total // self.count)  # ceil: about one item per bucket
        weight, hi = sampler.weight_of[sampler.items], sampler.hi
        lo = hi - weight
        self.weights = broadcast_small(spark.createDataFrame(pd.DataFrame(
            {"_w_item": sampler.items, "_w_lo": lo, "_w": weight})), self.count)
        first_b, last_b = lo // self.width, (hi - 1) // self.width
        n = (last_b - first_b + 1).astype(np.int64)
        owner = np.repeat(np.arange(self.count), n)
        bucket = first_b[owner] + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        buckets = pd.DataFrame({"_b_bucket": bucket, "_b_lo": lo[owner], "_b_hi": hi[owner],
                                "_b_item": sampler.items[owner],
                                "_b_cat": sampler.item_category[sampler.items][owner].astype(np.int32),
                                **{f"_b_{c}": values[sampler.items][owner] for c, values in (fields or {}).items()}})
        self.buckets = broadcast_small(spark.createDataFrame(buckets), len(buckets))
        self.F = F

    def _point(self, u, span):
        F = self.F
        return F.least(F.floor(u * span).cast("long"), span - 1)

    def _at(self, frame, point, item: str, category: str, prefix: str = ""):
        """frame with `item`, `category` (and its fields as `prefix` + column): the item whose interval
        holds `point`."""
        F = self.F
        frame = frame.withColumn("_r", point).withColumn("_bucket", F.expr(f"_r div {self.width}"))
        r = F.col("_r")
        hit = (F.col("_bucket") == F.col("_b_bucket")) & (r >= F.col("_b_lo")) & (r < F.col("_b_hi"))
        joined = frame.join(self.buckets, hit)
        joined = joined.withColumn(item, F.col("_b_item").cast("int")).withColumn(category, F.col("_b_cat").cast("int"))
        for c in self.fields if prefix else ():
            joined = joined.withColumn(prefix + c, F.col(f"_b_{c}"))
        return joined.drop("_r", "_bucket", *self.buckets.columns)

    def excluding(self, frame, u, exclude: str, item: str, category: str, prefix: str = ""):
        """One draw per row from the distribution without the row's `exclude` item (`draw_excluding`)."""
        F = self.F
        frame = frame.join(self.weights, F.col(exclude) == F.col("_w_item"), "left")
        weight, lo = F.coalesce("_w", F.lit(0)), F.coalesce("_w_lo", F.lit(0))
        r = self._point(u, F.lit(self.total) - weight)
        return self._at(frame, F.when(r >= lo, r + weight).otherwise(r), item, category, prefix).drop(
            "_w_item", "_w_lo", "_w")

    def plain(self, frame, u, item: str, category: str):
        """One draw per row from the whole distribution."""
        return self._at(frame, self._point(u, self.F.lit(self.total).cast("long")), item, category)


def _split_code(params: rules.SampleParams, keep_n: int | None, ts, rank, user_u):
    """Split code (0 train, 1 valid, 2 test, -1 unused): `dien_batch.data.samples._split_of_rank` in SQL,
    for rows that are all eligible. `rank` counts from the user's last row (0 = last; a time split: on
    the row's side of the cut); keep_n None keeps every row."""
    F = _F()

    def within(r):
        return F.lit(True) if keep_n is None else r < keep_n

    kind = params.split_kind
    if kind == "last":
        code = F.when(rank == 0, 2).when(rank == 1, 1).when(within(rank - 2), 0)
    elif kind == "time":
        kept = within(rank)
        code = (F.when(kept & (ts >= int(params.split_value)), 2).when(kept & (ts >= int(params.valid_from)), 1)
                .when(kept, 0))
    elif kind == "users":
        frac = params.split_value
        code = F.when(within(rank), F.when(user_u < frac, 2).when(user_u < 2 * frac, 1).otherwise(0))
    else:
        raise ValueError(f"unknown split '{params.split}'")
    return F.coalesce(code, F.lit(-1)).cast("tinyint")


def with_history(frame, max_len: int, fields: list[str] = ()):
    """frame (with `seq`, a user's sorted sequence, and `end`, the count of its events before the
    target) with the history columns of the sample schema (and of the item fields) in place of `seq`."""
    F = _F()
    end = F.col("end")
    start = F.greatest(end - max_len, F.lit(0))
    h = F.slice(F.col("seq"), start + 1, end - start)
    return frame.select("*", h["item_idx"].alias("hist_item_idx"), h["category_idx"].alias("hist_category_idx"),
                        h["neg_item_idx"].alias("neg_item_idx"), h["neg_category_idx"].alias("neg_category_idx"),
                        F.size(h).cast("int").alias("hist_len"),
                        F.when(F.size(h) > 0, F.element_at(h, -1)["ts"]).cast("long").alias("hist_last_ts"),
                        *[h[c].alias(f"hist_{c}") for c in fields], *[h[f"neg_{c}"].alias(f"neg_{c}") for c in fields],
                        ).drop("seq")


def _select(frame, columns: dict, target, extra=()):
    """frame's columns in the order and types of `target` (an Arrow schema); absent ones null."""
    from .build_features import spark_type

    F = _F()
    out = []
    for field in target:
        col = columns.get(field.name, F.col(field.name) if field.name in frame.columns else F.lit(None))
        out.append(col.cast(spark_type(field.type)).alias(field.name))
    return frame.select(*out, *extra)


class SampleBuilder:
    """The samples and requests of one build, from de-duplicated encoded events (and impressions)."""

    def __init__(self, spark, params: rules.SampleParams, sampler: rules.ItemSampler, users, n_users: int,
                 events, item_fields, spec: FeatureSpec = FeatureSpec(), sampler_fields=None):
        """users: (user_key, user_id, user_idx, user fields); events: (user_key, item_idx, category_idx, ts,
        item fields), one row per distinct event, ideally partitioned by user_key; item_fields: (item_idx,
        cat, item_id, category_id, item fields) for every vocabulary item; spec: the feature spec's fields,
        sampler_fields its item field columns by item idx."""
        from pyspark.sql import Window

        F = _F()
        self.F, self.W, self.params = F, Window, params
        self.fields = [f.column for f in spec.of("item")]
        self.context = [f.column for f in spec.of("context")]  # the target's own: its event's or impression's
        self.user_columns = [f.column for f in spec.fields if f.group != "item"]
        self.schemas = {k: schema.with_fields(base, spec.fields, k)
                        for k, base in (("samples", schema.SAMPLES), ("requests", schema.REQUESTS))}
        self.draws = ItemDraws(spark, sampler, sampler_fields)
        self.items = broadcast_small(item_fields, len(sampler.item_category))
        self.users = broadcast_small(users.withColumn("uh", F.xxhash64("user_id")), n_users)
        by_time = Window.partitionBy("user_key").orderBy("ts", "item_idx", "category_idx")
        event_context = [c for c in self.context if c in events.columns]  # review data: the events carry it
        ev = (events.select("user_key", "item_idx", "category_idx", "ts", *self.fields, *event_context)
              .withColumn("position", F.row_number().over(by_time) - 1).join(self.users.select("user_key", "uh"),
                                                                              "user_key"))
        ev = self.draws.excluding(ev, uniform(params.seed, F.col("uh"), F.col("position"), rules.SALT_AUX_NEG),
                                  "item_idx", "neg_item_idx", "neg_category_idx", "neg_")
        # One row per user: its events in order (the struct sorts by position first).
        self.sequences = ev.groupBy("user_key").agg(F.array_sort(F.collect_list(F.struct(
            "position", "ts", "item_idx", "category_idx", "neg_item_idx", "neg_category_idx", *self.fields,
            *[f"neg_{c}" for c in self.fields], *event_context))).alias("seq"))
        self._keep = Persisted()

    def unpersist(self) -> None:
        self._keep.release()

    # ---- review style: each behaviour with history is a target -------------------------------------------

    def review_targets(self):
        """Chosen targets, from each user's sequence: the last events with history (a time split: the last
        before the cut and the last from it on), their split code and `end`, the count of events before.
        Events without history are a user's earliest, so they rank after every eligible one: taking the
        last ones and dropping those leaves the ranks of the others as they were."""
        F, p = self.F, self.params
        keep_n = 1 if p.samples == "last" else p.max_samples_per_user
        seq = F.col("seq")
        n = F.size(seq)

        def run(lo, hi):  # positions lo .. hi - 1
            return F.when(hi > lo, F.sequence(lo, hi - 1)).otherwise(F.array().cast("array<int>"))

        if p.split_kind == "time":  # rank from the end on each side of the cut
            cut = F.size(F.filter(seq, lambda e: e["ts"] < int(p.split_value)))
            positions = F.concat(run(F.greatest(cut - keep_n, F.lit(0)), cut), run(F.greatest(n - keep_n, cut), n))
        else:
            cut = n
            positions = run(F.greatest(n - (keep_n + 2 if p.split_kind == "last" else keep_n), F.lit(0)), n)
        t = self.sequences.join(self.users, "user_key").select(
            "*", cut.alias("_cut"), n.alias("_n"), F.explode(positions).alias("_p"))
        event = F.element_at(seq, F.col("_p") + 1)
        t = t.select("*", *[event[c].alias(c) for c in ("position", "ts", "item_idx", "category_idx", *self.fields,
                                                        *self.context)])
        t = t.withColumn("end", F.array_position(seq["ts"], F.col("ts")) - 1).filter(F.col("end") > 0)
        rank = F.when(F.col("_p") >= F.col("_cut"), F.col("_n")).otherwise(F.col("_cut")) - 1 - F.col("_p")
        split = _split_code(p, keep_n, F.col("ts"), rank, uniform(p.seed, F.col("uh"), rules.SALT_USER_SPLIT))
        t = t.withColumn("split", split).filter(F.col("split") >= 0).drop("_cut", "_n", "_p")
        # A test target's exclusions for its candidates: every earlier behaviour and the target itself.
        excl = F.concat(F.slice(seq["item_idx"], 1, F.col("end")), F.array("item_idx"))
        t = t.withColumn("excl", F.when(F.col("split") == 2, excl))
        return self._keep(with_history(t, p.max_len, self.fields))

    def review_samples(self, targets):
        F, p = self.F, self.params
        t = self.draws.excluding(targets, uniform(p.seed, F.col("uh"), F.col("position"), rules.SALT_TARGET_NEG),
                                 "item_idx", "t_neg_item", "t_neg_cat", "t_neg_")

        def sample(label, item, category, prefix):
            return F.struct(F.lit(label).alias("label"), F.col(item).alias("i"), F.col(category).alias("c"),
                            *[F.col(prefix + c).alias(c) for c in self.fields])

        both = F.array(sample(1, "item_idx", "category_idx", ""), sample(0, "t_neg_item", "t_neg_cat", "t_neg_"))
        t = t.withColumn("_t", F.explode(both))
        columns = {"label": F.col("_t.label"), "item_idx": F.col("_t.i"), "category_idx": F.col("_t.c"),
                   **{c: F.col("_t")[c] for c in self.fields}}
        return _select(t, columns, self.schemas["samples"], [F.col("split").cast("tinyint")])

    def review_requests(self, targets):
        """Each test target with K-1 negatives: distinct, never the positive nor an earlier behaviour."""
        F, p = self.F, self.params
        k = p.candidates - 1
        tests = targets.filter(F.col("split") == 2)
        # The draws run on narrow rows; the wide ones (histories) move once, to meet their candidates.
        req = self._keep(tests.select("user_key", "position", "uh", "ts", "item_idx", "excl"))
        n_draws = rules.DRAWS_PER_PICK * k
        draws = req.select("user_key", "position", "uh", "ts",
                           F.explode(F.sequence(F.lit(0), F.lit(n_draws - 1))).alias("j"))
        draws = self.draws.plain(draws, uniform(p.seed, F.col("uh"), F.col("ts"), rules.SALT_CANDIDATE, F.col("j")),
                                 "d_item", "d_cat")
        # Each draw as one LONG, j in the high bits: sorting them is sorting by j, on primitives.
        packed = F.shiftleft(F.col("j").cast("long"), 32) + F.col("d_item")
        draws = draws.groupBy("user_key", "position").agg(F.array_sort(F.collect_list(packed)).alias("d"))
        req = req.join(draws, ["user_key", "position"], "left")
        in_draw_order = F.transform("d", lambda x: (x % (1 << 32)).cast("int"))
        # array_except keeps the first array's order and drops repeats: the first new draws, in draw order.
        req = req.withColumn("chosen", F.slice(F.array_except(in_draw_order, "excl"), 1, k))
        need = F.lit(k) - F.size("chosen")
        last = F.least(F.lit(self.draws.first + self.draws.count - 1),
                       F.lit(self.draws.first - 1) + need + F.size("excl") + F.size("chosen"))
        in_order = F.array_except(F.sequence(F.lit(self.draws.first), last), F.concat("excl", "chosen"))
        fallback = F.when(need > 0, F.slice(in_order, 1, need)).otherwise(F.array().cast("array<int>"))
        req = req.withColumn("cand", F.concat(F.array("item_idx"), "chosen", fallback))
        slots = req.select("user_key", "position", F.posexplode("cand").alias("slot", "item_idx"))
        slots = slots.join(self.items, "item_idx", "left").groupBy("user_key", "position").agg(
            F.array_sort(F.collect_list(F.struct("slot", "item_idx", "cat", "item_id", "category_id",
                                                 *self.fields))).alias("c"))
        req = tests.drop("excl").join(slots, ["user_key", "position"])
        columns = {
            "request_id": F.concat("user_id", F.lit("@"), F.col("ts").cast("string"), F.lit("#"),
                                   F.col("position").cast("string")),
            "cand_item_idx": F.col("c")["item_idx"], "cand_category_idx": F.col("c")["cat"],
            "cand_item_id": F.col("c")["item_id"], "cand_category_id": F.col("c")["category_id"],
            "cand_label": F.concat(F.array(F.lit(1)), F.array_repeat(F.lit(0), F.size("c") - 1)),
            **{f"cand_{c}": F.col("c")[c] for c in self.fields},
        }
        return _select(req, columns, self.schemas["requests"])

    # ---- impression style: every logged impression is a sample ---------------------------------------------

    def impressions(self, imps):
        """Logged impressions with their split and the count of the user's events before each."""
        F, W, p = self.F, self.W, self.params
        imps = imps.join(self.users, "user_key")
        latest_first = W.partitionBy("user_key").orderBy(F.col("ts").desc(), F.col("request").desc())
        rank = F.dense_rank().over(latest_first) - 1
        split = _split_code(p, None, F.col("ts"), rank, uniform(p.seed, F.col("uh"), rules.SALT_USER_SPLIT))
        imps = imps.withColumn("split", split).join(self.sequences, "user_key", "left").withColumn(
            "seq", F.coalesce("seq", F.array().cast(self.sequences.schema["seq"].dataType)))
        imps = imps.withColumn("end", F.size(F.filter("seq", lambda e: e["ts"] < F.col("ts"))))
        return self._keep(with_history(imps, p.max_len, self.fields))

    def impression_samples(self, imps):
        F = self.F
        columns = {"label": F.col("clicked"), "request_id": F.col("request")}
        return _select(imps, columns, self.schemas["samples"], [F.col("split").cast("tinyint")])

    def impression_requests(self, imps):
        """The test split's logged impressions, one row per request, candidates by (item idx, item id)."""
        F = self.F
        fields = ["item_idx", "item", "category", "category_idx", "clicked", "bid", "p_true", "position", *self.fields]
        history = ["hist_item_idx", "hist_category_idx", "hist_len", "hist_last_ts",  # the same for the request
                   *[f"hist_{c}" for c in self.fields], *self.user_columns]
        req = imps.filter(F.col("split") == 2).groupBy("user_key", "user_id", "user_idx", "ts", "request").agg(
            F.array_sort(F.collect_list(F.struct(*fields))).alias("c"), *[F.first(h).alias(h) for h in history])
        c = F.col("c")
        columns = {
            "request_id": F.col("request"),
            "cand_item_id": c["item"], "cand_category_id": c["category"], "cand_item_idx": c["item_idx"],
            "cand_category_idx": c["category_idx"], "cand_label": c["clicked"], "cand_bid": c["bid"],
            "cand_p_true": c["p_true"], "cand_position": c["position"], **{f"cand_{f}": c[f] for f in self.fields},
        }
        return _select(req, columns, self.schemas["requests"])
