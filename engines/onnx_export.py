"""Export a trained model to ONNX (opset 18) for scoring requests with candidate ads.

Graph inputs: user [R], hist_item [R, T], hist_cat [R, T], hist_len [R], cand_item [R, K],
cand_cat [R, K] (int64; R, T and K dynamic), then a feature spec's fields (`requests.input_names`: user
and context [R], items' hist_i_* [R, T] and cand_i_* [R, K]; ids int64, numeric float32); output pctr
[R, K]. The user side runs once per request
inside the graph. The extractor GRU is the standard ONNX `GRU` (linear_before_reset = 1) over the
padded history (causal, so the states inside each sequence are exact; padded steps are masked); the
interest evolving layer is one `dien::AUGRU` node with a function body (see `augru_onnx`).
"""

from __future__ import annotations

import copy
import io
import warnings

import onnx
import torch

from dien_batch.errors import UsageError
from dien_batch.model.cells import cell_update
from dien_batch.model.spine import CTRModel

from . import augru_onnx
from .requests import input_names, numeric_inputs

OPSET = 18


class _AUGRUNode(torch.autograd.Function):
    """Runs the PyTorch reference while tracing; exports as one `dien::AUGRU` node."""

    @staticmethod
    def forward(ctx, gx, w_hh, b_hh, att, lengths, variant):
        h = gx.new_zeros(gx.shape[0], w_hh.shape[1])
        for t in range(gx.shape[1]):  # plain steps: nothing here may reach the tracer as a graph
            new = cell_update("augru", variant, gx[:, t], h, w_hh, b_hh, att[:, t:t + 1])
            h = torch.where((t < lengths).unsqueeze(1), new, h)
        return h

    @staticmethod
    def symbolic(g, gx, w_hh, b_hh, att, lengths, variant):
        out = g.op(f"{augru_onnx.DOMAIN}::{augru_onnx.OP}", gx, w_hh, b_hh, att, lengths, variant_s=variant,
                   plugin_namespace_s=augru_onnx.DOMAIN, plugin_version_s=augru_onnx.PLUGIN_VERSION, aot_i=1)
        rows = (gx.type().varyingSizes() or [None])[0]
        out.setType(gx.type().with_sizes([rows, w_hh.type().sizes()[1]]))  # [B, H]: shape inference needs it
        return out


class ScoringGraph(torch.nn.Module):
    """The model's scoring path with graph-friendly pieces: (inputs) -> pCTR [R, K]."""

    def __init__(self, model: CTRModel):
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        self.model.export_mode = True
        self.model.augru_op = _AUGRUNode.apply

        self.names = input_names(model.config.fields)

    def forward(self, user, hist_item, hist_cat, hist_len, cand_item, cand_cat, *fields):
        named = dict(zip(self.names[6:], fields, strict=True))
        side = self.model.user_side(user, hist_item, hist_cat, hist_len, named)
        return torch.sigmoid(self.model.candidates(side, cand_item, cand_cat, named))


def axes(name: str) -> tuple[str, ...]:
    """An input's dynamic axes: requests R, history steps T, candidates K."""
    if name.startswith("hist_") and name != "hist_len":
        return ("R", "T")
    return ("R", "K") if name.startswith("cand_") else ("R",)


def example_inputs(fields=(), R: int = 3, T: int = 5, K: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    ids = (torch.full((R,), 2), torch.randint(2, 4, (R, T), generator=g), torch.randint(2, 4, (R, T), generator=g),
           torch.tensor([T] + [max(T - 2, 1)] * (R - 1)), torch.full((R, K), 2), torch.full((R, K), 2))
    shape = {"R": R, "T": T, "K": K}
    numeric = numeric_inputs(fields)
    extra = []
    for name in input_names(fields)[6:]:
        size = [shape[d] for d in axes(name)]
        extra.append(torch.ones(size) if name in numeric else torch.full(size, 1))
    return ids + tuple(extra)


def export(model: CTRModel) -> onnx.ModelProto:
    """The ONNX model for scoring, with its `dien::AUGRU` function attached and checked."""
    if not model.exportable:
        raise UsageError(f"ONNX export does not support '{model.config.model}' (an ablation cell); "
                         "score it with --engine torch")
    graph = ScoringGraph(model)
    buffer = io.BytesIO()
    names = graph.names
    dims = {name: dict(enumerate(axes(name))) for name in names} | {"pctr": {0: "R", 1: "K"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(graph, example_inputs(model.config.fields), buffer, input_names=names, output_names=["pctr"],
                          dynamic_axes=dims, opset_version=OPSET, dynamo=False,
                          custom_opsets={augru_onnx.DOMAIN: 1} if model.cell == "augru" else None)
    onnx_model = onnx.load_from_string(buffer.getvalue())
    if augru_onnx.augru_nodes(onnx_model):
        half = next(model.parameters()).dtype == torch.float16
        augru_onnx.attach(onnx_model, model.config.augru_variant,
                          onnx.TensorProto.FLOAT16 if half else onnx.TensorProto.FLOAT)
    onnx.checker.check_model(onnx_model)
    return onnx_model
