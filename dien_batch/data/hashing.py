"""Spark's `xxhash64` in NumPy: the same 64-bit hashes as `pyspark.sql.functions.xxhash64(...)`.

Every random draw of the sample builder is a hash of its keys (seed, user id, position, salt, ...), so
it does not depend on partitioning, on batch boundaries or on where it runs. Computing the hash as
Spark does means the same draw can be made inside Spark SQL (`F.xxhash64`) or in NumPy.

XXH64 (Yann Collet's xxHash, 64-bit) of each value, Spark's way: int32 values hash their 4 bytes,
int64 values their 8 bytes, strings their UTF-8 bytes (any length, NUL bytes included); several
columns chain, each hashed with the previous column's hash as its seed, starting from 42; a null
value leaves the hash unchanged.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SPARK_SEED = 42
P1, P2, P3, P4, P5 = (np.uint64(p) for p in (11400714785074694791, 14029467366897019727, 1609587929392839161,
                                             9650029242287828579, 2870177450012600261))
_M32 = np.uint64(0xFFFFFFFF)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * P2
    h = h ^ (h >> np.uint64(29))
    h = h * P3
    return h ^ (h >> np.uint64(32))


def _round(acc: np.ndarray, lane: np.ndarray) -> np.ndarray:
    return _rotl(acc + lane * P2, 31) * P1


def _hash_long(values: np.ndarray, seed: np.ndarray) -> np.ndarray:
    h = seed + P5 + np.uint64(8)
    h = h ^ (_rotl(values * P2, 31) * P1)
    return _fmix(_rotl(h, 27) * P1 + P4)


def _hash_int(values: np.ndarray, seed: np.ndarray) -> np.ndarray:
    h = seed + P5 + np.uint64(4)
    h = h ^ ((values & _M32) * P1)
    return _fmix(_rotl(h, 23) * P2 + P3)


def _hash_bytes(offsets: np.ndarray, data: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """XXH64 of the byte strings data[offsets[i]:offsets[i + 1]], vectorised over the rows."""
    start, length = offsets[:-1], np.diff(offsets)
    padded = np.concatenate([data, np.zeros(8, np.uint8)])  # reads past the last string stay in bounds

    def word(pos: np.ndarray, n: int) -> np.ndarray:  # little-endian n-byte words at byte positions
        out = np.zeros(len(pos), np.uint64)
        for k in range(n):
            out |= padded[pos + k].astype(np.uint64) << np.uint64(8 * k)
        return out

    with np.errstate(over="ignore"):
        stripes = length // 32
        v = [seed + P1 + P2, seed + P2, seed.copy(), seed - P1]
        for s in range(int(stripes.max()) if len(stripes) else 0):
            on = stripes > s
            rows = np.flatnonzero(on)
            for j in range(4):
                v[j][rows] = _round(v[j][rows], word(start[rows] + 32 * s + 8 * j, 8))
        h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
        for j in range(4):
            h = (h ^ _round(np.zeros_like(h), v[j])) * P1 + P4
        h = np.where(stripes > 0, h, seed + P5) + length.astype(np.uint64)
        pos = start + 32 * stripes
        end = start + length
        for _ in range(3):  # at most three 8-byte words are left after the stripes
            on = pos + 8 <= end
            k1 = word(pos, 8)
            h = np.where(on, _rotl(h ^ (_rotl(k1 * P2, 31) * P1), 27) * P1 + P4, h)
            pos = np.where(on, pos + 8, pos)
        on = pos + 4 <= end
        h = np.where(on, _rotl(h ^ (word(pos, 4) * P1), 23) * P2 + P3, h)
        pos = np.where(on, pos + 4, pos)
        for _ in range(3):
            on = pos < end
            h = np.where(on, _rotl(h ^ (padded[pos].astype(np.uint64) * P5), 11) * P1, h)
            pos = np.where(on, pos + 1, pos)
        return _fmix(h)


def _column_hash(values, seed: np.ndarray) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False))
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            arr = values.cast(pa.large_string())
            _, offset_buffer, data_buffer = arr.buffers()
            offsets = np.frombuffer(offset_buffer, np.int64)[arr.offset: arr.offset + len(arr) + 1]
            data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
            h = _hash_bytes(offsets, data, seed)
        else:
            h = _column_hash(values.fill_null(0).to_numpy(), seed)
        return np.where(valid, h, seed)
    values = np.asarray(values)
    if values.dtype == np.int32:
        return _hash_int(values.astype(np.int64).view(np.uint64), seed)
    if values.dtype.kind in "iu":
        return _hash_long(values.astype(np.int64).view(np.uint64), seed)
    raise TypeError(f"xxhash64 of {values.dtype} is not supported (use int32, int64 or strings)")


def xxhash64(*columns) -> np.ndarray:
    """Spark's xxhash64(col1, col2, ...) as int64: NumPy int arrays (int32 as INT, others as LONG, scalars
    broadcast as LONG) and Arrow string arrays; all columns of one length (or scalars)."""
    n = max((len(c) for c in columns if np.ndim(c) or isinstance(c, pa.Array | pa.ChunkedArray)), default=1)
    h = np.full(n, SPARK_SEED, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in columns:
            if not isinstance(col, pa.Array | pa.ChunkedArray) and np.ndim(col) == 0:
                col = np.full(n, int(col), dtype=np.int64)
            h = _column_hash(col, h)
    return h.view(np.int64)


def uniform(*columns) -> np.ndarray:
    """Uniform [0, 1) doubles from xxhash64 of the columns: (hash >>> 11) * 2^-53, as Spark SQL computes
    `shiftrightunsigned(xxhash64(...), 11) * pow(2, -53)`."""
    return (xxhash64(*columns).view(np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0**-53
