"""CPU scoring throughput of candidate ads: our engines vs the naive per-pair path vs DeepCTR-Torch.

Same requests (T = 100 history, 50 candidates per request), same DIEN sizes (embeddings 18, GRU 36,
MLP 200-80, attention MLP 80-40 as DeepCTR-Torch has it; the paper's bilinear attention as an extra
row). Every implementation runs in its own process (so peak RSS is its own), `--repeats` rounds of all
of them in turn (so a drift in the machine's speed hits every row alike), and
scores every request once before its clock starts (a warm-up pass: allocations, ONNX Runtime's memory
plans per batch shape), then times a second pass, as a long scoring job runs; the table gives the best
and the median. DeepCTR-Torch at its fastest correct setting (`predict` without
negative sampling, the best of a batch-size sweep) and, labelled apart, the setting its DIEN example
uses (negative sampling on: its predict then needs negatives and runs the auxiliary net). The load
average is printed first: run it on an otherwise idle machine. The hardware limits measured in the
same run: a square fp32 GEMM and the DIEN-shaped skinny product ([25,600 x 36] x [36 x 108]).

    python bench/score.py --requests 2000 --threads 2
    python bench/score.py --rss-pairs 10000000      # also: peak RSS of `dien-batch score` on 10M pairs
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
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rounds import machine_line, peak_rss_mb, run_rounds  # noqa: E402

T, K, H, E = 100, 50, 36, 18
N_USERS, N_ITEMS, N_CATS = 50_000, 200_000, 2_000


def flops_per_pair(attention: str = "mlp", T: float = T) -> dict:
    """Multiply-adds x 2 for one scored pair with T history steps (the useful work: padding excluded), the
    user side shared by K candidates, the rest per pair."""
    gru = T * (2 * 2 * E * 3 * H + 2 * H * 3 * H)  # extractor: input and recurrent products per step
    projection = T * 2 * H * 3 * H  # AUGRU input projection of the states
    if attention == "mlp":  # q = PReLU(Dense(e_a)); first layer's h part per request, q*h part per pair-step
        shared_att = T * 2 * H * 80
        per_pair_att = 2 * 2 * E * H + 2 * H * 80 + T * (2 * H * 80 + 2 * 80 * 40 + 2 * 40)
    else:  # bilinear: W e_a once, then one dot product per step
        shared_att, per_pair_att = 0, 2 * 2 * E * H + T * 2 * H
    augru = T * (2 * H * 3 * H + 30 * H)  # recurrent product + gates per step
    head_in = E + 3 * 2 * E + H + 2 * E  # user, target, sum, target*sum, interest, target*projected interest
    head = 2 * (head_in * 200 + 200 * 80 + 80) + 2 * H * 2 * E
    shared = gru + projection + shared_att
    per_pair = per_pair_att + augru + head
    return {"shared": shared, "per_pair": per_pair, "total": shared / K + per_pair}


def make_data(work: Path, n_requests: int) -> Path:
    """A trained-shape DIEN (random weights), its vocabulary and requests, as the pipeline writes them."""
    import torch

    from dien_batch import schema
    from dien_batch.model import store
    from dien_batch.model.spine import ModelConfig
    from dien_batch.model.zoo import build_model

    features, model_dir = work / "features", work / "model"
    (features / "requests").mkdir(parents=True, exist_ok=True)
    (features / "vocab").mkdir(exist_ok=True)
    model_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in (("user", N_USERS), ("item", N_ITEMS), ("category", N_CATS)):
        cols = {"id": [f"{name}{i}" for i in range(n)], "idx": np.arange(n, dtype=np.int32),
                "count": np.ones(n, np.int64)}
        if name == "item":
            cols["category_idx"] = rng.integers(2, N_CATS, n).astype(np.int32)
        pq.write_table(pa.table(cols, schema=schema.ITEM_VOCAB if name == "item" else schema.VOCAB),
                       features / "vocab" / f"{name}.parquet")
    R = n_requests
    lengths = rng.integers(T // 2, T + 1, R)

    def lists(values, lens, typ):
        flat = pa.array(values, typ)  # a chunked array when large (millions of strings)
        return pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)),
                                        flat.combine_chunks() if isinstance(flat, pa.ChunkedArray) else flat)

    cand = rng.integers(2, N_ITEMS, R * K)
    table = pa.table({
        "request_id": [f"r{i}" for i in range(R)], "user_id": [f"u{i}" for i in range(R)],
        "user_idx": pa.array(rng.integers(2, N_USERS, R).astype(np.int32)),
        "ts": pa.array(np.arange(R, dtype=np.int64)),
        "hist_item_idx": lists(rng.integers(2, N_ITEMS, lengths.sum()).astype(np.int32), lengths, pa.int32()),
        "hist_category_idx": lists(rng.integers(2, N_CATS, lengths.sum()).astype(np.int32), lengths, pa.int32()),
        "hist_len": pa.array(lengths.astype(np.int32)), "hist_last_ts": pa.array(np.zeros(R, np.int64)),
        "cand_item_id": lists(np.array([f"i{c}" for c in cand]), np.full(R, K), pa.string()),
        "cand_category_id": lists(np.array(["c"] * (R * K)), np.full(R, K), pa.string()),
        "cand_item_idx": lists(cand.astype(np.int32), np.full(R, K), pa.int32()),
        "cand_category_idx": lists(rng.integers(2, N_CATS, R * K).astype(np.int32), np.full(R, K), pa.int32()),
    })
    table = table.append_column("cand_label", pa.nulls(R, pa.list_(pa.int32())))
    for name, typ in (("cand_bid", pa.float64()), ("cand_p_true", pa.float64()), ("cand_position", pa.int32())):
        table = table.append_column(name, pa.nulls(R, pa.list_(typ)))
    pq.write_table(table.select(schema.REQUESTS.names).cast(schema.REQUESTS), features / "requests" / "part-0.parquet",
                   row_group_size=1000)
    for folder, attention in ((model_dir, "mlp"), (work / "model-bilinear", "bilinear")):
        folder.mkdir(exist_ok=True)
        torch.manual_seed(0)
        model = build_model(ModelConfig("dien", N_USERS, N_ITEMS, N_CATS, attention=attention)).eval()
        store.save(model, folder, vocab_hash=store.vocab_fingerprint(features / "vocab"), data_manifest_hash="bench",
                   extra={"features": str(features)})
    subprocess.run([sys.executable, "-m", "dien_batch", "compile", "--model", str(model_dir), "--out",
                    str(work / "dien.onnx"), "--requests", str(features / "requests"), "-q"], check=True, cwd=ROOT)
    return features


def run_engine(name: str, work: Path, threads: int) -> dict:
    """In this (child) process: score the requests with one implementation; pairs/s and peak RSS."""
    import torch

    from dien_batch.engines.base import open_engine
    from dien_batch.engines.requests import REQUEST_COLUMNS, request_inputs
    from dien_batch.model import store

    torch.set_num_threads(threads)
    table = pq.read_table(work / "features" / "requests", columns=REQUEST_COLUMNS)
    pairs = table.num_rows * K
    if name in ("torch", "torch-loops", "onnx", "torch-bilinear"):
        from dien_batch.engines.scoring import score_table

        path = {"torch": work / "model", "torch-loops": work / "model", "torch-bilinear": work / "model-bilinear",
                "onnx": work / "dien.onnx"}[name]
        engine = open_engine(path, name.split("-")[0], threads)
        seconds = timed_second_pass(lambda: score_table(engine, table, 512))
    elif name == "naive":  # every pair carries its own copy of the history through the whole model
        model, _ = store.load(work / "model")

        def per_pair(part):
            r = request_inputs(part)
            n = len(r["user"])
            model({"user": torch.from_numpy(r["user"]).repeat_interleave(K),
                   "hist_item": torch.from_numpy(r["hist_item"]).repeat_interleave(K, 0),
                   "hist_cat": torch.from_numpy(r["hist_cat"]).repeat_interleave(K, 0),
                   "hist_len": torch.from_numpy(r["hist_len"]).repeat_interleave(K),
                   "item": torch.from_numpy(r["cand_item"]).reshape(n * K),
                   "cat": torch.from_numpy(r["cand_cat"]).reshape(n * K)})

        def every_pair():
            for i in range(0, table.num_rows, 20):
                per_pair(table.slice(i, 20))

        with torch.inference_mode():
            seconds = timed_second_pass(every_pair)
    elif name.startswith("deepctr"):
        from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
        from deepctr_torch.models import DIEN

        cols = [SparseFeat("user", N_USERS, embedding_dim=E), SparseFeat("item_id", N_ITEMS, embedding_dim=E),
                SparseFeat("cate_id", N_CATS, embedding_dim=E), DenseFeat("seq_length", 1)]
        negatives = name == "deepctr-neg"  # its DIEN example's setting; the fast one scores without the aux net
        seqs = (("hist_item_id", "item_id", N_ITEMS), ("hist_cate_id", "cate_id", N_CATS))
        if negatives:
            seqs += (("neg_hist_item_id", "item_id", N_ITEMS), ("neg_hist_cate_id", "cate_id", N_CATS))
        for feat, base, vocab in seqs:
            cols.append(VarLenSparseFeat(SparseFeat(feat, vocab, embedding_dim=E, embedding_name=base), maxlen=T,
                                         length_name="seq_length"))
        model = DIEN(cols, ["item_id", "cate_id"], gru_type="AUGRU", use_negsampling=negatives,
                     dnn_hidden_units=(200, 80), att_hidden_units=(80, 40), dnn_activation="prelu",
                     att_activation="sigmoid", device="cpu")
        r = request_inputs(table)
        x = {"user": np.repeat(r["user"], K), "item_id": r["cand_item"].ravel(), "cate_id": r["cand_cat"].ravel(),
             "hist_item_id": np.repeat(np.pad(r["hist_item"], ((0, 0), (0, T - r["hist_item"].shape[1]))), K, 0),
             "hist_cate_id": np.repeat(np.pad(r["hist_cat"], ((0, 0), (0, T - r["hist_cat"].shape[1]))), K, 0),
             "seq_length": np.repeat(r["hist_len"], K)}
        if negatives:
            x["neg_hist_item_id"], x["neg_hist_cate_id"] = x["hist_item_id"], x["hist_cate_id"]  # predict needs them
        # The fast setting: the batch size a sweep finds fastest (256 of 64 .. 50,000 here), then one timed
        # pass at it, so that each round reports one pass as for the other rows (the best of the sweep's
        # own passes would be a best of five).
        sizes = (256,) if negatives else (128, 256, 512, 1024, 4096)
        model.predict(x, batch_size=256)  # the warm-up pass
        sweep = {}
        for size in sizes:
            start = time.perf_counter()
            model.predict(x, batch_size=size)
            sweep[size] = time.perf_counter() - start
        size = min(sweep, key=sweep.get)
        start = time.perf_counter()
        model.predict(x, batch_size=size)
        seconds = time.perf_counter() - start
    return {"engine": name, "pairs": pairs, "seconds": seconds, "pairs_per_s": pairs / seconds,
            "peak_rss_mb": peak_rss_mb(),
            **({"batch_size": size} if name.startswith("deepctr") else {})}


def timed_second_pass(score_all) -> float:
    """Seconds of a second pass over all requests: the first warms up what a long scoring job holds warm
    (allocations, ONNX Runtime's memory plans for each batch shape: its first pass ran at half speed)."""
    score_all()
    start = time.perf_counter()
    score_all()
    return time.perf_counter() - start


def gemm_rates(threads: int) -> dict[str, float]:
    """FLOP/s of a square 2048^3 product and of the DIEN-shaped skinny one [25,600 x 36] x [36 x 108]."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, (m, k, n), reps in (("square", (2048, 2048, 2048), 10), ("skinny", (25_600, H, 3 * H), 200)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = min(best, time.perf_counter() - start)
        out[name] = reps * 2 * m * k * n / best
    return out


def _stats(values: list[float]) -> tuple[float, float]:
    """Best (the highest rate) and median of the repeats."""
    return max(values), statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="processes per implementation (best and median)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dien-bench-score")
    parser.add_argument("--engines", nargs="+", default=list(LABELS))
    parser.add_argument("--rss-pairs", type=int, default=0, help="also score this many pairs with the CLI")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_engine(args.child, args.work, args.threads)))
        return
    print(f"{machine_line()}; {args.threads} threads", flush=True)
    args.work = args.work / f"requests-{args.requests}"
    if not (args.work / "dien.onnx").exists():  # make_data's last output: the data is complete
        make_data(args.work, args.requests)
    rates = gemm_rates(args.threads)
    lengths = pq.read_table(args.work / "features" / "requests", columns=["hist_len"])["hist_len"]
    steps = float(lengths.to_numpy().mean())
    flops = {a: flops_per_pair(a, steps) for a in ("mlp", "bilinear")}
    for a, f in flops.items():
        print(f"{a} attention, mean history {steps:.1f} steps: {f['total'] / 1e6:.2f} MFLOP per pair (user side "
              f"{f['shared'] / 1e6:.2f} MFLOP per request shared by {K} candidates; "
              f"{f['per_pair'] / 1e6:.2f} per pair)", flush=True)
    print(f"fp32 GEMM here: square {rates['square'] / 1e9:.0f} GFLOP/s, DIEN-shaped skinny "
          f"{rates['skinny'] / 1e9:.0f} GFLOP/s", flush=True)
    results = run_rounds(
        args.engines, args.repeats,
        lambda name: [__file__, "--child", name, "--work", str(args.work), "--threads", str(args.threads)], ROOT,
        env=lambda name: dict(os.environ, **({"DIEN_BATCH_FUSED": "0"} if name == "torch-loops" else {})),
        rate="pairs_per_s")
    stats = {n: _stats([r["pairs_per_s"] for r in runs]) for n, runs in results.items()}

    def ratio(name: str, other: str, which: int = 0) -> str:
        return f"{stats[name][which] / stats[other][which]:.1f}x" if other in stats else "-"

    print("\n| implementation | pairs/s best | median | effective GFLOP/s | share of the skinny-GEMM rate "
          "| peak RSS MB | vs DeepCTR-Torch (fastest): best, median | vs naive |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        top, median = stats[name]
        work = flops["bilinear" if name == "torch-bilinear" else "mlp"]["total"]
        gflops = top * work / 1e9
        print(f"| {LABELS[name]} | {top:,.0f} | {median:,.0f} | {gflops:.1f} | {gflops * 1e9 / rates['skinny']:.0%} "
              f"| {max(r['peak_rss_mb'] for r in runs):,.0f} "
              f"| {ratio(name, 'deepctr-fast')}, {ratio(name, 'deepctr-fast', 1)} | {ratio(name, 'naive')} |")
    if "deepctr-fast" in results:
        print("DeepCTR-Torch's batch size per round (the sweep's fastest):",
              ", ".join(str(r["batch_size"]) for r in results["deepctr-fast"]))
    if args.rss_pairs:
        big = args.work / f"pairs-{args.rss_pairs}"
        if not (big / "dien.onnx").exists():
            make_data(big, args.rss_pairs // K)
        cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); "
               "from rounds import peak_rss_mb; from dien_batch.cli import main; sys.argv = sys.argv[1:]; "
               "code = 0\ntry: main()\nexcept SystemExit as e: code = e.code\n"
               "print(f'peak RSS {peak_rss_mb():.0f} MB'); sys.exit(code)",
               "dien-batch", "score", "--model", str(big / "model"), "--requests", str(big / "features" / "requests"),
               "--out", str(big / "scores"), "--overwrite", "-q", "--threads", str(args.threads)]
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(f"`dien-batch score` failed (exit {out.returncode}): {out.stderr[-800:]}")
        print(f"\n`dien-batch score` on {args.rss_pairs:,} pairs: {out.stdout.strip()} "
              f"({time.perf_counter() - start:.0f} s)")


LABELS = {"torch": "dien-batch torch engine (default DIEN: MLP attention)",
          "torch-loops": "dien-batch torch engine without the fused C++ kernels (DIEN_BATCH_FUSED=0)",
          "torch-bilinear": "dien-batch torch engine, bilinear attention (eq. 9)",
          "onnx": "dien-batch onnx engine (ONNX Runtime)", "naive": "naive per-pair PyTorch",
          "deepctr-fast": "DeepCTR-Torch 0.3.0 DIEN, no negative sampling, best batch size",
          "deepctr-neg": "DeepCTR-Torch 0.3.0 DIEN, negative sampling on (its example), batch 256"}


if __name__ == "__main__":
    main()
