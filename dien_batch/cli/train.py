"""`dien-batch train`: DIEN and the paper's baselines in PyTorch."""

from __future__ import annotations

import click

from . import cli
from .common import command, not_built

MODELS = ["base", "wide_deep", "pnn", "din", "gru_att", "gru_aigru", "gru_agru", "gru_augru", "dien"]


@command(cli, "train", """
dien-batch train --features features --model dien --out models/dien
dien-batch train --features features --model base --epochs 2 --out models/base
""")
@click.option("--features", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--model", "model_name", type=click.Choice(MODELS), default="dien", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--aux-alpha", type=float, default=1.0, show_default=True)
@click.option("--attention", type=click.Choice(["bilinear", "mlp"]), default="bilinear", show_default=True)
@click.option("--augru-variant", type=click.Choice(["paper", "official"]), default="paper",
              show_default=True)
def train(**_kwargs) -> None:
    """Train a model on build-features output; choose the checkpoint on the validation split."""
    not_built("train: DIEN and the paper's baselines in PyTorch")
