"""`--engine fp16` / `fp32` on an NVIDIA GPU without TensorRT: PyTorch CUDA plus the fused Triton AUGRU.

The user side (embeddings, cuDNN GRU, input projection) runs once per request; per candidate, the
Triton kernel runs the whole AUGRU with the bilinear attention softmax fused in (for `--attention
mlp` models the attention weights are computed by PyTorch and passed in), then the final MLP. fp16
keeps weights and activations in half precision with fp32 accumulation inside the kernel.
A `.plan` file (built by `dien-batch compile --engine fp16`) runs through TensorRT instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dien_batch.errors import UsageError
from dien_batch.model import store
from dien_batch.model.spine import CTRModel

from .manifest import model_identity


class CudaEngine:
    """Scores with the model on `device` in `dtype`, the AUGRU through the Triton kernel."""

    def __init__(self, model: CTRModel, identity: dict, kind: str, device: str = "cuda"):
        self.kind, self.identity, self.device = kind, identity, device
        self.dtype = torch.float16 if kind == "fp16" else torch.float32
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.fused = model.cell == "augru"

    def interest(self, side, target: torch.Tensor) -> torch.Tensor:
        from .triton_augru import augru

        m, (R, K) = self.model, target.shape[:2]
        ev = m.evolve
        if m.config.attention == "bilinear":
            query = m.attention.w(target).reshape(R * K, -1)
            h = augru(side.gx, ev.weight_hh, ev.bias_hh, side.lengths, K=K, variant=m.config.augru_variant,
                      states=side.states, q=query)
        else:
            att = m.attention_weights(side, target).reshape(R * K, -1)
            h = augru(side.gx, ev.weight_hh, ev.bias_hh, side.lengths, att, K=K, variant=m.config.augru_variant)
        return h.to(self.dtype).view(R, K, -1)

    def score(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        t = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items() if k != "cand_count"}
        m = self.model
        with torch.inference_mode():
            side = m.user_side(t["user"], t["hist_item"], t["hist_cat"], t["hist_len"], t)
            if not self.fused:
                logits = m.candidates(side, t["cand_item"], t["cand_cat"], t)
            else:
                target = m.item_vectors(t["cand_item"], t["cand_cat"], t, "cand_")
                logits = m.head_logits(side, t["cand_item"], t["cand_cat"], target, self.interest(side, target))
            return torch.sigmoid(logits.float()).cpu().numpy()


def open_gpu_engine(path: str | Path, kind: str, device: str = "cuda"):
    path = Path(path)
    if path.is_file() and path.suffix == ".plan":
        from .tensorrt_engine import TensorRTEngine

        return TensorRTEngine(path)
    if not path.is_dir():
        raise UsageError(f"--engine {kind} takes a model directory or a TensorRT .plan file, got {path}")
    model, config = store.load(path)
    return CudaEngine(model, model_identity(config), kind, device)
