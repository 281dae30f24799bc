"""Mixup on input embeddings (training/mixup.py): the loss against plain forward passes at lam = 1 and lam = 0, and
against a naive mix in between; the draw depends only on (seed, step)."""

import pytest
import torch

from audioformer.modeling_audioformer import AudioFormerForAudioClassification
from audioformer.modeling_audioformer.losses import lsep_loss
from audioformer.training.mixup import mixup_draw, mixup_loss


@pytest.fixture
def batch_and_model(tiny_config):
    torch.manual_seed(0)
    config = tiny_config(num_labels=5, problem_type="multi_label_classification", hidden_dropout_prob=0.0)
    config.attention_probs_dropout_prob = 0.0
    model = AudioFormerForAudioClassification(config).eval()
    ids = torch.randint(3, 1027, (4, 12))
    ids[:, 0], ids[:, -1] = 0, 2  # <BOA> ... <EOA>
    ids[3, -4:] = 1  # one clip padded
    labels = torch.zeros(4, 5)
    labels[0, [0, 1]] = labels[1, 2] = labels[2, [3, 4]] = labels[3, 0] = 1.0
    return model, {"input_ids": ids, "labels": labels}


def test_lam_one_and_zero_are_plain_losses(batch_and_model):
    model, batch = batch_and_model
    # Clips without padding: where one clip of a pair is padded, the mix's positions are the union of the two.
    batch = {"input_ids": batch["input_ids"][:3], "labels": batch["labels"][:3]}
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        loss_one, _ = mixup_loss(model, batch, 1.0, perm)
        plain = model(**batch).loss
        loss_zero, outputs_zero = mixup_loss(model, batch, 0.0, perm)
        permuted = model(input_ids=batch["input_ids"][perm], labels=batch["labels"][perm])
    torch.testing.assert_close(loss_one, plain, rtol=1e-5, atol=1e-6)
    # lam = 0: row b is clip perm[b], scored against clip perm[b]'s labels.
    torch.testing.assert_close(outputs_zero.logits, permuted.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_zero, permuted.loss, rtol=1e-5, atol=1e-6)


def test_mixed_loss_matches_a_naive_mix(batch_and_model):
    model, batch = batch_and_model
    lam, perm = 0.3, torch.tensor([1, 0, 3, 2])
    ids, labels = batch["input_ids"], batch["labels"]
    table = model.roformer.embeddings.word_embeddings.weight
    mask = (ids != 1) | (ids[perm] != 1)
    naive = torch.stack([lam * table[ids[b]] + (1 - lam) * table[ids[perm[b]]] for b in range(4)])
    with torch.no_grad():
        logits = model(inputs_embeds=naive, attention_mask=mask).logits
        expected = lam * lsep_loss(logits, labels) + (1 - lam) * lsep_loss(logits, labels[perm])
        loss, outputs = mixup_loss(model, batch, lam, perm)
    torch.testing.assert_close(outputs.logits, logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_draw_depends_on_seed_and_step_only():
    lam, perm = mixup_draw(0.4, 16, seed=3, step=7)
    again, perm_again = mixup_draw(0.4, 16, seed=3, step=7)
    assert lam == again and torch.equal(perm, perm_again)
    assert 0.0 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(16))
    assert mixup_draw(0.4, 16, seed=3, step=8)[0] != lam
    with pytest.raises(ValueError, match="alpha"):
        mixup_draw(0.0, 4, seed=0, step=0)


def test_fused_model_mixes_frame_embeddings(tiny_config):
    torch.manual_seed(1)
    config = tiny_config(
        num_labels=3, problem_type="multi_label_classification", hidden_dropout_prob=0.0, input_codebooks=[0, 1, 2, 3]
    )
    config.attention_probs_dropout_prob = 0.0
    model = AudioFormerForAudioClassification(config).eval()
    ids = torch.randint(3, 1027, (3, 4, 10))
    ids[:, :, 0], ids[:, :, -1] = 0, 2
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 1], [1, 0, 1]])
    perm = torch.tensor([1, 2, 0])
    with torch.no_grad():
        plain = model(input_ids=ids, labels=labels)
        loss_one, outputs_one = mixup_loss(model, {"input_ids": ids, "labels": labels}, 1.0, perm)
        permuted = model(input_ids=ids[perm], labels=labels[perm])
        _, outputs_zero = mixup_loss(model, {"input_ids": ids, "labels": labels}, 0.0, perm)
    torch.testing.assert_close(outputs_one.logits, plain.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_one, plain.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs_zero.logits, permuted.logits, rtol=1e-5, atol=1e-6)
