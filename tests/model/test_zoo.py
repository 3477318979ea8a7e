"""The zoo's registry: one module per model, listed without importing, documented, built by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dien_batch.model import zoo
from dien_batch.model.spine import CTRModel, ModelConfig
from dien_batch.model.zoo import MODELS, build_model, model_class

ZOO = Path(zoo.__file__).parent


def test_every_module_is_a_documented_model():
    modules = sorted(p.stem for p in ZOO.glob("*.py") if not p.stem.startswith("_"))
    assert list(MODELS) == modules
    for name in MODELS:
        cls = model_class(name)
        assert issubclass(cls, CTRModel) and cls.__module__ == f"{zoo.__name__}.{name}"
        assert sys.modules[cls.__module__].__doc__, name
        assert f"\n| {name} |" in zoo.__doc__, f"{name} missing from the zoo's table"


@pytest.mark.parametrize("name", MODELS)
def test_build_model_makes_the_named_model(name):
    model = build_model(ModelConfig(name, n_users=5, n_items=7, n_categories=3, embedding_dim=4, hidden=5))
    assert type(model) is model_class(name)
    assert model.attends == hasattr(model, "attention_weights")
    assert model.uses_aux == (name == "dien")


def test_the_spine_alone_and_unknown_names_are_refused():
    with pytest.raises(TypeError, match="build_model"):
        CTRModel(ModelConfig("dien", n_users=5, n_items=7, n_categories=3))
    with pytest.raises(ValueError, match="unknown model 'dein'"):
        ModelConfig("dein", n_users=5, n_items=7, n_categories=3)


def test_listing_the_models_imports_no_torch():
    code = "import sys, dien_batch.model.zoo as z; print(len(z.MODELS), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(len(MODELS)), "False"]
