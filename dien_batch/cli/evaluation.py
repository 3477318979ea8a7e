"""`dien-batch evaluate`, `report` and `nightly`: metrics, simulated A/B tests and reports."""

from __future__ import annotations

import click

from . import cli
from .common import command


def _floats(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated numbers, got '{text}'") from exc


@command(cli, "evaluate", """
dien-batch evaluate --scores scores/dien --baseline scores/base --simulate --out eval
dien-batch evaluate --scores scores/dien --baseline scores/base --simulate --judge scores/judge --out eval
""")
@click.option("--scores", required=True, type=click.Path(exists=True), help="The candidate model's score file.")
@click.option("--baseline", type=click.Path(exists=True), help="The baseline's score file (same requests).")
@click.option("--simulate", is_flag=True, help="Replay the auctions under both arms (needs bids and a judge).")
@click.option("--slots", type=int, default=3, show_default=True, help="Ad slots per request.")
@click.option("--reserve", type=float, default=0.05, show_default=True, help="Reserve price per click.")
@click.option("--position-bias", help="Click multiplier per slot, e.g. 1,0.7,0.5 (default 1/log2(slot+1)).")
@click.option("--clicks", type=click.Choice(["sampled", "expected"]), default="sampled", show_default=True,
              help="Draw clicks from the judge, or use their expectation.")
@click.option("--judge", type=click.Path(exists=True),
              help="Score file of a separate calibrated model that judges clicks (when the data has no p_true).")
@click.option("--features", type=click.Path(exists=True, file_okay=False),
              help="The build-features output (validation summary; default: found from the score manifest).")
@click.option("--model", type=click.Path(exists=True, file_okay=False),
              help="The candidate model dir: adds the interest-evolution view of sample users.")
@click.option("--replicates", type=int, default=1000, show_default=True, help="Bootstrap replicates.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
def evaluate(seed: int, out: str, position_bias: str | None, **options) -> None:
    """Offline metrics (AUC, GAUC, calibration, DeLong) and simulated A/B gains: OUT/metrics.json.

    Gains in CTR, PPC and eCPM come with 95% intervals from a paired bootstrap over users.
    """
    from .. import ui
    from ..evaluation.evaluate import EvaluateConfig
    from ..evaluation.evaluate import evaluate as run
    from ..io import atomic_output_dir, write_json

    cfg = EvaluateConfig(out=out, seed=seed, position_bias=_floats(position_bias), **options)
    result = run(cfg)
    with atomic_output_dir(out) as tmp:
        write_json(tmp / "metrics.json", result)
    rows = []
    for arm in ("model", "baseline"):
        if arm in result and "auc" in result[arm]:
            r, m = result[arm], ui.fmt_metric
            rows.append((arm, f"AUC {m(r['auc'])}  GAUC {m(r['gauc'])}  logloss {m(r['logloss'])}  "
                              f"PCOC {m(r['pcoc'], 3)}"))
    if "comparison" in result:
        c = result["comparison"]
        rows.append(("comparison", f"RelaImpr {100 * c['rela_impr']:+.2f}%  DeLong p {c['delong']['p_value']:.2g}"))
    if "simulation" in result:
        g = result["simulation"]["gains"]
        for key in ("ctr", "ppc", "ecpm"):
            if g[key] is None:
                rows.append((f"{key.upper()} gain", f"undefined: {g['undefined'][key]}"))
                continue
            interval = f"[{ui.fmt_pct(g[key + '_lo'])}, {ui.fmt_pct(g[key + '_hi'])}]"
            rows.append((f"{key.upper()} gain", f"{ui.fmt_pct(g[key])}  {interval}  "
                                                f"P>0 {ui.fmt_metric(g[key + '_p_positive'], 2)}"))
        rows.append(("judge", result["simulation"]["judge"]["kind"]))
    ui.summary(f"evaluate: wrote {out}/metrics.json", rows)


@command(cli, "report", """
dien-batch report eval
""")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--title", help="Report title (default: the directory name).")
def report(seed: int, directory: str, title: str | None) -> None:
    """Render an evaluation directory as one self-contained HTML file (DIRECTORY/report.html)."""
    from dien_batch.reports.render import render

    from .. import ui

    path = render(directory, title)
    ui.summary("report", [("written", str(path)), ("size", f"{path.stat().st_size / 1024:.0f} KB")])
