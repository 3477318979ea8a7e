"""Great Expectations on a built dataset: the samples and requests suites, each frame validated as GX
gets it today (`narrow`: scalar columns and one flag per row check) and as it did before (`wide`: every
column, the row checks as SQL over the lists). Per suite: rows, Spark jobs, seconds, and the MB GX
caches (Spark's storage info, read before the cache is dropped). Each mode runs in its own process.

    python bench/build_features.py --events 1000000 --engines spark2     # builds /tmp/dien-bench-build/ours-local2
    python bench/validation.py --features /tmp/dien-bench-build/ours-local2 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_child(features: Path, mode: str) -> list[dict]:
    import pyarrow.parquet as pq
    from pyspark.sql.catalog import Catalog

    from dien_batch.spark_jobs import quality
    from dien_batch.spark_jobs.build_features import _validate
    from dien_batch.spark_jobs.session import spark_session

    if mode == "wide":
        quality._checked = lambda df, suite: (df, [*suite.expectations, *(
            quality._rows(description, where) for description, where in suite.row_checks.items())])
    spark = spark_session("local[2]", driver_memory="8g")
    sc, cached_mb, clear, out = spark.sparkContext, [], Catalog.clearCache, []

    def clear_and_measure(catalog):
        cached_mb.append(sum(i.memSize() + i.diskSize() for i in sc._jsc.sc().getRDDStorageInfo()) / 2**20)
        clear(catalog)

    class TimedValidator(quality.Validator):
        def run(self, name, df, checks):
            sc.setJobGroup(name, name)
            start = time.perf_counter()
            outcome = super().run(name, df, checks)
            out.append({"suite": name, "rows": outcome.rows, "success": outcome.success,
                        "jobs": len(sc.statusTracker().getJobIdsForGroup(name)),
                        "seconds": time.perf_counter() - start, "cached_mb": cached_mb[-1]})
            return outcome

    Catalog.clearCache = clear_and_measure
    manifest = json.loads((features / "manifest.json").read_text())
    sizes = quality.VocabSizes(*(pq.read_metadata(features / "vocab" / f"{n}.parquet").num_rows
                                 for n in ("user", "item", "category")))
    validator = TimedValidator(Path(os.environ.get("TMPDIR", "/tmp")) / f"dien-bench-validation-{mode}")
    _validate(spark, features, validator, sizes, int(manifest["params"]["max_len"]))  # as build-features runs it
    spark.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True, help="a build-features output directory")
    ap.add_argument("--modes", nargs="+", default=["narrow", "wide"], choices=["narrow", "wide"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_child(args.features, args.child)))
        return
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeats):
        for mode in args.modes:  # round robin, each in its own process
            done = subprocess.run([sys.executable, __file__, "--features", str(args.features), "--child", mode],
                                  check=True, capture_output=True, text=True, cwd=ROOT)
            for r in json.loads(done.stdout.strip().splitlines()[-1]):
                results.setdefault((r["suite"], mode), []).append(r)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| suite | frame | rows | passed | Spark jobs | s best | s median | cached MB |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for (suite, mode), runs in results.items():
        secs = sorted(r["seconds"] for r in runs)
        r = runs[0]
        print(f"| {suite} | {mode} | {r['rows']:,} | {r['success']} | {r['jobs']} | {secs[0]:.1f} | "
              f"{secs[len(secs) // 2]:.1f} | {r['cached_mb']:.1f} |")


if __name__ == "__main__":
    main()
