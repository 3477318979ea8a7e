"""Training batches from Parquet: every row once per epoch, and length-bucketed batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dien_batch.model import batches


def write_rows(directory, n: int, seed: int) -> np.ndarray:
    lengths = np.random.default_rng(seed).integers(0, 101, n)
    table = pa.table({"row": np.arange(n), "hist_len": lengths})
    directory.mkdir()
    pq.write_table(table.slice(0, n // 2), directory / "part-0.parquet", row_group_size=97)
    pq.write_table(table.slice(n // 2), directory / "part-1.parquet", row_group_size=89)
    return lengths


def test_length_sorted_runs_sorts_each_run_and_keeps_every_row():
    lengths = np.random.default_rng(3).integers(0, 50, 1_003)
    order = batches.length_sorted_runs(lengths, 128)
    assert sorted(order) == list(range(1_003))
    for start in range(0, 1_003, 128):
        run = order[start:start + 128]
        assert set(run) == set(range(start, min(start + 128, 1_003)))  # rows stay in their run
        assert (np.diff(lengths[run]) >= 0).all()


def test_bucketed_stream_emits_every_row_once_with_less_padding(tmp_path):
    lengths = write_rows(tmp_path / "train", 2_000, seed=5)
    kwargs = dict(shuffle=True, seed=1, buffer_rows=700)
    plain = list(batches.stream(tmp_path / "train", 32, **kwargs))
    bucketed = list(batches.stream(tmp_path / "train", 32, length_buckets=8, **kwargs))
    for tables in (plain, bucketed):
        rows = np.concatenate([t.column("row").to_numpy() for t in tables])
        assert sorted(rows) == list(range(2_000))

    def padded_steps(tables):
        return sum(t.num_rows * max(t.column("hist_len").to_numpy().max(), 1) for t in tables)

    useful = int(np.maximum(lengths, 1).sum())
    assert padded_steps(bucketed) < 0.8 * padded_steps(plain)
    assert useful / padded_steps(bucketed) > 0.85
    # the batches of a buffer come in random order, not shortest first
    maxima = [t.column("hist_len").to_numpy().max() for t in bucketed]
    assert not (np.diff(maxima) >= 0).all()
