"""Shared fixtures: small synthetic worlds built once per test session, in temp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dien_batch.data.synth import SynthSpec, generate

DATA = Path(__file__).parent / "data"
SMALL_WORLD = SynthSpec(users=300, items=2_000, categories=40, days=30, events_per_user=40,
                        requests=1_500, candidates_per_request=10, seed=7)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "world"
    out.mkdir()
    generate(SMALL_WORLD, out)
    return out
