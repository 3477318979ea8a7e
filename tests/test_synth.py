"""The synthetic world: determinism, schema, ranges, interest drift, calibration of clicks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dien_batch import schema
from dien_batch.data.synth import SynthSpec, generate, segment_sampler
from dien_batch.errors import UsageError

from .conftest import SMALL_WORLD


def read(world, name):
    return pq.read_table(world / name)


def test_schema_and_ranges(small_world):
    events, imps = read(small_world, "events"), read(small_world, "impressions")
    assert events.schema.equals(schema.EVENTS)
    assert imps.schema.equals(schema.IMPRESSIONS)
    assert len(imps) == SMALL_WORLD.requests * SMALL_WORLD.candidates_per_request
    for table in (events, imps):
        assert all(col.null_count == 0 for col in table.columns)
    p = imps["p_true"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    assert (imps["bid"].to_numpy() >= 0.05).all()
    assert set(pc.unique(imps["clicked"]).to_pylist()) <= {0, 1}
    # Each request shows exactly `slots` ads at positions 1..slots.
    pos = imps["position"].to_numpy().reshape(SMALL_WORLD.requests, -1)
    assert ((pos > 0).sum(axis=1) == SMALL_WORLD.slots).all()
    assert (np.sort(pos, axis=1)[:, -SMALL_WORLD.slots:] == np.arange(1, SMALL_WORLD.slots + 1)).all()
    # Every request's user has behaviour, and requests happen inside the log's time span.
    assert set(pc.unique(imps["user_id"]).to_pylist()) <= set(pc.unique(events["user_id"]).to_pylist())
    ev_ts = events["ts"].cast("int64").to_numpy()
    assert ev_ts.min() <= imps["ts"].cast("int64").to_numpy().min() <= ev_ts.max()
    # Every item has exactly one category.
    pairs = imps.group_by("item_id").aggregate([("category_id", "count_distinct")])
    assert pc.max(pairs["category_id_count_distinct"]).as_py() == 1


def test_deterministic_for_a_seed(tmp_path, small_world):
    spec = dataclasses.replace(SMALL_WORLD)
    again = tmp_path / "again"
    again.mkdir()
    generate(spec, again)
    for name in ("events", "impressions"):
        assert read(again, name).equals(read(small_world, name))
    other = tmp_path / "other"
    other.mkdir()
    generate(dataclasses.replace(spec, seed=spec.seed + 1), other)
    assert not read(other, "events").equals(read(small_world, "events"))


def _category_shares(cats: np.ndarray, n_categories: int) -> np.ndarray:
    counts = np.bincount(cats, minlength=n_categories)
    return counts / counts.sum()


def test_interests_drift_over_time(small_world):
    """A user's categories in the first third of their history differ from the last third, far more
    than a time-shuffled history of the same user would."""
    events = read(small_world, "events").to_pandas()
    events["cat"] = events["category_id"].str[1:].astype(int)
    events = events.sort_values(["user_id", "ts"], kind="stable")
    rng = np.random.default_rng(0)
    drift, shuffled = [], []
    for _, group in events.groupby("user_id"):
        cats = group["cat"].to_numpy()
        if len(cats) < 30:
            continue
        third = len(cats) // 3
        for store, seq in ((drift, cats), (shuffled, rng.permutation(cats))):
            a = _category_shares(seq[:third], SMALL_WORLD.categories)
            b = _category_shares(seq[-third:], SMALL_WORLD.categories)
            store.append(0.5 * np.abs(a - b).sum())  # total variation distance
    assert len(drift) > 50
    assert np.mean(drift) > np.mean(shuffled) + 0.15, (np.mean(drift), np.mean(shuffled))


def test_clicks_are_calibrated_to_p_true(small_world):
    imps = read(small_world, "impressions")
    p, y = imps["p_true"].to_numpy(), imps["clicked"].to_numpy()
    bins = np.array_split(np.argsort(p), 10)
    for idx in bins:
        expected, observed = p[idx].mean(), y[idx].mean()
        se = np.sqrt(expected * (1 - expected) / len(idx))
        assert abs(observed - expected) < 4 * se, (expected, observed)
    # The truth carries signal and the world is not degenerate.
    assert 0.03 < y.mean() < 0.3
    assert p[bins[-1]].mean() > 3 * p[bins[0]].mean()


def test_current_interest_beats_pooled_history(small_world):
    """p_true follows the user's recent behaviour more than their whole history: the phenomenon
    DIEN exists for. Measured with the category-match rate of recent vs all past events."""
    events = read(small_world, "events").to_pandas().sort_values(["user_id", "ts"], kind="stable")
    imps = read(small_world, "impressions").to_pandas()
    by_user = {u: (g["ts"].to_numpy(), g["category_id"].to_numpy()) for u, g in events.groupby("user_id")}
    recent, pooled = [], []
    for user, ts, cat in zip(imps["user_id"], imps["ts"], imps["category_id"], strict=True):
        times, cats = by_user[user]
        hist = cats[: np.searchsorted(times, ts)]
        recent.append(np.mean(hist[-5:] == cat) if len(hist) else 0.0)
        pooled.append(np.mean(hist == cat) if len(hist) else 0.0)
    p = imps["p_true"].to_numpy()
    assert np.corrcoef(recent, p)[0, 1] > np.corrcoef(pooled, p)[0, 1] + 0.05


def test_segment_sampler_matches_weights():
    owner = np.array([0, 0, 0, 1, 1, 3])
    weights = np.array([1.0, 2.0, 7.0, 1.0, 0.0, 5.0])
    draw = segment_sampler(owner, weights)
    rng = np.random.default_rng(1)
    picks = draw(rng, np.zeros(100_000, dtype=int))
    assert set(picks) <= {0, 1, 2}
    np.testing.assert_allclose(np.bincount(picks, minlength=3) / len(picks), [0.1, 0.2, 0.7], atol=0.01)
    assert set(draw(rng, np.ones(1000, dtype=int))) == {3}  # zero weight is never drawn
    assert set(draw(rng, np.full(1000, 3))) == {5}


@pytest.mark.parametrize("bad", [dict(items=10, categories=20), dict(slots=0), dict(users=0)])
def test_bad_specs_are_usage_errors(bad):
    with pytest.raises(UsageError):
        SynthSpec(**bad).check()


def test_candidates_of_a_request_are_distinct(small_world):
    imps = read(small_world, "impressions")
    pairs = imps.group_by(["request_id", "item_id"]).aggregate([("item_id", "count")])
    assert len(pairs) == len(imps)


def test_what_a_model_must_extract_to_reach_the_truth():
    """The docstring's claims, against oracles that know the world: the truth beats an oracle that knows
    every track's position as of the last behaviour (what is left is the drift since: direction, which only
    order shows), which beats exact-match shares of recent behaviour (no ring, no per-track positions)."""
    from dien_batch.data.synth import simulate
    from dien_batch.evaluation.metrics import auc

    spec = dataclasses.replace(SMALL_WORLD, users=2000, items=5000, categories=50, days=60, requests=6000, seed=11)
    world, ev, imp = simulate(spec)
    y, t, u, c = imp["clicked"], imp["t"], imp["user"], imp["category"]
    key = ev["user"].astype(np.int64) * (1 << 32) + ev["t"]
    end = np.searchsorted(key, u.astype(np.int64) * (1 << 32) + t, side="left")  # history strictly before t
    start = np.searchsorted(ev["user"], u, side="left")
    has = end > start  # a request never opens a user's first session (sessions seconds apart aside)
    assert has.mean() > 0.995
    y, t, u, c, end, start = y[has], t[has], u[has], c[has], end[has], start[has]
    imp = {"p_true": imp["p_true"][has]}
    last_behaviour = ev["t"][end - 1]
    assert np.median((t - last_behaviour) / 86_400) > 1.0  # requests come days after the previous session
    truth = auc(y, imp["p_true"])
    as_of_last = auc(y, world.affinity(u, c, last_behaviour))
    share5 = np.zeros(len(y))
    for j in range(1, 6):
        idx = end - j
        share5 += (idx >= start) * (ev["category"][np.maximum(idx, 0)] == c)
    recent_share = auc(y, share5 / np.minimum(end - start, 5))
    assert truth > as_of_last + 0.03 > recent_share + 0.08, (truth, as_of_last, recent_share)
