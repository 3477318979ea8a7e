"""The model zoo: one module per model, each a small subclass of the shared spine (`..spine.CTRModel`).

A module `zoo/<name>.py` defining `Model` is the model `<name>`: adding one touches that file and its
test (`MODELS` lists the modules without importing them, so the CLI stays fast). Modules starting with
an underscore hold parts several models share.

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

import importlib
import pkgutil

MODELS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def model_class(name: str) -> type:
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; one of {', '.join(MODELS)}")
    return importlib.import_module(f"{__name__}.{name}").Model


def build_model(config):
    """The zoo's model for `config` (a `spine.ModelConfig`), freshly initialised."""
    return model_class(config.model)(config)
