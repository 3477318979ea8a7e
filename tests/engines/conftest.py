"""A tiny trained model and features shared by the engine tests (no Spark)."""

from __future__ import annotations

import pytest

from dien_batch.training import TrainConfig, train

from ..model.conftest import tiny_features, write_features  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def trained_dien(tiny_features, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("models") / "dien"
    train(TrainConfig(features=str(tiny_features), out=str(out), model="dien", epochs=1, batch_size=64,
                      embedding_dim=6, hidden=8, threads=1, seed=1))
    return out
