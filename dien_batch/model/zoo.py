"""DIEN and the paper's baselines on one spine: shared embeddings, pooling and final MLP.

Every model scores candidate ads in two parts, so a request's user-side work is done once however many
candidates it has:

* `user_side(...)`: embeddings of the user and the history, the masked history sum, and for the
  sequence models the interest extractor GRU and the AUGRU's input projection of its states.
* `candidates(side, item, category)`: per candidate only what depends on it: target attention, the
  interest evolving recurrence (or attention pooling) and the final MLP.

Final MLP input (the authors' code): [user, target, sum of history, target * history sum, interest],
then 200-80-1 with Dice (running statistics at inference) or PReLU. A feature spec's fields (`fields`)
widen the item vector (so the GRU, attention and auxiliary loss see them) and add a user-profile and
context vector to the final MLP's input.

| model | interest vector |
|---|---|
| base | none (sum pooling only) |
| wide_deep | none; plus a wide linear part (target item, target category, target x history category crosses) |
| pnn | none; plus inner products between the user, target and history-sum field embeddings |
| din | attention-weighted sum of the history embeddings (query = target) |
| gru_att | GRU -> GRU -> attention-weighted sum of the second layer's states |
| gru_aigru | GRU -> attention -> GRU over attention-scaled states (AIGRU), final state |
| gru_agru | GRU -> attention -> AGRU, final state |
| gru_augru | GRU -> attention -> AUGRU, final state |
| dien | gru_augru trained with the auxiliary loss on the extractor states |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .attention import BilinearAttention, MLPAttention
from .aux_loss import AuxiliaryLoss
from .cells import recurrence
from .fields import FieldInputs
from .layers import InputNorm, masked_sum, mlp

MODELS = ("base", "wide_deep", "pnn", "din", "gru_att", "gru_aigru", "gru_agru", "gru_augru", "dien")
SEQUENCE_MODELS = ("gru_att", "gru_aigru", "gru_agru", "gru_augru", "dien")
EVOLVING_CELL = {"gru_aigru": "gru", "gru_agru": "agru", "gru_augru": "augru", "dien": "augru"}
WIDE_BUCKETS = 1 << 18


@dataclass(frozen=True)
class ModelConfig:
    model: str
    n_users: int
    n_items: int
    n_categories: int
    embedding_dim: int = 18
    hidden: int = 36
    attention: str = "mlp"
    augru_variant: str = "official"
    activation: str = "auto"
    head: str = "extended"
    input_bn: bool = True
    attention_norm: str = "softmax"
    embedding_std: float = 0.05
    category_std: float | None = 0.3  # init std of the category table (None: embedding_std)
    aux_norm: bool = True
    interest_product: bool = True
    aux_alpha: float = 1.0
    mlp: tuple[int, ...] = (200, 80)
    attention_mlp: tuple[int, ...] = (80, 40)
    aux_mlp: tuple[int, ...] = (100, 50)
    fields: tuple[dict, ...] = ()  # the feature spec's fields: group, name, kind, size | mean, std
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model '{self.model}'; one of {', '.join(MODELS)}")

    @property
    def uses_aux(self) -> bool:
        return self.model == "dien" and self.aux_alpha > 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        data = dict(data)
        for key in ("mlp", "attention_mlp", "aux_mlp"):
            data[key] = tuple(data[key])
        data["fields"] = tuple(dict(f) for f in data.get("fields", ()))
        return cls(**data)


@dataclass
class UserSide:
    """What a request contributes once, whatever its number of candidates."""

    user: torch.Tensor  # [R, E]
    hist: torch.Tensor  # [R, T, 2E] item ⊕ category embeddings
    mask: torch.Tensor  # [R, T] True on valid steps
    lengths: torch.Tensor  # [R]
    hist_sum: torch.Tensor  # [R, 2E]
    profile: torch.Tensor | None = None  # [R, P] user-profile and context fields
    states: torch.Tensor | None = None  # [R, T, H] interest extractor (second layer for gru_att)
    gx: torch.Tensor | None = None  # [R, T, 3H] evolving layer's input projection of the states
    extras: dict = field(default_factory=dict)


class CTRModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        E, H = c.embedding_dim, c.hidden
        self.user_emb = nn.Embedding(c.n_users, E, padding_idx=0)
        self.item_emb = nn.Embedding(c.n_items, E, padding_idx=0)
        self.cat_emb = nn.Embedding(c.n_categories, E, padding_idx=0)
        self.fields = FieldInputs(list(c.fields), E, c.embedding_std)
        item_dim = 2 * E + self.fields.width("item")
        interest_dim = 0
        if c.model == "din":
            self.attention = MLPAttention(item_dim, item_dim, c.attention_mlp, project_query=False,
                                          norm=c.attention_norm)
            interest_dim = item_dim
        if c.model in SEQUENCE_MODELS:
            self.extractor = nn.GRU(item_dim, H, batch_first=True)
            attention = BilinearAttention if c.attention == "bilinear" else MLPAttention
            self.attention = attention(H, item_dim, norm=c.attention_norm)
            interest_dim = H
            if c.model == "gru_att":
                self.second = nn.GRU(H, H, batch_first=True)
            else:
                self.evolve = nn.GRUCell(H, H)  # holds W_ih, W_hh, b_ih, b_hh of the evolving layer
        if c.uses_aux:
            self.aux = AuxiliaryLoss(H, item_dim, c.aux_mlp, norm=c.aux_norm)
        extra_dim = 0
        if c.model == "wide_deep":
            self.wide_item = nn.Embedding(c.n_items, 1)
            self.wide_cat = nn.Embedding(c.n_categories, 1)
            self.wide_cross = nn.Embedding(WIDE_BUCKETS, 1)
            for emb in (self.wide_item, self.wide_cat, self.wide_cross):
                nn.init.zeros_(emb.weight)
        if c.model == "pnn" and c.head == "extended":
            extra_dim = 10  # inner products of 5 fields of size E
        if c.interest_product and interest_dim:  # target * (a projection of the interest) into the head
            self.interest_proj = nn.Linear(interest_dim, item_dim, bias=False)
            extra_dim += item_dim
        head_dim = E + self.fields.width("user", "context") + (3 if self.uses_product else 2) * item_dim
        head_dim += interest_dim + extra_dim
        self.input_norm = InputNorm(head_dim) if c.input_bn else None
        self.head = mlp([head_dim, *c.mlp], activation=self.activation)

        # Exporters swap in graph-friendly pieces: an unpacked extractor GRU and an AUGRU operator node.
        self.export_mode = False
        self.augru_op = None  # callable(gx [B,T,3H], w_hh, b_hh, att [B,T], lengths [B], variant) -> [B,H]
        for emb in (self.user_emb, self.item_emb, self.cat_emb):
            std = c.category_std if emb is self.cat_emb and c.category_std is not None else c.embedding_std
            nn.init.normal_(emb.weight, std=std)
            with torch.no_grad():
                emb.weight[0].zero_()

    @property
    def uses_product(self) -> bool:
        """Whether target * history sum is a head input (every model, or only PNN as the authors have it)."""
        return self.config.head == "extended" or self.config.model == "pnn"

    @property
    def activation(self) -> str:
        if self.config.activation != "auto":
            return self.config.activation
        return "prelu" if self.config.model in ("base", "wide_deep", "pnn") else "dice"

    # -- user side -------------------------------------------------------------------------------
    def item_vectors(self, item: torch.Tensor, cat: torch.Tensor, fields: dict | None = None,
                     role: str = "") -> torch.Tensor:
        """[item ⊕ category ⊕ item fields] for ids [...]; fields holds the item field inputs as role + column."""
        parts = [self.item_emb(item), self.cat_emb(cat)]
        if self.fields.of("item"):
            parts += self.fields.vectors(fields, "item", role=role)
        return torch.cat(parts, dim=-1)

    def user_side(self, user: torch.Tensor, hist_item: torch.Tensor, hist_cat: torch.Tensor,
                  lengths: torch.Tensor, fields: dict | None = None) -> UserSide:
        """fields: the user and context fields [R] and the history's item fields (hist_*) [R, T]."""
        T = hist_item.shape[1]
        mask = torch.arange(T, device=hist_item.device) < lengths.unsqueeze(1)
        hist = self.item_vectors(hist_item, hist_cat, fields, "hist_") * mask.unsqueeze(-1)
        side = UserSide(self.user_emb(user), hist, mask, lengths, masked_sum(hist, mask))
        if self.fields.of("user", "context"):
            side.profile = torch.cat(self.fields.vectors(fields, "user", "context"), dim=-1)
        c = self.config
        if c.model in SEQUENCE_MODELS:
            side.states = self._gru(self.extractor, hist, lengths, mask)
            if c.model == "gru_att":
                side.states = self._gru(self.second, side.states, lengths, mask)
            else:
                side.gx = nn.functional.linear(side.states, self.evolve.weight_ih,
                                               None if c.model == "gru_aigru" else self.evolve.bias_ih)
        if c.model == "pnn":
            side.extras["hist_item_sum"] = masked_sum(self.item_emb(hist_item), mask)
            side.extras["hist_cat_sum"] = masked_sum(self.cat_emb(hist_cat), mask)
        if c.model == "wide_deep":
            side.extras["hist_cat"] = hist_cat
        return side

    def _gru(self, gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
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

    # -- candidate side --------------------------------------------------------------------------
    def attention_weights(self, side: UserSide, target: torch.Tensor) -> torch.Tensor:
        keys = side.hist if self.config.model == "din" else side.states
        return self.attention(keys, target, side.mask)

    def interest(self, side: UserSide, target: torch.Tensor, return_states: bool = False):
        """Interest vector per candidate [R, K, D] (None for pooling-only models), and AUGRU states."""
        c = self.config
        if c.model not in SEQUENCE_MODELS and c.model != "din":
            return None, None
        att = self.attention_weights(side, target)  # [R, K, T]
        if c.model == "din":
            return torch.einsum("rkt,rtd->rkd", att, side.hist), None
        if c.model == "gru_att":
            return torch.einsum("rkt,rtd->rkd", att, side.states), None
        cell = EVOLVING_CELL[c.model]
        ev = self.evolve
        if cell == "gru":  # AIGRU: gx' = a * (h W_ih^T) + b_ih, per candidate
            gx = att.unsqueeze(-1) * side.gx.unsqueeze(1) + ev.bias_ih
            K = att.shape[1]
            final, states = recurrence("gru", gx.flatten(0, 1), ev.weight_hh, ev.bias_hh,
                                       side.lengths.repeat_interleave(K), None, c.augru_variant, return_states)
            R = att.shape[0]
            final = final.view(R, K, -1)
            states = None if states is None else states.view(R, K, *states.shape[2:])
            return final, states
        if self.augru_op is not None and cell == "augru" and not return_states:
            R, K, T = att.shape
            gx = side.gx.unsqueeze(1).expand(R, K, T, side.gx.shape[-1]).reshape(R * K, T, -1)
            lengths = side.lengths.unsqueeze(1).expand(R, K).reshape(R * K)
            h = self.augru_op(gx, ev.weight_hh, ev.bias_hh, att.reshape(R * K, T), lengths, c.augru_variant)
            return h.view(R, K, -1), None
        return recurrence(cell, side.gx, ev.weight_hh, ev.bias_hh, side.lengths, att, c.augru_variant, return_states)

    def candidates(self, side: UserSide, item: torch.Tensor, cat: torch.Tensor, fields: dict | None = None,
                   role: str = "cand_") -> torch.Tensor:
        """Logits [R, K] for K candidates per request (their item fields [R, K] in fields as role + column)."""
        target = self.item_vectors(item, cat, fields, role)  # [R, K, 2E + item fields]
        interest, _ = self.interest(side, target)
        return self.head_logits(side, item, cat, target, interest)

    def head_logits(self, side: UserSide, item: torch.Tensor, cat: torch.Tensor, target: torch.Tensor,
                    interest: torch.Tensor | None) -> torch.Tensor:
        """The final MLP (and wide/product parts) on the shared and per-candidate features: [R, K]."""
        R, K = item.shape
        hist_sum = side.hist_sum.unsqueeze(1).expand(R, K, -1)
        parts = [side.user.unsqueeze(1).expand(R, K, -1), target, hist_sum]
        if side.profile is not None:
            parts.insert(1, side.profile.unsqueeze(1).expand(R, K, -1))
        if self.uses_product:
            parts.append(target * hist_sum)
        if interest is not None:
            parts.append(interest)
            if self.config.interest_product:
                parts.append(target * self.interest_proj(interest))
        if self.config.model == "pnn" and self.config.head == "extended":
            fields = [side.user.unsqueeze(1).expand(R, K, -1), self.item_emb(item), self.cat_emb(cat),
                      side.extras["hist_item_sum"].unsqueeze(1).expand(R, K, -1),
                      side.extras["hist_cat_sum"].unsqueeze(1).expand(R, K, -1)]
            stacked = torch.stack(fields, dim=2)  # [R, K, 5, E]
            gram = stacked @ stacked.transpose(-1, -2)
            iu = torch.triu_indices(5, 5, offset=1, device=item.device)
            parts.append(gram[..., iu[0], iu[1]])
        x = torch.cat(parts, dim=-1)
        logits = self.head(x if self.input_norm is None else self.input_norm(x)).squeeze(-1)
        if self.config.model == "wide_deep":
            logits = logits + self._wide(side, item, cat)
        return logits

    def _wide(self, side: UserSide, item: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        hist_cat = side.extras["hist_cat"]  # [R, T]
        cross = (cat.unsqueeze(-1).to(torch.int64) * 1_000_003 + hist_cat.unsqueeze(1)) % WIDE_BUCKETS
        mask = side.mask.unsqueeze(1).to(torch.float32)
        crossed = (self.wide_cross(cross).squeeze(-1) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return self.wide_item(item).squeeze(-1) + self.wide_cat(cat).squeeze(-1) + crossed

    # -- training ---------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Training/eval on sample rows (one candidate each): (logits [B], auxiliary loss)."""
        side = self.user_side(batch["user"], batch["hist_item"], batch["hist_cat"], batch["hist_len"], batch)
        target = {name: batch[name].unsqueeze(1) for name in self.fields.input_names("item")}
        logits = self.candidates(side, batch["item"].unsqueeze(1), batch["cat"].unsqueeze(1), target, "").squeeze(1)
        aux = logits.new_zeros(())
        if self.config.uses_aux and self.training:
            negatives = self.item_vectors(batch["neg_item"], batch["neg_cat"], batch, "neg_")
            aux = self.aux(side.states, side.hist, negatives, batch["hist_len"])
        return logits, aux

