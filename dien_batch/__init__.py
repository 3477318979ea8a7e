"""dien-batch: raw behaviour logs to DIEN samples, models, scored ad candidates and nightly reports.

The core package: schemas, config, I/O, data adapters, the model zoo, evaluation and the CLI.
It imports nothing from `spark_jobs`, `engines` or `reports`; only the CLI reaches up to them, lazily.
"""

__version__ = "0.1.0"
