"""The paper's losses against naive float64 loops over eq. 7 and eq. 8."""

import math

import pytest
import torch

from modeling_audioformer.losses import lsep_loss, mpc_loss


def naive_lsep(logits, labels):
    total = 0.0
    for row, target in zip(logits.double().tolist(), labels.tolist()):
        pos = [s for s, y in zip(row, target) if y > 0.5]
        neg = [s for s, y in zip(row, target) if y <= 0.5]
        total += math.log1p(sum(math.exp(n) for n in neg) * sum(math.exp(-p) for p in pos))
    return total / len(logits)


def naive_mpc(features, tau):
    feats = features.double()
    B, N, _ = feats.shape
    sim = lambda u, v: float(torch.dot(u, v) / (u.norm() * v.norm()))  # noqa: E731
    total = 0.0
    for b in range(B):
        anchor = feats[b, 0]
        neg = sum(math.exp(sim(anchor, feats[a, c]) / tau) for a in range(B) if a != b for c in range(N))
        pos = sum(math.exp(-sim(anchor, feats[b, c]) / tau) for c in range(1, N))
        total += math.log1p(neg * pos)
    return total / B


def test_lsep_matches_eq7():
    torch.manual_seed(0)
    logits = torch.randn(6, 9) * 3
    labels = (torch.rand(6, 9) < 0.3).float()
    labels[0, :2] = 1.0
    labels[0, 2:] = 0.0
    assert lsep_loss(logits, labels).item() == pytest.approx(naive_lsep(logits, labels), rel=1e-5)


def test_lsep_edge_rows_are_zero_and_gradients_finite():
    logits = torch.randn(3, 5, requires_grad=True)
    labels = torch.tensor([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float)
    loss = lsep_loss(logits, labels)
    expected = naive_lsep(logits.detach()[2:], labels[2:]) / 3  # only the last row counts
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[:2].abs().sum() == 0


def test_lsep_is_stable_for_large_logits():
    logits = torch.tensor([[200.0, -300.0, 150.0]])
    labels = torch.tensor([[0.0, 1.0, 0.0]])
    # log(1 + e^200 * e^300 + ...) ~= 200 + 300
    assert lsep_loss(logits, labels).item() == pytest.approx(500.0, rel=1e-6)


def test_lsep_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        lsep_loss(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("batch,codes,tau", [(4, 3, 0.05), (5, 4, 0.5), (2, 2, 1.0)])
def test_mpc_matches_eq8(batch, codes, tau):
    torch.manual_seed(batch)
    features = torch.randn(batch, codes, 7)
    assert mpc_loss(features, tau).item() == pytest.approx(naive_mpc(features, tau), rel=1e-4)


def test_mpc_gradient_reaches_anchor_and_is_finite():
    features = torch.randn(3, 4, 8, requires_grad=True)
    mpc_loss(features, 0.05).backward()
    assert torch.isfinite(features.grad).all()
    assert features.grad[:, 0].abs().sum() > 0


def test_mpc_single_clip_has_no_negatives():
    assert mpc_loss(torch.randn(1, 4, 8), 0.05).item() == 0.0


def test_mpc_bad_input():
    with pytest.raises(ValueError, match="N >= 2"):
        mpc_loss(torch.randn(3, 1, 8))
    with pytest.raises(ValueError, match="temperature"):
        mpc_loss(torch.randn(3, 2, 8), temperature=0.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_are_float32_and_exact_for_half_precision_inputs(dtype):
    """The losses upcast: the result is eq. 7 / eq. 8 of the rounded inputs, not of half-precision arithmetic."""
    torch.manual_seed(0)
    logits = (torch.randn(4, 6) * 30).to(dtype)  # large logits: e^s overflows half precision
    labels = (torch.rand(4, 6) < 0.4).to(dtype)
    labels[:, 0] = 1
    loss = lsep_loss(logits, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(naive_lsep(logits.float(), labels.float()), rel=1e-5)
    features = torch.randn(3, 4, 8).to(dtype)
    loss = mpc_loss(features, 0.05)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(naive_mpc(features.float(), 0.05), rel=1e-4)
