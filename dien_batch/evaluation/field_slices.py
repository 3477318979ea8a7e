"""Metrics by a feature spec's categorical fields (by gender, by brand, ...): each scored candidate's
field values, read from the requests it was scored from and decoded with the field vocabularies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import schema
from ..feature_spec import from_dicts
from ..io import read_json

RESERVED = {schema.PAD_IDX: "<missing>", schema.OOV_IDX: "<new value>"}


def field_values(table: pa.Table, features: str | Path) -> dict[str, np.ndarray]:
    """{field key: its value for each row of `table` (request_id, item_id)}, for every categorical field
    the features were built with; empty without a feature spec."""
    root = Path(features)
    spec_path = root / "vocab" / "fields.json"
    if not spec_path.exists() or not (root / "requests").exists():
        return {}
    fields = [f for f in from_dicts(read_json(spec_path)["fields"]).fields if f.kind == "categorical"]
    if not fields:
        return {}
    columns = {f.key: ("cand_" if f.group == "item" else "") + f.column for f in fields}  # a candidate's own
    requests = pq.ParquetDataset(root / "requests").read(columns=["request_id", "cand_item_id", *columns.values()])
    counts = pc.list_value_length(requests["cand_item_id"]).to_numpy(zero_copy_only=False)
    owner = pa.array(np.repeat(np.arange(requests.num_rows), counts))
    flat = {"request_id": requests["request_id"].take(owner), "item_id": pc.list_flatten(requests["cand_item_id"])}
    for key, column in columns.items():
        values = requests[column]
        flat[key] = pc.list_flatten(values) if pa.types.is_list(values.type) else values.take(owner)
    keyed = table.select(["request_id", "item_id"]).append_column("_row", pa.array(np.arange(table.num_rows)))
    joined = keyed.join(pa.table(flat), ["request_id", "item_id"], join_type="left outer").sort_by("_row")
    out = {}
    for key in columns:
        vocab = pq.read_table(root / "vocab" / "fields" / f"{key}.parquet")
        names = np.asarray([RESERVED.get(i, v) for i, v in zip(vocab["idx"].to_pylist(), vocab["id"].to_pylist(),
                                                                 strict=True)], dtype=object)
        idx = joined[key].to_numpy(zero_copy_only=False)
        known = ~np.isnan(idx.astype(float))
        decoded = np.full(len(idx), "<not in the requests>", dtype=object)
        decoded[known] = names[idx[known].astype(np.int64)]
        out[key] = decoded
    return out
