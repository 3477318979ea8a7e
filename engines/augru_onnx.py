"""The `dien::AUGRU` operator in ONNX: a custom-domain node carrying a model-local function.

Contract (the same for every implementation): inputs gx [B, T, 3H] (the input projection of the
interest states, gate order r, z, n), w_hh [3H, H], b_hh [3H], att [B, T] (attention scores),
lengths [B] (int64); output h [B, H], the state after each row's last step. Gates follow
`linear_before_reset = 1`; attribute `variant` is `paper` or `official` (see `dien_batch.model.cells`).

The function body is standard ONNX (a `Loop` over T with masking), so ONNX Runtime runs the node on
any machine; a TensorRT parser instead binds the node to the plugin registered under the same name
(op_type `AUGRU`, namespace `dien`, version "1"; `aot=1` asks for the ahead-of-time implementation).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

DOMAIN, OP, PLUGIN_VERSION = "dien", "AUGRU", "1"
INPUTS = ("gx", "w_hh", "b_hh", "att", "lengths")
NODE_ATTRIBUTES = ("variant", "plugin_namespace", "plugin_version", "aot")


def _node(op, inputs, outputs, **attrs):
    return helper.make_node(op, list(inputs), list(outputs), **attrs)


def _step_graph(variant: str, dtype: int) -> onnx.GraphProto:
    """Loop body: (iteration, cond, h) -> (cond, h'), reading gx_t / att_t / w_hh / b_hh / lengths."""
    n = _node
    nodes = [
        n("Gather", ["gx_t", "i"], ["x"], axis=0),
        n("Gather", ["att_t", "i"], ["a0"], axis=0),
        n("Unsqueeze", ["a0", "axis1"], ["a"]),
        n("Gemm", ["h", "w_hh", "b_hh"], ["gh"], transB=1),
        n("Split", ["x"], ["x_r", "x_z", "x_n"], axis=1, num_outputs=3),
        n("Split", ["gh"], ["h_r", "h_z", "h_n"], axis=1, num_outputs=3),
        n("Add", ["x_r", "h_r"], ["pre_r"]), n("Sigmoid", ["pre_r"], ["r"]),
        n("Add", ["x_z", "h_z"], ["pre_z"]), n("Sigmoid", ["pre_z"], ["z"]),
        n("Mul", ["r", "h_n"], ["r_hn"]), n("Add", ["x_n", "r_hn"], ["pre_n"]), n("Tanh", ["pre_n"], ["cand"]),
    ]
    if variant == "paper":  # w = a * (1 - z)
        nodes += [n("Sub", ["one", "z"], ["u"]), n("Mul", ["a", "u"], ["w"])]
    else:  # w = 1 - (1 - a) * z
        nodes += [n("Sub", ["one", "a"], ["not_a"]), n("Mul", ["not_a", "z"], ["keep"]),
                  n("Sub", ["one", "keep"], ["w"])]
    nodes += [
        n("Sub", ["cand", "h"], ["diff"]), n("Mul", ["w", "diff"], ["step"]), n("Add", ["h", "step"], ["moved"]),
        n("Less", ["i", "lengths"], ["inside0"]), n("Unsqueeze", ["inside0", "axis1"], ["inside"]),
        n("Where", ["inside", "moved", "h"], ["h_out"]),
        n("Identity", ["cond"], ["cond_out"]),
    ]
    return helper.make_graph(
        nodes, "augru_step",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h", dtype, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", dtype, None)])


def augru_function(variant: str, opset: int, dtype: int = TensorProto.FLOAT) -> onnx.FunctionProto:
    """The FunctionProto `dien::AUGRU` for one variant, in standard ops of the given opset."""
    if variant not in ("paper", "official"):
        raise ValueError(f"unknown AUGRU variant '{variant}'")
    n = _node
    one = helper.make_tensor("one_value", dtype, [], [1.0])
    nodes = [
        n("Constant", [], ["one"], value=one),
        n("Constant", [], ["axis1"], value=helper.make_tensor("axis1_value", TensorProto.INT64, [1], [1])),
        n("Constant", [], ["idx0"], value=helper.make_tensor("idx0_value", TensorProto.INT64, [1], [0])),
        n("Constant", [], ["idx1"], value=helper.make_tensor("idx1_value", TensorProto.INT64, [1], [1])),
        n("Shape", ["gx"], ["gx_shape"]),
        n("Gather", ["gx_shape", "idx0"], ["batch"], axis=0),
        n("Gather", ["gx_shape", "idx1"], ["steps1"], axis=0),
        n("Squeeze", ["steps1"], ["steps"]),
        n("Shape", ["w_hh"], ["w_shape"]),
        n("Gather", ["w_shape", "idx1"], ["hidden"], axis=0),
        n("Concat", ["batch", "hidden"], ["h_shape"], axis=0),
        n("ConstantOfShape", ["h_shape"], ["h0"], value=helper.make_tensor("zero", dtype, [1], [0.0])),
        n("Transpose", ["gx"], ["gx_t"], perm=[1, 0, 2]),
        n("Transpose", ["att"], ["att_t"], perm=[1, 0]),
        n("Constant", [], ["true"], value=helper.make_tensor("true_value", TensorProto.BOOL, [], [True])),
        n("Loop", ["steps", "true", "h0"], ["h"], body=_step_graph(variant, dtype)),
    ]
    return helper.make_function(DOMAIN, OP, list(INPUTS), ["h"], nodes,
                                opset_imports=[helper.make_opsetid("", opset)],
                                attributes=list(NODE_ATTRIBUTES))


def attach(model: onnx.ModelProto, variant: str, dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """Give an exported model the function body of its `dien::AUGRU` nodes and the domain import."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    del model.functions[:]
    model.functions.append(augru_function(variant, opset, dtype))
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return model


def augru_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.domain == DOMAIN and node.op_type == OP]
