"""Simulated A/B test: replay every request's auction under each arm's pCTRs (the paper's Table 5).

Per request, an arm ranks the candidates whose bid reaches the reserve by bid x pCTR, fills `slots`
positions, and charges each clicked ad the generalized second price

    price_k = min(bid_k, max(reserve, bid_{k+1} * pCTR_{k+1} / pCTR_k))        (reserve if no k+1).

Clicks come from a judge that is neither arm: `p_true` in synthetic data, else a separately trained,
calibrated model. The ad in position k is clicked with probability judge_p * position_bias[k]: either
drawn (`clicks="sampled"`, with the same uniform draw for a candidate in both arms: common random
numbers) or taken in expectation (`clicks="expected"`).

Per arm: impressions (filled slots), clicks, revenue; CTR = clicks / impressions, PPC = revenue /
clicks, eCPM = 1000 * revenue / impressions, so (1 + dECPM) = (1 + dCTR)(1 + dPPC). Gains against the
baseline get 95% intervals and P(gain > 0) from a paired bootstrap over users.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .bootstrap import REPLICATES, interval, poisson_weights

METRICS = ("ctr", "ppc", "ecpm")


@dataclass(frozen=True)
class AuctionConfig:
    slots: int = 3
    reserve: float = 0.05
    position_bias: tuple[float, ...] | None = None  # default 1 / log2(k + 1)
    clicks: str = "sampled"
    replicates: int = REPLICATES
    seed: int = 0

    def bias(self) -> np.ndarray:
        if self.position_bias:
            if len(self.position_bias) < self.slots:
                raise ValueError(f"--position-bias needs {self.slots} values (one per slot)")
            return np.asarray(self.position_bias[: self.slots], dtype=np.float64)
        return 1.0 / np.log2(np.arange(2, self.slots + 2))


@dataclass
class Requests:
    """Candidate rows grouped by request (rows of a request contiguous), with their users."""

    request: np.ndarray  # request code per row, non-decreasing
    user: np.ndarray  # user code per row
    bid: np.ndarray
    judge: np.ndarray  # judge click probability (position 1)


def run_auctions(req: Requests, pctr: np.ndarray, cfg: AuctionConfig, uniform: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row outcome under one arm: position (0 = not shown), price, expected and drawn clicks."""
    eligible = req.bid >= cfg.reserve
    rank_score = np.where(eligible, req.bid * pctr, -np.inf)
    order = np.lexsort((np.arange(len(pctr)), -rank_score, req.request))  # by request, best first
    req_s, elig_s = req.request[order], eligible[order]
    first = np.r_[True, req_s[1:] != req_s[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.arange(len(order)) - start  # 0-based rank inside the request
    shown_s = elig_s & (rank < cfg.slots)
    # The next ad in the same request (if eligible) sets the price.
    nxt = np.r_[order[1:], order[-1]] if len(order) else order
    has_next = np.r_[req_s[1:] == req_s[:-1], False] & np.r_[elig_s[1:], False]
    bid_s, p_s = req.bid[order], pctr[order]
    # An ad scored pCTR 0 is outranked by nobody it ties with (their scores are 0 too): it pays the reserve.
    with np.errstate(divide="ignore", invalid="ignore"):
        runner_up = np.where(has_next & (p_s > 0), req.bid[nxt] * pctr[nxt] / p_s, 0.0)
    price_s = np.minimum(bid_s, np.maximum(cfg.reserve, runner_up))
    bias = cfg.bias()
    expected_s = np.where(shown_s, req.judge[order] * bias[np.minimum(rank, cfg.slots - 1)], 0.0)
    out = {name: np.zeros(len(pctr)) for name in ("position", "price", "expected_clicks", "clicks")}
    out["position"][order] = np.where(shown_s, rank + 1, 0)
    out["price"][order] = np.where(shown_s, price_s, 0.0)
    out["expected_clicks"][order] = expected_s
    out["clicks"][order] = (uniform[order] < expected_s).astype(np.float64)
    return out


def _totals(sums: np.ndarray) -> dict:
    """Totals and ratios of one arm; a ratio without a denominator is None, with the reason."""
    impressions, clicks, revenue = (float(x) for x in sums)
    out = {"impressions": impressions, "clicks": clicks, "revenue": revenue,
           "ctr": clicks / impressions if impressions else None,
           "ppc": revenue / clicks if clicks else None,
           "ecpm": 1000.0 * revenue / impressions if impressions else None}
    undefined = {k: f"no {'clicks' if k == 'ppc' else 'impressions'}" for k in METRICS if out[k] is None}
    return out | ({"undefined": undefined} if undefined else {})


def _ratios(sums: np.ndarray) -> np.ndarray:
    """[..., 3] sums (impressions, clicks, revenue) -> [..., 3] (ctr, ppc, ecpm)."""
    imp, clk, rev = sums[..., 0], sums[..., 1], sums[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([clk / imp, rev / clk, 1000.0 * rev / imp], axis=-1)


def simulate(req: Requests, arms: dict[str, np.ndarray], baseline: str, cfg: AuctionConfig) -> dict:
    """Run both arms' auctions; totals per arm and gains of each arm over the baseline with intervals."""
    uniform = np.random.default_rng(cfg.seed).random(len(req.bid))
    n_users = int(req.user.max()) + 1 if len(req.user) else 0
    per_user, outcomes, result = {}, {}, {"config": asdict(cfg), "arms": {}, "gains": {}}
    for name, pctr in arms.items():
        o = run_auctions(req, pctr, cfg, uniform)
        outcomes[name] = o
        clicks = o["clicks"] if cfg.clicks == "sampled" else o["expected_clicks"]
        per_user[name] = np.stack([np.bincount(req.user, weights=(o["position"] > 0).astype(float), minlength=n_users),
                                   np.bincount(req.user, weights=clicks, minlength=n_users),
                                   np.bincount(req.user, weights=clicks * o["price"], minlength=n_users)], axis=1)
        result["arms"][name] = _totals(per_user[name].sum(axis=0))
        result["arms"][name]["mean_price_shown"] = float(o["price"][o["position"] > 0].mean()) \
            if (o["position"] > 0).any() else None
        result["arms"][name]["expected_clicks"] = float(o["expected_clicks"].sum())
    weights = poisson_weights(n_users, cfg.replicates, cfg.seed + 1)
    base_boot = _ratios(weights @ per_user[baseline])
    base_point = _ratios(per_user[baseline].sum(axis=0))
    for name in arms:
        if name == baseline:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):  # an undefined ratio gives an undefined gain
            boot = _ratios(weights @ per_user[name]) / base_boot - 1.0
            point = _ratios(per_user[name].sum(axis=0)) / base_point - 1.0
        gains, undefined = {}, {}
        for i, metric in enumerate(METRICS):
            if not np.isfinite(point[i]):
                undefined[metric] = f"{metric} is undefined in an arm (no clicks or impressions)"
                gains.update({metric: None, f"{metric}_lo": None, f"{metric}_hi": None, f"{metric}_p_positive": None})
                continue
            iv = interval(boot[:, i], float(point[i]))
            gains.update({metric: iv["value"], f"{metric}_lo": iv["lo"], f"{metric}_hi": iv["hi"],
                          f"{metric}_p_positive": iv["p_positive"]})
        if undefined:
            gains["undefined"] = undefined
        result["gains"][name] = gains
    result["outcomes"] = outcomes
    return result
