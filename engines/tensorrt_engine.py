"""TensorRT: the `dien::AUGRU` plugin (ahead-of-time, from the Triton kernel), plan building and running.

Every TensorRT import lives in this module and happens inside a function. Written against TensorRT's
documented Python plugin API (`tensorrt.plugin`: `register`, `autotune`, `aot_impl`, TensorRT >= 10.9)
and ONNX parser; TensorRT cannot be installed on the machines this project is built on, so this module
is verified only up to what needs no TensorRT (the PTX it embeds, the ONNX node it binds; see the README).

The ONNX export's `dien::AUGRU` node (op_type AUGRU, plugin_namespace "dien", plugin_version "1",
aot=1) is bound by the parser to the plugin registered here; the plan embeds the kernel's PTX and runs
without Python.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dien_batch.errors import UsageError

from . import manifest
from .requests import INPUT_NAMES

PLUGIN_ID = "dien::AUGRU"
BLOCK_B = 64
# Optimization profile: requests per batch, history length, candidates per request (min, opt, max).
PROFILE = {"R": (1, 512, 4096), "T": (1, 100, 200), "K": (1, 50, 256)}
_registered = False


def _tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise UsageError("TensorRT is not installed: install it from NVIDIA's package index (tensorrt >= 10.9), "
                         "or score on the GPU without a plan: dien-batch score --engine fp16 --model DIR") from exc
    return trt


def register_plugin() -> None:
    """Register `dien::AUGRU` with its shape function, type combinations and AOT implementation."""
    global _registered
    if _registered:
        return
    trt = _tensorrt()
    import tensorrt.plugin as trtp

    from .triton_augru import compile_ptx, drop_scratch_params

    @trtp.register(PLUGIN_ID)
    def describe(gx: trtp.TensorDesc, w_hh: trtp.TensorDesc, b_hh: trtp.TensorDesc, att: trtp.TensorDesc,
                 lengths: trtp.TensorDesc, variant: str) -> trtp.TensorDesc:
        out = gx.like()
        out.dtype = trt.float32
        shape = trtp.ShapeExprs(2)
        shape[0], shape[1] = gx.shape_expr[0], w_hh.shape_expr[1]
        out.shape_expr = shape
        return out

    @trtp.autotune(PLUGIN_ID)
    def combinations(gx, w_hh, b_hh, att, lengths, outputs) -> list:
        return [trtp.AutoTuneCombination("FP16, FP16, FP16, FP16, INT64, FP32"),
                trtp.AutoTuneCombination("FP32, FP32, FP32, FP32, INT64, FP32")]

    @trtp.aot_impl(PLUGIN_ID)
    def ahead_of_time(gx: trtp.TensorDesc, w_hh: trtp.TensorDesc, b_hh: trtp.TensorDesc, att: trtp.TensorDesc,
                      lengths: trtp.TensorDesc, variant: str, outputs: tuple, tactic: int):
        hidden = w_hh.shape_expr[1]
        if not hidden.is_constant:
            raise ValueError("dien::AUGRU needs a constant hidden size")
        compiled = compile_ptx("fp16" if gx.dtype == trt.float16 else "fp32", variant, int(hidden.constant_value),
                               BLOCK_B)
        rows, steps = gx.shape_expr[0], gx.shape_expr[1]
        launch = trtp.KernelLaunchParams()
        launch.grid_x = trtp.cdiv(rows, BLOCK_B)
        launch.block_x = compiled["metadata"].num_warps * 32
        launch.shared_mem = compiled["metadata"].shared
        scalars = trtp.SymIntExprs(2)
        scalars[0], scalars[1] = trtp.SymInt32(rows), trtp.SymInt32(steps)
        return compiled["name"], drop_scratch_params(compiled), launch, scalars

    _registered = True


class TensorRTEngine:
    kind = "tensorrt"

    def __init__(self, path: str | Path):
        trt = _tensorrt()
        register_plugin()
        self.manifest = manifest.read(path, "tensorrt")
        self.identity = self.manifest["model"]
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise UsageError(f"TensorRT could not load {path} (built for another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()

    def score(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        tensors = {name: torch.from_numpy(inputs[name]).cuda() for name in INPUT_NAMES}
        for name, tensor in tensors.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape("pctr")), device="cuda", dtype=torch.float32)
        self.context.set_tensor_address("pctr", out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return out.cpu().numpy()


def build_plan(model, config: dict, kind: str, out: Path, table, reference) -> dict:
    """Parse the ONNX export, bind `dien::AUGRU` to the plugin, build a strongly typed plan, gate it."""
    import copy

    import torch

    from .compile import accuracy
    from .onnx_export import export

    trt = _tensorrt()
    register_plugin()
    graph_model = copy.deepcopy(model)
    if kind == "fp16":
        graph_model = graph_model.to(torch.float16)
    onnx_bytes = export(graph_model).SerializeToString()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UsageError(f"TensorRT could not parse the ONNX export: {errors}")
    builder_config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    dims = {"user": ("R",), "hist_item": ("R", "T"), "hist_cat": ("R", "T"), "hist_len": ("R",),
            "cand_item": ("R", "K"), "cand_cat": ("R", "K")}
    for name, axes in dims.items():
        profile.set_shape(name, *[tuple(PROFILE[a][i] for a in axes) for i in range(3)])
    builder_config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, builder_config)
    if plan is None:
        raise UsageError("TensorRT failed to build the engine (see its log above)")
    out.write_bytes(bytes(plan))
    manifest.write(out, kind="tensorrt", precision=kind, model_config=config, accuracy={}, extra={})
    return accuracy(reference, TensorRTEngine(out), table)
