"""The paper's losses against naive float64 loops over eq. 6, eq. 7 and eq. 8."""

import math

import pytest
import torch

from audioformer.modeling_audioformer.losses import bce_loss, lsep_loss, mpc_loss


def naive_lsep(logits, labels):
    """Eq. 7 per clip, averaged over the clips that have a positive and a negative label (others have no term)."""
    losses = []
    for row, target in zip(logits.double().tolist(), labels.tolist()):
        pos = [s for s, y in zip(row, target) if y > 0.5]
        neg = [s for s, y in zip(row, target) if y <= 0.5]
        if pos and neg:
            losses.append(math.log1p(sum(math.exp(n) for n in neg) * sum(math.exp(-p) for p in pos)))
    return sum(losses) / len(losses) if losses else 0.0


def naive_bce(logits, labels):
    """Eq. 6 per clip (a sum over the classes), averaged over the clips."""
    total = 0.0
    for row, target in zip(logits.double().tolist(), labels.tolist()):
        total += sum(math.log1p(math.exp(-s)) if y > 0.5 else math.log1p(math.exp(s)) for s, y in zip(row, target))
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


def test_lsep_averages_over_clips_with_a_positive_and_a_negative():
    """A clip without a positive (or without a negative) has no LSEP term: it is left out of the mean, not counted
    as a 0 that dilutes it."""
    logits = torch.randn(3, 5, requires_grad=True)
    labels = torch.tensor([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float)
    loss = lsep_loss(logits, labels)
    assert loss.item() == pytest.approx(naive_lsep(logits.detach()[2:], labels[2:]), rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[:2].abs().sum() == 0


def test_lsep_without_any_valid_clip_is_zero_with_a_gradient():
    logits = torch.randn(2, 4, requires_grad=True)
    loss = lsep_loss(logits, torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1]]))
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph, so DDP and Trainer see a gradient (of zeros)
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_lsep_has_no_absolute_scale():
    """Eq. 7 depends only on differences of logits within a clip: any shift per clip leaves it unchanged. This is
    why multi-label models trained with it need calibrated decision thresholds (`decision_thresholds`)."""
    torch.manual_seed(0)
    logits = torch.randn(5, 7)
    labels = (torch.rand(5, 7) < 0.4).float()
    labels[:, 0], labels[:, 1] = 1.0, 0.0
    shifted = logits + torch.randn(5, 1) * 10
    torch.testing.assert_close(lsep_loss(shifted, labels), lsep_loss(logits, labels), rtol=1e-5, atol=1e-5)


def test_bce_is_eq6_a_sum_over_classes():
    """On an AudioSet-sized batch eq. 6 (sum over the 527 classes) is 527 times the per-element mean that
    `F.binary_cross_entropy_with_logits` returns by default."""
    torch.manual_seed(0)
    logits = torch.randn(4, 527) * 2
    labels = (torch.rand(4, 527) < 0.02).float()
    loss = bce_loss(logits, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(naive_bce(logits, labels), rel=1e-5)
    element_mean = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).item()
    assert loss.item() == pytest.approx(527 * element_mean, rel=1e-5)


def test_bce_counts_clips_without_labels_and_is_stable():
    logits = torch.tensor([[40.0, -40.0, 3.0], [0.5, -0.5, 0.0]], requires_grad=True)
    labels = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])  # an empty label list is all-negative for BCE
    loss = bce_loss(logits, labels)
    assert loss.item() == pytest.approx(naive_bce(logits.detach(), labels), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        bce_loss(torch.zeros(2, 3), torch.zeros(2, 4))


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
    loss = bce_loss(logits, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(naive_bce(logits.float(), labels.float()), rel=1e-5)
    features = torch.randn(3, 4, 8).to(dtype)
    loss = mpc_loss(features, 0.05)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(naive_mpc(features.float(), 0.05), rel=1e-4)
