"""A stand-in for TensorRT's compiled core (`libnvinfer` bindings), just enough for TensorRT's own
`tensorrt.plugin` Python sources to run: enums, descriptor structs, a symbolic dimension-expression
builder that folds constants, and a plugin registry. It lets the tests drive the real plugin
package (from the tensorrt-cu13-bindings wheel) through the calls a builder makes, on a machine where
TensorRT cannot be installed. Nothing here computes a kernel; it only carries values.
"""

from __future__ import annotations

import enum
import importlib.util
import re
import sys
import types
from pathlib import Path


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9


class TensorFormat(enum.Enum):
    LINEAR = 0
    HWC = 1


class DimensionOperation(enum.Enum):
    SUM = 0
    PROD = 1
    MAX = 2
    MIN = 3
    SUB = 4
    EQUAL = 5
    LESS = 6
    FLOOR_DIV = 7
    CEIL_DIV = 8


class PluginFieldType(enum.Enum):
    FLOAT16 = 0
    FLOAT32 = 1
    FLOAT64 = 2
    INT8 = 3
    INT16 = 4
    INT32 = 5
    CHAR = 6
    DIMS = 7
    UNKNOWN = 8
    BF16 = 9
    INT64 = 10
    FP8 = 11
    INT4 = 12


class PluginArgType(enum.Enum):
    INT = 0


class PluginArgDataType(enum.Enum):
    INT8 = 0
    INT16 = 1
    INT32 = 2


class QuickPluginCreationRequest(enum.Enum):
    UNKNOWN = 0
    PREFER_JIT = 1
    PREFER_AOT = 2
    STRICT_JIT = 3
    STRICT_AOT = 4


class TensorRTPhase(enum.Enum):
    BUILD = 0
    RUNTIME = 1


class IDimensionExpr:
    """A dimension: a constant, a named runtime value, or an operation on two of them."""

    def __init__(self, value: int | None = None, name: str | None = None):
        self.value, self.name = value, name

    def is_constant(self) -> bool:
        return self.value is not None

    def get_constant_value(self) -> int:
        assert self.value is not None
        return self.value

    def evaluate(self, env: dict[str, int]) -> int:
        return self.value if self.value is not None else env[self.name] if self.name else self._eval(env)

    def __repr__(self):
        return f"Dim({self.value if self.value is not None else self.name})"


_OPS = {
    DimensionOperation.SUM: lambda a, b: a + b, DimensionOperation.PROD: lambda a, b: a * b,
    DimensionOperation.MAX: max, DimensionOperation.MIN: min, DimensionOperation.SUB: lambda a, b: a - b,
    DimensionOperation.EQUAL: lambda a, b: int(a == b), DimensionOperation.LESS: lambda a, b: int(a < b),
    DimensionOperation.FLOOR_DIV: lambda a, b: a // b, DimensionOperation.CEIL_DIV: lambda a, b: -(-a // b),
}


class IExprBuilder:
    def constant(self, value: int) -> IDimensionExpr:
        return IDimensionExpr(value)

    def operation(self, op: DimensionOperation, a: IDimensionExpr, b: IDimensionExpr) -> IDimensionExpr:
        if a.is_constant() and b.is_constant():
            return IDimensionExpr(_OPS[op](a.value, b.value))
        out = IDimensionExpr()
        out._eval = lambda env: _OPS[op](a.evaluate(env), b.evaluate(env))
        return out


class Dims(tuple):
    MAX_DIMS = 8

    def __new__(cls, dims=()):
        return super().__new__(cls, (0,) * dims if isinstance(dims, int) else tuple(dims))


class DimsExprs(list):
    def __init__(self, n: int):
        super().__init__([None] * n)


class PluginTensorDesc:
    def __init__(self, dims=(), type=None, format=TensorFormat.LINEAR, scale=1.0):  # noqa: A002
        self.dims, self.type, self.format, self.scale = Dims(dims), type, format, scale


class DynamicPluginTensorDesc:
    def __init__(self, desc: PluginTensorDesc):
        self.desc, self.min, self.max, self.opt = desc, desc.dims, desc.dims, desc.dims


class PluginField:
    def __init__(self, name, data=None, type=None):  # noqa: A002
        self.name, self.data, self.type = name, data, type


class PluginFieldCollection(list):
    pass


class KernelLaunchParamsStruct:
    """What TensorRT hands `get_launch_params` to fill."""

    grid_x = grid_y = grid_z = block_x = block_y = block_z = shared_mem = None


class SymExprSetter(list):
    nbSymExprs = 0

    def __setitem__(self, index, value):
        while len(self) <= index:
            self.append(None)
        super().__setitem__(index, value)


class Logger:
    WARNING, ERROR, INFO, VERBOSE = range(4)

    def __init__(self, *args):
        pass

    def log(self, severity, message):
        pass


class _Registry:
    def __init__(self):
        self.creators = {}

    def register_creator(self, creator, namespace):
        self.creators[(creator.name, creator.plugin_version, namespace)] = creator
        return True

    def get_creator(self, name, version, namespace):
        return self.creators[(name, version, namespace)]


class _Base:
    def __init__(self, *args, **kwargs):
        pass


def module() -> types.ModuleType:
    """A fresh fake `tensorrt` module (a package, so that `tensorrt.plugin` can be loaded under it)."""
    trt = types.ModuleType("tensorrt")
    trt.__path__ = []
    for obj in (DataType, TensorFormat, DimensionOperation, PluginFieldType, PluginArgType, PluginArgDataType,
                TensorRTPhase, IDimensionExpr, IExprBuilder, Dims, DimsExprs, PluginTensorDesc, DynamicPluginTensorDesc,
                PluginField, PluginFieldCollection, Logger, QuickPluginCreationRequest):
        setattr(trt, obj.__name__, obj)
    for name in ("IPluginV3", "IPluginV3QuickCore", "IPluginV3QuickBuild", "IPluginV3QuickRuntime",
                 "IPluginV3QuickAOTBuild", "IPluginCreatorV3Quick", "ISymExpr", "ITensor"):
        setattr(trt, name, type(name, (_Base,), {}))
    trt.float32, trt.float16, trt.int32, trt.int64, trt.int8, trt.bool = (
        DataType.FLOAT, DataType.HALF, DataType.INT32, DataType.INT64, DataType.INT8, DataType.BOOL)
    registry = _Registry()
    trt.get_plugin_registry = lambda: registry
    trt.nptype = lambda dtype: {DataType.FLOAT: "float32", DataType.HALF: "float16", DataType.INT64: "int64"}[dtype]
    return trt


def plugin_sources() -> Path | None:
    """TensorRT's own `tensorrt.plugin` package, from the tensorrt-cu13-bindings wheel (None if absent)."""
    spec = importlib.util.find_spec("tensorrt_bindings")  # finding it runs nothing (its __init__ needs libnvinfer)
    return None if spec is None else Path(spec.origin).parent / "plugin"


def install() -> types.ModuleType:
    """Put the fake `tensorrt`, with TensorRT's real `tensorrt.plugin` under it, into sys.modules (for a
    subprocess: nothing is undone)."""
    trt = module()
    sys.modules["tensorrt"] = trt
    plugin_dir = plugin_sources()
    plugin_spec = importlib.util.spec_from_file_location("tensorrt.plugin", plugin_dir / "__init__.py",
                                                         submodule_search_locations=[str(plugin_dir)])
    plugin = importlib.util.module_from_spec(plugin_spec)
    sys.modules["tensorrt.plugin"] = plugin
    plugin_spec.loader.exec_module(plugin)
    trt.plugin = plugin
    return trt


def plugin_life_cycle(dtype: DataType, variant: str = "paper", H: int = 36) -> dict:
    """Create `dien::AUGRU` from the registry and run the calls a TensorRT build makes, in order:
    output types, output shapes, format combinations, configure, launch parameters (the AOT
    implementation), kernel. Returns what each produced, evaluated for R = 1000 rows, T = 73 steps."""
    import numpy as np

    trt = install()
    from dien_batch.engines.tensorrt_plugin import register_plugin

    register_plugin()
    creator = trt.get_plugin_registry().get_creator("AUGRU", "1", "dien")
    fields = PluginFieldCollection([PluginField("variant", np.frombuffer(variant.encode(), np.uint8),
                                                PluginFieldType.CHAR)])
    plugin = creator.create_plugin("AUGRU", "dien", fields, TensorRTPhase.BUILD, QuickPluginCreationRequest.STRICT_AOT)
    in_types = [dtype] * 4 + [DataType.INT64]
    out_types = plugin.get_output_data_types(in_types, [3, 2, 1, 2, 1])
    builder, R, T = IExprBuilder(), IDimensionExpr(name="R"), IDimensionExpr(name="T")
    G = IDimensionExpr(3 * H)
    inputs = [[R, T, G], [G, IDimensionExpr(H)], [G], [R, T], [R]]
    out_shapes = plugin.get_output_shapes(inputs, [], builder)
    env = {"R": 1000, "T": 73}
    concrete = [(1000, 73, 3 * H), (3 * H, H), (3 * H,), (1000, 73), (1000,), (1000, H)]
    in_out = [DynamicPluginTensorDesc(PluginTensorDesc(d, t)) for d, t in zip(concrete, in_types + out_types,
                                                                                  strict=True)]
    combos = plugin.get_supported_format_combinations(in_out, 5)
    plugin.configure_plugin(in_out[:5], in_out[5:])
    plugin.set_tactic(0)
    launch, scalars = KernelLaunchParamsStruct(), SymExprSetter()
    plugin.get_launch_params(inputs, in_out, 5, launch, scalars, builder)
    name, ptx = plugin.get_kernel([d.desc for d in in_out[:5]], [d.desc for d in in_out[5:]])
    from dien_batch.engines.triton_augru import entry_params

    head = ptx.decode()[ptx.decode().index(f".entry {name}("):]
    return {
        "output_types": [t.name for t in out_types],
        "output_shape": [e.evaluate(env) for e in out_shapes[0]],
        "combinations": [[c.type.name for c in combos[i:i + 6]] for i in range(0, len(combos), 6)],
        "grid": [launch.grid_x.expr.evaluate(env), launch.grid_y.expr.evaluate(env)],
        "block_x": launch.block_x.expr.evaluate(env), "shared_mem": launch.shared_mem.expr.evaluate(env),
        "scalars": [s.expr.evaluate(env) for s in scalars], "scalar_types": [s.dtype.name for s in scalars],
        "kernel": name, "params": len(entry_params(ptx.decode(), name)),
        "param_types": re.findall(r"\.param\s+\.(\w+)", head[: head.index(")")]),
    }
