"""Ranking and calibration metrics, vectorised and exact (ties get half credit, as in sklearn).

* `auc`: sort-based Mann-Whitney AUC with tied scores averaged.
* `gauc`: per-user AUC weighted by the user's impressions; users whose labels are all one class are
  skipped and counted (DIN paper).
* `logloss`, `normalized_entropy` (logloss / entropy of the base rate), `pcoc` (sum p / sum y).
* `rela_impr` = (AUC_model - 0.5) / (AUC_base - 0.5) - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-7


def _tie_blocks(scores_sorted: np.ndarray, groups_sorted: np.ndarray | None = None) -> np.ndarray:
    """Block id per sorted element: a new block where the score (or the group) changes."""
    change = scores_sorted[1:] != scores_sorted[:-1]
    if groups_sorted is not None:
        change |= groups_sorted[1:] != groups_sorted[:-1]
    return np.concatenate([[0], np.cumsum(change)])


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; nan when only one class is present."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    block = _tie_blocks(p[order])
    neg_per_block = np.bincount(block, weights=~y[order], minlength=block[-1] + 1)
    neg_below = np.cumsum(neg_per_block) - neg_per_block
    credit = (neg_below + 0.5 * neg_per_block)[block[y[order]]]
    return float(credit.sum() / (n_pos * n_neg))


@dataclass(frozen=True)
class GroupAUC:
    gauc: float
    users: int
    users_skipped: int
    impressions_used: int


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> GroupAUC:
    """Impression-weighted mean of per-group AUCs over groups that have both classes."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(scores, dtype=np.float64)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    order = np.lexsort((p, g))
    y_s, g_s = y[order], g[order]
    block = _tie_blocks(p[order], g_s)
    neg_per_block = np.bincount(block, weights=~y_s)
    block_group = np.zeros(block[-1] + 1, dtype=np.int64)
    block_group[block] = g_s
    neg_cum = np.cumsum(neg_per_block) - neg_per_block  # negatives in earlier blocks, any group
    group_first_block = np.searchsorted(block_group, np.arange(g.max() + 1))
    neg_below = neg_cum - neg_cum[group_first_block[block_group]]  # ... of the same group
    credit = np.bincount(g_s[y_s], weights=(neg_below + 0.5 * neg_per_block)[block[y_s]], minlength=g.max() + 1)
    n = np.bincount(g, minlength=g.max() + 1)
    n_pos = np.bincount(g, weights=y, minlength=g.max() + 1)
    n_neg = n - n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    per_group = credit[ok] / (n_pos[ok] * n_neg[ok])
    value = float(np.sum(per_group * n[ok]) / n[ok].sum()) if ok.any() else float("nan")
    return GroupAUC(value, int(ok.sum()), int((~ok).sum()), int(n[ok].sum()))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def normalized_entropy(labels: np.ndarray, probs: np.ndarray) -> float:
    base = float(np.clip(np.mean(labels), EPS, 1 - EPS))
    return logloss(labels, probs) / -(base * np.log(base) + (1 - base) * np.log(1 - base))


def pcoc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Predicted clicks over observed clicks (1 is calibrated; COPC is its inverse)."""
    clicks = float(np.sum(labels))
    return float(np.sum(probs) / clicks) if clicks else float("nan")


def rela_impr(auc_model: float, auc_base: float) -> float:
    return (auc_model - 0.5) / (auc_base - 0.5) - 1.0
