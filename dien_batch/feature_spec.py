"""The feature spec (`--feature-spec FILE`, TOML): the paper's user-profile, ad and context fields.

    [user]    table, key, categorical, numeric     one row per user, joined on the log's user id
    [item]    table, key, categorical, numeric     one row per item, joined on the log's item id
    [context] categorical, numeric                 columns of the events / impressions table itself

Every section and list is optional; `sep` sets a csv table's separator. Each field becomes columns of
the samples and requests (`Field.column`): a categorical field holds dense ids from its own vocabulary
(0 = missing, 1 = a value the vocabulary lacks), a numeric one the raw float (NaN where missing), which the
model standardises with train-split statistics. A spec error is exit 3, naming the file and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataValidationError

GROUPS = ("user", "item", "context")
PREFIX = {"user": "u_", "item": "i_", "context": "c_"}
KINDS = ("categorical", "numeric")
TABLE_KEYS = {"table", "key", "sep", "categorical", "numeric"}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Field:
    group: str  # user | item | context
    name: str  # the source column
    kind: str  # categorical | numeric

    @property
    def column(self) -> str:
        """Its column in samples and requests (items' also as hist_/neg_/cand_ lists): u_age, i_brand, c_hour."""
        return PREFIX[self.group] + self.name

    @property
    def key(self) -> str:
        """Its name in configs and reports: user.age."""
        return f"{self.group}.{self.name}"

    def to_dict(self) -> dict:
        return {"group": self.group, "name": self.name, "kind": self.kind}


@dataclass(frozen=True)
class SideTable:
    group: str
    path: Path
    key: str
    sep: str | None


@dataclass(frozen=True)
class FeatureSpec:
    fields: tuple[Field, ...] = ()
    tables: dict[str, SideTable] = field(default_factory=dict)
    source: str | None = None

    def of(self, group: str, kind: str | None = None) -> list[Field]:
        return [f for f in self.fields if f.group == group and (kind is None or f.kind == kind)]

    def __bool__(self) -> bool:
        return bool(self.fields)


def _fail(path: Path, where: str, detail: str) -> DataValidationError:
    return DataValidationError(f"feature spec {path}: {where}: {detail}")


def _names(path: Path, section: str, key: str, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, f"[{section}] {key}", f"expected a list of column names, got {value!r}")
    for name in value:
        if not NAME.match(name):
            raise _fail(path, f"[{section}] {key}", f"'{name}' is not a plain column name ([A-Za-z_][A-Za-z0-9_]*)")
    return value


def load(path: str | Path) -> FeatureSpec:
    """Parse and check a spec file (its side tables' existence included; their columns are checked
    when they are read)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, "file", f"cannot be read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, "syntax", str(exc)) from exc
    unknown = set(data) - set(GROUPS)
    if unknown:
        raise _fail(path, "sections", f"unknown {sorted(unknown)}; expected {', '.join(GROUPS)}")
    fields, tables, seen = [], {}, {}
    for group in GROUPS:
        section = data.get(group, {})
        if not isinstance(section, dict):
            raise _fail(path, f"[{group}]", "expected a table of keys")
        allowed = TABLE_KEYS if group != "context" else set(KINDS)
        bad = set(section) - allowed
        if bad:
            raise _fail(path, f"[{group}]", f"unknown keys {sorted(bad)}; expected {', '.join(sorted(allowed))}")
        group_fields = [Field(group, name, kind) for kind in KINDS
                        for name in _names(path, group, kind, section.get(kind, []))]
        for f in group_fields:
            if f.column in seen:
                raise _fail(path, f"[{group}] {f.kind}", f"'{f.name}' is declared twice")
            seen[f.column] = f
        if group != "context" and (group_fields or "table" in section):
            for key in ("table", "key"):
                if not isinstance(section.get(key), str) or not section[key]:
                    raise _fail(path, f"[{group}] {key}", "missing (a side table needs table and key)")
            table = Path(section["table"])
            table = table if table.is_absolute() else path.parent / table
            if not table.exists():
                raise _fail(path, f"[{group}] table", f"{table} does not exist")
            if section["key"] in [f.name for f in group_fields]:
                raise _fail(path, f"[{group}] key", f"'{section['key']}' is the key, not a field")
            sep = section.get("sep")
            if sep is not None and (not isinstance(sep, str) or not sep):
                raise _fail(path, f"[{group}] sep", f"expected a separator string, got {sep!r}")
            tables[group] = SideTable(group, table, section["key"], sep)
        fields += group_fields
    return FeatureSpec(tuple(fields), tables, str(path))


def from_dicts(items: list[dict]) -> FeatureSpec:
    """The fields of a built dataset or a model config (no side tables)."""
    return FeatureSpec(tuple(Field(d["group"], d["name"], d["kind"]) for d in items))
