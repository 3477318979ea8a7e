"""Column names and Arrow schemas shared by every stage: the single source of truth.

Naming: `*_id` columns hold the caller's own identifiers (strings), `*_idx` columns the dense int32
ids from the vocabulary (0 = padding, 1 = out of vocabulary). Sequences are right-padded-free lists:
each list holds exactly `hist_len` values, oldest first.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"
PAD_IDX = 0
OOV_IDX = 1
FIRST_IDX = 2

TS = pa.timestamp("ms", tz="UTC")  # what Parquet stores; samples carry int64 seconds
I32 = pa.int32()
I64 = pa.int64()
F64 = pa.float64()
F32 = pa.float32()
STR = pa.string()

# Raw logs as `dien-batch synth` writes them (and the `parquet` format reads them).
EVENTS = pa.schema([("user_id", STR), ("item_id", STR), ("category_id", STR), ("ts", TS)])
IMPRESSIONS = pa.schema([
    ("request_id", STR), ("user_id", STR), ("ts", TS), ("item_id", STR), ("category_id", STR),
    ("bid", F64), ("position", I32), ("clicked", I32), ("p_true", F64),
])

# Vocabulary tables: OUT/vocab/{user,item,category}.parquet.
VOCAB = pa.schema([("id", STR), ("idx", I32), ("count", I64)])
ITEM_VOCAB = VOCAB.append(pa.field("category_idx", I32))

# Training / evaluation samples: OUT/{train,valid,test}/*.parquet, one row per (history, target).
SAMPLES = pa.schema([
    ("user_id", STR), ("user_idx", I32),
    ("item_idx", I32), ("category_idx", I32), ("label", I32), ("ts", I64),
    ("hist_item_idx", pa.list_(I32)), ("hist_category_idx", pa.list_(I32)),
    ("neg_item_idx", pa.list_(I32)), ("neg_category_idx", pa.list_(I32)),
    ("hist_len", I32), pa.field("hist_last_ts", I64, nullable=True),
    pa.field("request_id", STR, nullable=True), pa.field("bid", F64, nullable=True),
    pa.field("p_true", F64, nullable=True),
])

# Scoring requests: OUT/requests/*.parquet, one row per request: the history once, K candidates.
REQUESTS = pa.schema([
    ("request_id", STR), ("user_id", STR), ("user_idx", I32), ("ts", I64),
    ("hist_item_idx", pa.list_(I32)), ("hist_category_idx", pa.list_(I32)),
    ("hist_len", I32), pa.field("hist_last_ts", I64, nullable=True),
    ("cand_item_id", pa.list_(STR)), ("cand_category_id", pa.list_(STR)),
    ("cand_item_idx", pa.list_(I32)), ("cand_category_idx", pa.list_(I32)),
    pa.field("cand_label", pa.list_(I32), nullable=True),
    pa.field("cand_bid", pa.list_(F64), nullable=True),
    pa.field("cand_p_true", pa.list_(F64), nullable=True),
    pa.field("cand_position", pa.list_(I32), nullable=True),
])

# Score files: one row per scored (request, candidate).
SCORES = pa.schema([
    ("request_id", STR), ("user_id", STR), ("item_id", STR), ("category_id", STR),
    ("hist_len", I32), ("pctr", pa.float32()),
    pa.field("label", I32, nullable=True), pa.field("bid", F64, nullable=True),
    pa.field("p_true", F64, nullable=True), pa.field("position", I32, nullable=True),
    pa.field("ecpm_rank", I32, nullable=True),  # 1 = the request's best by bid x pCTR (null without bids)
])

SEQUENCE_COLUMNS = ("hist_item_idx", "hist_category_idx", "neg_item_idx", "neg_category_idx")

# A feature spec's item field is a column per role: in samples the target's, each history step's and each
# auxiliary negative's; in requests each history step's and each candidate's (user and context fields once).
SAMPLE_ROLES = ("", "hist_", "neg_")
REQUEST_ROLES = ("hist_", "cand_")


def field_type(f) -> pa.DataType:
    """A field column's values: int32 ids (categorical) or float32 (numeric)."""
    return F32 if f.kind == "numeric" else I32



def with_fields(base: pa.Schema, fields, kind: str) -> pa.Schema:
    """`SAMPLES` or `REQUESTS` with a feature spec's columns (`dien_batch.feature_spec`): user and context
    fields once per row; item fields for the target (samples), each history step, each auxiliary negative
    (samples) and each candidate (requests). Categorical fields are int32 ids, numeric ones float32."""
    out = base
    for f in fields:
        t = field_type(f)
        if f.group != "item":
            out = out.append(pa.field(f.column, t))
            continue
        for role in SAMPLE_ROLES if kind == "samples" else REQUEST_ROLES:
            out = out.append(pa.field(role + f.column, t if not role else pa.list_(t)))
    return out
