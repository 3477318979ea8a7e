"""Training: stream build-features output, Adam, model choice on the validation split, test once.

The checkpoint is chosen by validation AUC (never test); training stops early after `patience` epochs
without a better validation AUC. Test metrics (AUC, GAUC, logloss) are computed once, at the end, for
the chosen checkpoint. Deterministic for a seed on CPU (with the same thread count).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from . import cpu, schema, ui
from .errors import UsageError
from .evaluation.metrics import auc, gauc, logloss
from .feature_spec import from_dicts
from .io import atomic_output_dir, read_json, write_json
from .model import batches, store
from .model.fields import column
from .model.spine import CTRModel, ModelConfig
from .model.zoo import build_model


@dataclass(frozen=True)
class TrainConfig:
    features: str
    out: str
    model: str = "dien"
    epochs: int = 10
    batch_size: int = 128
    length_buckets: int = 0
    lr: float = 1e-3
    aux_alpha: float = 1.0
    attention: str = "mlp"
    augru_variant: str = "official"
    activation: str = "auto"
    head: str = "extended"
    input_bn: bool = True
    aux_norm: bool = True
    interest_product: bool = True
    attention_norm: str = "softmax"
    embedding_std: float = 0.05
    category_std: float = 0.3
    embedding_l2: float = 0.1
    lr_decay: float = 1.0
    embedding_dim: int = 18
    hidden: int = 36
    patience: int = 2
    eval_batch_size: int = 4096
    threads: int = 0
    fields: bool = True  # use the dataset's feature-spec fields
    seed: int = 0


def dataset_fields(vocab: Path) -> tuple[dict, ...]:
    """A dataset's feature-spec fields (vocab/fields.json) as model config entries: categorical with the
    size of its vocabulary, numeric with its train-split mean and standard deviation."""
    path = vocab / "fields.json"
    if not path.exists():
        return ()
    data = read_json(path)
    out = []
    for f in from_dicts(data["fields"]).fields:
        extra = {"size": data["sizes"][f.key]} if f.kind == "categorical" else dict(data["numeric"][f.column])
        out.append({**f.to_dict(), **extra})
    return tuple(out)


class EmbeddingL2:
    """Mini-batch-aware, frequency-adaptive L2 on the embedding rows a batch uses (DIN paper, eq. 4):
    sum over the distinct ids j of the batch of ||w_j||^2 / n_j, with n_j the id's count in the
    vocabulary (at least 1), so rare ids, which the data pulls on least, are held hardest."""

    def __init__(self, model: CTRModel, vocab: Path):
        def inverse_counts(name):
            counts = pq.read_table(vocab / f"{name}.parquet", columns=["count"])["count"].to_numpy()
            return torch.from_numpy(1.0 / np.maximum(counts, 1)).float()

        self.tables = [(model.user_emb.weight, inverse_counts("user"), ("user",)),
                       (model.item_emb.weight, inverse_counts("item"), ("item", "hist_item", "neg_item")),
                       (model.cat_emb.weight, inverse_counts("category"), ("cat", "hist_cat", "neg_cat"))]
        for f in model.fields.fields:
            if f["kind"] == "categorical":
                self.tables.append((model.fields.tables[column(f)].weight,
                                    inverse_counts(f"fields/{f['group']}.{f['name']}"),
                                    tuple(batches.field_columns([f], schema.SAMPLE_ROLES))))

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for weight, inverse, keys in self.tables:
            ids = torch.unique(torch.cat([batch[k].reshape(-1) for k in keys if k in batch]))
            ids = ids[ids != 0]
            total = total + (weight[ids].pow(2).sum(1) * inverse[ids]).sum()
        return total


def evaluate(model: CTRModel, directory: Path, batch_size: int) -> dict:
    """AUC, GAUC and logloss of a model on a sample split, in inference mode."""
    labels, probs, users = [], [], []
    model.eval()
    with torch.inference_mode():
        fields = model.config.fields
        for table in batches.stream(directory, batch_size, columns=batches.sample_columns(fields)):
            logits, _ = model(batches.to_tensors(table, with_negatives=False, fields=fields))
            probs.append(torch.sigmoid(logits).numpy())
            labels.append(table.column("label").to_numpy())
            users.append(table.column("user_id").to_numpy(zero_copy_only=False))
    if not labels:
        return {"rows": 0, "auc": None, "gauc": None, "logloss": None}
    y, p, u = np.concatenate(labels), np.concatenate(probs), np.concatenate(users)
    g = gauc(y, p, u)
    return {"rows": int(len(y)), "auc": auc(y, p), "gauc": g.gauc, "gauc_users": g.users,
            "gauc_users_skipped": g.users_skipped, "logloss": logloss(y, p), "mean_pctr": float(p.mean()),
            "positive_rate": float(y.mean())}


def _check_features(root: Path) -> dict:
    for name in ("train", "valid", "test", "vocab"):
        if not (root / name).is_dir():
            raise UsageError(f"{root} is not a build-features output (missing {name}/)")
    manifest = read_json(root / "manifest.json")
    if manifest.get("schema_version") != schema.SCHEMA_VERSION:
        raise UsageError(f"{root}: feature schema {manifest.get('schema_version')} != {schema.SCHEMA_VERSION}; "
                         "rebuild the features")
    return manifest


def adam(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam updating every parameter in one fused pass (PyTorch's `fused=True`; the default loops over the
    parameters: the step took 2.7-3.3 ms of a 58-62 ms training step at batch 128, 2 threads; fused 1.0 ms)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def train(cfg: TrainConfig) -> dict:
    """Train, choose the checkpoint on validation, write the model dir atomically; returns metrics."""
    root = Path(cfg.features)
    manifest = _check_features(root)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cpu.tune()
    torch.manual_seed(cfg.seed)
    sizes = {n: pq.read_metadata(root / "vocab" / f"{n}.parquet").num_rows for n in ("user", "item", "category")}
    config = ModelConfig(model=cfg.model, n_users=sizes["user"], n_items=sizes["item"],
                         n_categories=sizes["category"], embedding_dim=cfg.embedding_dim, hidden=cfg.hidden,
                         attention=cfg.attention, augru_variant=cfg.augru_variant, activation=cfg.activation,
                         head=cfg.head, input_bn=cfg.input_bn, aux_norm=cfg.aux_norm,
                         interest_product=cfg.interest_product, attention_norm=cfg.attention_norm,
                         embedding_std=cfg.embedding_std, category_std=cfg.category_std,
                         aux_alpha=cfg.aux_alpha if cfg.model == "dien" else 0.0,
                         fields=dataset_fields(root / "vocab") if cfg.fields else ())
    model = build_model(config)
    optimizer = adam(model, cfg.lr)
    bce = torch.nn.BCEWithLogitsLoss()
    n_train = batches.count_rows(root / "train")
    if n_train == 0:
        raise UsageError(f"{root}/train has no rows")
    regulariser = EmbeddingL2(model, root / "vocab")
    history, best, best_auc, stale = [], None, -math.inf, 0
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0, seen, loss_sum, aux_sum = time.perf_counter(), 0, 0.0, 0.0
        bar = ui.progress(total=n_train, desc=f"epoch {epoch}/{cfg.epochs}", unit="samples")
        for table in batches.stream(root / "train", cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + epoch,
                                    columns=batches.sample_columns(config.fields), min_batch=2,
                                    length_buckets=cfg.length_buckets):
            batch = batches.to_tensors(table, with_negatives=model.uses_aux, fields=config.fields)
            logits, aux = model(batch)
            click = bce(logits, batch["label"])
            loss = click + config.aux_alpha * aux if model.uses_aux else click
            if cfg.embedding_l2:
                loss = loss + cfg.embedding_l2 * regulariser(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = table.num_rows
            seen += n
            loss_sum += click.item() * n
            aux_sum += aux.item() * n
            bar.update(n)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", aux=f"{aux_sum / seen:.4f}", refresh=False)
        bar.close()
        for group in optimizer.param_groups:
            group["lr"] *= cfg.lr_decay
        train_seconds = time.perf_counter() - t0
        valid = evaluate(model, root / "valid", cfg.eval_batch_size)
        record = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_aux_loss": aux_sum / max(seen, 1),
                  "train_samples": seen, "train_seconds": round(train_seconds, 3),
                  "train_samples_per_s": round(seen / train_seconds, 1), "valid": valid}
        history.append(record)
        valid_auc = valid["auc"] if valid["auc"] is not None and not math.isnan(valid["auc"]) else -math.inf
        ui.info(f"epoch {epoch}: loss {record['train_loss']:.4f} aux {record['train_aux_loss']:.4f} "
                f"valid auc {ui.fmt_metric(valid['auc'])} gauc {ui.fmt_metric(valid['gauc'])} "
                f"({record['train_samples_per_s']:.0f} samples/s)")
        if valid_auc > best_auc:
            best_auc, best, stale = valid_auc, (epoch, copy.deepcopy(model.state_dict())), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    chosen_epoch, state = best if best is not None else (len(history), model.state_dict())
    model.load_state_dict(state)
    test = evaluate(model, root / "test", cfg.eval_batch_size)
    metrics = {"model": cfg.model, "chosen_epoch": chosen_epoch, "chosen_by": "valid.auc", "epochs": history,
               "test": test, "seconds": round(time.perf_counter() - started, 2), "params": asdict(cfg),
               "parameters": sum(p.numel() for p in model.parameters())}
    with atomic_output_dir(cfg.out) as tmp:
        store.save(model, tmp, vocab_hash=store.vocab_fingerprint(root / "vocab"),
                   data_manifest_hash=hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()[:16],
                   extra={"features": str(root), "max_len": manifest["params"]["max_len"], "trained": asdict(cfg)})
        write_json(tmp / "metrics.json", metrics)
    return metrics
