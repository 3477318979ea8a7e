"""DIEN training throughput: dien-batch vs DeepCTR-Torch's DIEN vs a plain-PyTorch per-step loop.

Same data (build-features output on synth, T = 100), same sizes (embeddings 18, GRU hidden 36 for
dien-batch; DeepCTR-Torch sizes its GRU to the behaviour embedding, 36), batch size 128, Adam 1e-3,
auxiliary loss on, one epoch each on the first N training samples, then test AUC on the same test set.

    python bench/train.py --features /tmp/dien-bench-train/features --samples 20000
"""

from __future__ import annotations

import argparse
import contextlib
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

from dien_batch.evaluation.metrics import auc  # noqa: E402
from dien_batch.model import batches, cells, zoo  # noqa: E402
from dien_batch.model.zoo import CTRModel, ModelConfig  # noqa: E402

BATCH, MAX_LEN = 128, 100


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


# -- dien-batch (and its plain per-step variant) ---------------------------------------------------------------
def naive_recurrence(kind, gx, w_hh, b_hh, lengths, att=None, variant="paper", return_states=False):
    """Autograd through a Python loop over the plainly written cell, masking finished rows."""
    R, T, _ = gx.shape
    K = 1 if att is None else att.shape[1]
    h = gx.new_zeros(R, K, w_hh.shape[1])
    states = []
    for t in range(T):
        a = None if att is None else att[:, :, t:t + 1]
        new = cells.cell_update(kind, variant, gx[:, t].unsqueeze(1), h, w_hh, b_hh, a)
        keep = (t < lengths).view(R, 1, 1).to(gx.dtype)
        h = keep * new + (1 - keep) * h
        states.append(h)
    return h, (torch.stack(states, 2) if return_states else None)


@contextlib.contextmanager
def plain_pytorch():
    original = zoo.recurrence
    zoo.recurrence = naive_recurrence
    try:
        yield
    finally:
        zoo.recurrence = original


def run_ours(train, test, sizes) -> dict:
    torch.manual_seed(0)
    model = CTRModel(ModelConfig("dien", sizes["user"], sizes["item"], sizes["category"]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    bce = torch.nn.BCEWithLogitsLoss()
    model.train()
    start = time.perf_counter()
    for i in range(0, train.num_rows - 1, BATCH):
        b = batches.to_tensors(train.slice(i, BATCH))
        if len(b["label"]) < 2:
            continue
        logits, aux = model(b)
        loss = bce(logits, b["label"]) + aux
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    probs = []
    with torch.inference_mode():
        for i in range(0, test.num_rows, 4096):
            logits, _ = model(batches.to_tensors(test.slice(i, 4096), with_negatives=False))
            probs.append(torch.sigmoid(logits).numpy())
    return {"samples_per_s": train.num_rows / seconds,
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


def run_deepctr(train, test, sizes) -> dict:
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
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    pred = model.predict(deepctr_inputs(test), batch_size=4096).ravel()
    return {"samples_per_s": train.num_rows / seconds, "auc": auc(test.column("label").to_numpy(), pred)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dien-bench-train")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    features = args.features or ensure_features(args.work)
    train, test, sizes = load(features, "train", args.samples), load(features, "test", None), vocab_sizes(features)
    lengths = train.column("hist_len").to_numpy()
    print(f"{train.num_rows:,} training samples (mean history {lengths.mean():.1f}, max {lengths.max()}), "
          f"{test.num_rows:,} test samples, batch {BATCH}, {torch.get_num_threads()} threads", flush=True)
    results = {"dien-batch": run_ours(train, test, sizes)}
    print("dien-batch done", results["dien-batch"], flush=True)
    with plain_pytorch():
        results["plain PyTorch per-step loop"] = run_ours(train, test, sizes)
    print("plain done", flush=True)
    results["DeepCTR-Torch 0.3.0 DIEN"] = run_deepctr(train, test, sizes)
    base = results["DeepCTR-Torch 0.3.0 DIEN"]["samples_per_s"]
    print("\n| implementation | samples/s | vs DeepCTR-Torch | test AUC (1 epoch) |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['samples_per_s']:,.0f} | {r['samples_per_s'] / base:.1f}x | {r['auc']:.4f} |")


if __name__ == "__main__":
    main()
