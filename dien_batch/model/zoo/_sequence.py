"""What the sequence models share: the interest extractor GRU with target attention on its states, and
the interest evolving layer (a GRU-family cell over the states, scaled by attention; final state)."""

from __future__ import annotations

import torch
from torch import nn

from ..attention import BilinearAttention, MLPAttention
from ..cells import recurrence
from ..spine import CTRModel, UserSide


class SequenceModel(CTRModel):
    attends = True
    export_mode = False  # set by the ONNX exporter: the extractor runs as a plain (padded) GRU

    def build(self, c) -> tuple[int, int]:
        self.extractor = nn.GRU(self.item_dim, c.hidden, batch_first=True)
        attention = BilinearAttention if c.attention == "bilinear" else MLPAttention
        self.attention = attention(c.hidden, self.item_dim, norm=c.attention_norm)
        return c.hidden, 0

    def encode(self, side: UserSide, hist_item: torch.Tensor, hist_cat: torch.Tensor) -> None:
        side.states = self.gru_states(self.extractor, side.hist, side.lengths, side.mask)

    def attention_weights(self, side: UserSide, target: torch.Tensor) -> torch.Tensor:
        return self.attention(side.states, target, side.mask)

    def gru_states(self, gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """GRU states over right-padded sequences, zeros at padded steps.

        Training, and inference on the CPU, run `cells.recurrence` (the fused kernel where it is built;
        training through the hand-written backward, several times faster than autograd through nn.GRU);
        inference elsewhere runs nn.GRU on packed sequences; export runs it on the padded input (a GRU is
        causal: states inside each sequence are the same). Same arithmetic.
        """
        T = x.shape[1]
        mask = mask.unsqueeze(-1)
        if self.export_mode:
            return gru(x)[0] * mask
        if T == 0 or int(lengths.max()) == 0:
            return x.new_zeros(x.shape[0], T, gru.hidden_size)
        if torch.is_grad_enabled() or x.device.type == "cpu":
            gx = nn.functional.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)
            _, states = recurrence("gru", gx, gru.weight_hh_l0, gru.bias_hh_l0, lengths, return_states=True)
            return states[:, 0] * mask
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        return out * mask


class EvolvingModel(SequenceModel):
    """The interest evolving layer's cell is the subclass's `cell`; its weights are an `nn.GRUCell`'s."""

    input_bias = True  # b_ih inside the states' input projection (once per request)
    augru_op = None  # set by the ONNX exporter: callable(gx [B,T,3H], w_hh, b_hh, att [B,T], lengths [B], variant)

    def build(self, c) -> tuple[int, int]:
        dims = super().build(c)
        self.evolve = nn.GRUCell(c.hidden, c.hidden)  # holds W_ih, W_hh, b_ih, b_hh of the evolving layer
        return dims

    def encode(self, side: UserSide, hist_item: torch.Tensor, hist_cat: torch.Tensor) -> None:
        super().encode(side, hist_item, hist_cat)
        side.gx = nn.functional.linear(side.states, self.evolve.weight_ih,
                                       self.evolve.bias_ih if self.input_bias else None)

    def interest(self, side: UserSide, target: torch.Tensor, return_states: bool = False):
        att = self.attention_weights(side, target)  # [R, K, T]
        ev, variant = self.evolve, self.config.augru_variant
        if self.augru_op is not None and not return_states:
            R, K, T = att.shape
            gx = side.gx.unsqueeze(1).expand(R, K, T, side.gx.shape[-1]).reshape(R * K, T, -1)
            lengths = side.lengths.unsqueeze(1).expand(R, K).reshape(R * K)
            h = self.augru_op(gx, ev.weight_hh, ev.bias_hh, att.reshape(R * K, T), lengths, variant)
            return h.view(R, K, -1), None
        return recurrence(self.cell, side.gx, ev.weight_hh, ev.bias_hh, side.lengths, att, variant, return_states)
