"""
Mixup on input embeddings for fine-tuning (off by default; `run_classification.py --mixup_alpha`).

Codes are discrete, so clips cannot be mixed as waveforms or spectrograms are; their code embeddings can (as
"manifold mixup" mixes hidden states). Each training batch is paired with a permutation of itself and

    embeddings = lam * E(ids) + (1 - lam) * E(ids[perm]),   lam ~ Beta(alpha, alpha)
    loss = lam * L(logits, labels) + (1 - lam) * L(logits, labels[perm])

which is mixup's loss for any classification loss (LSEP, BCE, cross-entropy): no soft labels are needed. A position
that is real in either clip is real in the mix (all clips of a fixed-length set have the same positions). A fused
model (`input_codebooks`) mixes its frame embeddings, the sums over its codebooks.

The draw depends only on `(seed, global step)`, so a resumed run mixes as an uninterrupted one.
"""

import numpy as np
import torch

from audioformer.modeling_audioformer.modeling_audioformer import codes_and_mask


def mixup_draw(alpha: float, batch_size: int, seed: int, step: int) -> tuple[float, torch.Tensor]:
    """`(lam, perm)`: lam ~ Beta(alpha, alpha) and a `(batch_size,)` permutation, from `(seed, step)`."""
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be positive, got {alpha}.")
    rng = np.random.default_rng([seed, step])
    return float(rng.beta(alpha, alpha)), torch.from_numpy(rng.permutation(batch_size))


def code_embeddings(core, ids: torch.Tensor) -> torch.Tensor:
    """The word embeddings the model adds up for its input: `(B, T)` ids -> `(B, T, E)`; a fused model's
    `(B, K, T)` rows -> the sum of one embedding per codebook, `(B, T, E)` (as `AudioFormerEmbeddings` does)."""
    table = core.roformer.get_input_embeddings()
    if not getattr(core.config, "is_fused", False):
        return table(ids)
    offsets = torch.arange(ids.shape[1], device=ids.device) * core.config.vocab_size
    return table(ids.transpose(1, 2) + offsets).sum(dim=-2)


def mixup_loss(model, inputs: dict, lam: float, perm: torch.Tensor, core=None):
    """The mixup loss of an `AudioFormerForAudioClassification` on a batch (`input_ids` `(B, T)` or `(B, K, T)`,
    optional `attention_mask`, `labels`); returns `(loss, outputs)` (outputs of the mixed batch). `model` is what is
    called (e.g. a DDP wrapper), `core` the model itself (default: `model`)."""
    core = model if core is None else core
    labels = inputs["labels"]
    ids, mask = codes_and_mask(inputs["input_ids"], inputs.get("attention_mask"), core.config)
    perm = perm.to(ids.device)
    embeddings = code_embeddings(core, ids)  # (B, T, E)
    mixed = lam * embeddings + (1.0 - lam) * embeddings[perm]
    if mask is not None:
        mask = mask | mask[perm]
    outputs = model(inputs_embeds=mixed, attention_mask=mask, token_type_ids=inputs.get("token_type_ids"))
    loss = lam * core.classification_loss(outputs.logits, labels)
    loss = loss + (1.0 - lam) * core.classification_loss(outputs.logits, labels[perm.to(labels.device)])
    return loss, outputs


__all__ = ["code_embeddings", "mixup_draw", "mixup_loss"]
