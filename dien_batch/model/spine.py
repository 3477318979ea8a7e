"""The spine every model of the zoo shares: embeddings, the masked history sum and the final MLP.

Every model scores candidate ads in two parts, so a request's user-side work is done once however many
candidates it has:

* `user_side(...)`: embeddings of the user, the history and the feature spec's user and context fields,
  the masked history sum, then the model's own `encode` (e.g. the interest extractor GRU).
* `candidates(side, item, category)`: per candidate only what depends on it: the model's `interest`
  (target attention, the evolving recurrence) and the final MLP.

Final MLP input (the authors' code): [user, profile, target, sum of history, target * history sum,
interest, target * projected interest, the model's `head_extras`], then 200-80-1 with Dice (running
statistics at inference) or PReLU. Item fields widen the item vector, so whatever a model does with
items (GRU, attention, auxiliary loss) sees them.

A model is a subclass in `zoo/` that fills in `build`, and where it has them `encode`, `interest`,
`head_extras` and `auxiliary_loss`; `zoo.build_model(config)` makes one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .fields import FieldInputs
from .layers import InputNorm, masked_sum, mlp


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
        from .zoo import MODELS

        if self.model not in MODELS:
            raise ValueError(f"unknown model '{self.model}'; one of {', '.join(MODELS)}")

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
    hist: torch.Tensor  # [R, T, D] item vectors: item ⊕ category ⊕ item fields
    mask: torch.Tensor  # [R, T] True on valid steps
    lengths: torch.Tensor  # [R]
    hist_sum: torch.Tensor  # [R, D]
    profile: torch.Tensor | None = None  # [R, P] user-profile and context fields
    states: torch.Tensor | None = None  # [R, T, H] interest extractor (second layer for gru_att)
    gx: torch.Tensor | None = None  # [R, T, 3H] evolving layer's input projection of the states
    extras: dict = field(default_factory=dict)  # a model's own per-request tensors


class CTRModel(nn.Module):
    """The shared spine; a model of the zoo overrides the hooks below what it adds."""

    default_activation = "dice"  # the final MLP's activation for --activation auto (the authors' choice)
    always_product = False  # target * history sum in the head even with --head authors (PNN)
    auxiliary = False  # trained with the auxiliary loss (DIEN)
    attends = False  # has target attention: `attention_weights`, the report's interest view
    cell: str | None = None  # the interest evolving cell; "augru" takes the fused kernels and the AUGRU node
    exportable = True  # ONNX export supported

    def __init__(self, config: ModelConfig):
        from .zoo import model_class

        if type(self) is not model_class(config.model):
            raise TypeError(f"build '{config.model}' with dien_batch.model.zoo.build_model")
        super().__init__()
        c = self.config = config
        E = c.embedding_dim
        self.user_emb = nn.Embedding(c.n_users, E, padding_idx=0)
        self.item_emb = nn.Embedding(c.n_items, E, padding_idx=0)
        self.cat_emb = nn.Embedding(c.n_categories, E, padding_idx=0)
        self.fields = FieldInputs(list(c.fields), E, c.embedding_std)
        self.item_dim = 2 * E + self.fields.width("item")
        interest_dim, extra_dim = self.build(c)
        if c.interest_product and interest_dim:  # target * (a projection of the interest) into the head
            self.interest_proj = nn.Linear(interest_dim, self.item_dim, bias=False)
            extra_dim += self.item_dim
        head_dim = E + self.fields.width("user", "context") + (3 if self.uses_product else 2) * self.item_dim
        head_dim += interest_dim + extra_dim
        self.input_norm = InputNorm(head_dim) if c.input_bn else None
        self.head = mlp([head_dim, *c.mlp], activation=self.activation)
        for emb in (self.user_emb, self.item_emb, self.cat_emb):
            std = c.category_std if emb is self.cat_emb and c.category_std is not None else c.embedding_std
            nn.init.normal_(emb.weight, std=std)
            with torch.no_grad():
                emb.weight[0].zero_()

    @property
    def uses_product(self) -> bool:
        """Whether target * history sum is a head input (every model, or only PNN as the authors have it)."""
        return self.config.head == "extended" or self.always_product

    @property
    def uses_aux(self) -> bool:
        return self.auxiliary and self.config.aux_alpha > 0

    @property
    def activation(self) -> str:
        return self.default_activation if self.config.activation == "auto" else self.config.activation

    # -- hooks ------------------------------------------------------------------------------------
    def build(self, config: ModelConfig) -> tuple[int, int]:
        """Make the model's own layers; return (interest width, width of its other head inputs)."""
        return 0, 0

    def encode(self, side: UserSide, hist_item: torch.Tensor, hist_cat: torch.Tensor) -> None:
        """The model's user-side work, stored on `side` (once per request)."""

    def interest(self, side: UserSide, target: torch.Tensor, return_states: bool = False):
        """Interest vector per candidate [R, K, D] (None for pooling-only models), and evolving states."""
        return None, None

    def head_extras(self, side: UserSide, item: torch.Tensor, cat: torch.Tensor) -> list[torch.Tensor]:
        """More final MLP inputs [R, K, ...] (the width `build` declared)."""
        return []

    def auxiliary_loss(self, side: UserSide, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The auxiliary loss on a training batch; models with `auxiliary = True` define it."""
        raise NotImplementedError(f"{self.config.model} has no auxiliary loss")

    # -- the spine --------------------------------------------------------------------------------
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
        self.encode(side, hist_item, hist_cat)
        return side

    def candidates(self, side: UserSide, item: torch.Tensor, cat: torch.Tensor, fields: dict | None = None,
                   role: str = "cand_") -> torch.Tensor:
        """Logits [R, K] for K candidates per request (their item fields [R, K] in fields as role + column)."""
        target = self.item_vectors(item, cat, fields, role)  # [R, K, item_dim]
        interest, _ = self.interest(side, target)
        return self.head_logits(side, item, cat, target, interest)

    def head_logits(self, side: UserSide, item: torch.Tensor, cat: torch.Tensor, target: torch.Tensor,
                    interest: torch.Tensor | None) -> torch.Tensor:
        """The final MLP on the shared and per-candidate features: [R, K].

        At inference its first layer runs in two parts with the input normalisation folded into its
        weights: the request's columns (user, profile, history sum) once per request, the candidate's per
        pair. The same map, without a copy of the request's columns per candidate and with a quarter fewer
        products at the default sizes.
        """
        R, K = item.shape
        hist_sum = side.hist_sum
        parts = [(side.user, True)] + ([(side.profile, True)] if side.profile is not None else [])
        parts += [(target, False), (hist_sum, True)]  # (columns, once per request), in the layer's order
        if self.uses_product:
            parts.append((target * hist_sum.unsqueeze(1), False))
        if interest is not None:
            parts.append((interest, False))
            if self.config.interest_product:
                parts.append((target * self.interest_proj(interest), False))
        parts += [(x, False) for x in self.head_extras(side, item, cat)]
        if self.training:
            x = torch.cat([p.unsqueeze(1).expand(R, K, -1) if shared else p for p, shared in parts], dim=-1)
            return self.head(x if self.input_norm is None else self.input_norm(x)).squeeze(-1)
        first = self.head[0]
        weight, bias = first.weight, first.bias
        if self.input_norm is not None:  # W (x * scale + shift) + b = (W * scale) x + (W shift + b)
            scale, shift = self.input_norm.affine()
            weight, bias = weight * scale, bias + weight @ shift
        blocks = weight.split([p.shape[-1] for p, _ in parts], dim=1)

        def columns(shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
            return (torch.cat([p for p, s in parts if s == shared], dim=-1),
                    torch.cat([w for w, (_, s) in zip(blocks, parts, strict=True) if s == shared], dim=1))

        (x_pair, w_pair), (x_request, w_request) = columns(False), columns(True)
        per_request = nn.functional.linear(x_request, w_request, bias).unsqueeze(1)
        return self.head[1:](nn.functional.linear(x_pair, w_pair).add_(per_request)).squeeze(-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Training/eval on sample rows (one candidate each): (logits [B], auxiliary loss)."""
        side = self.user_side(batch["user"], batch["hist_item"], batch["hist_cat"], batch["hist_len"], batch)
        target = {name: batch[name].unsqueeze(1) for name in self.fields.input_names("item")}
        logits = self.candidates(side, batch["item"].unsqueeze(1), batch["cat"].unsqueeze(1), target, "").squeeze(1)
        aux = self.auxiliary_loss(side, batch) if self.uses_aux and self.training else logits.new_zeros(())
        return logits, aux
