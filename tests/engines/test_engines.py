"""Engines against the PyTorch fp32 reference; manifests; the GPU engines' message on a CPU machine."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from dien_batch.cli import cli
from dien_batch.engines import manifest
from dien_batch.engines.base import open_engine
from dien_batch.engines.onnx_export import export
from dien_batch.engines.requests import REQUEST_COLUMNS, request_inputs
from dien_batch.engines.scoring import score_table
from dien_batch.errors import UsageError
from dien_batch.model import store
from dien_batch.model.spine import CTRModel, ModelConfig

from ..conftest import swapped_vocabulary
from ..model.test_model import make_model, random_requests


@pytest.mark.parametrize("name, kw", [("dien", {}), ("dien", {"attention": "mlp", "augru_variant": "official"}),
                                      ("gru_augru", {}), ("din", {}), ("base", {}), ("pnn", {}), ("wide_deep", {}),
                                      ("gru_att", {})])
def test_onnx_export_matches_torch(name, kw):
    import onnxruntime as ort

    model = make_model(name, **kw)
    om = export(model)
    ops = {(n.domain, n.op_type) for n in om.graph.node}
    if name in ("dien", "gru_augru"):
        assert ("dien", "AUGRU") in ops
        gru = next(n for n in om.graph.node if n.op_type == "GRU")
        assert {a.name: onnx.helper.get_attribute_value(a) for a in gru.attribute}["linear_before_reset"] == 1
    session = ort.InferenceSession(om.SerializeToString(), providers=["CPUExecutionProvider"])
    for seed, (R, T, K) in enumerate(((6, 9, 4), (13, 3, 1), (2, 17, 7))):
        r = random_requests(R=R, T=T, K=K, seed=seed)
        got = session.run(None, {k: v.numpy() for k, v in r.items()})[0]
        with torch.inference_mode():
            side = model.user_side(r["user"], r["hist_item"], r["hist_cat"], r["hist_len"])
            want = torch.sigmoid(model.candidates(side, r["cand_item"], r["cand_cat"])).numpy()
        assert np.abs(got - want).max() <= 1e-5


def test_compile_score_and_refusals(trained_dien, tiny_features, tmp_path):
    engine_file = tmp_path / "dien.onnx"
    result = CliRunner().invoke(cli, ["compile", "--model", str(trained_dien), "--out", str(engine_file)])
    assert result.exit_code == 0, result.output
    meta = json.loads(manifest.manifest_path(engine_file).read_text())
    assert meta["accuracy"]["max_abs_error"] <= 1e-5 and meta["engine"] == "onnx"
    table = pq.read_table(tiny_features / "requests", columns=REQUEST_COLUMNS)
    torch_scores = score_table(open_engine(trained_dien, "torch"), table, 16)
    onnx_scores = score_table(open_engine(engine_file, "onnx"), table, 7)
    assert torch_scores.drop(["pctr"]).equals(onnx_scores.drop(["pctr"]))
    assert np.abs(torch_scores["pctr"].to_numpy() - onnx_scores["pctr"].to_numpy()).max() <= 1e-5
    # A tampered engine file is refused; so is a vocabulary the model was not trained with.
    engine_file.write_bytes(engine_file.read_bytes() + b"\0")
    with pytest.raises(UsageError, match="checksum"):
        open_engine(engine_file, "onnx")
    other = swapped_vocabulary(tiny_features / "vocab", tmp_path / "vocab")
    result = CliRunner().invoke(cli, ["score", "--model", str(trained_dien), "--requests",
                                      str(tiny_features / "requests"), "--vocab", str(other), "--out",
                                      str(tmp_path / "s")])
    assert result.exit_code == 2 and "another vocabulary" in result.output


def test_scores_keep_request_order_with_ragged_candidates(trained_dien, tiny_features):
    table = pq.read_table(tiny_features / "requests", columns=REQUEST_COLUMNS).slice(0, 20)
    # Cut every second request to 2 candidates.
    import pyarrow as pa

    rows = table.to_pylist()
    for i, row in enumerate(rows):
        if i % 2:
            for key in ("cand_item_id", "cand_category_id", "cand_item_idx", "cand_category_idx", "cand_label"):
                row[key] = row[key][:2]
    ragged = pa.Table.from_pylist(rows, schema=table.schema)
    engine = open_engine(trained_dien, "torch")
    scores = score_table(engine, ragged, 3).to_pylist()
    assert [s["request_id"] for s in scores] == [r["request_id"] for r in rows for _ in r["cand_item_idx"]]
    # Each request alone gives the same scores.
    offset = 0
    for i in range(len(rows)):
        alone = score_table(engine, ragged.slice(i, 1), 1).column("pctr").to_numpy()
        together = np.array([s["pctr"] for s in scores[offset:offset + len(alone)]])
        assert np.abs(alone - together).max() <= 1e-6
        offset += len(alone)
    inputs = request_inputs(ragged)
    assert inputs["cand_count"].tolist() == [len(r["cand_item_idx"]) for r in rows]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
@pytest.mark.parametrize("engine", ["fp16", "fp32"])
def test_gpu_engines_say_which_cpu_engines_to_use(trained_dien, tiny_features, tmp_path, engine):
    result = CliRunner().invoke(cli, ["score", "--model", str(trained_dien), "--engine", engine, "--requests",
                                      str(tiny_features / "requests"), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "no CUDA device" in result.output and "--engine torch" in result.output and "--engine onnx" in result.output


def test_model_files_load_without_pickle(trained_dien):
    import struct

    raw = (trained_dien / "model.safetensors").read_bytes()  # u64 header size, JSON header, raw tensor bytes
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert 8 + size + max(v["data_offsets"][1] for v in tensors.values()) == len(raw)  # nothing else in the file
    assert json.loads((trained_dien / "config.json").read_text())["vocab_hash"]
    model, _ = store.load(trained_dien)
    assert set(tensors) == set(model.state_dict())
    assert isinstance(model, CTRModel) and isinstance(ModelConfig.from_dict(
        json.loads((trained_dien / "config.json").read_text())["architecture"]), ModelConfig)
