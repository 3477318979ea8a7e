"""Model files without pickle: `model.safetensors` (weights and Dice running statistics) + `config.json`.

`config.json` holds the architecture, the vocabulary sizes and a hash of the vocabulary files, the
feature schema version, the training data's manifest hash and library versions; `load` refuses a model
whose schema or vocabulary does not match the data it is about to read.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file

from .. import schema
from ..errors import UsageError
from ..io import library_versions, read_json, sha256_file, write_json
from .zoo import CTRModel, ModelConfig

VOCAB_FILES = ("user", "item", "category")


def vocab_fingerprint(vocab_dir: str | Path) -> str:
    """A hash of the vocabulary tables: models and data must agree on every id."""
    import hashlib

    digest = hashlib.sha256()
    for name in VOCAB_FILES:
        digest.update(sha256_file(Path(vocab_dir) / f"{name}.parquet").encode())
    return digest.hexdigest()[:16]


def save(model: CTRModel, out_dir: str | Path, *, vocab_hash: str, data_manifest_hash: str, extra: dict) -> None:
    out = Path(out_dir)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / "model.safetensors"))
    write_json(out / "config.json", {
        "architecture": model.config.to_dict(),
        "schema_version": schema.SCHEMA_VERSION,
        "vocab_hash": vocab_hash,
        "data_manifest_hash": data_manifest_hash,
        "libraries": library_versions("torch", "numpy", "pyarrow", "safetensors"),
        **extra,
    })


def load(model_dir: str | Path, *, vocab_dir: str | Path | None = None) -> tuple[CTRModel, dict]:
    """Rebuild the model from config.json and its weights; check it against a vocabulary if given."""
    root = Path(model_dir)
    if not (root / "model.safetensors").exists():
        raise UsageError(f"{root} is not a model directory (no model.safetensors)")
    config = read_json(root / "config.json")
    if config.get("schema_version") != schema.SCHEMA_VERSION:
        raise UsageError(f"{root}: feature schema version {config.get('schema_version')} does not match this "
                         f"dien-batch's {schema.SCHEMA_VERSION}; retrain the model")
    if vocab_dir is not None:
        found = vocab_fingerprint(vocab_dir)
        if found != config["vocab_hash"]:
            raise UsageError(f"{root} was trained with a different vocabulary than {vocab_dir} "
                             f"(hash {config['vocab_hash']} vs {found}): build features with "
                             f"--vocab <the training features>/vocab so ids match")
    model = CTRModel(ModelConfig.from_dict(config["architecture"]))
    state = load_file(str(root / "model.safetensors"))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, config
