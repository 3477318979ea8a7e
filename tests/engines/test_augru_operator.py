"""`dien::AUGRU`: the ONNX function body against the PyTorch reference on fresh random inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from dien_batch.engines import augru_onnx
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
    rng = np.random.default_rng(["paper", "official"].index(variant))
    for B, T, H in ((5, 7, 18), (33, 20, 36), (1, 1, 3)):
        feed = {"gx": rng.normal(size=(B, T, 3 * H)).astype(np.float32),
                "w_hh": (rng.normal(size=(3 * H, H)) * 0.3).astype(np.float32),
                "b_hh": rng.normal(size=3 * H).astype(np.float32),
                "att": rng.uniform(size=(B, T)).astype(np.float32),
                "lengths": rng.integers(0, T + 1, B).astype(np.int64)}
        got = session.run(None, feed)[0]
        want = augru_op(*(torch.from_numpy(feed[k]) for k in augru_onnx.INPUTS), variant=variant).numpy()
        assert np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_the_exporters_node_names_the_plugin(variant):
    """The node the ONNX export of a trained DIEN writes (not a hand-built one): one `dien::AUGRU` with the
    attributes a TensorRT parser binds to the plugin, and the function body for its variant."""
    from dien_batch.engines.onnx_export import export
    from dien_batch.model.spine import ModelConfig
    from dien_batch.model.zoo import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("dien", 10, 20, 5, embedding_dim=4, hidden=6, augru_variant=variant)).eval()
    exported = export(model)
    nodes = augru_onnx.augru_nodes(exported)
    assert len(nodes) == 1
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs == {"variant": variant.encode(), "plugin_namespace": b"dien", "plugin_version": b"1", "aot": 1}
    assert [f.name for f in exported.functions] == ["AUGRU"] and exported.functions[0].domain == "dien"
    assert [i for i in nodes[0].input] and len(nodes[0].input) == len(augru_onnx.INPUTS)
