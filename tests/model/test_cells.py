"""Each cell against a plain NumPy float64 transcription of the paper's equations, and its gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dien_batch.model import native
from dien_batch.model.cells import MODES, _fused, augru_op, recurrence


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_cell(kind, variant, x_proj, h, W, b, a):
    """Written from the equations with the paper's update gate u (u = 1 keeps nothing of h)."""
    H = h.shape[-1]
    gh = h @ W.T + b
    r = sigmoid(x_proj[:H] + gh[:H])
    u = 1.0 - sigmoid(x_proj[H:2 * H] + gh[H:2 * H])  # paper's update gate
    h_tilde = np.tanh(x_proj[2 * H:] + r * gh[2 * H:])
    if kind == "gru":
        return (1 - u) * h + u * h_tilde
    if kind == "agru":  # eq. 11
        return (1 - a) * h + a * h_tilde
    if variant == "paper":  # eq. 12-13
        u_att = a * u
        return (1 - u_att) * h + u_att * h_tilde
    keep = (1 - a) * (1 - u)  # the authors' code scales the keep gate
    return keep * h + (1 - keep) * h_tilde


def numpy_sequence(kind, variant, gx, W, b, att, length):
    h = np.zeros(W.shape[1])
    for t in range(length):
        h = numpy_cell(kind, variant, gx[t], h, W, b, None if att is None else att[t])
    return h


CASES = [("gru", "paper"), ("agru", "paper"), ("augru", "paper"), ("augru", "official")]


@pytest.mark.parametrize("kind, variant", CASES)
@pytest.mark.parametrize("K", [1, 3])
def test_cells_match_numpy(kind, variant, K):
    rng = np.random.default_rng([CASES.index((kind, variant)), K])
    R, T, H = 7, 9, 5
    gx = rng.normal(size=(R, T, 3 * H))
    W, b = rng.normal(size=(3 * H, H)) * 0.5, rng.normal(size=3 * H)
    att = None if kind == "gru" else rng.uniform(size=(R, K, T))
    lengths = rng.integers(0, T + 1, R)
    lengths[0] = T
    got, states = recurrence(kind, torch.tensor(gx), torch.tensor(W), torch.tensor(b), torch.tensor(lengths),
                             None if att is None else torch.tensor(att), variant, return_states=True)
    for r in range(R):
        for k in range(got.shape[1]):
            want = numpy_sequence(kind, variant, gx[r], W, b, None if att is None else att[r, k], lengths[r])
            np.testing.assert_allclose(got[r, k].numpy(), want, atol=1e-12)
            if lengths[r]:
                np.testing.assert_allclose(states[r, k, lengths[r] - 1].numpy(), want, atol=1e-12)


def test_attention_zero_behaves_as_each_variant_defines():
    rng = np.random.default_rng(1)
    R, T, H = 4, 6, 3
    gx, W, b = torch.tensor(rng.normal(size=(R, T, 3 * H))), torch.tensor(rng.normal(size=(3 * H, H))), \
        torch.tensor(rng.normal(size=3 * H))
    lengths = torch.full((R,), T)
    zeros = torch.zeros(R, 1, T)
    paper, _ = recurrence("augru", gx, W, b, lengths, zeros, "paper")
    assert torch.equal(paper, torch.zeros_like(paper))  # state never moves from h0
    official, _ = recurrence("augru", gx, W, b, lengths, zeros, "official")
    gru, _ = recurrence("gru", gx, W, b, lengths)
    torch.testing.assert_close(official, gru, rtol=0, atol=1e-12)  # a plain GRU step
    agru, _ = recurrence("agru", gx, W, b, lengths, zeros)
    assert torch.equal(agru, torch.zeros_like(agru))


@pytest.mark.parametrize("kind, variant", CASES)
def test_gradients_of_the_fast_backward(kind, variant):
    torch.manual_seed(0)
    R, T, H = 5, 6, 3
    gx = torch.randn(R, T, 3 * H, dtype=torch.float64, requires_grad=True)
    W = (0.5 * torch.randn(3 * H, H, dtype=torch.float64)).requires_grad_()
    b = torch.randn(3 * H, dtype=torch.float64, requires_grad=True)
    att = None if kind == "gru" else torch.rand(R, 1, T, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 0, 3, 6, 1])
    inputs = (gx, W, b) + (() if att is None else (att,))

    def f(*args):
        return recurrence(kind, args[0], args[1], args[2], lengths, None if att is None else args[3], variant)[0]

    assert torch.autograd.gradcheck(f, inputs)


def test_augru_operator_contract():
    rng = np.random.default_rng(2)
    B, T, H = 6, 5, 4
    gx, W, b = rng.normal(size=(B, T, 3 * H)), rng.normal(size=(3 * H, H)), rng.normal(size=3 * H)
    att, lengths = rng.uniform(size=(B, T)), np.array([5, 4, 3, 2, 1, 0])
    out = augru_op(*(torch.tensor(x) for x in (gx, W, b, att, lengths)))
    assert out.shape == (B, H)
    for i in range(B):
        np.testing.assert_allclose(out[i].numpy(), numpy_sequence("augru", "paper", gx[i], W, b, att[i], lengths[i]),
                                   atol=1e-12)


def test_gradients_through_all_states():
    torch.manual_seed(1)
    R, T, H = 4, 5, 3
    gx = torch.randn(R, T, 3 * H, dtype=torch.float64, requires_grad=True)
    W = (0.5 * torch.randn(3 * H, H, dtype=torch.float64)).requires_grad_()
    b = torch.randn(3 * H, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2, 0, 4])
    weights = torch.randn(R, 1, T, H, dtype=torch.float64)

    def f(gx, W, b):
        final, states = recurrence("gru", gx, W, b, lengths, return_states=True)
        return (states * weights).sum() + final.sum()

    assert torch.autograd.gradcheck(f, (gx, W, b))


needs_fused = pytest.mark.skipif(native.extension() is None, reason="the fused CPU recurrence could not be built")


@needs_fused
@pytest.mark.parametrize("kind, variant", CASES)
@pytest.mark.parametrize("K", [1, 4])
def test_fused_cpu_recurrence_matches_numpy(kind, variant, K):
    """The C++ recurrence (fp32) against the float64 transcription: ragged lengths (0 and T included),
    K candidates sharing a request's gx, all states and the final state, to 1e-5."""
    rng = np.random.default_rng([7, CASES.index((kind, variant)), K])
    R, T, H = 37, 11, 36  # more rows than one work item; the default hidden size
    gx = rng.normal(size=(R, T, 3 * H)).astype(np.float32)
    W, b = (rng.normal(size=(3 * H, H)) * 0.3).astype(np.float32), rng.normal(size=3 * H).astype(np.float32)
    att = None if kind == "gru" else rng.uniform(size=(R, K, T)).astype(np.float32)
    lengths = rng.integers(0, T + 1, R)
    lengths[:2] = (T, 0)
    args = (torch.tensor(gx), torch.tensor(W), torch.tensor(b), torch.tensor(lengths))
    got, states = recurrence(kind, *args, None if att is None else torch.tensor(att), variant, return_states=True)
    fused, _ = _fused(*args, None if att is None else torch.tensor(att), MODES[kind, variant], True, False)
    assert torch.equal(got, fused)  # recurrence() took the fused path
    for r in range(R):
        for k in range(got.shape[1]):
            a = None if att is None else att[r, k].astype(np.float64)
            want = numpy_sequence(kind, variant, gx[r].astype(np.float64), W.astype(np.float64),
                                  b.astype(np.float64), a, lengths[r])
            np.testing.assert_allclose(got[r, k].numpy(), want, rtol=0, atol=1e-5)
            np.testing.assert_allclose(states[r, k, -1].numpy(), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind, variant", CASES)
def test_fused_cpu_recurrence_at_extreme_gates(kind, variant):
    """Gate inputs at +-1e30, +-inf, +-100 and just past the exp clamps saturate as the float64
    transcription does, and a NaN stays NaN (the vector sigmoid and tanh keep both properties)."""
    rng = np.random.default_rng([11, CASES.index((kind, variant))])
    R, T, H = 10, 5, 36
    gx = rng.normal(size=(R, T, 3 * H)).astype(np.float32)
    gx[:8, 2] = np.array([1e30, -1e30, np.inf, -np.inf, 100.0, -100.0, 88.5, -87.5], np.float32)[:, None]
    gx[8, 3, 5] = np.nan
    W, b = (rng.normal(size=(3 * H, H)) * 0.3).astype(np.float32), rng.normal(size=3 * H).astype(np.float32)
    att = None if kind == "gru" else rng.uniform(size=(R, 1, T)).astype(np.float32)
    lengths = np.full(R, T)
    got, _ = recurrence(kind, torch.tensor(gx), torch.tensor(W), torch.tensor(b), torch.tensor(lengths),
                        None if att is None else torch.tensor(att), variant)
    with np.errstate(over="ignore", invalid="ignore"):
        for r in range(R):
            want = numpy_sequence(kind, variant, gx[r].astype(np.float64), W.astype(np.float64),
                                  b.astype(np.float64), None if att is None else att[r, 0].astype(np.float64), T)
            np.testing.assert_allclose(got[r, 0].numpy(), want, rtol=0, atol=1e-5)
    assert np.isnan(got[8, 0].numpy()).any() and np.isfinite(got[[0, 1, 2, 3, 4, 5, 6, 7, 9], 0].numpy()).all()


@needs_fused
@pytest.mark.parametrize("kind, variant", CASES)
def test_fused_backward_matches_the_step_loops(kind, variant, monkeypatch):
    """Gradients of the C++ BPTT (fp32) against the step loops' float64 backward (gradcheck-verified above),
    through the final state and every step's state, attention included."""
    g = torch.Generator().manual_seed(CASES.index((kind, variant)))
    R, T, H = 19, 8, 6
    gx = torch.randn(R, T, 3 * H, generator=g)
    W, b = 0.5 * torch.randn(3 * H, H, generator=g), torch.randn(3 * H, generator=g)
    att = None if kind == "gru" else torch.rand(R, 1, T, generator=g)
    lengths = torch.randint(0, T + 1, (R,), generator=g)
    lengths[0] = T
    w_final, w_states = torch.randn(R, 1, H, generator=g), torch.randn(R, 1, T, H, generator=g)

    def grads(dtype):
        leaves = [x.detach().to(dtype).clone().requires_grad_() for x in (gx, W, b) + (() if att is None else (att,))]
        final, states = recurrence(kind, *leaves[:3], lengths, leaves[3] if att is not None else None, variant,
                                   return_states=True)
        ((final * w_final.to(dtype)).sum() + (states * w_states.to(dtype)).sum()).backward()
        return [x.grad.double() for x in leaves]

    fused = grads(torch.float32)  # fp32 on the CPU: the C++ path
    reference = grads(torch.float64)  # float64: the step loops
    for got, want in zip(fused, reference, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_step_loops_run_where_the_fused_recurrence_is_unavailable(monkeypatch):
    from dien_batch.model import native as native_module

    monkeypatch.setattr(native_module, "extension", lambda: None)
    rng = np.random.default_rng(3)
    gx = torch.tensor(rng.normal(size=(4, 5, 9)).astype(np.float32))
    W, b = torch.tensor(rng.normal(size=(9, 3)).astype(np.float32)), torch.tensor(rng.normal(size=9).astype(np.float32))
    lengths = torch.tensor([5, 3, 0, 1])
    got, _ = recurrence("gru", gx, W, b, lengths)
    for r in range(4):
        want = numpy_sequence("gru", "paper", gx[r].double().numpy(), W.double().numpy(), b.double().numpy(), None,
                              int(lengths[r]))
        np.testing.assert_allclose(got[r, 0].numpy(), want, atol=1e-5)
