"""Layer-wise learning-rate decay and the frozen backbone of linear probing (training/optimization.py)."""

import pytest
import torch
from transformers import TrainingArguments

from audioformer.modeling_audioformer import AudioFormerConfig, AudioFormerForAudioClassification
from audioformer.training.optimization import freeze_backbone, layerwise_lr_groups
from audioformer.training.trainer import AudioClassificationTrainer


def tiny_classifier(**overrides):
    config = dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32, num_labels=4)
    config.update(overrides)
    torch.manual_seed(0)
    return AudioFormerForAudioClassification(AudioFormerConfig(**config))


def expected_lr(name: str, lr: float, decay: float, num_layers: int = 3) -> float:
    """The formula written out: classifier lr, layer l lr * decay ** (L - l), embeddings lr * decay ** (L + 1)."""
    if name.startswith("classifier."):
        return lr
    if ".encoder.layer." in name:
        layer = int(name.split(".encoder.layer.")[1].split(".")[0])
        return lr * decay ** (num_layers - layer)
    assert ".embeddings" in name, name
    return lr * decay ** (num_layers + 1)


def test_layerwise_groups_follow_the_formula():
    model = tiny_classifier(embedding_size=8)  # embeddings_project is an embedding-depth parameter too
    decay_names = {n for n, _ in model.named_parameters() if n.endswith("weight") and "LayerNorm" not in n}
    groups = layerwise_lr_groups(model, lr=1e-3, decay=0.5, weight_decay=0.01, decay_names=decay_names)
    by_param = {id(p): g for g in groups for p in g["params"]}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(by_param) == len(trainable) == sum(len(g["params"]) for g in groups)  # each exactly once
    for name, param in trainable:
        group = by_param[id(param)]
        assert group["lr"] == pytest.approx(expected_lr(name, 1e-3, 0.5)), name
        assert group["weight_decay"] == (0.01 if name in decay_names else 0.0), name
    assert not any(id(p) in by_param for p in model.roformer.encoder.embed_positions.parameters())  # frozen table
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        layerwise_lr_groups(model, 1e-3, 0.0, 0.0, decay_names)


def test_trainer_builds_the_layerwise_optimizer_and_the_scheduler_keeps_ratios(tmp_path):
    model = tiny_classifier()
    args = TrainingArguments(
        output_dir=str(tmp_path), learning_rate=2e-3, weight_decay=0.1, warmup_steps=10, report_to="none", use_cpu=True
    )
    trainer = AudioClassificationTrainer(model=model, args=args, layerwise_lr_decay=0.8)
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = set(trainer.get_decay_parameter_names(model))
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            assert group["initial_lr"] == pytest.approx(expected_lr(names[id(param)], 2e-3, 0.8))
            assert group["weight_decay"] == (0.1 if names[id(param)] in decay_names else 0.0)
    for _ in range(5):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    top = max(g["lr"] for g in trainer.optimizer.param_groups)
    assert top == pytest.approx(2e-3 * 5 / 10)  # half-way through the warm-up
    for group in trainer.optimizer.param_groups:
        assert group["lr"] / top == pytest.approx(group["initial_lr"] / 2e-3)

    plain = AudioClassificationTrainer(model=tiny_classifier(), args=args)
    plain.create_optimizer()
    assert {g["lr"] for g in plain.optimizer.param_groups} == {2e-3}


def test_frozen_backbone_gets_no_gradient_and_runs_without_dropout():
    model = freeze_backbone(tiny_classifier(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5))
    model.train()  # as Trainer does before every step
    ids = torch.randint(3, 1027, (2, 20))
    first = model(input_ids=ids, labels=torch.tensor([0, 1]))
    second = model(input_ids=ids)
    torch.testing.assert_close(first.pooled_output, second.pooled_output, rtol=0, atol=0)  # no dropout
    first.loss.backward()
    assert all(p.grad is None for p in model.roformer.parameters())
    assert model.classifier.weight.grad is not None and model.classifier.weight.grad.abs().sum() > 0
    assert model.classifier.training  # the head keeps its dropout
