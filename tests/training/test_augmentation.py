"""Fine-tuning augmentation (training/augmentation.py): what is masked, and that masks depend on (seed, epoch, clip)
only."""

import numpy as np
import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from audioformer.modeling_audioformer.configuration_audioformer import (
    BOA_TOKEN_ID,
    EOA_TOKEN_ID,
    MASK_TOKEN_ID,
    PAD_TOKEN_ID,
)
from audioformer.training.augmentation import (
    CLIP_INDEX_COLUMN,
    AugmentationEpochCallback,
    AugmentedCollator,
    CodeAugmentation,
    add_clip_index,
)
from audioformer.training.collators import DataCollatorForCodeClassification


def clip(num_frames: int, seed: int, num_codebooks: int = 4) -> list[list[int]]:
    """`(K, frames + 2)` ids: [<BOA>, codes + 3, <EOA>] per codebook."""
    codes = np.random.default_rng(seed).integers(3, 1027, size=(num_codebooks, num_frames))
    return [[BOA_TOKEN_ID, *row, EOA_TOKEN_ID] for row in codes.tolist()]


def examples(lengths, first_index=0, label=True):
    out = []
    for i, n in enumerate(lengths):
        row = {"input_ids": clip(n, seed=first_index + i), CLIP_INDEX_COLUMN: first_index + i}
        if label:
            row["label_ids"] = i % 3
        out.append(row)
    return out


def test_masks_depend_on_seed_epoch_and_clip_only():
    aug = CodeAugmentation(code_mask_probability=0.2, time_mask_probability=0.2, seed=7)
    collator = AugmentedCollator(DataCollatorForCodeClassification(codebook_index=0, label_column="label_ids"), aug)
    alone = collator(examples([40], first_index=5))["input_ids"][0]
    # the same clip, batched with longer ones (more padding) and at another position
    batch = collator(examples([90, 60], first_index=3) + examples([40], first_index=5))["input_ids"]
    assert torch.equal(batch[2, :42], alone)
    assert (batch[2, 42:] == PAD_TOKEN_ID).all()  # padding untouched
    collator.epoch = 1
    assert not torch.equal(collator(examples([40], first_index=5))["input_ids"][0], alone)
    collator.epoch = 0
    other_seed = AugmentedCollator(collator.collator, CodeAugmentation(0.2, 0.2, seed=8))
    assert not torch.equal(other_seed(examples([40], first_index=5))["input_ids"][0], alone)


def test_specials_kept_and_masked_share_matches_probability():
    aug = CodeAugmentation(code_mask_probability=0.1, seed=0)
    ids = torch.tensor([clip(300, seed=i)[0] for i in range(200)])  # (200, 302)
    mask = torch.ones_like(ids)
    out = aug(ids, mask, list(range(200)), epoch=0)
    assert (out[:, 0] == BOA_TOKEN_ID).all() and (out[:, -1] == EOA_TOKEN_ID).all()
    changed = out != ids
    assert (out[changed] == MASK_TOKEN_ID).all()
    assert torch.equal(out[~changed], ids[~changed])
    assert abs(changed[:, 1:-1].float().mean().item() - 0.1) < 0.01  # 60,000 codes: std of the share ~0.0012


def test_time_masks_are_spans_at_the_same_frames_of_every_codebook():
    # 0.05 * 200 / 10 = exactly one span of 10 frames per clip
    aug = CodeAugmentation(time_mask_probability=0.05, time_mask_length=10, seed=3)
    ids = torch.tensor([clip(200, seed=i) for i in range(50)])  # (50, 4, 202)
    out = aug(ids, torch.ones(50, 202, dtype=torch.long), list(range(50)), epoch=2)
    hidden = out == MASK_TOKEN_ID  # (50, 4, 202)
    assert (hidden == hidden[:, :1]).all()  # the same frames in all 4 codebooks
    for row in hidden[:, 0]:
        positions = row.nonzero().squeeze(-1)
        assert 1 <= len(positions) <= 10 and positions.max() - positions.min() == len(positions) - 1  # one span
        assert len(positions) == 10 or positions.max() == 200  # shorter only where cut at the clip's end (<EOA>)


def test_evaluation_rows_are_not_augmented_and_the_index_never_reaches_the_model():
    inner = DataCollatorForCodeClassification(codebook_index=0, label_column="label_ids")
    collator = AugmentedCollator(inner, CodeAugmentation(code_mask_probability=0.5, seed=0))
    rows = examples([30, 20])
    train = collator(rows)
    assert CLIP_INDEX_COLUMN not in train and (train["input_ids"] == MASK_TOKEN_ID).any()
    evaluation = collator([{k: v for k, v in r.items() if k != CLIP_INDEX_COLUMN} for r in rows])
    plain = inner([{k: v for k, v in r.items() if k != CLIP_INDEX_COLUMN} for r in rows])
    assert torch.equal(evaluation["input_ids"], plain["input_ids"])
    assert torch.equal(evaluation["labels"], plain["labels"])
    with pytest.raises(ValueError, match="lack the 'clip_index'"):
        collator(examples([30]) + [{"input_ids": clip(20, 1), "label_ids": 0}])


def test_epoch_callback_and_index_column(tmp_path):
    import datasets

    collator = AugmentedCollator(DataCollatorForCodeClassification(), CodeAugmentation(code_mask_probability=0.1))
    callback = AugmentationEpochCallback(collator)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    callback.on_epoch_begin(args, TrainerState(epoch=2.0), TrainerControl())
    assert collator.epoch == 2
    callback.on_epoch_begin(args, TrainerState(epoch=3.4), TrainerControl())  # resumed mid-epoch
    assert collator.epoch == 3
    persistent = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, dataloader_num_workers=2,
        dataloader_persistent_workers=True,
    )  # fmt: skip
    with pytest.raises(ValueError, match="persistent"):
        callback.on_train_begin(persistent, TrainerState(), TrainerControl())

    ds = add_clip_index(datasets.Dataset.from_dict({"x": [5, 6, 7]}))
    assert ds[CLIP_INDEX_COLUMN] == [0, 1, 2]
    with pytest.raises(ValueError, match="already has"):
        add_clip_index(ds)


@pytest.mark.parametrize(
    "kwargs", [{"code_mask_probability": 1.0}, {"time_mask_probability": -0.1}, {"time_mask_length": 0}]
)
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError):
        CodeAugmentation(**kwargs)
