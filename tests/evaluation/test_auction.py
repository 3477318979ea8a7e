"""The auction replay: GSP pricing against a plain per-request loop, invariances, identities, truth."""

from __future__ import annotations

import numpy as np
import pytest

from dien_batch.evaluation import auction, metrics
from dien_batch.evaluation.auction import AuctionConfig, Requests, run_auctions, simulate


def random_requests(R=300, seed=0):
    rng = np.random.default_rng(seed)
    k = rng.integers(1, 8, R)
    request = np.repeat(np.arange(R), k)
    n = len(request)
    return Requests(request, request % 40, np.round(rng.lognormal(-0.3, 0.6, n), 2), rng.uniform(0.01, 0.4, n))


def plain_gsp(req: Requests, pctr, cfg: AuctionConfig):
    """Per request: sort eligible ads by bid*pCTR, price_k = min(b_k, max(reserve, b_{k+1} p_{k+1} / p_k))."""
    position, price = np.zeros(len(pctr)), np.zeros(len(pctr))
    for r in np.unique(req.request):
        rows = [i for i in np.flatnonzero(req.request == r) if req.bid[i] >= cfg.reserve]
        rows.sort(key=lambda i: (-req.bid[i] * pctr[i], i))
        for k, i in enumerate(rows[: cfg.slots]):
            nxt = rows[k + 1] if k + 1 < len(rows) else None
            second = req.bid[nxt] * pctr[nxt] / pctr[i] if nxt is not None else 0.0
            position[i], price[i] = k + 1, min(req.bid[i], max(cfg.reserve, second))
    return position, price


def test_gsp_matches_the_plain_loop():
    req = random_requests()
    pctr = np.random.default_rng(5).uniform(0.01, 0.3, len(req.bid))
    cfg = AuctionConfig(slots=3, reserve=0.3)
    got = run_auctions(req, pctr, cfg, np.zeros(len(pctr)))
    position, price = plain_gsp(req, pctr, cfg)
    assert np.array_equal(got["position"], position)
    np.testing.assert_allclose(got["price"], price, rtol=0, atol=1e-12)
    bias = cfg.bias()
    expected = np.where(position > 0, req.judge * bias[np.maximum(position.astype(int) - 1, 0)], 0)
    np.testing.assert_allclose(got["expected_clicks"], expected)


def test_rescaling_an_arm_changes_neither_ranking_nor_prices():
    req = random_requests(seed=1)
    pctr = np.random.default_rng(2).uniform(0.01, 0.3, len(req.bid))
    cfg = AuctionConfig()
    u = np.random.default_rng(3).random(len(pctr))
    a, b = run_auctions(req, pctr, cfg, u), run_auctions(req, pctr * 0.37, cfg, u)
    assert np.array_equal(a["position"], b["position"])
    np.testing.assert_allclose(a["price"], b["price"], rtol=1e-12)


def test_gains_identity_and_truth():
    """(1 + dECPM) = (1 + dCTR)(1 + dPPC); a model with better AUC wins more clicks; drawn clicks agree
    with the expectation from the truth."""
    req = random_requests(R=4000, seed=4)
    rng = np.random.default_rng(6)
    truth = req.judge
    good = np.clip(truth * np.exp(rng.normal(0, 0.3, len(truth))), 1e-4, 1)
    bad = np.clip(truth * np.exp(rng.normal(0, 1.2, len(truth))), 1e-4, 1)
    y = rng.random(len(truth)) < truth
    assert metrics.auc(y, good) > metrics.auc(y, bad)
    arms = {"model": good, "baseline": bad}
    sampled = simulate(req, arms, "baseline", AuctionConfig(replicates=400, seed=1))
    expected = simulate(req, arms, "baseline", AuctionConfig(replicates=400, seed=1, clicks="expected"))
    g = sampled["gains"]["model"]
    assert (1 + g["ecpm"]) == pytest.approx((1 + g["ctr"]) * (1 + g["ppc"]), rel=1e-12)
    a = sampled["arms"]
    assert a["model"]["ecpm"] == pytest.approx(1000 * a["model"]["ctr"] * a["model"]["ppc"])
    assert expected["arms"]["model"]["clicks"] > expected["arms"]["baseline"]["clicks"]
    e = expected["gains"]["model"]
    assert g["ctr_lo"] <= e["ctr"] <= g["ctr_hi"] and g["ecpm_lo"] <= e["ecpm"] <= g["ecpm_hi"]
    assert e["ctr"] > 0 and g["ctr_p_positive"] > 0.9


def test_position_bias_must_cover_the_slots():
    with pytest.raises(ValueError):
        AuctionConfig(slots=3, position_bias=(1.0, 0.5)).bias()
    assert auction.AuctionConfig(slots=2).bias().tolist() == pytest.approx([1.0, 1 / np.log2(3)])
