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
    """Area under the ROC curve; nan when only one class is present.

    Each positive gets credit for the negatives scored below it and half for those tied with it:
    negatives are sorted (a value sort, much faster than an argsort) and positives looked up in them.
    """
    y = np.asarray(labels).astype(bool)
    p = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    negatives = np.sort(p[~y])
    positives = np.sort(p[y])
    below = np.searchsorted(negatives, positives, side="left")
    at_or_below = np.searchsorted(negatives, positives, side="right")
    return float((below.sum() + 0.5 * (at_or_below - below).sum()) / (n_pos * n_neg))


@dataclass(frozen=True)
class GroupAUC:
    gauc: float
    users: int
    users_skipped: int
    impressions_used: int


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> GroupAUC:
    """Impression-weighted mean of per-group AUCs over groups that have both classes."""
    from .bootstrap import per_group_auc

    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    per, n = per_group_auc(labels, scores, codes)
    ok = np.isfinite(per)
    value = float(np.sum(per[ok] * n[ok]) / n[ok].sum()) if ok.any() else float("nan")
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


def roc_points(labels: np.ndarray, scores: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """False/true positive rates at up to `max_points` thresholds (for plotting)."""
    y = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.cumsum(y[order])
    fp = np.cumsum(~y[order])
    pick = np.unique(np.linspace(0, len(order) - 1, min(max_points, len(order))).astype(int))
    return {"fpr": [0.0, *(fp[pick] / max(fp[-1], 1)).tolist()], "tpr": [0.0, *(tp[pick] / max(tp[-1], 1)).tolist()]}


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[dict]:
    """Reliability diagram with quantile bins (equal counts): mean predicted vs observed rate per bin."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    out = []
    for idx in np.array_split(order, min(bins, len(order))):
        if len(idx):
            out.append({"rows": int(len(idx)), "predicted": float(p[idx].mean()), "observed": float(y[idx].mean()),
                        "low": float(p[idx].min()), "high": float(p[idx].max())})
    return out


def by_slice(labels: np.ndarray, probs: np.ndarray, slices: np.ndarray, min_rows: int = 50) -> list[dict]:
    """PCOC, CTR and AUC per slice value (slices with at least `min_rows` rows), largest first."""
    values, codes, counts = np.unique(np.asarray(slices), return_inverse=True, return_counts=True)
    out = []
    for code in np.argsort(-counts):
        if counts[code] < min_rows:
            continue
        mask = codes == code
        out.append({"slice": str(values[code]), "rows": int(counts[code]), "pcoc": pcoc(labels[mask], probs[mask]),
                    "ctr": float(np.mean(labels[mask])), "mean_pctr": float(np.mean(probs[mask])),
                    "auc": auc(labels[mask], probs[mask])})
    return out


def history_bucket(hist_len: np.ndarray) -> np.ndarray:
    """History length buckets for slicing: 0, 1-4, 5-9, 10-19, 20-49, 50+."""
    edges = np.array([1, 5, 10, 20, 50])
    names = np.array(["0", "1-4", "5-9", "10-19", "20-49", "50+"])
    return names[np.searchsorted(edges, hist_len, side="right")]
