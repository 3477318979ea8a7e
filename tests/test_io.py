"""Atomic directory commits: a failed build leaves nothing behind, a success replaces the old output."""

from __future__ import annotations

import pytest

from dien_batch.errors import UsageError
from dien_batch.io import atomic_output_dir, hash_inputs, read_json, write_json


def test_failure_leaves_no_output_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a").write_text("first")
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("killed")
    assert (out / "a").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_success_replaces_and_stale_temp_dirs_are_cleaned(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / ".out.tmp-deadbeef"
    stale.mkdir()
    (stale / "junk").write_text("from a killed run")
    with atomic_output_dir(out) as tmp:
        (tmp / "b").write_text("second")
    assert not stale.exists()
    assert (out / "b").read_text() == "second"
    with pytest.raises(UsageError), atomic_output_dir(out, overwrite=False):
        pass


def test_json_and_hashes(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "m.json") == {"a": [1, 2], "b": 1}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.csv").write_text("1,2\n")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    hashes = hash_inputs([tmp_path / "d"])
    assert list(hashes) == [str(tmp_path / "d" / "x.csv")]
    with pytest.raises(UsageError):
        read_json(tmp_path / "missing.json")


def test_a_crash_between_the_renames_loses_nothing(tmp_path, monkeypatch):
    """Killed after the old output was set aside and before the new one was renamed in: the next run
    finds the old output back in place (it used to delete it as a stale temp dir)."""
    import os

    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a").write_text("first")
    real_replace = os.replace

    def crash_on_second_rename(src, dst):
        real_replace(src, dst)
        if ".tmp-old-" in str(dst):
            raise KeyboardInterrupt("killed between the renames")

    monkeypatch.setattr(os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt), atomic_output_dir(out) as tmp:
        (tmp / "a").write_text("second")
    monkeypatch.undo()
    assert not out.exists()  # the crash window: only the set-aside copy is left
    with pytest.raises(RuntimeError), atomic_output_dir(out):
        raise RuntimeError("the next run fails too")
    assert (out / "a").read_text() == "first"


def test_json_is_strict(tmp_path):
    import json

    import numpy as np

    write_json(tmp_path / "m.json", {"auc": float("nan"), "gain": np.float64("inf"), "ok": [np.float32(0.5), 1]})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}")) == \
        {"auc": None, "gain": None, "ok": [0.5, 1]}
