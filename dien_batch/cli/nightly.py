"""`dien-batch nightly`: one date end to end (features, scores of both models, evaluation, report,
the trend index) with quality gates. Idempotent: a rerun for the same date replaces that date's work."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

from . import cli
from .common import command

GATES = {
    "min_auc": "the candidate model's AUC is at least this",
    "max_auc_drop": "the AUC fell by at most this since the previous night",
    "pcoc_min": "PCOC (predicted / observed clicks) is at least this",
    "pcoc_max": "PCOC is at most this",
    "max_rejected_fraction": "at most this fraction of input rows was rejected",
    "min_ctr_gain_lo": "the simulated CTR gain's lower 95% bound is at least this",
    "min_auc_gain": "the candidate model's AUC minus the baseline's is at least this",
}


def _gate_failures(gates: dict, metrics: dict, manifest: dict, previous: dict | None) -> list[str]:
    unknown = sorted(set(gates) - set(GATES))
    if unknown:
        from ..errors import UsageError

        raise UsageError(f"unknown gate(s) {', '.join(unknown)}; known: {', '.join(GATES)}")
    model, failures = metrics.get("model", {}), []

    def check(name, ok, detail):
        if name in gates and not ok:
            failures.append(f"{name} ({GATES[name]}): {detail}")

    auc = model.get("auc")
    check("min_auc", auc is not None and auc >= gates.get("min_auc", 0), f"AUC {auc}")
    if previous and previous.get("auc") is not None and auc is not None:
        check("max_auc_drop", previous["auc"] - auc <= gates.get("max_auc_drop", 1),
              f"AUC {auc:.4f} after {previous['auc']:.4f} on {previous['date']}")
    base_auc = metrics.get("baseline", {}).get("auc")
    gain = None if auc is None or base_auc is None else auc - base_auc
    check("min_auc_gain", gain is not None and gain >= gates.get("min_auc_gain", -1),
          f"AUC {auc} vs baseline {base_auc}" + ("" if gain is None else f" (gain {gain:+.4f})"))
    pcoc = model.get("pcoc")
    check("pcoc_min", pcoc is not None and pcoc >= gates.get("pcoc_min", 0), f"PCOC {pcoc}")
    check("pcoc_max", pcoc is not None and pcoc <= gates.get("pcoc_max", float("inf")), f"PCOC {pcoc}")
    for what, rows in manifest.get("rows", {}).items():
        share = rows["rows_rejected"] / max(rows["rows_in"], 1)
        check("max_rejected_fraction", share <= gates.get("max_rejected_fraction", 1),
              f"{share:.2%} of {what} rows rejected")
    ctr_lo = metrics.get("simulation", {}).get("gains", {}).get("ctr_lo")
    check("min_ctr_gain_lo", ctr_lo is not None and ctr_lo >= gates.get("min_ctr_gain_lo", -1),
          f"CTR gain lower bound {ctr_lo}")
    return failures


def _serve(cfg: dict, day: str, work: Path) -> dict | None:
    """The serving leg ([nightly.serve]): that night's candidate table scored with the candidate model
    into SERVE_OUT/DATE/ (histories from the log before each request); only after every gate passed."""
    serve = cfg.get("serve")
    if not serve:
        return None
    from dien_batch.engines.scoring import ScoreConfig, score
    from dien_batch.spark_jobs.build_features import BuildConfig, run

    from .. import ui

    missing = [k for k in ("candidates", "out") if k not in serve]
    if missing:
        from ..errors import UsageError

        raise UsageError(f"[nightly.serve] is missing {', '.join(missing)}")
    fill = {"date": day}
    ui.info(f"nightly {day}: gates passed, scoring tonight's candidates")
    features = work / "serve-features"
    run(BuildConfig(events=cfg["events"].format(**fill), fmt=cfg.get("format", "auto"), vocab=cfg["vocab"],
                    candidate_table=serve["candidates"].format(**fill), max_len=cfg.get("max_len", 100),
                    feature_spec=cfg.get("feature_spec"), out=str(features), master=cfg.get("master", "local[2]")))
    out = Path(serve["out"]) / day
    summary = score(ScoreConfig(model=cfg["model"], engine=cfg.get("model_engine", cfg.get("engine", "torch")),
                                requests=str(features / "requests"), out=str(out), overwrite=True,
                                top_k=serve.get("top_k")))
    return {"out": str(out), "requests": summary["requests"], "pairs": summary["pairs"]}


def run_night(cfg: dict, day: str) -> tuple[Path, list[str]]:
    """Build, score, evaluate and report one date; returns the report and the failed gates."""
    from dien_batch.engines.scoring import ScoreConfig, score
    from dien_batch.reports.index import previous_night, write_index
    from dien_batch.reports.render import render, render_failed
    from dien_batch.spark_jobs.build_features import BuildConfig, run

    from .. import ui
    from ..errors import DataValidationError
    from ..evaluation.evaluate import EvaluateConfig, evaluate
    from ..io import atomic_output_dir, write_json

    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    work, reports = Path(cfg["work"]) / day, Path(cfg["reports"])
    fill = {"date": day}
    ui.info(f"nightly {day}: features")
    try:
        manifest = run(BuildConfig(
            events=cfg["events"].format(**fill),
            impressions=cfg.get("impressions") and cfg["impressions"].format(**fill),
            fmt=cfg.get("format", "auto"), vocab=cfg["vocab"], split=f"time:{day}",
            until=(start + timedelta(days=1)).isoformat(), max_len=cfg.get("max_len", 100),
            candidates=cfg.get("candidates", 20), feature_spec=cfg.get("feature_spec"), out=str(work / "features"),
            master=cfg.get("master", "local[2]")))
    except DataValidationError as exc:
        failures = [f"validation: {exc}"]
        failed_report = Path(f"{work / 'features'}.validation-failed")
        with atomic_output_dir(reports / day) as tmp:
            write_json(tmp / "nightly.json", {"date": day, "gates": cfg.get("gates", {}), "failed": failures})
            render_failed(tmp, f"Nightly report {day}", failures,
                          str(failed_report) if failed_report.exists() else None)
        write_index(reports)
        return reports / day / "report.html", failures
    scores = {}
    for arm in ("model", "baseline"):
        ui.info(f"nightly {day}: scoring the {arm}")
        scores[arm] = work / "scores" / arm
        engine = cfg.get(f"{arm}_engine", cfg.get("engine", "torch"))
        score(ScoreConfig(model=cfg[arm], engine=engine, requests=str(work / "features" / "requests"),
                          out=str(scores[arm]), overwrite=True))
    ui.info(f"nightly {day}: evaluating")
    metrics = evaluate(EvaluateConfig(
        scores=str(scores["model"]), baseline=str(scores["baseline"]), simulate=cfg.get("simulate", True),
        slots=cfg.get("slots", 3), reserve=cfg.get("reserve", 0.05), features=str(work / "features"),
        model=cfg.get("interest_model"), out=str(reports / day), seed=cfg.get("seed", 0)))
    failures = _gate_failures(cfg.get("gates", {}), metrics, manifest, previous_night(reports, day))
    served = _serve(cfg, day, work) if not failures else None
    if failures and cfg.get("serve"):
        ui.info(f"nightly {day}: a gate failed, so tonight's candidates are not scored (the model is not handed on)")
    with atomic_output_dir(reports / day) as tmp:
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "nightly.json", {"date": day, "gates": cfg.get("gates", {}), "failed": failures,
                                          "served": served})
    render(reports / day, title=f"Nightly report {day}")
    write_index(reports)
    return reports / day / "report.html", failures


@command(cli, "nightly", """
dien-batch nightly --config nightly.toml --date 2025-02-25
# crontab, 06:00 every day:
# 0 6 * * * cd /srv/dien && .venv/bin/dien-batch nightly --config nightly.toml --date $(date -d yesterday +\\%F) -q
""")
@click.option("--date", "day", help="The night to run (YYYY-MM-DD); default: yesterday (UTC).")
@click.pass_context
def nightly(ctx: click.Context, seed: int, day: str | None) -> None:
    """Run build-features (stable vocabulary), score with the candidate and the baseline model,
    evaluate with the simulated A/B test, render REPORTS/<date>/report.html and REPORTS/index.html.

    The TOML file (--config, required) names the inputs and models in a [nightly] table and the quality
    gates in [nightly.gates]; a tripped gate exits 4 and says which. See examples/nightly.toml.
    """
    from .. import ui
    from ..config import read_toml
    from ..errors import QualityGateError, UsageError

    path = ctx.meta.get("config_path")
    if not path:
        raise UsageError("nightly needs --config FILE.toml (see examples/nightly.toml)")
    cfg = read_toml(path).get("nightly")
    if not isinstance(cfg, dict):
        raise UsageError(f"{path} has no [nightly] table")
    missing = [k for k in ("events", "vocab", "model", "baseline", "reports", "work") if k not in cfg]
    if missing:
        raise UsageError(f"{path}: [nightly] is missing {', '.join(missing)}")
    day = day or (date.today() - timedelta(days=1)).isoformat()
    cfg.setdefault("seed", seed)
    report, failures = run_night(cfg, day)
    ui.summary(f"nightly {day}", [("report", str(report)), ("index", str(Path(cfg["reports"]) / "index.html")),
                                  ("gates", "all passed" if not failures else f"{len(failures)} FAILED")])
    if failures:
        raise QualityGateError("quality gate failed: " + "; ".join(failures))


nightly.config_is_job_spec = True
