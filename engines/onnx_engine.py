"""ONNX Runtime engine (CPU) for models exported by `dien-batch compile --engine onnx`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dien_batch.errors import UsageError

from . import manifest
from .requests import input_names, model_fields


class OnnxEngine:
    kind = "onnx"

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        if Path(path).is_dir():
            raise UsageError(f"--engine onnx takes an engine file; build one with: dien-batch compile --model {path} "
                             "--engine onnx --out model.onnx")
        self.manifest = manifest.read(path, "onnx")
        self.identity = self.manifest["model"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = input_names(model_fields(self.identity))

    def score(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["pctr"], {name: inputs[name] for name in self.inputs})[0]
