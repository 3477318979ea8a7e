"""What the feature spec's fields cost at scoring time: DIEN without fields vs the same DIEN with
MovieLens' spec (user age, gender, occupation; item release year) vs a wider ads spec (user segment,
city, spend; item brand, shop, campaign, price; context device, hour), torch and ONNX engines on CPU.

Same random requests for every row (T up to 100 history steps, 50 candidates per request, default
DIEN sizes, random weights, fields' vocabularies of 50), fed to the engines in batches of the size
`dien-batch score` uses (no Parquet reading, which is the same for all rows). Each row runs in its own process, round
robin `--repeats` times; best and median pairs/s. The predicted cost (multiply-adds the fields add per
pair, the user side shared by 50 candidates) is printed beside the measurement.

    python bench/fields.py --requests 1000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rounds import machine_line, run_rounds  # noqa: E402
from score import flops_per_pair  # noqa: E402

T, K, E, H = 100, 50, 18, 36
N_USERS, N_ITEMS, N_CATS, FIELD_VOCAB = 50_000, 200_000, 2_000, 50
SPECS = {
    "none": {},
    "movielens": {"user": (["age", "gender", "occupation"], []), "item": (["release_year"], [])},
    "ads": {"user": (["segment", "city"], ["spend"]), "item": (["brand", "shop", "campaign"], ["price"]),
            "context": (["device", "hour"], [])},
}


def spec_fields(spec: dict) -> tuple[dict, ...]:
    out = []
    for group, (categorical, numeric) in spec.items():
        out += [{"group": group, "name": n, "kind": "categorical", "size": FIELD_VOCAB} for n in categorical]
        out += [{"group": group, "name": n, "kind": "numeric", "mean": 0.0, "std": 1.0} for n in numeric]
    return tuple(out)


def added_flops(spec: dict) -> float:
    """Multiply-adds x 2 per pair the fields add (user side over K): wider item vectors in the extractor's
    input product, the attention's query projection and the head; the profile in the head."""
    fields = spec_fields(spec)
    width = {g: sum(E if f["kind"] == "categorical" else 1 for f in fields if f["group"] == g)
             for g in ("user", "item", "context")}
    d_item, d_profile = width["item"], width["user"] + width["context"]
    shared = T * 2 * d_item * 3 * H + T * d_item  # extractor input product, history sum
    per_pair = 2 * d_item * H + 2 * 200 * (4 * d_item + d_profile) + 2 * H * d_item  # query, head, interest proj
    return shared / K + per_pair


def inputs_for(fields: tuple[dict, ...], requests: int) -> dict[str, np.ndarray]:
    from dien_batch.engines.onnx_export import axes
    from dien_batch.engines.requests import input_names, numeric_inputs

    rng = np.random.default_rng(0)
    lengths = rng.integers(T // 2, T + 1, requests)
    valid = np.arange(T) < lengths[:, None]
    data = {"user": rng.integers(2, N_USERS, requests), "hist_item": rng.integers(2, N_ITEMS, (requests, T)) * valid,
            "hist_cat": rng.integers(2, N_CATS, (requests, T)) * valid, "hist_len": lengths,
            "cand_item": rng.integers(2, N_ITEMS, (requests, K)), "cand_cat": rng.integers(2, N_CATS, (requests, K))}
    data = {k: v.astype(np.int64) for k, v in data.items()}
    shape = {"R": requests, "T": T, "K": K}
    numeric = numeric_inputs(fields)
    for name in input_names(fields)[6:]:
        size = [shape[d] for d in axes(name)]
        data[name] = (rng.standard_normal(size).astype(np.float32) if name in numeric
                      else rng.integers(1, FIELD_VOCAB, size).astype(np.int64))
    return data


def run_child(name: str, requests: int, threads: int, work: Path) -> dict:
    import torch

    from dien_batch.engines.torch_engine import TorchEngine
    from dien_batch.model.spine import ModelConfig
    from dien_batch.model.zoo import build_model

    spec, engine_kind = name.split("/")
    fields = spec_fields(SPECS[spec])
    torch.manual_seed(0)
    model = build_model(ModelConfig("dien", N_USERS, N_ITEMS, N_CATS, fields=fields)).eval()
    if engine_kind == "torch":
        engine = TorchEngine(model, {}, threads)
    else:
        import onnx

        from dien_batch import schema
        from dien_batch.engines import manifest
        from dien_batch.engines.onnx_engine import OnnxEngine
        from dien_batch.engines.onnx_export import export

        path = work / f"{spec}.onnx"
        onnx.save(export(model), str(path))
        config = {"architecture": model.config.to_dict(), "vocab_hash": "bench",
                  "schema_version": schema.SCHEMA_VERSION}
        manifest.write(path, kind="onnx", precision="fp32", model_config=config, accuracy={}, extra={})
        engine = OnnxEngine(path, threads)
    from dien_batch.engines.scoring import pair_steps

    data = inputs_for(fields, requests)
    batch = pair_steps(engine) // (K * T)  # requests per engine call, as `dien-batch score` bounds them
    batches = [{k: v[i:i + batch] for k, v in data.items()} for i in range(0, requests, batch)]
    engine.score({k: v[:20] for k, v in data.items()})  # warm-up, untimed
    start = time.perf_counter()
    for batch in batches:
        engine.score(batch)
    return {"pairs_per_s": requests * K / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dien-bench-fields")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(run_child(args.child, args.requests, args.threads, args.work)))
        return
    print(machine_line(), flush=True)
    names = [f"{spec}/{engine}" for engine in args.engines for spec in SPECS]
    results = run_rounds(names, args.repeats, lambda n: [__file__, "--child", n, "--requests", str(args.requests),
                                                         "--threads", str(args.threads), "--work", str(args.work)],
                         ROOT, rate="pairs_per_s")
    base = flops_per_pair()["total"]
    print(f"\n{args.requests * K:,} pairs, {args.threads} threads, {args.repeats} processes per row")
    print("| engine | fields | predicted cost | pairs/s best | median | vs no fields (best) |")
    print("|---|---|---:|---:|---:|---:|")
    for engine in args.engines:
        ref = max(r["pairs_per_s"] for r in results.get(f"none/{engine}", [{"pairs_per_s": float("nan")}]))
        for spec in SPECS:
            rates = [r["pairs_per_s"] for r in results.get(f"{spec}/{engine}", [])]
            if not rates:
                continue
            cost = f"{base / 1e6:.2f} MFLOP at T = 100"
            if spec != "none":
                cost = f"+{added_flops(SPECS[spec]) / base:.1%} FLOPs"
            print(f"| {engine} | {spec} | {cost} | {max(rates):,.0f} | {statistics.median(rates):,.0f} | "
                  f"{max(rates) / ref:.2f}x |")


if __name__ == "__main__":
    main()
