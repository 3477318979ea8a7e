"""Terminal output shared by every command: verbosity, progress bars and the one-screen summary."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass
class Verbosity:
    level: int = 0  # -1 quiet, 0 normal, 1+ verbose


VERBOSITY = Verbosity()


def info(message: str) -> None:
    if VERBOSITY.level >= 0:
        print(message, file=sys.stderr, flush=True)


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
             unit: str = "it", unit_scale: bool = True):
    """A tqdm bar on stderr, silent under --quiet or when stderr is not a terminal and CI is set."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale,
                disable=VERBOSITY.level < 0, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def fmt_metric(x: float | None, digits: int = 4, missing: str = "-") -> str:
    """A metric for people: fixed digits, `missing` when undefined (e.g. GAUC with one sample per user)."""
    return missing if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_pct(x: float | None, missing: str = "-") -> str:
    """A relative change as a signed percentage, `missing` when undefined."""
    return missing if x is None or not math.isfinite(x) else f"{100 * x:+.2f}%"


def fmt_count(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.4g}"


def summary(title: str, rows: Sequence[tuple[str, object]]) -> None:
    """Print an aligned key/value block on stdout: the one screen a person reads at the end of a run."""
    if VERBOSITY.level < 0:
        return
    width = max((len(k) for k, _ in rows), default=0)
    lines = [title, "-" * max(len(title), 20)]
    for key, value in rows:
        text = fmt_count(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        lines.append(f"  {key.ljust(width)}  {text}")
    print("\n".join(lines), flush=True)
