"""build-features --feature-spec: side tables joined as declared, for targets, every history step,
negatives and candidates; nothing else changes; field vocabularies stable across nights; bad tables exit 3."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dien_batch.data.synth import generate
from dien_batch.errors import DataValidationError, UsageError
from dien_batch.spark_jobs.build_features import BuildConfig, run

from .conftest import DATA, SMALL_WORLD

ML = DATA / "movielens-100k"
ML_SPEC = ML / "fields.toml"


ML_ROWS = 20_000  # the first rows of the log: a shorter build, the full side tables (some rows unmatched)


def ml_config(out, **kw) -> BuildConfig:
    return BuildConfig(events=str(out.parent / "ml.inter"), meta=str(ML / "ml-100k.item"), out=str(out), max_len=20,
                       max_samples_per_user=3, candidates=5, seed=1, **kw)


def ml_events(directory) -> None:
    lines = (ML / "ml-100k.inter").read_text().splitlines(keepends=True)[:ML_ROWS + 1]
    (directory / "ml.inter").write_text("".join(lines))


@pytest.fixture(scope="module")
def ml_builds(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("ml-fields")
    ml_events(root)
    run(ml_config(root / "with", feature_spec=str(ML_SPEC)), spark)
    run(ml_config(root / "without"), spark)
    return root


def rows(path, columns=None) -> pa.Table:
    return pq.ParquetDataset(path).read(columns=columns)


def side_table(name: str) -> dict[str, list[str]]:
    lines = (ML / name).read_text().splitlines()
    header = [h.split(":")[0] for h in lines[0].split("\t")]
    return {c: [line.split("\t")[i] for line in lines[1:]] for i, c in enumerate(header)}


def encoder(vocab_dir, key: str) -> dict[str, int]:
    table = pq.read_table(vocab_dir / "fields" / f"{key}.parquet")
    return dict(zip(table["id"].to_pylist(), table["idx"].to_pylist(), strict=True))


def test_fields_hold_the_side_tables_values_everywhere(ml_builds):
    out = ml_builds / "with"
    vocab = out / "vocab"
    users, movies = side_table("ml-100k.user"), side_table("ml-100k.item")
    item_ids = pq.read_table(vocab / "item.parquet")["id"].to_pylist()
    year = encoder(vocab, "item.release_year")
    year_of_item = {i: year.get(y, 1) for i, y in zip(movies["item_id"], movies["release_year"], strict=True)}

    def year_of(idx: int) -> int:  # an item's release-year id, by its vocabulary index
        return year_of_item.get(item_ids[idx], 0)

    for field in ("age", "gender", "occupation"):
        code = encoder(vocab, f"user.{field}")
        by_user = {u: code[v] for u, v in zip(users["user_id"], users[field], strict=True)}
        train = rows(out / "train", ["user_id", f"u_{field}"]).to_pydict()
        assert train[f"u_{field}"] == [by_user[u] for u in train["user_id"]]
    samples = rows(out / "train").to_pylist()[:3000]
    for r in samples:
        assert r["i_release_year"] == year_of(r["item_idx"])
        assert r["hist_i_release_year"] == [year_of(i) for i in r["hist_item_idx"]]
        assert r["neg_i_release_year"] == [year_of(i) for i in r["neg_item_idx"]]
    for r in rows(out / "requests").to_pylist():
        assert r["cand_i_release_year"] == [year_of_item.get(i, 0) for i in r["cand_item_id"]]
        assert r["hist_i_release_year"] == [year_of(i) for i in r["hist_item_idx"]]
    manifest = json.loads((out / "manifest.json").read_text())
    log = [line.split("\t") for line in (ml_builds / "ml.inter").read_text().splitlines()[1:]]
    assert manifest["fields"]["side_tables"] == {
        "user": {"rows": 943, "without_match": 943 - len({r[0] for r in log})},
        "item": {"rows": 1682, "without_match": 1682 - len({r[1] for r in log})}}
    assert set(manifest["validation"]) == {"events", "samples", "requests"}
    checks = json.loads((out / "validation" / "samples.json").read_text())
    assert any("field item.release_year" in json.dumps(r) for r in checks["results"])


def test_without_a_spec_nothing_changes(ml_builds):
    """The samples and requests built with a spec are those built without it, plus the field columns."""
    for part in ("train", "valid", "test", "requests"):
        plain = rows(ml_builds / "without" / part)
        fielded = rows(ml_builds / "with" / part).select(plain.column_names)
        key = ["user_id", "ts", "item_idx", "label"] if part != "requests" else ["request_id"]
        assert fielded.sort_by([(k, "ascending") for k in key]).equals(plain.sort_by([(k, "ascending") for k in key]))
    assert not (ml_builds / "without" / "vocab" / "fields.json").exists()


def test_field_vocabularies_are_stable_across_nights(spark, ml_builds, tmp_path):
    first = ml_builds / "with"
    ml_events(tmp_path)
    run(replace(ml_config(tmp_path / "night2", feature_spec=str(ML_SPEC)), vocab=str(first / "vocab")), spark)
    for f in sorted((first / "vocab" / "fields").glob("*.parquet")):
        assert pq.read_table(tmp_path / "night2" / "vocab" / "fields" / f.name).equals(pq.read_table(f))
    a, b = rows(first / "train"), rows(tmp_path / "night2" / "train")
    key = [("user_id", "ascending"), ("ts", "ascending"), ("item_idx", "ascending"), ("label", "ascending")]
    cols = ["u_age", "u_occupation", "i_release_year", "hist_i_release_year"]
    assert a.sort_by(key).select(cols).equals(b.sort_by(key).select(cols))
    with pytest.raises(UsageError, match="built with a feature spec"):
        run(replace(ml_config(tmp_path / "night3"), vocab=str(first / "vocab")), spark)


def write_spec(tmp_path, users: str, extra: str = "") -> str:
    (tmp_path / "users.csv").write_text(users)
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[user]\ntable = "users.csv"\nkey = "user_id"\ncategorical = ["gender"]\n{extra}')
    return str(spec)


@pytest.mark.parametrize("users, extra, message", [
    ("user_id,gender\n1,M\n2,F\n1,F\n", "", "column 'user_id' has duplicate keys (1 extra rows; '1' appears 2 times)"),
    ("user_id,sex\n1,M\n", "", "column 'gender' is missing"),
    ("user_id,gender,income\n1,M,12.5\n2,F,lots\n", 'numeric = ["income"]\n', "column 'income' has 1 values that are "
                                                                              "not numbers (e.g. 'lots')"),
])
def test_bad_side_tables_exit_3_naming_file_and_column(spark, tmp_path, users, extra, message):
    ml_events(tmp_path)
    spec = write_spec(tmp_path, users, extra)
    with pytest.raises(DataValidationError) as err:
        run(ml_config(tmp_path / "out", feature_spec=spec), spark)
    assert message in str(err.value) and str(tmp_path / "users.csv") in str(err.value)
    assert not (tmp_path / "out").exists()


def test_synth_profiles_and_impression_context_reach_samples_and_requests(spark, tmp_path):
    world = tmp_path / "world"
    world.mkdir()
    generate(replace(SMALL_WORLD, profiles=True), world)
    path = next((world / "impressions").glob("*.parquet"))  # and a context column: each impression's own
    imps = pq.read_table(path)
    slot = pa.array([f"s{int(r[1:]) % 3}" for r in imps["request_id"].to_pylist()])
    pq.write_table(imps.append_column("slot", slot), path)
    spec = world / "fields.toml"
    spec.write_text(spec.read_text() + '\n[context]\ncategorical = ["slot"]\n')
    out = tmp_path / "features"
    run(BuildConfig(events=str(world), out=str(out), max_len=20, seed=3, feature_spec=str(spec)), spark)
    code = encoder(out / "vocab", "context.slot")
    of_request = {r: code[s] for r, s in zip(imps["request_id"].to_pylist(), slot.to_pylist(), strict=True)}
    for part in ("train", "requests"):
        t = rows(out / part, ["request_id", "c_slot"]).to_pydict()
        assert t["c_slot"] == [of_request[r] for r in t["request_id"]] and len(set(t["c_slot"])) == 3
    users = pq.read_table(world / "users.parquet").to_pydict()
    segment = encoder(out / "vocab", "user.segment")
    by_user = dict(zip(users["user_id"], users["segment"], strict=True))
    train = rows(out / "train", ["user_id", "u_segment", "u_age", "i_price", "hist_i_price"]).to_pydict()
    assert train["u_segment"] == [segment[by_user[u]] for u in train["user_id"]]
    age = dict(zip(users["user_id"], users["age"], strict=True))
    assert np.allclose(train["u_age"], [age[u] for u in train["user_id"]])
    stats = json.loads((out / "vocab" / "fields.json").read_text())["numeric"]
    assert stats["u_age"]["mean"] == pytest.approx(np.mean(train["u_age"]), rel=1e-6)  # the train split's
    requests = rows(out / "requests", ["cand_item_id", "cand_i_price"]).to_pydict()
    items = pq.read_table(world / "items.parquet").to_pydict()
    price = dict(zip(items["item_id"], items["price"], strict=True))
    for ids, prices in zip(requests["cand_item_id"], requests["cand_i_price"], strict=True):
        assert np.allclose(prices, [price[i] for i in ids])


def test_the_suites_check_the_field_columns(spark, ml_builds, tmp_path):
    import shutil

    from dien_batch.spark_jobs.build_features import validate_dataset

    copy = tmp_path / "copy"
    shutil.copytree(ml_builds / "with", copy)
    path = sorted((copy / "train").glob("*.parquet"))[0]
    table = pq.read_table(path)
    ages = table["u_age"].to_numpy().copy()
    ages[0] = 10_000  # beyond the age vocabulary
    hist = table["hist_i_release_year"].to_pylist()
    hist[1] = hist[1][:-1]  # one step short of hist_len
    table = table.set_column(table.schema.get_field_index("u_age"), "u_age", pa.array(ages, pa.int32()))
    table = table.set_column(table.schema.get_field_index("hist_i_release_year"), "hist_i_release_year",
                             pa.array(hist, pa.list_(pa.int32())))
    pq.write_table(table, path)
    result = validate_dataset(str(copy), spark=spark)
    failures = result["validation"]["samples"]["failures"]
    assert not result["success"]
    assert {"expectation": "expect_column_values_to_be_between", "target": "u_age", "observed": 1} in failures
    assert any("field item.release_year" in f["target"] and f["observed"] == 1 for f in failures)


def test_context_is_the_targets_own_point_in_time(spark, tmp_path):
    """Review style: a sample's and a request's context is that of the target event, not of any other."""
    import csv

    rng = np.random.default_rng(5)
    device = {}
    with open(tmp_path / "events.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["user_id", "item_id", "category_id", "ts", "device", "hour"])
        for u in range(40):
            for j, ts in enumerate(sorted(rng.choice(10_000, 9, replace=False) + 1_600_000_000)):
                key = (f"u{u}", int(ts))
                device[key] = f"d{(u + j) % 4}"
                out.writerow([*key[:1], f"i{rng.integers(30)}", f"c{rng.integers(5)}", key[1], device[key],
                              "" if j == 3 else (key[1] // 3600) % 24])
    spec = tmp_path / "spec.toml"
    spec.write_text('[context]\ncategorical = ["device"]\nnumeric = ["hour"]\n')
    built = tmp_path / "features"
    run(BuildConfig(events=str(tmp_path / "events.csv"), fmt="csv", out=str(built), max_len=5, candidates=4,
                    columns="user=user_id,item=item_id,category=category_id,ts=ts", feature_spec=str(spec), seed=2),
        spark)
    code = encoder(built / "vocab", "context.device")
    for part in ("train", "valid", "test"):
        t = rows(built / part, ["user_id", "ts", "c_device", "c_hour"]).to_pydict()
        assert t["c_device"] == [code[device[(u, ts)]] for u, ts in zip(t["user_id"], t["ts"], strict=True)]
        hours = np.array(t["c_hour"], dtype=float)
        known = ~np.isnan(hours)
        assert known.any() and np.array_equal(hours[known], (np.array(t["ts"])[known] // 3600) % 24)
    req = rows(built / "requests", ["user_id", "ts", "c_device"]).to_pydict()
    assert req["c_device"] == [code[device[(u, ts)]] for u, ts in zip(req["user_id"], req["ts"], strict=True)]


def test_candidate_tables_get_the_fields_the_model_was_trained_with(spark, ml_builds, tmp_path):
    from dien_batch.model.store import vocab_fingerprint

    first = ml_builds / "with"
    users, movies = side_table("ml-100k.user"), side_table("ml-100k.item")
    log = [line.split("\t") for line in (ml_builds / "ml.inter").read_text().splitlines()[1:]]
    user = log[0][0]
    table = pa.table({"request_id": ["r1", "r1", "r1", "r2"], "user_id": [user, user, user, "99999"],
                      "ts": pa.array([900_000_000] * 4, pa.int64()), "item_id": ["50", "181", "no-such-movie", "50"]})
    pq.write_table(table, tmp_path / "candidates.parquet")
    ml_events(tmp_path)
    out = tmp_path / "serve"
    run(replace(ml_config(out, feature_spec=str(ML_SPEC)), vocab=str(first / "vocab"),
                candidate_table=str(tmp_path / "candidates.parquet")), spark)
    req = {r["request_id"]: r for r in rows(out / "requests").to_pylist()}
    age = encoder(first / "vocab", "user.age")
    assert req["r1"]["u_age"] == age[users["age"][users["user_id"].index(user)]] and req["r2"]["u_age"] == 0
    year = encoder(first / "vocab", "item.release_year")
    expected = [year[movies["release_year"][movies["item_id"].index(i)]] if i in movies["item_id"] else 0
                for i in req["r1"]["cand_item_id"]]
    assert req["r1"]["cand_i_release_year"] == expected and 0 in expected
    assert len(req["r1"]["hist_i_release_year"]) == req["r1"]["hist_len"] > 0
    assert vocab_fingerprint(out / "vocab") == vocab_fingerprint(first / "vocab")
