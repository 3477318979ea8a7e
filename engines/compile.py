"""`dien-batch compile`: a trained model to an engine file, accepted only if it matches the reference.

The accuracy gate scores a sample of real requests with the new engine and with the PyTorch fp32
model and rejects the engine when the max abs pCTR error exceeds 1e-3 or the AUC (where the requests
carry labels) differs by more than 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dien_batch import ui
from dien_batch.errors import QualityGateError, UsageError
from dien_batch.evaluation.metrics import auc
from dien_batch.io import atomic_write_bytes
from dien_batch.model import store

from . import manifest
from .base import GPU_ENGINES, require_cuda
from .reading import RowRanges
from .requests import model_fields, request_columns, request_inputs
from .torch_engine import TorchEngine

MAX_ABS_ERROR, MAX_AUC_DIFF = 1e-3, 1e-4


def sample_requests(model_config: dict, requests: str | None, n: int = 2000):
    """Real requests for the accuracy gate: --requests, else the training features' requests."""
    path = Path(requests) if requests else Path(model_config.get("features", "")) / "requests"
    if not path.exists():
        raise UsageError("the accuracy gate needs sample requests: pass --requests PATH")
    data = RowRanges(path)
    columns = request_columns(model_fields(model_config), data.columns)
    return data.read(0, min(n, data.total), columns)


def accuracy(reference: TorchEngine, engine, table) -> dict:
    inputs = request_inputs(table, model_fields(reference.identity))
    counts = inputs["cand_count"]
    keep = np.arange(inputs["cand_item"].shape[1]) < counts[:, None]
    ref, got = reference.score(inputs)[keep], engine.score(inputs)[keep]
    result = {"requests": int(len(counts)), "pairs": int(keep.sum()),
              "max_abs_error": float(np.abs(ref - got).max()) if len(ref) else 0.0}
    labels = table.column("cand_label")
    if labels.null_count == 0:
        y = np.concatenate(labels.to_numpy(zero_copy_only=False))
        if 0 < y.sum() < len(y):
            result.update(auc_reference=auc(y, ref), auc_engine=auc(y, got))
            result["auc_diff"] = abs(result["auc_reference"] - result["auc_engine"])
    return result


def gate(result: dict, kind: str) -> None:
    problems = []
    if result["max_abs_error"] > MAX_ABS_ERROR:
        problems.append(f"max abs pCTR error {result['max_abs_error']:.2e} > {MAX_ABS_ERROR:g}")
    if result.get("auc_diff", 0.0) > MAX_AUC_DIFF:
        problems.append(f"AUC differs by {result['auc_diff']:.2e} > {MAX_AUC_DIFF:g}")
    if problems:
        raise QualityGateError(f"the {kind} engine does not match the fp32 reference: {'; '.join(problems)}")


def compile_engine(model_dir: str, kind: str, out: str, requests: str | None = None, threads: int = 0) -> dict:
    model, config = store.load(model_dir)
    reference = TorchEngine(model, manifest.model_identity(config), threads)
    table = sample_requests(config, requests)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"source_model": str(Path(model_dir).absolute())}
    if kind == "onnx":
        from .onnx_engine import OnnxEngine
        from .onnx_export import OPSET, export

        ui.info(f"exporting {config['architecture']['model']} to ONNX (opset {OPSET})")
        atomic_write_bytes(out_path, export(model).SerializeToString())
        extra["opset"] = OPSET
        manifest.write(out_path, kind="onnx", precision="fp32", model_config=config, accuracy={}, extra=extra)
        result = accuracy(reference, OnnxEngine(out_path, threads), table)
        engine_kind, precision = "onnx", "fp32"
    elif kind in GPU_ENGINES:
        require_cuda(kind)
        from .tensorrt_engine import build_plan

        result = build_plan(model, config, kind, out_path, table, reference)
        engine_kind, precision = "tensorrt", kind
    else:
        raise UsageError(f"nothing to compile for --engine {kind}")
    try:
        gate(result, kind)
    except QualityGateError:
        out_path.unlink(missing_ok=True)
        manifest.manifest_path(out_path).unlink(missing_ok=True)
        raise
    return manifest.write(out_path, kind=engine_kind, precision=precision, model_config=config, accuracy=result,
                          extra=extra)
