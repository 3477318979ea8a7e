"""Input-format adapters: how each supported raw layout maps onto `user, item, category, ts`.

The adapters are declarative (which reader, which source columns play which role, how a category is
extracted), so the Spark job can read any of them natively on a cluster, and this module needs no
Spark. `sniff` chooses a format for `--format auto` and says why.

* `parquet`: `user_id, item_id, category_id, ts` columns (or `--columns`).
* `csv`: a header row; roles from `--columns user=COL,item=COL,category=COL,ts=COL`, `--sep`.
* `amazon-json`: `reviews_*.json` lines (2014 and 2018 dumps: `reviewerID, asin, unixReviewTime`) with
  `--meta meta_*.json` (2014: Python-literal lines, last of `categories[0]`; 2018: JSON, last of
  `category`), as the DIEN authors' preprocessing does.
* `amazon-csv`: the 5-core CSV (`asin, reviewerID, overall, unixReviewTime`) with the product CSV
  (`Product ID, Description, price, Category`).
* `taobao`: UserBehavior CSV without header (`user,item,category,behavior,ts`); `--behaviors`.
* `recbole`: RecBole atomic files: `.inter` (tab-separated, `name:type` headers) with `.item` (the first
  token of `class`, `genre` or `categories` is the category), e.g. MovieLens.
* `synth`: a `dien-batch synth` directory (`events/` and `impressions/`).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..io import data_files

ROLES = ("user", "item", "category", "ts")

# UserBehavior covers 2017-11-25 .. 2017-12-03 (China time); anything else is out of range.
TAOBAO_TS_RANGE = ("2017-11-24T16:00:00Z", "2017-12-03T16:00:00Z")


@dataclass(frozen=True)
class TableSpec:
    """One raw table: reader kind, reader options, and source column for each role."""

    reader: str  # csv | json | parquet | pyliteral (JSON or Python-literal dict lines)
    columns: dict[str, str]
    options: dict[str, str] = field(default_factory=dict)
    category_rule: str = "value"  # value | last (of a list, or of the first list) | first_token
    category_sep: str | None = None  # multi-valued categories ("A|B|C"): the first listed is the category
    strip_type_suffix: bool = False  # RecBole headers: `user_id:token` -> `user_id`
    optional: tuple[str, ...] = ()  # roles that may be absent


@dataclass(frozen=True)
class FormatSpec:
    name: str
    events: TableSpec
    meta: TableSpec | None = None
    behavior_column: str | None = None
    default_ts_range: tuple[str, str] | None = None


CSV = {"header": "true", "sep": ",", "quote": '"', "escape": '"', "multiLine": "false"}
TSV_NO_QUOTES = {"header": "true", "sep": "\t", "quote": "\u0000"}
DEFAULT_COLUMNS = {"user": "user_id", "item": "item_id", "category": "category_id", "ts": "ts"}


def parse_columns(text: str | None) -> dict[str, str]:
    """`user=COL,item=COL,category=COL,ts=COL` -> {role: column}."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        role, sep, column = part.partition("=")
        role = role.strip()
        if not sep or role not in ROLES or not column.strip():
            raise UsageError(f"--columns: expected ROLE=COLUMN with ROLE in {', '.join(ROLES)}, got '{part}'")
        out[role] = column.strip()
    return out


def item_table_spec(path: str | Path, columns: dict[str, str], category_sep: str | None) -> TableSpec:
    """A generic item table (`--meta` for csv/parquet logs): CSV or Parquet, `--meta-columns` naming its item
    and category columns (default item_id, category_id)."""
    unknown = set(columns) - {"item", "category"}
    if unknown:
        raise UsageError(f"--meta-columns: only item=COL and category=COL, got {', '.join(sorted(unknown))}")
    reader = _reader(path)
    cols = {"item": columns.get("item", "item_id"), "category": columns.get("category", "category_id")}
    return TableSpec(reader, cols, CSV if reader == "csv" else {}, category_sep=category_sep)


def format_spec(name: str, columns: dict[str, str] | None = None, sep: str | None = None,
                item_table: TableSpec | None = None, category_sep: str | None = None) -> FormatSpec:
    """The adapter for a format name, with `--columns` / `--sep` overrides where the format takes them, and
    for csv/parquet logs an optional item table (then the log needs no category column)."""
    columns = columns or {}
    if item_table is not None and name not in ("csv", "parquet"):
        raise UsageError(f"--meta-columns is for --format csv or parquet; {name} has its own metadata layout")
    if name in ("parquet", "synth"):
        cols = {**DEFAULT_COLUMNS, **columns}
        if item_table is not None and "category" not in columns:
            cols.pop("category")
        return FormatSpec(name, TableSpec("parquet", cols, category_sep=category_sep), meta=item_table)
    if name == "csv":
        needed = [r for r in ROLES if not (r == "category" and item_table is not None)]
        missing = [r for r in needed if r not in columns]
        if missing:
            raise UsageError(f"--format csv needs --columns naming {', '.join(missing)} "
                             "(e.g. --columns user=uid,item=iid,category=cat,ts=time)")
        return FormatSpec(name, TableSpec("csv", columns, {**CSV, "sep": sep or ","}, category_sep=category_sep),
                          meta=item_table)
    if name == "amazon-json":
        return FormatSpec(name, TableSpec("json", {"user": "reviewerID", "item": "asin", "ts": "unixReviewTime"}),
                          meta=TableSpec("pyliteral", {"item": "asin", "category": "categories|category"},
                                         category_rule="last"))
    if name == "amazon-csv":
        return FormatSpec(name, TableSpec("csv", {"user": "reviewerID", "item": "asin", "ts": "unixReviewTime"},
                                          CSV),
                          meta=TableSpec("csv", {"item": "Product ID", "category": "Category"}, CSV))
    if name == "taobao":
        return FormatSpec(
            name,
            TableSpec("csv", {"user": "_c0", "item": "_c1", "category": "_c2", "behavior": "_c3", "ts": "_c4"},
                      {**CSV, "header": "false"}),
            behavior_column="behavior", default_ts_range=TAOBAO_TS_RANGE)
    if name == "recbole":
        return FormatSpec(name, TableSpec("csv", {"user": "user_id", "item": "item_id", "ts": "timestamp"},
                                          TSV_NO_QUOTES, strip_type_suffix=True),
                          meta=TableSpec("csv", {"item": "item_id", "category": "class|genre|categories"},
                                         TSV_NO_QUOTES, category_rule="first_token", strip_type_suffix=True))
    raise UsageError(f"unknown format '{name}'")


IMPRESSION_COLUMNS = {"request": "request_id", "user": "user_id", "ts": "ts", "item": "item_id",
                      "category": "category_id", "clicked": "clicked|label", "bid": "bid", "position": "position",
                      "p_true": "p_true"}


def impressions_spec(path: str | Path) -> TableSpec:
    """Logged impressions: Parquet or CSV with these column names; bid, position and p_true optional."""
    reader = _reader(path)
    return TableSpec(reader, IMPRESSION_COLUMNS, CSV if reader == "csv" else {}, optional=("bid", "position", "p_true"))


CANDIDATE_COLUMNS = {"request": "request_id", "user": "user_id", "ts": "ts", "item": "item_id",
                     "given_category": "category_id", "bid": "bid", "position": "position", "clicked": "clicked|label"}


def candidates_spec(path: str | Path) -> TableSpec:
    """A candidate table to score (`--candidate-table`): Parquet or CSV with request_id, user_id, ts,
    item_id; category_id, bid, position and clicked optional."""
    return TableSpec(_reader(path), CANDIDATE_COLUMNS, optional=("given_category", "bid", "position", "clicked"),
                     options=CSV if _reader(path) == "csv" else {})


def _reader(path: str | Path) -> str:
    files = data_files(path)
    return "parquet" if files and (files[0].suffix == ".parquet" or _head(files[0], 4) == b"PAR1") else "csv"


def _head(path: Path, n: int = 4096) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def sniff(events: str | Path) -> tuple[str, str]:
    """Guess the format of an events input; returns (format, reason)."""
    path = Path(events)
    if path.is_dir() and (path / "events").is_dir() and (path / "impressions").is_dir():
        return "synth", "a directory with events/ and impressions/ (a synth output)"
    files = data_files(path)
    if not files:
        raise UsageError(f"no data files under {path}")
    first = files[0]
    if first.suffix == ".parquet" or _head(first, 4) == b"PAR1":
        return "parquet", f"{first.name} is Parquet"
    line = _head(first).decode("utf-8", errors="replace").splitlines()[0] if first.stat().st_size else ""
    if line.lstrip().startswith("{"):
        return "amazon-json", f"{first.name} holds JSON lines"
    if "\t" in line and ":token" in line:
        return "recbole", f"{first.name} has RecBole 'name:type' headers"
    header = [c.strip() for c in line.split(",")]
    if {"asin", "reviewerID"} <= set(header):
        return "amazon-csv", f"{first.name} has the Amazon 5-core CSV header"
    if len(header) == 5 and header[3] in ("pv", "buy", "cart", "fav"):
        return "taobao", f"{first.name} looks like Taobao UserBehavior (no header, behaviour in column 4)"
    return "csv", f"{first.name} is delimited text (give --columns)"


def find_meta(events: str | Path, fmt: str) -> Path | None:
    """The metadata file beside the events, for formats that ship one, when --meta is not given."""
    path = Path(events)
    folder = path if path.is_dir() else path.parent
    patterns = {"amazon-csv": ["*meta*.csv"], "amazon-json": ["meta*.json", "meta*.json.gz"],
                "recbole": ["*.item"]}.get(fmt, [])
    for pattern in patterns:
        found = sorted(p for p in folder.glob(pattern) if p != path)
        if found:
            return found[0]
    return None


def _last(value) -> str | None:
    """The last category: of a flat list, or of the first list in a list of lists."""
    if isinstance(value, list) and value:
        first = value[0]
        if isinstance(first, list):
            return _last(first)
        return str(value[-1]) if value[-1] is not None else None
    return str(value) if isinstance(value, str | int) else None


def parse_meta_line(line: str) -> tuple[str | None, str | None, str | None]:
    """Amazon metadata line -> (asin, category, error). 2018 lines are JSON, 2014 lines Python literals."""
    text = line.strip()
    if not text:
        return None, None, "empty line"
    try:
        record = json.loads(text)
    except ValueError:
        try:
            record = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None, None, "malformed metadata line"
    if not isinstance(record, dict):
        return None, None, "metadata line is not an object"
    asin = record.get("asin")
    category = _last(record.get("categories", record.get("category")))
    return (str(asin) if asin is not None else None), category, None


# Category names arrive HTML-escaped in some dumps (`Science &amp; Math`): the reader replaces these
# entities, once, for every format (`&amp;` last, so `&amp;lt;` becomes `&lt;`, not `<`).
HTML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&amp;", "&"))
