"""Tests of training/collators.py: masking rules of the MLM collator and the classification padding collator."""

import numpy as np
import pytest
import torch

from audioformer.training.collators import (
    DataCollatorForCodeClassification,
    DataCollatorForCodeMLM,
    pad_code_rows,
    run_ids,
)


BOA, PAD, EOA, MASK = 0, 1, 2, 1027


def make_rows(num, length, num_codebooks=4, seed=0, repeat=1):
    """Rows `(K, L_i)` int16 = [BOA, codes..., EOA] with varied lengths; codes repeated `repeat` times in runs."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num):
        n = length - (i % 5) * 3
        codes = rng.integers(3, 1027, size=(num_codebooks, -(-n // repeat))).repeat(repeat, axis=1)[:, :n]
        row = np.concatenate([np.full((num_codebooks, 1), BOA), codes, np.full((num_codebooks, 1), EOA)], axis=1)
        rows.append({"input_ids": row.astype(np.int16)})
    return rows


def test_pad_code_rows_selects_codebook_and_pads():
    rows = make_rows(3, 20)
    batch = pad_code_rows(rows, codebook_index=2, pad_to_multiple_of=8)
    assert batch["input_ids"].shape == (3, 24) and batch["input_ids"].dtype == torch.long
    for i, r in enumerate(rows):
        n = r["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][i, :n], torch.as_tensor(r["input_ids"][2], dtype=torch.long))
        assert (batch["input_ids"][i, n:] == PAD).all()
        assert batch["attention_mask"][i].sum() == n
    full = pad_code_rows(rows)
    assert full["input_ids"].shape == (3, 4, 22)
    with pytest.raises(ValueError, match="codebook_index 4"):
        pad_code_rows(rows, codebook_index=4)


def test_mlm_never_masks_specials_or_padding_and_hits_the_rate():
    rows = make_rows(64, 400)
    collator = DataCollatorForCodeMLM(codebook_index=1, generator=torch.Generator().manual_seed(0))
    batch = collator(rows)
    original = pad_code_rows(rows, codebook_index=1)["input_ids"]
    selected = batch["labels"] != -100
    codes = (original >= 3) & (original <= 1026) & (batch["attention_mask"] == 1)
    assert not (selected & ~codes).any()  # BOA, EOA, PAD never selected
    assert torch.equal(batch["input_ids"][~selected], original[~selected])
    assert torch.equal(batch["labels"][selected], original[selected])
    assert (batch["input_ids"][selected] == MASK).all()  # default: always <MASK>
    rate = selected.sum().item() / codes.sum().item()
    assert abs(rate - 0.25) < 0.01, rate


def test_mlm_80_10_10_rule():
    rows = make_rows(64, 400)
    collator = DataCollatorForCodeMLM(
        codebook_index=0, mask_replace_prob=0.8, random_replace_prob=0.1, generator=torch.Generator().manual_seed(1)
    )
    batch = collator(rows)
    original = pad_code_rows(rows, codebook_index=0)["input_ids"]
    selected = batch["labels"] != -100
    inputs = batch["input_ids"][selected]
    kept = inputs == original[selected]
    masked = inputs == MASK
    randomised = ~kept & ~masked
    n = selected.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    assert abs(randomised.sum().item() / n - 0.1) < 0.02
    assert ((inputs[randomised] >= 3) & (inputs[randomised] <= 1026)).all()  # random ids are codes, never specials


def test_whole_run_masking_masks_runs_entirely():
    rows = make_rows(64, 400, repeat=4, seed=3)
    collator = DataCollatorForCodeMLM(
        codebook_index=0, whole_run_masking=True, generator=torch.Generator().manual_seed(2)
    )
    batch = collator(rows)
    original = pad_code_rows(rows, codebook_index=0)["input_ids"]
    selected = batch["labels"] != -100
    runs = run_ids(original)
    for b in range(original.shape[0]):
        for r in runs[b].unique():
            in_run = runs[b] == r
            assert selected[b, in_run].all() or not selected[b, in_run].any()
    codes = (original >= 3) & (original <= 1026)
    rate = selected.sum().item() / codes.sum().item()
    assert abs(rate - 0.25) < 0.03, rate
    # Independent check of the runs: a selected token's neighbours with the same id are selected too.
    same_next = (original[:, 1:] == original[:, :-1]) & codes[:, 1:]
    assert torch.equal(selected[:, 1:][same_next], selected[:, :-1][same_next])


def test_run_ids():
    ids = torch.tensor([[0, 7, 7, 9, 7, 2, 1, 1]])
    assert run_ids(ids).tolist() == [[0, 1, 1, 2, 3, 4, 5, 5]]


def test_every_row_gets_a_target():
    rows = [{"input_ids": [[BOA, 5, 6, EOA]]} for _ in range(200)]
    collator = DataCollatorForCodeMLM(
        codebook_index=0, mlm_probability=0.01, generator=torch.Generator().manual_seed(0)
    )
    batch = collator(rows)
    assert ((batch["labels"] != -100).sum(dim=1) >= 1).all()
    assert (batch["labels"][:, [0, 3]] == -100).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mlm_probability": 0.0}, "mlm_probability"),
        ({"mlm_probability": 1.5}, "mlm_probability"),
        ({"mask_replace_prob": 0.8, "random_replace_prob": 0.3}, "<= 1"),
    ],
)
def test_mlm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataCollatorForCodeMLM(**kwargs)


def test_mlm_needs_one_row():
    with pytest.raises(ValueError, match="codebook_index"):
        DataCollatorForCodeMLM(codebook_index=None)(make_rows(2, 10))


def test_classification_collator_labels():
    rows = make_rows(3, 12)
    single = [dict(r, labels=i) for i, r in enumerate(rows)]
    batch = DataCollatorForCodeClassification()(single)
    assert batch["input_ids"].shape == (3, 4, 14)
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 1, 2]
    multi = [dict(r, labels=[1, 0, 1]) for r in rows]
    batch = DataCollatorForCodeClassification(codebook_index=0)(multi)
    assert batch["input_ids"].shape == (3, 14)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (3, 3)
    assert "labels" not in DataCollatorForCodeClassification()(rows)


def test_max_length_cuts_rows_keeping_eoa():
    rows = [{"input_ids": [[BOA, 5, 6, 7, 8, EOA]] * 2}, {"input_ids": [[BOA, 9, EOA]] * 2}]
    batch = pad_code_rows(rows, max_length=4)
    assert batch["input_ids"][0].tolist() == [[BOA, 5, 6, EOA]] * 2
    assert batch["input_ids"][1].tolist() == [[BOA, 9, EOA, PAD]] * 2
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    mlm = DataCollatorForCodeMLM(codebook_index=1, max_length=4, generator=torch.Generator().manual_seed(0))(rows)
    assert mlm["input_ids"].shape == (2, 4) and mlm["labels"][0, 3] == -100  # <EOA> kept, never a target
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        pad_code_rows(rows, max_length=1)


def test_classification_collator_index_lists():
    rows = [dict(r, label_ids=ids) for r, ids in zip(make_rows(2, 8), ([2], [0, 1]))]
    batch = DataCollatorForCodeClassification(label_column="label_ids", num_labels=3)(rows)
    assert batch["labels"].tolist() == [[0, 0, 1], [1, 1, 0]]


def test_pad_code_rows_pads_pre_tokenized_int16_rows():
    rows = [{"input_ids": np.array([[0, 5, 2]] * 4, np.int16)}, {"input_ids": [[0, 7, 8, 9, 2]] * 4}]
    batch = pad_code_rows(rows)
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == (2, 4, 5)
    assert batch["input_ids"][0, :, 3:].eq(1).all() and batch["input_ids"][1, 2].tolist() == [0, 7, 8, 9, 2]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    flat = pad_code_rows([{"input_ids": [0, 3, 2]}], max_length=6, pad_to_multiple_of=6)
    assert flat["input_ids"].tolist() == [[0, 3, 2, 1, 1, 1]] and flat["attention_mask"].sum() == 3


def test_collator_multi_hot_and_truncation():
    collator = DataCollatorForCodeClassification(label_column="label_ids", num_labels=4, max_length=4)
    rows = [
        {"input_ids": np.array([[0, 5, 6, 7, 8, 2]] * 2), "label_ids": [1, 3]},
        {"input_ids": np.array([[0, 9, 2]] * 2), "label_ids": []},
    ]
    batch = collator(rows)
    assert batch["input_ids"].tolist()[0] == [[0, 5, 6, 2]] * 2  # cut, <EOA> kept
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[0, 1, 0, 1], [0, 0, 0, 0]]


# ---------------------------------------------------------------------------- seeded masks (exact resume)


def test_seeded_masks_depend_on_the_clip_only():
    """A clip's mask is the same alone, in another batch, at another position, with other padding: so a run that
    resumes mid-epoch (other batches collated before, other RNG draws) masks exactly as the uninterrupted run."""
    rows = make_rows(8, 120)
    collator = DataCollatorForCodeMLM(codebook_index=0, seed=7, mask_replace_prob=0.8, random_replace_prob=0.1)
    batch = collator(rows)
    torch.manual_seed(123)  # the global RNG plays no part
    alone = collator([rows[5]])
    n = rows[5]["input_ids"].shape[1]
    assert torch.equal(alone["input_ids"][0], batch["input_ids"][5, :n])
    assert torch.equal(alone["labels"][0], batch["labels"][5, :n])
    shuffled = collator([rows[5], rows[0]] + make_rows(1, 300, seed=9))  # longer padding, other neighbours
    assert torch.equal(shuffled["labels"][0, :n], batch["labels"][5, :n]) and (shuffled["labels"][0, n:] == -100).all()
    assert (batch["labels"] != -100).any(dim=1).all()


def test_seeded_masks_change_with_epoch_and_seed_and_keep_the_rate():
    rows = make_rows(64, 400)
    collator = DataCollatorForCodeMLM(codebook_index=1, seed=0)
    first = collator(rows)["labels"] != -100
    collator.set_epoch(1)
    second = collator(rows)["labels"] != -100
    other_seed = DataCollatorForCodeMLM(codebook_index=1, seed=1)(rows)["labels"] != -100
    padded = pad_code_rows(rows, codebook_index=1)
    ids = padded["input_ids"]
    codes = (ids >= 3) & (ids <= 1026) & (padded["attention_mask"] == 1)
    for selected in (first, second, other_seed):
        assert not (selected & ~codes).any() and abs(selected.sum().item() / codes.sum().item() - 0.25) < 0.02
    overlap = (first & second).sum().item() / first.sum().item()
    assert overlap < 0.35, overlap  # independent draws overlap ~25%; the same masks would overlap 100%
    assert not torch.equal(first, other_seed)


def test_epoch_callback():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from audioformer.training.collators import CollatorEpochCallback

    collator = DataCollatorForCodeMLM(seed=0)
    callback = CollatorEpochCallback(collator)
    state = TrainerState()
    state.epoch = 2.4166  # a run resumed in its third epoch
    callback.on_epoch_begin(None, state, TrainerControl())
    assert collator.epoch == 2
    args = TrainingArguments(
        "unused", use_cpu=True, dataloader_num_workers=2, dataloader_persistent_workers=True, report_to="none"
    )
    with pytest.raises(ValueError, match="persistent_workers"):
        callback.on_train_begin(args, state, TrainerControl())
