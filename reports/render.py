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


FAILED_NIGHT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body { font: 14px/1.45 system-ui, sans-serif; max-width: 1080px; margin: 0 auto; padding: 1.5em; }
.bad { color: #c62828; }</style></head><body>
<h1>{{ title }}</h1>
<p class="bad"><strong>Nothing was scored or evaluated this night.</strong></p>
<ul>{% for reason in failed %}<li class="bad">{{ reason }}</li>{% endfor %}</ul>
{% if validation %}<p>Validation report: <code>{{ validation }}</code></p>{% endif %}
</body></html>
"""


def render_failed(directory: str | Path, title: str, failed: list[str], validation: str | None = None) -> Path:
    """DIRECTORY/report.html for a night that stopped before evaluation: what stopped it, escaped."""
    out = Path(directory) / "report.html"
    html = environment().from_string(FAILED_NIGHT).render(title=title, failed=failed, validation=validation)
    atomic_write_bytes(out, html.encode())
    return out


def render(directory: str | Path, title: str | None = None) -> Path:
    """Write DIRECTORY/report.html from DIRECTORY/metrics.json; returns its path."""
    directory = Path(directory)
    metrics = read_json(directory / "metrics.json")
    html = environment().get_template("report.html").render(
        m=metrics, plots=plots.all_plots(metrics), title=title or f"Evaluation: {directory.name}")
    out = directory / "report.html"
    atomic_write_bytes(out, html.encode())
    return out
