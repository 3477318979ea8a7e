"""Reading a Parquet dataset by row ranges, in bounded memory, for resumable work in shards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dien_batch.errors import UsageError
from dien_batch.io import data_files


class RowRanges:
    """A dataset's files and row groups with their global row offsets."""

    def __init__(self, path: str | Path):
        self.files = [f for f in data_files(path) if f.suffix == ".parquet"]
        if not self.files:
            raise UsageError(f"no Parquet files in {path}")
        self.groups: list[tuple[Path, int, int, int]] = []  # (file, group, first row, rows)
        start = 0
        for f in self.files:
            meta = pq.read_metadata(f)
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                self.groups.append((f, g, start, rows))
                start += rows
        self.total = start

    @property
    def columns(self) -> list[str]:
        return pq.read_schema(self.files[0]).names

    def fingerprint(self) -> list:
        """Identifies the input: every file's path, size, modification time and row count."""
        return [[str(f), f.stat().st_size, f.stat().st_mtime_ns, pq.read_metadata(f).num_rows] for f in self.files]

    def read(self, start: int, stop: int, columns: list[str]) -> pa.Table:
        """Rows [start, stop) in dataset order, reading only the row groups that overlap."""
        parts = []
        handles: dict[Path, pq.ParquetFile] = {}
        for f, g, first, rows in self.groups:
            if first + rows <= start or first >= stop:
                continue
            handle = handles.setdefault(f, pq.ParquetFile(f))
            table = handle.read_row_group(g, columns=columns)
            lo, hi = max(start - first, 0), min(stop - first, rows)
            parts.append(table.slice(lo, hi - lo))
        return pa.concat_tables(parts) if parts else pa.table({})

    def ranges(self, size: int) -> Iterator[tuple[int, int, int]]:
        """(shard index, start, stop) covering all rows in shards of `size`."""
        for i, start in enumerate(range(0, self.total, size)):
            yield i, start, min(start + size, self.total)
