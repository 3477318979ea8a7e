"""The classical yardstick: logistic regression and gradient-boosted trees on handcrafted recency features.

Fits both on the train split of a build-features output and prints their test AUC (and GAUC), so every
model-quality figure has a number beside it that says whether a model learns what the data holds.
The nine features of each (history, target) row:

* share of the target's category among the last 1, 3, 5, 10 and 20 behaviours, and the whole history;
* log(1 + count) of the target item and of its category in the train split (popularity: the items of
  the train histories and the train positives; never the test rows, whose own targets would leak);
* log(1 + history length).

    python bench/reference.py --features /tmp/dien-quality/features/synth
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dien_batch.evaluation.metrics import auc, gauc  # noqa: E402
from dien_batch.model.batches import padded  # noqa: E402

WINDOWS = (1, 3, 5, 10, 20, None)
NAMES = [f"share_last_{w}" if w else "share_all" for w in WINDOWS] + ["log_item_count", "log_category_count",
                                                                        "log_hist_len"]


def recency_features(table, item_count: np.ndarray, category_count: np.ndarray) -> np.ndarray:
    """The nine features above for every row of a samples table: [rows, 9] float64."""
    cats = padded(table.column("hist_category_idx"))  # right-padded, oldest first
    length = table.column("hist_len").to_numpy().astype(np.int64)
    target_cat = table.column("category_idx").to_numpy().astype(np.int64)
    target_item = table.column("item_idx").to_numpy().astype(np.int64)
    match = (cats == target_cat[:, None]) & (np.arange(cats.shape[1]) < length[:, None])
    from_end = length[:, None] - 1 - np.arange(cats.shape[1])  # 0 at the last behaviour
    columns = []
    for window in WINDOWS:
        k = np.minimum(length, window) if window else length
        hits = (match & (from_end < (window or cats.shape[1] + 1))).sum(axis=1)
        columns.append(np.where(k > 0, hits / np.maximum(k, 1), 0.0))
    columns += [np.log1p(item_count[target_item]), np.log1p(category_count[target_cat]), np.log1p(length)]
    return np.stack(columns, axis=1)


COLUMNS = ["user_id", "item_idx", "category_idx", "label", "hist_len", "hist_item_idx", "hist_category_idx"]


def _split(table, counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (recency_features(table, *counts), table.column("label").to_numpy(),
            table.column("user_id").to_numpy(zero_copy_only=False))


def train_counts(train, n_items: int, n_categories: int) -> tuple[np.ndarray, np.ndarray]:
    """Occurrences of each item and category in the train split: history steps and positive targets."""
    positive = train.column("label").to_numpy() == 1
    out = []
    for target, history, n in (("item_idx", "hist_item_idx", n_items), ("category_idx", "hist_category_idx",
                                                                          n_categories)):
        values = np.concatenate([train.column(target).to_numpy()[positive],
                                 train.column(history).combine_chunks().flatten().to_numpy()])
        out.append(np.bincount(values, minlength=n))
    return out[0], out[1]


def yardstick(features: str | Path, seed: int = 0) -> dict:
    """Test AUC/GAUC of the two classical models (and of the last-5 share alone) on a built dataset."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = Path(features)
    sizes = [pq.read_metadata(root / "vocab" / f"{n}.parquet").num_rows for n in ("item", "category")]
    train, test = (pq.read_table(root / name, columns=COLUMNS) for name in ("train", "test"))
    counts = train_counts(train, *sizes)
    x_train, y_train, _ = _split(train, counts)
    x_test, y_test, users = _split(test, counts)
    models = {
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "gradient-boosted trees": HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05,
                                                                 early_stopping=True, random_state=seed),
    }
    out = {"train_rows": int(len(y_train)), "test_rows": int(len(y_test))}
    for name, model in models.items():
        p = model.fit(x_train, y_train).predict_proba(x_test)[:, 1]
        out[name] = {"auc": auc(y_test, p), "gauc": gauc(y_test, p, users).gauc}
    last5 = x_test[:, NAMES.index("share_last_5")]
    out["share of the last 5"] = {"auc": auc(y_test, last5), "gauc": gauc(y_test, last5, users).gauc}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True, type=Path, help="a build-features output directory")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = yardstick(args.features)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{args.features}: {result['train_rows']:,} train rows, {result['test_rows']:,} test rows")
    print("| yardstick | test AUC | test GAUC |\n|---|---:|---:|")
    for name in ("logistic regression", "gradient-boosted trees", "share of the last 5"):
        print(f"| {name} | {result[name]['auc']:.4f} | {result[name]['gauc']:.4f} |")


if __name__ == "__main__":
    main()
