"""The fused CPU kernels (`recurrence.cpp`: the GRU family's recurrence; `attention.cpp`: the attention MLP's
scores; `activations.cpp`: Dice at inference; shared pieces in `kernels.h`), compiled on first use and cached.

Built with PyTorch's C++ extension tooling (the C++ compiler and ninja that `make setup` installs) into
`TORCH_EXTENSIONS_DIR` (default ~/.cache/torch_extensions), once per machine and PyTorch version;
`python -m dien_batch.model.native` builds it ahead of time. Where it cannot be built the step loops
of `cells` run instead, after one message that says why. `DIEN_BATCH_FUSED=0` turns it off.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
SOURCES = [HERE / "recurrence.cpp", HERE / "attention.cpp", HERE / "activations.cpp"]
HEADER = HERE / "kernels.h"
_state: dict = {}


def extension():
    """The compiled module, or None (with a one-time message on stderr) where it cannot be built."""
    if "module" in _state:
        return _state["module"]
    module, why = None, None
    if os.environ.get("DIEN_BATCH_FUSED", "1") == "0":
        why = "DIEN_BATCH_FUSED=0"
    else:
        try:
            import warnings

            from torch.utils import cpp_extension

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # -fopenmp: ATen's parallel_for is an inline OpenMP loop; without it the op runs on one thread.
                # -fno-trapping-math: without AVX-512's masked lanes GCC keeps the exp/sigmoid/tanh loops
                # scalar under trapping math ("control flow in loop"); with it they vectorise on AVX2 too
                # (sigmoid 7x faster, the attention kernel 2.3x). No FP exception is ever enabled here.
                # -funroll-loops: the register-tiled products' short loops unrolled (recurrence -3%, attention
                # -1%, kernels alone on the bench's shapes, min of 13 interleaved runs).
                # The header's hash in the flags: PyTorch rebuilds when sources or flags change, not headers.
                header = hashlib.sha256(HEADER.read_bytes()).hexdigest()[:16]
                module = cpp_extension.load(name="dien_batch_recurrence", sources=[str(s) for s in SOURCES],
                                            extra_cflags=["-O3", "-march=native", "-mprefer-vector-width=512",
                                                          "-fno-trapping-math", "-funroll-loops", "-fopenmp",
                                                          f"-DDIEN_KERNELS_H={header}"],
                                            extra_ldflags=["-fopenmp"], verbose=False)
        except Exception as exc:  # noqa: BLE001 - no compiler, no ninja, a failed build: fall back, loudly once
            why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    if module is None:
        print(f"dien-batch: the fused CPU kernels are not available ({why}); using the slower PyTorch code",
              file=sys.stderr)
    _state["module"] = module
    return module


def inference_kernel(name: str, x, *parameters):
    """The fused kernel `name` where an inference-only kernel applies to input x: fp32 on the CPU, no gradient
    wanted for the parameters, not being traced for export, the extension built; else None (the caller's
    PyTorch code, the same arithmetic)."""
    import torch

    if (x.device.type != "cpu" or x.dtype != torch.float32 or torch.jit.is_tracing()
            or (torch.is_grad_enabled() and any(p.requires_grad for p in parameters))):
        return None
    return getattr(extension(), name, None)


if __name__ == "__main__":  # `python -m dien_batch.model.native`: build (or report) ahead of time
    print("fused CPU kernels:", "ready" if extension() is not None else "unavailable")
