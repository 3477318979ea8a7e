"""DIEN training throughput at equal quality: dien-batch vs DeepCTR-Torch's DIEN (auxiliary loss on).

Same samples (a build-features output on synth, T up to 100), same epochs, batch size 128, Adam 1e-3,
both with the auxiliary loss, both shuffled every epoch. dien-batch at its defaults, batched as
`dien-batch train` batches (and, labelled apart, with `--length-buckets 20`); DeepCTR-Torch 0.3.0's
DIEN (AUGRU, negative sampling on, its MLP attention 80-40, DNN 200-80) at its fastest way to train
shuffled: its arrays permuted once per epoch, then `fit` without its own per-sample shuffling. Each
implementation runs in its own process, `--repeats` rounds of all of them in turn (best and median samples/s of the
training loop alone),
dien-batch at 1 and at 2 threads; test AUC after the last epoch on the same test set. The load average
is printed first: run it on an otherwise idle machine.

    python bench/train.py --samples 40000 --epochs 2 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rounds import machine_line, run_rounds  # noqa: E402

from dien_batch import cpu  # noqa: E402
from dien_batch.evaluation.metrics import auc  # noqa: E402
from dien_batch.model import batches  # noqa: E402
from dien_batch.model.spine import ModelConfig  # noqa: E402
from dien_batch.model.zoo import build_model  # noqa: E402
from dien_batch.training import EmbeddingL2, TrainConfig, adam  # noqa: E402

BATCH, MAX_LEN = 128, 100
DEFAULTS = TrainConfig(features="", out="")  # `dien-batch train`'s defaults


def ensure_features(work: Path) -> Path:
    features = work / "features"
    if not features.exists():
        world = work / "synth"
        subprocess.run([sys.executable, "-m", "dien_batch", "synth", "--users", "8000", "--events-per-user", "120",
                        "--requests", "20000", "--out", str(world), "-q"], check=True, cwd=ROOT)
        subprocess.run([sys.executable, "-m", "dien_batch", "build-features", "--events", str(world), "--out",
                        str(features), "--max-len", str(MAX_LEN), "-q"], check=True, cwd=ROOT)
    return features


def load(features: Path, split: str, n: int | None):
    tables = [pq.read_table(f, columns=batches.SAMPLE_COLUMNS) for f in sorted((features / split).glob("*.parquet"))]
    import pyarrow as pa

    table = pa.concat_tables(tables)
    return table.slice(0, n) if n else table


def vocab_sizes(features: Path) -> dict[str, int]:
    return {n: pq.read_metadata(features / "vocab" / f"{n}.parquet").num_rows for n in ("user", "item", "category")}


# -- dien-batch ---------------------------------------------------------------------------------------------
def run_ours(train, test, sizes, features: Path, epochs: int, length_buckets: int) -> dict:
    torch.manual_seed(0)
    model = build_model(ModelConfig("dien", sizes["user"], sizes["item"], sizes["category"]))
    regulariser = EmbeddingL2(model, features / "vocab")
    opt = adam(model, DEFAULTS.lr)
    bce = torch.nn.BCEWithLogitsLoss()
    model.train()
    seconds, rng = 0.0, np.random.default_rng(0)
    for _ in range(epochs):
        start = time.perf_counter()
        shuffled = train.take(rng.permutation(train.num_rows))  # as `dien-batch train`: shuffled, cut as it cuts
        for table in batches.cut(shuffled, BATCH, length_buckets=length_buckets, rng=rng, min_batch=2):
            b = batches.to_tensors(table)
            logits, aux = model(b)
            loss = bce(logits, b["label"]) + aux + DEFAULTS.embedding_l2 * regulariser(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - start
    model.eval()
    probs = []
    with torch.inference_mode():
        for i in range(0, test.num_rows, 4096):
            logits, _ = model(batches.to_tensors(test.slice(i, 4096), with_negatives=False))
            probs.append(torch.sigmoid(logits).numpy())
    return {"samples_per_s": epochs * train.num_rows / seconds,
            "auc": auc(test.column("label").to_numpy(), np.concatenate(probs))}


# -- DeepCTR-Torch ------------------------------------------------------------------------------------------------
def deepctr_inputs(table, with_neg=True):
    x = {"user": table.column("user_idx").to_numpy().astype(np.int64),
         "item_id": table.column("item_idx").to_numpy().astype(np.int64),
         "cate_id": table.column("category_idx").to_numpy().astype(np.int64),
         "hist_item_id": batches.padded(table.column("hist_item_idx"), MAX_LEN).astype(np.int64),
         "hist_cate_id": batches.padded(table.column("hist_category_idx"), MAX_LEN).astype(np.int64),
         "seq_length": table.column("hist_len").to_numpy().astype(np.int64)}
    x["neg_hist_item_id"] = batches.padded(table.column("neg_item_idx"), MAX_LEN).astype(np.int64)
    x["neg_hist_cate_id"] = batches.padded(table.column("neg_category_idx"), MAX_LEN).astype(np.int64)
    return x


def run_deepctr(train, test, sizes, epochs: int) -> dict:
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIEN

    cols = [SparseFeat("user", sizes["user"], embedding_dim=18), SparseFeat("item_id", sizes["item"], embedding_dim=18),
            SparseFeat("cate_id", sizes["category"], embedding_dim=18), DenseFeat("seq_length", 1)]
    for name, base, vocab in (("hist_item_id", "item_id", sizes["item"]),
                              ("hist_cate_id", "cate_id", sizes["category"]),
                              ("neg_hist_item_id", "item_id", sizes["item"]),
                              ("neg_hist_cate_id", "cate_id", sizes["category"])):
        cols.append(VarLenSparseFeat(SparseFeat(name, vocab, embedding_dim=18, embedding_name=base), maxlen=MAX_LEN,
                                     length_name="seq_length"))
    torch.manual_seed(0)
    model = DIEN(cols, ["item_id", "cate_id"], gru_type="AUGRU", use_negsampling=True, dnn_hidden_units=(200, 80),
                 att_hidden_units=(80, 40), dnn_activation="prelu", att_activation="sigmoid", device="cpu")
    model.compile("adam", "binary_crossentropy")
    x, y = deepctr_inputs(train), train.column("label").to_numpy().astype(np.float32)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(epochs):  # shuffled once per epoch up front: fit(shuffle=True) gathers per sample, 15-20% slower
        order = rng.permutation(len(y))
        model.fit({k: v[order] for k, v in x.items()}, y[order], batch_size=BATCH, epochs=1, verbose=0,
                  shuffle=False)
    seconds = time.perf_counter() - start
    pred = model.predict(deepctr_inputs(test), batch_size=4096).ravel()
    return {"samples_per_s": epochs * train.num_rows / seconds, "auc": auc(test.column("label").to_numpy(), pred)}


LABELS = {"ours-1": "dien-batch (defaults), 1 thread", "ours-2": "dien-batch (defaults), 2 threads",
          "ours-buckets": "dien-batch `--length-buckets 20`, 2 threads",
          "deepctr": "DeepCTR-Torch 0.3.0 DIEN (AUGRU, aux loss), 2 threads"}


def child(name: str, features: Path, samples: int, epochs: int) -> dict:
    torch.set_num_threads(1 if name == "ours-1" else 2)
    cpu.tune()  # as `dien-batch train` does; the same settings for the peer
    train, test, sizes = load(features, "train", samples), load(features, "test", None), vocab_sizes(features)
    if name == "deepctr":
        return run_deepctr(train, test, sizes, epochs)
    buckets = 20 if name == "ours-buckets" else DEFAULTS.length_buckets
    return run_ours(train, test, sizes, features, epochs, buckets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dien-bench-train")
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", nargs="+", default=list(LABELS), choices=list(LABELS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    features = args.features or ensure_features(args.work)
    if args.child:
        print(json.dumps(child(args.child, features, args.samples, args.epochs)))
        return
    print(machine_line(), flush=True)
    train = load(features, "train", args.samples)
    lengths = train.column("hist_len").to_numpy()
    print(f"{train.num_rows:,} training samples (mean history {lengths.mean():.1f}, max {lengths.max()}), "
          f"{args.epochs} epoch(s), batch {BATCH}", flush=True)
    results = run_rounds(args.runs, args.repeats,
                         lambda name: [__file__, "--child", name, "--features", str(features), "--samples",
                                       str(args.samples), "--epochs", str(args.epochs)], ROOT, rate="samples_per_s")
    base = max((r["samples_per_s"] for r in results.get("deepctr", [])), default=None)
    print("\n| implementation | samples/s best | median | vs DeepCTR-Torch | test AUC after the last epoch |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        if not runs:
            continue
        rates = [r["samples_per_s"] for r in runs]
        ratio = f"{max(rates) / base:.1f}x" if base else "-"
        print(f"| {LABELS[name]} | {max(rates):,.0f} | {statistics.median(rates):,.0f} | {ratio} | "
              f"{statistics.mean(r['auc'] for r in runs):.4f} |")


if __name__ == "__main__":
    main()
