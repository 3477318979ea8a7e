"""AUC and GAUC on 10M scores: dien-batch's vectorised metrics vs scikit-learn, in one run.

Scores are rounded to 3 decimals so that ties are common, as CTR model outputs often are. GAUC's
scikit-learn baseline is the usual groupby over users calling roc_auc_score per user.

    python bench/metrics.py --rows 10000000 --users 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dien_batch.evaluation.metrics import auc, gauc  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def sklearn_gauc(y, p, users):
    from sklearn.metrics import roc_auc_score

    order = np.argsort(users, kind="stable")
    y, p, users = y[order], p[order], users[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    total = weight = 0.0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if 0 < y[a:b].sum() < b - a:
            total += roc_auc_score(y[a:b], p[a:b]) * (b - a)
            weight += b - a
    return total / weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = (rng.random(args.rows) < 0.1).astype(np.int8)
    p = np.round(np.clip(0.1 + 0.1 * y + rng.normal(0, 0.1, args.rows), 0, 1), 3)
    users = rng.integers(0, args.users, args.rows)
    ours_auc, t_ours_auc = timed(lambda: auc(y, p))
    sk_auc, t_sk_auc = timed(lambda: roc_auc_score(y, p))
    ours_gauc, t_ours_gauc = timed(lambda: gauc(y, p, users).gauc)
    sk_gauc, t_sk_gauc = timed(lambda: sklearn_gauc(y, p, users))
    print(f"{args.rows:,} rows, {args.users:,} users; |AUC diff| {abs(ours_auc - sk_auc):.1e}, "
          f"|GAUC diff| {abs(ours_gauc - sk_gauc):.1e}\n")
    print("| metric | dien-batch s | scikit-learn s | speedup |")
    print("|---|---:|---:|---:|")
    print(f"| AUC | {t_ours_auc:.2f} | {t_sk_auc:.2f} | {t_sk_auc / t_ours_auc:.1f}x |")
    print(f"| GAUC | {t_ours_gauc:.2f} | {t_sk_gauc:.2f} (groupby + roc_auc_score per user) | "
          f"{t_sk_gauc / t_ours_gauc:.1f}x |")


if __name__ == "__main__":
    main()
