"""Sample rows (Arrow) to padded tensors, streamed from Parquet in bounded memory.

Training reads row groups in a shuffled order, shuffles rows within a buffer of a few row groups
(`buffer_rows`), and pads each batch to its own longest history: memory is bounded by the buffer,
not by the dataset. Padding is masked downstream, so it has no effect on any score.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..errors import UsageError
from ..schema import SAMPLE_ROLES
from .fields import column

SAMPLE_COLUMNS = ["user_id", "user_idx", "item_idx", "category_idx", "label", "hist_item_idx",
                  "hist_category_idx", "neg_item_idx", "neg_category_idx", "hist_len"]


def padded(lists: pa.Array | pa.ChunkedArray, width: int | None = None, dtype=np.int32) -> np.ndarray:
    """A list column as a right-padded [N, T] matrix (T = the longest list, at least 1; padding 0)."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    offsets = lists.offsets.to_numpy()
    lengths = np.diff(offsets)
    values = lists.flatten().to_numpy(zero_copy_only=False)
    T = max(int(lengths.max()) if len(lengths) else 0, width or 0, 1)
    out = np.zeros((len(lengths), T), dtype=dtype)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(values)) - np.repeat(offsets[:-1] - offsets[0], lengths)
    out[rows, cols] = values
    return out


def field_columns(fields, roles: tuple[str, ...]) -> list[str]:
    """The columns of a feature spec's fields (model config dicts): user and context fields once, item
    fields once per role (`""` a sample's target, `hist_`, `neg_`, `cand_`)."""
    return [column(f) if f["group"] != "item" else role + column(f) for f in fields
            for role in (roles if f["group"] == "item" else ("",))]


def sample_columns(fields=()) -> list[str]:
    return SAMPLE_COLUMNS + field_columns(fields, SAMPLE_ROLES)


def field_arrays(table: pa.Table | pa.RecordBatch, fields, roles: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The field columns as arrays: ids int64, numeric float32 (NaN missing); lists right-padded [N, T]."""
    out = {}
    for f in fields:
        dtype = np.int64 if f["kind"] == "categorical" else np.float32
        for name in field_columns([f], roles):
            values = table.column(name)
            if pa.types.is_list(values.type):
                out[name] = padded(values, dtype=dtype)
            else:
                out[name] = values.to_numpy(zero_copy_only=False).astype(dtype)
    return out


def to_tensors(table: pa.Table | pa.RecordBatch, with_negatives: bool = True, fields=()) -> dict[str, torch.Tensor]:
    def col(name):
        return table.column(name)

    batch = {
        "user": torch.from_numpy(col("user_idx").to_numpy().astype(np.int64)),
        "item": torch.from_numpy(col("item_idx").to_numpy().astype(np.int64)),
        "cat": torch.from_numpy(col("category_idx").to_numpy().astype(np.int64)),
        "label": torch.from_numpy(col("label").to_numpy().astype(np.float32)),
        "hist_len": torch.from_numpy(col("hist_len").to_numpy().astype(np.int64)),
        "hist_item": torch.from_numpy(padded(col("hist_item_idx")).astype(np.int64)),
        "hist_cat": torch.from_numpy(padded(col("hist_category_idx")).astype(np.int64)),
    }
    if with_negatives:
        batch["neg_item"] = torch.from_numpy(padded(col("neg_item_idx")).astype(np.int64))
        batch["neg_cat"] = torch.from_numpy(padded(col("neg_category_idx")).astype(np.int64))
    roles = SAMPLE_ROLES if with_negatives else SAMPLE_ROLES[:2]  # the target and the history
    batch.update({k: torch.from_numpy(v) for k, v in field_arrays(table, fields, roles).items()})
    return batch


def parquet_files(directory: str | Path) -> list[Path]:
    files = sorted(Path(directory).glob("*.parquet"))
    if not files:
        raise UsageError(f"no Parquet files in {directory}")
    return files


def count_rows(directory: str | Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in parquet_files(directory))


def length_sorted_runs(lengths: np.ndarray, run: int) -> np.ndarray:
    """Row order that sorts each run of `run` consecutive rows by length (stable), run by run."""
    order = np.arange(len(lengths))
    for start in range(0, len(lengths), run):
        part = slice(start, start + run)
        order[part] = start + np.argsort(lengths[part], kind="stable")
    return order


def cut(table: pa.Table, batch_size: int, *, length_buckets: int = 0, rng: np.random.Generator | None = None,
        min_batch: int = 1) -> Iterator[pa.Table]:
    """`table`'s rows in batches of `batch_size` (the last may be smaller, none below `min_batch`).

    `length_buckets` N > 0 (needs `rng` and the `hist_len` column), as the authors' data iterator: each run
    of N batches' rows is sorted by history length before it is cut, so a batch's rows have similar
    lengths and little padding; the batches are then handed out in random order.
    """
    starts = range(0, table.num_rows, batch_size)
    if length_buckets:
        table = table.take(pa.array(length_sorted_runs(table.column("hist_len").to_numpy(),
                                                       length_buckets * batch_size)))
        starts = [starts[i] for i in rng.permutation(len(starts))]
    for start in starts:
        chunk = table.slice(start, batch_size)
        if chunk.num_rows >= min_batch:
            yield chunk


def stream(directory: str | Path, batch_size: int, *, shuffle: bool = False, seed: int = 0,
           buffer_rows: int = 65_536, columns: list[str] | None = None, min_batch: int = 1,
           length_buckets: int = 0) -> Iterator[pa.Table]:
    """Arrow tables of `batch_size` rows (the last may be smaller, but never below `min_batch`); shuffled
    through a buffer of `buffer_rows`, each buffer cut by `cut` (with `length_buckets`, shuffled only)."""
    rng = np.random.default_rng(seed)
    pieces = [(f, g) for f in parquet_files(directory) for g in range(pq.ParquetFile(f).num_row_groups)]
    if shuffle:
        pieces = [pieces[i] for i in rng.permutation(len(pieces))]
    buffer: list[pa.Table] = []
    held = 0

    def drain(final: bool) -> Iterator[pa.Table]:
        nonlocal buffer, held
        table = pa.concat_tables(buffer) if len(buffer) > 1 else buffer[0]
        if shuffle:
            table = table.take(pa.array(rng.permutation(table.num_rows)))
        stop = table.num_rows if final else table.num_rows - table.num_rows % batch_size
        yield from cut(table.slice(0, stop), batch_size, length_buckets=length_buckets if shuffle else 0, rng=rng,
                       min_batch=min_batch)
        rest = table.slice(stop)
        buffer, held = ([rest], rest.num_rows) if rest.num_rows else ([], 0)

    for path, group in pieces:
        part = pq.ParquetFile(path).read_row_group(group, columns=columns)
        if part.num_rows:
            buffer.append(part)
            held += part.num_rows
        if held >= buffer_rows:
            yield from drain(final=False)
    if held:
        yield from drain(final=True)
