"""
Fine-tuning augmentation on code ids: masking a share of the input codes, and masking spans of frames (time masks).

Audio transformers fine-tuned on few labels overfit within a few epochs; hiding part of the input is the cheapest
regulariser they use. On codes it is direct: a hidden code becomes `<MASK>` (id 1027), the token the model met in
masked-LM pretraining (paper 3.2). The authors' own fine-tuning scripts masked 10% of the input codes on FSD50K
(`configs/ft_fsd50k_*.yaml` say so); the paper's other recipes use no augmentation, and everything here is off by
default.

- `code_mask_probability`: each code token becomes `<MASK>` with this probability (independently).
- `time_mask_probability`, `time_mask_length`: spans of `time_mask_length` frames are masked, as many as cover about
  `time_mask_probability` of the clip's frames (spans may overlap), as in wav2vec 2.0's `mask_time_prob` /
  `mask_time_length` and SpecAugment's time masks.

`<BOA>`, `<EOA>` and padding are never masked; rows of all codebooks `(K, T)` are masked at the same frames.

The masks of a clip depend only on `(seed, epoch, clip index)`: not on the batch it lands in, the number of processes
or data-loader workers, so a resumed run draws the same masks as an uninterrupted one. The training split carries its
row index in the column `clip_index` (`add_clip_index`), which `AugmentedCollator` reads; rows without it (the
evaluation split) are never augmented. `AugmentationEpochCallback` tells the collator the epoch.

    >>> augmentation = CodeAugmentation(code_mask_probability=0.1, seed=42)
    >>> collator = AugmentedCollator(DataCollatorForCodeClassification(codebook_index=0), augmentation)
    >>> train = add_clip_index(train)
    >>> trainer = Trainer(..., data_collator=collator, callbacks=[AugmentationEpochCallback(collator)])
"""

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers import TrainerCallback

from audioformer.modeling_audioformer.configuration_audioformer import (
    BOA_TOKEN_ID,
    EOA_TOKEN_ID,
    MASK_TOKEN_ID,
    PAD_TOKEN_ID,
)


logger = logging.getLogger(__name__)

CLIP_INDEX_COLUMN = "clip_index"


@dataclass
class CodeAugmentation:
    """
    Masks of one clip's code ids, drawn from a generator seeded by `(seed, epoch, clip_index)`.

    Args:
        code_mask_probability: chance that each code token becomes `mask_token_id`.
        time_mask_probability: share of the clip's frames that time-mask spans start at, times `time_mask_length`
            (so about this share is covered, less where spans overlap).
        time_mask_length: frames per time-mask span (75 frames = 1 s for EnCodec 24 kHz); spans are cut at the
            clip's end.
        seed: the run's seed.
    """

    code_mask_probability: float = 0.0
    time_mask_probability: float = 0.0
    time_mask_length: int = 10
    seed: int = 0
    mask_token_id: int = MASK_TOKEN_ID
    special_token_ids: tuple = (BOA_TOKEN_ID, PAD_TOKEN_ID, EOA_TOKEN_ID, MASK_TOKEN_ID)

    def __post_init__(self):
        for name in ("code_mask_probability", "time_mask_probability"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}.")
        if self.time_mask_length < 1:
            raise ValueError(f"time_mask_length must be >= 1 frame, got {self.time_mask_length}.")

    @property
    def enabled(self) -> bool:
        return self.code_mask_probability > 0 or self.time_mask_probability > 0

    def generator(self, epoch: int, clip_index: int) -> np.random.Generator:
        """numpy's SeedSequence mixes the three numbers: neighbouring clips and epochs get unrelated streams."""
        return np.random.default_rng([int(self.seed), int(epoch), int(clip_index)])

    def clip_mask(self, num_frames: int, epoch: int, clip_index: int) -> np.ndarray:
        """Bool `(num_frames,)`: which frames of the clip to hide (before excluding special tokens)."""
        rng = self.generator(epoch, clip_index)
        hidden = np.zeros(num_frames, dtype=bool)
        if self.time_mask_probability > 0 and num_frames > 0:
            expected_spans = self.time_mask_probability * num_frames / self.time_mask_length
            # wav2vec 2.0's rounding: the fractional part of the expected count is a coin flip
            num_spans = int(expected_spans + rng.random())
            for start in rng.integers(0, num_frames, size=num_spans):
                hidden[start : start + self.time_mask_length] = True
        if self.code_mask_probability > 0:
            hidden |= rng.random(num_frames) < self.code_mask_probability
        return hidden

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, clip_indices, epoch: int
    ) -> torch.Tensor:
        """
        Args:
            input_ids: `(B, T)` or `(B, K, T)` padded code ids; not modified.
            attention_mask: `(B, T)`, 1 on `<BOA>`..`<EOA>`.
            clip_indices: `(B,)` row index of each clip in the training split.
            epoch: the training epoch (0-based).
        Returns:
            masked ids, the shape of `input_ids`.
        """
        if not self.enabled:
            return input_ids
        out = input_ids.clone()
        lengths = [int(n) for n in attention_mask.sum(dim=1).tolist()]
        for b, (length, clip_index) in enumerate(zip(lengths, clip_indices)):
            row = out[b, ..., :length]  # (L,) or (K, L): a view, masked in place
            codes = ~torch.isin(row.reshape(-1, length)[0], torch.tensor(self.special_token_ids))  # (L,)
            hidden = torch.from_numpy(self.clip_mask(length, epoch, int(clip_index))) & codes
            row[..., hidden] = self.mask_token_id
        return out


@dataclass
class AugmentedCollator:
    """
    Wraps a padding collator (e.g. `DataCollatorForCodeClassification`) and applies `augmentation` to the rows that
    carry a `clip_index`; the index never reaches the model. `epoch` is set by `AugmentationEpochCallback`.
    """

    collator: object
    augmentation: CodeAugmentation
    epoch: int = 0

    def __call__(self, examples) -> dict:
        indices = [e.get(CLIP_INDEX_COLUMN) for e in examples]
        examples = [{k: v for k, v in e.items() if k != CLIP_INDEX_COLUMN} for e in examples]
        batch = self.collator(examples)
        if not self.augmentation.enabled or indices[0] is None:  # evaluation rows carry no index
            return batch
        if any(i is None for i in indices):
            raise ValueError(f"Some rows of the batch lack the '{CLIP_INDEX_COLUMN}' column (add_clip_index).")
        batch["input_ids"] = self.augmentation(batch["input_ids"], batch["attention_mask"], indices, self.epoch)
        return batch


class AugmentationEpochCallback(TrainerCallback):
    """Sets the collator's epoch at the start of each epoch (before the data loader starts its workers)."""

    def __init__(self, collator: AugmentedCollator):
        self.collator = collator

    def on_train_begin(self, args, state, control, **kwargs):
        if args.dataloader_persistent_workers and args.dataloader_num_workers > 0:
            raise ValueError(
                "Fine-tuning augmentation needs the epoch in the data loader's workers: "
                "set --dataloader_persistent_workers false (persistent workers keep the first epoch's collator)."
            )

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is the fractional epoch (e + steps done / steps per epoch): a resumed run starts mid-epoch.
        self.collator.epoch = math.floor(state.epoch or 0)


def add_clip_index(dataset):
    """The training split with its row index in `clip_index` (the augmentation's seed), added once."""
    if CLIP_INDEX_COLUMN in dataset.column_names:
        raise ValueError(f"The training data already has a '{CLIP_INDEX_COLUMN}' column; rename it.")
    return dataset.add_column(CLIP_INDEX_COLUMN, list(range(len(dataset))))


__all__ = [
    "CodeAugmentation",
    "AugmentedCollator",
    "AugmentationEpochCallback",
    "add_clip_index",
    "CLIP_INDEX_COLUMN",
]
