"""PySpark jobs: take a SparkSession and paths, use the core's schemas, adapters and I/O contracts.

Each job can be launched by the CLI or by `spark-submit` on a cluster.
"""
