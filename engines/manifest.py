"""Engine files carry a manifest beside them (`<engine>.manifest.json`): what they were built from.

Fields: engine kind, precision, the model's config hash and vocabulary hash, the input schema, library
versions, the engine file's sha256, and the accuracy measured against the PyTorch fp32 reference at
compile time. Loading refuses an engine whose checksum, model or vocabulary does not match.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dien_batch.errors import UsageError
from dien_batch.io import library_versions, read_json, sha256_file, stable_hash, write_json

from .requests import input_names, model_fields, numeric_inputs

FORMAT_VERSION = 1


def manifest_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".manifest.json")


def model_identity(model_config: dict) -> dict:
    """What identifies a trained model for engines: its architecture and vocabulary."""
    return {"config_hash": stable_hash({"architecture": model_config["architecture"],
                                        "vocab_hash": model_config["vocab_hash"],
                                        "schema_version": model_config["schema_version"]}),
            "vocab_hash": model_config["vocab_hash"], "schema_version": model_config["schema_version"],
            "architecture": model_config["architecture"]}


def _input_types(model_config: dict) -> dict[str, str]:
    fields = model_fields(model_config)
    numeric = numeric_inputs(fields)
    return {name: "float32" if name in numeric else "int64" for name in input_names(fields)}


def write(engine: str | Path, *, kind: str, precision: str, model_config: dict, accuracy: dict, extra: dict) -> dict:
    manifest = {
        "format_version": FORMAT_VERSION, "engine": kind, "precision": precision,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model_identity(model_config),
        "inputs": _input_types(model_config), "outputs": {"pctr": "float32 [R, K]"},
        "sha256": sha256_file(engine), "accuracy": accuracy,
        "libraries": library_versions("torch", "onnx", "onnxruntime", "triton", "tensorrt"), **extra,
    }
    write_json(manifest_path(engine), manifest)
    return manifest


def read(engine: str | Path, kind: str) -> dict:
    """The manifest of an engine file, after checking it describes this file and this engine kind."""
    path = manifest_path(engine)
    if not path.exists():
        raise UsageError(f"{engine} has no manifest ({path.name}); build engines with dien-batch compile")
    manifest = read_json(path)
    if manifest.get("engine") != kind:
        raise UsageError(f"{engine} is a '{manifest.get('engine')}' engine, not '{kind}'")
    if sha256_file(engine) != manifest.get("sha256"):
        raise UsageError(f"{engine} does not match its manifest's checksum: rebuild it with dien-batch compile")
    return manifest


def check_vocabulary(identity: dict, vocab_dir: str | Path | None, what: str) -> None:
    """Refuse to score requests whose ids come from another vocabulary than the model's."""
    if vocab_dir is None:
        return
    from dien_batch.model.store import vocab_fingerprint

    found = vocab_fingerprint(vocab_dir)
    if found != identity["vocab_hash"]:
        raise UsageError(f"{what} was built for another vocabulary than {vocab_dir} (hash {identity['vocab_hash']} "
                         f"vs {found}): build the requests with --vocab <training features>/vocab")

