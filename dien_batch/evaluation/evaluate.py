"""`dien-batch evaluate`: score files -> metrics.json (versioned schema) for the report.

Reads score files as `dien-batch score` writes them (`request_id, user_id, item_id, pctr`, and
`label`, `bid`, `p_true`, `category_id`, `hist_len` where present). With a baseline, the two files are
joined on (request_id, item_id) and compared: RelaImpr, DeLong's test, a user-clustered bootstrap of
the GAUC difference, and with `simulate` the auction replay of both arms.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import __version__
from ..errors import UsageError
from ..io import library_versions, read_json
from . import auction, bootstrap, metrics
from .delong import delong_test
from .field_slices import field_values

METRICS_SCHEMA_VERSION = "1"
HISTOGRAM_BINS = 40


@dataclass(frozen=True)
class EvaluateConfig:
    scores: str
    out: str
    baseline: str | None = None
    simulate: bool = False
    slots: int = 3
    reserve: float = 0.05
    position_bias: tuple[float, ...] | None = None
    clicks: str = "sampled"
    judge: str | None = None
    features: str | None = None
    model: str | None = None
    replicates: int = bootstrap.REPLICATES
    seed: int = 0


def read_scores(path: str | Path) -> tuple[pa.Table, dict]:
    """A score dataset and its manifest (empty when it has none)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"score file {path} not found")
    table = pq.read_table(path)
    if "clicked" in table.column_names and "label" not in table.column_names:
        table = table.rename_columns(["label" if c == "clicked" else c for c in table.column_names])
    for required in ("request_id", "item_id", "pctr"):
        if required not in table.column_names:
            raise UsageError(f"{path}: not a score file (no '{required}' column)")
    manifest = read_json(path / "_manifest.json") if (path / "_manifest.json").exists() else {}
    return table, manifest


def _column(table: pa.Table, name: str) -> np.ndarray | None:
    if name not in table.column_names or table.column(name).null_count == len(table):
        return None
    return table.column(name).to_numpy(zero_copy_only=False)


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Dense integer codes of a column's values (users, requests)."""
    return pc.dictionary_encode(column).combine_chunks().indices.to_numpy().astype(np.int64)


def score_block(y: np.ndarray | None, p: np.ndarray, users: np.ndarray, table: pa.Table,
                fields: dict[str, np.ndarray] | None = None) -> dict:
    """Ranking and calibration metrics of one arm (ranking ones only when labels exist), sliced by
    category, history length and the feature spec's categorical `fields` (values per row)."""
    hist, edges = np.histogram(p, bins=HISTOGRAM_BINS, range=(0.0, float(max(p.max(), 1e-6))))
    block = {"rows": int(len(p)), "mean_pctr": float(p.mean()),
             "histogram": {"counts": hist.tolist(), "edges": edges.tolist()}}
    if y is None:
        return block
    g = metrics.gauc(y, p, users)
    block.update({
        "auc": metrics.auc(y, p), "gauc": g.gauc, "gauc_users": g.users, "gauc_users_skipped": g.users_skipped,
        "logloss": metrics.logloss(y, p), "normalized_entropy": metrics.normalized_entropy(y, p),
        "pcoc": metrics.pcoc(y, p), "ctr": float(y.mean()),
        "roc": metrics.roc_points(y, p), "reliability": metrics.reliability(y, p),
        "slices": {},
    })
    category = _column(table, "category_id")
    if category is not None:
        block["slices"]["category"] = metrics.by_slice(y, p, category)[:15]
    hist_len = _column(table, "hist_len")
    if hist_len is not None:
        block["slices"]["history_length"] = metrics.by_slice(y, p, metrics.history_bucket(hist_len), min_rows=1)
    for key, values in (fields or {}).items():
        block["slices"][f"field {key}"] = metrics.by_slice(y, p, values)[:15]
    return block


def _join(model: pa.Table, baseline: pa.Table) -> pa.Table:
    keep = baseline.select(["request_id", "item_id", "pctr"]).rename_columns(["request_id", "item_id", "pctr_b"])
    joined = model.join(keep, ["request_id", "item_id"], join_type="inner")
    if joined.num_rows != model.num_rows or joined.num_rows != baseline.num_rows:
        raise UsageError(f"the model and baseline score files do not cover the same candidates "
                         f"({model.num_rows:,} and {baseline.num_rows:,} rows, {joined.num_rows:,} in common)")
    return joined


def _judge(cfg: EvaluateConfig, table: pa.Table, arms: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """The click judge: p_true when the data has it, else a separate model's score file."""
    p_true = _column(table, "p_true")
    if p_true is not None and cfg.judge is None:
        return p_true.astype(np.float64), {"kind": "p_true", "description": "true click probability in the data"}
    if cfg.judge is None:
        raise UsageError("--simulate needs a judge: the data has no p_true; pass --judge SCORES from a separately "
                         "trained, calibrated model that is neither arm")
    judge_table, judge_manifest = read_scores(cfg.judge)
    keep = judge_table.select(["request_id", "item_id", "pctr"]).rename_columns(["request_id", "item_id", "judge"])
    joined = table.select(["request_id", "item_id"]).join(keep, ["request_id", "item_id"], join_type="left outer")
    joined = joined.sort_by([("request_id", "ascending"), ("item_id", "ascending")])
    judge = joined.column("judge").to_numpy(zero_copy_only=False)
    if np.isnan(judge.astype(float)).any():
        raise UsageError(f"the judge {cfg.judge} does not score every candidate")
    for name, p in arms.items():
        if np.allclose(judge, p, atol=1e-7):
            raise UsageError(f"the judge {cfg.judge} gives the same scores as the {name} arm: a compared model "
                             "must never judge itself")
    info = {"kind": "model", "path": cfg.judge, "model": judge_manifest.get("model", {}).get("config_hash")}
    y = _column(table, "label")
    if y is not None:
        info["calibration"] = {"pcoc": metrics.pcoc(y, judge), "logloss": metrics.logloss(y, judge),
                               "auc": metrics.auc(y, judge)}
    return judge.astype(np.float64), info


def _features(cfg: EvaluateConfig, manifest: dict) -> str | None:
    """The build-features output the scores came from: --features, else the score manifest's requests' parent."""
    if cfg.features is None and manifest.get("config", {}).get("requests"):
        candidate = Path(manifest["config"]["requests"]).parent
        return str(candidate) if (candidate / "manifest.json").exists() else None
    return cfg.features


def _data_section(features: str | None) -> dict:
    if not features:
        return {}
    built = read_json(Path(features) / "manifest.json")
    return {"features": features, "rows": built.get("rows"), "samples": built.get("samples"),
            "validation": built.get("validation"), "format": built.get("format"), "vocab": built.get("vocab")}


def evaluate(cfg: EvaluateConfig) -> dict:
    model_table, model_manifest = read_scores(cfg.scores)
    table = model_table
    if cfg.baseline:
        baseline_table, baseline_manifest = read_scores(cfg.baseline)
        table = _join(model_table, baseline_table)
    table = table.sort_by([("request_id", "ascending"), ("item_id", "ascending")])
    y = _column(table, "label")
    users = _codes(table.column("user_id")) if "user_id" in table.column_names else _codes(table.column("request_id"))
    p = table.column("pctr").to_numpy().astype(np.float64)
    features = _features(cfg, model_manifest)
    fields = field_values(table, features) if features else {}
    result = {"schema_version": METRICS_SCHEMA_VERSION, "model": score_block(y, p, users, table, fields)}
    result["model"]["source"] = cfg.scores
    arms = {"model": p}
    if cfg.baseline:
        pb = table.column("pctr_b").to_numpy().astype(np.float64)
        arms["baseline"] = pb
        result["baseline"] = score_block(y, pb, users, table, fields) | {"source": cfg.baseline}
        if y is not None:
            d = delong_test(y, p, pb)
            result["comparison"] = {
                "rela_impr": metrics.rela_impr(result["model"]["auc"], result["baseline"]["auc"]),
                "auc_difference": d.difference,
                "delong": {"z": d.z, "p_value": d.p_value, "std_error": d.std_error, "ci_low": d.ci_low,
                           "ci_high": d.ci_high},
                "gauc_difference": bootstrap.gauc_difference(y, p, pb, users, cfg.replicates, cfg.seed),
            }
    if cfg.simulate:
        if not cfg.baseline:
            raise UsageError("--simulate compares two arms: pass --baseline")
        bid = _column(table, "bid")
        if bid is None:
            raise UsageError("--simulate needs candidate bids (a 'bid' column in the score files)")
        judge, judge_info = _judge(cfg, table, arms)
        req = auction.Requests(_codes(table.column("request_id")), users, bid.astype(np.float64), judge)
        sim = auction.simulate(req, arms, "baseline", auction.AuctionConfig(
            slots=cfg.slots, reserve=cfg.reserve, position_bias=cfg.position_bias, clicks=cfg.clicks,
            replicates=cfg.replicates, seed=cfg.seed))
        outcomes = sim.pop("outcomes")
        sim["judge"] = judge_info
        sim["gains"] = sim["gains"]["model"]
        sim["diagnostics"] = _auction_diagnostics(outcomes, bid)
        result["simulation"] = sim
    result["data"] = _data_section(features)
    if cfg.model:
        from .interest_view import interest_view

        requests = cfg.features and Path(cfg.features) / "requests" or \
            model_manifest.get("config", {}).get("requests")
        if requests:
            result["interest_view"] = interest_view(cfg.model, requests)
    result["provenance"] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "dien_batch": __version__,
        "command": " ".join(sys.argv), "config": asdict(cfg),
        "score_manifests": {"model": model_manifest, **({"baseline": baseline_manifest} if cfg.baseline else {})},
        "libraries": library_versions("numpy", "pyarrow", "torch"),
    }
    return result


def _auction_diagnostics(outcomes: dict, bid: np.ndarray) -> dict:
    """What changed in the auctions: how often the arms fill a slot with the same ad, prices by slot."""
    model, base = outcomes["model"], outcomes["baseline"]
    shown_m, shown_b = model["position"] > 0, base["position"] > 0
    by_slot = {}
    for arm, o in (("model", model), ("baseline", base)):
        slots = sorted({int(s) for s in o["position"] if s > 0})
        by_slot[arm] = [{"slot": s, "mean_price": float(o["price"][o["position"] == s].mean()),
                         "mean_bid": float(bid[o["position"] == s].mean()),
                         "expected_ctr": float(o["expected_clicks"][o["position"] == s].mean())} for s in slots]
    return {"same_ad_shown_share": float((shown_m & shown_b).sum() / max(shown_m.sum(), 1)),
            "same_position_share": float((shown_m & (model["position"] == base["position"])).sum()
                                         / max(shown_m.sum(), 1)),
            "by_slot": by_slot}
