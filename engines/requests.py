"""Scoring requests (Arrow, one row per request) to padded NumPy inputs for any engine.

A request holds the user's history (and user-profile and context fields) once and its K candidates
(with their item fields); K may differ between requests, so
candidates are padded to the chunk's largest K and `cand_count` says how many are real. Padded
candidates are scored like any other and dropped afterwards: each candidate's score depends only on
its own request, never on the rest of the chunk.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dien_batch.errors import UsageError
from dien_batch.model.batches import field_arrays, field_columns, padded
from dien_batch.schema import REQUEST_ROLES

INPUT_NAMES = ("user", "hist_item", "hist_cat", "hist_len", "cand_item", "cand_cat")
REQUEST_COLUMNS = ["request_id", "user_id", "user_idx", "hist_item_idx", "hist_category_idx", "hist_len",
                   "cand_item_id", "cand_category_id", "cand_item_idx", "cand_category_idx", "cand_label",
                   "cand_bid", "cand_p_true", "cand_position"]


def model_fields(identity: dict) -> tuple[dict, ...]:
    """The feature-spec fields a model (its engine identity) takes as inputs."""
    return tuple(identity["architecture"].get("fields", ()))


def input_names(fields) -> list[str]:
    """Every input of a scoring graph: the six id inputs, then the fields' request columns."""
    return [*INPUT_NAMES, *field_columns(fields, REQUEST_ROLES)]


def numeric_inputs(fields) -> set[str]:
    """The field inputs that are float32 (numeric fields); every other input is int64."""
    return set(field_columns([f for f in fields if f["kind"] == "numeric"], REQUEST_ROLES))


def request_columns(fields, available: list[str] | None = None) -> list[str]:
    """The request columns scoring reads; a field column the requests lack is exit 2 (`available`)."""
    needed = field_columns(fields, REQUEST_ROLES)
    missing = [c for c in needed if available is not None and c not in available]
    if missing:
        raise UsageError(f"the model takes the fields {', '.join(missing)}, which these requests lack: build them "
                         "with the --feature-spec the training features used")
    return REQUEST_COLUMNS + needed


def request_inputs(table: pa.Table | pa.RecordBatch, fields=()) -> dict[str, np.ndarray]:
    """int64 inputs: user [R], hist_* [R, T], hist_len [R], cand_* [R, K], plus cand_count [R]; and the
    fields': user and context [R], items' hist_i_* [R, T] and cand_i_* [R, K] (numeric ones float32)."""
    cand = table.column("cand_item_idx")
    if isinstance(cand, pa.ChunkedArray):
        cand = cand.combine_chunks()
    return {
        "user": table.column("user_idx").to_numpy().astype(np.int64),
        "hist_item": padded(table.column("hist_item_idx")).astype(np.int64),
        "hist_cat": padded(table.column("hist_category_idx")).astype(np.int64),
        "hist_len": table.column("hist_len").to_numpy().astype(np.int64),
        "cand_item": padded(cand).astype(np.int64),
        "cand_cat": padded(table.column("cand_category_idx")).astype(np.int64),
        "cand_count": np.diff(cand.offsets.to_numpy()).astype(np.int64),
        **field_arrays(table, fields, REQUEST_ROLES),
    }


def rank_within(owner: np.ndarray, value: np.ndarray) -> np.ndarray:
    """1-based rank of each row by descending value within its owner (ties: input order)."""
    order = np.lexsort((np.arange(len(value)), -value, owner))
    first = np.r_[True, owner[order][1:] != owner[order][:-1]] if len(order) else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order)) - start + 1
    return rank


def flat_scores(table: pa.Table | pa.RecordBatch, pctr: np.ndarray, counts: np.ndarray,
                top_k: int | None = None) -> pa.Table:
    """One row per real candidate: request_id, user_id, item_id, category_id, hist_len, pctr (+ logged), and
    the candidate's rank in its request by bid x pCTR (by pCTR where no bid is given); `top_k` keeps the
    best K of each request."""
    from dien_batch import schema

    R, K = pctr.shape
    keep = (np.arange(K) < counts[:, None]).ravel()
    owner = np.repeat(np.arange(R), counts)

    def per_request(name):
        return table.column(name).take(pa.array(owner))

    def per_candidate(name):
        """The list column flattened to candidates; a request without the list gives nulls."""
        column = table.column(name)
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        values = column.flatten()
        if not column.null_count:
            return values
        present = np.repeat(column.is_valid().to_numpy(zero_copy_only=False), counts)
        index = np.zeros(len(present), dtype=np.int64)
        index[present] = np.arange(present.sum())
        return values.take(pa.array(index, mask=~present)).cast(schema.SCORES.field(name[5:]).type)

    scores = pctr.ravel()[keep].astype(np.float32)
    bid = per_candidate("cand_bid")
    bids = bid.to_numpy(zero_copy_only=False).astype(np.float64)
    has_bid = ~np.isnan(bids)
    rank = rank_within(owner, np.where(has_bid, bids * scores, scores))
    columns = {
        "request_id": per_request("request_id"), "user_id": per_request("user_id"),
        "item_id": per_candidate("cand_item_id"), "category_id": per_candidate("cand_category_id"),
        "hist_len": per_request("hist_len"), "pctr": pa.array(scores),
        "label": per_candidate("cand_label"), "bid": bid,
        "p_true": per_candidate("cand_p_true"), "position": per_candidate("cand_position"),
        "ecpm_rank": pa.array(rank, mask=~has_bid),
    }
    out = pa.table([columns[f.name] for f in schema.SCORES], schema=schema.SCORES)
    return out.filter(pa.array(rank <= top_k)) if top_k else out
