"""evaluate -> report as a user sees it: the HTML parsed, every string escaped, rendered in Chromium."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dien_batch import schema
from dien_batch.cli import cli

EVIL = '<script>alert("x")</script>&'


def score_file(path, pctr, rng, n_req=400, k=6):
    """A score file as `score` writes it, with a hostile category name."""
    n = n_req * k
    p_true = rng.uniform(0.02, 0.4, n)
    scores, bids = pctr(p_true).astype(np.float32), np.round(rng.lognormal(-0.3, 0.5, n), 2)
    rank = np.argsort(np.argsort(-(bids * scores).reshape(n_req, k), axis=1), axis=1).ravel() + 1
    table = pa.table({
        "request_id": [f"r{i // k}" for i in range(n)], "user_id": [f"u{(i // k) % 60}" for i in range(n)],
        "item_id": [f"i{i % k}" for i in range(n)],
        "category_id": [EVIL if i % 3 == 0 else f"c{i % 5}" for i in range(n)],
        "hist_len": pa.array(np.repeat(rng.integers(0, 60, n_req), k).astype(np.int32)),
        "pctr": pa.array(scores),
        "label": pa.array((rng.random(n) < p_true).astype(np.int32)),
        "bid": pa.array(bids), "p_true": pa.array(p_true),
        "position": pa.array(np.zeros(n, np.int32)), "ecpm_rank": pa.array(rank.astype(np.int32)),
    }, schema=schema.SCORES)
    path.mkdir()
    pq.write_table(table, path / "part-00000.parquet")
    return path


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.h2, self.scripts, self.images, self._in_h2 = [], [], 0, [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data.strip())
            self._in_h2 = False


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    model = score_file(tmp / "model", lambda t: np.clip(t * np.exp(rng.normal(0, 0.3, len(t))), 1e-4, 1), rng)
    rng = np.random.default_rng(0)
    base = score_file(tmp / "base", lambda t: np.clip(t * np.exp(rng.normal(0, 1.0, len(t))), 1e-4, 1), rng)
    out = tmp / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "--scores", str(model), "--baseline", str(base), "--simulate",
                                      "--replicates", "200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "CTR gain" in result.output and "judge       p_true" in result.output
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_metrics_schema(evaluated):
    import json

    m = json.loads((evaluated / "metrics.json").read_text())
    assert m["schema_version"] == "1"
    for key in ("auc", "gauc", "logloss", "pcoc", "reliability", "roc"):
        assert key in m["model"] and key in m["baseline"]
    assert {"rela_impr", "delong", "gauc_difference"} <= set(m["comparison"])
    gains = m["simulation"]["gains"]
    for metric in ("ctr", "ppc", "ecpm"):
        assert {metric, f"{metric}_lo", f"{metric}_hi", f"{metric}_p_positive"} <= set(gains)
    assert set(m["simulation"]["arms"]) == {"model", "baseline"}
    assert m["model"]["auc"] > m["baseline"]["auc"]


def test_report_html_is_self_contained_and_escaped(evaluated):
    html = (evaluated / "report.html").read_text()
    parsed = Collect()
    parsed.feed(html)
    assert parsed.scripts == 0 and EVIL not in html and "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html  # no CDN, nothing fetched
    for heading in ("Headline", "Ranking", "Calibration", "Simulated auctions", "Provenance"):
        assert heading in parsed.h2
    assert len(parsed.images) >= 5 and all(src.startswith("data:image/png;base64,") for src in parsed.images)


def test_report_renders_in_headless_chromium(evaluated, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    png = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}/p",
                    f"--screenshot={png}", "--window-size=1200,2400", (evaluated / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
