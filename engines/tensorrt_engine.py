"""TensorRT: the `dien::AUGRU` plugin (ahead-of-time, from the Triton kernel), plan building and running.

Every TensorRT import lives in this module and happens inside a function. Written against TensorRT's
documented Python plugin API (`tensorrt.plugin`: `register`, `autotune`, `aot_impl`, TensorRT >= 10.9)
and ONNX parser; TensorRT cannot be installed on the machines this project is built on, so this module
is verified only up to what needs no TensorRT (the PTX it embeds, the ONNX node it binds; see the README).

The ONNX export's `dien::AUGRU` node (op_type AUGRU, plugin_namespace "dien", plugin_version "1",
aot=1) is bound by the parser to the plugin of `tensorrt_plugin`; the plan embeds the kernel's PTX and
runs without Python.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dien_batch.errors import UsageError

from . import manifest
from .requests import input_names, model_fields
from .tensorrt_plugin import register_plugin
from .tensorrt_plugin import tensorrt as _tensorrt

# Optimization profile: requests per batch, history length, candidates per request (min, opt, max).
PROFILE = {"R": (1, 512, 4096), "T": (1, 100, 200), "K": (1, 50, 256)}


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
        self.inputs = input_names(model_fields(self.identity))

    def score(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        tensors = {name: torch.from_numpy(inputs[name]).cuda() for name in self.inputs}
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
    from .onnx_export import axes, export

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
    for name in input_names(model_fields(config)):
        profile.set_shape(name, *[tuple(PROFILE[a][i] for a in axes(name)) for i in range(3)])
    builder_config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, builder_config)
    if plan is None:
        raise UsageError("TensorRT failed to build the engine (see its log above)")
    out.write_bytes(bytes(plan))
    manifest.write(out, kind="tensorrt", precision=kind, model_config=config, accuracy={}, extra={})
    return accuracy(reference, TensorRTEngine(out), table)
