"""Paired bootstrap over users (Poisson(1) weights): intervals that respect that one user's rows are
not independent. Each replicate reweights whole users, for both arms at once."""

from __future__ import annotations

import numpy as np

REPLICATES = 1000


def poisson_weights(n_users: int, replicates: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).poisson(1.0, size=(replicates, n_users)).astype(np.float64)


def interval(samples: np.ndarray, point: float) -> dict:
    """95% percentile interval and P(value > 0) of a bootstrap distribution."""
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return {"value": point, "lo": None, "hi": None, "p_positive": None}
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return {"value": point, "lo": float(lo), "hi": float(hi), "p_positive": float(np.mean(finite > 0))}


def per_group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUC per group, rows per group), AUC nan for groups with one class; groups are 0..G-1 codes."""
    from .metrics import _tie_blocks

    y = np.asarray(labels).astype(bool)
    p = np.asarray(scores, dtype=np.float64)
    G = int(groups.max()) + 1 if len(groups) else 0
    order = np.lexsort((p, groups))
    y_s, g_s = y[order], groups[order]
    block = _tie_blocks(p[order], g_s)
    neg_per_block = np.bincount(block, weights=~y_s)
    block_group = np.zeros(block[-1] + 1, dtype=np.int64)
    block_group[block] = g_s
    neg_cum = np.cumsum(neg_per_block) - neg_per_block
    first = np.searchsorted(block_group, np.arange(G))
    neg_below = neg_cum - neg_cum[first[block_group]]
    credit = np.bincount(g_s[y_s], weights=(neg_below + 0.5 * neg_per_block)[block[y_s]], minlength=G)
    n = np.bincount(groups, minlength=G).astype(np.float64)
    n_pos = np.bincount(groups, weights=y, minlength=G)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = credit / (n_pos * (n - n_pos))
    per[(n_pos == 0) | (n_pos == n)] = np.nan
    return per, n


def gauc_difference(labels, scores_a, scores_b, groups, replicates: int = REPLICATES, seed: int = 0) -> dict:
    """GAUC(a) - GAUC(b) with a user-clustered bootstrap interval."""
    auc_a, n = per_group_auc(labels, scores_a, groups)
    auc_b, _ = per_group_auc(labels, scores_b, groups)
    ok = np.isfinite(auc_a) & np.isfinite(auc_b)
    weights = n[ok]
    diff = (auc_a[ok] - auc_b[ok]) * weights
    point = float(diff.sum() / weights.sum())
    w = poisson_weights(int(ok.sum()), replicates, seed)
    samples = (w @ diff) / np.maximum(w @ weights, 1e-12)
    return interval(samples, point)
