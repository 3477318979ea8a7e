"""`dien-batch train`: DIEN and the paper's baselines in PyTorch."""

from __future__ import annotations

import click

from ..model.zoo import MODELS
from . import cli
from .common import command


@command(cli, "train", """
dien-batch train --features features --model dien --out models/dien
dien-batch train --features features --model base --epochs 2 --out models/base
dien-batch train --features features --model dien --attention mlp --augru-variant official --out models/dien-o
""")
@click.option("--features", required=True, type=click.Path(exists=True, file_okay=False),
              help="A build-features output directory.")
@click.option("--model", "model", type=click.Choice(MODELS), default="dien", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--length-buckets", type=int, default=0, show_default=True,
              help="Sort each run of N shuffled batches by history length before cutting it into batches (the "
                   "authors' iterator: less padding, faster); 0 = plain shuffled batches.")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--aux-alpha", type=float, default=1.0, show_default=True, help="dien: auxiliary loss weight.")
@click.option("--attention", type=click.Choice(["bilinear", "mlp"]), default="mlp", show_default=True,
              help="mlp: the authors' code (MLP 80-40 on [q, h, q-h, q*h]); bilinear: the paper's eq. 9.")
@click.option("--augru-variant", type=click.Choice(["paper", "official"]), default="official", show_default=True,
              help="official: the authors' code (at attention 0 a plain GRU step); paper: eq. 12-13 (state kept).")
@click.option("--attention-norm", type=click.Choice(["softmax", "sigmoid"]), default="softmax", show_default=True,
              help="Attention weights: softmax over the history (eq. 9) or each step's own sigmoid.")
@click.option("--activation", type=click.Choice(["dice", "prelu", "auto"]), default="auto", show_default=True,
              help="auto: PReLU for the pooling baselines, Dice for the attention models (the authors' code).")
@click.option("--head", type=click.Choice(["extended", "authors"]), default="extended", show_default=True,
              help="Final MLP inputs: extended gives every model target x history sum; authors gives each model "
                   "the inputs of the authors' code (only PNN gets the product).")
@click.option("--input-bn/--no-input-bn", default=True, show_default=True,
              help="Batch normalisation of the final MLP's input (the authors' bn1).")
@click.option("--aux-norm/--no-aux-norm", default=True, show_default=True,
              help="dien: batch normalisation of the auxiliary network's input (the authors' code).")
@click.option("--interest-product/--no-interest-product", default=True, show_default=True,
              help="Sequence models: also feed target x (projected interest) to the final MLP (not the paper).")
@click.option("--embedding-std", type=float, default=0.05, show_default=True,
              help="Init std of the user and item embeddings (sparse ids start small).")
@click.option("--category-std", type=float, default=0.3, show_default=True,
              help="Init std of the category embeddings (few, frequent ids).")
@click.option("--embedding-l2", type=float, default=0.1, show_default=True,
              help="Mini-batch-aware, frequency-adaptive L2 on the embedding rows a batch uses (DIN paper).")
@click.option("--lr-decay", type=float, default=1.0, show_default=True,
              help="Multiply the learning rate by this after each epoch (the authors halve it).")
@click.option("--embedding-dim", type=int, default=18, show_default=True)
@click.option("--hidden", type=int, default=36, show_default=True, help="GRU hidden size.")
@click.option("--patience", type=int, default=2, show_default=True,
              help="Stop after this many epochs without a better validation AUC.")
@click.option("--threads", type=int, default=0, help="torch threads (0 = PyTorch's default).")
@click.option("--fields/--no-fields", default=True, show_default=True,
              help="Use the user-profile and item fields the features were built with (--feature-spec); "
                   "--no-fields trains on ids and the sequence only, for comparison.")
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
