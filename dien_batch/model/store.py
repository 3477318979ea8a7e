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
from ..io import library_versions, read_json, write_json
from .spine import CTRModel, ModelConfig
from .zoo import build_model

VOCAB_FILES = ("user", "item", "category")


def vocab_fingerprint(vocab_dir: str | Path) -> str:
    """A hash of the vocabularies' content (every id, its index and an item's category index; the field
    vocabularies' too): models and data must agree on every id. The file bytes are not hashed, so
    rewriting the same vocabulary (another pyarrow, other row groups or compression) keeps the fingerprint."""
    import hashlib

    import numpy as np
    import pyarrow.parquet as pq

    digest = hashlib.sha256()
    fields = sorted(f"fields/{p.stem}" for p in (Path(vocab_dir) / "fields").glob("*.parquet"))
    for name in [*VOCAB_FILES, *fields]:  # a feature spec's field vocabularies too, where there are any
        table = pq.read_table(Path(vocab_dir) / f"{name}.parquet")
        ids = table.column("id").combine_chunks().cast("large_string")
        _, offset_buffer, data = ids.buffers()
        offsets = np.frombuffer(offset_buffer, dtype=np.int64)[ids.offset: ids.offset + len(ids) + 1]
        digest.update(name.encode() + b"\0")
        digest.update((offsets - offsets[0]).astype("<i8").tobytes())
        digest.update(b"" if data is None else data.to_pybytes()[offsets[0]:offsets[-1]])
        for column in ("idx", "category_idx"):
            if column in table.column_names:
                digest.update(table.column(column).to_numpy().astype("<i4").tobytes())
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
    model = build_model(ModelConfig.from_dict(config["architecture"]))
    state = load_file(str(root / "model.safetensors"))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, config
