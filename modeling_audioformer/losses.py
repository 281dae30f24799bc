"""The paper's fine-tuning losses: BCE (eq. 6), LSEP (eq. 7) and MPC (eq. 8).

Each is a loss per clip averaged over the clips of the batch. `bce_loss` sums over the classes (eq. 6 as written,
not the per-element mean of `F.binary_cross_entropy_with_logits`). `lsep_loss` (LSEP, also Circle Loss eq. 1) and
`mpc_loss` have the shape

    log(1 + sum_neg e^{s_n} * sum_pos e^{-s_p}) = softplus(logsumexp(s_neg) + logsumexp(-s_pos)),

computed in log-sum-exp form, which stays finite for any logit size, unlike the product of exponentials as written.
A clip without a positive or without a negative has no such term and is left out of the mean.
"""

import torch
import torch.nn.functional as F


def _pairwise_softplus_loss(scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Mean over rows of `log(1 + sum_{n in negative} e^{s_n} * sum_{p in positive} e^{-s_p})`.

    Args:
        scores: `(B, M)` float scores.
        positive, negative: `(B, M)` bool masks; a row without a positive or a negative has no term and is left out
            of the mean.

    Returns:
        Scalar float32 loss; 0 (with a zero gradient) when no row has both a positive and a negative.
    """
    scores = scores.float()
    valid = positive.any(dim=1) & negative.any(dim=1)
    # Rows that would take a log-sum-exp over nothing get zeros here and are zeroed below, so no -inf - -inf = NaN
    # reaches the gradient.
    safe_scores = torch.where(valid[:, None], scores, torch.zeros_like(scores))
    safe_positive = positive | ~valid[:, None]
    safe_negative = negative | ~valid[:, None]
    minus_inf = torch.finfo(scores.dtype).min
    negative_lse = torch.logsumexp(safe_scores.masked_fill(~safe_negative, minus_inf), dim=1)
    positive_lse = torch.logsumexp((-safe_scores).masked_fill(~safe_positive, minus_inf), dim=1)
    loss = torch.where(valid, F.softplus(negative_lse + positive_lse), torch.zeros_like(negative_lse))
    return loss.sum() / valid.sum().clamp(min=1)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, paper eq. 6: summed over the classes, averaged over the batch.

    `l = sum_{j not in L_g} log(1 + e^{s_j}) + sum_{i in L_g} log(1 + e^{-s_i})` for each clip, with `L_g` its true
    labels. This is `num_labels` times the per-element mean of `F.binary_cross_entropy_with_logits`, which matters
    wherever the loss is weighed against another term (FT2's eq. 9).

    Args:
        logits: `(B, C)` scores.
        labels: `(B, C)` multi-hot targets (0/1, any dtype); values above 0.5 are positives.

    Returns:
        Scalar loss (float32). A clip with no positive label counts (every class is a negative).
    """
    if logits.shape != labels.shape:
        raise ValueError(
            f"bce_loss needs logits and labels of the same shape (B, C), got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}."
        )
    targets = (labels > 0.5).float()
    per_element = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return per_element.sum(dim=1).mean()


def lsep_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LSEP loss, paper eq. 7, averaged over the batch.

    `l = log(1 + sum_{j not in L_g} e^{s_j} * sum_{i in L_g} e^{-s_i})` for each clip, with `L_g` its true labels.

    Args:
        logits: `(B, C)` scores.
        labels: `(B, C)` multi-hot targets (0/1, any dtype); values above 0.5 are positives.

    Returns:
        Scalar loss (float32): the mean over the clips that have at least one positive and one negative label
        (eq. 7 has no term for the others); 0 when there is none. The loss depends only on differences of logits
        within a clip, so the logits of a model trained with it have no absolute scale: thresholds must be
        calibrated (`AudioFormerConfig.decision_thresholds`).
    """
    if logits.shape != labels.shape:
        raise ValueError(
            f"lsep_loss needs logits and labels of the same shape (B, C), got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}."
        )
    positive = labels > 0.5
    return _pairwise_softplus_loss(logits, positive, ~positive)


def mpc_loss(features: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Multi-positive contrastive (MPC) loss, paper eq. 8, computed for the anchors only and averaged over the batch.

    For clip `b` with anchor feature `x_{b,0}` (codebook C1), positives `x_{b,1..N-1}` (C2..CN of the same clip) and
    negatives all `N` features of every other clip in the batch:

        l_b = log(1 + sum_{a != b} sum_{c=0}^{N-1} e^{sim(x_{b,0}, x_{a,c}) / tau}
                    * sum_{c=1}^{N-1} e^{-sim(x_{b,0}, x_{b,c}) / tau})

    with `sim` the cosine similarity.

    Args:
        features: `(B, N, D)`: row 0 of each clip is the anchor, rows 1..N-1 its positives.
        temperature: `tau` (the paper uses 0.05).

    Returns:
        Scalar loss (float32); 0 for a batch of one clip (no negatives).
    """
    if features.dim() != 3 or features.shape[1] < 2:
        raise ValueError(
            f"mpc_loss needs features of shape (B, N, D) with N >= 2 (an anchor and at least one "
            f"positive), got {tuple(features.shape)}."
        )
    if temperature <= 0:
        raise ValueError(f"mpc_loss needs a positive temperature, got {temperature}.")
    batch_size, num_codes, _ = features.shape
    features = F.normalize(features.float(), dim=-1)
    anchors = features[:, 0]  # (B, D)
    similarity = torch.einsum("bd,acd->bac", anchors, features) / temperature  # (B, B, N)

    same_clip = torch.eye(batch_size, dtype=torch.bool, device=features.device)[:, :, None]  # (B, B, 1)
    code_index = torch.arange(num_codes, device=features.device)[None, None, :]  # (1, 1, N)
    positive = same_clip & (code_index > 0)
    negative = (~same_clip).expand(-1, -1, num_codes)

    flat = (batch_size, batch_size * num_codes)
    return _pairwise_softplus_loss(similarity.reshape(flat), positive.reshape(flat), negative.reshape(flat))


__all__ = ["bce_loss", "lsep_loss", "mpc_loss"]
