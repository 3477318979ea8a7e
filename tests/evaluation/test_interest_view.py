"""The interest-evolution view: attention that is a distribution over the valid history, and a summary
that calls flat attention flat (checked against a plain loop)."""

from __future__ import annotations

import numpy as np
import pytest

from dien_batch.evaluation.interest_view import attention_summary, interest_view
from dien_batch.training import TrainConfig, train

from ..model.conftest import tiny_features, write_features  # noqa: F401  (fixtures)


def view_of(weights_per_user: list[np.ndarray]) -> list[dict]:
    return [{"history_categories": ["c"] * w.shape[1], "targets": [{"attention": list(row)} for row in w]}
            for w in weights_per_user]


def reference_summary(weights_per_user):
    focus, spread = [], []
    for w in weights_per_user:
        k, t = w.shape
        focus.append(sum(max(w[i]) * t for i in range(k)) / k)
        spread.append(max(abs(w[i][j] - sum(w[r][j] for r in range(k)) / k) * t for i in range(k) for j in range(t)))
    return sum(focus) / len(focus), sum(spread) / len(spread)


def test_summary_matches_a_plain_loop_and_names_flat_attention():
    rng = np.random.default_rng(3)
    peaked = [rng.dirichlet(np.full(t, 0.3), size=4) for t in (9, 20, 33)]
    got = attention_summary(view_of(peaked))
    focus, spread = reference_summary(peaked)
    assert got["focus"] == pytest.approx(focus, abs=1e-4) and got["candidate_spread"] == pytest.approx(spread, abs=1e-4)
    assert "focuses" in got["note"]
    flat = [np.full((4, t), 1.0 / t) + rng.normal(0, 1e-4 / t, (4, t)) for t in (10, 50)]
    summary = attention_summary(view_of(flat))
    assert summary["focus"] < 1.01 and "close to uniform" in summary["note"]


def test_view_of_a_trained_dien(tiny_features, tmp_path):  # noqa: F811
    out = tmp_path / "dien"
    train(TrainConfig(features=str(tiny_features), out=str(out), model="dien", epochs=1, batch_size=64,
                      embedding_dim=6, hidden=8, threads=1, seed=1))
    view = interest_view(out, tiny_features / "requests")
    assert view["users"] and view["focus"] >= 1.0 and view["note"]
    for user in view["users"]:
        steps = len(user["history_categories"])
        for target in user["targets"]:
            weights = np.array(target["attention"])
            assert weights[:steps].sum() == pytest.approx(1.0, abs=1e-5)  # softmax over the valid steps only
            assert np.all(weights[steps:] == 0)
            assert len(target["states_2d"]) == steps
