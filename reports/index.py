"""REPORTS/index.html: every night's headline numbers and gates, and the trends across nights."""

from __future__ import annotations

from pathlib import Path

from dien_batch.io import atomic_write_bytes, read_json

from . import plots
from .render import environment

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dien-batch nightly reports</title>
<style>body { font: 14px/1.45 system-ui, sans-serif; max-width: 1080px; margin: 0 auto; padding: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; } .bad { color: #c62828; } .good { color: #1a7f37; }
img { max-width: 100%; }</style></head><body>
<h1>Nightly reports</h1>
{% if trend %}<img alt="AUC and GAUC across nights" src="{{ trend }}">{% endif %}
<table><tr><th>date</th><th>AUC</th><th>GAUC</th><th>baseline AUC</th><th>PCOC</th><th>CTR gain</th>
<th>eCPM gain</th><th>gates</th></tr>
{% for n in nights | reverse %}<tr><td><a href="{{ n.date }}/report.html">{{ n.date }}</a></td>
<td>{{ num(n.model.auc) }}</td><td>{{ num(n.model.gauc) }}</td><td>{{ num(n.baseline.auc) }}</td>
<td>{{ num(n.model.pcoc, 3) }}</td><td>{{ pct(n.ctr_gain) }}</td><td>{{ pct(n.ecpm_gain) }}</td>
<td class="{{ 'bad' if n.failed else 'good' }}">{{ n.failed | join("; ") if n.failed else "passed" }}</td></tr>
{% endfor %}
</table></body></html>
"""


def nights(reports: str | Path) -> list[dict]:
    out = []
    for folder in sorted(Path(reports).iterdir()) if Path(reports).exists() else []:
        if not (folder / "nightly.json").exists():
            continue
        status = read_json(folder / "nightly.json")  # a night that failed validation has no metrics
        m = read_json(folder / "metrics.json") if (folder / "metrics.json").exists() else {}
        gains = m.get("simulation", {}).get("gains", {})
        out.append({"date": folder.name, "model": {k: m.get("model", {}).get(k) for k in ("auc", "gauc", "pcoc")},
                    "baseline": {k: m.get("baseline", {}).get(k) for k in ("auc", "gauc")},
                    "ctr_gain": gains.get("ctr"), "ecpm_gain": gains.get("ecpm"), "failed": status["failed"]})
    return out


def previous_night(reports: str | Path, day: str) -> dict | None:
    earlier = [n for n in nights(reports) if n["date"] < day]
    return {"date": earlier[-1]["date"], "auc": earlier[-1]["model"]["auc"]} if earlier else None


def write_index(reports: str | Path) -> Path:
    found = nights(reports)
    html = environment().from_string(INDEX).render(nights=found, trend=plots.trends(found))
    out = Path(reports) / "index.html"
    atomic_write_bytes(out, html.encode())
    return out
