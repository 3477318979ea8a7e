"""The `dien::AUGRU` TensorRT plugin: shape/type description, type combinations and the ahead-of-time
implementation (the Triton kernel's PTX), written against TensorRT's `tensorrt.plugin` API (>= 10.9).

This module deliberately has no `from __future__ import annotations`: `tensorrt.plugin` reads the
decorated functions' annotations with `inspect.signature` and needs them as real classes, not strings.
Checked in the tests against TensorRT 11's own `tensorrt.plugin` sources (tensorrt-cu13-bindings),
driven through the plugin life cycle a builder runs; TensorRT itself cannot run on those machines.
"""


PLUGIN_ID = "dien::AUGRU"
BLOCK_B = 64
_registered = False


def tensorrt():
    """The `tensorrt` module, or a clear usage error naming what to install instead."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        from dien_batch.errors import UsageError

        raise UsageError("TensorRT is not installed: install it from NVIDIA's package index (tensorrt >= 10.9), "
                         "or score on the GPU without a plan: dien-batch score --engine fp16 --model DIR") from exc
    return trt


def register_plugin() -> None:
    """Register `dien::AUGRU` with `tensorrt.plugin` (once per process)."""
    global _registered
    if _registered:
        return
    trt = tensorrt()
    import tensorrt.plugin as trtp

    from .triton_augru import compile_ptx, drop_scratch_params

    @trtp.register(PLUGIN_ID)
    def describe(gx: trtp.TensorDesc, w_hh: trtp.TensorDesc, b_hh: trtp.TensorDesc, att: trtp.TensorDesc,
                 lengths: trtp.TensorDesc, variant: str) -> trtp.TensorDesc:
        """h [B, H] in gx's type: the fp16 export types the node's output fp16, fp32 exports fp32."""
        shape = trtp.ShapeExprs(2)
        shape[0], shape[1] = gx.shape_expr[0], w_hh.shape_expr[1]
        return trtp.from_shape_expr(shape, gx.dtype)

    @trtp.autotune(PLUGIN_ID)
    def combinations(gx: trtp.TensorDesc, w_hh: trtp.TensorDesc, b_hh: trtp.TensorDesc, att: trtp.TensorDesc,
                     lengths: trtp.TensorDesc, outputs: tuple[trtp.TensorDesc]) -> list[trtp.AutoTuneCombination]:
        # gx, w_hh, b_hh, att and h share one float type; lengths are int64, as the ONNX node has them.
        return [trtp.AutoTuneCombination("FP16, FP16, FP16, FP16, INT64, FP16"),
                trtp.AutoTuneCombination("FP32, FP32, FP32, FP32, INT64, FP32")]

    @trtp.aot_impl(PLUGIN_ID)
    def ahead_of_time(gx: trtp.TensorDesc, w_hh: trtp.TensorDesc, b_hh: trtp.TensorDesc, att: trtp.TensorDesc,
                      lengths: trtp.TensorDesc, variant: str, outputs: tuple[trtp.TensorDesc], tactic: int,
                      ) -> tuple[str, str, trtp.KernelLaunchParams, trtp.SymIntExprs]:
        hidden = w_hh.shape_expr[1]
        if not hidden.is_constant:
            raise ValueError("dien::AUGRU needs a build-time constant hidden size")
        dtype = "fp16" if gx.dtype == trt.float16 else "fp32"
        compiled = compile_ptx(dtype, variant, int(hidden.constant_value()), BLOCK_B, out_dtype=dtype)
        rows, steps = gx.shape_expr[0], gx.shape_expr[1]
        launch = trtp.KernelLaunchParams()
        launch.grid_x = trtp.cdiv(rows, BLOCK_B)
        launch.block_x = compiled["metadata"].num_warps * 32
        launch.shared_mem = compiled["metadata"].shared
        scalars = trtp.SymIntExprs(2)
        scalars[0], scalars[1] = trtp.SymInt32(rows), trtp.SymInt32(steps)
        return compiled["name"], drop_scratch_params(compiled), launch, scalars

    _registered = True
