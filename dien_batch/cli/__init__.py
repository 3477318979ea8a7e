"""The `dien-batch` command line: one module per stage, heavy imports only inside the commands."""

from __future__ import annotations

import click

from .. import __version__
from .common import CONTEXT, EXIT_CODE_HELP, DienBatchGroup

PIPELINE = """\b
Pipeline:
  synth / raw logs -> build-features (Spark + Great Expectations) -> train (PyTorch)
  -> compile (ONNX, TensorRT) -> score (candidate ads) -> evaluate (+ simulated A/B) -> report
  nightly runs all of it for one date.
"""


@click.group(cls=DienBatchGroup, context_settings=CONTEXT, epilog=PIPELINE + "\n" + EXIT_CODE_HELP)
@click.version_option(__version__, prog_name="dien-batch")
def cli() -> None:
    """Turn raw user-behaviour logs into DIEN models, scored ad candidates and nightly reports.

    Run `dien-batch COMMAND --help` for a command's options and examples.
    """


from . import evaluation, features, nightly, scoring, synth, train  # noqa: E402,F401  (registers the commands)


def main() -> None:
    cli(prog_name="dien-batch")
