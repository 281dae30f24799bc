"""
Batch collators for pre-tokenized code ids (rows of `input_ids` `(K, L_i)`, see `tokenize_dataset.py`).

- `DataCollatorForCodeMLM`: pads, takes one codebook row and masks it for masked-LM pretraining (paper 3.2):
  25% of the code tokens by default; `<BOA>`, `<EOA>` and padding are never masked. Options: BERT's 80/10/10
  replacement rule, and masking whole runs of repeated codes (EnCodec codes repeat, paper eq. 4, which makes
  single-token masking easy: a masked `738` between two `738`s is a free guess). With a `seed`, each clip's mask is
  drawn from its own generator seeded by (seed, epoch, the clip's codes), as fairseq seeds masks by (seed, epoch,
  index): the same in any batch, any process and after a resume mid-epoch (`CollatorEpochCallback` keeps the epoch).
  With `input_codebooks` (a fused model, which reads several codebooks of a frame at once) it masks whole frames:
  a selected frame is masked in every codebook row together, else the other rows would give its code away.
- `DataCollatorForCodeClassification`: pads and stacks the labels (class index or multi-hot) for fine-tuning.

    >>> collator = DataCollatorForCodeMLM(codebook_index=0, mlm_probability=0.25)
    >>> batch = collator([{"input_ids": [[0, 740, 740, 2]] * 4}, {"input_ids": [[0, 9, 2]] * 4}])
    >>> batch["input_ids"].shape, batch["labels"].shape     # (2, 4), (2, 4); labels -100 where not masked
"""

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers import TrainerCallback

from audioformer.modeling_audioformer.configuration_audioformer import (
    BOA_TOKEN_ID,
    CODE_OFFSET,
    CODEBOOK_SIZE,
    EOA_TOKEN_ID,
    MASK_TOKEN_ID,
    PAD_TOKEN_ID,
)


IGNORE_INDEX = -100


def pad_code_rows(
    examples,
    pad_token_id: int = PAD_TOKEN_ID,
    codebook_index: int | None = None,
    pad_to_multiple_of: int | None = None,
    max_length: int | None = None,
) -> dict:
    """
    Pads rows of code ids into a batch.

    Args:
        examples: dicts with `input_ids` `(K, L_i)` or `(L_i,)` (nested lists, numpy, e.g. int16, or torch).
        codebook_index: keep only this codebook row (rows must then be `(K, L_i)`).
        pad_to_multiple_of: round the batch length up to a multiple of this.
        max_length: cut longer rows to this many ids, keeping their last id (`<EOA>`): `--max_duration` on codes
            tokenized with a longer one.
    Returns:
        dict(input_ids LongTensor `(B, K, T)` (or `(B, T)` with `codebook_index` or 1-D rows),
             attention_mask LongTensor `(B, T)`).
    """
    if not examples:
        raise ValueError("Got an empty batch.")
    rows = [torch.as_tensor(np.asarray(e["input_ids"]), dtype=torch.long) for e in examples]
    if codebook_index is not None:
        if rows[0].dim() != 2:
            raise ValueError(
                f"codebook_index={codebook_index} needs rows of shape (K, L); got {tuple(rows[0].shape)}."
            )
        if not 0 <= codebook_index < rows[0].shape[0]:
            raise ValueError(
                f"codebook_index {codebook_index} out of range: the rows hold {rows[0].shape[0]} codebooks."
            )
        rows = [r[codebook_index] for r in rows]
    if max_length is not None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (<BOA> and <EOA>), got {max_length}.")
        rows = [
            torch.cat([r[..., : max_length - 1], r[..., -1:]], dim=-1) if r.shape[-1] > max_length else r for r in rows
        ]
    length = max(r.shape[-1] for r in rows)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    ids = torch.full((len(rows), *rows[0].shape[:-1], length), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, ..., : r.shape[-1]] = r
        mask[i, : r.shape[-1]] = 1
    return {"input_ids": ids, "attention_mask": mask}


def run_ids(input_ids: torch.Tensor) -> torch.Tensor:
    """`(B, T)` -> `(B, T)` index of the run of equal consecutive ids each position belongs to (0, 0, 1, 2, 2, ...).
    `(B, K, T)` frames -> `(B, T)` runs of equal consecutive frames (all K ids equal)."""
    frames = input_ids if input_ids.dim() == 3 else input_ids[:, None]
    starts = torch.ones(frames.shape[0], frames.shape[2], dtype=torch.long)
    starts[:, 1:] = (frames[..., 1:] != frames[..., :-1]).any(dim=1).long()
    return starts.cumsum(dim=1) - 1


@dataclass
class DataCollatorForCodeMLM:
    """
    Masked-LM collator for one codebook row, or for the frames of a fused model (`input_codebooks`).

    Args:
        codebook_index: row of `(K, L)` examples to train on (0 = C1); None if the rows are already 1-D.
        input_codebooks: a fused model's codebook rows (`config.input_codebooks`): whole frames are selected, and
            masked (or replaced, or kept) in every row together; `codebook_index` is then not used.
        mlm_probability: chance that a code token is selected (paper: 0.25). Each token is selected
            independently, so the masked fraction is `mlm_probability` in expectation, per batch.
        mask_replace_prob: share of selected tokens replaced by `<MASK>` (1.0 = always, the default).
        random_replace_prob: share of selected tokens replaced by a random code; the rest keep their id.
            BERT's 80/10/10 rule is `mask_replace_prob=0.8, random_replace_prob=0.1`.
        whole_run_masking: select whole runs of repeated codes instead of single tokens; each run is selected
            with `mlm_probability`, so the expected masked fraction stays `mlm_probability`.
        pad_to_multiple_of: round the batch length up to a multiple of this.
        max_length: cut longer rows to this many ids, keeping `<EOA>` (see `pad_code_rows`).
        seed: draw each clip's mask from a generator seeded by (seed, `epoch`, the clip's ids): masks then depend
            on nothing else (not the batch, the process, the global RNG nor the data position), so a run resumed
            mid-epoch masks exactly as the uninterrupted one. Identical clips get identical masks within an epoch.
        epoch: the epoch the masks are drawn for (`set_epoch`, called by `CollatorEpochCallback` under Trainer).
        generator: without `seed`, an optional `torch.Generator` for the whole batch (default: the global RNG, which
            `Trainer` seeds, but also draws from elsewhere: masks then change with a resume).

    Returns (from `__call__`): dict(input_ids `(B, T)` with masks applied, attention_mask `(B, T)`,
    labels `(B, T)`: the original id at selected positions, -100 elsewhere). With `input_codebooks`: input_ids
    `(B, K, T)` (all the codec's rows, masked frame by frame), labels `(B, T, len(input_codebooks))` (frames first,
    as the fused model's logits `(B, T, K, V)`; column j is codebook `input_codebooks[j]`).
    """

    codebook_index: int | None = 0
    input_codebooks: list[int] | None = None
    mlm_probability: float = 0.25
    mask_replace_prob: float = 1.0
    random_replace_prob: float = 0.0
    whole_run_masking: bool = False
    pad_to_multiple_of: int | None = None
    max_length: int | None = None
    pad_token_id: int = PAD_TOKEN_ID
    mask_token_id: int = MASK_TOKEN_ID
    special_token_ids: tuple = (BOA_TOKEN_ID, PAD_TOKEN_ID, EOA_TOKEN_ID, MASK_TOKEN_ID)
    code_offset: int = CODE_OFFSET
    codebook_size: int = CODEBOOK_SIZE
    seed: int | None = None
    epoch: int = 0
    generator: torch.Generator | None = None

    def __post_init__(self):
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}.")
        for name in ("mask_replace_prob", "random_replace_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.mask_replace_prob + self.random_replace_prob > 1.0:
            raise ValueError(
                f"mask_replace_prob + random_replace_prob must be <= 1, got "
                f"{self.mask_replace_prob} + {self.random_replace_prob}."
            )

    def __call__(self, examples) -> dict:
        if self.input_codebooks is not None:
            return self.mask_frames_of(examples)
        batch = pad_code_rows(
            examples, self.pad_token_id, self.codebook_index, self.pad_to_multiple_of, self.max_length
        )
        if batch["input_ids"].dim() != 2:
            raise ValueError("DataCollatorForCodeMLM needs one codebook row per example: set codebook_index.")
        batch["input_ids"], batch["labels"] = self.mask_tokens(batch["input_ids"], batch["attention_mask"])
        return batch

    def mask_frames_of(self, examples) -> dict:
        batch = pad_code_rows(examples, self.pad_token_id, None, self.pad_to_multiple_of, self.max_length)
        ids = batch["input_ids"]
        if ids.dim() != 3 or max(self.input_codebooks) >= ids.shape[1]:
            raise ValueError(
                f"input_codebooks={list(self.input_codebooks)} needs examples of shape (K, L) with K > "
                f"{max(self.input_codebooks)}; got a batch of shape {tuple(ids.shape)}."
            )
        batch["input_ids"], labels = self.mask_tokens(ids, batch["attention_mask"])
        batch["labels"] = labels[:, list(self.input_codebooks)].transpose(1, 2).contiguous()  # (B, T, K_in)
        return batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def row_seed(self, ids: torch.Tensor) -> int:
        """The mask seed of one clip's ids `(L,)` (or `(K, L)` frames): a hash of (seed, epoch, ids), 64 bits."""
        key = hashlib.blake2b(ids.to(torch.int64).numpy().tobytes(), digest_size=8)
        key.update(f"{self.seed}/{self.epoch}".encode())
        return int.from_bytes(key.digest(), "little")

    def _noise(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The random numbers of one batch `(B, T)` (or `(B, K, T)` frames): `(B, T)` uniforms for selection,
        fallback pick and action, and random codes of the ids' shape. With `seed`, row i takes them from its own
        generator over its own length only, so they do not depend on the padded length or the other rows."""
        shape = (input_ids.shape[0], input_ids.shape[-1])
        low, high = self.code_offset, self.code_offset + self.codebook_size
        if self.seed is None:
            uniforms = [torch.rand(shape, generator=self.generator) for _ in range(3)]
            return (*uniforms, torch.randint(low, high, input_ids.shape, generator=self.generator))
        uniforms = [torch.ones(shape) for _ in range(3)]  # padding: 1.0 selects nothing
        codes = torch.full(input_ids.shape, low, dtype=torch.long)
        for i, length in enumerate(attention_mask.sum(dim=1).tolist()):
            generator = torch.Generator().manual_seed(self.row_seed(input_ids[i, ..., :length]))
            for u in uniforms:
                u[i, :length] = torch.rand(length, generator=generator)
            codes[i, ..., :length] = torch.randint(low, high, (*input_ids.shape[1:-1], length), generator=generator)
        return (*uniforms, codes)

    def mask_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, T)` ids and mask -> (masked ids `(B, T)`, labels `(B, T)`). `(B, K, T)` frames: positions are
        selected once per frame and act on all K rows (masked ids and labels `(B, K, T)`)."""
        frames = input_ids.dim() == 3
        specials = torch.isin(input_ids, torch.tensor(self.special_token_ids))
        if frames:
            specials = specials.any(dim=1)  # (B, T): a frame with a special id in any row is not a code frame
        maskable = (attention_mask == 1) & ~specials
        selection, fallback, action, random_codes = self._noise(input_ids, attention_mask)

        if self.whole_run_masking:
            runs = run_ids(input_ids)  # (B, T); a run never spans a special and a code, their ids differ
            selected = (selection < self.mlm_probability).gather(1, runs)
        else:
            selected = selection < self.mlm_probability
        selected &= maskable

        # A row with nothing selected contributes no loss; with short clips a whole batch could, giving a NaN loss.
        empty = ~selected.any(dim=1) & maskable.any(dim=1)
        if empty.any():
            pick = fallback.masked_fill(~maskable, -1.0).argmax(dim=1)
            selected[empty, pick[empty]] = True

        to_mask = selected & (action < self.mask_replace_prob)
        to_random = (
            selected
            & (action >= self.mask_replace_prob)
            & (action < self.mask_replace_prob + self.random_replace_prob)
        )
        if frames:  # (B, T) -> (B, 1, T): the frame's decision holds for every row
            selected, to_mask, to_random = selected[:, None], to_mask[:, None], to_random[:, None]
        labels = input_ids.masked_fill(~selected, IGNORE_INDEX)
        inputs = input_ids.masked_fill(to_mask, self.mask_token_id)
        inputs = torch.where(to_random, random_codes, inputs)
        return inputs, labels


class CollatorEpochCallback(TrainerCallback):
    """
    Tells a collator with `set_epoch` (a seeded `DataCollatorForCodeMLM`) which epoch starts, so that masks change
    from epoch to epoch and a resumed run draws the masks of its epoch again. The epoch comes from the Trainer's
    state (a resume mid-epoch restores it). Persistent dataloader workers keep their own copy of the collator, which
    would not see the new epoch: refused.
    """

    def __init__(self, collator):
        self.collator = collator

    def on_train_begin(self, args, state, control, **kwargs):
        if args.dataloader_num_workers > 0 and args.dataloader_persistent_workers:
            raise ValueError(
                "--dataloader_persistent_workers keeps each worker's copy of the collator across epochs, so seeded "
                "masks would repeat every epoch; drop it (or use --dataloader_num_workers 0)."
            )

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.set_epoch(math.floor(state.epoch or 0))


@dataclass
class DataCollatorForCodeClassification:
    """
    Padding collator for fine-tuning.

    Args:
        codebook_index: keep only this codebook row (`(B, T)` input_ids, FT1); None keeps all `(B, K, T)` (FT2, and
            models that pick their row themselves).
        label_column: key of the label in each example, stacked as `labels`. A class index gives a LongTensor
            `(B,)`. A list gives a FloatTensor `(B, num_labels)`: with `num_labels` set the list holds class
            indices (multi-label `label_ids`, turned into multi-hot), otherwise it already is a multi-hot vector.
            Examples without the key give no `labels`.
        num_labels: number of classes, for lists of class indices.
        max_length: cut longer rows to this many ids, keeping `<EOA>` (see `pad_code_rows`).

    Returns (from `__call__`): dict(input_ids, attention_mask `(B, T)`[, labels]).
    """

    codebook_index: int | None = None
    label_column: str = "labels"
    num_labels: int | None = None
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    pad_token_id: int = PAD_TOKEN_ID

    def __call__(self, examples) -> dict:
        batch = pad_code_rows(
            examples, self.pad_token_id, self.codebook_index, self.pad_to_multiple_of, self.max_length
        )
        if self.label_column in examples[0]:
            labels = [e[self.label_column] for e in examples]
            if np.ndim(labels[0]) == 0:
                batch["labels"] = torch.as_tensor(np.asarray(labels), dtype=torch.long)
            elif self.num_labels is not None:
                multi_hot = torch.zeros(len(labels), self.num_labels)
                for i, indices in enumerate(labels):
                    multi_hot[i, list(indices)] = 1.0
                batch["labels"] = multi_hot
            else:
                batch["labels"] = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
        return batch


__all__ = [
    "DataCollatorForCodeMLM",
    "DataCollatorForCodeClassification",
    "CollatorEpochCallback",
    "pad_code_rows",
    "run_ids",
    "IGNORE_INDEX",
]
