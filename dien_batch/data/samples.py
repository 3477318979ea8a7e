"""The sample rules, as the reference builder: vectorised NumPy over Arrow batches of users.

build-features runs the same rules in Spark SQL (`spark_jobs.samples`); tests hold the two equal row
for row, random draws included. This builder needs no Spark: the model tests build their small feature
sets with it. One batch row per user: `ev_item`, `ev_cat`, `ev_ts` (and `imp_*`) lists, any order.

Invariants:
* **Point in time.** A target at time t gets the events with ts < t (strictly) as history, the last
  `max_len` of them; events at the same second as the target are never history.
* **Order.** A user's events in (ts, item idx, category idx) order; `position` counts in that order.
* **Reproducible randomness.** Every random draw is Spark's xxhash64 of (seed, user id, position, salt),
  so it does not depend on partitioning, batch boundaries or the order of users.
* **Negatives.** The negative for a clicked item (a target's negative, or the auxiliary-loss negative
  at a history position) is drawn from the item vocabulary by popularity (or uniformly) and is never
  the clicked item itself.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from . import hashing

SPLITS = ("train", "valid", "test")
SALT_TARGET_NEG, SALT_AUX_NEG, SALT_USER_SPLIT, SALT_CANDIDATE = 1, 2, 3, 16
DRAWS_PER_PICK = 4  # candidate draws per wanted candidate before the in-order fallback


def hash_uniform(seed: int, *keys) -> np.ndarray:
    """Uniform [0, 1) floats that are a pure function of (seed, *keys), int64 keys broadcast: Spark's
    xxhash64 of them as LONG columns, so Spark SQL can make the very same draw."""
    return hashing.uniform(np.int64(seed), *[np.asarray(k, dtype=np.int64) for k in keys])


@dataclass(frozen=True)
class SampleParams:
    seed: int = 0
    max_len: int = 100
    samples: str = "all-prefixes"  # or "last"
    max_samples_per_user: int = 20
    split: str = "last"  # last | time:<epoch seconds>[:<validation from, epoch seconds>] | users:<fraction>
    candidates: int = 20

    @property
    def split_kind(self) -> str:
        return self.split.partition(":")[0]

    @property
    def split_value(self) -> float:
        return float(self.split.split(":")[1])

    @property
    def valid_from(self) -> float:
        """time split: targets in [valid_from, split) are the validation set (default: none before the cut)."""
        parts = self.split.split(":")
        return float(parts[2]) if len(parts) > 2 else self.split_value


class ItemSampler:
    """Draws negative items from the vocabulary, by popularity (count) or uniformly.

    Item i owns the integer interval [lo_i, hi_i) of width w_i (its weight) on [0, total); a draw maps a
    hashed uniform u to the point r = floor(u * span) and returns the item whose interval holds it.
    Integer arithmetic and a lookup by interval, so Spark SQL makes the very same draws
    (`spark_jobs.samples`). The sampled items are a contiguous run of vocabulary ids (the vocabulary
    is ordered by count, so the items with behaviour come first)."""

    def __init__(self, item_idx: np.ndarray, counts: np.ndarray, item_category: np.ndarray,
                 item_keys: np.ndarray, category_keys: np.ndarray, uniform: bool = False):
        weights = np.ones(len(item_idx), np.int64) if uniform else np.asarray(counts).astype(np.int64)
        keep = weights > 0
        if keep.sum() < 2:
            raise ValueError("negative sampling needs at least two items with behaviour")
        self.items = item_idx[keep].astype(np.int32)
        if not np.array_equal(self.items, np.arange(self.items[0], self.items[0] + len(self.items))):
            raise ValueError("the sampled items must be a contiguous run of ids (a vocabulary ordered by count)")
        self.hi = np.cumsum(weights[keep])
        self.total = int(self.hi[-1])
        self.lo_of = np.zeros(len(item_category), np.int64)  # by item idx; items never drawn keep 0 and 0
        self.weight_of = np.zeros(len(item_category), np.int64)
        self.lo_of[self.items], self.weight_of[self.items] = self.hi - weights[keep], weights[keep]
        self.item_category = item_category  # indexed by item idx
        self.item_keys = item_keys  # raw ids, indexed by item idx
        self.category_keys = category_keys

    def at(self, r: np.ndarray) -> np.ndarray:
        """The item whose interval holds each point r in [0, total)."""
        return self.items[np.searchsorted(self.hi, r, side="right")]

    def point(self, u: np.ndarray, span) -> np.ndarray:
        """floor(u * span) for u in [0, 1): uniform over [0, span), kept below span against rounding."""
        return np.minimum(np.floor(u * span).astype(np.int64), np.asarray(span, np.int64) - 1)

    def draw_excluding(self, seed: int, exclude: np.ndarray, *keys) -> np.ndarray:
        """One draw per row from the distribution with `exclude[i]` taken out (exact, no rejection): a
        point of [0, total - w) shifted past the excluded item's interval."""
        weight, lo = self.weight_of[exclude], self.lo_of[exclude]
        r = self.point(hash_uniform(seed, *keys) * np.ones(len(exclude)), self.total - weight)
        return self.at(np.where(r >= lo, r + weight, r))

    def draw_distinct(self, seed: int, excluded: list[np.ndarray], k: int, *keys) -> list[np.ndarray]:
        """For each row i, k distinct items none of which is in excluded[i]: the first new ones among the
        draws j = 0 .. DRAWS_PER_PICK * k - 1 (keyed (seed, keys[i], j)), then, should those run short
        (a catalogue nearly used up), the remaining items in vocabulary order. Fewer than k only when
        the catalogue runs out."""
        n, draws = len(excluded), DRAWS_PER_PICK * k
        rows = np.repeat(np.arange(n), draws)
        u = hash_uniform(seed, *[key[rows] for key in keys], np.tile(np.arange(draws), n))
        picks = self.at(self.point(u, self.total)).reshape(n, draws)
        out = []
        for row, blocked in zip(picks, excluded, strict=True):
            blocked, chosen = set(blocked.tolist()), []
            for item in itertools.chain(row.tolist(), self.items.tolist()):
                if len(chosen) == k:
                    break
                if item not in blocked:
                    chosen.append(item)
                    blocked.add(item)
            out.append(np.array(chosen, np.int32))
        return out


def _flat(batch: pa.RecordBatch, prefix: str, names: tuple[str, ...]):
    """Offsets and flat NumPy values of parallel list columns `prefix + name`."""
    first = batch.column(f"{prefix}{names[0]}")
    offsets = first.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    values = [batch.column(f"{prefix}{n}").flatten().to_numpy(zero_copy_only=False) for n in names]
    return offsets, values


def _gather_lists(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, typ: pa.DataType) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values[idx], typ))


class UserHistories:
    """A batch of users' behaviour sequences, flattened and sorted by (ts, item), with aux negatives."""

    def __init__(self, batch: pa.RecordBatch, params: SampleParams, sampler: ItemSampler):
        self.params = params
        self.user_idx = batch.column("user_idx").to_numpy(zero_copy_only=False).astype(np.int64)
        self.user_id = batch.column("user_id")
        self.user_key = hashing.xxhash64(self.user_id)  # randomness keyed by the user's own id (UTF-8)
        self.offsets, (items, cats, ts) = _flat(batch, "ev_", ("item", "cat", "ts"))
        n = np.diff(self.offsets)
        self.owner = np.repeat(np.arange(len(n)), n)
        order = np.lexsort((cats, items, ts, self.owner))  # per user by time, ties by item and category
        self.items, self.cats, self.ts = items[order], cats[order], ts[order]
        self.position = np.arange(len(self.owner)) - self.offsets[self.owner]
        self.neg_items = sampler.draw_excluding(params.seed, self.items, self.user_key[self.owner],
                                                self.position, SALT_AUX_NEG) if len(self.items) else \
            np.empty(0, np.int32)
        self.neg_cats = sampler.item_category[self.neg_items].astype(np.int32)
        self._key = self.owner * (1 << 40) + (self.ts - (self.ts.min() if len(self.ts) else 0))

    def history_end(self, owner: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Flat index one past the last event of `owner` strictly before `ts`."""
        base = self.ts.min() if len(self.ts) else 0
        return np.searchsorted(self._key, owner * (1 << 40) + (ts - base), side="left")

    def history_columns(self, owner: np.ndarray, end: np.ndarray) -> dict[str, pa.Array]:
        start = np.maximum(self.offsets[owner], end - self.params.max_len)
        length = (end - start).astype(np.int32)
        last_ts = np.where(length > 0, self.ts[np.maximum(end - 1, 0)], 0)
        return {
            "hist_item_idx": _gather_lists(self.items, start, length, pa.int32()),
            "hist_category_idx": _gather_lists(self.cats, start, length, pa.int32()),
            "neg_item_idx": _gather_lists(self.neg_items, start, length, pa.int32()),
            "neg_category_idx": _gather_lists(self.neg_cats, start, length, pa.int32()),
            "hist_len": pa.array(length, pa.int32()),
            "hist_last_ts": pa.array(last_ts.astype(np.int64), mask=length == 0),
        }


def _rank_from_end(owner: np.ndarray, selected: np.ndarray, n_owners: int) -> np.ndarray:
    """For selected rows (grouped by owner, in time order): 0 for each owner's last, 1 before it..."""
    total = np.bincount(owner[selected], minlength=n_owners)
    running = np.zeros(len(owner), dtype=np.int64)
    sel_idx = np.flatnonzero(selected)
    counts_before = np.arange(len(sel_idx)) - np.searchsorted(owner[sel_idx], owner[sel_idx], side="left")
    running[sel_idx] = counts_before
    return np.where(selected, total[owner] - 1 - running, -1)


def _split_of_rank(params: SampleParams, rank: np.ndarray, eligible: np.ndarray, ts: np.ndarray,
                   user_u: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Split code per row (0 train, 1 valid, 2 test, -1 unused) for the configured protocol."""
    keep_n = 1 if params.samples == "last" else params.max_samples_per_user
    split = np.full(len(rank), -1, dtype=np.int8)
    kind = params.split_kind
    if kind == "last":
        split[eligible & (rank == 0)] = 2
        split[eligible & (rank == 1)] = 1
        split[eligible & (rank >= 2) & (rank < 2 + keep_n)] = 0
        return split
    if kind == "time":  # test from the cut on; validation: the window before it; train: the rest
        after = eligible & (ts >= params.split_value)
        before = eligible & ~after
        rank_after = _rank_from_end(owner, after, owner.max() + 1 if len(owner) else 0)
        rank_before = _rank_from_end(owner, before, owner.max() + 1 if len(owner) else 0)
        split[after & (rank_after < keep_n)] = 2
        kept = before & (rank_before < keep_n)
        split[kept & (ts >= params.valid_from)] = 1
        split[kept & (ts < params.valid_from)] = 0
        return split
    if kind == "users":
        frac = params.split_value
        group = np.where(user_u < frac, 2, np.where(user_u < 2 * frac, 1, 0))[owner]
        ok = eligible & (rank >= 0) & (rank < keep_n)
        split[ok] = group[ok]
        return split
    raise ValueError(f"unknown split '{params.split}'")


def _table(columns: dict[str, pa.Array], target: pa.Schema, split: np.ndarray | None = None) -> pa.Table:
    arrays = [columns[f.name] if f.name in columns else pa.nulls(len(next(iter(columns.values()))), f.type)
              for f in target]
    table = pa.Table.from_arrays(arrays, schema=target)
    if split is not None:
        table = table.append_column("split", pa.array(split, pa.int8()))
    return table


def _review_targets(h: UserHistories, params: SampleParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chosen targets (flat event indices), their split codes and history ends."""
    end = h.history_end(h.owner, h.ts)
    eligible = end > h.offsets[h.owner]
    rank = _rank_from_end(h.owner, eligible, len(h.offsets) - 1)
    user_u = hash_uniform(params.seed, h.user_key, SALT_USER_SPLIT)
    split = _split_of_rank(params, rank, eligible, h.ts, user_u, h.owner)
    rows = np.flatnonzero(split >= 0)
    return rows, split[rows], end[rows]


def review_samples(batch: pa.RecordBatch, params: SampleParams, sampler: ItemSampler) -> pa.Table:
    """Review-style samples: each chosen behaviour is a positive target with one sampled negative."""
    h = UserHistories(batch, params, sampler)
    rows, split, end = _review_targets(h, params)
    neg = sampler.draw_excluding(params.seed, h.items[rows], h.user_key[h.owner[rows]], h.position[rows],
                                 SALT_TARGET_NEG)
    both = np.concatenate([rows, rows])
    owner = h.owner[both]
    columns = h.history_columns(owner, np.concatenate([end, end]))
    items = np.concatenate([h.items[rows], neg])
    columns.update({
        "user_id": pc.take(h.user_id, pa.array(owner)),
        "user_idx": pa.array(h.user_idx[owner].astype(np.int32)),
        "item_idx": pa.array(items.astype(np.int32)),
        "category_idx": pa.array(np.concatenate([h.cats[rows], sampler.item_category[neg]]).astype(np.int32)),
        "label": pa.array(np.r_[np.ones(len(rows)), np.zeros(len(rows))].astype(np.int32)),
        "ts": pa.array(h.ts[both].astype(np.int64)),
    })
    return _table(columns, schema.SAMPLES, np.concatenate([split, split]))


def review_request_ids(user_id: pa.Array, ts: np.ndarray, position: np.ndarray) -> pa.Array:
    """`USER@TS#N`, N the target's place in the user's time-ordered behaviour: unique even for several
    targets of one user at the same second, and unambiguous (TS and N are digits, split off at the last
    '#' and the last '@' before it), whatever characters the user id holds."""
    tail = pc.binary_join_element_wise(pc.cast(pa.array(ts), pa.string()),
                                       pc.cast(pa.array(position), pa.string()), "#")
    return pc.binary_join_element_wise(user_id, tail, "@")


def review_requests(batch: pa.RecordBatch, params: SampleParams, sampler: ItemSampler) -> pa.Table:
    """Scoring requests for review data: each test target with K-1 sampled negative candidates."""
    h = UserHistories(batch, params, sampler)
    rows, split, end = _review_targets(h, params)
    rows, end = rows[split == 2], end[split == 2]
    n, k = len(rows), params.candidates
    owner, pos, ts = h.owner[rows], h.items[rows], h.ts[rows]
    # Negatives: distinct, never the positive, never an item of the user's history before the request.
    excluded = [np.append(h.items[h.offsets[o]:e], p) for o, e, p in zip(owner, end, pos, strict=True)]
    negs = sampler.draw_distinct(params.seed, excluded, k - 1, h.user_key[owner], ts,
                                 np.full(n, SALT_CANDIDATE))
    per_request = [np.append(p, neg).astype(np.int32) for p, neg in zip(pos, negs, strict=True)]
    sizes = np.array([len(c) for c in per_request], dtype=np.int32)
    cand = np.concatenate(per_request) if n else np.zeros(0, np.int32)
    cats = sampler.item_category[cand].astype(np.int32)
    lists = pa.array(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32))
    labels = np.zeros(len(cand), dtype=np.int32)
    labels[lists.to_numpy()[:-1]] = 1

    def lst(values, typ):
        return pa.ListArray.from_arrays(lists, pa.array(values, typ))

    user_id = pc.take(h.user_id, pa.array(owner))
    columns = h.history_columns(owner, end)
    columns.update({
        "request_id": review_request_ids(user_id, ts, h.position[rows]),
        "user_id": user_id, "user_idx": pa.array(h.user_idx[owner].astype(np.int32)),
        "ts": pa.array(ts.astype(np.int64)),
        "cand_item_idx": lst(cand, pa.int32()), "cand_category_idx": lst(cats, pa.int32()),
        "cand_item_id": lst(sampler.item_keys[cand], pa.string()),
        "cand_category_id": lst(sampler.category_keys[cats], pa.string()),
        "cand_label": lst(labels, pa.int32()),
    })
    return _table(columns, schema.REQUESTS)


class UserImpressions:
    """A batch of users' logged impressions (sorted by ts, request), flattened, with their split."""

    FIELDS = ("request_id", "ts", "item", "cat", "item_id", "category_id", "label", "bid", "p_true", "position")

    def __init__(self, batch: pa.RecordBatch, params: SampleParams, h: UserHistories):
        self.offsets, values = _flat(batch, "imp_", self.FIELDS)
        self.owner = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))
        raw = dict(zip(self.FIELDS, values, strict=True))
        _, request_code = np.unique(raw["request_id"].astype(str), return_inverse=True)
        _, item_code = np.unique(raw["item_id"].astype(str), return_inverse=True)
        # By time, request, item (ties of one OOV idx: by raw id). A request is a run of one (ts, request).
        order = np.lexsort((item_code, raw["item"], request_code, raw["ts"], self.owner))
        self.v = {name: v[order] for name, v in raw.items()}
        req, ts = self.v["request_id"], self.v["ts"]
        n_users = len(self.offsets) - 1
        first = np.r_[True, (req[1:] != req[:-1]) | (ts[1:] != ts[:-1]) | (self.owner[1:] != self.owner[:-1])] \
            if len(req) else np.zeros(0, bool)
        head = np.maximum.accumulate(np.where(first, np.arange(len(req)), 0))  # the request's first row
        request_rank = _rank_from_end(self.owner, first, n_users)[head]
        user_u = hash_uniform(params.seed, h.user_key, SALT_USER_SPLIT)
        every_impression = replace(params, samples="all-prefixes", max_samples_per_user=1 << 30)
        self.split = _split_of_rank(every_impression, request_rank, np.ones(len(req), bool), self.v["ts"],
                                    user_u, self.owner)
        self.end = h.history_end(self.owner, self.v["ts"])


def impression_samples(batch: pa.RecordBatch, params: SampleParams, sampler: ItemSampler) -> pa.Table:
    """Impression-style samples: each logged impression with its click and the history before it."""
    h = UserHistories(batch, params, sampler)
    imp = UserImpressions(batch, params, h)
    v = imp.v
    columns = h.history_columns(imp.owner, imp.end)
    columns.update({
        "user_id": pc.take(h.user_id, pa.array(imp.owner)),
        "user_idx": pa.array(h.user_idx[imp.owner].astype(np.int32)),
        "item_idx": pa.array(v["item"].astype(np.int32)), "category_idx": pa.array(v["cat"].astype(np.int32)),
        "label": pa.array(v["label"].astype(np.int32)), "ts": pa.array(v["ts"].astype(np.int64)),
        "request_id": pa.array(v["request_id"], pa.string()),
        "bid": pa.array(v["bid"], pa.float64(), from_pandas=True),  # absent values: null, not NaN
        "p_true": pa.array(v["p_true"], pa.float64(), from_pandas=True),
    })
    return _table(columns, schema.SAMPLES, imp.split)


def impression_requests(batch: pa.RecordBatch, params: SampleParams, sampler: ItemSampler) -> pa.Table:
    """Scoring requests from the test split's logged impressions: one row per request."""
    h = UserHistories(batch, params, sampler)
    imp = UserImpressions(batch, params, h)
    rows = np.flatnonzero(imp.split == 2)
    req = imp.v["request_id"][rows]
    owner = imp.owner[rows]
    ts = imp.v["ts"][rows]
    first = np.r_[True, (req[1:] != req[:-1]) | (ts[1:] != ts[:-1]) | (owner[1:] != owner[:-1])] if len(rows) \
        else np.zeros(0, bool)
    heads = rows[first]
    lengths = np.diff(np.r_[np.flatnonzero(first), len(rows)]).astype(np.int32)
    lists = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))

    def lst(name, typ):  # optional impression columns arrive as NaN where absent: keep them null
        return pa.ListArray.from_arrays(lists, pa.array(imp.v[name][rows], typ, from_pandas=True))

    columns = h.history_columns(imp.owner[heads], imp.end[heads])
    columns.update({
        "request_id": pa.array(imp.v["request_id"][heads], pa.string()),
        "user_id": pc.take(h.user_id, pa.array(imp.owner[heads])),
        "user_idx": pa.array(h.user_idx[imp.owner[heads]].astype(np.int32)),
        "ts": pa.array(imp.v["ts"][heads].astype(np.int64)),
        "cand_item_id": lst("item_id", pa.string()), "cand_category_id": lst("category_id", pa.string()),
        "cand_item_idx": lst("item", pa.int32()), "cand_category_idx": lst("cat", pa.int32()),
        "cand_label": lst("label", pa.int32()), "cand_bid": lst("bid", pa.float64()),
        "cand_p_true": lst("p_true", pa.float64()), "cand_position": lst("position", pa.int32()),
    })
    return _table(columns, schema.REQUESTS)
