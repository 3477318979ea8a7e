"""`dien-batch evaluate`, `report` and `nightly`: metrics, simulated A/B tests and reports."""

from __future__ import annotations

import click

from . import cli
from .common import command, not_built

TITLE = "evaluate, report, nightly: offline metrics, simulated A/B gains, and a report"


@command(cli, "evaluate", """
dien-batch evaluate --scores scores/dien --baseline scores/base --simulate --out eval
""")
@click.option("--scores", required=True, type=click.Path(exists=True))
@click.option("--baseline", type=click.Path(exists=True))
@click.option("--simulate", is_flag=True, help="Replay the auctions under both arms.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
def evaluate(**_kwargs) -> None:
    """Offline metrics (AUC, GAUC, calibration, DeLong) and simulated A/B gains."""
    not_built(TITLE)


@command(cli, "report", """
dien-batch report eval
""")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def report(**_kwargs) -> None:
    """Render an evaluation directory as one self-contained HTML file."""
    not_built(TITLE)


@command(cli, "nightly", """
dien-batch nightly --config nightly.toml --date 2025-03-01
""")
@click.option("--date", help="The night to run (YYYY-MM-DD); default today.")
def nightly(**_kwargs) -> None:
    """Run build-features, score, evaluate and report for one date; exit 4 when a gate trips."""
    not_built(TITLE)
