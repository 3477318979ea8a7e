"""`dien-batch compile` and `score`: engines and batch scoring of candidate ads."""

from __future__ import annotations

import click

from . import cli
from .common import command, not_built

TITLE = "compile + score on CPU: engines, candidate batch scoring, resumable and distributed"
ENGINES = ["torch", "onnx", "fp16", "fp32"]


@command(cli, "compile", """
dien-batch compile --model models/dien --engine onnx --out engines/dien.onnx
""")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--engine", type=click.Choice(["onnx", "fp16", "fp32"]), default="onnx", show_default=True)
@click.option("--out", required=True, type=click.Path())
def compile_(**_kwargs) -> None:
    """Export a trained model to an engine file with a manifest."""
    not_built(TITLE)


@command(cli, "score", """
dien-batch score --model models/dien --engine torch --requests features/requests --out scores/dien
""")
@click.option("--model", required=True, type=click.Path(exists=True), help="Model dir or engine file.")
@click.option("--engine", type=click.Choice(ENGINES), default="torch", show_default=True)
@click.option("--requests", required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False))
def score(**_kwargs) -> None:
    """Score every candidate ad of every request; resumable after a kill."""
    not_built(TITLE)
