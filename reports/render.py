"""Render an evaluation directory (metrics.json) as one self-contained HTML file.

No CDN and no JavaScript: styles inline, plots embedded as PNG data URIs. Every string from the data
goes through Jinja2's autoescaping.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from dien_batch import ui
from dien_batch.io import atomic_write_bytes, read_json

from . import plots


def _pct(value) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:+.2f}%"


def _sci(value) -> str:
    return "–" if value is None else f"{value:.2g}"


def _int(value) -> str:
    return "–" if value is None else f"{value:,.0f}"


def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.ChainableUndefined)
    env.globals.update(num=functools.partial(ui.fmt_metric, missing="–"), pct=_pct, sci=_sci, fmt_int=_int)
    return env


def render(directory: str | Path, title: str | None = None) -> Path:
    """Write DIRECTORY/report.html from DIRECTORY/metrics.json; returns its path."""
    directory = Path(directory)
    metrics = read_json(directory / "metrics.json")
    html = environment().get_template("report.html").render(
        m=metrics, plots=plots.all_plots(metrics), title=title or f"Evaluation: {directory.name}")
    out = directory / "report.html"
    atomic_write_bytes(out, html.encode())
    return out
