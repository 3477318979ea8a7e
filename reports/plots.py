"""Plots of an evaluation (matplotlib, Agg), returned as PNG data URIs to embed in the HTML."""

from __future__ import annotations

import base64
import io

ARMS = (("model", "#1f77b4"), ("baseline", "#ff7f0e"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(width: float = 5.0, height: float = 3.4):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    ax.grid(alpha=0.3)
    return plt, fig, ax


def _uri(plt, fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def roc(m: dict) -> str | None:
    if "roc" not in m["model"]:
        return None
    plt, fig, ax = _figure()
    for arm, color in ARMS:
        if arm in m and "roc" in m[arm]:
            ax.plot(m[arm]["roc"]["fpr"], m[arm]["roc"]["tpr"], color=color, label=f"{arm} (AUC {m[arm]['auc']:.4f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _uri(plt, fig)


def reliability(m: dict) -> str | None:
    if "reliability" not in m["model"]:
        return None
    plt, fig, ax = _figure()
    top = 0.0
    for arm, color in ARMS:
        if arm in m and "reliability" in m[arm]:
            bins = m[arm]["reliability"]
            x, y = [b["predicted"] for b in bins], [b["observed"] for b in bins]
            ax.plot(x, y, "o-", color=color, label=f"{arm} (PCOC {m[arm]['pcoc']:.3f})", ms=4)
            top = max(top, *x, *y)
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="mean predicted pCTR (quantile bins)", ylabel="observed click rate", title="Calibration")
    ax.legend(fontsize=8)
    return _uri(plt, fig)


def distributions(m: dict) -> str:
    plt, fig, ax = _figure()
    for arm, color in ARMS:
        if arm in m:
            h = m[arm]["histogram"]
            ax.stairs(h["counts"], h["edges"], color=color, label=arm)
    ax.set(xlabel="pCTR", ylabel="candidates", title="Score distributions")
    ax.legend(fontsize=8)
    return _uri(plt, fig)


def gains(m: dict) -> str | None:
    g = m.get("simulation", {}).get("gains")
    if not g:
        return None
    names = [n for n in ("ctr", "ppc", "ecpm") if g.get(n) is not None and g.get(f"{n}_lo") is not None]
    if not names:
        return None
    plt, fig, ax = _figure(4.5, 2.8)
    values = [100 * g[n] for n in names]
    errors = [[100 * (g[n] - g[f"{n}_lo"]) for n in names], [100 * (g[f"{n}_hi"] - g[n]) for n in names]]
    ax.bar([n.upper() for n in names], values, yerr=errors, capsize=5,
           color=["#2ca02c" if v >= 0 else "#d62728" for v in values])
    ax.axhline(0, color="black", lw=0.8)
    ax.set(ylabel="gain vs baseline (%)", title="Simulated A/B (95% interval)")
    return _uri(plt, fig)


def auction_prices(m: dict) -> str | None:
    diag = m.get("simulation", {}).get("diagnostics")
    if not diag:
        return None
    plt, fig, ax = _figure(4.5, 2.8)
    width = 0.38
    for shift, (arm, color) in zip((-width / 2, width / 2), ARMS, strict=True):
        slots = diag["by_slot"].get(arm, [])
        ax.bar([s["slot"] + shift for s in slots], [s["mean_price"] for s in slots], width, color=color, label=arm)
    ax.set(xlabel="slot", ylabel="mean price per click", title="Second prices by slot")
    ax.legend(fontsize=8)
    return _uri(plt, fig)


def interest_views(m: dict) -> list[dict]:
    """Per sample user: an attention heat map (targets x history steps) and the 2-D state paths."""
    out = []
    for user in m.get("interest_view", {}).get("users", []):
        targets = user["targets"]
        plt = _pyplot()
        fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 2.8), dpi=90,
                                          gridspec_kw={"width_ratios": [3, 2]})
        steps = len(user["history_categories"])
        grid = [[w * steps for w in t["attention"][:steps]] for t in targets]  # 1 = uniform
        image = left.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=max(2.0, *map(max, grid)))
        left.set_yticks(range(len(targets)), [f"{t['category_id']}"[:18] for t in targets], fontsize=7)
        left.set(xlabel="history step (oldest to newest)", title="attention x T per target category (1 = uniform)")
        fig.colorbar(image, ax=left, fraction=0.03)
        for t in targets:
            if t["states_2d"]:
                xs, ys = zip(*t["states_2d"], strict=True)
                right.plot(xs, ys, "-", lw=1, label=f"{t['category_id']}"[:18])
                right.plot(xs[-1], ys[-1], "o", ms=4)
        right.set(title="interest states (PCA)", xticks=[], yticks=[])
        if any(t["states_2d"] for t in targets):
            right.legend(fontsize=6)
        out.append({"user_id": user["user_id"], "image": _uri(plt, fig)})
    return out


def trends(nights: list[dict]) -> str | None:
    """AUC and GAUC of both arms across nights (the index page)."""
    if not nights:
        return None
    plt, fig, ax = _figure(7.0, 3.0)
    dates = [n["date"] for n in nights]
    for arm, color in ARMS:
        for key, style in (("auc", "-o"), ("gauc", "--s")):
            values = [n.get(arm, {}).get(key) for n in nights]
            if any(v is not None for v in values):
                ax.plot(dates, values, style, color=color, ms=4, label=f"{arm} {key.upper()}")
    ax.set(title="Nightly ranking quality", ylabel="AUC")
    ax.tick_params(axis="x", rotation=30, labelsize=7)
    ax.legend(fontsize=7)
    return _uri(plt, fig)


def all_plots(m: dict) -> dict:
    return {"roc": roc(m), "reliability": reliability(m), "distributions": distributions(m), "gains": gains(m),
            "prices": auction_prices(m), "interest": interest_views(m)}
