"""Model fidelity: attention masks, the aux loss by hand, sharing, batch invariance, gradients, files."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dien_batch.model import batches, native, store
from dien_batch.model.attention import BilinearAttention, MLPAttention
from dien_batch.model.aux_loss import AuxiliaryLoss
from dien_batch.model.spine import ModelConfig
from dien_batch.model.zoo import MODELS, build_model

from ..conftest import swapped_vocabulary

torch.set_num_threads(1)


def random_requests(R=6, T=9, K=4, n_items=50, n_cats=7, n_users=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, T + 1, (R,), generator=g)
    lengths[0] = T
    mask = torch.arange(T) < lengths.unsqueeze(1)
    return {
        "user": torch.randint(2, n_users, (R,), generator=g),
        "hist_item": torch.randint(2, n_items, (R, T), generator=g) * mask,
        "hist_cat": torch.randint(2, n_cats, (R, T), generator=g) * mask,
        "hist_len": lengths,
        "cand_item": torch.randint(2, n_items, (R, K), generator=g),
        "cand_cat": torch.randint(2, n_cats, (R, K), generator=g),
    }


def make_model(name, **kw):
    torch.manual_seed(1)
    model = build_model(ModelConfig(name, n_users=20, n_items=50, n_categories=7, embedding_dim=6, hidden=8,
                                 mlp=(16, 8), **kw))
    # Give Dice non-trivial running statistics, then freeze them.
    model.train()
    with torch.no_grad():
        r = random_requests(R=32, seed=9)
        model(pairs_of(r, 0))
    return model.eval()


def pairs_of(r, k):
    return {"user": r["user"], "hist_item": r["hist_item"], "hist_cat": r["hist_cat"], "hist_len": r["hist_len"],
            "item": r["cand_item"][:, k], "cat": r["cand_cat"][:, k], "label": torch.zeros(len(r["user"])),
            "neg_item": r["hist_item"].flip(0), "neg_cat": r["hist_cat"].flip(0)}


def score_requests(model, r):
    with torch.inference_mode():
        side = model.user_side(r["user"], r["hist_item"], r["hist_cat"], r["hist_len"])
        return model.candidates(side, r["cand_item"], r["cand_cat"])


VARIANTS = [(m, {}) for m in MODELS] + [("dien", {"attention": "mlp"}), ("dien", {"augru_variant": "official"}),
                                        ("gru_augru", {"activation": "prelu"})]


@pytest.mark.parametrize("name, kw", VARIANTS)
def test_shared_user_side_equals_per_pair_scoring(name, kw):
    model = make_model(name, **kw)
    r = random_requests()
    shared = score_requests(model, r)
    with torch.inference_mode():
        per_pair = torch.stack([model(pairs_of(r, k))[0] for k in range(r["cand_item"].shape[1])], dim=1)
    torch.testing.assert_close(shared, per_pair, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, kw", VARIANTS)
def test_scores_do_not_depend_on_the_batch(name, kw):
    """A request scored alone, inside a batch of others, and padded to a longer T gives the same score."""
    model = make_model(name, **kw)
    r = random_requests(R=12, seed=3)
    batch = score_requests(model, r)
    for i in (0, 5, 11):
        one = {k: v[i:i + 1] for k, v in r.items()}
        torch.testing.assert_close(score_requests(model, one), batch[i:i + 1], rtol=0, atol=1e-6)
        wider = dict(one, hist_item=torch.nn.functional.pad(one["hist_item"], (0, 7)),
                     hist_cat=torch.nn.functional.pad(one["hist_cat"], (0, 7)))
        torch.testing.assert_close(score_requests(model, wider), batch[i:i + 1], rtol=0, atol=1e-6)


def test_attention_gives_padding_zero_weight():
    torch.manual_seed(0)
    keys, queries = torch.randn(3, 5, 4), torch.randn(3, 2, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    for att in (BilinearAttention(4, 6), MLPAttention(4, 6)):
        w = att(keys, queries, mask)
        assert torch.all(w[0, :, 3:] == 0) and torch.allclose(w[0].sum(-1), torch.ones(2))
        assert torch.allclose(w[1].sum(-1), torch.ones(2)) and torch.all(w[2] == 0)


def test_mlp_attention_equals_the_concatenated_form():
    """The decomposed first layer is the same map as an MLP on [q, h, q - h, q * h]."""
    torch.manual_seed(0)
    att = MLPAttention(4, 6)
    keys, queries = torch.randn(3, 5, 4), torch.randn(3, 2, 6)
    q = att.query(queries).unsqueeze(2).expand(3, 2, 5, 4)
    h = keys.unsqueeze(1).expand(3, 2, 5, 4)
    naive = att.rest(att.first(torch.cat([q, h, q - h, q * h], dim=-1))).squeeze(-1)
    torch.testing.assert_close(att.scores(keys, queries), naive, rtol=1e-5, atol=1e-6)


def test_aux_loss_by_hand():
    torch.manual_seed(0)
    aux = AuxiliaryLoss(3, 2, hidden=(4,))
    states, clicked, negative = torch.randn(2, 4, 3), torch.randn(2, 4, 2), torch.randn(2, 4, 2)
    lengths = torch.tensor([4, 2])
    terms = []
    for b in range(2):
        for t in range(int(lengths[b]) - 1):
            pos = torch.sigmoid(aux.net(torch.cat([states[b, t], clicked[b, t + 1]])))
            neg = torch.sigmoid(aux.net(torch.cat([states[b, t], negative[b, t + 1]])))
            terms.append(-(torch.log(pos) + torch.log(1 - neg)))
    expected = torch.stack(terms).mean()
    torch.testing.assert_close(aux(states, clicked, negative, lengths), expected.squeeze())
    # Padding never contributes: garbage past the lengths changes nothing.
    states2 = states.clone()
    states2[1, 2:] = 1e3
    torch.testing.assert_close(aux(states2, clicked, negative, lengths), expected.squeeze())


def test_gradient_check_on_a_tiny_dien():
    torch.manual_seed(0)
    model = build_model(ModelConfig("dien", n_users=5, n_items=9, n_categories=4, embedding_dim=2, hidden=3,
                                 mlp=(4,), attention_mlp=(3,), aux_mlp=(3,), activation="prelu")).double()
    model.train()
    r = random_requests(R=3, T=4, K=1, n_items=9, n_cats=4, n_users=5, seed=1)
    batch = pairs_of(r, 0)
    batch["label"] = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    batch["neg_item"], batch["neg_cat"] = (batch["hist_item"] + 1) % 9, (batch["hist_cat"] + 1) % 4

    def loss():
        logits, aux = model(batch)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"]) + aux

    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss(), params)
    rng = np.random.default_rng(0)
    checked = 0
    for p, g in zip(params, grads, strict=True):
        for flat in rng.choice(p.numel(), size=min(3, p.numel()), replace=False):
            idx = np.unravel_index(flat, p.shape)
            if g[idx] == 0 and p.ndim == 2 and p.shape[1] in (2,):  # an embedding row not in the batch
                continue
            with torch.no_grad():
                old = p[idx].item()
                p[idx] = old + 1e-6
                up = loss().item()
                p[idx] = old - 1e-6
                down = loss().item()
                p[idx] = old
            assert abs((up - down) / 2e-6 - g[idx].item()) < 1e-6 + 1e-4 * abs(g[idx].item())
            checked += 1
    assert checked > 40


def test_save_and_load_without_pickle(tmp_path, tiny_features):
    from dien_batch.errors import UsageError

    model = make_model("dien")
    store.save(model, tmp_path, vocab_hash=store.vocab_fingerprint(tiny_features / "vocab"), data_manifest_hash="x",
               extra={})
    loaded, config = store.load(tmp_path, vocab_dir=tiny_features / "vocab")
    r = random_requests()
    torch.testing.assert_close(score_requests(loaded, r), score_requests(model, r), rtol=0, atol=0)
    import json
    import struct


    raw = (tmp_path / "model.safetensors").read_bytes()  # safetensors: u64 header size, JSON header, raw data
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    assert set(header) - {"__metadata__"} == set(model.state_dict())
    assert 8 + size + sum(e["data_offsets"][1] - e["data_offsets"][0] for k, e in header.items()
                          if k != "__metadata__") == len(raw)  # nothing but tensors: no pickled objects
    # The same vocabulary rewritten (another compression and row grouping, as another pyarrow would write
    # it) keeps the fingerprint: it hashes the content, not the file bytes; two swapped items change it.
    rewritten = swapped_vocabulary(tiny_features / "vocab", tmp_path / "rewritten", rewrite_only=True)
    other = swapped_vocabulary(tiny_features / "vocab", tmp_path / "other-vocab")
    assert store.load(tmp_path, vocab_dir=rewritten)[0] is not None
    with pytest.raises(UsageError, match="different vocabulary"):
        store.load(tmp_path, vocab_dir=other)


def test_padded_batches():
    import pyarrow as pa

    lists = pa.array([[1, 2, 3], [], [4]], pa.list_(pa.int32())).slice(1)
    assert batches.padded(lists).tolist() == [[0], [4]]
    assert batches.padded(pa.array([[5, 6], [7]], pa.list_(pa.int32()))).tolist() == [[5, 6], [7, 0]]


def test_training_and_inference_extractors_agree():
    """The extractor runs the hand-written recurrence when training and nn.GRU when scoring."""
    model = make_model("dien")
    r = random_requests(R=10, T=12, seed=4)
    x = model.item_vectors(r["hist_item"], r["hist_cat"])
    mask = torch.arange(x.shape[1]) < r["hist_len"].unsqueeze(1)
    with torch.enable_grad():
        train_states = model.gru_states(model.extractor, x, r["hist_len"], mask)
    with torch.inference_mode():
        infer_states = model.gru_states(model.extractor, x, r["hist_len"], mask)
        model.export_mode = True
        export_states = model.gru_states(model.extractor, x, r["hist_len"], mask)
    torch.testing.assert_close(train_states.detach(), infer_states, rtol=0, atol=1e-6)
    torch.testing.assert_close(export_states, infer_states, rtol=0, atol=1e-6)


@pytest.mark.parametrize("key_dim, query_dim, hidden, R, K, T", [
    (36, 36, (80, 40), 3, 50, 100),  # the default sizes, T a multiple of the kernel's 8 steps
    (36, 36, (80, 40), 2, 1, 19),  # one candidate, T not a multiple of 8
    (5, 7, (7, 3), 4, 3, 6),  # odd sizes: padded tiles, fewer steps than one block
])
def test_fused_mlp_attention_kernel_matches_the_concatenated_form(key_dim, query_dim, hidden, R, K, T):
    """The C++ kernel (inference on the CPU) against the MLP on [q, h, q - h, q * h] in float64, fresh
    random inputs and ragged lengths (the kernel skips padded steps and gives them 0; without lengths every
    step counts); a request scored alone gives the same scores as inside a batch (to float rounding: the
    per-request projections around the kernel are PyTorch GEMMs whose blocking follows the batch)."""
    if native.extension() is None:
        pytest.skip("the fused CPU kernels could not be built")
    g = torch.Generator().manual_seed(key_dim * 1000 + R * 100 + T)
    att = MLPAttention(key_dim, query_dim, hidden).eval()
    with torch.no_grad():
        for p in att.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    keys, queries = torch.randn(R, T, key_dim, generator=g), torch.randn(R, K, query_dim, generator=g)
    lengths = torch.randint(0, T + 1, (R,), generator=g)
    lengths[0] = T
    valid = (torch.arange(T) < lengths.unsqueeze(1)).unsqueeze(1).expand(R, K, T)
    with torch.inference_mode():
        assert native.inference_kernel("mlp_attention_scores", keys, att.first.weight) is not None
        every_step = att.scores(keys, queries)
        got = att.scores(keys, queries, lengths)
        alone = att.scores(keys[1:2], queries[1:2], lengths[1:2])
        q = att.query(queries).double().unsqueeze(2).expand(R, K, T, key_dim)
        h = keys.double().unsqueeze(1).expand(R, K, T, key_dim)
        naive = copy.deepcopy(att).double()
        want = naive.rest(naive.first(torch.cat([q, h, q - h, q * h], dim=-1))).squeeze(-1)
    torch.testing.assert_close(every_step.double(), want, rtol=0, atol=1e-5)
    torch.testing.assert_close(got[valid], every_step[valid], rtol=0, atol=0)
    assert torch.all(got[~valid] == 0)
    torch.testing.assert_close(alone, got[1:2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 7, 200), (5, 80), (2, 1, 13)])
def test_fused_dice_kernel_matches_the_formula(shape):
    """Dice at inference through the C++ kernel against p = sigmoid((x - mean) / sqrt(var + eps)),
    p x + (1 - p) alpha x in float64, fresh random statistics, alpha and inputs."""
    from dien_batch.model.layers import Dice

    if native.extension() is None:
        pytest.skip("the fused CPU kernels could not be built")
    g = torch.Generator().manual_seed(shape[-1])
    dice = Dice(shape[-1]).eval()
    with torch.no_grad():
        dice.bn.running_mean.copy_(torch.randn(shape[-1], generator=g))
        dice.bn.running_var.copy_(torch.rand(shape[-1], generator=g) * 3 + 0.01)
        dice.alpha.copy_(torch.randn(shape[-1], generator=g))
    x = torch.randn(shape, generator=g) * 2
    with torch.inference_mode():
        assert native.inference_kernel("dice_inference", x, dice.alpha) is not None
        got = dice(x)
    xd, bn = x.double(), dice.bn
    p = torch.sigmoid((xd - bn.running_mean.double()) / torch.sqrt(bn.running_var.double() + bn.eps))
    want = p * xd + (1 - p) * dice.alpha.detach().double() * xd
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
