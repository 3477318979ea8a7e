"""`dien::AUGRU`: the ONNX function body against the PyTorch reference on fresh random inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from dien_batch.engines import augru_onnx
from onnx import TensorProto, helper

from dien_batch.model.cells import augru_op


def operator_model(variant: str) -> onnx.ModelProto:
    node = helper.make_node("AUGRU", list(augru_onnx.INPUTS), ["h"], domain="dien", variant=variant,
                            plugin_namespace="dien", plugin_version="1", aot=1)
    inputs = [helper.make_tensor_value_info("gx", TensorProto.FLOAT, ["B", "T", "G"]),
              helper.make_tensor_value_info("w_hh", TensorProto.FLOAT, ["G", "H"]),
              helper.make_tensor_value_info("b_hh", TensorProto.FLOAT, ["G"]),
              helper.make_tensor_value_info("att", TensorProto.FLOAT, ["B", "T"]),
              helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"])]
    graph = helper.make_graph([node], "op", inputs, [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["B", "H"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    augru_onnx.attach(model, variant)
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_onnx_function_matches_the_reference(variant):
    session = ort.InferenceSession(operator_model(variant).SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng()
    for B, T, H in ((5, 7, 18), (33, 20, 36), (1, 1, 3)):
        feed = {"gx": rng.normal(size=(B, T, 3 * H)).astype(np.float32),
                "w_hh": (rng.normal(size=(3 * H, H)) * 0.3).astype(np.float32),
                "b_hh": rng.normal(size=3 * H).astype(np.float32),
                "att": rng.uniform(size=(B, T)).astype(np.float32),
                "lengths": rng.integers(0, T + 1, B).astype(np.int64)}
        got = session.run(None, feed)[0]
        want = augru_op(*(torch.from_numpy(feed[k]) for k in augru_onnx.INPUTS), variant=variant).numpy()
        assert np.abs(got - want).max() <= 1e-5


def test_node_attributes_name_the_plugin():
    node = operator_model("paper").graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert (node.domain, node.op_type) == ("dien", "AUGRU")
    assert attrs["plugin_namespace"] == b"dien" and attrs["plugin_version"] == b"1" and attrs["aot"] == 1
