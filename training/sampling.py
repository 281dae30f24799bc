"""Weighted sampling for imbalanced (multi-label) training sets, as used for AudioSet-2M's unbalanced set.

A class seen in `n_c` clips weighs `1 / n_c`; a clip weighs the sum of its classes' weights (the PSLA / AST /
Audio-MAE recipe), so clips of rare classes are drawn more often. The sampler draws `num_samples` clips with
replacement.

Under DDP the `Trainer` hands the sampler to `accelerate`, which splits its batches between the processes
(`BatchSamplerShard`): every process must therefore draw the same sequence. The sampler owns no `generator`
attribute (which accelerate would re-seed) and seeds a fresh one from `seed + epoch` at each `__iter__`;
`Trainer` calls `set_epoch` at each epoch.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def inverse_frequency_weights(labels: Sequence, num_labels: int) -> np.ndarray:
    """Per-clip sampling weights from inverse label frequency.

    Args:
        labels: one entry per clip: a class index (single-label) or a list of class indices (multi-label); or
            the same as an Arrow array (`ds.select_columns([c]).with_format("arrow")[:].column(c)`), done in a
            few vectorised passes with no Python object per clip (2M clips of AudioSet).
        num_labels: number of classes.

    Returns:
        `(N,)` float64 weights, `sum over the clip's classes of 1 / count(class)`. A clip without any label gets
        the smallest weight of a labelled clip, so it is still drawn now and then.
    """
    import pyarrow as pa

    if isinstance(labels, (pa.Array, pa.ChunkedArray)):
        return _inverse_frequency_weights_arrow(labels, num_labels)
    label_lists = [[int(x)] if np.isscalar(x) else [int(v) for v in x] for x in labels]
    counts = np.zeros(num_labels, dtype=np.float64)
    for row in label_lists:
        for c in row:
            if not 0 <= c < num_labels:
                raise ValueError(f"label index {c} is outside [0, {num_labels - 1}].")
            counts[c] += 1
    class_weight = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    weights = np.array([class_weight[row].sum() if row else 0.0 for row in label_lists])
    if not (weights > 0).any():
        raise ValueError("inverse_frequency_weights: no clip has a label.")
    weights[weights == 0] = weights[weights > 0].min()
    return weights


def _inverse_frequency_weights_arrow(labels, num_labels: int) -> np.ndarray:
    """`inverse_frequency_weights` of an Arrow array of class indices or of lists of them: the same weights."""
    import pyarrow as pa

    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks()
    if pa.types.is_list(labels.type) or pa.types.is_large_list(labels.type):
        offsets = labels.offsets.to_numpy()
        lengths = np.diff(offsets)
        values = labels.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        values = labels.to_numpy(zero_copy_only=False).astype(np.int64)
        lengths = np.ones(len(values), dtype=np.int64)
    bad = values[(values < 0) | (values >= num_labels)]
    if len(bad):
        raise ValueError(f"label index {int(bad[0])} is outside [0, {num_labels - 1}].")
    counts = np.bincount(values, minlength=num_labels).astype(np.float64)
    class_weight = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    weights = np.bincount(rows, weights=class_weight[values], minlength=len(lengths))
    if not (weights > 0).any():
        raise ValueError("inverse_frequency_weights: no clip has a label.")
    weights[weights == 0] = weights[weights > 0].min()
    return weights


class WeightedClipSampler(Sampler[int]):
    """Draws `num_samples` indices with replacement, `P(i) ∝ weights[i]`; the same sequence on every process
    (seeded by `seed + epoch`), so DDP's batch sharding gives each process different clips."""

    def __init__(self, weights: Sequence[float], num_samples: int | None = None, seed: int = 0):
        weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if weights.dim() != 1 or len(weights) == 0 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("WeightedClipSampler needs a non-empty 1-D array of non-negative weights, not all 0.")
        self.weights = weights
        self.num_samples = len(weights) if num_samples is None else int(num_samples)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.multinomial(self.weights, self.num_samples, replacement=True, generator=rng).tolist()

    def __len__(self) -> int:
        return self.num_samples


__all__ = ["inverse_frequency_weights", "WeightedClipSampler"]
