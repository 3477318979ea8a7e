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


def test_zero_and_tied_scores_give_finite_prices_and_strict_json(tmp_path):
    """An arm that scores some ads exactly 0 (and ties others) used to price them 0/0 = NaN."""
    import json

    from dien_batch.io import write_json

    req = random_requests(R=500, seed=8)
    rng = np.random.default_rng(9)
    zeros = np.where(rng.random(len(req.bid)) < 0.3, 0.0, np.round(rng.uniform(0.01, 0.3, len(req.bid)), 2))
    cfg = AuctionConfig(slots=3, reserve=0.05)
    out = run_auctions(req, zeros, cfg, rng.random(len(zeros)))
    shown = out["position"] > 0
    assert np.isfinite(out["price"]).all()
    assert (out["price"][shown] >= cfg.reserve - 1e-12).all() and (out["price"][shown] <= req.bid[shown]).all()
    assert np.allclose(out["price"][shown & (zeros == 0)], cfg.reserve)  # nobody outranks it: the reserve
    position, price = plain_gsp(req, np.where(zeros == 0, 1e-300, zeros), cfg)  # the limit of a tiny pCTR
    nonzero = shown & (zeros > 0)
    np.testing.assert_allclose(out["price"][nonzero], price[nonzero], atol=1e-12)
    result = simulate(req, {"model": req.judge, "baseline": zeros}, "baseline", AuctionConfig(replicates=50))
    for metric in ("ctr", "ppc", "ecpm"):
        assert np.isfinite(result["gains"]["model"][metric])
    result.pop("outcomes")
    write_json(tmp_path / "m.json", result)
    json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_an_arm_without_clicks_gives_undefined_gains_with_a_reason():
    req = Requests(np.array([0, 0, 1]), np.array([0, 0, 1]), np.array([1.0, 0.5, 0.7]), np.zeros(3))
    result = simulate(req, {"model": np.array([0.1, 0.2, 0.3]), "baseline": np.array([0.3, 0.2, 0.1])}, "baseline",
                      AuctionConfig(replicates=20))
    assert result["arms"]["model"]["ppc"] is None and result["arms"]["model"]["undefined"]["ppc"] == "no clicks"
    gains = result["gains"]["model"]
    assert gains["ppc"] is None and "undefined" in gains["undefined"]["ppc"]
    assert gains["ctr"] is None or np.isfinite(gains["ctr"])
