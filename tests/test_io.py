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
