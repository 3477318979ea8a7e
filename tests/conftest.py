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
