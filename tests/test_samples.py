"""The per-user sample builder against a plainly written reference, without Spark."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dien_batch.data import samples as S

N_ITEMS = 60


def make_sampler(uniform=False):
    idx = np.arange(2, N_ITEMS, dtype=np.int32)
    counts = np.arange(2, N_ITEMS)  # popularity grows with the id
    item_cat = np.r_[0, 1, 2 + idx % 7].astype(np.int32)
    keys = np.array(["<pad>", "<oov>"] + [f"i{i}" for i in idx], dtype=object)
    cat_keys = np.array(["<pad>", "<oov>"] + [f"c{c}" for c in range(7)], dtype=object)
    return S.ItemSampler(idx, counts, item_cat, keys, cat_keys, uniform=uniform)


def random_users(rng, n_users=40):
    users = []
    for u in range(n_users):
        n = int(rng.integers(1, 30))
        ts = np.sort(rng.integers(0, 50, n)) * 100  # coarse times: many ties
        items = rng.integers(2, N_ITEMS, n)
        pairs = np.unique(np.stack([ts, items], axis=1), axis=0)  # no duplicate events, as after cleaning
        ts, items = pairs[:, 0], pairs[:, 1]
        order = np.lexsort((items, ts))
        users.append({"user_idx": u + 2, "user_id": f"u{u}", "ts": ts[order], "item": items[order],
                      "cat": (2 + items[order] % 7)})
    return users


def to_batch(users) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "user_id": [u["user_id"] for u in users], "user_idx": pa.array([u["user_idx"] for u in users], pa.int32()),
        "ev_item": pa.array([u["item"].tolist() for u in users], pa.list_(pa.int32())),
        "ev_cat": pa.array([u["cat"].tolist() for u in users], pa.list_(pa.int32())),
        "ev_ts": pa.array([u["ts"].tolist() for u in users], pa.list_(pa.int64())),
    })


def reference_review_positives(users, params: S.SampleParams):
    """Plain loops: every event with earlier events is a target; split by the 'last' protocol."""
    keep = 1 if params.samples == "last" else params.max_samples_per_user
    out = {}
    for u in users:
        targets = []
        for j in range(len(u["ts"])):
            hist = [i for i in range(len(u["ts"])) if u["ts"][i] < u["ts"][j]][-params.max_len:]
            if hist:
                targets.append((j, hist))
        for rank, (j, hist) in enumerate(reversed(targets)):
            split = 2 if rank == 0 else 1 if rank == 1 else 0 if rank < 2 + keep else None
            if split is not None:
                out[(u["user_id"], int(u["ts"][j]), int(u["item"][j]))] = (
                    split, [int(u["item"][i]) for i in hist], [int(u["cat"][i]) for i in hist])
    return out


@pytest.mark.parametrize("samples, max_len", [("all-prefixes", 5), ("last", 100), ("all-prefixes", 100)])
def test_review_samples_match_reference(samples, max_len):
    rng = np.random.default_rng(3)
    users = random_users(rng)
    params = S.SampleParams(seed=5, max_len=max_len, samples=samples, max_samples_per_user=4)
    table = S.review_samples(to_batch(users), params, make_sampler()).to_pylist()
    positives = {(r["user_id"], r["ts"], r["item_idx"]): r for r in table if r["label"] == 1}
    expected = reference_review_positives(users, params)
    assert set(positives) == set(expected)
    for key, (split, hist_items, hist_cats) in expected.items():
        row = positives[key]
        assert (row["split"], row["hist_item_idx"], row["hist_category_idx"]) == (split, hist_items, hist_cats)
        assert row["hist_len"] == len(hist_items) and row["hist_last_ts"] < row["ts"]  # point in time
    pairs = {}
    for row in table:
        pairs.setdefault((row["user_id"], row["ts"], tuple(row["hist_item_idx"])), []).append(row)
    for rows in pairs.values():  # each target: one positive and one negative with the same history
        labels = [r["label"] for r in rows]
        assert labels.count(0) == labels.count(1)
        if len(rows) == 2:
            assert rows[0]["item_idx"] != rows[1]["item_idx"]
    for row in table:
        assert len(row["neg_item_idx"]) == row["hist_len"]
        assert all(n != h for n, h in zip(row["neg_item_idx"], row["hist_item_idx"], strict=True))
        assert row["neg_category_idx"] == [2 + n % 7 for n in row["neg_item_idx"]]


def test_batching_does_not_change_samples():
    users = random_users(np.random.default_rng(4))
    params = S.SampleParams(seed=1, max_len=10)
    whole = S.review_samples(to_batch(users), params, make_sampler())
    parts = [S.review_samples(to_batch(users[a:b]), params, make_sampler()) for a, b in ((0, 7), (7, 40))]

    def rows(t):
        return sorted(map(str, t.to_pylist()))

    assert rows(whole) == rows(pa.concat_tables(parts))
    assert rows(whole) != rows(S.review_samples(to_batch(users), S.SampleParams(seed=2, max_len=10), make_sampler()))


def test_time_and_user_splits():
    users = random_users(np.random.default_rng(5), 200)
    cut, valid_from = 2500, 2100
    t = S.review_samples(to_batch(users), S.SampleParams(split=f"time:{cut}:{valid_from}"), make_sampler()).to_pylist()
    assert {r["split"] for r in t} == {0, 1, 2}
    for r in t:  # test from the cut on, validation in the window before it, train before the window
        assert r["split"] == (2 if r["ts"] >= cut else 1 if r["ts"] >= valid_from else 0)
    no_window = S.review_samples(to_batch(users), S.SampleParams(split=f"time:{cut}"), make_sampler()).to_pylist()
    assert {r["split"] for r in no_window} == {0, 2}
    t = S.review_samples(to_batch(users), S.SampleParams(split="users:0.2"), make_sampler()).to_pylist()
    by_user = {}
    for r in t:
        by_user.setdefault(r["user_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_user.values())
    share = np.mean([2 in s for s in by_user.values()])
    assert 0.08 < share < 0.35


def test_negative_sampler_weights_and_exclusion():
    sampler = make_sampler()
    exclude = np.full(200_000, N_ITEMS - 1, dtype=np.int32)
    draws = sampler.draw_excluding(0, exclude, np.arange(200_000))
    assert not (draws == exclude).any()
    freq = np.bincount(draws, minlength=N_ITEMS)[2:N_ITEMS - 1] / len(draws)
    expected = np.arange(2, N_ITEMS - 1) / np.arange(2, N_ITEMS - 1).sum()
    np.testing.assert_allclose(freq, expected, atol=0.003)
    uniform = make_sampler(uniform=True).draw_excluding(0, exclude, np.arange(200_000))
    assert np.bincount(uniform, minlength=N_ITEMS)[2:N_ITEMS - 1].std() / (len(uniform) / 57) < 0.05


def test_review_requests():
    users = random_users(np.random.default_rng(6))
    params = S.SampleParams(candidates=6)
    requests = S.review_requests(to_batch(users), params, make_sampler()).to_pylist()
    tests = {(r["user_id"], r["ts"]): r for r in S.review_samples(to_batch(users), params, make_sampler()).to_pylist()
             if r["split"] == 2 and r["label"] == 1}
    assert len(requests) == len(tests)
    by_user = {u["user_id"]: u for u in users}
    for req in requests:
        target = tests[(req["user_id"], req["ts"])]
        user, ts, n = req["request_id"].rsplit("#", 1)[0].rsplit("@", 1) + [req["request_id"].rsplit("#", 1)[1]]
        assert (user, int(ts)) == (req["user_id"], req["ts"]) and n.isdigit()
        assert req["cand_item_idx"][0] == target["item_idx"] and req["cand_label"] == [1, 0, 0, 0, 0, 0]
        assert len(set(req["cand_item_idx"])) == 6  # distinct candidates
        u = by_user[req["user_id"]]
        history = set(u["item"][u["ts"] < req["ts"]].tolist())
        assert not history & set(req["cand_item_idx"][1:])  # no negative the user already had
        assert req["cand_item_id"] == [f"i{i}" for i in req["cand_item_idx"]]
        assert req["hist_item_idx"] == target["hist_item_idx"]


def test_review_request_ids_are_unique_with_same_second_targets():
    """Day-level timestamps: a user with several test targets at one second (Amazon reviews). The ids were
    USER@TS and collided; they are unique and stable for the same input and seed."""
    users = [{"user_idx": 2 + u, "user_id": name, "ts": np.array([100, 200, 300, 300, 300]),
              "item": np.array([5, 6, 7, 8, 9]), "cat": np.array([2, 3, 4, 5, 6])}
             for u, name in enumerate(["a", "a@300", "a@300#4", "müller", "用户二"])]
    params = S.SampleParams(split="time:300", candidates=4)
    ids = S.review_requests(to_batch(users), params, make_sampler())["request_id"].to_pylist()
    assert len(ids) == 15 and len(set(ids)) == 15
    again = S.review_requests(to_batch(users), params, make_sampler())["request_id"].to_pylist()
    assert ids == again


def test_review_candidates_are_distinct_under_zipf_popularity():
    """Negatives were drawn independently, each excluding only the positive: with a skewed catalogue most
    requests repeated a candidate. Now distinct, and a request gets fewer only when the catalogue runs out."""
    idx = np.arange(2, 40, dtype=np.int32)
    counts = (1e6 / np.arange(1, 39) ** 2).astype(np.int64)  # Zipf(2): the top item is drawn ~60% of the time
    item_cat = np.r_[0, 1, 2 + idx % 7].astype(np.int32)
    keys = np.array(["<pad>", "<oov>"] + [f"i{i}" for i in idx], dtype=object)
    sampler = S.ItemSampler(idx, counts, item_cat, keys, np.array([f"c{c}" for c in range(9)], dtype=object))
    users = random_users(np.random.default_rng(11), 60)
    for u in users:
        u["item"] = np.minimum(u["item"], 39)
        u["item"], first = np.unique(u["item"], return_index=True)
        u["ts"], u["cat"] = u["ts"][first], 2 + u["item"] % 7
        order = np.lexsort((u["item"], u["ts"]))
        u["item"], u["ts"], u["cat"] = u["item"][order], u["ts"][order], u["cat"][order]
    requests = S.review_requests(to_batch(users), S.SampleParams(candidates=20), sampler).to_pylist()
    assert requests
    for req in requests:
        u = next(x for x in users if x["user_id"] == req["user_id"])
        history = set(u["item"][u["ts"] < req["ts"]].tolist())
        cands = req["cand_item_idx"]
        assert len(set(cands)) == len(cands) and not history & set(cands[1:])
        assert len(cands) == min(20, 1 + 38 - len(history | {cands[0]}))  # as many as the catalogue allows


def test_impression_samples_and_requests():
    users = random_users(np.random.default_rng(7), 5)
    imps = []
    for u in users:
        reqs = sorted({int(t) for t in np.random.default_rng(u["user_idx"]).integers(0, 5000, 4)})
        rows = [(t, f"r{u['user_id']}-{t}", int(i)) for t in reqs for i in (3, 4, 5)]
        imps.append(rows)
    batch = to_batch(users)
    cols = {"request_id": [[r[1] for r in rows] for rows in imps], "ts": [[r[0] for r in rows] for rows in imps],
            "item": [[r[2] for r in rows] for rows in imps], "cat": [[2 + r[2] % 7 for r in rows] for rows in imps],
            "item_id": [[f"i{r[2]}" for r in rows] for rows in imps],
            "category_id": [[f"c{r[2] % 7}" for r in rows] for rows in imps],
            "label": [[int(r[2] == 4) for r in rows] for rows in imps],
            "bid": [[1.0] * len(rows) for rows in imps], "p_true": [[0.1] * len(rows) for rows in imps],
            "position": [[1] * len(rows) for rows in imps]}
    types = {"request_id": pa.string(), "ts": pa.int64(), "item": pa.int32(), "cat": pa.int32(),
             "item_id": pa.string(), "category_id": pa.string(), "label": pa.int32(), "bid": pa.float64(),
             "p_true": pa.float64(), "position": pa.int32()}
    for name, values in cols.items():
        batch = batch.append_column(f"imp_{name}", pa.array(values, pa.list_(types[name])))
    params = S.SampleParams(max_len=100)
    out = S.impression_samples(batch, params, make_sampler()).to_pylist()
    assert len(out) == sum(len(r) for r in imps)
    for u, rows in zip(users, imps, strict=True):
        mine = [r for r in out if r["user_id"] == u["user_id"]]
        last_request = max(r[1] for r in rows if r[0] == max(x[0] for x in rows))
        for r in mine:
            expected_hist = [int(i) for i, t in zip(u["item"], u["ts"], strict=True) if t < r["ts"]][-100:]
            assert r["hist_item_idx"] == expected_hist
            assert (r["split"] == 2) == (r["request_id"] == last_request)
    requests = S.impression_requests(batch, params, make_sampler()).to_pylist()
    assert len(requests) == len(users)
    for req in requests:
        assert req["cand_item_idx"] == [3, 4, 5] and req["cand_label"] == [0, 1, 0]
