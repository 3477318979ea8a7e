"""`dien-batch train`: DIEN and the paper's baselines in PyTorch."""

from __future__ import annotations

import click

from . import cli
from .common import command

MODELS = ["base", "wide_deep", "pnn", "din", "gru_att", "gru_aigru", "gru_agru", "gru_augru", "dien"]


@command(cli, "train", """
dien-batch train --features features --model dien --out models/dien
dien-batch train --features features --model base --epochs 2 --out models/base
dien-batch train --features features --model dien --attention mlp --augru-variant official --out models/dien-o
""")
@click.option("--features", required=True, type=click.Path(exists=True, file_okay=False),
              help="A build-features output directory.")
@click.option("--model", "model", type=click.Choice(MODELS), default="dien", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--aux-alpha", type=float, default=1.0, show_default=True, help="dien: auxiliary loss weight.")
@click.option("--attention", type=click.Choice(["bilinear", "mlp"]), default="bilinear", show_default=True)
@click.option("--augru-variant", type=click.Choice(["paper", "official"]), default="paper", show_default=True)
@click.option("--activation", type=click.Choice(["dice", "prelu"]), default="dice", show_default=True)
@click.option("--embedding-dim", type=int, default=18, show_default=True)
@click.option("--hidden", type=int, default=36, show_default=True, help="GRU hidden size.")
@click.option("--patience", type=int, default=1, show_default=True,
              help="Stop after this many epochs without a better validation AUC.")
@click.option("--threads", type=int, default=0, help="torch threads (0 = PyTorch's default).")
def train(**options) -> None:
    """Train a model on build-features output; choose the checkpoint on the validation split.

    Writes OUT/model.safetensors, OUT/config.json and OUT/metrics.json (per-epoch train/valid figures
    and the test metrics of the chosen checkpoint, computed once).
    """
    from .. import ui
    from ..training import TrainConfig
    from ..training import train as run

    metrics = run(TrainConfig(**options))
    test = metrics["test"]
    m = ui.fmt_metric
    rows = [(f"epoch {e['epoch']}", f"loss {e['train_loss']:.4f}  valid auc {m(e['valid']['auc'])}  "
             f"gauc {m(e['valid']['gauc'])}  {e['train_samples_per_s']:,.0f} samples/s") for e in metrics["epochs"]]
    rows += [("chosen", f"epoch {metrics['chosen_epoch']} (by validation AUC)"),
             ("test", f"auc {m(test['auc'])}  gauc {m(test['gauc'])}  logloss {m(test['logloss'])}"),
             ("parameters", metrics["parameters"]), ("seconds", metrics["seconds"])]
    ui.summary(f"train {options['model']}: wrote {options['out']}", rows)
