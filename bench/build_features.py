"""build-features throughput: our Spark job vs DuckDB and plain pandas doing the same core work.

The core work, identical for all three: read the events, drop duplicate events, dense ids by count,
sort each user's behaviour by (ts, item), take the last 3 targets per user (test, valid, train as in
`--samples last --split last`), give each the last 100 events strictly before it as history, one
negative target per positive, and one auxiliary negative per history position (uniform, never the
clicked item), and write Parquet (zstd). Our job additionally quarantines bad rows, writes rejects,
scoring requests and a manifest, and validates everything with Great Expectations: reported as "full".
Two more Spark rows measure what Spark itself costs here: DuckDB's plan written as Spark SQL
(`spark-sql`) and only read, distinct, write (`spark-min`), both on local[2] with none of our code.

    python bench/build_features.py --events 1000000 10000000 [--repeats 2] [--engines spark2 duckdb pandas]

Each engine runs in its own process, round robin (bench/rounds.py); the table gives the best and the
median core time, the whole command's time and the peak RSS of DuckDB's and pandas' processes (not
measured for the Spark JVM, which the benchmark does not start itself).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rounds import machine_line, peak_rss_mb, run_rounds

ROOT = Path(__file__).resolve().parents[1]

MAX_LEN, TARGETS, SEED = 100, 3, 7


def make_events(n_events: int, work: Path) -> Path:
    out = work / f"synth-{n_events}"
    if not out.exists():
        users = n_events // 50
        subprocess.run([sys.executable, "-m", "dien_batch", "synth", "--users", str(users), "--items",
                        str(max(20_000, n_events // 50)), "--requests", "1000", "--candidates-per-request", "5",
                        "--out", str(out), "-q"], check=True, cwd=ROOT)
    return out / "events"


def run_ours(events: Path, work: Path, master: str) -> dict:
    out = work / f"ours-{master.replace('[', '').replace(']', '')}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dien_batch", "build-features", "--events", str(events), "--format",
                    "parquet", "--samples", "last", "--split", "last", "--aux-neg", "uniform", "--max-len",
                    str(MAX_LEN), "--master", master, "--driver-memory", "8g", "--out", str(out), "-q"],
                   check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    manifest = json.loads((out / "manifest.json").read_text())
    t = manifest["timings"]
    core = t["read_and_quarantine"] + t["vocabulary"] + t["samples"]
    rows = sum(s["rows"] for s in manifest["samples"].values())
    return {"core_s": core, "full_s": wall, "rows": rows}


DUCKDB_SQL = """
CREATE TABLE ev AS SELECT DISTINCT user_id, item_id, category_id, epoch(ts)::BIGINT AS ts
  FROM read_parquet('{events}/*.parquet');
CREATE TABLE uv AS SELECT user_id, row_number() OVER (ORDER BY count(*) DESC, user_id) + 1 AS u FROM ev GROUP BY 1;
CREATE TABLE iv AS SELECT item_id, row_number() OVER (ORDER BY count(*) DESC, item_id) + 1 AS i FROM ev GROUP BY 1;
CREATE TABLE cv AS SELECT category_id, row_number() OVER (ORDER BY count(*) DESC, category_id) + 1 AS c
  FROM ev GROUP BY 1;
CREATE TABLE enc AS
  SELECT u, i, c, ts,
         row_number() OVER w AS p,                            -- 1-based position in the user's sequence
         rank() OVER (PARTITION BY u ORDER BY ts) - 1 AS h,   -- events strictly before
         (hash({seed}, u, row_number() OVER w) % {n_items}) + 2 AS n0
  FROM ev JOIN uv USING (user_id) JOIN iv USING (item_id) JOIN cv USING (category_id)
  WINDOW w AS (PARTITION BY u ORDER BY ts, i);
CREATE TABLE enc2 AS SELECT *, CASE WHEN n0 = i THEN (n0 - 1) % {n_items} + 2 ELSE n0 END AS neg FROM enc;
CREATE TABLE seq AS
  SELECT u, list(i ORDER BY p) AS items, list(c ORDER BY p) AS cats, list(neg ORDER BY p) AS negs
  FROM enc2 GROUP BY u;
CREATE TABLE targets AS
  SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY u ORDER BY ts DESC, i DESC) - 1 AS r
                 FROM enc2 WHERE h > 0) WHERE r < {targets};
COPY (
  SELECT t.u, t.ts, t.r, label, CASE WHEN label = 1 THEN t.i ELSE
           (CASE WHEN (hash({seed} + 1, t.u, t.p) % {n_items}) + 2 = t.i THEN (t.i - 1) % {n_items} + 2
                 ELSE (hash({seed} + 1, t.u, t.p) % {n_items}) + 2 END) END AS item,
         list_slice(s.items, greatest(1, t.h - {max_len} + 1), t.h) AS hist_item,
         list_slice(s.cats, greatest(1, t.h - {max_len} + 1), t.h) AS hist_cat,
         list_slice(s.negs, greatest(1, t.h - {max_len} + 1), t.h) AS neg_item
  FROM targets t JOIN seq s USING (u) CROSS JOIN (VALUES (1), (0)) AS l(label)
) TO '{out}' (FORMAT parquet, COMPRESSION zstd);
"""


def run_duckdb(events: Path, work: Path, threads: int) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    n_items = con.execute(f"SELECT count(DISTINCT item_id) FROM read_parquet('{events}/*.parquet')").fetchone()[0]
    out = work / "duckdb.parquet"
    start = time.perf_counter()
    con.execute(DUCKDB_SQL.format(events=events, seed=SEED, n_items=n_items, targets=TARGETS, max_len=MAX_LEN,
                                  out=out))
    return {"core_s": time.perf_counter() - start, "rows": pq.read_metadata(out).num_rows}


def run_pandas(events: Path, work: Path) -> dict:
    """What a practitioner writes first: pandas for the table work, a loop over users for sequences."""
    start = time.perf_counter()
    df = pd.read_parquet(events)
    df["ts"] = df["ts"].astype("int64") // 10**3 if df["ts"].dtype.kind == "M" else df["ts"]
    df = df.drop_duplicates(["user_id", "item_id", "category_id", "ts"])
    for col, new in (("user_id", "u"), ("item_id", "i"), ("category_id", "c")):
        order = df[col].value_counts().sort_index().sort_values(ascending=False, kind="stable").index
        df[new] = df[col].map(pd.Series(np.arange(2, len(order) + 2), index=order)).astype(np.int32)
    n_items = df["i"].max() - 1
    df = df.sort_values(["u", "ts", "i"], kind="stable")
    rng = np.random.default_rng(SEED)
    rows = []
    for u, g in df.groupby("u", sort=False):
        items, cats, ts = g["i"].to_numpy(), g["c"].to_numpy(), g["ts"].to_numpy()
        negs = rng.integers(2, n_items + 2, len(items))
        negs = np.where(negs == items, (negs - 1) % n_items + 2, negs)
        before = np.searchsorted(ts, ts, side="left")
        eligible = np.flatnonzero(before > 0)[::-1][:TARGETS]
        for r, j in enumerate(eligible):
            lo, hi = max(0, before[j] - MAX_LEN), before[j]
            neg_target = int(rng.integers(2, n_items + 2))
            neg_target = (neg_target - 1) % n_items + 2 if neg_target == items[j] else neg_target
            for label, item in ((1, items[j]), (0, neg_target)):
                rows.append((u, ts[j], r, label, item, items[lo:hi], cats[lo:hi], negs[lo:hi]))
    table = pa.table({name: [row[k] for row in rows] for k, name in enumerate(
        ["u", "ts", "r", "label", "item", "hist_item", "hist_cat", "neg_item"])})
    pq.write_table(table, work / "pandas.parquet", compression="zstd")
    return {"core_s": time.perf_counter() - start, "rows": len(rows)}


SPARK_SQL = """
WITH ev AS (SELECT DISTINCT user_id, item_id, category_id, CAST(unix_micros(ts) AS BIGINT) AS ts FROM events),
uv AS (SELECT user_id, row_number() OVER (ORDER BY count(*) DESC, user_id) + 1 AS u FROM ev GROUP BY 1),
iv AS (SELECT item_id, row_number() OVER (ORDER BY count(*) DESC, item_id) + 1 AS i FROM ev GROUP BY 1),
cv AS (SELECT category_id, row_number() OVER (ORDER BY count(*) DESC, category_id) + 1 AS c FROM ev GROUP BY 1)
SELECT u, i, c, ts, row_number() OVER w AS p, rank() OVER (PARTITION BY u ORDER BY ts) - 1 AS h,
       pmod(hash({seed}, u, row_number() OVER w), {n_items}) + 2 AS n0
FROM ev JOIN uv USING (user_id) JOIN iv USING (item_id) JOIN cv USING (category_id)
WINDOW w AS (PARTITION BY u ORDER BY ts, i)
"""
SPARK_SAMPLES = """
WITH e AS (SELECT *, CASE WHEN n0 = i THEN pmod(n0 - 1, {n_items}) + 2 ELSE n0 END AS neg FROM enc),
seq AS (SELECT u, transform(sort_array(collect_list(struct(p, i, c, neg))), x -> x.i) AS items,
               transform(sort_array(collect_list(struct(p, i, c, neg))), x -> x.c) AS cats,
               transform(sort_array(collect_list(struct(p, i, c, neg))), x -> x.neg) AS negs FROM e GROUP BY u),
targets AS (SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY u ORDER BY ts DESC, i DESC) - 1 AS r
                           FROM e WHERE h > 0) WHERE r < {targets})
SELECT t.u, t.ts, t.r, label,
       CASE WHEN label = 1 THEN t.i ELSE pmod(hash({seed} + 1, t.u, t.p), {n_items}) + 2 END AS item,
       slice(s.items, greatest(1, t.h - {max_len} + 1), least(t.h, {max_len})) AS hist_item,
       slice(s.cats, greatest(1, t.h - {max_len} + 1), least(t.h, {max_len})) AS hist_cat,
       slice(s.negs, greatest(1, t.h - {max_len} + 1), least(t.h, {max_len})) AS neg_item
FROM targets t JOIN seq s USING (u) LATERAL VIEW explode(array(1, 0)) l AS label
"""


def run_spark_floor(events: Path, work: Path, plan: str) -> dict:
    """Spark local[2] with nothing of ours: DuckDB's plan as one Spark SQL job ("sql": the positions
    cached once, as DuckDB materialises them), or only read -> distinct -> write ("min": the least any
    de-duplicating Spark job does). The session starts before the clock, as the JVM does not count in
    our "core" either."""
    sys.path.insert(0, str(ROOT))
    from spark_jobs.session import spark_session

    spark = spark_session("local[2]", driver_memory="8g")
    start = time.perf_counter()
    df = spark.read.parquet(str(events))
    out = str(work / f"spark-{plan}")
    if plan == "min":
        df.distinct().write.mode("overwrite").parquet(out)
        rows = spark.read.parquet(out).count()
    else:
        df.createOrReplaceTempView("events")
        n_items = df.select("item_id").distinct().count()
        enc = spark.sql(SPARK_SQL.format(seed=SEED, n_items=n_items)).cache()
        enc.createOrReplaceTempView("enc")
        spark.sql(SPARK_SAMPLES.format(seed=SEED, n_items=n_items, targets=TARGETS, max_len=MAX_LEN)).write.mode(
            "overwrite").parquet(out)
        rows = None
    seconds = time.perf_counter() - start
    rows = rows if rows is not None else spark.read.parquet(out).count()
    spark.stop()
    return {"core_s": seconds, "rows": rows}


ENGINES = {"spark2": "dien-batch local[2]", "spark1": "dien-batch local[1]", "duckdb": "DuckDB (2 threads)",
           "pandas": "pandas (1 process)", "spark-sql": "DuckDB's plan in Spark SQL, local[2]",
           "spark-min": "Spark local[2]: read, distinct, write only"}


def run_child(engine: str, events: Path, work: Path) -> dict:
    if engine in ("spark-sql", "spark-min"):
        return run_spark_floor(events, work, engine.removeprefix("spark-"))
    if engine.startswith("spark"):
        return run_ours(events, work, f"local[{engine[-1]}]")
    return run_duckdb(events, work, 2) if engine == "duckdb" else run_pandas(events, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    parser.add_argument("--repeats", type=int, default=2, help="processes per engine and size (best and median)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dien-bench-build")
    parser.add_argument("--skip-pandas-above", type=int, default=20_000_000)
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "EVENTS_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        result = run_child(args.child[0], Path(args.child[1]), args.work)
        if not args.child[0].startswith("spark"):  # the Spark JVM is not a process this one waits for
            result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return
    print(f"{machine_line()}; {args.repeats} rounds, each engine in its own process")
    table = []
    for n in args.events:
        events = make_events(n, args.work)
        n_rows = pq.ParquetDataset(events).read(columns=["ts"]).num_rows
        print(f"\n== {n_rows:,} events", flush=True)
        engines = [e for e in args.engines if e != "pandas" or n <= args.skip_pandas_above]
        results = run_rounds(engines, args.repeats, lambda e, ev=events: [
            "bench/build_features.py", "--child", e, str(ev), "--work", str(args.work)], ROOT, rate="core_s")
        duck = min(r["core_s"] for r in results.get("duckdb", [{"core_s": float("nan")}]))
        for engine, runs in results.items():
            core = sorted(r["core_s"] for r in runs)
            full = sorted(r["full_s"] for r in runs if "full_s" in r)
            rss = max(r.get("peak_rss_mb", float("nan")) for r in runs)
            table.append(f"| {n_rows:,} | {ENGINES[engine]} | {core[0]:.1f} | {statistics.median(core):.1f} | "
                         f"{n_rows / core[0]:,.0f} | {f'{full[0]:.1f}' if full else '-'} | "
                         f"{rss:,.0f} | {core[0] / duck:.2f}x |".replace("| nan |", "| - |"))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| events | engine | core s best | median | core events/s | full s | peak RSS MB | core vs DuckDB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
