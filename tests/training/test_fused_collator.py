"""Masked-LM batches of a fused model: whole frames masked in every codebook row, labels `(B, T, K_in)`."""

import pytest
import torch

from audioformer.training.collators import IGNORE_INDEX, DataCollatorForCodeMLM, run_ids


MASK = 1027


def examples(lengths, num_codebooks=4, seed=0, repeat=1):
    """Clips `(K, L)`: `<BOA>`, codes (each frame repeated `repeat` times), `<EOA>`."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        codes = torch.randint(3, 1027, (num_codebooks, -(-n // repeat)), generator=generator)
        codes = codes.repeat_interleave(repeat, dim=1)[:, :n]
        row = torch.cat([torch.zeros(num_codebooks, 1), codes, torch.full((num_codebooks, 1), 2)], dim=1)
        out.append({"input_ids": row.long().tolist()})
    return out


def test_no_masked_frame_is_visible_in_any_codebook():
    collator = DataCollatorForCodeMLM(input_codebooks=[0, 1, 2, 3], mlm_probability=0.3, seed=0)
    batch = collator(examples([40, 25, 33]))
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == (3, 4, 42) and labels.shape == (3, 42, 4)
    selected = labels != IGNORE_INDEX  # (B, T, K)
    # a frame is selected in every codebook or in none
    assert (selected.all(dim=-1) == selected.any(dim=-1)).all()
    frames = selected.all(dim=-1)
    assert (ids.transpose(1, 2)[frames] == MASK).all()  # nothing of a masked frame is left in any row
    assert not (ids.transpose(1, 2)[~frames] == MASK).any()
    # labels hold the original codes; <BOA>, <EOA> and padding are never selected
    original = collator(examples([40, 25, 33]))  # same seed, epoch and clips: the same masks
    assert torch.equal(original["labels"], labels)
    assert not frames[:, 0].any() and not frames[~mask.bool()].any()
    for i, n in enumerate([40, 25, 33]):
        assert not frames[i, n + 1]
    share = frames.sum() / (mask.sum() - 6)
    assert 0.15 < share < 0.45, share


def test_bert_rule_acts_on_whole_frames_and_labels_follow_input_codebooks():
    collator = DataCollatorForCodeMLM(
        input_codebooks=[3, 1], mlm_probability=0.5, mask_replace_prob=0.8, random_replace_prob=0.1, seed=1
    )
    source = examples([200, 150], seed=2)
    padded = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(e["input_ids"]).T for e in source], batch_first=True, padding_value=1
    ).transpose(1, 2)  # (B, K, T)
    batch = collator(source)
    ids, labels = batch["input_ids"], batch["labels"]
    frames = (labels != IGNORE_INDEX).all(dim=-1)
    assert torch.equal(labels[frames], padded.transpose(1, 2)[frames][:, [3, 1]])  # column j = codebook [3, 1][j]
    rows = ids.transpose(1, 2)[frames]  # (F, K): per frame, every row masked, or every row replaced or kept
    masked = (rows == MASK).all(dim=-1)
    assert ((rows == MASK).any(dim=-1) == masked).all()
    kept = (rows == padded.transpose(1, 2)[frames]).all(dim=-1)
    assert 0.7 < masked.float().mean() < 0.9
    assert 0.0 < kept.float().mean() < 0.25  # 10% kept (+ random codes that happen to equal the original: ~never)
    assert (masked | kept).float().mean() < 0.97  # the rest got random codes
    assert torch.equal(ids.transpose(1, 2)[~frames], padded.transpose(1, 2)[~frames])


def test_whole_run_masking_takes_runs_of_equal_frames():
    frames = torch.tensor([[[0, 5, 5, 5, 6, 2], [0, 7, 7, 8, 8, 2]]])  # (1, K=2, T): runs of equal frames
    assert run_ids(frames).tolist() == [[0, 1, 1, 2, 3, 4]]
    collator = DataCollatorForCodeMLM(input_codebooks=[0, 1, 2, 3], whole_run_masking=True, seed=0)
    batch = collator(examples([60, 60], seed=3, repeat=3))
    selected = (batch["labels"] != IGNORE_INDEX).all(dim=-1)
    for i in range(2):
        runs = run_ids(torch.tensor(examples([60, 60], seed=3, repeat=3)[i]["input_ids"])[None])[0]
        for r in runs.unique():
            assert selected[i, runs == r].unique().numel() == 1  # a run is masked whole or not at all


def test_bad_input_codebooks_for_the_data():
    with pytest.raises(ValueError, match="K > 3"):
        DataCollatorForCodeMLM(input_codebooks=[0, 3])(examples([5], num_codebooks=2))


def test_single_codebook_masks_are_unchanged():
    """The paper's collator draws exactly the masks it drew before fused models (the seeded draws of a row)."""
    collator = DataCollatorForCodeMLM(codebook_index=0, mlm_probability=0.25, seed=7)
    batch = collator(examples([30, 12]))
    row = torch.tensor(examples([30])[0]["input_ids"][0])
    generator = torch.Generator().manual_seed(collator.row_seed(row))
    selection = torch.rand(len(row), generator=generator)
    expected = (selection < 0.25) & (row >= 3) & (row < 1027)
    assert torch.equal(batch["labels"][0, : len(row)] != IGNORE_INDEX, expected)
