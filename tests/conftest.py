"""Shared fixtures: small synthetic worlds built once per test session, in temp dirs."""

from __future__ import annotations

import os

# Triton kernels run in Triton's CPU interpreter in the tests (set before anything imports triton);
# the PTX compile check runs in a subprocess without it.
os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from dien_batch.data.synth import SynthSpec, generate  # noqa: E402

DATA = Path(__file__).parent / "data"
SMALL_WORLD = SynthSpec(users=300, items=2_000, categories=40, days=30, events_per_user=40,
                        requests=1_500, candidates_per_request=10, seed=7)


def swapped_vocabulary(src: Path, dst: Path, rewrite_only: bool = False) -> Path:
    """A copy of a vocabulary directory in which two items trade indices (a different vocabulary), or with
    `rewrite_only` the same content rewritten differently (another compression and row grouping)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        table = pq.read_table(f)
        if f.name == "item.parquet" and not rewrite_only:
            ids = table["id"].to_pylist()
            ids[2], ids[3] = ids[3], ids[2]
            table = table.set_column(0, "id", pa.array(ids))
        pq.write_table(table, dst / f.name, compression="gzip" if rewrite_only else "snappy", row_group_size=7)
    return dst


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "world"
    out.mkdir()
    generate(SMALL_WORLD, out)
    return out


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the whole test session (UI off, 2 shuffle partitions)."""
    from dien_batch.spark_jobs.session import LOG4J, spark_session

    session = spark_session("local[2]", driver_memory="2g", shuffle_partitions=2, conf={
        "spark.driver.extraJavaOptions": f"-Dlog4j.configurationFile=file:{LOG4J} -XX:+UseSerialGC",
        "spark.default.parallelism": "2"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def built_world(spark, small_world, tmp_path_factory) -> Path:
    """build-features on the small synthetic world (impression-style samples), built once."""
    from dien_batch.spark_jobs.build_features import BuildConfig, run

    out = tmp_path_factory.mktemp("features") / "world"
    run(BuildConfig(events=str(small_world), out=str(out), max_len=30, seed=3), spark)
    return out
