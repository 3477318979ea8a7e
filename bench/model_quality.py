"""Model quality: the paper's comparison in shape, on synth, Amazon Musical Instruments and MovieLens-100K.

Each model is trained with 3 seeds (up to 3 epochs, stopping after one without a better validation
AUC; checkpoint chosen on validation AUC; batch 128, Adam 1e-3); the table reports test AUC and GAUC
as mean ± std. Runs are cached under --work, so an
interrupted study resumes where it stopped.

    python bench/model_quality.py --work /tmp/dien-quality --jobs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

DATASETS = {
    "synth": (["synth", "--users", "3000", "--items", "5000", "--categories", "50", "--events-per-user", "40",
               "--requests", "6000", "--candidates-per-request", "10"],
              ["--split", "time:2025-02-19"]),
    "amazon-mi": (None, ["--events", str(DATA / "amazon-musical-instruments-5core" / "Musical_Instruments_5.csv")]),
    "movielens-100k": (None, ["--events", str(DATA / "movielens-100k" / "ml-100k.inter"),
                              "--max-samples-per-user", "10"]),
}
RUNS = {
    "BaseModel": ["--model", "base"],
    "DIN": ["--model", "din"],
    "Two-layer GRU Attention": ["--model", "gru_att"],
    "GRU+AIGRU": ["--model", "gru_aigru"],
    "GRU+AGRU": ["--model", "gru_agru"],
    "GRU+AUGRU (no aux)": ["--model", "gru_augru"],
    "DIEN": ["--model", "dien"],
    "DIEN, official AUGRU": ["--model", "dien", "--augru-variant", "official"],
    "DIEN, MLP attention": ["--model", "dien", "--attention", "mlp"],
}
SEEDS = (1, 2, 3)


def dien_batch(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dien_batch", *args, "-q"], check=True, cwd=ROOT)


def features(work: Path, name: str) -> Path:
    out = work / "features" / name
    if not out.exists():
        synth_args, build_args = DATASETS[name]
        if synth_args:
            world = work / "synth"
            if not world.exists():
                dien_batch(*synth_args, "--out", str(world))
            build_args = ["--events", str(world), *build_args]
        dien_batch("build-features", *build_args, "--out", str(out))
    return out


def train_one(job: tuple[str, str, int, Path]) -> dict:
    dataset, run, seed, work = job
    out = work / "models" / dataset / run.replace(" ", "_").replace(",", "").replace("+", "_") / str(seed)
    if not (out / "metrics.json").exists():
        dien_batch("train", "--features", str(work / "features" / dataset), *RUNS[run], "--seed", str(seed),
                   "--epochs", "3", "--batch-size", "128", "--threads", "1", "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    return {"dataset": dataset, "run": run, "seed": seed, "auc": metrics["test"]["auc"],
            "gauc": metrics["test"]["gauc"], "samples_per_s": metrics["epochs"][0]["train_samples_per_s"]}


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/dien-quality"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    args = parser.parse_args()
    for name in args.datasets:
        features(args.work, name)
    jobs = [(d, r, s, args.work) for d in args.datasets for r in args.runs for s in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(train_one, jobs))
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    print("| model | " + " | ".join(f"{d} AUC | {d} GAUC" for d in args.datasets) + " |")
    print("|---|" + "---:|---:|" * len(args.datasets))
    for run in args.runs:
        cells = []
        for d in args.datasets:
            mine = [r for r in results if r["dataset"] == d and r["run"] == run]
            cells += [fmt([r["auc"] for r in mine]), fmt([r["gauc"] for r in mine])]
        print(f"| {run} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
