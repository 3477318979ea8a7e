"""TOML configuration whose keys mirror a command's options (options given on the command line win).

A file may hold the options at its top level, or in a table named after the command (`[train]`), so
one file can configure several commands. Keys may use dashes or underscores.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import UsageError


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise UsageError(f"config file {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc


def options_for(command: str, data: dict, known: set[str], source: str) -> dict:
    """The option values for `command` from a parsed TOML document; unknown keys are an error."""
    section = data[command] if isinstance(data.get(command), dict) else data
    values = {k.replace("-", "_"): v for k, v in section.items() if not isinstance(v, dict)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{source}: unknown option(s) for '{command}': {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    return values
