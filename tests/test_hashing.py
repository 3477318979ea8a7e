"""Our NumPy xxhash64 against Spark's own `F.xxhash64` on fresh random values: ints, longs, UTF-8 strings
of every length class (the 32-byte stripes, the 8/4/1-byte tails), NUL bytes, nulls, chained columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dien_batch.data import hashing


def random_strings(rng: np.random.Generator, n: int) -> list[str | None]:
    alphabet = list("abcXYZ019 _-") + ["ü", "用", "户", "品", "\0", "é", "😀"]
    out = []
    for _ in range(n):
        length = int(rng.choice([0, 1, 3, 4, 7, 8, 15, 31, 32, 33, 64, 100, int(rng.integers(0, 300))]))
        out.append("".join(rng.choice(alphabet, length)))
    out[: 3] = ["müller", "用户二", "品12"]
    out[3], out[4] = "u1", "u1\0"  # differ only by a trailing NUL: must not collide
    out[5] = None
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_xxhash64_equals_spark(spark, seed):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    rng = np.random.default_rng(seed)
    n = 400
    ints = rng.integers(-2**31, 2**31, n).astype(np.int32)
    longs = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)
    strings = random_strings(rng, n)
    schema = T.StructType([T.StructField("i", T.IntegerType()), T.StructField("l", T.LongType()),
                           T.StructField("s", T.StringType())])
    df = spark.createDataFrame([(int(a), int(b), c) for a, b, c in zip(ints, longs, strings, strict=True)], schema)
    got = df.select(F.xxhash64("i").alias("i"), F.xxhash64("l").alias("l"), F.xxhash64("s").alias("s"),
                    F.xxhash64("s", "l", "i").alias("chain"),
                    (F.shiftrightunsigned(F.xxhash64(F.lit(7).cast("long"), "l"), 11) * F.pow(F.lit(2.0), F.lit(-53.0)))
                    .alias("u")).toPandas()
    text = pa.array(strings, pa.string())
    np.testing.assert_array_equal(hashing.xxhash64(ints), got["i"].to_numpy())
    np.testing.assert_array_equal(hashing.xxhash64(longs), got["l"].to_numpy())
    np.testing.assert_array_equal(hashing.xxhash64(text), got["s"].to_numpy())
    np.testing.assert_array_equal(hashing.xxhash64(text, longs, ints), got["chain"].to_numpy())
    np.testing.assert_array_equal(hashing.uniform(7, longs), got["u"].to_numpy())  # the draw Spark SQL makes
    assert hashing.xxhash64(pa.array(["u1"]))[0] != hashing.xxhash64(pa.array(["u1\0"]))[0]



def test_uniform_draws_are_uniform():
    u = hashing.uniform(7, np.arange(100_000, dtype=np.int64))
    assert u.min() >= 0 and u.max() < 1
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.abs(counts - 10_000).max() < 500  # ~5 sigma for a binomial(100k, 0.1)
