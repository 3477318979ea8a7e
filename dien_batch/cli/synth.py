"""`dien-batch synth`: write the synthetic ads world (events + impressions with known truth)."""

from __future__ import annotations

import time

import click

from . import cli
from .common import command


@command(cli, "synth", """
dien-batch synth --out data/synth
dien-batch synth --users 20000 --events-per-user 50 --requests 100000 --out data/synth-1m
dien-batch synth --profiles --out data/synth-fields
""")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--users", type=int, default=5_000, show_default=True)
@click.option("--items", type=int, default=20_000, show_default=True)
@click.option("--categories", type=int, default=100, show_default=True)
@click.option("--days", type=int, default=60, show_default=True, help="Length of the behaviour log.")
@click.option("--events-per-user", type=float, default=50.0, show_default=True,
              help="Mean behaviour events per user (log-normal across users).")
@click.option("--requests", type=int, default=20_000, show_default=True, help="Ad requests.")
@click.option("--candidates-per-request", type=int, default=20, show_default=True)
@click.option("--slots", type=int, default=3, show_default=True, help="Ads the logging policy shows.")
@click.option("--start", default="2025-01-01", show_default=True, help="First day of the log (UTC).")
@click.option("--profiles", is_flag=True,
              help="Also user profiles (segment, age) and ad fields (quality tier, price) with a known effect on "
                   "p_true, as side tables with a feature spec: OUT/users.parquet, OUT/items.parquet, "
                   "OUT/fields.toml (build-features --feature-spec OUT/fields.toml).")
def synth(out: str, seed: int, **sizes) -> None:
    """Generate a synthetic ads world whose users' interests drift over time.

    Writes OUT/events (user behaviour) and OUT/impressions (ad requests with candidate ads, bids, the
    logging policy's positions, click outcomes and the true click probability p_true), plus
    OUT/manifest.json. Deterministic for a seed; written atomically.
    """
    from .. import ui
    from ..data.synth import SynthSpec, generate
    from ..io import atomic_output_dir, write_json

    spec = SynthSpec(seed=seed, **sizes)
    started = time.perf_counter()
    ui.info(f"generating {spec.users:,} users, {spec.requests:,} requests -> {out}")
    with atomic_output_dir(out) as tmp:
        stats = generate(spec, tmp)
        stats["seconds"] = round(time.perf_counter() - started, 2)
        write_json(tmp / "manifest.json", stats)
    ui.summary(f"synth: wrote {out}", [
        ("events", stats["events"]), ("impressions", stats["impressions"]),
        ("requests", stats["requests"]), ("interest tracks", stats["interest_tracks"]),
        ("time span", f"{stats['first_ts'][:10]} .. {stats['last_ts'][:10]}"),
        ("click rate", f"{stats['click_rate']:.4f} (mean p_true {stats['mean_p_true']:.4f})"),
        ("seconds", stats["seconds"]),
    ])
