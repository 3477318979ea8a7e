"""Metrics against independent, plainly written references on fresh random data with ties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dien_batch.evaluation import bootstrap, metrics
from dien_batch.evaluation.delong import delong_test, midranks


def data(n=3000, seed=None, users=200):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    p = np.round(np.clip(0.3 * y + rng.normal(0.4, 0.25, n), 0, 1), 2)  # rounding makes many ties
    return y.astype(int), p, rng.integers(0, users, n)


def test_auc_matches_sklearn_with_ties():
    for _ in range(5):
        y, p, _ = data()
        assert abs(metrics.auc(y, p) - roc_auc_score(y, p)) < 1e-12
    assert math.isnan(metrics.auc(np.ones(5), np.arange(5)))


def test_gauc_matches_a_per_user_loop():
    y, p, u = data(users=300)
    total, weight, skipped = 0.0, 0, 0
    for user in np.unique(u):
        m = u == user
        if y[m].min() == y[m].max():
            skipped += 1
            continue
        total += roc_auc_score(y[m], p[m]) * m.sum()
        weight += m.sum()
    g = metrics.gauc(y, p, u)
    assert abs(g.gauc - total / weight) < 1e-12 and g.users_skipped == skipped
    assert g.users + g.users_skipped == len(np.unique(u))
    names = np.array([f"user-{x}" for x in u], dtype=object)  # string ids give the same result
    assert metrics.gauc(y, p, names).gauc == pytest.approx(g.gauc, abs=1e-12)


def direct_delong(y, a, b):
    """O(n*m): pairwise kernels, structural components and the covariance written out."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def psi(s):
        k = np.array([[1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0 for j in neg] for i in pos])
        return k.mean(), k.mean(axis=1), k.mean(axis=0)

    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = psi(a), psi(b)
    m, n = len(pos), len(neg)
    var = (np.var(v10a, ddof=1) + np.var(v10b, ddof=1) - 2 * np.cov(v10a, v10b)[0, 1]) / m + \
          (np.var(v01a, ddof=1) + np.var(v01b, ddof=1) - 2 * np.cov(v01a, v01b)[0, 1]) / n
    z = (auc_a - auc_b) / math.sqrt(var)
    return auc_a, auc_b, z, math.erfc(abs(z) / math.sqrt(2))


def test_delong_matches_the_direct_computation():
    for seed in range(3):
        y, a, _ = data(n=240, seed=seed)
        b = np.round(a + np.random.default_rng(seed + 9).normal(0, 0.2, len(a)), 1)
        got = delong_test(y, a, b)
        want = direct_delong(y, a, b)
        assert got.auc_a == pytest.approx(want[0], abs=1e-12) and got.auc_b == pytest.approx(want[1], abs=1e-12)
        assert got.z == pytest.approx(want[2], rel=1e-9) and got.p_value == pytest.approx(want[3], rel=1e-7)


def test_midranks():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0])
    assert midranks(x).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_calibration_metrics():
    y, p, _ = data()
    bins = metrics.reliability(y, p, bins=10)
    assert sum(b["rows"] for b in bins) == len(y)
    assert sum(b["observed"] * b["rows"] for b in bins) == pytest.approx(y.sum())
    assert metrics.pcoc(y, p) == pytest.approx(p.sum() / y.sum())
    base = y.mean()
    assert metrics.normalized_entropy(y, np.full(len(y), base)) == pytest.approx(1.0)
    assert metrics.rela_impr(0.75, 0.7) == pytest.approx(0.25)
    ll = -np.mean(y * np.log(np.clip(p, 1e-7, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-7, 1)))
    assert metrics.logloss(y, p) == pytest.approx(ll)
    assert metrics.history_bucket(np.array([0, 1, 4, 5, 19, 20, 99])).tolist() == \
        ["0", "1-4", "1-4", "5-9", "10-19", "20-49", "50+"]


def test_gauc_bootstrap_interval_covers_and_is_clustered():
    y, a, u = data(n=4000, seed=3, users=150)
    b = a + np.random.default_rng(1).normal(0, 0.3, len(a))
    result = bootstrap.gauc_difference(y, a, b, u, replicates=300, seed=1)
    point = metrics.gauc(y, a, u).gauc - metrics.gauc(y, b, u).gauc
    assert result["value"] == pytest.approx(point, abs=1e-12)
    assert result["lo"] < point < result["hi"] and result["p_positive"] > 0.9


def test_per_group_auc_of_tied_groups_by_brute_force():
    y = np.array([1, 0, 1, 0, 1, 1, 0])
    p = np.array([0.2, 0.2, 0.9, 0.1, 0.5, 0.5, 0.5])
    g = np.array([0, 0, 0, 0, 1, 1, 1])
    per, n = bootstrap.per_group_auc(y, p, g)
    for k in (0, 1):
        m = g == k
        pairs = [(i, j) for i, j in itertools.product(np.flatnonzero(m & (y == 1)), np.flatnonzero(m & (y == 0)))]
        want = np.mean([1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0 for i, j in pairs])
        assert per[k] == pytest.approx(want)
