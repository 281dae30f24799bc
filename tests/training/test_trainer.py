"""FT2 pieces (frozen positive models + MPC loss in a Trainer) and weighted sampling, with tiny models."""

import math

import datasets
import numpy as np
import pytest
import torch
from transformers import TrainingArguments

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification, AudioFormerModel
from audioformer.training.sampling import WeightedClipSampler
from audioformer.training.trainer import AudioClassificationTrainer, check_positive_models, load_positive_models


def naive_mpc(features, tau):
    """Eq. 8 for the anchors (row 0 of each clip), looped over in float64, averaged over the clips."""
    feats = torch.nn.functional.normalize(features.double(), dim=-1)
    batch, num_codes, _ = feats.shape
    total = 0.0
    for b in range(batch):
        anchor = feats[b, 0]
        neg = sum(
            math.exp(float(anchor @ feats[a, c]) / tau) for a in range(batch) if a != b for c in range(num_codes)
        )
        pos = sum(math.exp(-float(anchor @ feats[b, c]) / tau) for c in range(1, num_codes))
        total += math.log1p(neg * pos)
    return total / batch


TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def tiny_anchor(num_labels=3, seed=0):
    torch.manual_seed(seed)
    return AudioFormerForAudioClassification(AudioFormerConfig(num_labels=num_labels, **TINY))


def tiny_positive(codebook_index, seed):
    torch.manual_seed(seed)
    return AudioFormerModel(AudioFormerConfig(codebook_index=codebook_index, **TINY))


def code_batch(batch_size=6, length=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 1027, (batch_size, 4, length), generator=g)
    ids[:, :, 0], ids[:, :, -1] = 0, 2
    mask = torch.ones(batch_size, length, dtype=torch.long)
    ids[0, :, -5:] = 1  # padding on one clip
    mask[0, -5:] = 0
    return ids, mask


def collate(rows):
    return {
        "input_ids": torch.tensor([r["input_ids"] for r in rows]),
        "attention_mask": torch.tensor([r["attention_mask"] for r in rows]),
        "labels": torch.tensor([r["labels"] for r in rows]),
    }


def tiny_trainer(tmp_path, anchor, positives, alpha=0.5, bf16=False, max_steps=3, **kwargs):
    ids, mask = code_batch(batch_size=8)
    data = datasets.Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": [i % 3 for i in range(8)]}
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=max_steps,
        bf16=bf16,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    return AudioClassificationTrainer(
        model=anchor,
        args=args,
        train_dataset=data,
        data_collator=collate,
        positive_models=positives,
        mpc_alpha=alpha,
        mpc_temperature=0.05,
        **kwargs,
    )


def tiny_dropout_positive(codebook_index, seed, dropout=0.3):
    """A positive with dropout: run in train mode by mistake, its features would change from call to call."""
    torch.manual_seed(seed)
    config = AudioFormerConfig(
        codebook_index=codebook_index,
        **{**TINY, "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout},
    )
    return AudioFormerModel(config)


def test_compute_loss_is_eq9(tmp_path):
    anchor, positives = tiny_anchor(), [tiny_dropout_positive(1, 1), tiny_dropout_positive(2, 2)]
    trainer = tiny_trainer(tmp_path, anchor, positives, alpha=0.7)
    # The model's `accepts_loss_kwargs = False`: its batch-mean loss is not rescaled by num_items_in_batch.
    assert trainer.model_accepts_loss_kwargs is False
    ids, mask = code_batch()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    anchor.train()
    loss = trainer.compute_loss(anchor, {"input_ids": ids, "attention_mask": mask, "labels": labels})

    # Independent path: each positive fed its own row as a (B, T) input, in eval mode (no dropout), pooled by hand;
    # the classification term by F.cross_entropy on the anchor's logits, not the model's loss.
    logits_out = anchor(input_ids=ids[:, 0], attention_mask=mask)
    classification = torch.nn.functional.cross_entropy(logits_out.logits.double(), labels)
    m = mask[..., None].float()
    with torch.no_grad():
        pooled = [
            (p.eval()(input_ids=ids[:, k], attention_mask=mask).last_hidden_state * m).sum(1) / m.sum(1)
            for k, p in zip((1, 2), positives)
        ]
    features = torch.stack([logits_out.pooled_output] + pooled, dim=1).detach()
    expected = 0.7 * classification.item() + 0.3 * naive_mpc(features, 0.05)
    assert loss.item() == pytest.approx(expected, rel=1e-4)

    # Evaluation reports the anchor's classification loss alone: no MPC term, whatever alpha.
    anchor.eval()
    eval_loss = trainer.compute_loss(anchor, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    with torch.no_grad():
        eval_logits = anchor(input_ids=ids[:, 0], attention_mask=mask).logits
    assert eval_loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(eval_logits.double(), labels).item(), rel=1e-5
    )
    assert eval_loss.item() != pytest.approx(loss.item(), rel=1e-3)


def test_training_freezes_positives_and_saves_plain_model(tmp_path):
    anchor, positives = tiny_anchor(), [tiny_positive(1, 1), tiny_positive(2, 2)]
    before = [{k: v.clone() for k, v in p.state_dict().items()} for p in positives]
    anchor_before = {k: v.clone() for k, v in anchor.state_dict().items()}
    trainer = tiny_trainer(tmp_path, anchor, positives)
    trainer.train()

    for p, b in zip(positives, before):
        for k, v in p.state_dict().items():
            torch.testing.assert_close(v, b[k], rtol=0, atol=0)
        assert not any(q.requires_grad for q in p.parameters())
    assert not torch.equal(anchor.state_dict()["classifier.weight"], anchor_before["classifier.weight"])
    optimized = {id(q) for group in trainer.optimizer.param_groups for q in group["params"]}
    assert not optimized & {id(q) for p in positives for q in p.parameters()}

    trainer.save_model(str(tmp_path / "saved"))
    reloaded = AudioFormerForAudioClassification.from_pretrained(str(tmp_path / "saved"))
    assert set(reloaded.state_dict()) == set(tiny_anchor().state_dict())


def test_mpc_changes_the_anchor_gradient(tmp_path):
    ids, mask = code_batch()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    grads = []
    for alpha in (1.0, 0.5):
        anchor = tiny_anchor()
        trainer = tiny_trainer(tmp_path, anchor, [tiny_positive(1, 1)], alpha=alpha)
        anchor.train()
        trainer.compute_loss(anchor, {"input_ids": ids, "attention_mask": mask, "labels": labels}).backward()
        grads.append(anchor.roformer.encoder.layer[0].attention.self.query.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_positive_model_checks(tmp_path):
    anchor = tiny_anchor()
    with pytest.raises(ValueError, match="codebook row 0"):
        check_positive_models([tiny_positive(0, 1)], anchor.config)
    with pytest.raises(ValueError, match="codebook row 1"):
        check_positive_models([tiny_positive(1, 1), tiny_positive(1, 2)], anchor.config)
    two_codebooks = AudioFormerConfig(num_codebooks=2, **TINY)  # the data holds rows 0 and 1 only
    with pytest.raises(ValueError, match="reads codebook row 2, but the data has 2 codebooks"):
        check_positive_models([tiny_positive(1, 1), tiny_positive(2, 2)], two_codebooks)
    other = AudioFormerModel(AudioFormerConfig(**{**TINY, "hidden_size": 64}, codebook_index=1))
    with pytest.raises(ValueError, match="hidden_size"):
        check_positive_models([other], anchor.config)

    # load_positive_models drops an MLM head and can re-assign the row.
    from audioformer.modeling_audioformer import AudioFormerForMaskedLM

    torch.manual_seed(3)
    mlm = AudioFormerForMaskedLM(AudioFormerConfig(**TINY))
    mlm.save_pretrained(tmp_path / "mlm")
    (loaded,) = load_positive_models([str(tmp_path / "mlm")], anchor.config, codebook_indices=[3])
    assert loaded.config.codebook_index == 3 and not loaded.training
    torch.testing.assert_close(
        loaded.embeddings.word_embeddings.weight, mlm.roformer.embeddings.word_embeddings.weight
    )


def test_trainer_uses_weighted_sampler(tmp_path):
    trainer = tiny_trainer(tmp_path, tiny_anchor(), None, sample_weights=np.ones(8))
    assert isinstance(trainer._get_train_sampler(trainer.train_dataset), WeightedClipSampler)
    with pytest.raises(ValueError, match="sample_weights has 3"):
        tiny_trainer(tmp_path, tiny_anchor(), None, sample_weights=np.ones(3))


def test_positives_run_under_the_anchors_autocast(tmp_path):
    """With bf16 the prepared anchor runs under autocast; the frozen positives must too (the paper's "marginal
    cost" of FT2), not in float32 beside it. Observed on a real training step, by the dtype their layers output."""
    anchor, positives = tiny_anchor(), [tiny_positive(1, 1), tiny_positive(2, 2)]
    trainer = tiny_trainer(tmp_path, anchor, positives, bf16=True, max_steps=1)
    seen = {}

    def hook(name):
        def record(module, args, output):
            seen.setdefault(name, output.dtype)

        return record

    handles = [anchor.roformer.encoder.layer[0].intermediate.register_forward_hook(hook("anchor"))]
    for i, p in enumerate(positives):
        handles.append(p.encoder.layer[0].intermediate.register_forward_hook(hook(f"positive{i}")))
    try:
        trainer.train()
    finally:
        for h in handles:
            h.remove()
    assert seen == {"anchor": torch.bfloat16, "positive0": torch.bfloat16, "positive1": torch.bfloat16}
