"""One interface for every engine: `open_engine(path, kind) -> Engine`, `Engine.score(inputs) -> pctr`.

`inputs` are the padded arrays of `requests.request_inputs`; the result is pCTR [R, K] (float32).
Backends: `torch` (PyTorch fp32, CPU or CUDA), `onnx` (ONNX Runtime, CPU), `fp16`/`fp32` (NVIDIA GPU:
the fused Triton AUGRU, or a TensorRT plan where TensorRT is installed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from dien_batch.errors import UsageError

CPU_ENGINES = ("torch", "onnx")
GPU_ENGINES = ("fp16", "fp32")


class Engine(Protocol):
    kind: str
    identity: dict  # model_identity(): config hash, vocabulary hash, architecture
    # Optional `pair_steps`: the most candidates x history steps per call (scoring.pair_steps).

    def score(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


def require_cuda(kind: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise UsageError(f"--engine {kind} runs on an NVIDIA GPU and this machine has no CUDA device; "
                         f"on CPU use --engine {' or --engine '.join(CPU_ENGINES)}")


def open_engine(path: str | Path, kind: str, threads: int = 0) -> Engine:
    if kind == "torch":
        from .torch_engine import TorchEngine

        return TorchEngine.from_model_dir(path, threads)
    if kind == "onnx":
        from .onnx_engine import OnnxEngine

        return OnnxEngine(path, threads)
    if kind in GPU_ENGINES:
        require_cuda(kind)
        from .cuda_engine import open_gpu_engine

        return open_gpu_engine(path, kind)
    raise UsageError(f"unknown engine '{kind}'")
