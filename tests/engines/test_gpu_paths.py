"""The GPU engines' pieces that a machine without a GPU can check: the fused Triton kernel under
Triton's CPU interpreter, the CUDA engine's arithmetic on CPU, the sm_90 PTX the TensorRT plugin
embeds, and the lazy TensorRT import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dien_batch.model.cells import recurrence

triton = pytest.importorskip("triton", reason="the gpu extra (triton) is not installed")


@pytest.fixture(scope="module")
def kernel():
    """engines.triton_augru; tests/conftest.py runs Triton in its CPU interpreter on machines without CUDA."""
    import dien_batch.engines.triton_augru as module

    return module


def inputs(R, T, H, K, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, T + 1, (R,), generator=g)
    lengths[0] = T
    return (torch.randn(R, T, 3 * H, generator=g), 0.4 * torch.randn(3 * H, H, generator=g),
            torch.randn(3 * H, generator=g), lengths, torch.rand(R * K, T, generator=g))


@pytest.mark.parametrize("H, K", [(18, 1), (36, 3), (8, 2)])
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_kernel_matches_the_reference(kernel, H, K, variant):
    R, T = 5, 6
    gx, w, b, lengths, att = inputs(R, T, H, K, seed=H * K)
    want, _ = recurrence("augru", gx, w, b, lengths, att.view(R, K, T), variant)
    want = want.reshape(R * K, H)
    got = kernel.augru(gx, w, b, lengths, att, K=K, variant=variant)
    assert (got - want).abs().max() <= 1e-5
    half = kernel.augru(gx.half(), w.half(), b.half(), lengths, att.half(), K=K, variant=variant)
    assert (half - want).abs().max() <= 2e-3


def test_attention_zero_in_the_kernel(kernel):
    gx, w, b, lengths, att = inputs(4, 5, 18, 1, seed=1)
    zero = torch.zeros_like(att)
    assert torch.equal(kernel.augru(gx, w, b, lengths, zero, variant="paper"), torch.zeros(4, 18))
    gru, _ = recurrence("gru", gx, w, b, lengths)
    assert (kernel.augru(gx, w, b, lengths, zero, variant="official") - gru[:, 0]).abs().max() <= 1e-5


def test_fused_bilinear_attention(kernel):
    R, T, H, K = 4, 7, 18, 3
    gx, w, b, lengths, _ = inputs(R, T, H, K, seed=5)
    states, q = torch.randn(R, T, H), 0.5 * torch.randn(R * K, H)
    mask = torch.arange(T) < lengths.view(R, 1, 1)
    scores = torch.einsum("rth,rkh->rkt", states, q.view(R, K, H)).masked_fill(~mask, float("-inf"))
    want, _ = recurrence("augru", gx, w, b, lengths, torch.softmax(scores, -1).nan_to_num(0.0))
    got = kernel.augru(gx, w, b, lengths, None, K=K, states=states, q=q)
    assert (got - want.reshape(R * K, H)).abs().max() <= 1e-5


@pytest.mark.parametrize("attention", ["bilinear", "mlp"])
def test_cuda_engine_arithmetic_on_cpu(kernel, attention):
    """The fp32 GPU engine's path (user side once, fused kernel per candidate) equals the torch engine."""
    from dien_batch.engines.cuda_engine import CudaEngine
    from dien_batch.engines.torch_engine import TorchEngine

    from ..model.test_model import make_model, random_requests

    model = make_model("dien", attention=attention)
    r = {k: v.numpy() for k, v in random_requests(R=5, T=6, K=3, seed=2).items()}
    want = TorchEngine(model, {}).score(r)
    got = CudaEngine(model, {}, "fp32", device="cpu").score(r)
    assert np.abs(got - want).max() <= 1e-5


PTX_CHECK = textwrap.dedent("""
    import json, os, re, subprocess, tempfile, triton
    from dien_batch.engines.triton_augru import compile_ptx, drop_scratch_params, entry_params
    c = compile_ptx("fp16", "paper", H=36)
    ptx = drop_scratch_params(c)
    head = ptx[ptx.index(".entry " + c["name"]):]
    head = head[:head.index(")")]
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as d:
        open(d + "/k.ptx", "w").write(ptx)
        rc = subprocess.run([ptxas, "-arch=sm_90a", d + "/k.ptx", "-o", d + "/k.cubin"]).returncode
    print(json.dumps({"target": re.search(r"\\.target\\s+(\\w+)", ptx).group(1),
                      "types": re.findall(r"\\.param\\s+\\.(\\w+)", head), "ptxas": rc,
                      "scratch": [c["metadata"].global_scratch_size, c["metadata"].profile_scratch_size]}))
""")


def test_kernel_compiles_to_sm90_ptx_with_the_plugin_parameter_list():
    """Inputs (gx, w_hh, b_hh, att, lengths), the int32 scalars (rows, T), the output: as TensorRT's AOT
    plugins pass them; the stripped PTX still assembles for sm_90a."""
    import json

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    out = subprocess.run([sys.executable, "-c", PTX_CHECK], capture_output=True, text=True, env=env, check=True,
                         timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["target"].startswith("sm_90")
    assert result["types"] == ["u64"] * 5 + ["u32", "u32"] + ["u64"]
    assert result["scratch"] == [0, 0] and result["ptxas"] == 0


def test_tensorrt_stays_lazy_and_says_what_is_missing():
    check = ("import sys, dien_batch.engines.tensorrt_engine, dien_batch.engines.cuda_engine, "
             "dien_batch.engines.compile; "
             "print('tensorrt' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout.strip() == "False"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        from dien_batch.engines.tensorrt_engine import register_plugin
        from dien_batch.errors import UsageError

        with pytest.raises(UsageError, match="TensorRT is not installed"):
            register_plugin()


LIFE_CYCLE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    from tests.engines import fake_tensorrt as f
    print(json.dumps(f.plugin_life_cycle(f.DataType.{dtype})))
""")


@pytest.mark.parametrize("dtype", ["HALF", "FLOAT"])
def test_tensorrt_plugin_through_a_builders_calls(dtype):
    """TensorRT's own `tensorrt.plugin` sources (tensorrt-cu13-bindings) over a stand-in for libnvinfer:
    registering validates the signatures (they failed before: postponed annotations, no aot_impl return
    annotation), then creation, output types and shapes, format combinations, the AOT implementation's
    launch parameters and the kernel, as a build calls them. The output takes gx's type, so the fp16
    export (a strongly typed network) sees the fp16 output its ONNX node declares."""
    import json

    from tests.engines import fake_tensorrt

    if fake_tensorrt.plugin_sources() is None:
        pytest.skip("tensorrt-cu13-bindings is not installed (pip install -e .[dev] brings it)")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", LIFE_CYCLE.format(root=root, dtype=dtype)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["output_types"] == [dtype] and r["output_shape"] == [1000, 36]
    assert r["combinations"] == [["HALF"] * 4 + ["INT64", "HALF"], ["FLOAT"] * 4 + ["INT64", "FLOAT"]]
    assert r["grid"] == [-(-1000 // 64), 1] and r["block_x"] % 32 == 0
    assert r["scalars"] == [1000, 73] and r["scalar_types"] == ["INT32", "INT32"]
    assert r["params"] == 8 and r["param_types"] == ["u64"] * 5 + ["u32", "u32"] + ["u64"]  # 5 in, rows, T, h
