"""A synthetic ads world with known truth: the built-in data for the demo, tests and benchmarks.

The generative model has the phenomena DIEN is built for:

* **Catalogue.** Categories sit on a ring (category c is related to c±1, c±2, ...). Items belong to one
  category; item popularity is Zipf(1.1) over a random ranking, category sizes are Zipf(0.8); each item
  has a latent ad quality q ~ N(0, 0.5) and an advertiser whose bids are log-normal around its own mean.
* **Users with several interests that drift.** Each user has 1-3 interest *tracks* with fixed weights
  (Dirichlet). A track sits on a category and drifts along the ring in its own direction (±1 category)
  at random times (a Poisson process, 0.5-2 moves a week), so a user's interests evolve over time.
* **Sessions** (`events`). A user's behaviour comes in sessions (a Poisson process over the log;
  activity is log-normal across users). Each session serves one track, chosen by weight, and holds
  1 + Poisson(3) events minutes apart in the category where that track is *at the session's start*
  (85%), a neighbour (10%) or anywhere (5%); the item is drawn by popularity within the category.
* **Ad requests** (`impressions`) open a later session (never a user's first), days after the previous
  one: the history is every earlier session, and by the request the interests have drifted on. K
  candidate ads per request, drawn from categories near the user's current interests (40%), from
  where a track *used to be* (30%, what pooled history still suggests) and from the popular catalogue
  (30%). The true click probability depends on the interests at request time:

      p_true = sigmoid(-3.0 + 3.5 * sum_k w_k * exp(-d(c_ad, c_k(t))^2 / (2 * 0.8^2)) + 0.4 * q_ad)

  with d the ring distance and c_k(t) track k's category at the request time.

What a model must extract to reach the truth (checked in tests/test_synth.py against oracles that know
the world): (1) which categories are near which (the ring: a category embedding can learn it from
co-occurrence and drift, exact-match counts cannot); (2) the user's *current* position of every
track, weighted by track: recent behaviour, not the whole history, and for a multi-track user the last
session of each track, not only the last session; (3) where each track has moved *since* its last
session: its direction is visible only in the order of past sessions, so a model that reads order can
extrapolate and a pooled one cannot. On the default world the truth reaches AUC ~0.78, an oracle that
knows every track's position as of the last behaviour (all of (1) and (2), none of (3)) ~0.72, and
exact-match shares of the last k behaviours (what the classical yardstick uses) ~0.62-0.63.
* **Profiles** (`--profiles`, off by default; the world above is unchanged by it apart from these terms):
  each user has a segment s (one of 4) and an age, each ad a price and a quality tier (the quintile of
  its q), written as side tables with a feature spec (`users.parquet`, `items.parquet`, `fields.toml`).
  The logit gains + 1.0 where the ad's category belongs to the user's segment (c mod 4 = s) and
  - 0.5 * the ad's standardised log price; age has no effect (a field a model should learn to ignore).
* **Logging** (`clicked`, `position`): the world is simulated, so each candidate's click outcome is drawn
  as if it were shown in the top slot (`clicked ~ Bernoulli(p_true)`): full feedback for training and
  for checking simulated A/B tests against the truth. `position` records where a mediocre logging
  policy (bid x a noisy pCTR) placed it: 1..slots, or 0 when it was not shown.

Everything is vectorised NumPy and deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import schema
from ..errors import UsageError

BASE_LOGIT, AFFINITY_WEIGHT, QUALITY_WEIGHT, KERNEL_WIDTH = -3.0, 3.5, 0.4, 0.8
SEGMENTS, SEGMENT_WEIGHT, PRICE_WEIGHT = 4, 1.0, 0.5
FIELD_SPEC = """# The synthetic world's user profiles and ad fields (dien-batch synth --profiles).
[user]
table = "users.parquet"
key = "user_id"
categorical = ["segment"]
numeric = ["age"]

[item]
table = "items.parquet"
key = "item_id"
categorical = ["quality_tier"]
numeric = ["price"]
"""
ITEM_ZIPF, CATEGORY_ZIPF = 1.1, 0.8
SESSION_EVENTS = 4.0  # mean behaviour events per session
DAY = 86_400


@dataclass(frozen=True)
class SynthSpec:
    users: int = 5_000
    items: int = 20_000
    categories: int = 100
    days: int = 60
    events_per_user: float = 50.0
    requests: int = 20_000
    candidates_per_request: int = 20
    slots: int = 3
    seed: int = 0
    start: str = "2025-01-01"
    profiles: bool = False

    def check(self) -> None:
        if min(self.users, self.items, self.categories, self.days, self.requests) < 1:
            raise UsageError("users, items, categories, days and requests must all be >= 1")
        if self.items < self.categories:
            raise UsageError(f"--items ({self.items}) must be >= --categories ({self.categories})")
        if not 1 <= self.slots <= self.candidates_per_request:
            raise UsageError("--slots must be between 1 and --candidates-per-request")
        if self.events_per_user < 3:
            raise UsageError("--events-per-user must be >= 3")


def segment_sampler(owner: np.ndarray, weights: np.ndarray):
    """Vectorised draws from many small categorical distributions at once.

    `owner` (sorted, non-decreasing ints) says which distribution each element belongs to, `weights`
    its weight. Returns `draw(rng, which)` giving, for every entry of `which`, the index of an element
    of that distribution drawn by weight. Every distribution that is asked for must be non-empty.
    """
    totals = np.bincount(owner, weights=weights)
    cum = np.cumsum(weights)
    seg_start = np.concatenate([[0.0], np.cumsum(totals)])[owner]
    keys = owner + (cum - seg_start) / totals[owner]
    keys[np.r_[owner[1:] != owner[:-1], True]] = owner[np.r_[owner[1:] != owner[:-1], True]] + 1.0

    def draw(rng: np.random.Generator, which: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(keys, which + rng.random(len(which)), side="right")
        return np.minimum(idx, len(keys) - 1)

    return draw


class World:
    """The latent state of the world: catalogue, advertisers, users and their drifting tracks."""

    def __init__(self, spec: SynthSpec, rng: np.random.Generator):
        self.spec, C, I, U = spec, spec.categories, spec.items, spec.users
        self.span = spec.days * DAY
        # Catalogue: every category gets at least one item.
        cat_pop = rng.permutation(np.arange(1, C + 1) ** -CATEGORY_ZIPF)
        self.item_cat = np.concatenate([np.arange(C), rng.choice(C, size=I - C, p=cat_pop / cat_pop.sum())])
        self.item_pop = rng.permutation(np.arange(1, I + 1) ** -ITEM_ZIPF)
        self.quality = rng.normal(0.0, 0.5, I)
        n_adv = max(10, I // 20)
        self.item_adv = rng.integers(0, n_adv, I)
        self.adv_log_bid = rng.normal(np.log(0.8), 0.4, n_adv)
        order = np.argsort(self.item_cat, kind="stable")
        self._item_in_cat = order
        self._draw_item = segment_sampler(self.item_cat[order], self.item_pop[order])
        self.cat_pop = np.bincount(self.item_cat, weights=self.item_pop, minlength=C)
        # Users and their interest tracks.
        n_tracks = rng.choice([1, 2, 3], size=U, p=[0.3, 0.45, 0.25])
        self.track_user = np.repeat(np.arange(U), n_tracks)
        self.track_first = np.concatenate([[0], np.cumsum(n_tracks)[:-1]])
        self.n_tracks = n_tracks
        g = rng.gamma(1.0, 1.0, len(self.track_user)) + 1e-3
        self.track_weight = g / np.bincount(self.track_user, weights=g)[self.track_user]
        self._draw_track = segment_sampler(self.track_user, self.track_weight)
        K = len(self.track_user)
        self.track_start = rng.integers(0, C, K)
        self.track_dir = rng.choice([-1, 1], K)
        moves = rng.poisson(rng.uniform(0.5, 2.0, K) / (7 * DAY) * self.span)
        move_track = np.repeat(np.arange(K), moves)
        move_time = rng.integers(0, self.span, len(move_track))
        self._move_key = np.sort(move_track.astype(np.int64) * (self.span + 1) + move_time)
        self._move_first = np.concatenate([[0], np.cumsum(moves)[:-1]])
        # Profiles come from their own stream: the world above is the same with or without them.
        extra = np.random.default_rng([spec.seed, 7])
        self.segment = extra.integers(0, SEGMENTS, U)
        self.age = np.round(np.clip(extra.normal(38.0, 12.0, U), 18, 80))
        self.log_price = extra.normal(3.0, 0.8, I)
        self.quality_tier = np.searchsorted(np.quantile(self.quality, [0.2, 0.4, 0.6, 0.8]), self.quality)

    def profile_logit(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """The profile fields' part of the logit (0 without --profiles)."""
        if not self.spec.profiles:
            return np.zeros(len(user))
        z_price = (self.log_price[item] - self.log_price.mean()) / self.log_price.std()
        return SEGMENT_WEIGHT * (self.item_cat[item] % SEGMENTS == self.segment[user]) - PRICE_WEIGHT * z_price

    def track_category(self, track: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Category of each track at time t (seconds from the start): start + dir * moves so far."""
        done = np.searchsorted(self._move_key, track.astype(np.int64) * (self.span + 1) + t, side="left")
        return (self.track_start[track] + self.track_dir[track] * (done - self._move_first[track])) % (
            self.spec.categories
        )

    def draw_track(self, rng: np.random.Generator, user: np.ndarray) -> np.ndarray:
        return self._draw_track(rng, user)

    def draw_item(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        return self._item_in_cat[self._draw_item(rng, category)]

    def affinity(self, user: np.ndarray, category: np.ndarray, t: np.ndarray) -> np.ndarray:
        """sum_k w_k * kernel(ring distance between the category and track k's current category)."""
        C = self.spec.categories
        total = np.zeros(len(user))
        for j in range(3):
            has = j < self.n_tracks[user]
            track = self.track_first[user[has]] + j
            d = np.abs(category[has] - self.track_category(track, t[has]))
            d = np.minimum(d, C - d)
            total[has] += self.track_weight[track] * np.exp(-(d**2) / (2 * KERNEL_WIDTH**2))
        return total

    def draw_category_near(self, rng: np.random.Generator, category: np.ndarray, p_neighbour: float,
                           p_random: float) -> np.ndarray:
        u = rng.random(len(category))
        out = category.copy()
        near = u < p_neighbour
        out[near] += rng.choice([-1, 1], near.sum())
        rand = (u >= p_neighbour) & (u < p_neighbour + p_random)
        out[rand] = rng.integers(0, self.spec.categories, rand.sum())
        return out % self.spec.categories


def _sessions(world: World, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each user's sessions: start times (a Poisson process over the log), the track each serves."""
    spec = world.spec
    sigma = 0.8
    mean_sessions = max(spec.events_per_user / SESSION_EVENTS, 2.0)
    n = np.maximum(2, np.round(rng.lognormal(np.log(mean_sessions) - sigma**2 / 2, sigma, spec.users)))
    n = n.astype(np.int64)
    user = np.repeat(np.arange(spec.users), n)
    start = rng.integers(0, world.span, len(user))
    order = np.lexsort((start, user))
    user, start = user[order], start[order]
    first = np.r_[True, user[1:] != user[:-1]]
    return {"user": user, "start": start, "track": world.draw_track(rng, user), "first": first}


def _events(world: World, rng: np.random.Generator, sessions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A session's behaviour: 1 + Poisson(SESSION_EVENTS - 1) events, minutes apart, in the category
    where the session's track is at the session's start (85%), a neighbour (10%) or anywhere (5%)."""
    length = 1 + rng.poisson(SESSION_EVENTS - 1, len(sessions["user"]))
    session = np.repeat(np.arange(len(length)), length)
    within = np.arange(len(session)) - np.repeat(np.cumsum(length) - length, length)
    gap = rng.exponential(120.0, len(session)).astype(np.int64) + 30
    offset = np.cumsum(gap) - np.repeat((np.cumsum(gap) - gap)[np.cumsum(length) - length], length)
    t = np.minimum(sessions["start"][session] + offset, world.span - 1)
    track = sessions["track"][session]
    category = world.draw_category_near(rng, world.track_category(track, sessions["start"][session]), 0.10, 0.05)
    item = world.draw_item(rng, category)
    user = sessions["user"][session]
    order = np.lexsort((within, t, user))
    return {"user": user[order], "t": t[order], "item": item[order], "category": category[order]}


def _distinct_per_request(world: World, rng: np.random.Generator, items: np.ndarray) -> np.ndarray:
    """Redraw repeated candidates of a request from the popular catalogue until each row is distinct."""
    for _ in range(100):
        order = np.argsort(items, axis=1, kind="stable")
        ranked = np.take_along_axis(items, order, axis=1)
        repeat = np.zeros_like(items, dtype=bool)
        np.put_along_axis(repeat, order[:, 1:], ranked[:, 1:] == ranked[:, :-1], axis=1)
        if not repeat.any():
            return items
        cats = rng.choice(world.spec.categories, size=repeat.sum(), p=world.cat_pop / world.cat_pop.sum())
        items[repeat] = world.draw_item(rng, cats)
    raise UsageError("could not draw distinct candidates: use more --items or fewer --candidates-per-request")


def _impressions(world: World, rng: np.random.Generator, sessions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ad requests open sessions (not a user's first, and in the last 70% of the log): the history is
    every earlier session, and the interests have drifted since the last of them."""
    spec = world.spec
    R, K = spec.requests, spec.candidates_per_request
    eligible = np.flatnonzero(~sessions["first"] & (sessions["start"] >= int(0.3 * world.span)))
    if not len(eligible):
        raise UsageError("no session can carry a request: use more --days or --events-per-user")
    chosen = rng.choice(eligible, size=R, replace=len(eligible) < R)
    chosen = chosen[np.argsort(sessions["start"][chosen], kind="stable")]
    req_user, req_t = sessions["user"][chosen], sessions["start"][chosen]
    user, t = np.repeat(req_user, K), np.repeat(req_t, K)
    source = rng.random(R * K)
    track = world.draw_track(rng, user)
    current = (world.track_category(track, t) + rng.integers(-2, 3, R * K)) % spec.categories
    past = world.track_category(track, (rng.random(R * K) * t).astype(np.int64))
    popular = rng.choice(spec.categories, size=R * K, p=world.cat_pop / world.cat_pop.sum())
    category = np.where(source < 0.4, current, np.where(source < 0.7, past, popular))
    item = _distinct_per_request(world, rng, world.draw_item(rng, category).reshape(R, K)).ravel()
    category = world.item_cat[item]
    logit = (BASE_LOGIT + AFFINITY_WEIGHT * world.affinity(user, category, t)
             + QUALITY_WEIGHT * world.quality[item] + world.profile_logit(user, item))
    p_true = 1.0 / (1.0 + np.exp(-logit))
    clicked = (rng.random(R * K) < p_true).astype(np.int32)
    bid = np.maximum(0.05, np.round(np.exp(rng.normal(world.adv_log_bid[world.item_adv[item]], 0.25)), 2))
    # The logging policy: bid x a noisy, flattened estimate of p_true; the top `slots` are shown.
    est = 1.0 / (1.0 + np.exp(-(0.6 * logit + rng.normal(0.0, 0.7, R * K))))
    rank = np.argsort(np.argsort(-(bid * est).reshape(R, K), axis=1, kind="stable"), axis=1).ravel()
    position = np.where(rank < spec.slots, rank + 1, 0).astype(np.int32)
    return {"request": np.repeat(np.arange(R), K), "user": user, "t": t, "item": item,
            "category": category, "bid": bid, "position": position, "clicked": clicked, "p_true": p_true}


def _keys(prefix: str, n: int, idx: np.ndarray) -> pa.Array:
    width = len(str(max(n - 1, 0)))
    dictionary = pa.array([f"{prefix}{i:0{width}d}" for i in range(n)])
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), dictionary).cast(pa.string())


def _write(table: pa.Table, directory: Path) -> None:
    directory.mkdir(parents=True)
    pq.write_table(table, directory / "part-00000.parquet", row_group_size=256 * 1024, compression="zstd")


def _write_profiles(world: World, out_dir: Path) -> None:
    """users.parquet, items.parquet and the feature spec that declares them (fields.toml)."""
    spec = world.spec
    users = np.arange(spec.users)
    items = np.arange(spec.items)
    pq.write_table(pa.table({"user_id": _keys("u", spec.users, users), "segment": [f"s{s}" for s in world.segment],
                             "age": world.age}), out_dir / "users.parquet")
    pq.write_table(pa.table({"item_id": _keys("i", spec.items, items),
                             "quality_tier": [f"q{t}" for t in world.quality_tier],
                             "price": np.round(np.exp(world.log_price), 2)}), out_dir / "items.parquet")
    (out_dir / "fields.toml").write_text(FIELD_SPEC)


def simulate(spec: SynthSpec) -> tuple[World, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The world, its events and its impressions as NumPy arrays (times in seconds from the start)."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    world = World(spec, rng)
    sessions = _sessions(world, rng)
    return world, _events(world, rng, sessions), _impressions(world, rng, sessions)


def generate(spec: SynthSpec, out_dir: Path) -> dict:
    """Write `events/` and `impressions/` Parquet datasets into out_dir; return the summary stats."""
    world, ev, imp = simulate(spec)
    start = int(datetime.fromisoformat(spec.start).replace(tzinfo=UTC).timestamp())
    ts = pa.array((start + ev["t"]) * 1000, pa.int64()).cast(schema.TS)
    events = pa.Table.from_arrays(
        [_keys("u", spec.users, ev["user"]), _keys("i", spec.items, ev["item"]),
         _keys("c", spec.categories, ev["category"]), ts], schema=schema.EVENTS)
    impressions = pa.Table.from_arrays(
        [_keys("r", spec.requests, imp["request"]), _keys("u", spec.users, imp["user"]),
         pa.array((start + imp["t"]) * 1000, pa.int64()).cast(schema.TS), _keys("i", spec.items, imp["item"]),
         _keys("c", spec.categories, imp["category"]), pa.array(imp["bid"]), pa.array(imp["position"]),
         pa.array(imp["clicked"]), pa.array(imp["p_true"])], schema=schema.IMPRESSIONS)
    _write(events, out_dir / "events")
    _write(impressions, out_dir / "impressions")
    if spec.profiles:
        _write_profiles(world, out_dir)
    shown = imp["position"] > 0
    return {
        "spec": asdict(spec),
        "events": len(events), "impressions": len(impressions), "requests": spec.requests,
        "first_ts": datetime.fromtimestamp(start, UTC).isoformat(),
        "last_ts": datetime.fromtimestamp(start + world.span, UTC).isoformat(),
        "click_rate": float(imp["clicked"].mean()), "mean_p_true": float(imp["p_true"].mean()),
        "shown_click_rate": float(imp["clicked"][shown].mean()),
        "interest_tracks": len(world.track_user),
    }
