"""Filesystem contracts shared by every stage: atomic directory commits, manifests, hashes, JSON.

A stage builds its output in a hidden temporary directory beside the target and renames it into
place only after everything was written, so a killed run never leaves a half-written dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

TMP_MARK = ".tmp-"


def _tmp_siblings(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}{TMP_MARK}*")) if out.parent.exists() else []


def _restore_set_aside(out: Path) -> None:
    """Put back the previous output a crash left aside between the renames (the newest, if several)."""
    aside = [p for p in _tmp_siblings(out) if p.name.startswith(f".{out.name}{TMP_MARK}old-")]
    if aside and not out.exists():
        newest = max(aside, key=lambda p: p.stat().st_mtime)
        os.replace(newest, out)


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success rename it to `out`, on failure remove it.

    Leftovers of killed runs (hidden temp siblings) are removed first, so a re-run starts clean; a run
    killed between its two renames left the previous `out` aside as `.NAME.tmp-old-*`: it is put back
    first. An existing `out` is replaced only after the new one is complete.
    """
    out = Path(out).absolute()
    _restore_set_aside(out)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in _tmp_siblings(out):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}{TMP_MARK}old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file via a temporary sibling, fsync and rename: readers see all of it or none."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def strict_json(obj: object) -> object:
    """The same structure with every non-finite float (NaN, inf) as None: JSON has no NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # NumPy scalars
        return strict_json(obj.item())
    return obj


def write_json(path: str | Path, obj: object) -> None:
    """Strict JSON (undefined numbers as null; `allow_nan=False` refuses anything else), atomically."""
    text = json.dumps(strict_json(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from exc


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def data_files(path: str | Path) -> list[Path]:
    """The data files of a file-or-directory input, sorted, skipping hidden and marker files."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise UsageError(f"input {path} does not exist")
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))


def hash_inputs(paths: list[str | Path]) -> dict[str, str]:
    """sha256 of every data file under the given inputs, keyed by path: the provenance of a run."""
    return {str(f): sha256_file(f) for p in paths for f in data_files(p)}


def stable_hash(obj: object) -> str:
    """A short content hash of a JSON-able object (configs, schemas)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def library_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


class Timer:
    """Named wall-clock timings for manifests: `with timer('sort'): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)
